//! Which web origins may reach an endpoint: the defence against cross-site WebSocket hijacking
//! (RFC 6455 §10.2) and against cross-site requests that ride on a cookie.

use std::fmt;
use std::sync::Arc;

use http::header;

use crate::error::HttpError;
use crate::handler::{BoxFuture, Middleware, Next};
use crate::request::Request;
use crate::response::{IntoResponse, Response};

/// Which `Origin`s an endpoint accepts.
///
/// A browser names the page that opened a WebSocket, or sent a cross-site request, in the `Origin`
/// header, and attaches that site's cookies whatever the page. Without a check, any site a user
/// visits can open a WebSocket that is authenticated with the user's cookie. The policy:
///
/// - a request with **no `Origin`** passes (it does not come from a browser page, and a non-browser
///   client can send whatever it likes anyway);
/// - a request whose `Origin` is the request's **own origin** passes: scheme of the listener (`https`
///   over TLS, else `http`), host and port of `Host` (default ports are the same as none);
/// - an `Origin` in the **allowed** list passes: exact origins (`https://app.example.com`) or subdomain
///   patterns (`https://*.example.com`, which matches `https://a.example.com` and
///   `https://a.b.example.com`, not `https://example.com`);
/// - any other is refused with **403** and a JSON error body, logged, and counted in
///   `verb_origin_refused_total`.
///
/// [`OriginPolicy::any`] accepts every origin: for public endpoints that authenticate with something
/// a foreign page cannot send (a token in the first message, say), never for cookie-authenticated ones.
///
/// Every WebSocket endpoint applies its policy (`WsConfig::allowed_origins`, `WsConfig::any_origin`)
/// before any middleware or application code. As [`Middleware`], the same policy guards HTTP routes
/// authenticated by cookie: CORS decides what a foreign page may *read*, but a form post or a
/// simple request is still *sent* with the cookie; an origin check refuses it before it runs.
///
/// # Example
///
/// ```
/// use verb_core::{OriginPolicy, Request};
///
/// let policy = OriginPolicy::same_origin().allow("https://*.example.com");
/// let own = Request::builder()
///     .header("host", "chat.example.com")
///     .header("origin", "http://chat.example.com")
///     .build();
/// assert!(policy.check(&own).is_ok());
/// let sub = Request::builder()
///     .header("host", "chat.example.com")
///     .header("origin", "https://a.example.com")
///     .build();
/// assert!(policy.check(&sub).is_ok());
/// let foreign = Request::builder()
///     .header("host", "chat.example.com")
///     .header("origin", "https://evil.test")
///     .build();
/// assert_eq!(policy.check(&foreign).unwrap_err().status(), 403);
/// ```
#[derive(Clone, Default)]
#[must_use]
pub struct OriginPolicy {
    any: bool,
    allowed: Arc<[AllowedOrigin]>,
}

impl OriginPolicy {
    /// The default: no `Origin` or the request's own origin passes, any other is refused.
    pub fn same_origin() -> Self {
        Self::default()
    }

    /// Every origin passes: the check is off. Only for endpoints that no cookie authenticates.
    pub fn any() -> Self {
        Self {
            any: true,
            allowed: Arc::from([]),
        }
    }

    /// Also accepts `origin`: an exact origin (`https://app.example.com`, `http://localhost:5173`) or a
    /// subdomain pattern (`https://*.example.com`). To check input first, use [`AllowedOrigin::parse`]
    /// and [`allow_parsed`](Self::allow_parsed).
    ///
    /// # Panics
    ///
    /// If `origin` is not an origin or a pattern (a programmer error, like a bad route pattern).
    #[track_caller]
    pub fn allow(self, origin: &str) -> Self {
        match AllowedOrigin::parse(origin) {
            Ok(origin) => self.allow_parsed(origin),
            Err(err) => panic!("OriginPolicy::allow: {err}"),
        }
    }

    /// Also accepts an origin already parsed.
    pub fn allow_parsed(self, origin: AllowedOrigin) -> Self {
        let mut allowed = self.allowed.to_vec();
        allowed.push(origin);
        Self {
            allowed: allowed.into(),
            ..self
        }
    }

    /// Whether every origin passes ([`any`](Self::any)).
    pub fn is_any(&self) -> bool {
        self.any
    }

    /// The origins accepted besides the request's own.
    pub fn allowed(&self) -> &[AllowedOrigin] {
        &self.allowed
    }

    /// Checks `req` against the policy.
    ///
    /// # Errors
    ///
    /// A 403 [`HttpError`] when `req` names an origin that the policy does not accept (also logged
    /// and counted).
    pub fn check(&self, req: &Request) -> Result<(), HttpError> {
        if self.any {
            return Ok(());
        }
        let Some(origin) = req.headers().get(header::ORIGIN) else {
            return Ok(());
        };
        let parsed = origin.to_str().ok().and_then(Origin::parse);
        if let Some(origin) = &parsed
            && (own_origin(req).as_ref() == Some(origin)
                || self.allowed.iter().any(|allowed| allowed.matches(origin)))
        {
            return Ok(());
        }
        metrics::counter!("verb_origin_refused_total").increment(1);
        tracing::info!(
            origin = %String::from_utf8_lossy(origin.as_bytes()),
            host = req.header("host").unwrap_or_default(),
            path = req.path(),
            remote = %req.remote_addr(),
            "request refused: its Origin is not allowed"
        );
        Err(HttpError::forbidden(
            "cross-origin request refused: this Origin is not allowed",
        ))
    }
}

impl Middleware for OriginPolicy {
    fn call(&self, req: Request, next: Next) -> BoxFuture<Response> {
        match self.check(&req) {
            Ok(()) => next.into_future(req),
            Err(err) => {
                let response = err.into_response();
                Box::pin(async move { response })
            }
        }
    }
}

impl fmt::Debug for OriginPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OriginPolicy")
            .field("any", &self.any)
            .field("allowed", &self.allowed)
            .finish()
    }
}

/// The origin of the request itself: the listener's scheme, the host and port it was sent to.
fn own_origin(req: &Request) -> Option<Origin> {
    let authority = match req.headers().get(header::HOST) {
        Some(host) => host.to_str().ok()?,
        None => req.uri().authority()?.as_str(),
    };
    Origin::from_parts(req.scheme(), authority)
}

/// An origin (RFC 6454): scheme, host and port, lowercased, with the scheme's default port filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin {
    scheme: Box<str>,
    host: Box<str>,
    port: u16,
}

impl Origin {
    /// `scheme://host[:port]` with nothing after it (an `Origin` header's form).
    fn parse(text: &str) -> Option<Self> {
        let (scheme, authority) = text.split_once("://")?;
        Self::from_parts(scheme, authority)
    }

    fn from_parts(scheme: &str, authority: &str) -> Option<Self> {
        let scheme = scheme.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "http" | "ws" => 80,
            "https" | "wss" => 443,
            _ => return None,
        };
        if authority.is_empty() || authority.contains(['/', '?', '#', '@', ' ']) {
            return None;
        }
        // An IPv6 literal keeps its brackets; the port follows the last `:` outside them.
        let (host, port) = match authority.rfind(':') {
            Some(colon) if !authority[colon..].contains(']') => {
                let port = authority[colon + 1..].parse().ok()?;
                (&authority[..colon], port)
            }
            _ => (authority, default_port),
        };
        if host.is_empty() || port == 0 {
            return None;
        }
        Some(Self {
            scheme: scheme.into(),
            host: host.to_ascii_lowercase().into(),
            port,
        })
    }
}

/// One entry of an [`OriginPolicy`]'s list: an exact origin, or `scheme://*.domain[:port]`.
///
/// ```
/// use verb_core::AllowedOrigin;
///
/// assert!(AllowedOrigin::parse("https://app.example.com").is_ok());
/// assert!(AllowedOrigin::parse("https://*.example.com").is_ok());
/// assert!(AllowedOrigin::parse("app.example.com").is_err()); // no scheme
/// assert!(AllowedOrigin::parse("https://example.com/path").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedOrigin {
    /// For a pattern, `host` is the suffix that a subdomain ends with (`.example.com`).
    origin: Origin,
    subdomains: bool,
}

impl AllowedOrigin {
    /// Parses `scheme://host[:port]` or `scheme://*.domain[:port]` (`http`, `https`; case does not
    /// matter).
    ///
    /// # Errors
    ///
    /// [`InvalidOrigin`] when `text` is neither.
    pub fn parse(text: &str) -> Result<Self, InvalidOrigin> {
        let invalid = || InvalidOrigin {
            text: text.to_owned(),
        };
        let (scheme, rest) = text.split_once("://").ok_or_else(invalid)?;
        let (subdomains, authority) = match rest.strip_prefix("*.") {
            Some(domain) => (true, domain),
            None => (false, rest),
        };
        let mut origin = Origin::from_parts(scheme, authority).ok_or_else(invalid)?;
        if origin.host.contains('*') {
            return Err(invalid());
        }
        if subdomains {
            origin.host = format!(".{}", origin.host).into();
        }
        Ok(Self { origin, subdomains })
    }

    fn matches(&self, origin: &Origin) -> bool {
        if self.origin.scheme != origin.scheme || self.origin.port != origin.port {
            return false;
        }
        if self.subdomains {
            origin.host.len() > self.origin.host.len() && origin.host.ends_with(&*self.origin.host)
        } else {
            self.origin.host == origin.host
        }
    }
}

impl std::str::FromStr for AllowedOrigin {
    type Err = InvalidOrigin;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

/// A string given as an allowed origin that is neither an origin nor a subdomain pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid origin {text:?}: expected scheme://host[:port] or scheme://*.domain[:port], e.g. https://app.example.com"
)]
pub struct InvalidOrigin {
    text: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(host: &str, origin: Option<&str>, secure: bool) -> Request {
        let mut builder = Request::builder().header("host", host).secure(secure);
        if let Some(origin) = origin {
            builder = builder.header("origin", origin);
        }
        builder.build()
    }

    /// No Origin and the request's own origin pass; scheme, host and port must all agree, with
    /// default ports equal to none; anything else (also `null` and garbage) is refused.
    #[test]
    fn same_origin_default() {
        let policy = OriginPolicy::same_origin();
        let ok = |host, origin, secure| policy.check(&req(host, origin, secure)).is_ok();
        assert!(ok("a.test:3000", None, false));
        assert!(ok("a.test:3000", Some("http://a.test:3000"), false));
        assert!(ok("A.Test:3000", Some("HTTP://a.TEST:3000"), false));
        assert!(ok("a.test", Some("http://a.test:80"), false));
        assert!(ok("a.test:443", Some("https://a.test"), true));
        assert!(ok("[::1]:3000", Some("http://[::1]:3000"), false));
        assert!(
            !ok("a.test:3000", Some("https://a.test:3000"), false),
            "scheme"
        );
        assert!(
            !ok("a.test:3000", Some("http://a.test:3000"), true),
            "scheme over TLS"
        );
        assert!(
            !ok("a.test:3000", Some("http://a.test:3001"), false),
            "port"
        );
        assert!(
            !ok("a.test:3000", Some("http://b.test:3000"), false),
            "host"
        );
        assert!(!ok("a.test:3000", Some("null"), false));
        assert!(!ok("a.test:3000", Some("http://a.test:3000/x"), false));
        assert!(!ok("a.test:3000", Some(""), false));
    }

    /// Exact entries and subdomain patterns; a pattern does not match its apex or another scheme.
    #[test]
    fn allowed_origins_and_patterns() {
        let policy = OriginPolicy::same_origin()
            .allow("https://app.example.com")
            .allow("http://*.example.com:8080");
        let ok = |origin| {
            policy
                .check(&req("server.test", Some(origin), false))
                .is_ok()
        };
        assert!(ok("https://app.example.com"));
        assert!(ok("https://APP.example.com:443"));
        assert!(!ok("http://app.example.com"));
        assert!(ok("http://a.example.com:8080"));
        assert!(ok("http://a.b.example.com:8080"));
        assert!(
            !ok("http://example.com:8080"),
            "the apex is not a subdomain"
        );
        assert!(!ok("http://evilexample.com:8080"));
        assert!(!ok("http://a.example.com"), "another port");
        assert!(
            OriginPolicy::any()
                .check(&req("x", Some("https://evil.test"), false))
                .is_ok()
        );
    }

    #[test]
    fn allowed_origin_parsing() {
        for bad in [
            "",
            "example.com",
            "ftp://a.test",
            "https://",
            "https://a.test/",
            "https://*.",
            "https://a.*.test",
            "https://a.test:x",
            "https://u@a.test",
        ] {
            assert!(AllowedOrigin::parse(bad).is_err(), "{bad:?}");
        }
        let err = AllowedOrigin::parse("example.com").unwrap_err();
        assert!(err.to_string().contains("example.com"));
    }
}
