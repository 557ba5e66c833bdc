//! In-band authentication: the connection opens unauthenticated and must send a token in its first
//! messages, within a deadline.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use verb_ws::{Attachment, CloseCode, Message, Verdict, WebSocket};

use crate::jwt::{Claims, Jwt};
use crate::middleware::Authenticated;

type SuccessFn<C> = dyn Fn(&WebSocket, &C) + Send + Sync;

/// In-band authentication for a WebSocket endpoint (the docs' first pattern), as an attachment:
///
/// 1. On open the client gets `{"type":"auth_required","message":"Please authenticate"}`.
/// 2. `{"type":"auth","token":"<jwt>"}` with a valid token authenticates the connection: its claims
///    are then `ws.claims::<C>()`, and [`on_success`](Self::on_success) runs (by default it sends
///    `{"type":"auth_success"}`). An invalid token gets `{"type":"auth_failed","message":"Invalid
///    token"}` and close 1008.
/// 3. Until then any other message gets `{"type":"error","message":"Authentication required"}` and
///    never reaches the app's `message` callback.
/// 4. No valid token within the timeout (10 s by default): `{"type":"auth_timeout","message":
///    "Authentication timeout"}` and close 1008.
///
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

    /// Runs when a connection authenticates (instead of sending `{"type":"auth_success"}`): send the
    /// app's welcome, join rooms, ...
    pub fn on_success(mut self, f: impl Fn(&WebSocket, &C) + Send + Sync + 'static) -> Self {
        self.on_success = Arc::new(f);
        self
    }
}

/// Whether a connection has authenticated (stored in the connection's data).
fn is_authenticated<C: Clone + Send + Sync + 'static>(ws: &WebSocket) -> bool {
    ws.with_data(|_: &mut Authenticated<C>| ()).is_some()
}

impl<C> Attachment for InbandAuth<C>
where
    C: DeserializeOwned + Clone + Send + Sync + 'static,
{
    fn opened(&self, ws: &WebSocket) {
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
            return Verdict::Pass;
        }
        let value = message.json::<Value>().ok();
        let is_auth = value
            .as_ref()
            .and_then(|v| v.get("type"))
            .and_then(Value::as_str)
            == Some("auth");
        if !is_auth {
            ws.send_json(&json!({ "type": "error", "message": "Authentication required" }));
            return Verdict::Stop;
        }
        let token = value
            .as_ref()
            .and_then(|v| v.get("token"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        match self.jwt.verify::<C>(token) {
            Ok(claims) => {
                ws.cancel_close_after();
                ws.set_data(Authenticated(claims.clone()));
                tracing::debug!(id = ws.id(), "in-band authentication succeeded");
                (self.on_success)(ws, &claims);
                Verdict::Stop
            }
            Err(err) => {
                tracing::info!(id = ws.id(), peer = %ws.remote_addr(), error = %err, "in-band authentication failed");
                metrics::counter!("verb_auth_refused_total").increment(1);
                ws.send_json(&json!({ "type": "auth_failed", "message": "Invalid token" }));
                Verdict::Close(CloseCode::POLICY_VIOLATION, "Invalid token".to_owned())
            }
        }
    }
}

impl<C> fmt::Debug for InbandAuth<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InbandAuth")
            .field("jwt", &self.jwt)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}
