//! `verb::client`: typed JSON, pings answered, reconnect with backoff.

use std::time::Duration;

use serde_json::{Value, json};
use verb::client::{Client, ClientEvent};
use verb::prelude::*;
use verb::test::TestServer;

fn app() -> App {
    let mut app = verb::create_server();
    app.ws(
        "/ws",
        Ws::new()
            .open(|ws: &WebSocket, _req: &Request| {
                ws.ping(b"are you there");
                ws.send_json(&json!({ "type": "welcome" }));
            })
            .message(|ws: &WebSocket, msg: Message| {
                if msg.as_text() == Some("kick") {
                    ws.terminate();
                } else {
                    ws.send(msg);
                }
            }),
    );
    app
}

#[tokio::test]
async fn client_exchanges_json_and_reconnects_after_a_drop() {
    let server = TestServer::start(app()).await;
    let mut client = Client::builder(format!("ws://{}/ws", server.addr()))
        .min_backoff(Duration::from_millis(10))
        .connect()
        .await
        .unwrap();
    assert_eq!(client.next().await, Some(ClientEvent::Connected));
    assert_eq!(
        client.next_json::<Value>().await,
        Some(json!({ "type": "welcome" }))
    );
    client.send_json(&json!({ "n": 1 })).unwrap();
    assert_eq!(client.next_json::<Value>().await, Some(json!({ "n": 1 })));

    // The server drops the connection: the client says so, reconnects, and works again.
    client.send_text("kick").unwrap();
    assert_eq!(
        client.next().await,
        Some(ClientEvent::Disconnected { code: None })
    );
    assert_eq!(client.next().await, Some(ClientEvent::Connected));
    assert_eq!(
        client.next_json::<Value>().await,
        Some(json!({ "type": "welcome" }))
    );
    client.send_json(&json!({ "n": 2 })).unwrap();
    assert_eq!(client.next_json::<Value>().await, Some(json!({ "n": 2 })));

    client.close();
    assert!(matches!(
        client.next().await,
        Some(ClientEvent::Disconnected { .. })
    ));
    assert_eq!(client.next().await, None);
    assert!(client.send_text("after close").is_err());
}

#[tokio::test]
async fn client_gives_up_after_its_attempts() {
    let server = TestServer::start(app()).await;
    let url = format!("ws://{}/ws", server.addr());
    let mut client = Client::builder(url.as_str())
        .min_backoff(Duration::from_millis(5))
        .max_attempts(3)
        .connect()
        .await
        .unwrap();
    assert_eq!(client.next().await, Some(ClientEvent::Connected));
    server.stop().await;
    let mut events = Vec::new();
    while let Some(event) = tokio::time::timeout(Duration::from_secs(5), client.next())
        .await
        .expect("the client ends within 5 s")
    {
        events.push(event);
    }
    assert!(
        events.contains(&ClientEvent::Disconnected {
            code: Some(CloseCode::GOING_AWAY)
        }),
        "{events:?}"
    );
    assert!(Client::builder("not a url").connect().await.is_err());
    assert!(
        Client::builder(url).connect().await.is_err(),
        "nothing listens any more"
    );
}

/// A flooding server meets backpressure, not a growing queue in the client: with 16 events unread
/// the client stops reading, so the server's own send queue fills until its sends are dropped. What
/// was queued still arrives, in order, once the client reads.
#[tokio::test]
async fn a_flooding_server_fills_its_own_queue_not_the_clients_memory() {
    let (flooded_tx, flooded_rx) = tokio::sync::oneshot::channel::<usize>();
    let flooded = std::sync::Mutex::new(Some(flooded_tx));
    let mut app = verb::create_server();
    app.ws(
        "/flood",
        Ws::new()
            .backpressure_limit(64 * 1024)
            .open(move |ws: &WebSocket, _req: &Request| {
                let ws = ws.clone();
                let done = flooded.lock().unwrap().take();
                tokio::spawn(async move {
                    let payload = "x".repeat(1024);
                    for n in 0..200_000usize {
                        if ws.send_text(format!("{n} {payload}")) == SendStatus::Dropped {
                            if let Some(done) = done {
                                let _ = done.send(n);
                            }
                            return;
                        }
                        if n % 64 == 0 {
                            tokio::task::yield_now().await;
                        }
                    }
                });
            }),
    );
    let server = TestServer::start(app).await;
    let mut client = Client::builder(format!("ws://{}/flood", server.addr()))
        .event_queue(16)
        .connect()
        .await
        .unwrap();
    let sent = tokio::time::timeout(Duration::from_secs(20), flooded_rx)
        .await
        .expect("the server's queue filled while the client read nothing")
        .expect("the flood reported");
    assert!(sent > 16, "{sent}");
    assert_eq!(client.next().await, Some(ClientEvent::Connected));
    for n in 0..100 {
        let Some(ClientEvent::Message(message)) = client.next().await else {
            panic!("message {n} missing");
        };
        let text = message.as_text().unwrap_or_default();
        assert!(text.starts_with(&format!("{n} ")), "expected message {n}");
    }
    client.close();
    server.stop().await;
}
