//! The load generator: one thread, raw non-blocking sockets under one `mio` poller, pre-encoded masked
//! frames, a closed loop of K messages in flight, and the latency of every delivery.
//!
//! Five modes:
//! - [`Mode::Broadcast`]: N subscriber connections and one publisher connection. The publisher keeps K
//!   messages in flight; a message is complete once every connection (the N subscribers and the
//!   publisher itself, which the server also sends it to) has received it, and then the next one goes
//!   out. A delivery is one message received by one connection.
//! - [`Mode::Echo`]: N connections, each keeping K messages in flight to an echo server. A delivery is
//!   one echoed message.
//! - [`Mode::Chat`]: broadcast in the JSON chat protocol of Verb's `rooms` / `cluster` examples, where
//!   the publisher does not receive its own messages; with several server addresses the subscribers
//!   are spread over them (cross-node fan-out).
//! - [`Mode::Idle`]: N WebSockets opened and held with no traffic; the server's resident set size
//!   before and with them open weighs an idle connection. Then each sends one message to the (echo)
//!   server and must get it back, which shows they were all alive.
//! - [`Mode::Http`]: N keep-alive HTTP/1.1 connections, each keeping K `GET` requests in flight
//!   (K = 1: no pipelining). A delivery is one response.
//!
//! Every message carries a sequence number and its send time (nanoseconds since this process started,
//! so latency is simply receive time minus send time). Each connection checks that it receives every
//! message exactly once and in order: skipped sequence numbers count as lost, repeated ones as
//! duplicates, messages that never complete as timed out. Only deliveries inside the measured window
//! (after the warmup) count, and the server's CPU time (from `/proc/PID/stat`) and the load
//! generator's own are sampled at the edges of that window.
//!
//! In broadcast mode the publisher may send JSON shaped like the `live-feed` example's instead of
//! binary stamps ([`feed::Message`]), and every connection may offer permessage-deflate
//! ([`Config::deflate`]): compressed frames are inflated ([`inflate`]) and checked byte for byte
//! against what was published, and the bytes on the wire per delivery are counted.

mod broadcast;
mod conn;
mod echo;
pub mod feed;
pub mod frame;
mod h2;
pub mod handshake;
mod http;
mod idle;
pub mod inflate;
pub mod procstat;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use mio::{Events, Interest, Poll, Token};

use self::conn::{Conn, Ended};
pub use self::feed::Message;

/// Which benchmark to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// One publisher, N subscribers in one room: every message goes to every connection.
    Broadcast,
    /// N connections, each sending to an echo server and waiting for its own messages back.
    Echo,
    /// Like broadcast, but in the JSON chat protocol of Verb's `rooms` / `cluster` examples: the
    /// publisher sends `{"username":..,"text":"KIND:SEQ:SENT_NS"}` text frames, subscribers receive
    /// `{"type":"message",..,"text":..}` and the publisher does not receive its own messages;
    /// `welcome` and `system` notices are skipped (and counted as ignored).
    Chat,
    /// N WebSockets held open with no traffic, to weigh them in the server's memory; then one echo
    /// on each (the server must be an echo server).
    Idle,
    /// N keep-alive HTTP/1.1 connections, each keeping K `GET --path` requests in flight.
    Http,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Self::Broadcast => "broadcast",
            Self::Echo => "echo",
            Self::Chat => "chat",
            Self::Idle => "idle",
            Self::Http => "http",
        }
    }
}

/// What to run against which server.
#[derive(Debug, Clone)]
pub struct Config {
    /// The servers' addresses: connections are spread evenly over them (the first ones get the
    /// remainder), and the publisher (broadcast, chat) connects to the first.
    pub addrs: Vec<SocketAddr>,
    /// Request path of the upgrade.
    pub path: String,
    /// Which benchmark.
    pub mode: Mode,
    /// Subscribers (broadcast) or connections (echo).
    pub connections: usize,
    /// Messages in flight: per publisher (broadcast) or per connection (echo).
    pub in_flight: usize,
    /// Payload size of each message in bytes ([`Message::Binary`]).
    pub payload: usize,
    /// What the publisher sends (broadcast mode).
    pub message: Message,
    /// Every connection offers permessage-deflate ([`inflate::OFFER`]; broadcast mode).
    pub deflate: bool,
    /// WebSockets over HTTP/2 (RFC 8441 extended CONNECT, h2c with prior knowledge), one stream per
    /// TCP connection, instead of HTTP/1.1 upgrades.
    pub http2: bool,
    /// Time under load before measuring.
    pub warmup: Duration,
    /// Measured time.
    pub duration: Duration,
    /// The server processes' ids, to sample their CPU time (summed).
    pub server_pids: Vec<u32>,
    /// Another process whose CPU time is reported on its own (the Redis backplane of a cluster).
    pub backplane_pid: Option<u32>,
    /// The core the server is pinned to, to sample how busy it is (softirq included).
    pub server_core: Option<usize>,
    /// A message not complete after this long is given up on (counted as timed out).
    pub loss_timeout: Duration,
    /// Connections handshaking at once while connecting.
    pub connect_batch: usize,
    /// How long connecting or syncing may take.
    pub setup_timeout: Duration,
    /// Poll without sleeping. On loopback the server's CPU pays for waking a sleeping client; a
    /// spinning load generator is always awake, as remote clients would be from the server's view.
    pub spin: bool,
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct Report {
    /// The mode's name.
    pub mode: &'static str,
    /// Connections asked for (subscribers in broadcast mode, not counting the publisher).
    pub connections: usize,
    /// Connections that could not be opened.
    pub failed: usize,
    /// Connections the server closed (or that failed) during the run.
    pub closed: usize,
    /// Messages in flight.
    pub in_flight: usize,
    /// Payload size in bytes (feed messages: the mean size of those delivered in the window).
    pub payload: usize,
    /// What the publisher sent.
    pub message: &'static str,
    /// Bytes on the wire and compression.
    pub wire: Wire,
    /// Seconds spent connecting (and, in broadcast mode, until every connection received a probe).
    pub setup_s: f64,
    /// Length of the measured window in seconds.
    pub window_s: f64,
    /// Deliveries inside the window.
    pub deliveries: u64,
    /// Messages sent inside the window (publishes in broadcast mode).
    pub sent: u64,
    /// Messages completed inside the window (received by everyone in broadcast mode).
    pub completed: u64,
    /// Delivery latency, nanoseconds, inside the window.
    pub latency: Histogram<u64>,
    /// Messages a connection never received although later ones arrived, or whose connection closed.
    pub lost: u64,
    /// Messages a connection received again or out of order.
    pub duplicates: u64,
    /// Deliveries given up on after the loss timeout (broadcast) or connections stalled that long (echo).
    pub timed_out: u64,
    /// Data frames that were not this load generator's messages.
    pub foreign: u64,
    /// Server notices skipped in the window (chat mode: `welcome` and `system` messages).
    pub ignored: u64,
    /// Server CPU time in the window, nanoseconds (all servers summed), if their pids were given and
    /// readable.
    pub server_cpu_ns: Option<u64>,
    /// The backplane's CPU time in the window, nanoseconds, if its pid was given and readable.
    pub backplane_cpu_ns: Option<u64>,
    /// Busy share of the server's core in the window (user, system, irq, softirq), if it was given.
    pub server_core_busy: Option<f64>,
    /// Busy time of the server's core in the window, nanoseconds, if it was given.
    pub server_core_ns: Option<u64>,
    /// The servers' resident set size at the end of the window, KiB (summed).
    pub server_rss_kib: Option<u64>,
    /// Idle mode: the servers' resident set size before the connections opened, and after each had
    /// echoed one message, KiB (summed).
    pub rss_before_kib: Option<u64>,
    /// See [`Report::rss_before_kib`].
    pub rss_echoed_kib: Option<u64>,
    /// The load generator's CPU time in the window, nanoseconds.
    pub loadgen_cpu_ns: u64,
    /// Share of the window the load generator's loop had work (not in polls that found nothing):
    /// near 1.0 means the load generator may be the bottleneck.
    pub loadgen_busy: f64,
}

/// Bytes on the wire and permessage-deflate (broadcast mode; zero elsewhere).
#[derive(Debug, Clone, Default)]
pub struct Wire {
    /// Frame bytes (header and payload) of the deliveries in the window.
    pub bytes: u64,
    /// What the same deliveries would have been as uncompressed frames.
    pub plain_bytes: u64,
    /// Deliveries in the window that arrived compressed (RSV1).
    pub compressed: u64,
    /// Connections by what their handshake settled: no compression, permessage-deflate without
    /// server context takeover, with it.
    pub negotiated: [usize; 3],
    /// Compressed frames received over the whole run (setup included).
    pub rsv1_frames: u64,
    /// Of those, how many were inflated (the others were byte-identical to one already inflated).
    pub inflated: u64,
    /// Frames that did not inflate, or whose content differed from what was published.
    pub corrupt: u64,
}

impl Report {
    /// A report of `config`'s run with every count zero and nothing measured yet: the modes fill in
    /// what they count, then [`Report::measured`] what the window gave.
    fn empty(config: &Config, failed: usize, setup_s: f64) -> Self {
        Self {
            mode: config.mode.name(),
            connections: config.connections,
            failed,
            closed: 0,
            in_flight: config.in_flight,
            payload: config.payload,
            message: config.message.name(),
            wire: Wire::default(),
            setup_s,
            window_s: 0.0,
            deliveries: 0,
            sent: 0,
            completed: 0,
            latency: histogram(),
            lost: 0,
            duplicates: 0,
            timed_out: 0,
            foreign: 0,
            ignored: 0,
            server_cpu_ns: None,
            backplane_cpu_ns: None,
            server_core_busy: None,
            server_core_ns: None,
            server_rss_kib: None,
            rss_before_kib: None,
            rss_echoed_kib: None,
            loadgen_cpu_ns: 0,
            loadgen_busy: 0.0,
        }
    }

    /// The report with what the edges of the measured window gave.
    fn measured(self, measured: Measured) -> Self {
        Self {
            window_s: measured.window_s,
            server_cpu_ns: measured.server_cpu_ns,
            backplane_cpu_ns: measured.backplane_cpu_ns,
            server_core_busy: measured.server_core_busy,
            server_core_ns: measured.server_core_ns,
            server_rss_kib: measured.server_rss_kib,
            loadgen_cpu_ns: measured.loadgen_cpu_ns,
            loadgen_busy: measured.loadgen_busy,
            ..self
        }
    }

    /// Deliveries per second.
    pub fn rate(&self) -> f64 {
        self.deliveries as f64 / self.window_s.max(f64::EPSILON)
    }

    fn quantile_us(&self, q: f64) -> f64 {
        self.latency.value_at_quantile(q) as f64 / 1e3
    }

    /// The machine-readable summary: `RESULT key=value ...` on one line.
    pub fn result_line(&self) -> String {
        let mut line = String::from("RESULT");
        let mut kv = |key: &str, value: String| {
            let _ = write!(line, " {key}={value}");
        };
        kv("mode", self.mode.to_owned());
        kv("connections", self.connections.to_string());
        kv("failed", self.failed.to_string());
        kv("closed", self.closed.to_string());
        kv("in_flight", self.in_flight.to_string());
        kv("payload", self.payload.to_string());
        kv("message", self.message.to_owned());
        kv("wire_bytes", self.wire.bytes.to_string());
        kv("plain_bytes", self.wire.plain_bytes.to_string());
        kv("compressed", self.wire.compressed.to_string());
        for (key, count) in ["deflate_off", "deflate_shared", "deflate_takeover"]
            .iter()
            .zip(self.wire.negotiated)
        {
            kv(key, count.to_string());
        }
        kv("rsv1_frames", self.wire.rsv1_frames.to_string());
        kv("inflated", self.wire.inflated.to_string());
        kv("corrupt", self.wire.corrupt.to_string());
        kv("setup_s", format!("{:.3}", self.setup_s));
        kv("window_s", format!("{:.3}", self.window_s));
        kv("deliveries", self.deliveries.to_string());
        kv("deliveries_per_s", format!("{:.0}", self.rate()));
        kv("sent", self.sent.to_string());
        kv("completed", self.completed.to_string());
        kv("p50_us", format!("{:.1}", self.quantile_us(0.50)));
        kv("p90_us", format!("{:.1}", self.quantile_us(0.90)));
        kv("p99_us", format!("{:.1}", self.quantile_us(0.99)));
        kv("p999_us", format!("{:.1}", self.quantile_us(0.999)));
        kv("max_us", format!("{:.1}", self.latency.max() as f64 / 1e3));
        kv("lost", self.lost.to_string());
        kv("duplicates", self.duplicates.to_string());
        kv("timed_out", self.timed_out.to_string());
        kv("foreign", self.foreign.to_string());
        kv("ignored", self.ignored.to_string());
        kv(
            "backplane_cpu_ns",
            self.backplane_cpu_ns
                .map_or_else(|| "-".to_owned(), |ns| ns.to_string()),
        );
        kv(
            "server_cpu_ns",
            self.server_cpu_ns
                .map_or_else(|| "-".to_owned(), |ns| ns.to_string()),
        );
        kv(
            "server_core_busy",
            self.server_core_busy
                .map_or_else(|| "-".to_owned(), |busy| format!("{busy:.3}")),
        );
        kv(
            "server_core_ns",
            self.server_core_ns
                .map_or_else(|| "-".to_owned(), |ns| ns.to_string()),
        );
        for (key, kib) in [
            ("server_rss_kib", self.server_rss_kib),
            ("rss_before_kib", self.rss_before_kib),
            ("rss_echoed_kib", self.rss_echoed_kib),
        ] {
            kv(
                key,
                kib.map_or_else(|| "-".to_owned(), |kib| kib.to_string()),
            );
        }
        kv("loadgen_cpu_ns", self.loadgen_cpu_ns.to_string());
        kv("loadgen_busy", format!("{:.3}", self.loadgen_busy));
        line
    }

    /// A few human-readable lines.
    pub fn summary(&self) -> String {
        let mut out = format!(
            "{} x{} (K={}, {}): {:.0} deliveries/s over {:.2} s, latency p50 {:.0} µs p99 {:.0} µs max {:.0} µs",
            self.mode,
            self.connections,
            self.in_flight,
            match (self.mode, self.message) {
                ("chat", _) => "JSON".to_owned(),
                (_, "binary") => format!("{} B", self.payload),
                (_, message) => format!("{message} JSON, {} B", self.payload),
            },
            self.rate(),
            self.window_s,
            self.quantile_us(0.5),
            self.quantile_us(0.99),
            self.latency.max() as f64 / 1e3,
        );
        let cores = |ns: u64| ns as f64 / 1e9 / self.window_s.max(f64::EPSILON);
        if let Some(ns) = self.server_cpu_ns {
            let per = ns as f64 / self.deliveries.max(1) as f64;
            let _ = write!(
                out,
                "\n  server CPU {:.2} cores, {per:.0} ns/delivery",
                cores(ns)
            );
        }
        if let Some(ns) = self.backplane_cpu_ns {
            let _ = write!(out, "; backplane CPU {:.2} cores", cores(ns));
        }
        if let Some(busy) = self.server_core_busy {
            let _ = write!(
                out,
                "; its core {:.0}% busy (softirq included)",
                busy * 100.0
            );
        }
        if self.wire.negotiated[1] + self.wire.negotiated[2] > 0 || self.wire.rsv1_frames > 0 {
            let per = |bytes: u64| bytes as f64 / self.deliveries.max(1) as f64;
            let _ = write!(
                out,
                "\n  permessage-deflate (off/shared/takeover) {:?}: {:.1} B on the wire per delivery \
                 vs {:.1} B plain; {} of {} compressed frames inflated; corrupt {}",
                self.wire.negotiated,
                per(self.wire.bytes),
                per(self.wire.plain_bytes),
                self.wire.inflated,
                self.wire.rsv1_frames,
                self.wire.corrupt
            );
        }
        if let Some(kib) = self.server_rss_kib {
            let _ = write!(out, "\n  server RSS {:.1} MiB", kib as f64 / 1024.0);
        }
        if let Some((before, open)) = self.rss_before_kib.zip(self.server_rss_kib) {
            let per = (open as f64 - before as f64) * 1024.0 / self.connections.max(1) as f64;
            let _ = write!(
                out,
                " with the connections open, {:.1} MiB before: {per:.0} bytes per connection",
                before as f64 / 1024.0
            );
        }
        let _ = write!(
            out,
            "\n  load generator CPU {:.2} cores, busy {:.0}%; setup {:.2} s",
            cores(self.loadgen_cpu_ns),
            self.loadgen_busy * 100.0,
            self.setup_s
        );
        let _ = write!(
            out,
            "\n  failed {} closed {} lost {} duplicates {} timed out {} foreign {} ignored {}",
            self.failed,
            self.closed,
            self.lost,
            self.duplicates,
            self.timed_out,
            self.foreign,
            self.ignored
        );
        out
    }
}

/// Runs the benchmark `config` describes.
pub fn run(config: &Config) -> anyhow::Result<Report> {
    anyhow::ensure!(config.connections > 0, "--connections must be at least 1");
    anyhow::ensure!(config.in_flight > 0, "--in-flight must be at least 1");
    anyhow::ensure!(!config.addrs.is_empty(), "no server address");
    anyhow::ensure!(
        (frame::MIN_PAYLOAD..=frame::MAX_PAYLOAD).contains(&config.payload),
        "--payload must be within {}..={}",
        frame::MIN_PAYLOAD,
        frame::MAX_PAYLOAD
    );
    anyhow::ensure!(
        config.mode == Mode::Broadcast || (config.message == Message::Binary && !config.deflate),
        "--message and --deflate go with --mode broadcast"
    );
    raise_fd_limit(config.connections + 64);
    match config.mode {
        Mode::Broadcast | Mode::Chat => broadcast::run(config),
        Mode::Echo => echo::run(config),
        Mode::Idle => idle::run(config),
        Mode::Http => http::run(config),
    }
}

/// Sockets under one poller, and what every mode shares.
struct Net {
    poll: Poll,
    conns: Vec<Conn>,
    /// `false` once a connection ended.
    open: Vec<bool>,
    failed: usize,
    /// Each connection's `Sec-WebSocket-Extensions` answer.
    extensions: Vec<Option<String>>,
    scratch: Vec<u8>,
    start: Instant,
}

impl Net {
    /// Opens the connections `placement` asks for (so many to each address, in that order) and
    /// registers them; fails if none could be opened.
    fn connect(
        config: &Config,
        placement: &[(SocketAddr, usize)],
        start: Instant,
    ) -> anyhow::Result<Self> {
        let poll = Poll::new().context("cannot create the poller")?;
        let count: usize = placement.iter().map(|&(_, n)| n).sum();
        let mut opened: Vec<std::io::Result<(Conn, Option<String>)>> = Vec::with_capacity(count);
        for &(addr, n) in placement {
            if config.http2 && config.mode != Mode::Http {
                for _ in 0..n {
                    opened.push(h2::open(addr, &config.path, config.setup_timeout).and_then(
                        |(stream, tunnel, leftover)| {
                            stream.set_nonblocking(true)?;
                            Ok((Conn::tunneled(stream, tunnel, leftover), None))
                        },
                    ));
                }
                continue;
            }
            let upgraded = if config.mode == Mode::Http {
                handshake::connect_plain(addr, n, config.setup_timeout)
            } else {
                handshake::open_many(
                    addr,
                    &config.path,
                    config.deflate.then_some(inflate::OFFER),
                    n,
                    config.connect_batch,
                    config.setup_timeout,
                )
            };
            opened.extend(
                upgraded
                    .into_iter()
                    .map(|up| up.map(|up| (Conn::new(up.stream, up.leftover), up.extensions))),
            );
        }
        let mut conns = Vec::with_capacity(count);
        let mut extensions = Vec::with_capacity(count);
        let mut failed = 0;
        let mut first_error = None;
        for result in opened {
            match result {
                Ok((conn, offered)) => {
                    conns.push(conn);
                    extensions.push(offered);
                }
                Err(err) => {
                    failed += 1;
                    first_error.get_or_insert(err);
                }
            }
        }
        if let Some(err) = &first_error {
            eprintln!("bench-load: {failed} of {count} connections failed; first error: {err}");
        }
        if conns.is_empty() {
            bail!("no connection could be opened to {:?}", config.addrs);
        }
        for (i, conn) in conns.iter_mut().enumerate() {
            poll.registry()
                .register(
                    conn.stream_mut(),
                    Token(i),
                    Interest::READABLE | Interest::WRITABLE,
                )
                .context("cannot register a socket")?;
        }
        let open = vec![true; conns.len()];
        Ok(Self {
            poll,
            conns,
            open,
            failed,
            extensions,
            scratch: vec![0; 1 << 18],
            start,
        })
    }

    /// Opens `config.connections` connections spread evenly over the servers, the clock starting
    /// now; returns them and the seconds that took.
    fn connect_evenly(config: &Config) -> anyhow::Result<(Self, f64)> {
        let start = Instant::now();
        let net = Self::connect(config, &spread(&config.addrs, config.connections), start)?;
        Ok((net, start.elapsed().as_secs_f64()))
    }

    /// Nanoseconds since the start.
    fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }
}

/// A closed loop where every answer a connection receives releases one new request on it (echo,
/// HTTP): what differs from mode to mode.
trait Answers {
    /// Reads what connection `i` received; returns how many answers came, and how the connection
    /// ended if it did. Deliveries count only while `measuring`.
    fn read(
        &mut self,
        i: usize,
        conn: &mut Conn,
        scratch: &mut [u8],
        start: Instant,
        measuring: bool,
    ) -> std::io::Result<(usize, Option<Ended>)>;
    /// Appends `n` new requests of connection `i`, sent at `now_ns`, to `burst`.
    fn requests(&mut self, i: usize, n: usize, now_ns: u64, burst: &mut Vec<u8>);
    /// Connection `i` ended (what it had in flight is lost).
    fn ended(&mut self, _i: usize) {}
    /// The counts.
    fn report(&mut self) -> &mut Report;
}

/// Runs a closed loop for the warmup and the window: K requests in flight on every connection, each
/// answer answered with a new request (all of one read's in one write). Counts closed connections
/// and the requests sent in the window into the mode's report.
fn closed_loop(
    config: &Config,
    net: &mut Net,
    mode: &mut impl Answers,
) -> anyhow::Result<Measured> {
    let mut events = Events::with_capacity(4096);
    let mut burst = Vec::new();
    let mut window = Window::new(config, Instant::now());
    for i in 0..net.conns.len() {
        burst.clear();
        mode.requests(i, config.in_flight, net.now_ns(), &mut burst);
        if let Err(err) = net.conns[i].send(&burst) {
            eprintln!("bench-load: connection {i} failed: {err}");
            net.open[i] = false;
            mode.report().closed += 1;
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
            if event.is_readable() && matches!(result, Ok(None)) {
                let start = net.start;
                result = match mode.read(i, &mut net.conns[i], &mut net.scratch, start, measuring) {
                    Ok((answered, None)) if answered > 0 => {
                        burst.clear();
                        mode.requests(i, answered, net.now_ns(), &mut burst);
                        if measuring {
                            mode.report().sent += answered as u64;
                        }
                        net.conns[i].send(&burst).map(|()| None)
                    }
                    Ok((_, ended)) => Ok(ended),
                    Err(err) => Err(err),
                };
            }
            let ended = result.unwrap_or_else(|err| Some(Ended::Error(err.to_string())));
            if let Some(how) = ended {
                let closed = &mut mode.report().closed;
                if *closed < 10 {
                    eprintln!("bench-load: connection {i} ended: {how}");
                }
                *closed += 1;
                net.open[i] = false;
                mode.ended(i);
            }
        }
    }
    Ok(window.finish(Instant::now()))
}

/// Longest sleep in the poller when not spinning, so timeouts are checked.
const POLL_CAP: Duration = Duration::from_millis(50);

/// What the edges of the measured window gave.
struct Measured {
    window_s: f64,
    server_cpu_ns: Option<u64>,
    backplane_cpu_ns: Option<u64>,
    server_core_busy: Option<f64>,
    server_core_ns: Option<u64>,
    server_rss_kib: Option<u64>,
    loadgen_cpu_ns: u64,
    loadgen_busy: f64,
}

/// CPU times at one edge of the window.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    server_ns: Option<u64>,
    backplane_ns: Option<u64>,
    core: Option<procstat::CoreTimes>,
    self_ns: u64,
}

/// The measured window: its edges, the CPU samples there, and how busy the event loop was inside.
struct Window {
    warm_end: Instant,
    end: Instant,
    server_pids: Vec<u32>,
    backplane_pid: Option<u32>,
    server_core: Option<usize>,
    spin: bool,
    measuring: bool,
    started: Option<Sample>,
    /// Time inside the window spent in polls that found nothing to do.
    idle: Duration,
}

impl Window {
    fn new(config: &Config, from: Instant) -> Self {
        let warm_end = from + config.warmup;
        Self {
            warm_end,
            end: warm_end + config.duration,
            server_pids: config.server_pids.clone(),
            backplane_pid: config.backplane_pid,
            server_core: config.server_core,
            spin: config.spin,
            measuring: false,
            started: None,
            idle: Duration::ZERO,
        }
    }

    /// Starts measuring once the warmup is over; `true` while measuring.
    fn tick(&mut self, now: Instant) -> bool {
        if !self.measuring && now >= self.warm_end {
            self.measuring = true;
            self.started = Some(self.sample(now));
        }
        self.measuring
    }

    fn done(&self, now: Instant) -> bool {
        now >= self.end
    }

    /// Waits for events: returns at once when spinning, else sleeps at most until the next edge of
    /// the window (and [`POLL_CAP`]). Time in polls that found nothing counts as idle.
    fn poll(&mut self, poll: &mut Poll, events: &mut Events) -> std::io::Result<()> {
        let before = Instant::now();
        let timeout = if self.spin {
            Duration::ZERO
        } else {
            let edge = if self.measuring {
                self.end
            } else {
                self.warm_end
            };
            edge.saturating_duration_since(before).min(POLL_CAP)
        };
        match poll.poll(events, Some(timeout)) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => events.clear(),
            Err(err) => return Err(err),
        }
        if events.is_empty() && self.measuring {
            self.idle += before.elapsed();
        }
        Ok(())
    }

    /// Closes the window at `now`.
    fn finish(&self, now: Instant) -> Measured {
        let Some(start) = self.started else {
            return Measured {
                window_s: 0.0,
                server_cpu_ns: None,
                backplane_cpu_ns: None,
                server_core_busy: None,
                server_core_ns: None,
                server_rss_kib: None,
                loadgen_cpu_ns: 0,
                loadgen_busy: 0.0,
            };
        };
        let end = self.sample(now);
        let window = end.at - start.at;
        Measured {
            window_s: window.as_secs_f64(),
            server_cpu_ns: start
                .server_ns
                .zip(end.server_ns)
                .map(|(a, b)| b.saturating_sub(a)),
            backplane_cpu_ns: start
                .backplane_ns
                .zip(end.backplane_ns)
                .map(|(a, b)| b.saturating_sub(a)),
            server_core_busy: start.core.zip(end.core).map(|(a, b)| {
                let busy = b.busy_ns.saturating_sub(a.busy_ns) as f64;
                busy / (b.total_ns.saturating_sub(a.total_ns) as f64).max(1.0)
            }),
            server_core_ns: start
                .core
                .zip(end.core)
                .map(|(a, b)| b.busy_ns.saturating_sub(a.busy_ns)),
            server_rss_kib: self.server_rss(),
            loadgen_cpu_ns: end.self_ns.saturating_sub(start.self_ns),
            loadgen_busy: 1.0 - self.idle.as_secs_f64() / window.as_secs_f64().max(f64::EPSILON),
        }
    }

    fn sample(&self, at: Instant) -> Sample {
        Sample {
            at,
            server_ns: self.server_cpu(),
            backplane_ns: self.backplane_pid.and_then(pid_cpu),
            core: self
                .server_core
                .and_then(|cpu| match procstat::core_ns(cpu) {
                    Ok(times) => Some(times),
                    Err(err) => {
                        eprintln!("bench-load: cannot read the times of core {cpu}: {err}");
                        None
                    }
                }),
            self_ns: procstat::self_cpu_ns().unwrap_or(0),
        }
    }

    /// The CPU time of all servers, summed; `None` if there are none or one cannot be read.
    fn server_cpu(&self) -> Option<u64> {
        if self.server_pids.is_empty() {
            return None;
        }
        self.server_pids.iter().map(|&pid| pid_cpu(pid)).sum()
    }

    fn server_rss(&self) -> Option<u64> {
        servers_rss(&self.server_pids)
    }
}

/// The resident set size of all `pids`, summed; `None` if there are none or one cannot be read.
fn servers_rss(pids: &[u32]) -> Option<u64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|&pid| procstat::rss_kib(pid).ok()).sum()
}

/// The CPU time of process `pid`, or `None` (said on stderr) if it cannot be read.
fn pid_cpu(pid: u32) -> Option<u64> {
    match procstat::cpu_ns(pid) {
        Ok(ns) => Some(ns),
        Err(err) => {
            eprintln!("bench-load: cannot read the CPU time of pid {pid}: {err}");
            None
        }
    }
}

/// `n` connections spread evenly over `addrs`, the first addresses taking the remainder.
fn spread(addrs: &[SocketAddr], n: usize) -> Vec<(SocketAddr, usize)> {
    let k = addrs.len().max(1);
    addrs
        .iter()
        .enumerate()
        .map(|(i, &addr)| (addr, n / k + usize::from(i < n % k)))
        .collect()
}

/// A latency histogram in nanoseconds, 1 µs to 100 s at three significant figures.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1_000, 100_000_000_000, 3).expect("valid histogram bounds")
}

/// Raises the soft limit on open files towards `want` (up to the hard limit).
fn raise_fd_limit(want: usize) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own and pass by pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return;
    }
    let want = want as libc::rlim_t;
    if limit.rlim_cur >= want {
        return;
    }
    let raised = libc::rlimit {
        rlim_cur: limit.rlim_max,
        rlim_max: limit.rlim_max,
    };
    // SAFETY: setrlimit reads the struct we own and pass by pointer.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 || limit.rlim_max < want {
        eprintln!(
            "bench-load: open-file limit {} is below the {want} this run needs",
            limit.rlim_max
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads_connections_evenly() {
        let a: SocketAddr = "127.0.0.1:1".parse().expect("address");
        let b: SocketAddr = "127.0.0.1:2".parse().expect("address");
        assert_eq!(spread(&[a, b], 1001), vec![(a, 501), (b, 500)]);
        assert_eq!(spread(&[a, b], 1000), vec![(a, 500), (b, 500)]);
        assert_eq!(spread(&[a], 7), vec![(a, 7)]);
    }
}
