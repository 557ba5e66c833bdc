//! Limits and hostile input: oversized bodies and heads, malformed requests, slow clients, panics.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use verb::prelude::*;
use verb::test::TestServer;

use crate::raw::{exchange, json_error_of, read_to_close, status_of};

fn app(config: ServerConfig) -> App {
    let mut app = verb::create_server();
    app.config(config);
    app.get("/", |_req| async { "ok" });
    app.post("/echo", |req: Request| async move { req.body().clone() });
    // An app's own empty answers in the shape of hyper's automatic ones.
    app.get("/own-400", |_req: Request| async move {
        Response::new(StatusCode::BAD_REQUEST).header("connection", "close")
    });
    app.get("/own-431", |_req: Request| async move {
        Response::new(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
    });
    app.get("/panic", |_req: Request| async move {
        if true {
            panic!("handler bug");
        }
        "unreachable"
    });
    app
}

/// A body over the limit is refused with a JSON 413, whether its length is declared or streamed.
#[tokio::test]
async fn oversized_body_is_a_413() {
    let server = TestServer::start(app(ServerConfig::new().body_limit(1024))).await;
    let res = server.post("/echo").body(vec![b'x'; 1025]).send().await;
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: serde_json::Value = res.json();
    assert_eq!(body["error"], "Payload Too Large");
    assert_eq!(
        body["message"],
        "request body exceeds the limit of 1024 bytes"
    );

    // Chunked, so the size is only known while reading.
    let chunk = format!("{:x}\r\n{}\r\n", 2000, "y".repeat(2000));
    let request = format!(
        "POST /echo HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n{chunk}0\r\n\r\n"
    );
    let response = exchange(server.addr(), request.as_bytes()).await;
    assert_eq!(status_of(&response), 413, "{response}");

    let res = server.post("/echo").body(vec![b'x'; 1024]).send().await;
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "a body at the limit is accepted"
    );
    assert_eq!(res.bytes().len(), 1024);
}

/// The default body limit is 1 MiB.
#[tokio::test]
async fn default_body_limit_is_one_mebibyte() {
    let server = TestServer::start(app(ServerConfig::default())).await;
    let res = server
        .post("/echo")
        .body(vec![b'x'; 1024 * 1024])
        .send()
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = server
        .post("/echo")
        .body(vec![b'x'; 1024 * 1024 + 1])
        .send()
        .await;
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

/// A request head over 16 KiB gets a 431 and the connection is closed; a smaller one is served.
#[tokio::test]
async fn oversized_head_is_a_431() {
    let server = TestServer::start(app(ServerConfig::default())).await;
    let big = "a".repeat(17 * 1024);
    let response = exchange(
        server.addr(),
        format!("GET / HTTP/1.1\r\nhost: x\r\nx-big: {big}\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(status_of(&response), 431, "{response}");
    let body = json_error_of(&response);
    assert_eq!(body["error"], "Request Header Fields Too Large");
    assert!(response.contains("connection: close\r\n"), "{response}");

    let fits = "a".repeat(15 * 1024);
    let response = exchange(
        server.addr(),
        format!("GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\nx-big: {fits}\r\n\r\n")
            .as_bytes(),
    )
    .await;
    assert_eq!(status_of(&response), 200, "{response}");
    assert_eq!(
        server.get("/").await.text(),
        "ok",
        "the server keeps serving"
    );
}

/// More headers than allowed get a 431: 100 by default, or the configured count.
#[tokio::test]
async fn too_many_headers_are_a_431() {
    fn request(headers: usize) -> Vec<u8> {
        let mut head = String::from("GET / HTTP/1.1\r\nconnection: close\r\n");
        for i in 1..headers {
            head.push_str(&format!("x-h{i}: v\r\n"));
        }
        head.push_str("\r\n");
        head.into_bytes()
    }
    let server = TestServer::start(app(ServerConfig::default())).await;
    assert_eq!(
        status_of(&exchange(server.addr(), &request(100)).await),
        200
    );
    let response = exchange(server.addr(), &request(101)).await;
    assert_eq!(status_of(&response), 431, "{response}");
    assert_eq!(
        json_error_of(&response)["error"],
        "Request Header Fields Too Large"
    );

    let strict = TestServer::start(app(ServerConfig::default().max_headers(5))).await;
    assert_eq!(status_of(&exchange(strict.addr(), &request(5)).await), 200);
    assert_eq!(status_of(&exchange(strict.addr(), &request(6)).await), 431);
}

/// A malformed request line is a 400 with the JSON error body.
#[tokio::test]
async fn malformed_request_line_is_a_400() {
    let server = TestServer::start(app(ServerConfig::default())).await;
    for garbage in [
        &b"GET\r\n\r\n"[..],
        b"G<T / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
        b"\x00\x01\x02\x03\r\n\r\n",
    ] {
        let response = exchange(server.addr(), garbage).await;
        assert_eq!(status_of(&response), 400, "{garbage:?} got {response}");
        let body = json_error_of(&response);
        assert_eq!(body["error"], "Bad Request", "{response}");
        assert!(body["message"].is_string(), "{response}");
    }
    assert_eq!(
        server.get("/").await.text(),
        "ok",
        "the server keeps serving"
    );
}

/// A URI over hyper's limit (64 KiB, reachable when the head limit is raised above it) is a 414 with
/// the JSON error body.
#[tokio::test]
async fn overlong_uri_is_a_414() {
    let server = TestServer::start(app(ServerConfig::default().max_header_size(256 * 1024))).await;
    let path = "a".repeat(70 * 1024);
    let response = exchange(
        server.addr(),
        format!("GET /{path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(status_of(&response), 414, "{response}");
    assert_eq!(json_error_of(&response)["error"], "URI Too Long");
}

/// A request served before an unparsable one on the same connection gets its own answer; the bad
/// one then gets the JSON 400.
#[tokio::test]
async fn a_pipelined_bad_request_is_answered_after_the_good_one() {
    let server = TestServer::start(app(ServerConfig::default())).await;
    let response = exchange(
        server.addr(),
        b"GET / HTTP/1.1\r\nhost: x\r\n\r\nG<T / HTTP/1.1\r\n\r\n",
    )
    .await;
    let (first, second) = response
        .split_once("\r\n\r\nok")
        .unwrap_or_else(|| panic!("the first request was not served: {response:?}"));
    assert_eq!(status_of(first), 200, "{response}");
    assert_eq!(status_of(second), 400, "{response}");
    assert_eq!(json_error_of(second)["error"], "Bad Request");
}

/// An app's own empty `400`/`431` answers, in the very shape of hyper's automatic ones, go out as the
/// app wrote them: no body is added to what the app did not say.
#[tokio::test]
async fn the_apps_own_empty_error_answers_are_unchanged() {
    let server = TestServer::start(app(ServerConfig::default())).await;
    let response = exchange(server.addr(), b"GET /own-400 HTTP/1.1\r\nhost: x\r\n\r\n").await;
    assert_eq!(status_of(&response), 400, "{response}");
    assert!(
        response.ends_with("\r\n\r\n"),
        "a body was added: {response:?}"
    );
    assert!(response.contains("content-length: 0\r\n"), "{response}");

    let response = exchange(
        server.addr(),
        b"GET /own-431 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&response), 431, "{response}");
    assert!(
        response.ends_with("\r\n\r\n"),
        "a body was added: {response:?}"
    );

    // The same connection then meets a request hyper cannot parse: that one gets the JSON body.
    let response = exchange(
        server.addr(),
        b"GET /own-431 HTTP/1.1\r\nhost: x\r\n\r\nGET\r\n\r\n",
    )
    .await;
    let answers: Vec<&str> = response.split("HTTP/1.1 ").skip(1).collect();
    assert_eq!(answers.len(), 2, "{response}");
    assert!(answers[0].starts_with("431 "), "{response}");
    assert!(answers[0].ends_with("\r\n\r\n"), "{response:?}");
    assert!(answers[1].starts_with("400 "), "{response}");
    assert_eq!(json_error_of(answers[1])["error"], "Bad Request");
}

/// A client that does not finish its request head in time is disconnected (slowloris), while others
/// are served.
#[tokio::test(start_paused = true)]
async fn slow_head_is_dropped_after_the_header_timeout() {
    let server = TestServer::start(app(ServerConfig::default())).await;
    let mut slow = TcpStream::connect(server.addr()).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();

    let started = tokio::time::Instant::now();
    assert_eq!(
        server.get("/").await.text(),
        "ok",
        "others are served meanwhile"
    );
    let response = read_to_close(&mut slow).await;
    let waited = started.elapsed();
    assert!(
        response.is_empty(),
        "dropped without an answer: {response:?}"
    );
    assert!(
        waited >= Duration::from_secs(10) && waited < Duration::from_secs(11),
        "dropped after {waited:?}"
    );
}

/// A client that connects and sends nothing is disconnected after the header timeout too.
#[tokio::test(start_paused = true)]
async fn silent_connection_is_dropped_after_the_header_timeout() {
    let server = TestServer::start(app(
        ServerConfig::new().header_read_timeout(Duration::from_secs(3))
    ))
    .await;
    let mut silent = TcpStream::connect(server.addr()).await.unwrap();
    let started = tokio::time::Instant::now();
    read_to_close(&mut silent).await;
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(3) && waited < Duration::from_secs(4),
        "{waited:?}"
    );
}

/// A body that does not arrive in time gets a 408.
#[tokio::test(start_paused = true)]
async fn slow_body_is_a_408() {
    let server = TestServer::start(app(
        ServerConfig::new().body_read_timeout(Duration::from_secs(5))
    ))
    .await;
    let mut slow = TcpStream::connect(server.addr()).await.unwrap();
    slow.write_all(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\nabc")
        .await
        .unwrap();
    let response = read_to_close(&mut slow).await;
    assert_eq!(status_of(&response), 408, "{response}");
}

/// A panicking handler yields a JSON 500, and the server keeps serving, on the same connection too.
#[tokio::test]
async fn panicking_handler_is_a_500_and_the_server_survives() {
    let server = TestServer::start(app(ServerConfig::default())).await;
    let res = server.get("/panic").await;
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        res.json::<serde_json::Value>(),
        serde_json::json!({ "error": "Internal Server Error", "message": "the request handler failed" })
    );
    let response = exchange(
        server.addr(),
        b"GET /panic HTTP/1.1\r\nhost: x\r\n\r\nGET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 500"), "{response}");
    assert!(
        response.contains("HTTP/1.1 200"),
        "the connection kept serving: {response}"
    );
    assert_eq!(server.get("/").await.text(), "ok");
}

/// A client that shuts down its write side right after its request still gets the whole answer,
/// every time: plain requests, and WebSocket upgrades (regression: hyper closed at the EOF, racing
/// the handler).
#[tokio::test]
async fn half_closed_clients_get_their_answer() {
    let mut app = verb::create_server();
    // Answers that take a moment, so the client's EOF arrives while the request is in flight.
    app.middleware(|req: Request, next: Next| async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        next.run(req).await
    });
    app.get("/", |_req| async { "hello" });
    app.ws("/ws", Ws::new());
    let server = TestServer::start(app).await;
    for _ in 0..3 {
        let mut stream = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        stream.shutdown().await.unwrap();
        let answer = crate::raw::read_to_close(&mut stream).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
        assert!(answer.ends_with("hello"), "{answer:?}");

        let mut stream = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
        stream
            .write_all(
                b"GET /ws HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\
                  sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n",
            )
            .await
            .unwrap();
        stream.shutdown().await.unwrap();
        let answer = crate::raw::read_to_close(&mut stream).await;
        assert!(answer.starts_with("HTTP/1.1 101"), "{answer:?}");
    }
}

/// A client that asks for a large response and stops reading holds the server's write for at most
/// `write_timeout`: the connection is then dropped, and others are served meanwhile.
#[tokio::test(start_paused = true)]
async fn a_client_that_stops_reading_is_dropped_after_the_write_timeout() {
    use tokio::io::AsyncReadExt;
    const BIG: usize = 64 * 1024 * 1024;
    let mut app = app(ServerConfig::new().write_timeout(Duration::from_secs(5)));
    let body = bytes::Bytes::from(vec![b'x'; BIG]);
    app.get("/big", move |_req| {
        let body = body.clone();
        async move { body }
    });
    let server = TestServer::start(app).await;
    let mut stalled = TcpStream::connect(server.addr()).await.unwrap();
    stalled
        .write_all(b"GET /big HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    // Not reading for a minute (of test time): the server's socket buffer fills and its write stalls.
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(server.get("/").await.text(), "ok", "others are served");
    let mut received = 0usize;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match stalled.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => received += n,
        }
    }
    assert!(
        received < BIG,
        "the whole response arrived ({received} bytes): the stalled write was never dropped"
    );
}

/// Over `max_connections`, a new connection gets a JSON 503 with `Retry-After` and is closed; once a
/// connection ends, new ones are served again.
#[tokio::test]
async fn connections_over_the_limit_get_a_503() {
    let server = TestServer::start(app(ServerConfig::new().max_connections(2))).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut conn = TcpStream::connect(server.addr()).await.unwrap();
        // A request head in progress keeps the connection open.
        conn.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        held.push(conn);
    }
    let refused = exchange(server.addr(), b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await;
    assert_eq!(status_of(&refused), 503, "{refused}");
    let lower = refused.to_ascii_lowercase();
    assert!(lower.contains("retry-after: 1\r\n"), "{refused}");
    assert!(
        lower.contains("content-type: application/json\r\n"),
        "{refused}"
    );
    let body = refused.split("\r\n\r\n").nth(1).unwrap_or_default();
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(json["error"], "Service Unavailable");

    drop(held.pop());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let answer = exchange(
            server.addr(),
            b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        )
        .await;
        if status_of(&answer) == 200 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never served again: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
