//! Attachments: what higher layers (rooms, metrics) hang on an endpoint to follow its connections.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use crate::message::{CloseCode, Message};
use crate::socket::WebSocket;

/// A value attached to a [`Ws`](crate::Ws) endpoint: every connection of the endpoint can reach it
/// ([`WebSocket::attachment`]), and it hears of each connection opening and closing.
///
/// This is how layers above `verb-ws` join in without wrapping the app's callbacks: `verb-rooms`
/// registers each connection when it opens and takes it out of every room when it closes. Both hooks
/// run on the connection's task, before the app's `open` and `close` callbacks, and must not block.
///
/// # Example
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use verb_ws::{Attachment, WebSocket, Ws};
///
/// #[derive(Default)]
/// struct Opened(AtomicUsize);
///
/// impl Attachment for Opened {
///     fn opened(&self, _ws: &WebSocket) {
///         self.0.fetch_add(1, Ordering::Relaxed);
///     }
/// }
///
/// let ws = Ws::new()
///     .attach(Opened::default())
///     .message(|ws: &WebSocket, _msg| {
///         let opened = ws.attachment::<Opened>().map_or(0, |o| o.0.load(Ordering::Relaxed));
///         ws.send_text(format!("connection number {opened}"));
///     });
/// assert!(ws.attachment::<Opened>().is_some());
/// ```
pub trait Attachment: Any + Send + Sync {
    /// A connection opened (before the app's `open` callback).
    fn opened(&self, ws: &WebSocket) {
        let _ = ws;
    }

    /// A connection ended (before the app's `close` callback). Runs exactly once for every
    /// connection that `opened` saw.
    fn closed(&self, ws: &WebSocket) {
        let _ = ws;
    }

    /// A complete message arrived (before the app's `message` callback, which runs only if every
    /// attachment lets the message [`Pass`](Verdict::Pass)). Gates such as authentication and rate
    /// limits live here.
    fn message(&self, ws: &WebSocket, message: &Message) -> Verdict {
        let _ = (ws, message);
        Verdict::Pass
    }
}

/// What an [`Attachment`] decides about an incoming message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verdict {
    /// Hand the message on (to the next attachment, then the app).
    Pass,
    /// The attachment consumed or refused the message; nobody after it sees it.
    Stop,
    /// Refuse the message and close the connection with this code and reason.
    Close(CloseCode, String),
}

/// The attachments of an endpoint, shared by all its connections.
#[derive(Clone, Default)]
pub(crate) struct Attachments(Option<Arc<[Arc<dyn Attachment>]>>);

impl Attachments {
    pub(crate) fn with(&self, attachment: Arc<dyn Attachment>) -> Self {
        let mut all: Vec<Arc<dyn Attachment>> = self.iter().cloned().collect();
        all.push(attachment);
        Self(Some(all.into()))
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Arc<dyn Attachment>> {
        self.0.iter().flat_map(|all| all.iter())
    }

    pub(crate) fn get<T: Attachment>(&self) -> Option<&T> {
        self.iter()
            .find_map(|attachment| (&**attachment as &dyn Any).downcast_ref::<T>())
    }

    pub(crate) fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |all| all.len())
    }
}

impl fmt::Debug for Attachments {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Attachments")
            .field("len", &self.len())
            .finish()
    }
}
