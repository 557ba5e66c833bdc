//! Errors: the HTTP errors a request can end in, and the errors of running a server.
//!
//! Every failure a client can cause becomes an [`HttpError`]: a status code and a message, answered as
//! JSON `{"error": "<reason phrase>", "message": "<what went wrong>"}`. The typed rejections of
//! [`Request`](crate::Request)'s accessors ([`JsonRejection`], [`QueryRejection`], [`TextRejection`])
//! convert into it, so a handler can use `?` on them and return `Result<_, HttpError>`.

use std::borrow::Cow;
use std::fmt;
use std::io;
use std::net::SocketAddr;

use http::StatusCode;

use crate::response::{IntoResponse, Response};

/// An error answered to the client as a status code with a JSON body.
///
/// The body is `{"error": "<reason phrase of the status>", "message": "<message>"}`.
///
/// # Example
///
/// ```
/// use verb_core::{HttpError, IntoResponse, StatusCode};
///
/// let err = HttpError::new(StatusCode::FORBIDDEN, "admins only");
/// let res = err.into_response();
/// assert_eq!(res.status(), StatusCode::FORBIDDEN);
/// assert_eq!(res.body(), r#"{"error":"Forbidden","message":"admins only"}"#);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    status: StatusCode,
    message: Cow<'static, str>,
}

impl HttpError {
    /// An error with this status and message.
    pub fn new(status: StatusCode, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    /// `400 Bad Request` with this message.
    pub fn bad_request(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// `401 Unauthorized` with this message.
    pub fn unauthorized(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }

    /// `403 Forbidden` with this message.
    pub fn forbidden(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }

    /// `404 Not Found` with this message.
    pub fn not_found(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// `500 Internal Server Error` with this message.
    ///
    /// The message reaches the client: keep internal details out of it.
    pub fn internal(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.status, self.message)
    }
}

impl std::error::Error for HttpError {}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        #[derive(serde::Serialize)]
        struct Body<'a> {
            error: &'a str,
            message: &'a str,
        }
        let body = Body {
            error: self.status.canonical_reason().unwrap_or("Error"),
            message: &self.message,
        };
        Response::json(&body).with_status(self.status)
    }
}

/// The request body is not valid JSON, or not the JSON the handler expects.
///
/// Converts into `400 Bad Request` whose message names the problem (e.g. "missing field `name` at line 1
/// column 2").
#[derive(Debug, thiserror::Error)]
#[error("invalid JSON body: {source}")]
pub struct JsonRejection {
    source: serde_json::Error,
}

impl JsonRejection {
    pub(crate) fn new(source: serde_json::Error) -> Self {
        Self { source }
    }
}

impl From<JsonRejection> for HttpError {
    fn from(rejection: JsonRejection) -> Self {
        HttpError::bad_request(rejection.to_string())
    }
}

impl IntoResponse for JsonRejection {
    fn into_response(self) -> Response {
        HttpError::from(self).into_response()
    }
}

/// The query string does not deserialize into the type the handler asked for.
///
/// Converts into `400 Bad Request`.
#[derive(Debug, thiserror::Error)]
#[error("invalid query string: {source}")]
pub struct QueryRejection {
    source: serde_urlencoded::de::Error,
}

impl QueryRejection {
    pub(crate) fn new(source: serde_urlencoded::de::Error) -> Self {
        Self { source }
    }
}

impl From<QueryRejection> for HttpError {
    fn from(rejection: QueryRejection) -> Self {
        HttpError::bad_request(rejection.to_string())
    }
}

impl IntoResponse for QueryRejection {
    fn into_response(self) -> Response {
        HttpError::from(self).into_response()
    }
}

/// The request body is not valid UTF-8.
///
/// Converts into `400 Bad Request`.
#[derive(Debug, thiserror::Error)]
#[error("request body is not valid UTF-8: {source}")]
pub struct TextRejection {
    source: std::str::Utf8Error,
}

impl TextRejection {
    pub(crate) fn new(source: std::str::Utf8Error) -> Self {
        Self { source }
    }
}

impl From<TextRejection> for HttpError {
    fn from(rejection: TextRejection) -> Self {
        HttpError::bad_request(rejection.to_string())
    }
}

impl IntoResponse for TextRejection {
    fn into_response(self) -> Response {
        HttpError::from(self).into_response()
    }
}

/// An error starting or running a server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address as given.
        addr: String,
        /// Why binding failed.
        #[source]
        source: io::Error,
    },
    /// A host name did not resolve to any address.
    #[error("cannot listen on {addr}: the host name did not resolve to any address")]
    NoAddress {
        /// The address as given.
        addr: String,
    },
    /// The bound socket's local address could not be read.
    #[error("cannot read the local address of the listener: {0}")]
    LocalAddr(#[source] io::Error),
    /// Waiting for the shutdown signal (Ctrl-C, SIGTERM) failed.
    #[error("cannot install the shutdown signal handler: {0}")]
    Signal(#[source] io::Error),
    /// The requested protocol needs a feature that this server does not have.
    #[error("{protocol} is not supported by this server: {reason}")]
    Unsupported {
        /// The protocol asked for.
        protocol: &'static str,
        /// What is missing.
        reason: &'static str,
    },
    /// Graceful shutdown did not finish before the deadline; the remaining connections were dropped.
    #[error("graceful shutdown timed out after {timeout:?}; {remaining} connection(s) dropped")]
    ShutdownTimeout {
        /// The deadline that passed.
        timeout: std::time::Duration,
        /// Connections still open when it passed.
        remaining: usize,
    },
}

/// Where a server listens: a port on every interface, or a socket address or `host:port` string.
///
/// Built from a `u16` (every IPv4 interface, `0.0.0.0:PORT`, as Bun and Node do), a [`SocketAddr`], an
/// `(IpAddr, u16)` pair, or a string such as `"127.0.0.1:0"` or `"localhost:3000"`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ListenAddr {
    /// A socket address.
    Addr(SocketAddr),
    /// A `host:port` string to resolve.
    Host(String),
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Addr(addr) => addr.fmt(f),
            ListenAddr::Host(host) => f.write_str(host),
        }
    }
}

impl From<u16> for ListenAddr {
    fn from(port: u16) -> Self {
        ListenAddr::Addr(SocketAddr::from(([0, 0, 0, 0], port)))
    }
}

impl From<SocketAddr> for ListenAddr {
    fn from(addr: SocketAddr) -> Self {
        ListenAddr::Addr(addr)
    }
}

impl From<(std::net::IpAddr, u16)> for ListenAddr {
    fn from(addr: (std::net::IpAddr, u16)) -> Self {
        ListenAddr::Addr(addr.into())
    }
}

impl From<([u8; 4], u16)> for ListenAddr {
    fn from(addr: ([u8; 4], u16)) -> Self {
        ListenAddr::Addr(addr.into())
    }
}

impl From<&str> for ListenAddr {
    fn from(addr: &str) -> Self {
        match addr.parse() {
            Ok(addr) => ListenAddr::Addr(addr),
            Err(_) => ListenAddr::Host(addr.to_owned()),
        }
    }
}

impl From<String> for ListenAddr {
    fn from(addr: String) -> Self {
        ListenAddr::from(addr.as_str())
    }
}

impl From<(&str, u16)> for ListenAddr {
    fn from((host, port): (&str, u16)) -> Self {
        match host.parse::<std::net::IpAddr>() {
            Ok(ip) => ListenAddr::Addr(SocketAddr::new(ip, port)),
            Err(_) => ListenAddr::Host(format!("{host}:{port}")),
        }
    }
}
