//! Echo mode: N connections, each keeping K messages in flight to an echo server.
//!
//! Each connection numbers its own messages; an echo that skips numbers counts the skipped ones as
//! lost, one that repeats counts as a duplicate. Every echo received is answered with a new message
//! (all of one read's answers in one write), so each connection always has K in flight.

use std::time::Instant;

use mio::Events;

use super::conn::Ended;
use super::frame::{ClientFrame, KIND_DATA, OP_BINARY, Stamp};
use super::{Config, Measured, Net, Report, Window, histogram, spread};

/// Per-connection sequence state.
#[derive(Debug, Default, Clone, Copy)]
struct Seqs {
    /// Next sequence number to send.
    next_send: u64,
    /// Next sequence number expected back.
    expected: u64,
    /// When the last echo arrived (ns since start).
    last_rx_ns: u64,
}

pub(super) fn run(config: &Config) -> anyhow::Result<Report> {
    let start = Instant::now();
    let mut net = Net::connect(config, &spread(&config.addrs, config.connections), start)?;
    let setup_s = start.elapsed().as_secs_f64();
    let n = net.conns.len();
    let mut frame = ClientFrame::new(config.payload);
    let mut events = Events::with_capacity(4096);
    let mut seqs = vec![Seqs::default(); n];
    let mut hist = histogram();
    let mut burst = Vec::new();
    let (mut deliveries, mut sent, mut lost, mut duplicates, mut foreign) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut closed = 0usize;

    let mut window = Window::new(config, Instant::now());
    let now_ns = net.now_ns();
    for (i, s) in seqs.iter_mut().enumerate() {
        s.last_rx_ns = now_ns;
        burst.clear();
        for _ in 0..config.in_flight {
            let stamp = Stamp {
                seq: s.next_send,
                sent_ns: net.now_ns(),
                kind: KIND_DATA,
            };
            burst.extend_from_slice(frame.stamp(stamp));
            s.next_send += 1;
        }
        if let Err(err) = net.conns[i].send(&burst) {
            eprintln!("bench-load: connection {i} failed: {err}");
            net.open[i] = false;
            closed += 1;
        }
    }

    loop {
        let now = Instant::now();
        let measuring = window.tick(now);
        if window.done(now) {
            break;
        }
        window.poll(&mut net.poll, &mut events)?;
        for event in events.iter() {
            let i = event.token().0;
            if !net.open[i] {
                continue;
            }
            let mut result = Ok(None);
            if event.is_writable() {
                result = net.conns[i].flush().map(|()| None);
            }
            let mut replies = 0usize;
            if event.is_readable() && matches!(result, Ok(None)) {
                let Net {
                    conns,
                    scratch,
                    start,
                    ..
                } = &mut net;
                let s = &mut seqs[i];
                result = conns[i].pump(scratch, |f| {
                    let now_ns = start.elapsed().as_nanos() as u64;
                    let stamp = match (f.opcode, Stamp::parse(f.payload)) {
                        (OP_BINARY, Some(stamp))
                            if f.fin
                                && f.payload.len() == config.payload
                                && stamp.kind == KIND_DATA =>
                        {
                            stamp
                        }
                        _ => {
                            foreign += 1;
                            return;
                        }
                    };
                    if stamp.seq >= s.next_send {
                        foreign += 1;
                        return;
                    }
                    if stamp.seq < s.expected {
                        duplicates += 1;
                        return;
                    }
                    let skipped = stamp.seq - s.expected;
                    lost += skipped;
                    replies += 1 + skipped as usize;
                    s.expected = stamp.seq + 1;
                    s.last_rx_ns = now_ns;
                    if measuring {
                        deliveries += 1;
                        hist.saturating_record(now_ns.saturating_sub(stamp.sent_ns));
                    }
                });
            }
            if replies > 0 && matches!(result, Ok(None)) {
                burst.clear();
                let s = &mut seqs[i];
                for _ in 0..replies {
                    let stamp = Stamp {
                        seq: s.next_send,
                        sent_ns: net.now_ns(),
                        kind: KIND_DATA,
                    };
                    burst.extend_from_slice(frame.stamp(stamp));
                    s.next_send += 1;
                }
                if measuring {
                    sent += replies as u64;
                }
                result = net.conns[i].send(&burst).map(|()| None);
            }
            let ended = match result {
                Ok(ended) => ended,
                Err(err) => Some(Ended::Error(err.to_string())),
            };
            if let Some(how) = ended {
                if closed < 10 {
                    eprintln!("bench-load: connection {i} ended: {how}");
                }
                net.open[i] = false;
                closed += 1;
                let s = &seqs[i];
                lost += s.next_send - s.expected;
            }
        }
    }
    let end = Instant::now();
    let Measured {
        window_s,
        server_cpu_ns,
        backplane_cpu_ns,
        server_core_busy,
        server_core_ns,
        server_rss_kib,
        loadgen_cpu_ns,
        loadgen_busy,
    } = window.finish(end);
    let now_ns = net.now_ns();
    let stall_ns = config.loss_timeout.as_nanos() as u64;
    let stalled = seqs
        .iter()
        .zip(&net.open)
        .filter(|(s, open)| **open && s.next_send > s.expected && now_ns - s.last_rx_ns >= stall_ns)
        .count() as u64;

    Ok(Report {
        mode: config.mode.name(),
        connections: config.connections,
        failed: net.failed,
        closed,
        in_flight: config.in_flight,
        payload: config.payload,
        message: config.message.name(),
        wire: super::Wire::default(),
        setup_s,
        window_s,
        deliveries,
        sent,
        completed: deliveries,
        latency: hist,
        lost,
        duplicates,
        timed_out: stalled,
        foreign,
        ignored: 0,
        backplane_cpu_ns,
        server_cpu_ns,
        server_core_busy,
        server_core_ns,
        server_rss_kib,
        loadgen_cpu_ns,
        loadgen_busy,
    })
}
