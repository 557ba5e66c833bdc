//! Signals at the edges of a process's life.

use std::io::{BufRead, BufReader};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};

use crate::support::binary;

/// Starts example `name` on port 0 and sends it SIGTERM from the thread that reads its log, the moment
/// the `listening on` line arrives (a syscall, no process spawned in between); returns its exit status.
fn terminate_when_listening(name: &str) -> ExitStatus {
    let mut child = Command::new(binary(name))
        .args(["--port", "0"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("cannot start example {name}: {err}"));
    let pid = i32::try_from(child.id())
        .ok()
        .and_then(Pid::from_raw)
        .expect("a child's pid is a positive i32");
    let stderr = child.stderr.take().expect("stderr is piped");
    let mut signalled = false;
    for line in BufReader::new(stderr).lines() {
        let Ok(line) = line else { break };
        if !signalled && line.contains("listening on ") {
            kill_process(pid, Signal::TERM).expect("the child is alive to be signalled");
            signalled = true;
        }
    }
    assert!(
        signalled,
        "example {name} exited without logging `listening on`"
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = child.try_wait().expect("wait works") {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "example {name} did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Regression (issue 27): `listen` logged `listening on` and only then installed its SIGTERM handler, so a
/// SIGTERM sent on that line took the default action (death by the signal) instead of a graceful stop
/// with exit status 0. Many runs, several at a time, so that a loaded scheduler opens the window if any.
#[test]
fn sigterm_sent_the_moment_listening_is_logged_stops_gracefully() {
    const ROUNDS: usize = 8;
    const AT_ONCE: usize = 4;
    for round in 0..ROUNDS {
        let runs: Vec<_> = (0..AT_ONCE)
            .map(|i| {
                let name = if i % 2 == 0 { "plain-echo" } else { "chat" };
                std::thread::spawn(move || (name, terminate_when_listening(name)))
            })
            .collect();
        for run in runs {
            let (name, status) = run.join().expect("the run's thread does not panic");
            assert!(
                status.success(),
                "round {round}: {name} ended with {status} after a SIGTERM on its `listening on` line"
            );
        }
    }
}
