//! Helpers to test an app over a real socket: start it on an ephemeral loopback port and send it
//! requests.
//!
//! The helpers panic with a clear message when something that a test cannot go on without fails
//! (binding the port, connecting, a body that is not the JSON asked for), as assertions do.
//!
//! # Example
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use verb::prelude::*;
//! use verb::test::TestServer;
//!
//! let mut app = verb::create_server();
//! app.get("/users/:id", |req: Request| async move {
//!     Json(serde_json::json!({ "id": req.param("id") }))
//! });
//!
//! let server = TestServer::start(app).await;
//! let res = server.get("/users/42").await;
//! assert_eq!(res.status(), StatusCode::OK);
//! assert_eq!(res.json::<serde_json::Value>()["id"], "42");
//! server.stop().await;
//! # });
//! ```

use std::fmt;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;
use verb_core::{HeaderMap, HeaderName, HeaderValue, Method, ServerHandle, StatusCode};

use crate::App;

/// An app serving on `127.0.0.1` on a free port, for the length of a test.
#[derive(Debug)]
pub struct TestServer {
    addr: SocketAddr,
    /// `None` for a server started elsewhere ([`TestServer::at`]).
    handle: Option<ServerHandle>,
}

impl TestServer {
    /// Starts `app` on `127.0.0.1:0`.
    ///
    /// # Panics
    ///
    /// If the app cannot listen (its protocol needs what this build lacks, or no port is free).
    pub async fn start(app: App) -> Self {
        match app.bind("127.0.0.1:0").await {
            Ok(handle) => Self {
                addr: handle.local_addr(),
                handle: Some(handle),
            },
            Err(err) => panic!("TestServer cannot start the app: {err}"),
        }
    }

    /// The same helpers for a server started elsewhere (a Verb app mounted in axum, served by
    /// hyper, ...) listening on `addr`. [`stop`](Self::stop) and [`handle`](Self::handle) are for
    /// apps that [`start`](Self::start) started.
    pub fn at(addr: SocketAddr) -> Self {
        Self { addr, handle: None }
    }

    /// The address the app listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr(), path)
    }

    /// The server's handle (connection count, stopping).
    ///
    /// # Panics
    ///
    /// For a server that this helper did not start ([`TestServer::at`]).
    pub fn handle(&self) -> &ServerHandle {
        match &self.handle {
            Some(handle) => handle,
            None => panic!("TestServer::handle: this server was started elsewhere"),
        }
    }

    /// Sends `GET path`.
    pub async fn get(&self, path: &str) -> TestResponse {
        self.request(Method::GET, path).send().await
    }

    /// A `POST path` request to fill in and send.
    pub fn post(&self, path: &str) -> TestRequest {
        self.request(Method::POST, path)
    }

    /// A request with any method, to fill in and send.
    pub fn request(&self, method: Method, path: &str) -> TestRequest {
        TestRequest {
            addr: self.addr(),
            method,
            path: path.to_owned(),
            headers: HeaderMap::new(),
            body: Bytes::new(),
        }
    }

    /// Stops the app gracefully.
    ///
    /// # Panics
    ///
    /// If the graceful stop passes its deadline.
    pub async fn stop(self) {
        let Some(handle) = self.handle else {
            return;
        };
        if let Err(err) = handle.stop().await {
            panic!("TestServer did not stop cleanly: {err}");
        }
    }
}

/// A request being built by [`TestServer::request`].
#[must_use = "a request is sent only by `send`"]
pub struct TestRequest {
    addr: SocketAddr,
    method: Method,
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

impl TestRequest {
    /// Adds a header.
    ///
    /// # Panics
    ///
    /// If the name or value is not valid in HTTP.
    #[track_caller]
    pub fn header(mut self, name: &str, value: &str) -> Self {
        let name = HeaderName::try_from(name).expect("TestRequest: invalid header name");
        let value = HeaderValue::try_from(value).expect("TestRequest: invalid header value");
        self.headers.append(name, value);
        self
    }

    /// Sets the body as given.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// Sets the body to `value` as JSON, with `content-type: application/json`.
    ///
    /// # Panics
    ///
    /// If `value` cannot be serialized.
    #[track_caller]
    pub fn json<T: Serialize + ?Sized>(mut self, value: &T) -> Self {
        let body = serde_json::to_vec(value).expect("TestRequest: value cannot be serialized");
        self.headers.insert(
            verb_core::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        self.body = Bytes::from(body);
        self
    }

    /// Sends the request on a new connection and reads the whole response.
    ///
    /// # Panics
    ///
    /// If the connection fails or the server closes it without a response.
    pub async fn send(self) -> TestResponse {
        let stream = tokio::net::TcpStream::connect(self.addr)
            .await
            .unwrap_or_else(|err| panic!("TestRequest: cannot connect to {}: {err}", self.addr));
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap_or_else(|err| panic!("TestRequest: HTTP handshake failed: {err}"));
        tokio::spawn(conn);

        let mut req = http::Request::new(Full::new(self.body));
        *req.method_mut() = self.method;
        *req.uri_mut() = self
            .path
            .parse()
            .unwrap_or_else(|err| panic!("TestRequest: invalid path {:?}: {err}", self.path));
        *req.headers_mut() = self.headers;
        let host = HeaderValue::try_from(self.addr.to_string())
            .expect("a socket address is a valid header value");
        req.headers_mut().entry(http::header::HOST).or_insert(host);

        let res = sender
            .send_request(req)
            .await
            .unwrap_or_else(|err| panic!("TestRequest: no response: {err}"));
        let (parts, body) = res.into_parts();
        let body = body
            .collect()
            .await
            .unwrap_or_else(|err| panic!("TestRequest: cannot read the response body: {err}"))
            .to_bytes();
        TestResponse {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }
}

impl fmt::Debug for TestRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestRequest")
            .field("method", &self.method)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// A response read by a [`TestRequest`].
#[derive(Debug, Clone)]
pub struct TestResponse {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl TestResponse {
    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The value of header `name`, if present and visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)?.to_str().ok()
    }

    /// The body.
    pub fn bytes(&self) -> &Bytes {
        &self.body
    }

    /// The body as text.
    ///
    /// # Panics
    ///
    /// If the body is not UTF-8.
    #[track_caller]
    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("TestResponse: body is not UTF-8")
    }

    /// The body parsed as JSON.
    ///
    /// # Panics
    ///
    /// If the body is not JSON of type `T`.
    #[track_caller]
    pub fn json<T: DeserializeOwned>(&self) -> T {
        match serde_json::from_slice(&self.body) {
            Ok(value) => value,
            Err(err) => panic!(
                "TestResponse: body is not the JSON expected ({err}): {:?}",
                String::from_utf8_lossy(&self.body)
            ),
        }
    }
}

/// What a [`TestWs`] received.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WsEvent {
    /// A data message.
    Message(crate::Message),
    /// A ping (the client answers it by itself).
    Ping(Bytes),
    /// A pong.
    Pong(Bytes),
    /// A close frame: code and reason (`None` when the frame had no code).
    Close(Option<(crate::CloseCode, String)>),
    /// The connection ended without (further) frames.
    Gone,
}

type Stream = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// A WebSocket client connected to a [`TestServer`] (made by [`TestServer::ws`]).
pub struct TestWs {
    stream: Stream,
    protocol: Option<String>,
    headers: HeaderMap,
}

impl TestServer {
    /// Opens a WebSocket to `path` (e.g. `"/ws/lobby?token=abc"`).
    ///
    /// # Panics
    ///
    /// If the upgrade fails (use [`TestServer::try_ws`] to look at a refusal).
    pub async fn ws(&self, path: &str) -> TestWs {
        match self.try_ws(path, &[]).await {
            Ok(ws) => ws,
            Err(status) => panic!("TestServer::ws: upgrade to {path} refused with {status}"),
        }
    }

    /// Opens a WebSocket to `path` with extra request headers; a refused upgrade gives its status.
    ///
    /// # Errors
    ///
    /// The HTTP status of a refused upgrade.
    ///
    /// # Panics
    ///
    /// If the connection fails for another reason than a refusal.
    pub async fn try_ws(&self, path: &str, headers: &[(&str, &str)]) -> Result<TestWs, StatusCode> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = format!("ws://{}{}", self.addr(), path)
            .into_client_request()
            .unwrap_or_else(|err| panic!("TestServer::ws: invalid path {path:?}: {err}"));
        for (name, value) in headers {
            let name = HeaderName::try_from(*name).expect("TestServer::ws: invalid header name");
            let value =
                HeaderValue::try_from(*value).expect("TestServer::ws: invalid header value");
            request.headers_mut().append(name, value);
        }
        let tcp = tokio::net::TcpStream::connect(self.addr())
            .await
            .unwrap_or_else(|err| panic!("TestServer::ws: cannot connect: {err}"));
        match tokio_tungstenite::client_async(request, tcp).await {
            Ok((stream, response)) => Ok(TestWs {
                stream,
                protocol: response
                    .headers()
                    .get("sec-websocket-protocol")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned),
                headers: response.headers().clone(),
            }),
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => Err(response.status()),
            Err(err) => panic!("TestServer::ws: handshake failed: {err}"),
        }
    }
}

impl TestWs {
    /// The subprotocol the server chose.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    /// The headers of the server's `101` response.
    pub fn response_headers(&self) -> &HeaderMap {
        &self.headers
    }

    async fn send_raw(&mut self, message: tokio_tungstenite::tungstenite::Message) {
        use futures_util::SinkExt;
        self.stream
            .send(message)
            .await
            .unwrap_or_else(|err| panic!("TestWs: send failed: {err}"));
    }

    /// Sends a text message.
    ///
    /// # Panics
    ///
    /// If the connection is gone.
    pub async fn send_text(&mut self, text: &str) {
        self.send_raw(tokio_tungstenite::tungstenite::Message::text(text))
            .await;
    }

    /// Sends `value` as a JSON text message.
    ///
    /// # Panics
    ///
    /// If the connection is gone or `value` cannot be serialized.
    pub async fn send_json<T: Serialize + ?Sized>(&mut self, value: &T) {
        let text = serde_json::to_string(value).expect("TestWs: value cannot be serialized");
        self.send_text(&text).await;
    }

    /// Sends a binary message.
    ///
    /// # Panics
    ///
    /// If the connection is gone.
    pub async fn send_binary(&mut self, bytes: &[u8]) {
        self.send_raw(tokio_tungstenite::tungstenite::Message::binary(
            bytes.to_vec(),
        ))
        .await;
    }

    /// Sends a ping.
    ///
    /// # Panics
    ///
    /// If the connection is gone.
    pub async fn ping(&mut self, payload: &[u8]) {
        self.send_raw(tokio_tungstenite::tungstenite::Message::Ping(
            Bytes::copy_from_slice(payload),
        ))
        .await;
    }

    /// Starts the closing handshake.
    ///
    /// # Panics
    ///
    /// If the connection is gone.
    pub async fn close(&mut self, code: u16, reason: &str) {
        use tokio_tungstenite::tungstenite::protocol::CloseFrame;
        self.send_raw(tokio_tungstenite::tungstenite::Message::Close(Some(
            CloseFrame {
                code: code.into(),
                reason: reason.into(),
            },
        )))
        .await;
    }

    /// The next event, waiting at most 10 seconds (of test time).
    ///
    /// # Panics
    ///
    /// If nothing arrives in time.
    pub async fn next_event(&mut self) -> WsEvent {
        use futures_util::StreamExt;
        use tokio_tungstenite::tungstenite::Message as T;
        let next = tokio::time::timeout(std::time::Duration::from_secs(10), self.stream.next())
            .await
            .unwrap_or_else(|_| panic!("TestWs: nothing arrived within 10 s"));
        match next {
            None | Some(Err(_)) => WsEvent::Gone,
            Some(Ok(T::Text(text))) => WsEvent::Message(crate::Message::text(text.to_string())),
            Some(Ok(T::Binary(bytes))) => WsEvent::Message(crate::Message::binary(bytes)),
            Some(Ok(T::Ping(bytes))) => WsEvent::Ping(bytes),
            Some(Ok(T::Pong(bytes))) => WsEvent::Pong(bytes),
            Some(Ok(T::Close(frame))) => WsEvent::Close(frame.map(|f| {
                (
                    crate::CloseCode::from(u16::from(f.code)),
                    f.reason.to_string(),
                )
            })),
            // Raw frames are only ever written by tungstenite, never yielded by a read.
            Some(Ok(T::Frame(_))) => WsEvent::Gone,
        }
    }

    /// The next data message, skipping pings and pongs.
    ///
    /// # Panics
    ///
    /// If a close or the end of the connection comes first, or nothing arrives in time.
    pub async fn recv(&mut self) -> crate::Message {
        loop {
            match self.next_event().await {
                WsEvent::Message(message) => return message,
                WsEvent::Ping(_) | WsEvent::Pong(_) => {}
                other => panic!("TestWs: expected a message, got {other:?}"),
            }
        }
    }

    /// The next message as text.
    ///
    /// # Panics
    ///
    /// As [`recv`](Self::recv), or if the message is binary.
    pub async fn recv_text(&mut self) -> String {
        match self.recv().await.as_text() {
            Some(text) => text.to_owned(),
            None => panic!("TestWs: expected text, got binary"),
        }
    }

    /// The next message parsed as JSON.
    ///
    /// # Panics
    ///
    /// As [`recv`](Self::recv), or if the message is not JSON of type `T`.
    pub async fn recv_json<T: DeserializeOwned>(&mut self) -> T {
        let message = self.recv().await;
        message
            .json()
            .unwrap_or_else(|err| panic!("TestWs: {err}: {message:?}"))
    }

    /// Waits for the server's close frame, skipping messages, pings and pongs; its code and reason.
    ///
    /// # Panics
    ///
    /// If the connection ends without a close frame.
    pub async fn recv_close(&mut self) -> (crate::CloseCode, String) {
        loop {
            match self.next_event().await {
                WsEvent::Close(Some(close)) => return close,
                WsEvent::Close(None) => return (crate::CloseCode::NO_STATUS, String::new()),
                WsEvent::Gone => panic!("TestWs: the connection ended without a close frame"),
                _ => {}
            }
        }
    }
}

impl fmt::Debug for TestWs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestWs")
            .field("protocol", &self.protocol)
            .finish_non_exhaustive()
    }
}
