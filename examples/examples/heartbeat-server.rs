//! The guide's error-handling server: protocol-level pings find dead peers, and every message is
//! checked for valid JSON. WebSockets on every path.
//!
//! ```text
//! cargo run --release -p examples --example heartbeat-server -- --ping-interval-ms 30000
//! ```
//!
//! A ping goes out after `--ping-interval-ms` without traffic from the peer; a peer that has sent
//! nothing (not even the pong) by the next interval is closed with 1001 (its `close` callback runs
//! once). Valid JSON → `{"type":"ack"}`; anything else →
//! `{"type":"error","message":"Invalid message format","code":"INVALID_JSON"}`.

use std::time::Duration;

use clap::Parser;
use examples::Common;
use serde_json::{Value, json};
use verb::prelude::*;

#[derive(Debug, Parser)]
#[command(about = "Verb's heartbeat (ping/pong) server example")]
struct Cli {
    #[command(flatten)]
    common: Common,
    /// Milliseconds between protocol pings to a silent peer.
    #[arg(long, default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1..))]
    ping_interval_ms: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    examples::init_tracing();
    let interval = Duration::from_millis(cli.ping_interval_ms);
    let mut app = verb::create_server_with(ServerProtocol::WebSocket);
    app.websocket(
        Ws::new()
            // The engine pings after half the idle timeout without a read and closes (1001) at the
            // full timeout: a ping every interval, and a peer that has not answered by the next one
            // is gone.
            .idle_timeout(interval * 2)
            .open(|ws: &WebSocket, _req: &Request| {
                tracing::info!(id = ws.id(), peer = %ws.remote_addr(), "heartbeat-server: connected");
            })
            .message(|ws: &WebSocket, msg: Message| {
                if msg.json::<Value>().is_ok() {
                    ws.send_json(&json!({ "type": "ack" }));
                } else {
                    ws.send_json(&json!({
                        "type": "error",
                        "message": "Invalid message format",
                        "code": "INVALID_JSON",
                    }));
                }
            })
            .error(|ws: &WebSocket, err: &verb::WsError| {
                tracing::info!(id = ws.id(), error = %err, "heartbeat-server: connection error");
            })
            .close(|ws: &WebSocket, code: CloseCode, _reason: &str| {
                tracing::info!(id = ws.id(), %code, "heartbeat-server: closed");
            }),
    );
    app.listen(cli.common.addr()).await?;
    Ok(())
}
