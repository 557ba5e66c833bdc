//! The client side of permessage-deflate (RFC 7692), as cheap for the load generator as it can be.
//!
//! - Without server context takeover every message is deflated on its own, and a server that
//!   compresses a broadcast once sends every receiver the same bytes: a frame is inflated once and the
//!   result kept by its compressed bytes ([`Inflate::shared`]), so the other receivers only compare
//!   bytes.
//! - With server context takeover each connection's messages refer to its earlier ones: every
//!   connection has its own raw-deflate decompressor, and every frame it receives is inflated.

use std::collections::HashMap;

use flate2::{Decompress, FlushDecompress, Status};

/// The offer every connection makes when compression is on (what browsers send).
pub const OFFER: &str = "permessage-deflate; client_max_window_bits";
/// The four bytes RFC 7692 §7.2.2 has the receiver append before inflating.
const SYNC_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];
/// Largest inflated message accepted; anything larger is corrupt for this benchmark.
const MAX_MESSAGE: usize = 1 << 20;
/// Distinct frames remembered (a few times the messages in flight).
const CACHED: usize = 256;
/// Leading bytes of a frame that its fingerprint covers (a deflated message's first bytes already
/// hold its Huffman tables and the start of its text: the sequence number, in feed messages).
const SAMPLE: usize = 128;

/// What a connection's handshake settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Negotiated {
    /// No compression.
    Off,
    /// permessage-deflate with `server_no_context_takeover`.
    Shared,
    /// permessage-deflate with server context takeover.
    Takeover,
}

impl Negotiated {
    /// Reads the server's `Sec-WebSocket-Extensions` answer (`None`: not there).
    pub fn from_answer(answer: Option<&str>) -> Result<Self, String> {
        let Some(answer) = answer else {
            return Ok(Self::Off);
        };
        let mut params = answer.split(';').map(str::trim);
        if params.next() != Some("permessage-deflate") || answer.contains(',') {
            return Err(format!("unexpected Sec-WebSocket-Extensions: {answer}"));
        }
        if params.any(|p| p == "server_no_context_takeover") {
            Ok(Self::Shared)
        } else {
            Ok(Self::Takeover)
        }
    }

    /// Index in per-kind counts: off, shared, takeover.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Inflates `payload` (one whole message) with `d`, into `out` (cleared first).
fn inflate(d: &mut Decompress, payload: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    out.clear();
    for input in [payload, &SYNC_TAIL] {
        let mut at = 0;
        loop {
            if out.capacity() - out.len() < 256 {
                out.reserve(out.len().max(4 * payload.len()).max(1024));
            }
            let (in_before, out_before) = (d.total_in(), out.len());
            let status = d
                .decompress_vec(&input[at..], out, FlushDecompress::Sync)
                .map_err(|err| format!("inflate: {err}"))?;
            let consumed = (d.total_in() - in_before) as usize;
            at += consumed;
            if out.len() > MAX_MESSAGE {
                return Err(format!("inflated past {MAX_MESSAGE} bytes"));
            }
            if status == Status::StreamEnd {
                // A final block ends the message; nothing may follow it.
                return if at == input.len() {
                    Ok(())
                } else {
                    Err("data after the final deflate block".to_owned())
                };
            }
            if at == input.len() && out.len() < out.capacity() {
                break;
            }
            if consumed == 0 && out.len() == out_before {
                return Err("inflate made no progress".to_owned());
            }
        }
    }
    Ok(())
}

/// A remembered frame: its compressed bytes and what it was.
#[derive(Debug)]
struct Cached<T> {
    key: u64,
    frame: Vec<u8>,
    value: T,
}

/// Inflating for every connection; `T` is what a frame is to the caller (kept per distinct frame).
#[derive(Debug)]
pub struct Inflate<T> {
    negotiated: Vec<Negotiated>,
    /// Context-takeover connections' decompressors, made on their first compressed frame.
    own: Vec<Option<Decompress>>,
    shared: Decompress,
    out: Vec<u8>,
    cache: Vec<Cached<T>>,
    index: HashMap<u64, usize>,
    next_slot: usize,
    /// Frames actually inflated (cache misses and context-takeover frames).
    pub inflated: u64,
}

impl<T: Copy> Inflate<T> {
    /// For connections that negotiated `negotiated`.
    pub fn new(negotiated: Vec<Negotiated>) -> Self {
        Self {
            own: negotiated.iter().map(|_| None).collect(),
            negotiated,
            shared: Decompress::new(false),
            out: Vec::with_capacity(4096),
            cache: Vec::with_capacity(CACHED),
            index: HashMap::with_capacity(CACHED),
            next_slot: 0,
            inflated: 0,
        }
    }

    /// What connection `conn` negotiated.
    pub fn negotiated(&self, conn: usize) -> Negotiated {
        self.negotiated[conn]
    }

    /// A compressed (RSV1) frame `payload` of connection `conn`: `what(message)` of the inflated
    /// message, reused for byte-identical frames when the connection keeps no context.
    pub fn frame(
        &mut self,
        conn: usize,
        payload: &[u8],
        what: impl FnOnce(&[u8]) -> T,
    ) -> Result<T, String> {
        match self.negotiated[conn] {
            Negotiated::Off => Err("RSV1 set without a negotiated extension".to_owned()),
            Negotiated::Takeover => {
                let d = self.own[conn].get_or_insert_with(|| Decompress::new(false));
                self.inflated += 1;
                inflate(d, payload, &mut self.out)?;
                Ok(what(&self.out))
            }
            Negotiated::Shared => {
                let key = fingerprint(payload);
                if let Some(&slot) = self.index.get(&key) {
                    let hit = &self.cache[slot];
                    if hit.frame == payload {
                        return Ok(hit.value);
                    }
                }
                self.inflated += 1;
                let result = inflate(&mut self.shared, payload, &mut self.out);
                self.shared.reset(false);
                result?;
                let value = what(&self.out);
                self.remember(key, payload, value);
                Ok(value)
            }
        }
    }

    fn remember(&mut self, key: u64, frame: &[u8], value: T) {
        let entry = Cached {
            key,
            frame: frame.to_vec(),
            value,
        };
        let slot = self.next_slot;
        if slot == self.cache.len() {
            self.cache.push(entry);
        } else {
            let old = std::mem::replace(&mut self.cache[slot], entry);
            if self.index.get(&old.key) == Some(&slot) {
                self.index.remove(&old.key);
            }
        }
        self.index.insert(key, slot);
        self.next_slot = (slot + 1) % CACHED;
    }
}

/// A quick hash of a frame: its length, its first [`SAMPLE`] bytes and its last eight (FxHash-style,
/// eight bytes at a time). Frames that share it are told apart by comparing all their bytes.
fn fingerprint(bytes: &[u8]) -> u64 {
    let step =
        |hash: u64, word: u64| (hash.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    let head = &bytes[..bytes.len().min(SAMPLE)];
    let mut chunks = head.chunks_exact(8);
    let mut hash = bytes.len() as u64;
    for chunk in &mut chunks {
        hash = step(
            hash,
            u64::from_le_bytes(chunk.try_into().expect("eight bytes")),
        );
    }
    let mut tail = [0u8; 8];
    let end = &bytes[bytes.len().saturating_sub(8)..];
    tail[..end.len()].copy_from_slice(end);
    step(hash, u64::from_le_bytes(tail))
}

#[cfg(test)]
mod tests {
    use flate2::{Compress, Compression, FlushCompress};

    use super::*;

    /// A message deflated as a server does: sync flush, tail stripped.
    fn deflate(c: &mut Compress, message: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(message.len() + 64);
        c.compress_vec(message, &mut out, FlushCompress::Sync)
            .expect("deflate");
        assert!(out.ends_with(&SYNC_TAIL));
        out.truncate(out.len() - 4);
        out
    }

    #[test]
    fn reads_the_answer() {
        assert_eq!(Negotiated::from_answer(None), Ok(Negotiated::Off));
        assert_eq!(
            Negotiated::from_answer(Some(
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
            )),
            Ok(Negotiated::Shared)
        );
        assert_eq!(
            Negotiated::from_answer(Some("permessage-deflate; client_no_context_takeover")),
            Ok(Negotiated::Takeover)
        );
        assert!(Negotiated::from_answer(Some("x-webkit-deflate-frame")).is_err());
    }

    #[test]
    fn shared_frames_inflate_once_and_takeover_frames_per_connection() {
        let message = br#"{"type":"data","topic":"stocks","seq":1,"data":{"symbol":"ACME","price":123.45,"change":-0.42}}"#;
        let mut c = Compress::new(Compression::new(6), false);
        let frame = deflate(&mut c, message);
        let mut inflate = Inflate::new(vec![Negotiated::Shared; 3]);
        for conn in 0..3 {
            let len = inflate
                .frame(conn, &frame, |m| {
                    assert_eq!(m, message);
                    m.len()
                })
                .expect("inflates");
            assert_eq!(len, message.len());
        }
        assert_eq!(inflate.inflated, 1);

        // Context takeover: the second frame refers to the first, each connection keeps its own.
        let mut c = Compress::new(Compression::new(6), false);
        let first = deflate(&mut c, message);
        let second = deflate(&mut c, message);
        assert!(second.len() < first.len());
        let mut inflate = Inflate::new(vec![Negotiated::Takeover; 2]);
        for conn in 0..2 {
            for frame in [&first, &second] {
                let same = inflate.frame(conn, frame, |m| m == message);
                assert_eq!(same, Ok(true));
            }
        }
        assert_eq!(inflate.inflated, 4);
        let mut fresh = Inflate::new(vec![Negotiated::Takeover]);
        let out_of_context = fresh.frame(0, &second, |m| m == message);
        assert_ne!(out_of_context, Ok(true), "the second frame needs the first");
        let mut off = Inflate::<bool>::new(vec![Negotiated::Off]);
        assert!(off.frame(0, &first, |_| true).is_err());
        let mut shared = Inflate::<bool>::new(vec![Negotiated::Shared]);
        assert!(shared.frame(0, &[0xff, 0xff, 0xff], |_| true).is_err());
    }
}
