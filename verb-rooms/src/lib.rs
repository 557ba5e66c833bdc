//! Rooms, topics, presence and fan-out for Verb WebSockets.
//!
//! This crate will own the membership of connections in rooms and topics, direct messages addressed by an
//! application key, presence, and broadcasting a message encoded once to many per-connection queues,
//! through a `Backplane` trait whose in-memory implementation is the default (and a Redis one spans
//! several server processes).
//!
//! It builds on [`verb_ws`] connection handles and never touches a socket itself. Today it holds no API
//! yet; the rooms issue fills it.

#[doc(no_inline)]
pub use verb_ws;
