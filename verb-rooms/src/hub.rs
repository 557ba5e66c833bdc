//! The hub: who is connected, who is in which room, and which connections belong to which user.
//!
//! Locking: three kinds of locks, always taken in this order and never across an `.await` (there is
//! none in this crate) nor around an application hook:
//! 1. a connection shard (`conns[id % SHARDS]`), which serializes membership changes of one connection;
//! 2. the room table (`rooms`) or the user table (`users`);
//! 3. one room's member list.
//!
//! Membership changes reach the backplane in the order they happened (queued under the shard lock) but
//! its hooks run after every lock is released ([`Rooms::flush_notices`]).
//!
//! Sending only queues frames on the connections (`verb-ws` never blocks a sender), so a broadcast
//! holds one room's read lock while it walks the members, and nothing else.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};

use indexmap::IndexMap;
use verb_ws::{Attachment, Message, PreparedMessage, ReadyState, WebSocket};

use crate::backplane::{Backplane, BackplaneError, Node, Scope};
use crate::delivery::{Delivery, Target};
use crate::greeting::{Greeting, Joined};

/// Connection shards: enough that joins from many tasks rarely meet on one lock.
const SHARDS: usize = 16;

type Hook = dyn Fn(&Rooms, &str, &WebSocket) + Send + Sync;

/// Rooms, topics, direct messages and presence for WebSocket connections: a cheap, cloneable handle
/// to one shared hub.
///
/// - **Rooms** (and Bun-style **topics**, which are the same thing: `ws.subscribe(t)` joins room `t`):
///   [`join`](Self::join), [`leave`](Self::leave), [`leave_all`](Self::leave_all),
///   [`members`](Self::members), [`size`](Self::size), [`rooms_of`](Self::rooms_of). A room exists while
///   it has members.
/// - **Fan-out**: [`to`](Self::to) a room, [`everyone`](Self::everyone), or a [`user`](Self::user),
///   optionally [`except`](Target::except) the sender. The message is framed once and that frame is
///   queued on every receiver; the [`Delivery`] says how many got it.
/// - **Direct messages**: [`set_user`](Self::set_user) gives a connection an application key (a user
///   id); one user may have many connections (tabs).
/// - **Presence**: [`presence`](Self::presence) lists the members' per-connection data;
///   [`on_join`](Self::on_join) / [`on_leave`](Self::on_leave) hear every change.
///
/// Mounted through the `verb` facade, every endpoint is attached to the app's hub, so connections
/// join it when they open and leave every room when they close (before the app's `close` callback
/// runs). Used alone, attach it yourself with `Ws::attach(rooms.clone())`.
///
/// # Example
///
/// ```
/// use verb_rooms::Rooms;
/// use verb_ws::{Message, WebSocket, Ws};
///
/// let rooms = Rooms::new();
/// let chat = Ws::new()
///     .attach(rooms.clone())
///     .open(|ws: &WebSocket, _req| {
///         if let Some(rooms) = ws.attachment::<Rooms>() {
///             rooms.join("lobby", ws).ok();
///             rooms.to("lobby").except(ws).send("someone joined");
///         }
///     })
///     .message(|ws: &WebSocket, msg: Message| {
///         if let Some(rooms) = ws.attachment::<Rooms>() {
///             let delivery = rooms.to("lobby").send(msg);
///             tracing::debug!(receivers = delivery.recipients(), "fanned out");
///         }
///     });
/// # let _ = chat;
/// ```
#[derive(Clone)]
pub struct Rooms {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    conns: [Mutex<HashMap<u64, Conn>>; SHARDS],
    rooms: RwLock<HashMap<Arc<str>, Arc<Room>>>,
    users: RwLock<HashMap<Arc<str>, Vec<WebSocket>>>,
    on_join: RwLock<Option<Arc<Hook>>>,
    on_leave: RwLock<Option<Arc<Hook>>>,
    pub(crate) backplane: OnceLock<Arc<dyn Backplane>>,
    metrics: OnceLock<HubMetrics>,
    /// Membership changes on their way to the backplane's hooks.
    notices: Mutex<Notices>,
    max_rooms_per_connection: AtomicUsize,
    max_room_name: AtomicUsize,
}

/// Membership changes for the backplane, in the order they happened: queued under the shard lock,
/// delivered by one thread at a time with no lock held.
#[derive(Default)]
struct Notices {
    queue: VecDeque<Notice>,
    /// A thread is delivering: it takes what others queue meanwhile.
    draining: bool,
}

enum Notice {
    Joined {
        room: Arc<str>,
        member: u64,
        presence: Option<Arc<str>>,
    },
    Left {
        room: Arc<str>,
        member: u64,
    },
}

/// Bounds on what one connection can make a hub hold (set with [`Rooms::set_limits`]).
///
/// ```
/// use verb_rooms::{RoomLimits, Rooms};
///
/// let rooms = Rooms::new();
/// rooms.set_limits(RoomLimits::new().max_rooms_per_connection(50).max_room_name_len(64));
/// assert_eq!(rooms.limits().get_max_rooms_per_connection(), 50);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomLimits {
    max_rooms_per_connection: usize,
    max_room_name: usize,
}

impl Default for RoomLimits {
    fn default() -> Self {
        Self::new()
    }
}

impl RoomLimits {
    /// The defaults: 1,000 rooms per connection, room names of at most 256 bytes.
    pub fn new() -> Self {
        Self {
            max_rooms_per_connection: 1000,
            max_room_name: 256,
        }
    }

    /// How many rooms (and topics) one connection may be in at once.
    ///
    /// Default is 1,000.
    pub fn max_rooms_per_connection(mut self, rooms: usize) -> Self {
        self.max_rooms_per_connection = rooms;
        self
    }

    /// The longest room (or topic) name a join accepts, in bytes.
    ///
    /// Default is 256.
    pub fn max_room_name_len(mut self, bytes: usize) -> Self {
        self.max_room_name = bytes;
        self
    }

    /// See [`max_rooms_per_connection`](Self::max_rooms_per_connection).
    pub fn get_max_rooms_per_connection(&self) -> usize {
        self.max_rooms_per_connection
    }

    /// See [`max_room_name_len`](Self::max_room_name_len).
    pub fn get_max_room_name_len(&self) -> usize {
        self.max_room_name
    }
}

/// Why a join was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JoinError {
    /// The connection is already in as many rooms as [`RoomLimits::max_rooms_per_connection`] allows.
    #[error("a connection may be in at most {limit} rooms")]
    TooManyRooms {
        /// The limit.
        limit: usize,
    },
    /// The room name is longer than [`RoomLimits::max_room_name_len`].
    #[error("room name of {len} bytes is longer than the limit of {limit}")]
    NameTooLong {
        /// The name's length in bytes.
        len: usize,
        /// The limit.
        limit: usize,
    },
}

/// The hub's counters (registered at first use, so a recorder installed before serving sees them):
/// `verb_rooms_rooms` (gauge: rooms with members), `verb_rooms_fanouts_total`,
/// `verb_rooms_deliveries_total{result="sent"|"backpressured"|"dropped"}`.
struct HubMetrics {
    rooms: metrics::Gauge,
    fanouts: metrics::Counter,
    sent: metrics::Counter,
    backpressured: metrics::Counter,
    dropped: metrics::Counter,
}

impl HubMetrics {
    fn register() -> Self {
        let deliveries = |result: &'static str| metrics::counter!("verb_rooms_deliveries_total", "result" => result);
        Self {
            rooms: metrics::gauge!("verb_rooms_rooms"),
            fanouts: metrics::counter!("verb_rooms_fanouts_total"),
            sent: deliveries("sent"),
            backpressured: deliveries("backpressured"),
            dropped: deliveries("dropped"),
        }
    }
}

/// What the hub knows of one connection.
struct Conn {
    ws: WebSocket,
    rooms: Vec<Arc<Room>>,
    user: Option<Arc<str>>,
    /// What presence shows of this connection, as JSON text ([`Rooms::set_presence`]).
    presence: Option<Arc<str>>,
}

struct Room {
    name: Arc<str>,
    members: RwLock<Members>,
}

#[derive(Default)]
struct Members {
    list: IndexMap<u64, WebSocket>,
    /// Emptied and on its way out of the room table: a joiner must make a new room.
    dead: bool,
}

fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    // The hub's tables stay consistent even if a panic interrupted a holder (every update is a
    // single insert or remove), so a poisoned lock is used as is.
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Default for Rooms {
    fn default() -> Self {
        Self::new()
    }
}

impl Rooms {
    /// An empty hub, delivering within this process only (no backplane).
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                conns: std::array::from_fn(|_| Mutex::new(HashMap::new())),
                rooms: RwLock::new(HashMap::new()),
                users: RwLock::new(HashMap::new()),
                on_join: RwLock::new(None),
                on_leave: RwLock::new(None),
                backplane: OnceLock::new(),
                metrics: OnceLock::new(),
                notices: Mutex::new(Notices::default()),
                max_rooms_per_connection: AtomicUsize::new(
                    RoomLimits::new().max_rooms_per_connection,
                ),
                max_room_name: AtomicUsize::new(RoomLimits::new().max_room_name),
            }),
        }
    }

    fn metrics(&self) -> &HubMetrics {
        self.inner.metrics.get_or_init(HubMetrics::register)
    }

    fn shard(&self, ws: &WebSocket) -> MutexGuard<'_, HashMap<u64, Conn>> {
        lock(&self.inner.conns[(ws.id() % SHARDS as u64) as usize])
    }

    /// Registers `ws` (as the attachment does when it opens). A closed connection is refused.
    fn register<'a>(shard: &'a mut HashMap<u64, Conn>, ws: &WebSocket) -> Option<&'a mut Conn> {
        if ws.ready_state() == ReadyState::Closed {
            // Its `closed` hook may already have run: registering now would keep it forever.
            return None;
        }
        Some(shard.entry(ws.id()).or_insert_with(|| Conn {
            ws: ws.clone(),
            rooms: Vec::new(),
            user: None,
            presence: None,
        }))
    }

    /// Puts `ws` in `room` (creating the room). Returns `Ok(false)` if it was already a member, or is
    /// closed.
    ///
    /// To tell the newcomer the member count (and the others of its arrival) with no broadcast in
    /// between, use [`join_with`](Self::join_with).
    ///
    /// # Errors
    ///
    /// A [`JoinError`] when the join would pass the hub's [`RoomLimits`]: a name that is too long, or
    /// a connection already in `max_rooms_per_connection` rooms. Nothing changes.
    pub fn join(&self, room: &str, ws: &WebSocket) -> Result<bool, JoinError> {
        match self.enter(room, ws, None) {
            Entry::Joined(_) => Ok(true),
            Entry::Limited(err) => Err(err),
            Entry::Refused | Entry::SizeChanged => Ok(false),
        }
    }

    /// Sets the bounds on what one connection can make the hub hold; joins from then on obey them
    /// (a connection already over a new limit keeps its rooms but joins no more).
    pub fn set_limits(&self, limits: RoomLimits) {
        self.inner
            .max_rooms_per_connection
            .store(limits.max_rooms_per_connection, Ordering::Relaxed);
        self.inner
            .max_room_name
            .store(limits.max_room_name, Ordering::Relaxed);
    }

    /// The hub's [`RoomLimits`].
    pub fn limits(&self) -> RoomLimits {
        RoomLimits {
            max_rooms_per_connection: self.inner.max_rooms_per_connection.load(Ordering::Relaxed),
            max_room_name: self.inner.max_room_name.load(Ordering::Relaxed),
        }
    }

    /// Puts `ws` in `room` and, in the same step, queues a welcome on `ws` and an announcement on the
    /// room's other members, both built by `greet` from the member count (the newcomer included).
    ///
    /// What it guarantees, and a `join` followed by `size` and sends does not:
    /// - the welcome is the first message of the room that `ws` receives: no broadcast to the room
    ///   from another task (a member leaving at that moment, say) is queued on it before the welcome;
    /// - the count is the room's size on this node at the moment of the join, and every later change
    ///   of the membership reaches the members after this join's announcement.
    ///
    /// `greet` runs with none of the hub's locks held, so it may do anything (even use this hub). It
    /// is called with the count the join expects; if the room's size changed before the join could
    /// take its lock, the greeting is built again with the new count (up to 8 times; should the room
    /// change under every one of those tries, the last greeting is queued as built, in the same order,
    /// and its count may be off by the churn).
    ///
    /// Returns `Ok(None)`, sending nothing, when `ws` is already in `room` or is closed.
    ///
    /// ```
    /// # use verb_rooms::{Greeting, Rooms};
    /// # use serde_json::json;
    /// # fn on_open(rooms: &Rooms, ws: &verb_ws::WebSocket) {
    /// rooms.join_with("lobby", ws, |count| {
    ///     Greeting::new()
    ///         .welcome_json(&json!({ "type": "welcome", "userCount": count }))
    ///         .announce_json(&json!({ "type": "system", "message": "A user has joined", "userCount": count }))
    /// })
    /// .ok();
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// A [`JoinError`], as [`join`](Self::join), before `greet` runs.
    pub fn join_with(
        &self,
        room: &str,
        ws: &WebSocket,
        mut greet: impl FnMut(usize) -> Greeting,
    ) -> Result<Option<Joined>, JoinError> {
        const TRIES: usize = 8;
        self.check_name(room, ws)?;
        for attempt in 1..=TRIES {
            if ws.ready_state() == ReadyState::Closed || self.contains(room, ws) {
                return Ok(None);
            }
            let expected = self.size(room) + 1;
            let greeting = greet(expected);
            let announcement = greeting.prepared_announcement();
            let pending = Pending {
                expected,
                last_try: attempt == TRIES,
                welcome: greeting.welcome.as_ref(),
                announcement: announcement.as_ref(),
            };
            match self.enter(room, ws, Some(pending)) {
                Entry::Joined(joined) => {
                    if let (Some(message), Some(backplane)) =
                        (&greeting.announce, self.inner.backplane.get())
                    {
                        backplane.publish(Scope::Room(room), message);
                    }
                    return Ok(Some(joined));
                }
                Entry::Refused => return Ok(None),
                Entry::Limited(err) => return Err(err),
                Entry::SizeChanged => {
                    tracing::trace!(
                        room,
                        id = ws.id(),
                        attempt,
                        "join_with: the room changed, greeting again"
                    );
                }
            }
        }
        // The last try queues whatever the room's size is, so the loop always returns from within.
        Ok(None)
    }

    /// Refuses a room name over the limit.
    fn check_name(&self, room: &str, ws: &WebSocket) -> Result<(), JoinError> {
        let limit = self.inner.max_room_name.load(Ordering::Relaxed);
        if room.len() > limit {
            tracing::info!(
                id = ws.id(),
                len = room.len(),
                limit,
                "join refused: room name too long"
            );
            return Err(JoinError::NameTooLong {
                len: room.len(),
                limit,
            });
        }
        Ok(())
    }

    /// Joins `ws` to `room`; with `pending`, also queues the greeting under the room's lock, unless the
    /// room's size is not the one the greeting was built for.
    fn enter(&self, room: &str, ws: &WebSocket, pending: Option<Pending<'_>>) -> Entry {
        if let Err(err) = self.check_name(room, ws) {
            return Entry::Limited(err);
        }
        let mut fanout = pending
            .as_ref()
            .and_then(|p| p.announcement)
            .map(|frame| Fanout::new(frame, Some(ws.id())));
        let joined = {
            let mut shard = self.shard(ws);
            let Some(conn) = Self::register(&mut shard, ws) else {
                return Entry::Refused;
            };
            if conn.rooms.iter().any(|r| &*r.name == room) {
                return Entry::Refused;
            }
            let limit = self.inner.max_rooms_per_connection.load(Ordering::Relaxed);
            if conn.rooms.len() >= limit {
                tracing::info!(id = ws.id(), limit, "join refused: too many rooms");
                return Entry::Limited(JoinError::TooManyRooms { limit });
            }
            let (joined, count, welcome) = loop {
                let candidate = self.room_for_join(room);
                let mut members = write(&candidate.members);
                if members.dead {
                    drop(members);
                    self.forget_room(&candidate);
                    continue;
                }
                let count = members.list.len() + 1;
                if let Some(p) = &pending
                    && count != p.expected
                    && !p.last_try
                {
                    // A room made for this join, which is not happening now, goes as an emptied one
                    // does (marked under its lock, so no joiner can be in it).
                    members.dead = members.list.is_empty();
                    let emptied = members.dead;
                    drop(members);
                    if emptied {
                        self.forget_room(&candidate);
                    }
                    return Entry::SizeChanged;
                }
                members.list.insert(ws.id(), ws.clone());
                // Still under the room's write lock: no fan-out to this room can come in between.
                let welcome = pending
                    .as_ref()
                    .and_then(|p| p.welcome)
                    .map(|message| ws.send(message.clone()));
                if let Some(fanout) = &mut fanout {
                    for (id, member) in &members.list {
                        fanout.send(*id, member);
                    }
                }
                drop(members);
                break (candidate, count, welcome);
            };
            // Still under the shard lock, so the backplane hears joins and leaves of this connection
            // in the order they happened.
            self.notice(|| Notice::Joined {
                room: joined.name.clone(),
                member: ws.id(),
                presence: conn.presence.clone(),
            });
            conn.rooms.push(joined);
            Joined {
                count,
                welcome,
                announced: Delivery::default(),
            }
        };
        self.flush_notices();
        let announced = fanout
            .map(|fanout| fanout.finish(self, Scope::Room(room)))
            .unwrap_or_default();
        tracing::trace!(room, id = ws.id(), "joined");
        self.run_hook(&self.inner.on_join, room, ws);
        Entry::Joined(Joined {
            announced,
            ..joined
        })
    }

    fn room_for_join(&self, name: &str) -> Arc<Room> {
        if let Some(room) = read(&self.inner.rooms).get(name) {
            return room.clone();
        }
        write(&self.inner.rooms)
            .entry(Arc::from(name))
            .or_insert_with_key(|name| {
                self.metrics().rooms.increment(1.0);
                Arc::new(Room {
                    name: name.clone(),
                    members: RwLock::new(Members::default()),
                })
            })
            .clone()
    }

    /// Takes an emptied room out of the table, unless a new room of that name replaced it.
    fn forget_room(&self, room: &Arc<Room>) {
        let mut rooms = write(&self.inner.rooms);
        if rooms
            .get(&room.name)
            .is_some_and(|current| Arc::ptr_eq(current, room))
        {
            rooms.remove(&room.name);
            self.metrics().rooms.decrement(1.0);
        }
    }

    /// Takes `ws` out of `room`. Returns `false` if it was not a member. The room vanishes when its
    /// last member leaves.
    pub fn leave(&self, room: &str, ws: &WebSocket) -> bool {
        let left = {
            let mut shard = self.shard(ws);
            let Some(conn) = shard.get_mut(&ws.id()) else {
                return false;
            };
            let Some(index) = conn.rooms.iter().position(|r| &*r.name == room) else {
                return false;
            };
            let left = conn.rooms.swap_remove(index);
            // Under the connection's shard lock, so a concurrent join of the same connection cannot
            // slip between the two halves of the membership.
            let emptied = self.detach(&left, ws.id());
            (left, emptied)
        };
        self.after_leave(&[left], ws);
        true
    }

    /// Removes member `id` from `room`'s list and tells the backplane; whether the room is now empty.
    /// The caller holds the member's shard lock (so the backplane hears changes in order).
    fn detach(&self, room: &Arc<Room>, id: u64) -> bool {
        let emptied = {
            let mut members = write(&room.members);
            members.list.swap_remove(&id);
            members.dead = members.list.is_empty();
            members.dead
        };
        self.notice(|| Notice::Left {
            room: room.name.clone(),
            member: id,
        });
        emptied
    }

    /// Queues a membership change for the backplane (the caller holds the member's shard lock).
    fn notice(&self, notice: impl FnOnce() -> Notice) {
        if self.inner.backplane.get().is_some() {
            lock(&self.inner.notices).queue.push_back(notice());
        }
    }

    /// Delivers queued membership changes to the backplane's hooks, in order, with no lock held: a
    /// hook may use the hub (even join or leave; that change is delivered after it, by this loop).
    /// Called after the shard lock is released; if another thread is delivering, it takes ours too.
    fn flush_notices(&self) {
        /// Lets the next caller deliver if a hook panicked (a normal end clears the flag itself).
        struct Draining<'a>(&'a Mutex<Notices>);
        impl Drop for Draining<'_> {
            fn drop(&mut self) {
                if std::thread::panicking() {
                    lock(self.0).draining = false;
                }
            }
        }
        let Some(backplane) = self.inner.backplane.get() else {
            return;
        };
        {
            let mut notices = lock(&self.inner.notices);
            if notices.draining || notices.queue.is_empty() {
                return;
            }
            notices.draining = true;
        }
        let _draining = Draining(&self.inner.notices);
        loop {
            // Finding the queue empty and giving up the drainer's role happen under one lock: a
            // notice queued just after is then delivered by its own thread, never stranded.
            let notice = {
                let mut notices = lock(&self.inner.notices);
                match notices.queue.pop_front() {
                    Some(notice) => notice,
                    None => {
                        notices.draining = false;
                        return;
                    }
                }
            };
            match notice {
                Notice::Joined {
                    room,
                    member,
                    presence,
                } => backplane.member_joined(&room, member, presence.as_deref()),
                Notice::Left { room, member } => backplane.member_left(&room, member),
            }
        }
    }

    /// What follows leaving, outside every lock: emptied rooms leave the table, and the `on_leave`
    /// hook runs.
    fn after_leave(&self, left: &[(Arc<Room>, bool)], ws: &WebSocket) {
        self.flush_notices();
        for (room, emptied) in left {
            if *emptied {
                self.forget_room(room);
            }
            tracing::trace!(room = %room.name, id = ws.id(), "left");
        }
        for (room, _) in left {
            self.run_hook(&self.inner.on_leave, &room.name, ws);
        }
    }

    /// Takes `ws` out of every room; returns the rooms it left. Runs by itself when a connection
    /// attached to this hub closes.
    pub fn leave_all(&self, ws: &WebSocket) -> Vec<String> {
        let left: Vec<(Arc<Room>, bool)> = {
            let mut shard = self.shard(ws);
            let Some(conn) = shard.get_mut(&ws.id()) else {
                return Vec::new();
            };
            std::mem::take(&mut conn.rooms)
                .into_iter()
                .map(|room| {
                    let emptied = self.detach(&room, ws.id());
                    (room, emptied)
                })
                .collect()
        };
        self.after_leave(&left, ws);
        left.iter().map(|(room, _)| room.name.to_string()).collect()
    }

    /// Forgets `ws` entirely: its rooms, its user key, and its place among [`everyone`](Self::everyone).
    fn forget(&self, ws: &WebSocket) {
        let left: Vec<(Arc<Room>, bool)> = {
            let mut shard = self.shard(ws);
            let Some(conn) = shard.remove(&ws.id()) else {
                return;
            };
            if let Some(user) = &conn.user {
                self.unlink_user(user, ws);
            }
            conn.rooms
                .into_iter()
                .map(|room| {
                    let emptied = self.detach(&room, ws.id());
                    (room, emptied)
                })
                .collect()
        };
        self.after_leave(&left, ws);
    }

    /// Whether `ws` is in `room`.
    pub fn contains(&self, room: &str, ws: &WebSocket) -> bool {
        self.shard(ws)
            .get(&ws.id())
            .is_some_and(|conn| conn.rooms.iter().any(|r| &*r.name == room))
    }

    /// The rooms `ws` is in, in the order it joined them (until it leaves one).
    pub fn rooms_of(&self, ws: &WebSocket) -> Vec<String> {
        self.shard(ws).get(&ws.id()).map_or_else(Vec::new, |conn| {
            conn.rooms.iter().map(|r| r.name.to_string()).collect()
        })
    }

    /// The members of `room` (empty if there is no such room).
    pub fn members(&self, room: &str) -> Vec<WebSocket> {
        self.with_room(room, |members| members.list.values().cloned().collect())
            .unwrap_or_default()
    }

    /// How many connections are in `room`.
    pub fn size(&self, room: &str) -> usize {
        self.with_room(room, |members| members.list.len())
            .unwrap_or(0)
    }

    /// The names of the rooms that have members.
    pub fn rooms(&self) -> Vec<String> {
        read(&self.inner.rooms)
            .keys()
            .map(|name| name.to_string())
            .collect()
    }

    /// How many rooms have members.
    pub fn room_count(&self) -> usize {
        read(&self.inner.rooms).len()
    }

    /// How many open connections the hub knows (those of attached endpoints, and any that joined a
    /// room).
    pub fn connections(&self) -> usize {
        self.inner.conns.iter().map(|shard| lock(shard).len()).sum()
    }

    /// Who is in `room`: each member's per-connection value of type `T` (set with
    /// `ws.set_data(..)`), in join order. Members without one are skipped.
    ///
    /// ```
    /// # use verb_rooms::Rooms;
    /// #[derive(Clone)]
    /// struct Username(String);
    ///
    /// let rooms = Rooms::new();
    /// let names: Vec<String> = rooms.presence::<Username>("lobby").into_iter().map(|u| u.0).collect();
    /// assert!(names.is_empty());
    /// ```
    pub fn presence<T: Clone + Send + Sync + 'static>(&self, room: &str) -> Vec<T> {
        // The members first, then their data with no hub lock held: a `with_data` closure elsewhere
        // that joins a room (taking the room's lock while holding its value) cannot deadlock with us.
        self.members(room)
            .iter()
            .filter_map(|ws| ws.data::<T>())
            .collect()
    }

    /// Sets what presence shows of `ws` across nodes (any serializable value, e.g. `{"username":..}`):
    /// [`presence_values`](Self::presence_values) here, and a backplane's presence on other nodes.
    /// Returns `false` if `ws` is closed or the value does not serialize.
    pub fn set_presence<T: serde::Serialize + ?Sized>(&self, ws: &WebSocket, value: &T) -> bool {
        let Ok(json) = serde_json::to_string(value) else {
            tracing::error!(id = ws.id(), "presence value does not serialize to JSON");
            return false;
        };
        let json: Arc<str> = Arc::from(json);
        let mut shard = self.shard(ws);
        let Some(conn) = Self::register(&mut shard, ws) else {
            return false;
        };
        conn.presence = Some(json.clone());
        for room in &conn.rooms {
            self.notice(|| Notice::Joined {
                room: room.name.clone(),
                member: ws.id(),
                presence: Some(json.clone()),
            });
        }
        drop(shard);
        self.flush_notices();
        true
    }

    /// The presence values ([`set_presence`](Self::set_presence)) of the local members of `room`, in
    /// join order; members without one are skipped.
    pub fn presence_values(&self, room: &str) -> Vec<serde_json::Value> {
        self.member_presence(room)
            .into_iter()
            .filter_map(|(_, json)| serde_json::from_str(&json?).ok())
            .collect()
    }

    pub(crate) fn member_presence(&self, room: &str) -> Vec<(u64, Option<String>)> {
        let ids: Vec<u64> = self
            .with_room(room, |members| members.list.keys().copied().collect())
            .unwrap_or_default();
        ids.into_iter()
            .map(|id| {
                let shard = lock(&self.inner.conns[(id % SHARDS as u64) as usize]);
                let presence = shard
                    .get(&id)
                    .and_then(|conn| conn.presence.as_deref().map(str::to_owned));
                (id, presence)
            })
            .collect()
    }

    fn with_room<R>(&self, room: &str, f: impl FnOnce(&Members) -> R) -> Option<R> {
        let room = read(&self.inner.rooms).get(room)?.clone();
        let members = read(&room.members);
        Some(f(&members))
    }

    /// Runs `hook` after every join: `(rooms, room, ws)`. It runs on the task that joined (for
    /// `ws.subscribe`, the connection's own), after the hub's locks are released, so it may send and
    /// join freely. Replaces an earlier hook.
    pub fn on_join(&self, hook: impl Fn(&Rooms, &str, &WebSocket) + Send + Sync + 'static) {
        *write(&self.inner.on_join) = Some(Arc::new(hook));
    }

    /// Runs `hook` after every leave, including the automatic ones when a connection closes (then
    /// `ws.ready_state()` is `Closed`, and the hook runs before the app's `close` callback).
    /// Replaces an earlier hook.
    pub fn on_leave(&self, hook: impl Fn(&Rooms, &str, &WebSocket) + Send + Sync + 'static) {
        *write(&self.inner.on_leave) = Some(Arc::new(hook));
    }

    fn run_hook(&self, hook: &RwLock<Option<Arc<Hook>>>, room: &str, ws: &WebSocket) {
        let hook = read(hook).clone();
        if let Some(hook) = hook {
            hook(self, room, ws);
        }
    }

    /// Gives `ws` the application key `user` (e.g. the user id from a JWT), replacing an earlier key,
    /// so [`user`](Self::user) reaches it. A user may have many connections. Returns `false` if `ws`
    /// is closed.
    pub fn set_user(&self, ws: &WebSocket, user: impl Into<String>) -> bool {
        let user: Arc<str> = Arc::from(user.into());
        let mut shard = self.shard(ws);
        let Some(conn) = Self::register(&mut shard, ws) else {
            return false;
        };
        if conn.user.as_deref() == Some(&*user) {
            return true;
        }
        write(&self.inner.users)
            .entry(user.clone())
            .or_default()
            .push(ws.clone());
        // Still under the shard lock: a concurrent change of this connection's key waits.
        if let Some(previous) = conn.user.replace(user) {
            self.unlink_user(&previous, ws);
        }
        true
    }

    /// Removes the application key of `ws`, if it has one.
    pub fn clear_user(&self, ws: &WebSocket) {
        let mut shard = self.shard(ws);
        if let Some(previous) = shard.get_mut(&ws.id()).and_then(|conn| conn.user.take()) {
            self.unlink_user(&previous, ws);
        }
    }

    /// Removes `ws` from `user`'s connections. The caller holds `ws`'s shard lock.
    fn unlink_user(&self, user: &str, ws: &WebSocket) {
        let mut users = write(&self.inner.users);
        if let Some(connections) = users.get_mut(user) {
            connections.retain(|c| c != ws);
            if connections.is_empty() {
                users.remove(user);
            }
        }
    }

    /// The application key of `ws`, if it has one.
    pub fn user_of(&self, ws: &WebSocket) -> Option<String> {
        self.shard(ws)
            .get(&ws.id())
            .and_then(|conn| conn.user.as_deref().map(str::to_owned))
    }

    /// The open connections of `user` on this node.
    pub fn user_connections(&self, user: &str) -> Vec<WebSocket> {
        read(&self.inner.users)
            .get(user)
            .cloned()
            .unwrap_or_default()
    }

    /// Whether `user` has a connection on this node.
    pub fn is_connected(&self, user: &str) -> bool {
        read(&self.inner.users).contains_key(user)
    }

    /// Addresses the members of `room` (or subscribers of topic `room`).
    ///
    /// ```
    /// # use verb_rooms::Rooms;
    /// let rooms = Rooms::new();
    /// let delivery = rooms.to("news").json(&serde_json::json!({ "headline": "Rust 2027" }));
    /// assert_eq!(delivery.recipients(), 0); // nobody subscribed yet
    /// ```
    pub fn to<'a>(&'a self, room: &'a str) -> Target<'a> {
        Target::new(self, Scope::Room(room))
    }

    /// Addresses every connection the hub knows, except those held back until they authenticate
    /// (see [`WebSocket::set_admitted`]: in-band authentication holds connections back).
    pub fn everyone(&self) -> Target<'_> {
        Target::new(self, Scope::Everyone)
    }

    /// Addresses every connection of `user` (see [`set_user`](Self::set_user)).
    /// `delivery.reached_nobody()` tells that the user is not connected here.
    pub fn user<'a>(&'a self, user: &'a str) -> Target<'a> {
        Target::new(self, Scope::User(user))
    }

    /// Bun's `server.publish(topic, message)`: sends to every subscriber of `topic`.
    pub fn publish(&self, topic: &str, message: impl Into<verb_ws::Message>) -> Delivery {
        self.to(topic).send(message)
    }

    /// Connects this hub to other nodes through `backplane`: publishes made here are forwarded, and
    /// remote publishes are delivered to local members. Set once, before traffic starts.
    ///
    /// # Errors
    ///
    /// [`BackplaneError::AlreadySet`] if the hub already has a backplane.
    pub fn set_backplane(&self, backplane: impl Backplane) -> Result<(), BackplaneError> {
        let backplane: Arc<dyn Backplane> = Arc::new(backplane);
        self.inner
            .backplane
            .set(backplane.clone())
            .map_err(|_| BackplaneError::AlreadySet)?;
        backplane.start(Node::new(self));
        Ok(())
    }

    /// Whether the hub has a backplane.
    pub fn has_backplane(&self) -> bool {
        self.inner.backplane.get().is_some()
    }

    /// Queues `frame` on every connection in `scope` but `except`; this node only.
    pub(crate) fn fan_out(
        &self,
        scope: Scope<'_>,
        frame: &PreparedMessage,
        except: Option<u64>,
    ) -> Delivery {
        let mut fanout = Fanout::new(frame, except);
        match scope {
            Scope::Room(room) => {
                let Some(room) = read(&self.inner.rooms).get(room).cloned() else {
                    return fanout.delivery;
                };
                let members = read(&room.members);
                for (id, ws) in &members.list {
                    fanout.send(*id, ws);
                }
            }
            Scope::Everyone => {
                for shard in &self.inner.conns {
                    // Connections held back (in-band authentication pending) are not "everyone".
                    for (id, conn) in lock(shard).iter().filter(|(_, c)| c.ws.is_admitted()) {
                        fanout.send(*id, &conn.ws);
                    }
                }
            }
            Scope::User(user) => {
                let users = read(&self.inner.users);
                for ws in users.get(user).into_iter().flatten() {
                    fanout.send(ws.id(), ws);
                }
            }
        }
        fanout.finish(self, scope)
    }
}

/// The greeting that [`Rooms::enter`] queues with a join.
struct Pending<'a> {
    /// The member count the greeting was built for.
    expected: usize,
    /// Queue it whatever the count.
    last_try: bool,
    welcome: Option<&'a Message>,
    announcement: Option<&'a PreparedMessage>,
}

/// How [`Rooms::enter`] went.
enum Entry {
    Joined(Joined),
    /// Already a member, or closed.
    Refused,
    /// The room's size is not the one the greeting was built for; nothing changed.
    SizeChanged,
    /// Over the hub's limits; nothing changed.
    Limited(JoinError),
}

/// One frame on its way to many connections. Most sends happen under whatever lock the caller holds
/// (queueing a frame prepared once is a copy); receivers that compress it with a compressor of their
/// own (permessage-deflate with context takeover) get it in [`finish`](Self::finish), after the
/// caller released its locks, so that joins, leaves and other fan-outs never wait for deflate. Each
/// receiver still gets it before the call that sent it returns.
struct Fanout<'f> {
    frame: &'f PreparedMessage,
    except: Option<u64>,
    delivery: Delivery,
    /// Receivers that compress the frame alone, to send to once no lock is held.
    alone: Vec<WebSocket>,
    /// Receivers found closed, to forget once no lock is held.
    dead: Vec<WebSocket>,
}

impl<'f> Fanout<'f> {
    fn new(frame: &'f PreparedMessage, except: Option<u64>) -> Self {
        Self {
            frame,
            except,
            delivery: Delivery::default(),
            alone: Vec::new(),
            dead: Vec::new(),
        }
    }

    fn send(&mut self, id: u64, ws: &WebSocket) {
        if Some(id) == self.except {
            return;
        }
        if ws.compresses_alone(self.frame) {
            self.alone.push(ws.clone());
            return;
        }
        self.send_now(ws);
    }

    fn send_now(&mut self, ws: &WebSocket) {
        let status = ws.send_prepared(self.frame);
        self.delivery.count(status);
        if !status.is_queued() && ws.ready_state() == ReadyState::Closed {
            self.dead.push(ws.clone());
        }
    }

    /// Sends to the receivers that compress alone, counts the fan-out in the metrics and forgets dead
    /// receivers. Called with no hub lock held.
    fn finish(mut self, rooms: &Rooms, scope: Scope<'_>) -> Delivery {
        for ws in std::mem::take(&mut self.alone) {
            self.send_now(&ws);
        }
        let delivery = self.delivery;
        let metrics = rooms.metrics();
        metrics.fanouts.increment(1);
        metrics.sent.increment(delivery.sent as u64);
        metrics
            .backpressured
            .increment(delivery.backpressured as u64);
        metrics.dropped.increment(delivery.dropped as u64);
        if delivery.dropped > 0 {
            tracing::debug!(
                scope = ?scope,
                dropped = delivery.dropped,
                "fan-out: some receivers dropped the message (closing, or at their backpressure limit)"
            );
        }
        // Connections that closed without this hub hearing of it (not attached to it): forget them
        // now rather than keep dead sockets in rooms.
        for ws in self.dead {
            rooms.forget(&ws);
        }
        delivery
    }
}

impl Attachment for Rooms {
    fn opened(&self, ws: &WebSocket) {
        let mut shard = self.shard(ws);
        Self::register(&mut shard, ws);
    }

    fn closed(&self, ws: &WebSocket) {
        self.forget(ws);
    }
}

impl fmt::Debug for Rooms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rooms")
            .field("connections", &self.connections())
            .field("rooms", &self.room_count())
            .field("backplane", &self.inner.backplane.get().is_some())
            .finish()
    }
}
