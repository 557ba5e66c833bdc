//! Runs an example binary as users do and talks to it over real sockets.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// A running example process, killed when dropped.
pub(crate) struct Example {
    child: Child,
    pub(crate) addr: SocketAddr,
    /// Every log line so far.
    logs: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

/// The path of example `name`, built by `cargo test` next to this test binary.
pub(crate) fn binary(name: &str) -> PathBuf {
    // This test runs as target/<profile>/deps/<test>-<hash>; examples live in target/<profile>/examples.
    let exe = std::env::current_exe().expect("the test binary has a path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test binary lives in target/<profile>/deps");
    profile_dir.join("examples").join(name)
}

impl Example {
    /// Starts example `name` on port 0 with `args`, and waits for its `listening on` line.
    pub(crate) fn start(name: &str, args: &[&str]) -> Example {
        Self::start_with_env(name, args, &[])
    }

    /// As [`start`](Self::start), with extra environment variables.
    pub(crate) fn start_with_env(name: &str, args: &[&str], envs: &[(&str, &str)]) -> Example {
        let mut child = Command::new(binary(name))
            .args(["--port", "0"])
            .args(args)
            .env("RUST_LOG", "info")
            .envs(envs.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start example {name}: {err}"));
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, rx) = mpsc::channel();
        let logs = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = std::sync::Arc::clone(&logs);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("[example] {line}");
                let listening = line
                    .split("listening on http://")
                    .nth(1)
                    .or_else(|| line.split("listening on https://").nth(1));
                if let Some(rest) = listening {
                    let _ = tx.send(rest.trim().to_owned());
                }
                kept.lock().unwrap_or_else(|p| p.into_inner()).push(line);
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("example {name} did not log `listening on`"));
        let addr = addr
            .parse()
            .unwrap_or_else(|_| panic!("bad address {addr:?}"));
        Example { child, addr, logs }
    }

    /// The log lines printed so far.
    pub(crate) fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Kills the process with SIGKILL (no graceful stop, as a crash) and waits for it.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and returns the exit status.
    pub(crate) fn terminate(mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait works") {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the example did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends one HTTP/1.1 request with `connection: close`; returns (status, body).
pub(crate) async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let body = body.unwrap_or("");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    stream.write_all(body.as_bytes()).await.expect("write");
    let mut out = String::new();
    stream.read_to_string(&mut out).await.expect("read");
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}
pub(crate) type Client =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub(crate) type Headers = tokio_tungstenite::tungstenite::http::HeaderMap;

pub(crate) async fn connect(
    example: &Example,
    path: &str,
    protocols: Option<&str>,
) -> (Client, Headers) {
    let mut req = format!("ws://{}{path}", example.addr)
        .into_client_request()
        .unwrap();
    if let Some(protocols) = protocols {
        req.headers_mut()
            .insert("sec-websocket-protocol", protocols.parse().unwrap());
    }
    let (client, response) = tokio_tungstenite::connect_async(req)
        .await
        .expect("upgrade");
    (client, response.headers().clone())
}

pub(crate) async fn next_text(client: &mut Client) -> String {
    loop {
        let next = tokio::time::timeout(std::time::Duration::from_secs(10), client.next())
            .await
            .expect("a message within 10 s")
            .expect("connection open")
            .expect("no error");
        match next {
            Message::Text(text) => return text.to_string(),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("expected text, got {other:?}"),
        }
    }
}

pub(crate) async fn next_json(client: &mut Client) -> Value {
    serde_json::from_str(&next_text(client).await).expect("JSON")
}

/// Sends `value` as a JSON text message.
pub(crate) async fn send_json(client: &mut Client, value: &Value) {
    client
        .send(Message::text(value.to_string()))
        .await
        .expect("send");
}

/// The next JSON message whose `type` is not in `skip`.
pub(crate) async fn next_json_skipping(client: &mut Client, skip: &[&str]) -> Value {
    loop {
        let value = next_json(client).await;
        if !skip.contains(&value["type"].as_str().unwrap_or_default()) {
            return value;
        }
    }
}

/// Whether `text` is what JavaScript's `toISOString()` writes: `2026-11-23T12:00:00.000Z`.
pub(crate) fn is_iso_timestamp(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 24
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'.'
        && b[23] == b'Z'
        && text
            .bytes()
            .enumerate()
            .all(|(i, c)| [4, 7, 10, 13, 16, 19, 23].contains(&i) || c.is_ascii_digit())
}
