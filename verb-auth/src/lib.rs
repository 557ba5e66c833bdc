//! Authentication, authorization and rate limiting for Verb.
//!
//! This crate will own JWT signing and verification, the middleware that authenticates HTTP requests and
//! WebSocket upgrades (bearer header, query parameter, cookie or subprotocol), role guards, in-band
//! WebSocket authentication, and rate limiting of requests, upgrades and messages.
//!
//! It builds on [`verb_core`]'s middleware chain only, so any Verb app (or a server using `verb-core`
//! alone) can use it. Today it holds no API yet; the authentication issue fills it.

#[doc(no_inline)]
pub use verb_core;
