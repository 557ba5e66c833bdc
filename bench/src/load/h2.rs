//! WebSockets over HTTP/2 (RFC 8441), done by hand like the rest of the load generator: one
//! extended CONNECT stream per TCP connection (h2c with prior knowledge), and the WebSocket's bytes in
//! DATA frames. Enough HTTP/2 for that: SETTINGS and PING answered, flow control in both directions
//! (our windows are replenished as the bytes are consumed; sends wait for the server's windows).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

pub(super) const DATA: u8 = 0x0;
pub(super) const HEADERS: u8 = 0x1;
pub(super) const RST_STREAM: u8 = 0x3;
pub(super) const SETTINGS: u8 = 0x4;
pub(super) const PING: u8 = 0x6;
pub(super) const GOAWAY: u8 = 0x7;
pub(super) const WINDOW_UPDATE: u8 = 0x8;
pub(super) const END_HEADERS: u8 = 0x4;
pub(super) const ACK: u8 = 0x1;
const PADDED: u8 = 0x8;
pub(super) const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;
const SETTINGS_MAX_FRAME_SIZE: u16 = 0x5;
/// The stream every tunnel uses: the connection's first client stream.
const STREAM: u32 = 1;
/// Replenish our receive windows once this much has been consumed.
pub(super) const REPLENISH: u32 = 1 << 20;
/// Our receive windows: large, so the server is never held back by this client.
pub(super) const OUR_WINDOW: u32 = 16 << 20;
/// HTTP/2's default frame size limit (the server may raise it).
const DEFAULT_MAX_FRAME: usize = 16 * 1024;

pub(super) fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8], out: &mut Vec<u8>) {
    let len = payload.len() as u32;
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}

/// One HPACK "literal header field without indexing, new name", with plain (not Huffman) strings.
fn literal(name: &str, value: &str, out: &mut Vec<u8>) {
    out.push(0x00);
    for text in [name, value] {
        assert!(text.len() < 127, "HPACK strings here stay under 127 bytes");
        out.push(text.len() as u8);
        out.extend_from_slice(text.as_bytes());
    }
}

/// What a client sends first: the preface, SETTINGS with a large stream window, and a connection
/// window as large, so the server is never held back by this client.
pub(super) fn preface() -> Vec<u8> {
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    let mut settings = Vec::new();
    settings.extend_from_slice(&SETTINGS_INITIAL_WINDOW_SIZE.to_be_bytes());
    settings.extend_from_slice(&OUR_WINDOW.to_be_bytes());
    frame(SETTINGS, 0, 0, &settings, &mut out);
    frame(
        WINDOW_UPDATE,
        0,
        0,
        &(OUR_WINDOW - 65_535).to_be_bytes(),
        &mut out,
    );
    out
}

/// The HTTP/2 side of a tunnelled WebSocket: what is owed to the server and what the server allows.
#[derive(Debug)]
pub(super) struct Tunnel {
    /// Raw bytes read but not yet parsed into frames.
    raw: Vec<u8>,
    /// WebSocket bytes waiting for flow-control room.
    pending: Vec<u8>,
    /// What the server lets us send, on the connection and on the stream.
    conn_window: i64,
    stream_window: i64,
    /// The server's initial stream window (SETTINGS), for changes to it.
    initial_window: i64,
    max_frame: usize,
    /// Bytes of DATA consumed since our windows were last replenished.
    unacked: u32,
    /// Control frames (acks, window updates) to send.
    control: Vec<u8>,
}

/// What reading the raw bytes gave.
pub(super) enum Read2 {
    /// WebSocket bytes (possibly none); the connection goes on.
    Data,
    /// The server ended the stream or the connection.
    Ended(String),
}

impl Tunnel {
    fn new() -> Self {
        Self {
            raw: Vec::new(),
            pending: Vec::new(),
            conn_window: 65_535,
            stream_window: 65_535,
            initial_window: 65_535,
            max_frame: DEFAULT_MAX_FRAME,
            unacked: 0,
            control: Vec::new(),
        }
    }

    /// Takes `bytes` read off the socket and appends the stream's WebSocket bytes to `ws`.
    pub(super) fn absorb(&mut self, bytes: &[u8], ws: &mut Vec<u8>) -> Read2 {
        self.raw.extend_from_slice(bytes);
        let mut at = 0;
        let mut ended = None;
        while self.raw.len() - at >= 9 {
            let head = &self.raw[at..at + 9];
            let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
            if self.raw.len() - at < 9 + len {
                break;
            }
            let (kind, flags) = (head[3], head[4]);
            let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
            let payload = &self.raw[at + 9..at + 9 + len];
            match kind {
                DATA if stream == STREAM => {
                    let data = if flags & PADDED != 0 && !payload.is_empty() {
                        let pad = payload[0] as usize;
                        &payload[1..payload.len().saturating_sub(pad).max(1)]
                    } else {
                        payload
                    };
                    ws.extend_from_slice(data);
                    self.unacked += len as u32;
                }
                SETTINGS if flags & ACK == 0 => {
                    for setting in payload.chunks_exact(6) {
                        let id = u16::from_be_bytes([setting[0], setting[1]]);
                        let value =
                            u32::from_be_bytes([setting[2], setting[3], setting[4], setting[5]]);
                        match id {
                            SETTINGS_INITIAL_WINDOW_SIZE => {
                                self.stream_window += i64::from(value) - self.initial_window;
                                self.initial_window = i64::from(value);
                            }
                            SETTINGS_MAX_FRAME_SIZE => self.max_frame = value as usize,
                            _ => {}
                        }
                    }
                    frame(SETTINGS, ACK, 0, &[], &mut self.control);
                }
                PING if flags & ACK == 0 => frame(PING, ACK, 0, payload, &mut self.control),
                WINDOW_UPDATE if payload.len() == 4 => {
                    let increment = i64::from(
                        u32::from_be_bytes(payload.try_into().unwrap_or([0; 4])) & 0x7fff_ffff,
                    );
                    if stream == 0 {
                        self.conn_window += increment;
                    } else if stream == STREAM {
                        self.stream_window += increment;
                    }
                }
                RST_STREAM if stream == STREAM => {
                    ended = Some(format!("the server reset the stream ({payload:02x?})"));
                }
                GOAWAY => ended = Some(format!("the server sent GOAWAY ({payload:02x?})")),
                _ => {}
            }
            at += 9 + len;
        }
        self.raw.drain(..at);
        if self.unacked >= REPLENISH {
            let increment = self.unacked.to_be_bytes();
            frame(WINDOW_UPDATE, 0, 0, &increment, &mut self.control);
            frame(WINDOW_UPDATE, 0, STREAM, &increment, &mut self.control);
            self.unacked = 0;
        }
        match ended {
            Some(why) => Read2::Ended(why),
            None => Read2::Data,
        }
    }

    /// Queues WebSocket bytes to send.
    pub(super) fn queue(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
    }

    /// Frames what may be sent now (control frames first, then DATA within the windows) into `out`.
    pub(super) fn frames(&mut self, out: &mut Vec<u8>) {
        out.append(&mut self.control);
        let mut sent = 0;
        while sent < self.pending.len() {
            let room = self.conn_window.min(self.stream_window).max(0) as usize;
            let take = (self.pending.len() - sent).min(room).min(self.max_frame);
            if take == 0 {
                break;
            }
            frame(DATA, 0, STREAM, &self.pending[sent..sent + take], out);
            self.conn_window -= take as i64;
            self.stream_window -= take as i64;
            sent += take;
        }
        self.pending.drain(..sent);
    }
}

/// Connects, speaks HTTP/2 with prior knowledge and opens a WebSocket on stream 1 of `path` with an
/// extended CONNECT; the socket (blocking, to be made non-blocking by the caller), the tunnel and the
/// WebSocket bytes that came with the response.
pub(super) fn open(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> io::Result<(TcpStream, Box<Tunnel>, Vec<u8>)> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    let mut settings = Vec::new();
    settings.extend_from_slice(&SETTINGS_INITIAL_WINDOW_SIZE.to_be_bytes());
    settings.extend_from_slice(&OUR_WINDOW.to_be_bytes());
    frame(SETTINGS, 0, 0, &settings, &mut out);
    frame(
        WINDOW_UPDATE,
        0,
        0,
        &(OUR_WINDOW - 65_535).to_be_bytes(),
        &mut out,
    );
    stream.write_all(&out)?;

    let mut tunnel = Box::new(Tunnel::new());
    let mut ws = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    // The server's SETTINGS first: they say whether extended CONNECT is allowed.
    let mut sent_connect = false;
    loop {
        if !sent_connect && tunnel.initial_window > 0 && !tunnel.control.is_empty() {
            let mut block = Vec::new();
            literal(":method", "CONNECT", &mut block);
            literal(":protocol", "websocket", &mut block);
            literal(":scheme", "http", &mut block);
            literal(":path", path, &mut block);
            literal(":authority", &addr.to_string(), &mut block);
            literal("sec-websocket-version", "13", &mut block);
            let mut out = Vec::new();
            tunnel.frames(&mut out);
            frame(HEADERS, END_HEADERS, STREAM, &block, &mut out);
            stream.write_all(&out)?;
            sent_connect = true;
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection during the handshake",
            ));
        }
        // A response HEADERS frame on our stream: `:status` 200 is HPACK's static entry 8 (0x88).
        tunnel.raw.extend_from_slice(&chunk[..n]);
        if sent_connect {
            if let Some(status) = response_status(&tunnel.raw[..]) {
                if status != 0x88 {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("extended CONNECT refused (first :status byte {status:#04x})"),
                    ));
                }
                // Everything (the HEADERS too, ignored) goes through the tunnel from here.
                let raw = std::mem::take(&mut tunnel.raw);
                if let Read2::Ended(why) = tunnel.absorb(&raw, &mut ws) {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, why));
                }
                let mut out = Vec::new();
                tunnel.frames(&mut out);
                stream.write_all(&out)?;
                stream.set_read_timeout(None)?;
                stream.set_write_timeout(None)?;
                return Ok((stream, tunnel, ws));
            }
        } else {
            // Before our CONNECT: only SETTINGS and the like; absorb them (acks are queued).
            let raw = std::mem::take(&mut tunnel.raw);
            if let Read2::Ended(why) = tunnel.absorb(&raw, &mut ws) {
                return Err(io::Error::new(io::ErrorKind::InvalidData, why));
            }
        }
    }
}

/// The first byte of the header block of a complete HEADERS frame on our stream in `raw`, if any.
fn response_status(raw: &[u8]) -> Option<u8> {
    let mut at = 0;
    while raw.len() - at >= 9 {
        let len = u32::from_be_bytes([0, raw[at], raw[at + 1], raw[at + 2]]) as usize;
        if raw.len() - at < 9 + len {
            return None;
        }
        let kind = raw[at + 3];
        let stream =
            u32::from_be_bytes([raw[at + 5], raw[at + 6], raw[at + 7], raw[at + 8]]) & 0x7fff_ffff;
        if kind == HEADERS && stream == STREAM {
            return raw.get(at + 9).copied();
        }
        if kind == RST_STREAM && stream == STREAM {
            return Some(0);
        }
        at += 9 + len;
    }
    None
}
