//! Bun-style topics on the connection handle: `ws.subscribe(topic)`, `ws.publish(topic, msg)`.

use serde::Serialize;
use verb_ws::{Message, WebSocket};

use crate::delivery::Delivery;
use crate::hub::Rooms;

/// Topics as methods of the connection, as in Bun: `ws.subscribe("news")`, `ws.publish("news", msg)`.
///
/// They act on the [`Rooms`] hub attached to the connection's endpoint (the `verb` facade attaches
/// the app's hub to every endpoint); a topic is a room of that hub. On a connection with no hub they
/// do nothing (subscribing returns `false`) and log a warning.
///
/// ```
/// use verb_rooms::{Rooms, Topics};
/// use verb_ws::{Message, WebSocket, Ws};
///
/// let feed = Ws::new()
///     .attach(Rooms::new())
///     .open(|ws: &WebSocket, _req| {
///         ws.subscribe("stocks");
///     })
///     .message(|ws: &WebSocket, msg: Message| {
///         // To every subscriber but this connection.
///         ws.publish("stocks", msg);
///     });
/// # let _ = feed;
/// ```
pub trait Topics {
    /// Subscribes to `topic`; `false` if already subscribed, refused by the hub's
    /// [`RoomLimits`](crate::RoomLimits) (logged), or no hub. [`Rooms::join`] says why.
    fn subscribe(&self, topic: &str) -> bool;

    /// Unsubscribes from `topic`; `false` if not subscribed.
    fn unsubscribe(&self, topic: &str) -> bool;

    /// Whether this connection is subscribed to `topic`.
    fn is_subscribed(&self, topic: &str) -> bool;

    /// The topics this connection is subscribed to.
    fn subscriptions(&self) -> Vec<String>;

    /// Sends `message` to every subscriber of `topic` except this connection (subscribed or not).
    fn publish(&self, topic: &str, message: impl Into<Message>) -> Delivery;

    /// Sends `value` as JSON to every subscriber of `topic` except this connection.
    fn publish_json<T: Serialize + ?Sized>(&self, topic: &str, value: &T) -> Delivery;
}

fn hub(ws: &WebSocket) -> Option<&Rooms> {
    let hub = ws.attachment::<Rooms>();
    if hub.is_none() {
        tracing::warn!(
            id = ws.id(),
            "topic used on a connection whose endpoint has no Rooms attached"
        );
    }
    hub
}

impl Topics for WebSocket {
    fn subscribe(&self, topic: &str) -> bool {
        hub(self).is_some_and(|rooms| rooms.join(topic, self).unwrap_or(false))
    }

    fn unsubscribe(&self, topic: &str) -> bool {
        hub(self).is_some_and(|rooms| rooms.leave(topic, self))
    }

    fn is_subscribed(&self, topic: &str) -> bool {
        hub(self).is_some_and(|rooms| rooms.contains(topic, self))
    }

    fn subscriptions(&self) -> Vec<String> {
        hub(self).map_or_else(Vec::new, |rooms| rooms.rooms_of(self))
    }

    fn publish(&self, topic: &str, message: impl Into<Message>) -> Delivery {
        hub(self).map_or_else(Delivery::default, |rooms| {
            rooms.to(topic).except(self).send(message)
        })
    }

    fn publish_json<T: Serialize + ?Sized>(&self, topic: &str, value: &T) -> Delivery {
        hub(self).map_or_else(Delivery::default, |rooms| {
            rooms.to(topic).except(self).json(value)
        })
    }
}
