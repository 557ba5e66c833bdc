//! What a connection is told, and what the others are told, at the moment it joins a room.

use serde::Serialize;
use verb_ws::{Message, PreparedMessage, SendStatus};

use crate::delivery::Delivery;

/// The messages that [`Rooms::join_with`](crate::Rooms::join_with) queues in the same step as the join:
/// a welcome for the newcomer and an announcement for the room's other members, both built from the
/// member count that the join produced.
///
/// ```
/// # use verb_rooms::Greeting;
/// # use serde_json::json;
/// let count = 3;
/// let greeting = Greeting::new()
///     .welcome_json(&json!({ "type": "welcome", "userCount": count }))
///     .announce_json(&json!({ "type": "system", "message": "someone joined", "userCount": count }));
/// # let _ = greeting;
/// ```
#[derive(Debug, Default)]
#[must_use = "a greeting is sent only when handed to `Rooms::join_with`"]
pub struct Greeting {
    pub(crate) welcome: Option<Message>,
    pub(crate) announce: Option<Message>,
}

impl Greeting {
    /// A greeting that sends nothing (add to it with [`welcome`](Self::welcome) and
    /// [`announce`](Self::announce)).
    pub fn new() -> Self {
        Self::default()
    }

    /// What the newcomer receives before any message fanned out to the room after its join.
    pub fn welcome(mut self, message: impl Into<Message>) -> Self {
        self.welcome = Some(message.into());
        self
    }

    /// [`welcome`](Self::welcome) with `value` serialized as JSON text. A value that cannot be
    /// serialized is logged and leaves the greeting without a welcome.
    pub fn welcome_json<T: Serialize + ?Sized>(mut self, value: &T) -> Self {
        self.welcome = json_message(value);
        self
    }

    /// What every other member of the room receives (on this node, then through the backplane on the
    /// others), queued on this node's members in the same step as the join.
    pub fn announce(mut self, message: impl Into<Message>) -> Self {
        self.announce = Some(message.into());
        self
    }

    /// [`announce`](Self::announce) with `value` serialized as JSON text. A value that cannot be
    /// serialized is logged and leaves the greeting without an announcement.
    pub fn announce_json<T: Serialize + ?Sized>(mut self, value: &T) -> Self {
        self.announce = json_message(value);
        self
    }

    /// The announcement framed once for every receiver.
    pub(crate) fn prepared_announcement(&self) -> Option<PreparedMessage> {
        self.announce.as_ref().map(PreparedMessage::new)
    }
}

fn json_message<T: Serialize + ?Sized>(value: &T) -> Option<Message> {
    match serde_json::to_string(value) {
        Ok(json) => Some(Message::text(json)),
        Err(err) => {
            tracing::error!(error = %err, "cannot serialize a greeting's JSON message");
            None
        }
    }
}

/// What [`Rooms::join_with`](crate::Rooms::join_with) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Joined {
    /// The room's members on this node right after the join, the newcomer included: the count that
    /// the greeting was built from.
    pub count: usize,
    /// What became of the welcome (`None`: the greeting had none).
    pub welcome: Option<SendStatus>,
    /// What became of the announcement on this node (all zero when the greeting had none).
    pub announced: Delivery,
}
