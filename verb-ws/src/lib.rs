//! WebSockets for Verb.
//!
//! This crate will own everything between an HTTP upgrade request and the application's callbacks:
//! validating the RFC 6455 handshake, the per-connection read/write engine, the cloneable connection
//! handle, Verb's own `Message` and close-code types, the documented configuration (payload limit, idle
//! timeout, backpressure, subprotocols) and permessage-deflate.
//!
//! It builds on [`verb_core`] (requests, responses, the server) and never on the facade or on the crates
//! that build on it (`verb-rooms`). Today it holds no API yet; the WebSocket issue fills it.

#[doc(no_inline)]
pub use verb_core;
