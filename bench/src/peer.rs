//! What every benchmark peer shares: its command line, its ready line and its lifetime.
//!
//! The axum peers are axum 0.8 applications served by [`serve`] (`axum::serve`) on a tokio
//! multi-thread runtime, as axum's documentation does it; the fastwebsockets peers are served by
//! [`crate::fws::serve`]. Like Verb's server, every peer turns Nagle's algorithm off on every accepted
//! socket, so that all of them write small WebSocket frames the same way.

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
    let listener = listen(args).await?.tap_io(|tcp| {
        // Failing to set an option on one socket is not worth dropping the connection for.
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("server failed")
}

/// Binds to `--host`/`--port` and prints `listening on http://ADDR` (the address bound) to stdout,
/// the line the harness waits for.
pub async fn listen(args: &PeerArgs) -> anyhow::Result<TcpListener> {
    let listener = TcpListener::bind((args.host.as_str(), args.port))
        .await
        .with_context(|| format!("cannot listen on {}:{}", args.host, args.port))?;
    let addr = listener.local_addr().context("no local address")?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on http://{addr}").context("cannot write to stdout")?;
    stdout.flush().context("cannot flush stdout")?;
    Ok(listener)
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
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
