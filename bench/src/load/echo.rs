//! Echo mode: N connections, each keeping K messages in flight to an echo server.
//!
//! Each connection numbers its own messages; an echo that skips numbers counts the skipped ones as
//! lost, one that repeats counts as a duplicate. Every echo received is answered with a new message
//! (all of one read's answers in one write), so each connection always has K in flight.

use std::io;
use std::time::Instant;

use super::conn::{Conn, Ended};
use super::frame::{ClientFrame, KIND_DATA, OP_BINARY, Stamp};
use super::{Answers, Config, Net, Report, closed_loop};

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

/// What the echo loop keeps and counts.
struct Echo<'a> {
    config: &'a Config,
    frame: ClientFrame,
    seqs: Vec<Seqs>,
    report: Report,
}

impl Answers for Echo<'_> {
    fn read(
        &mut self,
        i: usize,
        conn: &mut Conn,
        scratch: &mut [u8],
        start: Instant,
        measuring: bool,
    ) -> io::Result<(usize, Option<Ended>)> {
        let (config, s, r) = (self.config, &mut self.seqs[i], &mut self.report);
        let mut replies = 0usize;
        let ended = conn.pump(scratch, |f| {
            let now_ns = start.elapsed().as_nanos() as u64;
            let stamp = match (f.opcode, Stamp::parse(f.payload)) {
                (OP_BINARY, Some(stamp))
                    if f.fin && f.payload.len() == config.payload && stamp.kind == KIND_DATA =>
                {
                    stamp
                }
                _ => {
                    r.foreign += 1;
                    return;
                }
            };
            if stamp.seq >= s.next_send {
                r.foreign += 1;
                return;
            }
            if stamp.seq < s.expected {
                r.duplicates += 1;
                return;
            }
            let skipped = stamp.seq - s.expected;
            r.lost += skipped;
            replies += 1 + skipped as usize;
            s.expected = stamp.seq + 1;
            s.last_rx_ns = now_ns;
            if measuring {
                r.deliveries += 1;
                r.latency
                    .saturating_record(now_ns.saturating_sub(stamp.sent_ns));
            }
        })?;
        Ok((replies, ended))
    }

    fn requests(&mut self, i: usize, n: usize, now_ns: u64, burst: &mut Vec<u8>) {
        let s = &mut self.seqs[i];
        for _ in 0..n {
            let stamp = Stamp {
                seq: s.next_send,
                sent_ns: now_ns,
                kind: KIND_DATA,
            };
            burst.extend_from_slice(self.frame.stamp(stamp));
            s.next_send += 1;
        }
    }

    fn ended(&mut self, i: usize) {
        let s = &self.seqs[i];
        self.report.lost += s.next_send - s.expected;
    }

    fn report(&mut self) -> &mut Report {
        &mut self.report
    }
}

pub(super) fn run(config: &Config) -> anyhow::Result<Report> {
    let (mut net, setup_s) = Net::connect_evenly(config)?;
    let now_ns = net.now_ns();
    let seqs = vec![
        Seqs {
            last_rx_ns: now_ns,
            ..Seqs::default()
        };
        net.conns.len()
    ];
    let mut echo = Echo {
        config,
        frame: ClientFrame::new(config.payload),
        seqs,
        report: Report::empty(config, net.failed, setup_s),
    };
    let measured = closed_loop(config, &mut net, &mut echo)?;

    let now_ns = net.now_ns();
    let stall_ns = config.loss_timeout.as_nanos() as u64;
    let stalled = echo
        .seqs
        .iter()
        .zip(&net.open)
        .filter(|(s, open)| **open && s.next_send > s.expected && now_ns - s.last_rx_ns >= stall_ns)
        .count() as u64;
    let mut report = echo.report;
    report.timed_out = stalled;
    report.completed = report.deliveries;
    Ok(report.measured(measured))
}
