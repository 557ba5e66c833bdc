//! permessage-deflate (RFC 7692): the settings, the handshake negotiation, and the compressors.
//!
//! Memory is the design constraint. By default the server compresses every message on its own (it
//! announces `server_no_context_takeover`), so one compressor per worker thread serves every connection
//! and a broadcast is deflated once for all its receivers; and it asks clients for
//! `client_no_context_takeover`, so single-frame messages are inflated by one shared decompressor per
//! thread. A connection then holds no deflate state between messages at all. Context takeover (a
//! better ratio for streams of similar messages, at the cost of a compressor or decompressor per
//! connection) is opt-in per direction.

use std::cell::RefCell;
use std::fmt;

use bytes::{Bytes, BytesMut};
use flate2::{Compress, Decompress, FlushCompress, FlushDecompress, Status};
use http::{HeaderMap, HeaderValue, header};

use crate::error::WsError;

/// The four bytes a sync flush ends with; RFC 7692 §7.2.1 strips them from every message.
const SYNC_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];
/// Room reserved in front of compressed output for the frame header, so the frame is one buffer.
const HEADER_ROOM: usize = 10;
/// The first step of inflate output.
const MIN_INFLATE_STEP: usize = 1024;

/// permessage-deflate settings for an endpoint (RFC 7692).
///
/// ```
/// use verb_ws::{Compression, WsConfig};
///
/// // The defaults: shared compressors, messages under 64 bytes sent as they are.
/// let config = WsConfig::new().compression(true);
/// # let _ = config;
///
/// // Better ratio for a stream of similar messages, at a compressor per connection.
/// let config = WsConfig::new().compression_with(
///     Compression::new().server_context_takeover(true).server_max_window_bits(11).level(3),
/// );
/// # let _ = config;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct Compression {
    level: u8,
    threshold: usize,
    server_context_takeover: bool,
    client_context_takeover: bool,
    server_max_window_bits: u8,
    client_max_window_bits: u8,
}

impl Default for Compression {
    fn default() -> Self {
        Self {
            level: 6,
            threshold: 64,
            server_context_takeover: false,
            client_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
        }
    }
}

impl Compression {
    /// The defaults (see each setting).
    pub fn new() -> Self {
        Self::default()
    }

    /// The zlib compression level, 0 (none) to 9 (smallest); larger values are taken as 9. Level 1
    /// is about twice as fast per message as 2 to 9 but hardly shrinks small messages; above 3 the
    /// gain is a few percent. A message sent to one connection costs about 7 µs to compress at the
    /// default (most of it resetting the shared compressor); a broadcast pays that once.
    ///
    /// Default is 6, zlib's own default.
    pub fn level(mut self, level: u32) -> Self {
        self.level = level.min(9) as u8;
        self
    }

    /// Messages shorter than this many bytes are sent uncompressed: deflate cannot make them much
    /// smaller, and it would cost more than it saves.
    ///
    /// Default is 64 bytes.
    pub fn threshold(mut self, bytes: usize) -> Self {
        self.threshold = bytes;
        self
    }

    /// Whether the server keeps its LZ77 window from one message to the next.
    ///
    /// - `false` (the default): the server announces `server_no_context_takeover` and compresses each
    ///   message on its own, with one compressor per worker thread shared by every connection. A
    ///   message sent to a room or topic is deflated once and the same frame goes to every receiver.
    ///   Connections hold no compressor.
    /// - `true`: a connection gets its own compressor the first time it sends a message over the
    ///   threshold, for a much better ratio on streams of similar messages (a small JSON tick: 16% of
    ///   its size on the wire instead of 85%). That compressor costs about 320 KiB of memory while it
    ///   lives; it is freed after half the idle timeout (at most 30 s) without a message sent (the next
    ///   message starts a fresh one, which RFC 7692 allows). A broadcast is then compressed once per receiver, in the task that
    ///   publishes: about 40 times the CPU per delivery of the shared mode for small messages (see
    ///   BENCHMARKS.md). Meant for a few busy streams, not for rooms of thousands. Clients that offer
    ///   `server_no_context_takeover` still get the shared compressor.
    pub fn server_context_takeover(mut self, enabled: bool) -> Self {
        self.server_context_takeover = enabled;
        self
    }

    /// Whether clients may keep their LZ77 window from one message to the next.
    ///
    /// - `false` (the default): the server answers with `client_no_context_takeover`, so it inflates
    ///   single-frame messages with one decompressor per worker thread and keeps nothing between
    ///   messages.
    /// - `true`: a client that does not offer `client_no_context_takeover` may take its context over;
    ///   the server then keeps a decompressor (about 7 KiB plus a 32 KiB window) for that connection
    ///   from its first compressed message until it closes.
    pub fn client_context_takeover(mut self, enabled: bool) -> Self {
        self.client_context_takeover = enabled;
        self
    }

    /// The largest LZ77 window the server compresses with, as a power of two from 9 to 15 (values
    /// outside are clamped). A client's smaller `server_max_window_bits` narrows it further; a client
    /// asking for 8, which zlib cannot produce, is accepted and sent uncompressed frames (its own
    /// compressed messages are still inflated).
    ///
    /// Default is 15 (32 KiB).
    pub fn server_max_window_bits(mut self, bits: u8) -> Self {
        self.server_max_window_bits = bits.clamp(9, 15);
        self
    }

    /// The largest LZ77 window the server asks clients to compress with (8 to 15; sent only to clients
    /// that offer `client_max_window_bits`, as RFC 7692 requires).
    ///
    /// Default is 15 (no limit).
    pub fn client_max_window_bits(mut self, bits: u8) -> Self {
        self.client_max_window_bits = bits.clamp(8, 15);
        self
    }

    /// The threshold in bytes.
    pub fn get_threshold(&self) -> usize {
        self.threshold
    }

    /// The compression level.
    pub fn get_level(&self) -> u32 {
        u32::from(self.level)
    }
}

/// What a connection negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Deflate {
    pub(crate) level: u8,
    pub(crate) threshold: usize,
    /// The server's window, 9..=15.
    pub(crate) server_window_bits: u8,
    /// The server keeps its context: a dedicated compressor.
    pub(crate) server_takeover: bool,
    /// The client may keep its context: a dedicated decompressor.
    pub(crate) client_takeover: bool,
}

/// One extension offer's parameters, checked against RFC 7692 §7.1.
#[derive(Debug, Default)]
struct Offer {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(None)`: offered without a value.
    client_max_window_bits: Option<Option<u8>>,
}

/// A window size parameter: "8" to "15" exactly (no sign, no leading zero).
fn window_bits(value: &str) -> Option<u8> {
    match value.as_bytes() {
        [d @ b'8'..=b'9'] => Some(d - b'0'),
        [b'1', d @ b'0'..=b'5'] => Some(10 + d - b'0'),
        _ => None,
    }
}

/// Parses the parameters of one `permessage-deflate` offer; `None` if they are not valid (an unknown
/// or repeated parameter, or a bad value), which declines that offer.
fn parse_offer<'a>(params: impl Iterator<Item = &'a str>) -> Option<Offer> {
    let mut offer = Offer::default();
    for param in params {
        let (name, value) = match param.split_once('=') {
            Some((name, value)) => {
                let value = value.trim();
                // A quoted-string value is allowed (RFC 6455 §9.1); the quotes are not part of it.
                let value = value
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(value);
                (name.trim(), Some(value))
            }
            None => (param.trim(), None),
        };
        match (name.to_ascii_lowercase().as_str(), value) {
            ("server_no_context_takeover", None) if !offer.server_no_context_takeover => {
                offer.server_no_context_takeover = true;
            }
            ("client_no_context_takeover", None) if !offer.client_no_context_takeover => {
                offer.client_no_context_takeover = true;
            }
            ("server_max_window_bits", Some(value)) if offer.server_max_window_bits.is_none() => {
                offer.server_max_window_bits = Some(window_bits(value)?);
            }
            ("client_max_window_bits", value) if offer.client_max_window_bits.is_none() => {
                offer.client_max_window_bits = Some(match value {
                    None => None,
                    Some(value) => Some(window_bits(value)?),
                });
            }
            _ => return None,
        }
    }
    Some(offer)
}

/// Chooses the first `permessage-deflate` offer in `headers` that `config` can accept (RFC 7692 §7.1):
/// the connection's settings and the `Sec-WebSocket-Extensions` value to answer with. `None` means no
/// compression, never a failed handshake.
pub(crate) fn negotiate(
    headers: &HeaderMap,
    config: &Compression,
) -> Option<(Deflate, HeaderValue)> {
    let offers = headers
        .get_all(header::SEC_WEBSOCKET_EXTENSIONS)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','));
    for offer in offers {
        let mut parts = offer.split(';');
        let name = parts.next().unwrap_or_default().trim();
        if !name.eq_ignore_ascii_case("permessage-deflate") {
            continue;
        }
        let Some(offer) = parse_offer(parts.filter(|p| !p.trim().is_empty())) else {
            tracing::debug!("declined a permessage-deflate offer with invalid parameters");
            continue;
        };
        if let Some(accepted) = accept(&offer, config) {
            return Some(accepted);
        }
    }
    None
}

fn accept(offer: &Offer, config: &Compression) -> Option<(Deflate, HeaderValue)> {
    let server_window_bits = match offer.server_max_window_bits {
        Some(bits) => bits.min(config.server_max_window_bits),
        None => config.server_max_window_bits,
    };
    // zlib cannot compress with a 256-byte window. RFC 7692 lets a sender leave any message
    // uncompressed, so a client asking for 8 is accepted and simply gets plain frames, while its own
    // compressed messages are still inflated.
    let threshold = if server_window_bits < 9 {
        usize::MAX
    } else {
        config.threshold
    };
    let server_takeover = config.server_context_takeover && !offer.server_no_context_takeover;
    let client_takeover = config.client_context_takeover && !offer.client_no_context_takeover;

    let mut response = String::from("permessage-deflate");
    if !server_takeover {
        response.push_str("; server_no_context_takeover");
    }
    if !client_takeover {
        response.push_str("; client_no_context_takeover");
    }
    if offer.server_max_window_bits.is_some() || server_window_bits < 15 {
        response.push_str(&format!("; server_max_window_bits={server_window_bits}"));
    }
    if let Some(offered) = offer.client_max_window_bits {
        // Only a narrower window than the client's own limit is worth saying.
        let theirs = offered.unwrap_or(15);
        let bits = theirs.min(config.client_max_window_bits);
        if bits < theirs {
            response.push_str(&format!("; client_max_window_bits={bits}"));
        }
    }
    let value = HeaderValue::try_from(response).ok()?;
    let deflate = Deflate {
        level: config.level,
        threshold,
        server_window_bits,
        server_takeover,
        client_takeover,
    };
    Some((deflate, value))
}

/// A compressor for one connection's messages (context takeover).
pub(crate) struct Compressor(Compress);

impl Compressor {
    pub(crate) fn new(deflate: &Deflate) -> Box<Self> {
        Box::new(Self(new_compress(
            deflate.level,
            deflate.server_window_bits,
        )))
    }
}

impl fmt::Debug for Compressor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Compressor")
    }
}

fn new_compress(level: u8, bits: u8) -> Compress {
    Compress::new_with_window_bits(flate2::Compression::new(u32::from(level)), false, bits)
}

thread_local! {
    /// One compressor per (level, window) per thread, reset after every message.
    static SHARED_COMPRESSORS: RefCell<Vec<(u8, u8, Compress)>> = const { RefCell::new(Vec::new()) };
    /// One decompressor per thread for single-frame messages without context takeover.
    static SHARED_DECOMPRESSOR: RefCell<Option<Decompress>> = const { RefCell::new(None) };
}

/// A frame of `payload` deflated on its own, with RSV1 set; `None` when deflate does not make it
/// smaller (the caller sends it plain).
pub(crate) fn compress_shared(deflate: &Deflate, opcode: u8, payload: &[u8]) -> Option<Bytes> {
    SHARED_COMPRESSORS.with(|cell| {
        let Ok(mut compressors) = cell.try_borrow_mut() else {
            // Re-entered from a compressor (cannot happen: nothing here calls out); stay safe.
            return None;
        };
        let index = match compressors.iter().position(|(level, bits, _)| {
            *level == deflate.level && *bits == deflate.server_window_bits
        }) {
            Some(index) => index,
            None => {
                compressors.push((
                    deflate.level,
                    deflate.server_window_bits,
                    new_compress(deflate.level, deflate.server_window_bits),
                ));
                compressors.len() - 1
            }
        };
        let compress = &mut compressors[index].2;
        let frame = deflate_frame(compress, opcode, payload);
        compress.reset();
        let plain = crate::proto::frame::header_len(payload.len()) + payload.len();
        frame.filter(|frame| frame.len() < plain)
    })
}

/// A frame of `payload` deflated with the connection's own compressor, context kept. `None` only if
/// the compressor failed, which leaves it unusable: the caller drops it and sends the frame plain.
/// Unlike the shared path there is no "plain if not smaller" choice here: once deflated, the message
/// is in the compressor's window, and the peer must see it for later references to resolve.
pub(crate) fn compress_dedicated(
    compressor: &mut Compressor,
    opcode: u8,
    payload: &[u8],
) -> Option<Bytes> {
    deflate_frame(&mut compressor.0, opcode, payload)
}

/// Deflates `payload` with a sync flush, strips the flush's tail, and frames it (FIN, RSV1).
fn deflate_frame(compress: &mut Compress, opcode: u8, payload: &[u8]) -> Option<Bytes> {
    let mut out = Vec::with_capacity(HEADER_ROOM + payload.len() + payload.len() / 64 + 16);
    out.resize(HEADER_ROOM, 0);
    let start = compress.total_in();
    loop {
        let consumed = (compress.total_in() - start) as usize;
        if out.capacity() - out.len() < 16 {
            out.reserve(out.capacity().max(1024));
        }
        if let Err(err) = compress.compress_vec(&payload[consumed..], &mut out, FlushCompress::Sync)
        {
            tracing::error!(error = %err, "deflate failed");
            return None;
        }
        let consumed = (compress.total_in() - start) as usize;
        // All input taken and room left over: the flush is complete.
        if consumed == payload.len() && out.len() < out.capacity() {
            break;
        }
    }
    if !out.ends_with(&SYNC_TAIL) {
        tracing::error!("deflate output does not end with a sync flush");
        return None;
    }
    out.truncate(out.len() - SYNC_TAIL.len());
    let body = out.len() - HEADER_ROOM;
    let header_len = crate::proto::frame::header_len(body);
    let offset = HEADER_ROOM - header_len;
    let mut header = BytesMut::with_capacity(header_len);
    crate::proto::frame::put_header(&mut header, opcode, body);
    header[0] |= RSV1;
    out[offset..HEADER_ROOM].copy_from_slice(&header);
    Some(Bytes::from(out).slice(offset..))
}

/// The RSV1 bit of the first header byte: "this message is compressed".
pub(crate) const RSV1: u8 = 0x40;

/// A connection's inbound side: inflates whole compressed messages. The engine buffers a fragmented
/// message's compressed frames (bounded by the wire bytes received, like any fragmented message) and
/// inflates at its last frame, so an incomplete message never holds inflated output.
#[derive(Default)]
pub(crate) struct Inflater {
    /// The client keeps its context: a decompressor of its own, for the connection's life.
    takeover: bool,
    stream: Option<Box<Decompress>>,
}

impl fmt::Debug for Inflater {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inflater")
            .field("takeover", &self.takeover)
            .finish_non_exhaustive()
    }
}

impl Inflater {
    pub(crate) fn new(deflate: &Deflate) -> Self {
        Self {
            takeover: deflate.client_takeover,
            stream: None,
        }
    }

    /// Inflates one whole compressed message. Output beyond `limit` bytes stops the work at once with
    /// [`WsError::MessageTooBig`].
    pub(crate) fn message(&mut self, payload: &[u8], limit: usize) -> Result<Vec<u8>, WsError> {
        let mut out = Vec::new();
        if !self.takeover {
            // No context to keep: one decompressor per thread, reset after every message.
            return SHARED_DECOMPRESSOR.with(|cell| {
                let Ok(mut shared) = cell.try_borrow_mut() else {
                    return Err(WsError::Protocol("decompressor unavailable"));
                };
                let decompress = shared.get_or_insert_with(|| Decompress::new(false));
                let result = inflate_message(decompress, payload, &mut out, limit);
                decompress.reset(false);
                result.map(|_| out)
            });
        }
        let decompress = self
            .stream
            .get_or_insert_with(|| Box::new(Decompress::new(false)));
        match inflate_message(decompress, payload, &mut out, limit) {
            // A final deflate block ends the stream: the next message starts a new one.
            Ok(true) => self.stream = None,
            Ok(false) => {}
            Err(err) => {
                self.stream = None;
                return Err(err);
            }
        }
        Ok(out)
    }
}

/// Inflates `payload` and then the sync-flush tail RFC 7692 strips, unless the payload already ended
/// the stream with a final block. Returns whether the stream ended (there, or on the tail).
fn inflate_message(
    decompress: &mut Decompress,
    payload: &[u8],
    out: &mut Vec<u8>,
    limit: usize,
) -> Result<bool, WsError> {
    if inflate(decompress, payload, out, limit)? {
        return Ok(true);
    }
    inflate(decompress, &SYNC_TAIL, out, limit)
}

/// Feeds `input` to `decompress`, appending to `out`, never letting `out` pass `limit` by more than
/// one byte. Returns whether the deflate stream ended (a block with BFINAL set).
fn inflate(
    decompress: &mut Decompress,
    input: &[u8],
    out: &mut Vec<u8>,
    limit: usize,
) -> Result<bool, WsError> {
    let start = decompress.total_in();
    loop {
        let consumed = (decompress.total_in() - start) as usize;
        if out.len() > limit {
            return Err(WsError::MessageTooBig {
                size: out.len() as u64,
                limit,
            });
        }
        if out.len() == out.capacity() {
            // Grow geometrically (linear total copying), starting from the input's likely expansion,
            // but never past one byte over the limit: that byte is how a bomb is recognised.
            let want = out
                .len()
                .max((input.len() - consumed).saturating_mul(4))
                .max(MIN_INFLATE_STEP)
                .min(limit.saturating_add(1) - out.len());
            out.reserve_exact(want.max(1));
        }
        let before_out = out.len();
        let status = decompress
            .decompress_vec(&input[consumed..], out, FlushDecompress::Sync)
            .map_err(|_| WsError::InvalidCompressedData)?;
        let now_consumed = (decompress.total_in() - start) as usize;
        match status {
            Status::StreamEnd => {
                if now_consumed < input.len() {
                    return Err(WsError::InvalidCompressedData);
                }
                if out.len() > limit {
                    continue;
                }
                return Ok(true);
            }
            Status::Ok | Status::BufError => {
                let progressed = now_consumed > consumed || out.len() > before_out;
                if now_consumed == input.len() && out.len() < out.capacity() {
                    if out.len() > limit {
                        continue;
                    }
                    return Ok(false);
                }
                if !progressed && out.len() < out.capacity() {
                    return Err(WsError::InvalidCompressedData);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::SEC_WEBSOCKET_EXTENSIONS,
            HeaderValue::from_str(value).unwrap(),
        );
        headers
    }

    fn answer(value: &str, config: &Compression) -> Option<String> {
        negotiate(&offer(value), config).map(|(_, v)| v.to_str().unwrap().to_owned())
    }

    #[test]
    fn window_bits_are_exactly_8_to_15() {
        for good in 8..=15u8 {
            assert_eq!(window_bits(&good.to_string()), Some(good));
        }
        for bad in ["7", "16", "08", "+9", "", " 9", "9a", "100"] {
            assert_eq!(window_bits(bad), None, "{bad:?}");
        }
    }

    /// Each parameter is accepted, narrowed or declined as RFC 7692 §7.1 says.
    #[test]
    fn negotiation_follows_rfc_7692() {
        let default = Compression::new();
        let both = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";
        assert_eq!(
            answer("permessage-deflate", &default).as_deref(),
            Some(both)
        );
        assert_eq!(
            answer("permessage-deflate; client_max_window_bits", &default).as_deref(),
            Some(both)
        );
        assert_eq!(
            answer("permessage-deflate; server_max_window_bits=10", &default).as_deref(),
            Some(
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
                 server_max_window_bits=10"
            )
        );
        assert_eq!(
            answer(
                "permessage-deflate; server_max_window_bits=\"12\"",
                &default
            )
            .as_deref(),
            Some(
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
                 server_max_window_bits=12"
            )
        );
        // 8 cannot be produced: accepted, and nothing is compressed towards that client.
        let (deflate, value) = negotiate(
            &offer("permessage-deflate; server_max_window_bits=8"),
            &default,
        )
        .unwrap();
        assert_eq!(
            value,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=8"
        );
        assert_eq!(deflate.threshold, usize::MAX);
        // An invalid offer is skipped for the next one.
        assert_eq!(
            answer(
                "permessage-deflate; server_max_window_bits=7, permessage-deflate",
                &default
            )
            .as_deref(),
            Some(both)
        );
        // Invalid offers are declined, never a failed handshake.
        for bad in [
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; client_max_window_bits=7",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; mystery",
            "x-webkit-deflate-frame",
        ] {
            assert_eq!(answer(bad, &default), None, "{bad}");
        }
        // Context takeover where configured, unless the client rules it out.
        let takeover = Compression::new()
            .server_context_takeover(true)
            .client_context_takeover(true)
            .client_max_window_bits(10)
            .server_max_window_bits(12);
        assert_eq!(
            answer("permessage-deflate; client_max_window_bits", &takeover).as_deref(),
            Some("permessage-deflate; server_max_window_bits=12; client_max_window_bits=10")
        );
        assert_eq!(
            answer("permessage-deflate", &takeover).as_deref(),
            Some("permessage-deflate; server_max_window_bits=12"),
            "client_max_window_bits only goes to clients that offer it"
        );
        let (deflate, value) = negotiate(
            &offer("permessage-deflate; server_no_context_takeover; client_no_context_takeover"),
            &takeover,
        )
        .unwrap();
        assert!(!deflate.server_takeover && !deflate.client_takeover);
        assert_eq!(
            value,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=12"
        );
    }

    fn inflate_frame(frame: &[u8]) -> Vec<u8> {
        assert_eq!(frame[0] & RSV1, RSV1);
        let header = match frame[1] {
            126 => 4,
            127 => 10,
            _ => 2,
        };
        let mut inflater = Inflater::default();
        inflater.message(&frame[header..], usize::MAX).unwrap()
    }

    #[test]
    fn shared_and_dedicated_compression_round_trip() {
        let deflate = Deflate {
            level: 6,
            threshold: 64,
            server_window_bits: 15,
            server_takeover: false,
            client_takeover: false,
        };
        let payload =
            br#"{"type":"price","symbol":"ACME","price":101.25,"ts":1700000000000}"#.repeat(20);
        let frame = compress_shared(&deflate, 0x1, &payload).unwrap();
        assert!(frame.len() < payload.len() / 4);
        assert_eq!(inflate_frame(&frame), payload);
        // The shared compressor starts afresh: the same message compresses the same way again.
        assert_eq!(compress_shared(&deflate, 0x1, &payload).unwrap(), frame);
        // Incompressible data is not worth a compressed frame.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let noise: Vec<u8> = (0..200)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        assert!(compress_shared(&deflate, 0x2, &noise).is_none());

        let mut own = Compressor::new(&deflate);
        let first = compress_dedicated(&mut own, 0x1, &payload).unwrap();
        let second = compress_dedicated(&mut own, 0x1, &payload).unwrap();
        assert!(
            second.len() < first.len(),
            "the second message refers to the first"
        );
        let mut inflater = Inflater {
            takeover: true,
            ..Inflater::default()
        };
        for frame in [first, second] {
            let out = inflater.message(&frame[2..], 1 << 20).unwrap();
            assert_eq!(out, payload);
        }
    }

    #[test]
    fn a_bomb_stops_at_the_limit() {
        let deflate = Deflate {
            level: 9,
            threshold: 0,
            server_window_bits: 15,
            server_takeover: false,
            client_takeover: false,
        };
        let zeros = vec![0u8; 8 << 20];
        let frame = compress_shared(&deflate, 0x2, &zeros).unwrap();
        let mut inflater = Inflater::default();
        let err = inflater.message(&frame[4..], 1 << 20).unwrap_err();
        assert!(matches!(err, WsError::MessageTooBig { size, .. } if size <= (1 << 20) + 1));
        // Under a larger limit the same frame is a legitimate message, inflated whole.
        let out = inflater.message(&frame[4..], 16 << 20).unwrap();
        assert_eq!(out.len(), 8 << 20);
        assert!(out.iter().all(|&b| b == 0));
        let err = inflater.message(&[0xff, 0xff, 0xff], 1 << 20).unwrap_err();
        assert!(matches!(err, WsError::InvalidCompressedData), "{err:?}");
    }
}
