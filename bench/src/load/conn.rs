//! One client connection in the load generator's event loop: non-blocking reads of whole frames (or,
//! in HTTP mode, whole responses) out of a shared buffer, and writes that queue what the socket cannot
//! take yet.

use std::io::{self, Read, Write};

use mio::net::TcpStream;

use super::frame::{self, OP_CLOSE, OP_PING, OP_PONG, ServerFrame};
use super::h2::{Read2, Tunnel};

/// How a connection ended, as the event loop learns it.
#[derive(Debug)]
pub(super) enum Ended {
    /// The server sent a close frame.
    CloseFrame,
    /// The server closed the TCP connection.
    Eof,
    /// A socket error or a protocol violation.
    Error(String),
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::CloseFrame => f.write_str("the server sent a close frame"),
            Self::Eof => f.write_str("the server closed the connection"),
            Self::Error(err) => f.write_str(err),
        }
    }
}

/// One WebSocket client connection.
#[derive(Debug)]
pub(super) struct Conn {
    stream: TcpStream,
    /// The start of a frame the last read cut off.
    carry: Vec<u8>,
    /// Bytes queued behind a write that would have blocked.
    out: Vec<u8>,
    /// HTTP/2 (RFC 8441): the WebSocket runs in DATA frames of one stream.
    tunnel: Option<Box<Tunnel>>,
}

impl Conn {
    /// Wraps an upgraded socket; `leftover` holds bytes the server sent right after its handshake.
    pub(super) fn new(stream: std::net::TcpStream, leftover: Vec<u8>) -> Self {
        Self {
            stream: TcpStream::from_std(stream),
            carry: leftover,
            out: Vec::new(),
            tunnel: None,
        }
    }

    /// Wraps a socket whose WebSocket runs over an HTTP/2 stream; `leftover` holds WebSocket bytes
    /// that came with the response.
    pub(super) fn tunneled(
        stream: std::net::TcpStream,
        tunnel: Box<Tunnel>,
        leftover: Vec<u8>,
    ) -> Self {
        Self {
            tunnel: Some(tunnel),
            ..Self::new(stream, leftover)
        }
    }

    /// The socket, to register with the poller.
    pub(super) fn stream_mut(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    /// Reads everything available and calls `on_data(frame)` for each data frame (text, binary,
    /// continuation), in order. Pings are answered; pongs are ignored. `scratch` is the buffer reads
    /// land in; its length bounds a frame's size. `Ok(Some(_))` reports the end of the connection.
    pub(super) fn pump(
        &mut self,
        scratch: &mut [u8],
        mut on_data: impl FnMut(ServerFrame<'_>),
    ) -> io::Result<Option<Ended>> {
        let mut pongs: Vec<u8> = Vec::new();
        let max_frame = scratch.len();
        let ended = self.read_with(scratch, |filled| {
            let mut at = 0;
            loop {
                match frame::parse_server(&filled[at..], max_frame) {
                    Ok(Some((frame, used))) => {
                        at += used;
                        match frame.opcode {
                            OP_PING => pongs.extend(frame::encode_client(OP_PONG, frame.payload)),
                            OP_PONG => {}
                            OP_CLOSE => return (at, Some(Ended::CloseFrame)),
                            _ => on_data(frame),
                        }
                    }
                    Ok(None) => return (at, None),
                    Err(err) => return (at, Some(Ended::Error(err.to_string()))),
                }
            }
        })?;
        if !pongs.is_empty() && ended.is_none() {
            self.send(&pongs)?;
        }
        Ok(ended)
    }

    /// Reads everything available and hands the bytes not consumed yet (what an earlier read left,
    /// then the new ones) to `consume`, which returns how many of them it used (the rest waits for
    /// the next read) and whether the connection is over. `Ok(Some(_))` reports its end.
    pub(super) fn read_with(
        &mut self,
        scratch: &mut [u8],
        mut consume: impl FnMut(&[u8]) -> (usize, Option<Ended>),
    ) -> io::Result<Option<Ended>> {
        if self.tunnel.is_some() {
            return self.read_tunneled(scratch, consume);
        }
        loop {
            let carried = self.carry.len();
            scratch[..carried].copy_from_slice(&self.carry);
            let room = scratch.len() - carried;
            let n = match self.stream.read(&mut scratch[carried..]) {
                Ok(0) => return Ok(Some(Ended::Eof)),
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            };
            let filled = &scratch[..carried + n];
            let (used, ended) = consume(filled);
            if ended.is_some() {
                return Ok(ended);
            }
            self.carry.clear();
            self.carry.extend_from_slice(&filled[used..]);
            // A read that did not fill the buffer emptied the socket: the next data brings a new event.
            if n < room {
                return Ok(None);
            }
        }
    }

    /// [`read_with`](Self::read_with) over HTTP/2: raw reads go through the tunnel, which hands over
    /// the stream's WebSocket bytes and queues its acknowledgements and window updates.
    fn read_tunneled(
        &mut self,
        scratch: &mut [u8],
        mut consume: impl FnMut(&[u8]) -> (usize, Option<Ended>),
    ) -> io::Result<Option<Ended>> {
        loop {
            let n = match self.stream.read(scratch) {
                Ok(0) => return Ok(Some(Ended::Eof)),
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            };
            let mut ws = std::mem::take(&mut self.carry);
            let Some(tunnel) = self.tunnel.as_mut() else {
                return Ok(None);
            };
            if let Read2::Ended(why) = tunnel.absorb(&scratch[..n], &mut ws) {
                return Ok(Some(Ended::Error(why)));
            }
            let (used, ended) = consume(&ws);
            if ended.is_some() {
                return Ok(ended);
            }
            ws.drain(..used);
            self.carry = ws;
            // Acknowledgements, window updates, and what the new windows let out.
            self.flush()?;
            if n < scratch.len() {
                return Ok(None);
            }
        }
    }

    /// Writes `bytes`, queueing what the socket does not take now (sent again by [`Conn::flush`]).
    pub(super) fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        if let Some(tunnel) = self.tunnel.as_mut() {
            tunnel.queue(bytes);
            return self.flush();
        }
        if !self.out.is_empty() {
            self.out.extend_from_slice(bytes);
            return self.flush();
        }
        let mut at = 0;
        while at < bytes.len() {
            match self.stream.write(&bytes[at..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => at += n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
        self.out.extend_from_slice(&bytes[at..]);
        Ok(())
    }

    /// Writes what earlier sends queued, as far as the socket takes it.
    pub(super) fn flush(&mut self) -> io::Result<()> {
        if let Some(tunnel) = self.tunnel.as_mut() {
            tunnel.frames(&mut self.out);
        }
        let mut at = 0;
        while at < self.out.len() {
            match self.stream.write(&self.out[at..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => at += n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
        self.out.drain(..at);
        Ok(())
    }
}
