//! The opening handshake (RFC 6455 §4.2): validate the request, answer 101, hand the socket to the
//! engine.

use http::{HeaderMap, HeaderValue, Method, StatusCode, Version, header};
use verb_core::{HttpError, IntoResponse, Lifecycle, Request, Response};

use crate::engine;
use crate::handler::{Ws, over_capacity_message};
use crate::proto::deflate;
use crate::socket::{Negotiated, WebSocket};
use crate::stats;

/// Whether `headers` ask for a WebSocket upgrade (`Upgrade: websocket`).
///
/// ```
/// use verb_core::Request;
///
/// let req = Request::builder().header("upgrade", "WebSocket").build();
/// assert!(verb_ws::is_upgrade_request(req.headers()));
/// ```
pub fn is_upgrade_request(headers: &HeaderMap) -> bool {
    has_token(headers, header::UPGRADE, "websocket")
}

fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|item| item.trim().eq_ignore_ascii_case(token))
}

/// A `Sec-WebSocket-Key` must be the base64 encoding of 16 bytes: 22 significant characters and `==`.
fn valid_key(key: &[u8]) -> bool {
    let is_b64 = |c: &u8| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/';
    key.len() == 24
        && key[..22].iter().all(is_b64)
        // The last significant character carries only two bits of data; the rest must be zero.
        && matches!(key[21], b'A' | b'Q' | b'g' | b'w')
        && &key[22..] == b"=="
}

fn refuse(version: Version, status: StatusCode, message: &'static str) -> Response {
    tracing::debug!(%status, message, "WebSocket upgrade refused");
    stats::upgrade(status, version);
    HttpError::new(status, message).into_response()
}

/// Answers an upgrade request: `101` and a spawned connection, or an HTTP error.
pub(crate) fn upgrade(endpoint: &Ws, mut req: Request) -> Response {
    // Before anything else: a cross-site page must learn nothing from this endpoint (RFC 6455 §10.2).
    if let Err(refused) = endpoint.config.origin.check(&req) {
        stats::upgrade(refused.status(), req.version());
        return refused.into_response();
    }
    let key = if req.version() == Version::HTTP_2 {
        // RFC 8441: an extended CONNECT opens a WebSocket on this stream; no key, and `200`.
        if let Err(refused) = check_extended_connect(&req) {
            return refused;
        }
        None
    } else {
        match check_http11(&req) {
            Ok(key) => Some(key),
            Err(refused) => return refused,
        }
    };
    let on_upgrade = match req.upgrade() {
        Ok(on_upgrade) => on_upgrade,
        Err(err) => {
            tracing::error!(error = %err, "WebSocket upgrade impossible");
            stats::upgrade(StatusCode::INTERNAL_SERVER_ERROR, req.version());
            return HttpError::internal(
                "this request cannot be upgraded: its server hands over no connection",
            )
            .into_response();
        }
    };

    let config = &endpoint.config;
    let slot = endpoint.count.try_acquire(config.max_connections);
    let over_capacity = match (&slot, over_capacity_message(config)) {
        (Some(_), _) => None,
        (None, Some(message)) => Some(message.to_owned()),
        (None, None) => {
            tracing::warn!(
                max = config.max_connections,
                "WebSocket upgrade refused: at capacity"
            );
            return refuse(
                req.version(),
                StatusCode::SERVICE_UNAVAILABLE,
                "the server is at its WebSocket connection limit",
            )
            .header(header::RETRY_AFTER, "5");
        }
    };

    let protocol = choose_protocol(req.headers(), &config.protocols);
    let mut response = match &key {
        Some(key) => {
            let mut response = Response::new(StatusCode::SWITCHING_PROTOCOLS)
                .header(header::UPGRADE, "websocket")
                .header(header::CONNECTION, "Upgrade");
            let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
            // The accept key is base64, always a valid header value.
            if let Ok(accept) = HeaderValue::try_from(accept) {
                response
                    .headers_mut()
                    .insert(header::SEC_WEBSOCKET_ACCEPT, accept);
            }
            response
        }
        None => Response::new(StatusCode::OK),
    };
    if let Some(protocol) = &protocol {
        if let Ok(value) = HeaderValue::try_from(protocol.as_str()) {
            response
                .headers_mut()
                .insert(header::SEC_WEBSOCKET_PROTOCOL, value);
        }
    }
    let deflate = config
        .compression
        .as_ref()
        .and_then(|settings| deflate::negotiate(req.headers(), settings));
    let deflate = deflate.map(|(deflate, answer)| {
        response
            .headers_mut()
            .insert(header::SEC_WEBSOCKET_EXTENSIONS, answer);
        deflate
    });
    for (name, value) in &config.headers {
        response.headers_mut().append(name.clone(), value.clone());
    }

    let lifecycle = req
        .extensions()
        .get::<Lifecycle>()
        .cloned()
        .unwrap_or_else(Lifecycle::detached);
    // What middleware attached to the upgrade request (claims, ...) stays with the connection; the
    // server's own lifecycle handle does not, and an empty set costs no allocation.
    let mut extensions = req.extensions().clone();
    extensions.remove::<Lifecycle>();
    if extensions.is_empty() {
        extensions = http::Extensions::new();
    }
    let ws = WebSocket::new(
        req.remote_addr(),
        Negotiated {
            protocol: protocol.map(String::into_boxed_str),
            deflate,
        },
        config.backpressure_limit,
        config.close_on_backpressure_limit,
        endpoint.attachments.clone(),
        endpoint.metrics.get(),
        extensions,
    );
    stats::upgrade(response.status(), req.version());
    tracing::debug!(http = ?req.version(), path = req.path(), "WebSocket upgrade accepted");
    let start = Box::new(engine::Start {
        on_upgrade,
        req,
        ws,
        handler: endpoint.handler.clone(),
        config: endpoint.config.clone(),
        lifecycle: lifecycle.clone(),
        over_capacity,
        slot,
    });
    lifecycle.spawn(engine::run(start));
    response
}

/// The HTTP/1.1 handshake's checks (RFC 6455 §4.2.1); the client's key.
#[allow(
    clippy::result_large_err,
    reason = "a refusal is the answer itself, made once per refused handshake"
)]
fn check_http11(req: &Request) -> Result<HeaderValue, Response> {
    if req.method() != Method::GET {
        return Err(refuse(
            req.version(),
            StatusCode::METHOD_NOT_ALLOWED,
            "a WebSocket upgrade must use GET",
        )
        .header(header::ALLOW, "GET"));
    }
    if req.version() < Version::HTTP_11 {
        return Err(refuse(
            req.version(),
            StatusCode::BAD_REQUEST,
            "a WebSocket upgrade needs HTTP/1.1",
        ));
    }
    if !is_upgrade_request(req.headers()) {
        return Err(refuse(
            req.version(),
            StatusCode::UPGRADE_REQUIRED,
            "this endpoint speaks WebSocket: send `Upgrade: websocket`",
        )
        .header(header::UPGRADE, "websocket")
        .header(header::CONNECTION, "Upgrade"));
    }
    if !has_token(req.headers(), header::CONNECTION, "upgrade") {
        return Err(refuse(
            req.version(),
            StatusCode::BAD_REQUEST,
            "a WebSocket upgrade needs `Connection: Upgrade`",
        ));
    }
    check_version(req)?;
    match req.headers().get(header::SEC_WEBSOCKET_KEY) {
        Some(key) if valid_key(key.as_bytes()) => Ok(key.clone()),
        _ => Err(refuse(
            req.version(),
            StatusCode::BAD_REQUEST,
            "missing or malformed Sec-WebSocket-Key",
        )),
    }
}

/// RFC 8441 §4–5: `CONNECT` with `:protocol = websocket` and version 13.
#[allow(
    clippy::result_large_err,
    reason = "a refusal is the answer itself, made once per refused handshake"
)]
fn check_extended_connect(req: &Request) -> Result<(), Response> {
    if req.method() != Method::CONNECT {
        return Err(refuse(
            req.version(),
            StatusCode::METHOD_NOT_ALLOWED,
            "over HTTP/2 a WebSocket opens with an extended CONNECT (RFC 8441)",
        )
        .header(header::ALLOW, "CONNECT"));
    }
    if req.protocol() != Some("websocket") {
        return Err(refuse(
            req.version(),
            StatusCode::BAD_REQUEST,
            "an extended CONNECT here needs `:protocol` = websocket",
        ));
    }
    check_version(req)
}

#[allow(
    clippy::result_large_err,
    reason = "a refusal is the answer itself, made once per refused handshake"
)]
fn check_version(req: &Request) -> Result<(), Response> {
    if req
        .headers()
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v.as_bytes() != b"13")
    {
        return Err(refuse(
            req.version(),
            StatusCode::UPGRADE_REQUIRED,
            "unsupported or missing Sec-WebSocket-Version; this server speaks 13",
        )
        .header(header::SEC_WEBSOCKET_VERSION, "13"));
    }
    Ok(())
}

/// Whether `req` asks to open a WebSocket: `Upgrade: websocket` (HTTP/1.1), or an HTTP/2 extended
/// CONNECT with `:protocol = websocket` (RFC 8441).
///
/// ```
/// use verb_core::Request;
///
/// let req = Request::builder().header("upgrade", "websocket").build();
/// assert!(verb_ws::is_websocket_request(&req));
/// assert!(!verb_ws::is_websocket_request(&Request::builder().build()));
/// ```
pub fn is_websocket_request(req: &Request) -> bool {
    is_upgrade_request(req.headers())
        || (req.method() == Method::CONNECT && req.protocol() == Some("websocket"))
}

/// The first of the server's protocols that the client offers.
fn choose_protocol(headers: &HeaderMap, server: &[String]) -> Option<String> {
    if server.is_empty() {
        return None;
    }
    let offered: Vec<&str> = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    server
        .iter()
        .find(|ours| offered.iter().any(|theirs| theirs == ours))
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The RFC's sample key is valid; wrong lengths, padding and alphabets are not.
    #[test]
    fn key_validation_follows_the_rfc() {
        assert!(valid_key(b"dGhlIHNhbXBsZSBub25jZQ=="));
        assert!(!valid_key(b"dGhlIHNhbXBsZSBub25jZQ="));
        assert!(
            !valid_key(b"dGhlIHNhbXBsZSBub25jZR=="),
            "non-zero padding bits"
        );
        assert!(!valid_key(b"dGhlIHNhbXBsZSBub25j*Q=="));
        assert!(!valid_key(b""));
        assert!(!valid_key(b"c2hvcnQ="));
    }

    /// The server's order wins among the protocols the client offers.
    #[test]
    fn server_protocol_order_wins() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("notification, chat"),
        );
        let server = ["chat".to_owned(), "notification".to_owned()];
        assert_eq!(choose_protocol(&headers, &server).as_deref(), Some("chat"));
        assert_eq!(choose_protocol(&headers, &["x".to_owned()]), None);
        assert_eq!(choose_protocol(&HeaderMap::new(), &server), None);
    }
}
