//! The WebSocket examples, run as processes, against the catalogue's message shapes.

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::support::{Example, connect, next_json, next_text, request};

/// `basic`: welcome text, `Echo: m`, and the demo page on `GET /`, on any path.
#[tokio::test]
async fn basic_example() {
    let example = Example::start("basic", &[]);
    let (mut client, _) = connect(&example, "/", None).await;
    assert_eq!(next_text(&mut client).await, "Welcome to WebSocket server!");
    client.send(Message::text("hi")).await.unwrap();
    assert_eq!(next_text(&mut client).await, "Echo: hi");
    let (mut other, _) = connect(&example, "/some/path", None).await;
    assert_eq!(next_text(&mut other).await, "Welcome to WebSocket server!");
    let (status, body) = request(example.addr, "GET", "/", None).await;
    assert_eq!(status, 200);
    assert!(body.contains("new WebSocket"), "{body}");
    drop((client, other));
    assert!(example.terminate().success());
}

/// `ws-echo`: JSON welcome, `{"type":"echo","data":d}`, invalid JSON error; only `/ws` upgrades.
#[tokio::test]
async fn ws_echo_example() {
    let example = Example::start("ws-echo", &[]);
    let (mut client, _) = connect(&example, "/ws", None).await;
    assert_eq!(
        next_json(&mut client).await,
        json!({ "type": "welcome", "message": "Welcome to the WebSocket server!" })
    );
    client.send(Message::text(r#"{"a":[1,2]}"#)).await.unwrap();
    assert_eq!(
        next_json(&mut client).await,
        json!({ "type": "echo", "data": { "a": [1, 2] } })
    );
    client.send(Message::text("not json")).await.unwrap();
    assert_eq!(
        next_json(&mut client).await,
        json!({ "type": "error", "message": "Invalid JSON format" })
    );
    let (status, body) = request(example.addr, "GET", "/", None).await;
    assert_eq!(status, 200);
    assert!(body.contains("/ws"), "{body}");

    // SIGTERM: the open WebSocket gets 1001, then the process exits 0.
    let exit = tokio::task::spawn_blocking(move || example.terminate());
    loop {
        match client.next().await {
            Some(Ok(Message::Close(Some(frame)))) => {
                assert_eq!(u16::from(frame.code), 1001);
                break;
            }
            Some(Ok(_)) => {}
            other => panic!("expected close 1001, got {other:?}"),
        }
    }
    // Reading on lets the client send its close reply, which completes the handshake.
    let _ = client.next().await;
    assert!(exit.await.unwrap().success());
}

/// `config`: welcome, ping/pong, chat to everyone, errors, subprotocol `chat` first, the extra header.
#[tokio::test]
async fn config_example() {
    let example = Example::start("config", &[]);
    let (mut a, headers) = connect(&example, "/", Some("notification, chat")).await;
    assert_eq!(headers["sec-websocket-protocol"], "chat");
    assert_eq!(headers["x-websocket-server"], "Verb");
    let welcome = json!({ "type": "welcome", "message": "Connected to WebSocket server" });
    assert_eq!(next_json(&mut a).await, welcome);
    let (mut b, _) = connect(&example, "/", None).await;
    assert_eq!(next_json(&mut b).await, welcome);

    a.send(Message::text(r#"{"type":"ping"}"#)).await.unwrap();
    assert_eq!(next_json(&mut a).await, json!({ "type": "pong" }));
    a.send(Message::text(r#"{"type":"chat","message":"hello all"}"#))
        .await
        .unwrap();
    let chat = json!({ "type": "chat", "message": "hello all" });
    assert_eq!(next_json(&mut a).await, chat, "the sender gets it too");
    assert_eq!(next_json(&mut b).await, chat);
    a.send(Message::text(r#"{"type":"dance"}"#)).await.unwrap();
    assert_eq!(
        next_json(&mut a).await,
        json!({ "type": "error", "message": "Unknown message type" })
    );
    a.send(Message::text("{oops")).await.unwrap();
    assert_eq!(
        next_json(&mut a).await,
        json!({ "type": "error", "message": "Invalid JSON" })
    );
    a.send(Message::text(r#"{"type":"chat","message":42}"#))
        .await
        .unwrap();
    let error = next_json(&mut a).await;
    assert_eq!(error["type"], "error");
    assert!(
        error["message"].as_str().unwrap().contains("message"),
        "{error}"
    );
}

/// `plain-echo`: text as text, binary as binary, unchanged.
#[tokio::test]
async fn plain_echo_example() {
    let example = Example::start("plain-echo", &["--max-payload", "1024"]);
    let (mut client, _) = connect(&example, "/anything", None).await;
    client.send(Message::text("plain")).await.unwrap();
    assert_eq!(next_text(&mut client).await, "plain");
    client.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    let echoed = client.next().await.unwrap().unwrap();
    assert_eq!(echoed, Message::binary(vec![1u8, 2, 3]));
    client.send(Message::binary(vec![0u8; 1025])).await.unwrap();
    match client.next().await {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(u16::from(frame.code), 1009),
        other => panic!("expected close 1009, got {other:?}"),
    }
}
