//! Errors raised while registering routes.

use crate::Method;

/// Why a route could not be registered.
///
/// Routes are named in these errors exactly as they were passed to
/// [`Router::route`](crate::Router::route) or [`Router::any`](crate::Router::any).
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// The pattern overlaps an existing, different pattern in a way the router
    /// cannot rank, e.g. `/users/:name` after `/users/:id`, or `/a/*x` after
    /// `/a/*y`.
    #[error("route `{route}` conflicts with existing route `{existing}`")]
    Conflict {
        /// The pattern being registered.
        route: String,
        /// The previously registered pattern it clashes with.
        existing: String,
    },

    /// The same method (or [`any`](crate::Router::any)) was registered twice
    /// for one pattern.
    #[error(
        "{} {route} is already registered",
        .method.map_or("ANY", Method::as_str)
    )]
    Duplicate {
        /// The method registered twice; `None` stands for
        /// [`Router::any`](crate::Router::any), shown as `ANY` in the message.
        method: Option<Method>,
        /// The pattern being registered.
        route: String,
    },

    /// The pattern is malformed.
    #[error("invalid route `{route}`: {reason}")]
    Invalid {
        /// The pattern being registered.
        route: String,
        /// What is wrong with it.
        reason: String,
    },
}
