//! The guide's in-band authentication: connections open unauthenticated and must send
//! `{"type":"auth","token":jwt}` within `--auth-timeout-ms`; then they chat with the other
//! authenticated connections, and admins can ask for stats. WebSockets on every path; `POST /login`
//! as in `auth-chat`.
//!
//! ```text
//! cargo run --release -p examples --example inband-auth -- --jwt-secret change-me
//! ```
//!
//! open → `{"type":"auth_required","message":"Please authenticate"}`; no valid auth in time →
//! `{"type":"auth_timeout",...}` and close 1008; a bad token → `{"type":"auth_failed","message":
//! "Invalid token"}` and close 1008; a good one → `{"type":"auth_success","user":{..}}`. After that,
//! `{"type":"message","message":m}` ⇒ all authenticated
//! `{"type":"message","userId":id,"username":u,"message":m,"timestamp":t}`, and
//! `{"type":"admin_command","command":"stats"}` (admins) → `{"type":"stats","connections":n,
//! "authenticated":k}`.

use std::time::Duration;

use clap::Parser;
use examples::accounts::{self, AuthArgs};
use examples::{Common, send_error, str_field, timestamp};
use serde_json::{Value, json};
use verb::prelude::*;
use verb::{ConnectionCount, HasRoles, InbandAuth};

#[derive(Debug, Parser)]
#[command(about = "Verb's in-band authentication example")]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    auth: AuthArgs,
    /// Milliseconds a new connection has to authenticate.
    #[arg(long, default_value_t = 10_000)]
    auth_timeout_ms: u64,
}

/// The room of authenticated connections.
const AUTHENTICATED: &str = "authenticated";

fn on_message(rooms: &Rooms, connections: &ConnectionCount, ws: &WebSocket, msg: &Message) {
    // InbandAuth lets only authenticated connections' messages through.
    let Some(claims) = ws.claims::<Claims>() else {
        return;
    };
    let Ok(value) = msg.json::<Value>() else {
        return send_error(ws, "Invalid JSON");
    };
    match value.get("type").and_then(Value::as_str) {
        Some("message") => {
            let message = match str_field(&value, "message") {
                Ok(message) => message,
                Err(problem) => return send_error(ws, &problem),
            };
            rooms.to(AUTHENTICATED).json(&json!({
                "type": "message",
                "userId": accounts::user_id(&claims),
                "username": claims.get_str("username").unwrap_or_default(),
                "message": message,
                "timestamp": timestamp(),
            }));
        }
        Some("admin_command") => {
            if !claims.has_role("admin") {
                return send_error(ws, "Insufficient permissions");
            }
            match value.get("command").and_then(Value::as_str) {
                Some("stats") => {
                    ws.send_json(&json!({
                        "type": "stats",
                        "connections": connections.get(),
                        "authenticated": rooms.size(AUTHENTICATED),
                    }));
                }
                _ => send_error(ws, "Unknown command"),
            }
        }
        _ => send_error(ws, "Unknown message type"),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    examples::init_tracing();
    let jwt = cli.auth.jwt()?;
    let mut app = verb::create_server_with(ServerProtocol::WebSocket);
    accounts::login_route(&mut app, jwt.clone(), cli.auth.ttl());

    let rooms = app.rooms().clone();
    let connections = app.connections();
    let auth = InbandAuth::<Claims>::new(jwt)
        .timeout(Duration::from_millis(cli.auth_timeout_ms))
        .on_success(|ws: &WebSocket, claims: &Claims| {
            let user = accounts::user_json(claims);
            tracing::info!(id = ws.id(), user = %user, "inband-auth: authenticated");
            ws.subscribe(AUTHENTICATED);
            ws.send_json(&json!({ "type": "auth_success", "user": user }));
        });
    app.websocket(
        Ws::new()
            .attach(auth)
            .message(move |ws: &WebSocket, msg: Message| {
                on_message(&rooms, &connections, ws, &msg)
            }),
    );
    app.listen(cli.common.addr()).await?;
    Ok(())
}
