//! HTTP/2 on the same port as HTTP/1.1 (h2c with prior knowledge here), and WebSockets over HTTP/2
//! streams (RFC 8441 extended CONNECT), with hyper's HTTP/2 client.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as T;
use tokio_tungstenite::tungstenite::protocol::Role;
use verb::prelude::*;
use verb::test::TestServer;

type Sender = hyper::client::conn::http2::SendRequest<Empty<verb::Bytes>>;

/// An HTTP/2 connection with prior knowledge (no TLS, no upgrade).
async fn h2c(server: &TestServer) -> Sender {
    let tcp = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    sender
}

async fn get(sender: &mut Sender, server: &TestServer, path: &str) -> (StatusCode, String) {
    let req = http::Request::get(server.url(path))
        .body(Empty::new())
        .unwrap();
    let res = sender.send_request(req).await.unwrap();
    assert_eq!(res.version(), http::Version::HTTP_2);
    let status = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Opens a WebSocket on `path` over a new stream of `sender`'s connection: the response and, on 200,
/// the WebSocket.
async fn connect_ws(
    sender: &mut Sender,
    server: &TestServer,
    path: &str,
    protocol: &'static str,
) -> (
    http::response::Parts,
    Option<WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>>,
) {
    let mut req = http::Request::connect(server.url(path))
        .header("sec-websocket-version", "13")
        .body(Empty::new())
        .unwrap();
    req.extensions_mut()
        .insert(hyper::ext::Protocol::from_static(protocol));
    let res = sender.send_request(req).await.unwrap();
    if res.status() != StatusCode::OK {
        return (res.into_parts().0, None);
    }
    let (parts, body) = res.into_parts();
    let upgraded = hyper::upgrade::on(http::Response::from_parts(parts.clone(), body))
        .await
        .unwrap();
    let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Client, None).await;
    (parts, Some(ws))
}

fn app() -> App {
    let mut app = verb::create_server();
    app.get("/hello", |req: Request| async move {
        format!("hello over {:?}", req.version())
    });
    let rooms = app.rooms().clone();
    app.ws(
        "/ws",
        Ws::new()
            .max_payload_length(4096)
            .open(move |ws: &WebSocket, _req: &Request| {
                let _ = rooms.join("all", ws);
                ws.send_text("welcome");
            })
            .message(|ws: &WebSocket, msg: Message| {
                ws.send(msg);
            }),
    );
    app
}

/// Routes answer HTTP/2 with prior knowledge on the HTTP/1.1 port.
#[tokio::test]
async fn routes_answer_http2_with_prior_knowledge() {
    let server = TestServer::start(app()).await;
    let mut h2 = h2c(&server).await;
    for _ in 0..3 {
        assert_eq!(
            get(&mut h2, &server, "/hello").await,
            (StatusCode::OK, "hello over HTTP/2.0".to_owned())
        );
    }
    let (status, body) = get(&mut h2, &server, "/missing").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["error"],
        "Not Found"
    );
    // HTTP/1.1 still works on the same port.
    assert_eq!(server.get("/hello").await.text(), "hello over HTTP/1.1");
    server.stop().await;
}

/// RFC 8441: WebSockets over HTTP/2 streams, several on one connection; closing one leaves the
/// others; limits and close codes as over HTTP/1.1; 1001 on stop.
#[tokio::test]
async fn websockets_run_over_http2_streams() {
    let server = TestServer::start(app()).await;
    let mut h2 = h2c(&server).await;
    // The first request makes sure the server's SETTINGS (with ENABLE_CONNECT_PROTOCOL) are in.
    assert_eq!(get(&mut h2, &server, "/hello").await.0, StatusCode::OK);

    let mut sockets = Vec::new();
    for _ in 0..3 {
        let (head, ws) = connect_ws(&mut h2, &server, "/ws", "websocket").await;
        assert_eq!(head.status, StatusCode::OK);
        assert!(!head.headers.contains_key("sec-websocket-accept"));
        let mut ws = ws.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap(), T::text("welcome"));
        sockets.push(ws);
    }
    for (n, ws) in sockets.iter_mut().enumerate() {
        ws.send(T::text(format!("stream {n}"))).await.unwrap();
    }
    for (n, ws) in sockets.iter_mut().enumerate() {
        assert_eq!(
            ws.next().await.unwrap().unwrap(),
            T::text(format!("stream {n}"))
        );
    }

    // One goes over its limit: only it is closed, with 1009.
    let mut big = sockets.remove(0);
    big.send(T::text("x".repeat(5000))).await.unwrap();
    let close = big.next().await.unwrap().unwrap();
    let T::Close(Some(frame)) = close else {
        panic!("expected a close, got {close:?}");
    };
    assert_eq!(u16::from(frame.code), 1009);
    drop(big);
    for ws in &mut sockets {
        ws.send(T::text("still here")).await.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap(), T::text("still here"));
    }

    // A graceful stop says 1001 on every stream.
    let stopping = tokio::spawn(async move { server.stop().await });
    for mut ws in sockets {
        loop {
            match ws.next().await {
                Some(Ok(T::Close(Some(frame)))) => {
                    assert_eq!(u16::from(frame.code), 1001);
                    break;
                }
                Some(Ok(_)) => {}
                other => panic!("expected a close, got {other:?}"),
            }
        }
    }
    tokio::time::timeout(Duration::from_secs(5), stopping)
        .await
        .unwrap()
        .unwrap();
}

/// A bad extended CONNECT gets its status on its stream; the connection goes on.
#[tokio::test]
async fn bad_extended_connects_get_their_status_and_the_connection_stays() {
    let server = TestServer::start(app()).await;
    let mut h2 = h2c(&server).await;
    assert_eq!(get(&mut h2, &server, "/hello").await.0, StatusCode::OK);

    let (head, _) = connect_ws(&mut h2, &server, "/ws", "not-websocket").await;
    assert_eq!(head.status, StatusCode::BAD_REQUEST);
    let (head, _) = connect_ws(&mut h2, &server, "/nowhere", "websocket").await;
    assert_eq!(head.status, StatusCode::NOT_FOUND);
    let (status, _) = get(&mut h2, &server, "/ws").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    let (head, ws) = connect_ws(&mut h2, &server, "/ws", "websocket").await;
    assert_eq!(head.status, StatusCode::OK);
    drop(ws);
    assert_eq!(get(&mut h2, &server, "/hello").await.0, StatusCode::OK);
    server.stop().await;
}

/// Over TLS, ALPN offers `h2` and `http/1.1`: a client that asks for `h2` gets HTTP/2, its WebSocket
/// runs over a stream (counted with `http="2"`), and one that asks for nothing gets HTTP/1.1.
#[tokio::test]
async fn tls_negotiates_h2_by_alpn_and_carries_websockets_over_it() {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, ServerName};
    use std::sync::Arc;

    let dev = verb::DevCertificate::generate(["localhost"]).unwrap();
    let mut app = app();
    app.tls(dev.tls_config().unwrap());
    app.metrics("/metrics").unwrap();
    let server = TestServer::start(app).await;

    let connect = |alpn: Vec<Vec<u8>>| {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(dev.cert_pem().as_bytes()).unwrap())
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn;
        let addr = server.addr();
        async move {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            tokio_rustls::TlsConnector::from(Arc::new(config))
                .connect(ServerName::try_from("localhost").unwrap(), tcp)
                .await
                .unwrap()
        }
    };

    let tls = connect(vec![b"h2".to_vec(), b"http/1.1".to_vec()]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut h2, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("https://localhost/hello")
        .body(Empty::<verb::Bytes>::new())
        .unwrap();
    let res = h2.send_request(req).await.unwrap();
    assert_eq!(res.version(), http::Version::HTTP_2);
    let mut req = http::Request::connect("https://localhost/ws")
        .header("sec-websocket-version", "13")
        .header("origin", "https://localhost")
        .body(Empty::new())
        .unwrap();
    req.extensions_mut()
        .insert(hyper::ext::Protocol::from_static("websocket"));
    let res = h2.send_request(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let upgraded = hyper::upgrade::on(res).await.unwrap();
    let mut ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Client, None).await;
    assert_eq!(ws.next().await.unwrap().unwrap(), T::text("welcome"));
    ws.send(T::text("secure over h2")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), T::text("secure over h2"));

    // Without ALPN: HTTP/1.1, as before.
    let plain = connect(Vec::new()).await;
    assert_eq!(plain.get_ref().1.alpn_protocol(), None);
    let (mut h1, conn) = hyper::client::conn::http1::handshake(TokioIo::new(plain))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("/metrics")
        .header("host", "localhost")
        .body(Empty::<verb::Bytes>::new())
        .unwrap();
    let res = h1.send_request(req).await.unwrap();
    assert_eq!(res.version(), http::Version::HTTP_11);
    let metrics = res.into_body().collect().await.unwrap().to_bytes();
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(
        metrics
            .lines()
            .any(|line| line.starts_with("verb_ws_upgrades_total")
                && line.contains(r#"http="2""#)
                && line.contains(r#"result="accepted""#)),
        "{metrics}"
    );
    drop(ws);
    server.stop().await;
}

/// A hand-written HTTP/2 client side, frame by frame, for peers that misbehave on purpose.
mod raw {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    pub(super) const HEADERS: u8 = 0x1;
    pub(super) const RST_STREAM: u8 = 0x3;
    pub(super) const SETTINGS: u8 = 0x4;
    pub(super) const GOAWAY: u8 = 0x7;
    pub(super) const CONTINUATION: u8 = 0x9;
    pub(super) const END_STREAM: u8 = 0x1;
    pub(super) const END_HEADERS: u8 = 0x4;

    pub(super) fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut out = Vec::with_capacity(9 + payload.len());
        out.extend_from_slice(&len.to_be_bytes()[1..]);
        out.push(kind);
        out.push(flags);
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    /// HPACK for `GET /` at `localhost`, from the static table and one literal.
    pub(super) fn get_root() -> Vec<u8> {
        let mut block = vec![0x82, 0x86, 0x84, 0x41, 9];
        block.extend_from_slice(b"localhost");
        block
    }

    /// Connects and sends the preface and an empty SETTINGS frame.
    pub(super) async fn connect(addr: std::net::SocketAddr) -> TcpStream {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .unwrap();
        tcp.write_all(&frame(SETTINGS, 0, 0, &[])).await.unwrap();
        tcp
    }

    /// Reads frames until `wanted` returns something for one (type, flags, stream, payload), or the
    /// connection ends (`None`).
    pub(super) async fn until<T>(
        tcp: &mut TcpStream,
        mut wanted: impl FnMut(u8, u8, u32, &[u8]) -> Option<T>,
    ) -> Option<T> {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            while buf.len() >= 9 {
                let len = u32::from_be_bytes([0, buf[0], buf[1], buf[2]]) as usize;
                if buf.len() < 9 + len {
                    break;
                }
                let (kind, flags) = (buf[3], buf[4]);
                let stream = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) & 0x7fff_ffff;
                let found = wanted(kind, flags, stream, &buf[9..9 + len]);
                buf.drain(..9 + len);
                if found.is_some() {
                    return found;
                }
            }
            match tcp.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(read) => buf.extend_from_slice(&chunk[..read]),
            }
        }
    }

    /// Reads frames until a GOAWAY (its error code) or the end of the connection (`None`).
    pub(super) async fn until_goaway(tcp: &mut TcpStream) -> Option<u32> {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            while buf.len() >= 9 {
                let len = u32::from_be_bytes([0, buf[0], buf[1], buf[2]]) as usize;
                if buf.len() < 9 + len {
                    break;
                }
                let kind = buf[3];
                let payload = buf[9..9 + len].to_vec();
                buf.drain(..9 + len);
                if kind == GOAWAY && payload.len() >= 8 {
                    return Some(u32::from_be_bytes(payload[4..8].try_into().unwrap()));
                }
            }
            match tcp.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(read) => buf.extend_from_slice(&chunk[..read]),
            }
        }
    }
}

/// Rapid reset (CVE-2023-44487): streams opened and reset in a loop cost bounded work, and the
/// connection is sent away; other clients are served meanwhile.
#[tokio::test]
async fn a_rapid_reset_flood_is_sent_away() {
    use tokio::io::AsyncWriteExt;
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = std::sync::Arc::clone(&calls);
    let mut app = verb::create_server();
    app.get("/", move |_req| {
        counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            "slow"
        }
    });
    let server = TestServer::start(app).await;
    let mut tcp = raw::connect(server.addr()).await;
    {
        let block = raw::get_root();
        for n in 0..5_000u32 {
            let stream = 2 * n + 1;
            let mut frames = raw::frame(
                raw::HEADERS,
                raw::END_HEADERS | raw::END_STREAM,
                stream,
                &block,
            );
            frames.extend(raw::frame(raw::RST_STREAM, 0, stream, &8u32.to_be_bytes()));
            if tcp.write_all(&frames).await.is_err() {
                break;
            }
        }
    }
    let goaway = tokio::time::timeout(Duration::from_secs(10), raw::until_goaway(&mut tcp))
        .await
        .expect("the server ends the connection");
    // ENHANCE_YOUR_CALM (0xb), or the connection simply closed.
    assert!(matches!(goaway, Some(0xb) | None), "{goaway:?}");
    assert!(
        calls.load(std::sync::atomic::Ordering::Relaxed) < 5_000,
        "bounded work: {} handler calls",
        calls.load(std::sync::atomic::Ordering::Relaxed)
    );
    assert_eq!(server.get("/").await.text(), "slow");
    server.stop().await;
}

/// A CONTINUATION flood (a header block that never ends) is cut off at the head limit instead of
/// being buffered; the server goes on serving.
#[tokio::test]
async fn a_continuation_flood_is_cut_off() {
    use tokio::io::AsyncWriteExt;
    let server = TestServer::start(app()).await;
    let mut tcp = raw::connect(server.addr()).await;
    let mut block = raw::get_root();
    // A literal header with a 1,000-byte value, over and over.
    let mut junk = vec![0x40, 3];
    junk.extend_from_slice(b"x-a");
    junk.extend_from_slice(&[0x7f, 0xe9, 0x06]); // length 1000, HPACK integer with a 7-bit prefix
    junk.extend(std::iter::repeat_n(b'v', 1000));
    block.extend_from_slice(&junk);
    tcp.write_all(&raw::frame(raw::HEADERS, 0, 1, &block))
        .await
        .unwrap();
    let mut sent = 0usize;
    for _ in 0..10_000 {
        if tcp
            .write_all(&raw::frame(raw::CONTINUATION, 0, 1, &junk))
            .await
            .is_err()
        {
            break;
        }
        sent += junk.len();
        if sent > 8 * 1024 * 1024 {
            break;
        }
    }
    let ended = tokio::time::timeout(Duration::from_secs(10), raw::until_goaway(&mut tcp)).await;
    assert!(
        ended.is_ok(),
        "the server cut the flood off (sent {sent} bytes)"
    );
    let mut h2 = h2c(&server).await;
    assert_eq!(get(&mut h2, &server, "/hello").await.0, StatusCode::OK);
    server.stop().await;
}

/// Streams of one connection are independent WebSockets: a client that stops reading one stalls only
/// that stream (flow control per stream), and resetting a stream ends only its WebSocket, with 1006.
#[tokio::test]
async fn http2_websockets_are_independent_streams() {
    let (closed_tx, mut closed_rx) = tokio::sync::mpsc::unbounded_channel::<u16>();
    let mut app = verb::create_server();
    app.ws(
        "/ws",
        Ws::new()
            .backpressure_limit(64 * 1024 * 1024)
            .message(|ws: &WebSocket, msg: Message| {
                if msg.as_text() == Some("flood") {
                    // Far more than any flow-control window.
                    for _ in 0..200 {
                        ws.send(Message::binary(vec![0u8; 32 * 1024]));
                    }
                } else {
                    ws.send(msg);
                }
            })
            .close(move |_ws: &WebSocket, code: CloseCode, _reason: &str| {
                let _ = closed_tx.send(code.as_u16());
            }),
    );
    let server = TestServer::start(app).await;
    let mut h2 = h2c(&server).await;
    let _ = get(&mut h2, &server, "/ws").await;
    let (_, stalled) = connect_ws(&mut h2, &server, "/ws", "websocket").await;
    let mut stalled = stalled.unwrap();
    let (_, other) = connect_ws(&mut h2, &server, "/ws", "websocket").await;
    let mut other = other.unwrap();

    // The stalled stream's 6.4 MB wait on its window; the other stream keeps echoing.
    stalled.send(T::text("flood")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    for n in 0..20 {
        other.send(T::text(format!("ping {n}"))).await.unwrap();
        let reply = tokio::time::timeout(Duration::from_secs(5), other.next())
            .await
            .expect("the other stream is not stalled");
        assert_eq!(reply.unwrap().unwrap(), T::text(format!("ping {n}")));
    }
    // The stalled one gets everything once it reads.
    let mut received = 0;
    while received < 200 * 32 * 1024 {
        match stalled.next().await.unwrap().unwrap() {
            T::Binary(bytes) => received += bytes.len(),
            other => panic!("{other:?}"),
        }
    }

    // Dropping a stream without a closing handshake resets it: only its WebSocket ends, with 1006.
    drop(stalled);
    let code = tokio::time::timeout(Duration::from_secs(5), closed_rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(code, 1006);
    other.send(T::text("after the reset")).await.unwrap();
    assert_eq!(
        other.next().await.unwrap().unwrap(),
        T::text("after the reset")
    );
    drop(other);
    server.stop().await;
}

/// Over the stream limit, a stream is refused (REFUSED_STREAM) and the others go on; a header list
/// over the head limit gets 431 or a reset on its stream, not a dead connection.
#[tokio::test]
async fn http2_stream_and_header_limits_refuse_the_stream_only() {
    use tokio::io::AsyncWriteExt;
    let mut app = verb::create_server();
    app.config(ServerConfig::new().max_concurrent_streams(4));
    app.get("/", |_req| async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        "slow"
    });
    let server = TestServer::start(app).await;
    let mut tcp = raw::connect(server.addr()).await;
    // Wait for the server's SETTINGS (and acknowledge them), so the limit is in force.
    raw::until(&mut tcp, |kind, flags, _, _| {
        (kind == raw::SETTINGS && flags & 1 == 0).then_some(())
    })
    .await
    .unwrap();
    tcp.write_all(&raw::frame(raw::SETTINGS, 1, 0, &[]))
        .await
        .unwrap();
    let block = raw::get_root();
    for n in 0..6u32 {
        tcp.write_all(&raw::frame(
            raw::HEADERS,
            raw::END_HEADERS | raw::END_STREAM,
            2 * n + 1,
            &block,
        ))
        .await
        .unwrap();
    }
    let refused = raw::until(&mut tcp, |kind, _, stream, payload| {
        (kind == raw::RST_STREAM && payload.len() == 4 && payload == 7u32.to_be_bytes())
            .then_some(stream)
    })
    .await;
    assert!(matches!(refused, Some(9 | 11)), "{refused:?}");
    // The first four are answered.
    let mut answered = std::collections::HashSet::new();
    raw::until(&mut tcp, |kind, _, stream, _| {
        if kind == raw::HEADERS {
            answered.insert(stream);
        }
        (answered.len() == 4).then_some(())
    })
    .await
    .unwrap();
    assert_eq!(answered, [1, 3, 5, 7].into_iter().collect());

    drop(tcp);

    // A header list over the 16 KiB head limit, on a new connection.
    let mut tcp = raw::connect(server.addr()).await;
    let mut big = raw::get_root();
    big.extend_from_slice(&[0x40, 3]);
    big.extend_from_slice(b"x-a");
    big.extend_from_slice(&[0x7f, 0x81, 0xa0, 0x01]); // length 127 + 20,481 = 20,608
    big.extend(std::iter::repeat_n(b'v', 20_608));
    let (first, rest) = big.split_at(16_000);
    tcp.write_all(&raw::frame(raw::HEADERS, raw::END_STREAM, 1, first))
        .await
        .unwrap();
    tcp.write_all(&raw::frame(raw::CONTINUATION, raw::END_HEADERS, 1, rest))
        .await
        .unwrap();
    let answer = raw::until(&mut tcp, |kind, _, stream, payload| match kind {
        raw::HEADERS if stream == 1 => Some(format!("headers {payload:02x?}")),
        raw::RST_STREAM if stream == 1 => Some("reset".to_owned()),
        raw::GOAWAY => Some("goaway".to_owned()),
        _ => None,
    })
    .await;
    let answer = answer.expect("an answer on the stream, not a dead connection");
    // `:status: 431`: a literal of indexed name 8 whose value "431" is Huffman-coded (or plain);
    // or the stream is reset.
    assert!(
        answer == "reset"
            || answer.starts_with("headers [48, 83, 69, 90, ff")
            || answer.starts_with("headers [48, 03, 34, 33, 31"),
        "{answer}"
    );
    drop(tcp);
    let mut h2 = h2c(&server).await;
    assert_eq!(get(&mut h2, &server, "/").await.1, "slow");
    server.stop().await;
}

/// Auth works the same over HTTP/2: the token from the query or the subprotocol authenticates an
/// extended CONNECT, and a missing one gets 401 on its stream.
#[tokio::test]
async fn jwt_auth_guards_websockets_over_http2() {
    use verb::{Jwt, JwtAuth, TokenSource};
    let jwt = Jwt::hs256(b"test secret that is at least 32 bytes long").unwrap();
    let good = jwt
        .sign(&Claims::new("7", Duration::from_secs(60)))
        .unwrap();
    let mut app = verb::create_server();
    let auth = JwtAuth::<Claims>::new(jwt)
        .sources([TokenSource::Query("token".into()), TokenSource::Protocol]);
    app.ws(
        "/ws",
        Ws::new()
            .protocols(["access_token"])
            .open(|ws: &WebSocket, _req: &Request| {
                let sub = ws.claims::<Claims>().map(|c| c.sub);
                ws.send_json(&serde_json::json!({ "sub": sub }));
            }),
    )
    .middleware(auth);
    let server = TestServer::start(app).await;
    let mut h2 = h2c(&server).await;
    let _ = get(&mut h2, &server, "/").await;

    let (head, ws) = connect_ws(&mut h2, &server, &format!("/ws?token={good}"), "websocket").await;
    assert_eq!(head.status, StatusCode::OK);
    let mut ws = ws.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), T::text(r#"{"sub":"7"}"#));

    let (head, _) = connect_ws(&mut h2, &server, "/ws", "websocket").await;
    assert_eq!(head.status, StatusCode::UNAUTHORIZED);

    let mut req = http::Request::connect(server.url("/ws"))
        .header("sec-websocket-version", "13")
        .header("sec-websocket-protocol", format!("access_token, {good}"))
        .body(Empty::new())
        .unwrap();
    req.extensions_mut()
        .insert(hyper::ext::Protocol::from_static("websocket"));
    let res = h2.send_request(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["sec-websocket-protocol"], "access_token");
    let by_protocol = hyper::upgrade::on(res).await.unwrap();
    drop((ws, by_protocol));
    server.stop().await;
}

/// A graceful stop over HTTP/2 lets the request in flight finish (GOAWAY, then the stream's end).
#[tokio::test]
async fn a_graceful_stop_finishes_http2_requests_in_flight() {
    let mut app = verb::create_server();
    app.get("/slow", |_req| async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        "finished"
    });
    let server = TestServer::start(app).await;
    let mut h2 = h2c(&server).await;
    let req = http::Request::get(server.url("/slow"))
        .body(Empty::new())
        .unwrap();
    let in_flight = tokio::spawn(h2.send_request(req));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let stopping = tokio::spawn(async move { server.stop().await });
    let res = in_flight.await.unwrap().unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "finished");
    tokio::time::timeout(Duration::from_secs(5), stopping)
        .await
        .unwrap()
        .unwrap();
}

/// A PING flood from a client that never reads costs the server a bounded amount (one pending
/// answer), and does not keep it from serving others.
#[tokio::test]
async fn a_ping_flood_does_not_stall_the_server() {
    use tokio::io::AsyncWriteExt;
    let server = TestServer::start(app()).await;
    let mut flood = raw::connect(server.addr()).await;
    let flooding = tokio::spawn(async move {
        let ping = raw::frame(0x6, 0, 0, &[7u8; 8]);
        let burst: Vec<u8> = ping
            .iter()
            .copied()
            .cycle()
            .take(ping.len() * 1000)
            .collect();
        for _ in 0..100 {
            if flood.write_all(&burst).await.is_err() {
                break;
            }
        }
        flood
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut h2 = h2c(&server).await;
    for _ in 0..5 {
        let served = tokio::time::timeout(Duration::from_secs(5), get(&mut h2, &server, "/hello"))
            .await
            .expect("others are served during the flood");
        assert_eq!(served.0, StatusCode::OK);
    }
    flooding.abort();
    let _ = flooding.await;
    assert_eq!(server.get("/hello").await.status(), StatusCode::OK);
    server.stop().await;
}

/// permessage-deflate is negotiated over HTTP/2 as over HTTP/1.1, and compressed messages round-trip
/// on the stream.
#[tokio::test]
async fn permessage_deflate_works_over_http2() {
    use flate2::Decompress;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let mut app = verb::create_server();
    app.ws(
        "/ws",
        Ws::new()
            .compression(true)
            .message(|ws: &WebSocket, msg: Message| {
                ws.send(msg);
            }),
    );
    let server = TestServer::start(app).await;
    let mut h2 = h2c(&server).await;
    let _ = get(&mut h2, &server, "/").await;
    let mut req = http::Request::connect(server.url("/ws"))
        .header("sec-websocket-version", "13")
        .header("sec-websocket-extensions", "permessage-deflate")
        .body(Empty::new())
        .unwrap();
    req.extensions_mut()
        .insert(hyper::ext::Protocol::from_static("websocket"));
    let res = h2.send_request(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let answer = res.headers()["sec-websocket-extensions"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(answer.starts_with("permessage-deflate"), "{answer}");
    let mut stream = TokioIo::new(hyper::upgrade::on(res).await.unwrap());

    let text = "compressible over HTTP/2 ".repeat(200);
    let compressed = crate::deflate::deflate_once(text.as_bytes());
    assert!(compressed.len() < text.len() / 5);
    // FIN + RSV1 (compressed) + text.
    stream
        .write_all(&crate::ws_raw::frame(0xC1, &compressed))
        .await
        .unwrap();
    let mut head = [0u8; 2];
    stream.read_exact(&mut head).await.unwrap();
    assert_eq!(head[0], 0xC1, "the echo comes back compressed");
    let len = match head[1] & 0x7f {
        126 => {
            let mut len = [0u8; 2];
            stream.read_exact(&mut len).await.unwrap();
            usize::from(u16::from_be_bytes(len))
        }
        len => usize::from(len),
    };
    let mut payload = vec![0; len];
    stream.read_exact(&mut payload).await.unwrap();
    let mut inflater = Decompress::new(false);
    let echoed = crate::deflate::inflate(&mut inflater, &payload);
    assert_eq!(String::from_utf8(echoed).unwrap(), text);
    drop(stream);
    server.stop().await;
}

/// The end of the HTTP/2 connection ends every WebSocket on it (1006, `close` once each); a
/// SETTINGS flood is answered without harm to others.
#[tokio::test]
async fn the_connection_end_closes_all_its_websockets_and_settings_floods_are_harmless() {
    use tokio::io::AsyncWriteExt;
    let (closed_tx, mut closed_rx) = tokio::sync::mpsc::unbounded_channel::<u16>();
    let mut app = verb::create_server();
    app.get("/hello", |_req| async { "hi" });
    app.ws(
        "/ws",
        Ws::new().close(move |_ws: &WebSocket, code: CloseCode, _reason: &str| {
            let _ = closed_tx.send(code.as_u16());
        }),
    );
    let server = TestServer::start(app).await;

    // Two WebSockets on one TCP connection, then the raw connection is cut.
    let tcp = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    let (mut h2, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    let driver = tokio::spawn(conn);
    let _ = get(&mut h2, &server, "/hello").await;
    let (_, first) = connect_ws(&mut h2, &server, "/ws", "websocket").await;
    let (_, second) = connect_ws(&mut h2, &server, "/ws", "websocket").await;
    let (first, second) = (first.unwrap(), second.unwrap());
    driver.abort();
    drop((first, second, h2));
    let mut codes = Vec::new();
    for _ in 0..2 {
        let code = tokio::time::timeout(Duration::from_secs(5), closed_rx.recv())
            .await
            .expect("each WebSocket ends with the connection")
            .unwrap();
        codes.push(code);
    }
    assert_eq!(codes, [1006, 1006]);
    assert!(
        closed_rx.try_recv().is_err(),
        "close runs once per WebSocket"
    );

    // SETTINGS frames by the thousand, never read back.
    let mut flood = raw::connect(server.addr()).await;
    let settings = raw::frame(raw::SETTINGS, 0, 0, &[0, 4, 0, 0, 0xff, 0xff]);
    let burst: Vec<u8> = settings
        .iter()
        .copied()
        .cycle()
        .take(settings.len() * 1000)
        .collect();
    let flooding = tokio::spawn(async move {
        for _ in 0..50 {
            if flood.write_all(&burst).await.is_err() {
                break;
            }
        }
        flood
    });
    let mut other = h2c(&server).await;
    for _ in 0..5 {
        let served =
            tokio::time::timeout(Duration::from_secs(5), get(&mut other, &server, "/hello"))
                .await
                .expect("others are served during the flood");
        assert_eq!(served, (StatusCode::OK, "hi".to_owned()));
    }
    flooding.abort();
    let _ = flooding.await;
    server.stop().await;
}

/// An HTTP/2 peer that stops answering pings is dropped after the keep-alive timeout.
#[tokio::test]
async fn a_peer_that_does_not_answer_pings_is_dropped() {
    let mut app = verb::create_server();
    app.config(
        ServerConfig::new()
            .http2_keep_alive(Duration::from_millis(100), Duration::from_millis(100)),
    );
    app.get("/hello", |_req| async { "hi" });
    let server = TestServer::start(app).await;
    let mut silent = raw::connect(server.addr()).await;
    let started = std::time::Instant::now();
    let mut pinged = false;
    let ended = tokio::time::timeout(
        Duration::from_secs(5),
        raw::until(&mut silent, |kind, flags, _, _| {
            pinged |= kind == 0x6 && flags & 1 == 0;
            None::<()>
        }),
    )
    .await;
    assert!(ended.is_ok(), "dropped within 5 s");
    assert!(pinged, "the server pinged first");
    assert!(started.elapsed() >= Duration::from_millis(100));
    drop(silent);
    server.stop().await;
}
