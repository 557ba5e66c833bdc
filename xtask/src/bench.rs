//! `cargo xtask bench`: Verb against the axum peers of `bench/`, over real sockets on loopback.
//!
//! 1. Builds `bench/` (the peers and the `bench-load` load generator, its own workspace and target
//!    directory `bench/target`) and Verb's `plain-broadcast` / `plain-echo` examples, all in release.
//! 2. For each suite, connection count and server: starts the server pinned to CPU 0 (`taskset`), waits
//!    for its `listening on http://HOST:PORT` line, runs `bench-load` pinned to CPU 1 with the server's
//!    pid (it samples the server's CPU time from `/proc/PID/stat` and CPU 0's from `/proc/stat` at the
//!    edges of the measured window), then stops the server with SIGTERM.
//! 3. Prints a table and writes it to `target/bench/results.md` (and `results.json`); server logs go to
//!    `target/bench/logs/`.
//!
//! Suites: `broadcast` (one publisher, N subscribers in one room: naive axum, axum with
//! `tokio::sync::broadcast`, Verb) and `echo` (N connections echoing: axum, Verb). New peers are new
//! entries of [`servers`].
//!
//! The `cluster` suite (skipped when `redis-server` is missing, unless asked for with `--only
//! cluster`) measures cross-node fan-out
//! with Verb's `cluster` example: a private `redis-server` and two nodes, all pinned to CPU 0, the
//! subscribers spread over both nodes and the publisher on the first; then the same load on one node
//! (still on Redis) for comparison. The load generator speaks the example's JSON chat protocol there.
//!
//! The `compression` suite measures permessage-deflate on a broadcast to N = 1,000 subscribers that
//! all offer it: `plain-broadcast --compression off|shared|dedicated` (plain frames, one deflate per
//! message, one per receiver), with `live-feed`-shaped JSON (one tick, and a batch of 16), in
//! interleaved rounds; besides CPU it reports the bytes on the wire per delivery and the server's RSS.

use std::collections::HashMap;
use std::env;
use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::{cargo, root, step};

/// The core the server runs on; the load generator gets [`LOADGEN_CPU`].
const SERVER_CPU: usize = 0;
const LOADGEN_CPU: usize = 1;
/// How long a server may take to print its listening line.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a server may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Below this busy share of its core, the server was not the bottleneck.
const SATURATED: f64 = 0.9;
/// Above this busy share of its loop, the load generator may have been the bottleneck.
const LOADGEN_LIMIT: f64 = 0.9;
/// Cores other processes may use before a run starts (the harness waits for less).
const QUIET: f64 = 0.1;
/// Cores other processes may use during a run before it is flagged.
const NOISE: f64 = 0.05;

pub(crate) const HELP: &str =
    "  bench [--quick] [--only broadcast|echo|cluster|compression] [--duration-s N] [--warmup-s N]
        [--in-flight K] [--connections N,M] [--quiet-wait-s N] [--retries N] [--rounds N]
        fan-out (1 publisher, 1,000 and 10,000 subscribers) and echo benchmarks of Verb against
        axum peers, servers pinned to CPU 0 and the load generator to CPU 1; results in
        target/bench/results.md; the cluster suite (cross-node fan-out through Redis, two
        `cluster` nodes against one) needs redis-server and is skipped without it; the
        compression suite (permessage-deflate: none, once per message, once per receiver) runs
        --rounds interleaved rounds (default 3, --quick 1)";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Suite {
    Broadcast,
    Echo,
    /// Cross-node fan-out through Redis (Verb's `cluster` example).
    Cluster,
    /// permessage-deflate on a broadcast (`plain-broadcast --compression ...`).
    Compression,
}

impl Suite {
    fn name(self) -> &'static str {
        match self {
            Self::Broadcast => "broadcast",
            Self::Echo => "echo",
            Self::Cluster => "cluster",
            Self::Compression => "compression",
        }
    }

    /// The connection counts of a full run and of `--quick`.
    fn sizes(self, quick: bool) -> Vec<usize> {
        match (self, quick) {
            (Self::Broadcast, false) => vec![1_000, 10_000],
            (Self::Echo, false) => vec![100, 1_000],
            (Self::Cluster, false) => vec![1_000],
            // The point is a room of 1,000 compressing receivers, --quick included.
            (Self::Compression, _) => vec![1_000],
            (_, true) => vec![100],
        }
    }

    /// Messages in flight: for the publisher (broadcast) or per connection (echo).
    fn in_flight(self) -> usize {
        match self {
            Self::Broadcast | Self::Cluster | Self::Compression => 16,
            Self::Echo => 8,
        }
    }

    /// The load generator's `--message` values each server runs with (`None`: its default).
    fn messages(self) -> &'static [Option<&'static str>] {
        match self {
            Self::Compression => &[Some("feed"), Some("feed-batch")],
            _ => &[None],
        }
    }

    /// Rounds of runs, each running every server once, interleaved so that a slow spell of the
    /// machine does not land on one server only.
    fn rounds(self, opts: &Options) -> usize {
        match self {
            Self::Compression => opts.rounds.unwrap_or(if opts.quick { 1 } else { 3 }),
            _ => 1,
        }
    }

    /// The example of Verb's that the suite runs.
    fn example(self) -> &'static str {
        match self {
            Self::Broadcast | Self::Compression => "plain-broadcast",
            Self::Echo => "plain-echo",
            Self::Cluster => "cluster",
        }
    }
}

#[derive(Debug, Clone)]
struct Options {
    quick: bool,
    /// Whether `--only` chose the suites (else the cluster suite is skipped without `redis-server`).
    only: bool,
    suites: Vec<Suite>,
    warmup_s: f64,
    duration_s: f64,
    in_flight: Option<usize>,
    sizes: Option<Vec<usize>>,
    /// How long to wait for other processes to go quiet before each run.
    quiet_wait: Duration,
    /// How many times a disturbed run is repeated.
    retries: usize,
    /// Rounds of the compression suite (default 3, `--quick` 1).
    rounds: Option<usize>,
}

impl Options {
    fn parse(args: &[String]) -> Result<Self> {
        let mut opts = Options {
            quick: false,
            only: false,
            suites: vec![
                Suite::Broadcast,
                Suite::Echo,
                Suite::Cluster,
                Suite::Compression,
            ],
            warmup_s: 2.0,
            duration_s: 10.0,
            in_flight: None,
            sizes: None,
            quiet_wait: Duration::from_secs(300),
            retries: 2,
            rounds: None,
        };
        let (mut warmup, mut duration) = (None, None);
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let mut value = |name: &str| {
                it.next()
                    .cloned()
                    .with_context(|| format!("{name} needs a value"))
            };
            match arg.as_str() {
                "--quick" => opts.quick = true,
                "--only" => {
                    opts.only = true;
                    opts.suites = match value("--only")?.as_str() {
                        "broadcast" => vec![Suite::Broadcast],
                        "echo" => vec![Suite::Echo],
                        "cluster" => vec![Suite::Cluster],
                        "compression" => vec![Suite::Compression],
                        other => {
                            bail!("unknown suite `{other}` (broadcast, echo, cluster, compression)")
                        }
                    }
                }
                "--duration-s" => duration = Some(number(&value("--duration-s")?)?),
                "--warmup-s" => warmup = Some(number(&value("--warmup-s")?)?),
                "--in-flight" => opts.in_flight = Some(number(&value("--in-flight")?)?),
                "--quiet-wait-s" => {
                    opts.quiet_wait = Duration::from_secs(number(&value("--quiet-wait-s")?)?)
                }
                "--retries" => opts.retries = number(&value("--retries")?)?,
                "--rounds" => opts.rounds = Some(number::<usize>(&value("--rounds")?)?.max(1)),
                "--connections" => {
                    let list = value("--connections")?;
                    opts.sizes = Some(list.split(',').map(number).collect::<Result<_>>()?);
                }
                other => bail!("unknown flag `{other}`\n\nusage: cargo xtask bench ...\n{HELP}"),
            }
        }
        if opts.quick {
            opts.warmup_s = 1.0;
            opts.duration_s = 2.0;
        }
        opts.warmup_s = warmup.unwrap_or(opts.warmup_s);
        opts.duration_s = duration.unwrap_or(opts.duration_s);
        Ok(opts)
    }
}

fn number<T: std::str::FromStr>(text: &str) -> Result<T> {
    text.trim()
        .parse()
        .map_err(|_| anyhow::anyhow!("`{text}` is not a valid number"))
}

/// One server under test.
#[derive(Debug, Clone)]
struct Server {
    /// Its name in the table.
    name: &'static str,
    suite: Suite,
    binary: PathBuf,
    /// Baselines are what the other rows are compared with.
    baseline: Option<&'static str>,
    /// Cluster suite: how many nodes (each a process of `binary`) share one Redis.
    nodes: usize,
    /// Arguments after `--host` and `--port`.
    args: &'static [&'static str],
    /// Compression suite: what every connection's handshake must settle (`off`, `shared` or
    /// `takeover`, as the load generator's `deflate_*` counts name them).
    deflate: Option<&'static str>,
}

/// Every server, in the order they run (baselines first).
fn servers(verb_dir: &Path, bench_dir: &Path) -> Vec<Server> {
    let peer = |name: &'static str, suite, baseline| Server {
        name,
        suite,
        binary: bench_dir.join(name),
        baseline,
        nodes: 1,
        args: &[],
        deflate: None,
    };
    let verb = |name: &'static str, suite: Suite, baseline| Server {
        name,
        suite,
        binary: verb_dir.join(suite.example()),
        baseline,
        nodes: 1,
        args: &[],
        deflate: None,
    };
    let compression = |name, baseline, args, deflate| Server {
        args,
        deflate: Some(deflate),
        ..verb(name, Suite::Compression, baseline)
    };
    vec![
        peer("axum-naive-broadcast", Suite::Broadcast, Some("naive")),
        peer("axum-broadcast", Suite::Broadcast, Some("tokio-broadcast")),
        verb("verb plain-broadcast", Suite::Broadcast, None),
        peer("axum-echo", Suite::Echo, Some("axum")),
        verb("verb plain-echo", Suite::Echo, None),
        verb("verb cluster, 1 node", Suite::Cluster, Some("1 node")),
        Server {
            nodes: 2,
            ..verb("verb cluster, 2 nodes", Suite::Cluster, None)
        },
        compression(
            NO_COMPRESSION,
            Some("no compression"),
            &["--compression", "off"],
            "off",
        ),
        compression(
            COMPRESS_ONCE,
            Some("compress-once"),
            &["--compression", "shared"],
            "shared",
        ),
        compression(
            PER_RECEIVER,
            None,
            &["--compression", "dedicated"],
            "takeover",
        ),
    ]
}

/// The compression suite's servers.
const NO_COMPRESSION: &str = "verb, no compression";
const COMPRESS_ONCE: &str = "verb, compress-once";
const PER_RECEIVER: &str = "verb, compress per receiver";

/// One run to make of a server.
#[derive(Debug, Clone, Copy)]
struct Case {
    connections: usize,
    in_flight: usize,
    /// The load generator's `--message`, if not its default.
    message: Option<&'static str>,
    /// Which round (from 0).
    round: usize,
}

/// What one run gave: the load generator's `RESULT` fields, or why there are none.
#[derive(Debug, Clone)]
struct Row {
    server: Server,
    connections: usize,
    message: Option<&'static str>,
    round: usize,
    result: Result<Fields, String>,
    /// Problems the harness saw (server exited early, ...).
    notes: Vec<String>,
    /// Cores other processes used before or during the run (the larger); disturbed from [`NOISE`] on.
    noise: f64,
}

type Fields = HashMap<String, String>;

fn field(fields: &Fields, key: &str) -> Option<f64> {
    fields.get(key).and_then(|v| v.parse().ok())
}

pub(crate) fn bench(args: &[String]) -> Result<()> {
    let mut opts = Options::parse(args)?;
    let root = root();
    let started = Instant::now();

    check_tools(&mut opts)?;
    let target = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let bench_target = root.join("bench").join("target");
    let out_dir = target.join("bench");
    let log_dir = out_dir.join("logs");
    fs::create_dir_all(&log_dir).with_context(|| format!("cannot create {}", log_dir.display()))?;

    let bench_target_arg = bench_target.to_string_lossy().into_owned();
    step(
        "build bench/",
        cargo(&[
            "build",
            "--release",
            "--locked",
            "--manifest-path",
            "bench/Cargo.toml",
            "--target-dir",
            &bench_target_arg,
        ]),
    )?;
    let mut examples = vec!["build", "--release", "-p", "examples"];
    for suite in &opts.suites {
        if !examples.contains(&suite.example()) {
            examples.extend(["--example", suite.example()]);
        }
    }
    step("build Verb's examples", cargo(&examples))?;

    let all = servers(
        &target.join("release").join("examples"),
        &bench_target.join("release"),
    );
    let loadgen = bench_target.join("release").join("bench-load");
    let pinned = pinning()?;

    let ctx = Ctx {
        opts: &opts,
        loadgen: &loadgen,
        log_dir: &log_dir,
        pinned,
    };
    let mut rows = Vec::new();
    for &suite in &opts.suites {
        let sizes = opts
            .sizes
            .clone()
            .unwrap_or_else(|| suite.sizes(opts.quick));
        let in_flight = opts.in_flight.unwrap_or_else(|| suite.in_flight());
        let rounds = suite.rounds(&opts);
        for &n in &sizes {
            for round in 0..rounds {
                for &message in suite.messages() {
                    for server in all.iter().filter(|s| s.suite == suite) {
                        let case = Case {
                            connections: n,
                            in_flight,
                            message,
                            round,
                        };
                        let what = format!(
                            "{} x{n}{}{}: {}",
                            suite.name(),
                            message.map(|m| format!(", {m}")).unwrap_or_default(),
                            if rounds > 1 {
                                format!(", round {} of {rounds}", round + 1)
                            } else {
                                String::new()
                            },
                            server.name
                        );
                        eprintln!("\n==> {what}");
                        let row = run_one(&ctx, server, case);
                        if let Err(err) = &row.result {
                            eprintln!("==> {what}: FAILED: {err}");
                        }
                        rows.push(row);
                        // Let the sockets of the last run wind down before the next server starts.
                        thread::sleep(Duration::from_millis(500));
                    }
                }
            }
        }
    }

    let markdown = render_markdown(&rows, &opts, pinned);
    eprintln!("\n{markdown}");
    let md_path = out_dir.join("results.md");
    fs::write(&md_path, &markdown)
        .with_context(|| format!("cannot write {}", md_path.display()))?;
    let json_path = out_dir.join("results.json");
    fs::write(&json_path, render_json(&rows, &opts))
        .with_context(|| format!("cannot write {}", json_path.display()))?;
    eprintln!(
        "xtask bench: {} runs in {:.0?}; results in {} and {}",
        rows.len(),
        started.elapsed(),
        md_path.display(),
        json_path.display()
    );

    let failed: Vec<String> = rows
        .iter()
        .filter(|row| row.result.is_err())
        .map(|row| format!("{} x{}", row.server.name, row.connections))
        .collect();
    if !failed.is_empty() {
        bail!("{} run(s) failed: {}", failed.len(), failed.join(", "));
    }
    Ok(())
}

/// `taskset` and `/proc` are what the measurements stand on (and `redis-server` the cluster suite).
fn check_tools(opts: &mut Options) -> Result<()> {
    if !cfg!(target_os = "linux") {
        bail!("cargo xtask bench measures CPU time through /proc and runs on Linux only");
    }
    let taskset = Command::new("taskset")
        .arg("--version")
        .output()
        .map(|out| out.status.success())
        .unwrap_or(false);
    if !taskset {
        bail!("`taskset` not found: install util-linux (apt-get install util-linux)");
    }
    let redis = || {
        Command::new("redis-server")
            .arg("--version")
            .output()
            .map(|out| out.status.success())
            .unwrap_or(false)
    };
    if opts.suites.contains(&Suite::Cluster) && !redis() {
        if opts.only {
            bail!(
                "`redis-server` not found: the cluster suite needs it (apt-get install redis-server)"
            );
        }
        eprintln!("!!! `redis-server` not found: skipping the cluster suite");
        opts.suites.retain(|&suite| suite != Suite::Cluster);
    }
    Ok(())
}

/// Whether server and load generator get a core each (at least 2 cores available).
fn pinning() -> Result<bool> {
    let cores = thread::available_parallelism().map_or(1, |n| n.get());
    if cores < 2 {
        eprintln!(
            "\n!!! only {cores} core available: server and load generator share it; \
             numbers are not comparable with pinned runs\n"
        );
        return Ok(false);
    }
    Ok(true)
}

/// CPU time used so far by every user-space process on the machine except this one and its children
/// (the server and the load generator), reaped children included (`utime + stime + cutime + cstime`
/// from `/proc/PID/stat`), in clock ticks. Kernel threads are left out: softirq work for the
/// benchmark's own sockets runs there.
fn other_cpu_ticks() -> i64 {
    let me = std::process::id();
    let Ok(dir) = fs::read_dir("/proc") else {
        return 0;
    };
    let mut total = 0i64;
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields after the command name: state ppid ... (utime is the 12th, cstime the 15th).
        let Some(rest) = stat.rfind(')').map(|at| &stat[at + 1..]) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ppid: u32 = fields.get(1).and_then(|f| f.parse().ok()).unwrap_or(0);
        if pid == me || ppid == me || pid == 2 || ppid == 2 {
            continue;
        }
        total += fields
            .get(11..15)
            .map(|times| times.iter().filter_map(|t| t.parse::<i64>().ok()).sum())
            .unwrap_or(0);
    }
    total
}

/// Clock ticks per second of `/proc` times (`getconf CLK_TCK`, almost always 100).
fn ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8_lossy(&out.stdout).trim().parse().ok())
        .filter(|&t: &f64| t > 0.0)
        .unwrap_or(100.0)
}

/// Cores' worth of CPU that other processes used while `f` ran.
fn other_load<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let started = Instant::now();
    let before = other_cpu_ticks();
    let value = f();
    let ticks = (other_cpu_ticks() - before).max(0) as f64;
    (
        value,
        ticks / ticks_per_second() / started.elapsed().as_secs_f64(),
    )
}

/// Waits (up to `max`) until other processes use less than [`QUIET`] cores, as builds running next
/// to a benchmark take CPU from the server or the load generator. Returns the load last seen.
fn wait_for_quiet(max: Duration) -> f64 {
    let deadline = Instant::now() + max;
    let mut told = false;
    loop {
        let ((), load) = other_load(|| thread::sleep(Duration::from_secs(1)));
        if load < QUIET {
            return load;
        }
        if Instant::now() >= deadline {
            eprintln!("!!! other processes still use {load:.2} cores; running anyway (flagged)");
            return load;
        }
        if !told {
            eprintln!(
                "    other processes use {load:.2} cores: waiting up to {max:?} for the machine to quiet down"
            );
            told = true;
        }
    }
}

/// Wraps `argv` so it runs with the open-file limit raised to the hard limit and, if `pinned`, on
/// `cpu`.
fn launch(argv: &[String], cpu: usize, pinned: bool) -> Command {
    let mut cmd = Command::new("sh");
    let exec = if pinned {
        format!("exec taskset -c {cpu} \"$@\"")
    } else {
        "exec \"$@\"".to_owned()
    };
    cmd.arg("-c")
        .arg(format!("ulimit -n \"$(ulimit -Hn)\" 2>/dev/null; {exec}"))
        .arg("sh")
        .args(argv);
    cmd
}

/// What every run of one invocation shares.
struct Ctx<'a> {
    opts: &'a Options,
    loadgen: &'a Path,
    log_dir: &'a Path,
    pinned: bool,
}

/// Runs `server` with `n` connections; a run that other processes disturbed is run again (after
/// waiting for quiet), up to `--retries` times, and the least disturbed attempt is kept.
fn run_one(ctx: &Ctx<'_>, server: &Server, case: Case) -> Row {
    let attempt = || {
        let mut row = Row {
            server: server.clone(),
            connections: case.connections,
            message: case.message,
            round: case.round,
            result: Err(String::new()),
            notes: Vec::new(),
            noise: 0.0,
        };
        row.result = measure(ctx, server, case, &mut row).map_err(|err| format!("{err:#}"));
        row
    };
    let mut best = attempt();
    let mut attempts = 1;
    while best.noise >= NOISE && attempts <= ctx.opts.retries {
        eprintln!(
            "    other processes disturbed the run: again ({attempts} of {})",
            ctx.opts.retries
        );
        let row = attempt();
        attempts += 1;
        let better = (row.result.is_ok() && best.result.is_err())
            || (row.result.is_ok() == best.result.is_ok() && row.noise < best.noise);
        if better {
            best = row;
        }
    }
    if attempts > 1 {
        best.notes
            .push(format!("least disturbed of {attempts} attempts"));
    }
    best
}

fn measure(ctx: &Ctx<'_>, server: &Server, case: Case, row: &mut Row) -> Result<Fields> {
    let Case {
        connections: n,
        in_flight,
        message,
        round,
    } = case;
    let Ctx {
        opts,
        loadgen,
        log_dir,
        pinned,
    } = *ctx;
    if !server.binary.exists() {
        bail!("{} does not exist", server.binary.display());
    }
    let log_name = format!(
        "{}-{}-{n}{}{}.log",
        server.suite.name(),
        server.name.replace([' ', ','], "-"),
        message.map(|m| format!("-{m}")).unwrap_or_default(),
        if round > 0 {
            format!("-round{}", round + 1)
        } else {
            String::new()
        }
    );
    let log_path = log_dir.join(log_name);
    let notes = &mut row.notes;
    let before = wait_for_quiet(opts.quiet_wait);
    // A wait that ended quiet says nothing about the run; one that timed out does.
    row.noise = if before >= QUIET { before } else { 0.0 };
    if before >= QUIET {
        notes.push(format!(
            "other processes used {before:.2} cores before the run"
        ));
    }
    // The cluster suite: a private Redis, then the nodes on it.
    let mut redis = None;
    let mut extra: Vec<String> = server.args.iter().map(|a| (*a).to_owned()).collect();
    if server.suite == Suite::Cluster {
        let log = log_dir.join(format!("cluster-redis-{}-{n}.log", server.nodes));
        let started = Redis::start(&log, pinned)?;
        extra.extend([
            "--redis".to_owned(),
            format!("redis://127.0.0.1:{}", started.port),
        ]);
        redis = Some(started);
    }
    let mut nodes = Vec::new();
    for node in 0..server.nodes {
        let log = if server.nodes == 1 {
            log_path.clone()
        } else {
            log_path.with_extension(format!("node{node}.log"))
        };
        nodes.push(RunningServer::start(server, &extra, &log, pinned)?);
    }
    let addrs: Vec<String> = nodes.iter().map(|node| node.addr.clone()).collect();
    let pids: Vec<String> = nodes
        .iter()
        .map(|node| node.child.id().to_string())
        .collect();
    let mode = match server.suite {
        Suite::Cluster => "chat",
        Suite::Compression => "broadcast",
        suite => suite.name(),
    };

    let mut argv = vec![
        loadgen.to_string_lossy().into_owned(),
        "--addr".to_owned(),
        addrs.join(","),
        "--mode".to_owned(),
        mode.to_owned(),
        "--connections".to_owned(),
        n.to_string(),
        "--in-flight".to_owned(),
        in_flight.to_string(),
        "--warmup-s".to_owned(),
        opts.warmup_s.to_string(),
        "--duration-s".to_owned(),
        opts.duration_s.to_string(),
        "--server-pid".to_owned(),
        pids.join(","),
    ];
    if let Some(message) = message {
        argv.extend(["--message".to_owned(), message.to_owned()]);
    }
    if server.suite == Suite::Compression {
        argv.push("--deflate".to_owned());
    }
    if let Some(redis) = &redis {
        argv.extend([
            "--path".to_owned(),
            "/ws/bench".to_owned(),
            "--backplane-pid".to_owned(),
            redis.child.id().to_string(),
        ]);
    }
    if pinned {
        argv.extend(["--server-core".to_owned(), SERVER_CPU.to_string()]);
    }
    eprintln!("    {}", argv.join(" "));
    let (output, noise) = other_load(|| {
        launch(&argv, LOADGEN_CPU, pinned)
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
    });
    let output = output.context("cannot run bench-load")?;
    row.noise = row.noise.max(noise);
    if noise >= NOISE {
        notes.push(format!(
            "other processes used {noise:.2} cores during the run"
        ));
    }

    for running in &mut nodes {
        if let Ok(Some(status)) = running.child.try_wait() {
            notes.push(format!("server exited during the run ({status})"));
        }
        if let Err(err) = running.stop() {
            notes.push(format!("stopping the server: {err:#}"));
        }
    }
    if let Some(mut redis) = redis {
        if let Ok(Some(status)) = redis.child.try_wait() {
            notes.push(format!("redis-server exited during the run ({status})"));
        }
        if let Err(err) = redis.stop() {
            notes.push(format!("stopping redis-server: {err:#}"));
        }
    }
    if !output.status.success() {
        bail!(
            "bench-load failed ({}); server log: {}",
            output.status,
            log_path.display()
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find_map(|line| line.strip_prefix("RESULT "))
        .context("bench-load printed no RESULT line")?;
    Ok(line
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect())
}

/// A server process, its address, and the threads copying its output into its log.
struct RunningServer {
    child: Child,
    addr: String,
    copiers: Vec<thread::JoinHandle<()>>,
}

impl RunningServer {
    /// Starts `server` with `extra` arguments after the address ones.
    fn start(server: &Server, extra: &[String], log_path: &Path, pinned: bool) -> Result<Self> {
        let mut argv = vec![
            server.binary.to_string_lossy().into_owned(),
            "--host".to_owned(),
            "127.0.0.1".to_owned(),
            "--port".to_owned(),
            "0".to_owned(),
        ];
        argv.extend_from_slice(extra);
        let mut child = launch(&argv, SERVER_CPU, pinned)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", server.binary.display()))?;
        let log = fs::File::create(log_path)
            .with_context(|| format!("cannot create {}", log_path.display()))?;
        let (tx, rx) = mpsc::channel::<String>();
        let mut copiers = Vec::new();
        let streams: [Option<Box<dyn Read + Send>>; 2] = [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        ];
        for stream in streams.into_iter().flatten() {
            let tx = tx.clone();
            let mut log = log.try_clone().context("cannot share the log file")?;
            copiers.push(thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    let _ = writeln!(log, "{line}");
                    if let Some(addr) = listening_addr(&line) {
                        let _ = tx.send(addr);
                    }
                }
            }));
        }
        drop(tx);
        let mut running = Self {
            child,
            addr: String::new(),
            copiers,
        };
        match rx.recv_timeout(START_TIMEOUT) {
            Ok(addr) => {
                running.addr = addr;
                eprintln!(
                    "    {} listening on {} (pid {})",
                    server.name,
                    running.addr,
                    running.child.id()
                );
                Ok(running)
            }
            Err(_) => {
                let _ = running.stop();
                bail!(
                    "{} printed no `listening on http://` line within {START_TIMEOUT:?}; log: {}",
                    server.name,
                    log_path.display()
                )
            }
        }
    }

    /// SIGTERM, then SIGKILL if it does not exit in time.
    fn stop(&mut self) -> Result<()> {
        if self.child.try_wait()?.is_none() {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
            let deadline = Instant::now() + STOP_TIMEOUT;
            while self.child.try_wait()?.is_none() {
                if Instant::now() >= deadline {
                    self.child.kill()?;
                    self.child.wait()?;
                    bail!("did not exit within {STOP_TIMEOUT:?} of SIGTERM; killed");
                }
                thread::sleep(Duration::from_millis(20));
            }
        }
        for copier in self.copiers.drain(..) {
            let _ = copier.join();
        }
        Ok(())
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A private `redis-server` (no persistence) on a free loopback port, for the cluster suite.
struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    /// Starts it (on [`SERVER_CPU`] if `pinned`, beside the nodes) and waits until it answers `PING`.
    fn start(log_path: &Path, pinned: bool) -> Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("cannot find a free port for redis-server")?
            .port();
        let argv: Vec<String> = [
            "redis-server",
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let log = fs::File::create(log_path)
            .with_context(|| format!("cannot create {}", log_path.display()))?;
        let child = launch(&argv, SERVER_CPU, pinned)
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("cannot share the log file")?)
            .stderr(log)
            .spawn()
            .context("cannot start redis-server")?;
        let mut redis = Self { child, port };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if redis.ping() {
                eprintln!(
                    "    redis-server on 127.0.0.1:{port} (pid {})",
                    redis.child.id()
                );
                return Ok(redis);
            }
            if Instant::now() >= deadline || redis.child.try_wait()?.is_some() {
                let _ = redis.stop();
                bail!(
                    "redis-server did not answer PING on port {port}; log: {}",
                    log_path.display()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn ping(&self) -> bool {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], self.port));
        let Ok(mut stream) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1))
        else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        let mut reply = [0u8; 7];
        stream.write_all(b"PING\r\n").is_ok()
            && stream.read_exact(&mut reply).is_ok()
            && &reply == b"+PONG\r\n"
    }

    /// SIGTERM, then SIGKILL if it does not exit in time.
    fn stop(&mut self) -> Result<()> {
        if self.child.try_wait()?.is_none() {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
            let deadline = Instant::now() + STOP_TIMEOUT;
            while self.child.try_wait()?.is_none() {
                if Instant::now() >= deadline {
                    self.child.kill()?;
                    self.child.wait()?;
                    bail!("did not exit within {STOP_TIMEOUT:?} of SIGTERM; killed");
                }
                thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `HOST:PORT` from a line containing `listening on http://HOST:PORT`.
fn listening_addr(line: &str) -> Option<String> {
    let rest = line.split("listening on http://").nth(1)?;
    let addr: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '[' | ']'))
        .collect();
    (!addr.is_empty()).then_some(addr)
}

/// The figures of a row that the table and the targets use.
#[derive(Debug, Clone, Copy)]
struct Figures {
    rate: f64,
    p50_us: f64,
    p99_us: f64,
    /// Server process CPU (utime + stime) per delivery.
    server_ns: Option<f64>,
    server_cores: Option<f64>,
    /// Busy share of the server's core, softirq included.
    core_busy: Option<f64>,
    /// Busy time of the server's core (softirq included) per delivery.
    core_ns: Option<f64>,
    loadgen_cores: f64,
    loadgen_busy: f64,
    /// Cluster suite: Redis's CPU (utime + stime) in cores.
    redis_cores: Option<f64>,
    /// Compression suite: frame bytes on the wire per delivery, and as uncompressed frames.
    wire_bytes: Option<f64>,
    plain_bytes: Option<f64>,
    /// The server's resident set size at the end of the window.
    rss_mib: Option<f64>,
}

impl Figures {
    fn of(fields: &Fields) -> Self {
        let get = |key| field(fields, key).unwrap_or(f64::NAN);
        let window_s = get("window_s");
        let deliveries = get("deliveries");
        let server_cpu = field(fields, "server_cpu_ns");
        Self {
            rate: get("deliveries_per_s"),
            p50_us: get("p50_us"),
            p99_us: get("p99_us"),
            server_ns: server_cpu.map(|ns| ns / deliveries.max(1.0)),
            server_cores: server_cpu.map(|ns| ns / 1e9 / window_s),
            core_busy: field(fields, "server_core_busy"),
            core_ns: field(fields, "server_core_ns").map(|ns| ns / deliveries.max(1.0)),
            loadgen_cores: get("loadgen_cpu_ns") / 1e9 / window_s,
            loadgen_busy: get("loadgen_busy"),
            redis_cores: field(fields, "backplane_cpu_ns").map(|ns| ns / 1e9 / window_s),
            wire_bytes: field(fields, "wire_bytes").map(|b| b / deliveries.max(1.0)),
            plain_bytes: field(fields, "plain_bytes").map(|b| b / deliveries.max(1.0)),
            rss_mib: field(fields, "server_rss_kib").map(|kib| kib / 1024.0),
        }
    }
}

fn flags(row: &Row, fig: &Figures, fields: &Fields) -> Vec<String> {
    let mut flags = row.notes.clone();
    let saturation = fig.core_busy.or(fig.server_cores);
    if let Some(busy) = saturation.filter(|&b| b < SATURATED) {
        flags.push(format!("server core only {:.0}% busy", busy * 100.0));
    }
    if fig.loadgen_busy >= LOADGEN_LIMIT {
        flags.push(format!(
            "load generator {:.0}% busy: may be the bottleneck",
            fig.loadgen_busy * 100.0
        ));
    }
    for (key, what) in [
        ("failed", "connections failed"),
        ("closed", "connections closed"),
        ("lost", "LOST"),
        ("duplicates", "DUPLICATES"),
        ("timed_out", "TIMED OUT"),
        ("foreign", "unexpected frames"),
        ("ignored", "join/leave notices in the window"),
        ("corrupt", "CORRUPT (did not inflate, or not what was sent)"),
    ] {
        if let Some(count) = field(fields, key).filter(|&c| c > 0.0) {
            flags.push(format!("{what}: {count}"));
        }
    }
    if let Some(wanted) = row.server.deflate {
        let count = |key: &str| field(fields, key).unwrap_or(0.0);
        // The subscribers and the publisher.
        let settled = |kind: &str| count(&format!("deflate_{kind}"));
        if settled(wanted) != (row.connections + 1) as f64 {
            flags.push(format!(
                "HANDSHAKES settled off/shared/takeover {}/{}/{}, not all {wanted}",
                settled("off"),
                settled("shared"),
                settled("takeover")
            ));
        }
        let (compressed, deliveries) = (count("compressed"), count("deliveries"));
        if wanted != "off" && compressed < deliveries {
            flags.push(format!(
                "only {compressed} of {deliveries} deliveries compressed"
            ));
        }
    }
    flags
}

fn fmt_rate(rate: f64) -> String {
    if rate >= 1e6 {
        format!("{:.2} M", rate / 1e6)
    } else if rate >= 1e3 {
        format!("{:.1} k", rate / 1e3)
    } else {
        format!("{rate:.0}")
    }
}

fn fmt_us(us: f64) -> String {
    if us >= 1e3 {
        format!("{:.1} ms", us / 1e3)
    } else {
        format!("{us:.0} µs")
    }
}

/// A ratio: two decimals, three for small ones.
fn fmt_ratio(ratio: f64) -> String {
    if ratio < 0.095 {
        format!("{ratio:.3}×")
    } else {
        format!("{ratio:.2}×")
    }
}

fn fmt_opt(value: Option<f64>, fmt: impl Fn(f64) -> String) -> String {
    value.map_or_else(|| "-".to_owned(), fmt)
}

fn render_markdown(rows: &[Row], opts: &Options, pinned: bool) -> String {
    let mut md = String::from("# Verb benchmark results\n\n");
    let _ = writeln!(md, "{}\n", machine_line(pinned));
    let _ = writeln!(
        md,
        "Warmup {} s, measured {} s per run. Deliveries: messages received by clients (broadcast: every \
         subscriber and the publisher; echo: every echo; cluster: every subscriber, not the publisher). Server CPU: utime + stime of the server process \
         over the measured window (`/proc/PID/stat`); core busy and core ns/delivery: the server's core, \
         softirq included (`/proc/stat`; on loopback the kernel runs the clients' receive path there). \
         Loadgen busy: share of the window the load generator's loop had events to handle.\n",
        opts.warmup_s, opts.duration_s
    );
    for &suite in &opts.suites {
        let suite_rows: Vec<&Row> = rows.iter().filter(|r| r.server.suite == suite).collect();
        if suite_rows.is_empty() {
            continue;
        }
        let baselines: Vec<&'static str> = suite_rows
            .iter()
            .filter_map(|r| r.server.baseline)
            .fold(Vec::new(), |mut acc, b| {
                if !acc.contains(&b) {
                    acc.push(b);
                }
                acc
            });
        let in_flight = opts.in_flight.unwrap_or_else(|| suite.in_flight());
        let _ = writeln!(
            md,
            "## {} ({in_flight} {})\n",
            suite.name(),
            match suite {
                Suite::Broadcast => "messages of 64 bytes in flight, N subscribers + the publisher",
                Suite::Echo => "messages of 64 bytes in flight per connection, N connections",
                Suite::Cluster =>
                    "JSON chat messages in flight; N subscribers spread evenly over the nodes, the \
                     publisher on the first node and not a receiver; Redis and every node on CPU 0; \
                     server CPU: all nodes summed",
                Suite::Compression =>
                    "`live-feed` JSON messages in flight, N subscribers + the publisher, every \
                     connection offering permessage-deflate; wire and plain B: frame bytes per \
                     delivery as sent and as an uncompressed frame; × columns compare runs of the \
                     same message and round",
            }
        );
        let compression = suite == Suite::Compression;
        let mut header = String::from("| server | N |");
        let mut rule = String::from("|---|---:|");
        if compression {
            header.push_str(" message | round |");
            rule.push_str("---|---:|");
        }
        header.push_str(" deliveries/s |");
        rule.push_str("---:|");
        for b in &baselines {
            let _ = write!(header, " × {b} |");
            rule.push_str("---:|");
        }
        header.push_str(
            " p50 | p99 | server CPU (cores) | server ns/delivery | core busy | core ns/delivery | loadgen CPU | loadgen busy |",
        );
        rule.push_str("---:|---:|---:|---:|---:|---:|---:|---:|");
        if suite == Suite::Cluster {
            header.push_str(" Redis CPU (cores) |");
            rule.push_str("---:|");
        }
        if compression {
            header.push_str(" wire B | plain B | wire/plain | server RSS (MiB) |");
            rule.push_str("---:|---:|---:|---:|");
        }
        header.push_str(" flags |");
        rule.push_str("---|");
        let _ = writeln!(md, "{header}\n{rule}");
        for row in &suite_rows {
            let _ = write!(md, "| {} | {} |", row.server.name, row.connections);
            if compression {
                let _ = write!(md, " {} | {} |", row.message.unwrap_or("-"), row.round + 1);
            }
            let Ok(fields) = &row.result else {
                let err = row.result.as_ref().err().map_or("", String::as_str);
                let _ = writeln!(
                    md,
                    " FAILED: {} |",
                    err.replace('|', "\\|").replace('\n', " ")
                );
                continue;
            };
            let fig = Figures::of(fields);
            let _ = write!(md, " {} |", fmt_rate(fig.rate));
            for b in &baselines {
                let base = baseline_of(&suite_rows, b, row.connections, row.message, row.round);
                let _ = write!(
                    md,
                    " {} |",
                    fmt_opt(base.map(|base| fig.rate / base.rate), fmt_ratio)
                );
            }
            let _ = write!(
                md,
                " {} | {} | {} | {} | {} | {} | {:.2} | {:.0}% |",
                fmt_us(fig.p50_us),
                fmt_us(fig.p99_us),
                fmt_opt(fig.server_cores, |c| format!("{c:.2}")),
                fmt_opt(fig.server_ns, |ns| format!("{ns:.0}")),
                fmt_opt(fig.core_busy, |b| format!("{:.0}%", b * 100.0)),
                fmt_opt(fig.core_ns, |ns| format!("{ns:.0}")),
                fig.loadgen_cores,
                fig.loadgen_busy * 100.0,
            );
            if suite == Suite::Cluster {
                let _ = write!(md, " {} |", fmt_opt(fig.redis_cores, |c| format!("{c:.2}")));
            }
            if compression {
                let _ = write!(
                    md,
                    " {} | {} | {} | {} |",
                    fmt_opt(fig.wire_bytes, |b| format!("{b:.1}")),
                    fmt_opt(fig.plain_bytes, |b| format!("{b:.1}")),
                    fmt_opt(wire_share(&fig), |pct| format!("{pct:.0}%")),
                    fmt_opt(fig.rss_mib, |m| format!("{m:.0}")),
                );
            }
            let _ = writeln!(md, " {} |", flags(row, &fig, fields).join("; "));
        }
        md.push('\n');
        if suite == Suite::Broadcast {
            md.push_str(&broadcast_targets(&suite_rows));
        }
        if compression {
            md.push_str(&compression_summary(&suite_rows));
        }
    }
    md
}

/// The figures of the run of the server with `baseline` that matches `n`, `message` and `round`.
fn baseline_of(
    rows: &[&Row],
    baseline: &str,
    n: usize,
    message: Option<&str>,
    round: usize,
) -> Option<Figures> {
    rows.iter()
        .find(|r| {
            r.server.baseline == Some(baseline)
                && r.connections == n
                && r.message == message
                && r.round == round
        })
        .and_then(|r| r.result.as_ref().ok())
        .map(Figures::of)
}

/// Bytes on the wire as a share of the uncompressed frames, in percent.
fn wire_share(fig: &Figures) -> Option<f64> {
    fig.wire_bytes
        .zip(fig.plain_bytes)
        .map(|(wire, plain)| 100.0 * wire / plain)
}

/// The median, `None` for no values.
fn median(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    let mut values: Vec<f64> = values.into_iter().filter(|v| v.is_finite()).collect();
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    match values.len() {
        0 => None,
        n if n % 2 == 1 => Some(values[mid]),
        _ => Some((values[mid - 1] + values[mid]) / 2.0),
    }
}

/// The successful runs of server `name` with `message`, by round.
fn runs_of(rows: &[&Row], message: Option<&str>, name: &str) -> Vec<(usize, Figures)> {
    rows.iter()
        .filter(|r| r.message == message && r.server.name == name)
        .filter_map(|r| Some((r.round, Figures::of(r.result.as_ref().ok()?))))
        .collect()
}

/// `metric` of server `num` over that of server `den`, round by round (rounds where both ran).
fn ratios(
    rows: &[&Row],
    message: Option<&str>,
    (num, den): (&str, &str),
    metric: fn(&Figures) -> Option<f64>,
) -> Vec<f64> {
    let dens = runs_of(rows, message, den);
    runs_of(rows, message, num)
        .iter()
        .filter_map(|(round, fig)| {
            let (_, base) = dens.iter().find(|(r, _)| r == round)?;
            Some(metric(fig)? / metric(base)?)
        })
        .collect()
}

/// The compression suite over its rounds: medians per message and server, and the ratios it is
/// about (CPU per delivery of compressing per receiver against once, bytes on the wire).
fn compression_summary(rows: &[&Row]) -> String {
    let rounds = rows.iter().map(|r| r.round + 1).max().unwrap_or(0);
    let mut md = format!("### Compression: medians of {rounds} round(s)\n\n");
    md.push_str(
        "| message | server | runs | deliveries/s | server ns/delivery | core ns/delivery | \
         × CPU of compress-once | wire B | plain B | wire/plain | server RSS (MiB) | loadgen CPU |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let mut messages: Vec<Option<&str>> = Vec::new();
    for row in rows {
        if !messages.contains(&row.message) {
            messages.push(row.message);
        }
    }
    let mut notes = String::new();
    for &message in &messages {
        let label = message.unwrap_or("-");
        for name in [NO_COMPRESSION, COMPRESS_ONCE, PER_RECEIVER] {
            let figs: Vec<Figures> = runs_of(rows, message, name)
                .into_iter()
                .map(|(_, fig)| fig)
                .collect();
            let med = |metric: fn(&Figures) -> Option<f64>| median(figs.iter().filter_map(metric));
            let cpu_x = median(ratios(rows, message, (name, COMPRESS_ONCE), |f| {
                f.server_ns
            }));
            let _ = writeln!(
                md,
                "| {label} | {name} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                figs.len(),
                fmt_opt(med(|f| Some(f.rate)), fmt_rate),
                fmt_opt(med(|f| f.server_ns), |ns| format!("{ns:.0}")),
                fmt_opt(med(|f| f.core_ns), |ns| format!("{ns:.0}")),
                fmt_opt(cpu_x, fmt_ratio),
                fmt_opt(med(|f| f.wire_bytes), |b| format!("{b:.1}")),
                fmt_opt(med(|f| f.plain_bytes), |b| format!("{b:.1}")),
                fmt_opt(med(wire_share), |pct| format!("{pct:.0}%")),
                fmt_opt(med(|f| f.rss_mib), |m| format!("{m:.0}")),
                fmt_opt(med(|f| Some(f.loadgen_cores)), |c| format!("{c:.2}")),
            );
        }
        let per_round = |pair, metric: fn(&Figures) -> Option<f64>| {
            let values = ratios(rows, message, pair, metric);
            let each: Vec<String> = values.iter().map(|&x| fmt_ratio(x)).collect();
            format!(
                "{} (rounds: {})",
                fmt_opt(median(values), fmt_ratio),
                each.join(", ")
            )
        };
        let share = |name| {
            let figs = runs_of(rows, message, name);
            fmt_opt(
                median(figs.iter().filter_map(|(_, f)| wire_share(f))),
                |p| format!("{p:.0}%"),
            )
        };
        let _ = writeln!(
            notes,
            "- {label}: compress per receiver costs {} the server CPU per delivery of compress-once \
             and delivers {} as many per second; compress-once costs {} the CPU of no compression. \
             On the wire: compress-once {} of the plain frame bytes, compress per receiver {}.",
            per_round((PER_RECEIVER, COMPRESS_ONCE), |f| f.server_ns),
            per_round((PER_RECEIVER, COMPRESS_ONCE), |f| Some(f.rate)),
            per_round((COMPRESS_ONCE, NO_COMPRESSION), |f| f.server_ns),
            share(COMPRESS_ONCE),
            share(PER_RECEIVER),
        );
    }
    let _ = writeln!(md, "\n{notes}");
    md
}

/// Issue 5's targets for Verb's broadcast: ≥ 3× naive and ≥ 1.5× tokio-broadcast deliveries/s, p99 no
/// worse than either; server CPU per delivery compared the same way.
fn broadcast_targets(rows: &[&Row]) -> String {
    let mut md = String::from("### Targets (Verb vs the axum peers)\n\n");
    let mut sizes: Vec<usize> = rows.iter().map(|r| r.connections).collect();
    sizes.dedup();
    for n in sizes {
        let verb = rows
            .iter()
            .find(|r| r.server.baseline.is_none() && r.connections == n)
            .and_then(|r| r.result.as_ref().ok())
            .map(Figures::of);
        let (Some(verb), Some(naive), Some(bcast)) = (
            verb,
            baseline_of(rows, "naive", n, None, 0),
            baseline_of(rows, "tokio-broadcast", n, None, 0),
        ) else {
            let _ = writeln!(md, "- N = {n}: a run failed, nothing to compare\n");
            continue;
        };
        let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
        let x_naive = verb.rate / naive.rate;
        let x_bcast = verb.rate / bcast.rate;
        let _ = writeln!(
            md,
            "- N = {n}: deliveries/s {x_naive:.2}× naive (target ≥ 3: {}), {x_bcast:.2}× tokio-broadcast \
             (target ≥ 1.5: {}); p99 {} vs {} and {} ({}); server CPU per delivery {} vs {} and {} ns \
             (core, softirq included: {} vs {} and {} ns)",
            verdict(x_naive >= 3.0),
            verdict(x_bcast >= 1.5),
            fmt_us(verb.p99_us),
            fmt_us(naive.p99_us),
            fmt_us(bcast.p99_us),
            verdict(verb.p99_us <= naive.p99_us && verb.p99_us <= bcast.p99_us),
            fmt_opt(verb.server_ns, |ns| format!("{ns:.0}")),
            fmt_opt(naive.server_ns, |ns| format!("{ns:.0}")),
            fmt_opt(bcast.server_ns, |ns| format!("{ns:.0}")),
            fmt_opt(verb.core_ns, |ns| format!("{ns:.0}")),
            fmt_opt(naive.core_ns, |ns| format!("{ns:.0}")),
            fmt_opt(bcast.core_ns, |ns| format!("{ns:.0}")),
        );
    }
    md.push('\n');
    md
}

/// Cores, CPU model, kernel and commit, for the record.
fn machine_line(pinned: bool) -> String {
    let cores = thread::available_parallelism().map_or(1, |n| n.get());
    let model = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|k| k.trim().to_owned())
        .unwrap_or_default();
    let commit = Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .current_dir(root())
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned());
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .unwrap_or_default();
    let pinning = if pinned {
        format!("server on CPU {SERVER_CPU}, load generator on CPU {LOADGEN_CPU}")
    } else {
        "not pinned (fewer than 2 cores)".to_owned()
    };
    format!("{date}; {cores} cores ({model}), Linux {kernel}; commit {commit}; {pinning}.")
}

fn render_json(rows: &[Row], opts: &Options) -> String {
    let mut json = format!(
        "{{\n  \"warmup_s\": {},\n  \"duration_s\": {},\n  \"runs\": [",
        opts.warmup_s, opts.duration_s
    );
    for (i, row) in rows.iter().enumerate() {
        let sep = if i == 0 { "" } else { "," };
        let _ = write!(
            json,
            "{sep}\n    {{\"suite\": {}, \"server\": {}, \"connections\": {}",
            json_str(row.server.suite.name()),
            json_str(row.server.name),
            row.connections
        );
        if let Some(message) = row.message {
            let _ = write!(
                json,
                ", \"message\": {}, \"round\": {}",
                json_str(message),
                row.round + 1
            );
        }
        match &row.result {
            Ok(fields) => {
                let mut keys: Vec<&String> = fields.keys().collect();
                keys.sort();
                for key in keys {
                    let value = &fields[key];
                    let value = if value.parse::<f64>().is_ok_and(f64::is_finite) {
                        value.clone()
                    } else {
                        json_str(value)
                    };
                    let _ = write!(json, ", {}: {value}", json_str(key));
                }
                let fig = Figures::of(fields);
                let _ = write!(
                    json,
                    ", \"flags\": [{}]",
                    flags(row, &fig, fields)
                        .iter()
                        .map(|f| json_str(f))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            Err(err) => {
                let _ = write!(json, ", \"error\": {}", json_str(err));
            }
        }
        json.push('}');
    }
    let _ = write!(
        json,
        "\n  ],\n  \"window_note\": {}\n}}\n",
        json_str("deliveries and CPU inside the measured window")
    );
    json
}

fn json_str(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_listening_address() {
        assert_eq!(
            listening_addr(
                "2026-01-01T00:00:00Z  INFO verb_core::server: listening on http://127.0.0.1:4123"
            ),
            Some("127.0.0.1:4123".to_owned())
        );
        assert_eq!(
            listening_addr("listening on http://[::1]:80 now"),
            Some("[::1]:80".to_owned())
        );
        assert_eq!(listening_addr("starting"), None);
    }

    #[test]
    fn parses_flags() {
        let cluster = Options::parse(&["--only".to_owned(), "cluster".to_owned()]).expect("valid");
        assert_eq!(cluster.suites, vec![Suite::Cluster]);
        let default = Options::parse(&[]).expect("valid");
        assert_eq!(
            default.suites,
            vec![
                Suite::Broadcast,
                Suite::Echo,
                Suite::Cluster,
                Suite::Compression
            ]
        );
        assert_eq!(Suite::Compression.rounds(&default), 3);
        let args: Vec<String> = ["--quick", "--only", "compression"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let quick = Options::parse(&args).expect("valid flags");
        assert_eq!(quick.suites, vec![Suite::Compression]);
        assert_eq!(Suite::Compression.rounds(&quick), 1);
        assert_eq!(Suite::Compression.sizes(true), vec![1_000]);
        let args: Vec<String> = ["--rounds", "5"].iter().map(|s| s.to_string()).collect();
        let five = Options::parse(&args).expect("valid flags");
        assert_eq!(
            (
                Suite::Compression.rounds(&five),
                Suite::Broadcast.rounds(&five)
            ),
            (5, 1)
        );
        assert!(!default.only && cluster.only);
        let args: Vec<String> = ["--quick", "--only", "broadcast", "--duration-s", "3"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let opts = Options::parse(&args).expect("valid flags");
        assert!(opts.quick);
        assert_eq!(opts.suites, vec![Suite::Broadcast]);
        assert_eq!((opts.warmup_s, opts.duration_s), (1.0, 3.0));
        assert!(Options::parse(&["--only".to_owned(), "nope".to_owned()]).is_err());
        assert!(Options::parse(&["--bogus".to_owned()]).is_err());
    }

    /// A compression-suite row with these figures.
    fn row(name: &'static str, message: &'static str, round: usize, fields: &[(&str, f64)]) -> Row {
        let server = servers(Path::new("v"), Path::new("b"))
            .into_iter()
            .find(|s| s.name == name)
            .expect("a compression server");
        Row {
            server,
            connections: 1000,
            message: Some(message),
            round,
            result: Ok(fields
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.to_string()))
                .collect()),
            notes: Vec::new(),
            noise: 0.0,
        }
    }

    #[test]
    fn summarizes_compression_rounds() {
        let run = |name, round, rate: f64, cpu_ns: f64, wire: f64, negotiated: (&str, f64)| {
            let deliveries = rate * 10.0;
            row(
                name,
                "feed",
                round,
                &[
                    ("window_s", 10.0),
                    ("deliveries", deliveries),
                    ("deliveries_per_s", rate),
                    ("server_cpu_ns", cpu_ns * deliveries),
                    ("wire_bytes", wire * deliveries),
                    ("plain_bytes", 140.0 * deliveries),
                    (
                        "compressed",
                        if negotiated.0 == "off" {
                            0.0
                        } else {
                            deliveries
                        },
                    ),
                    (negotiated.0, negotiated.1),
                ],
            )
        };
        let rows = [
            run(
                NO_COMPRESSION,
                0,
                1.6e6,
                600.0,
                140.0,
                ("deflate_off", 1001.0),
            ),
            run(
                COMPRESS_ONCE,
                0,
                1.4e6,
                700.0,
                119.0,
                ("deflate_shared", 1001.0),
            ),
            run(
                PER_RECEIVER,
                0,
                5e4,
                21_000.0,
                21.0,
                ("deflate_takeover", 1001.0),
            ),
            run(
                NO_COMPRESSION,
                1,
                1.5e6,
                650.0,
                140.0,
                ("deflate_off", 1001.0),
            ),
            run(
                COMPRESS_ONCE,
                1,
                1.3e6,
                750.0,
                119.0,
                ("deflate_shared", 1000.0),
            ),
            run(
                PER_RECEIVER,
                1,
                4e4,
                22_500.0,
                21.0,
                ("deflate_takeover", 1001.0),
            ),
        ];
        let refs: Vec<&Row> = rows.iter().collect();
        let md = compression_summary(&refs);
        assert!(md.contains("medians of 2 round(s)"), "{md}");
        // 21000/700 = 30 and 22500/750 = 30.
        assert!(
            md.contains("costs 30.00× (rounds: 30.00×, 30.00×) the server CPU"),
            "{md}"
        );
        assert!(
            md.contains("compress-once 85% of the plain frame bytes"),
            "{md}"
        );
        assert!(
            md.contains("| feed | verb, compress-once | 2 | 1.35 M | 725 |"),
            "{md}"
        );
        assert_eq!(median([3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median([]), None);

        // A handshake that did not settle what the server was asked for is flagged.
        let fields = rows[4].result.as_ref().expect("fields");
        let flagged = flags(&rows[4], &Figures::of(fields), fields).join("; ");
        assert!(
            flagged.contains("HANDSHAKES settled off/shared/takeover 0/1000/0"),
            "{flagged}"
        );
        let fields = rows[2].result.as_ref().expect("fields");
        assert!(flags(&rows[2], &Figures::of(fields), fields).is_empty());
    }

    #[test]
    fn escapes_json() {
        assert_eq!(json_str("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
    }
}
