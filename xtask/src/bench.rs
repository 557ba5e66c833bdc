//! `cargo xtask bench`: Verb against its peers of `bench/` (axum, fastwebsockets, Bun), over real
//! sockets on loopback, in one run.
//!
//! 1. Builds `bench/` (the Rust peers and the `bench-load` load generator, its own workspace and
//!    target directory `bench/target`) and Verb's examples, all in release (`--smoke`: dev), and
//!    installs the pinned Bun with `npm ci --prefix bench/bun` when it is absent (without npm, the
//!    Bun peers are skipped with a warning).
//! 2. For each suite, scenario, round and server: starts the server pinned to CPU 0 (`taskset`), waits
//!    for its `listening on http://HOST:PORT` line, runs `bench-load` pinned to CPU 1 with the server's
//!    pid (it samples the server's CPU time from `/proc/PID/stat`, its memory from
//!    `/proc/PID/status` and CPU 0's from `/proc/stat` at the edges of the measured window), then
//!    stops the server with SIGTERM. The servers take turns within a round, rounds follow one another.
//! 3. Prints per-suite medians over the rounds (with the spread and each server's ratio to Verb's),
//!    every run, and issue 9's targets; writes them to `target/bench/results.md` (and
//!    `results.json`); server logs go to `target/bench/logs/`.
//!
//! Suites: `broadcast` (one publisher, N subscribers in one room: naive axum, axum with
//! `tokio::sync::broadcast`, fastwebsockets with the same, Bun's topics, Verb's rooms), `echo` (64 B ×
//! 100 connections × 16 in flight and 16 KiB × 10 × 4: axum, fastwebsockets, Bun, Verb), `idle`
//! (10,000 silent WebSockets against the echo servers: server RSS per connection) and `http` (`GET /health`
//! over keep-alive HTTP/1.1: axum's hello world, Bun's, Verb's `http` example). New peers are new
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
//! message, one per receiver), with `live-feed`-shaped JSON (one tick, and a batch of 16); besides
//! CPU it reports the bytes on the wire per delivery and the server's RSS.
//!
//! `--smoke` runs every suite and server once, tiny and brief, and fails unless each started and
//! delivered: a check for CI, not a measurement.

use std::collections::HashMap;
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
/// The note on a run kept out of several attempts.
const RETRIED: &str = "least disturbed of";

pub(crate) const HELP: &str =
    "  bench [--quick | --smoke] [--only SUITE[,SUITE...]] [--duration-s N] [--warmup-s N]
        [--in-flight K] [--connections N,M] [--quiet-wait-s N] [--retries N] [--rounds N]
        Verb against axum, fastwebsockets and Bun (installed with npm when absent), servers
        pinned to CPU 0 and the load generator to CPU 1, --rounds interleaved rounds (default
        3, --quick and --smoke 1); suites: broadcast (1 publisher, 1,000 and 10,000
        subscribers), echo (64 B x 100 x 16, 16 KiB x 10 x 4), idle (10,000 WebSockets: RSS
        per connection), http (GET /health), cluster (fan-out across two nodes through Redis; needs
        redis-server, skipped without it), compression (permessage-deflate); results in
        target/bench/results.md; --smoke: every server once, tiny, dev builds, fails unless
        each started and delivered (for CI)";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Suite {
    Broadcast,
    Echo,
    /// Idle WebSockets held open against the echo servers: server memory per connection.
    Idle,
    /// `GET /health` requests per second over keep-alive HTTP/1.1.
    Http,
    /// Cross-node fan-out through Redis (Verb's `cluster` example).
    Cluster,
    /// permessage-deflate on a broadcast (`plain-broadcast --compression ...`).
    Compression,
}

/// How big a run: the full benchmark, `--quick`, or `--smoke` (every server briefly, for CI).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Size {
    Full,
    Quick,
    Smoke,
}

/// What one run of a server is asked to carry (one row of a table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Scenario {
    /// Subscribers (broadcast), connections (echo, idle, HTTP).
    connections: usize,
    /// Messages in flight: for the publisher (broadcast) or per connection (echo, HTTP).
    in_flight: usize,
    /// Payload bytes of the load generator's binary messages.
    payload: usize,
    /// The load generator's `--message`, if not its default.
    message: Option<&'static str>,
}

impl Suite {
    const ALL: [Suite; 6] = [
        Self::Broadcast,
        Self::Echo,
        Self::Idle,
        Self::Http,
        Self::Cluster,
        Self::Compression,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::Broadcast => "broadcast",
            Self::Echo => "echo",
            Self::Idle => "idle",
            Self::Http => "http",
            Self::Cluster => "cluster",
            Self::Compression => "compression",
        }
    }

    /// The runs of each server, before `--connections` and `--in-flight` override theirs.
    fn scenarios(self, size: Size) -> Vec<Scenario> {
        let at = |connections, in_flight, payload| Scenario {
            connections,
            in_flight,
            payload,
            message: None,
        };
        let full = size == Size::Full;
        match self {
            Self::Broadcast if full => vec![at(1_000, 16, 64), at(10_000, 16, 64)],
            Self::Broadcast => vec![at(100, 16, 64)],
            // Issue 9's two echo loads: many small messages, and a few large ones.
            Self::Echo => vec![at(100, 16, 64), at(10, 4, 16 * 1024)],
            Self::Idle => vec![at(
                match size {
                    Size::Full => 10_000,
                    Size::Quick => 1_000,
                    Size::Smoke => 100,
                },
                1,
                64,
            )],
            Self::Http => vec![at(if size == Size::Smoke { 10 } else { 100 }, 1, 64)],
            Self::Cluster => vec![at(if full { 1_000 } else { 100 }, 16, 64)],
            // The point is a room of 1,000 compressing receivers, --quick included. The smoke round
            // only checks that every server delivers: in a dev build, 100 receivers compressing
            // each of 16 batches in flight took 0.8 s a wave, longer than the smoke's window on a
            // loaded machine (0 deliveries); 10 receivers and 4 in flight take milliseconds.
            Self::Compression => ["feed", "feed-batch"]
                .into_iter()
                .map(|message| Scenario {
                    message: Some(message),
                    ..if size == Size::Smoke {
                        at(10, 4, 64)
                    } else {
                        at(1_000, 16, 64)
                    }
                })
                .collect(),
        }
    }

    /// Rounds of runs, each running every server once, interleaved so that a slow spell of the
    /// machine does not land on one server only (default 3; 1 with `--quick` or `--smoke`).
    fn rounds(opts: &Options) -> usize {
        opts.rounds
            .unwrap_or(if opts.size == Size::Full { 3 } else { 1 })
    }

    /// The example of Verb's that the suite runs.
    fn example(self) -> &'static str {
        match self {
            Self::Broadcast | Self::Compression => "plain-broadcast",
            Self::Echo | Self::Idle => "plain-echo",
            Self::Http => "http",
            Self::Cluster => "cluster",
        }
    }

    /// The load generator's `--mode`.
    fn mode(self) -> &'static str {
        match self {
            Self::Broadcast | Self::Compression => "broadcast",
            Self::Echo => "echo",
            Self::Idle => "idle",
            Self::Http => "http",
            Self::Cluster => "chat",
        }
    }

    /// The server every other is compared with in the suite's summary (× columns).
    fn reference(self) -> &'static str {
        match self {
            Self::Broadcast => "verb plain-broadcast",
            Self::Echo | Self::Idle => "verb plain-echo",
            Self::Http => "verb http",
            Self::Cluster => "verb cluster, 1 node",
            Self::Compression => COMPRESS_ONCE,
        }
    }
}

#[derive(Debug, Clone)]
struct Options {
    size: Size,
    /// Whether `--only` chose the suites (else the cluster suite is skipped without `redis-server`).
    only: bool,
    suites: Vec<Suite>,
    warmup_s: f64,
    duration_s: f64,
    in_flight: Option<usize>,
    sizes: Option<Vec<usize>>,
    /// How long to wait for other processes to go quiet before each run (`None`: do not look).
    quiet_wait: Option<Duration>,
    /// How many times a disturbed run is repeated.
    retries: usize,
    /// Rounds of every suite (default 3, `--quick` and `--smoke` 1).
    rounds: Option<usize>,
}

impl Options {
    fn parse(args: &[String]) -> Result<Self> {
        let mut opts = Options {
            size: Size::Full,
            only: false,
            suites: Suite::ALL.to_vec(),
            warmup_s: 2.0,
            duration_s: 10.0,
            in_flight: None,
            sizes: None,
            quiet_wait: Some(Duration::from_secs(300)),
            retries: 2,
            rounds: None,
        };
        let (mut warmup, mut duration, mut quiet_wait, mut retries) = (None, None, None, None);
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let mut value = |name: &str| {
                it.next()
                    .cloned()
                    .with_context(|| format!("{name} needs a value"))
            };
            match arg.as_str() {
                "--quick" => opts.size = Size::Quick,
                "--smoke" => opts.size = Size::Smoke,
                "--only" => {
                    opts.only = true;
                    opts.suites = value("--only")?
                        .split(',')
                        .map(|name| {
                            Suite::ALL
                                .into_iter()
                                .find(|suite| suite.name() == name.trim())
                                .with_context(|| {
                                    let names: Vec<&str> =
                                        Suite::ALL.iter().map(|s| s.name()).collect();
                                    format!("unknown suite `{name}` ({})", names.join(", "))
                                })
                        })
                        .collect::<Result<_>>()?;
                }
                "--duration-s" => duration = Some(number(&value("--duration-s")?)?),
                "--warmup-s" => warmup = Some(number(&value("--warmup-s")?)?),
                "--in-flight" => opts.in_flight = Some(number(&value("--in-flight")?)?),
                "--quiet-wait-s" => {
                    quiet_wait = Some(Duration::from_secs(number(&value("--quiet-wait-s")?)?))
                }
                "--retries" => retries = Some(number(&value("--retries")?)?),
                "--rounds" => opts.rounds = Some(number::<usize>(&value("--rounds")?)?.max(1)),
                "--connections" => {
                    let list = value("--connections")?;
                    opts.sizes = Some(list.split(',').map(number).collect::<Result<_>>()?);
                }
                other => bail!("unknown flag `{other}`\n\nusage: cargo xtask bench ...\n{HELP}"),
            }
        }
        match opts.size {
            Size::Full => {}
            Size::Quick => (opts.warmup_s, opts.duration_s) = (1.0, 2.0),
            // Every server once, briefly, on a machine that runs nothing else (CI): no waiting.
            Size::Smoke => {
                (opts.warmup_s, opts.duration_s) = (0.3, 0.7);
                (opts.quiet_wait, opts.retries) = (None, 0);
            }
        }
        opts.warmup_s = warmup.unwrap_or(opts.warmup_s);
        opts.duration_s = duration.unwrap_or(opts.duration_s);
        opts.quiet_wait = quiet_wait.or(opts.quiet_wait);
        opts.retries = retries.unwrap_or(opts.retries);
        Ok(opts)
    }

    /// The cargo profile everything is built with: `--smoke` only checks that every server serves,
    /// so it saves the optimizing builds.
    fn profile(&self) -> (&'static str, &'static str) {
        match self.size {
            Size::Smoke => ("dev", "debug"),
            _ => ("release", "release"),
        }
    }

    /// The scenarios of `suite` this invocation runs: its own, with `--connections` and
    /// `--in-flight` applied.
    fn scenarios(&self, suite: Suite) -> Vec<Scenario> {
        let mut out: Vec<Scenario> = Vec::new();
        for base in suite.scenarios(self.size) {
            let sizes = self.sizes.clone().unwrap_or_else(|| vec![base.connections]);
            for connections in sizes {
                let scenario = Scenario {
                    connections,
                    in_flight: self.in_flight.unwrap_or(base.in_flight),
                    ..base
                };
                if !out.contains(&scenario) {
                    out.push(scenario);
                }
            }
        }
        out
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
    /// A script the binary runs (Bun's servers), given before the flags.
    script: Option<PathBuf>,
    /// Baselines are what the other rows are compared with.
    baseline: Option<&'static str>,
    /// Cluster suite: how many nodes (each a process of `binary`) share one Redis.
    nodes: usize,
    /// Arguments after `--host` and `--port`.
    args: &'static [&'static str],
    /// Compression suite: what every connection's handshake must settle (`off`, `shared` or
    /// `takeover`, as the load generator's `deflate_*` counts name them).
    deflate: Option<&'static str>,
    /// The load generator opens its WebSockets over HTTP/2 (RFC 8441, h2c) instead of HTTP/1.1.
    http2: bool,
}

/// The Bun release the Bun peers run, pinned in `bench/bun/package.json` and its lockfile.
const BUN_VERSION: &str = "1.4.5";

/// Where `npm ci --prefix bench/bun` puts the Bun binary.
fn bun_binary(bun_dir: &Path) -> PathBuf {
    bun_dir.join("node_modules/@oven/bun-linux-x64/bin/bun")
}

/// Every server, in the order they run (baselines first). The idle suite holds connections open
/// against the echo servers.
fn servers(verb_dir: &Path, bench_dir: &Path, bun_dir: &Path) -> Vec<Server> {
    let peer = |name: &'static str, suite, baseline| Server {
        name,
        suite,
        binary: bench_dir.join(name),
        script: None,
        baseline,
        nodes: 1,
        args: &[],
        deflate: None,
        http2: false,
    };
    let bun = |name: &'static str, suite, script: &str| Server {
        binary: bun_binary(bun_dir),
        script: Some(bun_dir.join(script)),
        ..peer(name, suite, None)
    };
    let verb = |name: &'static str, suite: Suite, baseline| Server {
        binary: verb_dir.join(suite.example()),
        ..peer(name, suite, baseline)
    };
    let compression = |name, baseline, args, deflate| Server {
        args,
        deflate: Some(deflate),
        ..verb(name, Suite::Compression, baseline)
    };
    let mut all = vec![
        peer("axum-naive-broadcast", Suite::Broadcast, Some("naive")),
        peer("axum-broadcast", Suite::Broadcast, Some("tokio-broadcast")),
        peer("fastwebsockets-broadcast", Suite::Broadcast, None),
        bun("bun broadcast", Suite::Broadcast, "broadcast.ts"),
        verb("verb plain-broadcast", Suite::Broadcast, None),
        Server {
            args: &["--in-axum"],
            ..verb("verb plain-broadcast in axum", Suite::Broadcast, None)
        },
    ];
    for suite in [Suite::Echo, Suite::Idle] {
        all.extend([
            peer("axum-echo", suite, Some("axum")),
            peer("fastwebsockets-echo", suite, None),
            bun("bun echo", suite, "echo.ts"),
            verb("verb plain-echo", suite, None),
            // The same endpoint as a tower service under axum: the engine over hyper's upgrade.
            Server {
                args: &["--in-axum"],
                ..verb("verb plain-echo in axum", suite, None)
            },
        ]);
        // The same server, its WebSockets over HTTP/2 streams (RFC 8441, h2c).
        if suite == Suite::Echo {
            all.push(Server {
                http2: true,
                ..verb("verb plain-echo over h2c", suite, None)
            });
        }
    }
    all.extend([
        peer("axum-hello", Suite::Http, Some("axum")),
        bun("bun http", Suite::Http, "http.ts"),
        verb("verb http", Suite::Http, None),
        // HTTP/2 with prior knowledge (h2c): axum's router under hyper's HTTP/2 builder, and Verb's
        // `http` example on its usual port.
        Server {
            http2: true,
            ..peer("axum-hello-h2", Suite::Http, None)
        },
        Server {
            http2: true,
            ..verb("verb http over h2c", Suite::Http, None)
        },
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
    ]);
    all
}

/// The compression suite's servers.
const NO_COMPRESSION: &str = "verb, no compression";
const COMPRESS_ONCE: &str = "verb, compress-once";
const PER_RECEIVER: &str = "verb, compress per receiver";

/// One run to make of a server.
#[derive(Debug, Clone, Copy)]
struct Case {
    scenario: Scenario,
    /// Which round (from 0).
    round: usize,
}

/// What one run gave: the load generator's `RESULT` fields, or why there are none.
#[derive(Debug, Clone)]
struct Row {
    server: Server,
    scenario: Scenario,
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
    let target = crate::target_dir();
    let bench_target = root.join("bench").join("target");
    let out_dir = match opts.size {
        Size::Smoke => target.join("bench").join("smoke"),
        _ => target.join("bench"),
    };
    let log_dir = out_dir.join("logs");
    fs::create_dir_all(&log_dir).with_context(|| format!("cannot create {}", log_dir.display()))?;

    let (profile, profile_dir) = opts.profile();
    let bench_target_arg = bench_target.to_string_lossy().into_owned();
    step(
        "build bench/",
        cargo(&[
            "build",
            "--profile",
            profile,
            "--locked",
            "--manifest-path",
            "bench/Cargo.toml",
            "--target-dir",
            &bench_target_arg,
        ]),
    )?;
    let mut examples = vec!["build", "--profile", profile, "-p", "examples"];
    for suite in &opts.suites {
        if !examples.contains(&suite.example()) {
            examples.extend(["--example", suite.example()]);
        }
    }
    step("build Verb's examples", cargo(&examples))?;

    let bun_dir = root.join("bench").join("bun");
    let mut all = servers(
        &target.join(profile_dir).join("examples"),
        &bench_target.join(profile_dir),
        &bun_dir,
    );
    let wants_bun = all
        .iter()
        .any(|s| s.script.is_some() && opts.suites.contains(&s.suite));
    if wants_bun && !ensure_bun(&bun_dir) {
        all.retain(|server| server.script.is_none());
    }
    let loadgen = bench_target.join(profile_dir).join("bench-load");
    let pinned = pinning()?;

    let ctx = Ctx {
        opts: &opts,
        loadgen: &loadgen,
        log_dir: &log_dir,
        pinned,
    };
    let rounds = Suite::rounds(&opts);
    let mut rows = Vec::new();
    for &suite in &opts.suites {
        for scenario in opts.scenarios(suite) {
            for round in 0..rounds {
                for server in all.iter().filter(|s| s.suite == suite) {
                    let what = format!(
                        "{} {}{}: {}",
                        suite.name(),
                        describe(scenario),
                        if rounds > 1 {
                            format!(", round {} of {rounds}", round + 1)
                        } else {
                            String::new()
                        },
                        server.name
                    );
                    eprintln!("\n==> {what}");
                    let row = run_one(&ctx, server, Case { scenario, round });
                    if let Err(err) = &row.result {
                        eprintln!("==> {what}: FAILED: {err}");
                    }
                    rows.push(row);
                    // Let the sockets of the last run wind down before the next server starts.
                    thread::sleep(Duration::from_millis(if opts.size == Size::Smoke {
                        100
                    } else {
                        500
                    }));
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
        .filter_map(|row| {
            let problem = match &row.result {
                Err(_) => Some("failed".to_owned()),
                // A smoke run asks nothing more of a server than that it served.
                Ok(fields) if opts.size == Size::Smoke => smoke_problem(row, fields),
                Ok(_) => None,
            }?;
            Some(format!(
                "{} ({} {}): {problem}",
                row.server.name,
                row.server.suite.name(),
                describe(row.scenario)
            ))
        })
        .collect();
    if !failed.is_empty() {
        bail!("{} run(s) failed:\n  {}", failed.len(), failed.join("\n  "));
    }
    Ok(())
}

/// `N×K×B` (and the message) of a scenario, for progress lines and errors.
fn describe(scenario: Scenario) -> String {
    let Scenario {
        connections,
        in_flight,
        payload,
        message,
    } = scenario;
    match message {
        Some(message) => format!("x{connections}, {message}"),
        None => format!("x{connections} K={in_flight} {payload} B"),
    }
}

/// Why a smoke run does not show that its server served: connections refused or closed, or nothing
/// delivered (idle: not every connection echoed).
fn smoke_problem(row: &Row, fields: &Fields) -> Option<String> {
    let count = |key: &str| field(fields, key).unwrap_or(0.0);
    let wanted = match row.server.suite {
        Suite::Idle => row.scenario.connections as f64,
        _ => 1.0,
    };
    if count("failed") > 0.0 || count("closed") > 0.0 {
        Some(format!(
            "{} connections failed, {} closed",
            count("failed"),
            count("closed")
        ))
    } else if count("deliveries") < wanted {
        Some(format!(
            "{} deliveries (wanted at least {wanted})",
            count("deliveries")
        ))
    } else {
        None
    }
}

/// Makes sure the pinned Bun is in `bench/bun/node_modules` (`npm ci` when it is not); `false`, with
/// a warning, when it cannot be had, and the Bun peers are left out.
fn ensure_bun(bun_dir: &Path) -> bool {
    let binary = bun_binary(bun_dir);
    let version = || {
        Command::new(&binary)
            .arg("--version")
            .output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    if version().as_deref() == Some(BUN_VERSION) {
        return true;
    }
    let npm = Command::new("npm")
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success());
    if !npm {
        eprintln!(
            "\n!!! `npm` not found: the Bun peers are SKIPPED (install Node.js and npm, e.g. \
             apt-get install npm, for `cargo xtask bench` to fetch Bun {BUN_VERSION})\n"
        );
        return false;
    }
    let mut install = Command::new("npm");
    install
        .args(["ci", "--no-audit", "--no-fund", "--prefix"])
        .arg(bun_dir);
    if let Err(err) = step(&format!("install Bun {BUN_VERSION} (npm ci)"), install) {
        eprintln!("\n!!! {err:#}: the Bun peers are SKIPPED\n");
        return false;
    }
    match version() {
        Some(v) if v == BUN_VERSION => true,
        other => {
            eprintln!(
                "\n!!! {} reports version {other:?}, not {BUN_VERSION}: the Bun peers are SKIPPED\n",
                binary.display()
            );
            false
        }
    }
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
            scenario: case.scenario,
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
        best.notes.push(format!("{RETRIED} {attempts} attempts"));
    }
    best
}

fn measure(ctx: &Ctx<'_>, server: &Server, case: Case, row: &mut Row) -> Result<Fields> {
    let Case { scenario, round } = case;
    let Scenario {
        connections: n,
        in_flight,
        payload,
        message,
    } = scenario;
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
        "{}-{}-{n}-k{in_flight}-{payload}b{}{}.log",
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
    let before = opts.quiet_wait.map_or(0.0, wait_for_quiet);
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
    let mut argv = vec![
        loadgen.to_string_lossy().into_owned(),
        "--addr".to_owned(),
        addrs.join(","),
        "--mode".to_owned(),
        server.suite.mode().to_owned(),
        "--connections".to_owned(),
        n.to_string(),
        "--in-flight".to_owned(),
        in_flight.to_string(),
        "--payload".to_owned(),
        payload.to_string(),
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
    if server.http2 {
        argv.push("--http2".to_owned());
    }
    if server.suite == Suite::Http {
        // Verb's `http` example answers `/health` with 15 bytes of JSON, its `/` with an HTML page;
        // the peers answer 13 bytes on both.
        argv.extend(["--path".to_owned(), "/health".to_owned()]);
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
        let mut argv = vec![server.binary.to_string_lossy().into_owned()];
        argv.extend(
            server
                .script
                .iter()
                .map(|script| script.to_string_lossy().into_owned()),
        );
        argv.extend([
            "--host".to_owned(),
            "127.0.0.1".to_owned(),
            "--port".to_owned(),
            "0".to_owned(),
        ]);
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

/// The figures of a row that the tables and the targets use.
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
    /// Idle suite: the server's RSS before the connections opened and after each echoed once.
    rss_before_mib: Option<f64>,
    rss_echoed_mib: Option<f64>,
    /// Idle suite: server memory per open connection, idle and after one echo each (bytes).
    idle_bytes: Option<f64>,
    echoed_bytes: Option<f64>,
    /// Seconds the load generator took to open its connections.
    setup_s: f64,
    deliveries: f64,
}

impl Figures {
    fn of(fields: &Fields) -> Self {
        let get = |key| field(fields, key).unwrap_or(f64::NAN);
        let window_s = get("window_s");
        let deliveries = get("deliveries");
        let server_cpu = field(fields, "server_cpu_ns");
        let mib = |key| field(fields, key).map(|kib| kib / 1024.0);
        let (before, open, echoed) = (
            field(fields, "rss_before_kib"),
            field(fields, "server_rss_kib"),
            field(fields, "rss_echoed_kib"),
        );
        let connections = get("connections").max(1.0);
        let per_conn = |after: Option<f64>| {
            before
                .zip(after)
                .map(|(b, a)| (a - b) * 1024.0 / connections)
        };
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
            rss_mib: mib("server_rss_kib"),
            rss_before_mib: mib("rss_before_kib"),
            rss_echoed_mib: mib("rss_echoed_kib"),
            idle_bytes: per_conn(open),
            echoed_bytes: per_conn(echoed),
            setup_s: get("setup_s"),
            deliveries,
        }
    }
}

fn flags(row: &Row, fig: &Figures, fields: &Fields) -> Vec<String> {
    let mut flags = row.notes.clone();
    // An idle server is meant to be idle.
    if row.server.suite != Suite::Idle {
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
        if settled(wanted) != (row.scenario.connections + 1) as f64 {
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

/// Whether a run failed or has flags (that it was the least disturbed of several attempts is no
/// flag by itself: that attempt's own flags tell whether it was disturbed).
fn flagged(row: &Row) -> bool {
    row.result.as_ref().map_or(true, |fields| {
        flags(row, &Figures::of(fields), fields)
            .iter()
            .any(|flag| !flag.starts_with(RETRIED))
    })
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

/// Nanoseconds as microseconds with two decimals.
fn fmt_ns_as_us(ns: f64) -> String {
    format!("{:.2}", ns / 1e3)
}

fn fmt_bytes(bytes: f64) -> String {
    format!("{bytes:.0}")
}

/// `N`, `K` and `B` of a scenario as table cells; HTTP runs show the response body's size as `B`
/// (from the fields of one of its runs).
fn scenario_cells(suite: Suite, scenario: Scenario, fields: Option<&Fields>) -> String {
    let body = fields
        .filter(|_| suite == Suite::Http)
        .and_then(|fields| field(fields, "payload"));
    format!(
        " {} | {} | {} |",
        scenario.connections,
        scenario.in_flight,
        body.map_or_else(|| scenario.payload.to_string(), |b| format!("{b:.0}"))
    )
}

/// What a suite's tables are about, after its name.
fn suite_heading(suite: Suite) -> &'static str {
    match suite {
        Suite::Broadcast => {
            "K messages of B bytes in flight, N subscribers + the publisher, every message to everyone"
        }
        Suite::Echo => "K messages of B bytes in flight per connection, N connections",
        Suite::Idle => {
            "N WebSockets held open with no traffic against the echo servers; server memory per \
             connection = (RSS with them open − RSS before) / N; then one echo each"
        }
        Suite::Http => {
            "`GET /health` over N keep-alive HTTP/1.1 connections, K requests in flight per connection; \
             B: response body bytes"
        }
        Suite::Cluster => {
            "JSON chat messages in flight; N subscribers spread evenly over the nodes, the publisher on \
             the first node and not a receiver; Redis and every node on CPU 0; server CPU: all \
             nodes summed"
        }
        Suite::Compression => {
            "`live-feed` JSON messages in flight, N subscribers + the publisher, every connection \
             offering permessage-deflate; wire and plain B: frame bytes per delivery as sent and as \
             an uncompressed frame; × columns compare runs of the same message and round"
        }
    }
}

fn render_markdown(rows: &[Row], opts: &Options, pinned: bool) -> String {
    let mut md = String::from("# Verb benchmark results\n\n");
    let _ = writeln!(md, "{}\n", machine_line(pinned));
    let _ = writeln!(
        md,
        "Warmup {} s, measured {} s per run, {} interleaved round(s). Deliveries (msgs/s): messages \
         received by clients (broadcast: every subscriber and the publisher; echo: every echo; HTTP: \
         every response; cluster: every subscriber, not the publisher). Server CPU: utime + stime of \
         the server process over the measured window (`/proc/PID/stat`); core busy and core \
         µs/msg: the server's core, softirq included (`/proc/stat`; on loopback the kernel runs the \
         clients' receive path there). Loadgen busy: share of the window the load generator's loop \
         had events to handle. Summaries give the median over the rounds, the spread (half the \
         range, as a share of the median) and × the reference server (the median of each round's \
         ratio).\n",
        opts.warmup_s,
        opts.duration_s,
        Suite::rounds(opts)
    );
    for &suite in &opts.suites {
        let suite_rows: Vec<&Row> = rows.iter().filter(|r| r.server.suite == suite).collect();
        if suite_rows.is_empty() {
            continue;
        }
        let _ = writeln!(md, "## {} ({})\n", suite.name(), suite_heading(suite));
        match suite {
            Suite::Idle => {
                md.push_str(&idle_summary(&suite_rows));
                md.push_str(&idle_runs(&suite_rows));
            }
            Suite::Compression => {
                md.push_str(&compression_summary(&suite_rows));
                md.push_str(&run_table(suite, &suite_rows));
            }
            _ => {
                md.push_str(&summary(suite, &suite_rows));
                md.push_str(&run_table(suite, &suite_rows));
            }
        }
        // A smoke run's tiny loads and debug builds say nothing about the targets.
        if suite == Suite::Broadcast && opts.size != Size::Smoke {
            md.push_str(&broadcast_targets(&suite_rows));
        }
    }
    if opts.size != Size::Smoke {
        md.push_str(&issue9_targets(rows));
    }
    md
}

/// Every run of a suite, in the order they ran.
fn run_table(suite: Suite, suite_rows: &[&Row]) -> String {
    let mut md = String::from("### Every run\n\n");
    let baselines: Vec<&'static str> =
        suite_rows
            .iter()
            .filter_map(|r| r.server.baseline)
            .fold(Vec::new(), |mut acc, b| {
                if !acc.contains(&b) {
                    acc.push(b);
                }
                acc
            });
    let compression = suite == Suite::Compression;
    let mut header = String::from("| server | N | K | B |");
    let mut rule = String::from("|---|---:|---:|---:|");
    if compression {
        header.push_str(" message |");
        rule.push_str("---|");
    }
    header.push_str(" round | deliveries/s |");
    rule.push_str("---:|---:|");
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
    for row in suite_rows {
        let Some(fields) = row_start(&mut md, row) else {
            continue;
        };
        let fig = Figures::of(fields);
        if compression {
            let _ = write!(md, " {} |", row.scenario.message.unwrap_or("-"));
        }
        let _ = write!(md, " {} | {} |", row.round + 1, fmt_rate(fig.rate));
        for b in &baselines {
            let base = baseline_of(suite_rows, b, row.scenario, row.round);
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
    md
}

/// Writes a run's first cells (server, N, K, B); its fields, or `None` after writing why it failed.
fn row_start<'a>(md: &mut String, row: &'a Row) -> Option<&'a Fields> {
    let _ = write!(
        md,
        "| {} |{}",
        row.server.name,
        scenario_cells(row.server.suite, row.scenario, row.result.as_ref().ok())
    );
    match &row.result {
        Ok(fields) => Some(fields),
        Err(err) => {
            let _ = writeln!(
                md,
                " FAILED: {} |",
                err.replace('|', "\\|").replace('\n', " ")
            );
            None
        }
    }
}

/// The scenarios and the servers of `rows`, each once, in the order they ran.
fn scenarios_and_servers(rows: &[&Row]) -> (Vec<Scenario>, Vec<&'static str>) {
    let (mut scenarios, mut names) = (Vec::new(), Vec::new());
    for row in rows {
        if !scenarios.contains(&row.scenario) {
            scenarios.push(row.scenario);
        }
        if !names.contains(&row.server.name) {
            names.push(row.server.name);
        }
    }
    (scenarios, names)
}

/// Half the range of `values` as a share of their median, in percent.
fn spread(values: &[f64]) -> Option<f64> {
    let (min, max) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    let mid = median(values.iter().copied())?;
    Some(50.0 * (max - min) / mid)
}

/// A suite's medians over its rounds, per scenario and server, against its reference server.
fn summary(suite: Suite, rows: &[&Row]) -> String {
    let reference = suite.reference();
    let mut md = format!("### Medians over the rounds (× {reference})\n\n");
    let _ = writeln!(
        md,
        "| server | N | K | B | runs | msgs/s | spread | × msgs/s | server µs/msg | × server CPU | core µs/msg | p50 | p99 | server cores | core busy | loadgen busy (max) | flagged runs |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    let (scenarios, names) = scenarios_and_servers(rows);
    for &scenario in &scenarios {
        for &name in &names {
            let runs = runs_of(rows, scenario, name);
            let flagged_runs = rows
                .iter()
                .filter(|r| r.scenario == scenario && r.server.name == name && flagged(r))
                .count();
            if runs.is_empty() && flagged_runs == 0 {
                continue;
            }
            let figs: Vec<Figures> = runs.iter().map(|(_, fig)| *fig).collect();
            let med = |metric: fn(&Figures) -> Option<f64>| median(figs.iter().filter_map(metric));
            let rates: Vec<f64> = figs.iter().map(|f| f.rate).collect();
            let ratio = |metric: fn(&Figures) -> Option<f64>| {
                median(ratios(rows, scenario, (name, reference), metric))
            };
            let _ = writeln!(
                md,
                "| {name} |{}{} |",
                scenario_cells(
                    suite,
                    scenario,
                    rows.iter()
                        .filter(|r| r.scenario == scenario && r.server.name == name)
                        .find_map(|r| r.result.as_ref().ok())
                ),
                [
                    figs.len().to_string(),
                    fmt_opt(med(|f| Some(f.rate)), fmt_rate),
                    fmt_opt(spread(&rates), |pct| format!("±{pct:.0}%")),
                    fmt_opt(ratio(|f| Some(f.rate)), fmt_ratio),
                    fmt_opt(med(|f| f.server_ns), fmt_ns_as_us),
                    fmt_opt(ratio(|f| f.server_ns), fmt_ratio),
                    fmt_opt(med(|f| f.core_ns), fmt_ns_as_us),
                    fmt_opt(med(|f| Some(f.p50_us)), fmt_us),
                    fmt_opt(med(|f| Some(f.p99_us)), fmt_us),
                    fmt_opt(med(|f| f.server_cores), |c| format!("{c:.2}")),
                    fmt_opt(med(|f| f.core_busy), |b| format!("{:.0}%", b * 100.0)),
                    fmt_opt(
                        figs.iter().map(|f| f.loadgen_busy).reduce(f64::max),
                        |b| format!("{:.0}%", b * 100.0)
                    ),
                    flagged_runs.to_string(),
                ]
                .map(|cell| format!(" {cell}"))
                .join(" |"),
            );
        }
    }
    md.push('\n');
    md
}

/// The idle suite's medians over its rounds.
fn idle_summary(rows: &[&Row]) -> String {
    let reference = Suite::Idle.reference();
    let mut md = format!("### Medians over the rounds (× {reference})\n\n");
    let _ = writeln!(
        md,
        "| server | N | runs | bytes/connection | spread | × bytes | bytes/connection after one echo | RSS before (MiB) | RSS open (MiB) | connect (s) | flagged runs |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    let (scenarios, names) = scenarios_and_servers(rows);
    for &scenario in &scenarios {
        for &name in &names {
            let figs: Vec<Figures> = runs_of(rows, scenario, name)
                .into_iter()
                .map(|(_, fig)| fig)
                .collect();
            let med = |metric: fn(&Figures) -> Option<f64>| median(figs.iter().filter_map(metric));
            let per_conn: Vec<f64> = figs.iter().filter_map(|f| f.idle_bytes).collect();
            let flagged_runs = rows
                .iter()
                .filter(|r| r.scenario == scenario && r.server.name == name && flagged(r))
                .count();
            let _ = writeln!(
                md,
                "| {name} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {flagged_runs} |",
                scenario.connections,
                figs.len(),
                fmt_opt(med(|f| f.idle_bytes), fmt_bytes),
                fmt_opt(spread(&per_conn), |pct| format!("±{pct:.0}%")),
                fmt_opt(
                    median(ratios(rows, scenario, (name, reference), |f| f.idle_bytes)),
                    fmt_ratio
                ),
                fmt_opt(med(|f| f.echoed_bytes), fmt_bytes),
                fmt_opt(med(|f| f.rss_before_mib), |m| format!("{m:.1}")),
                fmt_opt(med(|f| f.rss_mib), |m| format!("{m:.1}")),
                fmt_opt(med(|f| Some(f.setup_s)), |s| format!("{s:.2}")),
            );
        }
    }
    md.push('\n');
    md
}

/// Every run of the idle suite.
fn idle_runs(rows: &[&Row]) -> String {
    let mut md = String::from(
        "### Every run\n\n\
         | server | N | K | B | round | RSS before (MiB) | RSS open (MiB) | bytes/connection | RSS after one echo each (MiB) | bytes/connection after one echo | connect (s) | echoed | server CPU while idle (cores) | flags |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for row in rows {
        let Some(fields) = row_start(&mut md, row) else {
            continue;
        };
        let fig = Figures::of(fields);
        let mib = |m: Option<f64>| fmt_opt(m, |m| format!("{m:.1}"));
        let _ = writeln!(
            md,
            " {} | {} | {} | {} | {} | {} | {:.2} | {:.0} | {} | {} |",
            row.round + 1,
            mib(fig.rss_before_mib),
            mib(fig.rss_mib),
            fmt_opt(fig.idle_bytes, fmt_bytes),
            mib(fig.rss_echoed_mib),
            fmt_opt(fig.echoed_bytes, fmt_bytes),
            fig.setup_s,
            fig.deliveries,
            fmt_opt(fig.server_cores, |c| format!("{c:.3}")),
            flags(row, &fig, fields).join("; "),
        );
    }
    md.push('\n');
    md
}

/// The figures of the run of the server with `baseline` in `scenario` and `round`.
fn baseline_of(rows: &[&Row], baseline: &str, scenario: Scenario, round: usize) -> Option<Figures> {
    rows.iter()
        .find(|r| r.server.baseline == Some(baseline) && r.scenario == scenario && r.round == round)
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

/// The successful runs of server `name` in `scenario`, by round.
fn runs_of(rows: &[&Row], scenario: Scenario, name: &str) -> Vec<(usize, Figures)> {
    rows.iter()
        .filter(|r| r.scenario == scenario && r.server.name == name)
        .filter_map(|r| Some((r.round, Figures::of(r.result.as_ref().ok()?))))
        .collect()
}

/// `metric` of server `num` over that of server `den`, round by round (rounds where both ran).
fn ratios(
    rows: &[&Row],
    scenario: Scenario,
    (num, den): (&str, &str),
    metric: fn(&Figures) -> Option<f64>,
) -> Vec<f64> {
    let dens = runs_of(rows, scenario, den);
    runs_of(rows, scenario, num)
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
    let (scenarios, _) = scenarios_and_servers(rows);
    let mut notes = String::new();
    for &scenario in &scenarios {
        let label = scenario.message.unwrap_or("-");
        for name in [NO_COMPRESSION, COMPRESS_ONCE, PER_RECEIVER] {
            let figs: Vec<Figures> = runs_of(rows, scenario, name)
                .into_iter()
                .map(|(_, fig)| fig)
                .collect();
            let med = |metric: fn(&Figures) -> Option<f64>| median(figs.iter().filter_map(metric));
            let cpu_x = median(ratios(rows, scenario, (name, COMPRESS_ONCE), |f| {
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
            let values = ratios(rows, scenario, pair, metric);
            let each: Vec<String> = values.iter().map(|&x| fmt_ratio(x)).collect();
            format!(
                "{} (rounds: {})",
                fmt_opt(median(values), fmt_ratio),
                each.join(", ")
            )
        };
        let share = |name| {
            let figs = runs_of(rows, scenario, name);
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

/// The median of `metric` over the runs of server `name` in `scenario`.
fn median_of(
    rows: &[&Row],
    scenario: Scenario,
    name: &str,
    metric: fn(&Figures) -> Option<f64>,
) -> Option<f64> {
    median(
        runs_of(rows, scenario, name)
            .iter()
            .filter_map(|(_, fig)| metric(fig)),
    )
}

fn verdict(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "met",
        Some(false) => "MISSED",
        None => "no figures",
    }
}

/// Issue 5's targets for Verb's broadcast: ≥ 3× naive and ≥ 1.5× tokio-broadcast deliveries/s, p99 no
/// worse than either; server CPU per delivery compared the same way (medians over the rounds).
fn broadcast_targets(rows: &[&Row]) -> String {
    let mut md = String::from("### Issue 5's targets (Verb vs the axum peers, medians)\n\n");
    let verb = Suite::Broadcast.reference();
    let (scenarios, _) = scenarios_and_servers(rows);
    for scenario in scenarios {
        let n = scenario.connections;
        let med = |name, metric| median_of(rows, scenario, name, metric);
        let x = |name| median(ratios(rows, scenario, (verb, name), |f| Some(f.rate)));
        let (x_naive, x_bcast) = (x("axum-naive-broadcast"), x("axum-broadcast"));
        let p99 = |name| med(name, |f| Some(f.p99_us));
        let ns = |name| fmt_opt(med(name, |f| f.server_ns), |ns| format!("{ns:.0}"));
        let p99_ok = p99(verb)
            .and_then(|v| Some(v <= p99("axum-naive-broadcast")? && v <= p99("axum-broadcast")?));
        let _ = writeln!(
            md,
            "- N = {n}: deliveries/s {} naive (target ≥ 3: {}), {} tokio-broadcast (target ≥ 1.5: {}); \
             p99 {} vs {} and {} ({}); server CPU per delivery {} vs {} and {} ns",
            fmt_opt(x_naive, fmt_ratio),
            verdict(x_naive.map(|x| x >= 3.0)),
            fmt_opt(x_bcast, fmt_ratio),
            verdict(x_bcast.map(|x| x >= 1.5)),
            fmt_opt(p99(verb), fmt_us),
            fmt_opt(p99("axum-naive-broadcast"), fmt_us),
            fmt_opt(p99("axum-broadcast"), fmt_us),
            verdict(p99_ok),
            ns(verb),
            ns("axum-naive-broadcast"),
            ns("axum-broadcast"),
        );
    }
    md.push('\n');
    md
}

/// Issue 9's targets for Verb against its peers, from the medians of the suites that ran: echo of
/// 64 B (server CPU per message ≤ Bun's, msgs/s ≥ Bun's), echo of 16 KiB (≥ 1.0× fastwebsockets and
/// Bun), fan-out to 1,000 (≥ 1.0× Bun's deliveries/s, p99 ≤ Bun's), idle (≤ 2 KiB per WebSocket at
/// 10,000 and ≤ Bun's) and HTTP (≥ 1.0× axum).
fn issue9_targets(rows: &[Row]) -> String {
    let of = |suite: Suite, wanted: fn(Scenario) -> bool| {
        let suite_rows: Vec<&Row> = rows
            .iter()
            .filter(|r| r.server.suite == suite && wanted(r.scenario))
            .collect();
        let scenario = suite_rows.first().map(|r| r.scenario);
        (suite_rows, scenario)
    };
    let mut lines = Vec::new();
    let x = |rows: &[&Row], s, pair, metric| median(ratios(rows, s, pair, metric));
    let at_least = |ratio: Option<f64>| ratio.map(|r| r >= 1.0);
    let at_most = |ratio: Option<f64>| ratio.map(|r| r <= 1.0);

    let (echo, small) = of(Suite::Echo, |s| s.payload <= 64);
    if let Some(s) = small {
        let verb = Suite::Echo.reference();
        let cpu = x(&echo, s, (verb, "bun echo"), |f| f.server_ns);
        let rate = x(&echo, s, (verb, "bun echo"), |f| Some(f.rate));
        let us = |name| fmt_opt(median_of(&echo, s, name, |f| f.server_ns), fmt_ns_as_us);
        lines.push(format!(
            "echo {} B × {} connections × {} in flight: server CPU per message {} µs vs Bun's {} \
             ({} Bun's: {}; fastwebsockets {} µs, axum {} µs); msgs/s {} Bun's ({})",
            s.payload,
            s.connections,
            s.in_flight,
            us(verb),
            us("bun echo"),
            fmt_opt(cpu, fmt_ratio),
            verdict(at_most(cpu)),
            us("fastwebsockets-echo"),
            us("axum-echo"),
            fmt_opt(rate, fmt_ratio),
            verdict(at_least(rate)),
        ));
    }
    let (echo, large) = of(Suite::Echo, |s| s.payload >= 16 * 1024);
    if let Some(s) = large {
        let verb = Suite::Echo.reference();
        let fws = x(&echo, s, (verb, "fastwebsockets-echo"), |f| Some(f.rate));
        let bun = x(&echo, s, (verb, "bun echo"), |f| Some(f.rate));
        lines.push(format!(
            "echo {} KiB × {} connections × {} in flight: msgs/s {} fastwebsockets' ({}), {} Bun's ({})",
            s.payload / 1024,
            s.connections,
            s.in_flight,
            fmt_opt(fws, fmt_ratio),
            verdict(at_least(fws)),
            fmt_opt(bun, fmt_ratio),
            verdict(at_least(bun)),
        ));
    }
    let (fanout, thousand) = of(Suite::Broadcast, |s| s.connections == 1_000);
    if let Some(s) = thousand {
        let verb = Suite::Broadcast.reference();
        let rate = x(&fanout, s, (verb, "bun broadcast"), |f| Some(f.rate));
        let p99 = |name| median_of(&fanout, s, name, |f| Some(f.p99_us));
        lines.push(format!(
            "fan-out 1 publisher → 1,000 subscribers: deliveries/s {} Bun's ({}); p99 {} vs Bun's {} ({})",
            fmt_opt(rate, fmt_ratio),
            verdict(at_least(rate)),
            fmt_opt(p99(verb), fmt_us),
            fmt_opt(p99("bun broadcast"), fmt_us),
            verdict(p99(verb).zip(p99("bun broadcast")).map(|(v, b)| v <= b)),
        ));
    }
    let (idle, held) = of(Suite::Idle, |_| true);
    if let Some(s) = held {
        let bytes = |name| median_of(&idle, s, name, |f| f.idle_bytes);
        let verb = bytes(Suite::Idle.reference());
        lines.push(format!(
            "idle, {} WebSockets: {} bytes per connection (≤ 2 KiB: {}) vs Bun's {} (≤ Bun's: {}); \
             fastwebsockets {}, axum {}",
            s.connections,
            fmt_opt(verb, fmt_bytes),
            verdict(verb.map(|b| b <= 2048.0)),
            fmt_opt(bytes("bun echo"), fmt_bytes),
            verdict(verb.zip(bytes("bun echo")).map(|(v, b)| v <= b)),
            fmt_opt(bytes("fastwebsockets-echo"), fmt_bytes),
            fmt_opt(bytes("axum-echo"), fmt_bytes),
        ));
    }
    let (http, plain) = of(Suite::Http, |_| true);
    if let Some(s) = plain {
        let rate = x(&http, s, (Suite::Http.reference(), "axum-hello"), |f| {
            Some(f.rate)
        });
        lines.push(format!(
            "HTTP `GET /health`, {} connections: requests/s {} axum's ({})",
            s.connections,
            fmt_opt(rate, fmt_ratio),
            verdict(at_least(rate)),
        ));
    }
    if lines.is_empty() {
        return String::new();
    }
    let mut md =
        String::from("## Issue 9's targets (Verb vs its peers, medians over the rounds)\n\n");
    for line in lines {
        let _ = writeln!(md, "- {line}");
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
            "{sep}\n    {{\"suite\": {}, \"server\": {}, \"round\": {}, \"scenario\": {{\"connections\": {}, \"in_flight\": {}, \"payload\": {}",
            json_str(row.server.suite.name()),
            json_str(row.server.name),
            row.round + 1,
            row.scenario.connections,
            row.scenario.in_flight,
            row.scenario.payload,
        );
        if let Some(message) = row.scenario.message {
            let _ = write!(json, ", \"message\": {}", json_str(message));
        }
        json.push('}');
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
        let args = |list: &[&str]| -> Vec<String> { list.iter().map(|s| s.to_string()).collect() };
        let cluster = Options::parse(&args(&["--only", "cluster"])).expect("valid");
        assert_eq!(cluster.suites, vec![Suite::Cluster]);
        let default = Options::parse(&[]).expect("valid");
        assert_eq!(default.suites, Suite::ALL.to_vec());
        assert_eq!(Suite::rounds(&default), 3);
        assert_eq!(default.profile(), ("release", "release"));
        let quick = Options::parse(&args(&["--quick", "--only", "compression"])).expect("valid");
        assert_eq!(quick.suites, vec![Suite::Compression]);
        assert_eq!(Suite::rounds(&quick), 1);
        assert!(
            quick
                .scenarios(Suite::Compression)
                .iter()
                .all(|s| s.connections == 1_000)
        );
        let five = Options::parse(&args(&["--rounds", "5"])).expect("valid flags");
        assert_eq!(Suite::rounds(&five), 5);
        assert!(!default.only && cluster.only);
        let opts = Options::parse(&args(&[
            "--quick",
            "--only",
            "broadcast",
            "--duration-s",
            "3",
        ]))
        .expect("valid flags");
        assert_eq!(opts.size, Size::Quick);
        assert_eq!(opts.suites, vec![Suite::Broadcast]);
        assert_eq!((opts.warmup_s, opts.duration_s), (1.0, 3.0));
        let several = Options::parse(&args(&["--only", "echo,idle,http"])).expect("valid");
        assert_eq!(several.suites, vec![Suite::Echo, Suite::Idle, Suite::Http]);
        assert!(Options::parse(&args(&["--only", "nope"])).is_err());
        assert!(Options::parse(&args(&["--bogus"])).is_err());

        // The smoke run: every suite, one short round, debug builds, no waiting for quiet.
        let smoke = Options::parse(&args(&["--smoke"])).expect("valid");
        assert_eq!(smoke.suites, Suite::ALL.to_vec());
        assert_eq!(
            (Suite::rounds(&smoke), smoke.retries, smoke.quiet_wait),
            (1, 0, None)
        );
        assert_eq!(smoke.profile(), ("dev", "debug"));
        assert!(smoke.duration_s < 1.0);
        assert_eq!(smoke.scenarios(Suite::Idle)[0].connections, 100);
    }

    #[test]
    fn scenarios_follow_the_issue_and_the_flags() {
        let full = Options::parse(&[]).expect("valid");
        let echo: Vec<(usize, usize, usize)> = full
            .scenarios(Suite::Echo)
            .iter()
            .map(|s| (s.connections, s.in_flight, s.payload))
            .collect();
        assert_eq!(echo, vec![(100, 16, 64), (10, 4, 16_384)]);
        assert_eq!(full.scenarios(Suite::Idle)[0].connections, 10_000);
        let sizes: Vec<usize> = full
            .scenarios(Suite::Broadcast)
            .iter()
            .map(|s| s.connections)
            .collect();
        assert_eq!(sizes, vec![1_000, 10_000]);
        let args: Vec<String> = ["--connections", "5,7", "--in-flight", "2"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let custom = Options::parse(&args).expect("valid");
        let echo: Vec<(usize, usize, usize)> = custom
            .scenarios(Suite::Echo)
            .iter()
            .map(|s| (s.connections, s.in_flight, s.payload))
            .collect();
        assert_eq!(
            echo,
            vec![(5, 2, 64), (7, 2, 64), (5, 2, 16_384), (7, 2, 16_384)]
        );
        // Every suite's reference server exists in it, and Bun's peers run a script.
        let all = servers(Path::new("v"), Path::new("b"), Path::new("bun"));
        for suite in Suite::ALL {
            assert!(
                all.iter()
                    .any(|s| s.suite == suite && s.name == suite.reference()),
                "{suite:?}"
            );
        }
        let bun = all
            .iter()
            .find(|s| s.name == "bun echo")
            .expect("a Bun peer");
        assert_eq!(bun.script.as_deref(), Some(Path::new("bun/echo.ts")));
        assert!(bun.binary.ends_with("bin/bun"));
    }

    #[test]
    fn bun_is_pinned_where_npm_installs_it() {
        let bench = root().join("bench").join("bun");
        for file in ["package.json", "package-lock.json"] {
            let text = fs::read_to_string(bench.join(file)).expect("bench/bun is committed");
            assert!(
                text.contains(&format!("\"version\": \"{BUN_VERSION}\""))
                    || text.contains(&format!("\"@oven/bun-linux-x64\": \"{BUN_VERSION}\"")),
                "{file} does not pin Bun {BUN_VERSION}"
            );
        }
    }

    /// A compression-suite row with these figures.
    fn row(name: &'static str, message: &'static str, round: usize, fields: &[(&str, f64)]) -> Row {
        let scenario = Scenario {
            connections: 1000,
            in_flight: 16,
            payload: 64,
            message: Some(message),
        };
        Row {
            round,
            ..run_of(name, Suite::Compression, scenario, fields)
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

    /// A row of server `name` in `suite` with these figures.
    fn run_of(name: &str, suite: Suite, scenario: Scenario, fields: &[(&str, f64)]) -> Row {
        let server = servers(Path::new("v"), Path::new("b"), Path::new("bun"))
            .into_iter()
            .find(|s| s.name == name && s.suite == suite)
            .expect("a server of the suite");
        Row {
            server,
            scenario,
            round: 0,
            result: Ok(fields
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.to_string()))
                .collect()),
            notes: Vec::new(),
            noise: 0.0,
        }
    }

    #[test]
    fn judges_issue_9s_targets() {
        let small = Scenario {
            connections: 100,
            in_flight: 16,
            payload: 64,
            message: None,
        };
        let echo = |name, rate: f64, ns: f64| {
            let fields = [
                ("window_s", 10.0),
                ("deliveries", rate * 10.0),
                ("deliveries_per_s", rate),
                ("server_cpu_ns", ns * rate * 10.0),
                ("p99_us", 1000.0),
            ];
            run_of(name, Suite::Echo, small, &fields)
        };
        let idle = |name, before_kib: f64, open_kib: f64| {
            let fields = [
                ("connections", 10_000.0),
                ("deliveries", 10_000.0),
                ("rss_before_kib", before_kib),
                ("server_rss_kib", open_kib),
            ];
            let held = Scenario {
                connections: 10_000,
                in_flight: 1,
                ..small
            };
            run_of(name, Suite::Idle, held, &fields)
        };
        let rows = [
            echo("bun echo", 1e6, 600.0),
            echo("verb plain-echo", 5e5, 1200.0),
            // 19,531.25 KiB over 10,000 connections: 2,000 bytes each.
            idle("bun echo", 20_000.0, 20_000.0 + 19_531.25 * 0.9),
            idle("verb plain-echo", 1_000.0, 1_000.0 + 19_531.25),
        ];
        let md = issue9_targets(&rows);
        assert!(
            md.contains("server CPU per message 1.20 µs vs Bun's 0.60 (2.00× Bun's: MISSED"),
            "{md}"
        );
        assert!(md.contains("msgs/s 0.50× Bun's (MISSED)"), "{md}");
        assert!(
            md.contains("2000 bytes per connection (≤ 2 KiB: met) vs Bun's 1800 (≤ Bun's: MISSED)"),
            "{md}"
        );
        // No fan-out or HTTP runs: no verdict on them.
        assert!(!md.contains("fan-out") && !md.contains("HTTP"), "{md}");

        let refs: Vec<&Row> = rows
            .iter()
            .filter(|r| r.server.suite == Suite::Idle)
            .collect();
        let table = idle_summary(&refs);
        assert!(
            table.contains("| verb plain-echo | 10000 | 1 | 2000 | ±0% | 1.00× |"),
            "{table}"
        );
    }

    #[test]
    fn escapes_json() {
        assert_eq!(json_str("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
    }
}
