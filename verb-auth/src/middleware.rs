//! Authentication middleware for HTTP routes and WebSocket upgrades, and role guards.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use verb_core::{
    BoxFuture, HeaderValue, HttpError, IntoResponse, Middleware, Next, Request, Response,
    StatusCode, header,
};
use verb_ws::WebSocket;

use crate::jwt::{Claims, HasRoles, Jwt, JwtError};

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
    /// The claims of the upgrade request ([`JwtAuth`] on the route), or those set by in-band
    /// authentication ([`InbandAuth`](crate::InbandAuth)).
    fn claims<C: Clone + Send + Sync + 'static>(&self) -> Option<C> {
        self.extension::<Authenticated<C>>()
            .map(|auth| auth.0.clone())
            .or_else(|| self.data::<Authenticated<C>>().map(|auth| auth.0))
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
    claims: PhantomData<fn() -> C>,
}

impl<C> Clone for JwtAuth<C> {
    fn clone(&self) -> Self {
        Self {
            jwt: self.jwt.clone(),
            sources: self.sources.clone(),
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
            claims: PhantomData,
        }
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
        let token = self
            .sources
            .iter()
            .find_map(|source| token_from(req, source))
            .ok_or(JwtError::Missing)?;
        self.jwt.verify::<C>(&token)
    }
}

impl<C> Middleware for JwtAuth<C>
where
    C: DeserializeOwned + Clone + Send + Sync + 'static,
{
    fn call(&self, mut req: Request, next: Next) -> BoxFuture<Response> {
        match self.authenticate(&req) {
            Ok(claims) => {
                req.extensions_mut().insert(Authenticated(claims));
                Box::pin(next.run(req))
            }
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
