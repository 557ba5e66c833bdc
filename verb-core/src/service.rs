//! tower, both ways: a Verb [`Handler`] as a [`tower_service::Service`] (to serve it with hyper, nest
//! it in axum, wrap it in tower middleware), and a tower service as a Verb [`Handler`] (to mount axum
//! or tower-http inside a Verb app, or to run a Verb app through tower layers).

use std::convert::Infallible;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::BodyExt;

use bytes::Bytes;

use crate::body::{Body, BodyStream, BoxError};
use crate::error::{Error, HttpError};
use crate::handler::{BodyMode, BoxFuture, BoxHandler, Handler};
use crate::request::Request;
use crate::response::{IntoResponse, Response};
use crate::server::{Dispatch, Lifecycle, ServerConfig};
use crate::stop::StopSignal;

/// The peer's address, for requests that reach a [`HandlerService`] from another server: put it in
/// the request's extensions (a bare [`SocketAddr`] extension works too), and
/// [`Request::remote_addr`] returns it. Without either, requests appear to come from `0.0.0.0:0`.
///
/// With axum, copy its `ConnectInfo` in a middleware:
/// `req.extensions_mut().insert(RemoteAddr(connect_info.0))`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RemoteAddr(pub SocketAddr);

/// What a request keeps of its connection while it travels through tower layers.
#[derive(Debug, Clone, Copy)]
struct Origin {
    remote: SocketAddr,
    secure: bool,
}

fn remote_of(extensions: &http::Extensions) -> SocketAddr {
    extensions
        .get::<RemoteAddr>()
        .map(|remote| remote.0)
        .or_else(|| extensions.get::<SocketAddr>().copied())
        .unwrap_or_else(|| SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)))
}

/// A [`Handler`] (a whole Verb app, or one WebSocket endpoint) as a tower service over
/// `http::Request<B>` for any body `B`: serve it with hyper, nest it in axum
/// (`Router::nest_service("/chat", service)`), or wrap it in tower middleware.
///
/// It reads request bodies within the same limits as Verb's server ([`ServerConfig::body_limit`],
/// [`ServerConfig::body_read_timeout`]), catches panics, and runs each request in the same span. Its
/// WebSocket upgrades run over whatever connection the host server hands over (hyper's upgrade), and
/// follow this service's own lifecycle: the host's shutdown does not reach them by itself, so call
/// [`stop_handle`](Self::stop_handle)`().stop()` from it (close 1001, wait, then drop).
///
/// Cheap to clone: clones share the handler, the limits and the lifecycle.
///
/// ```
/// use std::convert::Infallible;
/// use tower_service::Service;
/// use verb_core::{Body, HandlerService, Request};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let mut service = HandlerService::new(|req: Request| async move { format!("hi {}", req.path()) });
/// let req = http::Request::builder().uri("/there").body(Body::empty()).unwrap();
/// let res = service.call(req).await.unwrap();
/// assert_eq!(res.status(), 200);
/// # });
/// ```
#[derive(Clone)]
pub struct HandlerService {
    dispatch: Arc<Dispatch>,
}

impl HandlerService {
    /// Serves `handler` with [`ServerConfig`]'s default body limits.
    pub fn new(handler: impl Handler) -> Self {
        Self::from_boxed(Arc::new(handler), &ServerConfig::default(), false)
    }

    /// Serves `handler` with `config`'s body limits; `secure` says whether the host server serves it
    /// over TLS (it decides the scheme of the request's own origin, which WebSocket endpoints compare
    /// with `Origin`).
    pub fn from_boxed(handler: BoxHandler, config: &ServerConfig, secure: bool) -> Self {
        let lifecycle = Lifecycle::detached();
        handler.serving(&lifecycle);
        Self {
            dispatch: Arc::new(Dispatch {
                handler,
                lifecycle,
                body_limit: config.get_body_limit(),
                body_read_timeout: config.get_body_read_timeout(),
                secure,
            }),
        }
    }

    /// A handle that stops the WebSockets (and other upgrades) this service started.
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle {
            lifecycle: self.dispatch.lifecycle.clone(),
        }
    }
}

impl fmt::Debug for HandlerService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandlerService")
            .field("body_limit", &self.dispatch.body_limit)
            .field("secure", &self.dispatch.secure)
            .finish_non_exhaustive()
    }
}

impl<B> tower_service::Service<http::Request<B>> for HandlerService
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<http::Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let dispatch = Arc::clone(&self.dispatch);
        Box::pin(async move {
            let remote = remote_of(req.extensions());
            Ok(dispatch.handle(req, remote).await)
        })
    }
}

/// Stops what a [`HandlerService`] started that outlives its requests (WebSocket connections):
/// each hears a graceful stop (a WebSocket closes with 1001), then whatever is still open when the
/// deadline passes is dropped. Requests keep being answered; stopping those is the host server's
/// part. Cheap to clone.
#[derive(Clone)]
pub struct StopHandle {
    lifecycle: Lifecycle,
}

impl StopHandle {
    /// Whether a stop has begun.
    pub fn is_stopping(&self) -> bool {
        self.lifecycle.is_shutting_down()
    }

    /// Stops within [`ServerConfig`]'s default shutdown timeout (10 s).
    ///
    /// # Errors
    ///
    /// [`Error::ShutdownTimeout`] when connections had to be dropped at the deadline.
    pub async fn stop(&self) -> Result<(), Error> {
        self.stop_within(ServerConfig::default().get_shutdown_timeout())
            .await
    }

    /// Stops gracefully, dropping what is left after `timeout`. Calling it again waits for the same
    /// stop.
    ///
    /// # Errors
    ///
    /// [`Error::ShutdownTimeout`] when connections had to be dropped at the deadline.
    pub async fn stop_within(&self, timeout: Duration) -> Result<(), Error> {
        let lifecycle = &self.lifecycle;
        lifecycle.shutdown.cancel();
        lifecycle.listeners.notify(StopSignal::Graceful);
        lifecycle.tracker.close();
        if tokio::time::timeout(timeout, lifecycle.tracker.wait())
            .await
            .is_ok()
        {
            return Ok(());
        }
        let remaining = lifecycle.tracker.len();
        tracing::warn!(
            remaining,
            ?timeout,
            "graceful stop timed out; dropping connections"
        );
        lifecycle.force.cancel();
        lifecycle.listeners.notify(StopSignal::Forced);
        lifecycle.tracker.wait().await;
        Err(Error::ShutdownTimeout { timeout, remaining })
    }
}

impl fmt::Debug for StopHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StopHandle")
            .field("stopping", &self.is_stopping())
            .finish()
    }
}

/// Converts a request for a tower service, keeping what only Verb's [`Request`] knows (the peer's
/// address, TLS) for the way back.
pub(crate) fn to_http(mut req: Request) -> http::Request<Body> {
    let origin = Origin {
        remote: req.remote_addr(),
        secure: req.is_secure(),
    };
    let stream = req.take_stream();
    let (mut head, body, _params) = req.into_parts();
    head.extensions.insert(origin);
    let body = match stream {
        // Still unread: the service reads it as it arrives, within the route's limit.
        Some(stream) => stream.into_body(),
        None => Body::full(body),
    };
    http::Request::from_parts(head, body)
}

/// The way back from [`to_http`]: the body stays a stream if `handler` streams it, else it is
/// collected (at no cost when it came from Verb in memory).
async fn from_http(handler: &dyn Handler, req: http::Request<Body>) -> Result<Request, HttpError> {
    let (mut head, body) = req.into_parts();
    let origin = head.extensions.remove::<Origin>();
    let remote = origin.map_or_else(|| remote_of(&head.extensions), |o| o.remote);
    let secure = origin.is_some_and(|o| o.secure);
    let req = match (handler.body_mode(&head), body.into_full()) {
        (_, Ok(bytes)) => Request::from_parts(head, bytes, remote),
        (BodyMode::Streamed { .. }, Err(body)) => {
            // Its limit and timeout were applied where the body was first read.
            let stream = BodyStream::new(body, u64::MAX, Duration::MAX);
            Request::from_parts(head, Bytes::new(), remote).with_stream(stream)
        }
        (_, Err(body)) => match body.collect().await {
            Ok(collected) => Request::from_parts(head, collected.to_bytes(), remote),
            Err(err) => {
                return Err(HttpError::bad_request(format!(
                    "cannot read the request body: {err}"
                )));
            }
        },
    };
    Ok(req.with_secure(secure))
}

/// A Verb [`Handler`] as the innermost tower service of a stack of layers (see [`layer`]): no
/// limits, spans or metrics of its own, since the request already went through Verb's.
#[derive(Clone)]
pub struct HandlerCall {
    handler: BoxHandler,
}

impl fmt::Debug for HandlerCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandlerCall").finish_non_exhaustive()
    }
}

impl tower_service::Service<http::Request<Body>> for HandlerCall {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<http::Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let handler = Arc::clone(&self.handler);
        Box::pin(async move {
            let response = match from_http(&*handler, req).await {
                Ok(req) => handler.call(req).await,
                Err(err) => err.into_response(),
            };
            Ok(response.into_http())
        })
    }
}

/// Runs `handler` behind a tower `layer` (tower-http's CORS, compression, timeouts, request ids,
/// tracing, ...): the layer sees every request before the handler, as an `http::Request<Body>`, and
/// its response on the way out.
///
/// ```
/// use tower_layer::layer_fn;
/// use verb_core::{Handler, Request, service};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// // A layer that does nothing but pass requests on.
/// let layered = service::layer(std::sync::Arc::new(|_req: Request| async { "inner" }), layer_fn(|s| s));
/// let res = layered.call(Request::builder().build()).await;
/// assert_eq!(res.body(), "inner");
/// # });
/// ```
pub fn layer<L>(handler: BoxHandler, layer: L) -> BoxHandler
where
    L: tower_layer::Layer<HandlerCall>,
    L::Service: HttpService,
{
    let outer = ServiceHandler::new(layer.layer(HandlerCall {
        handler: Arc::clone(&handler),
    }));
    Arc::new(Layered {
        outer,
        inner: handler,
    })
}

/// A handler behind a layer: requests go through the layer, and the body is read as the handler
/// inside wants it.
struct Layered<S> {
    outer: ServiceHandler<S>,
    inner: BoxHandler,
}

impl<S> Handler for Layered<S>
where
    ServiceHandler<S>: Handler,
    S: Send + Sync + 'static,
{
    fn call(&self, req: Request) -> BoxFuture<Response> {
        self.outer.call(req)
    }

    fn body_mode(&self, head: &http::request::Parts) -> BodyMode {
        self.inner.body_mode(head)
    }

    fn serving(&self, lifecycle: &Lifecycle) {
        self.inner.serving(lifecycle);
    }
}

/// What Verb can mount or layer: a cloneable, shareable tower service over `http::Request<Body>`
/// whose response body is any `http_body::Body` (axum's `Router`, tower-http's services and layered
/// stacks all are). Implemented for every such service; not to be implemented by hand.
pub trait HttpService:
    tower_service::Service<
        http::Request<Body>,
        Response = http::Response<Self::ResBody>,
        Error: Into<BoxError> + Send,
        Future: Send + 'static,
    > + Clone
    + Send
    + Sync
    + 'static
{
    /// The body of its responses.
    type ResBody: http_body::Body<Data: Send, Error: Into<BoxError>> + Send + 'static;
}

impl<S, B> HttpService for S
where
    S: tower_service::Service<http::Request<Body>, Response = http::Response<B>>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError> + Send,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type ResBody = B;
}

/// A tower service (an axum `Router`, tower-http's `ServeDir`, any `Service<http::Request<Body>>`) as
/// a Verb [`Handler`]. Its errors answer `500` with the usual JSON body, and are logged.
///
/// ```
/// use verb_core::{Handler, HandlerService, Request, ServiceHandler};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// // Any tower service will do; here, a Verb handler served as one.
/// let svc = HandlerService::new(|_req: Request| async { "from tower" });
/// let handler = ServiceHandler::new(svc);
/// let res = handler.call(Request::builder().build()).await;
/// assert_eq!(res.body(), "from tower");
/// # });
/// ```
#[derive(Clone)]
pub struct ServiceHandler<S> {
    service: S,
}

impl<S> ServiceHandler<S> {
    /// Wraps `service`; each request calls a clone of it.
    pub fn new(service: S) -> Self {
        Self { service }
    }
}

impl<S> fmt::Debug for ServiceHandler<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceHandler").finish_non_exhaustive()
    }
}

impl<S: HttpService> Handler for ServiceHandler<S> {
    /// A tower service reads its body as it arrives (within the server's body limit).
    fn body_mode(&self, _head: &http::request::Parts) -> BodyMode {
        BodyMode::Streamed { limit: None }
    }

    fn call(&self, req: Request) -> BoxFuture<Response> {
        let mut service = self.service.clone();
        Box::pin(async move {
            let req = to_http(req);
            let ready = std::future::poll_fn(|cx| service.poll_ready(cx)).await;
            let result = match ready {
                Ok(()) => service.call(req).await,
                Err(err) => Err(err),
            };
            match result {
                Ok(res) => Response::from_http(res),
                Err(err) => {
                    let err: BoxError = err.into();
                    tracing::error!(error = %err, "a tower service failed");
                    HttpError::internal("the request handler failed").into_response()
                }
            }
        })
    }
}
