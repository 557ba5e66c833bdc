//! The guide's advanced configuration: the documented limits and options, a JSON protocol with
//! ping/pong and a chat broadcast to every client.
//!
//! ```text
//! cargo run --release -p examples --example config
//! ```

use std::time::Duration;

use clap::Parser;
use examples::{Common, send_error};
use serde_json::{Value, json};
use verb::prelude::*;

#[derive(Debug, Parser)]
#[command(about = "Verb's WebSocket configuration example")]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    origins: examples::Origins,
    /// Seconds a connection may stay silent before it is closed (the server pings at half).
    #[arg(long, default_value_t = 120)]
    idle_timeout_s: u64,
}

fn on_message(rooms: &Rooms, ws: &WebSocket, msg: &Message) {
    let Ok(value) = msg.json::<Value>() else {
        return send_error(ws, "Invalid JSON");
    };
    match value.get("type").and_then(Value::as_str) {
        Some("ping") => {
            ws.send_json(&json!({ "type": "pong" }));
        }
        Some("chat") => {
            let Some(message) = value.get("message").and_then(Value::as_str) else {
                return send_error(ws, "Invalid or missing field: message (string expected)");
            };
            // To every client, sender included: framed once, queued on each connection.
            rooms
                .everyone()
                .json(&json!({ "type": "chat", "message": message }));
        }
        _ => send_error(ws, "Unknown message type"),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    examples::init_tracing();

    let config = WsConfig::new()
        .max_payload_length(16 * 1024 * 1024)
        .idle_timeout(Duration::from_secs(cli.idle_timeout_s))
        .compression(true)
        .backpressure_limit(64 * 1024)
        .protocols(["chat", "notification"])
        .header("X-WebSocket-Server", "Verb")
        .origin_policy(cli.origins.policy());

    let mut app = verb::create_server_with(ServerProtocol::WebSocket);
    let rooms = app.rooms().clone();
    app.websocket(
        Ws::new()
            .config(config)
            .open(|ws: &WebSocket, _req: &Request| {
                ws.send_json(&json!({
                    "type": "welcome",
                    "message": "Connected to WebSocket server",
                }));
            })
            .message(move |ws: &WebSocket, msg: Message| on_message(&rooms, ws, &msg)),
    );
    app.listen(cli.common.addr()).await?;
    Ok(())
}
