//! Plain HTTP: an HTML page, a path parameter, a JSON echo and a health check; tower-http's
//! compression, CORS and static files as layers and services; Server-Sent Events.
//!
//! ```text
//! cargo run --release -p examples --example http -- --port 3000
//! curl localhost:3000/users/42            # {"id":"42"}
//! curl -d '{"hi":1}' localhost:3000/echo  # {"hi":1}
//! curl localhost:3000/health              # {"status":"ok"}
//! curl localhost:3000/static/chat.html    # a file of examples/pages
//! curl -N localhost:3000/events           # event: tick / id: 1 / data: {"n":1,...} every second
//! ```

use std::time::Duration;

use clap::Parser;
use examples::{Common, timestamp};
use serde::Serialize;
use tower_http::compression::CompressionLayer;
use verb::SseEvent;
use verb::prelude::*;

#[derive(Debug, Parser)]
#[command(about = "Verb's plain HTTP example")]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    cors: examples::web::CorsOrigins,
    /// Milliseconds between two events of `GET /events`.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    tick_ms: u64,
}

/// The health check's answer: a typed value serializes straight to JSON, with nothing to build first.
#[derive(Serialize)]
struct Health {
    status: &'static str,
}

const PAGE: &str = r#"<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Verb HTTP example</title></head>
<body>
  <h1>Hello from Verb</h1>
  <ul>
    <li><a href="/users/42">GET /users/42</a></li>
    <li><a href="/health">GET /health</a></li>
    <li><code>POST /echo</code> echoes a JSON body</li>
    <li><a href="/static/chat.html">GET /static/*</a>: files, with ETag and ranges</li>
    <li><a href="/events">GET /events</a>: Server-Sent Events</li>
  </ul>
</body>
</html>
"#;

/// `GET /events`: a tick every `tick`, numbered from 1 per stream, or from `Last-Event-ID` + 1.
fn events(req: &Request, tick: Duration) -> Response {
    let first = match req.last_event_id().map(str::trim) {
        None | Some("") => 1,
        Some(last) => match last.parse::<u64>() {
            Ok(last) => last.saturating_add(1),
            Err(_) => {
                return HttpError::bad_request("Last-Event-ID must be a tick number")
                    .into_response();
            }
        },
    };
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let ticks = futures_util::stream::unfold((interval, first), |(mut interval, n)| async move {
        interval.tick().await;
        let data = serde_json::json!({ "n": n, "timestamp": timestamp() });
        let event = SseEvent::data(data.to_string())
            .event("tick")
            .id(n.to_string());
        Some((event, (interval, n.saturating_add(1))))
    });
    Response::sse(ticks)
}

fn app(cli: &Cli) -> App {
    let mut app = verb::create_server();
    let tick = Duration::from_millis(cli.tick_ms);
    app.get("/", |_req| async { Response::html(PAGE) });
    app.get("/users/:id", |req: Request| async move {
        Json(serde_json::json!({ "id": req.param("id") }))
    });
    app.post("/echo", |req: Request| async move {
        let body: serde_json::Value = req.json()?;
        Ok::<_, HttpError>(Json(body))
    });
    app.get("/health", |_req| async { Json(Health { status: "ok" }) });
    app.get(
        "/events",
        move |req: Request| async move { events(&req, tick) },
    );
    app.nest_service("/static", examples::web::static_files());
    // gzip or brotli for clients that ask (not for event streams, which must not be buffered).
    app.layer(CompressionLayer::new());
    if let Some(cors) = cli.cors.layer() {
        app.layer(cors);
    }
    app
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    examples::init_tracing();
    app(&cli).listen(cli.common.addr()).await?;
    Ok(())
}
