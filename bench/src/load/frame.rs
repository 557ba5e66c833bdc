//! WebSocket framing for the load generator: client frames encoded once and masked, server frames
//! parsed in place.
//!
//! The payload of every message the load generator sends has a fixed layout, so a frame is built once
//! and only the fields that change are rewritten (already masked) before each send:
//!
//! | bytes  | field                                                         |
//! |--------|---------------------------------------------------------------|
//! | 0..8   | sequence number, little endian                                |
//! | 8..16  | send time, nanoseconds since the load generator's start, LE   |
//! | 16     | kind: [`KIND_PROBE`] or [`KIND_DATA`]                          |
//! | 17..   | padding up to the payload size                                |

/// Opcode of a continuation frame.
pub const OP_CONTINUATION: u8 = 0x0;
/// Opcode of a text frame.
pub const OP_TEXT: u8 = 0x1;
/// Opcode of a binary frame.
pub const OP_BINARY: u8 = 0x2;
/// Opcode of a close frame.
pub const OP_CLOSE: u8 = 0x8;
/// Opcode of a ping frame.
pub const OP_PING: u8 = 0x9;
/// Opcode of a pong frame.
pub const OP_PONG: u8 = 0xA;

/// A message sent only to learn that every connection receives broadcasts; not measured.
pub const KIND_PROBE: u8 = 0;
/// A measured message.
pub const KIND_DATA: u8 = 1;
/// The smallest payload that holds the fields above.
pub const MIN_PAYLOAD: usize = 17;
/// The largest payload the load generator sends (a 16-bit length).
pub const MAX_PAYLOAD: usize = u16::MAX as usize;

/// The masking key of every client frame; any key is valid, and a fixed one keeps runs identical.
const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// The fields a message carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Sequence number (per publisher in broadcast mode, per connection in echo mode).
    pub seq: u64,
    /// Send time in nanoseconds since the load generator's start.
    pub sent_ns: u64,
    /// [`KIND_PROBE`] or [`KIND_DATA`].
    pub kind: u8,
}

impl Stamp {
    /// Reads the fields from a received payload; `None` if it is not one of ours.
    pub fn parse(payload: &[u8]) -> Option<Self> {
        if payload.len() < MIN_PAYLOAD {
            return None;
        }
        let seq = u64::from_le_bytes(payload[0..8].try_into().ok()?);
        let sent_ns = u64::from_le_bytes(payload[8..16].try_into().ok()?);
        let kind = payload[16];
        (kind == KIND_PROBE || kind == KIND_DATA).then_some(Self { seq, sent_ns, kind })
    }
}

/// The chat protocol of Verb's `rooms` / `cluster` examples: a publish is the masked text frame
/// `{"username":"bench","text":"KIND:SEQ:SENT_NS"}` (its size follows the numbers, not `--payload`).
pub fn chat_frame(stamp: Stamp) -> Vec<u8> {
    let json = format!(
        r#"{{"username":"bench","text":"{}:{}:{}"}}"#,
        stamp.kind, stamp.seq, stamp.sent_ns
    );
    encode_client(OP_TEXT, json.as_bytes())
}

/// A server frame of the chat protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chat {
    /// A `{"type":"message",..,"text":"KIND:SEQ:SENT_NS"}` carrying one of our stamps.
    Data(Stamp),
    /// A `welcome` or `system` notice (joins and leaves), not ours to measure.
    Notice,
    /// Anything else (an `error`, a message that is not ours, ...).
    Other,
}

/// Classifies the payload of a text frame of the chat protocol.
pub fn parse_chat(payload: &[u8]) -> Chat {
    let Ok(text) = std::str::from_utf8(payload) else {
        return Chat::Other;
    };
    if text.contains(r#""type":"welcome""#) || text.contains(r#""type":"system""#) {
        return Chat::Notice;
    }
    if !text.contains(r#""type":"message""#) {
        return Chat::Other;
    }
    let stamp =
        text.split_once(r#""text":""#)
            .and_then(|(_, rest)| rest.split_once('"'))
            .and_then(|(fields, _)| {
                let mut it = fields.split(':');
                let kind: u8 = it.next()?.parse().ok()?;
                let seq = it.next()?.parse().ok()?;
                let sent_ns = it.next()?.parse().ok()?;
                (it.next().is_none() && (kind == KIND_PROBE || kind == KIND_DATA))
                    .then_some(Stamp { seq, sent_ns, kind })
            });
    stamp.map_or(Chat::Other, Chat::Data)
}

/// A masked binary client frame of a fixed payload size, encoded once and stamped before each send.
#[derive(Debug, Clone)]
pub struct ClientFrame {
    bytes: Vec<u8>,
    payload_at: usize,
}

impl ClientFrame {
    /// A binary frame with a payload of `size` bytes (`MIN_PAYLOAD..=MAX_PAYLOAD`).
    pub fn new(size: usize) -> Self {
        assert!(
            (MIN_PAYLOAD..=MAX_PAYLOAD).contains(&size),
            "payload size {size} outside {MIN_PAYLOAD}..={MAX_PAYLOAD}"
        );
        let payload: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
        let bytes = encode_client(OP_BINARY, &payload);
        let payload_at = bytes.len() - size;
        Self { bytes, payload_at }
    }

    /// Writes `stamp` into the frame (masked) and returns the bytes to send.
    pub fn stamp(&mut self, stamp: Stamp) -> &[u8] {
        let mut fields = [0u8; MIN_PAYLOAD];
        fields[0..8].copy_from_slice(&stamp.seq.to_le_bytes());
        fields[8..16].copy_from_slice(&stamp.sent_ns.to_le_bytes());
        fields[16] = stamp.kind;
        let at = self.payload_at;
        for (i, byte) in fields.iter().enumerate() {
            self.bytes[at + i] = byte ^ MASK[i % 4];
        }
        &self.bytes
    }
}

/// Encodes one masked client frame (FIN set) with `opcode` and `payload`.
pub fn encode_client(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(0x80 | opcode);
    match payload.len() {
        len @ 0..=125 => out.push(0x80 | len as u8),
        len @ 126..=0xffff => {
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

/// One frame from the server, borrowed from the read buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerFrame<'a> {
    /// FIN bit.
    pub fin: bool,
    /// RSV1 bit: with permessage-deflate, "this message is compressed".
    pub rsv1: bool,
    /// The opcode.
    pub opcode: u8,
    /// The (unmasked) payload.
    pub payload: &'a [u8],
}

/// The length on the wire of a server frame (unmasked, minimal length encoding) with a payload of
/// `payload` bytes.
pub fn frame_len(payload: usize) -> usize {
    payload
        + match payload {
            0..=125 => 2,
            126..=0xffff => 4,
            _ => 10,
        }
}

/// What a server sent that no server may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// A server frame with the mask bit set (RFC 6455 §5.1).
    Masked,
    /// A frame larger than the load generator's read buffer.
    TooLarge(u64),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Masked => f.write_str("the server sent a masked frame"),
            Self::TooLarge(len) => write!(f, "the server sent a frame of {len} bytes"),
        }
    }
}

/// Parses the frame at the start of `buf`: the frame and its length in bytes, or `None` when `buf`
/// holds only part of it. Frames longer than `max_len` bytes are an error.
pub fn parse_server(
    buf: &[u8],
    max_len: usize,
) -> Result<Option<(ServerFrame<'_>, usize)>, FrameError> {
    let [b0, b1, ..] = *buf else {
        return Ok(None);
    };
    if b1 & 0x80 != 0 {
        return Err(FrameError::Masked);
    }
    let (header, len) = match b1 & 0x7f {
        126 => match buf.get(2..4) {
            Some(ext) => (4, u64::from(u16::from_be_bytes([ext[0], ext[1]]))),
            None => return Ok(None),
        },
        127 => match buf.get(2..10) {
            Some(ext) => {
                let mut be = [0u8; 8];
                be.copy_from_slice(ext);
                (10, u64::from_be_bytes(be))
            }
            None => return Ok(None),
        },
        len => (2, u64::from(len)),
    };
    let total = header as u64 + len;
    if total > max_len as u64 {
        return Err(FrameError::TooLarge(total));
    }
    let total = total as usize;
    if buf.len() < total {
        return Ok(None);
    }
    let frame = ServerFrame {
        fin: b0 & 0x80 != 0,
        rsv1: b0 & 0x40 != 0,
        opcode: b0 & 0x0f,
        payload: &buf[header..total],
    };
    Ok(Some((frame, total)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unmasks a client frame the way a server does, to check what the load generator sends.
    fn unmask(frame: &[u8]) -> (u8, Vec<u8>) {
        assert_eq!(frame[0] & 0x80, 0x80, "FIN");
        assert_eq!(frame[1] & 0x80, 0x80, "MASK");
        let (at, len) = match frame[1] & 0x7f {
            126 => (4, u16::from_be_bytes([frame[2], frame[3]]) as usize),
            127 => unreachable!("not used by these tests"),
            len => (2, len as usize),
        };
        let mask = &frame[at..at + 4];
        let payload = frame[at + 4..at + 4 + len]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i % 4])
            .collect();
        (frame[0] & 0x0f, payload)
    }

    #[test]
    fn stamped_frames_unmask_to_the_stamp() {
        for size in [MIN_PAYLOAD, 64, 125, 126, 1000] {
            let mut frame = ClientFrame::new(size);
            let stamp = Stamp {
                seq: 0x0102_0304_0506_0708 + size as u64,
                sent_ns: 987_654_321,
                kind: KIND_DATA,
            };
            let (opcode, payload) = unmask(frame.stamp(stamp));
            assert_eq!(opcode, OP_BINARY);
            assert_eq!(payload.len(), size);
            assert_eq!(Stamp::parse(&payload), Some(stamp));
            // Restamping rewrites the fields only.
            let again = Stamp {
                seq: 7,
                sent_ns: 8,
                kind: KIND_PROBE,
            };
            let (_, payload2) = unmask(frame.stamp(again));
            assert_eq!(Stamp::parse(&payload2), Some(again));
            assert_eq!(payload[MIN_PAYLOAD..], payload2[MIN_PAYLOAD..]);
        }
    }

    #[test]
    fn chat_frames_round_trip_through_the_server_format() {
        let stamp = Stamp {
            seq: 42,
            sent_ns: 123_456_789,
            kind: KIND_DATA,
        };
        let (opcode, payload) = unmask(&chat_frame(stamp));
        assert_eq!(opcode, OP_TEXT);
        let sent = String::from_utf8(payload).expect("UTF-8");
        assert_eq!(sent, r#"{"username":"bench","text":"1:42:123456789"}"#);
        let received = r#"{"sender":"bench","text":"1:42:123456789","timestamp":1700000000000,"type":"message"}"#;
        assert_eq!(parse_chat(received.as_bytes()), Chat::Data(stamp));
        let welcome = r#"{"room":"bench","type":"welcome","userCount":3}"#;
        assert_eq!(parse_chat(welcome.as_bytes()), Chat::Notice);
        let system = r#"{"message":"A user has joined the room","type":"system","userCount":3}"#;
        assert_eq!(parse_chat(system.as_bytes()), Chat::Notice);
        let other = r#"{"sender":"x","text":"hello","timestamp":1,"type":"message"}"#;
        assert_eq!(parse_chat(other.as_bytes()), Chat::Other);
        assert_eq!(parse_chat(br#"{"type":"error"}"#), Chat::Other);
    }

    #[test]
    fn server_frames_parse_whole_or_not_at_all() {
        let mut wire = vec![0x82, 3, b'a', b'b', b'c'];
        wire.extend_from_slice(&[0x89, 0]);
        let (frame, used) = parse_server(&wire, 1024).expect("valid").expect("whole");
        assert_eq!(
            (frame.fin, frame.rsv1, frame.opcode, frame.payload, used),
            (true, false, OP_BINARY, &b"abc"[..], 5)
        );
        assert_eq!(used, frame_len(3));
        let (deflated, _) = parse_server(&[0xc1, 1, 0], 1024)
            .expect("valid")
            .expect("whole");
        assert!(deflated.rsv1 && deflated.fin && deflated.opcode == OP_TEXT);
        let (ping, used) = parse_server(&wire[5..], 1024)
            .expect("valid")
            .expect("whole");
        assert_eq!((ping.opcode, ping.payload.len(), used), (OP_PING, 0, 2));
        assert_eq!(parse_server(&wire[..4], 1024), Ok(None));
        assert_eq!(parse_server(&wire[..1], 1024), Ok(None));

        let mut long = vec![0x02, 126, 0x01, 0x00];
        long.extend(std::iter::repeat_n(9, 256));
        let (frame, used) = parse_server(&long, 1024).expect("valid").expect("whole");
        assert_eq!((frame.fin, frame.payload.len(), used), (false, 256, 260));
        assert_eq!(frame_len(256), 260);
        assert_eq!(parse_server(&long[..100], 1024), Ok(None));
        assert_eq!(parse_server(&long, 100), Err(FrameError::TooLarge(260)));
        assert_eq!(
            parse_server(&[0x82, 0x81, 0, 0, 0, 0, 1], 1024),
            Err(FrameError::Masked)
        );
    }
}
