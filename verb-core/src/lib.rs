//! The HTTP core of Verb: a hyper 1 + tokio server, requests and responses, handlers, the middleware
//! chain, typed errors and graceful shutdown.
//!
//! Most users reach this crate through the `verb` facade (`verb::create_server()`), which adds routing
//! and WebSockets on top. It is usable alone: a [`Server`] answers every request with one [`Handler`],
//! which may be a [`Chain`] of [`Middleware`] ending in a handler.
//!
//! What the server guarantees, whatever the handler does:
//! - request heads over 16 KiB get `431`, malformed request lines `400`, and a client that has not sent a
//!   complete head 10 s after connecting is dropped (all configurable in [`ServerConfig`]);
//! - bodies over 1 MiB get `413` with a JSON error; a body not received within 30 s gets `408`;
//! - a panicking handler costs that request a `500`; the server keeps serving;
//! - every request runs in a debug-level `tracing` span `request` with `method`, `path`, `status` and
//!   `latency_us`; a `5xx` is logged at `error` with its method and path.
//!
//! Errors a client causes are answered as JSON `{"error": "<reason>", "message": "<detail>"}`
//! ([`HttpError`]).
//!
//! # Example
//!
//! ```no_run
//! use verb_core::{Chain, Next, Request, Response, Server};
//! use std::sync::Arc;
//!
//! #[tokio::main]
//! async fn main() -> Result<(), verb_core::Error> {
//!     let log = |req: Request, next: Next| async move {
//!         let path = req.path().to_owned();
//!         let res = next.run(req).await;
//!         tracing::info!(%path, status = %res.status());
//!         res
//!     };
//!     let hello = |_req: Request| async { Response::html("<h1>Hello</h1>") };
//!     Server::new(Chain::new(vec![Arc::new(log)], Arc::new(hello)))
//!         .listen("127.0.0.1:3000")
//!         .await
//! }
//! ```
//!
//! The `http` crate's types ([`StatusCode`], [`Method`], [`HeaderMap`], ...) are Verb's vocabulary for
//! HTTP and are re-exported here.

mod answers;
mod body;
mod conn;
mod error;
mod handler;
mod origin;
mod request;
mod response;
mod server;
pub mod service;
mod sse;
mod stop;
mod tls;
pub mod upgrade;

pub use body::{Body, BodyError, BodyStream, BoxError};
pub use error::{Error, HttpError, JsonRejection, ListenAddr, QueryRejection, TextRejection};
pub use handler::{
    BodyMode, BoxFuture, BoxHandler, BoxMiddleware, Chain, Handler, Middleware, Next,
};
pub use origin::{AllowedOrigin, InvalidOrigin, OriginPolicy};
pub use request::{InvalidParam, Params, Request, RequestBuilder};
pub use response::{Html, IntoResponse, Json, Response};
pub use server::{Lifecycle, Server, ServerConfig, ServerHandle, ShutdownSignal, shutdown_signal};
pub use service::{HandlerService, HttpService, RemoteAddr, ServiceHandler, StopHandle};
pub use sse::{DEFAULT_KEEP_ALIVE, Sse, SseEvent};
pub use stop::{StopListener, StopRegistration, StopSignal};
pub use tls::{DevCertificate, TlsConfig, TlsError};
pub use upgrade::{OnUpgrade, UpgradeError, Upgraded};

pub use bytes::Bytes;
pub use http::{
    self, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, Version, header,
};
