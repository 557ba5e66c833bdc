//! What the fastwebsockets peers share: hyper 1 serving HTTP/1.1 with upgrades, and
//! `fastwebsockets::upgrade` turning each request into a WebSocket, as fastwebsockets' README and its
//! `echo_server` example do it: a current-thread tokio runtime, one task per connection, each
//! connection's handler run `tokio::task::unconstrained` (no cooperative yielding inside it).
//!
//! Every request is upgraded, whatever its path; a request that is not an upgrade gets an error and its
//! connection is closed.

use std::future::Future;

use anyhow::Context;
use fastwebsockets::WebSocketError;
use fastwebsockets::upgrade::{self, UpgradeFut};
use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

use crate::peer::{self, PeerArgs};

/// Serves `handle` (one call per upgraded connection) on `--host`/`--port` until SIGTERM or Ctrl-C,
/// after printing the listening line. Builds its own current-thread runtime.
pub fn serve<H, F>(args: &PeerArgs, handle: H) -> anyhow::Result<()>
where
    H: Fn(UpgradeFut) -> F + Clone + Send + 'static,
    F: Future<Output = Result<(), WebSocketError>> + Send + 'static,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot build the tokio runtime")?;
    runtime.block_on(async move {
        let listener = peer::listen(args).await?;
        let shutdown = peer::shutdown_signal();
        tokio::pin!(shutdown);
        loop {
            let stream = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    // Out of file descriptors and the like: the next accept may succeed.
                    Err(_) => continue,
                },
                () = &mut shutdown => return Ok(()),
            };
            // Failing to set an option on one socket is not worth dropping the connection for.
            let _ = stream.set_nodelay(true);
            let handle = handle.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| upgrade_with(req, handle.clone()));
                // A connection that ends badly concerns that connection only.
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades()
                    .await;
            });
        }
    })
}

/// Answers the upgrade and runs `handle` on the WebSocket once hyper hands the connection over.
async fn upgrade_with<H, F>(
    mut req: Request<Incoming>,
    handle: H,
) -> Result<Response<Empty<Bytes>>, WebSocketError>
where
    H: Fn(UpgradeFut) -> F + Send + 'static,
    F: Future<Output = Result<(), WebSocketError>> + Send + 'static,
{
    let (response, fut) = upgrade::upgrade(&mut req)?;
    tokio::spawn(async move {
        // Errors are the peer going away (the load generator exits without a close handshake).
        let _ = tokio::task::unconstrained(handle(fut)).await;
    });
    Ok(response)
}
