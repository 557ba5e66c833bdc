//! The guide's live data feed: clients subscribe to topics, and a timer publishes simulated market,
//! weather and news data to the subscribers of each. WebSockets on every path.
//!
//! ```text
//! cargo run --release -p examples --example live-feed -- --tick-ms 1000
//! ```
//!
//! open → `{"type":"connected","message":"Ready to receive data feeds"}`;
//! `{"type":"subscribe","topic":t}` → `{"type":"subscribed","topic":t,"message":"Subscribed to t"}`;
//! `{"type":"unsubscribe","topic":t}` → `{"type":"unsubscribed","topic":t,"message":"Unsubscribed from t"}`;
//! `{"type":"getTopics"}` → `{"type":"topics","topics":[...]}`; an unknown topic →
//! `{"type":"error","message":"Unknown topic"}`. Subscribers get
//! `{"type":"data","topic":t,"data":{..},"timestamp":t}`: stocks and crypto every tick, weather and
//! news every 5 ticks.
//!
//! `GET /events?topic=T` streams the same `data` messages as Server-Sent Events (`data: <json>`), for
//! networks that block WebSockets; an unknown or missing topic gets a 400 JSON error.
//!
//! Browsers that offer permessage-deflate get compressed frames: each tick is deflated once and the
//! same frame goes to every compressing subscriber of the topic.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use examples::{Common, send_error, str_field, timestamp};
use serde_json::{Value, json};
use tokio::sync::broadcast;
use verb::SseEvent;
use verb::prelude::*;

#[derive(Debug, Parser)]
#[command(about = "Verb's live data feed example")]
struct Cli {
    #[command(flatten)]
    common: Common,
    /// Milliseconds between ticks (stocks and crypto publish every tick, weather and news every 5).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    tick_ms: u64,
}

/// The feed page; it connects back to the host that served it.
const PAGE: &str = include_str!("../pages/live-feed.html");

const TOPICS: [&str; 4] = ["stocks", "crypto", "news", "weather"];

fn on_message(ws: &WebSocket, msg: &Message) {
    let Ok(value) = msg.json::<Value>() else {
        return send_error(ws, "Invalid JSON");
    };
    let kind = value.get("type").and_then(Value::as_str);
    match kind {
        Some("getTopics") => {
            ws.send_json(&json!({ "type": "topics", "topics": TOPICS }));
        }
        Some(kind @ ("subscribe" | "unsubscribe")) => {
            let topic = match str_field(&value, "topic") {
                Ok(topic) => topic,
                Err(problem) => return send_error(ws, &problem),
            };
            if !TOPICS.contains(&topic) {
                return send_error(ws, "Unknown topic");
            }
            if kind == "subscribe" {
                ws.subscribe(topic);
                ws.send_json(&json!({
                    "type": "subscribed",
                    "topic": topic,
                    "message": format!("Subscribed to {topic}"),
                }));
            } else {
                ws.unsubscribe(topic);
                ws.send_json(&json!({
                    "type": "unsubscribed",
                    "topic": topic,
                    "message": format!("Unsubscribed from {topic}"),
                }));
            }
        }
        _ => send_error(ws, "Unknown message type"),
    }
}

/// A small deterministic pseudo-random source for the simulated data (xorshift64*).
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }

    /// A value rounded to two decimals.
    fn amount(&mut self, low: f64, high: f64) -> f64 {
        ((low + self.unit() * (high - low)) * 100.0).round() / 100.0
    }
}

/// How many messages an event stream may fall behind before it skips ahead (and says so in the log).
const SSE_BACKLOG: usize = 64;

/// The event streams' side of each topic: one broadcast channel per topic, fed with the same JSON
/// text the WebSocket subscribers get. A topic nobody streams costs a failed send.
#[derive(Clone)]
struct Streams(Arc<HashMap<&'static str, broadcast::Sender<Arc<str>>>>);

impl Streams {
    fn new() -> Self {
        let channels = TOPICS
            .iter()
            .map(|topic| (*topic, broadcast::channel(SSE_BACKLOG).0))
            .collect();
        Self(Arc::new(channels))
    }
}

/// What the feed publishes to: the WebSocket subscribers (rooms) and the event streams.
struct Outlets {
    rooms: Rooms,
    streams: Streams,
}

fn publish(outlets: &Outlets, topic: &str, data: Value) {
    let text = json!({
        "type": "data",
        "topic": topic,
        "data": data,
        "timestamp": timestamp(),
    })
    .to_string();
    if let Some(stream) = outlets.streams.0.get(topic) {
        // No receivers is not an error: nobody streams this topic right now.
        let _ = stream.send(Arc::from(text.as_str()));
    }
    let delivery = outlets.rooms.to(topic).send(text);
    tracing::debug!(
        topic,
        receivers = delivery.recipients(),
        "live-feed: published"
    );
}

/// `GET /events?topic=T`: the topic's data messages as Server-Sent Events.
fn events(req: &Request, streams: &Streams) -> Response {
    let topic = req.query("topic");
    let Some(sender) = topic.as_deref().and_then(|topic| streams.0.get(topic)) else {
        tracing::debug!(
            ?topic,
            "live-feed: event stream for an unknown topic refused"
        );
        return HttpError::bad_request(
            "Unknown topic: ask for one of stocks, crypto, news, weather",
        )
        .into_response();
    };
    let receiver = sender.subscribe();
    let messages = futures_util::stream::unfold(receiver, |mut receiver| async move {
        loop {
            match receiver.recv().await {
                Ok(text) => return Some((SseEvent::data(&*text), receiver)),
                Err(broadcast::error::RecvError::Lagged(skipped)) => {
                    tracing::warn!(skipped, "live-feed: a slow event stream skipped messages");
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Response::sse(messages)
}

/// Publishes every tick until the process stops. Topics nobody subscribes to cost one lookup.
async fn feed(outlets: Outlets, tick: Duration) {
    let mut noise = Noise(0x2545_F491_4F6C_DD1D ^ u64::from(std::process::id()));
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for n in 0u64.. {
        interval.tick().await;
        let stock = json!({
            "symbol": noise.pick(&["AAPL", "GOOGL", "MSFT", "AMZN", "TSLA"]),
            "price": noise.amount(50.0, 500.0),
            "change": noise.amount(-5.0, 5.0),
        });
        publish(&outlets, "stocks", stock);
        let coin = json!({
            "symbol": noise.pick(&["BTC", "ETH", "SOL", "ADA"]),
            "price": noise.amount(0.5, 60_000.0),
            "change": noise.amount(-10.0, 10.0),
        });
        publish(&outlets, "crypto", coin);
        if n % 5 == 0 {
            let weather = json!({
                "location": noise.pick(&["New York", "London", "Tokyo", "Sydney", "Paris"]),
                "temperature": noise.amount(-10.0, 35.0),
                "humidity": noise.amount(20.0, 95.0),
            });
            publish(&outlets, "weather", weather);
            let headline = noise.pick(&[
                "Markets rally on strong earnings",
                "New framework makes real-time apps easy",
                "Central bank holds rates steady",
                "Tech shares lead a broad advance",
            ]);
            publish(&outlets, "news", json!({ "headline": headline }));
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    examples::init_tracing();
    let mut app = verb::create_server_with(ServerProtocol::WebSocket);
    let streams = Streams::new();
    let outlets = Outlets {
        rooms: app.rooms().clone(),
        streams: streams.clone(),
    };
    tokio::spawn(feed(outlets, Duration::from_millis(cli.tick_ms)));
    app.get("/", |_req| async { Response::html(PAGE) });
    app.get("/events", move |req: Request| {
        let streams = streams.clone();
        async move { events(&req, &streams) }
    });
    app.websocket(
        Ws::new()
            .compression(true)
            .open(|ws: &WebSocket, _req: &Request| {
                ws.send_json(&json!({
                    "type": "connected",
                    "message": "Ready to receive data feeds",
                }));
            })
            .message(|ws: &WebSocket, msg: Message| on_message(ws, &msg)),
    );
    app.listen(cli.common.addr()).await?;
    Ok(())
}
