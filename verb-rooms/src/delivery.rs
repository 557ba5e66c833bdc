//! Addressing a group of connections, and what a send to them achieved.

use serde::Serialize;
use verb_ws::{Message, PreparedMessage, SendStatus, WebSocket};

use crate::backplane::Scope;
use crate::hub::Rooms;

/// What became of a message fanned out on this node: how many connections queued it, how many of those
/// are now over their backpressure limit, and how many dropped it (closing, or already at the limit).
///
/// Deliveries on other nodes (through a backplane) happen later and are not counted here.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Delivery {
    /// Queued within the receiver's backpressure limit.
    pub sent: usize,
    /// Queued, but the receiver's queue is now over its backpressure limit.
    pub backpressured: usize,
    /// Not queued: the receiver is closing, or its queue was already at the limit.
    pub dropped: usize,
}

impl Delivery {
    /// How many connections queued the message (`sent + backpressured`).
    pub fn recipients(&self) -> usize {
        self.sent + self.backpressured
    }

    /// Whether no connection on this node queued it (for a user: not connected here).
    pub fn reached_nobody(&self) -> bool {
        self.recipients() == 0
    }

    pub(crate) fn count(&mut self, status: SendStatus) {
        match status {
            SendStatus::Sent => self.sent += 1,
            SendStatus::Backpressured => self.backpressured += 1,
            _ => self.dropped += 1,
        }
    }
}

/// A group of connections to send to: from [`Rooms::to`], [`Rooms::everyone`] or [`Rooms::user`].
///
/// ```
/// # use verb_rooms::Rooms;
/// # fn demo(rooms: &Rooms, sender: &verb_ws::WebSocket) {
/// rooms.to("lobby").except(sender).send("a message for the others");
/// rooms.everyone().json(&serde_json::json!({ "type": "userCount", "count": rooms.connections() }));
/// # }
/// ```
#[derive(Debug)]
#[must_use = "a target sends nothing until `send` or `json`"]
pub struct Target<'a> {
    rooms: &'a Rooms,
    scope: Scope<'a>,
    except: Option<u64>,
}

impl<'a> Target<'a> {
    pub(crate) fn new(rooms: &'a Rooms, scope: Scope<'a>) -> Self {
        Self {
            rooms,
            scope,
            except: None,
        }
    }

    /// Leaves `ws` out (typically the sender).
    pub fn except(mut self, ws: &WebSocket) -> Self {
        self.except = Some(ws.id());
        self
    }

    /// Sends `message`, framed once for every receiver, and forwards it through the backplane if the
    /// hub has one.
    pub fn send(self, message: impl Into<Message>) -> Delivery {
        let message = message.into();
        let frame = PreparedMessage::new(&message);
        let delivery = self.rooms.fan_out(self.scope, &frame, self.except);
        if let Some(backplane) = self.rooms.inner.backplane.get() {
            backplane.publish(self.scope, &message);
        }
        delivery
    }

    /// Sends `value` serialized as JSON once, as a text message. A value that cannot be serialized is
    /// logged and sent to nobody.
    pub fn json<T: Serialize + ?Sized>(self, value: &T) -> Delivery {
        match serde_json::to_string(value) {
            Ok(json) => self.send(Message::text(json)),
            Err(err) => {
                tracing::error!(error = %err, "cannot serialize a JSON message to fan out");
                Delivery::default()
            }
        }
    }
}
