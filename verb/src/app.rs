//! The application: routes, middleware and configuration, then `listen`.

use std::fmt;
use std::sync::Arc;

use crate::monitor::{MetricsError, Stats};
use verb_core::service::{HandlerCall, HttpService};
use verb_core::{
    BodyMode, BoxFuture, BoxHandler, BoxMiddleware, Chain, Error, Handler, HandlerService,
    HeaderValue, HttpError, IntoResponse, Lifecycle, ListenAddr, Method, Middleware, Params,
    Request, Response, Server, ServerConfig, ServerHandle, ServiceHandler, StatusCode, TlsConfig,
    header,
};
use verb_rooms::{Delivery, Rooms};
use verb_router::{Miss, Router};
use verb_ws::{ConnectionCount, Message, Ws};

/// What a server speaks, as in the docs' `createServer(ServerProtocol.WEBSOCKET)`.
///
/// Every protocol serves HTTP routes. `WebSocket` and `WebSockets` are for apps whose main job is a
/// WebSocket endpoint; `Https` and `WebSockets` listen with TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum ServerProtocol {
    /// Plain HTTP/1.1 (the default).
    #[default]
    Http,
    /// HTTP/1.1 over TLS.
    Https,
    /// Plain HTTP/1.1 with WebSocket upgrades (`ws://`).
    WebSocket,
    /// HTTP/1.1 and WebSocket upgrades over TLS (`wss://`).
    WebSockets,
}

impl ServerProtocol {
    /// Whether this protocol listens with TLS.
    pub fn is_tls(self) -> bool {
        matches!(self, ServerProtocol::Https | ServerProtocol::WebSockets)
    }
}

/// An HTTP application: add routes and middleware, then [`listen`](App::listen).
///
/// Made by [`create_server`](crate::create_server) or [`create_server_with`](crate::create_server_with).
///
/// # Example
///
/// ```no_run
/// use verb::prelude::*;
///
/// #[tokio::main]
/// async fn main() -> Result<(), verb::Error> {
///     let mut app = verb::create_server();
///     app.get("/", |_req| async { Response::html("<h1>Hello</h1>") });
///     app.get("/users/:id", |req: Request| async move {
///         Json(serde_json::json!({ "id": req.param("id") }))
///     });
///     app.listen(3000).await
/// }
/// ```
///
/// # Routes
///
/// Paths are written as in Express: `/users/:id` captures a segment, `/files/*rest` the rest of the
/// path (matchit's `{id}` / `{*rest}` work too). A static segment wins over a parameter. A request whose
/// path matches no route gets `404`; one whose path matches but not its method gets `405` with an `Allow`
/// header. `HEAD` is answered by the `GET` route (without the body).
///
/// # Middleware
///
/// [`App::middleware`] (alias `App::r#use`) adds middleware that runs for every request, routed or
/// not, in registration order; [`Route::middleware`] adds middleware to one route, which runs after the
/// app's. A middleware may answer early or call `next.run(req)`.
pub struct App {
    protocol: ServerProtocol,
    router: Router<usize>,
    routes: Vec<RouteEntry>,
    middleware: Vec<BoxMiddleware>,
    config: ServerConfig,
    websocket: Option<RouteEntry>,
    ws_count: ConnectionCount,
    rooms: Rooms,
    tls: Option<TlsConfig>,
    /// tower layers around the whole app, innermost first.
    layers: Vec<LayerFn>,
    /// The lifecycles of whoever serves the app (readiness reads them).
    serving: Serving,
}

/// The lifecycles the frozen app is served under: one per server (or tower service) serving it.
#[derive(Clone, Default)]
struct Serving(Arc<std::sync::Mutex<Vec<Lifecycle>>>);

impl Serving {
    fn add(&self, lifecycle: &Lifecycle) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(lifecycle.clone());
    }

    /// Whether a graceful stop has begun for any of them.
    fn is_stopping(&self) -> bool {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .any(Lifecycle::is_shutting_down)
    }
}

/// A tower layer, type-erased: wraps the app's handler.
type LayerFn = Box<dyn FnOnce(BoxHandler) -> BoxHandler + Send + Sync>;

struct RouteEntry {
    handler: BoxHandler,
    middleware: Vec<BoxMiddleware>,
    is_ws: bool,
    /// A WebSocket endpoint's origin policy, run before the app's middleware and the route's.
    guard: Option<BoxMiddleware>,
    /// How the route takes its body, when [`Route::stream_body`] said (else its handler's say).
    body_mode: Option<BodyMode>,
}

impl App {
    pub(crate) fn new(protocol: ServerProtocol) -> Self {
        Self {
            protocol,
            router: Router::new(),
            routes: Vec::new(),
            middleware: Vec::new(),
            config: ServerConfig::default(),
            websocket: None,
            ws_count: ConnectionCount::new(),
            rooms: Rooms::new(),
            tls: None,
            layers: Vec::new(),
            serving: Serving::default(),
        }
    }

    /// A liveness probe on `path`: `GET` answers `200 {"status":"ok"}` while the process serves.
    ///
    /// # Panics
    ///
    /// As [`route`](Self::route).
    #[track_caller]
    pub fn health(&mut self, path: &str) -> Route<'_> {
        self.get(path, |_req| async {
            Response::json(&serde_json::json!({ "status": "ok" }))
        })
    }

    /// A readiness probe on `path`: `GET` answers `200 {"status":"ready"}`, and `503` (the usual JSON
    /// error, `Retry-After: 5`) from the moment a graceful stop of the server serving the app begins,
    /// so a load balancer stops sending new clients while the open ones are told goodbye.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let mut app = verb::create_server();
    /// app.health("/healthz");
    /// app.readiness("/readyz");
    /// let server = verb::test::TestServer::start(app).await;
    /// assert_eq!(server.get("/readyz").await.status(), 200);
    /// # server.stop().await;
    /// # });
    /// ```
    ///
    /// # Panics
    ///
    /// As [`route`](Self::route).
    #[track_caller]
    pub fn readiness(&mut self, path: &str) -> Route<'_> {
        let serving = self.serving.clone();
        self.get(path, move |_req| {
            let stopping = serving.is_stopping();
            async move {
                if stopping {
                    HttpError::new(StatusCode::SERVICE_UNAVAILABLE, "the server is stopping")
                        .into_response()
                        .header(header::RETRY_AFTER, "5")
                } else {
                    Response::json(&serde_json::json!({ "status": "ready" }))
                }
            }
        })
    }

    /// The protocol this app was created for.
    pub fn protocol(&self) -> ServerProtocol {
        self.protocol
    }

    /// Adds a route for `method` on `path`.
    ///
    /// # Panics
    ///
    /// If the path is malformed, conflicts with a route already added (the message names both), or
    /// `method` is an extension method (use [`all`](Self::all) for those).
    #[track_caller]
    pub fn route(&mut self, method: Method, path: &str, handler: impl Handler) -> Route<'_> {
        let Some(method) = router_method(&method) else {
            panic!("cannot route extension method {method}; use `App::all` for it");
        };
        let index = self.routes.len();
        if let Err(err) = self.router.route(method, path, index) {
            panic!("{err}");
        }
        self.push_route(handler)
    }

    fn push_route(&mut self, handler: impl Handler) -> Route<'_> {
        let index = self.routes.len();
        self.routes.push(RouteEntry {
            handler: Arc::new(handler),
            middleware: Vec::new(),
            is_ws: false,
            guard: None,
            body_mode: None,
        });
        Route { app: self, index }
    }

    /// Adds a `GET` route (which also answers `HEAD`).
    ///
    /// ```
    /// # let mut app = verb::create_server();
    /// use verb::prelude::*;
    /// app.get("/users/:id", |req: Request| async move {
    ///     format!("user {}", req.param("id").unwrap_or_default())
    /// });
    /// ```
    ///
    /// # Panics
    ///
    /// As [`route`](Self::route).
    #[track_caller]
    pub fn get(&mut self, path: &str, handler: impl Handler) -> Route<'_> {
        self.route(Method::GET, path, handler)
    }

    /// Adds a `POST` route.
    ///
    /// ```
    /// # let mut app = verb::create_server();
    /// use verb::prelude::*;
    /// #[derive(serde::Deserialize, serde::Serialize)]
    /// struct Note { text: String }
    ///
    /// app.post("/notes", |req: Request| async move {
    ///     let note: Note = req.json()?; // bad JSON → 400 with a JSON error
    ///     Ok::<_, HttpError>((StatusCode::CREATED, Json(note)))
    /// });
    /// ```
    ///
    /// # Panics
    ///
    /// As [`route`](Self::route).
    #[track_caller]
    pub fn post(&mut self, path: &str, handler: impl Handler) -> Route<'_> {
        self.route(Method::POST, path, handler)
    }

    /// Adds a `PUT` route.
    ///
    /// # Panics
    ///
    /// As [`route`](Self::route).
    #[track_caller]
    pub fn put(&mut self, path: &str, handler: impl Handler) -> Route<'_> {
        self.route(Method::PUT, path, handler)
    }

    /// Adds a `PATCH` route.
    ///
    /// # Panics
    ///
    /// As [`route`](Self::route).
    #[track_caller]
    pub fn patch(&mut self, path: &str, handler: impl Handler) -> Route<'_> {
        self.route(Method::PATCH, path, handler)
    }

    /// Adds a `DELETE` route.
    ///
    /// # Panics
    ///
    /// As [`route`](Self::route).
    #[track_caller]
    pub fn delete(&mut self, path: &str, handler: impl Handler) -> Route<'_> {
        self.route(Method::DELETE, path, handler)
    }

    /// Adds an `OPTIONS` route.
    ///
    /// # Panics
    ///
    /// As [`route`](Self::route).
    #[track_caller]
    pub fn options(&mut self, path: &str, handler: impl Handler) -> Route<'_> {
        self.route(Method::OPTIONS, path, handler)
    }

    /// Adds a route answering every method on `path` that has no route of its own.
    ///
    /// # Panics
    ///
    /// As [`route`](Self::route).
    #[track_caller]
    pub fn all(&mut self, path: &str, handler: impl Handler) -> Route<'_> {
        let index = self.routes.len();
        if let Err(err) = self.router.any(path, index) {
            panic!("{err}");
        }
        self.push_route(handler)
    }

    /// Serves WebSocket upgrades on `path` with the endpoint `ws`, as the docs' `app.ws(path, {...})`.
    ///
    /// `open` sees the upgrade request with its params (`/ws/:room`), query and whatever middleware
    /// attached; route middleware ([`Route::middleware`]) runs before the upgrade and may refuse it with
    /// an HTTP response. Other paths keep serving HTTP.
    ///
    /// ```
    /// use verb::prelude::*;
    ///
    /// let mut app = verb::create_server();
    /// app.ws("/ws/:room", Ws::new()
    ///     .open(|ws: &WebSocket, req: &Request| {
    ///         ws.send_text(format!("welcome to {}", req.param("room").unwrap_or_default()));
    ///     })
    ///     .message(|ws: &WebSocket, msg: Message| {
    ///         ws.send(msg);
    ///     }));
    /// ```
    ///
    /// # Panics
    ///
    /// As [`route`](Self::route).
    #[track_caller]
    pub fn ws(&mut self, path: &str, ws: Ws) -> Route<'_> {
        let ws = self.endpoint(ws);
        let guard: BoxMiddleware = Arc::new(ws.get_origin_policy().clone());
        let route = self.route(Method::GET, path, ws);
        // HTTP/2 opens WebSockets with an extended CONNECT (RFC 8441) on the same path.
        if let Err(err) = route
            .app
            .router
            .route(verb_router::Method::Connect, path, route.index)
        {
            panic!("{err}");
        }
        let entry = &mut route.app.routes[route.index];
        entry.is_ws = true;
        entry.guard = Some(guard);
        route
    }

    /// Serves WebSocket upgrades on every path, as the docs' `createServer(ServerProtocol.WEBSOCKET)`
    /// with `app.websocket({...})`: a request with `Upgrade: websocket` goes to `ws` unless an
    /// [`App::ws`] route matches it; other requests keep reaching the HTTP routes (so `GET /` can serve
    /// a page while `ws://host:3000/` upgrades).
    pub fn websocket(&mut self, ws: Ws) -> &mut Self {
        let ws = self.endpoint(ws);
        let guard: BoxMiddleware = Arc::new(ws.get_origin_policy().clone());
        self.websocket = Some(RouteEntry {
            handler: Arc::new(ws),
            middleware: Vec::new(),
            is_ws: true,
            guard: Some(guard),
            body_mode: None,
        });
        self
    }

    /// Counts an endpoint's connections with the app's, and attaches the app's hub unless the endpoint
    /// brought its own.
    fn endpoint(&self, ws: Ws) -> Ws {
        let ws = ws.count_into(&self.ws_count);
        if ws.attachment::<Rooms>().is_some() {
            ws
        } else {
            ws.attach(self.rooms.clone())
        }
    }

    /// The app's [`Rooms`] hub: rooms, topics, direct messages and presence for every WebSocket
    /// endpoint of the app. Clone it to publish from elsewhere (a timer, an HTTP handler); it stays
    /// valid after `listen`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use verb::prelude::*;
    ///
    /// let mut app = verb::create_server();
    /// app.ws("/feed", verb::ws().open(|ws: &WebSocket, _req| {
    ///     ws.subscribe("ticks");
    /// }));
    /// let rooms = app.rooms().clone();
    /// # let _ = async move {
    /// tokio::spawn(async move {
    ///     let mut tick = tokio::time::interval(Duration::from_secs(1));
    ///     loop {
    ///         tick.tick().await;
    ///         rooms.publish("ticks", "tick");
    ///     }
    /// });
    /// # };
    /// ```
    pub fn rooms(&self) -> &Rooms {
        &self.rooms
    }

    /// Bun's `server.publish(topic, message)`: sends `message` to every subscriber of `topic`, framed
    /// once. Same as `app.rooms().publish(topic, message)`.
    pub fn publish(&self, topic: &str, message: impl Into<Message>) -> Delivery {
        self.rooms.publish(topic, message)
    }

    /// Serves Prometheus metrics (text format) on `GET path`, installing the Prometheus recorder for
    /// the process if none is. Call it before `listen`.
    ///
    /// Verb counts through the `metrics` facade, so any recorder sees its counters; `app.metrics(path)`
    /// installs the Prometheus one (metrics-exporter-prometheus) and serves its text. What is counted:
    ///
    /// | name | kind | what |
    /// |---|---|---|
    /// | `verb_http_connections_open` | gauge | open HTTP connections (an upgraded one moves to the WebSocket gauge) |
    /// | `verb_http_requests_total{status}` | counter | responses, by status |
    /// | `verb_ws_connections_open` | gauge | open WebSockets |
    /// | `verb_ws_upgrades_total{result, status, http}` | counter | upgrades accepted (`101`, or `200` over HTTP/2) or refused, by status and HTTP version |
    /// | `verb_ws_messages_received_total`, `verb_ws_bytes_received_total` | counter | data messages in |
    /// | `verb_ws_messages_sent_total`, `verb_ws_bytes_sent_total` | counter | data messages queued out |
    /// | `verb_ws_backpressure_total{event}` | counter | sends over the limit (`backpressured`) or refused (`dropped`) |
    /// | `verb_ws_closes_total{code}` | counter | connections ended, by close code (`1000`–`1015`; peer codes folded into `3xxx`, `4xxx`, `other`) |
    /// | `verb_rooms_rooms` | gauge | rooms with members |
    /// | `verb_rooms_fanouts_total`, `verb_rooms_deliveries_total{result}` | counter | fan-outs and their deliveries |
    ///
    /// Counters register when first used by an endpoint or hub, so install a recorder (or call
    /// `app.metrics`) before serving.
    ///
    /// ```
    /// let mut app = verb::create_server();
    /// app.metrics("/metrics").expect("no other metrics recorder in this process");
    /// ```
    ///
    /// # Errors
    ///
    /// [`MetricsError::RecorderInstalled`] if another recorder is installed in this process.
    #[track_caller]
    pub fn metrics(&mut self, path: &str) -> Result<Route<'_>, MetricsError> {
        let handle = crate::monitor::prometheus()?;
        Ok(self.get(path, move |_req| {
            handle.run_upkeep();
            let text = handle.render();
            async move {
                Response::text(text).header(
                    verb_core::header::CONTENT_TYPE,
                    "text/plain; version=0.0.4; charset=utf-8",
                )
            }
        }))
    }

    /// With the `redis` feature: when `VERB_REDIS_URL` is set and the hub has no backplane yet, rooms
    /// span every process that uses the same Redis.
    #[cfg(feature = "redis")]
    fn redis_from_env(&self) -> Result<(), Error> {
        let Ok(url) = std::env::var("VERB_REDIS_URL") else {
            return Ok(());
        };
        if self.rooms.has_backplane() {
            return Ok(());
        }
        let invalid = |_| Error::Unsupported {
            protocol: "VERB_REDIS_URL",
            reason: "not a valid redis:// URL",
        };
        let backplane = verb_rooms::RedisBackplane::new(&url).map_err(invalid)?;
        tracing::info!(%url, node = backplane.node_id(), "rooms span nodes through Redis (VERB_REDIS_URL)");
        self.rooms.set_backplane(backplane).map_err(invalid)
    }

    /// A live view of the app's WebSockets and rooms, for a JSON status endpoint.
    pub fn stats(&self) -> Stats {
        Stats {
            websockets: self.ws_count.clone(),
            rooms: self.rooms.clone(),
        }
    }

    /// The number of WebSockets open on this app's endpoints, live (keep the handle; it stays valid
    /// after `listen`).
    pub fn connections(&self) -> ConnectionCount {
        self.ws_count.clone()
    }

    /// Adds middleware that runs for every request, in registration order (before route middleware).
    ///
    /// ```
    /// # let mut app = verb::create_server();
    /// use verb::prelude::*;
    /// app.middleware(|req: Request, next: Next| async move {
    ///     if req.header("authorization").is_none() {
    ///         return HttpError::unauthorized("log in first").into_response();
    ///     }
    ///     next.run(req).await
    /// });
    /// ```
    pub fn middleware(&mut self, middleware: impl Middleware) -> &mut Self {
        self.middleware.push(Arc::new(middleware));
        self
    }

    /// The docs' `app.use(middleware)`: the same as [`middleware`](Self::middleware).
    pub fn r#use(&mut self, middleware: impl Middleware) -> &mut Self {
        self.middleware(middleware)
    }

    /// Wraps the whole app in a tower [`Layer`](tower_layer::Layer) over `http::Request` /
    /// `http::Response`: tower-http's `CorsLayer`, `CompressionLayer`, `TimeoutLayer`, `TraceLayer`,
    /// `SetRequestIdLayer`, ... It sees every request (HTTP routes, misses and WebSocket upgrades,
    /// before the `101`) as an `http::Request<Body>` whose body has already been read within the
    /// body limit, and every response on its way out.
    ///
    /// Order: layers run before all of Verb's middleware (app, route, and a WebSocket endpoint's
    /// origin check), and a layer added later wraps those added before it (it runs first), as in
    /// axum.
    ///
    /// ```
    /// # let mut app = verb::create_server();
    /// // Any tower layer; `tower_layer::layer_fn(|s| s)` is one that passes requests on.
    /// app.layer(tower_layer::layer_fn(|inner| inner));
    /// ```
    pub fn layer<L>(&mut self, layer: L) -> &mut Self
    where
        L: tower_layer::Layer<HandlerCall> + Send + Sync + 'static,
        L::Service: HttpService,
    {
        self.layers.push(Box::new(move |inner| {
            verb_core::service::layer(inner, layer)
        }));
        self
    }

    /// Serves every method on `path` with a tower service (axum's `Router` or handler service,
    /// tower-http's `ServeFile`, ...), which sees the request as it came, path included.
    ///
    /// # Panics
    ///
    /// As [`route`](Self::route).
    #[track_caller]
    pub fn route_service<S: HttpService>(&mut self, path: &str, service: S) -> Route<'_> {
        self.all(path, ServiceHandler::new(service))
    }

    /// Serves `prefix` and every path under it with a tower service, which sees the path without the
    /// prefix (`/static/app.js` → `/app.js`; `/static` → `/`), as axum's `nest_service` does:
    /// tower-http's `ServeDir`, or a whole axum `Router`.
    ///
    /// ```
    /// use verb::{Body, Request};
    ///
    /// let mut app = verb::create_server();
    /// // Any tower service; here, another Verb app turned into one.
    /// let mut api = verb::create_server();
    /// api.get("/health", |_req| async { "ok" });
    /// app.nest_service("/api", api.into_service());
    /// ```
    ///
    /// # Panics
    ///
    /// If `prefix` does not start with `/`, ends with `/`, holds a parameter, or conflicts with
    /// another route.
    #[track_caller]
    pub fn nest_service<S: HttpService>(&mut self, prefix: &str, service: S) -> &mut Self {
        assert!(
            prefix.starts_with('/') && !prefix.ends_with('/') && !prefix.contains([':', '*', '{']),
            "nest_service prefix `{prefix}` must start with `/`, not end with `/`, and hold no parameter"
        );
        let nested = Nested {
            prefix_len: prefix.len(),
            inner: ServiceHandler::new(service),
        };
        self.all(prefix, nested.clone());
        self.all(&format!("{prefix}/*__verb_nested"), nested);
        self
    }

    /// Freezes the app into a tower service (`tower::Service<http::Request<B>>` for any body), to
    /// serve it with hyper, nest it in axum (`Router::nest_service("/chat", app.into_service())`) or
    /// wrap it in tower middleware. Its WebSockets run over the host server's upgraded connections
    /// with every limit, callback, room and compression setting they have standalone. A graceful
    /// stop of the host does not reach them by itself: call
    /// [`stop_handle`](HandlerService::stop_handle)`().stop()` when the host stops (close 1001).
    ///
    /// The app's [`ServerConfig`] body limits apply; its connection limits and timeouts are the
    /// host's business. Over TLS, set [`tls`](Self::tls) (any config) so that the request's own
    /// origin has the `https` scheme.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use tower_service::Service;
    ///
    /// let mut app = verb::create_server();
    /// app.get("/health", |_req| async { "ok" });
    /// let mut service = app.into_service();
    /// let req = http::Request::get("/health").body(verb::Body::empty()).unwrap();
    /// assert_eq!(service.call(req).await.unwrap().status(), 200);
    /// # });
    /// ```
    pub fn into_service(self) -> HandlerService {
        #[cfg(feature = "redis")]
        if let Err(err) = self.redis_from_env() {
            tracing::error!(error = %err, "VERB_REDIS_URL ignored");
        }
        let secure = self.tls.is_some();
        let (handler, config, _) = self.into_parts();
        HandlerService::from_boxed(handler, &config, secure)
    }

    /// Replaces the server configuration (limits and timeouts; see [`ServerConfig`]).
    pub fn config(&mut self, config: ServerConfig) -> &mut Self {
        self.config = config;
        self
    }

    /// The server configuration.
    pub fn server_config(&self) -> &ServerConfig {
        &self.config
    }

    /// Freezes the routes and middleware into one handler (what the server runs).
    pub fn into_handler(self) -> BoxHandler {
        self.into_parts().0
    }

    fn into_parts(self) -> (BoxHandler, ServerConfig, ServerProtocol) {
        let global = &self.middleware;
        let chain = |route: RouteEntry| {
            // A WebSocket endpoint's origin check comes first: a cross-site upgrade reaches no auth,
            // limit or app code.
            let mut middleware: Vec<BoxMiddleware> = route.guard.into_iter().collect();
            middleware.extend(global.iter().cloned());
            middleware.extend(route.middleware);
            Chain::new(middleware, route.handler)
        };
        let is_ws: Vec<bool> = self.routes.iter().map(|r| r.is_ws).collect();
        let body_modes: Vec<Option<BodyMode>> = self.routes.iter().map(|r| r.body_mode).collect();
        let websocket = self.websocket.map(chain);
        let chains = self.routes.into_iter().map(chain).collect();
        let miss = Chain::new(self.middleware, Arc::new(answer_miss));
        let dispatcher = Dispatcher {
            router: self.router,
            chains,
            is_ws,
            body_modes,
            websocket,
            miss,
            serving: self.serving,
        };
        let handler = self
            .layers
            .into_iter()
            .fold(Arc::new(dispatcher) as BoxHandler, |inner, layer| {
                layer(inner)
            });
        (handler, self.config, self.protocol)
    }

    /// Serves over TLS with `tls` (HTTPS, and WSS for WebSockets). Required for
    /// `ServerProtocol::Https` and `ServerProtocol::WebSockets`; setting it on another protocol
    /// serves that app over TLS too.
    ///
    /// ```
    /// use verb::{DevCertificate, ServerProtocol};
    ///
    /// let mut app = verb::create_server_with(ServerProtocol::WebSockets);
    /// // In production: TlsConfig::from_pem_files("cert.pem", "key.pem")?
    /// app.tls(DevCertificate::generate(["localhost"])?.tls_config()?);
    /// # Ok::<(), verb::TlsError>(())
    /// ```
    pub fn tls(&mut self, tls: TlsConfig) -> &mut Self {
        self.tls = Some(tls);
        self
    }

    /// Freezes the app into a [`Server`], to serve it in ways `listen` does not: for instance plain
    /// HTTP and TLS side by side (`server.clone().without_tls().bind(80)` and `server.bind(443)`).
    ///
    /// # Errors
    ///
    /// [`Error::Unsupported`] for a TLS protocol without [`tls`](Self::tls).
    pub fn into_server(self) -> Result<Server, Error> {
        #[cfg(feature = "redis")]
        self.redis_from_env()?;
        let tls = self.tls.clone();
        let (handler, config, protocol) = self.into_parts();
        let server = Server::from_boxed(handler).config(config);
        match (tls, protocol.is_tls()) {
            (Some(tls), _) => Ok(server.tls(tls)),
            (None, false) => Ok(server),
            (None, true) => Err(Error::Unsupported {
                protocol: match protocol {
                    ServerProtocol::Https => "ServerProtocol::Https",
                    _ => "ServerProtocol::WebSockets",
                },
                reason: "no certificate: call app.tls(TlsConfig::from_pem_files(cert, key)?) first",
            }),
        }
    }

    /// Listens on `addr` (a port such as `3000`, or `"127.0.0.1:0"`), logs `listening on http://ADDR`,
    /// and serves until Ctrl-C or SIGTERM, then stops gracefully.
    ///
    /// # Errors
    ///
    /// When the address cannot be bound, or a graceful stop passes its deadline.
    pub async fn listen(self, addr: impl Into<ListenAddr>) -> Result<(), Error> {
        self.into_server()?.listen(addr).await
    }

    /// Listens on `addr` and serves in the background; the handle tells the address and stops the server.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let mut app = verb::create_server();
    /// app.get("/", |_req| async { "hi" });
    /// let server = app.bind("127.0.0.1:0").await?;
    /// println!("serving on {}", server.local_addr());
    /// server.stop().await?;
    /// # Ok::<(), verb::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// When the address cannot be bound.
    pub async fn bind(self, addr: impl Into<ListenAddr>) -> Result<ServerHandle, Error> {
        self.into_server()?.bind(addr).await
    }
}

impl fmt::Debug for App {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("App")
            .field("protocol", &self.protocol)
            .field("routes", &self.routes.len())
            .field("middleware", &self.middleware.len())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// A route just added, to attach route-level middleware to.
///
/// ```
/// # let mut app = verb::create_server();
/// use verb::prelude::*;
/// app.get("/admin", |_req| async { "secret" })
///     .middleware(|req: Request, next: Next| async move {
///         if req.header("x-role") == Some("admin") {
///             next.run(req).await
///         } else {
///             HttpError::forbidden("admins only").into_response()
///         }
///     });
/// ```
pub struct Route<'a> {
    app: &'a mut App,
    index: usize,
}

impl Route<'_> {
    /// Hands this route its body unread, to read as it arrives with
    /// [`Request::body_stream`](verb_core::Request::body_stream), up to `limit` bytes (which may be
    /// above the server's body limit): an upload is written out as it comes instead of being held in
    /// memory. A declared `Content-Length` over `limit` gets `413` before the handler runs; a body
    /// that grows past it ends its stream with an error (`HttpError::from` it for the `413`).
    ///
    /// ```
    /// use futures_util::StreamExt;
    /// use verb::prelude::*;
    ///
    /// let mut app = verb::create_server();
    /// app.post("/upload", |mut req: Request| async move {
    ///     let mut body = req.body_stream();
    ///     let mut total = 0;
    ///     while let Some(chunk) = body.next().await {
    ///         total += chunk?.len();
    ///     }
    ///     Ok::<_, HttpError>(format!("{total} bytes"))
    /// })
    /// .stream_body(1 << 30);
    /// ```
    pub fn stream_body(self, limit: u64) -> Self {
        self.app.routes[self.index].body_mode = Some(BodyMode::Streamed { limit: Some(limit) });
        self
    }

    /// Adds middleware to this route only; it runs after the app's middleware, in registration order.
    pub fn middleware(self, middleware: impl Middleware) -> Self {
        self.app.routes[self.index]
            .middleware
            .push(Arc::new(middleware));
        self
    }
}

impl fmt::Debug for Route<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Route")
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

fn router_method(method: &Method) -> Option<verb_router::Method> {
    use verb_router::Method as M;
    Some(match *method {
        Method::GET => M::Get,
        Method::HEAD => M::Head,
        Method::POST => M::Post,
        Method::PUT => M::Put,
        Method::PATCH => M::Patch,
        Method::DELETE => M::Delete,
        Method::OPTIONS => M::Options,
        Method::CONNECT => M::Connect,
        Method::TRACE => M::Trace,
        _ => return None,
    })
}

/// The frozen app: routes each request to its chain, or to the miss chain (app middleware, then 404/405).
struct Dispatcher {
    router: Router<usize>,
    chains: Vec<Chain>,
    /// Which routes are WebSocket endpoints (`App::ws`).
    is_ws: Vec<bool>,
    /// Routes that said how they take their body ([`Route::stream_body`]).
    body_modes: Vec<Option<BodyMode>>,
    /// Where the lifecycles of those serving the app go ([`App::readiness`]).
    serving: Serving,
    /// The any-path WebSocket endpoint (`App::websocket`).
    websocket: Option<Chain>,
    miss: Chain,
}

/// Why the miss chain runs: set on the request for [`answer_miss`].
#[derive(Clone)]
enum MissReason {
    NotFound,
    MethodNotAllowed(HeaderValue),
    BadParam(String),
}

impl Handler for Dispatcher {
    fn serving(&self, lifecycle: &Lifecycle) {
        self.serving.add(lifecycle);
    }

    /// The matched route's: a routing lookup for requests that have a body to read.
    fn body_mode(&self, head: &http::request::Parts) -> BodyMode {
        let Ok(found) = self.router.at(head.method.as_str(), head.uri.path()) else {
            return BodyMode::Buffered;
        };
        let index = *found.value;
        self.body_modes[index].unwrap_or_else(|| self.chains[index].body_mode(head))
    }

    fn call(&self, mut req: Request) -> BoxFuture<Response> {
        let found = match self.router.at(req.method().as_str(), req.path()) {
            Ok(found) => {
                let mut params = Params::default();
                let mut bad = None;
                for (name, raw) in found.params.iter() {
                    if let Err(err) = params.push_encoded(name, raw) {
                        bad = Some(err.to_string());
                        break;
                    }
                }
                match bad {
                    None => Ok((*found.value, params)),
                    Some(message) => Err(MissReason::BadParam(message)),
                }
            }
            Err(Miss::NotFound) => Err(MissReason::NotFound),
            Err(Miss::MethodNotAllowed { allow }) => Err(MissReason::MethodNotAllowed(
                // Method names are ASCII tokens joined by ", ", always a valid header value.
                HeaderValue::from_str(&allow.to_string()).unwrap_or(HeaderValue::from_static("")),
            )),
        };
        if let Some(websocket) = &self.websocket {
            let routed_to_ws = matches!(&found, Ok((index, _)) if self.is_ws[*index]);
            if !routed_to_ws && verb_ws::is_websocket_request(&req) {
                return websocket.call(req);
            }
        }
        match found {
            Ok((index, params)) => {
                *req.params_mut() = params;
                self.chains[index].call(req)
            }
            Err(reason) => {
                req.extensions_mut().insert(reason);
                self.miss.call(req)
            }
        }
    }
}

/// A tower service mounted under a prefix: it sees the path without it.
#[derive(Clone)]
struct Nested<S> {
    prefix_len: usize,
    inner: ServiceHandler<S>,
}

impl<S> Handler for Nested<S>
where
    ServiceHandler<S>: Handler,
    S: Send + Sync + 'static,
{
    fn body_mode(&self, head: &http::request::Parts) -> BodyMode {
        self.inner.body_mode(head)
    }

    fn call(&self, mut req: Request) -> BoxFuture<Response> {
        let uri = req.uri();
        let rest = uri.path().get(self.prefix_len..).unwrap_or_default();
        let rest = if rest.is_empty() { "/" } else { rest };
        let stripped = match uri.query() {
            Some(query) => format!("{rest}?{query}"),
            None => rest.to_owned(),
        };
        match stripped.parse::<http::Uri>() {
            Ok(stripped) => {
                let original = std::mem::replace(req.uri_mut(), stripped);
                req.extensions_mut().insert(NestedFrom(original));
                req.params_mut().clear();
                self.inner.call(req)
            }
            Err(_) => Box::pin(async {
                HttpError::bad_request("the path cannot be passed on").into_response()
            }),
        }
    }
}

/// The request's URI before a [`App::nest_service`] prefix was taken off it.
#[derive(Debug, Clone)]
pub struct NestedFrom(pub http::Uri);

async fn answer_miss(req: Request) -> Response {
    match req.extensions().get::<MissReason>() {
        Some(MissReason::MethodNotAllowed(allow)) => HttpError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{} is not allowed on {}", req.method(), req.path()),
        )
        .into_response()
        .header(header::ALLOW, allow.clone()),
        Some(MissReason::BadParam(message)) => {
            HttpError::bad_request(message.clone()).into_response()
        }
        Some(MissReason::NotFound) | None => {
            HttpError::not_found(format!("no route for {} {}", req.method(), req.path()))
                .into_response()
        }
    }
}
