//! Verb inside an axum app: an axum `Router` serves its own API and static files, and nests Verb's
//! chat (its page, its WebSockets, its metrics) under `/chat`. Served by axum.
//!
//! ```text
//! cargo run --release -p examples --example axum-mount -- --port 3000
//! curl localhost:3000/api/health          # {"status":"ok"}, from an axum handler
//! curl localhost:3000/static/chat.html    # tower-http ServeDir over examples/pages
//! open http://localhost:3000/chat/        # Verb's chat, its WebSocket at /chat/ws
//! ```
//!
//! SIGINT/SIGTERM: axum stops accepting and finishes its requests, and the chat's WebSockets get close
//! 1001 through the nested service's stop handle.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request};
use axum::middleware::Next;
use clap::Parser;
use examples::Common;
use serde_json::json;
use verb::{RemoteAddr, ShutdownSignal};

#[derive(Debug, Parser)]
#[command(about = "Verb's chat nested in an axum app")]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    origins: examples::Origins,
    #[command(flatten)]
    cors: examples::web::CorsOrigins,
}

/// Tells nested Verb apps the peer's address (axum keeps it in `ConnectInfo`).
async fn remote_addr(mut req: Request, next: Next) -> axum::response::Response {
    if let Some(ConnectInfo(addr)) = req.extensions().get::<ConnectInfo<SocketAddr>>().copied() {
        req.extensions_mut().insert(RemoteAddr(addr));
    }
    next.run(req).await
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    examples::init_tracing();
    // Before binding: a stop signal that arrives once `listening on` is logged is never lost.
    let mut signal = ShutdownSignal::install()?;

    let chat = examples::chat::app(&cli.origins)?.into_service();
    let chat_stop = chat.stop_handle();

    let mut api = axum::Router::new().route(
        "/api/health",
        axum::routing::get(|| async { axum::Json(json!({ "status": "ok" })) }),
    );
    if let Some(cors) = cli.cors.layer() {
        api = api.layer(cors);
    }
    let app = api
        .nest_service("/static", examples::web::static_files())
        .nest_service("/chat", chat)
        .layer(axum::middleware::from_fn(remote_addr));

    let listener = tokio::net::TcpListener::bind(cli.common.addr()).await?;
    tracing::info!("listening on http://{}", listener.local_addr()?);
    let (sockets_tx, sockets_rx) = tokio::sync::oneshot::channel();
    let stopping = async move {
        if let Err(err) = signal.recv().await {
            tracing::error!(error = %err, "cannot wait for a stop signal");
        }
        tracing::info!("shutdown signal received, stopping gracefully");
        // Upgraded WebSockets are no longer axum's to stop: say goodbye to them (1001) while axum
        // finishes its requests.
        let _ = sockets_tx.send(tokio::spawn(async move { chat_stop.stop().await }));
    };
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(stopping)
    .await?;
    if let Ok(sockets) = sockets_rx.await {
        if let Err(err) = sockets.await? {
            tracing::warn!(error = %err, "chat sockets dropped at the deadline");
        }
    }
    Ok(())
}
