//! permessage-deflate (RFC 7692) over a raw socket: hand-made compressed frames, and the exact
//! answers of the RFC. Real third-party clients are in the examples' tests (`deflate.rs` there).

use std::net::SocketAddr;
use std::time::Duration;

use flate2::{Compress, Decompress, FlushCompress, FlushDecompress};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use verb::prelude::*;
use verb::test::TestServer;
use verb::{Compression, Greeting, Rooms};

use crate::ws_raw::frame;

const RSV1: u8 = 0x40;

/// An echo server with compression, a 64 KiB payload limit, and a `/room` that relays to everyone.
async fn server(compression: Compression) -> TestServer {
    let mut app = verb::create_server();
    app.ws(
        "/ws",
        Ws::new()
            .max_payload_length(64 * 1024)
            .compression_with(compression)
            .message(|ws: &WebSocket, msg: Message| {
                ws.send(msg);
            }),
    );
    app.ws(
        "/room",
        Ws::new()
            .compression_with(compression)
            .open(|ws: &WebSocket, _req: &Request| {
                ws.subscribe("all");
            })
            .message(|ws: &WebSocket, msg: Message| {
                if let Some(rooms) = ws.attachment::<Rooms>() {
                    rooms.to("all").send(msg);
                }
            }),
    );
    TestServer::start(app).await
}

/// Upgrades a raw socket, offering `extensions` if given; returns the socket and the response head.
async fn handshake(addr: SocketAddr, path: &str, extensions: Option<&str>) -> (TcpStream, String) {
    let offer = extensions
        .map(|e| format!("sec-websocket-extensions: {e}\r\n"))
        .unwrap_or_default();
    crate::ws_raw::handshake_with(addr, path, &offer).await
}

fn extensions_of(head: &str) -> Option<&str> {
    head.lines()
        .find_map(|line| line.strip_prefix("sec-websocket-extensions: "))
}

/// `data` deflated as RFC 7692 §7.2.1 says: raw deflate, sync flush, the 4-byte tail removed.
fn deflate(compress: &mut Compress, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 64);
    let start = compress.total_in();
    loop {
        let consumed = (compress.total_in() - start) as usize;
        out.reserve(1024);
        compress
            .compress_vec(&data[consumed..], &mut out, FlushCompress::Sync)
            .unwrap();
        if out.len() < out.capacity() && (compress.total_in() - start) as usize == data.len() {
            break;
        }
    }
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

/// A fresh raw deflater for one message.
pub(crate) fn deflate_once(data: &[u8]) -> Vec<u8> {
    deflate(
        &mut Compress::new(flate2::Compression::default(), false),
        data,
    )
}

/// `data` as one complete deflate stream: it ends with a final block (BFINAL), no sync flush.
fn deflate_final(data: &[u8]) -> Vec<u8> {
    let mut compress = Compress::new(flate2::Compression::default(), false);
    let mut out = Vec::with_capacity(data.len() + 64);
    compress
        .compress_vec(data, &mut out, FlushCompress::Finish)
        .unwrap();
    out
}

/// Reads one server frame: `(first byte, payload)`.
async fn read_frame(stream: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut head = [0u8; 2];
    tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut head))
        .await
        .expect("a frame within 10 s")
        .expect("connection open");
    assert_eq!(head[1] & 0x80, 0, "server frames are unmasked");
    let len = match head[1] & 0x7f {
        126 => {
            let mut len = [0u8; 2];
            stream.read_exact(&mut len).await.unwrap();
            u16::from_be_bytes(len) as usize
        }
        127 => {
            let mut len = [0u8; 8];
            stream.read_exact(&mut len).await.unwrap();
            u64::from_be_bytes(len) as usize
        }
        len => len as usize,
    };
    let mut payload = vec![0; len];
    stream.read_exact(&mut payload).await.unwrap();
    (head[0], payload)
}

/// Inflates a server message (`inflater` keeps the context when the server takes it over).
pub(crate) fn inflate(inflater: &mut Decompress, payload: &[u8]) -> Vec<u8> {
    let mut input = payload.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut out = Vec::with_capacity(1 << 20);
    inflater
        .decompress_vec(&input, &mut out, FlushDecompress::Sync)
        .unwrap();
    out
}

/// Reads frames to the end of the connection and returns the close code.
async fn close_code(stream: &mut TcpStream) -> Option<u16> {
    let mut data = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut data)).await;
    let mut rest = &data[..];
    while rest.len() >= 2 {
        let (len, start) = match rest[1] & 0x7f {
            126 => (u16::from_be_bytes([rest[2], rest[3]]) as usize, 4),
            127 => (
                u64::from_be_bytes(rest[2..10].try_into().unwrap()) as usize,
                10,
            ),
            len => (len as usize, 2),
        };
        if rest[0] & 0x0f == 0x8 && len >= 2 {
            return Some(u16::from_be_bytes([rest[start], rest[start + 1]]));
        }
        rest = &rest[start + len..];
    }
    None
}

/// Bytes that deflate cannot shrink (xorshift).
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn json_of_size(n: usize) -> String {
    let mut text = String::from(r#"{"type":"tick","items":["#);
    let mut i = 0;
    while text.len() < n {
        text.push_str(&format!(
            r#"{{"symbol":"S{i}","price":{}.25}},"#,
            100 + i % 7
        ));
        i += 1;
    }
    text.push_str("0]}");
    text
}

/// Compressed messages, single-frame and fragmented, text and binary, go both ways; small messages
/// and uncompressed ones from the client pass too.
#[tokio::test]
async fn compressed_messages_round_trip() {
    let server = server(Compression::new()).await;
    let (mut stream, head) = handshake(
        server.addr(),
        "/ws",
        Some("permessage-deflate; client_max_window_bits"),
    )
    .await;
    assert_eq!(
        extensions_of(&head),
        Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
    );
    let mut inflater = Decompress::new(false);

    let text = json_of_size(2000);
    stream
        .write_all(&frame(0x80 | RSV1 | 0x1, &deflate_once(text.as_bytes())))
        .await
        .unwrap();
    let (first, payload) = read_frame(&mut stream).await;
    assert_eq!(
        first,
        0x80 | RSV1 | 0x1,
        "compressed text comes back compressed"
    );
    assert!(payload.len() < text.len() / 3, "{} bytes", payload.len());
    assert_eq!(inflate(&mut inflater, &payload), text.as_bytes());

    // Fragmented: RSV1 on the first frame only; the deflate stream splits anywhere.
    let binary: Vec<u8> = text.bytes().rev().collect();
    let compressed = deflate_once(&binary);
    let (a, rest) = compressed.split_at(7);
    let (b, c) = rest.split_at(rest.len() / 2);
    let mut bytes = frame(RSV1 | 0x2, a);
    bytes.extend(frame(0x89, b"mid-message ping"));
    bytes.extend(frame(0x00, b));
    bytes.extend(frame(0x80, c));
    stream.write_all(&bytes).await.unwrap();
    assert_eq!(
        read_frame(&mut stream).await,
        (0x8A, b"mid-message ping".to_vec())
    );
    let (first, payload) = read_frame(&mut stream).await;
    assert_eq!(first, 0x80 | RSV1 | 0x2);
    assert_eq!(inflate(&mut inflater, &payload), binary);

    // Under the 64-byte threshold the echo goes out plain; an uncompressed client message is fine.
    stream.write_all(&frame(0x81, b"short")).await.unwrap();
    assert_eq!(read_frame(&mut stream).await, (0x81, b"short".to_vec()));
    let small = deflate_once(b"tiny");
    stream
        .write_all(&frame(0x80 | RSV1 | 0x1, &small))
        .await
        .unwrap();
    assert_eq!(read_frame(&mut stream).await, (0x81, b"tiny".to_vec()));
    // Incompressible data is sent plain even over the threshold.
    let noise = noise(300);
    stream.write_all(&frame(0x82, &noise)).await.unwrap();
    assert_eq!(read_frame(&mut stream).await, (0x82, noise));
    // A message may end with a final deflate block instead of a sync flush, whole or fragmented.
    let text = json_of_size(700);
    let whole = deflate_final(text.as_bytes());
    stream
        .write_all(&frame(0x80 | RSV1 | 0x1, &whole))
        .await
        .unwrap();
    let (_, payload) = read_frame(&mut stream).await;
    assert_eq!(inflate(&mut inflater, &payload), text.as_bytes());
    let (a, b) = whole.split_at(whole.len() / 2);
    let mut bytes = frame(RSV1 | 0x1, a);
    bytes.extend(frame(0x80, b));
    stream.write_all(&bytes).await.unwrap();
    let (_, payload) = read_frame(&mut stream).await;
    assert_eq!(inflate(&mut inflater, &payload), text.as_bytes());
    // An empty compressed message is a single empty stored block.
    stream
        .write_all(&frame(0x80 | RSV1 | 0x1, &deflate_once(b"")))
        .await
        .unwrap();
    assert_eq!(read_frame(&mut stream).await, (0x81, Vec::new()));
}

/// A client that does not offer compression gets no extension and plain frames.
#[tokio::test]
async fn a_client_not_offering_compression_gets_plain_frames() {
    let server = server(Compression::new()).await;
    let (mut stream, head) = handshake(server.addr(), "/ws", None).await;
    assert_eq!(extensions_of(&head), None, "{head}");
    let text = json_of_size(2000);
    stream
        .write_all(&frame(0x81, text.as_bytes()))
        .await
        .unwrap();
    assert_eq!(read_frame(&mut stream).await, (0x81, text.into_bytes()));
    // RSV1 is then a protocol error.
    stream
        .write_all(&frame(0x80 | RSV1 | 0x1, &deflate_once(b"sneaky")))
        .await
        .unwrap();
    assert_eq!(close_code(&mut stream).await, Some(1002));
}

/// RSV1 on a continuation frame, or on a control frame, closes with 1002.
#[tokio::test]
async fn rsv1_outside_the_first_frame_closes_with_1002() {
    let server = server(Compression::new()).await;
    let offer = Some("permessage-deflate");
    let compressed = deflate_once(json_of_size(500).as_bytes());
    let (first, second) = compressed.split_at(10);

    let (mut stream, _) = handshake(server.addr(), "/ws", offer).await;
    let mut bytes = frame(RSV1 | 0x1, first);
    bytes.extend(frame(0x80 | RSV1, second));
    stream.write_all(&bytes).await.unwrap();
    assert_eq!(close_code(&mut stream).await, Some(1002));

    let (mut stream, _) = handshake(server.addr(), "/ws", offer).await;
    stream
        .write_all(&frame(0x80 | RSV1 | 0x9, b""))
        .await
        .unwrap();
    assert_eq!(close_code(&mut stream).await, Some(1002));

    // RSV2 and RSV3 stay reserved.
    let (mut stream, _) = handshake(server.addr(), "/ws", offer).await;
    stream
        .write_all(&frame(0x80 | 0x20 | 0x1, b"x"))
        .await
        .unwrap();
    assert_eq!(close_code(&mut stream).await, Some(1002));

    // The server kept serving.
    let (mut stream, _) = handshake(server.addr(), "/ws", offer).await;
    stream.write_all(&frame(0x81, b"ok")).await.unwrap();
    assert_eq!(read_frame(&mut stream).await, (0x81, b"ok".to_vec()));
}

/// A deflate bomb, in one frame or spread over fragments, closes with 1009 once the inflated size
/// passes the limit, while other connections are served.
#[tokio::test]
async fn a_deflate_bomb_closes_with_1009() {
    let server = server(Compression::new()).await;
    let offer = Some("permessage-deflate");
    // 16 MiB of zeros deflate to about 16 KiB: far under the 64 KiB wire limit.
    let bomb = deflate_once(&vec![0u8; 16 << 20]);
    assert!(bomb.len() < 64 * 1024, "{}", bomb.len());

    let (mut other, _) = handshake(server.addr(), "/ws", offer).await;
    let (mut stream, _) = handshake(server.addr(), "/ws", offer).await;
    stream
        .write_all(&frame(0x80 | RSV1 | 0x2, &bomb))
        .await
        .unwrap();
    assert_eq!(close_code(&mut stream).await, Some(1009));

    let (mut stream, _) = handshake(server.addr(), "/ws", offer).await;
    // Fragments are kept compressed (memory bounded by what arrived) and inflated when the message
    // is whole, so the bomb goes off at its last frame.
    let chunks: Vec<&[u8]> = bomb.chunks(1024).collect();
    let mut bytes = frame(RSV1 | 0x2, chunks[0]);
    for (i, chunk) in chunks.iter().enumerate().skip(1) {
        let fin = if i == chunks.len() - 1 { 0x80 } else { 0x00 };
        bytes.extend(frame(fin, chunk));
    }
    let _ = stream.write_all(&bytes).await;
    assert_eq!(close_code(&mut stream).await, Some(1009));

    other.write_all(&frame(0x81, b"still here")).await.unwrap();
    assert_eq!(read_frame(&mut other).await, (0x81, b"still here".to_vec()));
}

/// Data that is not DEFLATE closes with 1007 (inconsistent with the negotiated extension).
#[tokio::test]
async fn corrupt_compressed_data_closes_with_1007() {
    let server = server(Compression::new()).await;
    let (mut stream, _) = handshake(server.addr(), "/ws", Some("permessage-deflate")).await;
    // Block type 3 is reserved in DEFLATE.
    stream
        .write_all(&frame(0x80 | RSV1 | 0x1, &[0xff, 0xff, 0xff]))
        .await
        .unwrap();
    assert_eq!(close_code(&mut stream).await, Some(1007));

    // Valid DEFLATE of invalid UTF-8 in a text message is 1007 too.
    let (mut stream, _) = handshake(server.addr(), "/ws", Some("permessage-deflate")).await;
    stream
        .write_all(&frame(
            0x80 | RSV1 | 0x1,
            &deflate_once(&[b'a', 0xc3, 0x28]),
        ))
        .await
        .unwrap();
    assert_eq!(close_code(&mut stream).await, Some(1007));
}

/// With context takeover configured, the server keeps its window (the second of two equal messages
/// is much smaller) and accepts a client that keeps its own.
#[tokio::test]
async fn context_takeover_when_configured() {
    let server = server(
        Compression::new()
            .server_context_takeover(true)
            .client_context_takeover(true),
    )
    .await;
    let (mut stream, head) = handshake(
        server.addr(),
        "/ws",
        Some("permessage-deflate; client_max_window_bits"),
    )
    .await;
    assert_eq!(extensions_of(&head), Some("permessage-deflate"));

    let text = json_of_size(3000);
    let mut client = Compress::new(flate2::Compression::default(), false);
    let mut inflater = Decompress::new(false);
    let mut sizes = Vec::new();
    for _ in 0..3 {
        // The client keeps its context too: later messages refer to earlier ones.
        let compressed = deflate(&mut client, text.as_bytes());
        sizes.push(compressed.len());
        stream
            .write_all(&frame(0x80 | RSV1 | 0x1, &compressed))
            .await
            .unwrap();
        let (first, payload) = read_frame(&mut stream).await;
        assert_eq!(first, 0x80 | RSV1 | 0x1);
        sizes.push(payload.len());
        assert_eq!(inflate(&mut inflater, &payload), text.as_bytes());
    }
    assert!(sizes[3] < sizes[1] / 4, "server context kept: {sizes:?}");
    assert!(
        sizes[2] < sizes[0] / 4,
        "client context accepted: {sizes:?}"
    );

    // A message whose stripped tail completes a final (BFINAL) empty block ends the client's stream;
    // the next message starts a new one.
    let mut fresh = Compress::new(flate2::Compression::default(), false);
    let mut ended = deflate(&mut fresh, text.as_bytes());
    ended.extend_from_slice(&[0, 0, 0xff, 0xff, 0x01]);
    stream
        .write_all(&frame(0x80 | RSV1 | 0x1, &ended))
        .await
        .unwrap();
    let (_, payload) = read_frame(&mut stream).await;
    assert_eq!(inflate(&mut inflater, &payload), text.as_bytes());
    let next = deflate_once(text.as_bytes());
    stream
        .write_all(&frame(0x80 | RSV1 | 0x1, &next))
        .await
        .unwrap();
    let (first, payload) = read_frame(&mut stream).await;
    assert_eq!(first, 0x80 | RSV1 | 0x1, "the next message is accepted");
    assert_eq!(inflate(&mut inflater, &payload), text.as_bytes());
}

/// One publish to a room reaches compressing receivers compressed and the others plain.
#[tokio::test]
async fn a_broadcast_reaches_each_receiver_in_its_own_framing() {
    let server = server(Compression::new()).await;
    let (mut compressing, _) = handshake(server.addr(), "/room", Some("permessage-deflate")).await;
    let (mut compressing_too, _) = handshake(
        server.addr(),
        "/room",
        Some("permessage-deflate; server_max_window_bits=10"),
    )
    .await;
    let (mut plain, _) = handshake(server.addr(), "/room", None).await;
    // Everyone has joined once the room answers a message from the last one.
    plain.write_all(&frame(0x81, b"hello")).await.unwrap();
    for stream in [&mut compressing, &mut compressing_too, &mut plain] {
        assert_eq!(read_frame(stream).await, (0x81, b"hello".to_vec()));
    }

    let text = json_of_size(4000);
    plain
        .write_all(&frame(0x81, text.as_bytes()))
        .await
        .unwrap();
    for stream in [&mut compressing, &mut compressing_too] {
        let (first, payload) = read_frame(stream).await;
        assert_eq!(first, 0x80 | RSV1 | 0x1);
        assert_eq!(
            inflate(&mut Decompress::new(false), &payload),
            text.as_bytes()
        );
    }
    assert_eq!(read_frame(&mut plain).await, (0x81, text.into_bytes()));
}

/// A connection's own compressor is given back after half the idle timeout without sending, and a
/// streaming connection keeps it: the next message after a quiet spell starts a fresh context.
#[tokio::test]
async fn an_idle_connection_gives_its_compressor_back() {
    let mut app = verb::create_server();
    app.ws(
        "/ws",
        Ws::new()
            .idle_timeout(Duration::from_secs(2))
            .compression_with(Compression::new().server_context_takeover(true))
            .message(|ws: &WebSocket, msg: Message| {
                ws.send(msg);
            }),
    );
    let server = TestServer::start(app).await;
    let (mut stream, _) = handshake(server.addr(), "/ws", Some("permessage-deflate")).await;
    let text = json_of_size(3000);
    let echo = async |stream: &mut TcpStream| {
        stream
            .write_all(&frame(0x81, text.as_bytes()))
            .await
            .unwrap();
        loop {
            let (first, payload) = read_frame(stream).await;
            if first == 0x89 {
                continue; // the idle timeout's ping
            }
            assert_eq!(first, 0x80 | RSV1 | 0x1);
            return payload.len();
        }
    };
    let fresh = echo(&mut stream).await;
    let warm = echo(&mut stream).await;
    assert!(
        warm < fresh / 4,
        "the context is kept while sending: {fresh} then {warm}"
    );
    // Over half the idle timeout without a message sent.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let after = echo(&mut stream).await;
    assert_eq!(after, fresh, "a fresh compressor after a quiet spell");
}

/// Receivers that compress with a context of their own (server context takeover) get join
/// announcements and room fan-outs after the hub has released its locks: still every one, in
/// order (their contexts stay in step with the client's), before the sending call returns, and
/// counted in its `Delivery`.
#[tokio::test]
async fn receivers_with_their_own_compressor_get_every_fan_out_in_order() {
    let mut app = verb::create_server();
    app.ws(
        "/room",
        Ws::new()
            .compression_with(Compression::new().server_context_takeover(true))
            .open(|ws: &WebSocket, _req: &Request| {
                let Some(rooms) = ws.attachment::<Rooms>() else {
                    return;
                };
                let joined = rooms.join_with("all", ws, |count| {
                    Greeting::new()
                        .announce(Message::text(format!("{count}:{}", json_of_size(3000))))
                });
                if let Ok(Some(joined)) = joined {
                    ws.send(Message::text(format!(
                        "announced to {}",
                        joined.announced.recipients()
                    )));
                }
            })
            .message(|ws: &WebSocket, msg: Message| {
                if let Some(rooms) = ws.attachment::<Rooms>() {
                    let delivery = rooms.to("all").except(ws).send(msg);
                    ws.send(Message::text(format!("sent to {}", delivery.recipients())));
                }
            }),
    );
    let server = TestServer::start(app).await;

    /// A client and the inflater that follows the server's context for it.
    struct Client {
        stream: TcpStream,
        inflater: Decompress,
    }
    impl Client {
        async fn text(&mut self) -> String {
            let (first, payload) = read_frame(&mut self.stream).await;
            assert_eq!(first & 0x0f, 0x1, "a text frame");
            let data = if first & RSV1 != 0 {
                inflate(&mut self.inflater, &payload)
            } else {
                payload
            };
            String::from_utf8(data).expect("UTF-8")
        }
    }

    let mut clients: Vec<Client> = Vec::new();
    for (n, offer) in [
        Some("permessage-deflate"),
        Some("permessage-deflate"),
        Some("permessage-deflate"),
        None,
    ]
    .into_iter()
    .enumerate()
    {
        let (stream, head) = handshake(server.addr(), "/room", offer).await;
        assert_eq!(extensions_of(&head).is_some(), offer.is_some(), "{head}");
        let mut newcomer = Client {
            stream,
            inflater: Decompress::new(false),
        };
        assert_eq!(newcomer.text().await, format!("announced to {n}"));
        for member in &mut clients {
            let announcement = member.text().await;
            assert!(
                announcement.starts_with(&format!("{}:{{", n + 1)),
                "{announcement:.40}"
            );
        }
        clients.push(newcomer);
    }

    let big = json_of_size(5000);
    for sender in [3, 0] {
        for _ in 0..4 {
            clients[sender]
                .stream
                .write_all(&frame(0x81, big.as_bytes()))
                .await
                .unwrap();
            assert_eq!(clients[sender].text().await, "sent to 3");
        }
        for (n, client) in clients.iter_mut().enumerate() {
            if n == sender {
                continue;
            }
            for _ in 0..4 {
                assert_eq!(client.text().await, big, "receiver {n}");
            }
        }
    }
}
