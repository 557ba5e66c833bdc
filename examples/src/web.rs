//! The tower-http parts the `http` and `axum-mount` examples share: CORS for `--cors-origin`, and
//! the static files of `examples/pages`.

use clap::Args;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::services::ServeDir;
use verb::{HeaderValue, Method, header};

/// `--cors-origin ORIGIN` (repeatable): origins whose pages may call the HTTP API from a browser.
#[derive(Debug, Clone, Args)]
pub struct CorsOrigins {
    /// An origin (`https://app.example.com`) whose pages may make cross-origin requests; repeatable.
    #[arg(long = "cors-origin", value_name = "ORIGIN", value_parser = parse_origin)]
    pub cors_origins: Vec<HeaderValue>,
}

fn parse_origin(value: &str) -> Result<HeaderValue, String> {
    if value.contains('*') {
        return Err(format!("`{value}`: CORS takes exact origins, not patterns"));
    }
    // The same check as `--allowed-origin`: scheme, host and optional port, nothing more.
    value
        .parse::<verb::AllowedOrigin>()
        .map_err(|err| err.to_string())?;
    HeaderValue::from_str(value).map_err(|err| format!("`{value}`: {err}"))
}

impl CorsOrigins {
    /// tower-http's CORS layer for these origins (GET, POST, HEAD, OPTIONS; `content-type` and
    /// `authorization` headers; preflights cached 10 minutes), or `None` when there are none, so
    /// that no response carries CORS headers.
    pub fn layer(&self) -> Option<CorsLayer> {
        if self.cors_origins.is_empty() {
            return None;
        }
        Some(
            CorsLayer::new()
                .allow_origin(AllowOrigin::list(self.cors_origins.iter().cloned()))
                .allow_methods([Method::GET, Method::POST, Method::HEAD, Method::OPTIONS])
                .allow_headers([header::CONTENT_TYPE, header::AUTHORIZATION])
                .max_age(std::time::Duration::from_secs(600)),
        )
    }
}

/// The examples' pages directory (`examples/pages`), as tower-http serves files (content types,
/// `Last-Modified` with `304`, `Range` with `206`, no path outside the directory), plus a weak
/// `ETag` that `If-None-Match` is checked against (tower-http sends none).
pub fn static_files() -> WithETag<ServeDir> {
    WithETag(ServeDir::new(concat!(env!("CARGO_MANIFEST_DIR"), "/pages")))
}

/// A file service with weak entity tags: each full response gets `ETag: W/"<size>-<mtime hash>"`
/// (from its `Content-Length` and `Last-Modified`), and a `GET`/`HEAD` whose `If-None-Match`
/// names it (or `*`) is answered `304 Not Modified` (RFC 9110 §13.1.2: weak comparison).
#[derive(Debug, Clone)]
pub struct WithETag<S>(pub S);

/// A weak entity tag for a representation of `len` bytes last modified at `modified`.
fn entity_tag(len: &HeaderValue, modified: &HeaderValue) -> Option<HeaderValue> {
    // FNV-1a over the date: the tag changes whenever the file's size or time does.
    let hash = modified
        .as_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
        });
    HeaderValue::from_str(&format!("W/\"{}-{hash:x}\"", len.to_str().ok()?)).ok()
}

/// Whether `If-None-Match` matches `tag` by weak comparison.
fn none_match(if_none_match: &HeaderValue, tag: &HeaderValue) -> bool {
    let opaque = |t: &str| t.trim().trim_start_matches("W/").to_owned();
    let Ok(list) = if_none_match.to_str() else {
        return false;
    };
    let ours = opaque(tag.to_str().unwrap_or_default());
    list.split(',')
        .any(|candidate| candidate.trim() == "*" || opaque(candidate) == ours)
}

impl<S, B, R> tower_service::Service<http::Request<B>> for WithETag<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    R: http_body::Body + Send + 'static,
    R::Data: Send,
    R::Error: Into<verb::BoxError>,
{
    type Response = http::Response<verb::Body>;
    type Error = S::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, S::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let conditional = (req.method() == Method::GET || req.method() == Method::HEAD)
            .then(|| req.headers().get(header::IF_NONE_MATCH).cloned())
            .flatten();
        let response = self.0.call(req);
        Box::pin(async move {
            let res = response.await?;
            let tag = (res.status() == http::StatusCode::OK)
                .then(|| {
                    let headers = res.headers();
                    entity_tag(
                        headers.get(header::CONTENT_LENGTH)?,
                        headers.get(header::LAST_MODIFIED)?,
                    )
                })
                .flatten();
            let (mut parts, body) = res.into_parts();
            let Some(tag) = tag else {
                return Ok(http::Response::from_parts(
                    parts,
                    verb::Body::from_body(body),
                ));
            };
            parts.headers.insert(header::ETAG, tag.clone());
            if conditional.is_some_and(|inm| none_match(&inm, &tag)) {
                parts.status = http::StatusCode::NOT_MODIFIED;
                for name in [
                    header::CONTENT_LENGTH,
                    header::CONTENT_TYPE,
                    header::ACCEPT_RANGES,
                ] {
                    parts.headers.remove(name);
                }
                return Ok(http::Response::from_parts(parts, verb::Body::empty()));
            }
            Ok(http::Response::from_parts(
                parts,
                verb::Body::from_body(body),
            ))
        })
    }
}

/// Serves `app` as axum's fallback service until SIGINT/SIGTERM; the sockets get 1001 at the end.
///
/// # Errors
///
/// When the address cannot be bound or the signal handlers cannot be installed.
pub async fn serve_in_axum(app: verb::App, addr: (&str, u16)) -> anyhow::Result<()> {
    use axum::serve::ListenerExt;
    let mut signal = verb::ShutdownSignal::install()?;
    let service = app.into_service();
    let stop = service.stop_handle();
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!("listening on http://{}", listener.local_addr()?);
    // As Verb's server does: small frames must not wait for Nagle's algorithm.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let router = axum::Router::new().fallback_service(service);
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            let _ = signal.recv().await;
            let _ = stop.stop().await;
        })
        .await?;
    Ok(())
}
