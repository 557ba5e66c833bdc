//! The guide's basic WebSocket server: `createServer(ServerProtocol.WEBSOCKET)` + `app.websocket(...)`.
//! Upgrades on any path; `GET /` serves a demo page.
//!
//! ```text
//! cargo run --release -p examples --example basic
//! ```

use clap::Parser;
use examples::Common;
use verb::prelude::*;

#[derive(Debug, Parser)]
#[command(about = "Verb's basic WebSocket example")]
struct Cli {
    #[command(flatten)]
    common: Common,
}

const PAGE: &str = r#"<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Verb WebSocket demo</title></head>
<body>
  <h1>WebSocket demo</h1>
  <form id="form"><input id="input" autocomplete="off" placeholder="Say something"><button>Send</button></form>
  <ul id="log"></ul>
  <script>
    const log = document.getElementById("log");
    const show = (text) => { const li = document.createElement("li"); li.textContent = text; log.appendChild(li); };
    const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/`);
    ws.onmessage = (event) => show(event.data);
    ws.onclose = (event) => show(`closed (${event.code})`);
    document.getElementById("form").onsubmit = (event) => {
      event.preventDefault();
      const input = document.getElementById("input");
      if (input.value && ws.readyState === WebSocket.OPEN) { ws.send(input.value); input.value = ""; }
    };
  </script>
</body>
</html>
"#;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    examples::init_tracing();
    let mut app = verb::create_server_with(ServerProtocol::WebSocket);
    app.get("/", |_req| async { Response::html(PAGE) });
    app.websocket(
        Ws::new()
            .open(|ws: &WebSocket, _req: &Request| {
                tracing::info!(id = ws.id(), peer = %ws.remote_addr(), "client connected");
                ws.send_text("Welcome to WebSocket server!");
            })
            .message(|ws: &WebSocket, msg: Message| {
                let text = match &msg {
                    Message::Text(text) => text.to_string(),
                    Message::Binary(bytes) => String::from_utf8_lossy(bytes).into_owned(),
                };
                ws.send_text(format!("Echo: {text}"));
            })
            .close(|ws: &WebSocket, code: CloseCode, _reason: &str| {
                tracing::info!(id = ws.id(), %code, "client disconnected");
            }),
    );
    app.listen(cli.common.addr()).await?;
    Ok(())
}
