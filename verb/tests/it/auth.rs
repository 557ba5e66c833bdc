//! Authentication, roles and rate limits, through real clients.

use std::time::Duration;

use serde_json::{Value, json};
use verb::prelude::*;
use verb::test::{TestServer, WsEvent};
use verb::{
    HasRoles, InbandAuth, Jwt, JwtAuth, MessageRateLimit, RateLimit, TokenSource, require_role,
};

const SECRET: &[u8] = b"test secret that is at least 32 bytes long";

fn jwt() -> Jwt {
    Jwt::hs256(SECRET).expect("the test secret is long enough")
}

fn token(role: &str, ttl: Duration) -> String {
    jwt()
        .sign(
            &Claims::new("7", ttl)
                .with_role(role)
                .with("username", "ada"),
        )
        .unwrap()
}

fn b64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n =
            chunk.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// Tokens every verifier must refuse.
fn bad_tokens() -> Vec<(&'static str, String)> {
    let claims = json!({ "sub": "7", "exp": 4_000_000_000u64, "role": "admin" });
    let none = format!(
        "{}.{}.",
        b64url(br#"{"alg":"none","typ":"JWT"}"#),
        b64url(claims.to_string().as_bytes())
    );
    let hs384 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS384),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET),
    )
    .unwrap();
    let forged = Jwt::hs256(b"another secret, also 32 bytes or longer!")
        .unwrap()
        .sign(&Claims::new("7", Duration::from_secs(60)))
        .unwrap();
    // Expired well beyond the 5 s leeway.
    let mut old = Claims::new("7", Duration::ZERO);
    old.exp -= 60;
    let expired = jwt().sign(&old).unwrap();
    vec![
        ("none", none),
        ("wrong algorithm", hs384),
        ("wrong signature", forged),
        ("expired", expired),
        ("garbage", "not-a-token".to_owned()),
    ]
}

fn app() -> App {
    let mut app = verb::create_server();
    let auth = JwtAuth::<Claims>::new(jwt()).sources([
        TokenSource::Bearer,
        TokenSource::Query("token".into()),
        TokenSource::Cookie("token".into()),
        TokenSource::Protocol,
    ]);
    app.get("/me", |req: Request| async move {
        let claims = req.claims::<Claims>().unwrap();
        Json(json!({ "sub": claims.sub, "username": claims.get_str("username") }))
    })
    .middleware(auth.clone());
    app.get("/admin", |_req| async { "admin area" })
        .middleware(auth.clone())
        .middleware(require_role::<Claims>("admin"));
    app.ws(
        "/ws",
        Ws::new()
            .protocols(["access_token"])
            .open(|ws: &WebSocket, req: &Request| {
                let from_req = req.claims::<Claims>().map(|c| c.sub);
                let from_ws = ws.claims::<Claims>().map(|c| c.sub);
                ws.send_json(&json!({ "req": from_req, "ws": from_ws }));
            })
            .message(|ws: &WebSocket, _msg: Message| {
                let claims = ws.claims::<Claims>().unwrap();
                ws.send_text(format!("admin={}", claims.has_role("admin")));
            }),
    )
    .middleware(auth);
    app
}

#[tokio::test]
async fn every_token_source_authenticates_http_and_upgrades() {
    let server = TestServer::start(app()).await;
    let good = token("user", Duration::from_secs(60));

    let bearer = server
        .request(Method::GET, "/me")
        .header("authorization", &format!("Bearer {good}"))
        .send()
        .await;
    assert_eq!(bearer.status(), StatusCode::OK);
    assert_eq!(
        bearer.json::<Value>(),
        json!({ "sub": "7", "username": "ada" })
    );
    let query = server.get(&format!("/me?token={good}")).await;
    assert_eq!(query.status(), StatusCode::OK);
    let cookie = server
        .request(Method::GET, "/me")
        .header("cookie", &format!("theme=dark; token={good}"))
        .send()
        .await;
    assert_eq!(cookie.status(), StatusCode::OK);

    // Upgrades: claims are typed in `open` (from the request and from the connection) and later.
    let mut by_query = server.ws(&format!("/ws?token={good}")).await;
    assert_eq!(
        by_query.recv_json::<Value>().await,
        json!({ "req": "7", "ws": "7" })
    );
    by_query.send_text("hi").await;
    assert_eq!(by_query.recv_text().await, "admin=false");
    let protocol = format!("access_token, {}", token("admin", Duration::from_secs(60)));
    let mut by_protocol = server
        .try_ws("/ws", &[("sec-websocket-protocol", protocol.as_str())])
        .await
        .expect("the protocol token is accepted");
    assert_eq!(by_protocol.protocol(), Some("access_token"));
    by_protocol.recv_json::<Value>().await;
    by_protocol.send_text("hi").await;
    assert_eq!(by_protocol.recv_text().await, "admin=true");
    let bearer_ws = server
        .try_ws("/ws", &[("authorization", &format!("Bearer {good}"))])
        .await;
    assert!(bearer_ws.is_ok());
}

#[tokio::test]
async fn bad_and_missing_tokens_are_refused_before_any_websocket() {
    let server = TestServer::start(app()).await;
    let missing = server.get("/me").await;
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        missing.header("www-authenticate"),
        Some(r#"Bearer realm="verb""#)
    );
    assert_eq!(missing.json::<Value>()["message"], "missing token");
    assert_eq!(
        server.try_ws("/ws", &[]).await.err(),
        Some(StatusCode::UNAUTHORIZED)
    );

    for (what, bad) in bad_tokens() {
        let response = server.get(&format!("/me?token={bad}")).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{what}");
        let challenge = response.header("www-authenticate").unwrap_or_default();
        assert!(
            challenge.contains(r#"error="invalid_token""#),
            "{what}: {challenge}"
        );
        assert_eq!(
            server.try_ws(&format!("/ws?token={bad}"), &[]).await.err(),
            Some(StatusCode::UNAUTHORIZED),
            "{what}"
        );
    }
    let expired = server
        .get(&format!("/me?token={}", bad_tokens()[3].1))
        .await;
    assert_eq!(expired.json::<Value>()["message"], "token expired");
}

#[tokio::test]
async fn role_guard_answers_403_to_other_roles() {
    let server = TestServer::start(app()).await;
    let user = server
        .get(&format!(
            "/admin?token={}",
            token("user", Duration::from_secs(60))
        ))
        .await;
    assert_eq!(user.status(), StatusCode::FORBIDDEN);
    assert_eq!(user.json::<Value>()["error"], "Forbidden");
    let admin = server
        .get(&format!(
            "/admin?token={}",
            token("admin", Duration::from_secs(60))
        ))
        .await;
    assert_eq!(admin.status(), StatusCode::OK);
    assert_eq!(admin.text(), "admin area");
    assert_eq!(
        server.get("/admin").await.status(),
        StatusCode::UNAUTHORIZED
    );
}

fn inband_app() -> App {
    let mut app = verb::create_server();
    app.ws(
        "/ws",
        Ws::new()
            .attach(
                // Under 10 s: the test client's own patience (in paused test time) is 10 s.
                InbandAuth::<Claims>::new(jwt())
                    .timeout(Duration::from_secs(5))
                    .on_success(|ws: &WebSocket, claims: &Claims| {
                        ws.send_json(&json!({ "type": "auth_success", "user": claims.sub }));
                    }),
            )
            .message(|ws: &WebSocket, msg: Message| {
                ws.send(msg);
            }),
    );
    app
}

#[tokio::test(start_paused = true)]
async fn inband_auth_gates_messages_and_closes_1008_on_timeout_or_bad_token() {
    let server = TestServer::start(inband_app()).await;

    let mut good = server.ws("/ws").await;
    assert_eq!(
        good.recv_json::<Value>().await,
        json!({ "type": "auth_required", "message": "Please authenticate" })
    );
    good.send_text("too early").await;
    assert_eq!(
        good.recv_json::<Value>().await,
        json!({ "type": "error", "message": "Authentication required" })
    );
    let token = token("user", Duration::from_secs(3600));
    good.send_json(&json!({ "type": "auth", "token": token }))
        .await;
    assert_eq!(
        good.recv_json::<Value>().await,
        json!({ "type": "auth_success", "user": "7" })
    );
    good.send_text("now it counts").await;
    assert_eq!(good.recv_text().await, "now it counts");

    let mut bad = server.ws("/ws").await;
    bad.recv_json::<Value>().await;
    bad.send_json(&json!({ "type": "auth", "token": bad_tokens()[0].1 }))
        .await;
    assert_eq!(
        bad.recv_json::<Value>().await,
        json!({ "type": "auth_failed", "message": "Invalid token" })
    );
    assert_eq!(bad.recv_close().await.0, CloseCode::POLICY_VIOLATION);

    let mut silent = server.ws("/ws").await;
    silent.recv_json::<Value>().await;
    let started = tokio::time::Instant::now();
    assert_eq!(
        silent.recv_json::<Value>().await,
        json!({ "type": "auth_timeout", "message": "Authentication timeout" })
    );
    assert_eq!(
        silent.recv_close().await,
        (
            CloseCode::POLICY_VIOLATION,
            "Authentication timeout".to_owned()
        )
    );
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );

    // Past the deadline, the authenticated connection is unaffected.
    good.send_text("still here").await;
    assert_eq!(good.recv_text().await, "still here");
}

#[tokio::test]
async fn http_rate_limit_answers_429_with_headers_and_recovers() {
    let mut app = verb::create_server();
    app.post("/login", |_req| async { "ok" })
        .middleware(RateLimit::per(1, Duration::from_secs(1)).burst(2));
    let server = TestServer::start(app).await;

    let first = server.post("/login").send().await;
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(first.header("ratelimit-limit"), Some("2"));
    assert_eq!(first.header("ratelimit-remaining"), Some("1"));
    assert_eq!(server.post("/login").send().await.status(), StatusCode::OK);
    let limited = server.post("/login").send().await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.header("retry-after"), Some("1"));
    assert_eq!(limited.header("ratelimit-remaining"), Some("0"));
    assert_eq!(limited.json::<Value>()["error"], "Too Many Requests");

    // The limiter runs on the real clock: one cell comes back after a second.
    tokio::time::sleep(Duration::from_millis(1050)).await;
    assert_eq!(server.post("/login").send().await.status(), StatusCode::OK);
    assert_eq!(
        server.post("/login").send().await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn a_message_flood_is_limited_and_closed_while_others_are_served() {
    let mut app = verb::create_server();
    app.ws(
        "/ws",
        Ws::new()
            .attach(MessageRateLimit::per_second(5).close_after(20))
            .message(|ws: &WebSocket, msg: Message| {
                ws.send(msg);
            }),
    );
    let server = TestServer::start(app).await;
    let mut flooder = server.ws("/ws").await;
    let mut calm = server.ws("/ws").await;
    for i in 0..100 {
        flooder.send_text(&format!("flood {i}")).await;
    }
    calm.send_text("hello").await;
    assert_eq!(calm.recv_text().await, "hello");

    let (mut echoed, mut refused) = (0, 0);
    let close = loop {
        match flooder.next_event().await {
            WsEvent::Message(msg) => {
                let text = msg.as_text().unwrap_or_default().to_owned();
                if text.starts_with("flood") {
                    echoed += 1;
                } else {
                    assert_eq!(
                        serde_json::from_str::<Value>(&text).unwrap(),
                        json!({ "type": "error", "message": "Rate limit exceeded" })
                    );
                    refused += 1;
                }
            }
            WsEvent::Close(close) => break close,
            WsEvent::Gone => panic!("no close frame"),
            _ => {}
        }
    };
    assert_eq!(close.map(|c| c.0), Some(CloseCode::POLICY_VIOLATION));
    // The burst of 5 passes (plus a refill every 200 ms on a slow machine); then 19 refusals in a
    // row, and the 20th closes.
    assert!((5..80).contains(&echoed), "{echoed} echoed");
    assert!(refused >= 19, "{refused} refused");
    assert!(
        echoed + refused < 100,
        "the flood was cut short by the close"
    );
    calm.send_text("still fine").await;
    assert_eq!(calm.recv_text().await, "still fine");
}

/// Upgrade attempts are limited per client IP like any route, before any WebSocket exists.
#[tokio::test]
async fn upgrade_attempts_are_rate_limited_per_client() {
    let mut app = verb::create_server();
    app.ws("/ws", Ws::new())
        .middleware(RateLimit::per_minute(2));
    let server = TestServer::start(app).await;
    assert!(server.try_ws("/ws", &[]).await.is_ok());
    assert!(server.try_ws("/ws", &[]).await.is_ok());
    assert_eq!(
        server.try_ws("/ws", &[]).await.err(),
        Some(StatusCode::TOO_MANY_REQUESTS)
    );
}

/// A server behind `limit`, keyed by the `x-client` header.
async fn keyed_server(limit: RateLimit) -> (TestServer, RateLimit) {
    let limit = limit.key_by(|req: &Request| req.header("x-client").map(str::to_owned));
    let mut app = verb::create_server();
    app.get("/", |_req| async { "ok" })
        .middleware(limit.clone());
    (TestServer::start(app).await, limit)
}

/// One request from client `client`; its status.
async fn request_as(server: &TestServer, client: usize) -> StatusCode {
    server
        .request(Method::GET, "/")
        .header("x-client", &client.to_string())
        .send()
        .await
        .status()
}

/// A keyed store is capped: past `max_keys` distinct clients, the least recently limited are evicted
/// (and counted), every request is still answered, and the store never holds more than the cap.
#[tokio::test]
async fn the_keyed_store_is_capped_and_counts_evictions() {
    let (server, limit) = keyed_server(RateLimit::per_minute(100).max_keys(160)).await;
    for client in 0..1100 {
        assert_eq!(request_as(&server, client).await, StatusCode::OK);
        assert!(limit.tracked_keys() <= 160, "{} keys", limit.tracked_keys());
    }
    assert!(limit.tracked_keys() >= 100, "{} keys", limit.tracked_keys());
    assert_eq!(limit.evictions() as usize, 1100 - limit.tracked_keys());
}

/// Keys whose bucket has refilled are swept by a timer, with no request needed to trigger it.
#[tokio::test(start_paused = true)]
async fn stale_keys_are_swept_by_a_timer() {
    let (server, limit) = keyed_server(RateLimit::per(10, Duration::from_millis(10))).await;
    for client in 0..300 {
        assert_eq!(request_as(&server, client).await, StatusCode::OK);
    }
    assert_eq!(limit.tracked_keys(), 300);
    // The buckets refill within 10 ms of real time; the sweeper runs every second of test time.
    let real = std::time::Instant::now();
    while limit.tracked_keys() > 0 {
        assert!(
            real.elapsed() < Duration::from_secs(10),
            "{} keys never swept",
            limit.tracked_keys()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(limit.evictions(), 0);
}
