//! The echo peer: axum 0.8 WebSockets, every text or binary message sent back unchanged on the same
//! socket, one task per connection, as axum's documentation writes a WebSocket handler.
//!
//! Protocol `plain-echo`: upgrades on any path; `--host`, `--port` (0 = a free port); prints
//! `listening on http://HOST:PORT` when ready.

use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use clap::Parser;
use verb_bench::peer::{self, PeerArgs};

#[derive(Debug, Parser)]
#[command(about = "axum WebSocket echo server")]
struct Cli {
    #[command(flatten)]
    peer: PeerArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let app = Router::new().fallback(upgrade);
    peer::serve(&cli.peer, app).await
}

async fn upgrade(ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(connection)
}

async fn connection(mut socket: WebSocket) {
    while let Some(Ok(msg)) = socket.recv().await {
        match msg {
            Message::Text(_) | Message::Binary(_) => {
                if socket.send(msg).await.is_err() {
                    break;
                }
            }
            Message::Close(_) => break,
            Message::Ping(_) | Message::Pong(_) => {}
        }
    }
}
