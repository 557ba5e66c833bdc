//! What every benchmark peer shares: its command line, its ready line and its lifetime.
//!
//! Each peer is an axum 0.8 application served by `axum::serve` on a tokio multi-thread runtime, as
//! axum's documentation does it. Like Verb's server, the peers turn Nagle's algorithm off on every
//! accepted socket, so that both sides write small WebSocket frames the same way.

use std::io::Write;

use anyhow::Context;
use axum::Router;
use axum::serve::ListenerExt;
use tokio::net::TcpListener;

/// The flags every peer takes (the same as Verb's examples).
#[derive(Debug, Clone, clap::Args)]
pub struct PeerArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on; 0 picks a free port.
    #[arg(long, default_value_t = 0)]
    pub port: u16,
}

/// Binds, prints `listening on http://ADDR` to stdout, and serves `app` until SIGTERM or Ctrl-C.
pub async fn serve(args: &PeerArgs, app: Router) -> anyhow::Result<()> {
    let listener = TcpListener::bind((args.host.as_str(), args.port))
        .await
        .with_context(|| format!("cannot listen on {}:{}", args.host, args.port))?;
    let addr = listener.local_addr().context("no local address")?;
    let listener = listener.tap_io(|tcp| {
        // Failing to set an option on one socket is not worth dropping the connection for.
        let _ = tcp.set_nodelay(true);
    });
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on http://{addr}").context("cannot write to stdout")?;
    stdout.flush().context("cannot flush stdout")?;
    drop(stdout);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("server failed")
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
