//! The guide's performance example: a cap on connections, with the accept-then-close policy the guide
//! shows, and inactive connections closed. WebSockets on every path.
//!
//! ```text
//! cargo run --release -p examples --example connection-limits -- --max-connections 10000
//! ```
//!
//! Over `--max-connections`: `{"type":"error","message":"Server capacity reached"}`, then close 1013.
//! No data message for `--inactive-ms` (protocol pongs do not count): close 1000
//! `Closing inactive connection`. Any message → `{"type":"ack"}`.

use std::time::Duration;

use clap::Parser;
use examples::Common;
use serde_json::json;
use verb::OverCapacity;
use verb::prelude::*;

#[derive(Debug, Parser)]
#[command(about = "Verb's connection limits example")]
struct Cli {
    #[command(flatten)]
    common: Common,
    /// Most WebSockets open at once.
    #[arg(long, default_value_t = 10_000)]
    max_connections: usize,
    /// Milliseconds without a data message before a connection is closed.
    #[arg(long, default_value_t = 300_000, value_parser = clap::value_parser!(u64).range(1..))]
    inactive_ms: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    examples::init_tracing();
    let inactive = Duration::from_millis(cli.inactive_ms);
    let renew = move |ws: &WebSocket| {
        ws.close_after(
            inactive,
            None,
            CloseCode::NORMAL,
            "Closing inactive connection",
        );
    };
    let capacity = json!({ "type": "error", "message": "Server capacity reached" }).to_string();
    let mut app = verb::create_server_with(ServerProtocol::WebSocket);
    let connections = app.connections();
    app.websocket(
        Ws::new()
            .max_connections(cli.max_connections)
            // The framework sends this, then closes with 1013; the app's callbacks never see it.
            .over_capacity(OverCapacity::CloseWith(capacity))
            .open(move |ws: &WebSocket, _req: &Request| {
                tracing::info!(
                    id = ws.id(),
                    open = connections.get(),
                    "connection-limits: connected"
                );
                renew(ws);
            })
            .message(move |ws: &WebSocket, _msg: Message| {
                renew(ws);
                ws.send_json(&json!({ "type": "ack" }));
            })
            .close(|ws: &WebSocket, code: CloseCode, reason: &str| {
                tracing::info!(id = ws.id(), %code, reason, "connection-limits: closed");
            }),
    );
    app.listen(cli.common.addr()).await?;
    Ok(())
}
