//! Raw bytes to a Verb app over loopback: whatever arrives, the server answers or closes within the
//! timeout, never panics, and what it sends back is HTTP/1.1.

#![no_main]

use std::net::SocketAddr;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use verb::prelude::*;
use verb::{RateLimit, ServerConfig};
use verb_fuzz::{exchange, serve};

fn app() -> App {
    let mut app = verb::create_server();
    app.config(
        ServerConfig::new()
            .body_limit(64 * 1024)
            .header_read_timeout(std::time::Duration::from_secs(2))
            .body_read_timeout(std::time::Duration::from_secs(2)),
    );
    app.get("/", |_req| async { "hello" });
    app.get("/users/:id", |req: Request| async move {
        Json(serde_json::json!({ "id": req.param("id"), "q": req.query("q") }))
    });
    app.post("/echo", |req: Request| async move {
        let body: serde_json::Value = req.json()?;
        Ok::<_, HttpError>(Json(body))
    });
    app.post("/text", |req: Request| async move {
        let text = req.text()?;
        Ok::<_, HttpError>(text.to_owned())
    });
    app.get("/files/*rest", |req: Request| async move {
        req.param("rest").unwrap_or_default().to_owned()
    })
    .middleware(RateLimit::per_second(1_000_000));
    app.ws(
        "/ws",
        Ws::new().message(|ws: &WebSocket, msg: Message| {
            ws.send(msg);
        }),
    );
    app
}

static SERVER: OnceLock<SocketAddr> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let addr = serve(&SERVER, app);
    let answer = exchange(addr, data);
    if !answer.is_empty() {
        assert!(
            answer.starts_with(b"HTTP/1.1 "),
            "not an HTTP/1.1 answer: {:?}",
            String::from_utf8_lossy(&answer[..answer.len().min(200)])
        );
    }
});
