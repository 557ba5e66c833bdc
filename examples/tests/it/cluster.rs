//! Several nodes sharing rooms through Redis: the `cluster` example as processes, and apps with a
//! `RedisBackplane` in this process. Each test runs its own `redis-server` on a free port, so tests
//! never share state and can stop and restart it.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use futures_util::SinkExt;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message as Tm;
use verb::RedisBackplane;
use verb::prelude::*;
use verb::test::TestServer;

use crate::support::{Example, connect, next_json, next_json_skipping, send_json};

/// A private `redis-server` on a free port, killed when dropped.
struct Redis {
    port: u16,
    child: Child,
}

impl Redis {
    async fn start() -> Redis {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map(|addr| addr.port())
            .expect("a free port");
        let child = Self::spawn(port);
        let redis = Redis { port, child };
        redis.wait_ready().await;
        redis
    }

    fn spawn(port: u16) -> Child {
        Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (cargo xtask ci installs it)")
    }

    async fn wait_ready(&self) {
        for _ in 0..200 {
            if let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await {
                let mut reply = [0u8; 7];
                if stream.write_all(b"PING\r\n").await.is_ok()
                    && stream.read_exact(&mut reply).await.is_ok()
                    && &reply == b"+PONG\r\n"
                {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("redis-server did not start on port {}", self.port);
    }

    /// Runs one inline command and returns the first line of the reply.
    async fn command(&self, command: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .expect("redis is up");
        stream
            .write_all(format!("{command}\r\n").as_bytes())
            .await
            .unwrap();
        let mut reply = vec![0u8; 256];
        let read = stream.read(&mut reply).await.unwrap();
        String::from_utf8_lossy(&reply[..read])
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned()
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    async fn restart(&mut self) {
        self.kill();
        self.child = Self::spawn(self.port);
        self.wait_ready().await;
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The `cluster` example on two nodes: counts span the nodes, and a message reaches every other
/// member exactly once, whichever node it is on.
#[tokio::test]
async fn cluster_example_shares_rooms_across_two_nodes() {
    let redis = Redis::start().await;
    let url = redis.url();
    let a = Example::start("cluster", &["--redis", &url]);
    let b = Example::start("cluster", &["--redis", &url]);

    let (mut ada, _) = connect(&a, "/ws/lobby", None).await;
    assert_eq!(
        next_json(&mut ada).await,
        json!({ "type": "welcome", "room": "lobby", "userCount": 1 })
    );
    // Node B learns of ada through Redis, asynchronously: on a loaded machine a newcomer there may
    // still count only itself. Counts span the nodes once B has heard, so try again until it has.
    let mut attempts = 0;
    let mut bob = loop {
        let (mut bob, _) = connect(&b, "/ws/lobby", None).await;
        // Ada's own arrival notice, published on node A just before, may still be crossing Redis
        // when bob joins on node B: then it reaches him first.
        let mut welcome = next_json(&mut bob).await;
        if welcome["type"] == "system" {
            welcome = next_json(&mut bob).await;
        }
        assert_eq!(
            (&welcome["type"], &welcome["room"]),
            (&json!("welcome"), &json!("lobby"))
        );
        if welcome["userCount"] == 2 {
            break bob;
        }
        assert_eq!(welcome["userCount"], 1, "{welcome}");
        attempts += 1;
        assert!(attempts < 100, "node B never counted ada");
        drop(bob);
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Ada hears of bob's arrival with the count of both nodes (after the comings and goings of
    // earlier attempts, if any).
    loop {
        let notice = next_json(&mut ada).await;
        assert_eq!(notice["type"], "system", "{notice}");
        if notice
            == json!({ "type": "system", "message": "A user has joined the room", "userCount": 2 })
        {
            break;
        }
    }
    let (mut cyd, _) = connect(&a, "/ws/other", None).await;
    next_json(&mut cyd).await;

    send_json(
        &mut bob,
        &json!({ "username": "bob", "text": "across nodes" }),
    )
    .await;
    let got = next_json_skipping(&mut ada, &["system"]).await;
    assert_eq!(
        (&got["sender"], &got["text"]),
        (&json!("bob"), &json!("across nodes"))
    );
    send_json(&mut ada, &json!({ "username": "ada", "text": "and back" })).await;
    // Notices of the earlier comings and goings may still be on their way to bob.
    assert_eq!(
        next_json_skipping(&mut bob, &["system"]).await["text"],
        "and back"
    );
    // Exactly once, and only in the room: each next message is the next one sent there.
    send_json(&mut bob, &json!({ "text": "marker" })).await;
    let got = next_json_skipping(&mut ada, &["system"]).await;
    assert_eq!(
        (&got["sender"], &got["text"]),
        (&json!("Anonymous"), &json!("marker"))
    );
    send_json(&mut cyd, &json!({ "text": "other room" })).await;
    send_json(&mut bob, &json!({ "text": "lobby again" })).await;
    assert_eq!(
        next_json_skipping(&mut ada, &["system"]).await["text"],
        "lobby again"
    );

    bob.send(Tm::Close(None)).await.unwrap();
    assert_eq!(
        next_json(&mut ada).await,
        json!({ "type": "system", "message": "A user has left the room", "userCount": 1 })
    );
    drop((ada, cyd));
    assert!(a.terminate().success());
    assert!(b.terminate().success());
}

/// An app whose connections name their user (`?user=`) and can send direct messages (`dm USER TEXT`)
/// or room messages (`say ROOM TEXT`); every connection joins room `r`.
async fn node(redis_url: &str) -> (TestServer, RedisBackplane, Rooms) {
    node_with(RedisBackplane::new(redis_url).unwrap()).await
}

/// As [`node`], with a backplane configured by the caller.
async fn node_with(redis: RedisBackplane) -> (TestServer, RedisBackplane, Rooms) {
    let mut app = verb::create_server();
    app.rooms().set_backplane(redis.clone()).unwrap();
    let rooms = app.rooms().clone();
    app.ws(
        "/ws",
        Ws::new()
            .open(|ws: &WebSocket, req: &Request| {
                let rooms = ws.attachment::<Rooms>().unwrap();
                if let Some(user) = req.query("user") {
                    rooms.set_presence(ws, &json!({ "user": user }));
                    rooms.set_user(ws, user);
                }
                rooms.join("r", ws).unwrap();
                ws.send_text("ready");
            })
            .message(|ws: &WebSocket, msg: Message| {
                let rooms = ws.attachment::<Rooms>().unwrap();
                let text = msg.as_text().unwrap_or_default().to_owned();
                let mut words = text.splitn(3, ' ');
                match (words.next(), words.next(), words.next()) {
                    (Some("dm"), Some(user), Some(body)) => {
                        rooms.user(user).send(body.to_owned());
                    }
                    (Some("say"), Some(room), Some(body)) => {
                        rooms.to(room).except(ws).send(body.to_owned());
                    }
                    _ => {}
                }
            }),
    );
    (TestServer::start(app).await, redis, rooms)
}

async fn wait_for(what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..400 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("never happened: {what}");
}

/// Three nodes: broadcast-except-sender and direct messages cross nodes exactly once, and room sizes
/// count every node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_share_rooms_direct_messages_and_presence() {
    let redis = Redis::start().await;
    let (a, redis_a, _) = node(&redis.url()).await;
    let (b, redis_b, _) = node(&redis.url()).await;
    let (c, _, _) = node(&redis.url()).await;
    assert_ne!(redis_a.node_id(), redis_b.node_id());

    let mut on_a = a.ws("/ws?user=ann").await;
    let mut on_b = b.ws("/ws?user=ben").await;
    let mut on_c = c.ws("/ws?user=cat").await;
    for client in [&mut on_a, &mut on_b, &mut on_c] {
        assert_eq!(client.recv_text().await, "ready");
    }
    wait_for("presence on every node", async || {
        redis_a.room_size("r").await.unwrap() == 3
    })
    .await;
    assert_eq!(redis_b.room_size("r").await.unwrap(), 3);
    assert_eq!(redis_a.room_size("empty").await.unwrap(), 0);
    // Presence lists the members of every node.
    let mut users: Vec<String> = redis_b
        .room_presence("r")
        .await
        .unwrap()
        .into_iter()
        .map(|value| value["user"].as_str().unwrap_or_default().to_owned())
        .collect();
    users.sort();
    assert_eq!(users, ["ann", "ben", "cat"]);

    // A node that crashed (here: written by hand, with a 1 s life, and never refreshed) counts only
    // until its entries expire.
    redis.command("HSET verb:m:r:999 1 null").await;
    redis.command("EXPIRE verb:m:r:999 1").await;
    redis.command("SADD verb:n:r 999").await;
    assert_eq!(redis_a.room_size("r").await.unwrap(), 4);
    wait_for("the crashed node's members expire", async || {
        redis_a.room_size("r").await.unwrap() == 3
    })
    .await;

    // The subscriptions are live once a publish crosses; then everything arrives exactly once.
    wait_for("the backplane carries messages", async || {
        on_b.send_text("say r warm-up").await;
        tokio::time::timeout(Duration::from_millis(100), on_a.recv_text())
            .await
            .is_ok()
    })
    .await;
    // Drain what the warm-up left in flight.
    while tokio::time::timeout(Duration::from_millis(300), on_a.recv_text())
        .await
        .is_ok()
    {}
    while tokio::time::timeout(Duration::from_millis(300), on_c.recv_text())
        .await
        .is_ok()
    {}

    on_b.send_text("say r from b").await;
    assert_eq!(on_a.recv_text().await, "from b");
    assert_eq!(on_c.recv_text().await, "from b");
    on_a.send_text("dm cat only for cat").await;
    assert_eq!(on_c.recv_text().await, "only for cat");
    on_c.send_text("say r marker").await;
    assert_eq!(on_a.recv_text().await, "marker");
    assert_eq!(
        on_b.recv_text().await,
        "marker",
        "b never got its own message back"
    );
}

/// Redis goes away and comes back: nodes keep serving local traffic, count what they could not
/// publish, reconnect and resubscribe by themselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_resumes_after_redis_restarts() {
    let mut redis = Redis::start().await;
    let (a, redis_a, rooms_a) = node(&redis.url()).await;
    let (b, redis_b, rooms_b) = node(&redis.url()).await;
    let mut on_a = a.ws("/ws").await;
    let mut on_b = b.ws("/ws").await;
    let mut also_b = b.ws("/ws").await;
    for client in [&mut on_a, &mut on_b, &mut also_b] {
        assert_eq!(client.recv_text().await, "ready");
    }
    wait_for("the link works", async || {
        on_b.send_text("say r ping").await;
        tokio::time::timeout(Duration::from_millis(100), on_a.recv_text())
            .await
            .is_ok()
    })
    .await;

    redis.kill();
    // Local delivery goes on; the cross-node copy is lost and counted.
    on_b.send_text("say r during the outage").await;
    // (also_b got the warm-up pings locally first.)
    while also_b.recv_text().await != "during the outage" {}
    wait_for("the loss is counted", async || redis_b.lost() > 0).await;
    assert_eq!(rooms_b.size("r"), 2);

    redis.restart().await;
    wait_for("traffic crosses again", async || {
        on_b.send_text("say r after").await;
        loop {
            match tokio::time::timeout(Duration::from_millis(200), on_a.recv_text()).await {
                Ok(text) if text == "after" => return true,
                Ok(_) => continue,
                Err(_) => return false,
            }
        }
    })
    .await;
    // Presence is restored from the nodes' own state.
    wait_for("presence restored", async || {
        redis_a.room_size("r").await.is_ok_and(|size| size == 3)
    })
    .await;
    assert_eq!(rooms_a.size("r"), 1);
}

/// A TCP proxy to Redis that can go silent: after `freeze`, the connections it carries stop
/// forwarding without closing (a half-open link, as after a silent network drop); new connections
/// are forwarded normally.
struct FreezingProxy {
    addr: std::net::SocketAddr,
    generation: Arc<std::sync::atomic::AtomicU64>,
}

impl FreezingProxy {
    async fn start(upstream: String) -> FreezingProxy {
        use std::sync::atomic::Ordering;

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let generation = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let current = Arc::clone(&generation);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                    continue;
                };
                let born = current.load(Ordering::SeqCst);
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                for (mut from, mut to) in [(client_read, server_write), (server_read, client_write)]
                {
                    let current = Arc::clone(&current);
                    tokio::spawn(async move {
                        let mut buf = vec![0u8; 16 * 1024];
                        loop {
                            let Ok(n) = from.read(&mut buf).await else {
                                return;
                            };
                            if n == 0 {
                                return;
                            }
                            if current.load(Ordering::SeqCst) != born {
                                // Frozen: keep both sockets open and forward nothing, ever.
                                std::future::pending::<()>().await;
                            }
                            if to.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    });
                }
            }
        });
        FreezingProxy { addr, generation }
    }

    fn freeze(&self) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }
}

/// A link to Redis that goes silent without closing is noticed by the keepalive, and the node
/// reconnects and resubscribes by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_link_to_redis_is_replaced() {
    let redis = Redis::start().await;
    let proxy = FreezingProxy::start(format!("127.0.0.1:{}", redis.port)).await;
    let (a, _redis_a, _) = node_with(
        RedisBackplane::new(&proxy.url())
            .unwrap()
            .keepalive(Duration::from_millis(200)),
    )
    .await;
    let (b, _redis_b, _) = node(&redis.url()).await;
    let mut on_a = a.ws("/ws").await;
    let mut on_b = b.ws("/ws").await;
    for client in [&mut on_a, &mut on_b] {
        assert_eq!(client.recv_text().await, "ready");
    }
    let crosses =
        async |on_a: &mut verb::test::TestWs, on_b: &mut verb::test::TestWs, text: &str| {
            on_b.send_text(&format!("say r {text}")).await;
            loop {
                match tokio::time::timeout(Duration::from_millis(200), on_a.recv_text()).await {
                    Ok(got) if got == text => return true,
                    Ok(_) => continue,
                    Err(_) => return false,
                }
            }
        };
    wait_for("the link works", async || {
        crosses(&mut on_a, &mut on_b, "before").await
    })
    .await;
    // A healthy link stays up across many keepalive periods: every message crosses.
    for i in 0..15 {
        assert!(
            crosses(&mut on_a, &mut on_b, &format!("steady {i}")).await,
            "message {i} was lost: the keepalive replaced a healthy link"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    proxy.freeze();
    wait_for("traffic crosses again over a new link", async || {
        crosses(&mut on_a, &mut on_b, "after").await
    })
    .await;
}

/// Any app becomes a node with `VERB_REDIS_URL`: two `rooms` processes, no code change, share rooms.
#[tokio::test]
async fn verb_redis_url_makes_any_app_a_node() {
    let redis = Redis::start().await;
    let url = redis.url();
    let env = [("VERB_REDIS_URL", url.as_str())];
    let a = Example::start_with_env("rooms", &[], &env);
    let b = Example::start_with_env("rooms", &[], &env);
    assert!(a.logs().iter().any(|line| line.contains("VERB_REDIS_URL")));
    let (mut ada, _) = connect(&a, "/ws/lobby", None).await;
    next_json(&mut ada).await;
    let (mut bob, _) = connect(&b, "/ws/lobby", None).await;
    next_json(&mut bob).await;
    // The subscription of a fresh node may take a moment: repeat until one crosses.
    let mut crossed = false;
    for _ in 0..100 {
        send_json(
            &mut bob,
            &json!({ "username": "bob", "text": "hello node a" }),
        )
        .await;
        let next = tokio::time::timeout(Duration::from_millis(100), next_json(&mut ada)).await;
        if next.is_ok_and(|got| got["text"] == "hello node a") {
            crossed = true;
            break;
        }
    }
    assert!(crossed, "no message crossed from node b to node a");
    drop((ada, bob));
    assert!(a.terminate().success());
    assert!(b.terminate().success());
}

/// How many keys match `pattern` (the first line of a `KEYS` reply is `*N`).
async fn keys_matching(redis: &Redis, pattern: &str) -> usize {
    let reply = redis.command(&format!("KEYS {pattern}")).await;
    reply
        .strip_prefix('*')
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("KEYS answered {reply:?}"))
}

/// Opens one connection to each of `rooms` rooms named `{name}-{i}`, each read up to its welcome.
async fn fill_rooms(example: &Example, name: &str, rooms: usize) -> Vec<crate::support::Client> {
    let mut clients = Vec::with_capacity(rooms);
    for i in 0..rooms {
        let (mut client, _) = connect(example, &format!("/ws/{name}-{i}"), None).await;
        assert_eq!(next_json(&mut client).await["type"], "welcome");
        clients.push(client);
    }
    clients
}

/// No Redis key outlives its members: 300 rooms joined on one node and left leave no key that names
/// any of them (at once, well within 20 s), and the keys of 300 rooms on a node killed with SIGKILL
/// expire within 20 s.
#[tokio::test]
async fn no_redis_key_outlives_the_rooms_it_names() {
    const ROOMS: usize = 300;
    let redis = Redis::start().await;
    let url = redis.url();
    let leaving = Example::start("cluster", &["--redis", &url]);
    let killed = Example::start("cluster", &["--redis", &url]);
    let mut left = fill_rooms(&leaving, "left", ROOMS).await;
    let held = fill_rooms(&killed, "killed", ROOMS).await;
    // Each room has this node's member hash and the room's node set.
    for pattern in ["*left-*", "*killed-*"] {
        wait_for(&format!("the keys of {pattern}"), async || {
            keys_matching(&redis, pattern).await == 2 * ROOMS
        })
        .await;
    }

    for client in &mut left {
        client.send(Tm::Close(None)).await.unwrap();
    }
    let mut killed = killed;
    killed.kill();
    let started = std::time::Instant::now();
    // Left rooms go at the leave, long before any expiry (15 s) could take them; a killed node's
    // keys go by expiry.
    for (pattern, deadline) in [
        ("*left-*", Duration::from_secs(5)),
        ("*killed-*", Duration::from_secs(20)),
    ] {
        while keys_matching(&redis, pattern).await > 0 {
            assert!(
                started.elapsed() < deadline,
                "{} keys {pattern} remain after {deadline:?}",
                keys_matching(&redis, pattern).await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    drop((left, held));
    assert!(leaving.terminate().success());
}

/// The queue of publishes waiting for Redis is bounded in bytes: with the link to Redis frozen, a
/// burst of 100 publishes of 64 KiB against a 256 KiB bound keeps at most a handful, and the rest
/// are dropped and counted (`lost`, `verb_backplane_lost_total`), not held in memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_publish_queue_is_bounded_in_bytes() {
    let redis = Redis::start().await;
    let proxy = FreezingProxy::start(format!("127.0.0.1:{}", redis.port)).await;
    let (server, backplane, rooms) = node_with(
        RedisBackplane::new(&proxy.url())
            .unwrap()
            .max_queued_bytes(256 * 1024)
            .keepalive(Duration::from_secs(60)),
    )
    .await;
    let mut client = server.ws("/ws").await;
    assert_eq!(client.recv_text().await, "ready");
    // The writer's link is up once the member hash exists.
    wait_for("the member hash", async || {
        keys_matching(&redis, "verb:m:r:*").await == 1
    })
    .await;
    proxy.freeze();
    let big = "x".repeat(64 * 1024);
    for _ in 0..100 {
        rooms.to("r").send(big.clone());
    }
    let lost = backplane.lost();
    assert!(
        (90..=100).contains(&lost),
        "{lost} of 100 publishes dropped"
    );
}
