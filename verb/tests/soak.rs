//! Load and soak over loopback: many connections held with heartbeats, a busy room, and running out
//! of file descriptors. The server runs in a child process (this test binary again, in server mode),
//! so its memory and CPU are measured alone.
//!
//! `VERB_SOAK=full` (what `cargo xtask soak` sets) runs the full sizes: 10,000 connections held for a
//! minute, a room of 1,000 members under a steady publish rate for three minutes. Without it, the
//! same tests run at CI sizes in seconds.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write as _};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WireCloseCode;

/// How big and how long.
#[derive(Debug, Clone, Copy)]
struct Scale {
    connections: usize,
    hold: Duration,
    idle_timeout: Duration,
    members: usize,
    publishers: usize,
    per_publisher_per_s: u64,
    room_duration: Duration,
}

fn scale() -> Scale {
    if std::env::var("VERB_SOAK").as_deref() == Ok("full") {
        Scale {
            connections: 10_000,
            hold: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(10),
            members: 1_000,
            publishers: 10,
            per_publisher_per_s: 5,
            room_duration: Duration::from_secs(180),
        }
    } else {
        Scale {
            connections: 1_000,
            hold: Duration::from_secs(3),
            idle_timeout: Duration::from_secs(2),
            members: 100,
            publishers: 5,
            per_publisher_per_s: 20,
            room_duration: Duration::from_secs(3),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The server half.

/// The server the soak tests start in a child process; a no-op when run any other way.
#[test]
#[ignore = "the server half of the soak tests, which start it in a child process"]
fn soak_server() {
    let Ok(idle_ms) = std::env::var("VERB_SOAK_SERVER") else {
        return;
    };
    let idle = Duration::from_millis(idle_ms.parse().expect("VERB_SOAK_SERVER is milliseconds"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(serve(idle));
}

#[derive(Default)]
struct Counters {
    opened: AtomicU64,
    closed: AtomicU64,
    closed_twice: AtomicU64,
    closed_ids: Mutex<HashSet<u64>>,
}

impl Counters {
    fn open(&self) {
        self.opened.fetch_add(1, Ordering::SeqCst);
    }

    fn close(&self, id: u64) {
        let first = self
            .closed_ids
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id);
        if first {
            self.closed.fetch_add(1, Ordering::SeqCst);
        } else {
            self.closed_twice.fetch_add(1, Ordering::SeqCst);
        }
    }
}

async fn serve(idle: Duration) {
    use verb::prelude::*;

    let counters = Arc::new(Counters::default());
    let mut app = verb::create_server();
    let (on_open, on_close) = (Arc::clone(&counters), Arc::clone(&counters));
    app.ws(
        "/hb",
        Ws::new()
            .idle_timeout(idle)
            .open(move |_ws: &WebSocket, _req: &Request| on_open.open())
            .message(|ws: &WebSocket, msg: Message| {
                if msg.as_text() == Some("ping") {
                    ws.send_text("pong");
                }
            })
            .close(move |ws: &WebSocket, _code, _reason: &str| on_close.close(ws.id())),
    );
    let (on_open, on_close) = (Arc::clone(&counters), Arc::clone(&counters));
    app.ws(
        "/room",
        Ws::new()
            .idle_timeout(idle)
            .open(move |ws: &WebSocket, _req: &Request| {
                ws.subscribe("soak");
                on_open.open();
            })
            .message(|ws: &WebSocket, msg: Message| {
                if let Some(rooms) = ws.attachment::<Rooms>() {
                    rooms.to("soak").send(msg);
                }
            })
            .close(move |ws: &WebSocket, _code, _reason: &str| on_close.close(ws.id())),
    );
    let stats = Arc::clone(&counters);
    app.get("/stats", move |_req| {
        let stats = Arc::clone(&stats);
        async move {
            Json(json!({
                "opened": stats.opened.load(Ordering::SeqCst),
                "closed": stats.closed.load(Ordering::SeqCst),
                "closed_twice": stats.closed_twice.load(Ordering::SeqCst),
            }))
        }
    });
    let handle = app
        .bind("127.0.0.1:0")
        .await
        .expect("the soak server binds");
    // The parent reads this line from our stdout.
    let mut stdout = std::io::stdout();
    writeln!(stdout, "listening on http://{}", handle.local_addr()).expect("stdout");
    stdout.flush().ok();
    // Serve until the test closes our stdin.
    let _ = tokio::task::spawn_blocking(|| std::io::stdin().lines().count()).await;
    let _ = handle.stop_within(Duration::from_secs(5)).await;
}

// ---------------------------------------------------------------------------------------------
// The client half.

/// The server child process; killed when dropped.
struct ServerProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    addr: SocketAddr,
}

impl ServerProcess {
    /// Starts the server, with at most `max_fds` file descriptors if given.
    fn start(idle: Duration, max_fds: Option<u32>) -> ServerProcess {
        let exe = std::env::current_exe().expect("the test binary");
        let args = [
            "--ignored",
            "--exact",
            "soak_server",
            "--nocapture",
            "--test-threads=1",
        ];
        let mut command = match max_fds {
            Some(limit) => {
                let mut sh = Command::new("sh");
                sh.arg("-c")
                    .arg(format!("ulimit -n {limit} && exec \"$0\" \"$@\""))
                    .arg(&exe)
                    .args(args);
                sh
            }
            None => {
                let mut command = Command::new(&exe);
                command.args(args);
                command
            }
        };
        let mut child = command
            .env("VERB_SOAK_SERVER", idle.as_millis().to_string())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the soak server starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.split("listening on http://").nth(1) {
                    let _ = tx.send(addr.trim().to_owned());
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the soak server prints its address")
            .parse()
            .expect("an address");
        let stdin = child.stdin.take();
        ServerProcess { child, stdin, addr }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory in bytes.
    fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("the server's /proc status");
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .expect("VmRSS")
            * 1024
    }

    /// CPU time used so far (user + system).
    fn cpu(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))
            .expect("the server's /proc stat");
        let after_name = &stat[stat.rfind(')').expect("a stat line") + 2..];
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        let ticks: u64 =
            fields[11].parse::<u64>().unwrap_or(0) + fields[12].parse::<u64>().unwrap_or(0);
        // The kernel reports clock ticks, 100 per second on Linux.
        Duration::from_millis(ticks * 10)
    }

    fn is_alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    async fn stats(&self) -> Value {
        let (status, body) = http_get(self.addr, "/stats").await;
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).expect("stats JSON")
    }

    /// Waits until every opened connection has run its `close` callback; returns the stats.
    async fn settled(&self) -> Value {
        self.settled_except(0).await
    }

    /// Waits until all but `open` opened connections have closed; returns the stats.
    async fn settled_except(&self, open: u64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let stats = self.stats().await;
            let opened = stats["opened"].as_u64().unwrap_or(0);
            let closed = stats["closed"].as_u64().unwrap_or(0);
            if opened == closed + open {
                return stats;
            }
            assert!(
                Instant::now() < deadline,
                "connections never finished closing: {stats}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Closes stdin (a graceful stop) and waits for the exit.
    fn stop(mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.is_alive() {
            assert!(Instant::now() < deadline, "the soak server did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nhost: soak\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut out))
        .await
        .expect("an answer within 10 s")
        .expect("read");
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

type Client =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(addr: SocketAddr, path: &str) -> Client {
    let (client, _) = tokio_tungstenite::connect_async(format!("ws://{addr}{path}"))
        .await
        .expect("the upgrade succeeds");
    client
}

/// Opens `n` connections, 200 handshakes at a time.
async fn connect_many(addr: SocketAddr, path: &'static str, n: usize) -> Vec<Client> {
    let mut clients = Vec::with_capacity(n);
    while clients.len() < n {
        let batch = (n - clients.len()).min(200);
        let handshakes = (0..batch).map(|_| tokio::spawn(connect(addr, path)));
        for handshake in handshakes.collect::<Vec<_>>() {
            clients.push(handshake.await.expect("the handshake task"));
        }
    }
    clients
}

/// Lets this process open as many sockets as the hard limit allows.
fn raise_fd_limit() {
    if let Err(err) = rlimit::increase_nofile_limit(u64::MAX) {
        eprintln!("cannot raise the file descriptor limit: {err}");
    }
}

/// One client of the heartbeat round: connects (at most 200 handshakes at a time), sends an app-level
/// `ping` every `every` and expects each `pong` (protocol pings from the server are answered by the
/// client library as it reads), until `release`; then closes with 1000 and waits for the echo.
async fn heartbeat_client(
    addr: SocketAddr,
    gate: Arc<tokio::sync::Semaphore>,
    connected: Arc<AtomicU64>,
    mut release: tokio::sync::watch::Receiver<bool>,
    every: Duration,
) {
    let permit = gate.acquire().await.expect("the gate stays open");
    let mut client = connect(addr, "/hb").await;
    drop(permit);
    connected.fetch_add(1, Ordering::SeqCst);
    let mut pings = 0u64;
    let mut pongs = 0u64;
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = release.changed() => break,
            _ = tick.tick() => {
                client.send(WsMessage::text("ping")).await.expect("heartbeat sent");
                pings += 1;
            }
            next = client.next() => match next {
                Some(Ok(WsMessage::Text(text))) if text.as_str() == "pong" => pongs += 1,
                Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => {}
                other => panic!("unexpected while holding: {other:?}"),
            },
        }
    }
    while pongs < pings {
        match tokio::time::timeout(Duration::from_secs(10), client.next()).await {
            Ok(Some(Ok(WsMessage::Text(_)))) => pongs += 1,
            Ok(Some(Ok(_))) => {}
            other => panic!("a heartbeat went unanswered: {other:?}"),
        }
    }
    close_all(vec![client]).await;
}

/// Closes every client with 1000 and waits for each server's close frame.
async fn close_all(clients: Vec<Client>) {
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|mut client| {
            tokio::spawn(async move {
                let frame = CloseFrame {
                    code: WireCloseCode::Normal,
                    reason: "done".into(),
                };
                client.close(Some(frame)).await.expect("close sent");
                while let Ok(Some(next)) =
                    tokio::time::timeout(Duration::from_secs(10), client.next()).await
                {
                    if next.is_err() {
                        break;
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a close task");
    }
}

/// Many connections held with heartbeats, then closed: no errors, every `close` callback ran once,
/// and a second identical round leaves the server's memory where the first left it (no leak).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_held_with_heartbeats_then_closed_leave_no_trace() {
    raise_fd_limit();
    let scale = scale();
    let server = ServerProcess::start(scale.idle_timeout, None);
    let started_rss = server.rss();
    let mut rss_after = Vec::new();
    let mut peak = 0;
    for round in 1..=2 {
        let started = Instant::now();
        let gate = Arc::new(tokio::sync::Semaphore::new(200));
        let connected = Arc::new(AtomicU64::new(0));
        let (release, released) = tokio::sync::watch::channel(false);
        let clients: Vec<_> = (0..scale.connections)
            .map(|_| {
                tokio::spawn(heartbeat_client(
                    server.addr,
                    Arc::clone(&gate),
                    Arc::clone(&connected),
                    released.clone(),
                    scale.idle_timeout / 3,
                ))
            })
            .collect();
        while connected.load(Ordering::SeqCst) < scale.connections as u64 {
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "connecting took too long"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let connected = started.elapsed();
        let held = Instant::now();
        while held.elapsed() < scale.hold {
            peak = peak.max(server.rss());
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        release.send(true).expect("clients listen");
        for client in clients {
            client.await.expect("a heartbeat client");
        }
        let stats = server.settled().await;
        assert_eq!(
            stats["closed_twice"], 0,
            "a close callback ran twice: {stats}"
        );
        assert_eq!(stats["opened"], json!(round * scale.connections), "{stats}");
        rss_after.push(server.rss());
        eprintln!(
            "round {round}: {} connections in {connected:.1?}, held {:?}; server RSS {} KiB at the \
             start, {} KiB at the peak ({} B per connection), {} KiB after closing",
            scale.connections,
            scale.hold,
            started_rss / 1024,
            peak / 1024,
            peak.saturating_sub(started_rss) / scale.connections as u64,
            rss_after[round - 1] / 1024,
        );
    }
    // The allocator keeps what the first round freed for reuse; a leak would grow it again.
    let (first, second) = (rss_after[0], rss_after[1]);
    assert!(
        second <= first + first / 10 + (4 << 20),
        "server memory grew from {first} to {second} bytes over an identical round"
    );
    server.stop();
}

/// A room under a steady publish rate: every member receives every message exactly once, in each
/// publisher's order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_room_loses_duplicates_and_reorders_nothing() {
    raise_fd_limit();
    let scale = scale();
    let server = ServerProcess::start(Duration::from_secs(30), None);
    let members = connect_many(server.addr, "/room", scale.members).await;
    // Every member has joined once the server counted its open.
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.stats().await["opened"] != json!(scale.members) {
        assert!(Instant::now() < deadline, "members never all joined");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let per_publisher = scale.per_publisher_per_s * scale.room_duration.as_secs();
    let expected = per_publisher * scale.publishers as u64;
    let delivered = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = members
        .into_iter()
        .enumerate()
        .map(|(index, client)| {
            let delivered = Arc::clone(&delivered);
            let publishing = index < scale.publishers;
            tokio::spawn(async move {
                let (mut sink, mut stream) = client.split();
                let writer = publishing.then(move || {
                    tokio::spawn(async move {
                        let mut tick = tokio::time::interval(Duration::from_micros(
                            1_000_000 / scale.per_publisher_per_s,
                        ));
                        for seq in 0..per_publisher {
                            tick.tick().await;
                            let message = json!({ "p": index, "n": seq, "pad": "x".repeat(40) });
                            sink.send(WsMessage::text(message.to_string()))
                                .await
                                .expect("publish");
                        }
                        sink
                    })
                });
                let mut next_seq = vec![0u64; scale.publishers];
                let mut received = 0;
                while received < expected {
                    let next = tokio::time::timeout(Duration::from_secs(30), stream.next())
                        .await
                        .unwrap_or_else(|_| {
                            panic!("member {index} stalled at {received}/{expected}")
                        });
                    let text = match next {
                        Some(Ok(WsMessage::Text(text))) => text,
                        Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => continue,
                        other => panic!("member {index}: unexpected {other:?}"),
                    };
                    let value: Value = serde_json::from_str(&text).expect("JSON");
                    let p = value["p"].as_u64().expect("publisher") as usize;
                    let n = value["n"].as_u64().expect("sequence");
                    assert_eq!(
                        n, next_seq[p],
                        "member {index}: publisher {p} skipped, repeated or reordered"
                    );
                    next_seq[p] += 1;
                    received += 1;
                    delivered.fetch_add(1, Ordering::Relaxed);
                }
                if let Some(writer) = writer {
                    drop(writer.await.expect("the publisher"));
                }
                assert!(next_seq.iter().all(|&n| n == per_publisher));
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a member");
    }
    let elapsed = started.elapsed();
    let delivered = delivered.load(Ordering::Relaxed);
    assert_eq!(delivered, expected * scale.members as u64);
    eprintln!(
        "room: {} members, {} publishers x {}/s for {:?}: {delivered} deliveries in {elapsed:.1?}, \
         none lost, duplicated or reordered",
        scale.members, scale.publishers, scale.per_publisher_per_s, scale.room_duration
    );
    server.stop();
}

/// Out of file descriptors: the server stops accepting without failing or spinning, keeps serving
/// the connections it has, and serves new ones once some close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_file_descriptors_refuses_then_recovers() {
    const LIMIT: u32 = 64;
    let server = ServerProcess::start(Duration::from_secs(30), Some(LIMIT));
    let mut held = Vec::new();
    let mut refused = false;
    for _ in 0..(2 * LIMIT) {
        let url = format!("ws://{}/hb", server.addr);
        match tokio::time::timeout(
            Duration::from_millis(500),
            tokio_tungstenite::connect_async(url),
        )
        .await
        {
            Ok(Ok((client, _))) => held.push(client),
            Ok(Err(_)) | Err(_) => {
                refused = true;
                break;
            }
        }
    }
    assert!(
        refused,
        "{} connections under a limit of {LIMIT} descriptors",
        held.len()
    );
    assert!(
        held.len() >= 10,
        "only {} connections before the limit",
        held.len()
    );
    // At the limit: alive, not spinning on failed accepts, and the open connections still work.
    let mut server = server;
    let cpu_before = server.cpu();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let spent = server.cpu() - cpu_before;
    assert!(
        spent < Duration::from_millis(300),
        "{spent:?} of CPU in a second at the limit"
    );
    assert!(server.is_alive());
    held[0].send(WsMessage::text("ping")).await.expect("send");
    loop {
        match tokio::time::timeout(Duration::from_secs(10), held[0].next()).await {
            Ok(Some(Ok(WsMessage::Text(text)))) => {
                assert_eq!(text.as_str(), "pong");
                break;
            }
            Ok(Some(Ok(_))) => {}
            other => panic!("an open connection stopped working at the limit: {other:?}"),
        }
    }
    let count = held.len();
    close_all(held).await;
    // Recovered: new connections and requests are served again.
    let mut client = tokio::time::timeout(Duration::from_secs(10), connect(server.addr, "/hb"))
        .await
        .expect("served again after connections closed");
    client.send(WsMessage::text("ping")).await.expect("send");
    let stats = server.settled_except(1).await;
    assert!(
        stats["opened"].as_u64().unwrap_or(0) > count as u64,
        "{stats}"
    );
    drop(client);
    eprintln!("fd limit {LIMIT}: {count} connections held, then refused, then recovered");
    server.stop();
}
