//! The `tokio::sync::broadcast` peer: axum 0.8 WebSockets and one broadcast channel of shared messages,
//! the best common practice for fan-out on axum (its own chat example is built this way).
//!
//! Every text or binary message any client sends goes into the channel once (`tx.send`); each
//! connection's writer task receives it (`rx.recv`, a cheap clone of shared bytes) and sends it to its
//! socket. A receiver that falls more than `--capacity` messages behind loses the oldest ones
//! (`RecvError::Lagged`): it goes on, and the count is logged on shutdown, as the benchmark must show
//! losses rather than hide them.
//!
//! Protocol `plain-broadcast`: upgrades on any path; `--host`, `--port` (0 = a free port); prints
//! `listening on http://HOST:PORT` when ready.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::broadcast::{self, error::RecvError};
use verb_bench::peer::{self, PeerArgs};

#[derive(Debug, Parser)]
#[command(about = "axum broadcast through one tokio::sync::broadcast channel of shared messages")]
struct Cli {
    #[command(flatten)]
    peer: PeerArgs,
    /// Messages the channel holds for its slowest receiver before that receiver lags.
    #[arg(long, default_value_t = 1024)]
    capacity: usize,
}

#[derive(Clone)]
struct AppState {
    tx: broadcast::Sender<Message>,
    lagged: Arc<AtomicU64>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    anyhow::ensure!(cli.capacity > 0, "--capacity must be at least 1");
    let (tx, _) = broadcast::channel(cli.capacity);
    let state = AppState {
        tx,
        lagged: Arc::new(AtomicU64::new(0)),
    };
    let app = Router::new().fallback(upgrade).with_state(state.clone());
    peer::serve(&cli.peer, app).await?;
    let lagged = state.lagged.load(Ordering::Relaxed);
    if lagged > 0 {
        eprintln!("axum-broadcast: receivers lagged and lost {lagged} messages");
    }
    Ok(())
}

async fn upgrade(ws: WebSocketUpgrade, State(state): State<AppState>) -> Response {
    ws.on_upgrade(move |socket| connection(socket, state))
}

async fn connection(socket: WebSocket, state: AppState) {
    let (mut sink, mut stream) = socket.split();
    let mut rx = state.tx.subscribe();

    let lagged = state.lagged.clone();
    let mut writer = tokio::spawn(async move {
        loop {
            match rx.recv().await {
                Ok(msg) => {
                    if sink.send(msg).await.is_err() {
                        break;
                    }
                }
                Err(RecvError::Lagged(lost)) => {
                    lagged.fetch_add(lost, Ordering::Relaxed);
                }
                Err(RecvError::Closed) => break,
            }
        }
    });

    let tx = state.tx.clone();
    let mut reader = tokio::spawn(async move {
        while let Some(Ok(msg)) = stream.next().await {
            match msg {
                Message::Text(_) | Message::Binary(_) => {
                    // Err only when nobody listens, which cannot last: this connection does.
                    let _ = tx.send(msg);
                }
                Message::Close(_) => break,
                Message::Ping(_) | Message::Pong(_) => {}
            }
        }
    });

    // Whichever half ends first ends the connection.
    tokio::select! {
        _ = &mut writer => reader.abort(),
        _ = &mut reader => writer.abort(),
    }
}
