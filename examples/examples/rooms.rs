//! The WebSockets guide's rooms example: `/ws/:room` puts each connection in the room its path names;
//! messages and arrivals reach the others in that room only. Empty rooms vanish.
//!
//! ```text
//! cargo run --release -p examples --example rooms
//! ```
//!
//! open → `{"type":"welcome","room":r,"userCount":n}` and ⇒ others in r
//! `{"type":"system","message":"A user has joined the room","userCount":n}`;
//! `{"username":u,"text":x}` ⇒ others in r `{"type":"message","sender":u,"text":x,"timestamp":t}`;
//! not JSON → `{"type":"error","message":"Invalid JSON format"}`; close ⇒ others in r
//! `{"type":"system","message":"A user has left the room","userCount":n}`.

use clap::Parser;
use examples::Common;
use serde_json::json;
use verb::prelude::*;

#[derive(Debug, Parser)]
#[command(about = "Verb's rooms example")]
struct Cli {
    #[command(flatten)]
    common: Common,
}

/// The room a connection's path named, kept with the connection.
#[derive(Clone)]
struct RoomName(String);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    examples::init_tracing();
    let mut app = verb::create_server();
    let (opened, talked, closed) = (
        app.rooms().clone(),
        app.rooms().clone(),
        app.rooms().clone(),
    );
    app.ws(
        "/ws/:room",
        Ws::new()
            .open(move |ws: &WebSocket, req: &Request| {
                let room = req.param("room").unwrap_or_default().to_owned();
                ws.set_data(RoomName(room.clone()));
                // One step: the welcome is queued before any broadcast to the room can reach the
                // newcomer, and the count is the one the join produced.
                let joined = opened.join_with(&room, ws, |count| {
                    Greeting::new()
                        .welcome_json(
                            &json!({ "type": "welcome", "room": room, "userCount": count }),
                        )
                        .announce_json(&json!({
                            "type": "system",
                            "message": "A user has joined the room",
                            "userCount": count,
                        }))
                });
                match joined {
                    Ok(Some(joined)) => {
                        tracing::info!(id = ws.id(), room, count = joined.count, "rooms: joined");
                    }
                    Ok(None) => {}
                    Err(err) => examples::refuse_join(ws, &err),
                }
            })
            .message(move |ws: &WebSocket, msg: Message| {
                let Some(RoomName(room)) = ws.data::<RoomName>() else {
                    return;
                };
                if let Some(message) = examples::guide_chat_message(ws, &msg) {
                    talked.to(&room).except(ws).json(&message);
                }
            })
            .close(move |ws: &WebSocket, _code: CloseCode, _reason: &str| {
                let Some(RoomName(room)) = ws.data::<RoomName>() else {
                    return;
                };
                // The connection has already left its room: size and members are the others.
                let count = closed.size(&room);
                tracing::info!(id = ws.id(), room, count, "rooms: left");
                closed.to(&room).json(&json!({
                    "type": "system",
                    "message": "A user has left the room",
                    "userCount": count,
                }));
            }),
    );
    app.listen(cli.common.addr()).await?;
    Ok(())
}
