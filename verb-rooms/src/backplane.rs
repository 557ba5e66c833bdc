//! Backplanes: how a hub's publishes reach the hubs of other server processes.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use verb_ws::{Message, PreparedMessage};

use crate::delivery::Delivery;
use crate::hub::{Inner, Rooms};

/// Who a publish is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Scope<'a> {
    /// The members of a room (the subscribers of a topic).
    Room(&'a str),
    /// Every connection.
    Everyone,
    /// Every connection of a user key.
    User(&'a str),
}

/// Carries publishes between the hubs of several server processes (nodes).
///
/// A hub without a backplane delivers within its process only, at no extra cost: that is the default.
/// With one, every publish is delivered to local members first, then handed to
/// [`publish`](Self::publish), and the backplane delivers what other nodes publish through the
/// [`Node`] it got in [`start`](Self::start). Leaving out the sender applies on the sender's node only
/// (it is connected nowhere else). Delivery between nodes is at most once: a backplane that loses its
/// link drops what is published meanwhile, and says so in its logs.
///
/// [`MemoryBackplane`] links hubs within one process; a Redis backplane spans machines.
pub trait Backplane: Send + Sync + 'static {
    /// Called once, when the backplane is set on a hub: remote publishes go to `node.deliver`.
    fn start(&self, node: Node);

    /// A publish made on this node (already delivered here), to forward to the other nodes. Must not
    /// block: queue it and return.
    fn publish(&self, scope: Scope<'_>, message: &Message);

    /// Connection `member` of this node joined `room` (or, joined already, changed its presence
    /// value, a JSON text), for backplanes that keep presence across nodes. Must not block. The
    /// default does nothing.
    fn member_joined(&self, room: &str, member: u64, presence: Option<&str>) {
        let _ = (room, member, presence);
    }

    /// Connection `member` of this node left `room`. Must not block. The default does nothing.
    fn member_left(&self, room: &str, member: u64) {
        let _ = (room, member);
    }
}

/// A hub as a backplane sees it: where remote publishes are delivered. Holds the hub weakly, so a
/// backplane never keeps a dropped hub alive.
#[derive(Clone)]
pub struct Node {
    id: u64,
    hub: Weak<Inner>,
}

static NEXT_NODE: AtomicU64 = AtomicU64::new(1);

impl Node {
    pub(crate) fn new(rooms: &Rooms) -> Self {
        Self {
            id: NEXT_NODE.fetch_add(1, Ordering::Relaxed),
            hub: Arc::downgrade(&rooms.inner),
        }
    }

    /// A number unique to this node within the process (backplanes add their own node identity for
    /// other processes).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Whether the hub still exists.
    pub fn is_alive(&self) -> bool {
        self.hub.strong_count() > 0
    }

    /// How many local connections are in `room` (0 if the hub is gone).
    pub fn size(&self, room: &str) -> usize {
        self.hub
            .upgrade()
            .map_or(0, |inner| Rooms { inner }.size(room))
    }

    /// The local members of `room`: each connection's id and presence value (JSON text), if set.
    pub fn members(&self, room: &str) -> Vec<(u64, Option<String>)> {
        self.hub
            .upgrade()
            .map_or_else(Vec::new, |inner| Rooms { inner }.member_presence(room))
    }

    /// Every room with local members, with its local size.
    pub fn rooms(&self) -> Vec<(String, usize)> {
        let Some(inner) = self.hub.upgrade() else {
            return Vec::new();
        };
        let rooms = Rooms { inner };
        rooms
            .rooms()
            .into_iter()
            .map(|room| {
                let size = rooms.size(&room);
                (room, size)
            })
            .collect()
    }

    /// Delivers a publish from another node to the members of `scope` on this node, without forwarding
    /// it again.
    pub fn deliver(&self, scope: Scope<'_>, message: &Message) -> Delivery {
        let Some(inner) = self.hub.upgrade() else {
            return Delivery::default();
        };
        let rooms = Rooms { inner };
        rooms.fan_out(scope, &PreparedMessage::new(message), None)
    }
}

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.id)
            .field("alive", &self.is_alive())
            .finish()
    }
}

/// Why a backplane could not be set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BackplaneError {
    /// The hub already has a backplane.
    #[error("this hub already has a backplane")]
    AlreadySet,
    /// The backplane's address is not valid.
    #[error("invalid backplane address: {0}")]
    InvalidAddress(String),
    /// The backplane's broker cannot be reached or refused a request.
    #[error("backplane unavailable: {0}")]
    Unavailable(String),
}

/// A backplane linking the hubs of one process, as if each were a node: a publish on one hub reaches
/// the members on every other hub of the same `MemoryBackplane` (clones share it). Useful to run
/// several apps in one process, and to test multi-node behaviour without a broker.
///
/// ```
/// use verb_rooms::{MemoryBackplane, Rooms};
///
/// let bus = MemoryBackplane::new();
/// let (a, b) = (Rooms::new(), Rooms::new());
/// a.set_backplane(bus.clone()).unwrap();
/// b.set_backplane(bus.clone()).unwrap();
/// assert_eq!(bus.nodes(), 2);
/// ```
#[derive(Default)]
pub struct MemoryBackplane {
    bus: Arc<Mutex<Vec<Node>>>,
    /// The node this handle was started for: each hub gets its own handle (a clone), sharing the bus.
    me: OnceLock<u64>,
}

impl Clone for MemoryBackplane {
    fn clone(&self) -> Self {
        Self {
            bus: self.bus.clone(),
            me: OnceLock::new(),
        }
    }
}

impl MemoryBackplane {
    /// A new, empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many live hubs are on the bus.
    pub fn nodes(&self) -> usize {
        let mut bus = self.bus.lock().unwrap_or_else(|p| p.into_inner());
        bus.retain(Node::is_alive);
        bus.len()
    }
}

impl Backplane for MemoryBackplane {
    fn start(&self, node: Node) {
        if self.me.set(node.id()).is_err() {
            tracing::error!(
                "a MemoryBackplane handle was started twice; give each hub its own clone"
            );
            return;
        }
        let mut bus = self.bus.lock().unwrap_or_else(|p| p.into_inner());
        bus.retain(Node::is_alive);
        bus.push(node);
    }

    fn publish(&self, scope: Scope<'_>, message: &Message) {
        let me = self.me.get().copied();
        // Deliver outside the bus lock: a delivery may run hooks that publish again.
        let others: Vec<Node> = self
            .bus
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|node| Some(node.id()) != me)
            .cloned()
            .collect();
        for node in others {
            node.deliver(scope, message);
        }
    }
}

impl fmt::Debug for MemoryBackplane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryBackplane")
            .field("nodes", &self.nodes())
            .finish()
    }
}
