//! Hand-made frames and handshakes over a raw socket, asserting the exact answers of RFC 6455.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use verb::prelude::*;
use verb::test::TestServer;

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const MASK: [u8; 4] = [0x12, 0x34, 0x56, 0x78];

/// Upgrades a raw socket to `path`, reading exactly the 101 response head.
pub(crate) async fn handshake(addr: SocketAddr, path: &str) -> TcpStream {
    handshake_with(addr, path, "").await.0
}

/// As [`handshake`], with `extra` header lines (each ending in CRLF) in the request; returns the
/// socket and the response head, lowercased.
pub(crate) async fn handshake_with(
    addr: SocketAddr,
    path: &str,
    extra: &str,
) -> (TcpStream, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nhost: {addr}\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-key: {KEY}\r\nsec-websocket-version: 13\r\n{extra}\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0];
        assert_eq!(
            stream.read(&mut byte).await.unwrap(),
            1,
            "closed during handshake"
        );
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(
        head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{head}"
    );
    (stream, head)
}

/// A masked client frame with the given first byte (FIN, RSV, opcode) and payload.
pub(crate) fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    match payload.len() {
        len @ 0..=125 => out.push(0x80 | len as u8),
        len @ 126..=65535 => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&MASK);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    out
}

/// Reads server frames until the connection ends: `(opcode, payload)` each.
pub(crate) async fn read_frames_to_close(stream: &mut TcpStream) -> Vec<(u8, Vec<u8>)> {
    let mut data = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(300), stream.read_to_end(&mut data)).await;
    let mut frames = Vec::new();
    let mut rest = &data[..];
    while rest.len() >= 2 {
        assert_eq!(rest[1] & 0x80, 0, "server frames are unmasked");
        let (len, start) = match rest[1] & 0x7f {
            126 => (u16::from_be_bytes([rest[2], rest[3]]) as usize, 4),
            127 => (
                u64::from_be_bytes(rest[2..10].try_into().unwrap()) as usize,
                10,
            ),
            len => (len as usize, 2),
        };
        frames.push((rest[0] & 0x0f, rest[start..start + len].to_vec()));
        rest = &rest[start + len..];
    }
    frames
}

/// The code of the close frame among `frames`.
pub(crate) fn close_code(frames: &[(u8, Vec<u8>)]) -> Option<u16> {
    frames
        .iter()
        .find(|(opcode, _)| *opcode == 0x8)
        .and_then(|(_, payload)| Some(u16::from_be_bytes([*payload.first()?, *payload.get(1)?])))
}

async fn server() -> TestServer {
    let mut app = verb::create_server();
    app.ws(
        "/ws",
        Ws::new()
            .max_payload_length(64 * 1024)
            .message(|ws: &WebSocket, msg: Message| {
                ws.send(msg);
            }),
    );
    TestServer::start(app).await
}

/// Sends `bytes` after the handshake; returns the close code the server answered with.
async fn close_code_for(bytes: &[u8]) -> Option<u16> {
    let server = server().await;
    let mut stream = handshake(server.addr(), "/ws").await;
    stream.write_all(bytes).await.unwrap();
    let frames = read_frames_to_close(&mut stream).await;
    // Whatever one connection did, the server serves the next.
    let mut next = server.ws("/ws").await;
    next.send_text("still serving").await;
    assert_eq!(next.recv_text().await, "still serving");
    close_code(&frames)
}

/// An unmasked client frame is a protocol error.
#[tokio::test]
async fn unmasked_frame_closes_with_1002() {
    assert_eq!(close_code_for(&[0x81, 0x02, b'h', b'i']).await, Some(1002));
}

/// Reserved bits without an extension, and reserved opcodes, close with 1002.
#[tokio::test]
async fn reserved_bits_and_opcodes_close_with_1002() {
    assert_eq!(
        close_code_for(&frame(0x80 | 0x40 | 0x1, b"hi")).await,
        Some(1002)
    );
    assert_eq!(
        close_code_for(&frame(0x80 | 0x20 | 0x1, b"hi")).await,
        Some(1002)
    );
    assert_eq!(close_code_for(&frame(0x80 | 0x3, b"hi")).await, Some(1002));
    assert_eq!(close_code_for(&frame(0x80 | 0xB, b"")).await, Some(1002));
}

/// A fragmented ping, and a control frame over 125 bytes, close with 1002.
#[tokio::test]
async fn bad_control_frames_close_with_1002() {
    assert_eq!(close_code_for(&frame(0x09, b"ping")).await, Some(1002));
    assert_eq!(close_code_for(&frame(0x89, &[0; 126])).await, Some(1002));
}

/// A continuation without a start, and a new message inside a fragmented one, close with 1002.
#[tokio::test]
async fn bad_fragmentation_closes_with_1002() {
    assert_eq!(close_code_for(&frame(0x80, b"orphan")).await, Some(1002));
    let mut bytes = frame(0x01, b"first half");
    bytes.extend(frame(0x81, b"new message"));
    assert_eq!(close_code_for(&bytes).await, Some(1002));
}

/// Invalid UTF-8 split across fragments (each fragment alone is a valid prefix) closes with 1007.
#[tokio::test]
async fn invalid_utf8_across_fragments_closes_with_1007() {
    // "é" is C3 A9; C3 followed by 28 is invalid.
    let mut bytes = frame(0x01, &[b'a', 0xC3]);
    bytes.extend(frame(0x80, &[0x28, b'b']));
    assert_eq!(close_code_for(&bytes).await, Some(1007));
}

/// Fragmented messages with a ping in between are reassembled, and the ping answered.
#[tokio::test]
async fn fragments_with_interleaved_ping_are_reassembled() {
    let server = server().await;
    let mut stream = handshake(server.addr(), "/ws").await;
    let mut bytes = frame(0x01, "hé".as_bytes());
    bytes.extend(frame(0x89, b"p"));
    bytes.extend(frame(0x00, b"l"));
    bytes.extend(frame(0x80, b"lo"));
    bytes.extend(frame(0x88, &1000u16.to_be_bytes()));
    stream.write_all(&bytes).await.unwrap();
    let frames = read_frames_to_close(&mut stream).await;
    assert_eq!(
        frames,
        [
            (0xA, b"p".to_vec()),
            (0x1, "héllo".as_bytes().to_vec()),
            (0x8, 1000u16.to_be_bytes().to_vec())
        ]
    );
}

/// A length with the most significant bit set (2^63) is refused without buffering anything.
#[tokio::test]
async fn length_of_two_to_the_63_closes_with_1002() {
    let mut bytes = vec![0x82, 0x80 | 127];
    bytes.extend_from_slice(&(1u64 << 63).to_be_bytes());
    bytes.extend_from_slice(&MASK);
    assert_eq!(close_code_for(&bytes).await, Some(1002));
}

/// A frame announcing more than the payload limit is refused at its header with 1009.
#[tokio::test]
async fn oversized_header_closes_with_1009_before_the_payload() {
    let mut bytes = vec![0x82, 0x80 | 127];
    bytes.extend_from_slice(&(1u64 << 40).to_be_bytes());
    bytes.extend_from_slice(&MASK);
    assert_eq!(close_code_for(&bytes).await, Some(1009));
}

/// Close frames: invalid codes and a 1-byte payload close with 1002, a bad reason with 1007, a valid
/// code is echoed, and an empty close is answered with an empty close.
#[tokio::test]
async fn close_frames_are_validated_and_echoed() {
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 2000, 5000] {
        assert_eq!(
            close_code_for(&frame(0x88, &code.to_be_bytes())).await,
            Some(1002),
            "{code}"
        );
    }
    assert_eq!(close_code_for(&frame(0x88, &[0x03])).await, Some(1002));
    let mut bad_reason = 1000u16.to_be_bytes().to_vec();
    bad_reason.extend_from_slice(&[0xff, 0xfe]);
    assert_eq!(close_code_for(&frame(0x88, &bad_reason)).await, Some(1007));
    assert_eq!(
        close_code_for(&frame(0x88, &4321u16.to_be_bytes())).await,
        Some(4321)
    );

    let server = server().await;
    let mut stream = handshake(server.addr(), "/ws").await;
    stream.write_all(&frame(0x88, b"")).await.unwrap();
    assert_eq!(read_frames_to_close(&mut stream).await, [(0x8, Vec::new())]);
}

/// Bad handshakes get HTTP errors: bad key 400, wrong version 426 naming 13, missing Connection 400,
/// a method other than GET 405, no `Upgrade` 426; the server keeps serving.
#[tokio::test]
async fn bad_handshakes_are_refused_with_http_errors() {
    let server = server().await;
    let addr = server.addr();
    let request = |headers: &str| {
        format!("GET /ws HTTP/1.1\r\nhost: x\r\nconnection: close\r\n{headers}\r\n")
    };
    let base = "upgrade: websocket\r\nsec-websocket-version: 13\r\n";
    let upgrade = "connection: Upgrade\r\n";

    let response = crate::raw::exchange(
        addr,
        request(&format!("{base}{upgrade}sec-websocket-key: short\r\n")).as_bytes(),
    )
    .await;
    assert_eq!(crate::raw::status_of(&response), 400, "{response}");

    let response = crate::raw::exchange(
        addr,
        request(&format!("{upgrade}upgrade: websocket\r\nsec-websocket-version: 8\r\nsec-websocket-key: {KEY}\r\n")).as_bytes(),
    )
    .await;
    assert_eq!(crate::raw::status_of(&response), 426, "{response}");
    assert!(
        response
            .to_ascii_lowercase()
            .contains("sec-websocket-version: 13"),
        "{response}"
    );

    let response = crate::raw::exchange(
        addr,
        request(&format!("{base}sec-websocket-key: {KEY}\r\n")).as_bytes(),
    )
    .await;
    assert_eq!(crate::raw::status_of(&response), 400, "{response}");

    let response = crate::raw::exchange(
        addr,
        format!("POST /ws HTTP/1.1\r\nhost: x\r\nconnection: Upgrade, close\r\n{base}sec-websocket-key: {KEY}\r\ncontent-length: 0\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(crate::raw::status_of(&response), 405, "{response}");

    // No `Upgrade: websocket` at all: 426, naming the protocol to upgrade to.
    let response = crate::raw::exchange(
        addr,
        request(&format!(
            "{upgrade}sec-websocket-version: 13\r\nsec-websocket-key: {KEY}\r\n"
        ))
        .as_bytes(),
    )
    .await;
    assert_eq!(crate::raw::status_of(&response), 426, "{response}");
    assert!(
        response.to_ascii_lowercase().contains("upgrade: websocket"),
        "{response}"
    );

    // Every refusal left the server serving.
    let mut good = server.ws("/ws").await;
    good.send_text("fine").await;
    assert_eq!(good.recv_text().await, "fine");
}

/// Input after the peer's close frame is discarded, not left unread: the server's close echo then
/// ends in a FIN the peer can read to the end, not a reset that may destroy it.
#[tokio::test]
async fn input_after_the_close_frame_does_not_reset_the_connection() {
    let server = server().await;
    for _ in 0..5 {
        let mut stream = handshake(server.addr(), "/ws").await;
        let mut bytes = frame(0x81, b"last words");
        bytes.extend(frame(0x88, &1000u16.to_be_bytes()));
        // 64 KiB of frames after the close: they fit in the server's socket buffer, unread.
        while bytes.len() < 64 * 1024 {
            bytes.extend(frame(0x82, &[7u8; 1000]));
        }
        stream.write_all(&bytes).await.unwrap();
        let mut data = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut data))
            .await
            .expect("the server closes");
        assert!(read.is_ok(), "the connection was reset: {read:?}");
        let mut rest = &data[..];
        let mut frames = Vec::new();
        while rest.len() >= 2 {
            let len = (rest[1] & 0x7f) as usize;
            frames.push((rest[0] & 0x0f, rest[2..2 + len].to_vec()));
            rest = &rest[2 + len..];
        }
        assert_eq!(
            frames,
            [
                (0x1, b"last words".to_vec()),
                (0x8, 1000u16.to_be_bytes().to_vec())
            ]
        );
    }
}

/// Small frames share one buffer on their way out; they still leave in the order they were sent,
/// between large messages, shared frames, pings and the close frame that follow them.
#[tokio::test]
async fn frames_of_every_kind_leave_in_the_order_sent() {
    let mut app = verb::create_server();
    let large = vec![7u8; 5000];
    let expected_large = large.clone();
    app.ws(
        "/ws",
        // The client never answers the close: the server drops it soon after.
        Ws::new().close_timeout(Duration::from_millis(200)).message(
            move |ws: &WebSocket, _msg: Message| {
                ws.send_text("a");
                ws.send_text("b");
                ws.send(Message::binary(large.clone()));
                ws.send_text("c");
                ws.ping(b"p");
                ws.send_text("d");
                ws.send_prepared(&verb::PreparedMessage::new(&Message::text("e")));
                ws.send_text("f");
                ws.close(CloseCode::NORMAL, "done");
                ws.send_text("never");
            },
        ),
    );
    let server = TestServer::start(app).await;
    let mut stream = handshake(server.addr(), "/ws").await;
    stream.write_all(&frame(0x81, b"go")).await.unwrap();
    let frames = read_frames_to_close(&mut stream).await;
    let expected: Vec<(u8, Vec<u8>)> = vec![
        (0x1, b"a".to_vec()),
        (0x1, b"b".to_vec()),
        (0x2, expected_large),
        (0x1, b"c".to_vec()),
        (0x9, b"p".to_vec()),
        (0x1, b"d".to_vec()),
        (0x1, b"e".to_vec()),
        (0x1, b"f".to_vec()),
        (0x8, [&1000u16.to_be_bytes()[..], b"done"].concat()),
    ];
    assert_eq!(frames, expected);
}

/// Once a peer's reads have grown (large messages), small messages are copied out of the read
/// buffer rather than sharing it: either way every message arrives whole, in order, unmasked.
#[tokio::test]
async fn small_messages_after_large_ones_arrive_whole_and_in_order() {
    let server = server().await;
    let mut stream = handshake(server.addr(), "/ws").await;
    let large: Vec<u8> = (0..60_000u32).map(|i| (i % 251) as u8).collect();
    let small: Vec<Vec<u8>> = (0..300u32)
        .map(|i| format!("message {i}").into_bytes())
        .collect();
    let mut burst = frame(0x82, &large);
    for message in &small {
        burst.extend(frame(0x81, message));
    }
    burst.extend(frame(0x82, &large));
    stream.write_all(&burst).await.unwrap();
    stream
        .write_all(&frame(0x88, &1000u16.to_be_bytes()))
        .await
        .unwrap();

    let frames = read_frames_to_close(&mut stream).await;
    let mut expected = vec![(0x2, large.clone())];
    expected.extend(small.into_iter().map(|message| (0x1, message)));
    expected.push((0x2, large));
    expected.push((0x8, 1000u16.to_be_bytes().to_vec()));
    assert_eq!(frames.len(), expected.len());
    assert!(frames == expected, "the echoes differ from what was sent");
}

/// A close code that may not be sent (RFC 6455 §7.4) never reaches the wire, whichever API asked for
/// it: `close` and `close_after` both send 1000 instead; sendable codes pass unchanged.
#[tokio::test]
async fn unsendable_close_codes_are_replaced_by_1000_from_every_api() {
    let mut app = verb::create_server();
    app.ws(
        "/ws",
        Ws::new().message(|ws: &WebSocket, msg: Message| {
            let text = msg.as_text().unwrap_or_default();
            let (api, code) = text.split_once(' ').unwrap_or_default();
            let code: u16 = code.parse().unwrap_or_default();
            match api {
                "close" => ws.close(code, "bye"),
                _ => ws.close_after(std::time::Duration::ZERO, None, code, "bye"),
            }
        }),
    );
    let server = TestServer::start(app).await;
    for api in ["close", "close_after"] {
        for (asked, sent) in [
            (0, 1000),
            (999, 1000),
            (1004, 1000),
            (1005, 1000),
            (1006, 1000),
            (1015, 1000),
            (1016, 1000),
            (2999, 1000),
            (5000, 1000),
            (65535, 1000),
            (1008, 1008),
            (4001, 4001),
        ] {
            let mut client = server.ws("/ws").await;
            client.send_text(&format!("{api} {asked}")).await;
            let (code, _) = client.recv_close().await;
            assert_eq!(code.as_u16(), sent, "{api} with {asked}");
        }
    }
    server.stop().await;
}

/// Data frames that arrive in the same read as the one whose callback called `ws.close()` are not
/// delivered: after `close`, the app hears no more messages.
#[tokio::test]
async fn frames_after_the_app_closed_are_not_delivered() {
    let seen: std::sync::Arc<std::sync::Mutex<Vec<String>>> = std::sync::Arc::default();
    let kept = std::sync::Arc::clone(&seen);
    let mut app = verb::create_server();
    app.ws(
        "/ws",
        // The raw peer never answers the close: do not wait the default 5 s for it.
        Ws::new().close_timeout(Duration::from_millis(100)).message(
            move |ws: &WebSocket, msg: Message| {
                let text = msg.as_text().unwrap_or_default().to_owned();
                if text == "close now" {
                    ws.close(1000, "as asked");
                }
                kept.lock().unwrap().push(text);
            },
        ),
    );
    let server = TestServer::start(app).await;
    let mut stream = handshake(server.addr(), "/ws").await;
    let mut bytes = frame(0x81, b"before");
    bytes.extend(frame(0x81, b"close now"));
    for _ in 0..20 {
        bytes.extend(frame(0x81, b"after"));
    }
    // One write: every frame is in the server's first read.
    stream.write_all(&bytes).await.unwrap();
    let frames = read_frames_to_close(&mut stream).await;
    assert_eq!(close_code(&frames), Some(1000));
    assert_eq!(*seen.lock().unwrap(), ["before", "close now"]);
    server.stop().await;
}
