//! RFC 6455 §5 frames, in one place: opcodes, the header as the peer sends it (parsed in place),
//! the headers we write, control and close frames, and unmasking.

use bytes::{BufMut, Bytes, BytesMut};

use crate::message::CloseCode;

pub(crate) const OP_CONTINUATION: u8 = 0x0;
pub(crate) const OP_TEXT: u8 = 0x1;
pub(crate) const OP_BINARY: u8 = 0x2;
pub(crate) const OP_CLOSE: u8 = 0x8;
pub(crate) const OP_PING: u8 = 0x9;
pub(crate) const OP_PONG: u8 = 0xA;

pub(crate) fn header_len(payload: usize) -> usize {
    match payload {
        0..=125 => 2,
        126..=65535 => 4,
        _ => 10,
    }
}

/// Writes an unmasked, final frame header.
pub(crate) fn put_header(buf: &mut BytesMut, opcode: u8, payload: usize) {
    buf.put_u8(0x80 | opcode);
    match payload {
        0..=125 => buf.put_u8(payload as u8),
        126..=65535 => {
            buf.put_u8(126);
            buf.put_u16(payload as u16);
        }
        _ => {
            buf.put_u8(127);
            buf.put_u64(payload as u64);
        }
    }
}

/// A control frame (payload at most 125 bytes, which callers guarantee).
pub(crate) fn control_frame(opcode: u8, payload: &[u8]) -> Bytes {
    let mut frame = BytesMut::with_capacity(2 + payload.len());
    put_header(&mut frame, opcode, payload.len());
    frame.extend_from_slice(payload);
    frame.freeze()
}

/// A close frame with `code` and `reason` (truncated to fit 125 bytes at a character boundary).
pub(crate) fn close_frame(code: Option<CloseCode>, reason: &str) -> Bytes {
    let Some(code) = code else {
        return control_frame(OP_CLOSE, &[]);
    };
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = Vec::with_capacity(2 + end);
    payload.extend_from_slice(&code.as_u16().to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    control_frame(OP_CLOSE, &payload)
}

/// A frame header as RFC 6455 §5.2 lays it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) is_final: bool,
    pub(crate) rsv1: bool,
    pub(crate) rsv2: bool,
    pub(crate) rsv3: bool,
    pub(crate) opcode: u8,
    /// The payload length as sent (checked against the limit before anything is buffered for it).
    pub(crate) len: u64,
    pub(crate) mask: Option<[u8; 4]>,
}

impl Header {
    /// Parses the header at the start of `buf`: the header and its length in bytes, or `None` while
    /// `buf` holds only part of it. Every bit pattern parses; what is allowed is the engine's call.
    pub(crate) fn parse(buf: &[u8]) -> Option<(Header, usize)> {
        let (&first, rest) = buf.split_first()?;
        let (&second, rest) = rest.split_first()?;
        let (len, rest, mut header_len) = match second & 0x7F {
            126 => {
                let (bytes, rest) = rest.split_first_chunk::<2>()?;
                (u64::from(u16::from_be_bytes(*bytes)), rest, 4)
            }
            127 => {
                let (bytes, rest) = rest.split_first_chunk::<8>()?;
                (u64::from_be_bytes(*bytes), rest, 10)
            }
            short => (u64::from(short), rest, 2),
        };
        let mask = if second & 0x80 != 0 {
            header_len += 4;
            Some(*rest.first_chunk::<4>()?)
        } else {
            None
        };
        let header = Header {
            is_final: first & 0x80 != 0,
            rsv1: first & 0x40 != 0,
            rsv2: first & 0x20 != 0,
            rsv3: first & 0x10 != 0,
            opcode: first & 0x0F,
            len,
            mask,
        };
        Some((header, header_len))
    }
}

/// XORs `payload` with the client's masking key (RFC 6455 §5.3), 64 bytes at a time.
pub(crate) fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    // The mask repeats every 4 bytes, so it lines up again at the start of every 64-byte block: a
    // fixed-size XOR of two arrays, which the compiler turns into vector instructions.
    let mut block_mask = [0; 64];
    for (i, byte) in block_mask.iter_mut().enumerate() {
        *byte = mask[i % 4];
    }
    let mut blocks = payload.chunks_exact_mut(64);
    for block in &mut blocks {
        for (byte, m) in block.iter_mut().zip(block_mask) {
            *byte ^= m;
        }
    }
    for (byte, m) in blocks.into_remainder().iter_mut().zip(block_mask) {
        *byte ^= m;
    }
}

#[cfg(test)]
mod tests {
    use super::{Header, unmask};

    /// Every length encoding, masked or not, and every prefix of a header is "not yet".
    #[test]
    fn headers_parse_as_rfc_6455_lays_them_out() {
        let mask = [1, 2, 3, 4];
        let cases: [(&[u8], Header, usize); 4] = [
            (
                &[0x81, 0x85, 1, 2, 3, 4],
                Header {
                    is_final: true,
                    rsv1: false,
                    rsv2: false,
                    rsv3: false,
                    opcode: 1,
                    len: 5,
                    mask: Some(mask),
                },
                6,
            ),
            (
                &[0x42, 0xFE, 0x01, 0x00, 1, 2, 3, 4],
                Header {
                    is_final: false,
                    rsv1: true,
                    rsv2: false,
                    rsv3: false,
                    opcode: 2,
                    len: 256,
                    mask: Some(mask),
                },
                8,
            ),
            (
                &[0xB0, 0xFF, 0, 0, 0, 1, 0, 0, 0, 0, 1, 2, 3, 4],
                Header {
                    is_final: true,
                    rsv1: false,
                    rsv2: true,
                    rsv3: true,
                    opcode: 0,
                    len: 1 << 32,
                    mask: Some(mask),
                },
                14,
            ),
            (
                &[0x8A, 0x7E, 0xFF, 0xFF],
                Header {
                    is_final: true,
                    rsv1: false,
                    rsv2: false,
                    rsv3: false,
                    opcode: 0xA,
                    len: 65535,
                    mask: None,
                },
                4,
            ),
        ];
        for (bytes, header, len) in cases {
            assert_eq!(Header::parse(bytes), Some((header, len)), "{bytes:?}");
            for end in 0..bytes.len() {
                assert_eq!(Header::parse(&bytes[..end]), None, "{:?}", &bytes[..end]);
            }
            let mut longer = bytes.to_vec();
            longer.extend_from_slice(b"payload");
            assert_eq!(Header::parse(&longer), Some((header, len)));
        }
    }

    /// Unmasking by blocks gives the same result as byte by byte, at every length.
    #[test]
    fn unmask_matches_the_bytewise_definition() {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        for len in 0..300 {
            let original: Vec<u8> = (0..len as u8).map(|b| b.wrapping_mul(31)).collect();
            let mut fast = original.clone();
            unmask(&mut fast, mask);
            let slow: Vec<u8> = original
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ mask[i % 4])
                .collect();
            assert_eq!(fast, slow, "length {len}");
        }
    }
}
