//! Authentication middleware for HTTP routes and WebSocket upgrades, and role guards.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::de::DeserializeOwned;
use verb_core::{
    BoxFuture, HeaderValue, HttpError, IntoResponse, Middleware, Next, Request, Response,
    StatusCode, header,
};
use verb_ws::{Expiry, WebSocket};

use crate::jwt::{Claims, HasRoles, Jwt, JwtError, Session, Subject};

/// The close reason of a connection whose token expired.
pub(crate) const TOKEN_EXPIRED: &str = "token expired";

/// Where a token may be read from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TokenSource {
    /// `Authorization: Bearer <token>`.
    Bearer,
    /// A query parameter (`?token=...`, as browsers' WebSocket clients send it).
    Query(String),
    /// A cookie.
    Cookie(String),
    /// `Sec-WebSocket-Protocol: access_token, <token>`: the token follows the `access_token` marker
    /// among the offered subprotocols. The endpoint must list `access_token` in its protocols so the
    /// handshake can answer one of the offered values.
    Protocol,
}

/// The claims of an authenticated request or connection, as middleware stores them.
#[derive(Debug, Clone, PartialEq)]
pub struct Authenticated<C>(pub C);

/// Typed claims from a request that went through [`JwtAuth`].
pub trait ClaimsExt {
    /// The claims, if the request was authenticated with claims of type `C`.
    fn claims<C: Clone + Send + Sync + 'static>(&self) -> Option<C>;
}

impl ClaimsExt for Request {
    fn claims<C: Clone + Send + Sync + 'static>(&self) -> Option<C> {
        self.extensions()
            .get::<Authenticated<C>>()
            .map(|auth| auth.0.clone())
    }
}

impl ClaimsExt for WebSocket {
    /// The claims of the connection's latest token: one it [refreshed](RefreshClaims), or the one it
    /// authenticated with in-band ([`InbandAuth`](crate::InbandAuth)) or at the upgrade ([`JwtAuth`]
    /// on the route).
    fn claims<C: Clone + Send + Sync + 'static>(&self) -> Option<C> {
        self.data::<Authenticated<C>>()
            .map(|auth| auth.0)
            .or_else(|| {
                self.extension::<Authenticated<C>>()
                    .map(|auth| auth.0.clone())
            })
    }
}

/// Replacing a connection's claims with those of a newer token, before the old one expires.
pub trait RefreshClaims {
    /// Verifies `token` with `jwt` and makes its claims the connection's (`ws.claims::<C>()`); an
    /// expiring connection (the default, see [`JwtAuth::expire_connections`]) now closes when the
    /// new token expires instead. Returns how long the new token is valid (until its `exp`).
    ///
    /// ```
    /// use verb_auth::{Claims, Jwt, RefreshClaims};
    /// use verb_ws::{Message, WebSocket, Ws};
    ///
    /// let jwt = Jwt::hs256(b"a long random secret, at least 32 bytes").expect("32 bytes or more");
    /// let ws = Ws::new().message(move |ws: &WebSocket, msg: Message| {
    ///     // The client sends its new token as a text message.
    ///     match ws.refresh_claims::<Claims>(&jwt, msg.as_text().unwrap_or_default()) {
    ///         Ok(valid) => {
    ///             ws.send_text(format!("refreshed for {} s", valid.as_secs()));
    ///         }
    ///         Err(err) => ws.close(1008, &err.to_string()),
    ///     }
    /// });
    /// # let _ = ws;
    /// ```
    ///
    /// # Errors
    ///
    /// Why the token is refused ([`JwtError`]); [`JwtError::SubjectChanged`] if its `sub` is not the
    /// one the connection authenticated as; [`JwtError::Missing`] if the connection never
    /// authenticated with claims of type `C`. The connection keeps its old claims and expiry.
    fn refresh_claims<C>(&self, jwt: &Jwt, token: &str) -> Result<Duration, JwtError>
    where
        C: DeserializeOwned + Clone + Send + Sync + 'static;
}

impl RefreshClaims for WebSocket {
    fn refresh_claims<C>(&self, jwt: &Jwt, token: &str) -> Result<Duration, JwtError>
    where
        C: DeserializeOwned + Clone + Send + Sync + 'static,
    {
        if self.claims::<C>().is_none() {
            return Err(JwtError::Missing);
        }
        let session = jwt.verify_session::<C>(token)?;
        let current = self
            .data::<Option<Subject>>()
            .or_else(|| self.extension::<Option<Subject>>().cloned())
            .flatten();
        if current != session.subject {
            return Err(JwtError::SubjectChanged);
        }
        let valid = session.valid_for();
        let expires = self.expiry().is_some();
        install(self, session, expires);
        Ok(valid)
    }
}

/// Makes `session` the connection's: claims, subject and (if `expires`) expiry.
pub(crate) fn install<C>(ws: &WebSocket, session: Session<C>, expires: bool)
where
    C: Clone + Send + Sync + 'static,
{
    ws.set_data(Authenticated(session.claims));
    ws.set_data(session.subject);
    if expires {
        ws.set_expiry(Some(Expiry::new(session.until, TOKEN_EXPIRED)));
    }
}

impl<C> Session<C> {
    /// How long until the token's `exp` (not counting the leeway).
    pub(crate) fn valid_for(&self) -> Duration {
        self.exp
            .duration_since(SystemTime::now())
            .unwrap_or_default()
    }
}

fn token_from(req: &Request, source: &TokenSource) -> Option<String> {
    match source {
        TokenSource::Bearer => {
            let value = req.header("authorization")?;
            let (scheme, token) = value.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| token.trim().to_owned())
        }
        TokenSource::Query(name) => req.query(name),
        TokenSource::Cookie(name) => req.cookie(name).map(str::to_owned),
        TokenSource::Protocol => {
            let offered: Vec<&str> = req
                .headers()
                .get_all(header::SEC_WEBSOCKET_PROTOCOL)
                .iter()
                .filter_map(|value| value.to_str().ok())
                .flat_map(|value| value.split(','))
                .map(str::trim)
                .collect();
            let marker = offered.iter().position(|p| *p == "access_token")?;
            offered.get(marker + 1).map(|token| (*token).to_owned())
        }
    }
    .filter(|token| !token.is_empty())
}

/// The `401` for a refused token, with `WWW-Authenticate` as RFC 6750 describes.
fn unauthorized(err: &JwtError) -> Response {
    let challenge = match err {
        JwtError::Missing => r#"Bearer realm="verb""#.to_owned(),
        other => {
            format!(r#"Bearer realm="verb", error="invalid_token", error_description="{other}""#)
        }
    };
    let mut response = HttpError::unauthorized(err.to_string()).into_response();
    if let Ok(value) = HeaderValue::try_from(challenge) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

/// Middleware that lets a request through only with a valid token, and gives handlers its claims
/// (`req.claims::<C>()`; on a WebSocket route also `ws.claims::<C>()` for the connection's life).
/// A missing, invalid or expired token gets `401` with a JSON body and `WWW-Authenticate`; on an
/// upgrade route no WebSocket is ever created.
///
/// By default the token is read from `Authorization: Bearer`, then `?token=`, then the `token` cookie.
///
/// ```
/// use std::sync::Arc;
/// use verb_auth::{Claims, ClaimsExt, Jwt, JwtAuth};
/// use verb_core::{Chain, Request, Server};
/// use verb_ws::{WebSocket, Ws};
///
/// let jwt = Jwt::hs256(b"a long random secret, at least 32 bytes").expect("32 bytes or more");
/// let me = |req: Request| async move {
///     let claims = req.claims::<Claims>().expect("JwtAuth ran");
///     format!("you are {}", claims.sub)
/// };
/// let http = Chain::new(vec![Arc::new(JwtAuth::<Claims>::new(jwt.clone()))], Arc::new(me));
///
/// // With the `verb` facade: `app.ws("/ws", ws).middleware(JwtAuth::<Claims>::new(jwt))`.
/// let ws = Ws::new().message(|ws: &WebSocket, _msg| {
///     let user = ws.claims::<Claims>().map(|c| c.sub).unwrap_or_default();
///     ws.send_text(format!("hello {user}"));
/// });
/// let upgrades = Chain::new(vec![Arc::new(JwtAuth::<Claims>::new(jwt))], Arc::new(ws));
/// # let _ = (Server::new(http), Server::new(upgrades));
/// ```
pub struct JwtAuth<C = Claims> {
    jwt: Jwt,
    sources: Arc<[TokenSource]>,
    expire_connections: bool,
    claims: PhantomData<fn() -> C>,
}

impl<C> Clone for JwtAuth<C> {
    fn clone(&self) -> Self {
        Self {
            jwt: self.jwt.clone(),
            sources: self.sources.clone(),
            expire_connections: self.expire_connections,
            claims: PhantomData,
        }
    }
}

impl<C> JwtAuth<C>
where
    C: DeserializeOwned + Clone + Send + Sync + 'static,
{
    /// Verifies with `jwt`, reading the token from the default sources.
    pub fn new(jwt: Jwt) -> Self {
        Self {
            jwt,
            sources: Arc::from([
                TokenSource::Bearer,
                TokenSource::Query("token".to_owned()),
                TokenSource::Cookie("token".to_owned()),
            ]),
            expire_connections: true,
            claims: PhantomData,
        }
    }

    /// Whether a WebSocket opened with a token is closed when the token expires: with 1008 and
    /// reason `token expired` once its `exp` plus the [leeway](Jwt::leeway) has passed, unless the
    /// connection [refreshed](RefreshClaims) its claims in time. `false` lets connections outlive
    /// their tokens (the token was checked once, at the upgrade).
    ///
    /// Default is `true`.
    pub fn expire_connections(mut self, expire: bool) -> Self {
        self.expire_connections = expire;
        self
    }

    /// Reads the token from these sources only, in this order (the first one present is used).
    pub fn sources(mut self, sources: impl IntoIterator<Item = TokenSource>) -> Self {
        self.sources = sources.into_iter().collect();
        self
    }

    /// The claims of `req`'s token, from the first source that has one.
    ///
    /// # Errors
    ///
    /// [`JwtError::Missing`] when no source has a token, else why the token is refused.
    pub fn authenticate(&self, req: &Request) -> Result<C, JwtError> {
        self.jwt.verify::<C>(&self.token(req)?)
    }

    fn token(&self, req: &Request) -> Result<String, JwtError> {
        self.sources
            .iter()
            .find_map(|source| token_from(req, source))
            .ok_or(JwtError::Missing)
    }

    /// Authenticates `req` and stores what handlers and connections need in its extensions.
    fn admit(&self, req: &mut Request) -> Result<(), JwtError> {
        // A WebSocket opened by this request starts with its token's expiry and subject (verb-ws reads
        // the expiry); a plain HTTP request needs neither, and pays for neither.
        let opens_websocket = req.headers().contains_key(header::UPGRADE)
            || req.method() == verb_core::Method::CONNECT;
        if !opens_websocket {
            let claims = self.authenticate(req)?;
            req.extensions_mut().insert(Authenticated(claims));
            return Ok(());
        }
        let session = self.jwt.verify_session::<C>(&self.token(req)?)?;
        let extensions = req.extensions_mut();
        extensions.insert(Authenticated(session.claims));
        if self.expire_connections {
            extensions.insert(Expiry::new(session.until, TOKEN_EXPIRED));
        }
        extensions.insert(session.subject);
        Ok(())
    }
}

impl<C> Middleware for JwtAuth<C>
where
    C: DeserializeOwned + Clone + Send + Sync + 'static,
{
    fn call(&self, mut req: Request, next: Next) -> BoxFuture<Response> {
        match self.admit(&mut req) {
            Ok(()) => Box::pin(next.run(req)),
            Err(err) => {
                tracing::info!(
                    peer = %req.remote_addr(),
                    path = req.path(),
                    error = %err,
                    "authentication refused"
                );
                metrics::counter!("verb_auth_refused_total").increment(1);
                let response = unauthorized(&err);
                Box::pin(async move { response })
            }
        }
    }
}

impl<C> fmt::Debug for JwtAuth<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtAuth")
            .field("jwt", &self.jwt)
            .field("sources", &self.sources)
            .field("expire_connections", &self.expire_connections)
            .finish()
    }
}

/// Middleware (after [`JwtAuth`]) that lets through only requests whose claims have `role`; others
/// get `403` (or `401` when unauthenticated).
///
/// ```
/// use std::sync::Arc;
/// use verb_auth::{Claims, Jwt, JwtAuth, require_role};
/// use verb_core::{Chain, Request};
///
/// let jwt = Jwt::hs256(b"a long random secret, at least 32 bytes").expect("32 bytes or more");
/// // With the `verb` facade: `app.get(..).middleware(auth).middleware(require_role::<Claims>("admin"))`.
/// let admin_only = Chain::new(
///     vec![
///         Arc::new(JwtAuth::<Claims>::new(jwt)),
///         Arc::new(require_role::<Claims>("admin")),
///     ],
///     Arc::new(|_req: Request| async { "welcome, admin" }),
/// );
/// # let _ = admin_only;
/// ```
pub fn require_role<C>(role: &str) -> impl Middleware
where
    C: HasRoles + Clone + Send + Sync + 'static,
{
    let role: Arc<str> = Arc::from(role);
    move |req: Request, next: Next| {
        let role = Arc::clone(&role);
        async move {
            match req.claims::<C>() {
                Some(claims) if claims.has_role(&role) => next.run(req).await,
                Some(_) => {
                    tracing::info!(peer = %req.remote_addr(), path = req.path(), %role, "role refused");
                    HttpError::forbidden(format!("requires the `{role}` role")).into_response()
                }
                None => HttpError::new(StatusCode::UNAUTHORIZED, "authentication required")
                    .into_response(),
            }
        }
    }
}
