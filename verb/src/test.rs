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
    handle: ServerHandle,
}

impl TestServer {
    /// Starts `app` on `127.0.0.1:0`.
    ///
    /// # Panics
    ///
    /// If the app cannot listen (its protocol needs what this build lacks, or no port is free).
    pub async fn start(app: App) -> Self {
        match app.bind("127.0.0.1:0").await {
            Ok(handle) => Self { handle },
            Err(err) => panic!("TestServer cannot start the app: {err}"),
        }
    }

    /// The address the app listens on.
    pub fn addr(&self) -> SocketAddr {
        self.handle.local_addr()
    }

    /// `http://127.0.0.1:PORT` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr(), path)
    }

    /// The server's handle (connection count, stopping).
    pub fn handle(&self) -> &ServerHandle {
        &self.handle
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
        if let Err(err) = self.handle.stop().await {
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
