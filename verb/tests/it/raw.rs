//! A raw TCP client for what a friendly HTTP client will not send.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends `bytes` and reads until the server closes the connection (or 30 s of test time pass).
pub(crate) async fn exchange(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(bytes).await.expect("write");
    read_to_close(&mut stream).await
}

/// Reads until the server closes the connection; what arrived, as text.
pub(crate) async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "the server did not close the connection");
    String::from_utf8_lossy(&out).into_owned()
}

/// The status line's code.
pub(crate) fn status_of(response: &str) -> u16 {
    response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"))
}

/// The JSON error body of a response that must carry one (`content-type: application/json`, a
/// `content-length` that matches); panics with the response otherwise.
pub(crate) fn json_error_of(response: &str) -> serde_json::Value {
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no complete head: {response:?}"));
    let head = head.to_ascii_lowercase();
    assert!(
        head.contains("\r\ncontent-type: application/json"),
        "not a JSON answer: {response:?}"
    );
    assert!(
        head.contains(&format!("\r\ncontent-length: {}", body.len())),
        "the length does not match the body: {response:?}"
    );
    serde_json::from_str(body).unwrap_or_else(|err| panic!("{err}: {response:?}"))
}
