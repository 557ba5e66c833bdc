//! Verb's benchmark package: the peers Verb is measured against and the load generator that measures.
//!
//! - [`peer`]: what every Rust peer shares: the command line (`--host`, `--port`, 0 = a free port), the
//!   `listening on http://HOST:PORT` line the harness waits for, and serving until SIGTERM or Ctrl-C.
//! - [`fws`]: what the fastwebsockets servers share: hyper 1 with `fastwebsockets::upgrade` on a
//!   current-thread runtime, as fastwebsockets' examples do it.
//! - [`load`]: the load generator behind the `bench-load` binary: one thread, raw sockets, pre-encoded
//!   masked frames, closed loop, latency per message, CPU time of the server and of itself.
//!
//! The package stands outside Verb's workspace and is built only by `cargo xtask bench`.

pub mod fws;
pub mod load;
pub mod peer;
