//! The `rooms` example across several processes: rooms live in Redis, so a message reaches every
//! member on every node exactly once, and `userCount` counts the members of all nodes.
//!
//! ```text
//! cargo run --release -p examples --example cluster -- --port 3000 --redis redis://127.0.0.1:6379
//! cargo run --release -p examples --example cluster -- --port 3001 --redis redis://127.0.0.1:6379
//! ```
//!
//! Messages as in `rooms` (`/ws/:room`): open → `{"type":"welcome","room":r,"userCount":n}` and ⇒
//! others in r `{"type":"system","message":"A user has joined the room","userCount":n}`;
//! `{"username":u,"text":x}` ⇒ others in r `{"type":"message","sender":u,"text":x,"timestamp":t}`;
//! close ⇒ others in r `{"type":"system","message":"A user has left the room","userCount":n}`.

use clap::Parser;
use examples::Common;
use serde_json::json;
use verb::RedisBackplane;
use verb::prelude::*;

#[derive(Debug, Parser)]
#[command(about = "Verb's multi-node rooms example, on Redis")]
struct Cli {
    #[command(flatten)]
    common: Common,
    /// The Redis every node shares.
    #[arg(long, env = "VERB_REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    redis: String,
}

/// The room a connection's path named, kept with the connection.
#[derive(Clone)]
struct RoomName(String);

/// Members of `room` on every node (this node's alone if Redis cannot be asked).
async fn cluster_size(redis: &RedisBackplane, rooms: &Rooms, room: &str) -> usize {
    match redis.room_size(room).await {
        Ok(size) => size,
        Err(err) => {
            tracing::warn!(room, error = %err, "cluster: counting this node's members only");
            rooms.size(room)
        }
    }
}

/// Members of `room` on the other nodes (none if Redis cannot be asked).
async fn remote_size(redis: &RedisBackplane, room: &str) -> usize {
    redis.remote_room_size(room).await.unwrap_or_else(|err| {
        tracing::warn!(room, error = %err, "cluster: counting this node's members only");
        0
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    examples::init_tracing();
    let redis = RedisBackplane::new(&cli.redis)?;
    let mut app = verb::create_server();
    app.rooms().set_backplane(redis.clone())?;
    tracing::info!(node = redis.node_id(), redis = %cli.redis, "cluster node");

    let (opened, talked, closed) = (
        app.rooms().clone(),
        app.rooms().clone(),
        app.rooms().clone(),
    );
    let (redis_open, redis_close) = (redis.clone(), redis);
    app.ws(
        "/ws/:room",
        Ws::new()
            .open(move |ws: &WebSocket, req: &Request| {
                let room = req.param("room").unwrap_or_default().to_owned();
                ws.set_data(RoomName(room.clone()));
                let (ws, rooms, redis) = (ws.clone(), opened.clone(), redis_open.clone());
                tokio::spawn(async move {
                    // Ask Redis first, then join and greet in one step: the welcome comes before any
                    // message of the room, and the count is the other nodes' plus this node's at the join.
                    let remote = remote_size(&redis, &room).await;
                    let joined = rooms.join_with(&room, &ws, |local| {
                        let count = remote + local;
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
                    if let Err(err) = joined {
                        examples::refuse_join(&ws, &err);
                    }
                });
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
                let (rooms, redis) = (closed.clone(), redis_close.clone());
                tokio::spawn(async move {
                    let count = cluster_size(&redis, &rooms, &room).await;
                    rooms.to(&room).json(&json!({
                        "type": "system",
                        "message": "A user has left the room",
                        "userCount": count,
                    }));
                });
            }),
    );
    app.listen(cli.common.addr()).await?;
    Ok(())
}
