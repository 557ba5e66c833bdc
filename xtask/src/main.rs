//! Project automation for Verb, run as `cargo xtask <task>`.
//!
//! - `cargo xtask ci`: everything CI checks, in the order CI runs it: formatting, Clippy with warnings
//!   denied, every test (unit, integration, doc), and the docs with warnings denied. It first makes sure
//!   the tools the checks need are present (rustfmt, clippy, `redis-server` for the multi-node tests,
//!   Chromium for the browser tests), installing what is missing, so it passes on a fresh machine.
//! - `cargo xtask bench`: the benchmarks of `bench/` against Verb's examples (see [`mod@bench`] and
//!   BENCHMARKS.md).

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

mod bench;

fn main() -> Result<()> {
    let args: Vec<String> = env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("setup") => setup().map(|_| ()),
        Some("fuzz") => fuzz(&args[1..]),
        Some("soak") => soak(),
        Some("bench") => bench::bench(&args[1..]),
        Some("help") | Some("--help") | Some("-h") | None => {
            help();
            Ok(())
        }
        Some(other) => {
            help();
            bail!("unknown task `{other}`")
        }
    }
}

fn help() {
    eprintln!(
        "usage: cargo xtask <task>\n\ntasks:\n  ci    fmt check, clippy -D warnings, all tests, docs -D warnings\n  setup install what the tests drive (redis-server, chromium, Python websockets)\n  fuzz [--time SECONDS] [TARGET...]\n        run each cargo-fuzz target of fuzz/ for SECONDS (60); installs cargo-fuzz\n  soak  the load and soak tests at full size (10,000 connections for a minute, a room of\n        1,000 under load for three minutes, file descriptor exhaustion), release build\n{}",
        bench::HELP
    );
}

/// The workspace root (the parent of this crate's directory).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Installs what the tests drive and returns the Python that has the client libraries.
fn setup() -> Result<PathBuf> {
    ensure_rust_components()?;
    ensure_system_programs()?;
    ensure_python_clients()
}

fn ci() -> Result<()> {
    let started = Instant::now();
    let python = setup()?;

    step("format", cargo(&["fmt", "--all", "--", "--check"]))?;
    step(
        "clippy",
        cargo(&[
            "clippy",
            "--workspace",
            "--all-targets",
            "--locked",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    let mut tests = cargo(&["test", "--workspace", "--locked"]);
    tests.env("VERB_PYTHON", &python);
    step("tests", tests)?;
    let mut doc = cargo(&["doc", "--workspace", "--no-deps", "--locked"]);
    doc.env("RUSTDOCFLAGS", "-D warnings");
    step("docs", doc)?;
    // The fuzz targets build and run clean for a few seconds each (`cargo xtask fuzz` runs longer).
    fuzz(&["--time".to_owned(), "10".to_owned()])?;
    // The benchmark harness runs end to end: every suite and server once, tiny and brief (no targets
    // are judged on this; `cargo xtask bench` is the real run).
    eprintln!("\n==> bench smoke round");
    let bench_started = Instant::now();
    bench::bench(&["--smoke".to_owned()])?;
    eprintln!(
        "==> bench smoke round: ok in {:.0?}",
        bench_started.elapsed()
    );

    eprintln!("\nxtask ci: all checks passed in {:.0?}", started.elapsed());
    Ok(())
}

fn cargo(args: &[&str]) -> Command {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut cmd = Command::new(cargo);
    cmd.args(args).current_dir(root());
    cmd
}

fn step(name: &str, mut cmd: Command) -> Result<()> {
    eprintln!("\n==> {name}: {cmd:?}");
    let started = Instant::now();
    let status = cmd
        .status()
        .with_context(|| format!("cannot run step `{name}`"))?;
    if !status.success() {
        bail!(
            "step `{name}` failed ({status}) after {:.0?}",
            started.elapsed()
        );
    }
    eprintln!("==> {name}: ok in {:.0?}", started.elapsed());
    Ok(())
}

/// System programs the tests drive, as (binary, Debian package): the multi-node tests run their own
/// `redis-server` (one per test, on a free port), the browser tests a headless Chromium, the HTTP/2
/// tests curl (Debian's is built with nghttp2). Missing ones are installed with apt-get; a failure
/// stops CI loudly (the tests never skip silently).
const SYSTEM_PROGRAMS: [(&str, &str); 3] = [
    ("redis-server", "redis-server"),
    ("chromium", "chromium"),
    ("curl", "curl"),
];

fn ensure_system_programs() -> Result<()> {
    let missing: Vec<&str> = SYSTEM_PROGRAMS
        .iter()
        .filter(|(binary, _)| {
            !Command::new(binary)
                .arg("--version")
                .output()
                .is_ok_and(|out| out.status.success())
        })
        .map(|(_, package)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    apt_install(&missing)
}

/// Installs Debian packages with apt-get (through sudo when not root).
fn apt_install(packages: &[&str]) -> Result<()> {
    eprintln!("==> installing {} (apt-get)", packages.join(", "));
    let apt = |args: &[&str]| -> Result<()> {
        let mut cmd = if is_root() {
            Command::new("apt-get")
        } else {
            let mut cmd = Command::new("sudo");
            cmd.arg("apt-get");
            cmd
        };
        let status = cmd
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .context("cannot run apt-get")?;
        if !status.success() {
            bail!("apt-get {} failed ({status})", args.join(" "));
        }
        Ok(())
    };
    apt(&["update", "-q"])?;
    let mut install = vec!["install", "-y", "-q"];
    install.extend(packages);
    apt(&install)
}

/// The fuzz targets of `fuzz/` (its own workspace, excluded from Verb's).
const FUZZ_TARGETS: [&str; 4] = ["router", "http_request", "ws_frames", "jwt"];
/// The cargo-fuzz release the targets are run with.
const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// `cargo xtask fuzz [--time SECONDS] [TARGET...]`: runs each target for a bounded time on stable Rust
/// (libFuzzer without a sanitizer; the targets abort on any panic, also inside server tasks). A crash
/// fails the task and leaves its input in `fuzz/artifacts/TARGET/`.
fn fuzz(args: &[String]) -> Result<()> {
    let mut seconds = 60u64;
    let mut targets = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--time" => {
                let value = args.next().context("--time needs a number of seconds")?;
                seconds = value
                    .parse()
                    .with_context(|| format!("bad --time {value}"))?;
            }
            target if FUZZ_TARGETS.contains(&target) => targets.push(target),
            other => bail!(
                "unknown fuzz argument `{other}` (targets: {})",
                FUZZ_TARGETS.join(", ")
            ),
        }
    }
    if targets.is_empty() {
        targets.extend(FUZZ_TARGETS);
    }
    let installed = cargo(&["fuzz", "--version"])
        .output()
        .is_ok_and(|out| out.status.success());
    if !installed {
        step(
            "install cargo-fuzz",
            cargo(&[
                "install",
                "cargo-fuzz",
                "--locked",
                "--version",
                CARGO_FUZZ_VERSION,
            ]),
        )?;
    }
    step(
        "fuzz build",
        cargo(&["fuzz", "build", "--sanitizer", "none"]),
    )?;
    for target in targets {
        let time = format!("-max_total_time={seconds}");
        step(
            &format!("fuzz {target} for {seconds} s"),
            cargo(&[
                "fuzz",
                "run",
                "--sanitizer",
                "none",
                target,
                "--",
                &time,
                "-timeout=30",
                "-rss_limit_mb=4096",
                "-print_final_stats=1",
            ]),
        )?;
    }
    Ok(())
}

/// `cargo xtask soak`: `verb/tests/soak.rs` at full size, in release.
fn soak() -> Result<()> {
    let mut tests = cargo(&[
        "test",
        "--release",
        "--locked",
        "-p",
        "verb",
        "--test",
        "soak",
        "--",
        "--nocapture",
        "--test-threads=1",
    ]);
    tests.env("VERB_SOAK", "full");
    step("soak (full size)", tests)
}

/// The target directory cargo builds into.
fn target_dir() -> PathBuf {
    env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

/// The Python client libraries the tests drive (`websockets`, a real permessage-deflate client), in
/// a venv at `target/pyenv` built from `examples/tests/requirements.txt`; rebuilt when that file
/// changes. Installs python3 and its venv module with apt-get when they are missing.
fn ensure_python_clients() -> Result<PathBuf> {
    let venv = target_dir().join("pyenv");
    let python = venv.join("bin").join("python");
    let requirements = root()
        .join("examples")
        .join("tests")
        .join("requirements.txt");
    let stamp = venv.join("verb-requirements.txt");
    let wanted = std::fs::read(&requirements)
        .with_context(|| format!("cannot read {}", requirements.display()))?;
    if python.exists() && std::fs::read(&stamp).ok().as_deref() == Some(&wanted[..]) {
        return Ok(python);
    }
    let has_venv = Command::new("python3")
        .args(["-c", "import venv, ensurepip"])
        .output()
        .is_ok_and(|out| out.status.success());
    if !has_venv {
        apt_install(&["python3", "python3-venv"])?;
    }
    eprintln!(
        "==> creating {} with {}",
        venv.display(),
        requirements.display()
    );
    let run = |cmd: &mut Command| -> Result<()> {
        let status = cmd
            .status()
            .with_context(|| format!("cannot run {cmd:?}"))?;
        if !status.success() {
            bail!("{cmd:?} failed ({status})");
        }
        Ok(())
    };
    run(Command::new("python3")
        .args(["-m", "venv", "--clear"])
        .arg(&venv))?;
    run(Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
        ])
        .arg(&requirements))?;
    std::fs::write(&stamp, &wanted).with_context(|| format!("cannot write {}", stamp.display()))?;
    Ok(python)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
        .unwrap_or(false)
}

/// rustfmt and clippy ship as rustup components; a minimal toolchain may lack them.
fn ensure_rust_components() -> Result<()> {
    for (component, probe) in [("rustfmt", "fmt"), ("clippy", "clippy")] {
        let present = cargo(&[probe, "--version"])
            .output()
            .map(|out| out.status.success())
            .unwrap_or(false);
        if !present {
            eprintln!("==> installing the {component} component");
            let status = Command::new("rustup")
                .args(["component", "add", component])
                .status()
                .with_context(|| format!("cannot run rustup to install {component}"))?;
            if !status.success() {
                bail!("rustup could not install {component}");
            }
        }
    }
    Ok(())
}
