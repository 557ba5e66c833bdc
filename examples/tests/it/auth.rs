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
    use futures_util::StreamExt;
    loop {
        let next = tokio::time::timeout(std::time::Duration::from_secs(10), client.next())
            .await
            .expect("a close within 10 s");
        match next {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => {}
            None | Some(Err(_)) => return None,
        }
    }
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
