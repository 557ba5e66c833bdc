//! `heartbeat-server`, `connection-limits` and `heartbeat`, run as processes with short timers.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::support::{Client, Example, connect, next_json, request, send_json};

/// Reads (answering pings, as tungstenite does while reading) until the close frame or the end;
/// the close code and reason, if a close frame came.
async fn until_close(client: &mut Client) -> Option<(u16, String)> {
    loop {
        let next = tokio::time::timeout(Duration::from_secs(10), client.next())
            .await
            .expect("an end within 10 s");
        match next {
            Some(Ok(Message::Close(frame))) => {
                return frame.map(|f| (u16::from(f.code), f.reason.to_string()));
            }
            Some(Ok(_)) => {}
            None | Some(Err(_)) => return None,
        }
    }
}

/// Reads for `window`, answering pings; panics if the connection ends meanwhile.
async fn stays_open(client: &mut Client, window: Duration) {
    let deadline = tokio::time::Instant::now() + window;
    while let Ok(next) = tokio::time::timeout_at(deadline, client.next()).await {
        match next {
            Some(Ok(Message::Close(frame))) => panic!("closed early: {frame:?}"),
            Some(Ok(_)) => {}
            None | Some(Err(_)) => panic!("connection ended early"),
        }
    }
}

#[tokio::test]
async fn heartbeat_server_example() {
    let example = Example::start("heartbeat-server", &["--ping-interval-ms", "300"]);
    let (mut alive, _) = connect(&example, "/", None).await;
    send_json(&mut alive, &json!({ "hello": 1 })).await;
    assert_eq!(next_json(&mut alive).await, json!({ "type": "ack" }));
    alive.send(Message::text("not json")).await.unwrap();
    assert_eq!(
        next_json(&mut alive).await,
        json!({ "type": "error", "message": "Invalid message format", "code": "INVALID_JSON" })
    );

    // A peer that reads (and so answers pings) stays; one that never answers is dropped.
    let (mut dead, _) = connect(&example, "/", None).await;
    stays_open(&mut alive, Duration::from_millis(1000)).await;
    let started = Instant::now();
    let close = until_close(&mut dead).await;
    assert!(matches!(close, Some((1001, _)) | None), "{close:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    drop((alive, dead));
    assert!(example.terminate().success());
}

#[tokio::test]
async fn connection_limits_example() {
    let example = Example::start(
        "connection-limits",
        &["--max-connections", "2", "--inactive-ms", "800"],
    );
    let (mut first, _) = connect(&example, "/", None).await;
    let (mut second, _) = connect(&example, "/", None).await;
    let (mut third, _) = connect(&example, "/", None).await;
    assert_eq!(
        next_json(&mut third).await,
        json!({ "type": "error", "message": "Server capacity reached" })
    );
    assert_eq!(until_close(&mut third).await.map(|c| c.0), Some(1013));

    send_json(&mut first, &json!({ "any": "thing" })).await;
    assert_eq!(next_json(&mut first).await, json!({ "type": "ack" }));
    // `first` keeps talking; `second` only answers protocol pings, which do not count.
    let started = Instant::now();
    let talker = tokio::spawn(async move {
        for _ in 0..12 {
            send_json(&mut first, &json!({ "keep": "alive" })).await;
            assert_eq!(next_json(&mut first).await, json!({ "type": "ack" }));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        first
    });
    assert_eq!(
        until_close(&mut second).await,
        Some((1000, "Closing inactive connection".to_owned()))
    );
    assert!(started.elapsed() >= Duration::from_millis(700));
    let first = talker.await.unwrap();
    drop((first, second, third));
    assert!(example.terminate().success());
}

#[tokio::test]
async fn heartbeat_example() {
    let example = Example::start(
        "heartbeat",
        &["--heartbeat-ms", "100", "--client-timeout-ms", "1000"],
    );
    let (status, page) = request(example.addr, "GET", "/", None).await;
    assert_eq!(status, 200);
    assert!(
        page.contains("pong") && page.contains("reconnect"),
        "{page}"
    );

    let (mut answering, _) = connect(&example, "/ws", None).await;
    let (mut silent, _) = connect(&example, "/ws", None).await;
    let welcome = json!({ "type": "welcome", "message": "Welcome to the WebSocket server!" });
    assert_eq!(next_json(&mut answering).await, welcome);
    assert_eq!(next_json(&mut silent).await, welcome);

    // The answering client replies to each ping for well over the timeout.
    let started = Instant::now();
    let mut pings = 0;
    while started.elapsed() < Duration::from_millis(1500) {
        assert_eq!(next_json(&mut answering).await, json!({ "type": "ping" }));
        pings += 1;
        send_json(&mut answering, &json!({ "type": "pong" })).await;
    }
    assert!(pings >= 8, "{pings} pings in 1.5 s at 100 ms");
    // The silent one got pings too, and was closed after a second of silence.
    assert_eq!(
        until_close(&mut silent).await,
        Some((1000, "Connection timeout due to inactivity".to_owned()))
    );
    drop((answering, silent));
    assert!(example.terminate().success());
}
