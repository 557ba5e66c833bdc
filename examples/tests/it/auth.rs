//! `auth-chat` and `inband-auth`, run as processes: login, tokens, refusals, direct messages, in-band
//! authentication and admin commands.

use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::support::{Client, Example, connect, is_iso_timestamp, next_json, request, send_json};

const SECRET: &str = "a test secret that is long enough for HS256";

async fn login(example: &Example, username: &str, password: &str) -> (u16, Value) {
    let body = json!({ "username": username, "password": password }).to_string();
    let (status, body) = request(example.addr, "POST", "/login", Some(&body)).await;
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

async fn token(example: &Example, username: &str) -> String {
    let (status, body) = login(example, username, "password").await;
    assert_eq!(status, 200, "{body}");
    body["token"].as_str().unwrap().to_owned()
}

/// Opens `/ws?token=...` and returns the client with its welcome message.
async fn join(example: &Example, token: &str) -> (Client, Value) {
    let (mut client, _) = connect(example, &format!("/ws?token={token}"), None).await;
    let welcome = next_json(&mut client).await;
    (client, welcome)
}

/// The status of a refused upgrade.
async fn refused_upgrade(example: &Example, path: &str) -> u16 {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let req = format!("ws://{}{path}", example.addr)
        .into_client_request()
        .unwrap();
    match tokio_tungstenite::connect_async(req).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Ok(_) => panic!("upgrade to {path} was accepted"),
        Err(err) => panic!("upgrade to {path} failed otherwise: {err}"),
    }
}

#[tokio::test]
async fn auth_chat_example() {
    let example = Example::start("auth-chat", &["--jwt-secret", SECRET]);
    let (status, page) = request(example.addr, "GET", "/", None).await;
    assert_eq!(status, 200);
    assert!(
        page.contains("/login") && page.contains("textContent"),
        "login + chat page"
    );

    // Wrong credentials and bad bodies.
    assert_eq!(
        login(&example, "admin", "nope").await,
        (401, json!({ "error": "Invalid credentials" }))
    );
    let (status, _) = request(example.addr, "POST", "/login", Some("{not json")).await;
    assert_eq!(status, 400);

    // No token, a bad one: 401 before any upgrade.
    assert_eq!(refused_upgrade(&example, "/ws").await, 401);
    assert_eq!(
        refused_upgrade(&example, "/ws?token=abc.def.ghi").await,
        401
    );

    let admin_token = token(&example, "admin").await;
    let john_token = token(&example, "john").await;
    let (mut admin, welcome) = join(&example, &admin_token).await;
    assert_eq!(
        welcome,
        json!({
            "type": "welcome",
            "message": "Welcome, admin!",
            "user": { "id": 1, "username": "admin", "role": "admin" },
        })
    );
    let (mut john_tab1, _) = join(&example, &john_token).await;
    let (mut john_tab2, welcome) = join(&example, &john_token).await;
    assert_eq!(
        welcome["user"],
        json!({ "id": 2, "username": "john", "role": "user" })
    );

    // A direct message reaches both of john's tabs; `to` may be a string.
    send_json(
        &mut admin,
        &json!({ "type": "direct", "to": "2", "text": "psst" }),
    )
    .await;
    for tab in [&mut john_tab1, &mut john_tab2] {
        let got = next_json(tab).await;
        assert_eq!(
            (
                &got["type"],
                &got["from"],
                &got["fromUsername"],
                &got["text"]
            ),
            (&json!("direct"), &json!(1), &json!("admin"), &json!("psst"))
        );
        assert!(is_iso_timestamp(got["timestamp"].as_str().unwrap()));
    }
    let sent = next_json(&mut admin).await;
    assert_eq!(
        (&sent["type"], &sent["to"], &sent["text"]),
        (&json!("sent"), &json!(2), &json!("psst"))
    );
    send_json(
        &mut admin,
        &json!({ "type": "direct", "to": 99, "text": "anyone?" }),
    )
    .await;
    assert_eq!(
        next_json(&mut admin).await,
        json!({ "type": "error", "message": "Recipient not found or not connected" })
    );

    // A message goes to the others only.
    send_json(
        &mut john_tab1,
        &json!({ "type": "message", "text": "hello all" }),
    )
    .await;
    for other in [&mut admin, &mut john_tab2] {
        let got = next_json(other).await;
        assert_eq!(
            (
                &got["type"],
                &got["from"],
                &got["fromUsername"],
                &got["text"]
            ),
            (
                &json!("message"),
                &json!(2),
                &json!("john"),
                &json!("hello all")
            )
        );
    }
    john_tab1.send(Message::text("not json")).await.unwrap();
    assert_eq!(next_json(&mut john_tab1).await["type"], "error");

    // Bearer works too; the login limit: 5 a minute per IP (4 used so far: 1 wrong, 1 bad, 2 good).
    let (status, _) = login(&example, "john", "password").await;
    assert_eq!(status, 200);
    let (status, body) = login(&example, "john", "password").await;
    assert_eq!(status, 429, "{body}");
    drop((admin, john_tab1, john_tab2));
    assert!(example.terminate().success());
}

#[tokio::test]
async fn auth_chat_login_is_rate_limited_with_retry_after() {
    let example = Example::start("auth-chat", &["--jwt-secret", SECRET]);
    for _ in 0..5 {
        assert_eq!(login(&example, "admin", "guess").await.0, 401);
    }
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(example.addr).await.unwrap();
    let body = r#"{"username":"admin","password":"guess"}"#;
    let head = format!(
        "POST /login HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 429"), "{response}");
    assert!(
        response.to_ascii_lowercase().contains("retry-after: "),
        "{response}"
    );
    assert!(example.terminate().success());
}

#[tokio::test]
async fn inband_auth_example() {
    let example = Example::start(
        "inband-auth",
        &["--jwt-secret", SECRET, "--auth-timeout-ms", "300"],
    );
    let admin_token = token(&example, "admin").await;
    let john_token = token(&example, "john").await;
    let required = json!({ "type": "auth_required", "message": "Please authenticate" });

    // Too slow: auth_timeout, then 1008.
    let (mut slow, _) = connect(&example, "/", None).await;
    assert_eq!(next_json(&mut slow).await, required);
    assert_eq!(
        next_json(&mut slow).await,
        json!({ "type": "auth_timeout", "message": "Authentication timeout" })
    );
    assert_eq!(close_code(&mut slow).await, Some(1008));

    // A bad token: auth_failed, then 1008.
    let (mut bad, _) = connect(&example, "/", None).await;
    next_json(&mut bad).await;
    send_json(&mut bad, &json!({ "type": "auth", "token": "forged" })).await;
    assert_eq!(
        next_json(&mut bad).await,
        json!({ "type": "auth_failed", "message": "Invalid token" })
    );
    assert_eq!(close_code(&mut bad).await, Some(1008));

    let (mut admin, _) = connect(&example, "/", None).await;
    assert_eq!(next_json(&mut admin).await, required);
    send_json(
        &mut admin,
        &json!({ "type": "message", "message": "early" }),
    )
    .await;
    assert_eq!(
        next_json(&mut admin).await,
        json!({ "type": "error", "message": "Authentication required" })
    );
    send_json(&mut admin, &json!({ "type": "auth", "token": admin_token })).await;
    assert_eq!(
        next_json(&mut admin).await,
        json!({ "type": "auth_success", "user": { "id": 1, "username": "admin", "role": "admin" } })
    );
    let (mut john, _) = connect(&example, "/", None).await;
    next_json(&mut john).await;
    send_json(&mut john, &json!({ "type": "auth", "token": john_token })).await;
    assert_eq!(next_json(&mut john).await["user"]["id"], 2);
    let (mut lurker, _) = connect(&example, "/", None).await; // never authenticates
    next_json(&mut lurker).await;

    // Messages reach every authenticated connection, sender included.
    send_json(
        &mut john,
        &json!({ "type": "message", "message": "hi all" }),
    )
    .await;
    for client in [&mut admin, &mut john] {
        let got = next_json(client).await;
        assert_eq!(
            (
                &got["type"],
                &got["userId"],
                &got["username"],
                &got["message"]
            ),
            (
                &json!("message"),
                &json!(2),
                &json!("john"),
                &json!("hi all")
            )
        );
        assert!(is_iso_timestamp(got["timestamp"].as_str().unwrap()));
    }

    // Admin commands: stats for admins only. The two refused connections count until the server has
    // finished closing them.
    drop((slow, bad));
    let mut stats = Value::Null;
    for _ in 0..100 {
        send_json(
            &mut admin,
            &json!({ "type": "admin_command", "command": "stats" }),
        )
        .await;
        stats = next_json(&mut admin).await;
        if stats["connections"] == 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        stats,
        json!({ "type": "stats", "connections": 3, "authenticated": 2 })
    );
    send_json(
        &mut admin,
        &json!({ "type": "admin_command", "command": "reboot" }),
    )
    .await;
    assert_eq!(
        next_json(&mut admin).await,
        json!({ "type": "error", "message": "Unknown command" })
    );
    send_json(
        &mut john,
        &json!({ "type": "admin_command", "command": "stats" }),
    )
    .await;
    assert_eq!(
        next_json(&mut john).await,
        json!({ "type": "error", "message": "Insufficient permissions" })
    );
    // The lurker got nothing but its own prompt, and is then timed out.
    assert_eq!(next_json(&mut lurker).await["type"], "auth_timeout");
    drop((admin, john, lurker));
    assert!(example.terminate().success());
}

/// Reads until the close frame; its code.
async fn close_code(client: &mut Client) -> Option<u16> {
    close_frame(client).await.map(|(code, _)| code)
}

/// Reads until the close frame; its code and reason.
async fn close_frame(client: &mut Client) -> Option<(u16, String)> {
    use futures_util::StreamExt;
    loop {
        let next = tokio::time::timeout(std::time::Duration::from_secs(10), client.next())
            .await
            .expect("a close within 10 s");
        match next {
            Some(Ok(Message::Close(frame))) => {
                return frame.map(|f| (u16::from(f.code), f.reason.to_string()));
            }
            Some(Ok(_)) => {}
            None | Some(Err(_)) => return None,
        }
    }
}

/// The `exp` of a token, read without verifying it.
fn exp_of(token: &str) -> std::time::SystemTime {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).unwrap();
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    let claims: Value = serde_json::from_slice(&json).unwrap();
    std::time::UNIX_EPOCH + std::time::Duration::from_secs(claims["exp"].as_u64().unwrap())
}

/// Asserts that the close comes no earlier than `exp` plus the examples' 5 s leeway.
async fn closed_once_expired(client: &mut Client, exp: std::time::SystemTime) {
    let close = close_frame(client).await;
    assert_eq!(close, Some((1008, "token expired".to_owned())));
    let deadline = exp + std::time::Duration::from_secs(5);
    let early = deadline
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    assert!(
        early < std::time::Duration::from_millis(50),
        "closed {early:?} early"
    );
}

/// Tokens of 1 s: an `auth-chat` WebSocket and an `inband-auth` one are closed with 1008 `token
/// expired` once `exp` + 5 s has passed; an `inband-auth` connection that sent a newer token in
/// `{"type":"refresh"}` lives on until that one expires; before authenticating, a message over 4 KiB
/// closes an `inband-auth` connection with 1009.
#[tokio::test]
async fn live_connections_end_with_their_tokens_unless_refreshed() {
    let ttl = ["--token-ttl-s", "1"];
    let chat = Example::start("auth-chat", &["--jwt-secret", SECRET, ttl[0], ttl[1]]);
    let inband = Example::start("inband-auth", &["--jwt-secret", SECRET, ttl[0], ttl[1]]);

    let chat_token = token(&chat, "john").await;
    let (mut chatter, welcome) = join(&chat, &chat_token).await;
    assert_eq!(welcome["type"], "welcome");

    let mut authed = Vec::new();
    let first = token(&inband, "john").await;
    for _ in 0..2 {
        let (mut client, _) = connect(&inband, "/", None).await;
        next_json(&mut client).await;
        send_json(&mut client, &json!({ "type": "auth", "token": first })).await;
        assert_eq!(next_json(&mut client).await["type"], "auth_success");
        authed.push(client);
    }
    let (mut oversized, _) = connect(&inband, "/", None).await;
    next_json(&mut oversized).await;
    let padded = json!({ "type": "auth", "token": "x".repeat(5000) });
    send_json(&mut oversized, &padded).await;
    assert_eq!(close_code(&mut oversized).await, Some(1009));

    // A newer token, issued a whole second later, outlives the first one.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let newer = token(&inband, "john").await;
    assert!(exp_of(&newer) > exp_of(&first));
    let mut refreshed = authed.pop().unwrap();
    let mut idle = authed.pop().unwrap();
    send_json(
        &mut refreshed,
        &json!({ "type": "refresh", "token": newer }),
    )
    .await;
    let answer = next_json(&mut refreshed).await;
    assert_eq!(answer["type"], "refreshed", "{answer}");
    assert!(answer["expiresIn"].as_u64().unwrap() <= 1, "{answer}");

    closed_once_expired(&mut chatter, exp_of(&chat_token)).await;
    closed_once_expired(&mut idle, exp_of(&first)).await;
    // Still open after the first token's end: a message is answered (an error, as it is no chat).
    send_json(&mut refreshed, &json!({ "type": "ping" })).await;
    assert_eq!(next_json(&mut refreshed).await["type"], "error");
    closed_once_expired(&mut refreshed, exp_of(&newer)).await;
    assert!(chat.terminate().success());
    assert!(inband.terminate().success());
}

/// `auth-chat` and `inband-auth` refuse a `--jwt-secret` (or `JWT_SECRET`) shorter than 32 bytes: exit
/// status 2 and a message naming its length, before anything listens.
#[test]
fn a_short_jwt_secret_stops_the_examples_before_they_listen() {
    for name in ["auth-chat", "inband-auth"] {
        for (args, env) in [
            (vec!["--jwt-secret", "short secret"], None),
            (vec![], Some("0123456789abcdef0123456789abcde")),
        ] {
            let mut command = std::process::Command::new(crate::support::binary(name));
            command
                .args(["--port", "0"])
                .args(&args)
                .env_remove("JWT_SECRET");
            if let Some(secret) = env {
                command.env("JWT_SECRET", secret);
            }
            let out = command.output().expect("the example runs");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
            let len = env.map_or(12, str::len);
            assert!(stderr.contains(&format!("{len} bytes")), "{name}: {stderr}");
            assert!(!stderr.contains("listening on"), "{name}: {stderr}");
        }
    }
}
