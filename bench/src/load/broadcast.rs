//! Broadcast mode: one publisher, N subscribers, K publishes in flight.
//!
//! 1. Connect the N subscribers, then the publisher (connection N).
//! 2. Sync: the publisher sends probes, paced by the server, until every connection has received one
//!    and the last one has reached everyone. A server registers a connection some time after its
//!    upgrade; from its first probe on, a connection must receive every later message, in order.
//! 3. Run: keep K publishes in flight for the warmup and the measured window. A publish completes when
//!    every open connection received it (or showed it never will: a later message arrived first, or it
//!    closed), or after the loss timeout.
//!
//! In [`Mode::Chat`] (Verb's `rooms` / `cluster` examples) messages are JSON text frames, the
//! publisher does not receive its own (so it is no receiver), the subscribers are spread over every
//! server address (the publisher on the first), and syncing also waits until the `welcome` / `system`
//! notices that the joins set off have stopped for [`SETTLE`].
//!
//! With [`Message::Feed`] / [`Message::FeedBatch`] the publisher sends `live-feed`-shaped JSON (see
//! [`super::feed`]) and receivers check every message byte for byte against what was published; with
//! [`Config::deflate`] compressed frames are inflated first ([`super::inflate`]). Either way each
//! delivery's bytes on the wire are counted, beside what the same message is as a plain frame.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use anyhow::bail;
use mio::Events;

use super::conn::Ended;
use super::feed::{self, Checked, Message};
use super::frame::{
    Chat, ClientFrame, KIND_DATA, KIND_PROBE, OP_BINARY, OP_TEXT, ServerFrame, Stamp, chat_frame,
    frame_len, parse_chat,
};
use super::inflate::{Inflate, Negotiated};
use super::{Config, Mode, Net, Report, Window, Wire, histogram, spread};

/// Least time between two probes while syncing.
const PROBE_EVERY: Duration = Duration::from_millis(20);
/// Chat mode: how long no notice may arrive before syncing ends.
const SETTLE: Duration = Duration::from_millis(500);

/// What a server frame is to the run.
#[derive(Debug, Clone, Copy)]
enum Got {
    Probe(u64),
    Data(Stamp),
    /// A chat notice (`welcome`, `system`).
    Notice,
    Foreign,
    /// A frame that did not inflate, or a feed message whose bytes differ from the publish it names.
    Corrupt,
}

/// A received frame: what it is, its length on the wire, and the length of the same message as an
/// uncompressed frame.
#[derive(Debug, Clone, Copy)]
struct Decoded {
    got: Got,
    wire: usize,
    plain: usize,
    compressed: bool,
}

/// Makes the publisher's frames and makes sense of what every connection receives.
struct Codec<'a> {
    config: &'a Config,
    frame: ClientFrame,
    log: feed::Log,
    /// Per distinct compressed frame: what it is and its uncompressed frame length.
    inflate: Inflate<(Got, usize)>,
    wire: Wire,
}

impl<'a> Codec<'a> {
    fn new(config: &'a Config, net: &Net) -> anyhow::Result<Self> {
        let negotiated = net
            .extensions
            .iter()
            .map(|answer| Negotiated::from_answer(answer.as_deref()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(anyhow::Error::msg)?;
        let mut wire = Wire::default();
        for n in &negotiated {
            wire.negotiated[n.index()] += 1;
        }
        Ok(Self {
            config,
            frame: ClientFrame::new(config.payload),
            log: feed::Log::default(),
            inflate: Inflate::new(negotiated),
            wire,
        })
    }

    /// The bytes of one publish.
    fn publish(&mut self, stamp: Stamp) -> std::borrow::Cow<'_, [u8]> {
        match (self.config.mode, self.config.message) {
            (Mode::Chat, _) => chat_frame(stamp).into(),
            (_, Message::Binary) => self.frame.stamp(stamp).into(),
            (_, message) => self.log.publish(message, stamp).into(),
        }
    }

    /// Connection `conn` received `f`.
    fn decode(&mut self, conn: usize, f: ServerFrame<'_>) -> Decoded {
        let wire = frame_len(f.payload.len());
        let Self {
            config,
            log,
            inflate,
            wire: stats,
            ..
        } = self;
        let (got, plain) = if !f.rsv1 {
            (classify(config, log, f.fin, f.opcode, f.payload), wire)
        } else if !f.fin {
            // Servers send each compressed message in one frame; this one is not ours to measure.
            (Got::Foreign, wire)
        } else {
            stats.rsv1_frames += 1;
            let before = inflate.inflated;
            let result = inflate.frame(conn, f.payload, |message| {
                let got = classify(config, log, true, f.opcode, message);
                (got, frame_len(message.len()))
            });
            stats.inflated += inflate.inflated - before;
            result.unwrap_or_else(|err| {
                if stats.corrupt < 10 {
                    eprintln!("bench-load: connection {conn}: {err}");
                }
                (Got::Corrupt, wire)
            })
        };
        if matches!(got, Got::Corrupt) {
            stats.corrupt += 1;
        }
        Decoded {
            got,
            wire,
            plain,
            compressed: f.rsv1,
        }
    }
}

/// What a (whole, uncompressed) message is to the run.
fn classify(config: &Config, log: &feed::Log, fin: bool, opcode: u8, payload: &[u8]) -> Got {
    let stamp = if config.mode == Mode::Chat {
        if opcode != OP_TEXT || !fin {
            return Got::Foreign;
        }
        match parse_chat(payload) {
            Chat::Data(stamp) => stamp,
            Chat::Notice => return Got::Notice,
            Chat::Other => return Got::Foreign,
        }
    } else if config.message != Message::Binary {
        if opcode != OP_TEXT || !fin {
            return Got::Foreign;
        }
        match log.check(payload) {
            Checked::Ours(stamp) => stamp,
            Checked::Unknown => return Got::Foreign,
            Checked::Corrupt => return Got::Corrupt,
        }
    } else {
        match (opcode, Stamp::parse(payload)) {
            (OP_BINARY, Some(stamp)) if fin && payload.len() == config.payload => stamp,
            _ => return Got::Foreign,
        }
    };
    if stamp.kind == KIND_PROBE {
        Got::Probe(stamp.seq)
    } else {
        Got::Data(stamp)
    }
}

pub(super) fn run(config: &Config) -> anyhow::Result<Report> {
    let start = Instant::now();
    let mut placement = spread(&config.addrs, config.connections);
    placement.push((config.addrs[0], 1));
    let mut net = Net::connect(config, &placement, start)?;
    // Connections are alike until one publishes: the last one opened does (on the first address).
    let publisher = net.conns.len() - 1;
    // Chat servers do not send a message back to its sender: the publisher receives nothing.
    let self_delivery = config.mode != Mode::Chat;
    let mut codec = Codec::new(config, &net)?;
    let mut events = Events::with_capacity(4096);

    sync(config, &mut net, &mut events, &mut codec, publisher)?;
    let setup_s = start.elapsed().as_secs_f64();

    let mut receivers = Receivers {
        live: net.open.iter().filter(|&&open| open).count() - usize::from(!self_delivery),
        closed: net.open.iter().filter(|&&open| !open).count(),
        expected: vec![0; net.conns.len()],
        flight: Flight::default(),
        tally: Tally::default(),
    };
    let mut hist = histogram();
    let mut next_seq = 0u64;
    let mut burst = Vec::new();
    let loss_timeout_ns = config.loss_timeout.as_nanos() as u64;

    let mut window = Window::new(config, Instant::now());
    loop {
        let now = Instant::now();
        let measuring = window.tick(now);
        if window.done(now) {
            break;
        }

        // Top up to K publishes in flight, in one write.
        burst.clear();
        while receivers.flight.in_flight < config.in_flight {
            let sent_ns = net.now_ns();
            let stamp = Stamp {
                seq: next_seq,
                sent_ns,
                kind: KIND_DATA,
            };
            burst.extend_from_slice(&codec.publish(stamp));
            receivers.flight.push(next_seq, sent_ns, receivers.live);
            next_seq += 1;
            if measuring {
                receivers.tally.sent += 1;
            }
        }
        if !burst.is_empty() {
            if let Err(err) = net.conns[publisher].send(&burst) {
                bail!("the publisher's connection failed: {err}");
            }
        }

        window.poll(&mut net.poll, &mut events)?;
        for event in events.iter() {
            let i = event.token().0;
            if !net.open[i] {
                continue;
            }
            if event.is_writable() {
                if let Err(err) = net.conns[i].flush() {
                    lose_connection(
                        i,
                        &Ended::Error(err.to_string()),
                        publisher,
                        &mut net.open,
                        &mut receivers,
                    )?;
                    continue;
                }
            }
            if !event.is_readable() {
                continue;
            }
            let Net {
                conns,
                scratch,
                start,
                ..
            } = &mut net;
            let Receivers {
                expected,
                flight,
                tally: t,
                ..
            } = &mut receivers;
            let next = &mut expected[i];
            let ended = conns[i].pump(scratch, |f| {
                let now_ns = start.elapsed().as_nanos() as u64;
                let decoded = codec.decode(i, f);
                let stamp = match decoded.got {
                    Got::Data(stamp) => stamp,
                    Got::Probe(_) | Got::Corrupt => return,
                    Got::Notice => {
                        t.ignored += u64::from(measuring);
                        return;
                    }
                    Got::Foreign => {
                        t.foreign += 1;
                        return;
                    }
                };
                if stamp.seq >= next_seq || (i == publisher && !self_delivery) {
                    t.foreign += 1;
                    return;
                }
                if stamp.seq < *next {
                    t.duplicates += 1;
                    return;
                }
                // Every message before this one that this connection skipped is lost to it.
                for skipped in *next..stamp.seq {
                    t.lost += 1;
                    t.completed += u64::from(flight.arrive(skipped) && measuring);
                }
                *next = stamp.seq + 1;
                t.completed += u64::from(flight.arrive(stamp.seq) && measuring);
                if measuring {
                    t.deliveries += 1;
                    hist.saturating_record(now_ns.saturating_sub(stamp.sent_ns));
                    t.wire_bytes += decoded.wire as u64;
                    t.plain_bytes += decoded.plain as u64;
                    t.compressed += u64::from(decoded.compressed);
                }
            });
            let ended = match ended {
                Ok(ended) => ended,
                Err(err) => Some(Ended::Error(err.to_string())),
            };
            if let Some(how) = ended {
                lose_connection(i, &how, publisher, &mut net.open, &mut receivers)?;
            }
        }

        receivers.tally.timed_out += receivers.flight.expire(net.now_ns(), loss_timeout_ns);
    }
    let measured = window.finish(Instant::now());
    let Receivers {
        closed, tally: t, ..
    } = receivers;
    let wire = Wire {
        bytes: t.wire_bytes,
        plain_bytes: t.plain_bytes,
        compressed: t.compressed,
        ..codec.wire
    };
    let payload = match config.message {
        Message::Binary => config.payload,
        // The mean message: the mean plain frame less its header.
        _ => {
            let frame = (t.plain_bytes / t.deliveries.max(1)) as usize;
            frame.saturating_sub(frame_len(frame) - frame)
        }
    };

    Ok(Report {
        closed,
        payload,
        wire,
        deliveries: t.deliveries,
        sent: t.sent,
        completed: t.completed,
        latency: hist,
        lost: t.lost,
        duplicates: t.duplicates,
        timed_out: t.timed_out,
        foreign: t.foreign,
        ignored: t.ignored,
        ..Report::empty(config, net.failed, setup_s)
    }
    .measured(measured))
}

/// Sends probes until every open connection has received one, and the last probe has reached every
/// connection (so no probe is queued anywhere when measuring starts).
///
/// Probes are paced by the server: the next one goes out only once every connection that receives
/// probes has the current one (and [`PROBE_EVERY`] has passed), so a slow server is never buried
/// under probes while connections register.
fn sync(
    config: &Config,
    net: &mut Net,
    events: &mut mio::Events,
    codec: &mut Codec<'_>,
    publisher: usize,
) -> anyhow::Result<()> {
    let total = net.conns.len();
    // In chat mode the publisher receives no probes, so only the others count.
    let publisher_receives = config.mode != Mode::Chat;
    // The last probe each connection received.
    let mut last: Vec<Option<u64>> = vec![None; total];
    // Open connections that received some probe, and those of them that have the current one.
    let (mut synced, mut caught_up) = (0usize, 0usize);
    let mut open = total - usize::from(!publisher_receives);
    // Chat mode: when the last notice arrived.
    let mut last_notice: Option<Instant> = None;
    let deadline = Instant::now() + config.setup_timeout;
    let mut next_probe = Instant::now();
    let mut current: Option<u64> = None;
    loop {
        let now = Instant::now();
        let quiet = current.is_none() || caught_up == synced;
        let settled = last_notice.is_none_or(|at| now.duration_since(at) >= SETTLE);
        if quiet && synced == open && current.is_some() && settled {
            return Ok(());
        }
        if now >= deadline {
            bail!(
                "{} of {total} connections received no broadcast within {:?}",
                open - synced,
                config.setup_timeout
            );
        }
        if quiet && now >= next_probe {
            let seq = current.map_or(0, |c| c + 1);
            let stamp = Stamp {
                seq,
                sent_ns: net.now_ns(),
                kind: KIND_PROBE,
            };
            if let Err(err) = net.conns[publisher].send(&codec.publish(stamp)) {
                bail!("the publisher's connection failed while syncing: {err}");
            }
            current = Some(seq);
            caught_up = 0;
            next_probe = now + PROBE_EVERY;
        }
        let wait = if quiet {
            next_probe.saturating_duration_since(now)
        } else {
            PROBE_EVERY
        };
        net.poll.poll(events, Some(wait))?;
        for event in events.iter() {
            let i = event.token().0;
            if !net.open[i] {
                continue;
            }
            let mut result = Ok(None);
            if event.is_writable() {
                result = net.conns[i].flush().map(|()| None);
            }
            if event.is_readable() && matches!(result, Ok(None)) {
                let Net { conns, scratch, .. } = &mut *net;
                let mine = &mut last[i];
                let counts = i != publisher || publisher_receives;
                let notice = &mut last_notice;
                result = conns[i].pump(scratch, |f| {
                    let seq = match codec.decode(i, f).got {
                        Got::Probe(seq) if counts => seq,
                        Got::Notice => {
                            *notice = Some(Instant::now());
                            return;
                        }
                        _ => return,
                    };
                    if mine.is_none() {
                        synced += 1;
                    }
                    *mine = Some(seq);
                    if Some(seq) == current {
                        caught_up += 1;
                    }
                });
            }
            let ended = match result {
                Ok(ended) => ended,
                Err(err) => Some(Ended::Error(err.to_string())),
            };
            if let Some(how) = ended {
                if i == publisher {
                    bail!("the server ended the publisher's connection while syncing: {how}");
                }
                eprintln!("bench-load: connection {i} ended while syncing: {how}");
                net.open[i] = false;
                open -= 1;
                if last[i].is_some() {
                    synced -= 1;
                    if last[i] == current {
                        caught_up -= 1;
                    }
                }
            }
        }
    }
}

/// What the run knows about the receiving side.
#[derive(Debug)]
struct Receivers {
    /// Open connections: how many receivers a new publish has.
    live: usize,
    /// Connections that ended.
    closed: usize,
    /// Per connection, the next sequence number it should receive.
    expected: Vec<u64>,
    flight: Flight,
    tally: Tally,
}

/// Connection `i` ended: everything in flight that it had not received is lost to it. The run cannot
/// go on without the publisher.
fn lose_connection(
    i: usize,
    how: &Ended,
    publisher: usize,
    open: &mut [bool],
    r: &mut Receivers,
) -> anyhow::Result<()> {
    if i == publisher {
        bail!("the server ended the publisher's connection: {how}");
    }
    if r.closed < 10 {
        eprintln!("bench-load: connection {i} ended: {how}");
    }
    open[i] = false;
    r.live -= 1;
    r.closed += 1;
    r.tally.lost += r.flight.abandon(r.expected[i]);
    Ok(())
}

/// Counters of the run (deliveries, sent and completed only inside the measured window).
#[derive(Debug, Default)]
struct Tally {
    deliveries: u64,
    /// Frame bytes of those deliveries, and what they would be uncompressed.
    wire_bytes: u64,
    plain_bytes: u64,
    /// Deliveries that came compressed.
    compressed: u64,
    sent: u64,
    completed: u64,
    lost: u64,
    duplicates: u64,
    timed_out: u64,
    foreign: u64,
    ignored: u64,
}

/// One publish not yet received by everyone.
#[derive(Debug)]
struct Pending {
    sent_ns: u64,
    remaining: usize,
}

/// Publishes in flight, by sequence number: `pending[k]` is publish `base + k`.
#[derive(Debug, Default)]
struct Flight {
    base: u64,
    pending: VecDeque<Pending>,
    in_flight: usize,
}

impl Flight {
    /// Publish `seq` (the next sequence number) went out to `receivers` connections.
    fn push(&mut self, seq: u64, sent_ns: u64, receivers: usize) {
        debug_assert_eq!(seq, self.base + self.pending.len() as u64);
        self.pending.push_back(Pending {
            sent_ns,
            remaining: receivers,
        });
        self.in_flight += 1;
        self.settle();
    }

    /// One connection received (or will never receive) publish `seq`; `true` if that completed it.
    fn arrive(&mut self, seq: u64) -> bool {
        let Some(k) = seq.checked_sub(self.base) else {
            return false;
        };
        let Some(p) = self.pending.get_mut(k as usize) else {
            return false;
        };
        if p.remaining == 0 {
            return false;
        }
        p.remaining -= 1;
        if p.remaining > 0 {
            return false;
        }
        self.in_flight -= 1;
        self.settle();
        true
    }

    /// A connection closed having received everything before `from`: the rest is lost to it.
    fn abandon(&mut self, from: u64) -> u64 {
        let mut lost = 0;
        let first = from.saturating_sub(self.base) as usize;
        for p in self.pending.iter_mut().skip(first) {
            if p.remaining > 0 {
                p.remaining -= 1;
                lost += 1;
                if p.remaining == 0 {
                    self.in_flight -= 1;
                }
            }
        }
        self.settle();
        lost
    }

    /// Gives up on publishes older than `timeout_ns`; returns the deliveries given up.
    fn expire(&mut self, now_ns: u64, timeout_ns: u64) -> u64 {
        let mut given_up = 0;
        for p in &mut self.pending {
            if now_ns.saturating_sub(p.sent_ns) < timeout_ns {
                break;
            }
            if p.remaining > 0 {
                given_up += p.remaining as u64;
                p.remaining = 0;
                self.in_flight -= 1;
            }
        }
        self.settle();
        given_up
    }

    /// Drops completed publishes from the front.
    fn settle(&mut self) {
        while self.pending.front().is_some_and(|p| p.remaining == 0) {
            self.pending.pop_front();
            self.base += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publishes_complete_when_everyone_has_them() {
        let mut f = Flight::default();
        f.push(0, 0, 2);
        f.push(1, 0, 2);
        assert_eq!(f.in_flight, 2);
        assert!(!f.arrive(1));
        assert!(f.arrive(1));
        assert_eq!((f.in_flight, f.base), (1, 0));
        assert!(!f.arrive(0));
        assert!(f.arrive(0));
        assert_eq!((f.in_flight, f.base, f.pending.len()), (0, 2, 0));
        assert!(!f.arrive(0), "a late copy of a completed publish");
    }

    #[test]
    fn closed_connections_and_timeouts_release_the_window() {
        let mut f = Flight::default();
        for seq in 0..3 {
            f.push(seq, seq * 10, 2);
        }
        assert!(!f.arrive(0));
        assert!(f.arrive(0));
        // A connection that had received publish 0 (and so expected 1) closes.
        assert_eq!(f.abandon(1), 2);
        assert_eq!(f.in_flight, 2);
        // Publish 1 and 2 still wait for one connection; only publish 1 is old enough.
        assert_eq!(f.expire(1_000 + 10, 1_000), 1);
        assert_eq!((f.in_flight, f.base), (1, 2));
    }
}
