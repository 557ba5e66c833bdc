//! permessage-deflate with a real third-party client: Python's `websockets` (installed by
//! `cargo xtask ci` into `target/pyenv`) against the `plain-echo` and `config` examples.

use std::path::PathBuf;
use std::process::Command;

use crate::support::Example;

/// The Python with `websockets`: `$VERB_PYTHON`, else the venv `cargo xtask ci` makes.
fn python() -> PathBuf {
    if let Some(python) = std::env::var_os("VERB_PYTHON") {
        return PathBuf::from(python);
    }
    let exe = std::env::current_exe().expect("the test binary has a path");
    let target = exe
        .ancestors()
        .nth(3)
        .expect("the test binary lives in target/<profile>/deps");
    let python = target.join("pyenv").join("bin").join("python");
    assert!(
        python.exists(),
        "{} is missing: run `cargo xtask ci` (or `cargo xtask setup`), which installs the Python \
         WebSocket client these tests drive",
        python.display()
    );
    python
}

fn run_client(mode: &str, url: &str) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/deflate_client.py");
    let output = Command::new(python())
        .args([script, mode, url])
        .output()
        .expect("the Python client runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("{stdout}{stderr}");
    assert!(
        output.status.success(),
        "the Python client failed: {stdout}{stderr}"
    );
}

/// `plain-echo`: every parameter combination negotiated and round-tripped (text, binary,
/// fragmented), an undecodable offer declined, plain clients get plain frames, and a deflate bomb
/// is closed with 1009.
#[test]
fn plain_echo_speaks_permessage_deflate_with_python_websockets() {
    let example = Example::start("plain-echo", &["--max-payload", "1048576"]);
    run_client("echo", &format!("ws://{}/", example.addr));
}

/// `config` offers compression, as the guide's configuration says.
#[test]
fn config_offers_compression_to_python_websockets() {
    let example = Example::start("config", &[]);
    run_client("config", &format!("ws://{}/ws", example.addr));
}

/// The same endpoint served by axum (`plain-echo --in-axum`): compression, fragments, limits and the
/// deflate bomb behave the same over hyper's upgraded connection.
#[test]
fn plain_echo_in_axum_speaks_permessage_deflate_with_python_websockets() {
    let example = Example::start("plain-echo", &["--max-payload", "1048576", "--in-axum"]);
    run_client("echo", &format!("ws://{}/", example.addr));
}
