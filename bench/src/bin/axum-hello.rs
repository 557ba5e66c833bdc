//! The HTTP peer: axum 0.8's hello world (`GET /` answers `Hello, World!`), as axum's README writes it.
//! The benchmark requests `/health` (so that Verb's `http` example answers its 15-byte JSON rather
//! than its HTML page), which answers the same here.
//!
//! Protocol: `--host`, `--port` (0 = a free port); prints `listening on http://HOST:PORT` when ready.

use axum::Router;
use axum::routing::get;
use clap::Parser;
use verb_bench::peer::{self, PeerArgs};

#[derive(Debug, Parser)]
#[command(about = "axum hello world over HTTP/1.1")]
struct Cli {
    #[command(flatten)]
    peer: PeerArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let hello = get(|| async { "Hello, World!" });
    let app = Router::new()
        .route("/", hello.clone())
        .route("/health", hello);
    peer::serve(&cli.peer, app).await
}
