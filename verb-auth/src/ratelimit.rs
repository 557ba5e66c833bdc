//! Rate limiting with governor (GCRA): per client (or per key) for HTTP requests and WebSocket
//! upgrades, per connection for WebSocket messages.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::nanos::Nanos;
use governor::state::StateStore;
use governor::state::keyed::ShrinkableKeyedStateStore;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde_json::json;
use verb_core::{
    BoxFuture, HeaderValue, HttpError, IntoResponse, Middleware, Next, Request, Response,
    StatusCode,
};
use verb_ws::{Attachment, CloseCode, Message, Verdict, WebSocket};

type KeyedLimiter = RateLimiter<String, BoundedStore, DefaultClock, StateInformationMiddleware>;
type KeyFn = dyn Fn(&Request) -> Option<String> + Send + Sync;

/// Keys a [`RateLimit`] tracks at most, by default.
const DEFAULT_MAX_KEYS: usize = 100_000;
const STORE_SHARDS: usize = 16;

/// The keyed limiter's state: each key's GCRA "theoretical arrival time", in shards, with at most
/// `max_keys` keys. A new key in a full shard first evicts the shard's eighth with the oldest
/// arrival times (those least recently limited, a key with a time in the past being no different
/// from an absent one), so each eviction costs a sort of one shard, paid once per many inserts.
struct BoundedStore {
    shards: [Mutex<HashMap<String, u64>>; STORE_SHARDS],
    hasher: RandomState,
    per_shard: usize,
    evictions: Arc<AtomicU64>,
}

impl BoundedStore {
    fn new(max_keys: usize, evictions: Arc<AtomicU64>) -> Self {
        Self {
            shards: std::array::from_fn(|_| Mutex::new(HashMap::new())),
            hasher: RandomState::new(),
            per_shard: max_keys.div_ceil(STORE_SHARDS).max(1),
            evictions,
        }
    }

    fn shard(&self, key: &str) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        let index = (self.hasher.hash_one(key) as usize) % STORE_SHARDS;
        self.shards[index]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Makes room for one key in a full shard.
    fn evict(&self, shard: &mut HashMap<String, u64>) {
        let mut times: Vec<u64> = shard.values().copied().collect();
        let drop = (times.len() / 8).max(1);
        let (_, &mut threshold, _) = times.select_nth_unstable(drop - 1);
        let before = shard.len();
        let mut left = drop;
        shard.retain(|_, tat| {
            if left > 0 && *tat <= threshold {
                left -= 1;
                false
            } else {
                true
            }
        });
        let evicted = (before - shard.len()) as u64;
        self.evictions.fetch_add(evicted, Ordering::Relaxed);
        metrics::counter!("verb_rate_limit_evictions_total").increment(evicted);
    }
}

impl StateStore for BoundedStore {
    type Key = String;

    fn measure_and_replace<T, F, E>(&self, key: &String, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let mut shard = self.shard(key);
        if let Some(tat) = shard.get_mut(key) {
            let (result, next) = f(Some(Nanos::from(*tat)))?;
            *tat = next.into();
            return Ok(result);
        }
        let (result, next) = f(None)?;
        if shard.len() >= self.per_shard {
            self.evict(&mut shard);
        }
        shard.insert(key.clone(), next.into());
        Ok(result)
    }
}

impl ShrinkableKeyedStateStore<String> for BoundedStore {
    fn retain_recent(&self, drop_below: Nanos) {
        let drop_below = u64::from(drop_below);
        for shard in &self.shards {
            let mut shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            shard.retain(|_, tat| *tat >= drop_below);
            if shard.capacity() > 64 && shard.len() < shard.capacity() / 4 {
                shard.shrink_to_fit();
            }
        }
    }

    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| shard.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A rate: `count` events per `period`, with a burst (default: `count`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rate {
    count: NonZeroU32,
    period: Duration,
    burst: NonZeroU32,
}

impl Rate {
    fn new(count: u32, period: Duration) -> Self {
        let count = NonZeroU32::new(count.max(1)).unwrap_or(NonZeroU32::MIN);
        Self {
            count,
            period,
            burst: count,
        }
    }

    /// One cell every `period / count`.
    fn interval(&self) -> Duration {
        (self.period / self.count.get()).max(Duration::from_nanos(1))
    }

    fn quota(&self) -> Quota {
        Quota::with_period(self.interval())
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(self.burst)
    }
}

/// The store key of a client: an IPv4 address as is, an IPv6 one as its network of `prefix` bits
/// (`2001:db8:1:2::/64`); an IPv4-mapped IPv6 address counts as its IPv4 address.
fn client_key(ip: IpAddr, prefix: u8) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let mask = u128::MAX.checked_shl(u32::from(128 - prefix)).unwrap_or(0);
                let network = std::net::Ipv6Addr::from(u128::from(v6) & mask);
                format!("{network}/{prefix}")
            }
        },
    }
}

fn ceil_secs(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

/// Rate limiting middleware for HTTP routes and WebSocket upgrades: GCRA with a burst, keyed by client
/// IP (or by a key of your choice, such as a user id from claims). Over the limit: `429` with a JSON
/// body, `Retry-After`, and `RateLimit-Limit` / `RateLimit-Remaining` / `RateLimit-Reset`; allowed
/// responses carry the `RateLimit-*` headers too. The store holds at most
/// [`max_keys`](Self::max_keys) clients (100,000; beyond that the least recently limited are
/// evicted and counted), and a timer sweeps keys whose bucket has refilled, off the request path.
///
/// `X-Forwarded-For` is ignored unless the direct peer is one of the [trusted
/// proxies](Self::trust_proxies).
///
/// ```
/// use verb_auth::RateLimit;
///
/// // The docs' login limit: 5 a minute per client IP, in a burst of at most 5.
/// let login_limit = RateLimit::per_minute(5).burst(5);
/// # let _ = login_limit;
/// ```
#[derive(Clone)]
pub struct RateLimit {
    inner: Arc<Inner>,
}

struct Inner {
    rate: Rate,
    limiter: KeyedLimiter,
    key: Option<Arc<KeyFn>>,
    trusted_proxies: Vec<IpAddr>,
    /// IPv6 clients are keyed by their network of this many leading bits.
    ipv6_prefix: u8,
    max_keys: usize,
    /// Keys the store evicted.
    evictions: Arc<AtomicU64>,
    /// The sweeper task, started by the first check (inside the runtime).
    sweeper: OnceLock<()>,
}

/// The prefix that keys an IPv6 client: one end site usually holds a whole /64, so keying by full
/// address would let one client take 2^64 keys.
const DEFAULT_IPV6_PREFIX: u8 = 64;

impl RateLimit {
    fn with_rate(rate: Rate) -> Self {
        let evictions = Arc::new(AtomicU64::new(0));
        Self {
            inner: Arc::new(Inner {
                rate,
                limiter: limiter(rate, DEFAULT_MAX_KEYS, &evictions),
                key: None,
                trusted_proxies: Vec::new(),
                ipv6_prefix: DEFAULT_IPV6_PREFIX,
                max_keys: DEFAULT_MAX_KEYS,
                evictions,
                sweeper: OnceLock::new(),
            }),
        }
    }

    /// A copy with a changed configuration (and a fresh store: configure before serving).
    fn rebuild(self, f: impl FnOnce(&mut Rate, &mut Option<Arc<KeyFn>>, &mut Vec<IpAddr>)) -> Self {
        let mut rate = self.inner.rate;
        let mut key = self.inner.key.clone();
        let mut trusted_proxies = self.inner.trusted_proxies.clone();
        f(&mut rate, &mut key, &mut trusted_proxies);
        let evictions = Arc::new(AtomicU64::new(0));
        Self {
            inner: Arc::new(Inner {
                rate,
                limiter: limiter(rate, self.inner.max_keys, &evictions),
                key,
                trusted_proxies,
                ipv6_prefix: self.inner.ipv6_prefix,
                max_keys: self.inner.max_keys,
                evictions,
                sweeper: OnceLock::new(),
            }),
        }
    }

    /// How many keys (clients) the store holds at most: a new key beyond that evicts the least
    /// recently limited ones (counted by [`evictions`](Self::evictions) and
    /// `verb_rate_limit_evictions_total`); an evicted client starts again with a full burst.
    ///
    /// Default is 100,000.
    pub fn max_keys(self, keys: usize) -> Self {
        let keys = keys.max(1);
        let mut this = self.rebuild(|_, _, _| {});
        if let Some(inner) = Arc::get_mut(&mut this.inner) {
            inner.max_keys = keys;
            inner.limiter = limiter(inner.rate, keys, &inner.evictions);
        }
        this
    }

    /// Keys evicted so far because the store was full.
    pub fn evictions(&self) -> u64 {
        self.inner.evictions.load(Ordering::Relaxed)
    }

    /// `count` requests per second per client.
    pub fn per_second(count: u32) -> Self {
        Self::with_rate(Rate::new(count, Duration::from_secs(1)))
    }

    /// `count` requests per minute per client.
    pub fn per_minute(count: u32) -> Self {
        Self::with_rate(Rate::new(count, Duration::from_secs(60)))
    }

    /// `count` requests per `period` per client.
    pub fn per(count: u32, period: Duration) -> Self {
        Self::with_rate(Rate::new(count, period))
    }

    /// How many requests may come at once after a quiet spell.
    ///
    /// Default is the per-period count.
    pub fn burst(self, burst: u32) -> Self {
        self.rebuild(|rate, _, _| {
            rate.burst = NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN);
        })
    }

    /// Limits by this key instead of the client IP (`None`: fall back to the IP), for instance a user
    /// id from claims or an API key header.
    pub fn key_by(self, key: impl Fn(&Request) -> Option<String> + Send + Sync + 'static) -> Self {
        self.rebuild(|_, slot, _| *slot = Some(Arc::new(key)))
    }

    /// Proxies whose `X-Forwarded-For` is believed: when the direct peer is one of them, the client is
    /// the right-most address in that header that is not a trusted proxy.
    ///
    /// Default is none: the header is ignored.
    pub fn trust_proxies(self, proxies: impl IntoIterator<Item = IpAddr>) -> Self {
        let proxies: Vec<IpAddr> = proxies.into_iter().collect();
        self.rebuild(|_, _, trusted| *trusted = proxies)
    }

    /// Keys IPv6 clients by their network of `bits` leading bits (IPv4 clients by their address), so
    /// that one client cannot spread its requests over the many addresses of its network. `128` keys
    /// by full address.
    ///
    /// Default is `64`.
    pub fn ipv6_prefix(self, bits: u8) -> Self {
        let bits = bits.min(128);
        let mut this = self.rebuild(|_, _, _| {});
        if let Some(inner) = Arc::get_mut(&mut this.inner) {
            inner.ipv6_prefix = bits;
        }
        this
    }

    /// The client address of `req`, honouring trusted proxies.
    pub fn client_ip(&self, req: &Request) -> IpAddr {
        let peer = req.remote_addr().ip();
        if !self.inner.trusted_proxies.contains(&peer) {
            return peer;
        }
        req.headers()
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .filter_map(|item| item.trim().parse::<IpAddr>().ok())
            .rev()
            .find(|ip| !self.inner.trusted_proxies.contains(ip))
            .unwrap_or(peer)
    }

    fn key(&self, req: &Request) -> String {
        self.inner
            .key
            .as_ref()
            .and_then(|key| key(req))
            .unwrap_or_else(|| client_key(self.client_ip(req), self.inner.ipv6_prefix))
    }

    /// How many keys the store holds now.
    pub fn tracked_keys(&self) -> usize {
        self.inner.limiter.len()
    }

    /// Starts the task that sweeps keys whose bucket is full again (no different from absent ones),
    /// once per refill period (between 1 s and 60 s), off the request path. It ends with the limiter.
    fn start_sweeper(&self) {
        self.inner.sweeper.get_or_init(|| {
            let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                return;
            };
            let every = self
                .inner
                .rate
                .period
                .clamp(Duration::from_secs(1), Duration::from_secs(60));
            runtime.spawn(sweep(Arc::downgrade(&self.inner), every));
        });
    }

    fn headers(&self, response: &mut Response, remaining: u32, reset: Duration) {
        let headers = response.headers_mut();
        let mut set = |name: &'static str, value: u64| {
            headers.insert(name, HeaderValue::from(value));
        };
        set("ratelimit-limit", u64::from(self.inner.rate.burst.get()));
        set("ratelimit-remaining", u64::from(remaining));
        set("ratelimit-reset", ceil_secs(reset));
    }
}

impl Middleware for RateLimit {
    fn call(&self, req: Request, next: Next) -> BoxFuture<Response> {
        self.start_sweeper();
        let key = self.key(&req);
        let interval = self.inner.rate.interval();
        match self.inner.limiter.check_key(&key) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                let used = self.inner.rate.burst.get().saturating_sub(remaining);
                let reset = interval * used;
                let this = self.clone();
                Box::pin(async move {
                    let mut response = next.run(req).await;
                    this.headers(&mut response, remaining, reset);
                    response
                })
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                let retry_after = ceil_secs(wait).max(1);
                tracing::info!(key, path = req.path(), retry_after, "rate limited");
                metrics::counter!("verb_rate_limited_total", "scope" => "http").increment(1);
                let mut response = HttpError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!("rate limit exceeded; retry in {retry_after} s"),
                )
                .into_response();
                response
                    .headers_mut()
                    .insert("retry-after", HeaderValue::from(retry_after));
                self.headers(&mut response, 0, wait);
                Box::pin(async move { response })
            }
        }
    }
}

/// The limiter over a bounded store.
fn limiter(rate: Rate, max_keys: usize, evictions: &Arc<AtomicU64>) -> KeyedLimiter {
    let store = BoundedStore::new(max_keys, Arc::clone(evictions));
    RateLimiter::<String, _, _, governor::middleware::NoOpMiddleware<_>>::new(
        rate.quota(),
        store,
        DefaultClock::default(),
    )
    .with_middleware()
}

/// Sweeps `inner`'s store every `every` while the limiter exists.
async fn sweep(inner: Weak<Inner>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        inner.limiter.retain_recent();
    }
}

impl fmt::Debug for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit")
            .field("rate", &self.inner.rate)
            .field("keyed_by_fn", &self.inner.key.is_some())
            .field("trusted_proxies", &self.inner.trusted_proxies)
            .field("tracked_keys", &self.tracked_keys())
            .field("max_keys", &self.inner.max_keys)
            .finish()
    }
}

/// Per-connection limits on WebSocket messages, as an endpoint attachment: messages (and optionally
/// bytes) per second with a burst. A message over the limit is refused with
/// `{"type":"error","message":"Rate limit exceeded"}` and never reaches the app; after
/// [`close_after`](Self::close_after) refusals in a row the connection is closed with 1008.
///
/// ```
/// use verb_auth::MessageRateLimit;
/// use verb_ws::Ws;
///
/// let chat = Ws::new().attach(
///     MessageRateLimit::per_second(20)
///         .burst(40)
///         .bytes_per_second(256 * 1024)
///         .close_after(50),
/// );
/// # let _ = chat;
/// ```
#[derive(Debug, Clone)]
pub struct MessageRateLimit {
    messages: Rate,
    bytes: Option<Rate>,
    close_after: Option<u32>,
}

/// One connection's buckets, kept in its data.
struct ConnectionLimits {
    messages: DefaultDirectRateLimiter,
    bytes: Option<DefaultDirectRateLimiter>,
    refused_in_a_row: u32,
}

impl MessageRateLimit {
    /// `count` messages per second per connection (burst: `count`), refusing the rest without
    /// closing.
    pub fn per_second(count: u32) -> Self {
        Self {
            messages: Rate::new(count, Duration::from_secs(1)),
            bytes: None,
            close_after: None,
        }
    }

    /// How many messages may come at once.
    ///
    /// Default is the per-second count.
    pub fn burst(mut self, burst: u32) -> Self {
        self.messages.burst = NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN);
        self
    }

    /// Also limits payload bytes per second (burst: one second's worth).
    pub fn bytes_per_second(mut self, bytes: u32) -> Self {
        self.bytes = Some(Rate::new(bytes, Duration::from_secs(1)));
        self
    }

    /// Closes with 1008 after `refusals` refused messages in a row (an allowed message resets the
    /// count).
    ///
    /// Default: never close, only refuse.
    pub fn close_after(mut self, refusals: u32) -> Self {
        self.close_after = Some(refusals.max(1));
        self
    }
}

impl Attachment for MessageRateLimit {
    fn opened(&self, ws: &WebSocket) {
        ws.set_data(ConnectionLimits {
            messages: RateLimiter::direct(self.messages.quota()),
            bytes: self.bytes.map(|rate| RateLimiter::direct(rate.quota())),
            refused_in_a_row: 0,
        });
    }

    fn message(&self, ws: &WebSocket, message: &Message) -> Verdict {
        let len = message.len();
        let refusals = ws.with_data(|limits: &mut ConnectionLimits| {
            let mut allowed = limits.messages.check().is_ok();
            if allowed && let Some(bytes) = &limits.bytes {
                let cells = NonZeroU32::new(u32::try_from(len).unwrap_or(u32::MAX));
                allowed = match cells {
                    // An empty message costs no bytes; one over the whole burst can never pass.
                    None => true,
                    Some(cells) => matches!(bytes.check_n(cells), Ok(Ok(()))),
                };
            }
            if allowed {
                limits.refused_in_a_row = 0;
                None
            } else {
                limits.refused_in_a_row += 1;
                Some(limits.refused_in_a_row)
            }
        });
        let Some(Some(refusals)) = refusals else {
            return Verdict::Pass;
        };
        metrics::counter!("verb_rate_limited_total", "scope" => "ws").increment(1);
        if self.close_after.is_some_and(|limit| refusals >= limit) {
            tracing::info!(id = ws.id(), peer = %ws.remote_addr(), refusals, "message flood: closing");
            return Verdict::Close(
                CloseCode::POLICY_VIOLATION,
                "rate limit exceeded".to_owned(),
            );
        }
        tracing::debug!(
            id = ws.id(),
            refusals,
            "message over the rate limit refused"
        );
        ws.send_json(&json!({ "type": "error", "message": "Rate limit exceeded" }));
        Verdict::Stop
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(peer: &str, forwarded: Option<&str>) -> Request {
        let mut builder = Request::builder().remote_addr(peer.parse().unwrap());
        if let Some(forwarded) = forwarded {
            builder = builder.header("x-forwarded-for", forwarded);
        }
        builder.build()
    }

    /// IPv6 clients share a key per /64 by default (a client's network holds 2^64 addresses); the
    /// prefix is configurable; IPv4 and IPv4-mapped addresses key by address.
    #[test]
    fn ipv6_clients_are_keyed_by_their_network() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            client_key(ip("2001:db8:1:2:aaaa::1"), 64),
            "2001:db8:1:2::/64"
        );
        assert_eq!(
            client_key(ip("2001:db8:1:2:aaaa::1"), 64),
            client_key(ip("2001:db8:1:2:ffff:1:2:3"), 64)
        );
        assert_ne!(
            client_key(ip("2001:db8:1:2::1"), 64),
            client_key(ip("2001:db8:1:3::1"), 64)
        );
        assert_eq!(client_key(ip("2001:db8::1"), 128), "2001:db8::1/128");
        assert_eq!(client_key(ip("2001:db8::1"), 0), "::/0");
        assert_eq!(client_key(ip("203.0.113.9"), 64), "203.0.113.9");
        assert_eq!(client_key(ip("::ffff:203.0.113.9"), 64), "203.0.113.9");

        // Through the middleware: a second address of the same /64 is over the limit of one a minute.
        let limit = RateLimit::per_minute(1);
        let chain = verb_core::Chain::new(
            vec![Arc::new(limit.clone())],
            Arc::new(|_req: Request| async { "ok" }),
        );
        let status = |peer: &'static str| {
            let chain = chain.clone();
            async move {
                use verb_core::Handler;
                chain.call(request(peer, None)).await.status()
            }
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            assert_eq!(status("[2001:db8:1:2::1]:5000").await, StatusCode::OK);
            assert_eq!(
                status("[2001:db8:1:2::99]:5000").await,
                StatusCode::TOO_MANY_REQUESTS
            );
            assert_eq!(status("[2001:db8:1:3::1]:5000").await, StatusCode::OK);
        });
        assert_eq!(limit.tracked_keys(), 2);
        let per_address = RateLimit::per_minute(1).ipv6_prefix(128);
        assert_eq!(
            per_address.key(&request("[2001:db8:1:2::1]:1", None)),
            "2001:db8:1:2::1/128"
        );
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let plain = RateLimit::per_second(1);
        assert_eq!(
            plain.client_ip(&request("10.0.0.1:5000", Some("203.0.113.9"))),
            ip("10.0.0.1")
        );
        let proxied = RateLimit::per_second(1).trust_proxies([ip("10.0.0.1"), ip("10.0.0.2")]);
        // The right-most address that is not a trusted proxy: a client cannot spoof by prepending.
        assert_eq!(
            proxied.client_ip(&request(
                "10.0.0.1:5000",
                Some("1.2.3.4, 203.0.113.9, 10.0.0.2")
            )),
            ip("203.0.113.9")
        );
        // From an untrusted peer the header is ignored.
        assert_eq!(
            proxied.client_ip(&request("198.51.100.7:5000", Some("1.2.3.4"))),
            ip("198.51.100.7")
        );
        // Garbage in the header falls back to the peer.
        assert_eq!(
            proxied.client_ip(&request("10.0.0.1:5000", Some("not an ip"))),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn rates_turn_into_quotas() {
        let rate = Rate::new(5, Duration::from_secs(60));
        assert_eq!(rate.interval(), Duration::from_secs(12));
        assert_eq!(rate.burst.get(), 5);
        // A zero count is treated as one, never a panic.
        assert_eq!(Rate::new(0, Duration::from_secs(1)).count.get(), 1);
        assert_eq!(ceil_secs(Duration::from_millis(1)), 1);
        assert_eq!(ceil_secs(Duration::from_secs(2)), 2);
    }
}
