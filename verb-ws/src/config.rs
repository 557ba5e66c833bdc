//! The documented WebSocket configuration.

use std::time::Duration;

use http::{HeaderName, HeaderValue};
use verb_core::OriginPolicy;

use crate::proto::deflate::Compression;

/// What happens to an upgrade over [`WsConfig::max_connections`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OverCapacity {
    /// Refuse the upgrade with `503 Service Unavailable` and `Retry-After` (the default).
    #[default]
    Refuse,
    /// Accept the upgrade, send this text message, then close with 1013 (try again later), as the
    /// guide's connection-limit example does.
    CloseWith(String),
}

/// WebSocket settings: limits, timeouts, backpressure and the handshake.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use verb_ws::WsConfig;
///
/// let config = WsConfig::new()
///     .max_payload_length(16 * 1024 * 1024)
///     .idle_timeout(Duration::from_secs(120))
///     .backpressure_limit(64 * 1024)
///     .protocols(["chat", "notification"])
///     .header("x-websocket-server", "Verb");
/// assert_eq!(config.get_backpressure_limit(), 64 * 1024);
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct WsConfig {
    pub(crate) max_payload_length: usize,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) backpressure_limit: usize,
    pub(crate) close_on_backpressure_limit: bool,
    pub(crate) protocols: Vec<String>,
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    pub(crate) max_connections: Option<usize>,
    pub(crate) over_capacity: OverCapacity,
    pub(crate) compression: Option<Compression>,
    pub(crate) close_timeout: Duration,
    pub(crate) origin: OriginPolicy,
}

impl Default for WsConfig {
    fn default() -> Self {
        Self {
            max_payload_length: 16 * 1024 * 1024,
            idle_timeout: Some(Duration::from_secs(120)),
            backpressure_limit: 1024 * 1024,
            close_on_backpressure_limit: false,
            protocols: Vec::new(),
            headers: Vec::new(),
            max_connections: None,
            over_capacity: OverCapacity::Refuse,
            compression: None,
            close_timeout: Duration::from_secs(5),
            origin: OriginPolicy::same_origin(),
        }
    }
}

impl WsConfig {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Largest message accepted, in bytes (all fragments together). A larger one closes the connection
    /// with 1009 as soon as its frame header announces it, before the payload is buffered.
    ///
    /// Default is 16 MiB.
    pub fn max_payload_length(mut self, bytes: usize) -> Self {
        self.max_payload_length = bytes;
        self
    }

    /// How long a connection may stay silent. After half of it the server pings; a peer that sends
    /// nothing (not even the pong) for the whole of it is closed with 1001. `None` disables both.
    ///
    /// Default is 120 seconds.
    pub fn idle_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.idle_timeout = timeout.into().map(clamp_timeout);
        self
    }

    /// Bytes that may wait in a connection's send queue. A send that finds the queue at or over the limit
    /// is dropped (`SendStatus::Dropped`); one that takes it over reports `Backpressured`; `drain`
    /// fires when the queue empties again. This bounds the memory a slow reader can cost.
    ///
    /// Default is 1 MiB.
    pub fn backpressure_limit(mut self, bytes: usize) -> Self {
        self.backpressure_limit = bytes;
        self
    }

    /// Close (1008) a connection whose send queue is at the limit when another send arrives, instead of
    /// dropping that message.
    ///
    /// Default is `false`.
    pub fn close_on_backpressure_limit(mut self, close: bool) -> Self {
        self.close_on_backpressure_limit = close;
        self
    }

    /// Subprotocols the server speaks, in its order of preference: the first one the client also offers
    /// is chosen; with no match the response names none.
    ///
    /// Default is none.
    pub fn protocols<I, S>(mut self, protocols: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.protocols = protocols.into_iter().map(Into::into).collect();
        self
    }

    /// Adds a header to the `101 Switching Protocols` response.
    ///
    /// # Panics
    ///
    /// If `name` or `value` is not a valid header name or value.
    #[track_caller]
    pub fn header(mut self, name: &str, value: &str) -> Self {
        let name = HeaderName::try_from(name)
            .unwrap_or_else(|err| panic!("invalid header name {name:?}: {err}"));
        let value = HeaderValue::try_from(value)
            .unwrap_or_else(|err| panic!("invalid value for header {name}: {err}"));
        self.headers.push((name, value));
        self
    }

    /// Most WebSockets open at once on this endpoint; what happens to the next is [`OverCapacity`].
    ///
    /// Default is no limit.
    pub fn max_connections(mut self, max: usize) -> Self {
        self.max_connections = Some(max);
        self
    }

    /// What to do with an upgrade over [`max_connections`](Self::max_connections).
    ///
    /// Default is [`OverCapacity::Refuse`].
    pub fn over_capacity(mut self, policy: OverCapacity) -> Self {
        self.over_capacity = policy;
        self
    }

    /// Whether to negotiate permessage-deflate (RFC 7692) with clients that offer it, with the default
    /// [`Compression`] settings. Clients that do not offer it get plain frames either way.
    ///
    /// Default is `false`.
    pub fn compression(mut self, enabled: bool) -> Self {
        self.compression = enabled.then(Compression::default);
        self
    }

    /// Negotiates permessage-deflate with these settings.
    pub fn compression_with(mut self, settings: Compression) -> Self {
        self.compression = Some(settings);
        self
    }

    /// How long the server waits for the peer's close frame after sending its own, before dropping the
    /// connection.
    ///
    /// Default is 5 seconds.
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = clamp_timeout(timeout);
        self
    }

    /// Also accepts upgrades from these origins: exact origins (`https://app.example.com`) or subdomain
    /// patterns (`https://*.example.com`), added to the request's own origin (see [`OriginPolicy`]).
    /// An upgrade whose `Origin` is none of them is refused with 403 before any middleware or callback
    /// runs; one without `Origin` (not a browser) passes.
    ///
    /// Default is the request's own origin only.
    ///
    /// # Panics
    ///
    /// If an entry is not an origin or a pattern; check input with
    /// [`AllowedOrigin::parse`](verb_core::AllowedOrigin::parse) first.
    #[track_caller]
    pub fn allowed_origins<I, S>(mut self, origins: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        for origin in origins {
            self.origin = self.origin.allow(origin.as_ref());
        }
        self
    }

    /// Accepts upgrades from every origin: the cross-site check is off. Only for endpoints that no
    /// cookie authenticates (a cross-site page can open a WebSocket with the user's cookies).
    ///
    /// Default is off (the request's own origin only).
    pub fn any_origin(mut self) -> Self {
        self.origin = OriginPolicy::any();
        self
    }

    /// Replaces the origin policy.
    ///
    /// Default is [`OriginPolicy::same_origin`].
    pub fn origin_policy(mut self, policy: OriginPolicy) -> Self {
        self.origin = policy;
        self
    }

    /// The origin policy.
    pub fn get_origin_policy(&self) -> &OriginPolicy {
        &self.origin
    }

    /// The payload limit.
    pub fn get_max_payload_length(&self) -> usize {
        self.max_payload_length
    }

    /// The idle timeout.
    pub fn get_idle_timeout(&self) -> Option<Duration> {
        self.idle_timeout
    }

    /// The backpressure limit.
    pub fn get_backpressure_limit(&self) -> usize {
        self.backpressure_limit
    }

    /// Whether compression is negotiated.
    pub fn get_compression(&self) -> bool {
        self.compression.is_some()
    }

    /// The compression settings, when compression is on.
    pub fn get_compression_settings(&self) -> Option<&Compression> {
        self.compression.as_ref()
    }
}

/// The longest timeout the engine keeps: longer ones (up to `Duration::MAX`) mean "practically never"
/// and are cut to this, so that deadline arithmetic cannot overflow.
pub(crate) const MAX_TIMEOUT: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

pub(crate) fn clamp_timeout(timeout: Duration) -> Duration {
    timeout.min(MAX_TIMEOUT)
}
