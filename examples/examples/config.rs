//! The guide's advanced configuration: the documented limits and options, a JSON protocol with
//! ping/pong and a chat broadcast to every client.
//!
//! ```text
//! cargo run --release -p examples --example config
//! ```

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use examples::Common;
use serde_json::{Value, json};
use verb::PreparedMessage;
use verb::prelude::*;

#[derive(Debug, Parser)]
#[command(about = "Verb's WebSocket configuration example")]
struct Cli {
    #[command(flatten)]
    common: Common,
    /// Seconds a connection may stay silent before it is closed (the server pings at half).
    #[arg(long, default_value_t = 120)]
    idle_timeout_s: u64,
}

type Clients = Arc<Mutex<HashSet<WebSocket>>>;

fn error(ws: &WebSocket, message: &str) {
    ws.send_json(&json!({ "type": "error", "message": message }));
}

fn on_message(clients: &Clients, ws: &WebSocket, msg: &Message) {
    let Ok(value) = msg.json::<Value>() else {
        return error(ws, "Invalid JSON");
    };
    match value.get("type").and_then(Value::as_str) {
        Some("ping") => {
            ws.send_json(&json!({ "type": "pong" }));
        }
        Some("chat") => {
            let Some(message) = value.get("message").and_then(Value::as_str) else {
                return error(ws, "Invalid or missing field: message (string expected)");
            };
            let frame = PreparedMessage::new(&Message::text(
                json!({ "type": "chat", "message": message }).to_string(),
            ));
            // Send outside the lock: clone the set's handles (cheap) first.
            let everyone: Vec<WebSocket> = clients
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .cloned()
                .collect();
            for client in everyone {
                client.send_prepared(&frame);
            }
        }
        _ => error(ws, "Unknown message type"),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    examples::init_tracing();
    let clients: Clients = Arc::default();
    let (joined, left, talk) = (clients.clone(), clients.clone(), clients);

    let config = WsConfig::new()
        .max_payload_length(16 * 1024 * 1024)
        .idle_timeout(Duration::from_secs(cli.idle_timeout_s))
        .compression(true)
        .backpressure_limit(64 * 1024)
        .protocols(["chat", "notification"])
        .header("X-WebSocket-Server", "Verb");

    let mut app = verb::create_server_with(ServerProtocol::WebSocket);
    app.websocket(
        Ws::new()
            .config(config)
            .open(move |ws: &WebSocket, _req: &Request| {
                joined
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(ws.clone());
                ws.send_json(&json!({
                    "type": "welcome",
                    "message": "Connected to WebSocket server",
                }));
            })
            .message(move |ws: &WebSocket, msg: Message| on_message(&talk, ws, &msg))
            .close(move |ws: &WebSocket, _code: CloseCode, _reason: &str| {
                left.lock().unwrap_or_else(|p| p.into_inner()).remove(ws);
            }),
    );
    app.listen(cli.common.addr()).await?;
    Ok(())
}
