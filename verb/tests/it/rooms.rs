//! Rooms, topics, direct messages and presence, through real clients.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use verb::prelude::*;
use verb::test::{TestServer, TestWs};
use verb::{MemoryBackplane, ReadyState};

#[derive(Clone)]
struct Name(String);

/// A small command protocol over text messages, so tests drive the hub from the client side.
/// Replies start with `ok`; fanned-out messages arrive as they were sent.
fn commands() -> Ws {
    Ws::new()
        .open(|ws: &WebSocket, req: &Request| {
            if let Some(name) = req.query("name") {
                ws.set_data(Name(name.to_owned()));
            }
            if let Some(user) = req.query("user") {
                let rooms = ws.attachment::<Rooms>().expect("the app attaches its hub");
                rooms.set_user(ws, user);
            }
        })
        .message(|ws: &WebSocket, msg: Message| {
            let rooms = ws.attachment::<Rooms>().expect("the app attaches its hub");
            let text = msg.as_text().unwrap_or_default().to_owned();
            let mut words = text.splitn(3, ' ');
            let verb = words.next().unwrap_or_default();
            let arg = words.next().unwrap_or_default();
            let rest = words.next().unwrap_or_default();
            let reply = match verb {
                "join" => match rooms.join(arg, ws) {
                    Ok(joined) => format!("ok join {joined}"),
                    Err(err) => format!("refused: {err}"),
                },
                "leave" => format!("ok leave {}", rooms.leave(arg, ws)),
                "say" => {
                    let d = rooms.to(arg).except(ws).send(rest.to_owned());
                    format!("ok say {}", d.recipients())
                }
                "all" => {
                    let d = rooms.everyone().except(ws).send(format!("{arg} {rest}"));
                    format!("ok all {}", d.recipients())
                }
                "dm" => {
                    let d = rooms.user(arg).send(rest.to_owned());
                    if d.reached_nobody() {
                        "ok dm absent".to_owned()
                    } else {
                        format!("ok dm {}", d.recipients())
                    }
                }
                "sub" => format!("ok sub {}", ws.subscribe(arg)),
                "unsub" => format!("ok unsub {}", ws.unsubscribe(arg)),
                "subs" => format!("ok subs {}", ws.subscriptions().join(",")),
                "issub" => format!("ok issub {}", ws.is_subscribed(arg)),
                "pub" => format!("ok pub {}", ws.publish(arg, rest.to_owned()).recipients()),
                "who" => {
                    let names: Vec<String> = rooms
                        .presence::<Name>(arg)
                        .into_iter()
                        .map(|n| n.0)
                        .collect();
                    format!("ok who {}", names.join(","))
                }
                "rooms" => format!("ok rooms {}", rooms.rooms_of(ws).join(",")),
                _ => "ok ?".to_owned(),
            };
            ws.send_text(reply);
        })
}

async fn start() -> (TestServer, Rooms) {
    let mut app = verb::create_server();
    app.ws("/ws", commands());
    let rooms = app.rooms().clone();
    (TestServer::start(app).await, rooms)
}

async fn ask(client: &mut TestWs, command: &str) -> String {
    client.send_text(command).await;
    loop {
        let text = client.recv_text().await;
        if let Some(reply) = text.strip_prefix("ok ") {
            return reply.to_owned();
        }
    }
}

/// Waits (up to 5 s) for the server to reach a state that follows a client's action asynchronously,
/// such as a close being processed.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never happened: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn join_broadcast_except_sender_leave_and_auto_leave_on_close() {
    let (server, rooms) = start().await;
    let mut ada = server.ws("/ws").await;
    let mut bob = server.ws("/ws").await;
    let mut cyd = server.ws("/ws").await;
    assert_eq!(ask(&mut ada, "join lobby").await, "join true");
    assert_eq!(ask(&mut ada, "join lobby").await, "join false");
    assert_eq!(ask(&mut ada, "join games").await, "join true");
    assert_eq!(ask(&mut bob, "join lobby").await, "join true");
    assert_eq!(rooms.size("lobby"), 2);
    assert_eq!(ask(&mut ada, "rooms").await, "rooms lobby,games");

    // To the room but the sender: bob gets it, ada does not, cyd (elsewhere) does not.
    assert_eq!(ask(&mut ada, "say lobby hello lobby").await, "say 1");
    assert_eq!(bob.recv_text().await, "hello lobby");
    assert_eq!(ask(&mut ada, "say nowhere hi").await, "say 0");
    assert_eq!(ask(&mut bob, "all from bob").await, "all 2");
    // Each receiver's next message is the broadcast, not the room message it must not have had.
    assert_eq!(ada.recv_text().await, "from bob");
    assert_eq!(cyd.recv_text().await, "from bob");

    assert_eq!(ask(&mut bob, "leave lobby").await, "leave true");
    assert_eq!(ask(&mut bob, "leave lobby").await, "leave false");
    assert_eq!(rooms.size("lobby"), 1);

    // Closing leaves every room; empty rooms vanish.
    ada.close(1000, "bye").await;
    ada.recv_close().await;
    eventually("ada's rooms emptied", || rooms.room_count() == 0).await;
    assert!(rooms.members("lobby").is_empty());
    assert_eq!(rooms.size("games"), 0);
    eventually("ada forgotten", || rooms.connections() == 2).await;
}

#[tokio::test]
async fn topics_subscribe_unsubscribe_and_publish_bun_style() {
    let (server, rooms) = start().await;
    let mut a = server.ws("/ws").await;
    let mut b = server.ws("/ws").await;
    let mut c = server.ws("/ws").await;
    assert_eq!(ask(&mut a, "sub news").await, "sub true");
    assert_eq!(ask(&mut b, "sub news").await, "sub true");
    assert_eq!(ask(&mut b, "sub sport").await, "sub true");
    assert_eq!(ask(&mut b, "issub news").await, "issub true");
    assert_eq!(ask(&mut c, "issub news").await, "issub false");
    assert_eq!(ask(&mut b, "subs").await, "subs news,sport");

    // ws.publish: every subscriber but the sender, who need not be subscribed.
    assert_eq!(ask(&mut c, "pub news breaking").await, "pub 2");
    assert_eq!(a.recv_text().await, "breaking");
    assert_eq!(b.recv_text().await, "breaking");
    assert_eq!(ask(&mut a, "pub news from a").await, "pub 1");
    assert_eq!(b.recv_text().await, "from a");

    assert_eq!(ask(&mut b, "unsub news").await, "unsub true");
    assert_eq!(ask(&mut b, "unsub news").await, "unsub false");
    assert_eq!(rooms.publish("news", "after").recipients(), 1);
    assert_eq!(a.recv_text().await, "after");
    assert_eq!(ask(&mut b, "subs").await, "subs sport");
}

/// `app.publish` from outside any handler: a timer feeding subscribers.
#[tokio::test]
async fn app_publish_from_a_timer_reaches_subscribers_only() {
    let mut app = verb::create_server();
    app.ws("/ws", commands());
    let feed = app.rooms().clone();
    assert_eq!(app.publish("ticks", "nobody yet").recipients(), 0);
    let server = TestServer::start(app).await;
    let ticker = tokio::spawn(async move {
        let mut n = 0u32;
        let mut interval = tokio::time::interval(Duration::from_millis(10));
        loop {
            interval.tick().await;
            n += 1;
            feed.publish("ticks", format!("tick {n}"));
        }
    });
    let mut sub = server.ws("/ws").await;
    let mut other = server.ws("/ws").await;
    assert_eq!(ask(&mut sub, "sub ticks").await, "sub true");
    let first: u32 = sub.recv_text().await[5..].parse().unwrap();
    for expected in first + 1..first + 4 {
        assert_eq!(sub.recv_text().await, format!("tick {expected}"));
    }
    // The unsubscribed client gets only its own reply.
    assert_eq!(ask(&mut other, "issub ticks").await, "issub false");
    other.send_text("rooms").await;
    assert_eq!(other.recv_text().await, "ok rooms ");
    ticker.abort();
}

#[tokio::test]
async fn direct_messages_reach_every_tab_of_a_user_and_report_absent_users() {
    let (server, rooms) = start().await;
    let mut alice = server.ws("/ws?user=alice").await;
    let mut bob_tab1 = server.ws("/ws?user=bob").await;
    let mut bob_tab2 = server.ws("/ws?user=bob").await;
    assert_eq!(ask(&mut alice, "dm bob psst").await, "dm 2");
    assert_eq!(bob_tab1.recv_text().await, "psst");
    assert_eq!(bob_tab2.recv_text().await, "psst");
    assert_eq!(ask(&mut bob_tab1, "dm carol hi").await, "dm absent");
    assert!(rooms.is_connected("bob"));
    assert_eq!(rooms.user_connections("bob").len(), 2);

    // One tab closes: the other still gets messages; both gone: absent.
    bob_tab1.close(1000, "").await;
    bob_tab1.recv_close().await;
    eventually("bob's first tab forgotten", || {
        rooms.user_connections("bob").len() == 1
    })
    .await;
    assert_eq!(ask(&mut alice, "dm bob still there?").await, "dm 1");
    assert_eq!(bob_tab2.recv_text().await, "still there?");
    bob_tab2.close(1000, "").await;
    bob_tab2.recv_close().await;
    eventually("bob gone", || !rooms.is_connected("bob")).await;
    assert_eq!(ask(&mut alice, "dm bob hello?").await, "dm absent");
}

#[tokio::test]
async fn presence_lists_members_data_and_hooks_see_joins_and_leaves() {
    let (server, rooms) = start().await;
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&events);
    rooms.on_join(move |rooms: &Rooms, room: &str, ws: &WebSocket| {
        let name = ws.data::<Name>().map(|n| n.0).unwrap_or_default();
        seen.lock().unwrap().push(format!("+{name}@{room}"));
        // Hooks run outside the hub's locks: they may fan out to the room.
        rooms
            .to(room)
            .except(ws)
            .send(format!("{name} joined {room}"));
    });
    let seen = Arc::clone(&events);
    rooms.on_leave(move |rooms: &Rooms, room: &str, ws: &WebSocket| {
        let name = ws.data::<Name>().map(|n| n.0).unwrap_or_default();
        let closed = ws.ready_state() == ReadyState::Closed;
        seen.lock()
            .unwrap()
            .push(format!("-{name}@{room} closed={closed}"));
        rooms.to(room).send(format!("{name} left {room}"));
    });

    let mut ada = server.ws("/ws?name=ada").await;
    let mut bob = server.ws("/ws?name=bob").await;
    assert_eq!(ask(&mut ada, "join lobby").await, "join true");
    assert_eq!(ask(&mut bob, "join lobby").await, "join true");
    assert_eq!(ada.recv_text().await, "bob joined lobby");
    assert_eq!(ask(&mut ada, "who lobby").await, "who ada,bob");

    assert_eq!(ask(&mut bob, "leave lobby").await, "leave true");
    assert_eq!(ada.recv_text().await, "bob left lobby");
    assert_eq!(ask(&mut ada, "who lobby").await, "who ada");
    assert_eq!(ask(&mut bob, "join lobby").await, "join true");
    assert_eq!(ada.recv_text().await, "bob joined lobby");

    // Closing counts as leaving, and the hook sees a closed connection.
    bob.close(1000, "").await;
    bob.recv_close().await;
    assert_eq!(ada.recv_text().await, "bob left lobby");
    assert_eq!(
        *events.lock().unwrap(),
        [
            "+ada@lobby",
            "+bob@lobby",
            "-bob@lobby closed=false",
            "+bob@lobby",
            "-bob@lobby closed=true",
        ]
    );
}

/// A client that never reads fills only its own queue: the others get every message, in order, and
/// the publisher never waits.
#[tokio::test]
async fn a_stalled_subscriber_does_not_hold_up_the_others() {
    let mut app = verb::create_server();
    app.ws("/ws", commands().backpressure_limit(64 * 1024));
    let rooms = app.rooms().clone();
    let server = TestServer::start(app).await;

    // A raw client with a tiny receive window that completes the handshake and then never reads.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stalled = socket.connect(server.addr()).await.unwrap();
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let handshake = format!(
            "GET /ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            server.addr()
        );
        stalled.write_all(handshake.as_bytes()).await.unwrap();
        let mut head = [0u8; 12];
        stalled.read_exact(&mut head).await.unwrap();
        assert_eq!(&head, b"HTTP/1.1 101");
    }
    let mut good = server.ws("/ws").await;
    eventually("both connections known", || rooms.connections() == 2).await;

    // Far more than the stalled client's queue limit plus what the kernel buffers hold for it. Each
    // publish waits for the good client to get it, so only the stalled one can fall behind.
    const COUNT: usize = 400;
    let payload = "x".repeat(16 * 1024);
    let mut stalled_dropped = 0;
    let mut slowest = Duration::ZERO;
    for i in 0..COUNT {
        let started = std::time::Instant::now();
        let delivery = rooms.everyone().send(format!("{i:05}{payload}"));
        slowest = slowest.max(started.elapsed());
        assert!(delivery.recipients() >= 1, "{delivery:?}");
        stalled_dropped += delivery.dropped;
        let text = good.recv_text().await;
        assert_eq!(
            &text[..5],
            format!("{i:05}"),
            "the good client missed a message"
        );
    }
    assert!(
        stalled_dropped > 0,
        "the stalled client never hit its limit"
    );
    assert!(
        slowest < Duration::from_millis(100),
        "a publish waited on the slow client: {slowest:?}"
    );
    // The good connection still works both ways.
    assert_eq!(ask(&mut good, "rooms").await, "rooms ");
    drop(stalled);
}

/// Two apps linked by an in-process backplane behave as two nodes: a publish on one reaches the
/// members on the other exactly once, and leaving out the sender still works.
#[tokio::test]
async fn a_backplane_carries_room_broadcasts_and_direct_messages_between_nodes() {
    let bus = MemoryBackplane::new();
    let mut nodes = Vec::new();
    for _ in 0..2 {
        let mut app = verb::create_server();
        app.ws("/ws", commands());
        app.rooms().set_backplane(bus.clone()).unwrap();
        assert!(matches!(
            app.rooms().set_backplane(bus.clone()),
            Err(verb::BackplaneError::AlreadySet)
        ));
        nodes.push(TestServer::start(app).await);
    }
    assert_eq!(bus.nodes(), 2);
    let mut on_a = nodes[0].ws("/ws?user=ann").await;
    let mut on_b = nodes[1].ws("/ws").await;
    let mut also_b = nodes[1].ws("/ws").await;
    assert_eq!(ask(&mut on_a, "join r").await, "join true");
    assert_eq!(ask(&mut on_b, "join r").await, "join true");
    assert_eq!(ask(&mut also_b, "join r").await, "join true");

    // From B, except the sender: B's other member (locally) and A's member (remotely), once each.
    assert_eq!(ask(&mut on_b, "say r over the wire").await, "say 1");
    assert_eq!(on_a.recv_text().await, "over the wire");
    assert_eq!(also_b.recv_text().await, "over the wire");
    assert_eq!(ask(&mut on_a, "say r back").await, "say 0");
    assert_eq!(on_b.recv_text().await, "back");
    assert_eq!(also_b.recv_text().await, "back");
    // Nothing arrived twice: the next message each gets is the next one sent.
    assert_eq!(ask(&mut also_b, "say r marker").await, "say 1");
    assert_eq!(on_a.recv_text().await, "marker");
    assert_eq!(on_b.recv_text().await, "marker");

    // A direct message to a user connected on the other node arrives (the local count is 0: the
    // delivery happens on the other node).
    assert_eq!(ask(&mut on_b, "dm ann hi ann").await, "dm absent");
    assert_eq!(on_a.recv_text().await, "hi ann");
}

/// Joining, leaving, naming users and publishing from many threads at once keeps the hub consistent
/// and never deadlocks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_joins_leaves_and_publishes_keep_the_hub_consistent() {
    let handles = Arc::new(Mutex::new(Vec::new()));
    let kept = Arc::clone(&handles);
    let mut app = verb::create_server();
    app.ws(
        "/ws",
        Ws::new().open(move |ws: &WebSocket, _req: &Request| {
            kept.lock().unwrap().push(ws.clone());
        }),
    );
    let rooms = app.rooms().clone();
    let server = TestServer::start(app).await;
    let mut clients = Vec::new();
    for _ in 0..24 {
        clients.push(server.ws("/ws").await);
    }
    eventually("all open", || handles.lock().unwrap().len() == 24).await;
    // Clients read everything, so queues keep moving.
    let readers: Vec<_> = clients
        .into_iter()
        .map(|mut client| {
            tokio::spawn(async move {
                while !matches!(client.next_event().await, verb::test::WsEvent::Gone) {}
            })
        })
        .collect();

    let sockets: Vec<WebSocket> = handles.lock().unwrap().clone();
    let threads: Vec<_> = (0..6u64)
        .map(|t| {
            let rooms = rooms.clone();
            let sockets = sockets.clone();
            std::thread::spawn(move || {
                // A small deterministic generator per thread.
                let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ (t + 1);
                let mut next = move || {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state
                };
                for _ in 0..3_000 {
                    let ws = &sockets[(next() % sockets.len() as u64) as usize];
                    let room = format!("r{}", next() % 6);
                    match next() % 6 {
                        0 | 1 => {
                            rooms.join(&room, ws).unwrap();
                        }
                        2 => {
                            rooms.leave(&room, ws);
                        }
                        3 => {
                            rooms.to(&room).except(ws).send("x");
                        }
                        4 => {
                            rooms.set_user(ws, format!("u{}", next() % 4));
                        }
                        _ => {
                            rooms.user(&format!("u{}", next() % 4)).send("y");
                        }
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("a hub operation panicked");
    }

    // Membership agrees both ways.
    for room in rooms.rooms() {
        let members = rooms.members(&room);
        assert!(!members.is_empty(), "empty room {room} kept");
        for ws in &members {
            assert!(rooms.contains(&room, ws));
            assert!(rooms.rooms_of(ws).contains(&room));
        }
    }
    for ws in &sockets {
        for room in rooms.rooms_of(ws) {
            assert!(rooms.members(&room).contains(ws));
        }
    }
    let users: usize = (0..4)
        .map(|u| rooms.user_connections(&format!("u{u}")).len())
        .sum();
    assert_eq!(
        users,
        sockets
            .iter()
            .filter(|ws| rooms.user_of(ws).is_some())
            .count()
    );

    server.stop().await;
    eventually("every connection forgotten", || rooms.connections() == 0).await;
    assert_eq!(rooms.room_count(), 0);
    assert!((0..4).all(|u| !rooms.is_connected(&format!("u{u}"))));
    for reader in readers {
        reader.await.unwrap();
    }
}

/// An app whose `/hall` joins each connection to room `hall` with `join_with` (welcome `welcome N`,
/// announcement `joined N`), tells the others `left N` when one closes, and a task that keeps
/// broadcasting `noise` to the hall until the returned flag is lowered.
async fn hall() -> (TestServer, Rooms, Arc<std::sync::atomic::AtomicBool>) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let mut app = verb::create_server();
    let rooms = app.rooms().clone();
    let (opened, closed) = (rooms.clone(), rooms.clone());
    app.ws(
        "/hall",
        Ws::new()
            .open(move |ws: &WebSocket, _req: &Request| {
                opened
                    .join_with("hall", ws, |count| {
                        Greeting::new()
                            .welcome(format!("welcome {count}"))
                            .announce(format!("joined {count}"))
                    })
                    .unwrap();
            })
            .close(move |_ws: &WebSocket, _code: CloseCode, _reason: &str| {
                closed
                    .to("hall")
                    .send(format!("left {}", closed.size("hall")));
            }),
    );
    let running = Arc::new(AtomicBool::new(true));
    let (noisy, flag) = (rooms.clone(), Arc::clone(&running));
    tokio::spawn(async move {
        while flag.load(Ordering::Relaxed) {
            noisy.to("hall").send("noise");
            tokio::task::yield_now().await;
        }
    });
    (TestServer::start(app).await, rooms, running)
}

/// Opens `n` WebSockets to `/hall` at once; each one's first message must be its welcome. Returns
/// the clients with their welcome counts.
async fn open_hall(server: &Arc<TestServer>, n: usize) -> Vec<(TestWs, usize)> {
    let joins: Vec<_> = (0..n)
        .map(|_| {
            let server = Arc::clone(server);
            tokio::spawn(async move {
                let mut client = server.ws("/hall").await;
                let first = client.recv_text().await;
                let count: usize = first
                    .strip_prefix("welcome ")
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| panic!("the first message was {first:?}, not a welcome"));
                (client, count)
            })
        })
        .collect();
    let mut clients = Vec::new();
    for join in joins {
        clients.push(
            join.await
                .expect("a newcomer's first message was its welcome"),
        );
    }
    clients
}

/// Regression (issue 27): the rooms example joined, then counted, then sent its welcome, so a
/// broadcast from another task could reach a newcomer before its welcome, and concurrent joins could
/// report the same count. With `join_with`, under a steady stream of broadcasts and concurrent joins
/// and leaves, every newcomer's first message is its welcome; concurrent joins get the counts
/// 1..=n, each once; and each member hears the later joins' counts in increasing order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_with_welcome_comes_first_and_counts_follow_the_joins() {
    const JOINS: usize = 32;
    const ROUNDS: usize = 6;
    let (server, rooms, running) = hall().await;
    let server = Arc::new(server);

    for round in 0..ROUNDS {
        // Concurrent joins into an empty hall: distinct counts 1..=JOINS.
        let mut clients = open_hall(&server, JOINS).await;
        let mut counts: Vec<usize> = clients.iter().map(|(_, count)| *count).collect();
        counts.sort_unstable();
        assert_eq!(counts, (1..=JOINS).collect::<Vec<_>>(), "round {round}");

        // Each member then hears exactly the later joins, in the order of their counts.
        for (client, count) in &mut clients {
            let mut expected = *count + 1;
            while expected <= JOINS {
                let text = client.recv_text().await;
                if text == "noise" {
                    continue;
                }
                assert_eq!(
                    text,
                    format!("joined {expected}"),
                    "round {round}: the member welcomed with {count}"
                );
                expected += 1;
            }
        }

        // Leaves and joins at once: newcomers still get their welcome first.
        let leaving: Vec<_> = clients.drain(..JOINS / 2).collect();
        let closes = tokio::spawn(async move {
            for (mut client, _) in leaving {
                client.close(1000, "bye").await;
            }
        });
        let newcomers = open_hall(&server, JOINS / 2).await;
        closes.await.expect("the closes ran");
        assert_eq!(newcomers.len(), JOINS / 2);
        eventually("the hall holds the stayers and the newcomers", || {
            rooms.size("hall") == JOINS
        })
        .await;

        for (mut client, _) in clients.into_iter().chain(newcomers) {
            client.close(1000, "round over").await;
        }
        eventually("the hall is empty", || rooms.size("hall") == 0).await;
    }

    running.store(false, std::sync::atomic::Ordering::Relaxed);
    Arc::try_unwrap(server)
        .unwrap_or_else(|_| panic!("no task keeps the server"))
        .stop()
        .await;
}

/// The hub's limits: at most `max_rooms_per_connection` rooms (topics too) per connection and room
/// names of at most `max_room_name_len` bytes; beyond them `join` is a typed error and nothing
/// changes.
#[tokio::test]
async fn joins_beyond_the_hubs_limits_are_refused_with_a_typed_error() {
    let (server, rooms) = start().await;
    assert_eq!(rooms.limits(), verb::RoomLimits::new());
    assert_eq!(rooms.limits().get_max_rooms_per_connection(), 1000);
    assert_eq!(rooms.limits().get_max_room_name_len(), 256);
    rooms.set_limits(
        verb::RoomLimits::new()
            .max_rooms_per_connection(3)
            .max_room_name_len(8),
    );
    let mut client = server.ws("/ws").await;
    for room in ["a", "b", "c"] {
        assert_eq!(ask(&mut client, &format!("join {room}")).await, "join true");
    }
    client.send_text("join d").await;
    assert_eq!(
        client.recv_text().await,
        "refused: a connection may be in at most 3 rooms"
    );
    assert_eq!(ask(&mut client, "sub topic").await, "sub false");
    assert_eq!(ask(&mut client, "rooms").await, "rooms a,b,c");
    assert_eq!(ask(&mut client, "leave a").await, "leave true");
    client.send_text("join ninebytes").await;
    assert_eq!(
        client.recv_text().await,
        "refused: room name of 9 bytes is longer than the limit of 8"
    );
    assert_eq!(ask(&mut client, "join d").await, "join true");
    assert_eq!(rooms.room_count(), 3);
    assert_eq!(
        rooms.join(&"x".repeat(9), &server_side(&rooms)),
        Err(verb::JoinError::NameTooLong { len: 9, limit: 8 })
    );
}

/// A connection the hub knows, from the server's side.
fn server_side(rooms: &Rooms) -> WebSocket {
    rooms.members("d").pop().expect("the client is in d")
}

/// A backplane whose hooks use the hub, as one keeping presence across nodes does.
#[derive(Clone, Default)]
struct PresenceProbe {
    node: Arc<Mutex<Option<verb::Node>>>,
    rooms: Arc<Mutex<Option<Rooms>>>,
    heard: Arc<Mutex<Vec<String>>>,
}

impl PresenceProbe {
    fn look(&self, event: &str, room: &str) {
        let node = self.node.lock().unwrap().clone().unwrap();
        let rooms = self.rooms.lock().unwrap().clone().unwrap();
        // Both take the hub's locks: under one of them, either would deadlock.
        let members = node.members(room).len();
        let names = rooms.presence::<Name>(room).len();
        let values = rooms.presence_values(room).len();
        self.heard
            .lock()
            .unwrap()
            .push(format!("{event} {room} {members} {names} {values}"));
    }
}

impl verb::Backplane for PresenceProbe {
    fn start(&self, node: verb::Node) {
        *self.node.lock().unwrap() = Some(node);
    }

    fn publish(&self, _scope: verb::Scope<'_>, _message: &Message) {}

    fn member_joined(&self, room: &str, _member: u64, _presence: Option<&str>) {
        self.look("joined", room);
    }

    fn member_left(&self, room: &str, _member: u64) {
        self.look("left", room);
    }
}

/// Backplane hooks and room hooks run with none of the hub's locks held: each may ask the hub who is
/// in the room (`presence`, `presence_values`, `Node::members`), and hears changes in order.
#[tokio::test]
async fn hooks_may_use_the_hub() {
    let mut app = verb::create_server();
    app.ws("/ws", commands());
    let rooms = app.rooms().clone();
    let probe = PresenceProbe::default();
    *probe.rooms.lock().unwrap() = Some(rooms.clone());
    rooms.set_backplane(probe.clone()).unwrap();
    let hooks = Arc::new(Mutex::new(Vec::new()));
    for (event, heard) in [("on_join", hooks.clone()), ("on_leave", hooks.clone())] {
        let hook = move |rooms: &Rooms, room: &str, ws: &WebSocket| {
            let names = rooms.presence::<Name>(room).len();
            let values = rooms.presence_values(room).len();
            let mine = ws.data::<Name>().map(|n| n.0).unwrap_or_default();
            heard
                .lock()
                .unwrap()
                .push(format!("{event} {room} {mine} {names} {values}"));
        };
        if event == "on_join" {
            rooms.on_join(hook);
        } else {
            rooms.on_leave(hook);
        }
    }
    let server = TestServer::start(app).await;
    let mut ada = server.ws("/ws?name=ada").await;
    assert_eq!(ask(&mut ada, "join hall").await, "join true");
    assert_eq!(ask(&mut ada, "leave hall").await, "leave true");
    assert_eq!(
        *probe.heard.lock().unwrap(),
        ["joined hall 1 1 0", "left hall 0 0 0"]
    );
    assert_eq!(
        *hooks.lock().unwrap(),
        ["on_join hall ada 1 0", "on_leave hall ada 0 0"]
    );
}
