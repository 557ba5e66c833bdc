//! Plain HTTP: an HTML page, a path parameter, a JSON echo and a health check.
//!
//! ```text
//! cargo run --release -p examples --example http -- --port 3000
//! curl localhost:3000/users/42            # {"id":"42"}
//! curl -d '{"hi":1}' localhost:3000/echo  # {"hi":1}
//! curl localhost:3000/health              # {"status":"ok"}
//! ```

use clap::Parser;
use examples::Common;
use serde::Serialize;
use verb::prelude::*;

#[derive(Debug, Parser)]
#[command(about = "Verb's plain HTTP example")]
struct Cli {
    #[command(flatten)]
    common: Common,
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
  </ul>
</body>
</html>
"#;

fn app() -> App {
    let mut app = verb::create_server();
    app.get("/", |_req| async { Response::html(PAGE) });
    app.get("/users/:id", |req: Request| async move {
        Json(serde_json::json!({ "id": req.param("id") }))
    });
    app.post("/echo", |req: Request| async move {
        let body: serde_json::Value = req.json()?;
        Ok::<_, HttpError>(Json(body))
    });
    app.get("/health", |_req| async { Json(Health { status: "ok" }) });
    app
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    examples::init_tracing();
    app().listen(cli.common.addr()).await?;
    Ok(())
}
