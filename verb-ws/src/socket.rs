//! The connection handle users keep, and the queue it shares with the engine.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::SystemTime;

use atomic_waker::AtomicWaker;
use bytes::{Bytes, BytesMut};
use serde::Serialize;
use verb_core::{StopListener, StopSignal};

use crate::attach::{Attachment, Attachments};
use crate::message::{CloseCode, Message};
use crate::proto::deflate::{self, Compressor, Deflate};
use crate::proto::frame::{OP_BINARY, OP_PING, OP_TEXT, control_frame, header_len, put_header};
use crate::proto::outbox::{COPY_THRESHOLD, Outbox, QueuedBytes, push_plain};
use crate::stats::WsMetrics;

/// The state of a connection, as the browser API's `readyState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ReadyState {
    /// Open: messages flow both ways.
    Open,
    /// A close frame was sent or received; no more messages are sent.
    Closing,
    /// The connection is gone.
    Closed,
}

/// What became of a message handed to [`WebSocket::send`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SendStatus {
    /// Queued; the send queue is within the backpressure limit.
    Sent,
    /// Queued, but the send queue is now over the backpressure limit: slow down until `drain`.
    Backpressured,
    /// Not queued: the connection is closing or closed, or its queue was already at the limit.
    Dropped,
}

impl SendStatus {
    /// Whether the message was queued (`Sent` or `Backpressured`).
    pub fn is_queued(self) -> bool {
        !matches!(self, SendStatus::Dropped)
    }
}

const OPEN: u8 = 0;
const CLOSING: u8 = 1;
const CLOSED: u8 = 2;
pub(crate) const STATE_CLOSING: u8 = CLOSING;
pub(crate) const STATE_CLOSED: u8 = CLOSED;

/// Something for the engine to look at: queued frames, a close, a timer change.
pub(crate) const SIGNAL_WOKEN: u8 = 1;
/// The server began a graceful stop.
pub(crate) const SIGNAL_STOP: u8 = 2;
/// The server's graceful stop ran out of time.
pub(crate) const SIGNAL_FORCED: u8 = 4;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A frame built once, to send to many connections: server frames are unmasked, so the same bytes are
/// right for every receiver.
///
/// Receivers that negotiated permessage-deflate without server context takeover (the default) share
/// one compressed frame too: the first such receiver deflates the message, the others get the same
/// bytes. Cloning is cheap.
///
/// ```
/// use verb_ws::{Message, PreparedMessage};
///
/// let prepared = PreparedMessage::new(&Message::text("hello everyone"));
/// assert_eq!(prepared.len(), 2 + "hello everyone".len());
/// ```
#[derive(Clone)]
pub struct PreparedMessage {
    frame: Bytes,
    opcode: u8,
    payload: Bytes,
    /// Compressed frames by server window bits (9..=15), made on first need; `None` inside when
    /// deflate did not make the message smaller. The first receiver's compression level makes the
    /// frame: endpoints with different levels that share a room share it too.
    deflated: Arc<[OnceLock<Option<Bytes>>; 7]>,
}

impl PartialEq for PreparedMessage {
    fn eq(&self, other: &Self) -> bool {
        self.frame == other.frame
    }
}

impl Eq for PreparedMessage {}

impl PreparedMessage {
    /// Frames `message` once.
    pub fn new(message: &Message) -> Self {
        let (opcode, payload) = match message {
            Message::Text(text) => (OP_TEXT, text.as_bytes()),
            Message::Binary(bytes) => (OP_BINARY, bytes),
        };
        let mut frame = BytesMut::with_capacity(header_len(payload.len()) + payload.len());
        put_header(&mut frame, opcode, payload.len());
        frame.extend_from_slice(payload);
        Self {
            frame: frame.freeze(),
            opcode,
            payload: payload.clone(),
            deflated: Arc::new(Default::default()),
        }
    }

    /// The frame for a receiver that compresses without context takeover: deflated once, shared.
    fn deflated(&self, deflate: &Deflate) -> Option<Bytes> {
        let slot = usize::from(deflate.server_window_bits.saturating_sub(9)).min(6);
        self.deflated[slot]
            .get_or_init(|| deflate::compress_shared(deflate, self.opcode, &self.payload))
            .clone()
    }

    /// The frame's length on the wire.
    pub fn len(&self) -> usize {
        self.frame.len()
    }

    /// Whether the frame is empty (it never is: a frame has at least a two-byte header).
    pub fn is_empty(&self) -> bool {
        self.frame.is_empty()
    }
}

impl fmt::Debug for PreparedMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PreparedMessage")
            .field("len", &self.frame.len())
            .finish()
    }
}

/// Whether a payload of `len` bytes is worth compressing (never an empty one: zlib has nothing to
/// flush for it).
fn compresses(deflate: &Deflate, len: usize) -> bool {
    len >= deflate.threshold.max(1)
}

/// What the handshake settled: the subprotocol and the extension.
pub(crate) struct Negotiated {
    pub(crate) protocol: Option<Box<str>>,
    pub(crate) deflate: Option<Deflate>,
}

/// What the handle and the engine share.
pub(crate) struct Shared {
    pub(crate) id: u64,
    pub(crate) remote_addr: SocketAddr,
    pub(crate) protocol: Option<Box<str>>,
    pub(crate) state: AtomicU8,
    pub(crate) outbox: Mutex<Outbox>,
    pub(crate) buffered: QueuedBytes,
    /// The engine's task, woken by sends from other tasks, by the handle and by a server stop.
    pub(crate) waker: AtomicWaker,
    /// What the engine is woken for ([`SIGNAL_WOKEN`], [`SIGNAL_STOP`], [`SIGNAL_FORCED`]).
    pub(crate) signals: AtomicU8,
    /// Set while the engine runs callbacks: it flushes afterwards, so sends need not wake it.
    pub(crate) corked: AtomicBool,
    /// [`HELD_BACK`] (not admitted to broadcasts to everyone, [`WebSocket::set_admitted`]) and this
    /// connection's own message size limit below the endpoint's ([`LIMIT_MASK`]; 0: the endpoint's).
    /// One word with the other small fields, so idle connections pay nothing for either.
    pub(crate) gate: AtomicU32,
    pub(crate) backpressure_limit: usize,
    pub(crate) close_on_limit: bool,
    pub(crate) attachments: Attachments,
    pub(crate) metrics: Arc<WsMetrics>,
    /// permessage-deflate, when negotiated.
    pub(crate) deflate: Option<Deflate>,
    extensions: http::Extensions,
    data: Mutex<Option<HashMap<TypeId, DataSlot>>>,
}

impl StopListener for Shared {
    fn on_stop(&self, signal: StopSignal) {
        self.signal(match signal {
            StopSignal::Graceful => SIGNAL_STOP,
            _ => SIGNAL_FORCED,
        });
    }
}

/// When the credentials a connection was opened with stop being valid (a token's `exp` plus the
/// leeway): once that time passes, the connection is closed with 1008 (policy violation) and the
/// reason, unless [`WebSocket::set_expiry`] moved or removed the expiry first (a refreshed token).
///
/// Middleware that authenticates an upgrade puts one in the request's extensions and the connection
/// starts with it (verb-auth's `JwtAuth` does); in-band authentication sets it with
/// [`WebSocket::set_expiry`]. Independent of [`WebSocket::close_after`]: an app's own timer never
/// replaces it.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use verb_ws::{Expiry, WebSocket, Ws};
///
/// let ws = Ws::new().open(|ws: &WebSocket, _req| {
///     // A session of one hour from now.
///     ws.set_expiry(Some(Expiry::new(SystemTime::now() + Duration::from_secs(3600), "session over")));
/// });
/// # let _ = ws;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expiry {
    at: SystemTime,
    reason: Arc<str>,
}

impl Expiry {
    /// Closes at `at` with 1008 and `reason` (cut to 123 bytes on the wire).
    pub fn new(at: SystemTime, reason: &str) -> Self {
        Self {
            at,
            reason: Arc::from(reason),
        }
    }

    /// When the connection is closed.
    pub fn at(&self) -> SystemTime {
        self.at
    }

    /// The close frame's reason.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// The close timer for this expiry, on the runtime's clock.
    pub(crate) fn timer(&self) -> CloseTimer {
        let left = self
            .at
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        CloseTimer {
            at: tokio::time::Instant::now() + crate::config::clamp_timeout(left),
            last: None,
            code: CloseCode::POLICY_VIOLATION,
            reason: self.reason.as_ref().into(),
        }
    }
}

/// [`Shared::gate`]: the connection is held back from broadcasts to everyone.
pub(crate) const HELD_BACK: u32 = 1 << 31;
/// [`Shared::gate`]: the connection's own message size limit.
pub(crate) const LIMIT_MASK: u32 = HELD_BACK - 1;

/// What the handle asked of the engine's timers.
#[derive(Default)]
pub(crate) struct TimerRequests {
    /// A change to the close timer: `Some(None)` cancels it.
    pub(crate) close: Option<Option<CloseTimer>>,
    /// The connection's [`Expiry`] ([`WebSocket::set_expiry`]), kept for [`WebSocket::expiry`].
    pub(crate) expiry: Option<Expiry>,
    /// `expiry` changed since the engine last looked.
    pub(crate) expiry_changed: bool,
}

/// A close the engine performs at a deadline unless cancelled ([`WebSocket::close_after`]).
pub(crate) struct CloseTimer {
    pub(crate) at: tokio::time::Instant,
    pub(crate) last: Option<Message>,
    pub(crate) code: CloseCode,
    pub(crate) reason: Box<str>,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Outbox> {
        // A panic while holding this lock leaves only a queue of frames behind, which stays consistent;
        // carry on with it rather than poisoning every later send.
        self.outbox
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn set_state(&self, state: u8) {
        self.state.store(state, Ordering::Release);
    }

    /// Whether a send would be queued now (not closing, queue under the limit): compression is
    /// skipped for sends that would be dropped anyway.
    fn accepts(&self) -> bool {
        let buffered = self.buffered.get();
        self.state.load(Ordering::Acquire) == OPEN
            && (buffered < self.backpressure_limit || buffered == 0)
    }

    /// Wakes the engine unless it is running callbacks (it flushes after those anyway).
    pub(crate) fn wake(&self) {
        if !self.corked.load(Ordering::Acquire) {
            self.signal(SIGNAL_WOKEN);
        }
    }

    /// Wakes the engine with `signal`.
    ///
    /// Whatever the engine is to see must be published before this (the queue and the requests are
    /// changed under the outbox lock, which the engine takes after every wake-up): a signal found
    /// already pending is not repeated, so the engine's next look must find the change.
    pub(crate) fn signal(&self, signal: u8) {
        // Already signalled and not yet seen: the engine has a wake-up on its way, and it collects
        // the queue after it looks (a fan-out to many connections skips most wake-ups this way, and
        // with a plain load, most atomic writes too).
        if self.signals.load(Ordering::Acquire) & signal != 0 {
            return;
        }
        if self.signals.fetch_or(signal, Ordering::AcqRel) & signal == 0 {
            self.waker.wake();
        }
    }

    fn enqueue(&self, header_and_payload: impl FnOnce(&mut Outbox) -> usize) -> SendStatus {
        if self.state.load(Ordering::Acquire) != OPEN {
            return SendStatus::Dropped;
        }
        let mut outbox = self.lock();
        // Again under the lock: the engine changes the state before it queues a close frame or
        // clears the queue, so nothing queued here can follow either.
        if self.state.load(Ordering::Acquire) != OPEN {
            return SendStatus::Dropped;
        }
        let before = self.buffered.get();
        if before >= self.backpressure_limit && before > 0 {
            outbox.wants_drain = true;
            if self.close_on_limit && outbox.close.is_none() {
                outbox.close = Some((
                    CloseCode::POLICY_VIOLATION,
                    "backpressure limit exceeded".into(),
                ));
                drop(outbox);
                self.wake();
            }
            return SendStatus::Dropped;
        }
        let added = header_and_payload(&mut outbox);
        let after = self.buffered.queued(added);
        let status = if after > self.backpressure_limit {
            outbox.wants_drain = true;
            SendStatus::Backpressured
        } else {
            SendStatus::Sent
        };
        drop(outbox);
        self.wake();
        status
    }
}

/// A WebSocket connection: cheap to clone, and to keep in maps and sets.
///
/// Every clone refers to the same connection; equality and hashing go by [`id`](Self::id). Sending works
/// from any task, while the connection reads: messages wait in the connection's queue and go out in as
/// few writes as possible.
///
/// # Example
///
/// ```
/// use verb_ws::{Message, WebSocket, Ws};
///
/// let echo = Ws::new().message(|ws: &WebSocket, msg: Message| {
///     ws.send(msg);
/// });
/// # let _ = echo;
/// ```
#[derive(Clone)]
pub struct WebSocket {
    pub(crate) shared: Arc<Shared>,
}

impl WebSocket {
    pub(crate) fn new(
        remote_addr: SocketAddr,
        negotiated: Negotiated,
        backpressure_limit: usize,
        close_on_limit: bool,
        attachments: Attachments,
        metrics: Arc<WsMetrics>,
        extensions: http::Extensions,
    ) -> Self {
        let Negotiated { protocol, deflate } = negotiated;
        let mut outbox = Outbox::default();
        outbox.timers = extensions.get::<Expiry>().map(|expiry| {
            Box::new(TimerRequests {
                close: None,
                expiry: Some(expiry.clone()),
                expiry_changed: true,
            })
        });
        Self {
            shared: Arc::new(Shared {
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                remote_addr,
                protocol,
                state: AtomicU8::new(OPEN),
                outbox: Mutex::new(outbox),
                buffered: QueuedBytes::default(),
                waker: AtomicWaker::new(),
                signals: AtomicU8::new(0),
                corked: AtomicBool::new(false),
                gate: AtomicU32::new(0),
                backpressure_limit,
                close_on_limit,
                attachments,
                metrics,
                deflate,
                extensions,
                data: Mutex::new(None),
            }),
        }
    }

    /// A number unique to this connection within the process.
    pub fn id(&self) -> u64 {
        self.shared.id
    }

    /// The peer's address.
    pub fn remote_addr(&self) -> SocketAddr {
        self.shared.remote_addr
    }

    /// The subprotocol chosen in the handshake, if any.
    pub fn protocol(&self) -> Option<&str> {
        self.shared.protocol.as_deref()
    }

    /// The connection's state.
    pub fn ready_state(&self) -> ReadyState {
        match self.shared.state.load(Ordering::Acquire) {
            OPEN => ReadyState::Open,
            CLOSING => ReadyState::Closing,
            _ => ReadyState::Closed,
        }
    }

    /// Bytes waiting in the send queue.
    pub fn buffered_amount(&self) -> usize {
        self.shared.buffered.get()
    }

    /// Lowers the largest message this connection accepts from now on (`None`: back to the
    /// endpoint's [`max_payload_length`](crate::WsConfig::max_payload_length), which is also the
    /// ceiling). A message over it closes the connection with 1009 while it is read, before it is
    /// buffered whole: in-band authentication keeps unauthenticated connections to a few KiB.
    /// Limits above 2 GiB are cut to 2 GiB − 1 (still over any sane endpoint limit).
    pub fn set_max_message_size(&self, bytes: Option<usize>) {
        let bytes = bytes.map_or(0, |bytes| {
            u32::try_from(bytes)
                .unwrap_or(LIMIT_MASK)
                .clamp(1, LIMIT_MASK)
        });
        let _ = self
            .shared
            .gate
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |gate| {
                Some((gate & HELD_BACK) | bytes)
            });
    }

    /// Whether the connection takes part in broadcasts to every connection (verb-rooms'
    /// `rooms.everyone()`). Connections are admitted from the start, unless an attachment holds them
    /// back until they authenticate (in-band authentication does): a pending connection gets no
    /// broadcast meant for the authenticated ones. Sends addressed to it, rooms it joins and topics
    /// it subscribes to still reach it.
    pub fn set_admitted(&self, admitted: bool) {
        if admitted {
            self.shared.gate.fetch_and(!HELD_BACK, Ordering::AcqRel);
        } else {
            self.shared.gate.fetch_or(HELD_BACK, Ordering::AcqRel);
        }
    }

    /// See [`set_admitted`](Self::set_admitted); `true` unless held back.
    pub fn is_admitted(&self) -> bool {
        self.shared.gate.load(Ordering::Acquire) & HELD_BACK == 0
    }

    /// Sends a message (text or binary).
    pub fn send(&self, message: impl Into<Message>) -> SendStatus {
        match message.into() {
            Message::Text(text) => self.send_frame(OP_TEXT, text.into_bytes()),
            Message::Binary(bytes) => self.send_frame(OP_BINARY, bytes),
        }
    }

    /// Sends `text` as a text message.
    pub fn send_text(&self, text: impl Into<String>) -> SendStatus {
        self.send_frame(OP_TEXT, Bytes::from(text.into()))
    }

    /// Sends `value` serialized as JSON, as a text message.
    ///
    /// A value that cannot be serialized is logged and dropped.
    pub fn send_json<T: Serialize + ?Sized>(&self, value: &T) -> SendStatus {
        match serde_json::to_vec(value) {
            Ok(json) => self.send_frame(OP_TEXT, Bytes::from(json)),
            Err(err) => {
                tracing::error!(error = %err, "cannot serialize a JSON WebSocket message");
                SendStatus::Dropped
            }
        }
    }

    /// Whether sending `message` here compresses it with this connection's own compressor
    /// (permessage-deflate with server context takeover), work done for this receiver alone; other
    /// receivers share one frame. Fan-outs send to such receivers after releasing their locks.
    pub fn compresses_alone(&self, message: &PreparedMessage) -> bool {
        self.shared.deflate.is_some_and(|deflate| {
            deflate.server_takeover && compresses(&deflate, message.payload.len())
        })
    }

    /// Sends a frame prepared once for many receivers.
    pub fn send_prepared(&self, message: &PreparedMessage) -> SendStatus {
        let len = message.payload.len();
        let status = match self.shared.deflate {
            Some(deflate) if compresses(&deflate, len) && deflate.server_takeover => {
                self.send_dedicated(deflate, message.opcode, message.payload.clone())
            }
            Some(deflate) if compresses(&deflate, len) && self.shared.accepts() => {
                match message.deflated(&deflate) {
                    Some(frame) => self.enqueue_frame(&frame),
                    None => self.enqueue_frame(&message.frame),
                }
            }
            _ => self.enqueue_frame(&message.frame),
        };
        self.shared.metrics.sent(status, len);
        status
    }

    fn send_frame(&self, opcode: u8, payload: Bytes) -> SendStatus {
        let len = payload.len();
        let status = match self.shared.deflate {
            Some(deflate) if compresses(&deflate, len) && deflate.server_takeover => {
                self.send_dedicated(deflate, opcode, payload)
            }
            Some(deflate) if compresses(&deflate, len) && self.shared.accepts() => {
                match deflate::compress_shared(&deflate, opcode, &payload) {
                    Some(frame) => self.enqueue_frame(&frame),
                    None => self.enqueue_plain(opcode, payload),
                }
            }
            _ => self.enqueue_plain(opcode, payload),
        };
        self.shared.metrics.sent(status, len);
        status
    }

    /// Queues a finished frame: a small one is copied into the buffer of small frames (cheaper than
    /// sharing it, and it joins its neighbours in one write), a larger one is shared.
    fn enqueue_frame(&self, frame: &Bytes) -> SendStatus {
        self.shared.enqueue(move |outbox| {
            let len = frame.len();
            if len <= COPY_THRESHOLD {
                outbox.copy_small(frame);
            } else {
                outbox.push(frame.clone());
            }
            len
        })
    }

    fn enqueue_plain(&self, opcode: u8, payload: Bytes) -> SendStatus {
        self.shared
            .enqueue(move |outbox| push_plain(outbox, opcode, payload))
    }

    /// Compresses with the connection's own compressor, under the queue's lock so that the order of
    /// compression is the order on the wire (the peer's decompressor depends on it).
    fn send_dedicated(&self, deflate: Deflate, opcode: u8, payload: Bytes) -> SendStatus {
        self.shared.enqueue(move |outbox| {
            outbox.compressed = true;
            let compressor = outbox
                .compressor
                .get_or_insert_with(|| Compressor::new(&deflate));
            match deflate::compress_dedicated(compressor, opcode, &payload) {
                Some(frame) => {
                    let len = frame.len();
                    outbox.push(frame);
                    len
                }
                None => {
                    // A fresh compressor later is still valid for the peer: it only stops
                    // referring to earlier messages.
                    outbox.compressor = None;
                    push_plain(outbox, opcode, payload)
                }
            }
        })
    }

    /// Sends a ping with `payload` (at most 125 bytes; longer payloads are cut).
    pub fn ping(&self, payload: &[u8]) -> SendStatus {
        let payload = &payload[..payload.len().min(125)];
        self.enqueue_frame(&control_frame(OP_PING, payload))
    }

    /// Starts the closing handshake with `code` and `reason` (cut to 123 bytes). Messages queued
    /// before go out first; nothing is sent after. A code that may not be sent (below 1000, 1004–1006,
    /// 1015, 1016–2999, above 4999) is replaced by 1000, with a warning; so it is from
    /// [`close_after`](Self::close_after) and from attachments' verdicts.
    pub fn close(&self, code: impl Into<CloseCode>, reason: &str) {
        let code = code.into();
        let shared = &self.shared;
        if shared.state.load(Ordering::Acquire) != OPEN {
            return;
        }
        {
            let mut outbox = shared.lock();
            if outbox.close.is_none() {
                outbox.close = Some((code, reason.into()));
            }
            // Nothing sent after `close` may follow the close frame.
            shared.set_state(CLOSING);
        }
        shared.signal(SIGNAL_WOKEN);
    }

    /// Closes the connection with `code` and `reason` once `after` has passed, unless
    /// [`cancel_close_after`](Self::cancel_close_after) comes first; `last`, if any, is sent just
    /// before the close frame. Replaces an earlier timer. For deadlines such as "authenticate within
    /// 10 s" or "close after 5 minutes without a message" (set it again on each message).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use verb_ws::{CloseCode, Message, WebSocket, Ws};
    /// let ws = Ws::new()
    ///     .open(|ws: &WebSocket, _req| {
    ///         let last = Message::text(r#"{"type":"auth_timeout"}"#);
    ///         ws.close_after(Duration::from_secs(10), Some(last), CloseCode::POLICY_VIOLATION, "auth timeout");
    ///     })
    ///     .message(|ws: &WebSocket, _msg| ws.cancel_close_after());
    /// # let _ = ws;
    /// ```
    pub fn close_after(
        &self,
        after: std::time::Duration,
        last: Option<Message>,
        code: impl Into<CloseCode>,
        reason: &str,
    ) {
        let timer = CloseTimer {
            at: tokio::time::Instant::now() + crate::config::clamp_timeout(after),
            last,
            code: code.into(),
            reason: reason.into(),
        };
        self.shared
            .lock()
            .timers
            .get_or_insert_with(Box::default)
            .close = Some(Some(timer));
        self.shared.wake();
    }

    /// Cancels the timer set by [`close_after`](Self::close_after), if any.
    pub fn cancel_close_after(&self) {
        // The engine may hold the timer with nothing left here: the request must reach it.
        self.shared
            .lock()
            .timers
            .get_or_insert_with(Box::default)
            .close = Some(None);
        self.shared.wake();
    }

    /// Replaces the connection's [`Expiry`] (`None` removes it): authentication that refreshes a
    /// token moves it to the new token's expiry. The connection started with the one its upgrade
    /// request carried, if any.
    pub fn set_expiry(&self, expiry: Option<Expiry>) {
        {
            let mut outbox = self.shared.lock();
            if expiry.is_none() && outbox.timers.is_none() {
                return;
            }
            let timers = outbox.timers.get_or_insert_with(Box::default);
            timers.expiry = expiry;
            timers.expiry_changed = true;
        }
        self.shared.wake();
    }

    /// The connection's [`Expiry`], if it has one.
    pub fn expiry(&self) -> Option<Expiry> {
        self.shared.lock().timers.as_ref()?.expiry.clone()
    }

    /// Drops the connection at once, without a closing handshake.
    pub fn terminate(&self) {
        self.shared.lock().terminate = true;
        self.shared.signal(SIGNAL_WOKEN);
    }

    /// A value that middleware attached to the upgrade request (such as authenticated claims), kept
    /// for the connection's whole life.
    pub fn extension<T: Send + Sync + 'static>(&self) -> Option<&T> {
        self.shared.extensions.get::<T>()
    }

    /// The endpoint's [`Attachment`] of type `T`, if it has one (see [`Ws::attach`](crate::Ws::attach)).
    pub fn attachment<T: Attachment>(&self) -> Option<&T> {
        self.shared.attachments.get::<T>()
    }

    /// Stores a per-connection value of type `T` (replacing an earlier one), as the docs do with
    /// `ws.data = ...`.
    ///
    /// ```
    /// # use verb_ws::{WebSocket, Ws};
    /// #[derive(Clone)]
    /// struct Room(String);
    ///
    /// let handler = Ws::new()
    ///     .open(|ws: &WebSocket, req: &verb_core::Request| {
    ///         ws.set_data(Room(req.param("room").unwrap_or("lobby").to_owned()));
    ///     })
    ///     .message(|ws: &WebSocket, _msg| {
    ///         let room = ws.data::<Room>().map(|r| r.0).unwrap_or_default();
    ///         ws.send_text(format!("you are in {room}"));
    ///     });
    /// # let _ = handler;
    /// ```
    pub fn set_data<T: Any + Send + Sync>(&self, value: T) {
        let slot: DataSlot = Arc::new(Mutex::new(Some(Box::new(value))));
        let mut data = self.shared.data.lock().unwrap_or_else(|p| p.into_inner());
        data.get_or_insert_with(HashMap::new)
            .insert(TypeId::of::<T>(), slot);
    }

    /// A clone of the per-connection value of type `T`, if one was stored (`None` also inside a
    /// [`with_data`](Self::with_data) of the same `T` up the stack: the value is being changed).
    pub fn data<T: Any + Clone>(&self) -> Option<T> {
        let slot = self.slot::<T>()?;
        with_slot(&slot, |value| value.as_ref()?.downcast_ref::<T>().cloned()).flatten()
    }

    /// Whether a per-connection value of type `T` is stored (cheaper than [`data`](Self::data): no
    /// clone, and the value's own lock is not taken).
    pub fn has_data<T: Any>(&self) -> bool {
        let data = self.shared.data.lock().unwrap_or_else(|p| p.into_inner());
        data.as_ref()
            .is_some_and(|map| map.contains_key(&TypeId::of::<T>()))
    }

    /// Runs `f` on the per-connection value of type `T`, if one was stored.
    ///
    /// Only that value is locked while `f` runs, never the connection's other data: `f` may read and
    /// store other types (`ws.data::<U>()`). Inside `f` the same `T` reads as absent (a nested
    /// `with_data::<T>` gets `None` rather than a deadlock); another task waits for `f` to finish.
    pub fn with_data<T: Any, R>(&self, f: impl FnOnce(&mut T) -> R) -> Option<R> {
        let slot = self.slot::<T>()?;
        with_slot(&slot, |value| value.as_mut()?.downcast_mut::<T>().map(f)).flatten()
    }

    /// Removes and returns the per-connection value of type `T`.
    pub fn take_data<T: Any>(&self) -> Option<T> {
        let slot = self.slot::<T>()?;
        let value = with_slot(&slot, Option::take).flatten()?;
        let mut data = self.shared.data.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(map) = data.as_mut() {
            // Unless a new value was stored meanwhile.
            if map
                .get(&TypeId::of::<T>())
                .is_some_and(|current| Arc::ptr_eq(current, &slot))
            {
                map.remove(&TypeId::of::<T>());
            }
        }
        drop(data);
        value.downcast::<T>().ok().map(|boxed| *boxed)
    }

    /// The slot of type `T`, taken from the map under its lock, which is then released.
    fn slot<T: Any>(&self) -> Option<DataSlot> {
        let data = self.shared.data.lock().unwrap_or_else(|p| p.into_inner());
        data.as_ref()?.get(&TypeId::of::<T>()).cloned()
    }
}

/// One per-connection value, locked on its own while a callback works on it.
type DataSlot = Arc<Mutex<Option<Box<dyn Any + Send + Sync>>>>;

thread_local! {
    /// The data slots this thread holds (inside a `with_data`), so a nested access to the same one
    /// reads as absent instead of deadlocking.
    static HELD_SLOTS: std::cell::RefCell<Vec<usize>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` on the slot's value under the slot's lock; `None` if this thread already holds it.
fn with_slot<R>(
    slot: &DataSlot,
    f: impl FnOnce(&mut Option<Box<dyn Any + Send + Sync>>) -> R,
) -> Option<R> {
    struct Held(usize);
    impl Drop for Held {
        fn drop(&mut self) {
            HELD_SLOTS.with(|held| {
                let mut held = held.borrow_mut();
                if let Some(at) = held.iter().rposition(|&key| key == self.0) {
                    held.swap_remove(at);
                }
            });
        }
    }
    let key = Arc::as_ptr(slot).cast::<()>() as usize;
    if HELD_SLOTS.with(|held| held.borrow().contains(&key)) {
        return None;
    }
    let mut value = slot.lock().unwrap_or_else(|p| p.into_inner());
    HELD_SLOTS.with(|held| held.borrow_mut().push(key));
    let _held = Held(key);
    Some(f(&mut value))
}

impl PartialEq for WebSocket {
    fn eq(&self, other: &Self) -> bool {
        self.shared.id == other.shared.id
    }
}

impl Eq for WebSocket {}

impl Hash for WebSocket {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.shared.id.hash(state);
    }
}

impl fmt::Debug for WebSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSocket")
            .field("id", &self.shared.id)
            .field("remote_addr", &self.shared.remote_addr)
            .field("state", &self.ready_state())
            .finish_non_exhaustive()
    }
}
