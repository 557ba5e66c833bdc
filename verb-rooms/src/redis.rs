//! The Redis backplane: rooms, topics and direct messages across server processes.
//!
//! Wire: every node `PSUBSCRIBE`s one pattern, `{prefix}:*`, on one connection; a publish is one
//! `PUBLISH` to `{prefix}:r:{room}`, `{prefix}:a` (everyone) or `{prefix}:u:{user}`, whose payload is
//! encoded once: a kind byte (text or binary), the publishing node's id (8 bytes), then the message.
//! A node skips its own publishes (it delivered them locally already).
//!
//! Presence: each node keeps its members of a room in the hash `{prefix}:m:{room}:{node}` (connection id
//! → presence JSON) and its id in the set `{prefix}:n:{room}`. When a node's last member of a room
//! leaves, it deletes its hash and takes its id out of the set (Redis deletes an emptied set). Every
//! key expires 15 s after the last heartbeat (every 5 s) that renewed it, so the keys of a crashed
//! node vanish by themselves; readers also drop vanished nodes from the set. After a reconnect each
//! node rewrites its hashes from its own state.
//!
//! Names: the prefix, room and user names are escaped in channel and key names (`%`, `:`, glob
//! characters and braces as `%XX`), so `:` separates fields unambiguously: the prefix `verb` never sees
//! the channels of an app whose prefix is `verb:r`, and a room `a:1` never shares a key with room `a`.

use std::borrow::Cow;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::ConnectionManager;
use tokio::sync::{OnceCell, mpsc, watch};
use verb_ws::Message;

use crate::backplane::{Backplane, BackplaneError, Node, Scope};

const KIND_TEXT: u8 = 0;
const KIND_BINARY: u8 = 1;
/// Commands waiting for the Redis connection; beyond this, new publishes are dropped (and counted).
const QUEUE: usize = 65_536;
/// Bytes of publishes waiting for the Redis connection, by default.
const MAX_QUEUED_BYTES: usize = 64 * 1024 * 1024;
const HEARTBEAT: Duration = Duration::from_secs(5);
const ALIVE_FOR_S: u64 = 15;
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// A [`Backplane`] on Redis pub/sub, with presence counts across nodes (feature `redis`).
///
/// Delivery between nodes is at most once: while Redis is unreachable the node keeps serving its
/// own connections, publishes made meanwhile are dropped (counted by [`lost`](Self::lost) and the
/// `verb_backplane_lost_total` metric), and the node reconnects with backoff and resubscribes.
///
/// ```no_run
/// use verb_rooms::{RedisBackplane, Rooms};
///
/// # async fn run() -> Result<(), verb_rooms::BackplaneError> {
/// let rooms = Rooms::new();
/// let redis = RedisBackplane::new("redis://127.0.0.1:6379")?;
/// rooms.set_backplane(redis.clone())?; // inside a Tokio runtime: it starts its tasks
/// rooms.publish("news", "reaches the subscribers of every node");
/// let everywhere = redis.room_size("news").await?;
/// # let _ = everywhere;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisBackplane {
    inner: Arc<Inner>,
    /// Dropped with the last handle (the hub holds one): the tasks, which hold only `inner`, stop.
    _stop: Arc<watch::Sender<()>>,
}

struct Inner {
    client: redis::Client,
    prefix: String,
    node_id: u64,
    commands: mpsc::Sender<Command>,
    /// Taken by `start`.
    queue: std::sync::Mutex<Option<mpsc::Receiver<Command>>>,
    connection: OnceCell<ConnectionManager>,
    node: OnceLock<Node>,
    lost: AtomicU64,
    /// Bytes of the publishes in `commands` (channel and payload).
    queued_bytes: AtomicUsize,
    max_queued_bytes: usize,
    /// A presence update was lost (queue full, Redis unreachable, a failed write): the next heartbeat
    /// rewrites everything instead of only refreshing expiries.
    resync: std::sync::atomic::AtomicBool,
    /// How often the subscription connection is pinged; no answer within as long again replaces it.
    keepalive: Duration,
    stopped: watch::Receiver<()>,
}

enum Command {
    Publish {
        channel: Vec<u8>,
        payload: Vec<u8>,
    },
    Joined {
        room: String,
        member: u64,
        presence: Option<String>,
    },
    Left {
        room: String,
        member: u64,
    },
    /// Refresh the expiry of every local room.
    Heartbeat,
    /// Rewrite every local room (Redis may have lost it).
    Resync,
}

impl RedisBackplane {
    /// A backplane for the Redis at `url` (`redis://host:port/db`), with the channel prefix `verb`.
    /// Nothing connects until the backplane is set on a hub.
    ///
    /// # Errors
    ///
    /// [`BackplaneError::InvalidAddress`] for a malformed URL.
    pub fn new(url: &str) -> Result<Self, BackplaneError> {
        Self::with_prefix(url, "verb")
    }

    /// As [`new`](Self::new), with another prefix for channel and key names (to share one Redis
    /// between applications).
    ///
    /// # Errors
    ///
    /// [`BackplaneError::InvalidAddress`] for a malformed URL.
    pub fn with_prefix(url: &str, prefix: &str) -> Result<Self, BackplaneError> {
        let client = redis::Client::open(url)
            .map_err(|err| BackplaneError::InvalidAddress(format!("{url}: {err}")))?;
        let (commands, queue) = mpsc::channel(QUEUE);
        let (stop, stopped) = watch::channel(());
        let node_id = std::collections::hash_map::RandomState::new()
            .hash_one((std::process::id(), std::time::SystemTime::now()));
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                prefix: escape(prefix).into_owned(),
                node_id,
                commands,
                queue: std::sync::Mutex::new(Some(queue)),
                connection: OnceCell::new(),
                node: OnceLock::new(),
                lost: AtomicU64::new(0),
                queued_bytes: AtomicUsize::new(0),
                max_queued_bytes: MAX_QUEUED_BYTES,
                resync: std::sync::atomic::AtomicBool::new(false),
                keepalive: HEARTBEAT,
                stopped,
            }),
            _stop: Arc::new(stop),
        })
    }

    /// How often the subscription connection is checked with a `PING`; one unanswered for as long
    /// again means the link is dead (a peer that vanished without closing the connection, a silent
    /// network drop), and the node reconnects and resubscribes. Set before the backplane is attached
    /// to a hub.
    ///
    /// Default is 5 seconds.
    #[must_use]
    pub fn keepalive(mut self, every: Duration) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.keepalive = every.max(Duration::from_millis(10));
        } else {
            tracing::warn!("RedisBackplane::keepalive ignored: the backplane is already in use");
        }
        self
    }

    /// How many bytes of publishes (payload and channel name) may wait for Redis while it is slow or
    /// unreachable; a publish beyond that is dropped and counted (`lost`, `verb_backplane_lost_total`).
    /// The queue also holds at most 65,536 commands. Set before the backplane is attached to a hub.
    ///
    /// Default is 64 MiB.
    #[must_use]
    pub fn max_queued_bytes(mut self, bytes: usize) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.max_queued_bytes = bytes;
        } else {
            tracing::warn!(
                "RedisBackplane::max_queued_bytes ignored: the backplane is already in use"
            );
        }
        self
    }

    /// This node's id on the backplane (random per start).
    pub fn node_id(&self) -> u64 {
        self.inner.node_id
    }

    /// Publishes dropped because Redis was unreachable (or the queue to it was full).
    pub fn lost(&self) -> u64 {
        self.inner.lost.load(Ordering::Relaxed)
    }

    /// The members of `room` on every live node: this node's count (exact) plus what the other
    /// nodes last wrote.
    ///
    /// # Errors
    ///
    /// [`BackplaneError::Unavailable`] when Redis cannot be reached.
    pub async fn room_size(&self, room: &str) -> Result<usize, BackplaneError> {
        let others = self.remote_room_size(room).await?;
        let local = self.inner.node.get().map_or(0, |node| node.size(room));
        Ok(local + others)
    }

    /// The members of `room` on the other live nodes, as they last wrote them. With
    /// [`Rooms::join_with`](crate::Rooms::join_with), whose count is this node's, it gives a cluster
    /// count fixed at the join: `remote + count`.
    ///
    /// # Errors
    ///
    /// [`BackplaneError::Unavailable`] when Redis cannot be reached.
    pub async fn remote_room_size(&self, room: &str) -> Result<usize, BackplaneError> {
        let others: Vec<usize> = self.inner.others(room, "HLEN").await?;
        Ok(others.into_iter().sum())
    }

    /// The presence values ([`Rooms::set_presence`](crate::Rooms::set_presence)) of the members of
    /// `room` on every live node; members without one are skipped.
    ///
    /// # Errors
    ///
    /// [`BackplaneError::Unavailable`] when Redis cannot be reached.
    pub async fn room_presence(
        &self,
        room: &str,
    ) -> Result<Vec<serde_json::Value>, BackplaneError> {
        let node = self.inner.node.get();
        let mut values: Vec<serde_json::Value> = node
            .map(|node| node.members(room))
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(_, json)| serde_json::from_str(&json?).ok())
            .collect();
        let others: Vec<Vec<String>> = self.inner.others(room, "HVALS").await?;
        values.extend(
            others
                .into_iter()
                .flatten()
                .filter_map(|json| serde_json::from_str::<serde_json::Value>(&json).ok())
                .filter(|value| !value.is_null()),
        );
        Ok(values)
    }
}

fn unavailable(err: redis::RedisError) -> BackplaneError {
    BackplaneError::Unavailable(err.to_string())
}

impl Inner {
    fn channel(&self, scope: Scope<'_>) -> Vec<u8> {
        match scope {
            Scope::Room(room) => format!("{}:r:{}", self.prefix, escape(room)),
            Scope::Everyone => format!("{}:a", self.prefix),
            Scope::User(user) => format!("{}:u:{}", self.prefix, escape(user)),
        }
        .into_bytes()
    }

    /// Who a channel is for; `None` for a channel this backplane did not make.
    fn scope(&self, channel: &[u8]) -> Option<ChannelScope> {
        let channel = std::str::from_utf8(channel).ok()?;
        let rest = channel.strip_prefix(&self.prefix)?.strip_prefix(':')?;
        if rest == "a" {
            return Some(ChannelScope::Everyone);
        }
        if let Some(room) = rest.strip_prefix("r:") {
            return unescape(room).map(ChannelScope::Room);
        }
        unescape(rest.strip_prefix("u:")?).map(ChannelScope::User)
    }

    fn members_key(&self, room: &str, node: u64) -> String {
        format!("{}:m:{}:{node}", self.prefix, escape(room))
    }

    fn nodes_key(&self, room: &str) -> String {
        format!("{}:n:{}", self.prefix, escape(room))
    }

    /// `command` (`HLEN`, `HVALS`) on the member hash of every other node in `room`; nodes whose hash
    /// expired are dropped from the room's node set.
    async fn others<T: redis::FromRedisValue + Default>(
        &self,
        room: &str,
        command: &str,
    ) -> Result<Vec<T>, BackplaneError> {
        let mut conn = self.connection().await?;
        let nodes: Vec<u64> = redis::cmd("SMEMBERS")
            .arg(self.nodes_key(room))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let others: Vec<u64> = nodes.into_iter().filter(|n| *n != self.node_id).collect();
        if others.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for node in &others {
            pipe.cmd("EXISTS").arg(self.members_key(room, *node));
            pipe.cmd(command).arg(self.members_key(room, *node));
        }
        let replies: Vec<redis::Value> = pipe.query_async(&mut conn).await.map_err(unavailable)?;
        let mut results = Vec::with_capacity(others.len());
        for (node, pair) in others.iter().zip(replies.chunks(2)) {
            let exists = pair
                .first()
                .is_some_and(|v| matches!(v, redis::Value::Int(1)));
            if !exists {
                let _: Result<(), _> = redis::cmd("SREM")
                    .arg(self.nodes_key(room))
                    .arg(node)
                    .query_async(&mut conn)
                    .await;
                continue;
            }
            if let Some(value) = pair.get(1) {
                results.push(redis::from_redis_value_ref(value).unwrap_or_default());
            }
        }
        Ok(results)
    }

    async fn connection(&self) -> Result<ConnectionManager, BackplaneError> {
        self.connection
            .get_or_try_init(|| self.client.get_connection_manager())
            .await
            .cloned()
            .map_err(unavailable)
    }

    fn lose(&self, what: &str, err: &dyn fmt::Display) {
        let lost = self.lost.fetch_add(1, Ordering::Relaxed) + 1;
        metrics::counter!("verb_backplane_lost_total").increment(1);
        // One line per outage rather than one per message.
        if lost.is_power_of_two() {
            tracing::warn!(lost, error = %err, "Redis backplane: {what} dropped (at most once delivery)");
        }
    }

    fn enqueue(&self, command: Command) {
        let bytes = command.bytes();
        if bytes > 0 {
            let queued = self.queued_bytes.fetch_add(bytes, Ordering::AcqRel);
            if queued.saturating_add(bytes) > self.max_queued_bytes {
                self.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
                self.lose("publish", &"the queue to Redis holds max_queued_bytes");
                return;
            }
        }
        match self.commands.try_send(command) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(Command::Publish { .. }))
            | Err(mpsc::error::TrySendError::Closed(Command::Publish { .. })) => {
                self.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
                self.lose("publish", &"the queue to Redis is full");
            }
            Err(_) => self.resync.store(true, Ordering::Release),
        }
    }
}

impl Command {
    /// What a publish weighs in the queue's byte bound (0 for the small presence commands).
    fn bytes(&self) -> usize {
        match self {
            Command::Publish { channel, payload } => channel.len() + payload.len(),
            _ => 0,
        }
    }
}

/// A channel's scope, decoded from its escaped name.
#[derive(Debug, PartialEq, Eq)]
enum ChannelScope {
    Room(String),
    Everyone,
    User(String),
}

impl ChannelScope {
    fn as_scope(&self) -> Scope<'_> {
        match self {
            ChannelScope::Room(room) => Scope::Room(room),
            ChannelScope::Everyone => Scope::Everyone,
            ChannelScope::User(user) => Scope::User(user),
        }
    }
}

/// Whether `byte` is written as `%XX` in channel and key names: the field separator, the escape
/// itself, glob characters (`PSUBSCRIBE` patterns) and braces (Redis Cluster hash tags).
fn needs_escape(byte: u8) -> bool {
    matches!(
        byte,
        b'%' | b':' | b'*' | b'?' | b'[' | b']' | b'\\' | b'{' | b'}'
    ) || byte.is_ascii_control()
        || byte == b' '
}

fn escape(name: &str) -> Cow<'_, str> {
    if !name.bytes().any(needs_escape) {
        return Cow::Borrowed(name);
    }
    let mut out = String::with_capacity(name.len() + 8);
    for ch in name.chars() {
        if ch.is_ascii() && needs_escape(ch as u8) {
            out.push_str(&format!("%{:02X}", ch as u8));
        } else {
            out.push(ch);
        }
    }
    Cow::Owned(out)
}

/// The name `escape` made `escaped` from; `None` if it is not one.
fn unescape(escaped: &str) -> Option<String> {
    let bytes = escaped.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = escaped.get(i + 1..i + 3)?;
                let byte = u8::from_str_radix(hex, 16).ok()?;
                if !needs_escape(byte) {
                    return None;
                }
                out.push(byte);
                i += 3;
            }
            byte if needs_escape(byte) => return None,
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn encode(node_id: u64, message: &Message) -> Vec<u8> {
    let (kind, bytes): (u8, &[u8]) = match message {
        Message::Text(text) => (KIND_TEXT, text.as_bytes()),
        Message::Binary(bytes) => (KIND_BINARY, bytes),
    };
    let mut payload = Vec::with_capacity(9 + bytes.len());
    payload.push(kind);
    payload.extend_from_slice(&node_id.to_be_bytes());
    payload.extend_from_slice(bytes);
    payload
}

fn decode(payload: &[u8]) -> Option<(u64, Message)> {
    let (&kind, rest) = payload.split_first()?;
    let (node, body) = rest.split_first_chunk::<8>()?;
    let message = match kind {
        KIND_TEXT => Message::text(String::from_utf8(body.to_vec()).ok()?),
        KIND_BINARY => Message::binary(body.to_vec()),
        _ => return None,
    };
    Some((u64::from_be_bytes(*node), message))
}

/// Sends queued commands to Redis, in order; commands that fail are dropped and counted.
async fn writer(inner: Arc<Inner>, mut queue: mpsc::Receiver<Command>) {
    let mut stopped = inner.stopped.clone();
    loop {
        let command = tokio::select! {
            _ = stopped.changed() => return,
            command = queue.recv() => command,
        };
        let Some(command) = command else { return };
        inner
            .queued_bytes
            .fetch_sub(command.bytes(), Ordering::AcqRel);
        let Some(node) = inner.node.get().cloned() else {
            continue;
        };
        let mut conn = match inner.connection().await {
            Ok(conn) => conn,
            Err(err) => {
                if matches!(command, Command::Publish { .. }) {
                    inner.lose("publish", &err);
                } else {
                    inner.resync.store(true, Ordering::Release);
                }
                continue;
            }
        };
        let result = match command {
            Command::Publish { channel, payload } => {
                let sent: Result<(), _> = redis::cmd("PUBLISH")
                    .arg(channel)
                    .arg(payload)
                    .query_async(&mut conn)
                    .await;
                if let Err(err) = &sent {
                    inner.lose("publish", err);
                }
                continue;
            }
            Command::Joined {
                room,
                member,
                presence,
            } => {
                let key = inner.members_key(&room, inner.node_id);
                let mut pipe = redis::pipe();
                pipe.cmd("HSET")
                    .arg(&key)
                    .arg(member)
                    .arg(presence.as_deref().unwrap_or("null"))
                    .ignore();
                pipe.cmd("EXPIRE").arg(&key).arg(ALIVE_FOR_S).ignore();
                let nodes = inner.nodes_key(&room);
                pipe.cmd("SADD").arg(&nodes).arg(inner.node_id).ignore();
                pipe.cmd("EXPIRE").arg(&nodes).arg(ALIVE_FOR_S).ignore();
                pipe.query_async::<()>(&mut conn).await
            }
            Command::Left { room, member } => {
                let key = inner.members_key(&room, inner.node_id);
                let mut pipe = redis::pipe();
                if node.size(&room) == 0 {
                    // This node's last member left (and none joined since: a join queued after this
                    // command adds the node back): its keys for the room go now, not at expiry.
                    pipe.cmd("DEL").arg(&key).ignore();
                    pipe.cmd("SREM")
                        .arg(inner.nodes_key(&room))
                        .arg(inner.node_id)
                        .ignore();
                } else {
                    pipe.cmd("HDEL").arg(&key).arg(member).ignore();
                }
                pipe.query_async::<()>(&mut conn).await
            }
            Command::Heartbeat | Command::Resync => {
                let rewrite = matches!(command, Command::Resync)
                    || inner.resync.swap(false, Ordering::AcqRel);
                let mut pipe = redis::pipe();
                for (room, _) in node.rooms() {
                    let key = inner.members_key(&room, inner.node_id);
                    if rewrite {
                        pipe.cmd("DEL").arg(&key).ignore();
                        for (member, presence) in node.members(&room) {
                            pipe.cmd("HSET")
                                .arg(&key)
                                .arg(member)
                                .arg(presence.as_deref().unwrap_or("null"))
                                .ignore();
                        }
                    }
                    // Every beat: a reader may have dropped this node from the set in a race with a
                    // join here.
                    let nodes = inner.nodes_key(&room);
                    pipe.cmd("SADD").arg(&nodes).arg(inner.node_id).ignore();
                    pipe.cmd("EXPIRE").arg(&nodes).arg(ALIVE_FOR_S).ignore();
                    pipe.cmd("EXPIRE").arg(&key).arg(ALIVE_FOR_S).ignore();
                }
                pipe.query_async::<()>(&mut conn).await
            }
        };
        if let Err(err) = result {
            inner.resync.store(true, Ordering::Release);
            tracing::debug!(error = %err, "Redis backplane: presence update failed; the next heartbeat rewrites it");
        }
    }
}

/// Receives every node's publishes on one pattern subscription and delivers the others' locally;
/// reconnects with backoff when the link breaks.
async fn subscriber(inner: Arc<Inner>, node: Node) {
    let mut stopped = inner.stopped.clone();
    let pattern = format!("{}:*", inner.prefix);
    let mut backoff = Duration::from_millis(100);
    loop {
        let session = async {
            let mut pubsub = inner.client.get_async_pubsub().await?;
            pubsub.psubscribe(&pattern).await?;
            tracing::info!(node = inner.node_id, %pattern, "Redis backplane subscribed");
            Ok::<_, redis::RedisError>(pubsub)
        };
        let pubsub = tokio::select! {
            _ = stopped.changed() => return,
            session = session => session,
        };
        match pubsub {
            Ok(pubsub) => {
                backoff = Duration::from_millis(100);
                // Presence may have been lost with Redis: restore it now rather than at the next beat.
                inner.enqueue(Command::Resync);
                let (mut sink, mut messages) = pubsub.split();
                let mut keepalive = tokio::time::interval(inner.keepalive);
                keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                keepalive.tick().await;
                loop {
                    let message = tokio::select! {
                        _ = stopped.changed() => return,
                        message = messages.next() => message,
                        _ = keepalive.tick() => {
                            let pong = tokio::time::timeout(inner.keepalive, sink.ping::<redis::Value>()).await;
                            // Any answer proves the link (a subscribed RESP2 connection answers
                            // PING with an array, not a string).
                            if matches!(pong, Ok(Ok(_))) {
                                continue;
                            }
                            tracing::warn!(
                                node = inner.node_id,
                                "Redis backplane: the subscription connection stopped answering"
                            );
                            break;
                        }
                    };
                    let Some(message) = message else { break };
                    if !node.is_alive() {
                        return;
                    }
                    let channel: Vec<u8> = message.get_channel().unwrap_or_default();
                    let (Some(scope), Some((from, body))) =
                        (inner.scope(&channel), decode(message.get_payload_bytes()))
                    else {
                        tracing::debug!("Redis backplane: ignored a message it cannot read");
                        continue;
                    };
                    if from != inner.node_id {
                        node.deliver(scope.as_scope(), &body);
                    }
                }
                tracing::warn!(
                    node = inner.node_id,
                    "Redis backplane: subscription lost; reconnecting"
                );
            }
            Err(err) => {
                tracing::warn!(error = %err, retry_in = ?backoff, "Redis backplane: cannot subscribe");
            }
        }
        tokio::select! {
            _ = stopped.changed() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

async fn heartbeat(inner: Arc<Inner>) {
    let mut stopped = inner.stopped.clone();
    let mut tick = tokio::time::interval(HEARTBEAT);
    loop {
        tokio::select! {
            _ = stopped.changed() => return,
            _ = tick.tick() => inner.enqueue(Command::Heartbeat),
        }
    }
}

impl Backplane for RedisBackplane {
    fn start(&self, node: Node) {
        let inner = &self.inner;
        if inner.node.set(node.clone()).is_err() {
            tracing::error!(
                "a RedisBackplane was set on two hubs; give each hub its own backplane"
            );
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::error!("RedisBackplane must be set on a hub from inside a Tokio runtime");
            return;
        };
        let Some(queue) = inner.queue.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return;
        };
        let shared = Arc::clone(inner);
        runtime.spawn(writer(Arc::clone(&shared), queue));
        runtime.spawn(subscriber(Arc::clone(&shared), node));
        runtime.spawn(heartbeat(shared));
    }

    fn publish(&self, scope: Scope<'_>, message: &Message) {
        let inner = &self.inner;
        inner.enqueue(Command::Publish {
            channel: inner.channel(scope),
            payload: encode(inner.node_id, message),
        });
    }

    fn member_joined(&self, room: &str, member: u64, presence: Option<&str>) {
        self.inner.enqueue(Command::Joined {
            room: room.to_owned(),
            member,
            presence: presence.map(str::to_owned),
        });
    }

    fn member_left(&self, room: &str, member: u64) {
        self.inner.enqueue(Command::Left {
            room: room.to_owned(),
            member,
        });
    }
}

impl fmt::Debug for RedisBackplane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackplane")
            .field("prefix", &self.inner.prefix)
            .field("node_id", &self.inner.node_id)
            .field("lost", &self.lost())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_and_junk_is_refused() {
        for message in [Message::text("héllo"), Message::binary(vec![0u8, 255, 7])] {
            let (node, back) = decode(&encode(42, &message)).unwrap();
            assert_eq!((node, back), (42, message));
        }
        assert!(decode(b"").is_none());
        assert!(decode(&[KIND_TEXT, 0, 0]).is_none());
        assert!(decode(&[9, 0, 0, 0, 0, 0, 0, 0, 0]).is_none());
        let mut bad_utf8 = encode(1, &Message::text("x"));
        bad_utf8.push(0xff);
        assert!(decode(&bad_utf8).is_none());
    }

    #[test]
    fn channels_map_to_scopes() {
        let backplane = RedisBackplane::with_prefix("redis://127.0.0.1:1", "app").unwrap();
        let inner = &backplane.inner;
        for scope in [
            Scope::Room("a:b room"),
            Scope::Room("100%*?[x]{y}\\"),
            Scope::Room("é"),
            Scope::Everyone,
            Scope::User("42"),
        ] {
            let channel = inner.channel(scope);
            assert_eq!(
                inner.scope(&channel).as_ref().map(ChannelScope::as_scope),
                Some(scope)
            );
        }
        assert_eq!(inner.scope(b"other:r:x"), None);
        // Only escaped names decode.
        assert_eq!(inner.scope(b"app:r:a:b"), None);
        assert_eq!(inner.scope(b"app:r:%41"), None);
        assert_eq!(inner.scope(b"app:r:%3"), None);
        // A prefix that looks like another app's prefix plus a field cannot reach it: `verb:r`
        // escapes to `verb%3Ar`, outside `verb:*`.
        let nested = RedisBackplane::with_prefix("redis://127.0.0.1:1", "app:r").unwrap();
        let channel = nested.inner.channel(Scope::Everyone);
        assert_eq!(channel, b"app%3Ar:a");
        assert_eq!(inner.scope(&channel), None);
        assert_eq!(inner.members_key("a:1", 2), "app:m:a%3A1:2");
        assert!(matches!(
            RedisBackplane::new("not a url"),
            Err(BackplaneError::InvalidAddress(_))
        ));
    }
}
