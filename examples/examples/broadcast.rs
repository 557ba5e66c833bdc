//! The WebSockets guide's broadcasting example on `/ws`: everyone else hears what one client says, and
//! hears people come and go.
//!
//! ```text
//! cargo run --release -p examples --example broadcast
//! ```
//!
//! open → `{"type":"welcome","message":"Welcome to the chat!","userCount":n}` and ⇒ others
//! `{"type":"system","message":"A user has joined the chat","userCount":n}`;
//! `{"username":u,"text":x}` ⇒ others `{"type":"message","sender":u,"text":x,"timestamp":t}`;
//! not JSON → `{"type":"error","message":"Invalid JSON format"}`; close ⇒ others
//! `{"type":"system","message":"A user has left the chat","userCount":n}`.

use clap::Parser;
use examples::Common;
use serde_json::json;
use verb::prelude::*;

#[derive(Debug, Parser)]
#[command(about = "Verb's broadcast example")]
struct Cli {
    #[command(flatten)]
    common: Common,
}

/// The room every connection joins when it opens.
const EVERYONE: &str = "chat";

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
        "/ws",
        Ws::new()
            .open(move |ws: &WebSocket, _req: &Request| {
                // Everyone is in one room, joined with the welcome in one step: the welcome is this
                // connection's first message and its count the one the join produced.
                let joined = opened.join_with(EVERYONE, ws, |count| {
                    Greeting::new()
                        .welcome_json(&json!({
                            "type": "welcome",
                            "message": "Welcome to the chat!",
                            "userCount": count,
                        }))
                        .announce_json(&json!({
                            "type": "system",
                            "message": "A user has joined the chat",
                            "userCount": count,
                        }))
                });
                if let Err(err) = joined {
                    examples::refuse_join(ws, &err);
                }
            })
            .message(move |ws: &WebSocket, msg: Message| {
                if let Some(message) = examples::guide_chat_message(ws, &msg) {
                    talked.to(EVERYONE).except(ws).json(&message);
                }
            })
            .close(move |_ws: &WebSocket, _code: CloseCode, _reason: &str| {
                // The closed connection has already left the room: its members are the others.
                closed.to(EVERYONE).json(&json!({
                    "type": "system",
                    "message": "A user has left the chat",
                    "userCount": closed.size(EVERYONE),
                }));
            }),
    );
    app.listen(cli.common.addr()).await?;
    Ok(())
}
