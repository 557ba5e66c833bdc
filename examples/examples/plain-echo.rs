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
        return examples::web::serve_in_axum(app, cli.common.addr()).await;
    }
    app.listen(cli.common.addr()).await?;
    Ok(())
}
