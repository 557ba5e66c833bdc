//! Responses, and the [`IntoResponse`] conversion that lets handlers return plain values.

use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;
use http::StatusCode;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use serde::Serialize;

use crate::body::{Body, BoxError};
use crate::error::HttpError;

const TEXT: HeaderValue = HeaderValue::from_static("text/plain; charset=utf-8");
const HTML: HeaderValue = HeaderValue::from_static("text/html; charset=utf-8");
const JSON: HeaderValue = HeaderValue::from_static("application/json");
const OCTETS: HeaderValue = HeaderValue::from_static("application/octet-stream");

/// An HTTP response: status, headers and a body held in memory.
///
/// Build one with a constructor ([`text`](Response::text), [`html`](Response::html),
/// [`json`](Response::json), [`redirect`](Response::redirect), ...) and adjust it with the
/// builder-style [`with_status`](Response::with_status) and [`header`](Response::header).
///
/// # Example
///
/// ```
/// use verb_core::{Response, StatusCode};
///
/// let res = Response::json(&serde_json::json!({ "id": 7 }))
///     .with_status(StatusCode::CREATED)
///     .header("x-request-id", "abc");
/// assert_eq!(res.status(), StatusCode::CREATED);
/// assert_eq!(res.headers()["content-type"], "application/json");
/// assert_eq!(res.body(), r#"{"id":7}"#);
/// ```
#[must_use = "a response does nothing unless it is returned"]
pub struct Response {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    /// A streamed body, sent instead of `body`.
    stream: Option<Body>,
    extensions: http::Extensions,
}

impl Response {
    /// An empty response with this status.
    pub fn new(status: StatusCode) -> Self {
        Self {
            status,
            headers: HeaderMap::new(),
            body: Bytes::new(),
            stream: None,
            extensions: http::Extensions::new(),
        }
    }

    /// `200 OK` whose body is streamed: each chunk is sent as the stream yields it (no
    /// `content-length`; chunked over HTTP/1.1). Set `content-type` with [`header`](Self::header); it
    /// defaults to `application/octet-stream`. An error from the stream ends the response early and
    /// is logged.
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use verb_core::Response;
    ///
    /// let lines = futures_util::stream::iter((1..=3).map(|n| Ok::<_, Infallible>(format!("line {n}\n"))));
    /// let res = Response::stream(lines).header("content-type", "text/plain");
    /// assert!(res.is_streamed());
    /// ```
    pub fn stream<S, T, E>(stream: S) -> Self
    where
        S: futures_core::Stream<Item = Result<T, E>> + Send + 'static,
        T: Into<Bytes>,
        E: Into<BoxError>,
    {
        Self::from_body(Body::from_stream(stream)).header(header::CONTENT_TYPE, OCTETS)
    }

    /// `200 OK` streaming Server-Sent Events, with the default keep-alive (see [`Sse`](crate::Sse)
    /// to change it).
    pub fn sse<S>(events: S) -> Self
    where
        S: futures_core::Stream<Item = crate::SseEvent> + Send + 'static,
    {
        crate::Sse::new(events).into_response()
    }

    /// `200 OK` with this body, which may be streamed (see [`Body`]); no `content-type` is set.
    pub fn from_body(body: Body) -> Self {
        let mut res = Self::new(StatusCode::OK);
        res.stream = Some(body);
        res
    }

    /// Whether the body is streamed (then [`body`](Self::body) is empty).
    pub fn is_streamed(&self) -> bool {
        self.stream.is_some()
    }

    /// Converts an `http::Response` with any body (a tower service's, axum's).
    pub fn from_http<B>(res: http::Response<B>) -> Self
    where
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let (parts, body) = res.into_parts();
        // A body that is Verb's own and in memory (a Verb handler behind a layer) stays in memory.
        let mut body = Some(body);
        let own = (&mut body as &mut dyn std::any::Any).downcast_mut::<Option<Body>>();
        let (bytes, stream) = match own.and_then(Option::take).map(Body::into_full) {
            Some(Ok(bytes)) => (bytes, None),
            Some(Err(streamed)) => (Bytes::new(), Some(streamed)),
            None => (Bytes::new(), body.map(Body::from_body)),
        };
        Self {
            status: parts.status,
            headers: parts.headers,
            body: bytes,
            stream,
            extensions: parts.extensions,
        }
    }

    fn with_body(content_type: HeaderValue, body: Bytes) -> Self {
        let mut res = Self::new(StatusCode::OK);
        res.headers.insert(header::CONTENT_TYPE, content_type);
        res.body = body;
        res
    }

    /// `200 OK` with a `text/plain; charset=utf-8` body.
    pub fn text(body: impl Into<Cow<'static, str>>) -> Self {
        Self::with_body(TEXT, cow_to_bytes(body.into()))
    }

    /// `200 OK` with a `text/html; charset=utf-8` body.
    pub fn html(body: impl Into<Cow<'static, str>>) -> Self {
        Self::with_body(HTML, cow_to_bytes(body.into()))
    }

    /// `200 OK` with `value` serialized as an `application/json` body.
    ///
    /// If `value` cannot be serialized (a map with non-string keys, a failing `Serialize` impl), the
    /// response is a `500` JSON error and the failure is logged.
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(body) => Self::with_body(JSON, Bytes::from(body)),
            Err(err) => {
                tracing::error!(error = %err, "cannot serialize the JSON response");
                let body = br#"{"error":"Internal Server Error","message":"the response could not be serialized"}"#;
                Self::with_body(JSON, Bytes::from_static(body))
                    .with_status(StatusCode::INTERNAL_SERVER_ERROR)
            }
        }
    }

    /// `200 OK` with an `application/octet-stream` body.
    pub fn bytes(body: impl Into<Bytes>) -> Self {
        Self::with_body(OCTETS, body.into())
    }

    /// `302 Found` to `location`.
    ///
    /// # Panics
    ///
    /// If `location` is not a valid header value (it contains a control character such as a newline).
    #[track_caller]
    pub fn redirect(location: &str) -> Self {
        Self::redirect_with(StatusCode::FOUND, location)
    }

    /// A redirect with this status (`301`, `302`, `303`, `307` or `308`) to `location`.
    ///
    /// # Panics
    ///
    /// If `location` is not a valid header value (it contains a control character such as a newline).
    #[track_caller]
    pub fn redirect_with(status: StatusCode, location: &str) -> Self {
        Self::new(status).header(header::LOCATION, location)
    }

    /// Replaces the status code.
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// Sets a header, replacing any earlier value of the same name.
    ///
    /// For headers that may repeat (`set-cookie`), use [`append_header`](Self::append_header). To set a
    /// header from untrusted input without a panic, validate it with `HeaderValue::try_from` and use
    /// [`headers_mut`](Self::headers_mut).
    ///
    /// # Panics
    ///
    /// If `name` or `value` is not a valid header name or value.
    #[track_caller]
    pub fn header<K, V>(mut self, name: K, value: V) -> Self
    where
        K: TryInto<HeaderName>,
        K::Error: fmt::Debug,
        V: TryInto<HeaderValue>,
        V::Error: fmt::Debug,
    {
        let (name, value) = header_pair(name, value);
        self.headers.insert(name, value);
        self
    }

    /// Appends a header, keeping earlier values of the same name.
    ///
    /// # Panics
    ///
    /// If `name` or `value` is not a valid header name or value.
    #[track_caller]
    pub fn append_header<K, V>(mut self, name: K, value: V) -> Self
    where
        K: TryInto<HeaderName>,
        K::Error: fmt::Debug,
        V: TryInto<HeaderValue>,
        V::Error: fmt::Debug,
    {
        let (name, value) = header_pair(name, value);
        self.headers.append(name, value);
        self
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// A mutable reference to the status code.
    pub fn status_mut(&mut self) -> &mut StatusCode {
        &mut self.status
    }

    /// The headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The headers, to change.
    pub fn headers_mut(&mut self) -> &mut HeaderMap {
        &mut self.headers
    }

    /// The body, when it is held in memory (empty for a [streamed](Self::is_streamed) one).
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// Replaces the body (a streamed one too), keeping the headers (including `content-type`) as
    /// they are.
    pub fn set_body(&mut self, body: impl Into<Bytes>) {
        self.body = body.into();
        self.stream = None;
    }

    /// Typed values attached to the response, for middleware and the server.
    pub fn extensions(&self) -> &http::Extensions {
        &self.extensions
    }

    /// Typed values attached to the response, to change.
    pub fn extensions_mut(&mut self) -> &mut http::Extensions {
        &mut self.extensions
    }

    /// Converts into an `http::Response` (what hyper, axum and tower layers take).
    pub fn into_http(self) -> http::Response<Body> {
        let body = match self.stream {
            Some(stream) => stream,
            None => Body::full(self.body),
        };
        let mut res = http::Response::new(body);
        *res.status_mut() = self.status;
        *res.headers_mut() = self.headers;
        *res.extensions_mut() = self.extensions;
        res
    }
}

impl From<http::Response<Bytes>> for Response {
    fn from(res: http::Response<Bytes>) -> Self {
        let (parts, body) = res.into_parts();
        Self {
            status: parts.status,
            headers: parts.headers,
            body,
            stream: None,
            extensions: parts.extensions,
        }
    }
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("body_len", &self.body.len())
            .field("streamed", &self.stream.is_some())
            .finish_non_exhaustive()
    }
}

#[track_caller]
fn header_pair<K, V>(name: K, value: V) -> (HeaderName, HeaderValue)
where
    K: TryInto<HeaderName>,
    K::Error: fmt::Debug,
    V: TryInto<HeaderValue>,
    V::Error: fmt::Debug,
{
    let name = match name.try_into() {
        Ok(name) => name,
        Err(err) => panic!("invalid header name: {err:?}"),
    };
    let value = match value.try_into() {
        Ok(value) => value,
        Err(err) => panic!("invalid value for header `{name}`: {err:?}"),
    };
    (name, value)
}

fn cow_to_bytes(body: Cow<'static, str>) -> Bytes {
    match body {
        Cow::Borrowed(s) => Bytes::from_static(s.as_bytes()),
        Cow::Owned(s) => Bytes::from(s),
    }
}

/// Anything a handler can return: converted into a [`Response`].
///
/// Implemented for [`Response`], strings (`text/plain`), [`Html`], [`Json`], `serde_json::Value`,
/// [`StatusCode`] (an empty response), `(StatusCode, R)`, `()` (`204 No Content`), [`HttpError`] and
/// `Result<T, E>` where both convert.
///
/// # Example
///
/// ```
/// use verb_core::{HttpError, IntoResponse, Json, StatusCode};
///
/// fn find(id: u32) -> Result<Json<serde_json::Value>, HttpError> {
///     if id == 1 {
///         Ok(Json(serde_json::json!({ "id": id })))
///     } else {
///         Err(HttpError::not_found("no such user"))
///     }
/// }
/// assert_eq!(find(1).into_response().status(), StatusCode::OK);
/// assert_eq!(find(2).into_response().status(), StatusCode::NOT_FOUND);
/// ```
pub trait IntoResponse {
    /// Makes the response.
    fn into_response(self) -> Response;
}

impl IntoResponse for Response {
    fn into_response(self) -> Response {
        self
    }
}

impl IntoResponse for &'static str {
    fn into_response(self) -> Response {
        Response::text(self)
    }
}

impl IntoResponse for String {
    fn into_response(self) -> Response {
        Response::text(self)
    }
}

impl IntoResponse for Cow<'static, str> {
    fn into_response(self) -> Response {
        Response::text(self)
    }
}

impl IntoResponse for Bytes {
    fn into_response(self) -> Response {
        Response::bytes(self)
    }
}

impl IntoResponse for Vec<u8> {
    fn into_response(self) -> Response {
        Response::bytes(self)
    }
}

impl IntoResponse for StatusCode {
    fn into_response(self) -> Response {
        Response::new(self)
    }
}

impl IntoResponse for () {
    fn into_response(self) -> Response {
        Response::new(StatusCode::NO_CONTENT)
    }
}

impl IntoResponse for serde_json::Value {
    fn into_response(self) -> Response {
        Response::json(&self)
    }
}

impl<R: IntoResponse> IntoResponse for (StatusCode, R) {
    fn into_response(self) -> Response {
        self.1.into_response().with_status(self.0)
    }
}

impl<T: IntoResponse, E: IntoResponse> IntoResponse for Result<T, E> {
    fn into_response(self) -> Response {
        match self {
            Ok(ok) => ok.into_response(),
            Err(err) => err.into_response(),
        }
    }
}

/// A body answered as `text/html; charset=utf-8`.
///
/// ```
/// use verb_core::{Html, IntoResponse};
///
/// let res = Html("<h1>Hi</h1>").into_response();
/// assert_eq!(res.headers()["content-type"], "text/html; charset=utf-8");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Html<T>(pub T);

impl<T: Into<Cow<'static, str>>> IntoResponse for Html<T> {
    fn into_response(self) -> Response {
        Response::html(self.0)
    }
}

/// A value answered as `application/json`.
///
/// ```
/// use verb_core::{IntoResponse, Json};
///
/// #[derive(serde::Serialize)]
/// struct User { id: u32 }
///
/// let res = Json(User { id: 1 }).into_response();
/// assert_eq!(res.body(), r#"{"id":1}"#);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Json<T>(pub T);

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        Response::json(&self.0)
    }
}

impl From<HttpError> for Response {
    fn from(err: HttpError) -> Self {
        err.into_response()
    }
}
