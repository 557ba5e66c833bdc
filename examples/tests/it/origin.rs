//! The Origin policy of the examples' WebSocket endpoints (RFC 6455 §10.2): their own origin and
//! clients without `Origin` pass, other sites' pages are refused unless `--allowed-origin` names them.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{Example, request};

/// Sends a WebSocket upgrade for `path` with `origin` (if any); returns the status and the body.
async fn upgrade(addr: SocketAddr, path: &str, origin: Option<&str>) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let origin = origin
        .map(|o| format!("origin: {o}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "GET {path} HTTP/1.1\r\nhost: {addr}\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\
         sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n{origin}\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    let mut buf = vec![0u8; 4096];
    let mut read = 0;
    // The head, and for a refusal its JSON body; a 101 is followed by WebSocket frames (the welcome).
    loop {
        let n = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            stream.read(&mut buf[read..]),
        )
        .await
        .expect("an answer within 10 s")
        .expect("read");
        read += n;
        let text = String::from_utf8_lossy(&buf[..read]).into_owned();
        if n == 0
            || text.starts_with("HTTP/1.1 101") && text.contains("\r\n\r\n")
            || text.ends_with('}')
        {
            let status = text
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .expect("a status line");
            let body = text
                .split_once("\r\n\r\n")
                .map(|(_, b)| b.to_owned())
                .unwrap_or_default();
            return (status, body);
        }
    }
}

/// `chat`, `config` and `auth-chat`: a foreign origin gets 403 with a JSON error (for `auth-chat`
/// before the token is looked at: 403, not 401), the own origin and no origin are upgraded, each
/// `--allowed-origin` adds an origin or pattern, and `chat` counts refusals in its metrics.
#[tokio::test]
async fn examples_refuse_cross_site_upgrades_unless_allowed() {
    let chat = Example::start("chat", &[]);
    let own = format!("http://{}", chat.addr);
    let (status, body) = upgrade(chat.addr, "/", Some("https://evil.test")).await;
    assert_eq!(status, 403);
    let body: serde_json::Value = serde_json::from_str(&body).expect("a JSON error body");
    assert_eq!(body["error"], "Forbidden");
    assert_eq!(upgrade(chat.addr, "/", Some(&own)).await.0, 101);
    assert_eq!(upgrade(chat.addr, "/", None).await.0, 101);
    let (status, metrics) = request(chat.addr, "GET", "/metrics", None).await;
    assert_eq!(status, 200);
    assert!(
        metrics.lines().any(|l| l == "verb_origin_refused_total 1"),
        "{metrics}"
    );
    assert!(chat.terminate().success());

    let chat = Example::start(
        "chat",
        &[
            "--allowed-origin",
            "https://*.partner.test",
            "--allowed-origin",
            "http://localhost:5173",
        ],
    );
    assert_eq!(
        upgrade(chat.addr, "/", Some("https://app.partner.test"))
            .await
            .0,
        101
    );
    assert_eq!(
        upgrade(chat.addr, "/", Some("http://localhost:5173"))
            .await
            .0,
        101
    );
    assert_eq!(
        upgrade(chat.addr, "/", Some("https://partner.test"))
            .await
            .0,
        403
    );
    assert!(chat.terminate().success());

    let config = Example::start("config", &[]);
    assert_eq!(
        upgrade(config.addr, "/", Some("https://evil.test")).await.0,
        403
    );
    assert_eq!(upgrade(config.addr, "/", None).await.0, 101);
    assert!(config.terminate().success());

    let auth = Example::start("auth-chat", &["--allowed-origin", "https://app.test"]);
    assert_eq!(
        upgrade(auth.addr, "/ws", Some("https://evil.test")).await.0,
        403
    );
    assert_eq!(
        upgrade(auth.addr, "/ws", Some("https://app.test")).await.0,
        401,
        "no token"
    );
    assert!(auth.terminate().success());
}
