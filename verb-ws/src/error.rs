//! What can go wrong on a connection.

use std::io;

use crate::message::CloseCode;

/// Why a connection failed: reported to the `error` callback before `close`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WsError {
    /// The peer broke RFC 6455 (closed with 1002).
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    /// A text message or close reason was not UTF-8 (closed with 1007).
    #[error("invalid UTF-8 in a text message or close reason")]
    InvalidUtf8,
    /// A compressed message did not inflate: its data is not valid DEFLATE (closed with 1007).
    #[error("invalid compressed data in a permessage-deflate message")]
    InvalidCompressedData,
    /// A message was larger than `max_payload_length` (closed with 1009).
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    MessageTooBig {
        /// The announced size so far.
        size: u64,
        /// The configured limit.
        limit: usize,
    },
    /// The peer stayed silent past the idle timeout (closed with 1001).
    #[error("no data from the peer within the idle timeout")]
    IdleTimeout,
    /// The peer did not answer the close frame in time.
    #[error("the peer did not complete the closing handshake in time")]
    CloseTimeout,
    /// Reading or writing the socket failed.
    #[error("connection failed: {0}")]
    Io(#[from] io::Error),
}

impl WsError {
    /// The close code this failure is answered with.
    pub fn close_code(&self) -> CloseCode {
        match self {
            WsError::Protocol(_) => CloseCode::PROTOCOL_ERROR,
            WsError::InvalidUtf8 | WsError::InvalidCompressedData => CloseCode::INVALID_PAYLOAD,
            WsError::MessageTooBig { .. } => CloseCode::MESSAGE_TOO_BIG,
            WsError::IdleTimeout => CloseCode::GOING_AWAY,
            WsError::CloseTimeout | WsError::Io(_) => CloseCode::ABNORMAL,
        }
    }
}
