//! Authentication, authorization and rate limiting for Verb.
//!
//! - [`Jwt`]: sign and verify JSON Web Tokens (HS256 from a secret; RS256, ES256, EdDSA from PEM keys)
//!   into typed claims ([`Claims`] or your own type); one algorithm per verifier, so `alg: none` and
//!   algorithm confusion are refused; `exp` required, `nbf`/`iss`/`aud` checked, small leeway.
//! - [`JwtAuth`]: middleware for HTTP routes and WebSocket upgrades reading the token from
//!   `Authorization: Bearer`, `?token=`, a cookie or `Sec-WebSocket-Protocol` ([`TokenSource`]);
//!   refusals are `401` JSON with `WWW-Authenticate`, before any WebSocket exists. Handlers get the
//!   claims with [`ClaimsExt`]: `req.claims::<C>()`, and `ws.claims::<C>()` for the connection's life.
//! - [`require_role`] guards routes (`403`); [`HasRoles`] checks roles inside message handlers.
//! - [`InbandAuth`]: a connection that must authenticate by message within a deadline (close 1008).
//! - [`RateLimit`]: GCRA per client IP or key for HTTP requests and upgrade attempts (`429` with
//!   `Retry-After` and `RateLimit-*`); [`MessageRateLimit`]: messages (and bytes) per second per
//!   connection.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use verb_auth::{Claims, Jwt};
//!
//! let jwt = Jwt::hs256(b"a long random secret, at least 32 bytes")?;
//! let token = jwt.sign(&Claims::new("1", Duration::from_secs(3600)).with_role("admin"))?;
//! let claims: Claims = jwt.verify(&token)?;
//! assert_eq!(claims.role.as_deref(), Some("admin"));
//! # Ok::<(), verb_auth::JwtError>(())
//! ```

mod inband;
mod jwt;
mod middleware;
mod ratelimit;

pub use inband::InbandAuth;
pub use jwt::{Claims, HasRoles, Jwt, JwtError, KeyAlgorithm, MIN_SECRET_LEN};
pub use middleware::{Authenticated, ClaimsExt, JwtAuth, RefreshClaims, TokenSource, require_role};
pub use ratelimit::{MessageRateLimit, RateLimit};

#[doc(no_inline)]
pub use verb_core;
