//! Protocol upgrades: the connection a request hands over once its `101` (or, later, an HTTP/2
//! extended CONNECT's `200`) has been sent.
//!
//! [`Request::upgrade`](crate::Request::upgrade) gives an [`OnUpgrade`], a future of the
//! [`Upgraded`] connection. It works wherever the request came from: Verb's own server (where the
//! connection is Verb's TCP or TLS stream, used without a layer in between), hyper or axum serving a
//! Verb app as a tower service, or a test that hands in any byte stream ([`Upgraded::new`]).

use std::fmt;
use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use atomic_waker::AtomicWaker;
use bytes::{Bytes, BytesMut};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::conn::Connection;

/// Why a request could not be upgraded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpgradeError {
    /// The request carries no way to take over its connection: it was built by hand, or its
    /// server does not support upgrades (hyper without `with_upgrades`), or it was already taken.
    #[error("this request cannot be upgraded: its server hands over no connection")]
    Unavailable,
    /// The connection was to be handed over, but was not: the peer went away before the response
    /// was sent, or the server dropped it.
    #[error("the upgrade did not complete")]
    Failed(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// The future of an upgraded connection, from [`Request::upgrade`](crate::Request::upgrade).
///
/// It resolves once the server has written the response that switched protocols; spawn a task that
/// awaits it and return the response. Put one in a request's extensions to upgrade a request made
/// by hand (tests): [`OnUpgrade::ready`].
pub struct OnUpgrade {
    inner: Pending,
}

enum Pending {
    Hyper(hyper::upgrade::OnUpgrade),
    /// In a mutex only so that extensions (which need `Sync`) can carry it.
    Ready(std::sync::Mutex<Option<Upgraded>>),
}

impl OnUpgrade {
    /// An upgrade that is already done: `upgraded` is what the request hands over.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use verb_core::{OnUpgrade, Request, Upgraded};
    ///
    /// let (server_side, _client_side) = tokio::io::duplex(4096);
    /// let mut req = Request::builder().build();
    /// req.extensions_mut().insert(OnUpgrade::ready(Upgraded::new(server_side)));
    /// let upgraded = req.upgrade().unwrap().await.unwrap();
    /// assert!(!upgraded.is_native());
    /// # }
    /// ```
    pub fn ready(upgraded: Upgraded) -> Self {
        Self {
            inner: Pending::Ready(std::sync::Mutex::new(Some(upgraded))),
        }
    }

    pub(crate) fn take_from(extensions: &mut http::Extensions) -> Option<Self> {
        if let Some(ours) = extensions.remove::<OnUpgrade>() {
            return Some(ours);
        }
        extensions
            .remove::<hyper::upgrade::OnUpgrade>()
            .map(|hyper| Self {
                inner: Pending::Hyper(hyper),
            })
    }

    pub(crate) fn is_in(extensions: &http::Extensions) -> bool {
        extensions.get::<OnUpgrade>().is_some()
            || extensions.get::<hyper::upgrade::OnUpgrade>().is_some()
    }
}

// `Extensions` needs `Clone` values; an upgrade is taken once, so a clone hands over nothing.
impl Clone for OnUpgrade {
    fn clone(&self) -> Self {
        match &self.inner {
            Pending::Hyper(hyper) => Self {
                inner: Pending::Hyper(hyper.clone()),
            },
            Pending::Ready(_) => Self {
                inner: Pending::Ready(std::sync::Mutex::new(None)),
            },
        }
    }
}

impl Future for OnUpgrade {
    type Output = Result<Upgraded, UpgradeError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().inner {
            Pending::Ready(upgraded) => {
                let upgraded = upgraded
                    .get_mut()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .take();
                Poll::Ready(upgraded.ok_or(UpgradeError::Unavailable))
            }
            Pending::Hyper(hyper) => Pin::new(hyper).poll(cx).map(|result| {
                let upgraded = result.map_err(|err| UpgradeError::Failed(Box::new(err)))?;
                // Verb's own server: take its connection back, and drive it without a layer between.
                Ok(match upgraded.downcast::<TokioIo<Connection>>() {
                    Ok(parts) => Upgraded {
                        transport: Transport::Native(parts.io.into_inner().upgraded()),
                        read_buf: (!parts.read_buf.is_empty()).then(|| Box::new(parts.read_buf)),
                    },
                    Err(upgraded) => Upgraded::new(TokioIo::new(upgraded)),
                })
            }),
        }
    }
}

impl fmt::Debug for OnUpgrade {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OnUpgrade").finish_non_exhaustive()
    }
}

/// Any byte stream an upgraded connection can run over.
trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// A connection handed over by an upgrade: bytes in both directions, plus what the server had
/// already read past the request ([`take_read_buf`](Self::take_read_buf)).
///
/// It is [`AsyncRead`] + [`AsyncWrite`], and it also offers calls that never wait, so that a protocol
/// engine can hold no buffer while idle: wait for [`poll_read_ready`](Self::poll_read_ready), then
/// [`try_read_buf`](Self::try_read_buf) until it reports `WouldBlock`; write with
/// [`try_write_vectored`](Self::try_write_vectored), and while [`wants_flush`](Self::wants_flush),
/// wait for [`poll_write_ready`](Self::poll_write_ready) and call [`try_flush`](Self::try_flush).
///
/// Over Verb's own server these calls go straight to the TCP (or TLS) socket's readiness. Over any
/// other stream ([`Upgraded::new`], or hyper's connection when a Verb app is served as a tower
/// service) they poll the stream with a waker of their own that records which way it became ready,
/// so they behave the same; only a read costs a buffer's reservation per wake-up.
pub struct Upgraded {
    transport: Transport,
    /// Boxed, and only when there is one: most upgrades have read nothing past the request, and a
    /// WebSocket engine keeps its `Upgraded` for the connection's life.
    read_buf: Option<Box<Bytes>>,
}

enum Transport {
    Native(Connection),
    Foreign(Box<Foreign>),
}

impl Upgraded {
    /// Wraps any byte stream: a TLS stream of another stack, an in-memory duplex for tests.
    pub fn new<T>(io: T) -> Self
    where
        T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let read = Arc::new(Readiness::default());
        let write = Arc::new(Readiness::default());
        Self {
            transport: Transport::Foreign(Box::new(Foreign {
                io: Box::new(io),
                read_waker: Waker::from(Arc::clone(&read)),
                write_waker: Waker::from(Arc::clone(&write)),
                read,
                write,
                flush_pending: false,
            })),
            read_buf: None,
        }
    }

    /// Whether this is a connection of Verb's own server (TCP or TLS), driven without a layer between.
    pub fn is_native(&self) -> bool {
        matches!(self.transport, Transport::Native(_))
    }

    /// Takes the bytes the server read past the request (the first frames a client sent without
    /// waiting for the response); empty after the first call.
    pub fn take_read_buf(&mut self) -> Bytes {
        self.read_buf.take().map(|buf| *buf).unwrap_or_default()
    }

    /// Polls until a read may make progress; only the waker of the latest call is woken.
    ///
    /// # Errors
    ///
    /// When the socket fails.
    pub fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.transport {
            Transport::Native(conn) => conn.poll_read_ready(cx),
            Transport::Foreign(foreign) => foreign.read.poll(cx),
        }
    }

    /// Polls until a write may make progress; only the waker of the latest call is woken.
    ///
    /// # Errors
    ///
    /// When the socket fails.
    pub fn poll_write_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.transport {
            Transport::Native(conn) => conn.poll_write_ready(cx),
            Transport::Foreign(foreign) => foreign.write.poll(cx),
        }
    }

    /// Reads what is available into `buf`'s spare capacity without waiting: `Ok(0)` is the end of the
    /// stream, `WouldBlock` means nothing is available yet.
    ///
    /// # Errors
    ///
    /// `WouldBlock`, or the stream's error.
    pub fn try_read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        match &mut self.transport {
            Transport::Native(conn) => conn.try_read_buf(buf),
            Transport::Foreign(foreign) => foreign.try_read_buf(buf),
        }
    }

    /// Writes as much of `bufs` as the stream takes without waiting.
    ///
    /// # Errors
    ///
    /// `WouldBlock` when nothing could be written, or the stream's error.
    pub fn try_write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match &mut self.transport {
            Transport::Native(conn) => conn.try_write_vectored(bufs),
            Transport::Foreign(foreign) => foreign.try_write_vectored(bufs),
        }
    }

    /// Whether written bytes wait inside the stream (TLS records, a layer's buffer): wait for
    /// [`poll_write_ready`](Self::poll_write_ready), then [`try_flush`](Self::try_flush).
    pub fn wants_flush(&self) -> bool {
        match &self.transport {
            Transport::Native(conn) => conn.wants_flush(),
            Transport::Foreign(foreign) => foreign.flush_pending,
        }
    }

    /// Pushes waiting bytes on without waiting.
    ///
    /// # Errors
    ///
    /// The stream's error.
    pub fn try_flush(&mut self) -> io::Result<()> {
        match &mut self.transport {
            Transport::Native(conn) => conn.try_flush(),
            Transport::Foreign(foreign) => foreign.try_flush(),
        }
    }
}

/// Which way a foreign stream became ready: set by the stream's wake-up, cleared by a call that
/// found nothing to do.
#[derive(Default)]
struct Readiness {
    /// Starts `false`, then is set by the first attempt: a new stream is tried at once.
    not_ready: AtomicBool,
    task: AtomicWaker,
}

impl Readiness {
    fn poll(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Register before looking, so a wake-up in between is not lost.
        self.task.register(cx.waker());
        if self.not_ready.load(Ordering::Acquire) {
            Poll::Pending
        } else {
            Poll::Ready(Ok(()))
        }
    }
}

impl Wake for Readiness {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.not_ready.store(false, Ordering::Release);
        self.task.wake();
    }
}

struct Foreign {
    io: Box<dyn Io>,
    read: Arc<Readiness>,
    write: Arc<Readiness>,
    /// Wakers that mark `read` / `write` ready and wake the task waiting on them.
    read_waker: Waker,
    write_waker: Waker,
    flush_pending: bool,
}

fn would_block() -> io::Error {
    io::ErrorKind::WouldBlock.into()
}

impl Foreign {
    fn try_read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        // Not ready until the stream says so, unless this attempt makes progress.
        self.read.not_ready.store(true, Ordering::Release);
        let mut cx = Context::from_waker(&self.read_waker);
        match tokio_util::io::poll_read_buf(Pin::new(&mut self.io), &mut cx, buf) {
            Poll::Ready(result) => {
                self.read.not_ready.store(false, Ordering::Release);
                result
            }
            Poll::Pending => Err(would_block()),
        }
    }

    fn try_write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.write.not_ready.store(true, Ordering::Release);
        let mut cx = Context::from_waker(&self.write_waker);
        let written = match Pin::new(&mut self.io).poll_write_vectored(&mut cx, bufs) {
            Poll::Ready(Ok(0)) if bufs.iter().any(|buf| !buf.is_empty()) => {
                return Err(io::ErrorKind::WriteZero.into());
            }
            Poll::Ready(Ok(written)) => written,
            Poll::Ready(Err(err)) => {
                self.write.not_ready.store(false, Ordering::Release);
                return Err(err);
            }
            Poll::Pending => return Err(would_block()),
        };
        self.write.not_ready.store(false, Ordering::Release);
        // A layer may buffer what it took: push it on, and wait for writability if it cannot.
        self.try_flush()?;
        Ok(written)
    }

    fn try_flush(&mut self) -> io::Result<()> {
        let mut cx = Context::from_waker(&self.write_waker);
        match Pin::new(&mut self.io).poll_flush(&mut cx) {
            Poll::Ready(Ok(())) => self.flush_pending = false,
            Poll::Ready(Err(err)) => return Err(err),
            Poll::Pending => {
                self.write.not_ready.store(true, Ordering::Release);
                self.flush_pending = true;
            }
        }
        Ok(())
    }
}

impl AsyncRead for Upgraded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(read_buf) = &mut this.read_buf {
            let take = read_buf.len().min(buf.remaining());
            buf.put_slice(&read_buf.split_to(take));
            if read_buf.is_empty() {
                this.read_buf = None;
            }
            return Poll::Ready(Ok(()));
        }
        match &mut this.transport {
            Transport::Native(conn) => Pin::new(conn).poll_read(cx, buf),
            Transport::Foreign(foreign) => Pin::new(&mut foreign.io).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Upgraded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().transport {
            Transport::Native(conn) => Pin::new(conn).poll_write(cx, buf),
            Transport::Foreign(foreign) => Pin::new(&mut foreign.io).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().transport {
            Transport::Native(conn) => Pin::new(conn).poll_write_vectored(cx, bufs),
            Transport::Foreign(foreign) => Pin::new(&mut foreign.io).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.transport {
            Transport::Native(conn) => conn.is_write_vectored(),
            Transport::Foreign(foreign) => foreign.io.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().transport {
            Transport::Native(conn) => Pin::new(conn).poll_flush(cx),
            Transport::Foreign(foreign) => {
                let result = Pin::new(&mut foreign.io).poll_flush(cx);
                if let Poll::Ready(Ok(())) = result {
                    foreign.flush_pending = false;
                }
                result
            }
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().transport {
            Transport::Native(conn) => Pin::new(conn).poll_shutdown(cx),
            Transport::Foreign(foreign) => Pin::new(&mut foreign.io).poll_shutdown(cx),
        }
    }
}

impl fmt::Debug for Upgraded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("Upgraded");
        match &self.transport {
            Transport::Native(conn) => debug.field("connection", conn),
            Transport::Foreign(_) => debug.field("connection", &"foreign"),
        };
        debug
            .field(
                "read_buf",
                &self.read_buf.as_ref().map_or(0, |buf| buf.len()),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A foreign stream reports readiness through its own wakers: pending until the peer writes,
    /// ready after, and writes come out on the other side.
    #[tokio::test]
    async fn foreign_streams_report_readiness() {
        let (server, mut client) = tokio::io::duplex(64);
        let mut up = Upgraded::new(server);
        let mut buf = BytesMut::with_capacity(16);
        let err = up.try_read_buf(&mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert!(up.poll_read_ready(&mut cx).is_pending());
        client.write_all(b"hello").await.unwrap();
        std::future::poll_fn(|cx| up.poll_read_ready(cx))
            .await
            .unwrap();
        assert_eq!(up.try_read_buf(&mut buf).unwrap(), 5);
        assert_eq!(&buf[..], b"hello");

        // Fill the duplex: the write side goes pending, and is ready again once the peer reads.
        let big = [7u8; 200];
        let mut written = 0;
        loop {
            match up.try_write_vectored(&[IoSlice::new(&big)]) {
                Ok(n) => written += n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) => panic!("{err}"),
            }
        }
        assert_eq!(written, 64);
        assert!(up.poll_write_ready(&mut cx).is_pending());
        let mut got = [0u8; 64];
        client.read_exact(&mut got).await.unwrap();
        std::future::poll_fn(|cx| up.poll_write_ready(cx))
            .await
            .unwrap();
        assert!(up.try_write_vectored(&[IoSlice::new(&big)]).unwrap() > 0);
    }
}
