//! The guide's real-time chat: every client sees every message and the number of people online.
//! `GET /` serves the chat page and `GET /metrics` Prometheus metrics; WebSockets are served on every
//! path. The app itself lives in `examples::chat` (the `axum-mount` example nests it in axum).
//!
//! ```text
//! cargo run --release -p examples --example chat
//! ```
//!
//! Messages: open and close ⇒ all `{"type":"userCount","count":n}`;
//! `{"type":"message","username":u,"message":m}` ⇒ all `{"type":"message","username":u,"message":m,
//! "timestamp":t}`; anything else → `{"type":"error","message":"Invalid message format"}`.

use clap::Parser;
use examples::Common;

#[derive(Debug, Parser)]
#[command(about = "Verb's real-time chat example")]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    origins: examples::Origins,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    examples::init_tracing();
    examples::chat::app(&cli.origins)?
        .listen(cli.common.addr())
        .await?;
    Ok(())
}
