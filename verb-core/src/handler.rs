//! Handlers and middleware: the two kinds of user code a request runs through.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::request::Request;
use crate::response::{IntoResponse, Response};
use crate::server::Lifecycle;

/// A boxed, sendable future, as handlers and middleware return.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Something that answers a request: usually an async closure or function.
///
/// Implemented for every `Fn(Request) -> impl Future<Output = impl IntoResponse>` that is `Send + Sync`.
///
/// # Example
///
/// ```
/// use verb_core::{Handler, Request, Response};
///
/// async fn hello(req: Request) -> Response {
///     Response::text(format!("hello {}", req.path()))
/// }
///
/// # tokio_test(async {
/// let res = hello.call(Request::builder().uri("/world").build()).await;
/// assert_eq!(res.body(), "hello /world");
/// # });
/// # fn tokio_test(f: impl std::future::Future<Output = ()>) {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
/// # }
/// ```
pub trait Handler: Send + Sync + 'static {
    /// Answers `req`.
    fn call(&self, req: Request) -> BoxFuture<Response>;

    /// How the server hands this request's body over, decided from its head before any of the body
    /// is read. The default, [`BodyMode::Buffered`], reads it into memory first (within
    /// [`ServerConfig::body_limit`](crate::ServerConfig::body_limit)); routers answer for the route
    /// the head matches.
    fn body_mode(&self, head: &http::request::Parts) -> BodyMode {
        let _ = head;
        BodyMode::Buffered
    }

    /// Called by whoever serves this handler (Verb's server when it starts serving, a
    /// [`HandlerService`](crate::HandlerService) when it is built) with the lifecycle its requests
    /// follow: a handler that reports readiness keeps it to see a graceful stop begin
    /// ([`Lifecycle::is_shutting_down`]). The default does nothing; wrappers pass it on.
    fn serving(&self, lifecycle: &Lifecycle) {
        let _ = lifecycle;
    }
}

/// How a request's body reaches its handler; see [`Handler::body_mode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum BodyMode {
    /// Read into memory before the handler runs: [`Request::body`], [`Request::json`], ...
    #[default]
    Buffered,
    /// Left unread: the handler reads it as it arrives with [`Request::body_stream`]. A declared
    /// `Content-Length` over `limit` is refused with `413` before the handler runs; a body that
    /// grows past it ends its stream with [`BodyError::TooLarge`](crate::BodyError::TooLarge).
    Streamed {
        /// Most bytes the body may have; `None`: the server's body limit.
        limit: Option<u64>,
    },
}

impl<F, Fut, R> Handler for F
where
    F: Fn(Request) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send + 'static,
    R: IntoResponse,
{
    fn call(&self, req: Request) -> BoxFuture<Response> {
        let fut = self(req);
        Box::pin(async move { fut.await.into_response() })
    }
}

/// A shared, type-erased [`Handler`].
pub type BoxHandler = Arc<dyn Handler>;

/// Code that runs around handlers: it sees the request and [`Next`], and may answer early (say, with a
/// `401`), or call `next.run(req)` and post-process the response.
///
/// Implemented for every `Fn(Request, Next) -> impl Future<Output = impl IntoResponse>` that is
/// `Send + Sync`.
///
/// # Example
///
/// ```
/// use verb_core::{HttpError, IntoResponse, Next, Request, Response};
///
/// async fn require_key(req: Request, next: Next) -> Response {
///     if req.header("x-api-key") != Some("secret") {
///         return HttpError::unauthorized("missing or wrong API key").into_response();
///     }
///     let res = next.run(req).await;
///     res.header("x-checked", "yes")
/// }
/// # let _ = require_key;
/// ```
pub trait Middleware: Send + Sync + 'static {
    /// Handles `req`, usually by calling `next.run(req)`.
    fn call(&self, req: Request, next: Next) -> BoxFuture<Response>;
}

impl<F, Fut, R> Middleware for F
where
    F: Fn(Request, Next) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send + 'static,
    R: IntoResponse,
{
    fn call(&self, req: Request, next: Next) -> BoxFuture<Response> {
        let fut = self(req, next);
        Box::pin(async move { fut.await.into_response() })
    }
}

/// A shared, type-erased [`Middleware`].
pub type BoxMiddleware = Arc<dyn Middleware>;

/// The rest of the chain after a middleware: more middleware, then the handler.
pub struct Next {
    chain: Chain,
    index: usize,
}

impl Next {
    /// Runs the rest of the chain on `req`.
    pub async fn run(self, req: Request) -> Response {
        self.into_future(req).await
    }

    pub(crate) fn into_future(mut self, req: Request) -> BoxFuture<Response> {
        match self.chain.middleware.get(self.index) {
            Some(middleware) => {
                let middleware = Arc::clone(middleware);
                self.index += 1;
                middleware.call(req, self)
            }
            None => self.chain.handler.call(req),
        }
    }
}

impl fmt::Debug for Next {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Next")
            .field(
                "remaining_middleware",
                &(self.chain.middleware.len() - self.index),
            )
            .finish_non_exhaustive()
    }
}

/// Middleware in order, then a handler: itself a [`Handler`].
///
/// Middleware run in the order given; each sees what the earlier ones did to the request, and the
/// response on its way back out.
///
/// ```
/// use verb_core::{Chain, Handler, Next, Request, Response};
/// use std::sync::Arc;
///
/// let chain = Chain::new(
///     vec![Arc::new(|req: Request, next: Next| async move {
///         next.run(req).await.header("x-seen", "1")
///     })],
///     Arc::new(|_req: Request| async { "ok" }),
/// );
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let res = chain.call(Request::builder().build()).await;
/// assert_eq!(res.headers()["x-seen"], "1");
/// # });
/// ```
#[derive(Clone)]
pub struct Chain {
    middleware: Arc<[BoxMiddleware]>,
    handler: BoxHandler,
}

impl Chain {
    /// `middleware` in order, ending in `handler`.
    pub fn new(middleware: Vec<BoxMiddleware>, handler: BoxHandler) -> Self {
        Self {
            middleware: middleware.into(),
            handler,
        }
    }
}

impl Handler for Chain {
    fn body_mode(&self, head: &http::request::Parts) -> BodyMode {
        self.handler.body_mode(head)
    }

    fn serving(&self, lifecycle: &Lifecycle) {
        self.handler.serving(lifecycle);
    }

    fn call(&self, req: Request) -> BoxFuture<Response> {
        if self.middleware.is_empty() {
            return self.handler.call(req);
        }
        Next {
            chain: self.clone(),
            index: 0,
        }
        .into_future(req)
    }
}

impl fmt::Debug for Chain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chain")
            .field("middleware", &self.middleware.len())
            .finish_non_exhaustive()
    }
}
