//! Requests as handlers see them.

use std::borrow::Cow;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};

use bytes::Bytes;
use http::{HeaderMap, Method, Uri, Version};
use serde::de::DeserializeOwned;

use crate::body::BodyStream;
use crate::error::{JsonRejection, QueryRejection, TextRejection};
use crate::upgrade::{OnUpgrade, UpgradeError};

/// An HTTP request with its body read into memory.
///
/// The server reads the body (up to the configured limit) before the handler runs, so the accessors
/// here are synchronous. Path parameters are filled in by the router that matched the request.
///
/// # Example
///
/// ```
/// use verb_core::Request;
///
/// let mut req = Request::builder()
///     .uri("/users/7?token=abc&page=2")
///     .header("cookie", "theme=dark; lang=en")
///     .body(r#"{"name":"ada"}"#)
///     .build();
/// req.params_mut().push("id", "7");
///
/// assert_eq!(req.path(), "/users/7");
/// assert_eq!(req.param("id"), Some("7"));
/// assert_eq!(req.query("token").as_deref(), Some("abc"));
/// assert_eq!(req.cookie("lang"), Some("en"));
///
/// #[derive(serde::Deserialize)]
/// struct NewUser { name: String }
/// let user: NewUser = req.json().unwrap();
/// assert_eq!(user.name, "ada");
/// ```
pub struct Request {
    head: http::request::Parts,
    body: Bytes,
    params: Params,
    remote_addr: SocketAddr,
    /// Whether it arrived over TLS.
    secure: bool,
    /// The body, unread, for a handler that streams it ([`BodyMode::Streamed`](crate::BodyMode)).
    stream: Option<BodyStream>,
}

impl Request {
    /// A request from its HTTP parts, body and the peer's address.
    pub fn from_parts(head: http::request::Parts, body: Bytes, remote_addr: SocketAddr) -> Self {
        Self {
            head,
            body,
            params: Params::default(),
            remote_addr,
            secure: false,
            stream: None,
        }
    }

    /// Gives the request a body to stream instead of the one in memory.
    pub(crate) fn with_stream(mut self, stream: BodyStream) -> Self {
        self.stream = Some(stream);
        self
    }

    /// Whether the body is still unread, waiting in [`body_stream`](Self::body_stream).
    pub fn is_streamed(&self) -> bool {
        self.stream.is_some()
    }

    /// The body as it arrives, for routes that stream it ([`BodyMode::Streamed`](crate::BodyMode),
    /// e.g. the facade's `Route::stream_body`); for a buffered body, the bytes in memory as one chunk.
    /// Either way the body is taken: a second call, and [`body`](Self::body) after it, are empty.
    pub fn body_stream(&mut self) -> BodyStream {
        match self.stream.take() {
            Some(stream) => stream,
            None => BodyStream::buffered(std::mem::take(&mut self.body)),
        }
    }

    /// Takes the unread body stream, if there is one.
    pub(crate) fn take_stream(&mut self) -> Option<BodyStream> {
        self.stream.take()
    }

    /// Marks the request as received over TLS (or not); servers set it, [`from_parts`](Self::from_parts)
    /// starts with `false`.
    pub fn with_secure(mut self, secure: bool) -> Self {
        self.secure = secure;
        self
    }

    /// Whether the request arrived over TLS.
    pub fn is_secure(&self) -> bool {
        self.secure
    }

    /// The scheme of the listener the request arrived on: `"https"` over TLS, else `"http"`. With the
    /// `Host` header it gives the request's own origin (RFC 6454), which WebSocket endpoints compare
    /// with `Origin`.
    pub fn scheme(&self) -> &'static str {
        if self.secure { "https" } else { "http" }
    }

    /// A builder, for tests and for calling handlers directly.
    pub fn builder() -> RequestBuilder {
        RequestBuilder {
            inner: http::Request::builder(),
            body: Bytes::new(),
            remote_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            secure: false,
        }
    }

    /// The method.
    pub fn method(&self) -> &Method {
        &self.head.method
    }

    /// The request target as sent.
    pub fn uri(&self) -> &Uri {
        &self.head.uri
    }

    /// The request target, to change (for middleware that rewrites paths, and nesting).
    pub fn uri_mut(&mut self) -> &mut Uri {
        &mut self.head.uri
    }

    /// The path, without the query string, as sent (not percent-decoded).
    pub fn path(&self) -> &str {
        self.head.uri.path()
    }

    /// The HTTP version.
    pub fn version(&self) -> Version {
        self.head.version
    }

    /// The headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.head.headers
    }

    /// The headers, to change (for middleware).
    pub fn headers_mut(&mut self) -> &mut HeaderMap {
        &mut self.head.headers
    }

    /// The value of header `name` if it is present and visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.headers.get(name)?.to_str().ok()
    }

    /// The `:protocol` pseudo-header of an HTTP/2 extended CONNECT (RFC 8441: `websocket` for a
    /// WebSocket over an HTTP/2 stream); `None` for every other request.
    pub fn protocol(&self) -> Option<&str> {
        self.head
            .extensions
            .get::<hyper::ext::Protocol>()
            .map(hyper::ext::Protocol::as_str)
    }

    /// The `Last-Event-ID` header: the id of the last Server-Sent Event a reconnecting browser saw
    /// (see [`Sse`](crate::Sse)).
    pub fn last_event_id(&self) -> Option<&str> {
        self.header("last-event-id")
    }

    /// The path parameters captured by the route (`/users/:id` → `id`), percent-decoded.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The path parameters, to change (routers fill them in).
    pub fn params_mut(&mut self) -> &mut Params {
        &mut self.params
    }

    /// The path parameter `name`, percent-decoded.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name)
    }

    /// The raw query string, without the `?`.
    pub fn query_string(&self) -> Option<&str> {
        self.head.uri.query()
    }

    /// The first value of query parameter `name`, decoded (`+` and `%XX`).
    ///
    /// Invalid UTF-8 in the decoded value is replaced by U+FFFD.
    pub fn query(&self, name: &str) -> Option<String> {
        let query = self.head.uri.query()?;
        form_urlencoded::parse(query.as_bytes())
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
    }

    /// The query string deserialized into `T`.
    ///
    /// ```
    /// # use verb_core::Request;
    /// #[derive(serde::Deserialize)]
    /// struct Page { page: u32, per_page: Option<u32> }
    ///
    /// let req = Request::builder().uri("/items?page=3").build();
    /// let page: Page = req.query_as().unwrap();
    /// assert_eq!((page.page, page.per_page), (3, None));
    /// ```
    ///
    /// # Errors
    ///
    /// [`QueryRejection`] (a `400` when returned) when a field is missing or has the wrong type.
    pub fn query_as<T: DeserializeOwned>(&self) -> Result<T, QueryRejection> {
        let query = self.head.uri.query().unwrap_or_default();
        serde_urlencoded::from_str(query).map_err(QueryRejection::new)
    }

    /// The value of cookie `name` from the `Cookie` headers, as sent (not decoded).
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value)
    }

    /// Every cookie of the `Cookie` headers as `(name, value)` pairs, in order.
    pub fn cookies(&self) -> impl Iterator<Item = (&str, &str)> {
        self.head
            .headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(';'))
            .filter_map(|pair| {
                let (name, value) = pair.split_once('=')?;
                let value = value.trim();
                let value = value
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(value);
                Some((name.trim(), value))
            })
    }

    /// The address of the peer that sent the request.
    ///
    /// Behind a proxy this is the proxy's address.
    pub fn remote_addr(&self) -> SocketAddr {
        self.remote_addr
    }

    /// The body.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The body as UTF-8 text.
    ///
    /// # Errors
    ///
    /// [`TextRejection`] (a `400` when returned) when the body is not valid UTF-8.
    pub fn text(&self) -> Result<&str, TextRejection> {
        std::str::from_utf8(&self.body).map_err(TextRejection::new)
    }

    /// The body parsed as JSON into `T`.
    ///
    /// The `content-type` header is not checked, so clients that forget it still work.
    ///
    /// # Errors
    ///
    /// [`JsonRejection`] (a `400` when returned, whose message names the problem) when the body is not
    /// JSON or does not match `T`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, JsonRejection> {
        serde_json::from_slice(&self.body).map_err(JsonRejection::new)
    }

    /// Takes over the request's connection once the response has switched protocols: the future of
    /// the upgraded connection (see [`crate::upgrade`] for where it works). Call it before returning
    /// the `101`, spawn a task that awaits it, and return the response.
    ///
    /// # Errors
    ///
    /// [`UpgradeError::Unavailable`] when the request carries no connection to hand over (built by
    /// hand, served without upgrade support, or already taken).
    pub fn upgrade(&mut self) -> Result<OnUpgrade, UpgradeError> {
        OnUpgrade::take_from(&mut self.head.extensions).ok_or(UpgradeError::Unavailable)
    }

    /// Whether [`upgrade`](Self::upgrade) would hand over a connection.
    pub fn is_upgradable(&self) -> bool {
        OnUpgrade::is_in(&self.head.extensions)
    }

    /// Typed values attached to the request, e.g. by middleware.
    ///
    /// ```
    /// # use verb_core::Request;
    /// #[derive(Clone)]
    /// struct UserId(u64);
    ///
    /// let mut req = Request::builder().build();
    /// req.extensions_mut().insert(UserId(42));
    /// assert_eq!(req.extensions().get::<UserId>().map(|u| u.0), Some(42));
    /// ```
    pub fn extensions(&self) -> &http::Extensions {
        &self.head.extensions
    }

    /// Typed values attached to the request, to change.
    pub fn extensions_mut(&mut self) -> &mut http::Extensions {
        &mut self.head.extensions
    }

    /// Splits into the HTTP head, the body and the path parameters.
    pub fn into_parts(self) -> (http::request::Parts, Bytes, Params) {
        (self.head, self.body, self.params)
    }
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.head.method)
            .field("uri", &self.head.uri)
            .field("params", &self.params)
            .field("remote_addr", &self.remote_addr)
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

/// Builds a [`Request`] by hand; see [`Request::builder`].
#[derive(Debug)]
#[must_use]
pub struct RequestBuilder {
    inner: http::request::Builder,
    body: Bytes,
    remote_addr: SocketAddr,
    secure: bool,
}

impl RequestBuilder {
    /// The method. Default is `GET`.
    pub fn method(mut self, method: Method) -> Self {
        self.inner = self.inner.method(method);
        self
    }

    /// The request target. Default is `/`.
    pub fn uri(mut self, uri: &str) -> Self {
        self.inner = self.inner.uri(uri);
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.inner = self.inner.header(name, value);
        self
    }

    /// The body. Default is empty.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// The peer's address. Default is `127.0.0.1:0`.
    pub fn remote_addr(mut self, addr: SocketAddr) -> Self {
        self.remote_addr = addr;
        self
    }

    /// Whether the request arrived over TLS. Default is `false`.
    pub fn secure(mut self, secure: bool) -> Self {
        self.secure = secure;
        self
    }

    /// Makes the request.
    ///
    /// # Panics
    ///
    /// If the URI or a header given to the builder was invalid.
    #[track_caller]
    pub fn build(self) -> Request {
        let req = match self.inner.body(()) {
            Ok(req) => req,
            Err(err) => panic!("invalid request given to RequestBuilder: {err}"),
        };
        let (head, ()) = req.into_parts();
        Request::from_parts(head, self.body, self.remote_addr).with_secure(self.secure)
    }
}

/// Path parameters captured by a route, percent-decoded, in pattern order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    entries: Vec<(Box<str>, String)>,
}

impl Params {
    /// The value of parameter `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(key, _)| &**key == name)
            .map(|(_, value)| value.as_str())
    }

    /// Adds a parameter (as a router does), keeping `value` as given.
    pub fn push(&mut self, name: &str, value: impl Into<String>) {
        self.entries.push((name.into(), value.into()));
    }

    /// Adds a parameter from a raw path segment, percent-decoding it.
    ///
    /// # Errors
    ///
    /// [`InvalidParam`] when the decoded bytes are not UTF-8.
    pub fn push_encoded(&mut self, name: &str, raw: &str) -> Result<(), InvalidParam> {
        let value = percent_encoding::percent_decode_str(raw)
            .decode_utf8()
            .map_err(|_| InvalidParam { name: name.into() })?;
        let value = match value {
            Cow::Borrowed(v) => v.to_owned(),
            Cow::Owned(v) => v,
        };
        self.entries.push((name.into(), value));
        Ok(())
    }

    /// Every `(name, value)` pair in pattern order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (&**k, v.as_str()))
    }

    /// How many parameters there are.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Removes every parameter.
    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

/// A path parameter that does not percent-decode to UTF-8.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("path parameter `{name}` is not valid UTF-8 once percent-decoded")]
pub struct InvalidParam {
    /// The parameter's name.
    pub name: String,
}
