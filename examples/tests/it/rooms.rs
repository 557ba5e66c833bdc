//! The fan-out examples (chat, broadcast, rooms, room-chat, live-feed, plain-broadcast), run as
//! processes, against the catalogue's message shapes.

use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::support::{
    Example, connect, is_iso_timestamp, next_json, next_json_skipping, next_text, request,
    send_json,
};

/// `chat`: the page, user counts on open and close, messages to all (sender included) with a
/// timestamp, `Anonymous` for a missing or non-string username, and the error for bad input.
#[tokio::test]
async fn chat_example() {
    let example = Example::start("chat", &[]);
    let (status, page) = request(example.addr, "GET", "/", None).await;
    assert_eq!(status, 200);
    assert!(
        page.contains("location.host"),
        "the page connects to its own host"
    );
    assert!(
        !page.contains("innerHTML"),
        "user text is never parsed as HTML"
    );

    let (mut ada, _) = connect(&example, "/", None).await;
    assert_eq!(
        next_json(&mut ada).await,
        json!({ "type": "userCount", "count": 1 })
    );
    let (mut bob, _) = connect(&example, "/chat", None).await;
    assert_eq!(
        next_json(&mut bob).await,
        json!({ "type": "userCount", "count": 2 })
    );
    assert_eq!(
        next_json(&mut ada).await,
        json!({ "type": "userCount", "count": 2 })
    );

    send_json(
        &mut ada,
        &json!({ "type": "message", "username": "ada", "message": "<b>hi</b>" }),
    )
    .await;
    for client in [&mut ada, &mut bob] {
        let got = next_json(client).await;
        assert_eq!(got["type"], "message");
        assert_eq!(got["username"], "ada");
        assert_eq!(got["message"], "<b>hi</b>");
        assert!(
            is_iso_timestamp(got["timestamp"].as_str().unwrap()),
            "{got}"
        );
    }
    send_json(
        &mut bob,
        &json!({ "type": "message", "username": 42, "message": "who am I" }),
    )
    .await;
    assert_eq!(next_json(&mut ada).await["username"], "Anonymous");
    assert_eq!(next_json(&mut bob).await["username"], "Anonymous");

    for bad in [
        "not json",
        r#"{"type":"message"}"#,
        r#"{"type":"message","message":7}"#,
        r#"{"type":"other","message":"x"}"#,
        "[]",
    ] {
        bob.send(Message::text(bad)).await.unwrap();
        assert_eq!(
            next_json(&mut bob).await,
            json!({ "type": "error", "message": "Invalid message format" }),
            "for {bad}"
        );
    }

    bob.close(None).await.unwrap();
    assert_eq!(
        next_json(&mut ada).await,
        json!({ "type": "userCount", "count": 1 })
    );

    // The metrics moved with this traffic (the process is this test's alone).
    let (status, metrics) = request(example.addr, "GET", "/metrics", None).await;
    assert_eq!(status, 200);
    let value = |series: &str| -> f64 {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {series} in\n{metrics}"))
    };
    assert_eq!(value("verb_ws_connections_open "), 1.0);
    assert_eq!(value("verb_ws_messages_received_total "), 7.0);
    assert!(value("verb_ws_bytes_received_total ") > 100.0);
    // userCount 1 + 2 + 2 messages × 2 + 5 errors + userCount on close.
    assert_eq!(value("verb_ws_messages_sent_total "), 13.0);
    assert!(value("verb_ws_bytes_sent_total ") > 100.0);
    assert_eq!(value("verb_ws_closes_total{code=\"1005\"} "), 1.0);
    // Clients that go away let the graceful stop finish at once (no close handshake to wait for).
    drop((ada, bob));
    assert!(example.terminate().success());
}

/// `broadcast`: welcome with the count, join/leave notices and messages to the others only.
#[tokio::test]
async fn broadcast_example() {
    let example = Example::start("broadcast", &[]);
    let (mut ada, _) = connect(&example, "/ws", None).await;
    assert_eq!(
        next_json(&mut ada).await,
        json!({ "type": "welcome", "message": "Welcome to the chat!", "userCount": 1 })
    );
    let (mut bob, _) = connect(&example, "/ws", None).await;
    assert_eq!(
        next_json(&mut bob).await,
        json!({ "type": "welcome", "message": "Welcome to the chat!", "userCount": 2 })
    );
    assert_eq!(
        next_json(&mut ada).await,
        json!({ "type": "system", "message": "A user has joined the chat", "userCount": 2 })
    );

    send_json(&mut ada, &json!({ "username": "ada", "text": "hello" })).await;
    let got = next_json(&mut bob).await;
    assert_eq!(
        (&got["type"], &got["sender"], &got["text"]),
        (&json!("message"), &json!("ada"), &json!("hello"))
    );
    assert!(is_iso_timestamp(got["timestamp"].as_str().unwrap()));
    send_json(&mut bob, &json!({ "text": "anon" })).await;
    assert_eq!(next_json(&mut ada).await["sender"], "Anonymous");

    // Bad input goes back to the sender only: ada's next message proves bob got nothing from it.
    ada.send(Message::text("{oops")).await.unwrap();
    assert_eq!(
        next_json(&mut ada).await,
        json!({ "type": "error", "message": "Invalid JSON format" })
    );
    send_json(&mut ada, &json!({ "username": "ada" })).await;
    let error = next_json(&mut ada).await;
    assert_eq!(error["type"], "error");
    assert!(
        error["message"].as_str().unwrap().contains("text"),
        "{error}"
    );
    send_json(&mut ada, &json!({ "username": "ada", "text": "again" })).await;
    assert_eq!(next_json(&mut bob).await["text"], "again");

    ada.close(None).await.unwrap();
    assert_eq!(
        next_json(&mut bob).await,
        json!({ "type": "system", "message": "A user has left the chat", "userCount": 1 })
    );
    // Clients that go away let the graceful stop finish at once (no close handshake to wait for).
    drop((ada, bob));
    assert!(example.terminate().success());
}

/// `rooms`: `/ws/:room` keeps each room's traffic inside it and counts per room.
#[tokio::test]
async fn rooms_example() {
    let example = Example::start("rooms", &[]);
    let (mut ada, _) = connect(&example, "/ws/red", None).await;
    assert_eq!(
        next_json(&mut ada).await,
        json!({ "type": "welcome", "room": "red", "userCount": 1 })
    );
    let (mut bob, _) = connect(&example, "/ws/red", None).await;
    assert_eq!(
        next_json(&mut bob).await,
        json!({ "type": "welcome", "room": "red", "userCount": 2 })
    );
    assert_eq!(
        next_json(&mut ada).await,
        json!({ "type": "system", "message": "A user has joined the room", "userCount": 2 })
    );
    let (mut cyd, _) = connect(&example, "/ws/blue", None).await;
    assert_eq!(
        next_json(&mut cyd).await,
        json!({ "type": "welcome", "room": "blue", "userCount": 1 })
    );

    send_json(&mut ada, &json!({ "username": "ada", "text": "red only" })).await;
    let got = next_json(&mut bob).await;
    assert_eq!(
        (&got["sender"], &got["text"]),
        (&json!("ada"), &json!("red only"))
    );
    assert!(is_iso_timestamp(got["timestamp"].as_str().unwrap()));
    // cyd's next message is from its own room: the red message never reached it.
    let (mut dan, _) = connect(&example, "/ws/blue", None).await;
    next_json(&mut dan).await;
    assert_eq!(
        next_json(&mut cyd).await,
        json!({ "type": "system", "message": "A user has joined the room", "userCount": 2 })
    );

    cyd.send(Message::text("nope")).await.unwrap();
    assert_eq!(
        next_json(&mut cyd).await,
        json!({ "type": "error", "message": "Invalid JSON format" })
    );

    bob.close(None).await.unwrap();
    assert_eq!(
        next_json(&mut ada).await,
        json!({ "type": "system", "message": "A user has left the room", "userCount": 1 })
    );
    // The room empties and vanishes: once the server has processed the closes, a newcomer is alone.
    ada.close(None).await.unwrap();
    drop(ada);
    let mut alone = false;
    for _ in 0..200 {
        let (mut eve, _) = connect(&example, "/ws/red", None).await;
        let welcome = next_json(&mut eve).await;
        assert_eq!(welcome["room"], "red");
        if welcome["userCount"] == 1 {
            alone = true;
            break;
        }
        eve.close(None).await.unwrap();
    }
    assert!(alone, "the red room never emptied");
    // Clients that go away let the graceful stop finish at once (no close handshake to wait for).
    drop((bob, cyd, dan));
    assert!(example.terminate().success());
}

/// `room-chat`: join by message (leaving the previous room), talk within the room, leave, ping.
#[tokio::test]
async fn room_chat_example() {
    let example = Example::start("room-chat", &[]);
    let (mut ada, _) = connect(&example, "/", None).await;
    let (mut bob, _) = connect(&example, "/", None).await;

    send_json(&mut ada, &json!({ "type": "message", "message": "hi?" })).await;
    assert_eq!(
        next_json(&mut ada).await,
        json!({ "type": "error", "message": "Not in a room" })
    );
    send_json(&mut ada, &json!({ "type": "ping" })).await;
    assert_eq!(next_json(&mut ada).await, json!({ "type": "pong" }));

    send_json(
        &mut ada,
        &json!({ "type": "join", "username": "ada", "room": "rust" }),
    )
    .await;
    assert_eq!(
        next_json(&mut ada).await,
        json!({ "type": "joined", "room": "rust", "userCount": 1 })
    );
    send_json(
        &mut bob,
        &json!({ "type": "join", "username": "bob", "room": "rust" }),
    )
    .await;
    assert_eq!(
        next_json(&mut bob).await,
        json!({ "type": "joined", "room": "rust", "userCount": 2 })
    );
    assert_eq!(
        next_json(&mut ada).await,
        json!({ "type": "userJoined", "username": "bob", "message": "bob joined the room" })
    );

    send_json(&mut bob, &json!({ "type": "message", "message": "hello" })).await;
    for client in [&mut ada, &mut bob] {
        let got = next_json(client).await;
        assert_eq!(
            (&got["type"], &got["username"], &got["message"]),
            (&json!("message"), &json!("bob"), &json!("hello"))
        );
        assert!(is_iso_timestamp(got["timestamp"].as_str().unwrap()));
    }

    // Joining another room leaves the first: ada hears bob leave; bob is alone in "go".
    send_json(
        &mut bob,
        &json!({ "type": "join", "username": "bob", "room": "go" }),
    )
    .await;
    assert_eq!(
        next_json(&mut ada).await,
        json!({ "type": "userLeft", "username": "bob", "message": "bob left the room" })
    );
    assert_eq!(
        next_json(&mut bob).await,
        json!({ "type": "joined", "room": "go", "userCount": 1 })
    );
    send_json(
        &mut ada,
        &json!({ "type": "message", "message": "rust only" }),
    )
    .await;
    assert_eq!(next_json(&mut ada).await["message"], "rust only");

    // Explicit leave, then close: both tell the others.
    let (mut cyd, _) = connect(&example, "/", None).await;
    send_json(
        &mut cyd,
        &json!({ "type": "join", "username": "cyd", "room": "go" }),
    )
    .await;
    assert_eq!(next_json(&mut cyd).await["userCount"], 2);
    assert_eq!(next_json(&mut bob).await["type"], "userJoined");
    send_json(&mut cyd, &json!({ "type": "leave", "room": "go" })).await;
    assert_eq!(
        next_json(&mut bob).await,
        json!({ "type": "userLeft", "username": "cyd", "message": "cyd left the room" })
    );
    send_json(&mut cyd, &json!({ "type": "leave", "room": "go" })).await;
    assert_eq!(
        next_json(&mut cyd).await,
        json!({ "type": "error", "message": "Not in a room" })
    );
    send_json(&mut cyd, &json!({ "type": "join", "room": 5 })).await;
    let error = next_json(&mut cyd).await;
    assert!(
        error["message"].as_str().unwrap().contains("room"),
        "{error}"
    );
    send_json(&mut cyd, &json!({ "type": "join", "room": "go" })).await;
    assert_eq!(next_json(&mut cyd).await["type"], "joined");
    assert_eq!(
        next_json(&mut bob).await,
        json!({ "type": "userJoined", "username": "Anonymous", "message": "Anonymous joined the room" })
    );
    cyd.close(None).await.unwrap();
    assert_eq!(
        next_json(&mut bob).await,
        json!({ "type": "userLeft", "username": "Anonymous", "message": "Anonymous left the room" })
    );
    // Clients that go away let the graceful stop finish at once (no close handshake to wait for).
    drop((ada, bob, cyd));
    assert!(example.terminate().success());
}

/// `live-feed`: topics, subscribe/unsubscribe replies, unknown topics, and data for subscribers
/// only, at the `--tick-ms` pace.
#[tokio::test]
async fn live_feed_example() {
    let example = Example::start("live-feed", &["--tick-ms", "20"]);
    let (mut client, _) = connect(&example, "/", None).await;
    assert_eq!(
        next_json(&mut client).await,
        json!({ "type": "connected", "message": "Ready to receive data feeds" })
    );
    send_json(&mut client, &json!({ "type": "getTopics" })).await;
    assert_eq!(
        next_json(&mut client).await,
        json!({ "type": "topics", "topics": ["stocks", "crypto", "news", "weather"] })
    );
    send_json(
        &mut client,
        &json!({ "type": "subscribe", "topic": "gossip" }),
    )
    .await;
    assert_eq!(
        next_json(&mut client).await,
        json!({ "type": "error", "message": "Unknown topic" })
    );

    send_json(
        &mut client,
        &json!({ "type": "subscribe", "topic": "stocks" }),
    )
    .await;
    assert_eq!(
        next_json(&mut client).await,
        json!({ "type": "subscribed", "topic": "stocks", "message": "Subscribed to stocks" })
    );
    for _ in 0..3 {
        let data = next_json(&mut client).await;
        assert_eq!(data["type"], "data");
        assert_eq!(data["topic"], "stocks", "{data}");
        assert!(data["data"]["symbol"].is_string(), "{data}");
        assert!(data["data"]["price"].is_number() && data["data"]["change"].is_number());
        assert!(is_iso_timestamp(data["timestamp"].as_str().unwrap()));
    }

    send_json(
        &mut client,
        &json!({ "type": "subscribe", "topic": "news" }),
    )
    .await;
    send_json(
        &mut client,
        &json!({ "type": "subscribe", "topic": "weather" }),
    )
    .await;
    let (mut news, mut weather) = (false, false);
    while !(news && weather) {
        let data = next_json_skipping(&mut client, &["subscribed"]).await;
        match data["topic"].as_str() {
            Some("news") => {
                assert!(data["data"]["headline"].is_string(), "{data}");
                news = true;
            }
            Some("weather") => {
                assert!(data["data"]["location"].is_string(), "{data}");
                assert!(data["data"]["temperature"].is_number(), "{data}");
                assert!(data["data"]["humidity"].is_number(), "{data}");
                weather = true;
            }
            Some("stocks") => {}
            other => panic!("unexpected topic {other:?}: {data}"),
        }
    }

    for topic in ["stocks", "news", "weather"] {
        send_json(
            &mut client,
            &json!({ "type": "unsubscribe", "topic": topic }),
        )
        .await;
    }
    // After the last reply, only crypto (subscribed now) may arrive.
    loop {
        let reply = next_json_skipping(&mut client, &["data"]).await;
        if reply["topic"] == "weather" {
            assert_eq!(
                reply,
                json!({ "type": "unsubscribed", "topic": "weather", "message": "Unsubscribed from weather" })
            );
            break;
        }
    }
    send_json(
        &mut client,
        &json!({ "type": "subscribe", "topic": "crypto" }),
    )
    .await;
    next_json_skipping(&mut client, &["data"]).await;
    for _ in 0..3 {
        let data: Value = next_json(&mut client).await;
        assert_eq!(data["topic"], "crypto", "{data}");
    }
    // Clients that go away let the graceful stop finish at once (no close handshake to wait for).
    drop((client,));
    assert!(example.terminate().success());
}

/// `plain-broadcast`: every message, text or binary, reaches every client, sender included.
#[tokio::test]
async fn plain_broadcast_example() {
    let example = Example::start("plain-broadcast", &[]);
    let (mut a, _) = connect(&example, "/", None).await;
    let (mut b, _) = connect(&example, "/any/path", None).await;
    // Each client's own message coming back proves it is subscribed (`open` runs before messages).
    a.send(Message::text("a is here")).await.unwrap();
    assert_eq!(next_text(&mut a).await, "a is here");
    b.send(Message::text("b is here")).await.unwrap();
    // b may or may not have been subscribed in time for a's message.
    while next_text(&mut b).await != "b is here" {}
    assert_eq!(next_text(&mut a).await, "b is here");

    a.send(Message::text("text")).await.unwrap();
    b.send(Message::binary(vec![0u8, 159, 255])).await.unwrap();
    for client in [&mut a, &mut b] {
        let mut got = Vec::new();
        while got.len() < 2 {
            use futures_util::StreamExt;
            match client.next().await.unwrap().unwrap() {
                Message::Text(text) => got.push(text.as_bytes().to_vec()),
                Message::Binary(bytes) => got.push(bytes.to_vec()),
                Message::Ping(_) | Message::Pong(_) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        got.sort();
        assert_eq!(got, [vec![0u8, 159, 255], b"text".to_vec()]);
    }
    // Clients that go away let the graceful stop finish at once (no close handshake to wait for).
    drop((a, b));
    assert!(example.terminate().success());
}

/// `plain-broadcast --compression`: a client offering permessage-deflate (as browsers do) gets it
/// without (`shared`) or with (`dedicated`) server context takeover, and its own message back
/// compressed (RSV1); `off`, the default, declines the offer and sends plain frames.
#[test]
fn plain_broadcast_compresses_when_asked() {
    use std::io::{Read, Write};

    let text = br#"{"type":"data","topic":"stocks","data":{"symbol":"ACME","price":123.45,"change":-0.42},"timestamp":"2026-11-23T12:00:00.000Z"}"#;
    for (mode, answer) in [
        ("off", None),
        (
            "shared",
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover"),
        ),
        (
            "dedicated",
            Some("permessage-deflate; client_no_context_takeover"),
        ),
    ] {
        let example = Example::start("plain-broadcast", &["--compression", mode]);
        let mut stream = std::net::TcpStream::connect(example.addr).expect("connect");
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .expect("timeout");
        let request = format!(
            "GET / HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n",
            example.addr
        );
        stream.write_all(request.as_bytes()).expect("write");
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte).expect("response head");
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).expect("UTF-8 head");
        assert!(head.starts_with("HTTP/1.1 101"), "{mode}: {head}");
        let extensions = head.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("sec-websocket-extensions")
                .then(|| value.trim().to_owned())
        });
        assert_eq!(extensions.as_deref(), answer, "{mode}: {head}");

        // One masked text frame (a zero mask leaves the payload as it is); the sender is in the room.
        let mut frame = vec![0x81, 0x80 | 126];
        frame.extend_from_slice(&(text.len() as u16).to_be_bytes());
        frame.extend_from_slice(&[0, 0, 0, 0]);
        frame.extend_from_slice(text);
        stream.write_all(&frame).expect("write a frame");
        let mut header = [0u8; 2];
        stream.read_exact(&mut header).expect("a frame back");
        assert_eq!(header[0] & 0x0f, 0x1, "{mode}: a text frame");
        let compressed = header[0] & 0x40 != 0;
        assert_eq!(compressed, answer.is_some(), "{mode}: RSV1");
        let len = match header[1] {
            126 => {
                let mut ext = [0u8; 2];
                stream.read_exact(&mut ext).expect("length");
                usize::from(u16::from_be_bytes(ext))
            }
            len => usize::from(len),
        };
        let mut payload = vec![0u8; len];
        stream.read_exact(&mut payload).expect("payload");
        if compressed {
            assert!(
                payload.len() < text.len(),
                "{mode}: deflate made it smaller"
            );
        } else {
            assert_eq!(payload, text, "{mode}");
        }
        drop(stream);
        assert!(example.terminate().success());
    }
}

/// Opens `n` WebSockets to `path` at once and returns them with their first message each.
async fn open_at_once(
    example: &Example,
    path: &str,
    n: usize,
) -> Vec<(crate::support::Client, Value)> {
    let url = format!("ws://{}{path}", example.addr);
    let opens: Vec<_> = (0..n)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                let (mut client, _) = tokio_tungstenite::connect_async(url)
                    .await
                    .expect("upgrade");
                let first = next_json(&mut client).await;
                (client, first)
            })
        })
        .collect();
    let mut clients = Vec::new();
    for open in opens {
        clients.push(open.await.expect("an open ran"));
    }
    clients
}

/// Regression (issue 27): the examples that greet with a count joined, counted and greeted in three
/// steps, so a broadcast (another member's leave, say) could come before a newcomer's welcome, and
/// concurrent joins could be told the same count. Under concurrent joins, and joins beside leaves,
/// every newcomer's first message is its welcome, and concurrent joins into an empty group are told
/// the counts 1..=n, each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn welcomes_come_first_under_concurrent_joins_and_leaves() {
    const JOINS: usize = 16;
    // (example, path, the welcome's type, the field with the count)
    let cases = [
        ("rooms", "/ws/green", "welcome", "userCount"),
        ("broadcast", "/ws", "welcome", "userCount"),
        ("chat", "/", "userCount", "count"),
    ];
    for (name, path, welcome, field) in cases {
        let example = Example::start(name, &[]);
        let mut clients = open_at_once(&example, path, JOINS).await;
        let mut counts: Vec<u64> = clients
            .iter()
            .map(|(_, first)| {
                assert_eq!(
                    first["type"], welcome,
                    "{name}: the first message was {first}"
                );
                first[field]
                    .as_u64()
                    .unwrap_or_else(|| panic!("{name}: no count in {first}"))
            })
            .collect();
        counts.sort_unstable();
        assert_eq!(counts, (1..=JOINS as u64).collect::<Vec<_>>(), "{name}");

        for _wave in 0..3 {
            let leaving: Vec<_> = clients.drain(..JOINS / 2).collect();
            let closes = tokio::spawn(async move {
                for (mut client, _) in leaving {
                    client.close(None).await.expect("close");
                }
            });
            let newcomers = open_at_once(&example, path, JOINS / 2).await;
            closes.await.expect("the closes ran");
            for (_, first) in &newcomers {
                assert_eq!(
                    first["type"], welcome,
                    "{name}: a newcomer's first message was {first}"
                );
            }
            clients.extend(newcomers);
        }
        drop(clients);
        assert!(example.terminate().success(), "{name} stopped gracefully");
    }
}

/// Metric labels never take peer-chosen values: 40 peers closing with 40 different application codes
/// (4000–4019, 3000–3019) make two series, `4xxx` and `3xxx`, not 40.
#[tokio::test]
async fn chat_metrics_fold_peer_chosen_close_codes() {
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    let example = Example::start("chat", &[]);
    for code in (4000..4020).chain(3000..3020) {
        let (mut client, _) = connect(&example, "/", None).await;
        next_json(&mut client).await;
        client
            .close(Some(CloseFrame {
                code: code.into(),
                reason: "".into(),
            }))
            .await
            .expect("close");
        // The server's answer ends the handshake.
        while let Some(Ok(_)) = futures_util::StreamExt::next(&mut client).await {}
    }
    let mut metrics = String::new();
    for _ in 0..200 {
        metrics = request(example.addr, "GET", "/metrics", None).await.1;
        if metrics.contains("verb_ws_closes_total{code=\"3xxx\"} 20") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        metrics.contains("verb_ws_closes_total{code=\"4xxx\"} 20"),
        "{metrics}"
    );
    assert!(
        metrics.contains("verb_ws_closes_total{code=\"3xxx\"} 20"),
        "{metrics}"
    );
    let series = metrics
        .lines()
        .filter(|l| l.starts_with("verb_ws_closes_total{"))
        .count();
    assert_eq!(series, 2, "{metrics}");
    assert!(example.terminate().success());
}
