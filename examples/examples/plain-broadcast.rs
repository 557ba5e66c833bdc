//! Sends every message (text as text, binary as binary, unchanged) to every connected client, sender
//! included, through Verb's rooms fan-out: framed once, queued on every connection. For benchmarks.
//!
//! `--compression` chooses permessage-deflate for clients that offer it: `off` (the default: plain
//! frames for everyone), `shared` (`Ws::compression(true)`: each message deflated once, the same frame
//! to every compressing client) or `dedicated` (server context takeover: a compressor per connection,
//! each message deflated once per client).
//!
//! ```text
//! cargo run --release -p examples --example plain-broadcast -- --port 9002 [--compression shared]
//! ```
//!
//! `--in-axum` serves the same app inside an axum router, for the benchmarks.

use clap::{Parser, ValueEnum};
use examples::Common;
use verb::Compression;
use verb::prelude::*;

#[derive(Debug, Parser)]
#[command(about = "Verb's plain WebSocket broadcast server")]
struct Cli {
    #[command(flatten)]
    common: Common,
    /// Largest message accepted, in bytes; larger ones close the connection with 1009.
    #[arg(long, default_value_t = 16 * 1024 * 1024)]
    max_payload: usize,
    /// permessage-deflate for clients that offer it.
    #[arg(long, value_enum, default_value_t = Deflate::Off)]
    compression: Deflate,
    /// Serve through axum (`Router::fallback_service(app.into_service())`) instead of Verb's server.
    #[arg(long)]
    in_axum: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Deflate {
    /// No compression.
    Off,
    /// Shared compressors: a broadcast is deflated once for every receiver.
    Shared,
    /// A compressor per connection (server context takeover).
    Dedicated,
}

/// The room every connection is in.
const ALL: &str = "all";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    examples::init_tracing();
    let mut app = verb::create_server_with(ServerProtocol::WebSocket);
    let rooms = app.rooms().clone();
    let ws = Ws::new().max_payload_length(cli.max_payload);
    let ws = match cli.compression {
        Deflate::Off => ws,
        Deflate::Shared => ws.compression(true),
        Deflate::Dedicated => ws.compression_with(Compression::new().server_context_takeover(true)),
    };
    app.websocket(
        ws.open(|ws: &WebSocket, _req: &Request| {
            ws.subscribe(ALL);
        })
        .message(move |_ws: &WebSocket, msg: Message| {
            rooms.to(ALL).send(msg);
        }),
    );
    if cli.in_axum {
        return examples::web::serve_in_axum(app, cli.common.addr()).await;
    }
    app.listen(cli.common.addr()).await?;
    Ok(())
}
