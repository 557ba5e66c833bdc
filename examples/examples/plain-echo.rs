//! Echoes every message back unchanged (text as text, binary as binary), on any path.
//! For conformance suites and benchmarks.
//!
//! ```text
//! cargo run --release -p examples --example plain-echo -- --port 9001 --max-payload 16777216
//! ```

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
    app.listen(cli.common.addr()).await?;
    Ok(())
}
