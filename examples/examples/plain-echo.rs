//! Echoes every message back unchanged (text as text, binary as binary), on any path.
//! For conformance suites and benchmarks.
//!
//! ```text
//! cargo run --release -p examples --example plain-echo -- --port 9001 --max-payload 16777216
//! ```
//!
//! `--in-axum` serves the same app as a tower service inside an axum router (`axum::serve`), so the
//! benchmarks can measure the engine over hyper's upgraded connections next to Verb's own server.

use clap::Parser;
use examples::Common;
use verb::prelude::*;

#[derive(Debug, Parser)]
#[command(about = "Verb's plain WebSocket echo server")]
struct Cli {
    #[command(flatten)]
    common: Common,
    /// Largest message accepted, in bytes; larger ones close the connection with 1009.
    #[arg(long, default_value_t = 16 * 1024 * 1024)]
    max_payload: usize,
    /// Serve through axum (`Router::fallback_service(app.into_service())`) instead of Verb's server.
    #[arg(long)]
    in_axum: bool,
}

/// Serves `app` as axum's fallback service until SIGINT/SIGTERM; the sockets get 1001 at the end.
async fn serve_in_axum(app: App, addr: (&str, u16)) -> anyhow::Result<()> {
    use axum::serve::ListenerExt;
    let mut signal = verb::ShutdownSignal::install()?;
    let service = app.into_service();
    let stop = service.stop_handle();
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!("listening on http://{}", listener.local_addr()?);
    // As Verb's server does: small frames must not wait for Nagle's algorithm.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let router = axum::Router::new().fallback_service(service);
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            let _ = signal.recv().await;
            let _ = stop.stop().await;
        })
        .await?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    examples::init_tracing();
    let mut app = verb::create_server_with(ServerProtocol::WebSocket);
    app.websocket(
        Ws::new()
            .max_payload_length(cli.max_payload)
            .compression(true)
            .message(|ws: &WebSocket, msg: Message| {
                ws.send(msg);
            }),
    );
    if cli.in_axum {
        return serve_in_axum(app, cli.common.addr()).await;
    }
    app.listen(cli.common.addr()).await?;
    Ok(())
}
