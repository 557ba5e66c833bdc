//! A connection's send queue: the frames waiting for the engine, and the count of their bytes.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::{Bytes, BytesMut};

use crate::message::CloseCode;
use crate::proto::deflate::Compressor;
use crate::proto::frame::{header_len, put_header};
use crate::socket::TimerRequests;

/// Frames at most this long are built as one buffer (header and payload copied together); longer
/// payloads are queued as their own `Bytes` behind a separate header, without a copy.
pub(crate) const COPY_THRESHOLD: usize = 1024;

/// First size of a connection's buffer of small frames: room for a few messages, so a burst does not
/// grow it many times.
const TAIL_START: usize = 512;
/// Most room a new buffer of small frames starts with, whatever the last one held.
const TAIL_HINT_MAX: usize = 64 * 1024;

/// Queues an uncompressed data frame; returns the bytes queued. Small frames are copied into the
/// queue's buffer of small frames (one allocation for all those queued between two writes), larger
/// payloads are queued as they are, behind a header.
pub(crate) fn push_plain(outbox: &mut Outbox, opcode: u8, payload: Bytes) -> usize {
    let len = payload.len();
    let total = header_len(len) + len;
    if len <= COPY_THRESHOLD {
        let tail = outbox.tail_with_room(total);
        put_header(tail, opcode, len);
        tail.extend_from_slice(&payload);
    } else {
        let mut header = BytesMut::with_capacity(header_len(len));
        put_header(&mut header, opcode, len);
        outbox.push(header.freeze());
        outbox.frames.push_back(payload);
    }
    total
}

#[derive(Default)]
pub(crate) struct Outbox {
    /// Frames in order; small ones queued since the last [`seal`](Self::seal) wait in `tail`, which
    /// follows them.
    frames: VecDeque<Bytes>,
    /// Small frames copied into one buffer ("corked"), so that a burst of small messages costs one
    /// allocation and one entry of a vectored write. It is handed over whole when the engine takes
    /// the frames, and freed once written: an idle connection keeps none.
    tail: BytesMut,
    /// How much the last handed-over `tail` held: the next one starts with room for as much, so
    /// a steady stream costs one allocation per write, not a chain of reallocations.
    tail_hint: usize,
    /// A close asked for by the application (or the backpressure policy), not yet framed.
    pub(crate) close: Option<(CloseCode, Box<str>)>,
    /// A send hit the limit: fire `drain` when the queue empties.
    pub(crate) wants_drain: bool,
    /// The peer is to be dropped without a close handshake.
    pub(crate) terminate: bool,
    /// Timer requests for the engine (boxed: most connections never make one).
    pub(crate) timers: Option<Box<TimerRequests>>,
    /// The connection's own compressor (server context takeover), while it has one.
    pub(crate) compressor: Option<Box<Compressor>>,
    /// The compressor was used since the engine last looked (it frees an unused one).
    pub(crate) compressed: bool,
}

impl Outbox {
    /// Moves the buffered small frames to the end of `frames`.
    fn seal(&mut self) {
        if !self.tail.is_empty() {
            self.tail_hint = self.tail.len().min(TAIL_HINT_MAX);
            self.frames
                .push_back(std::mem::take(&mut self.tail).freeze());
        }
    }

    /// The buffer of small frames, with room for `len` more bytes.
    fn tail_with_room(&mut self, len: usize) -> &mut BytesMut {
        if self.tail.capacity() - self.tail.len() < len {
            let room = if self.tail.capacity() == 0 {
                len.max(TAIL_START).max(self.tail_hint)
            } else {
                len.max(TAIL_START)
            };
            self.tail.reserve(room);
        }
        &mut self.tail
    }

    /// Queues a copy of the small frame `frame` after everything queued so far.
    pub(crate) fn copy_small(&mut self, frame: &[u8]) {
        self.tail_with_room(frame.len()).extend_from_slice(frame);
    }

    /// Queues `frame` after everything queued so far.
    pub(crate) fn push(&mut self, frame: Bytes) {
        self.seal();
        self.frames.push_back(frame);
    }

    /// Every queued frame, in order, moved to the end of `into`.
    pub(crate) fn take_frames(&mut self, into: &mut VecDeque<Bytes>) {
        self.seal();
        if into.is_empty() {
            std::mem::swap(into, &mut self.frames);
        } else {
            into.extend(self.frames.drain(..));
        }
    }

    /// Drops every queued frame.
    pub(crate) fn clear_frames(&mut self) {
        self.frames.clear();
        self.tail = BytesMut::new();
    }
}

/// How many bytes wait in a connection's queue (and in the engine's write list), readable without
/// its lock: `bufferedAmount`, backpressure and the drain callback read it.
#[derive(Debug, Default)]
pub(crate) struct QueuedBytes(AtomicUsize);

impl QueuedBytes {
    /// Bytes queued and not yet written.
    pub(crate) fn get(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }

    /// `len` more bytes were queued; the total after.
    pub(crate) fn queued(&self, len: usize) -> usize {
        self.0.fetch_add(len, Ordering::AcqRel) + len
    }

    /// `len` bytes were written to the socket.
    pub(crate) fn written(&self, len: usize) {
        self.0.fetch_sub(len, Ordering::AcqRel);
    }

    /// Everything was dropped with the connection.
    pub(crate) fn clear(&self) {
        self.0.store(0, Ordering::Release);
    }
}
