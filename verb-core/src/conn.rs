//! The byte stream under a connection: plain TCP, or TLS over TCP.

use std::fmt;
use std::future::Future;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use crate::answers::{AppHeads, ParseErrorAnswers};

/// A client connection's transport: TCP, or TLS over TCP. HTTP is served over it, and after a
/// protocol upgrade it is handed over whole (`verb-ws` runs WebSockets on it).
///
/// Besides the async read/write traits, it offers readiness-based calls that never wait, so an upgraded
/// protocol can hold no buffer while idle: wait for [`poll_read_ready`](Self::poll_read_ready), then
/// [`try_read_buf`](Self::try_read_buf) until it reports `WouldBlock`; write with
/// [`try_write_vectored`](Self::try_write_vectored), and while [`wants_flush`](Self::wants_flush) wait
/// for [`poll_write_ready`](Self::poll_write_ready) and [`try_flush`](Self::try_flush).
pub(crate) struct Connection {
    inner: Inner,
    /// TLS: the last read filled the buffer, so decrypted bytes may wait inside rustls with no new
    /// TCP readiness to announce them.
    more_plaintext: bool,
    /// TLS: encrypted records wait to be written.
    flush_pending: bool,
    /// How long a write through the async traits may stay pending (0: forever).
    write_timeout_ms: u32,
    /// Armed while such a write is pending.
    write_stall: Option<Pin<Box<tokio::time::Sleep>>>,
    /// HTTP/1.1: gives hyper's automatic answers Verb's JSON error body.
    answers: Option<Box<ParseErrorAnswers>>,
}

enum Inner {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

fn would_block() -> io::Error {
    io::ErrorKind::WouldBlock.into()
}

impl Connection {
    pub(crate) fn plain(stream: TcpStream) -> Self {
        Self {
            inner: Inner::Plain(stream),
            more_plaintext: false,
            flush_pending: false,
            write_timeout_ms: 0,
            write_stall: None,
            answers: None,
        }
    }

    pub(crate) fn tls(stream: TlsStream<TcpStream>) -> Self {
        Self {
            inner: Inner::Tls(Box::new(stream)),
            more_plaintext: false,
            flush_pending: false,
            write_timeout_ms: 0,
            write_stall: None,
            answers: None,
        }
    }

    /// A write through [`AsyncWrite`] that stays pending this long fails with
    /// [`io::ErrorKind::TimedOut`] (HTTP's `write_timeout`); the readiness-based calls are not
    /// affected. Whole milliseconds, at most about 49 days; zero turns it off.
    pub(crate) fn set_write_timeout(&mut self, timeout: std::time::Duration) {
        self.write_timeout_ms = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
    }

    /// Serving HTTP/1.1: hyper's own answers to requests it cannot parse get Verb's JSON error body
    /// (`app_heads` counts the app's look-alike answers, which pass unchanged).
    pub(crate) fn answer_parse_errors(&mut self, app_heads: AppHeads) {
        self.answers = Some(Box::new(ParseErrorAnswers::new(app_heads)));
    }

    /// The connection leaves HTTP/1.1 (a protocol upgrade): its writes are no longer hyper's.
    pub(crate) fn upgraded(mut self) -> Self {
        self.answers = None;
        self
    }

    /// Writes what remains of a staged answer (see [`answer_parse_errors`](Self::answer_parse_errors)).
    fn poll_staged(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some(rest) = self.answers.as_deref().and_then(ParseErrorAnswers::pending) {
            let written = match &mut self.inner {
                Inner::Plain(tcp) => Pin::new(tcp).poll_write(cx, rest),
                Inner::Tls(tls) => Pin::new(&mut **tls).poll_write(cx, rest),
            };
            match std::task::ready!(written) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) => {
                    if let Some(answers) = self.answers.as_deref_mut() {
                        answers.advance(n);
                    }
                }
                Err(err) => return Poll::Ready(Err(err)),
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Whether this write is hyper's automatic answer, now staged in Verb's form: report it written.
    fn staged(&mut self, first: &[u8], total: usize) -> bool {
        self.answers
            .as_deref_mut()
            .is_some_and(|answers| answers.intercept(first, total))
    }

    /// Passes `result` on, failing a write that has been pending for longer than the write timeout.
    fn stall_guard<T>(
        &mut self,
        cx: &mut Context<'_>,
        result: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if result.is_ready() || self.write_timeout_ms == 0 {
            self.write_stall = None;
            return result;
        }
        let timeout = std::time::Duration::from_millis(u64::from(self.write_timeout_ms));
        let stall = self
            .write_stall
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        if stall.as_mut().poll(cx).is_ready() {
            self.write_stall = None;
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the peer took no data within the write timeout",
            )));
        }
        Poll::Pending
    }

    /// Whether the client speaks HTTP/2 on it: over TLS, whether ALPN chose `h2`; over plain TCP,
    /// whether its first bytes are HTTP/2's connection preface (h2c with prior knowledge), looked at
    /// without consuming them. Waits for the client's first bytes.
    ///
    /// # Errors
    ///
    /// When the socket fails.
    pub(crate) async fn speaks_http2(&self) -> io::Result<bool> {
        const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
        let tcp = match &self.inner {
            Inner::Tls(tls) => return Ok(tls.get_ref().1.alpn_protocol() == Some(b"h2")),
            Inner::Plain(tcp) => tcp,
        };
        let mut buf = [0u8; PREFACE.len()];
        loop {
            let seen = tcp.peek(&mut buf).await?;
            if seen == 0 || buf[..seen] != PREFACE[..seen] {
                // The end, or a byte no preface has: HTTP/1.1 (hyper answers what it is).
                return Ok(false);
            }
            if seen == PREFACE.len() {
                return Ok(true);
            }
            // A prefix of the preface so far: wait for more (`peek` returns at once while data is
            // there, so wait until the socket has something new).
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }

    /// Whether the connection is encrypted.
    pub(crate) fn is_tls(&self) -> bool {
        matches!(self.inner, Inner::Tls(_))
    }

    fn tcp(&self) -> &TcpStream {
        match &self.inner {
            Inner::Plain(tcp) => tcp,
            Inner::Tls(tls) => tls.get_ref().0,
        }
    }

    /// The peer's address.
    ///
    /// # Errors
    ///
    /// When the socket is no longer connected.
    pub(crate) fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.tcp().peer_addr()
    }

    /// Polls until a read may make progress, waiting for readability: only
    /// the waker of the latest call is woken. For tasks that poll the socket on their own terms.
    ///
    /// # Errors
    ///
    /// When the socket fails.
    pub(crate) fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.more_plaintext {
            return Poll::Ready(Ok(()));
        }
        self.tcp().poll_read_ready(cx)
    }

    /// Polls until a write may make progress, waiting for writability:
    /// only the waker of the latest call is woken.
    ///
    /// # Errors
    ///
    /// When the socket fails.
    pub(crate) fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.tcp().poll_write_ready(cx)
    }

    /// Reads what is available into `buf`'s spare capacity without waiting: `Ok(0)` is the end of the
    /// stream, `WouldBlock` means nothing is available yet.
    ///
    /// # Errors
    ///
    /// `WouldBlock`, or the socket's (or TLS layer's) error.
    pub(crate) fn try_read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        match &mut self.inner {
            Inner::Plain(tcp) => tcp.try_read_buf(buf),
            Inner::Tls(tls) => {
                let spare = buf.capacity() - buf.len();
                let mut cx = Context::from_waker(Waker::noop());
                match tokio_util::io::poll_read_buf(Pin::new(&mut **tls), &mut cx, buf) {
                    Poll::Ready(Ok(read)) => {
                        self.more_plaintext = read > 0 && read >= spare;
                        Ok(read)
                    }
                    Poll::Ready(Err(err)) => Err(err),
                    Poll::Pending => {
                        self.more_plaintext = false;
                        Err(would_block())
                    }
                }
            }
        }
    }

    /// Writes as much of `bufs` as the socket takes without waiting.
    ///
    /// # Errors
    ///
    /// `WouldBlock` when nothing could be written, or the socket's (or TLS layer's) error.
    pub(crate) fn try_write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let tls = match &mut self.inner {
            Inner::Plain(tcp) => return tcp.try_write_vectored(bufs),
            Inner::Tls(tls) => tls,
        };
        let mut cx = Context::from_waker(Waker::noop());
        let mut total = 0;
        for buf in bufs.iter().filter(|buf| !buf.is_empty()) {
            match Pin::new(&mut **tls).poll_write(&mut cx, buf) {
                Poll::Ready(Ok(written)) => {
                    total += written;
                    if written < buf.len() {
                        break;
                    }
                }
                Poll::Ready(Err(err)) if total == 0 => return Err(err),
                Poll::Ready(Err(_)) | Poll::Pending => break,
            }
        }
        // Push the encrypted records towards the socket; what does not fit waits for writability.
        match Pin::new(&mut **tls).poll_flush(&mut cx) {
            Poll::Ready(Ok(())) => self.flush_pending = false,
            Poll::Ready(Err(err)) if total == 0 => return Err(err),
            Poll::Ready(Err(_)) | Poll::Pending => self.flush_pending = true,
        }
        if total == 0 {
            // Nothing taken (the TLS buffer was full): wait for writability, never report a zero write.
            return Err(would_block());
        }
        Ok(total)
    }

    /// Whether encrypted bytes wait to be written (never for plain TCP): wait for
    /// [`poll_write_ready`](Self::poll_write_ready), then [`try_flush`](Self::try_flush).
    pub(crate) fn wants_flush(&self) -> bool {
        self.flush_pending
    }

    /// Writes waiting encrypted bytes without waiting.
    ///
    /// # Errors
    ///
    /// The socket's (or TLS layer's) error.
    pub(crate) fn try_flush(&mut self) -> io::Result<()> {
        if let Inner::Tls(tls) = &mut self.inner {
            let mut cx = Context::from_waker(Waker::noop());
            match Pin::new(&mut **tls).poll_flush(&mut cx) {
                Poll::Ready(Ok(())) => self.flush_pending = false,
                Poll::Ready(Err(err)) => return Err(err),
                Poll::Pending => self.flush_pending = true,
            }
        }
        Ok(())
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match &mut this.inner {
            Inner::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Inner::Tls(tls) => Pin::new(&mut **tls).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.answers.is_some() {
            match this.poll_staged(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                Poll::Pending => return this.stall_guard(cx, Poll::Pending),
            }
            if this.staged(buf, buf.len()) {
                return match this.poll_staged(cx) {
                    Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
                    _ => Poll::Ready(Ok(buf.len())),
                };
            }
        }
        let result = match &mut this.inner {
            Inner::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Inner::Tls(tls) => Pin::new(&mut **tls).poll_write(cx, buf),
        };
        this.stall_guard(cx, result)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.answers.is_some() {
            match this.poll_staged(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                Poll::Pending => return this.stall_guard(cx, Poll::Pending),
            }
            let total = bufs.iter().map(|buf| buf.len()).sum();
            let first = bufs
                .iter()
                .find(|buf| !buf.is_empty())
                .map_or(&[][..], |buf| &buf[..]);
            if this.staged(first, total) {
                return match this.poll_staged(cx) {
                    Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
                    _ => Poll::Ready(Ok(total)),
                };
            }
        }
        let result = match &mut this.inner {
            Inner::Plain(tcp) => Pin::new(tcp).poll_write_vectored(cx, bufs),
            Inner::Tls(tls) => Pin::new(&mut **tls).poll_write_vectored(cx, bufs),
        };
        this.stall_guard(cx, result)
    }

    fn is_write_vectored(&self) -> bool {
        match &self.inner {
            Inner::Plain(tcp) => tcp.is_write_vectored(),
            Inner::Tls(tls) => tls.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.answers.is_some() {
            let staged = this.poll_staged(cx);
            if !matches!(staged, Poll::Ready(Ok(()))) {
                return this.stall_guard(cx, staged);
            }
        }
        let result = match &mut this.inner {
            Inner::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            Inner::Tls(tls) => Pin::new(&mut **tls).poll_flush(cx),
        };
        if let Poll::Ready(Ok(())) = result {
            this.flush_pending = false;
        }
        this.stall_guard(cx, result)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.answers.is_some() {
            std::task::ready!(this.poll_staged(cx))?;
        }
        match &mut this.inner {
            Inner::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Inner::Tls(tls) => Pin::new(&mut **tls).poll_shutdown(cx),
        }
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("tls", &self.is_tls())
            .field("peer", &self.peer_addr().ok())
            .finish()
    }
}
