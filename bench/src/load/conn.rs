//! One client connection in the load generator's event loop: non-blocking reads of whole frames (or,
//! in HTTP mode, whole responses) out of a shared buffer, and writes that queue what the socket cannot
//! take yet.

use std::io::{self, Read, Write};

use mio::net::TcpStream;

use super::frame::{self, OP_CLOSE, OP_PING, OP_PONG, ServerFrame};

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
}

impl Conn {
    /// Wraps an upgraded socket; `leftover` holds bytes the server sent right after its handshake.
    pub(super) fn new(stream: std::net::TcpStream, leftover: Vec<u8>) -> Self {
        Self {
            stream: TcpStream::from_std(stream),
            carry: leftover,
            out: Vec::new(),
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

    /// Writes `bytes`, queueing what the socket does not take now (sent again by [`Conn::flush`]).
    pub(super) fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
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
