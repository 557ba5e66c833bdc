//! The HTTP/2 peer: the same axum 0.8 hello world as `axum-hello`, served over HTTP/2 with prior
//! knowledge (h2c) by hyper's HTTP/2 connection builder, one task per connection, as hyper's own
//! examples serve a tower service.
//!
//! Protocol: `--host`, `--port` (0 = a free port); prints `listening on http://HOST:PORT` when ready.

use axum::Router;
use axum::routing::get;
use clap::Parser;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use verb_bench::peer::{self, PeerArgs};

#[derive(Debug, Parser)]
#[command(about = "axum hello world over HTTP/2 (h2c)")]
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
    let listener = peer::listen(&cli.peer).await?;
    let accept = async {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let service = TowerToHyperService::new(app.clone());
            tokio::spawn(async move {
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    };
    tokio::select! {
        () = accept => {}
        () = peer::shutdown_signal() => {}
    }
    Ok(())
}
