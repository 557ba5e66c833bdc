//! Opening WebSocket connections: plain TCP connects and the HTTP/1.1 upgrade, done by hand.
//!
//! Connections open in batches: each socket of a batch connects and writes its upgrade request, then
//! every answer of the batch is read. That keeps the server's accept queue short while not paying one
//! round trip per connection. The sockets are blocking during the handshake and handed over
//! non-blocking afterwards.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// The example key of RFC 6455 §1.3; every connection may use the same one.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
/// The `Sec-WebSocket-Accept` a server must answer [`KEY`] with (RFC 6455 §1.3).
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
/// Longest response head accepted.
const MAX_HEAD: usize = 16 * 1024;

/// A connection after a successful upgrade (or, in HTTP mode, once connected).
#[derive(Debug)]
pub struct Upgraded {
    /// The socket, already non-blocking.
    pub stream: TcpStream,
    /// Bytes the server sent after its response head (the start of its first frames, if any).
    pub leftover: Vec<u8>,
    /// The server's `Sec-WebSocket-Extensions` answer, if any.
    pub extensions: Option<String>,
}

/// Opens `count` WebSocket connections to `addr`, `batch` at a time, each offering `extensions`
/// (`Sec-WebSocket-Extensions`) if given. Each entry is the connection or why it failed.
pub fn open_many(
    addr: SocketAddr,
    path: &str,
    extensions: Option<&str>,
    count: usize,
    batch: usize,
    timeout: Duration,
) -> Vec<io::Result<Upgraded>> {
    let offer = extensions
        .map(|offer| format!("Sec-WebSocket-Extensions: {offer}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{offer}\r\n"
    );
    let offered = extensions.is_some();
    let mut opened = Vec::with_capacity(count);
    while opened.len() < count {
        let n = batch.max(1).min(count - opened.len());
        let sent: Vec<io::Result<TcpStream>> = (0..n)
            .map(|_| send_request(addr, request.as_bytes(), timeout))
            .collect();
        opened.extend(
            sent.into_iter()
                .map(|stream| stream.and_then(|stream| read_response(stream, offered))),
        );
    }
    opened
}

/// Opens `count` plain TCP connections to `addr` (HTTP mode), each handed over like an upgraded one,
/// with nothing left over.
pub fn connect_plain(
    addr: SocketAddr,
    count: usize,
    timeout: Duration,
) -> Vec<io::Result<Upgraded>> {
    (0..count)
        .map(|_| {
            let stream = TcpStream::connect_timeout(&addr, timeout)?;
            stream.set_nodelay(true)?;
            stream.set_nonblocking(true)?;
            Ok(Upgraded {
                stream,
                leftover: Vec::new(),
                extensions: None,
            })
        })
        .collect()
}

fn send_request(addr: SocketAddr, request: &[u8], timeout: Duration) -> io::Result<TcpStream> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(request)?;
    Ok(stream)
}

fn read_response(mut stream: TcpStream, offered: bool) -> io::Result<Upgraded> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    let head_end = loop {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection during the handshake",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if buf.len() > MAX_HEAD {
            return Err(invalid("response head too long"));
        }
    };
    let extensions = check_head(&buf[..head_end])?;
    if extensions.is_some() && !offered {
        return Err(invalid(
            "the server answered an extension offer nobody made",
        ));
    }
    stream.set_nonblocking(true)?;
    stream.set_read_timeout(None)?;
    stream.set_write_timeout(None)?;
    Ok(Upgraded {
        stream,
        leftover: buf[head_end..].to_vec(),
        extensions,
    })
}

/// Checks the status line (`101`) and `Sec-WebSocket-Accept`; returns `Sec-WebSocket-Extensions`.
fn check_head(head: &[u8]) -> io::Result<Option<String>> {
    let head = std::str::from_utf8(head).map_err(|_| invalid("response head is not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default();
    if status.split(' ').nth(1) != Some("101") {
        return Err(invalid(&format!("upgrade refused: {status}")));
    }
    let headers: Vec<(&str, &str)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim(), value.trim()))
        .collect();
    let header = |wanted: &str| {
        headers
            .iter()
            .find_map(|&(name, value)| name.eq_ignore_ascii_case(wanted).then_some(value))
    };
    match header("sec-websocket-accept") {
        Some(ACCEPT) => Ok(header("sec-websocket-extensions").map(str::to_owned)),
        Some(other) => Err(invalid(&format!("wrong Sec-WebSocket-Accept {other:?}"))),
        None => Err(invalid("no Sec-WebSocket-Accept")),
    }
}

fn invalid(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_a_valid_upgrade_only() {
        let ok = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nsec-websocket-accept: {ACCEPT}\r\n\r\n"
        );
        assert_eq!(check_head(ok.as_bytes()).ok(), Some(None));
        let deflate = format!(
            "HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: {ACCEPT}\r\n\
             Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n\r\n"
        );
        assert_eq!(
            check_head(deflate.as_bytes()).ok(),
            Some(Some(
                "permessage-deflate; server_no_context_takeover".to_owned()
            ))
        );
        let refused = "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n";
        assert!(check_head(refused.as_bytes()).is_err());
        let wrong = "HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: nope\r\n\r\n";
        assert!(check_head(wrong.as_bytes()).is_err());
    }
}
