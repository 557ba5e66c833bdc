//! The per-connection engine: one task per WebSocket that reads, dispatches and writes.
//!
//! Its interface is [`run`]; everything else is private so it can be tuned freely. The design:
//! - An idle connection holds no read buffer: the task waits for readiness, then reads into a buffer
//!   that is freed again once every complete frame in it has been handled.
//! - Every complete frame of one read is handled before anything is written; what the callbacks sent
//!   meanwhile goes out in one vectored write ("corking"). Sends from other tasks wake the task.
//! - Outgoing frames wait in the connection's queue: small ones copied into one buffer, large ones
//!   as shared `Bytes`, so one frame built for many connections is never built again.
//! - The task polls its sources itself (socket readiness, the handle's waker, one timer), so an
//!   idle connection's task holds the engine and a timer, and no future per thing it waits for.

use std::collections::VecDeque;
use std::future::Future;
use std::io::{self, IoSlice};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::time::{Instant, Sleep};
use verb_core::{Lifecycle, OnUpgrade, Request, StopListener, StopRegistration, Upgraded};

use crate::attach::{Attachment, Verdict};
use crate::config::WsConfig;
use crate::error::WsError;
use crate::handler::{ConnectionSlot, WebSocketHandler};
use crate::message::{CloseCode, Message, Utf8Bytes};
use crate::proto::deflate::Inflater;
use crate::proto::frame::{
    Header, OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_PONG, OP_TEXT, close_frame,
    control_frame, unmask,
};
use crate::socket::{
    CloseTimer, Expiry, LIMIT_MASK, ReadyState, SIGNAL_FORCED, SIGNAL_STOP, SIGNAL_WOKEN,
    STATE_CLOSED, STATE_CLOSING, WebSocket,
};

/// Smallest free space a read is offered.
const READ_CHUNK: usize = 4096;
/// Largest free space a read is offered (unless a frame being read needs more).
const MAX_READ: usize = 64 * 1024;
/// A connection with its own compressor (server context takeover) frees it after sending nothing for
/// this long (or half its idle timeout, if shorter).
const COMPRESSOR_IDLE: Duration = Duration::from_secs(30);
/// Most input discarded when a connection ends after the closing handshake.
const DISCARD_LIMIT: usize = 1024 * 1024;
/// The send queue size under which reading never pauses, whatever the backpressure limit.
const MIN_READ_PAUSE: usize = 16 * 1024;
/// Most buffers handed to one vectored write.
const MAX_IOVECS: usize = 64;
/// How long a failing connection lingers to let its close frame reach the peer.
const LINGER: Duration = Duration::from_secs(1);

/// Everything a connection starts with, before the server hands over the socket. Boxed, so the connection's
/// task keeps only a pointer to it while it waits, and frees it (the upgrade request included) once
/// `open` has run.
pub(crate) struct Start {
    pub(crate) on_upgrade: OnUpgrade,
    /// The upgrade request, given to `open`.
    pub(crate) req: Request,
    pub(crate) ws: WebSocket,
    pub(crate) handler: Arc<dyn WebSocketHandler>,
    pub(crate) config: Arc<WsConfig>,
    pub(crate) lifecycle: Lifecycle,
    /// Accepted over capacity: send this, close with 1013, and keep the app out of it.
    pub(crate) over_capacity: Option<String>,
    pub(crate) slot: Option<ConnectionSlot>,
}

impl Start {
    /// Moves the value out and frees the box now, not when the variable would go out of scope.
    fn unbox(start: Box<Start>) -> Start {
        *start
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Messages flow.
    Open,
    /// We sent a close frame and wait for the peer's.
    Closing { deadline: Instant },
    /// The peer failed: our close frame goes out, then we read and discard until EOF or the deadline.
    Failing { deadline: Instant },
    /// Flush what is queued, then close the socket; a peer that does not read it by the deadline is
    /// dropped.
    Done { deadline: Instant },
}

struct Partial {
    opcode: u8,
    data: BytesMut,
    /// The message is compressed (RSV1 on its first frame): `data` is inflated once it is whole.
    compressed: bool,
    /// Bytes of the message received on the wire so far.
    wire: usize,
}

/// The engine's close timers.
#[derive(Default)]
struct Timers {
    /// The application's `close_after` timer.
    close: Option<CloseTimer>,
    /// The credentials' expiry.
    expiry: Option<CloseTimer>,
}

struct Engine {
    stream: Upgraded,
    ws: WebSocket,
    handler: Arc<dyn WebSocketHandler>,
    config: Arc<WsConfig>,
    rbuf: BytesMut,
    /// How much free space the next read is offered (see `read`).
    read_size: u32,
    /// The largest the read buffer has been since it was last freed: payloads much smaller are
    /// copied out of it rather than sharing it.
    buf_size: usize,
    /// A fragmented message in progress (boxed: most connections never have one).
    partial: Option<Box<Partial>>,
    writing: VecDeque<Bytes>,
    phase: Phase,
    last_read: Instant,
    ping_sent: bool,
    /// The close code and reason the `close` callback gets.
    outcome: Option<(CloseCode, String)>,
    /// Callbacks stay silent (a connection accepted over capacity).
    silent: bool,
    write_shut: bool,
    /// Past the closing deadline: drop the connection, written out or not.
    abandoned: bool,
    /// The application's `close_after` timer and the credentials' expiry ([`crate::Expiry`]);
    /// boxed, and only while there is one.
    timers: Option<Box<Timers>>,
    /// permessage-deflate's inbound side, when negotiated.
    inflater: Option<Box<Inflater>>,
    /// With server context takeover: when the connection's compressor is given back, unless more is
    /// sent before then.
    compressor_expiry: Option<Instant>,
    /// Keeps the connection told of a server stop.
    _stop: StopRegistration,
    /// Keeps the connection counted against the endpoint's maximum.
    _slot: Option<ConnectionSlot>,
}

enum Event {
    Readable(io::Result<()>),
    Writable,
    Woken,
    Timer,
    Shutdown,
    Forced,
}

/// Waits for the server to hand over the upgraded socket, then runs the connection to its end.
///
/// Two steps, so that the task keeps room only for what the connection needs while it lives: the
/// upgrade request and the start-up state are gone once `open` has run.
pub(crate) async fn run(start: Box<Start>) {
    // The engine is moved into `drive` within the match, so the task keeps no second copy of it.
    let driving = match connect(start).await {
        Some(engine) => drive(engine),
        None => return,
    };
    driving.await;
}

/// Takes over the upgraded socket and runs `open`; `None` when the upgrade did not complete.
async fn connect(mut start: Box<Start>) -> Option<Engine> {
    let mut stream = match (&mut start.on_upgrade).await {
        Ok(upgraded) => upgraded,
        Err(err) => {
            tracing::debug!(error = %err, "WebSocket upgrade did not complete");
            return None;
        }
    };
    // Out of the box (freeing it) and into the parts this task keeps.
    let Start {
        on_upgrade,
        req,
        ws,
        handler,
        config,
        lifecycle,
        over_capacity,
        slot,
    } = Start::unbox(start);
    drop(on_upgrade);
    // The server's stop reaches this connection through its shared state, which wakes the task: no
    // future per connection waits for it.
    let listener: Weak<dyn StopListener> = Arc::downgrade(&ws.shared) as _;
    let stop = lifecycle.register(listener);
    let mut engine = Engine {
        rbuf: BytesMut::from(&stream.take_read_buf()[..]),
        stream,
        ws,
        handler,
        config,
        read_size: READ_CHUNK as u32,
        buf_size: 0,
        partial: None,
        writing: VecDeque::new(),
        phase: Phase::Open,
        last_read: Instant::now(),
        ping_sent: false,
        outcome: None,
        silent: over_capacity.is_some(),
        write_shut: false,
        abandoned: false,
        timers: None,
        inflater: None,
        compressor_expiry: None,
        _stop: stop,
        _slot: slot,
    };
    engine.inflater = engine
        .ws
        .shared
        .deflate
        .as_ref()
        .map(|deflate| Box::new(Inflater::new(deflate)));
    engine.ws.shared.metrics.open.increment(1.0);

    if let Some(message) = over_capacity {
        engine.push(Message::text(message));
        engine.start_close(CloseCode::TRY_AGAIN_LATER, "server at capacity");
    } else {
        engine.cork(|engine| {
            engine.attachments(|a, ws| a.opened(ws));
            engine.callback(|h, ws| h.open(ws, &req));
        });
    }
    if !engine.rbuf.is_empty() {
        engine.process_input();
    }
    Some(engine)
}

/// Runs an open connection until it ends, then runs `close`.
///
/// Not an `async fn`: one would copy its argument into a second local, and the task would keep room
/// for both. The block uses the captured engine in place.
#[allow(
    clippy::manual_async_fn,
    reason = "an async fn would hold the engine twice"
)]
fn drive(mut engine: Engine) -> impl Future<Output = ()> {
    async move {
        // One timer, reset to each new deadline; polled only while there is one.
        let sleep = tokio::time::sleep_until(Instant::now());
        tokio::pin!(sleep);

        loop {
            if engine.collect() {
                break;
            }
            if let Err(err) = engine.flush() {
                engine.io_error(err);
                break;
            }
            engine.maybe_drain();
            let written_out =
                engine.abandoned || (engine.writing.is_empty() && !engine.stream.wants_flush());
            match engine.phase {
                Phase::Done { .. } if written_out => {
                    // Input the peer sent after its close frame would turn our close into a reset,
                    // which can destroy the close frame before the peer reads it: discard it first.
                    engine.discard_pending_input();
                    break;
                }
                Phase::Failing { .. } if written_out && !engine.write_shut => {
                    // Our close frame is out: send FIN so the peer sees the end, and keep reading until it
                    // closes too, so unread input does not turn our close into a reset.
                    engine.write_shut = true;
                    // Bounded: over TLS the close_notify may not fit into a peer's full window. Boxed:
                    // the task would otherwise keep room for this rare wait all its life.
                    let shutdown = Box::pin(tokio::time::timeout(LINGER, engine.stream.shutdown()));
                    let _ = shutdown.await;
                }
                _ => {}
            }

            let wait = Wait {
                read: !engine.read_paused(),
                write: !engine.writing.is_empty() || engine.stream.wants_flush(),
                deadline: engine.next_deadline(),
                timer_first: engine.phase != Phase::Open || engine.timers.is_some(),
            };
            let event =
                std::future::poll_fn(|cx| engine.poll_event(cx, wait, sleep.as_mut())).await;
            match event {
                Event::Forced => break,
                Event::Shutdown => {
                    engine.start_close(CloseCode::GOING_AWAY, "server shutting down")
                }
                Event::Readable(Ok(())) => match engine.read() {
                    Ok(true) => engine.process_input(),
                    Ok(false) => {
                        engine.peer_gone();
                        break;
                    }
                    Err(err) => {
                        engine.io_error(err);
                        break;
                    }
                },
                Event::Readable(Err(err)) => {
                    engine.io_error(err);
                    break;
                }
                Event::Writable | Event::Woken => {}
                Event::Timer => engine.on_timer(),
            }
        }
        engine.finish();
    }
}

/// Polls the connection's timer, set to `deadline`; `true` once it has passed.
fn poll_timer(cx: &mut Context<'_>, deadline: Option<Instant>, mut sleep: Pin<&mut Sleep>) -> bool {
    let Some(deadline) = deadline else {
        return false;
    };
    if sleep.deadline() != deadline {
        sleep.as_mut().reset(deadline);
    }
    sleep.poll(cx).is_ready()
}

/// What the engine waits for between two rounds of work.
#[derive(Clone, Copy)]
struct Wait {
    read: bool,
    write: bool,
    deadline: Option<Instant>,
    /// The deadline is one a busy peer must not put off (closing, `close_after`): the timer is
    /// looked at before the socket. Otherwise the socket comes first, so pending input counts as
    /// life before the idle timer judges.
    timer_first: bool,
}

impl Engine {
    /// The next thing to act on, in order of precedence: a server stop, the socket, the handle, the
    /// timer. Every source keeps its waker in place (the socket's registration, the shared state's
    /// waker, the timer), so an idle connection's task holds no future but the timer.
    fn poll_event(
        &mut self,
        cx: &mut Context<'_>,
        wait: Wait,
        mut sleep: Pin<&mut Sleep>,
    ) -> Poll<Event> {
        let shared = &self.ws.shared;
        // Register before looking, so a signal sent in between still wakes the task.
        shared.waker.register(cx.waker());
        let signals = shared.signals.swap(0, Ordering::AcqRel);
        if signals & SIGNAL_FORCED != 0 {
            return Poll::Ready(Event::Forced);
        }
        if signals & SIGNAL_STOP != 0 {
            // A wake-up that came with it is not lost: every round collects the queue first.
            return Poll::Ready(Event::Shutdown);
        }
        if wait.timer_first && poll_timer(cx, wait.deadline, sleep.as_mut()) {
            return Poll::Ready(Event::Timer);
        }
        if wait.read {
            if let Poll::Ready(ready) = self.stream.poll_read_ready(cx) {
                // Anything else signalled is seen on the next round, which collects first.
                return Poll::Ready(Event::Readable(ready));
            }
        }
        if wait.write {
            if let Poll::Ready(ready) = self.stream.poll_write_ready(cx) {
                return Poll::Ready(match ready {
                    Ok(()) => Event::Writable,
                    Err(err) => Event::Readable(Err(err)),
                });
            }
        }
        if signals & SIGNAL_WOKEN != 0 {
            return Poll::Ready(Event::Woken);
        }
        if !wait.timer_first && poll_timer(cx, wait.deadline, sleep) {
            return Poll::Ready(Event::Timer);
        }
        Poll::Pending
    }

    /// Runs `f` with sends corked: they only queue, and the engine flushes once afterwards.
    fn cork(&mut self, f: impl FnOnce(&mut Self)) {
        self.ws.shared.corked.store(true, Ordering::Release);
        f(self);
        self.ws.shared.corked.store(false, Ordering::Release);
    }

    /// Runs a callback, turning a panic into a logged 1011 close instead of a lost connection.
    fn callback(&mut self, f: impl FnOnce(&dyn WebSocketHandler, &WebSocket)) {
        if self.silent {
            return;
        }
        let handler = &*self.handler;
        let ws = &self.ws;
        if std::panic::catch_unwind(AssertUnwindSafe(|| f(handler, ws))).is_err() {
            tracing::error!(
                id = ws.id(),
                "a WebSocket callback panicked; closing with 1011"
            );
            self.start_close(CloseCode::INTERNAL_ERROR, "internal error");
        }
    }

    /// Runs a hook of every attachment, in order. A panicking hook is logged and skipped: the
    /// others (and the app's callbacks) still run.
    fn attachments(&self, f: impl Fn(&dyn Attachment, &WebSocket)) {
        if self.silent {
            return;
        }
        let ws = &self.ws;
        for attachment in ws.shared.attachments.iter() {
            if std::panic::catch_unwind(AssertUnwindSafe(|| f(&**attachment, ws))).is_err() {
                tracing::error!(id = ws.id(), "a WebSocket attachment hook panicked");
            }
        }
    }

    /// Queues a data message from the engine itself.
    fn push(&mut self, message: Message) {
        let _ = self.ws.send(message);
    }

    /// Queues an engine-made control frame ahead of nothing: it goes after what is already queued.
    fn push_control(&mut self, frame: Bytes) {
        self.ws.shared.buffered.queued(frame.len());
        // Keep order with frames the callbacks queued before this one.
        self.ws.shared.lock().take_frames(&mut self.writing);
        self.writing.push_back(frame);
    }

    /// Moves queued frames to the write list and applies requests from the handle. Returns `true` when
    /// the connection is to be dropped at once.
    fn collect(&mut self) -> bool {
        let (terminate, close, compressed) = {
            let mut outbox = self.ws.shared.lock();
            outbox.take_frames(&mut self.writing);
            if let Some(requests) = outbox.timers.as_mut() {
                if let Some(change) = requests.close.take() {
                    self.timers.get_or_insert_with(Box::default).close = change;
                }
                if std::mem::take(&mut requests.expiry_changed) {
                    self.timers.get_or_insert_with(Box::default).expiry =
                        requests.expiry.as_ref().map(Expiry::timer);
                }
                if requests.expiry.is_none() {
                    outbox.timers = None;
                }
            }
            if self
                .timers
                .as_ref()
                .is_some_and(|t| t.close.is_none() && t.expiry.is_none())
            {
                self.timers = None;
            }
            let compressed = std::mem::take(&mut outbox.compressed);
            (outbox.terminate, outbox.close.take(), compressed)
        };
        if compressed {
            let idle = self
                .config
                .idle_timeout
                .map_or(COMPRESSOR_IDLE, |idle| (idle / 2).min(COMPRESSOR_IDLE));
            self.compressor_expiry = Some(Instant::now() + idle);
        }
        if terminate {
            self.outcome
                .get_or_insert((CloseCode::ABNORMAL, String::new()));
            return true;
        }
        if let Some((code, reason)) = close {
            self.start_close(code, &reason);
        }
        false
    }

    /// Writes as much as the socket takes without waiting.
    fn flush(&mut self) -> io::Result<()> {
        // While reading is paused, the peer's reading of our backlog is what shows it is alive.
        let paused = self.read_paused();
        if self.stream.wants_flush() {
            self.stream.try_flush()?;
        }
        while !self.writing.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let mut count = 0;
            for (slot, frame) in slices.iter_mut().zip(self.writing.iter()) {
                *slot = IoSlice::new(frame);
                count += 1;
            }
            let written = match self.stream.try_write_vectored(&slices[..count]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => written,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(err) => return Err(err),
            };
            self.ws.shared.buffered.written(written);
            if paused {
                self.last_read = Instant::now();
                self.ping_sent = false;
            }
            let mut left = written;
            while left > 0 {
                let Some(front) = self.writing.front_mut() else {
                    break;
                };
                if front.len() <= left {
                    left -= front.len();
                    self.writing.pop_front();
                } else {
                    front.advance(left);
                    left = 0;
                }
            }
        }
        Ok(())
    }

    /// Fires `drain` once the queue is back under the limit after a send went over it.
    fn maybe_drain(&mut self) {
        let shared = &self.ws.shared;
        if shared.buffered.get() >= shared.backpressure_limit.max(1) {
            return;
        }
        let wanted = std::mem::take(&mut shared.lock().wants_drain);
        if wanted && self.phase == Phase::Open {
            self.cork(|engine| engine.callback(|h, ws| h.drain(ws)));
            // What `drain` sent was queued corked, without a wake-up: look again before waiting.
            self.ws.shared.signal(SIGNAL_WOKEN);
        }
    }

    /// Whether reading waits for the peer to read first: while the send queue is over the backpressure
    /// limit, the peer's input (and the pongs or echoes it would cause) stays in its own socket
    /// buffers, so a peer that floods without reading costs at most the limit. The idle timeout still
    /// runs: a peer that never reads is dropped by it.
    fn read_paused(&self) -> bool {
        let limit = self.ws.shared.backpressure_limit.max(MIN_READ_PAUSE);
        self.ws.shared.buffered.get() >= limit
    }

    /// Reads and drops what the socket already holds (at most `DISCARD_LIMIT` bytes), without waiting.
    fn discard_pending_input(&mut self) {
        let mut discarded = 0;
        while discarded < DISCARD_LIMIT {
            self.rbuf.clear();
            self.rbuf.reserve(READ_CHUNK);
            match self.stream.try_read_buf(&mut self.rbuf) {
                Ok(0) | Err(_) => break,
                Ok(read) => discarded += read,
            }
        }
        self.rbuf = BytesMut::new();
    }

    /// Reads what the socket has. `Ok(false)` means the peer closed the TCP connection.
    ///
    /// The read size adapts: a read that fills all it was offered doubles the next one (up to
    /// `MAX_READ`), so a peer sending large messages is read in a few large reads rather than many
    /// small ones; a read that takes under a quarter halves it again (down to `READ_CHUNK`), so peers
    /// sending small messages keep small buffers.
    fn read(&mut self) -> io::Result<bool> {
        let want = self.read_size as usize;
        if self.rbuf.capacity() - self.rbuf.len() < want {
            self.rbuf.reserve(want);
            self.buf_size = self.buf_size.max(self.rbuf.capacity());
        }
        let offered = self.rbuf.capacity() - self.rbuf.len();
        match self.stream.try_read_buf(&mut self.rbuf) {
            Ok(0) => Ok(false),
            Ok(read) => {
                if read == offered {
                    self.read_size = (self.read_size * 2).min(MAX_READ as u32);
                } else if read < want / 4 {
                    self.read_size = (self.read_size / 2).max(READ_CHUNK as u32);
                }
                self.last_read = Instant::now();
                self.ping_sent = false;
                Ok(true)
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => Ok(true),
            Err(err) => Err(err),
        }
    }

    /// Handles every complete frame in the read buffer, corked.
    fn process_input(&mut self) {
        if let Phase::Failing { .. } = self.phase {
            // Discard what a failed peer sends while our close frame goes out.
            self.rbuf.clear();
        } else {
            self.ws.shared.corked.store(true, Ordering::Release);
            if let Err(err) = self.frames() {
                self.fail(err);
            }
            self.ws.shared.corked.store(false, Ordering::Release);
        }
        if self.rbuf.is_empty() {
            // Idle connections keep no buffer.
            self.rbuf = BytesMut::new();
            self.buf_size = 0;
        }
    }

    fn frames(&mut self) -> Result<(), WsError> {
        loop {
            if let Phase::Done { .. } = self.phase {
                self.rbuf.clear();
                return Ok(());
            }
            let Some((header, header_len)) = Header::parse(&self.rbuf) else {
                return Ok(());
            };
            let opcode = header.opcode;
            let len = header.len;
            self.check_header(&header)?;
            // `check_header` bounded `len` by the payload limit. Room grows with what arrives (at most
            // `MAX_READ` ahead), not with what a header announces: a peer that announces large frames
            // and sends nothing costs nothing.
            let len = usize::try_from(len).unwrap_or(usize::MAX);
            let needed = header_len.saturating_add(len);
            if self.rbuf.len() < needed {
                self.rbuf.reserve((needed - self.rbuf.len()).min(MAX_READ));
                self.buf_size = self.buf_size.max(self.rbuf.capacity());
                return Ok(());
            }
            self.rbuf.advance(header_len);
            // A payload shares the read buffer's allocation, which stays alive as long as the
            // application keeps the message. Buffers are 4 KiB for peers sending small messages;
            // from a larger buffer, a payload under a sixteenth of it is copied out, so a small
            // message kept for long never holds a large buffer.
            let mut payload =
                if self.buf_size > READ_CHUNK && len.saturating_mul(16) < self.buf_size {
                    let payload = BytesMut::from(&self.rbuf[..len]);
                    self.rbuf.advance(len);
                    payload
                } else {
                    self.rbuf.split_to(len)
                };
            if let Some(mask) = header.mask {
                unmask(&mut payload, mask);
            }
            self.frame(opcode, header.is_final, header.rsv1, payload)?;
        }
    }

    fn check_header(&self, header: &Header) -> Result<(), WsError> {
        let (opcode, len) = (header.opcode, header.len);
        if header.mask.is_none() {
            return Err(WsError::Protocol("client frames must be masked"));
        }
        if header.rsv2 || header.rsv3 {
            return Err(WsError::Protocol(
                "reserved bits set without a negotiated extension",
            ));
        }
        if header.rsv1 {
            // RFC 7692 §6.1: RSV1 marks a compressed message, on its first frame only.
            if self.inflater.is_none() {
                return Err(WsError::Protocol("RSV1 set without a negotiated extension"));
            }
            if !matches!(opcode, OP_TEXT | OP_BINARY) {
                return Err(WsError::Protocol(
                    "RSV1 set on a frame other than the first of a data message",
                ));
            }
        }
        if len >> 63 != 0 {
            return Err(WsError::Protocol(
                "payload length has its most significant bit set",
            ));
        }
        match opcode {
            OP_CLOSE | OP_PING | OP_PONG => {
                if !header.is_final {
                    return Err(WsError::Protocol("fragmented control frame"));
                }
                if len > 125 {
                    return Err(WsError::Protocol("control frame payload over 125 bytes"));
                }
            }
            OP_TEXT | OP_BINARY | OP_CONTINUATION => {
                match (opcode, &self.partial) {
                    (OP_CONTINUATION, None) => {
                        return Err(WsError::Protocol(
                            "continuation frame without a message to continue",
                        ));
                    }
                    (OP_TEXT | OP_BINARY, Some(_)) => {
                        return Err(WsError::Protocol(
                            "new message before the previous one finished",
                        ));
                    }
                    _ => {}
                }
                let so_far = self.partial.as_ref().map_or(0, |p| p.wire) as u64;
                let limit = self.max_message();
                if so_far.saturating_add(len) > limit as u64 {
                    return Err(WsError::MessageTooBig {
                        size: so_far.saturating_add(len),
                        limit,
                    });
                }
            }
            _ => return Err(WsError::Protocol("reserved opcode")),
        }
        Ok(())
    }

    fn frame(
        &mut self,
        opcode: u8,
        is_final: bool,
        compressed: bool,
        payload: BytesMut,
    ) -> Result<(), WsError> {
        match opcode {
            OP_TEXT | OP_BINARY if is_final => self.complete(opcode, compressed, payload),
            OP_TEXT | OP_BINARY => {
                self.partial = Some(Box::new(Partial {
                    opcode,
                    wire: payload.len(),
                    data: payload,
                    compressed,
                }));
                Ok(())
            }
            OP_CONTINUATION => {
                let Some(partial) = self.partial.as_mut() else {
                    return Err(WsError::Protocol(
                        "continuation frame without a message to continue",
                    ));
                };
                partial.wire += payload.len();
                partial.data.extend_from_slice(&payload);
                if is_final {
                    let Some(done) = self.partial.take() else {
                        return Ok(());
                    };
                    self.complete(done.opcode, done.compressed, done.data)
                } else {
                    Ok(())
                }
            }
            OP_PING => {
                if self.phase == Phase::Open {
                    self.push_control(control_frame(OP_PONG, &payload));
                }
                Ok(())
            }
            OP_PONG => Ok(()),
            OP_CLOSE => self.peer_close(&payload),
            _ => Err(WsError::Protocol("reserved opcode")),
        }
    }

    /// The largest message accepted now: the endpoint's limit, or the connection's own lower one.
    fn max_message(&self) -> usize {
        let own = (self.ws.shared.gate.load(Ordering::Acquire) & LIMIT_MASK) as usize;
        match own {
            0 => self.config.max_payload_length,
            own => own.min(self.config.max_payload_length),
        }
    }

    /// A whole message has arrived: inflate it if it is compressed, then deliver it.
    fn complete(&mut self, opcode: u8, compressed: bool, payload: BytesMut) -> Result<(), WsError> {
        if !compressed {
            return self.deliver(opcode, payload.freeze());
        }
        let limit = self.max_message();
        let Some(inflater) = self.inflater.as_mut() else {
            return Err(WsError::Protocol("RSV1 set without a negotiated extension"));
        };
        let message = inflater.message(&payload, limit)?;
        drop(payload);
        self.deliver(opcode, Bytes::from(message))
    }

    fn deliver(&mut self, opcode: u8, payload: Bytes) -> Result<(), WsError> {
        self.ws.shared.metrics.received(payload.len());
        let message = if opcode == OP_TEXT {
            Message::Text(Utf8Bytes::try_from_bytes(payload).map_err(|_| WsError::InvalidUtf8)?)
        } else {
            Message::Binary(payload)
        };
        // Once the app has asked to close (`ws.close` in a callback for an earlier frame of the same
        // read, or from another task), data messages are no longer delivered.
        if self.phase != Phase::Open || self.ws.ready_state() != ReadyState::Open {
            return Ok(());
        }
        if !self.silent {
            let ws = &self.ws;
            let mut verdict = Verdict::Pass;
            for attachment in ws.shared.attachments.iter() {
                verdict =
                    std::panic::catch_unwind(AssertUnwindSafe(|| attachment.message(ws, &message)))
                        .unwrap_or_else(|_| {
                            tracing::error!(id = ws.id(), "a WebSocket attachment hook panicked");
                            Verdict::Close(CloseCode::INTERNAL_ERROR, "internal error".to_owned())
                        });
                if verdict != Verdict::Pass {
                    break;
                }
            }
            match verdict {
                Verdict::Pass => {}
                Verdict::Stop => return Ok(()),
                Verdict::Close(code, reason) => {
                    self.start_close(code, &reason);
                    return Ok(());
                }
            }
        }
        self.callback(|h, ws| h.message(ws, message));
        Ok(())
    }

    fn peer_close(&mut self, payload: &[u8]) -> Result<(), WsError> {
        let (code, reason) = match payload.len() {
            0 => (None, ""),
            1 => return Err(WsError::Protocol("close frame with a 1-byte payload")),
            _ => {
                let code = CloseCode::from(u16::from_be_bytes([payload[0], payload[1]]));
                if !code.is_sendable() {
                    return Err(WsError::Protocol("invalid close code"));
                }
                let reason =
                    std::str::from_utf8(&payload[2..]).map_err(|_| WsError::InvalidUtf8)?;
                (Some(code), reason)
            }
        };
        if self.phase == Phase::Open {
            // Echo the peer's code, as RFC 6455 §5.5.1 asks, then close the TCP connection. The
            // state changes first: a send racing in from another task then sees it under the
            // queue's lock and cannot follow the close frame.
            self.ws.shared.set_state(STATE_CLOSING);
            self.push_control(close_frame(code, ""));
            self.outcome = Some((code.unwrap_or(CloseCode::NO_STATUS), reason.to_owned()));
        }
        self.phase = Phase::Done {
            deadline: Instant::now() + self.config.close_timeout,
        };
        Ok(())
    }

    /// Begins a closing handshake we initiate. Every close the server starts (`ws.close`,
    /// `close_after`, an attachment's verdict, the engine's own) passes here, so a code that may not be
    /// sent (RFC 6455 §7.4: below 1000, 1004–1006, 1015, 1016–2999, above 4999) is replaced by 1000
    /// here, with a warning.
    fn start_close(&mut self, code: CloseCode, reason: &str) {
        if self.phase != Phase::Open {
            return;
        }
        let code = if code.is_sendable() {
            code
        } else {
            tracing::warn!(
                id = self.ws.id(),
                %code,
                "close code may not be sent on the wire (RFC 6455 §7.4); closing with 1000 instead"
            );
            CloseCode::NORMAL
        };
        self.ws.shared.set_state(STATE_CLOSING);
        self.push_control(close_frame(Some(code), reason));
        self.outcome = Some((code, reason.to_owned()));
        self.phase = Phase::Closing {
            deadline: Instant::now() + self.config.close_timeout,
        };
    }

    /// The peer broke the protocol (or went silent): report, send our close frame, and linger.
    fn fail(&mut self, err: WsError) {
        tracing::debug!(id = self.ws.id(), error = %err, "WebSocket failed");
        self.cork(|engine| {
            let err = &err;
            engine.callback(|h, ws| h.error(ws, err));
        });
        let code = err.close_code();
        if self.phase == Phase::Open {
            let reason = match &err {
                WsError::MessageTooBig { .. } => "message too big",
                WsError::InvalidUtf8 => "invalid UTF-8",
                WsError::InvalidCompressedData => "invalid compressed data",
                WsError::IdleTimeout => "idle timeout",
                _ => "protocol error",
            };
            self.ws.shared.set_state(STATE_CLOSING);
            self.push_control(close_frame(Some(code), reason));
            self.outcome = Some((code, reason.to_owned()));
        }
        self.partial = None;
        self.rbuf.clear();
        self.phase = Phase::Failing {
            deadline: Instant::now() + LINGER,
        };
    }

    fn next_deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Closing { deadline }
            | Phase::Failing { deadline }
            | Phase::Done { deadline } => Some(deadline),
            Phase::Open => {
                let idle = self.config.idle_timeout.map(|idle| {
                    if self.ping_sent {
                        self.last_read + idle
                    } else {
                        self.last_read + idle / 2
                    }
                });
                let timers = self.timers.as_deref();
                let timer = timers.and_then(|t| t.close.as_ref()).map(|timer| timer.at);
                let expiry = timers.and_then(|t| t.expiry.as_ref()).map(|timer| timer.at);
                [idle, timer, expiry, self.compressor_expiry]
                    .into_iter()
                    .flatten()
                    .min()
            }
        }
    }

    fn on_timer(&mut self) {
        let now = Instant::now();
        match self.phase {
            Phase::Closing { deadline }
            | Phase::Failing { deadline }
            | Phase::Done { deadline }
                if now >= deadline =>
            {
                tracing::debug!(id = self.ws.id(), "peer did not finish closing; dropping");
                self.abandon();
            }
            Phase::Open => {
                if self.compressor_expiry.is_some_and(|at| now >= at) {
                    // Nothing sent for a while: give the compressor back; the next message starts a
                    // fresh one, which the peer's decompressor accepts (RFC 7692 §7.1.1: context
                    // takeover is allowed, never required).
                    self.compressor_expiry = None;
                    self.ws.shared.lock().compressor = None;
                }
                let due = |timer: &Option<CloseTimer>| {
                    timer.as_ref().is_some_and(|timer| now >= timer.at)
                };
                let fired = self.timers.as_mut().and_then(|timers| {
                    if due(&timers.expiry) {
                        tracing::debug!(id = self.ws.id(), "credentials expired; closing");
                        timers.expiry.take()
                    } else if due(&timers.close) {
                        timers.close.take()
                    } else {
                        None
                    }
                });
                if let Some(timer) = fired {
                    if let Some(last) = timer.last {
                        self.push(last);
                    }
                    self.start_close(timer.code, &timer.reason);
                    return;
                }
                let Some(idle) = self.config.idle_timeout else {
                    return;
                };
                if now >= self.last_read + idle && self.read_paused() {
                    // Not reading by our own choice: a peer that is still taking our backlog is
                    // alive (the socket may not have signalled writability since its buffer filled).
                    if let Err(err) = self.flush() {
                        tracing::debug!(id = self.ws.id(), error = %err, "write failed");
                    }
                }
                if now >= self.last_read + idle {
                    self.fail(WsError::IdleTimeout);
                } else if !self.ping_sent && now >= self.last_read + idle / 2 {
                    self.ping_sent = true;
                    self.push_control(control_frame(OP_PING, b""));
                }
            }
            _ => {}
        }
    }

    /// Gives up on what is left to write and ends the connection.
    fn abandon(&mut self) {
        self.writing.clear();
        self.abandoned = true;
        self.phase = Phase::Done {
            deadline: Instant::now(),
        };
    }

    fn peer_gone(&mut self) {
        if self.phase == Phase::Open {
            self.outcome = Some((CloseCode::ABNORMAL, String::new()));
        }
    }

    fn io_error(&mut self, err: io::Error) {
        tracing::debug!(id = self.ws.id(), error = %err, "WebSocket connection error");
        if self.phase == Phase::Open {
            let err = WsError::Io(err);
            self.cork(|engine| {
                let err = &err;
                engine.callback(|h, ws| h.error(ws, err));
            });
            self.outcome = Some((CloseCode::ABNORMAL, String::new()));
        }
    }

    /// The connection is over: mark it closed and run `close` exactly once.
    fn finish(mut self) {
        self.ws.shared.set_state(STATE_CLOSED);
        let (code, reason) = self
            .outcome
            .take()
            .unwrap_or((CloseCode::ABNORMAL, String::new()));
        {
            let mut outbox = self.ws.shared.lock();
            outbox.clear_frames();
            outbox.close = None;
            outbox.compressor = None;
        }
        self.inflater = None;
        self.ws.shared.buffered.clear();
        self.ws.shared.metrics.closed(code);
        self.attachments(|a, ws| a.closed(ws));
        self.callback(|h, ws| h.close(ws, code, &reason));
    }
}

#[cfg(test)]
mod size {
    use std::mem::size_of;

    fn future_size<A, F, Fut>(_: F) -> usize
    where
        F: FnOnce(A) -> Fut,
    {
        size_of::<Fut>()
    }

    /// An idle connection's memory is mostly its task, whose future is this. The engine, its timer
    /// and a little room for the loop: no second copy of the engine, no futures per wait (the idle
    /// benchmark weighs the whole connection; this catches a regression at compile time's sizes).
    #[test]
    fn the_connection_future_holds_the_engine_once_and_no_waiting_futures() {
        let engine = size_of::<super::Engine>();
        let sleep = size_of::<tokio::time::Sleep>();
        let run = future_size(super::run);
        let drive = future_size(super::drive);
        assert!(
            run <= engine + sleep + 128,
            "run future {run} B: engine {engine} B, timer {sleep} B, drive {drive} B"
        );
        assert!(engine <= 320, "engine {engine} B");
    }
}
