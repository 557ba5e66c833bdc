//! Messages shaped like the `live-feed` example's JSON, for the compression benchmarks.
//!
//! - [`Message::Feed`]: one tick, as `live-feed` publishes it, plus a sequence number:
//!   `{"type":"data","topic":"stocks","seq":S,"data":{"symbol":"MSFT","price":123.45,"change":-0.42},"timestamp":"2026-11-23T12:00:01.234Z"}`
//!   (about 140 bytes).
//! - [`Message::FeedBatch`]: [`BATCH`] such ticks (stocks and crypto) in one message,
//!   `{"type":"batch","topic":"market","seq":S,"items":[...]}` (about 2.1 KB).
//!
//! Symbols, prices and changes vary per message (a generator seeded by the sequence number), and the
//! timestamp is the publish time (milliseconds since the load generator started, on a fixed date), so
//! deflate sees what a real feed gives it. Probes have the same shape with `"type":"probe"`.
//!
//! The publisher keeps what it published ([`Log`]): a receiver finds the sequence number in what it
//! got, checks that the bytes are exactly those published, and takes the send time from the log (it
//! is not on the wire).

use std::collections::VecDeque;
use std::fmt::Write as _;

use super::frame::{KIND_DATA, KIND_PROBE, OP_TEXT, Stamp, encode_client};

/// What the publisher sends in broadcast mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Message {
    /// Binary frames of `--payload` bytes carrying the stamp (see [`super::frame`]).
    Binary,
    /// One `live-feed` tick per message, as JSON text.
    Feed,
    /// [`BATCH`] `live-feed` ticks per message, as JSON text.
    FeedBatch,
}

impl Message {
    /// The name on the command line and in the report.
    pub fn name(self) -> &'static str {
        match self {
            Self::Binary => "binary",
            Self::Feed => "feed",
            Self::FeedBatch => "feed-batch",
        }
    }
}

/// Ticks in a [`Message::FeedBatch`] message.
pub const BATCH: usize = 16;
/// Publishes the log keeps (per kind) for receivers to check against.
const KEPT: usize = 4096;

const STOCKS: [&str; 6] = ["AAPL", "GOOGL", "MSFT", "AMZN", "TSLA", "ACME"];
const COINS: [&str; 4] = ["BTC", "ETH", "SOL", "ADA"];

/// A small deterministic generator (splitmix64), seeded per message.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }

    /// Hundredths between `low` and `high` (in hundredths).
    fn cents(&mut self, low: i64, high: i64) -> i64 {
        low + (self.next() % (high - low) as u64) as i64
    }
}

/// Writes hundredths as serde_json writes the rounded `f64` of `live-feed` (`123.45`, `-0.4`, `12.0`).
fn write_amount(out: &mut String, cents: i64) {
    let sign = if cents < 0 { "-" } else { "" };
    let (whole, frac) = (cents.abs() / 100, cents.abs() % 100);
    let _ = match frac {
        0 => write!(out, "{sign}{whole}.0"),
        f if f % 10 == 0 => write!(out, "{sign}{whole}.{}", f / 10),
        f => write!(out, "{sign}{whole}.{f:02}"),
    };
}

/// `"2026-11-23T12:MM:SS.mmmZ"`-style time of `ms` milliseconds after noon of a fixed day.
fn write_timestamp(out: &mut String, ms: u64) {
    let s = ms / 1000;
    let _ = write!(
        out,
        "2026-11-23T{:02}:{:02}:{:02}.{:03}Z",
        12 + (s / 3600) % 12,
        (s / 60) % 60,
        s % 60,
        ms % 1000
    );
}

/// One tick: `{"type":KIND,"topic":T,"data":{"symbol":..,"price":..,"change":..},"timestamp":..}`,
/// with `"seq":S` after the topic when given.
fn write_tick(
    out: &mut String,
    noise: &mut Noise,
    kind: &str,
    topic: &str,
    seq: Option<u64>,
    ms: u64,
) {
    let _ = write!(out, r#"{{"type":"{kind}","topic":"{topic}","#);
    if let Some(seq) = seq {
        let _ = write!(out, r#""seq":{seq},"#);
    }
    let (symbol, price, change) = if topic == "crypto" {
        let price = noise.cents(50, 6_000_000);
        (noise.pick(&COINS), price, noise.cents(-1000, 1000))
    } else {
        let price = noise.cents(5_000, 50_000);
        (noise.pick(&STOCKS), price, noise.cents(-500, 500))
    };
    let _ = write!(out, r#""data":{{"symbol":"{symbol}","price":"#);
    write_amount(out, price);
    out.push_str(r#","change":"#);
    write_amount(out, change);
    out.push_str(r#"},"timestamp":""#);
    write_timestamp(out, ms);
    out.push_str("\"}");
}

/// The JSON text of publish `stamp` as `message` shapes it.
pub fn json(message: Message, stamp: Stamp) -> String {
    let mut noise = Noise(stamp.seq ^ (u64::from(stamp.kind) << 63));
    let ms = stamp.sent_ns / 1_000_000;
    let probe = stamp.kind == KIND_PROBE;
    let mut out = String::with_capacity(
        160 * if message == Message::FeedBatch {
            BATCH
        } else {
            1
        },
    );
    if message == Message::FeedBatch {
        let kind = if probe { "probe" } else { "batch" };
        let _ = write!(
            out,
            r#"{{"type":"{kind}","topic":"market","seq":{},"items":["#,
            stamp.seq
        );
        for i in 0..BATCH {
            if i > 0 {
                out.push(',');
            }
            let topic = if noise.next() % 3 == 0 {
                "crypto"
            } else {
                "stocks"
            };
            // Ticks about 50 ms apart, the last one at the publish.
            let at = ms.saturating_sub(((BATCH - 1 - i) * 50) as u64 + noise.next() % 20);
            write_tick(&mut out, &mut noise, "data", topic, None, at);
        }
        out.push_str("]}");
    } else {
        let kind = if probe { "probe" } else { "data" };
        write_tick(&mut out, &mut noise, kind, "stocks", Some(stamp.seq), ms);
    }
    out
}

/// The kind and sequence number a feed message says it is; `None` if it is not one of ours.
pub fn parse(payload: &[u8]) -> Option<(u8, u64)> {
    let rest = payload.strip_prefix(br#"{"type":""#)?;
    let kind = if rest.starts_with(b"probe\"") {
        KIND_PROBE
    } else if rest.starts_with(b"data\"") || rest.starts_with(b"batch\"") {
        KIND_DATA
    } else {
        return None;
    };
    let at = rest.windows(6).take(64).position(|w| w == br#""seq":"#)? + 6;
    let digits = rest[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    let seq = std::str::from_utf8(&rest[at..at + digits])
        .ok()?
        .parse()
        .ok()?;
    Some((kind, seq))
}

/// What the publisher sent, by kind and sequence number, as long as receivers may still get it.
#[derive(Debug, Default)]
pub struct Log {
    /// Probes and data messages, each numbered from 0.
    kinds: [Kept; 2],
}

#[derive(Debug, Default)]
struct Kept {
    /// Sequence number of `entries[0]`.
    base: u64,
    entries: VecDeque<(u64, Vec<u8>)>,
}

/// How a received feed message compares with what was published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    /// Exactly a publish; the stamp carries its send time from the log.
    Ours(Stamp),
    /// Not one of ours, or too old to check.
    Unknown,
    /// It names a publish but its bytes differ.
    Corrupt,
}

impl Log {
    /// Makes publish `stamp` (the next sequence number of its kind) and keeps it; returns the masked
    /// client frame to send.
    pub fn publish(&mut self, message: Message, stamp: Stamp) -> Vec<u8> {
        let text = json(message, stamp);
        let frame = encode_client(OP_TEXT, text.as_bytes());
        let kept = &mut self.kinds[usize::from(stamp.kind == KIND_DATA)];
        debug_assert_eq!(stamp.seq, kept.base + kept.entries.len() as u64);
        kept.entries.push_back((stamp.sent_ns, text.into_bytes()));
        if kept.entries.len() > KEPT {
            kept.entries.pop_front();
            kept.base += 1;
        }
        frame
    }

    /// Checks a received (inflated) message against the log.
    pub fn check(&self, payload: &[u8]) -> Checked {
        let Some((kind, seq)) = parse(payload) else {
            return Checked::Unknown;
        };
        let kept = &self.kinds[usize::from(kind == KIND_DATA)];
        let Some((sent_ns, bytes)) = seq
            .checked_sub(kept.base)
            .and_then(|k| kept.entries.get(k as usize))
        else {
            return Checked::Unknown;
        };
        if bytes.as_slice() != payload {
            return Checked::Corrupt;
        }
        Checked::Ours(Stamp {
            seq,
            sent_ns: *sent_ns,
            kind,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(seq: u64, kind: u8) -> Stamp {
        Stamp {
            seq,
            sent_ns: 3_723_456_000_000 + seq * 1_000_000,
            kind,
        }
    }

    #[test]
    fn ticks_look_like_live_feed() {
        let text = json(Message::Feed, stamp(7, KIND_DATA));
        assert!(
            text.starts_with(r#"{"type":"data","topic":"stocks","seq":7,"data":{"symbol":""#),
            "{text}"
        );
        assert!(
            text.ends_with(r#""timestamp":"2026-11-23T13:02:03.463Z"}"#),
            "{text}"
        );
        assert!((120..170).contains(&text.len()), "{} bytes", text.len());
        assert_eq!(nesting(&text), 2);
        // Different messages differ; the same one is the same.
        assert_ne!(text, json(Message::Feed, stamp(8, KIND_DATA)));
        assert_eq!(text, json(Message::Feed, stamp(7, KIND_DATA)));

        let batch = json(Message::FeedBatch, stamp(7, KIND_DATA));
        assert!(batch.starts_with(
            r#"{"type":"batch","topic":"market","seq":7,"items":[{"type":"data","topic":""#
        ));
        assert_eq!(batch.matches(r#""type":"data""#).count(), BATCH);
        assert!(!batch.contains(r#""seq":0"#));
        assert!((1900..2400).contains(&batch.len()), "{} bytes", batch.len());
        assert_eq!(nesting(&batch), 4);
    }

    #[test]
    fn amounts_are_written_as_serde_json_writes_them() {
        for (cents, text) in [
            (12345, "123.45"),
            (-42, "-0.42"),
            (-40, "-0.4"),
            (1200, "12.0"),
            (5, "0.05"),
        ] {
            let mut out = String::new();
            write_amount(&mut out, cents);
            assert_eq!(out, text);
        }
    }

    #[test]
    fn receivers_check_what_they_get_against_the_log() {
        for message in [Message::Feed, Message::FeedBatch] {
            let mut log = Log::default();
            for seq in 0..3 {
                log.publish(message, stamp(seq, KIND_PROBE));
            }
            for seq in 0..5 {
                let frame = log.publish(message, stamp(seq, KIND_DATA));
                assert_eq!(frame[0], 0x81);
            }
            let data = json(message, stamp(4, KIND_DATA));
            assert_eq!(parse(data.as_bytes()), Some((KIND_DATA, 4)));
            assert_eq!(
                log.check(data.as_bytes()),
                Checked::Ours(stamp(4, KIND_DATA))
            );
            let probe = json(message, stamp(2, KIND_PROBE));
            assert_eq!(
                log.check(probe.as_bytes()),
                Checked::Ours(stamp(2, KIND_PROBE))
            );
            let mut bent = data.clone().into_bytes();
            let last = bent.len() - 3;
            bent[last] ^= 1;
            assert_eq!(log.check(&bent), Checked::Corrupt);
            let unsent = json(message, stamp(5, KIND_DATA));
            assert_eq!(log.check(unsent.as_bytes()), Checked::Unknown);
            assert_eq!(log.check(br#"{"type":"error"}"#), Checked::Unknown);
        }
    }

    /// Just enough JSON checking for the tests: brackets balance outside strings; returns the deepest
    /// nesting.
    fn nesting(text: &str) -> usize {
        let (mut depth, mut max, mut in_string) = (0usize, 0usize, false);
        for c in text.chars() {
            match (in_string, c) {
                (_, '"') => in_string = !in_string,
                (false, '{' | '[') => {
                    depth += 1;
                    max = max.max(depth);
                }
                (false, '}' | ']') => depth = depth.checked_sub(1).expect("balanced"),
                _ => {}
            }
        }
        assert!(depth == 0 && !in_string, "unbalanced: {text}");
        max
    }
}
