//! The body of responses, and of requests handed to tower services: bytes held in memory, or a
//! stream of chunks.

use std::fmt;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use futures_core::Stream;
use http_body::{Frame, SizeHint};

/// The error type of streamed bodies: any error, boxed.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// An HTTP body: bytes in memory, or a stream of chunks sent as they come.
///
/// It is an [`http_body::Body`], so it is what a Verb app gives hyper, axum or a tower layer, and
/// what a [`Response`](crate::Response) built with [`Response::stream`](crate::Response::stream)
/// carries.
///
/// ```
/// use http_body_util::BodyExt;
/// use verb_core::Body;
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let chunks = futures_util::stream::iter(["a", "b"].map(|s| Ok::<_, std::io::Error>(s)));
/// let body = Body::from_stream(chunks);
/// assert_eq!(body.collect().await.unwrap().to_bytes(), "ab");
/// # });
/// ```
pub struct Body {
    kind: Kind,
}

enum Kind {
    Full(Option<Bytes>),
    /// In a mutex only so that a response is `Sync`: polling goes through `get_mut`, which takes
    /// no lock.
    Stream(Mutex<Pin<Box<dyn http_body::Body<Data = Bytes, Error = BoxError> + Send + 'static>>>),
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Body {
    /// No bytes.
    pub fn empty() -> Self {
        Self {
            kind: Kind::Full(None),
        }
    }

    /// These bytes, all at once.
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        Self {
            kind: Kind::Full((!bytes.is_empty()).then_some(bytes)),
        }
    }

    /// Chunks from a stream, each sent as it comes; an error ends the body (and the connection's
    /// response) early.
    pub fn from_stream<S, T, E>(stream: S) -> Self
    where
        S: Stream<Item = Result<T, E>> + Send + 'static,
        T: Into<Bytes>,
        E: Into<BoxError>,
    {
        Self::from_body(StreamBody { stream })
    }

    /// Any other body: hyper's, axum's, a tower layer's.
    pub fn from_body<B>(body: B) -> Self
    where
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        Self {
            kind: Kind::Stream(Mutex::new(Box::pin(Mapped { body }))),
        }
    }

    /// The bytes of a body held in memory; a streamed one comes back as it is.
    ///
    /// # Errors
    ///
    /// The body itself, when it is streamed.
    pub fn into_full(self) -> Result<Bytes, Self> {
        match self.kind {
            Kind::Full(bytes) => Ok(bytes.unwrap_or_default()),
            kind @ Kind::Stream(_) => Err(Self { kind }),
        }
    }

    /// Whether the body is held in memory (not streamed).
    pub fn is_full(&self) -> bool {
        matches!(self.kind, Kind::Full(_))
    }
}

impl Default for Body {
    fn default() -> Self {
        Self::empty()
    }
}

impl From<Bytes> for Body {
    fn from(bytes: Bytes) -> Self {
        Self::full(bytes)
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.get_mut().kind {
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|bytes| Ok(Frame::data(bytes)))),
            Kind::Stream(body) => {
                let body = body
                    .get_mut()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let frame = body.as_mut().poll_frame(cx);
                if let Poll::Ready(Some(Err(err))) = &frame {
                    tracing::warn!(error = %err, "a streamed body failed; it ends here");
                }
                frame
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(bytes) => bytes.is_none(),
            Kind::Stream(body) => lock(body).is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Stream(body) => lock(body).size_hint(),
        }
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Full(bytes) => f
                .debug_struct("Body")
                .field("len", &bytes.as_ref().map_or(0, Bytes::len))
                .finish(),
            Kind::Stream(_) => f.debug_struct("Body").field("streamed", &true).finish(),
        }
    }
}

pin_project_lite::pin_project! {
    /// A stream of chunks as a body.
    struct StreamBody<S> {
        #[pin]
        stream: S,
    }
}

impl<S, T, E> http_body::Body for StreamBody<S>
where
    S: Stream<Item = Result<T, E>>,
    T: Into<Bytes>,
    E: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.project()
            .stream
            .poll_next(cx)
            .map(|item| item.map(|chunk| chunk.map(|c| Frame::data(c.into())).map_err(Into::into)))
    }
}

pin_project_lite::pin_project! {
    /// A body of any data type, as `Bytes`.
    struct Mapped<B> {
        #[pin]
        body: B,
    }
}

impl<B> http_body::Body for Mapped<B>
where
    B: http_body::Body,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.project().body.poll_frame(cx).map(|frame| {
            frame.map(|frame| {
                frame
                    .map(|frame| frame.map_data(|mut data| data.copy_to_bytes(data.remaining())))
                    .map_err(Into::into)
            })
        })
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

pin_project_lite::pin_project! {
    /// A body that ends early, cleanly, once `stop` resolves: an event stream at a graceful stop.
    pub(crate) struct EndsAt<B, F> {
        #[pin]
        body: B,
        #[pin]
        stop: F,
    }
}

impl<B, F> EndsAt<B, F> {
    pub(crate) fn new(body: B, stop: F) -> Self {
        Self { body, stop }
    }
}

impl<B, F> http_body::Body for EndsAt<B, F>
where
    B: http_body::Body,
    F: std::future::Future<Output = ()>,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.project();
        if this.stop.poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        this.body.poll_frame(cx)
    }
}

/// Why a streamed request body ended early.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    /// The body grew past its limit (answer `413`: `HttpError::from` does).
    #[error("request body exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The limit, in bytes.
        limit: u64,
    },
    /// Nothing arrived for this long (answer `408`).
    #[error("no request body data received for {0:?}")]
    TimedOut(std::time::Duration),
    /// The connection failed or the peer sent a malformed body (answer `400`).
    #[error("cannot read the request body: {0}")]
    Read(#[source] BoxError),
}

impl From<BodyError> for crate::HttpError {
    fn from(err: BodyError) -> Self {
        let status = match err {
            BodyError::TooLarge { .. } => http::StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::TimedOut(_) => http::StatusCode::REQUEST_TIMEOUT,
            BodyError::Read(_) => http::StatusCode::BAD_REQUEST,
        };
        crate::HttpError::new(status, err.to_string())
    }
}

/// A request body read as it arrives: a [`Stream`] of `Bytes` chunks, from
/// [`Request::body_stream`](crate::Request::body_stream). It stops with [`BodyError::TooLarge`] once
/// the chunks pass the route's limit (nothing beyond it is read), and with [`BodyError::TimedOut`]
/// when no chunk arrives within the server's body read timeout.
///
/// ```
/// use futures_util::StreamExt;
/// use verb_core::{HttpError, Request};
///
/// async fn upload(mut req: Request) -> Result<String, HttpError> {
///     let mut body = req.body_stream();
///     let mut total = 0;
///     while let Some(chunk) = body.next().await {
///         total += chunk?.len(); // write it somewhere instead of keeping it
///     }
///     Ok(format!("{total} bytes"))
/// }
/// # let _ = upload;
/// ```
pub struct BodyStream {
    body: Body,
    limit: u64,
    received: u64,
    idle: std::time::Duration,
    /// Armed while a chunk is awaited.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    done: bool,
}

impl BodyStream {
    pub(crate) fn new(body: Body, limit: u64, idle: std::time::Duration) -> Self {
        Self {
            body,
            limit,
            received: 0,
            idle,
            timer: None,
            done: false,
        }
    }

    /// A body already in memory, as a stream of one chunk.
    pub(crate) fn buffered(bytes: Bytes) -> Self {
        Self::new(Body::full(bytes), u64::MAX, std::time::Duration::MAX)
    }

    /// Bytes received so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Back to a body (to hand on to a tower service); its errors are this stream's.
    pub(crate) fn into_body(self) -> Body {
        Body::from_stream(self)
    }
}

impl Stream for BodyStream {
    type Item = Result<Bytes, BodyError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        use http_body::Body as _;
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        loop {
            match Pin::new(&mut this.body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    this.timer = None;
                    let Ok(data) = frame.into_data() else {
                        continue; // trailers: nothing for the stream
                    };
                    this.received = this.received.saturating_add(data.len() as u64);
                    if this.received > this.limit {
                        this.done = true;
                        tracing::warn!(limit = this.limit, "streamed request body over its limit");
                        return Poll::Ready(Some(Err(BodyError::TooLarge { limit: this.limit })));
                    }
                    return Poll::Ready(Some(Ok(data)));
                }
                Poll::Ready(Some(Err(err))) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(BodyError::Read(err))));
                }
                Poll::Ready(None) => {
                    this.done = true;
                    return Poll::Ready(None);
                }
                Poll::Pending => {
                    if this.idle == std::time::Duration::MAX {
                        return Poll::Pending;
                    }
                    let idle = this.idle;
                    let timer = this
                        .timer
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                    if std::future::Future::poll(timer.as_mut(), cx).is_ready() {
                        this.done = true;
                        tracing::warn!(?idle, "streamed request body stalled");
                        return Poll::Ready(Some(Err(BodyError::TimedOut(idle))));
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

impl fmt::Debug for BodyStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BodyStream")
            .field("limit", &self.limit)
            .field("received", &self.received)
            .finish_non_exhaustive()
    }
}
