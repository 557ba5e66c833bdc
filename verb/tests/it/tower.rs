//! Verb in the tower ecosystem, over real sockets: a Verb app nested in axum, a `Ws` endpoint inside
//! axum, tower-http layers and services in a Verb app, streamed bodies and Server-Sent Events, and
//! the engine over a connection that is not Verb's.

use std::convert::Infallible;
use std::io::Read as _;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use verb::prelude::*;
use verb::test::TestServer;
use verb::{HeaderValue, OnUpgrade, Sse, SseEvent, Upgraded};

/// Serves an axum router on a free loopback port, in the background.
async fn serve_axum(router: axum::Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

/// A Verb app with an HTTP route and a room-chat WebSocket on every path, small message limit.
fn chat_app() -> App {
    let mut app = verb::create_server();
    app.get("/hello", |req: Request| async move {
        Json(json!({ "path": req.path(), "from": req.remote_addr().ip().to_string() }))
    });
    let (joined, said) = (app.rooms().clone(), app.rooms().clone());
    app.websocket(
        Ws::new()
            .max_payload_length(1024)
            .open(move |ws: &WebSocket, _req: &Request| {
                let _ = joined.join("lobby", ws);
            })
            .message(move |_ws: &WebSocket, msg: Message| {
                said.to("lobby").send(msg);
            }),
    );
    app
}

/// A Verb app nested in axum: its routes see paths without the prefix, its WebSockets run over
/// axum's connections with rooms and limits, and its stop handle closes them with 1001.
#[tokio::test]
async fn a_verb_app_nested_in_axum_keeps_routes_rooms_limits_and_stop() {
    let chat = chat_app().into_service();
    let stop = chat.stop_handle();
    let router = axum::Router::new()
        .route(
            "/api/health",
            axum::routing::get(|| async { axum::Json(json!({ "status": "ok" })) }),
        )
        .nest_service("/chat", chat);
    let server = TestServer::at(serve_axum(router).await);

    let health = server.get("/api/health").await;
    assert_eq!(health.json::<Value>(), json!({ "status": "ok" }));
    let hello = server.get("/chat/hello").await;
    assert_eq!(hello.status(), StatusCode::OK);
    assert_eq!(hello.json::<Value>()["path"], "/hello");
    assert_eq!(
        server.get("/chat/nothing").await.status(),
        StatusCode::NOT_FOUND
    );

    let mut alice = server.ws("/chat/ws").await;
    let mut bob = server.ws("/chat/ws").await;
    // Both are in the room once a message from each has come round.
    alice.send_text("hi from alice").await;
    assert_eq!(bob.recv_text().await, "hi from alice");
    assert_eq!(alice.recv_text().await, "hi from alice");

    // The endpoint's limit holds over axum's connection.
    alice.send_text(&"x".repeat(2000)).await;
    assert_eq!(alice.recv_close().await.0, CloseCode::MESSAGE_TOO_BIG);
    drop(alice);

    // The host's shutdown reaches the sockets through the stop handle.
    assert!(!stop.is_stopping());
    let stopping = tokio::spawn({
        let stop = stop.clone();
        async move { stop.stop_within(Duration::from_secs(5)).await }
    });
    assert_eq!(
        bob.recv_close().await,
        (CloseCode::GOING_AWAY, "server shutting down".to_owned())
    );
    drop(bob);
    // The client answered the close and hung up: the stop completes within its deadline.
    stopping.await.unwrap().unwrap();
    assert!(stop.is_stopping());
}

/// Just the WebSocket engine, as an axum route: echo, subprotocols and the origin check.
#[tokio::test]
async fn a_ws_endpoint_alone_serves_an_axum_route() {
    let echo = Ws::new()
        .protocols(["chat"])
        .message(|ws: &WebSocket, msg: Message| {
            ws.send(msg);
        })
        .into_service();
    let router = axum::Router::new()
        .route("/", axum::routing::get(|| async { "axum" }))
        .route_service("/ws", echo);
    let server = TestServer::at(serve_axum(router).await);

    assert_eq!(server.get("/").await.text(), "axum");
    let mut ws = server
        .try_ws("/ws", &[("sec-websocket-protocol", "chat")])
        .await
        .unwrap();
    assert_eq!(ws.protocol(), Some("chat"));
    for n in 0..20 {
        let text = format!("message {n}");
        ws.send_text(&text).await;
        assert_eq!(ws.recv_text().await, text);
    }
    let large = "y".repeat(200_000);
    ws.send_text(&large).await;
    assert_eq!(ws.recv_text().await, large);

    let refused = server
        .try_ws("/ws", &[("origin", "https://evil.example")])
        .await;
    assert_eq!(refused.err(), Some(StatusCode::FORBIDDEN));
}

/// tower-http inside a Verb app: CORS (preflight and simple requests), gzip, a timeout, and
/// `ServeDir` nested as a service (validators, 304, ranges, no traversal).
#[tokio::test]
async fn tower_http_layers_and_services_work_in_a_verb_app() {
    use tower_http::compression::CompressionLayer;
    use tower_http::cors::{AllowOrigin, CorsLayer};
    use tower_http::services::ServeDir;
    use tower_http::timeout::TimeoutLayer;

    let pages = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/pages");
    let mut app = verb::create_server();
    app.get("/big", |_req| async { "verb ".repeat(2000) });
    app.get("/slow", |_req| async {
        tokio::time::sleep(Duration::from_secs(10)).await;
        "late"
    });
    app.nest_service("/static", ServeDir::new(pages));
    app.layer(TimeoutLayer::with_status_code(
        StatusCode::REQUEST_TIMEOUT,
        Duration::from_millis(300),
    ));
    app.layer(CompressionLayer::new());
    app.layer(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(["https://app.example"
                .parse::<HeaderValue>()
                .unwrap()]))
            .allow_methods([Method::GET, Method::POST]),
    );
    let server = TestServer::start(app).await;

    // CORS: a preflight from an allowed origin is answered by the layer; another origin gets no grant.
    let preflight = server
        .request(Method::OPTIONS, "/big")
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .send()
        .await;
    assert_eq!(preflight.status(), StatusCode::OK);
    assert_eq!(
        preflight.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    let other = server
        .request(Method::GET, "/big")
        .header("origin", "https://other.example")
        .send()
        .await;
    assert_eq!(other.header("access-control-allow-origin"), None);

    // gzip for a client that asks, plain for one that does not.
    let gzipped = server
        .request(Method::GET, "/big")
        .header("accept-encoding", "gzip")
        .send()
        .await;
    assert_eq!(gzipped.header("content-encoding"), Some("gzip"));
    let mut text = String::new();
    flate2::read::GzDecoder::new(&gzipped.bytes()[..])
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text, "verb ".repeat(2000));
    assert!(gzipped.bytes().len() < 200);
    let plain = server.get("/big").await;
    assert_eq!(plain.header("content-encoding"), None);
    assert_eq!(plain.text().len(), 10_000);

    // The timeout layer answers for a handler that takes too long.
    assert_eq!(
        server.get("/slow").await.status(),
        StatusCode::REQUEST_TIMEOUT
    );

    // ServeDir: content type and validators, 304 on a match, 206 for a range, nothing outside.
    let page = server.get("/static/chat.html").await;
    assert_eq!(page.status(), StatusCode::OK);
    assert!(
        page.header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    let etag = page.header("etag").map(str::to_owned);
    let modified = page.header("last-modified").unwrap().to_owned();
    let again = server
        .request(Method::GET, "/static/chat.html")
        .header("if-modified-since", &modified)
        .send()
        .await;
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    if let Some(etag) = etag {
        let matched = server
            .request(Method::GET, "/static/chat.html")
            .header("if-none-match", &etag)
            .send()
            .await;
        assert_eq!(matched.status(), StatusCode::NOT_MODIFIED);
    }
    let range = server
        .request(Method::GET, "/static/chat.html")
        .header("range", "bytes=0-14")
        .send()
        .await;
    assert_eq!(range.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(range.text(), &page.text()[..15]);
    for path in [
        "/static/../Cargo.toml",
        "/static/%2e%2e/Cargo.toml",
        "/static/..%2fCargo.toml",
    ] {
        let status = server.get(path).await.status();
        assert!(
            status == StatusCode::NOT_FOUND || status == StatusCode::BAD_REQUEST,
            "{path}: {status}"
        );
    }
    server.stop().await;
}

/// An axum router nested in a Verb app answers under its prefix.
#[tokio::test]
async fn an_axum_router_nested_in_a_verb_app() {
    let api = axum::Router::new().route(
        "/users/{id}",
        axum::routing::get(
            |axum::extract::Path(id): axum::extract::Path<String>| async move {
                axum::Json(json!({ "id": id }))
            },
        ),
    );
    let mut app = verb::create_server();
    app.get("/", |_req| async { "verb" });
    app.nest_service("/api", api);
    let server = TestServer::start(app).await;
    assert_eq!(server.get("/").await.text(), "verb");
    assert_eq!(
        server.get("/api/users/7").await.json::<Value>(),
        json!({ "id": "7" })
    );
    assert_eq!(
        server.get("/api/none").await.status(),
        StatusCode::NOT_FOUND
    );
    server.stop().await;
}

/// Reads a response's body frame by frame over a raw HTTP/1.1 connection.
async fn open_stream(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (http::response::Parts, hyper::body::Incoming) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut req = http::Request::get(path).header("host", addr.to_string());
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let res = sender
        .send_request(
            req.body(http_body_util::Empty::<verb::Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    res.into_parts()
}

async fn next_chunk(body: &mut hyper::body::Incoming) -> Option<String> {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
            .await
            .expect("a chunk within 10 s")?
            .unwrap();
        if let Ok(data) = frame.into_data() {
            return Some(String::from_utf8(data.to_vec()).unwrap());
        }
    }
}

/// A streamed response sends each chunk when it is produced, not when the handler is done.
#[tokio::test]
async fn streamed_responses_send_chunks_as_they_come() {
    let (tx, rx) = tokio::sync::mpsc::channel::<String>(1);
    let rx = std::sync::Mutex::new(Some(rx));
    let mut app = verb::create_server();
    app.get("/stream", move |_req| {
        let rx = rx.lock().unwrap().take();
        async move {
            let rx = rx.expect("one stream");
            let chunks = futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv()
                    .await
                    .map(|chunk| (Ok::<_, Infallible>(chunk), rx))
            });
            Response::stream(chunks).header("content-type", "text/plain")
        }
    });
    let server = TestServer::start(app).await;
    let (head, mut body) = open_stream(server.addr(), "/stream", &[]).await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.headers["content-type"], "text/plain");
    for n in 0..3 {
        // The next chunk is produced only after the previous one arrived.
        tx.send(format!("chunk {n}\n")).await.unwrap();
        assert_eq!(next_chunk(&mut body).await.unwrap(), format!("chunk {n}\n"));
    }
    drop(tx);
    assert_eq!(next_chunk(&mut body).await, None);
    server.stop().await;
}

/// Server-Sent Events: the wire format, `Last-Event-ID` to resume, and keep-alive comments while
/// the stream is quiet.
#[tokio::test]
async fn sse_streams_events_resumes_from_last_event_id_and_keeps_alive() {
    let mut app = verb::create_server();
    app.get("/events", |req: Request| async move {
        let from = req
            .last_event_id()
            .and_then(|id| id.parse::<u64>().ok())
            .map_or(1, |last| last + 1);
        let events = futures_util::stream::iter(from..from + 2).then(|n| async move {
            if n % 2 == 0 {
                // A quiet spell, longer than the keep-alive period.
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            SseEvent::json(&json!({ "n": n }))
                .unwrap()
                .event("tick")
                .id(n.to_string())
        });
        Sse::new(events).keep_alive(Duration::from_millis(100))
    });
    let server = TestServer::start(app).await;

    let (head, mut body) = open_stream(server.addr(), "/events", &[]).await;
    assert_eq!(head.headers["content-type"], "text/event-stream");
    assert_eq!(head.headers["cache-control"], "no-cache");
    let mut seen = String::new();
    while let Some(chunk) = next_chunk(&mut body).await {
        seen.push_str(&chunk);
    }
    assert!(
        seen.starts_with("event: tick\nid: 1\ndata: {\"n\":1}\n\n"),
        "{seen}"
    );
    assert!(seen.contains(": keep-alive\n\n"), "{seen}");
    assert!(
        seen.ends_with("event: tick\nid: 2\ndata: {\"n\":2}\n\n"),
        "{seen}"
    );

    let resumed = server
        .request(Method::GET, "/events")
        .header("last-event-id", "6")
        .send()
        .await;
    let text = resumed.text().replace(": keep-alive\n\n", "");
    assert_eq!(
        text,
        "event: tick\nid: 7\ndata: {\"n\":7}\n\nevent: tick\nid: 8\ndata: {\"n\":8}\n\n"
    );
    server.stop().await;
}

/// The engine runs over any byte stream: here an in-memory duplex, with no server at all.
#[tokio::test]
async fn the_engine_runs_over_an_in_memory_duplex() {
    use tokio_tungstenite::tungstenite::Message as T;
    use tokio_tungstenite::tungstenite::protocol::Role;

    let endpoint = Ws::new().message(|ws: &WebSocket, msg: Message| {
        if let Some(text) = msg.as_text() {
            ws.send_text(format!("echo: {text}"));
        }
    });
    let (server_side, client_side) = tokio::io::duplex(16 * 1024);
    let mut req = Request::builder()
        .header("upgrade", "websocket")
        .header("connection", "Upgrade")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .build();
    req.extensions_mut()
        .insert(OnUpgrade::ready(Upgraded::new(server_side)));
    let res = verb::Handler::call(&endpoint, req).await;
    assert_eq!(res.status(), StatusCode::SWITCHING_PROTOCOLS);

    let mut client =
        tokio_tungstenite::WebSocketStream::from_raw_socket(client_side, Role::Client, None).await;
    for n in 0..50 {
        client.send(T::text(format!("m{n}"))).await.unwrap();
    }
    for n in 0..50 {
        let got = client.next().await.unwrap().unwrap();
        assert_eq!(got, T::text(format!("echo: m{n}")));
    }
    // Larger than the duplex's buffer: the engine waits for the stream to take it.
    let big = "z".repeat(100_000);
    client.send(T::text(big.clone())).await.unwrap();
    assert_eq!(
        client.next().await.unwrap().unwrap(),
        T::text(format!("echo: {big}"))
    );
    client
        .close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
            code: 1000.into(),
            reason: "bye".into(),
        }))
        .await
        .unwrap();
    let echoed = client.next().await.unwrap().unwrap();
    let T::Close(Some(frame)) = echoed else {
        panic!("expected the close echoed, got {echoed:?}");
    };
    assert_eq!(u16::from(frame.code), 1000);
}

/// An event stream never ends by itself; a graceful stop ends it cleanly instead of waiting for the
/// stop's deadline.
#[tokio::test]
async fn a_graceful_stop_ends_open_event_streams() {
    let mut app = verb::create_server();
    app.get("/events", |_req| async {
        let forever = futures_util::stream::iter(1..).then(|n: u64| async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            SseEvent::data(n.to_string())
        });
        Response::sse(forever)
    });
    let server = TestServer::start(app).await;
    let (_, mut body) = open_stream(server.addr(), "/events", &[]).await;
    assert_eq!(next_chunk(&mut body).await.unwrap(), "data: 1\n\n");

    let started = std::time::Instant::now();
    let stopping = tokio::spawn(async move { server.stop().await });
    // The stream ends (a clean end of the body, not an error), then the stop completes.
    while next_chunk(&mut body).await.is_some() {}
    stopping.await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

/// Sends `POST path` with a body that the test feeds chunk by chunk; the response's future.
async fn post_streaming(
    addr: SocketAddr,
    path: &str,
    content_length: Option<u64>,
) -> (
    tokio::sync::mpsc::Sender<verb::Bytes>,
    tokio::task::JoinHandle<(StatusCode, String)>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel::<verb::Bytes>(4);
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let frames = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<_, Infallible>(hyper::body::Frame::data(chunk)), rx))
    });
    let mut req = http::Request::post(path).header("host", addr.to_string());
    if let Some(len) = content_length {
        req = req.header("content-length", len);
    }
    let req = req.body(http_body_util::StreamBody::new(frames)).unwrap();
    let response = tokio::spawn(async move {
        let res = sender.send_request(req).await.unwrap();
        let status = res.status();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    });
    (tx, response)
}

/// A route that streams its body reads an upload as it arrives, past the server's body limit but
/// within its own; over its limit it answers 413, before reading anything when the length is declared.
#[tokio::test]
async fn streamed_request_bodies_arrive_as_they_are_sent_within_the_route_limit() {
    let (first_tx, mut first_rx) = tokio::sync::mpsc::channel::<usize>(1);
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = std::sync::Arc::clone(&calls);
    let mut app = verb::create_server();
    app.config(ServerConfig::new().body_limit(1024));
    app.post("/upload", move |mut req: Request| {
        let first_tx = first_tx.clone();
        counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async move {
            let mut body = req.body_stream();
            let mut total = 0;
            while let Some(chunk) = body.next().await {
                let chunk = chunk?;
                if total == 0 {
                    let _ = first_tx.send(chunk.len()).await;
                }
                total += chunk.len();
            }
            Ok::<_, verb::HttpError>(format!("{total} bytes"))
        }
    })
    .stream_body(1_000_000);
    app.post("/buffered", |req: Request| async move {
        format!("{}", req.body().len())
    });
    let server = TestServer::start(app).await;

    // 600 KB in 100 KB chunks: the handler has the first before the second is sent.
    let (tx, response) = post_streaming(server.addr(), "/upload", None).await;
    tx.send(verb::Bytes::from(vec![b'a'; 100_000]))
        .await
        .unwrap();
    assert!(first_rx.recv().await.unwrap() > 0);
    for _ in 0..5 {
        tx.send(verb::Bytes::from(vec![b'b'; 100_000]))
            .await
            .unwrap();
    }
    drop(tx);
    assert_eq!(
        response.await.unwrap(),
        (StatusCode::OK, "600000 bytes".to_owned())
    );

    // A chunked body that grows past the route's limit: 413 from the handler's `?`.
    let (tx, response) = post_streaming(server.addr(), "/upload", None).await;
    for _ in 0..11 {
        if tx
            .send(verb::Bytes::from(vec![b'c'; 100_000]))
            .await
            .is_err()
        {
            break;
        }
    }
    drop(tx);
    let (status, body) = response.await.unwrap();
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"],
        "Payload Too Large"
    );

    // Declared too large: refused before the handler runs, with nothing sent but the head.
    let before = calls.load(std::sync::atomic::Ordering::SeqCst);
    let (tx, response) = post_streaming(server.addr(), "/upload", Some(5_000_000)).await;
    let (status, _) = response.await.unwrap();
    drop(tx);
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), before);

    // Other routes keep the server's body limit.
    let buffered = server.post("/buffered").body(vec![b'd'; 2000]).send().await;
    assert_eq!(buffered.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        server
            .post("/buffered")
            .body(vec![b'd'; 1000])
            .send()
            .await
            .text(),
        "1000"
    );
    server.stop().await;
}

/// Upgrades pass the layers before their `101` (which the layers may decorate), and the WebSocket
/// works behind them: compression, CORS and timeouts leave it alone, request ids mark its 101.
#[tokio::test]
async fn websockets_upgrade_through_tower_layers() {
    use tower_http::compression::CompressionLayer;
    use tower_http::cors::CorsLayer;
    use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
    use tower_http::timeout::TimeoutLayer;

    let mut app = verb::create_server();
    app.ws(
        "/ws",
        Ws::new().message(|ws: &WebSocket, msg: Message| {
            ws.send(msg);
        }),
    );
    app.layer(TimeoutLayer::with_status_code(
        StatusCode::REQUEST_TIMEOUT,
        Duration::from_millis(200),
    ));
    app.layer(CompressionLayer::new());
    app.layer(CorsLayer::permissive());
    app.layer(PropagateRequestIdLayer::x_request_id());
    app.layer(SetRequestIdLayer::x_request_id(MakeRequestUuid));
    let server = TestServer::start(app).await;

    let mut ws = server
        .try_ws("/ws", &[("accept-encoding", "gzip")])
        .await
        .unwrap();
    assert!(ws.response_headers().contains_key("x-request-id"));
    // Longer than the timeout layer's limit: the connection outlives its request.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let text = "through the layers ".repeat(100);
    ws.send_text(&text).await;
    assert_eq!(ws.recv_text().await, text);
    // The origin check still runs, after the layers.
    let refused = server
        .try_ws("/ws", &[("origin", "https://evil.example")])
        .await;
    assert_eq!(refused.err(), Some(StatusCode::FORBIDDEN));
    drop(ws);
    server.stop().await;
}
