//! WebSockets through a real client (tokio-tungstenite, via `verb::test`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use verb::prelude::*;
use verb::test::{TestServer, WsEvent};
use verb::{OverCapacity, ReadyState};

fn echo() -> Ws {
    Ws::new().message(|ws: &WebSocket, msg: Message| {
        ws.send(msg);
    })
}

/// The guides' testing example: open sends `Hello`, the client answers `Hello back`.
#[tokio::test]
async fn guides_testing_example_hello_and_hello_back() {
    let got = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&got);
    let mut app = verb::create_server();
    app.ws(
        "/ws",
        Ws::new()
            .open(|ws: &WebSocket, _req: &Request| {
                ws.send_text("Hello");
            })
            .message(move |_ws: &WebSocket, msg: Message| {
                seen.lock()
                    .unwrap()
                    .push(msg.as_text().unwrap_or_default().to_owned());
            }),
    );
    let server = TestServer::start(app).await;
    let mut client = server.ws("/ws").await;
    assert_eq!(client.recv_text().await, "Hello");
    client.send_text("Hello back").await;
    client.close(1000, "bye").await;
    assert_eq!(client.recv_close().await.0, CloseCode::NORMAL);
    assert_eq!(*got.lock().unwrap(), ["Hello back"]);
}

/// `app.ws("/ws/:room")`: `open` sees params and query; other paths keep serving HTTP.
#[tokio::test]
async fn ws_route_sees_params_and_http_routes_still_work() {
    let mut app = verb::create_server();
    app.get("/", |_req| async { "page" });
    app.ws(
        "/ws/:room",
        Ws::new().open(|ws: &WebSocket, req: &Request| {
            ws.send_text(format!(
                "{} {}",
                req.param("room").unwrap_or_default(),
                req.query("name").unwrap_or_default()
            ));
        }),
    );
    let server = TestServer::start(app).await;
    let mut client = server.ws("/ws/lobby?name=ada").await;
    assert_eq!(client.recv_text().await, "lobby ada");
    assert_eq!(server.get("/").await.text(), "page");
    assert_eq!(
        server.get("/ws/lobby").await.status(),
        StatusCode::UPGRADE_REQUIRED
    );
}

/// `create_server_with(WebSocket)` + `app.websocket`: any path upgrades, `GET /` still serves a page.
#[tokio::test]
async fn websocket_style_upgrades_any_path_while_http_routes_work() {
    let mut app = verb::create_server_with(ServerProtocol::WebSocket);
    app.get("/", |_req| async { Response::html("<p>demo</p>") });
    app.websocket(
        Ws::new()
            .open(|ws: &WebSocket, _req: &Request| {
                ws.send_text("Welcome to WebSocket server!");
            })
            .message(|ws: &WebSocket, msg: Message| {
                ws.send_text(format!("Echo: {}", msg.as_text().unwrap_or_default()));
            }),
    );
    let server = TestServer::start(app).await;
    for path in ["/", "/anything/else"] {
        let mut client = server.ws(path).await;
        assert_eq!(client.recv_text().await, "Welcome to WebSocket server!");
        client.send_text("hi").await;
        assert_eq!(client.recv_text().await, "Echo: hi");
    }
    assert_eq!(server.get("/").await.text(), "<p>demo</p>");
}

/// Route middleware runs before the upgrade and can refuse it with an HTTP response.
#[tokio::test]
async fn middleware_refuses_the_upgrade() {
    let mut app = verb::create_server();
    app.ws("/ws", echo())
        .middleware(|req: Request, next: Next| async move {
            if req.query("token").as_deref() != Some("good") {
                return HttpError::unauthorized("bad token").into_response();
            }
            next.run(req).await
        });
    let server = TestServer::start(app).await;
    let refused = server
        .try_ws("/ws?token=bad", &[])
        .await
        .expect_err("refused");
    assert_eq!(refused, StatusCode::UNAUTHORIZED);
    let mut client = server.ws("/ws?token=good").await;
    client.send_text("in").await;
    assert_eq!(client.recv_text().await, "in");
}

/// Text and binary round-trip unchanged, including large and empty messages.
#[tokio::test]
async fn echo_round_trips_text_and_binary() {
    let mut app = verb::create_server();
    app.ws("/ws", echo());
    let server = TestServer::start(app).await;
    let mut client = server.ws("/ws").await;
    client.send_text("héllo").await;
    assert_eq!(client.recv().await, Message::text("héllo"));
    client.send_binary(&[0, 1, 2, 255]).await;
    assert_eq!(client.recv().await, Message::binary(vec![0, 1, 2, 255]));
    let big: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
    client.send_binary(&big).await;
    assert_eq!(client.recv().await.as_bytes(), &big[..]);
    client.send_text("").await;
    assert_eq!(client.recv().await, Message::text(""));
    client.ping(b"are you there").await;
    match client.next_event().await {
        WsEvent::Pong(payload) => assert_eq!(&payload[..], b"are you there"),
        other => panic!("expected the pong, got {other:?}"),
    }
}

/// A message over `max_payload_length` closes with 1009.
#[tokio::test]
async fn oversized_message_closes_with_1009() {
    let mut app = verb::create_server();
    app.ws("/ws", echo().max_payload_length(1024));
    let server = TestServer::start(app).await;
    let mut client = server.ws("/ws").await;
    client.send_binary(&[7; 1024]).await;
    assert_eq!(client.recv().await.len(), 1024, "at the limit is fine");
    client.send_binary(&[7; 1025]).await;
    assert_eq!(client.recv_close().await.0, CloseCode::MESSAGE_TOO_BIG);
}

/// The server's first protocol that the client offers is chosen; none matching → no header.
#[tokio::test]
async fn subprotocol_negotiation_and_custom_headers() {
    let mut app = verb::create_server();
    app.ws(
        "/ws",
        echo().config(
            WsConfig::new()
                .protocols(["chat", "notification"])
                .header("x-websocket-server", "Verb"),
        ),
    );
    let server = TestServer::start(app).await;
    let client = server
        .try_ws("/ws", &[("sec-websocket-protocol", "notification, chat")])
        .await
        .unwrap();
    assert_eq!(client.protocol(), Some("chat"));
    assert_eq!(client.response_headers()["x-websocket-server"], "Verb");
    let client = server
        .try_ws("/ws", &[("sec-websocket-protocol", "notification")])
        .await
        .unwrap();
    assert_eq!(client.protocol(), Some("notification"));
    let client = server.ws("/ws").await;
    assert_eq!(client.protocol(), None);
}

/// Over `max_connections` the upgrade is refused with 503 + Retry-After by default; a freed slot is
/// reused; the count is observable.
#[tokio::test]
async fn max_connections_refuses_with_503() {
    let mut app = verb::create_server();
    app.ws("/ws", echo().max_connections(2));
    let count = app.connections();
    let server = TestServer::start(app).await;
    let mut a = server.ws("/ws").await;
    let _b = server.ws("/ws").await;
    assert_eq!(count.get(), 2);
    let refused = server.try_ws("/ws", &[]).await.expect_err("over the limit");
    assert_eq!(refused, StatusCode::SERVICE_UNAVAILABLE);
    a.close(1000, "").await;
    a.recv_close().await;
    while count.get() != 1 {
        tokio::task::yield_now().await;
    }
    let _c = server.ws("/ws").await;
}

/// The guide's policy: accept, send the app's message, close with 1013; the app's callbacks stay out.
#[tokio::test]
async fn max_connections_close_with_message_policy() {
    let opened = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&opened);
    let mut app = verb::create_server();
    app.websocket(
        Ws::new()
            .open(move |_ws: &WebSocket, _req: &Request| {
                counter.fetch_add(1, Ordering::SeqCst);
            })
            .max_connections(1)
            .over_capacity(OverCapacity::CloseWith(
                r#"{"type":"error","message":"Server capacity reached"}"#.into(),
            )),
    );
    let server = TestServer::start(app).await;
    let _first = server.ws("/").await;
    let mut second = server.ws("/").await;
    assert_eq!(
        second.recv_text().await,
        r#"{"type":"error","message":"Server capacity reached"}"#
    );
    assert_eq!(second.recv_close().await.0, CloseCode::TRY_AGAIN_LATER);
    assert_eq!(opened.load(Ordering::SeqCst), 1);
}

/// `close` runs exactly once whatever ends the connection: peer close, server close, TCP drop.
#[tokio::test]
async fn close_callback_runs_exactly_once() {
    let closes = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&closes);
    let mut app = verb::create_server();
    app.ws(
        "/ws",
        Ws::new()
            .message(|ws: &WebSocket, msg: Message| {
                if msg.as_text() == Some("close me") {
                    ws.close(4000, "as you wish");
                    ws.close(4001, "twice");
                }
            })
            .close(move |_ws: &WebSocket, code: CloseCode, reason: &str| {
                log.lock().unwrap().push((code.as_u16(), reason.to_owned()));
            }),
    );
    let server = TestServer::start(app).await;

    let mut peer = server.ws("/ws").await;
    peer.close(1000, "done").await;
    assert_eq!(peer.recv_close().await, (CloseCode::NORMAL, String::new()));

    let mut asked = server.ws("/ws").await;
    asked.send_text("close me").await;
    assert_eq!(
        asked.recv_close().await,
        (CloseCode::from(4000), "as you wish".to_owned())
    );
    drop(asked);

    let dropped = server.ws("/ws").await;
    drop(dropped);

    for _ in 0..200 {
        if closes.lock().unwrap().len() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut seen = closes.lock().unwrap().clone();
    seen.sort();
    assert_eq!(
        seen,
        [
            (1000, "done".to_owned()),
            (1006, String::new()),
            (4000, "as you wish".to_owned())
        ]
    );
}

/// Sending from another task (a broadcast loop, a timer) works while the connection reads.
#[tokio::test]
async fn send_from_another_task() {
    let sockets: Arc<Mutex<Vec<WebSocket>>> = Arc::default();
    let registry = Arc::clone(&sockets);
    let mut app = verb::create_server();
    app.ws(
        "/ws",
        Ws::new().open(move |ws: &WebSocket, _req: &Request| {
            registry.lock().unwrap().push(ws.clone());
        }),
    );
    let server = TestServer::start(app).await;
    let mut client = server.ws("/ws").await;
    while sockets.lock().unwrap().is_empty() {
        tokio::task::yield_now().await;
    }
    let ws = sockets.lock().unwrap()[0].clone();
    assert_eq!(ws.ready_state(), ReadyState::Open);
    tokio::spawn(async move {
        for i in 0..100 {
            ws.send_json(&serde_json::json!({ "tick": i }));
        }
    });
    for i in 0..100 {
        let value: serde_json::Value = client.recv_json().await;
        assert_eq!(value["tick"], i);
    }
}

/// A graceful server stop sends 1001 to every open WebSocket and runs every `close` once.
#[tokio::test]
async fn graceful_stop_sends_1001() {
    let closes = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&closes);
    let mut app = verb::create_server();
    app.ws(
        "/ws",
        echo().close(move |_ws: &WebSocket, code: CloseCode, _reason: &str| {
            assert_eq!(code, CloseCode::GOING_AWAY);
            counter.fetch_add(1, Ordering::SeqCst);
        }),
    );
    let server = TestServer::start(app).await;
    let mut clients = Vec::new();
    for _ in 0..50 {
        clients.push(server.ws("/ws").await);
    }
    let handle = server.handle().clone();
    let stop = tokio::spawn(async move { handle.stop().await });
    for client in &mut clients {
        assert_eq!(client.recv_close().await.0, CloseCode::GOING_AWAY);
    }
    drop(clients);
    stop.await.unwrap().expect("stops within the deadline");
    assert_eq!(closes.load(Ordering::SeqCst), 50);
}

/// An idle peer is pinged after half the idle timeout; one that answers stays, one that stays silent is
/// closed with 1001.
#[tokio::test(start_paused = true)]
async fn idle_timeout_pings_then_closes_silent_peers() {
    let mut app = verb::create_server();
    app.ws("/ws", echo().idle_timeout(Duration::from_secs(120)));
    let server = TestServer::start(app).await;
    let mut client = server.ws("/ws").await;
    tokio::time::sleep(Duration::from_secs(61)).await;
    // tungstenite answers pings when it reads, so reading keeps this client alive.
    match client.next_event().await {
        WsEvent::Ping(_) => {}
        other => panic!("expected a ping, got {other:?}"),
    }
    client.send_text("still here").await;
    assert_eq!(client.recv_text().await, "still here");

    // A peer that never reads or writes: the raw socket below.
    let mut silent = crate::ws_raw::handshake(server.addr(), "/ws").await;
    let started = tokio::time::Instant::now();
    let frames = crate::ws_raw::read_frames_to_close(&mut silent).await;
    assert!(started.elapsed() >= Duration::from_secs(120));
    assert_eq!(
        frames.first().map(|f| f.0),
        Some(0x9),
        "pinged first: {frames:?}"
    );
    assert_eq!(crate::ws_raw::close_code(&frames), Some(1001), "{frames:?}");
}

/// `send` reports backpressure against a peer that does not read, and `drain` fires once it reads.
#[tokio::test]
async fn backpressure_is_reported_and_drain_fires() {
    let statuses = Arc::new(Mutex::new(Vec::new()));
    let drained = Arc::new(AtomicUsize::new(0));
    let (log, drains) = (Arc::clone(&statuses), Arc::clone(&drained));
    let mut app = verb::create_server();
    app.ws(
        "/ws",
        Ws::new()
            .backpressure_limit(64 * 1024)
            .message(move |ws: &WebSocket, _msg: Message| {
                let chunk = vec![b'x'; 16 * 1024];
                let mut seen = Vec::new();
                for _ in 0..2000 {
                    seen.push(ws.send(Message::binary(chunk.clone())));
                }
                log.lock().unwrap().extend(seen);
            })
            .drain(move |_ws: &WebSocket| {
                drains.fetch_add(1, Ordering::SeqCst);
            }),
    );
    let server = TestServer::start(app).await;
    let mut client = server.ws("/ws").await;
    client.send_text("flood me").await;
    while statuses.lock().unwrap().is_empty() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let seen = statuses.lock().unwrap().clone();
    assert_eq!(seen[0], SendStatus::Sent);
    assert!(seen.contains(&SendStatus::Backpressured), "{seen:?}");
    assert!(
        seen.contains(&SendStatus::Dropped),
        "memory stays bounded: {seen:?}"
    );
    let queued = seen.iter().filter(|s| s.is_queued()).count();
    for _ in 0..queued {
        assert_eq!(client.recv().await.len(), 16 * 1024);
    }
    for _ in 0..200 {
        if drained.load(Ordering::SeqCst) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(drained.load(Ordering::SeqCst), 1);
}

/// The streaming pattern: send until `Backpressured`, then go on from `drain`. What `drain` sends
/// goes out at once, though the peer sends nothing that would wake the connection.
#[tokio::test]
async fn what_drain_sends_goes_out_without_waiting_for_the_peer() {
    let mut app = verb::create_server();
    app.ws(
        "/ws",
        Ws::new()
            .backpressure_limit(64 * 1024)
            .open(|ws: &WebSocket, _req: &Request| {
                let chunk = vec![b'x'; 16 * 1024];
                while ws.send(Message::binary(chunk.clone())) == SendStatus::Sent {}
            })
            .drain(|ws: &WebSocket| {
                ws.send_text("drained");
            }),
    );
    let server = TestServer::start(app).await;
    let mut client = server.ws("/ws").await;
    let received = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let message = client.recv().await;
            if message.as_text() == Some("drained") {
                return;
            }
            assert_eq!(message.len(), 16 * 1024);
        }
    })
    .await;
    assert!(received.is_ok(), "the message sent from `drain` never came");
}

/// A callback that panics closes its connection with 1011; the server and other connections go on.
#[tokio::test]
async fn panicking_callback_closes_with_1011() {
    let mut app = verb::create_server();
    app.ws(
        "/ws",
        Ws::new().message(|ws: &WebSocket, msg: Message| {
            if msg.as_text() == Some("boom") {
                panic!("callback bug");
            }
            ws.send(msg);
        }),
    );
    let server = TestServer::start(app).await;
    let mut other = server.ws("/ws").await;
    let mut victim = server.ws("/ws").await;
    victim.send_text("boom").await;
    assert_eq!(victim.recv_close().await.0, CloseCode::INTERNAL_ERROR);
    other.send_text("fine").await;
    assert_eq!(other.recv_text().await, "fine");
}

/// With `close_on_backpressure_limit`, a send that finds the queue full closes the peer with 1008.
#[tokio::test]
async fn close_on_backpressure_limit_closes_with_1008() {
    let mut app = verb::create_server();
    app.ws(
        "/ws",
        Ws::new()
            .config(
                WsConfig::new()
                    .backpressure_limit(16 * 1024)
                    .close_on_backpressure_limit(true),
            )
            .message(|ws: &WebSocket, _msg: Message| {
                for _ in 0..1000 {
                    if !ws.send(Message::binary(vec![0u8; 8 * 1024])).is_queued() {
                        break;
                    }
                }
            }),
    );
    let server = TestServer::start(app).await;
    let mut client = server.ws("/ws").await;
    client.send_text("flood me").await;
    assert_eq!(client.recv_close().await.0, CloseCode::POLICY_VIOLATION);
}

/// Attachments hear each connection open and close once, before the app's callbacks, and a
/// panicking attachment hook does not keep the others or the app from running.
#[tokio::test]
async fn attachments_run_before_the_callbacks_once_per_connection() {
    type Log = Arc<Mutex<Vec<String>>>;
    struct Recorder(Log);
    impl verb::Attachment for Recorder {
        fn opened(&self, ws: &WebSocket) {
            self.0.lock().unwrap().push(format!("opened {}", ws.id()));
        }
        fn closed(&self, ws: &WebSocket) {
            self.0.lock().unwrap().push(format!("closed {}", ws.id()));
        }
    }
    struct Panics;
    impl verb::Attachment for Panics {
        fn opened(&self, _ws: &WebSocket) {
            panic!("attachment bug");
        }
    }
    let log: Log = Arc::default();
    let (on_open, on_close) = (Arc::clone(&log), Arc::clone(&log));
    let mut app = verb::create_server();
    app.ws(
        "/ws",
        Ws::new()
            .attach(Panics)
            .attach(Recorder(Arc::clone(&log)))
            .open(move |ws: &WebSocket, _req: &Request| {
                on_open.lock().unwrap().push(format!("open {}", ws.id()));
                assert!(ws.attachment::<Recorder>().is_some());
                ws.send_text("hi");
            })
            .close(move |ws: &WebSocket, _code, _reason: &str| {
                on_close.lock().unwrap().push(format!("close {}", ws.id()));
            }),
    );
    let server = TestServer::start(app).await;
    let mut client = server.ws("/ws").await;
    assert_eq!(client.recv_text().await, "hi");
    client.close(1000, "").await;
    client.recv_close().await;
    server.stop().await;
    let log = log.lock().unwrap();
    let id = log[0].trim_start_matches("opened ");
    assert_eq!(
        *log,
        [
            format!("opened {id}"),
            format!("open {id}"),
            format!("closed {id}"),
            format!("close {id}"),
        ]
    );
}

/// `close_after` closes with the given code after the delay, sending its last message first, unless
/// cancelled; attachments can stop messages before the app sees them.
#[tokio::test(start_paused = true)]
async fn close_after_fires_unless_cancelled_and_attachments_gate_messages() {
    struct Gate;
    impl verb::Attachment for Gate {
        fn message(&self, ws: &WebSocket, message: &Message) -> verb::Verdict {
            match message.as_text() {
                Some("blocked") => {
                    ws.send_text("gate stopped it");
                    verb::Verdict::Stop
                }
                Some("kick") => verb::Verdict::Close(CloseCode::POLICY_VIOLATION, "kicked".into()),
                _ => verb::Verdict::Pass,
            }
        }
    }
    let mut app = verb::create_server();
    app.ws(
        "/ws",
        Ws::new()
            .attach(Gate)
            .open(|ws: &WebSocket, _req: &Request| {
                ws.close_after(
                    Duration::from_secs(5),
                    Some(Message::text("time is up")),
                    4000,
                    "timer",
                );
            })
            .message(|ws: &WebSocket, msg: Message| {
                if msg.as_text() == Some("cancel") {
                    ws.cancel_close_after();
                }
                ws.send(msg);
            }),
    );
    let server = TestServer::start(app).await;
    let mut waits = server.ws("/ws").await;
    let mut cancels = server.ws("/ws").await;
    cancels.send_text("cancel").await;
    assert_eq!(cancels.recv_text().await, "cancel");
    cancels.send_text("blocked").await;
    assert_eq!(cancels.recv_text().await, "gate stopped it");

    let started = tokio::time::Instant::now();
    assert_eq!(waits.recv_text().await, "time is up");
    assert_eq!(
        waits.recv_close().await,
        (CloseCode::from(4000), "timer".to_owned())
    );
    assert!(started.elapsed() >= Duration::from_secs(4));

    // Well past the deadline, the cancelled one still works, until an attachment closes it.
    tokio::time::sleep(Duration::from_secs(8)).await;
    cancels.send_text("still here").await;
    assert_eq!(cancels.recv_text().await, "still here");
    cancels.send_text("kick").await;
    assert_eq!(
        cancels.recv_close().await,
        (CloseCode::POLICY_VIOLATION, "kicked".to_owned())
    );
}

/// Absurdly long timeouts (`Duration::MAX`) mean "never" and do not overflow any deadline.
#[tokio::test]
async fn huge_timeouts_mean_never() {
    let mut app = verb::create_server();
    app.ws(
        "/ws",
        echo()
            .idle_timeout(Duration::MAX)
            .close_timeout(Duration::MAX)
            .open(|ws: &WebSocket, _req: &Request| {
                ws.close_after(Duration::MAX, None, CloseCode::NORMAL, "never");
            }),
    );
    let server = TestServer::start(app).await;
    let mut client = server.ws("/ws").await;
    client.send_text("still fine").await;
    assert_eq!(client.recv_text().await, "still fine");
    client.close(1000, "bye").await;
    match client.next_event().await {
        WsEvent::Close(Some((code, _))) => assert_eq!(code, CloseCode::NORMAL),
        other => panic!("expected the close echo, got {other:?}"),
    }
}

/// `with_data`'s closure runs without the connection's data lock: it reads and stores other values,
/// and a nested access to the same type reads as absent instead of deadlocking.
#[tokio::test]
async fn with_data_closures_may_use_the_connections_other_data() {
    #[derive(Clone)]
    struct Count(u32);
    #[derive(Clone)]
    struct Name(&'static str);
    #[derive(Clone)]
    struct Seen(u32);
    let mut app = verb::create_server();
    app.ws(
        "/ws",
        Ws::new()
            .open(|ws: &WebSocket, _req: &Request| {
                ws.set_data(Count(0));
                ws.set_data(Name("ada"));
            })
            .message(|ws: &WebSocket, _msg: Message| {
                let answer = ws.with_data(|count: &mut Count| {
                    count.0 += 1;
                    let name = ws.data::<Name>().map(|n| n.0);
                    ws.set_data(Seen(count.0));
                    let nested = ws.with_data(|_: &mut Count| ()).is_some();
                    let inner = ws.data::<Count>().is_some();
                    format!("{name:?} {} nested={nested} inner={inner}", count.0)
                });
                let seen = ws.data::<Seen>().map(|s| s.0);
                ws.send_text(format!("{} seen={seen:?}", answer.unwrap_or_default()));
            }),
    );
    let server = TestServer::start(app).await;
    let mut client = server.ws("/ws").await;
    for n in 1..=2 {
        client.send_text("count").await;
        assert_eq!(
            client.recv_text().await,
            format!("Some(\"ada\") {n} nested=false inner=false seen=Some({n})")
        );
    }
}
