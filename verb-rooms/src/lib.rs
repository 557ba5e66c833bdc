//! Rooms, topics, presence and fan-out for Verb WebSockets.
//!
//! One [`Rooms`] hub keeps track of connections: which rooms (or topics: the same thing) each is in,
//! which application user each belongs to, and who is present where. Sending to a group frames the
//! message once and queues that frame on every receiver's own queue, so a slow or dead receiver
//! never holds up the others or the sender: it only fills its own queue, up to the backpressure limit
//! of `verb-ws`.
//!
//! - [`Rooms`]: join, leave, members, presence, and [`Rooms::to`] / [`Rooms::everyone`] /
//!   [`Rooms::user`] targets that [`send`](Target::send) and report a [`Delivery`].
//! - [`Topics`]: Bun's `ws.subscribe(topic)` / `ws.publish(topic, msg)` on the connection handle.
//! - [`Backplane`]: spans rooms over several server processes; none by default (local delivery only,
//!   at no cost), [`MemoryBackplane`] links hubs within one process.
//!
//! Connections leave every room by themselves when they close: the hub is a `verb-ws`
//! [`Attachment`](verb_ws::Attachment) of the endpoints it serves (the `verb` facade attaches the app's
//! hub to all of them).
//!
//! # Example
//!
//! ```
//! use verb_rooms::{Rooms, Topics};
//! use verb_ws::{Message, WebSocket, Ws};
//!
//! let rooms = Rooms::new();
//! let chat = Ws::new()
//!     .attach(rooms.clone())
//!     .open(|ws: &WebSocket, _req| {
//!         ws.subscribe("chat");
//!     })
//!     .message(|ws: &WebSocket, msg: Message| {
//!         if let Some(rooms) = ws.attachment::<Rooms>() {
//!             rooms.to("chat").send(msg); // everyone in the room, sender included
//!         }
//!     });
//!
//! // Later, from anywhere (a timer, an HTTP handler):
//! rooms.publish("chat", "the server says hi");
//! # let _ = chat;
//! ```
//!
//! # Guarantees
//!
//! - A connection is in a room at most once; a room with no members does not exist.
//! - No lock is held while application hooks run, and none is ever held across an `.await`; joining,
//!   leaving and publishing are safe from any number of tasks at once.
//! - Per receiver, messages keep the order in which they were sent by any one task.

mod backplane;
mod delivery;
mod greeting;
mod hub;
#[cfg(feature = "redis")]
mod redis;
mod topics;

pub use backplane::{Backplane, BackplaneError, MemoryBackplane, Node, Scope};
pub use delivery::{Delivery, Target};
pub use greeting::{Greeting, Joined};
pub use hub::{JoinError, RoomLimits, Rooms};
#[cfg(feature = "redis")]
pub use redis::RedisBackplane;
pub use topics::Topics;

#[doc(no_inline)]
pub use verb_ws;
