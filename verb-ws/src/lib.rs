//! WebSockets for Verb: the upgrade, a connection engine built for many cheap connections, the
//! cloneable [`WebSocket`] handle, and callbacks shaped like the docs' `{ open, message, close }`.
//!
//! Mount a [`Ws`] endpoint with the `verb` facade (`app.ws("/ws/:room", ws)` or `app.websocket(ws)`).
//! A `Ws` is a `verb_core::Handler`, so it also works with `verb-core` alone.
//!
//! # Example
//!
//! ```no_run
//! use verb_core::{Request, Server};
//! use verb_ws::{Message, WebSocket, Ws};
//!
//! # async fn run() -> Result<(), verb_core::Error> {
//! let echo = Ws::new()
//!     .open(|ws: &WebSocket, _req: &Request| {
//!         ws.send_text("Welcome to WebSocket server!");
//!     })
//!     .message(|ws: &WebSocket, msg: Message| {
//!         if let Some(text) = msg.as_text() {
//!             ws.send_text(format!("Echo: {text}"));
//!         }
//!     });
//! Server::new(echo).listen(3000).await
//! # }
//! ```
//!
//! # What the engine guarantees
//!
//! - RFC 6455 on the wire: the handshake is validated (bad key → 400, wrong version → 426 with
//!   `Sec-WebSocket-Version: 13`); unmasked frames, reserved bits or opcodes, fragmented or oversized
//!   control frames, and stray continuations close with 1002; invalid UTF-8 in text (also split across
//!   fragments) with 1007; a message over `max_payload_length` with 1009 as soon as its header says so;
//!   pings are answered with the same payload; the peer's close code is echoed.
//! - `close` runs exactly once per connection, whatever ends it; a graceful server stop sends 1001.
//! - Idle connections hold no read buffer; what the callbacks send while a read is handled leaves in one
//!   vectored write.
//! - Sends never block: they queue, bounded by the backpressure limit ([`SendStatus`]).

mod attach;
mod config;
mod engine;
mod error;
mod handler;
mod message;
mod proto;
mod socket;
mod stats;
mod upgrade;

pub use attach::{Attachment, Verdict};
pub use config::{OverCapacity, WsConfig};
pub use error::WsError;
pub use handler::{ConnectionCount, WebSocketHandler, Ws};
pub use message::{CloseCode, InvalidJson, Message, Utf8Bytes};
pub use proto::deflate::Compression;
pub use socket::{Expiry, PreparedMessage, ReadyState, SendStatus, WebSocket};
pub use upgrade::{is_upgrade_request, is_websocket_request};

#[doc(no_inline)]
pub use verb_core;
