//! The WebSockets guide's authentication example: `POST /login` issues a JWT, `/ws?token=...` (or
//! `Authorization: Bearer`) upgrades only with a valid one, and authenticated users chat and send
//! direct messages to each other (every tab of the recipient gets them). `GET /` serves a login +
//! chat page.
//!
//! ```text
//! cargo run --release -p examples --example auth-chat -- --jwt-secret change-me
//! ```
//!
//! - open → `{"type":"welcome","message":"Welcome, u!","user":{"id":id,"username":u,"role":r}}`
//! - `{"type":"direct","to":id,"text":x}` → each connection of `id`
//!   `{"type":"direct","from":id,"fromUsername":u,"text":x,"timestamp":t}` and → sender
//!   `{"type":"sent","to":id,"text":x,"timestamp":t}`; absent →
//!   `{"type":"error","message":"Recipient not found or not connected"}`
//! - `{"type":"message","text":x}` (or any JSON with `text`) ⇒ others
//!   `{"type":"message","from":id,"fromUsername":u,"text":x,"timestamp":t}`

use clap::Parser;
use examples::accounts::{self, AuthArgs};
use examples::{Common, send_error, str_field, timestamp};
use serde_json::{Value, json};
use verb::prelude::*;
use verb::{JwtAuth, TokenSource};

#[derive(Debug, Parser)]
#[command(about = "Verb's authenticated chat example")]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    origins: examples::Origins,
    #[command(flatten)]
    auth: AuthArgs,
}

const PAGE: &str = include_str!("../pages/auth-chat.html");

/// `to` as the docs' clients send it: a number, or a string holding one.
fn recipient(value: &Value) -> Option<u64> {
    match value.get("to")? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn on_message(rooms: &Rooms, ws: &WebSocket, msg: &Message) {
    let Some(claims) = ws.claims::<Claims>() else {
        return;
    };
    let (from, from_username) = (
        accounts::user_id(&claims),
        claims.get_str("username").unwrap_or_default().to_owned(),
    );
    let Ok(value) = msg.json::<Value>() else {
        return send_error(ws, "Invalid JSON format");
    };
    let text = match str_field(&value, "text") {
        Ok(text) => text,
        Err(problem) => return send_error(ws, &problem),
    };
    if value.get("type").and_then(Value::as_str) == Some("direct") {
        let Some(to) = recipient(&value) else {
            return send_error(ws, "Invalid or missing field: to (user id expected)");
        };
        let delivery = rooms.user(&to.to_string()).json(&json!({
            "type": "direct",
            "from": from,
            "fromUsername": from_username,
            "text": text,
            "timestamp": timestamp(),
        }));
        if delivery.reached_nobody() {
            return send_error(ws, "Recipient not found or not connected");
        }
        ws.send_json(&json!({ "type": "sent", "to": to, "text": text, "timestamp": timestamp() }));
        return;
    }
    rooms.everyone().except(ws).json(&json!({
        "type": "message",
        "from": from,
        "fromUsername": from_username,
        "text": text,
        "timestamp": timestamp(),
    }));
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    examples::init_tracing();
    let jwt = cli.auth.jwt()?;
    let mut app = verb::create_server();
    app.get("/", |_req| async { Response::html(PAGE) });
    accounts::login_route(&mut app, jwt.clone(), cli.auth.ttl());

    let (opened, talked) = (app.rooms().clone(), app.rooms().clone());
    app.ws(
        "/ws",
        Ws::new()
            .origin_policy(cli.origins.policy())
            .open(move |ws: &WebSocket, _req: &Request| {
                let Some(claims) = ws.claims::<Claims>() else {
                    return;
                };
                // Direct messages reach every connection of a user id.
                opened.set_user(ws, claims.sub.clone());
                let user = accounts::user_json(&claims);
                tracing::info!(id = ws.id(), user = %user, "auth-chat: connected");
                ws.send_json(&json!({
                    "type": "welcome",
                    "message": format!("Welcome, {}!", user["username"].as_str().unwrap_or_default()),
                    "user": user,
                }));
            })
            .message(move |ws: &WebSocket, msg: Message| on_message(&talked, ws, &msg)),
    )
    // No valid token, no WebSocket: 401 before the upgrade.
    .middleware(
        JwtAuth::<Claims>::new(jwt).sources([TokenSource::Query("token".into()), TokenSource::Bearer]),
    );
    app.listen(cli.common.addr()).await?;
    Ok(())
}
