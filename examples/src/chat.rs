//! The guide's real-time chat, as an app: the `chat` example serves it alone, `axum-mount` nests it
//! in an axum router.

use serde_json::{Value, json};
use verb::prelude::*;

use crate::{Origins, send_error, timestamp};

const PAGE: &str = include_str!("../pages/chat.html");

/// The room every connection joins when it opens.
const EVERYONE: &str = "chat";

/// How many are online, as the chat tells it.
fn user_count(count: usize) -> Value {
    json!({ "type": "userCount", "count": count })
}

fn on_message(rooms: &Rooms, ws: &WebSocket, msg: &Message) {
    let parsed = msg.json::<Value>().ok().and_then(|value| {
        if value.get("type").and_then(Value::as_str) != Some("message") {
            return None;
        }
        let message = value.get("message").and_then(Value::as_str)?.to_owned();
        Some((crate::username(&value, "username"), message))
    });
    let Some((username, message)) = parsed else {
        tracing::debug!(id = ws.id(), "chat: invalid message");
        return send_error(ws, "Invalid message format");
    };
    rooms.to(EVERYONE).json(&json!({
        "type": "message",
        "username": username,
        "message": message,
        "timestamp": timestamp(),
    }));
}

/// The chat: `GET /` its page, `GET /metrics` Prometheus text, `GET /healthz` and `GET /readyz`
/// (503 once a graceful stop begins), WebSockets on every path.
///
/// # Errors
///
/// When the metrics recorder cannot be installed.
pub fn app(origins: &Origins) -> Result<App, verb::MetricsError> {
    let mut app = verb::create_server_with(ServerProtocol::WebSocket);
    let (opened, talked, closed) = (
        app.rooms().clone(),
        app.rooms().clone(),
        app.rooms().clone(),
    );
    app.get("/", |_req| async { Response::html(PAGE) });
    // Prometheus text: open connections, messages and bytes in/out, closes by code, ...
    app.metrics("/metrics")?;
    // Probes: alive while the process serves; ready until a graceful stop begins.
    app.health("/healthz");
    app.readiness("/readyz");
    app.websocket(
        Ws::new()
            .origin_policy(origins.policy())
            .open(move |ws: &WebSocket, _req: &Request| {
                tracing::info!(id = ws.id(), peer = %ws.remote_addr(), "chat: joined");
                // Join and tell everyone (the newcomer first) the count in one step, so the counts
                // arrive in the order the joins happened.
                let joined = opened.join_with(EVERYONE, ws, |count| {
                    let message = user_count(count);
                    Greeting::new()
                        .welcome_json(&message)
                        .announce_json(&message)
                });
                if let Err(err) = joined {
                    crate::refuse_join(ws, &err);
                }
            })
            .message(move |ws: &WebSocket, msg: Message| on_message(&talked, ws, &msg))
            .close(move |ws: &WebSocket, code: CloseCode, _reason: &str| {
                tracing::info!(id = ws.id(), %code, "chat: left");
                // The hub has already taken this connection out of the room: the count is of those
                // still here.
                closed.to(EVERYONE).json(&user_count(closed.size(EVERYONE)));
            }),
    );
    Ok(app)
}
