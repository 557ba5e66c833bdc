//! Sends every message (text as text, binary as binary, unchanged) to every connected client, sender
//! included, through Verb's rooms fan-out: framed once, queued on every connection. For benchmarks.
//!
//! ```text
//! cargo run --release -p examples --example plain-broadcast -- --port 9002
//! ```

use clap::Parser;
use examples::Common;
use verb::prelude::*;

#[derive(Debug, Parser)]
#[command(about = "Verb's plain WebSocket broadcast server")]
struct Cli {
    #[command(flatten)]
    common: Common,
    /// Largest message accepted, in bytes; larger ones close the connection with 1009.
    #[arg(long, default_value_t = 16 * 1024 * 1024)]
    max_payload: usize,
}

/// The room every connection is in.
const ALL: &str = "all";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    examples::init_tracing();
    let mut app = verb::create_server_with(ServerProtocol::WebSocket);
    let rooms = app.rooms().clone();
    app.websocket(
        Ws::new()
            .max_payload_length(cli.max_payload)
            .open(|ws: &WebSocket, _req: &Request| {
                ws.subscribe(ALL);
            })
            .message(move |_ws: &WebSocket, msg: Message| {
                rooms.to(ALL).send(msg);
            }),
    );
    app.listen(cli.common.addr()).await?;
    Ok(())
}
