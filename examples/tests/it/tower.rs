//! The tower parts of the catalogue, run as processes: `http`'s compression, CORS, static files and
//! event stream, `live-feed`'s event stream, and `axum-mount` (Verb's chat nested in axum).

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use verb::test::TestServer;

use crate::support::{Example, connect, next_json, send_json};

/// Reads a streamed response over a raw connection until `enough` says the text so far suffices.
async fn stream_until(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    enough: impl Fn(&str) -> bool,
) -> String {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut head = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !enough(&String::from_utf8_lossy(&seen)) {
        let read = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf))
            .await
            .expect("more of the stream within 10 s")
            .unwrap();
        assert!(
            read > 0,
            "the stream ended: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..read]);
    }
    String::from_utf8_lossy(&seen).into_owned()
}

/// The `http` row's tower-http parts: gzip and br when asked, CORS for `--cors-origin`, `ServeDir`
/// with validators, ranges and no traversal, and `GET /events` resuming after `Last-Event-ID`.
#[tokio::test]
async fn http_example_compresses_allows_cors_serves_files_and_streams_ticks() {
    let example = Example::start(
        "http",
        &["--cors-origin", "https://app.example", "--tick-ms", "40"],
    );
    let server = TestServer::at(example.addr);

    for encoding in ["gzip", "br"] {
        let page = server
            .request(verb::Method::GET, "/")
            .header("accept-encoding", encoding)
            .send()
            .await;
        assert_eq!(page.header("content-encoding"), Some(encoding));
    }
    assert_eq!(server.get("/").await.header("content-encoding"), None);

    let preflight = server
        .request(verb::Method::OPTIONS, "/echo")
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await;
    assert_eq!(preflight.status(), 200);
    assert_eq!(
        preflight.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    let foreign = server
        .request(verb::Method::GET, "/health")
        .header("origin", "https://evil.example")
        .send()
        .await;
    assert_eq!(foreign.header("access-control-allow-origin"), None);

    let file = server.get("/static/chat.html").await;
    assert_eq!(file.status(), 200);
    assert!(
        file.header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    let etag = file.header("etag").expect("an ETag").to_owned();
    assert!(file.header("last-modified").is_some());
    let cached = server
        .request(verb::Method::GET, "/static/chat.html")
        .header("if-none-match", &etag)
        .send()
        .await;
    assert_eq!(cached.status(), 304);
    let part = server
        .request(verb::Method::GET, "/static/chat.html")
        .header("range", "bytes=2-5")
        .send()
        .await;
    assert_eq!(part.status(), 206);
    assert_eq!(part.text(), &file.text()[2..6]);
    for path in ["/static/../Cargo.toml", "/static/%2e%2e/src/lib.rs"] {
        let status = server.get(path).await.status();
        assert!(status == 404 || status == 400, "{path}: {status}");
    }

    let ticks = stream_until(example.addr, "/events", &[], |s| s.contains("id: 2\n")).await;
    assert!(ticks.contains("content-type: text/event-stream"), "{ticks}");
    let first = ticks.find("event: tick\nid: 1\ndata: {").expect("tick 1");
    assert!(ticks[first..].contains("\"n\":1,"), "{ticks}");
    assert!(ticks.find("id: 2\n").unwrap() > first);
    let resumed = stream_until(example.addr, "/events", &[("last-event-id", "41")], |s| {
        s.contains("id: 42\n")
    })
    .await;
    assert!(!resumed.contains("id: 1\n"), "{resumed}");
    assert!(resumed.contains("\"n\":42,"), "{resumed}");

    let status = example.terminate();
    assert!(status.success(), "exit status after SIGTERM: {status}");
}

/// `live-feed`'s event stream carries the WebSocket's data messages; an unknown topic is a 400.
#[tokio::test]
async fn live_feed_streams_a_topic_as_server_sent_events() {
    let example = Example::start("live-feed", &["--tick-ms", "30"]);
    let events = stream_until(example.addr, "/events?topic=crypto", &[], |s| {
        s.matches("data: ").count() >= 2
    })
    .await;
    let line = events
        .lines()
        .find_map(|line| line.strip_prefix("data: "))
        .expect("a data line");
    let message: Value = serde_json::from_str(line).unwrap();
    assert_eq!(message["type"], "data");
    assert_eq!(message["topic"], "crypto");
    assert!(message["data"]["price"].is_number(), "{message}");
    assert!(message["timestamp"].is_string(), "{message}");

    let server = TestServer::at(example.addr);
    for path in ["/events?topic=gossip", "/events"] {
        let refused = server.get(path).await;
        assert_eq!(refused.status(), 400, "{path}");
        assert_eq!(refused.header("content-type"), Some("application/json"));
        assert_eq!(refused.json::<Value>()["error"], "Bad Request");
    }
}

/// `axum-mount`: axum's own routes and static files, CORS on `/api`, and Verb's chat under `/chat`
/// (page, WebSocket, metrics); SIGTERM closes the chat's sockets with 1001 and exits 0.
#[tokio::test]
async fn axum_mount_nests_the_chat_in_axum() {
    let example = Example::start("axum-mount", &["--cors-origin", "https://app.example"]);
    let server = TestServer::at(example.addr);

    let health = server.get("/api/health").await;
    assert_eq!(health.json::<Value>(), json!({ "status": "ok" }));
    let cors = server
        .request(verb::Method::GET, "/api/health")
        .header("origin", "https://app.example")
        .send()
        .await;
    assert_eq!(
        cors.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    let file = server.get("/static/live-feed.html").await;
    assert_eq!(file.status(), 200);
    assert!(file.header("etag").is_some());

    let page = server.get("/chat/").await;
    assert_eq!(page.status(), 200);
    assert!(page.text().contains("WebSocket"), "the chat page");

    let (mut alice, _) = connect(&example, "/chat/ws", None).await;
    assert_eq!(
        next_json(&mut alice).await,
        json!({ "type": "userCount", "count": 1 })
    );
    let (mut bob, _) = connect(&example, "/chat/ws", None).await;
    assert_eq!(
        next_json(&mut bob).await,
        json!({ "type": "userCount", "count": 2 })
    );
    assert_eq!(
        next_json(&mut alice).await,
        json!({ "type": "userCount", "count": 2 })
    );
    send_json(
        &mut bob,
        &json!({ "type": "message", "username": "bob", "message": "hi" }),
    )
    .await;
    for client in [&mut alice, &mut bob] {
        let message = next_json(client).await;
        assert_eq!(
            (&message["type"], &message["username"], &message["message"]),
            (&json!("message"), &json!("bob"), &json!("hi"))
        );
    }
    let metrics = server.get("/chat/metrics").await;
    assert_eq!(metrics.status(), 200);
    assert!(
        metrics.text().contains("verb_ws_connections_open"),
        "{}",
        metrics.text()
    );

    // A cross-site page cannot open the chat through axum either.
    let refused = tokio_tungstenite::connect_async({
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut req = format!("ws://{}/chat/ws", example.addr)
            .into_client_request()
            .unwrap();
        req.headers_mut()
            .insert("origin", "https://evil.example".parse().unwrap());
        req
    })
    .await;
    assert!(refused.is_err());

    let closes = tokio::spawn(async move {
        let mut codes = Vec::new();
        for mut client in [alice, bob] {
            use futures_util::StreamExt;
            while let Some(Ok(frame)) = client.next().await {
                if let tokio_tungstenite::tungstenite::Message::Close(close) = frame {
                    codes.push(close.map(|c| u16::from(c.code)));
                    break;
                }
            }
        }
        codes
    });
    // `terminate` blocks until the process exits: off the runtime, so the clients can answer.
    let exited = tokio::task::spawn_blocking(move || example.terminate());
    assert_eq!(closes.await.unwrap(), [Some(1001), Some(1001)]);
    let status = exited.await.unwrap();
    assert!(status.success(), "exit status after SIGTERM: {status}");
}

/// Runs curl with `args`; its standard output.
fn curl(args: &[&str]) -> String {
    let output = std::process::Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl runs (cargo xtask ci installs it)");
    assert!(
        output.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// curl speaks HTTP/2 to `http` with prior knowledge (h2c) and to `secure` by ALPN, and HTTP/1.1
/// to both when it does not ask.
#[tokio::test]
async fn curl_gets_http2_with_prior_knowledge_and_by_alpn() {
    let http = Example::start("http", &[]);
    let url = format!("http://{}/health", http.addr);
    let h2c = curl(&[
        "--http2-prior-knowledge",
        "--write-out",
        " %{http_version}",
        &url,
    ]);
    assert_eq!(h2c, r#"{"status":"ok"} 2"#);
    let h1 = curl(&["--http1.1", "--write-out", " %{http_version}", &url]);
    assert_eq!(h1, r#"{"status":"ok"} 1.1"#);

    let secure = Example::start("secure", &[]);
    let url = format!("https://localhost:{}/", secure.addr.port());
    let resolve = format!("localhost:{}:127.0.0.1", secure.addr.port());
    let page = curl(&[
        "--insecure",
        "--http2",
        "--resolve",
        &resolve,
        "--write-out",
        "\n%{http_version}",
        &url,
    ]);
    assert!(page.ends_with("\n2"), "{page}");
    assert!(page.contains("<html"), "{page}");
    let page = curl(&[
        "--insecure",
        "--http1.1",
        "--resolve",
        &resolve,
        "--write-out",
        "\n%{http_version}",
        &url,
    ]);
    assert!(page.ends_with("\n1.1"), "{page}");
}
