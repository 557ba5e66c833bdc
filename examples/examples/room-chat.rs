//! The guide's room-based chat: clients join a room by message (leaving the one they were in), talk
//! within it, and hear others join and leave. WebSockets on every path.
//!
//! ```text
//! cargo run --release -p examples --example room-chat
//! ```
//!
//! - `{"type":"join","username":u,"room":r}` ⇒ others in r
//!   `{"type":"userJoined","username":u,"message":"u joined the room"}`, and →
//!   `{"type":"joined","room":r,"userCount":n}`.
//! - `{"type":"leave","room":r}` ⇒ others in r `{"type":"userLeft","username":u,"message":"u left the room"}`.
//! - `{"type":"message","message":m}` ⇒ all in the room
//!   `{"type":"message","username":u,"message":m,"timestamp":t}`; not in a room →
//!   `{"type":"error","message":"Not in a room"}`.
//! - `{"type":"ping"}` → `{"type":"pong"}`. Closing leaves the room (userLeft to the others).

use clap::Parser;
use examples::{Common, send_error, str_field, timestamp};
use serde_json::{Value, json};
use verb::prelude::*;

#[derive(Debug, Parser)]
#[command(about = "Verb's room-based chat example")]
struct Cli {
    #[command(flatten)]
    common: Common,
}

/// The room chat page; it connects back to the host that served it.
const PAGE: &str = include_str!("../pages/room-chat.html");

/// Longest room name accepted, in bytes.
const MAX_ROOM: usize = 128;

/// Who a connection is and where, once it has joined.
#[derive(Clone)]
struct Member {
    username: String,
    room: String,
}

fn left(rooms: &Rooms, member: &Member) {
    rooms.to(&member.room).json(&json!({
        "type": "userLeft",
        "username": member.username,
        "message": format!("{} left the room", member.username),
    }));
}

fn join(rooms: &Rooms, ws: &WebSocket, value: &Value) {
    let room = match str_field(value, "room") {
        Ok(room) if !room.is_empty() && room.len() <= MAX_ROOM => room.to_owned(),
        Ok(_) => return send_error(ws, "Invalid field: room (1 to 128 bytes)"),
        Err(problem) => return send_error(ws, &problem),
    };
    let username = examples::username(value, "username");
    if let Some(previous) = ws.take_data::<Member>() {
        rooms.leave(&previous.room, ws);
        left(rooms, &previous);
    }
    // One step: `joined` is the first message of the room this connection gets, with the count the
    // join produced, and the others hear of it in the same step.
    let joined = rooms.join_with(&room, ws, |count| {
        Greeting::new()
            .welcome_json(&json!({ "type": "joined", "room": room, "userCount": count }))
            .announce_json(&json!({
                "type": "userJoined",
                "username": username,
                "message": format!("{username} joined the room"),
            }))
    });
    if let Err(err) = joined {
        // A name over the hub's limit: the client hears why and stays connected, in no room.
        return send_error(ws, &err.to_string());
    }
    tracing::info!(id = ws.id(), room, username, "room-chat: joined");
    ws.set_data(Member { username, room });
}

fn on_message(rooms: &Rooms, ws: &WebSocket, msg: &Message) {
    let Ok(value) = msg.json::<Value>() else {
        return send_error(ws, "Invalid JSON");
    };
    match value.get("type").and_then(Value::as_str) {
        Some("join") => join(rooms, ws, &value),
        Some("leave") => {
            let member = ws.data::<Member>();
            let wanted = value.get("room").and_then(Value::as_str);
            match member {
                Some(member) if wanted.is_none_or(|room| room == member.room) => {
                    ws.take_data::<Member>();
                    rooms.leave(&member.room, ws);
                    left(rooms, &member);
                }
                _ => send_error(ws, "Not in a room"),
            }
        }
        Some("message") => {
            let Some(member) = ws.data::<Member>() else {
                return send_error(ws, "Not in a room");
            };
            let message = match str_field(&value, "message") {
                Ok(message) => message,
                Err(problem) => return send_error(ws, &problem),
            };
            rooms.to(&member.room).json(&json!({
                "type": "message",
                "username": member.username,
                "message": message,
                "timestamp": timestamp(),
            }));
        }
        Some("ping") => {
            ws.send_json(&json!({ "type": "pong" }));
        }
        _ => send_error(ws, "Unknown message type"),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    examples::init_tracing();
    let mut app = verb::create_server_with(ServerProtocol::WebSocket);
    let (talked, closed) = (app.rooms().clone(), app.rooms().clone());
    app.get("/", |_req| async { Response::html(PAGE) });
    app.websocket(
        Ws::new()
            .message(move |ws: &WebSocket, msg: Message| on_message(&talked, ws, &msg))
            .close(move |ws: &WebSocket, _code: CloseCode, _reason: &str| {
                // The hub has already taken the connection out of its room; tell the others.
                if let Some(member) = ws.take_data::<Member>() {
                    tracing::info!(id = ws.id(), room = member.room, "room-chat: left");
                    left(&closed, &member);
                }
            }),
    );
    app.listen(cli.common.addr()).await?;
    Ok(())
}
