//! Method and path routing for Verb.
//!
//! Routes are written the way Express users expect (`/users/:id`,
//! `/files/*rest`) and looked up by method and path, giving back the value
//! you registered, the captured path parameters, or a precise reason for a
//! miss: not found (404) or method not allowed (405, with the `Allow` list).
//! The crate only deals in strings and its own [`Method`] type, so it is
//! independent of any HTTP library and usable on its own. Matching is done
//! by [`matchit`](https://docs.rs/matchit/0.9)'s radix tree.
//!
//! # Example
//!
//! ```
//! use verb_router::{Method, Miss, Router};
//!
//! let mut router = Router::new();
//! router.route(Method::Get, "/", "home")?;
//! router.route(Method::Get, "/users/:id", "show user")?;
//! router.route(Method::Delete, "/users/:id", "delete user")?;
//! router.route(Method::Get, "/users/me", "current user")?;
//! router.route(Method::Get, "/static/*path", "static file")?;
//! router.any("/ws/:room", "websocket")?;
//!
//! // Parameters come back by name, as raw path text.
//! let found = router.at("GET", "/users/42").unwrap();
//! assert_eq!(*found.value, "show user");
//! assert_eq!(found.params.get("id"), Some("42"));
//! assert_eq!(found.pattern, "/users/:id");
//!
//! // Static segments win over parameters.
//! assert_eq!(*router.at("GET", "/users/me").unwrap().value, "current user");
//!
//! // A catch-all takes the rest of the path, slashes included.
//! let found = router.at("GET", "/static/css/site.css").unwrap();
//! assert_eq!(found.params.get("path"), Some("css/site.css"));
//!
//! // `any` accepts every method.
//! assert_eq!(*router.at("POST", "/ws/lobby").unwrap().value, "websocket");
//!
//! // 404: no pattern matches.
//! assert_eq!(router.at("GET", "/nope").unwrap_err(), Miss::NotFound);
//!
//! // 405: the path exists, the method does not; `allow` lists what does.
//! match router.at("PUT", "/users/42") {
//!     Err(Miss::MethodNotAllowed { allow }) => {
//!         assert_eq!(allow.header_value(), "GET, HEAD, DELETE");
//!     }
//!     other => panic!("unexpected {other:?}"),
//! }
//! # Ok::<(), verb_router::RouteError>(())
//! ```
//!
//! # Pattern syntax
//!
//! A pattern starts with `/` and is split into segments at each `/`.
//!
//! - `:name` at the start of a segment captures one segment's worth of text
//!   (up to the next `/`, never empty). The name is made of ASCII letters,
//!   digits and `_`; whatever follows it in the segment is literal, so
//!   `/:file.json` matches `/report.json` with `file` = `report`. A `:`
//!   anywhere else is an ordinary character.
//! - `*name` as the **last** segment is a catch-all: it captures the rest of
//!   the path, slashes included (never empty, so `/files/*rest` does not match
//!   `/files/`). A bare `*` is a catch-all named `wildcard`.
//! - matchit's own syntax is accepted too: `{name}`, which may have literal
//!   text before or after it within the segment (`/img-{id}.png`), and
//!   `{*name}` at the end of the pattern. A segment containing `{` or `}` is
//!   read entirely as matchit syntax, where literal braces are written doubled
//!   (`{{`, `}}`) and `:` or `*` are ordinary characters.
//! - Everything else matches literally and case-sensitively. Trailing slashes
//!   count: `/about` and `/about/` are different patterns.
//!
//! A segment holds at most one parameter, parameter names must be unique
//! within a pattern, and a pattern holds at most 25 parameters.
//!
//! Overlapping patterns are ranked by matchit: static text beats a parameter,
//! which beats a catch-all. Overlaps it cannot rank, such as `/users/:id`
//! next to `/users/:name`, are refused with [`RouteError::Conflict`].
//!
//! # Methods
//!
//! A pattern can hold one value per [`Method`] plus one registered with
//! [`Router::any`]. On lookup the exact method wins, then (for `HEAD` only)
//! the `GET` value, then the `any` value. Method tokens are matched exactly
//! and case-sensitively; tokens [`Method`] does not list (such as `PROPFIND`)
//! can only reach `any` values.

mod error;
mod method;
mod pattern;
mod router;

pub use error::RouteError;
pub use method::{Allow, Method, UnknownMethod};
pub use router::{Match, Miss, Params, RouteInfo, Router};

#[cfg(test)]
mod tests;
