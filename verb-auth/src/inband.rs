//! In-band authentication: the connection opens unauthenticated and must send a token in its first
//! messages, within a deadline.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use verb_ws::{Attachment, CloseCode, Message, Verdict, WebSocket};

use crate::jwt::{Claims, Jwt};
use crate::middleware::{Authenticated, RefreshClaims, install};

type SuccessFn<C> = dyn Fn(&WebSocket, &C) + Send + Sync;

/// In-band authentication for a WebSocket endpoint (the docs' first pattern), as an attachment:
///
/// 1. On open the client gets `{"type":"auth_required","message":"Please authenticate"}`.
/// 2. `{"type":"auth","token":"<jwt>"}` with a valid token authenticates the connection: its claims
///    are then `ws.claims::<C>()`, and [`on_success`](Self::on_success) runs (by default it sends
///    `{"type":"auth_success"}`). An invalid token gets `{"type":"auth_failed","message":"Invalid
///    token"}` and close 1008.
/// 3. Until then any other message gets `{"type":"error","message":"Authentication required"}` and
///    never reaches the app's `message` callback; a message over
///    [`max_unauthenticated_message`](Self::max_unauthenticated_message) (4 KiB) closes the
///    connection with 1009 while it is read. A pending connection is not
///    [admitted](WebSocket::set_admitted): broadcasts to everyone (`rooms.everyone()`) skip it.
/// 4. No valid token within the timeout (10 s by default): `{"type":"auth_timeout","message":
///    "Authentication timeout"}` and close 1008.
/// 5. Once authenticated, the connection lives as long as its token: when `exp` plus the
///    [leeway](Jwt::leeway) passes it is closed with 1008 `token expired`, unless the client sent
///    `{"type":"refresh","token":"<newer jwt>"}` in time (answered `{"type":"refreshed",
///    "expiresIn":seconds}`; an invalid token or another `sub` gets `auth_failed` and close 1008).
///    [`expire_connections(false)`](Self::expire_connections) turns the expiry off.
///
/// The auth message is read into a small struct of borrowed fields, never into a whole JSON tree.
/// The deadline uses the connection's [`close_after`](WebSocket::close_after) timer: an app that sets
/// its own timer before authentication replaces this deadline (unauthenticated messages are still
/// refused), and a successful authentication cancels the timer.
///
/// ```
/// use std::time::Duration;
/// use verb_auth::{Claims, ClaimsExt, InbandAuth, Jwt};
/// use verb_ws::{Message, WebSocket, Ws};
///
/// let jwt = Jwt::hs256(b"a long random secret, at least 32 bytes").expect("32 bytes or more");
/// let chat = Ws::new()
///     .attach(InbandAuth::<Claims>::new(jwt).timeout(Duration::from_secs(10)))
///     .message(|ws: &WebSocket, msg: Message| {
///         // Only authenticated connections get here.
///         let user = ws.claims::<Claims>().map(|c| c.sub).unwrap_or_default();
///         ws.send_text(format!("{user}: {}", msg.as_text().unwrap_or_default()));
///     });
/// # let _ = chat;
/// ```
pub struct InbandAuth<C = Claims> {
    jwt: Jwt,
    timeout: Duration,
    max_unauthenticated: usize,
    expire_connections: bool,
    on_success: Arc<SuccessFn<C>>,
    claims: PhantomData<fn() -> C>,
}

impl<C> InbandAuth<C>
where
    C: DeserializeOwned + Clone + Send + Sync + 'static,
{
    /// Verifies tokens with `jwt`; 10 s to authenticate.
    pub fn new(jwt: Jwt) -> Self {
        Self {
            jwt,
            timeout: Duration::from_secs(10),
            max_unauthenticated: 4096,
            expire_connections: true,
            on_success: Arc::new(|ws: &WebSocket, _claims: &C| {
                ws.send_json(&json!({ "type": "auth_success" }));
            }),
            claims: PhantomData,
        }
    }

    /// How long a connection has to authenticate.
    ///
    /// Default is 10 seconds.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The largest message a connection may send before it has authenticated; a larger one closes
    /// it with 1009 (message too big) as soon as its header is read. Afterwards the endpoint's
    /// `max_payload_length` applies.
    ///
    /// Default is 4096 bytes.
    pub fn max_unauthenticated_message(mut self, bytes: usize) -> Self {
        self.max_unauthenticated = bytes.max(1);
        self
    }

    /// Whether an authenticated connection is closed (1008 `token expired`) once its token's `exp`
    /// plus the leeway has passed, unless it refreshed the token in time.
    ///
    /// Default is `true`.
    pub fn expire_connections(mut self, expire: bool) -> Self {
        self.expire_connections = expire;
        self
    }

    /// Runs when a connection authenticates (instead of sending `{"type":"auth_success"}`): send the
    /// app's welcome, join rooms, ...
    pub fn on_success(mut self, f: impl Fn(&WebSocket, &C) + Send + Sync + 'static) -> Self {
        self.on_success = Arc::new(f);
        self
    }

    fn authenticate(&self, ws: &WebSocket, token: &str) -> Verdict {
        match self.jwt.verify_session::<C>(token) {
            Ok(session) => {
                ws.cancel_close_after();
                ws.set_max_message_size(None);
                let claims = session.claims.clone();
                install(ws, session, self.expire_connections);
                ws.set_admitted(true);
                tracing::debug!(id = ws.id(), "in-band authentication succeeded");
                (self.on_success)(ws, &claims);
                Verdict::Stop
            }
            Err(err) => refuse(ws, "in-band authentication failed", &err),
        }
    }

    fn refresh(&self, ws: &WebSocket, token: &str) -> Verdict {
        match ws.refresh_claims::<C>(&self.jwt, token) {
            Ok(valid) => {
                tracing::debug!(id = ws.id(), valid_s = valid.as_secs(), "token refreshed");
                let expires_in = valid.as_secs_f64().round() as u64;
                ws.send_json(&json!({ "type": "refreshed", "expiresIn": expires_in }));
                Verdict::Stop
            }
            Err(err) => refuse(ws, "token refresh refused", &err),
        }
    }
}

/// `auth_failed`, then close 1008.
fn refuse(ws: &WebSocket, what: &'static str, err: &crate::JwtError) -> Verdict {
    tracing::info!(id = ws.id(), peer = %ws.remote_addr(), error = %err, "{what}");
    metrics::counter!("verb_auth_refused_total").increment(1);
    ws.send_json(&json!({ "type": "auth_failed", "message": "Invalid token" }));
    Verdict::Close(CloseCode::POLICY_VIOLATION, "Invalid token".to_owned())
}

/// Whether a connection has authenticated (stored in the connection's data).
fn is_authenticated<C: Clone + Send + Sync + 'static>(ws: &WebSocket) -> bool {
    ws.has_data::<Authenticated<C>>()
}

/// The fields of an `auth` or `refresh` message, borrowed from the frame (the rest is skipped).
#[derive(Deserialize)]
struct Command<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    token: Option<Cow<'a, str>>,
}

impl<'a> Command<'a> {
    fn parse(message: &'a Message) -> Option<Self> {
        serde_json::from_str(message.as_text()?).ok()
    }
}

impl<C> Attachment for InbandAuth<C>
where
    C: DeserializeOwned + Clone + Send + Sync + 'static,
{
    fn opened(&self, ws: &WebSocket) {
        ws.set_admitted(false);
        ws.set_max_message_size(Some(self.max_unauthenticated));
        ws.send_json(&json!({ "type": "auth_required", "message": "Please authenticate" }));
        let last = json!({ "type": "auth_timeout", "message": "Authentication timeout" });
        ws.close_after(
            self.timeout,
            Some(Message::text(last.to_string())),
            CloseCode::POLICY_VIOLATION,
            "Authentication timeout",
        );
    }

    fn message(&self, ws: &WebSocket, message: &Message) -> Verdict {
        if is_authenticated::<C>(ws) {
            // Only a small text that names `refresh` can be one: the app's traffic is not parsed.
            let maybe_refresh = message.as_text().is_some_and(|text| {
                text.len() <= self.max_unauthenticated && text.contains("\"refresh\"")
            });
            if maybe_refresh {
                if let Some(command) = Command::parse(message).filter(|c| c.kind == "refresh") {
                    return self.refresh(ws, command.token.as_deref().unwrap_or_default());
                }
            }
            return Verdict::Pass;
        }
        match Command::parse(message) {
            Some(command) if command.kind == "auth" => {
                self.authenticate(ws, command.token.as_deref().unwrap_or_default())
            }
            _ => {
                ws.send_json(&json!({ "type": "error", "message": "Authentication required" }));
                Verdict::Stop
            }
        }
    }
}

impl<C> fmt::Debug for InbandAuth<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InbandAuth")
            .field("jwt", &self.jwt)
            .field("timeout", &self.timeout)
            .field("max_unauthenticated", &self.max_unauthenticated)
            .field("expire_connections", &self.expire_connections)
            .finish_non_exhaustive()
    }
}
