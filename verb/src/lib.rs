//! Verb: a WebSocket-first web framework for Rust, shaped like the docs' TypeScript API.
//!
//! `createServer()` becomes [`create_server()`], `app.get(path, handler)` stays `app.get(path, handler)`,
//! and `app.listen(3000)` stays `app.listen(3000)`. Handlers are async closures or functions that take a
//! [`Request`] and return anything that converts into a [`Response`].
//!
//! # Example
//!
//! ```no_run
//! use verb::prelude::*;
//!
//! #[tokio::main]
//! async fn main() -> Result<(), verb::Error> {
//!     let mut app = verb::create_server();
//!     app.get("/", |_req| async { Response::html("<h1>Hello from Verb</h1>") });
//!     app.get("/users/:id", |req: Request| async move {
//!         Json(serde_json::json!({ "id": req.param("id") }))
//!     });
//!     app.post("/echo", |req: Request| async move {
//!         let body: serde_json::Value = req.json()?; // bad JSON → 400 JSON error
//!         Ok::<_, HttpError>(Json(body))
//!     });
//!     app.listen(3000).await
//! }
//! ```
//!
//! # Crates
//!
//! Verb is a set of layered crates, each usable alone, re-exported here:
//!
//! | crate | owns |
//! |---|---|
//! | [`verb_core`] | the server, requests, responses, handlers, middleware, errors |
//! | [`verb_router`] | method and path routing with Express-style patterns |
//! | [`verb_ws`] | WebSockets |
//! | [`verb_auth`] | JWT authentication, roles, rate limiting |
//! | [`verb_rooms`] | rooms, topics and fan-out |
//!
//! Testing helpers live in [`mod@test`].

mod app;
pub mod client;
mod monitor;
pub mod test;

pub use app::{App, NestedFrom, Route, ServerProtocol};
pub use monitor::{MetricsError, Stats, StatsSnapshot};

#[doc(inline)]
pub use verb_core::{
    AllowedOrigin, Body, BodyError, BodyMode, BodyStream, BoxError, BoxFuture, Bytes,
    DevCertificate, Error, Handler, HandlerService, HeaderMap, HeaderName, HeaderValue, Html,
    HttpError, IntoResponse, InvalidOrigin, Json, JsonRejection, ListenAddr, Method, Middleware,
    Next, OnUpgrade, OriginPolicy, Params, QueryRejection, RemoteAddr, Request, Response, Server,
    ServerConfig, ServerHandle, ServiceHandler, ShutdownSignal, Sse, SseEvent, StatusCode,
    StopHandle, TextRejection, TlsConfig, TlsError, UpgradeError, Upgraded, header,
};

#[doc(inline)]
pub use verb_ws::{
    Attachment, CloseCode, Compression, ConnectionCount, Expiry, Message, OverCapacity,
    PreparedMessage, ReadyState, SendStatus, Verdict, WebSocket, WebSocketHandler, Ws, WsConfig,
    WsError,
};

#[doc(inline)]
pub use verb_auth::{
    Authenticated, Claims, ClaimsExt, HasRoles, InbandAuth, Jwt, JwtAuth, JwtError, KeyAlgorithm,
    MIN_SECRET_LEN, MessageRateLimit, RateLimit, RefreshClaims, TokenSource, require_role,
};

#[cfg(feature = "redis")]
#[doc(inline)]
pub use verb_rooms::RedisBackplane;
#[doc(inline)]
pub use verb_rooms::{
    Backplane, BackplaneError, Delivery, Greeting, JoinError, Joined, MemoryBackplane, Node,
    RoomLimits, Rooms, Scope, Target, Topics,
};

/// A new WebSocket endpoint to fill with callbacks: the same as [`Ws::new`].
pub fn ws() -> Ws {
    Ws::new()
}

pub use verb_auth;
pub use verb_core;
pub use verb_rooms;
pub use verb_router;
pub use verb_ws;

/// An HTTP application, as the docs' `createServer()`.
///
/// ```
/// let mut app = verb::create_server();
/// app.get("/health", |_req| async { verb::Json(serde_json::json!({ "status": "ok" })) });
/// ```
pub fn create_server() -> App {
    App::new(ServerProtocol::Http)
}

/// An application for `protocol`, as the docs' `createServer(ServerProtocol.WEBSOCKET)`.
///
/// ```
/// use verb::ServerProtocol;
///
/// let app = verb::create_server_with(ServerProtocol::WebSocket);
/// assert_eq!(app.protocol(), ServerProtocol::WebSocket);
/// ```
pub fn create_server_with(protocol: ServerProtocol) -> App {
    App::new(protocol)
}

/// The names most apps use: `use verb::prelude::*;`.
pub mod prelude {
    #[doc(no_inline)]
    pub use crate::{
        App, Claims, ClaimsExt, CloseCode, Delivery, Greeting, Html, HttpError, IntoResponse, Json,
        Message, Method, Next, Request, Response, Rooms, SendStatus, ServerConfig, ServerProtocol,
        StatusCode, Topics, WebSocket, Ws, WsConfig, create_server, create_server_with,
    };
}

/// The README's code blocks compile, as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
