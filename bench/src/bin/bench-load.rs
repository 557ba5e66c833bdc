//! `bench-load`: the load generator of Verb's benchmarks (see the `verb_bench::load` module).
//!
//! Prints a human summary to stderr and one machine-readable `RESULT key=value ...` line to stdout,
//! which `cargo xtask bench` reads.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use verb_bench::load::{self, Config, Message, Mode};

#[derive(Debug, Parser)]
#[command(
    about = "WebSocket load generator: broadcast fan-out (binary or JSON chat) or echo, closed loop, one thread"
)]
struct Cli {
    /// The server, as HOST:PORT; several servers as HOST:PORT,HOST:PORT (connections are spread
    /// evenly over them; the publisher connects to the first).
    #[arg(long, value_delimiter = ',', required = true)]
    addr: Vec<String>,
    /// Request path of the upgrade.
    #[arg(long, default_value = "/")]
    path: String,
    /// Which benchmark.
    #[arg(long, value_enum, default_value_t = Mode::Broadcast)]
    mode: Mode,
    /// Subscribers (broadcast; plus one publisher) or connections (echo).
    #[arg(long, default_value_t = 1000)]
    connections: usize,
    /// Messages in flight: for the publisher (broadcast) or per connection (echo).
    #[arg(long, default_value_t = 16)]
    in_flight: usize,
    /// Payload size in bytes (at least 17), of binary messages.
    #[arg(long, default_value_t = 64)]
    payload: usize,
    /// What the publisher sends (broadcast mode): binary stamps of `--payload` bytes, or JSON shaped
    /// like the `live-feed` example's, one tick (~140 B) or a batch of 16 (~2.1 KB) per message.
    #[arg(long, value_enum, default_value_t = Message::Binary)]
    message: Message,
    /// Offer permessage-deflate on every connection (`permessage-deflate; client_max_window_bits`)
    /// and inflate what comes compressed (broadcast mode).
    #[arg(long)]
    deflate: bool,
    /// Open the WebSockets over HTTP/2 (RFC 8441 extended CONNECT over h2c, one stream per
    /// connection) instead of HTTP/1.1 upgrades.
    #[arg(long)]
    http2: bool,
    /// Seconds under load before measuring.
    #[arg(long, default_value_t = 2.0)]
    warmup_s: f64,
    /// Seconds measured.
    #[arg(long, default_value_t = 10.0)]
    duration_s: f64,
    /// The server's pid, to report its CPU time over the measured window; several servers' pids
    /// comma-separated (their CPU times are summed).
    #[arg(long, value_delimiter = ',')]
    server_pid: Vec<u32>,
    /// Another process (a cluster's Redis) whose CPU time over the window is reported on its own.
    #[arg(long)]
    backplane_pid: Option<u32>,
    /// The core the server is pinned to, to report how busy it is (softirq included).
    #[arg(long)]
    server_core: Option<usize>,
    /// Seconds after which an incomplete message is given up on.
    #[arg(long, default_value_t = 10.0)]
    loss_timeout_s: f64,
    /// Connections handshaking at once.
    #[arg(long, default_value_t = 64)]
    connect_batch: usize,
    /// Seconds that connecting, and waiting for every connection to receive a broadcast, may take.
    #[arg(long, default_value_t = 60.0)]
    setup_timeout_s: f64,
    /// Sleep in the poller when idle instead of spinning (then the server's CPU also pays for waking
    /// the load generator, which on loopback is not small).
    #[arg(long)]
    no_spin: bool,
}

fn seconds(flag: &str, s: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(s)
        .with_context(|| format!("--{flag} must be a number of seconds ≥ 0"))
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let addrs = cli
        .addr
        .iter()
        .map(|addr| {
            addr.to_socket_addrs()
                .with_context(|| format!("cannot resolve {addr}"))?
                .next()
                .with_context(|| format!("{addr} resolves to no address"))
        })
        .collect::<anyhow::Result<Vec<SocketAddr>>>()?;
    let config = Config {
        addrs,
        path: cli.path,
        mode: cli.mode,
        connections: cli.connections,
        in_flight: cli.in_flight,
        payload: cli.payload,
        message: cli.message,
        deflate: cli.deflate,
        http2: cli.http2,
        warmup: seconds("warmup-s", cli.warmup_s)?,
        duration: seconds("duration-s", cli.duration_s)?,
        server_pids: cli.server_pid,
        backplane_pid: cli.backplane_pid,
        server_core: cli.server_core,
        loss_timeout: seconds("loss-timeout-s", cli.loss_timeout_s)?,
        connect_batch: cli.connect_batch,
        setup_timeout: seconds("setup-timeout-s", cli.setup_timeout_s)?,
        spin: !cli.no_spin,
    };
    let report = load::run(&config)?;
    eprintln!("{}", report.summary());
    println!("{}", report.result_line());
    Ok(())
}
