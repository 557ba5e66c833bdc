//! `app.metrics(path)`: Prometheus text whose counters move with traffic.
//!
//! The recorder is process-wide and other tests run alongside, so this test compares counters before
//! and after its own traffic and asserts at least its own share.

use std::time::Duration;

use verb::prelude::*;
use verb::test::TestServer;

/// The sum of the samples of `name` whose labels include every one of `labels` (`key="value"`).
fn sample(body: &str, name: &str, labels: &[&str]) -> f64 {
    body.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, label_set) = match series.split_once('{') {
                Some((metric, rest)) => (metric, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let wanted = metric == name
                && labels
                    .iter()
                    .all(|label| label_set.split(',').any(|l| l == *label));
            wanted.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

async fn scrape(server: &TestServer) -> String {
    let response = server.get("/metrics").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response
            .header("content-type")
            .is_some_and(|c| c.starts_with("text/plain; version=0.0.4")),
        "{:?}",
        response.header("content-type")
    );
    response.text().to_owned()
}

#[tokio::test]
async fn metrics_endpoint_counts_connections_messages_bytes_and_closes() {
    let mut app = verb::create_server();
    app.metrics("/metrics").unwrap();
    let stats = app.stats();
    app.ws(
        "/ws",
        Ws::new().message(|ws: &WebSocket, msg: Message| {
            ws.subscribe("echoes");
            ws.send(msg);
        }),
    );
    let server = TestServer::start(app).await;
    let before = scrape(&server).await;

    let mut first = server.ws("/ws").await;
    let mut second = server.ws("/ws").await;
    for client in [&mut first, &mut second] {
        for _ in 0..3 {
            client.send_text("hello").await;
            assert_eq!(client.recv_text().await, "hello");
        }
    }
    assert_eq!(stats.snapshot().websockets, 2);
    assert_eq!(stats.snapshot().rooms, 1);
    assert_eq!(
        serde_json::to_value(stats.snapshot()).unwrap(),
        serde_json::json!({ "websockets": 2, "rooms": 1, "hub_connections": 2 })
    );
    // A plain GET on the WebSocket route is refused with 426.
    assert_eq!(
        server.get("/ws").await.status(),
        StatusCode::UPGRADE_REQUIRED
    );
    first.close(1000, "").await;
    first.recv_close().await;
    second.close(4001, "app reason").await;
    second.recv_close().await;

    let delta = |after: &str, name: &str, labels: &[&str]| {
        sample(after, name, labels) - sample(&before, name, labels)
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let after = loop {
        let after = scrape(&server).await;
        if delta(&after, "verb_ws_closes_total", &[r#"code="4xxx""#]) >= 1.0 {
            break after;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "closes never counted:\n{after}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(delta(&after, "verb_ws_messages_received_total", &[]) >= 6.0);
    assert!(delta(&after, "verb_ws_bytes_received_total", &[]) >= 30.0);
    assert!(delta(&after, "verb_ws_messages_sent_total", &[]) >= 6.0);
    assert!(delta(&after, "verb_ws_bytes_sent_total", &[]) >= 30.0);
    assert!(delta(&after, "verb_ws_closes_total", &[r#"code="1000""#]) >= 1.0);
    assert!(
        delta(
            &after,
            "verb_ws_upgrades_total",
            &[r#"result="accepted""#, r#"status="101""#]
        ) >= 2.0
    );
    assert!(
        delta(
            &after,
            "verb_ws_upgrades_total",
            &[r#"result="refused""#, r#"status="426""#]
        ) >= 1.0
    );
    assert!(delta(&after, "verb_http_requests_total", &[r#"status="200""#]) >= 1.0);
    assert!(after.contains("verb_ws_connections_open"), "{after}");
    assert!(after.contains("verb_rooms_rooms"), "{after}");
}
