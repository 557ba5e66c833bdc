//! The fastwebsockets broadcast peer: fastwebsockets 0.10 on hyper 1 and one `tokio::sync::broadcast`
//! channel of shared bytes, the same design as the `axum-broadcast` peer.
//!
//! Each connection is split (`WebSocket::split`, as fastwebsockets' `echo_server_split` example does):
//! its reader copies every text or binary message once into `Bytes` and sends it into the channel; its
//! writer task receives each message (a cheap clone) and writes it as one frame. A receiver that falls
//! more than `--capacity` messages behind loses the oldest ones (`Lagged`), counted and logged on
//! shutdown. As in that example, frames the protocol obliges the reader to answer (pongs, the close
//! reply) are not sent: the load generator sends no pings.
//!
//! Protocol `plain-broadcast`: upgrades on any path; `--host`, `--port` (0 = a free port); prints
//! `listening on http://HOST:PORT` when ready.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use clap::Parser;
use fastwebsockets::upgrade::UpgradeFut;
use fastwebsockets::{FragmentCollectorRead, Frame, OpCode, Payload, WebSocketError};
use hyper::body::Bytes;
use tokio::sync::broadcast::{self, error::RecvError};
use verb_bench::fws;
use verb_bench::peer::PeerArgs;

#[derive(Debug, Parser)]
#[command(
    about = "fastwebsockets broadcast through one tokio::sync::broadcast channel of shared bytes"
)]
struct Cli {
    #[command(flatten)]
    peer: PeerArgs,
    /// Messages the channel holds for its slowest receiver before that receiver lags.
    #[arg(long, default_value_t = 1024)]
    capacity: usize,
}

/// One message, as every connection's writer receives it.
#[derive(Debug, Clone)]
struct Shared {
    opcode: OpCode,
    payload: Bytes,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    anyhow::ensure!(cli.capacity > 0, "--capacity must be at least 1");
    let (tx, _) = broadcast::channel::<Shared>(cli.capacity);
    let lagged = Arc::new(AtomicU64::new(0));
    let counter = lagged.clone();
    fws::serve(&cli.peer, move |fut| {
        connection(fut, tx.clone(), counter.clone())
    })?;
    let lagged = lagged.load(Ordering::Relaxed);
    if lagged > 0 {
        eprintln!("fastwebsockets-broadcast: receivers lagged and lost {lagged} messages");
    }
    Ok(())
}

async fn connection(
    fut: UpgradeFut,
    tx: broadcast::Sender<Shared>,
    lagged: Arc<AtomicU64>,
) -> Result<(), WebSocketError> {
    let (read, mut write) = fut.await?.split(tokio::io::split);
    let mut read = FragmentCollectorRead::new(read);
    let mut rx = tx.subscribe();
    let writer = tokio::spawn(tokio::task::unconstrained(async move {
        loop {
            match rx.recv().await {
                Ok(msg) => {
                    let frame = Frame::new(true, msg.opcode, None, Payload::Borrowed(&msg.payload));
                    if write.write_frame(frame).await.is_err() {
                        break;
                    }
                }
                Err(RecvError::Lagged(lost)) => {
                    lagged.fetch_add(lost, Ordering::Relaxed);
                }
                Err(RecvError::Closed) => break,
            }
        }
    }));
    let result = async {
        loop {
            let frame = read
                .read_frame(&mut |_| async { Ok::<_, WebSocketError>(()) })
                .await?;
            match frame.opcode {
                OpCode::Close => return Ok(()),
                OpCode::Text | OpCode::Binary => {
                    let payload = Bytes::copy_from_slice(&frame.payload);
                    // Err only when nobody listens, which cannot last: this connection does.
                    let _ = tx.send(Shared {
                        opcode: frame.opcode,
                        payload,
                    });
                }
                _ => {}
            }
        }
    }
    .await;
    writer.abort();
    result
}
