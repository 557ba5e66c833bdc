//! Binding, addresses and graceful stop.

use std::time::Duration;

use tokio::sync::oneshot;
use verb::prelude::*;
use verb::test::TestServer;

use crate::raw::status_of;

/// A graceful stop lets an in-flight request finish, refuses new connections, and then returns.
#[tokio::test]
async fn graceful_stop_finishes_in_flight_requests() {
    let (entered_tx, entered_rx) = oneshot::channel::<()>();
    let entered_tx = std::sync::Mutex::new(Some(entered_tx));
    let mut app = verb::create_server();
    app.get("/slow", move |_req| {
        let entered = entered_tx.lock().unwrap().take();
        async move {
            if let Some(entered) = entered {
                let _ = entered.send(());
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            "finished"
        }
    });
    let server = TestServer::start(app).await;
    let addr = server.addr();
    let handle = server.handle().clone();

    let in_flight = tokio::spawn(crate::raw::exchange(
        addr,
        b"GET /slow HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    ));
    entered_rx.await.unwrap();
    assert_eq!(handle.connections(), 1);

    let stop = tokio::spawn(async move { handle.stop().await });
    let response = in_flight.await.unwrap();
    assert_eq!(status_of(&response), 200);
    assert!(response.ends_with("finished"), "{response}");
    stop.await.unwrap().expect("stopped within the deadline");

    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "a stopped server accepts no connections"
    );
}

/// A request still running at the deadline is dropped, and `stop` says so.
#[tokio::test(start_paused = true)]
async fn graceful_stop_drops_what_is_left_at_the_deadline() {
    let mut app = verb::create_server();
    app.config(ServerConfig::new().shutdown_timeout(Duration::from_secs(2)));
    app.get("/forever", |_req| async {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        "never"
    });
    let server = TestServer::start(app).await;
    let addr = server.addr();
    let client = tokio::spawn(crate::raw::exchange(
        addr,
        b"GET /forever HTTP/1.1\r\nhost: x\r\n\r\n",
    ));
    while server.handle().connections() == 0 {
        tokio::task::yield_now().await;
    }
    let err = server
        .handle()
        .stop()
        .await
        .expect_err("the deadline passes");
    assert!(
        matches!(err, verb::Error::ShutdownTimeout { remaining: 1, .. }),
        "{err}"
    );
    assert_eq!(
        client.await.unwrap(),
        "",
        "the connection was dropped without an answer"
    );
}

/// Idle kept-alive connections do not hold up a graceful stop: they are closed at once.
#[tokio::test]
async fn graceful_stop_closes_idle_connections_at_once() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let mut app = verb::create_server();
    app.get("/", |_req| async { "ok" });
    let server = TestServer::start(app).await;
    let mut idle = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    idle.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut response = Vec::new();
    while !response.ends_with(b"ok") {
        let mut buf = [0; 1024];
        let n = idle.read(&mut buf).await.unwrap();
        assert_ne!(n, 0, "closed before the response");
        response.extend_from_slice(&buf[..n]);
    }
    assert_eq!(server.handle().connections(), 1, "kept alive");

    let started = std::time::Instant::now();
    server.handle().stop().await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(crate::raw::read_to_close(&mut idle).await, "", "closed");
}

/// `listen` accepts a port, a `host:port` string and a socket address; `bind` reports the real port.
#[tokio::test]
async fn bind_accepts_the_usual_address_forms() {
    for addr in [
        verb::ListenAddr::from("127.0.0.1:0"),
        verb::ListenAddr::from(("127.0.0.1", 0)),
        verb::ListenAddr::from("localhost:0"),
        verb::ListenAddr::from(std::net::SocketAddr::from(([127, 0, 0, 1], 0))),
    ] {
        let mut app = verb::create_server();
        app.get("/", |_req| async { "ok" });
        let handle = app
            .bind(addr.clone())
            .await
            .unwrap_or_else(|e| panic!("{addr}: {e}"));
        assert_ne!(handle.local_addr().port(), 0);
        handle.stop().await.unwrap();
    }
}

/// Binding a taken port is an error naming the address, not a panic.
#[tokio::test]
async fn bind_error_names_the_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let err = verb::create_server()
        .bind(addr)
        .await
        .expect_err("the port is taken");
    assert!(
        err.to_string()
            .starts_with(&format!("cannot listen on {addr}")),
        "{err}"
    );
}

/// A TLS protocol without a certificate fails with a clear error rather than serving plain text.
#[tokio::test]
async fn tls_protocols_without_a_certificate_are_refused_clearly() {
    for protocol in [ServerProtocol::Https, ServerProtocol::WebSockets] {
        let err = verb::create_server_with(protocol)
            .bind("127.0.0.1:0")
            .await
            .expect_err("no certificate");
        assert!(matches!(err, verb::Error::Unsupported { .. }), "{err}");
        assert!(err.to_string().contains("app.tls"), "{err}");
    }
}

/// `ServerProtocol::WebSocket` apps serve their HTTP routes.
#[tokio::test]
async fn websocket_protocol_apps_serve_http_routes() {
    let mut app = verb::create_server_with(ServerProtocol::WebSocket);
    app.get("/", |_req| async { Response::html("<p>page</p>") });
    let server = TestServer::start(app).await;
    assert_eq!(server.get("/").await.text(), "<p>page</p>");
}

/// A graceful stop under load: with a few hundred live WebSockets (and messages in flight), every
/// client gets close 1001 "going away", every `close` callback runs exactly once, and the stop ends
/// well before its deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_stop_sends_1001_to_every_websocket_and_closes_each_once() {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    use verb::test::WsEvent;

    const CLIENTS: usize = 300;
    let closes: Arc<Mutex<HashMap<u64, (u16, usize)>>> = Arc::default();
    let seen = Arc::clone(&closes);
    let mut app = verb::create_server();
    let rooms = app.rooms().clone();
    app.ws(
        "/ws",
        Ws::new()
            .open(|ws: &WebSocket, _req: &Request| {
                ws.subscribe("all");
                ws.send_text("ready");
            })
            .message(|ws: &WebSocket, msg: Message| {
                ws.send(msg);
            })
            .close(move |ws: &WebSocket, code: CloseCode, _reason: &str| {
                let mut closes = seen.lock().unwrap();
                closes.entry(ws.id()).or_insert((code.as_u16(), 0)).1 += 1;
            }),
    );
    let server = verb::test::TestServer::start(app).await;
    let mut clients = Vec::with_capacity(CLIENTS);
    for _ in 0..CLIENTS {
        let mut client = server.ws("/ws").await;
        assert_eq!(client.recv_text().await, "ready");
        clients.push(client);
    }
    assert_eq!(rooms.size("all"), CLIENTS);
    // Traffic in flight when the stop begins.
    rooms.publish("all", "last words");
    let readers: Vec<_> = clients
        .into_iter()
        .map(|mut client| {
            tokio::spawn(async move {
                loop {
                    match client.next_event().await {
                        WsEvent::Close(close) => return close,
                        WsEvent::Gone => return None,
                        _ => {}
                    }
                }
            })
        })
        .collect();

    let started = std::time::Instant::now();
    server.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    for reader in readers {
        let close = reader.await.unwrap();
        let (code, reason) = close.expect("a close frame, not a dropped connection");
        assert_eq!(code, CloseCode::GOING_AWAY);
        assert_eq!(reason, "server shutting down");
    }
    let closes = closes.lock().unwrap();
    assert_eq!(closes.len(), CLIENTS);
    assert!(
        closes
            .values()
            .all(|&(code, runs)| runs == 1 && code == 1001),
        "{closes:?}"
    );
    assert_eq!(rooms.connections(), 0);
}

/// A WebSocket peer that never answers the server's 1001 is dropped when the stop's deadline passes,
/// not when its own (longer) close timeout would: the stop ends on time, and `close` runs once.
#[tokio::test]
async fn a_websocket_that_never_answers_the_stop_is_dropped_at_the_deadline() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::AsyncReadExt;

    let closes = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&closes);
    let mut app = verb::create_server();
    app.config(ServerConfig::new().shutdown_timeout(Duration::from_millis(300)));
    app.ws(
        "/ws",
        Ws::new().close_timeout(Duration::from_secs(3600)).close(
            move |_ws: &WebSocket, _code: CloseCode, _reason: &str| {
                seen.fetch_add(1, Ordering::SeqCst);
            },
        ),
    );
    let server = verb::test::TestServer::start(app).await;
    let mut silent = crate::ws_raw::handshake(server.addr(), "/ws").await;

    let started = std::time::Instant::now();
    let err = tokio::time::timeout(Duration::from_secs(5), server.handle().stop())
        .await
        .expect("the stop ends soon after its deadline")
        .expect_err("the peer holds the stop up until the deadline");
    assert!(matches!(err, verb::Error::ShutdownTimeout { .. }), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(closes.load(Ordering::SeqCst), 1, "close ran once");

    // The peer got the 1001 first, then the end of the connection.
    let mut received = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), silent.read_to_end(&mut received))
        .await
        .expect("the server dropped the connection")
        .ok();
    assert_eq!(&received[..4], &[0x88, 22, 0x03, 0xE9], "{received:?}");
}

/// During a graceful stop the server still answers newcomers, once each: readiness says 503 from
/// the moment the stop begins, liveness 200, and the listener closes once what was in flight is done.
#[tokio::test]
async fn readiness_fails_while_a_graceful_stop_drains() {
    let mut app = verb::create_server();
    app.health("/healthz");
    app.readiness("/readyz");
    app.ws("/ws", Ws::new());
    let server = verb::test::TestServer::start(app).await;
    let addr = server.addr();
    let probe = verb::test::TestServer::at(addr);
    assert_eq!(
        probe.get("/readyz").await.json::<serde_json::Value>()["status"],
        "ready"
    );

    // A WebSocket that does not answer the server's close keeps the stop draining.
    let mut lingering = server.ws("/ws").await;
    let stopping = tokio::spawn(async move { server.stop().await });
    let mut refused = None;
    for _ in 0..200 {
        let ready = probe.get("/readyz").await;
        if ready.status() == StatusCode::SERVICE_UNAVAILABLE {
            refused = Some(ready);
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let refused = refused.expect("readiness fails once the stop begins");
    assert_eq!(refused.header("retry-after"), Some("5"));
    assert_eq!(refused.header("connection"), Some("close"));
    assert_eq!(
        refused.json::<serde_json::Value>()["error"],
        "Service Unavailable"
    );
    assert_eq!(probe.get("/healthz").await.status(), StatusCode::OK);

    // The socket hears 1001; once it answers, the stop completes and the port closes.
    assert_eq!(lingering.recv_close().await.0, CloseCode::GOING_AWAY);
    drop(lingering);
    stopping.await.unwrap();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
