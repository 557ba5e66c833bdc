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
