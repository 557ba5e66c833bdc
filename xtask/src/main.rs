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
        "usage: cargo xtask <task>\n\ntasks:\n  ci    fmt check, clippy -D warnings, all tests, docs -D warnings\n{}",
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

fn ci() -> Result<()> {
    let started = Instant::now();
    ensure_rust_components()?;
    ensure_system_programs()?;

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
    step("tests", cargo(&["test", "--workspace", "--locked"]))?;
    let mut doc = cargo(&["doc", "--workspace", "--no-deps", "--locked"]);
    doc.env("RUSTDOCFLAGS", "-D warnings");
    step("docs", doc)?;

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
/// `redis-server` (one per test, on a free port), the browser tests a headless Chromium. Missing ones
/// are installed with apt-get; a failure stops CI loudly (the tests never skip silently).
const SYSTEM_PROGRAMS: [(&str, &str); 2] =
    [("redis-server", "redis-server"), ("chromium", "chromium")];

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
    eprintln!("==> installing {} (apt-get)", missing.join(", "));
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
    install.extend(&missing);
    apt(&install)
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
