//! The HTTP/1.1 server: accepting connections, reading requests within limits, running the handler,
//! and stopping gracefully.

use std::convert::Infallible;
use std::fmt;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::FutureExt;
use http::StatusCode;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, field};

use crate::answers::AppHeads;
use crate::body::{Body, BodyStream, BoxError, EndsAt};
use crate::conn::Connection;
use crate::error::{Error, HttpError, ListenAddr};
use crate::handler::{BodyMode, BoxHandler, Handler};
use crate::request::Request;
use crate::response::{IntoResponse, Response};
use crate::stop::{Listeners, StopListener, StopRegistration, StopSignal};
use crate::tls::TlsConfig;

/// Limits and timeouts of a [`Server`].
///
/// Every setter documents its default; [`ServerConfig::default()`] gives them all.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use verb_core::ServerConfig;
///
/// let config = ServerConfig::new()
///     .body_limit(4 * 1024 * 1024)
///     .header_read_timeout(Duration::from_secs(5));
/// assert_eq!(config.get_body_limit(), 4 * 1024 * 1024);
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct ServerConfig {
    body_limit: usize,
    max_header_size: usize,
    max_headers: usize,
    header_read_timeout: Duration,
    body_read_timeout: Duration,
    write_timeout: Duration,
    max_connections: Option<usize>,
    shutdown_timeout: Duration,
    max_concurrent_streams: u32,
    http2_keep_alive: (Duration, Duration),
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            body_limit: 1024 * 1024,
            max_header_size: 16 * 1024,
            max_headers: HYPER_MAX_HEADERS,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
            max_connections: None,
            shutdown_timeout: Duration::from_secs(10),
            max_concurrent_streams: 200,
            http2_keep_alive: (Duration::from_secs(20), Duration::from_secs(20)),
        }
    }
}

/// The smallest header size limit hyper's HTTP/1 parser allows.
const MIN_HEADER_BUF: usize = 8 * 1024;

impl ServerConfig {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Largest request body accepted, in bytes; larger bodies get `413 Payload Too Large`.
    ///
    /// Default is 1 MiB.
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// Largest request head (request line and all headers), in bytes; larger heads get
    /// `431 Request Header Fields Too Large` and the connection is closed.
    ///
    /// Default is 16 KiB.
    pub fn max_header_size(mut self, bytes: usize) -> Self {
        self.max_header_size = bytes;
        self
    }

    /// Most header fields accepted in one request; more get `431`.
    ///
    /// Default is 100.
    pub fn max_headers(mut self, count: usize) -> Self {
        self.max_headers = count;
        self
    }

    /// How long a client has to send a complete request head, counted from the moment the connection is
    /// accepted (or, on a kept-alive connection, from the end of the previous response). A client that
    /// is slower is disconnected, which defeats slowloris attacks.
    ///
    /// Default is 10 seconds.
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }

    /// How long a client has to send the whole body once the head has arrived; slower clients get
    /// `408 Request Timeout`.
    ///
    /// Default is 30 seconds.
    pub fn body_read_timeout(mut self, timeout: Duration) -> Self {
        self.body_read_timeout = timeout;
        self
    }

    /// How long a response write may make no progress (a client that stopped reading, with its
    /// socket buffers full) before the connection is dropped. Each write that moves bytes restarts
    /// the clock, so a slow but reading client is served to the end. `Duration::ZERO` turns it off.
    ///
    /// Default is 30 seconds.
    pub fn write_timeout(mut self, timeout: Duration) -> Self {
        self.write_timeout = timeout;
        self
    }

    /// Most HTTP connections served at once (counted from accept, TLS handshakes included;
    /// WebSockets leave the count once upgraded and have their own limit on the endpoint). A
    /// connection over it is answered `503 Service Unavailable` with the JSON error body and
    /// `Retry-After: 1`, then closed (over TLS it is closed at once, before any handshake), and
    /// counted in `verb_http_connections_refused_total`.
    ///
    /// Default is none (no limit).
    pub fn max_connections(mut self, connections: usize) -> Self {
        self.max_connections = Some(connections);
        self
    }

    /// The write timeout.
    pub fn get_write_timeout(&self) -> Duration {
        self.write_timeout
    }

    /// The HTTP connection limit, if any.
    pub fn get_max_connections(&self) -> Option<usize> {
        self.max_connections
    }

    /// How long a graceful stop waits for in-flight requests before dropping the connections left.
    ///
    /// Default is 10 seconds.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// The body limit in bytes.
    pub fn get_body_limit(&self) -> usize {
        self.body_limit
    }

    /// The header size limit in bytes.
    pub fn get_max_header_size(&self) -> usize {
        self.max_header_size
    }

    /// The header read timeout.
    pub fn get_header_read_timeout(&self) -> Duration {
        self.header_read_timeout
    }

    /// How long a request body may take to arrive.
    pub fn get_body_read_timeout(&self) -> Duration {
        self.body_read_timeout
    }

    /// The graceful stop's deadline.
    pub fn get_shutdown_timeout(&self) -> Duration {
        self.shutdown_timeout
    }

    /// HTTP/2: how many streams (requests, WebSockets over RFC 8441) a client may have open at once on
    /// one connection (`SETTINGS_MAX_CONCURRENT_STREAMS`; default 200). Streams beyond it are refused
    /// by the protocol (`REFUSED_STREAM`); the connection stays.
    pub fn max_concurrent_streams(mut self, streams: u32) -> Self {
        self.max_concurrent_streams = streams.max(1);
        self
    }

    /// HTTP/2: a connection quiet for `interval` is pinged, and dropped when the answer has not come
    /// `timeout` later (default 20 s and 20 s): a peer that vanished without a FIN does not keep its
    /// streams (and WebSockets) forever.
    pub fn http2_keep_alive(mut self, interval: Duration, timeout: Duration) -> Self {
        self.http2_keep_alive = (interval, timeout);
        self
    }

    /// The HTTP/2 concurrent stream limit.
    pub fn get_max_concurrent_streams(&self) -> u32 {
        self.max_concurrent_streams
    }

    /// HTTP/2, for clients that speak it (ALPN `h2` over TLS, the preface over plain TCP).
    fn http2(&self) -> http2::Builder<TokioExecutor> {
        let mut builder = http2::Builder::new(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .max_concurrent_streams(self.max_concurrent_streams)
            // The head limit, as for HTTP/1.1 (the decoded header list; HPACK's table aside).
            .max_header_list_size(u32::try_from(self.max_header_size).unwrap_or(u32::MAX))
            // A peer that stops answering pings is gone.
            .keep_alive_interval(Some(self.http2_keep_alive.0))
            .keep_alive_timeout(self.http2_keep_alive.1)
            // RFC 8441: WebSockets over HTTP/2 streams (extended CONNECT).
            .enable_connect_protocol();
        builder
    }

    fn http1(&self) -> http1::Builder {
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_read_timeout)
            .max_header_size(self.max_header_size)
            // hyper refuses buffers under 8 KiB; the head limit above is what clients see.
            .max_buf_size(self.max_header_size.max(MIN_HEADER_BUF) + MIN_HEADER_BUF)
            // A client may shut down its write side once its request is out (`nc -N`, some
            // proxies); it still gets its answer. Without this hyper drops the connection at that
            // EOF, racing the handler (found by the `http_request`/`ws_frames` fuzz targets).
            .half_close(true)
            .keep_alive(true);
        // hyper's own default is the same 100 headers, parsed into arrays on the stack; an explicit
        // count makes it fill a vector of that many slots for every request.
        if self.max_headers != HYPER_MAX_HEADERS {
            builder.max_headers(self.max_headers);
        }
        builder
    }
}

/// How many headers hyper accepts when not told otherwise (`ServerConfig::max_headers`' default).
const HYPER_MAX_HEADERS: usize = 100;

/// An HTTP/1.1 server for one [`Handler`].
///
/// Usually reached through the `verb` facade (`app.listen(3000)`); usable alone with any handler.
///
/// # Example
///
/// ```no_run
/// use verb_core::{Request, Server};
///
/// # async fn run() -> Result<(), verb_core::Error> {
/// Server::new(|req: Request| async move { format!("you asked for {}", req.path()) })
///     .listen(3000) // runs until Ctrl-C or SIGTERM, then stops gracefully
///     .await
/// # }
/// ```
#[derive(Clone)]
#[must_use = "a server does nothing until `listen` or `bind` is awaited"]
pub struct Server {
    handler: BoxHandler,
    config: ServerConfig,
    tls: Option<TlsConfig>,
}

impl Server {
    /// A server answering with `handler`, with the default [`ServerConfig`].
    pub fn new(handler: impl Handler) -> Self {
        Self::from_boxed(Arc::new(handler))
    }

    /// A server answering with an already shared handler.
    pub fn from_boxed(handler: BoxHandler) -> Self {
        Self {
            handler,
            config: ServerConfig::default(),
            tls: None,
        }
    }

    /// Serves HTTPS (and WSS) with `tls` instead of plain HTTP. A client that fails the handshake
    /// (speaks plain HTTP, sends garbage, or stalls past the handshake timeout) is logged and dropped
    /// without touching other connections.
    ///
    /// To serve plain HTTP and TLS side by side, clone the server before adding TLS and bind both.
    pub fn tls(mut self, tls: TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Serves plain HTTP (undoes [`tls`](Self::tls)).
    pub fn without_tls(mut self) -> Self {
        self.tls = None;
        self
    }

    /// Whether this server speaks TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Replaces the configuration.
    pub fn config(mut self, config: ServerConfig) -> Self {
        self.config = config;
        self
    }

    /// Binds `addr`, logs `listening on http://ADDR` and serves until Ctrl-C or SIGTERM, then stops
    /// gracefully (see [`ServerHandle::stop`]).
    ///
    /// # Errors
    ///
    /// When the address cannot be bound, the signal handler cannot be installed, or the graceful stop
    /// passes its deadline.
    ///
    /// The signal handlers are installed before the address is bound, so the `listening on` line means
    /// "ready" in full: a SIGTERM sent the moment it appears (or even before, once `listen` has begun)
    /// stops the server gracefully instead of killing the process.
    pub async fn listen(self, addr: impl Into<ListenAddr>) -> Result<(), Error> {
        let mut signal = ShutdownSignal::install()?;
        let scheme = if self.is_tls() { "https" } else { "http" };
        let handle = self.bind(addr).await?;
        tracing::info!("listening on {scheme}://{}", handle.local_addr());
        tokio::select! {
            signal = signal.recv() => {
                signal?;
                tracing::info!("shutdown signal received, stopping gracefully");
                handle.stop().await
            }
            () = handle.stopped() => Ok(()),
        }
    }

    /// Binds `addr` and serves in the background; the returned handle tells the address and stops the
    /// server. Port `0` picks a free port.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use verb_core::{Request, Server};
    ///
    /// let server = Server::new(|_req: Request| async { "hi" }).bind("127.0.0.1:0").await?;
    /// assert_ne!(server.local_addr().port(), 0);
    /// server.stop().await?;
    /// # Ok::<(), verb_core::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// When the address does not resolve or cannot be bound.
    pub async fn bind(self, addr: impl Into<ListenAddr>) -> Result<ServerHandle, Error> {
        let addr = addr.into();
        let listener = bind(&addr).await?;
        self.serve(listener)
    }

    /// Serves connections accepted from `listener` in the background.
    ///
    /// # Errors
    ///
    /// When the listener's local address cannot be read.
    pub fn serve(self, listener: TcpListener) -> Result<ServerHandle, Error> {
        let local_addr = listener.local_addr().map_err(Error::LocalAddr)?;
        let inner = Arc::new(HandleInner {
            local_addr,
            shutdown: CancellationToken::new(),
            force: CancellationToken::new(),
            tracker: TaskTracker::new(),
            listeners: Arc::default(),
            open: AtomicUsize::new(0),
            stopped: CancellationToken::new(),
            shutdown_timeout: self.config.shutdown_timeout,
        });
        let lifecycle = Lifecycle {
            shutdown: inner.shutdown.clone(),
            force: inner.force.clone(),
            tracker: inner.tracker.clone(),
            listeners: Arc::clone(&inner.listeners),
        };
        self.handler.serving(&lifecycle);
        let shared = Arc::new(Shared {
            dispatch: Dispatch {
                handler: self.handler,
                lifecycle,
                body_limit: self.config.body_limit,
                body_read_timeout: self.config.body_read_timeout,
                secure: self.tls.is_some(),
            },
            http1: self.config.http1(),
            http1_last: {
                let mut last = self.config.http1();
                last.keep_alive(false);
                last
            },
            http2: self.config.http2(),
            header_read_timeout: self.config.header_read_timeout,
            write_timeout: self.config.write_timeout,
            max_connections: self.config.max_connections,
            tls: self.tls,
        });
        inner
            .tracker
            .spawn(accept_loop(listener, shared, Arc::clone(&inner)));
        Ok(ServerHandle { inner })
    }
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Resolves once Ctrl-C (SIGINT) or, on Unix, SIGTERM arrives.
///
/// The handlers are installed when this function is called, not when the future is first polled; to
/// install them ahead of time and wait later, use [`ShutdownSignal`].
///
/// # Errors
///
/// When a signal handler cannot be installed.
pub fn shutdown_signal() -> impl Future<Output = Result<(), Error>> + Send {
    let signal = ShutdownSignal::install();
    async move { signal?.recv().await }
}

/// Ctrl-C (SIGINT) and, on Unix, SIGTERM, caught from the moment the value is made.
///
/// A process that logs "ready" before it installs its handlers dies by the default action of a signal
/// sent in between. Install first, then bind and announce, then wait:
///
/// ```no_run
/// # async fn run() -> Result<(), verb_core::Error> {
/// use verb_core::{Request, Server, ShutdownSignal};
///
/// let mut signal = ShutdownSignal::install()?;
/// let server = Server::new(|_req: Request| async { "hi" }).bind("127.0.0.1:0").await?;
/// println!("ready on {}", server.local_addr());
/// signal.recv().await?;
/// server.stop().await
/// # }
/// ```
pub struct ShutdownSignal {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(not(unix))]
    ctrl_c: tokio::signal::windows::CtrlC,
}

impl ShutdownSignal {
    /// Installs the handlers now. From this call on, SIGINT and SIGTERM no longer end the process;
    /// they are queued for [`recv`](Self::recv).
    ///
    /// # Errors
    ///
    /// When a handler cannot be installed, or no tokio runtime with signal support is running.
    pub fn install() -> Result<Self, Error> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                interrupt: signal(SignalKind::interrupt()).map_err(Error::Signal)?,
                terminate: signal(SignalKind::terminate()).map_err(Error::Signal)?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Self {
                ctrl_c: tokio::signal::windows::ctrl_c().map_err(Error::Signal)?,
            })
        }
    }

    /// Waits for the next signal, also one that arrived before this call.
    ///
    /// # Errors
    ///
    /// When the signal stream has ended (the runtime is shutting down).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a signal not yet received stays queued for the next call.
    pub async fn recv(&mut self) -> Result<(), Error> {
        #[cfg(unix)]
        let received = tokio::select! {
            got = self.interrupt.recv() => got,
            got = self.terminate.recv() => got,
        };
        #[cfg(not(unix))]
        let received = self.ctrl_c.recv().await;
        received.ok_or_else(|| Error::Signal(std::io::Error::other("the signal stream has ended")))
    }
}

impl fmt::Debug for ShutdownSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShutdownSignal").finish_non_exhaustive()
    }
}

async fn bind(addr: &ListenAddr) -> Result<TcpListener, Error> {
    let bind_error = |source| Error::Bind {
        addr: addr.to_string(),
        source,
    };
    match addr {
        ListenAddr::Addr(socket) => TcpListener::bind(socket).await.map_err(bind_error),
        ListenAddr::Host(host) => {
            let mut last = None;
            for socket in tokio::net::lookup_host(host.as_str())
                .await
                .map_err(bind_error)?
            {
                match TcpListener::bind(socket).await {
                    Ok(listener) => return Ok(listener),
                    Err(err) => last = Some(err),
                }
            }
            Err(match last {
                Some(err) => bind_error(err),
                None => Error::NoAddress { addr: host.clone() },
            })
        }
    }
}

/// Controls a running server: its address, its open connections, and stopping it.
///
/// Cheap to clone; every clone controls the same server.
#[derive(Clone)]
pub struct ServerHandle {
    inner: Arc<HandleInner>,
}

struct HandleInner {
    local_addr: SocketAddr,
    /// Cancelled when a graceful stop begins.
    shutdown: CancellationToken,
    /// Cancelled when the graceful stop's deadline passes: drop what is left.
    force: CancellationToken,
    tracker: TaskTracker,
    /// Connections told of the stop without a future of their own.
    listeners: Arc<Listeners>,
    open: AtomicUsize,
    /// Cancelled once the server has fully stopped.
    stopped: CancellationToken,
    shutdown_timeout: Duration,
}

impl ServerHandle {
    /// The address the server listens on (with the real port when port `0` was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// How many client connections are open right now.
    pub fn connections(&self) -> usize {
        self.inner.open.load(Ordering::Relaxed)
    }

    /// Whether a stop has begun.
    pub fn is_stopping(&self) -> bool {
        self.inner.shutdown.is_cancelled()
    }

    /// Stops gracefully: stops accepting, lets in-flight requests finish (idle kept-alive connections
    /// close at once), and after the configured [`shutdown_timeout`](ServerConfig::shutdown_timeout)
    /// drops the connections still open. Calling it again waits for the same stop.
    ///
    /// # Errors
    ///
    /// [`Error::ShutdownTimeout`] when connections had to be dropped at the deadline.
    pub async fn stop(&self) -> Result<(), Error> {
        self.stop_within(self.inner.shutdown_timeout).await
    }

    /// Like [`stop`](Self::stop), with this deadline instead of the configured one.
    ///
    /// # Errors
    ///
    /// [`Error::ShutdownTimeout`] when connections had to be dropped at the deadline.
    pub async fn stop_within(&self, timeout: Duration) -> Result<(), Error> {
        let inner = &self.inner;
        inner.shutdown.cancel();
        inner.listeners.notify(StopSignal::Graceful);
        inner.tracker.close();
        let result = match tokio::time::timeout(timeout, inner.tracker.wait()).await {
            Ok(()) => Ok(()),
            Err(_) => {
                let remaining = inner.open.load(Ordering::Relaxed);
                tracing::warn!(
                    remaining,
                    ?timeout,
                    "graceful stop timed out; dropping connections"
                );
                inner.force.cancel();
                inner.listeners.notify(StopSignal::Forced);
                inner.tracker.wait().await;
                Err(Error::ShutdownTimeout { timeout, remaining })
            }
        };
        inner.stopped.cancel();
        result
    }

    /// Resolves once the server has stopped.
    pub async fn stopped(&self) {
        self.inner.stopped.cancelled().await;
    }
}

impl fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerHandle")
            .field("local_addr", &self.inner.local_addr)
            .field("connections", &self.connections())
            .field("stopping", &self.is_stopping())
            .finish_non_exhaustive()
    }
}

struct Shared {
    dispatch: Dispatch,
    http1: http1::Builder,
    /// For connections accepted during a graceful stop: one response, then close.
    http1_last: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
    header_read_timeout: Duration,
    write_timeout: Duration,
    max_connections: Option<usize>,
    tls: Option<TlsConfig>,
}

/// One open HTTP connection in the server's count (from accept to the end of HTTP on it).
struct Open {
    inner: Arc<HandleInner>,
    gauge: metrics::Gauge,
}

impl Open {
    fn new(inner: &Arc<HandleInner>) -> Self {
        let gauge = metrics::gauge!("verb_http_connections_open");
        gauge.increment(1.0);
        inner.open.fetch_add(1, Ordering::Relaxed);
        Self {
            inner: Arc::clone(inner),
            gauge,
        }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.inner.open.fetch_sub(1, Ordering::Relaxed);
        self.gauge.decrement(1.0);
    }
}

/// The body a connection over `max_connections` gets before it is closed.
const OVER_CAPACITY: &str =
    r#"{"error":"Service Unavailable","message":"too many connections; retry later"}"#;

/// Answers a connection over the limit and closes it, giving up after a second.
async fn refuse(mut stream: TcpStream, remote: SocketAddr) {
    use tokio::io::AsyncWriteExt;
    metrics::counter!("verb_http_connections_refused_total").increment(1);
    tracing::warn!(%remote, "connection limit reached; answered 503");
    let answer = async {
        let head = format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
             content-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n",
            OVER_CAPACITY.len()
        );
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(OVER_CAPACITY.as_bytes()).await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), answer).await;
}

/// Resolves once the accept loop is the only task left: every connection and upgrade has finished.
async fn drained(inner: &HandleInner) {
    while inner.tracker.len() > 1 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, inner: Arc<HandleInner>) {
    // During a graceful stop the listener stays open until what is in flight has finished: a client
    // that arrives then (a load balancer's readiness probe, a request routed before the balancer
    // noticed) gets one answer on a connection that then closes, instead of a refused connection.
    let mut stopping = false;
    loop {
        let accepted = tokio::select! {
            biased;
            () = inner.force.cancelled() => break,
            () = inner.shutdown.cancelled(), if !stopping => {
                stopping = true;
                continue;
            }
            () = drained(&inner), if stopping => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, remote)) => {
                // Small responses and WebSocket frames must not wait for Nagle's algorithm.
                if let Err(err) = stream.set_nodelay(true) {
                    tracing::debug!(%remote, error = %err, "cannot set TCP_NODELAY");
                }
                if shared
                    .max_connections
                    .is_some_and(|max| inner.open.load(Ordering::Relaxed) >= max)
                {
                    if shared.tls.is_some() {
                        // No plaintext answer a TLS client could read: just close.
                        metrics::counter!("verb_http_connections_refused_total").increment(1);
                        tracing::warn!(%remote, "connection limit reached; connection closed");
                    } else {
                        inner.tracker.spawn(refuse(stream, remote));
                    }
                    continue;
                }
                let open = Open::new(&inner);
                match &shared.tls {
                    None => {
                        let conn = serve_connection(
                            Connection::plain(stream),
                            remote,
                            Arc::clone(&shared),
                            open,
                            stopping,
                        );
                        inner.tracker.spawn(conn);
                    }
                    Some(tls) => {
                        let handshake = tls_handshake(
                            stream,
                            remote,
                            tls.clone(),
                            Arc::clone(&shared),
                            open,
                            stopping,
                        );
                        inner.tracker.spawn(handshake);
                    }
                }
            }
            Err(err) => {
                // Out of file descriptors or memory, or the peer reset before accept: log, back off a
                // little so a persistent condition does not spin the loop, and keep serving.
                tracing::warn!(error = %err, "accept failed");
                tokio::select! {
                    () = inner.force.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
        }
    }
}

/// Completes the TLS handshake within its timeout, then serves HTTP over it.
async fn tls_handshake(
    stream: TcpStream,
    remote: SocketAddr,
    tls: TlsConfig,
    shared: Arc<Shared>,
    open: Open,
    last: bool,
) {
    let inner = Arc::clone(&open.inner);
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.rustls);
    let handshake = tokio::select! {
        () = inner.force.cancelled() => return,
        handshake = tokio::time::timeout(tls.handshake_timeout, acceptor.accept(stream)) => handshake,
    };
    match handshake {
        Ok(Ok(stream)) => {
            serve_connection(Connection::tls(stream), remote, shared, open, last).await;
        }
        Ok(Err(err)) => {
            tracing::debug!(%remote, error = %err, "TLS handshake failed; connection dropped");
            metrics::counter!("verb_tls_handshake_failures_total", "reason" => "error")
                .increment(1);
        }
        Err(_) => {
            tracing::debug!(%remote, timeout = ?tls.handshake_timeout, "TLS handshake timed out; connection dropped");
            metrics::counter!("verb_tls_handshake_failures_total", "reason" => "timeout")
                .increment(1);
        }
    }
}

/// How long an HTTP/2 connection accepted during a graceful stop may send requests before GOAWAY.
const LAST_CONNECTION_GRACE: Duration = Duration::from_secs(1);

/// Runs a pinned hyper connection to its end, finishing it gracefully when a stop begins (HTTP/1.1:
/// after the request in flight; HTTP/2: GOAWAY, then the streams in flight) and dropping it when the
/// stop is forced. `last`: accepted during the stop (HTTP/1.1 keep-alive is off already; HTTP/2 gets
/// a moment, then GOAWAY). `None` when it was dropped. A macro: hyper's two connection types share no
/// trait for `graceful_shutdown`.
macro_rules! drive {
    ($conn:expr, $inner:expr, $last:expr) => {{
        let mut conn = $conn;
        let inner: &HandleInner = $inner;
        let grace = async {
            if $last {
                tokio::time::sleep(LAST_CONNECTION_GRACE).await;
            } else {
                inner.shutdown.cancelled().await;
            }
        };
        let early = tokio::select! {
            biased;
            () = inner.force.cancelled() => Some(None),
            result = conn.as_mut() => Some(Some(result)),
            () = grace => {
                conn.as_mut().graceful_shutdown();
                None
            }
        };
        match early {
            Some(done) => done,
            None => tokio::select! {
                () = inner.force.cancelled() => None,
                result = conn.as_mut() => Some(result),
            },
        }
    }};
}

/// Serves HTTP on one connection; `last`: accepted during a graceful stop, it gets one response.
async fn serve_connection(
    mut stream: Connection,
    remote: SocketAddr,
    shared: Arc<Shared>,
    open: Open,
    last: bool,
) {
    let inner = Arc::clone(&open.inner);
    stream.set_write_timeout(shared.write_timeout);

    let service_shared = Arc::clone(&shared);
    let app_heads = AppHeads::default();
    let service_heads = app_heads.clone();
    let service = service_fn(move |req| {
        let shared = Arc::clone(&service_shared);
        let heads = service_heads.clone();
        async move {
            let response = shared.dispatch.handle(req, remote).await;
            heads.note(
                response.status(),
                http_body::Body::is_end_stream(response.body()),
            );
            Ok::<_, Infallible>(response)
        }
    });
    // HTTP/2 or HTTP/1.1, decided before hyper reads a byte (ALPN, or the preface peeked at), so
    // that hyper gets Verb's own connection type and upgrades hand it back unwrapped.
    let h2 = match tokio::time::timeout(shared.header_read_timeout, stream.speaks_http2()).await {
        Ok(Ok(h2)) => h2,
        Ok(Err(err)) => {
            tracing::debug!(%remote, error = %err, "connection failed before its first request");
            return;
        }
        Err(_) => {
            tracing::warn!(%remote, "request head not received in time; connection dropped");
            return;
        }
    };
    let result = if h2 {
        let conn = shared.http2.serve_connection(TokioIo::new(stream), service);
        drive!(std::pin::pin!(conn), &inner, last)
    } else {
        stream.answer_parse_errors(app_heads);
        let builder = if last {
            &shared.http1_last
        } else {
            &shared.http1
        };
        let conn = builder
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        drive!(std::pin::pin!(conn), &inner, last)
    };
    let Some(result) = result else {
        return;
    };
    if let Err(err) = result {
        log_connection_error(&err, remote);
    }
}

fn log_connection_error(err: &hyper::Error, remote: SocketAddr) {
    let write_stalled = std::error::Error::source(err)
        .and_then(|source| source.downcast_ref::<std::io::Error>())
        .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut);
    if write_stalled {
        metrics::counter!("verb_http_write_timeouts_total").increment(1);
        tracing::warn!(%remote, "response write made no progress within write_timeout; connection dropped");
    } else if err.is_timeout() {
        tracing::warn!(%remote, "request head not received in time; connection dropped");
    } else if err.is_parse_too_large() {
        tracing::warn!(%remote, "request head too large; answered 431");
    } else if err.is_parse() {
        tracing::warn!(%remote, error = %err, "malformed request; answered 400");
    } else if err.is_incomplete_message() || err.is_closed() || err.is_canceled() {
        tracing::debug!(%remote, error = %err, "connection closed early");
    } else {
        tracing::debug!(%remote, error = %err, "connection error");
    }
}

/// What answers a request, wherever it came from: Verb's own server or a tower service.
pub(crate) struct Dispatch {
    pub(crate) handler: BoxHandler,
    pub(crate) lifecycle: Lifecycle,
    pub(crate) body_limit: usize,
    pub(crate) body_read_timeout: Duration,
    /// Requests arrive over TLS.
    pub(crate) secure: bool,
}

impl Dispatch {
    /// Reads the body within its limits, runs the handler (a panic costs a 500), and records the
    /// request's span, metrics and errors.
    pub(crate) async fn handle<B>(
        &self,
        req: http::Request<B>,
        remote: SocketAddr,
    ) -> http::Response<Body>
    where
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let start = Instant::now();
        // The request's span is at debug level: an enabled span is formatted by subscribers when it is
        // created, which at info level cost a third of a small request's CPU. Errors name the request
        // themselves.
        let span = tracing::debug_span!(
            "request",
            method = %req.method(),
            path = %req.uri().path(),
            status = field::Empty,
            latency_us = field::Empty,
        );
        let failed = tracing::enabled!(tracing::Level::ERROR)
            .then(|| (req.method().clone(), req.uri().clone()));
        async move {
            let response = self.respond(req, remote).await;
            let status = response.status();
            let latency = start.elapsed();
            let span = tracing::Span::current();
            span.record("status", status.as_u16());
            span.record("latency_us", latency.as_micros() as u64);
            metrics::counter!("verb_http_requests_total", "status" => status.as_str().to_owned())
                .increment(1);
            if status.is_server_error() {
                let (method, uri) = failed.unwrap_or_default();
                tracing::error!(
                    %method,
                    path = uri.path(),
                    status = status.as_u16(),
                    ?latency,
                    "request failed"
                );
            } else {
                tracing::debug!(status = status.as_u16(), ?latency, "request completed");
            }
            let is_event_stream = response.is_streamed()
                && response
                    .headers()
                    .get(http::header::CONTENT_TYPE)
                    .is_some_and(|t| t.as_bytes().starts_with(b"text/event-stream"));
            let response = response.into_http();
            if !is_event_stream {
                return response;
            }
            // An event stream never ends by itself: it ends when a graceful stop begins (the
            // browser reconnects elsewhere), so that the stop need not wait for its deadline.
            let stop = self.lifecycle.shutdown.clone().cancelled_owned();
            response.map(|body| Body::from_body(EndsAt::new(body, stop)))
        }
        .instrument(span)
        .await
    }

    async fn respond<B>(&self, req: http::Request<B>, remote: SocketAddr) -> Response
    where
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let (mut head, body) = req.into_parts();
        if head.headers.contains_key(http::header::UPGRADE) || head.method == http::Method::CONNECT
        {
            // Only protocol upgrades (HTTP/1.1 `Upgrade`, HTTP/2 CONNECT) outlive their request and
            // need to follow the server's lifecycle.
            head.extensions.insert(self.lifecycle.clone());
        }
        // No body (most requests), or a CONNECT, whose "body" is the tunnel that starts after the
        // response: nothing to read, and no need to ask the handler how (a routing lookup).
        let bodiless = body.is_end_stream() || head.method == http::Method::CONNECT;
        let mode = if bodiless {
            None
        } else {
            Some(self.handler.body_mode(&head))
        };
        let req = match mode {
            None => Request::from_parts(head, Bytes::new(), remote),
            Some(BodyMode::Buffered) => match self.read_body(&head.headers, body).await {
                Ok(body) => Request::from_parts(head, body, remote),
                Err(err) => {
                    tracing::warn!(%remote, error = %err.message(), "request body refused");
                    return err.into_response();
                }
            },
            Some(BodyMode::Streamed { limit }) => {
                let limit = limit.unwrap_or(self.body_limit as u64);
                if declared_length(&head.headers).is_some_and(|len| len > limit) {
                    tracing::warn!(%remote, limit, "streamed request body refused: declared too large");
                    return HttpError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!("request body exceeds the limit of {limit} bytes"),
                    )
                    .into_response();
                }
                let stream = BodyStream::new(Body::from_body(body), limit, self.body_read_timeout);
                Request::from_parts(head, Bytes::new(), remote).with_stream(stream)
            }
        };
        let req = req.with_secure(self.secure);
        let handler = &self.handler;
        // A panic inside user code must cost this one request a 500, not the connection or the server.
        match AssertUnwindSafe(async move { handler.call(req).await })
            .catch_unwind()
            .await
        {
            Ok(response) => response,
            Err(panic) => {
                let message = panic
                    .downcast_ref::<&str>()
                    .copied()
                    .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
                    .unwrap_or("(non-string panic payload)");
                tracing::error!(panic = message, "handler panicked");
                HttpError::internal("the request handler failed").into_response()
            }
        }
    }

    async fn read_body<B>(&self, headers: &http::HeaderMap, body: B) -> Result<Bytes, HttpError>
    where
        B: http_body::Body,
        B::Error: Into<BoxError>,
    {
        if body.is_end_stream() {
            return Ok(Bytes::new());
        }
        let limit = self.body_limit;
        let too_large = || {
            HttpError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body exceeds the limit of {limit} bytes"),
            )
        };
        if declared_length(headers).is_some_and(|len| len > limit as u64) {
            return Err(too_large());
        }
        match tokio::time::timeout(self.body_read_timeout, Limited::new(body, limit).collect())
            .await
        {
            Ok(Ok(collected)) => Ok(collected.to_bytes()),
            Ok(Err(err)) if err.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
            Ok(Err(err)) => Err(HttpError::bad_request(format!(
                "cannot read the request body: {err}"
            ))),
            Err(_) => Err(HttpError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "request body not received within {:?}",
                    self.body_read_timeout
                ),
            )),
        }
    }
}

/// The `Content-Length` a request declares, if it is a number.
fn declared_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok())
}

/// The server's lifecycle as seen by connections that outlive their request (WebSocket upgrades).
///
/// The server attaches one to the extensions of every request carrying an `Upgrade` header. Tasks
/// spawned through it are waited for by a graceful stop, which first signals
/// [`shutdown`](Self::shutdown) (so they can say goodbye, e.g. WebSocket close 1001) and, once the
/// deadline passes, [`forced`](Self::forced) (so they drop what is left).
#[derive(Clone)]
pub struct Lifecycle {
    pub(crate) shutdown: CancellationToken,
    pub(crate) force: CancellationToken,
    pub(crate) tracker: TaskTracker,
    pub(crate) listeners: Arc<Listeners>,
}

impl Lifecycle {
    /// A lifecycle of its own, never stopped: for running upgraded connections outside a server.
    pub fn detached() -> Self {
        Self {
            shutdown: CancellationToken::new(),
            force: CancellationToken::new(),
            tracker: TaskTracker::new(),
            listeners: Arc::default(),
        }
    }

    /// Registers `listener` to hear each stage of a stop, for as long as the registration is kept.
    /// A listener registered after a stop began hears the stage reached at once.
    ///
    /// This is [`shutdown`](Self::shutdown) and [`forced`](Self::forced) for tasks that poll on their
    /// own terms and keep no future per wait: a WebSocket engine keeps one pointer per connection
    /// instead of two futures.
    ///
    /// ```
    /// use std::sync::{Arc, Weak};
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// use verb_core::{Lifecycle, StopListener, StopSignal};
    ///
    /// struct Flag(AtomicBool);
    /// impl StopListener for Flag {
    ///     fn on_stop(&self, _signal: StopSignal) {
    ///         self.0.store(true, Ordering::Release);
    ///     }
    /// }
    ///
    /// let lifecycle = Lifecycle::detached();
    /// let flag = Arc::new(Flag(AtomicBool::new(false)));
    /// let weak: Weak<dyn StopListener> = Arc::downgrade(&flag) as _;
    /// let registration = lifecycle.register(weak);
    /// assert!(!flag.0.load(Ordering::Acquire)); // a detached lifecycle never stops
    /// drop(registration);
    /// ```
    pub fn register(&self, listener: Weak<dyn StopListener>) -> StopRegistration {
        self.listeners.register(listener)
    }

    /// Spawns `task` on the runtime; a graceful stop waits for it.
    pub fn spawn<F>(&self, task: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.tracker.spawn(task);
    }

    /// Resolves when a graceful stop begins.
    pub async fn shutdown(&self) {
        self.shutdown.cancelled().await;
    }

    /// Whether a graceful stop has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.shutdown.is_cancelled()
    }

    /// Resolves when the graceful stop's deadline has passed: drop everything.
    pub async fn forced(&self) {
        self.force.cancelled().await;
    }
}

impl fmt::Debug for Lifecycle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lifecycle")
            .field("shutting_down", &self.is_shutting_down())
            .finish_non_exhaustive()
    }
}
