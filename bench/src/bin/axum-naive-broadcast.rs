//! The naive broadcast peer: axum 0.8 WebSockets and a shared map of per-connection channels, the way
//! tutorials and chat examples for axum commonly write it.
//!
//! Every connection registers an unbounded `mpsc` sender in an `Arc<Mutex<HashMap<..>>>` and runs a
//! writer task that drains its channel into the socket. Every text or binary message any client sends
//! is cloned to every registered sender (the sender included) under the lock.
//!
//! Protocol `plain-broadcast`: upgrades on any path; `--host`, `--port` (0 = a free port); prints
//! `listening on http://HOST:PORT` when ready.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use verb_bench::peer::{self, PeerArgs};

#[derive(Debug, Parser)]
#[command(about = "axum broadcast through a Mutex<HashMap<id, UnboundedSender>> (the naive way)")]
struct Cli {
    #[command(flatten)]
    peer: PeerArgs,
}

type Peers = Arc<Mutex<HashMap<usize, mpsc::UnboundedSender<Message>>>>;

#[derive(Clone, Default)]
struct AppState {
    peers: Peers,
    next_id: Arc<AtomicUsize>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let app = Router::new()
        .fallback(upgrade)
        .with_state(AppState::default());
    peer::serve(&cli.peer, app).await
}

async fn upgrade(ws: WebSocketUpgrade, State(state): State<AppState>) -> Response {
    ws.on_upgrade(move |socket| connection(socket, state))
}

async fn connection(socket: WebSocket, state: AppState) {
    let id = state.next_id.fetch_add(1, Ordering::Relaxed);
    let (mut sink, mut stream) = socket.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
    lock(&state.peers).insert(id, tx);

    let mut writer = tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            if sink.send(msg).await.is_err() {
                break;
            }
        }
    });

    let mut reader = {
        let peers = state.peers.clone();
        tokio::spawn(async move {
            while let Some(Ok(msg)) = stream.next().await {
                match msg {
                    Message::Text(_) | Message::Binary(_) => {
                        for tx in lock(&peers).values() {
                            // A closed channel is a connection on its way out; it unregisters itself.
                            let _ = tx.send(msg.clone());
                        }
                    }
                    Message::Close(_) => break,
                    Message::Ping(_) | Message::Pong(_) => {}
                }
            }
        })
    };

    // Whichever half ends first ends the connection.
    tokio::select! {
        _ = &mut writer => reader.abort(),
        _ = &mut reader => writer.abort(),
    }
    lock(&state.peers).remove(&id);
}

/// The map stays usable even if a task panicked while holding it.
fn lock(
    peers: &Peers,
) -> std::sync::MutexGuard<'_, HashMap<usize, mpsc::UnboundedSender<Message>>> {
    peers.lock().unwrap_or_else(PoisonError::into_inner)
}
