//! The WebSockets guide's basic example: `app.ws("/ws", ...)` answering JSON, with its client page.
//!
//! ```text
//! cargo run --release -p examples --example ws-echo
//! ```

use clap::Parser;
use examples::Common;
use serde_json::json;
use verb::prelude::*;

#[derive(Debug, Parser)]
#[command(about = "Verb's JSON echo WebSocket example")]
struct Cli {
    #[command(flatten)]
    common: Common,
}

const PAGE: &str = r#"<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Verb WebSocket client</title></head>
<body>
  <h1>WebSocket client</h1>
  <p>Status: <span id="status">connecting</span></p>
  <form id="form"><input id="input" autocomplete="off" placeholder='{"hello":"world"}'><button>Send</button></form>
  <ul id="log"></ul>
  <script>
    const log = document.getElementById("log");
    const status = document.getElementById("status");
    const show = (text) => { const li = document.createElement("li"); li.textContent = text; log.appendChild(li); };
    const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
    ws.onopen = () => { status.textContent = "connected"; };
    ws.onclose = () => { status.textContent = "disconnected"; };
    ws.onmessage = (event) => show(event.data);
    document.getElementById("form").onsubmit = (event) => {
      event.preventDefault();
      const input = document.getElementById("input");
      let payload = input.value;
      try { JSON.parse(payload); } catch { payload = JSON.stringify({ message: payload }); }
      if (ws.readyState === WebSocket.OPEN) { ws.send(payload); input.value = ""; }
    };
  </script>
</body>
</html>
"#;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    examples::init_tracing();
    let mut app = verb::create_server();
    app.get("/", |_req| async { Response::html(PAGE) });
    app.ws(
        "/ws",
        Ws::new()
            .open(|ws: &WebSocket, _req: &Request| {
                ws.send_json(&json!({
                    "type": "welcome",
                    "message": "Welcome to the WebSocket server!",
                }));
            })
            .message(|ws: &WebSocket, msg: Message| {
                match msg.json::<serde_json::Value>() {
                    Ok(data) => ws.send_json(&json!({ "type": "echo", "data": data })),
                    Err(_) => {
                        ws.send_json(&json!({ "type": "error", "message": "Invalid JSON format" }))
                    }
                };
            }),
    );
    app.listen(cli.common.addr()).await?;
    Ok(())
}
