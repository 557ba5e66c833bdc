//! The fastwebsockets echo peer: fastwebsockets 0.10 on hyper 1, every text or binary message sent
//! back unchanged on the same socket, written as fastwebsockets' `echo_server` example does it
//! (`FragmentCollector`, `read_frame` → `write_frame`, one task per connection).
//!
//! Protocol `plain-echo`: upgrades on any path; `--host`, `--port` (0 = a free port); prints
//! `listening on http://HOST:PORT` when ready.

use clap::Parser;
use fastwebsockets::upgrade::UpgradeFut;
use fastwebsockets::{FragmentCollector, OpCode, WebSocketError};
use verb_bench::fws;
use verb_bench::peer::PeerArgs;

#[derive(Debug, Parser)]
#[command(about = "fastwebsockets WebSocket echo server")]
struct Cli {
    #[command(flatten)]
    peer: PeerArgs,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    fws::serve(&cli.peer, connection)
}

async fn connection(fut: UpgradeFut) -> Result<(), WebSocketError> {
    let mut ws = FragmentCollector::new(fut.await?);
    loop {
        let frame = ws.read_frame().await?;
        match frame.opcode {
            OpCode::Close => break,
            OpCode::Text | OpCode::Binary => ws.write_frame(frame).await?,
            _ => {}
        }
    }
    Ok(())
}
