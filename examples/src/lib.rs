//! What every example shares: the command line (`--host`, `--port`, `PORT`), logging (`RUST_LOG`,
//! default `info`) and serving until Ctrl-C/SIGTERM.

use clap::Args;

pub mod accounts;
pub mod chat;
pub mod web;

/// The flags every example takes.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on; 0 picks a free port.
    #[arg(long, env = "PORT", default_value_t = 3000)]
    pub port: u16,
}

impl Common {
    /// The `(host, port)` pair to hand to `app.listen`.
    pub fn addr(&self) -> (&str, u16) {
        (&self.host, self.port)
    }
}

/// `--allowed-origin ORIGIN` (repeatable): origins whose pages may open the example's WebSockets,
/// besides its own (the Origin policy of every WebSocket endpoint).
#[derive(Debug, Clone, Args)]
pub struct Origins {
    /// An origin (`https://app.example.com`) or subdomain pattern (`https://*.example.com`) whose
    /// pages may open WebSockets here, besides this server's own; repeatable.
    #[arg(long = "allowed-origin", value_name = "ORIGIN")]
    pub allowed_origins: Vec<verb::AllowedOrigin>,
}

impl Origins {
    /// The policy: the request's own origin, plus every `--allowed-origin`.
    pub fn policy(&self) -> verb::OriginPolicy {
        self.allowed_origins.iter().cloned().fold(
            verb::OriginPolicy::same_origin(),
            verb::OriginPolicy::allow_parsed,
        )
    }
}

/// Logs to stderr through `tracing`, filtered by `RUST_LOG` (default `info`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// The current time as JavaScript's `new Date().toISOString()` writes it:
/// `2026-11-23T12:00:00.000Z` (RFC 3339, UTC, milliseconds).
pub fn timestamp() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

/// Sends the catalogue's error shape: `{"type":"error","message":message}`.
pub fn send_error(ws: &verb::WebSocket, message: &str) {
    ws.send_json(&serde_json::json!({ "type": "error", "message": message }));
}

/// A join the hub refused (a room name from the path over 256 bytes, say): the error, then close 1008.
pub fn refuse_join(ws: &verb::WebSocket, err: &verb::JoinError) {
    send_error(ws, &err.to_string());
    ws.close(verb::CloseCode::POLICY_VIOLATION, "room refused");
}

/// The string field `name` of a client's JSON message, or the error text naming it.
///
/// # Errors
///
/// A message for the client when the field is missing or not a string.
pub fn str_field<'a>(value: &'a serde_json::Value, name: &str) -> Result<&'a str, String> {
    value
        .get(name)
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| format!("Invalid or missing field: {name} (string expected)"))
}

/// The optional `username` of a client's message: absent or not a string counts as `Anonymous`.
pub fn username(value: &serde_json::Value, field: &str) -> String {
    value
        .get(field)
        .and_then(serde_json::Value::as_str)
        .unwrap_or("Anonymous")
        .to_owned()
}

/// The WebSockets guide's chat message `{"username":u,"text":x}` as the others receive it:
/// `{"type":"message","sender":u or "Anonymous","text":x,"timestamp":t}`. Bad input is answered to
/// `ws` (`Invalid JSON format`, or the missing field) and gives `None`.
pub fn guide_chat_message(ws: &verb::WebSocket, msg: &verb::Message) -> Option<serde_json::Value> {
    let Ok(value) = msg.json::<serde_json::Value>() else {
        send_error(ws, "Invalid JSON format");
        return None;
    };
    match str_field(&value, "text") {
        Ok(text) => Some(serde_json::json!({
            "type": "message",
            "sender": username(&value, "username"),
            "text": text,
            "timestamp": timestamp(),
        })),
        Err(problem) => {
            send_error(ws, &problem);
            None
        }
    }
}
