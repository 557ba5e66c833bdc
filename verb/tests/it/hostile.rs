//! Hostile peers over raw TCP: floods, peers that never read, slow bodies. Each test keeps a
//! well-behaved client talking to the same server throughout and checks it was served.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use verb::prelude::*;
use verb::test::{TestServer, TestWs};

use crate::ws_raw::{close_code, frame, handshake, read_frames_to_close};

/// Echo on `/ws` (with `idle` as its idle timeout) and on `/good` (for the well-behaved client).
async fn echo_server(idle: Duration) -> TestServer {
    let mut app = verb::create_server();
    for (path, idle) in [("/ws", idle), ("/good", Duration::from_secs(120))] {
        app.ws(
            path,
            Ws::new()
                .idle_timeout(idle)
                .backpressure_limit(64 * 1024)
                .message(|ws: &WebSocket, msg: Message| {
                    ws.send(msg);
                }),
        );
    }
    TestServer::start(app).await
}

/// The well-behaved client: an echo round trip.
async fn still_served(client: &mut TestWs, text: &str) {
    client.send_text(text).await;
    assert_eq!(client.recv_text().await, text);
}

/// A peer that floods pings (or messages to echo) and never reads: once its pongs and echoes fill the
/// backpressure limit the server stops reading from it, so the flood stays in the peer's own socket
/// buffers instead of the server's memory; the idle timeout then drops it. Others are served all along.
#[tokio::test]
async fn a_flood_from_a_peer_that_never_reads_is_bounded_then_dropped() {
    let server = echo_server(Duration::from_secs(2)).await;
    let mut good = server.ws("/good").await;
    for first in [0x89u8, 0x81] {
        let mut flooder = handshake(server.addr(), "/ws").await;
        let frame = frame(first, &[b'p'; 125]);
        let burst: Vec<u8> = frame
            .iter()
            .copied()
            .cycle()
            .take(frame.len() * 8192)
            .collect();
        // 1 MiB per burst; with the server reading without bound, 64 MiB would go through quickly.
        let flood = async {
            for _ in 0..64 {
                flooder
                    .write_all(&burst)
                    .await
                    .expect("the flood is written");
            }
        };
        let stalled = tokio::time::timeout(Duration::from_millis(1500), flood)
            .await
            .is_err();
        assert!(
            stalled,
            "the server kept reading a flood it could not answer"
        );
        still_served(&mut good, "served during the flood").await;
        // The idle timeout reclaims the flooder: its socket is closed (a reset, since it was full).
        let mut sink = vec![0u8; 1 << 20];
        let closed = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match flooder.read(&mut sink).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "the flooder was never dropped");
        still_served(&mut good, "served after the flood").await;
    }
}

/// A peer that reads nothing while the app sends to it costs at most the backpressure limit (plus
/// the message that crossed it): the rest is reported `Dropped`, and what was queued is delivered
/// once the peer reads.
#[tokio::test]
async fn a_peer_that_never_reads_costs_at_most_the_backpressure_limit() {
    const LIMIT: usize = 256 * 1024;
    const CHUNK: usize = 10_000;
    let outcome = Arc::new(Mutex::new(None::<(usize, usize)>));
    let report = Arc::clone(&outcome);
    let mut app = verb::create_server();
    app.ws(
        "/ws",
        Ws::new()
            .backpressure_limit(LIMIT)
            .message(move |ws: &WebSocket, msg: Message| {
                if msg.as_text() != Some("flood") {
                    ws.send(msg);
                    return;
                }
                let chunk = Message::binary(vec![b'x'; CHUNK]);
                let (mut queued, mut most) = (0, 0);
                for _ in 0..2_000 {
                    if ws.send(chunk.clone()).is_queued() {
                        queued += 1;
                    }
                    most = most.max(ws.buffered_amount());
                }
                *report.lock().unwrap() = Some((queued, most));
            }),
    );
    let server = TestServer::start(app).await;
    let mut good = server.ws("/ws").await;
    let mut silent = handshake(server.addr(), "/ws").await;
    silent.write_all(&frame(0x81, b"flood")).await.unwrap();
    let (queued, most) = loop {
        if let Some(outcome) = *outcome.lock().unwrap() {
            break outcome;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert!(
        most <= LIMIT + CHUNK + 4,
        "{most} bytes queued under a limit of {LIMIT}"
    );
    assert!(queued < 2_000 / 4, "{queued} of 2,000 messages queued");
    still_served(&mut good, "hello").await;
    // Reading now delivers exactly what was queued.
    let expected = queued * (CHUNK + 4);
    let mut buf = vec![0u8; expected];
    tokio::time::timeout(Duration::from_secs(10), silent.read_exact(&mut buf))
        .await
        .expect("the queued frames arrive")
        .expect("read");
    assert!(
        tokio::time::timeout(Duration::from_millis(200), silent.read(&mut [0u8; 1]))
            .await
            .is_err(),
        "nothing beyond what was queued"
    );
}

/// Bad close frames, a continuation without a start and invalid UTF-8 across fragments each get
/// their exact close code while a well-behaved client on the same server keeps working.
#[tokio::test]
async fn protocol_violations_get_exact_codes_while_others_are_served() {
    let server = echo_server(Duration::from_secs(60)).await;
    let mut good = server.ws("/good").await;
    let mut utf8 = frame(0x01, &[b'a', 0xC3]);
    utf8.extend(frame(0x80, &[0x28]));
    let cases: [(&str, Vec<u8>, u16); 6] = [
        ("close code 1005", frame(0x88, &1005u16.to_be_bytes()), 1002),
        ("close with a 1-byte payload", frame(0x88, &[0x03]), 1002),
        ("continuation without a start", frame(0x80, b"x"), 1002),
        ("fragmented ping", frame(0x09, b"p"), 1002),
        ("reserved opcode", frame(0x83, b"x"), 1002),
        ("invalid UTF-8 across fragments", utf8, 1007),
    ];
    for (name, bytes, code) in cases {
        let mut bad = handshake(server.addr(), "/ws").await;
        bad.write_all(&bytes).await.unwrap();
        let frames = read_frames_to_close(&mut bad).await;
        assert_eq!(close_code(&frames), Some(code), "{name}: {frames:?}");
        still_served(&mut good, name).await;
    }
}

/// A slow body gets its 408 while other requests are answered meanwhile.
#[tokio::test(start_paused = true)]
async fn a_slow_body_does_not_hold_up_others() {
    let mut app = verb::create_server();
    app.config(ServerConfig::new().body_read_timeout(Duration::from_secs(5)));
    app.get("/", |_req| async { "ok" });
    app.post("/echo", |req: Request| async move { req.body().clone() });
    let server = TestServer::start(app).await;
    let mut slow = TcpStream::connect(server.addr()).await.unwrap();
    slow.write_all(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\nabc")
        .await
        .unwrap();
    assert_eq!(server.get("/").await.text(), "ok", "served meanwhile");
    let response = crate::raw::read_to_close(&mut slow).await;
    assert_eq!(crate::raw::status_of(&response), 408, "{response}");
    assert_eq!(server.get("/").await.text(), "ok", "served after");
}

/// A peer that reads a large backlog slowly is alive, even though the server stops reading from it
/// while the backlog is over the limit: its reading is what keeps the idle timeout away.
#[tokio::test]
async fn a_slow_reader_draining_a_backlog_is_not_idle() {
    const SIZE: usize = 16 << 20;
    let mut app = verb::create_server();
    app.ws(
        "/ws",
        Ws::new()
            .idle_timeout(Duration::from_secs(1))
            .backpressure_limit(64 * 1024)
            .open(|ws: &WebSocket, _req: &Request| {
                ws.send(Message::binary(vec![b'x'; SIZE]));
            })
            .message(|ws: &WebSocket, msg: Message| {
                ws.send(msg);
            }),
    );
    let server = TestServer::start(app).await;
    // Read at about 4 MB/s: beyond what socket buffers hold, the backlog stays in the server's queue,
    // over the limit, for a few idle timeouts.
    let mut slow = handshake(server.addr(), "/ws").await;
    let mut remaining = 10 + SIZE;
    let mut buf = vec![0u8; 256 * 1024];
    while remaining > 0 {
        let want = remaining.min(buf.len());
        let n = tokio::time::timeout(Duration::from_secs(5), slow.read(&mut buf[..want]))
            .await
            .expect("data keeps coming")
            .expect("read");
        assert!(n > 0, "closed while draining, {remaining} bytes short");
        assert!(
            !(remaining == 10 + SIZE && buf[0] == 0x88),
            "closed instead of sending"
        );
        remaining -= n;
        // The peer talks too (the server, paused, reads it only once the backlog is down).
        slow.write_all(&frame(0x89, b"hb")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    // Still open: an echo comes back (after the server's idle ping, if any).
    slow.write_all(&frame(0x81, b"still here")).await.unwrap();
    let mut got = Vec::new();
    while !got.ends_with(b"still here") {
        let n = tokio::time::timeout(Duration::from_secs(5), slow.read(&mut buf))
            .await
            .expect("the echo arrives")
            .expect("read");
        assert!(n > 0, "closed: {got:?}");
        got.extend_from_slice(&buf[..n]);
        assert!(!got.starts_with(&[0x88]), "closed: {got:?}");
    }
}

/// A peer that floods without pause cannot put off a `close_after` deadline (an authentication
/// timeout, say): the timer is looked at before the socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_does_not_put_off_close_after() {
    let mut app = verb::create_server();
    app.ws(
        "/ws",
        Ws::new().open(|ws: &WebSocket, _req: &Request| {
            ws.close_after(
                Duration::from_millis(300),
                None,
                CloseCode::POLICY_VIOLATION,
                "auth timeout",
            );
        }),
    );
    let server = TestServer::start(app).await;
    let (mut reader, mut writer) = handshake(server.addr(), "/ws").await.into_split();
    let burst: Vec<u8> = (0..64).flat_map(|_| frame(0x82, &[7; 1000])).collect();
    let flood = tokio::spawn(async move {
        let started = std::time::Instant::now();
        while started.elapsed() < Duration::from_secs(20) {
            if writer.write_all(&burst).await.is_err() {
                return;
            }
        }
    });
    let mut head = [0; 4];
    let read = tokio::time::timeout(Duration::from_secs(10), reader.read_exact(&mut head)).await;
    flood.abort();
    read.expect("closed within 10 s, not after the flood")
        .expect("a close frame");
    assert_eq!(head[0], 0x88, "{head:?}");
    assert_eq!(u16::from_be_bytes([head[2], head[3]]), 1008, "{head:?}");
}

/// A header announcing an enormous frame costs nothing until the data comes, even with no payload
/// limit: the read buffer grows with what arrives. The connection ends normally (its `close` runs)
/// when the peer goes away.
#[tokio::test]
async fn an_announced_huge_frame_reserves_nothing_up_front() {
    let closes = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&closes);
    let mut app = verb::create_server();
    app.ws(
        "/ws",
        Ws::new().max_payload_length(usize::MAX).close(
            move |_ws: &WebSocket, code: CloseCode, _reason: &str| {
                seen.lock().unwrap().push(code.as_u16());
            },
        ),
    );
    let server = TestServer::start(app).await;
    let mut stream = handshake(server.addr(), "/ws").await;
    let mut header = vec![0x82, 0x80 | 127];
    header.extend_from_slice(&(1u64 << 62).to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]);
    header.extend_from_slice(&[0; 100]);
    stream.write_all(&header).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(stream);
    for _ in 0..200 {
        if !closes.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        *closes.lock().unwrap(),
        vec![1006],
        "close ran once, after the peer left"
    );
    let mut other = server.ws("/ws").await;
    other.send_text("still serving").await;
}

/// Cross-site WebSocket hijacking (RFC 6455 §10.2): a page on another site opens a WebSocket that
/// the browser sends with the victim's cookie. The default policy refuses a foreign `Origin` with a
/// 403 JSON error before the app's middleware, the route's auth middleware or any callback runs, and
/// lets through upgrades without `Origin` and those from the request's own origin.
#[tokio::test]
async fn a_cross_site_upgrade_is_refused_before_auth_and_app_code() {
    let ran: Arc<Mutex<Vec<&'static str>>> = Arc::default();
    let mut app = verb::create_server();
    let seen = Arc::clone(&ran);
    app.middleware(move |req: Request, next: Next| {
        seen.lock().unwrap().push("app middleware");
        next.run(req)
    });
    let (opened, authed) = (Arc::clone(&ran), Arc::clone(&ran));
    app.ws(
        "/ws",
        Ws::new().open(move |_ws: &WebSocket, _req: &Request| {
            opened.lock().unwrap().push("open");
        }),
    )
    .middleware(move |req: Request, next: Next| {
        authed.lock().unwrap().push("auth");
        next.run(req)
    });
    app.ws(
        "/partner",
        Ws::new().allowed_origins(["https://*.partner.test"]),
    );
    app.ws("/public", Ws::new().any_origin());
    let server = TestServer::start(app).await;
    let own = format!("http://{}", server.addr());

    for origin in [
        "https://evil.test",
        "null",
        "https://127.0.0.1.evil.test",
        "garbage",
    ] {
        let refused = server.try_ws("/ws", &[("origin", origin)]).await;
        assert_eq!(refused.err(), Some(StatusCode::FORBIDDEN), "{origin}");
    }
    assert!(
        ran.lock().unwrap().is_empty(),
        "ran for a foreign origin: {:?}",
        ran.lock().unwrap()
    );
    // The refusal is the usual JSON error, also for a plain request to the endpoint.
    let res = server
        .request(Method::GET, "/ws")
        .header("origin", "https://evil.test")
        .send()
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(res.header("content-type"), Some("application/json"));
    let body: serde_json::Value = res.json();
    assert_eq!(body["error"], "Forbidden");
    assert!(
        body["message"].as_str().unwrap().contains("Origin"),
        "{body}"
    );

    // No Origin (not a browser) and the request's own origin pass, through the whole chain.
    let mut plain = server.try_ws("/ws", &[]).await.expect("no Origin passes");
    let mut same = server
        .try_ws("/ws", &[("origin", &own)])
        .await
        .expect("own origin passes");
    plain.close(1000, "").await;
    same.close(1000, "").await;
    let mut expected = vec!["app middleware", "auth", "open"];
    expected.extend(["app middleware", "auth", "open"]);
    eventually_eq(&ran, &expected).await;

    // An allowed pattern, and an endpoint that opted out.
    assert!(
        server
            .try_ws("/partner", &[("origin", "https://app.partner.test")])
            .await
            .is_ok()
    );
    assert_eq!(
        server
            .try_ws("/partner", &[("origin", "https://partner.test")])
            .await
            .err(),
        Some(StatusCode::FORBIDDEN)
    );
    assert!(
        server
            .try_ws("/public", &[("origin", "https://evil.test")])
            .await
            .is_ok()
    );
    server.stop().await;
}

async fn eventually_eq(ran: &Mutex<Vec<&'static str>>, expected: &[&str]) {
    for _ in 0..500 {
        if ran.lock().unwrap().as_slice() == expected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(ran.lock().unwrap().as_slice(), expected);
}

const SECRET: &[u8] = b"hostile-suite secret, 32 bytes or more";

/// A verifier without leeway, so tokens expire at their `exp` exactly.
fn strict_jwt() -> verb::Jwt {
    verb::Jwt::hs256(SECRET).unwrap().leeway(Duration::ZERO)
}

/// A token for `sub` with `role`, valid for `ttl` (whole seconds), and the moment it expires.
fn token_for(sub: &str, role: &str, ttl: Duration) -> (String, std::time::SystemTime) {
    let claims = Claims::new(sub, ttl).with_role(role);
    let exp = std::time::UNIX_EPOCH + Duration::from_secs(claims.exp);
    (strict_jwt().sign(&claims).unwrap(), exp)
}

/// Waits for the close and checks it did not come before `exp`.
async fn closed_at_expiry(client: &mut TestWs, exp: std::time::SystemTime) -> (CloseCode, String) {
    let close = client.recv_close().await;
    let early = exp
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    // The server's clock and ours are the same; 50 ms for timer granularity.
    assert!(
        early < Duration::from_millis(50),
        "closed {early:?} before exp"
    );
    close
}

/// A WebSocket opened with a token (at the upgrade) does not outlive it: past `exp` (plus the leeway,
/// here 0) it is closed with 1008 `token expired`, unless it refreshed its claims with a newer token
/// of the same subject; `expire_connections(false)` opts out.
#[tokio::test]
async fn a_live_connection_does_not_outlive_its_token() {
    use verb::{ClaimsExt, HasRoles, JwtAuth, RefreshClaims};
    let mut app = verb::create_server();
    let jwt = strict_jwt();
    let echo = move |ws: &WebSocket, msg: Message| {
        let text = msg.as_text().unwrap_or_default().to_owned();
        if let Some(token) = text.strip_prefix("refresh ") {
            let answer = match ws.refresh_claims::<Claims>(&jwt, token) {
                Ok(valid) => format!("refreshed {}", valid.as_secs_f64().round()),
                Err(err) => format!("refused: {err}"),
            };
            ws.send_text(answer);
            return;
        }
        let claims = ws.claims::<Claims>().unwrap();
        let admin = claims.has_role("admin");
        ws.send_text(format!("{}/{admin}: {text}", claims.sub));
    };
    app.ws("/ws", Ws::new().message(echo.clone()))
        .middleware(JwtAuth::<Claims>::new(strict_jwt()));
    app.ws("/forever", Ws::new().message(echo))
        .middleware(JwtAuth::<Claims>::new(strict_jwt()).expire_connections(false));
    let server = TestServer::start(app).await;

    let ttl = Duration::from_secs(2);
    let (short, exp) = token_for("7", "user", ttl);
    let mut idle = server.ws(&format!("/ws?token={short}")).await;
    let mut refreshed = server.ws(&format!("/ws?token={short}")).await;
    let mut impostor = server.ws(&format!("/ws?token={short}")).await;
    let mut forever = server.ws(&format!("/forever?token={short}")).await;
    still_served_as(&mut idle, "hi", "7/false: hi").await;

    let (newer, _) = token_for("7", "admin", Duration::from_secs(60));
    refreshed.send_text(&format!("refresh {newer}")).await;
    // `exp` is in whole seconds: 59.x or 60 left.
    let answer = refreshed.recv_text().await;
    assert!(
        ["refreshed 59", "refreshed 60"].contains(&answer.as_str()),
        "{answer}"
    );
    still_served_as(&mut refreshed, "now", "7/true: now").await;
    let (other, _) = token_for("8", "admin", Duration::from_secs(60));
    impostor.send_text(&format!("refresh {other}")).await;
    assert_eq!(
        impostor.recv_text().await,
        "refused: token is for another subject"
    );
    still_served_as(&mut impostor, "still me", "7/false: still me").await;

    for client in [&mut idle, &mut impostor] {
        assert_eq!(
            closed_at_expiry(client, exp).await,
            (CloseCode::POLICY_VIOLATION, "token expired".to_owned())
        );
    }
    still_served_as(&mut refreshed, "later", "7/true: later").await;
    still_served_as(&mut forever, "later", "7/false: later").await;
}

async fn still_served_as(client: &mut TestWs, text: &str, answer: &str) {
    client.send_text(text).await;
    assert_eq!(client.recv_text().await, answer);
}

/// In-band authentication: before a connection authenticates, a message over 4 KiB closes it with
/// 1009 and broadcasts to everyone skip it; afterwards its token's expiry closes it with 1008 unless
/// it sends `{"type":"refresh"}` with a newer token of the same subject.
#[tokio::test]
async fn inband_auth_bounds_pending_connections_and_expires_tokens() {
    use serde_json::{Value, json};
    use verb::InbandAuth;
    let mut app = verb::create_server();
    let rooms = app.rooms().clone();
    app.ws(
        "/ws",
        Ws::new()
            .attach(InbandAuth::<Claims>::new(strict_jwt()))
            .message(move |ws: &WebSocket, msg: Message| {
                if msg.as_text() == Some("shout") {
                    rooms.everyone().send("to everyone");
                } else {
                    ws.send(msg);
                }
            }),
    );
    let server = TestServer::start(app).await;
    let auth_required = json!({ "type": "auth_required", "message": "Please authenticate" });
    let required = json!({ "type": "error", "message": "Authentication required" });

    let mut pending = server.ws("/ws").await;
    assert_eq!(pending.recv_json::<Value>().await, auth_required);
    let padded = json!({ "type": "hello", "pad": "x".repeat(4000) }).to_string();
    assert!(padded.len() <= 4096);
    pending.send_text(&padded).await;
    assert_eq!(pending.recv_json::<Value>().await, required);

    let mut oversized = server.ws("/ws").await;
    assert_eq!(oversized.recv_json::<Value>().await, auth_required);
    let auth_too_big = json!({ "type": "auth", "token": "x".repeat(5000) }).to_string();
    oversized.send_text(&auth_too_big).await;
    assert_eq!(oversized.recv_close().await.0, CloseCode::MESSAGE_TOO_BIG);

    let (short, exp) = token_for("7", "user", Duration::from_secs(2));
    let mut clients = Vec::new();
    for _ in 0..3 {
        let mut client = server.ws("/ws").await;
        assert_eq!(client.recv_json::<Value>().await, auth_required);
        client
            .send_json(&json!({ "type": "auth", "token": short }))
            .await;
        assert_eq!(
            client.recv_json::<Value>().await,
            json!({ "type": "auth_success" })
        );
        clients.push(client);
    }
    let [mut idle, mut refreshed, mut impostor] = <[TestWs; 3]>::try_from(clients).unwrap();

    // Authenticated, the endpoint's own limit applies again.
    let big = "y".repeat(10_000);
    refreshed.send_text(&big).await;
    assert_eq!(refreshed.recv_text().await, big);

    // A broadcast to everyone reaches the authenticated, not the pending.
    refreshed.send_text("shout").await;
    assert_eq!(refreshed.recv_text().await, "to everyone");
    assert_eq!(idle.recv_text().await, "to everyone");
    assert_eq!(impostor.recv_text().await, "to everyone");
    pending.send_text("and me?").await;
    assert_eq!(pending.recv_json::<Value>().await, required);

    let (newer, _) = token_for("7", "user", Duration::from_secs(60));
    refreshed
        .send_json(&json!({ "type": "refresh", "token": newer }))
        .await;
    let answer = refreshed.recv_json::<Value>().await;
    assert_eq!(answer["type"], "refreshed", "{answer}");
    let expires_in = answer["expiresIn"].as_u64().unwrap();
    assert!((59..=60).contains(&expires_in), "{answer}");
    let (other, _) = token_for("8", "user", Duration::from_secs(60));
    impostor
        .send_json(&json!({ "type": "refresh", "token": other }))
        .await;
    assert_eq!(
        impostor.recv_json::<Value>().await,
        json!({ "type": "auth_failed", "message": "Invalid token" })
    );
    assert_eq!(impostor.recv_close().await.0, CloseCode::POLICY_VIOLATION);

    assert_eq!(
        closed_at_expiry(&mut idle, exp).await,
        (CloseCode::POLICY_VIOLATION, "token expired".to_owned())
    );
    still_served(&mut refreshed, "after the first token expired").await;
}
