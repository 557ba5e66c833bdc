//! Idle mode: N WebSockets held open with no traffic, to weigh what an idle connection costs the
//! server.
//!
//! 1. The servers' resident set size (`VmRSS`) is read before any connection opens.
//! 2. The N connections open and stay silent through the warmup and the window; the servers' CPU over
//!    the window and their RSS at its end are sampled, and any connection the server closes counts.
//! 3. Every open connection then sends one message and waits for its echo (the server must echo), so a
//!    server that kept sockets open but stopped serving them shows: missing echoes count as lost. The
//!    RSS is read again once they have all come back (or the loss timeout passed).

use std::time::Instant;

use mio::Events;

use super::conn::Ended;
use super::frame::{ClientFrame, KIND_DATA, OP_BINARY, Stamp};
use super::{Config, Net, Report, Window, histogram, servers_rss};

pub(super) fn run(config: &Config) -> anyhow::Result<Report> {
    let rss_before = servers_rss(&config.server_pids);
    let (mut net, setup_s) = Net::connect_evenly(config)?;
    let start = net.start;
    let mut events = Events::with_capacity(4096);
    let (mut closed, mut foreign) = (0usize, 0u64);

    // Hold, sleeping in the poller: nothing is expected to arrive.
    let mut window = Window::new(config, Instant::now());
    window.spin = false;
    loop {
        let now = Instant::now();
        window.tick(now);
        if window.done(now) {
            break;
        }
        window.poll(&mut net.poll, &mut events)?;
        for event in events.iter() {
            let i = event.token().0;
            if !net.open[i] || !event.is_readable() {
                continue;
            }
            let ended = net.conns[i].pump(&mut net.scratch, |_| foreign += 1);
            if let Some(how) = ended.unwrap_or_else(|err| Some(Ended::Error(err.to_string()))) {
                if closed < 10 {
                    eprintln!("bench-load: idle connection {i} ended: {how}");
                }
                net.open[i] = false;
                closed += 1;
            }
        }
    }
    let measured = window.finish(Instant::now());

    // One echo on every connection still open.
    let mut frame = ClientFrame::new(config.payload);
    let mut waiting = vec![false; net.conns.len()];
    let mut sent = 0u64;
    for (i, conn) in net.conns.iter_mut().enumerate() {
        if !net.open[i] {
            continue;
        }
        let stamp = Stamp {
            seq: 0,
            sent_ns: start.elapsed().as_nanos() as u64,
            kind: KIND_DATA,
        };
        if conn.send(frame.stamp(stamp)).is_ok() {
            waiting[i] = true;
            sent += 1;
        } else {
            net.open[i] = false;
            closed += 1;
        }
    }
    let mut hist = histogram();
    let mut echoed = 0u64;
    let deadline = Instant::now() + config.loss_timeout;
    while echoed < sent && Instant::now() < deadline {
        window.poll(&mut net.poll, &mut events)?;
        for event in events.iter() {
            let i = event.token().0;
            if !net.open[i] {
                continue;
            }
            if event.is_writable() && net.conns[i].flush().is_err() {
                net.open[i] = false;
                closed += 1;
                continue;
            }
            let Net { conns, scratch, .. } = &mut net;
            let ended = conns[i].pump(scratch, |f| {
                let ours = f.fin && f.opcode == OP_BINARY && f.payload.len() == config.payload;
                match Stamp::parse(f.payload).filter(|_| ours && waiting[i]) {
                    Some(stamp) => {
                        waiting[i] = false;
                        echoed += 1;
                        let now_ns = start.elapsed().as_nanos() as u64;
                        hist.saturating_record(now_ns.saturating_sub(stamp.sent_ns));
                    }
                    None => foreign += 1,
                }
            });
            if ended.map_or(true, |ended| ended.is_some()) {
                net.open[i] = false;
                closed += 1;
            }
        }
    }
    let rss_echoed = servers_rss(&config.server_pids);

    Ok(Report {
        closed,
        deliveries: echoed,
        sent,
        completed: echoed,
        latency: hist,
        lost: sent - echoed,
        foreign,
        rss_before_kib: rss_before,
        rss_echoed_kib: rss_echoed,
        ..Report::empty(config, net.failed, setup_s)
    }
    .measured(measured))
}
