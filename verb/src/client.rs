//! A WebSocket client for Rust programs talking to Verb servers: the docs' client-side heartbeat and
//! reconnect logic (answer pings, reconnect with backoff), with typed JSON.
//!
//! ```no_run
//! use verb::client::{Client, ClientEvent};
//!
//! # async fn run() -> Result<(), verb::client::ClientError> {
//! let mut client = Client::builder("ws://127.0.0.1:3000/ws").connect().await?;
//! client.send_json(&serde_json::json!({ "type": "message", "text": "hi" }))?;
//! while let Some(event) = client.next().await {
//!     match event {
//!         ClientEvent::Message(msg) => println!("{}", msg.as_text().unwrap_or_default()),
//!         ClientEvent::Disconnected { .. } => println!("lost the server; reconnecting"),
//!         ClientEvent::Connected => println!("connected"),
//!         _ => {}
//!     }
//! }
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as Wire;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::{CloseCode, Message};

/// What the client reports.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientEvent {
    /// Connected (first time, or again after a reconnect).
    Connected,
    /// A data message from the server.
    Message(Message),
    /// The connection ended (with the server's close code, if it sent one); a reconnect follows
    /// unless the client was closed.
    Disconnected {
        /// The server's close code.
        code: Option<CloseCode>,
    },
}

/// Why the client could not start or send.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The URL is not a `ws://` URL the client can use.
    #[error("invalid WebSocket URL {url}: {reason}")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The first connection failed and `connect` was asked to wait for it.
    #[error("cannot connect to {url}: {reason}")]
    Connect {
        /// The URL given.
        url: String,
        /// What failed.
        reason: String,
    },
    /// The client was closed (or its task ended); nothing more can be sent.
    #[error("the client is closed")]
    Closed,
    /// A value could not be serialized to JSON.
    #[error("cannot serialize a JSON message: {0}")]
    Json(String),
}

/// How a [`Client`] connects and reconnects. Defaults: backoff from 500 ms doubling to 30 s with
/// jitter, unlimited attempts, up to 1024 outgoing messages kept while disconnected, up to 1024
/// events waiting to be read.
#[derive(Debug, Clone)]
#[must_use = "a builder connects nothing until `connect`"]
pub struct ClientBuilder {
    url: String,
    min_backoff: Duration,
    max_backoff: Duration,
    max_attempts: Option<u32>,
    queue: usize,
    events: usize,
}

impl ClientBuilder {
    /// The first delay before reconnecting (then doubling).
    pub fn min_backoff(mut self, delay: Duration) -> Self {
        self.min_backoff = delay;
        self
    }

    /// The longest delay between reconnect attempts.
    pub fn max_backoff(mut self, delay: Duration) -> Self {
        self.max_backoff = delay;
        self
    }

    /// Gives up after this many failed attempts in a row (then the event stream ends).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts);
        self
    }

    /// How many received events (messages, connects, disconnects) wait for [`Client::next`];
    /// when that many are unread, the client stops reading from the server, so a flooding server
    /// meets TCP backpressure instead of a growing queue.
    ///
    /// Default is 1024.
    pub fn event_queue(mut self, events: usize) -> Self {
        self.events = events.max(1);
        self
    }

    /// Connects (waiting for the first connection), then keeps the connection up in the background.
    ///
    /// # Errors
    ///
    /// [`ClientError::InvalidUrl`], or [`ClientError::Connect`] if the first attempt fails.
    pub async fn connect(self) -> Result<Client, ClientError> {
        let request =
            self.url
                .as_str()
                .into_client_request()
                .map_err(|err| ClientError::InvalidUrl {
                    url: without_query(&self.url).to_owned(),
                    reason: err.to_string(),
                })?;
        let (stream, _) = tokio_tungstenite::connect_async(request)
            .await
            .map_err(|err| ClientError::Connect {
                url: without_query(&self.url).to_owned(),
                reason: err.to_string(),
            })?;
        let (outgoing, outbox) = mpsc::channel(self.queue.max(1));
        let (events_tx, events) = mpsc::channel(self.events);
        let _ = events_tx.try_send(ClientEvent::Connected);
        tokio::spawn(run(self, stream, outbox, events_tx));
        Ok(Client { outgoing, events })
    }
}

/// A WebSocket client that answers pings and reconnects by itself. Messages sent while
/// disconnected wait (up to the queue size) and go out after the reconnect.
pub struct Client {
    outgoing: mpsc::Sender<Wire>,
    events: mpsc::Receiver<ClientEvent>,
}

impl Client {
    /// A builder for `url` (`ws://host:port/path?query`).
    pub fn builder(url: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            url: url.into(),
            min_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            max_attempts: None,
            queue: 1024,
            events: 1024,
        }
    }

    fn queue(&self, message: Wire) -> Result<(), ClientError> {
        self.outgoing.try_send(message).map_err(|err| match err {
            mpsc::error::TrySendError::Full(_) => {
                tracing::warn!("client queue full; message dropped");
                ClientError::Closed
            }
            mpsc::error::TrySendError::Closed(_) => ClientError::Closed,
        })
    }

    /// Sends a text message.
    ///
    /// # Errors
    ///
    /// [`ClientError::Closed`] when the client is closed or its queue is full.
    pub fn send_text(&self, text: impl Into<String>) -> Result<(), ClientError> {
        self.queue(Wire::text(text.into()))
    }

    /// Sends `value` as a JSON text message.
    ///
    /// # Errors
    ///
    /// [`ClientError::Json`] if it does not serialize, else as [`send_text`](Self::send_text).
    pub fn send_json<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), ClientError> {
        let text =
            serde_json::to_string(value).map_err(|err| ClientError::Json(err.to_string()))?;
        self.send_text(text)
    }

    /// The next event; `None` once the client is closed or gave up reconnecting.
    pub async fn next(&mut self) -> Option<ClientEvent> {
        self.events.recv().await
    }

    /// The next data message parsed as JSON of type `T`, skipping other events and messages that are
    /// not a `T`; `None` when the client ends.
    pub async fn next_json<T: DeserializeOwned>(&mut self) -> Option<T> {
        loop {
            if let ClientEvent::Message(message) = self.next().await? {
                if let Ok(value) = message.json::<T>() {
                    return Some(value);
                }
            }
        }
    }

    /// Closes the connection (normal closure) and stops reconnecting.
    pub fn close(&self) {
        let _ = self.outgoing.try_send(Wire::Close(None));
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("closed", &self.outgoing.is_closed())
            .finish_non_exhaustive()
    }
}

type Stream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A pseudo-random fraction in `[0.5, 1)` for jitter, from the clock (no cryptographic need).
fn jitter() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    0.5 + f64::from(nanos % 1000) / 2000.0
}

async fn run(
    config: ClientBuilder,
    mut stream: Stream,
    mut outbox: mpsc::Receiver<Wire>,
    events: mpsc::Sender<ClientEvent>,
) {
    // A message taken from the queue when the link broke goes out first after the reconnect.
    let mut pending: Option<Wire> = None;
    loop {
        let mut code = None;
        if let Some(message) = pending.take()
            && stream.send(message.clone()).await.is_err()
        {
            pending = Some(message);
        }
        let closed_by_us = loop {
            if pending.is_some() {
                break false;
            }
            tokio::select! {
                outgoing = outbox.recv() => match outgoing {
                    None => return,
                    Some(Wire::Close(frame)) => {
                        let _ = stream.close(frame).await;
                        break true;
                    }
                    Some(message) => {
                        if stream.send(message.clone()).await.is_err() {
                            pending = Some(message);
                        }
                    }
                },
                incoming = stream.next() => match incoming {
                    Some(Ok(Wire::Text(text))) => {
                        // Waits while the app has `event_queue` events unread: no reads meanwhile.
                        if events.send(ClientEvent::Message(Message::text(text.to_string()))).await.is_err() {
                            return;
                        }
                    }
                    Some(Ok(Wire::Binary(bytes))) => {
                        if events.send(ClientEvent::Message(Message::binary(bytes))).await.is_err() {
                            return;
                        }
                    }
                    Some(Ok(Wire::Close(frame))) => {
                        code = frame.map(|f| CloseCode::from(u16::from(f.code)));
                    }
                    // Pings are answered by tungstenite as part of reading.
                    Some(Ok(_)) => {}
                    None | Some(Err(_)) => break false,
                },
            }
        };
        if events
            .send(ClientEvent::Disconnected { code })
            .await
            .is_err()
        {
            return;
        }
        if closed_by_us {
            return;
        }
        // Reconnect with exponential backoff and jitter.
        let mut delay = config.min_backoff;
        let mut attempts = 0u32;
        stream = loop {
            attempts += 1;
            tokio::time::sleep(delay.mul_f64(jitter())).await;
            match tokio_tungstenite::connect_async(config.url.as_str()).await {
                Ok((stream, _)) => break stream,
                Err(err) => {
                    tracing::debug!(url = without_query(&config.url), attempts, error = %err, "reconnect failed");
                    if config.max_attempts.is_some_and(|max| attempts >= max) {
                        return;
                    }
                    delay = (delay * 2).min(config.max_backoff);
                }
            }
        };
        if events.send(ClientEvent::Connected).await.is_err() {
            return;
        }
    }
}

/// `url` without its query (which often carries a token): what errors and logs show.
fn without_query(url: &str) -> &str {
    url.split_once('?').map_or(url, |(before, _)| before)
}
