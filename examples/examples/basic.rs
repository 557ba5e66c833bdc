//! The guide's basic WebSocket server: `createServer(ServerProtocol.WEBSOCKET)` + `app.websocket(...)`.
//! Upgrades on any path; `GET /` serves a demo page.
//!
//! ```text
//! cargo run --release -p examples --example basic
//! ```

use clap::Parser;
use examples::Common;
use verb::prelude::*;

#[derive(Debug, Parser)]
#[command(about = "Verb's basic WebSocket example")]
struct Cli {
    #[command(flatten)]
    common: Common,
}

/// The demo page; it connects back to the host that served it (`ws://`, or `wss://` over HTTPS).
const PAGE: &str = include_str!("../pages/basic.html");

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    examples::init_tracing();
    let mut app = verb::create_server_with(ServerProtocol::WebSocket);
    app.get("/", |_req| async { Response::html(PAGE) });
    app.websocket(
        Ws::new()
            .open(|ws: &WebSocket, _req: &Request| {
                tracing::info!(id = ws.id(), peer = %ws.remote_addr(), "client connected");
                ws.send_text("Welcome to WebSocket server!");
            })
            .message(|ws: &WebSocket, msg: Message| {
                let text = match &msg {
                    Message::Text(text) => text.to_string(),
                    Message::Binary(bytes) => String::from_utf8_lossy(bytes).into_owned(),
                };
                ws.send_text(format!("Echo: {text}"));
            })
            .close(|ws: &WebSocket, code: CloseCode, _reason: &str| {
                tracing::info!(id = ws.id(), %code, "client disconnected");
            }),
    );
    app.listen(cli.common.addr()).await?;
    Ok(())
}
