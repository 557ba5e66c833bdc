//! End-to-end tests: the example servers, driven through their pages in a real headless Chromium.
//! Screenshots of each page land in `target/e2e/` for review.

mod browser;
#[allow(dead_code)]
#[path = "../it/support.rs"]
mod support;

use browser::Browser;
use support::Example;

/// Sets an input's value from a test.
fn set(id: &str, value: &str) -> String {
    format!(
        "document.getElementById({id:?}).value = {value}; true",
        value = serde_json::to_string(value).unwrap()
    )
}

fn submit(id: &str) -> String {
    format!("document.getElementById({id:?}).requestSubmit(); true")
}

/// Two tabs of the chat: each sees the other's message (as text, never as HTML) and the user count.
#[tokio::test]
async fn chat_in_two_tabs() {
    two_tabs_of_the_chat("chat", "/", "chat").await;
}

/// The same chat nested in axum (`axum-mount`): its page at `/chat/` finds its WebSocket at
/// `/chat/ws` through axum.
#[tokio::test]
async fn axum_mounted_chat_in_two_tabs() {
    two_tabs_of_the_chat("axum-mount", "/chat/", "axum-mount").await;
}

async fn two_tabs_of_the_chat(name: &str, path: &str, screenshot: &str) {
    let example = Example::start(name, &[]);
    let url = format!("http://{}{path}", example.addr);
    let mut browser = Browser::launch().await;
    let ada = browser.open(&url).await;
    browser
        .wait_for(&ada, "document.getElementById('count').textContent === '1'")
        .await;
    let bob = browser.open(&url).await;
    for tab in [&ada, &bob] {
        browser
            .wait_for(tab, "document.getElementById('count').textContent === '2'")
            .await;
    }
    browser.eval(&ada, &set("username", "Ada")).await;
    browser.eval(&ada, &set("text", "hello <b>bob</b>")).await;
    browser.eval(&ada, &submit("send")).await;
    browser
        .wait_for(
            &bob,
            "document.getElementById('messages').textContent.includes('Ada: hello <b>bob</b>')",
        )
        .await;
    // Escaped: the markup arrived as text, no element was made from it.
    let bold = browser
        .eval(&bob, "document.querySelectorAll('#messages b').length")
        .await;
    assert_eq!(bold, serde_json::json!(0));
    browser.screenshot(&bob, screenshot).await;
    browser.close(&bob).await;
    browser
        .wait_for(&ada, "document.getElementById('count').textContent === '1'")
        .await;
    drop(browser);
    assert!(example.terminate().success());
}

/// The room chat: a message stays in its room.
#[tokio::test]
async fn room_chat_keeps_messages_in_their_room() {
    let example = Example::start("room-chat", &[]);
    let url = format!("http://{}/", example.addr);
    let mut browser = Browser::launch().await;
    let mut tabs = Vec::new();
    for (name, room) in [("ann", "red"), ("ben", "red"), ("cat", "blue")] {
        let tab = browser.open(&url).await;
        browser
            .wait_for(&tab, "document.getElementById('join') !== null")
            .await;
        browser.eval(&tab, &set("username", name)).await;
        browser.eval(&tab, &set("room", room)).await;
        // The socket may still be connecting: retry the join until the page says it is in.
        browser
            .wait_for(
                &tab,
                &format!(
                    "document.getElementById('status').textContent.startsWith('in {room}') || (document.getElementById('join').requestSubmit(), false)"
                ),
            )
            .await;
        tabs.push(tab);
    }
    browser.eval(&tabs[0], &set("text", "red only")).await;
    browser.eval(&tabs[0], &submit("send")).await;
    browser
        .wait_for(
            &tabs[1],
            "document.getElementById('messages').textContent.includes('ann: red only')",
        )
        .await;
    browser.eval(&tabs[2], &set("text", "blue here")).await;
    browser.eval(&tabs[2], &submit("send")).await;
    browser
        .wait_for(
            &tabs[2],
            "document.getElementById('messages').textContent.includes('cat: blue here')",
        )
        .await;
    let blue = browser
        .eval(&tabs[2], "document.getElementById('messages').textContent")
        .await;
    assert!(
        !blue.as_str().unwrap_or_default().contains("red only"),
        "{blue}"
    );
    browser.screenshot(&tabs[1], "room-chat").await;
    drop(browser);
    assert!(example.terminate().success());
}

/// The live feed: ticking a topic shows its data, and only its data.
#[tokio::test]
async fn live_feed_shows_subscribed_data() {
    let example = Example::start("live-feed", &["--tick-ms", "50"]);
    let mut browser = Browser::launch().await;
    let tab = browser.open("about:blank").await;
    browser.enable_network(&tab).await;
    browser
        .navigate(&tab, &format!("http://{}/", example.addr))
        .await;
    browser
        .wait_for(&tab, "document.getElementById('topic-crypto') !== null")
        .await;
    browser
        .eval(
            &tab,
            "document.getElementById('topic-crypto').click(); true",
        )
        .await;
    browser
        .wait_for(&tab, "document.querySelectorAll('#feed .item').length >= 3")
        .await;
    let items = browser
        .eval(
            &tab,
            "[...document.querySelectorAll('#feed .item')].map(e => e.textContent)",
        )
        .await;
    let items = items.as_array().cloned().unwrap_or_default();
    assert!(
        items
            .iter()
            .all(|item| item.as_str().unwrap_or_default().starts_with("[crypto]")),
        "{items:?}"
    );
    // The feed's frames were compressed: Chromium offered permessage-deflate and the server took it.
    assert_eq!(
        handshake_extensions(&browser),
        ["permessage-deflate; server_no_context_takeover; client_no_context_takeover"]
    );
    browser.screenshot(&tab, "live-feed").await;
    drop(browser);
    assert!(example.terminate().success());
}

/// The authenticated chat: a bad password is refused; after logging in, two users chat.
#[tokio::test]
async fn auth_chat_login_then_chat() {
    let example = Example::start(
        "auth-chat",
        &["--jwt-secret", "an e2e secret of at least 32 bytes!"],
    );
    let url = format!("http://{}/", example.addr);
    let mut browser = Browser::launch().await;
    let admin = browser.open(&url).await;
    browser
        .wait_for(&admin, "document.getElementById('login') !== null")
        .await;
    browser.eval(&admin, &set("username", "admin")).await;
    browser.eval(&admin, &set("password", "wrong")).await;
    browser.eval(&admin, &submit("login")).await;
    browser
        .wait_for(
            &admin,
            "document.getElementById('status').textContent.includes('Invalid credentials')",
        )
        .await;
    browser.screenshot(&admin, "auth-chat-refused").await;
    browser.eval(&admin, &set("password", "password")).await;
    browser.eval(&admin, &submit("login")).await;
    browser
        .wait_for(
            &admin,
            "document.getElementById('status').textContent.includes('Welcome, admin!')",
        )
        .await;

    let john = browser.open(&url).await;
    browser
        .wait_for(&john, "document.getElementById('login') !== null")
        .await;
    browser.eval(&john, &set("username", "john")).await;
    browser.eval(&john, &set("password", "password")).await;
    browser.eval(&john, &submit("login")).await;
    browser
        .wait_for(
            &john,
            "document.getElementById('status').textContent.includes('Welcome, john!')",
        )
        .await;
    browser.eval(&john, &set("text", "hi admin")).await;
    browser.eval(&john, &submit("send")).await;
    browser
        .wait_for(
            &admin,
            "document.getElementById('messages').textContent.includes('john: hi admin')",
        )
        .await;
    browser.screenshot(&admin, "auth-chat").await;
    drop(browser);
    assert!(example.terminate().success());
}

/// The `Sec-WebSocket-Extensions` header of every WebSocket handshake response Chromium saw.
fn handshake_extensions(browser: &Browser) -> Vec<String> {
    browser
        .events("Network.webSocketHandshakeResponseReceived")
        .iter()
        .map(|event| {
            let headers = event["response"]["headers"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            headers
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case("sec-websocket-extensions"))
                .and_then(|(_, value)| value.as_str())
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

/// Chromium and `plain-echo` exchange compressed messages (text and binary, large and small), and
/// the handshake carries `Sec-WebSocket-Extensions: permessage-deflate`.
#[tokio::test]
async fn chromium_exchanges_compressed_messages_with_plain_echo() {
    let example = Example::start("plain-echo", &[]);
    let mut browser = Browser::launch().await;
    // A page of the server's own origin (its answer to a plain GET): the Origin policy lets through
    // what the server's own pages open, and refuses an opaque `null` origin such as about:blank's.
    let tab = browser.open(&format!("http://{}/", example.addr)).await;
    browser
        .wait_for(
            &tab,
            "document.readyState === 'complete' && location.protocol === 'http:'",
        )
        .await;
    browser.enable_network(&tab).await;
    let script = format!(
        r#"new Promise((resolve, reject) => {{
            const ws = new WebSocket("ws://{addr}/");
            ws.binaryType = "arraybuffer";
            const text = JSON.stringify({{ type: "tick", items: Array.from({{ length: 400 }},
                (_, i) => ({{ symbol: "S" + (i % 20), price: 100 + (i % 7), seq: i }})) }});
            const bytes = new TextEncoder().encode(text.repeat(3));
            const expected = [text, "short", bytes];
            const got = [];
            ws.onopen = () => {{ ws.send(text); ws.send("short"); ws.send(bytes); }};
            ws.onmessage = (event) => {{
                got.push(event.data);
                if (got.length < expected.length) return;
                const same = (a, b) => typeof b === "string" ? a === b
                    : new Uint8Array(a).every((x, i) => x === b[i]) && a.byteLength === b.length;
                resolve({{ extensions: ws.extensions, echoed: expected.every((e, i) => same(got[i], e)) }});
                ws.close(1000);
            }};
            ws.onerror = () => reject(new Error("WebSocket error"));
            setTimeout(() => reject(new Error("no echo within 10 s")), 10000);
        }})"#,
        addr = example.addr
    );
    let result = browser.eval(&tab, &script).await;
    assert_eq!(result["echoed"], serde_json::json!(true), "{result}");
    let extensions = result["extensions"].as_str().unwrap_or_default();
    assert!(extensions.starts_with("permessage-deflate"), "{result}");
    assert_eq!(handshake_extensions(&browser), [extensions.to_owned()]);
    // Chromium reports the inflated payloads; the large text came back as sent.
    let frames = browser.events("Network.webSocketFrameReceived");
    assert_eq!(frames.len(), 3, "{frames:?}");
    drop(browser);
    assert!(example.terminate().success());
}

/// `secure` over HTTPS: Chromium loads the page over HTTP/2 (ALPN `h2`) and its WebSocket runs over
/// an HTTP/2 stream (RFC 8441), as the server's log of the upgrade shows.
#[tokio::test]
async fn secure_page_and_websocket_over_http2() {
    let example = Example::start_with_env("secure", &[], &[("RUST_LOG", "info,verb_ws=debug")]);
    let url = format!("https://localhost:{}/", example.addr.port());
    let mut browser = Browser::launch().await;
    let tab = browser.open(&url).await;
    browser
        .wait_for(
            &tab,
            "document.getElementById('log').textContent.includes('Secure WebSocket connected!')",
        )
        .await;
    let protocol = browser
        .eval(
            &tab,
            "performance.getEntriesByType('navigation')[0].nextHopProtocol",
        )
        .await;
    assert_eq!(protocol, serde_json::json!("h2"));
    browser.eval(&tab, &set("input", "over h2")).await;
    browser.eval(&tab, &submit("form")).await;
    browser
        .wait_for(
            &tab,
            "document.getElementById('log').textContent.includes('Secure echo: over h2')",
        )
        .await;
    let upgrades: Vec<String> = example
        .logs()
        .into_iter()
        .filter(|line| line.contains("WebSocket upgrade accepted"))
        .collect();
    assert!(
        upgrades.iter().any(|line| line.contains("HTTP/2.0")),
        "the WebSocket ran over HTTP/2: {upgrades:?}"
    );
    browser.screenshot(&tab, "secure-h2").await;
    drop(browser);
    assert!(example.terminate().success());
}
