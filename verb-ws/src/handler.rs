//! Callbacks: the trait, and the closure builder that mirrors the docs' `{ open, message, close }`.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use verb_core::{BoxFuture, Handler, OriginPolicy, Request, Response};

use crate::attach::{Attachment, Attachments};
use crate::config::{OverCapacity, WsConfig};
use crate::error::WsError;
use crate::message::{CloseCode, Message};
use crate::socket::WebSocket;
use crate::stats::EndpointMetrics;

/// The callbacks of a WebSocket endpoint. Every method has an empty default: implement those you need.
///
/// Callbacks run on the connection's own task, one at a time per connection, in order. They are plain
/// functions, not futures: sending only queues, so nothing in them needs to wait. To do slow work,
/// spawn a task and send from it.
pub trait WebSocketHandler: Send + Sync + 'static {
    /// The connection is open; `req` is the upgrade request (params, query, headers, and whatever
    /// middleware attached).
    fn open(&self, ws: &WebSocket, req: &Request) {
        let _ = (ws, req);
    }

    /// A complete message arrived.
    fn message(&self, ws: &WebSocket, message: Message) {
        let _ = (ws, message);
    }

    /// The connection ended, with the code and reason of the close frame that ended it (1006 when none
    /// did). Runs exactly once per connection.
    fn close(&self, ws: &WebSocket, code: CloseCode, reason: &str) {
        let _ = (ws, code, reason);
    }

    /// The peer broke the protocol or the connection failed; `close` follows.
    fn error(&self, ws: &WebSocket, error: &WsError) {
        let _ = (ws, error);
    }

    /// The send queue, which had gone over the backpressure limit, has emptied.
    fn drain(&self, ws: &WebSocket) {
        let _ = ws;
    }
}

type OpenFn = dyn Fn(&WebSocket, &Request) + Send + Sync;
type MessageFn = dyn Fn(&WebSocket, Message) + Send + Sync;
type CloseFn = dyn Fn(&WebSocket, CloseCode, &str) + Send + Sync;
type ErrorFn = dyn Fn(&WebSocket, &WsError) + Send + Sync;
type DrainFn = dyn Fn(&WebSocket) + Send + Sync;

#[derive(Default, Clone)]
struct Callbacks {
    open: Option<Arc<OpenFn>>,
    message: Option<Arc<MessageFn>>,
    close: Option<Arc<CloseFn>>,
    error: Option<Arc<ErrorFn>>,
    drain: Option<Arc<DrainFn>>,
}

impl WebSocketHandler for Callbacks {
    fn open(&self, ws: &WebSocket, req: &Request) {
        if let Some(open) = &self.open {
            open(ws, req);
        }
    }
    fn message(&self, ws: &WebSocket, message: Message) {
        if let Some(on_message) = &self.message {
            on_message(ws, message);
        }
    }
    fn close(&self, ws: &WebSocket, code: CloseCode, reason: &str) {
        if let Some(close) = &self.close {
            close(ws, code, reason);
        }
    }
    fn error(&self, ws: &WebSocket, error: &WsError) {
        if let Some(on_error) = &self.error {
            on_error(ws, error);
        }
    }
    fn drain(&self, ws: &WebSocket) {
        if let Some(drain) = &self.drain {
            drain(ws);
        }
    }
}

/// How many WebSockets are open, shared by every endpoint it is attached to.
#[derive(Debug, Clone, Default)]
pub struct ConnectionCount(Arc<AtomicUsize>);

impl ConnectionCount {
    /// A count starting at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of open WebSockets.
    pub fn get(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }

    pub(crate) fn try_acquire(&self, max: Option<usize>) -> Option<ConnectionSlot> {
        let previous = self.0.fetch_add(1, Ordering::AcqRel);
        let slot = ConnectionSlot(self.clone());
        match max {
            Some(max) if previous >= max => None, // the slot drops here and gives the count back
            _ => Some(slot),
        }
    }
}

/// One counted connection; gives its place back when dropped.
pub(crate) struct ConnectionSlot(ConnectionCount);

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        (self.0).0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A WebSocket endpoint: callbacks plus [`WsConfig`]; a [`Handler`] that answers upgrade requests.
///
/// Build it like the docs' object literal, with the callbacks you need, and mount it with
/// `app.ws(path, ws)` or `app.websocket(ws)`.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use verb_ws::{CloseCode, Message, WebSocket, Ws};
///
/// let chat = Ws::new()
///     .open(|ws: &WebSocket, _req| {
///         ws.send_text("Welcome!");
///     })
///     .message(|ws: &WebSocket, msg: Message| {
///         if let Some(text) = msg.as_text() {
///             ws.send_text(format!("Echo: {text}"));
///         }
///     })
///     .close(|ws: &WebSocket, code: CloseCode, _reason: &str| {
///         tracing::info!(id = ws.id(), %code, "gone");
///     })
///     .idle_timeout(Duration::from_secs(120));
/// # let _ = chat;
/// ```
#[derive(Clone)]
#[must_use = "a WebSocket endpoint does nothing until mounted with `app.ws` or `app.websocket`"]
pub struct Ws {
    pub(crate) handler: Arc<dyn WebSocketHandler>,
    pub(crate) config: Arc<WsConfig>,
    pub(crate) count: ConnectionCount,
    pub(crate) attachments: Attachments,
    pub(crate) metrics: EndpointMetrics,
    callbacks: Callbacks,
}

impl Default for Ws {
    fn default() -> Self {
        Self::new()
    }
}

impl Ws {
    /// An endpoint with no callbacks and the default [`WsConfig`].
    pub fn new() -> Self {
        Self {
            handler: Arc::new(Callbacks::default()),
            config: Arc::new(WsConfig::default()),
            count: ConnectionCount::new(),
            attachments: Attachments::default(),
            metrics: EndpointMetrics::default(),
            callbacks: Callbacks::default(),
        }
    }

    /// An endpoint whose callbacks are a [`WebSocketHandler`] implementation. (Adding a closure
    /// callback afterwards replaces it with the closures.)
    pub fn with_handler(handler: impl WebSocketHandler) -> Self {
        Self {
            handler: Arc::new(handler),
            ..Self::new()
        }
    }

    fn set(mut self, f: impl FnOnce(&mut Callbacks)) -> Self {
        f(&mut self.callbacks);
        self.handler = Arc::new(self.callbacks.clone());
        self
    }

    /// Runs when a connection opens, with the upgrade request.
    pub fn open(self, f: impl Fn(&WebSocket, &Request) + Send + Sync + 'static) -> Self {
        self.set(|c| c.open = Some(Arc::new(f)))
    }

    /// Runs for every complete message.
    pub fn message(self, f: impl Fn(&WebSocket, Message) + Send + Sync + 'static) -> Self {
        self.set(|c| c.message = Some(Arc::new(f)))
    }

    /// Runs once when a connection ends, with the close code and reason.
    pub fn close(self, f: impl Fn(&WebSocket, CloseCode, &str) + Send + Sync + 'static) -> Self {
        self.set(|c| c.close = Some(Arc::new(f)))
    }

    /// Runs when the peer breaks the protocol or the connection fails.
    pub fn error(self, f: impl Fn(&WebSocket, &WsError) + Send + Sync + 'static) -> Self {
        self.set(|c| c.error = Some(Arc::new(f)))
    }

    /// Runs when a send queue that went over the backpressure limit has emptied.
    pub fn drain(self, f: impl Fn(&WebSocket) + Send + Sync + 'static) -> Self {
        self.set(|c| c.drain = Some(Arc::new(f)))
    }

    /// Replaces the whole configuration.
    pub fn config(mut self, config: WsConfig) -> Self {
        self.config = Arc::new(config);
        self
    }

    fn tune(mut self, f: impl FnOnce(WsConfig) -> WsConfig) -> Self {
        self.config = Arc::new(f((*self.config).clone()));
        self
    }

    /// See [`WsConfig::max_payload_length`].
    pub fn max_payload_length(self, bytes: usize) -> Self {
        self.tune(|c| c.max_payload_length(bytes))
    }

    /// See [`WsConfig::idle_timeout`].
    pub fn idle_timeout(self, timeout: impl Into<Option<std::time::Duration>>) -> Self {
        let timeout = timeout.into();
        self.tune(|c| c.idle_timeout(timeout))
    }

    /// See [`WsConfig::backpressure_limit`].
    pub fn backpressure_limit(self, bytes: usize) -> Self {
        self.tune(|c| c.backpressure_limit(bytes))
    }

    /// See [`WsConfig::protocols`].
    pub fn protocols<I, S>(self, protocols: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let protocols: Vec<String> = protocols.into_iter().map(Into::into).collect();
        self.tune(|c| c.protocols(protocols))
    }

    /// See [`WsConfig::max_connections`].
    pub fn max_connections(self, max: usize) -> Self {
        self.tune(|c| c.max_connections(max))
    }

    /// See [`WsConfig::over_capacity`].
    pub fn over_capacity(self, policy: OverCapacity) -> Self {
        self.tune(|c| c.over_capacity(policy))
    }

    /// See [`WsConfig::compression`].
    pub fn compression(self, enabled: bool) -> Self {
        self.tune(|c| c.compression(enabled))
    }

    /// See [`WsConfig::close_timeout`].
    pub fn close_timeout(self, timeout: std::time::Duration) -> Self {
        self.tune(|c| c.close_timeout(timeout))
    }

    /// See [`WsConfig::allowed_origins`].
    #[track_caller]
    pub fn allowed_origins<I, S>(self, origins: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let config = (*self.config).clone().allowed_origins(origins);
        self.config(config)
    }

    /// See [`WsConfig::any_origin`].
    pub fn any_origin(self) -> Self {
        self.tune(WsConfig::any_origin)
    }

    /// See [`WsConfig::origin_policy`].
    pub fn origin_policy(self, policy: OriginPolicy) -> Self {
        self.tune(|c| c.origin_policy(policy))
    }

    /// The endpoint's origin policy. A host that runs middleware before the endpoint (the `verb`
    /// facade does) runs this first, so a cross-site upgrade is refused before auth or app code.
    pub fn get_origin_policy(&self) -> &OriginPolicy {
        &self.config.origin
    }

    /// See [`WsConfig::compression_with`].
    pub fn compression_with(self, settings: crate::Compression) -> Self {
        self.tune(|c| c.compression_with(settings))
    }

    /// Counts this endpoint's connections in `count` (shared with other endpoints) instead of its own.
    pub fn count_into(mut self, count: &ConnectionCount) -> Self {
        self.count = count.clone();
        self
    }

    /// Attaches `attachment` to the endpoint: its hooks follow every connection, and connections reach
    /// it with [`WebSocket::attachment`]. Attachments run in the order they were attached.
    pub fn attach(mut self, attachment: impl Attachment) -> Self {
        self.attachments = self.attachments.with(Arc::new(attachment));
        self
    }

    /// The attachment of type `T`, if one was attached.
    pub fn attachment<T: Attachment>(&self) -> Option<&T> {
        self.attachments.get::<T>()
    }

    /// How many connections of this endpoint are open.
    pub fn connections(&self) -> usize {
        self.count.get()
    }

    /// The configuration.
    pub fn get_config(&self) -> &WsConfig {
        &self.config
    }
}

impl Ws {
    /// This endpoint alone as a tower service, for an app that is not Verb's: an axum route
    /// (`Router::route_service("/ws", ws.into_service())`), or hyper directly. Upgrades run over the
    /// host server's connection (hyper's upgrade) with every callback, limit and compression setting
    /// of the endpoint; attach a `Rooms` hub with [`attach`](Self::attach) for rooms. The host's
    /// shutdown reaches the sockets through the service's
    /// [`stop_handle`](verb_core::HandlerService::stop_handle) (close 1001).
    ///
    /// ```
    /// use verb_ws::{Message, WebSocket, Ws};
    ///
    /// let service = Ws::new()
    ///     .message(|ws: &WebSocket, msg: Message| {
    ///         ws.send(msg);
    ///     })
    ///     .into_service();
    /// let stop = service.stop_handle();
    /// # let _ = stop;
    /// ```
    pub fn into_service(self) -> verb_core::HandlerService {
        verb_core::HandlerService::new(self)
    }
}

impl Handler for Ws {
    fn call(&self, req: Request) -> BoxFuture<Response> {
        let response = crate::upgrade::upgrade(self, req);
        Box::pin(async move { response })
    }
}

impl fmt::Debug for Ws {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ws")
            .field("config", &self.config)
            .field("connections", &self.count.get())
            .field("attachments", &self.attachments.len())
            .finish_non_exhaustive()
    }
}

pub(crate) fn over_capacity_message(config: &WsConfig) -> Option<&str> {
    match &config.over_capacity {
        OverCapacity::CloseWith(message) => Some(message),
        OverCapacity::Refuse => None,
    }
}
