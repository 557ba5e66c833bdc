//! The WebSockets guide's heartbeat: the server sends an application-level `{"type":"ping"}` every
//! `--heartbeat-ms`; any message from the client (normally `{"type":"pong"}`) renews it, and a client
//! silent for `--client-timeout-ms` is closed with 1000. `GET /` serves a page with the guide's client
//! heartbeat and reconnect logic.
//!
//! ```text
//! cargo run --release -p examples --example heartbeat -- --heartbeat-ms 30000 --client-timeout-ms 90000
//! ```

use std::time::Duration;

use clap::Parser;
use examples::Common;
use serde_json::json;
use verb::prelude::*;

#[derive(Debug, Parser)]
#[command(about = "Verb's application-level heartbeat example")]
struct Cli {
    #[command(flatten)]
    common: Common,
    /// Milliseconds between the server's `{"type":"ping"}` messages.
    #[arg(long, default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1..))]
    heartbeat_ms: u64,
    /// Milliseconds a client may stay silent before it is closed.
    #[arg(long, default_value_t = 90_000, value_parser = clap::value_parser!(u64).range(1..))]
    client_timeout_ms: u64,
}

const PAGE: &str = include_str!("../pages/heartbeat.html");

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    examples::init_tracing();
    let timeout = Duration::from_millis(cli.client_timeout_ms);
    let renew = move |ws: &WebSocket| {
        ws.close_after(
            timeout,
            None,
            CloseCode::NORMAL,
            "Connection timeout due to inactivity",
        );
    };
    let mut app = verb::create_server();
    app.get("/", |_req| async { Response::html(PAGE) });

    // One timer for every connection: the ping is framed once and queued on each.
    let rooms = app.rooms().clone();
    let every = Duration::from_millis(cli.heartbeat_ms);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            tick.tick().await;
            rooms.everyone().json(&json!({ "type": "ping" }));
        }
    });

    app.ws(
        "/ws",
        Ws::new()
            .open(move |ws: &WebSocket, _req: &Request| {
                renew(ws);
                ws.send_json(&json!({
                    "type": "welcome",
                    "message": "Welcome to the WebSocket server!",
                }));
            })
            .message(move |ws: &WebSocket, _msg: Message| renew(ws))
            .close(|ws: &WebSocket, code: CloseCode, reason: &str| {
                tracing::info!(id = ws.id(), %code, reason, "heartbeat: closed");
            }),
    );
    app.listen(cli.common.addr()).await?;
    Ok(())
}
