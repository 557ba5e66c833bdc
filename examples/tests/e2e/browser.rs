//! A small driver for headless Chromium over the DevTools protocol: open tabs, run JavaScript in
//! them, wait for conditions, take screenshots. Enough for end-to-end tests of the example pages.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A headless Chromium, killed when dropped.
pub(crate) struct Browser {
    child: Child,
    socket: Socket,
    next_id: u64,
    profile: PathBuf,
    /// DevTools events received so far (those of enabled domains, such as `Network`).
    events: Vec<Value>,
}

/// A tab of the browser.
#[derive(Debug, Clone)]
pub(crate) struct Tab {
    target: String,
    session: String,
}

fn chromium() -> &'static str {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|path| Path::new(path).exists())
        .expect("Chromium is installed (cargo xtask ci installs Debian's `chromium`)")
}

impl Browser {
    /// Starts Chromium headless and connects to its DevTools endpoint. Fails loudly when it cannot.
    pub(crate) async fn launch() -> Browser {
        let profile = std::env::temp_dir().join(format!(
            "verb-e2e-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        let mut child = Command::new(chromium())
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--window-size=1000,800",
                "--remote-debugging-port=0",
                // The `secure` example serves a self-signed development certificate.
                "--ignore-certificate-errors",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("Chromium starts");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    let _ = tx.send(url.trim().to_owned());
                }
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("Chromium prints its DevTools address");
        let (socket, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .expect("DevTools connection");
        Browser {
            child,
            socket,
            next_id: 0,
            profile,
            events: Vec::new(),
        }
    }

    /// Sends a command (to a tab's session, or to the browser) and returns its result.
    ///
    /// # Panics
    ///
    /// If the browser answers with an error.
    async fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        match self.try_call(session, method, params).await {
            Ok(result) => result,
            Err(error) => panic!("{method} failed: {error}"),
        }
    }

    /// Sends a command and returns its result, or the error the browser answered with.
    async fn try_call(
        &mut self,
        session: Option<&str>,
        method: &str,
        params: Value,
    ) -> Result<Value, Value> {
        self.next_id += 1;
        let id = self.next_id;
        let mut command = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = session {
            command["sessionId"] = json!(session);
        }
        self.socket
            .send(Message::text(command.to_string()))
            .await
            .expect("DevTools send");
        loop {
            let next = tokio::time::timeout(Duration::from_secs(30), self.socket.next())
                .await
                .unwrap_or_else(|_| panic!("no answer to {method} within 30 s"))
                .expect("DevTools connection open")
                .expect("DevTools read");
            let Message::Text(text) = next else { continue };
            let reply: Value = serde_json::from_str(&text).expect("DevTools JSON");
            if reply.get("method").is_some() {
                self.events.push(reply);
                continue;
            }
            if reply["id"] == json!(id) {
                if let Some(error) = reply.get("error") {
                    return Err(error.clone());
                }
                return Ok(reply["result"].clone());
            }
        }
    }

    /// Opens `url` in a new tab.
    pub(crate) async fn open(&mut self, url: &str) -> Tab {
        let created = self
            .call(None, "Target.createTarget", json!({ "url": url }))
            .await;
        let target = created["targetId"]
            .as_str()
            .expect("a target id")
            .to_owned();
        let attached = self
            .call(
                None,
                "Target.attachToTarget",
                json!({ "targetId": target, "flatten": true }),
            )
            .await;
        let session = attached["sessionId"]
            .as_str()
            .expect("a session id")
            .to_owned();
        Tab { target, session }
    }

    /// Records `tab`'s network events (HTTP and WebSocket handshakes, frames) from now on.
    pub(crate) async fn enable_network(&mut self, tab: &Tab) {
        self.call(Some(&tab.session), "Network.enable", json!({}))
            .await;
    }

    /// Loads `url` in `tab`.
    pub(crate) async fn navigate(&mut self, tab: &Tab, url: &str) {
        self.call(Some(&tab.session), "Page.navigate", json!({ "url": url }))
            .await;
    }

    /// The parameters of every event named `method` received so far.
    pub(crate) fn events(&self, method: &str) -> Vec<Value> {
        self.events
            .iter()
            .filter(|event| event["method"] == method)
            .map(|event| event["params"].clone())
            .collect()
    }

    /// Evaluates `expression` in `tab` (awaiting a promise) and returns its value.
    /// While the tab is still navigating, its JavaScript context may be replaced under an evaluation;
    /// that is retried (for up to 10 s), not reported as a failure of the expression.
    pub(crate) async fn eval(&mut self, tab: &Tab, expression: &str) -> Value {
        let params =
            json!({ "expression": expression, "returnByValue": true, "awaitPromise": true });
        let mut attempts = 0;
        let result = loop {
            match self
                .try_call(Some(&tab.session), "Runtime.evaluate", params.clone())
                .await
            {
                Ok(result) => break result,
                Err(error) if attempts < 200 && navigating(&error) => {
                    attempts += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(error) => panic!("Runtime.evaluate failed: {error}\nin: {expression}"),
            }
        };
        if let Some(exception) = result.get("exceptionDetails") {
            panic!("JavaScript failed: {exception}\nin: {expression}");
        }
        result["result"]["value"].clone()
    }

    /// Waits until `condition` (a JavaScript expression) is true in `tab`, for up to 10 s.
    pub(crate) async fn wait_for(&mut self, tab: &Tab, condition: &str) {
        for _ in 0..200 {
            let value = self
                .eval(tab, &format!("(() => {{ try {{ return !!({condition}); }} catch {{ return false; }} }})()"))
                .await;
            if value == json!(true) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let body = self.eval(tab, "document.body.innerText").await;
        panic!("never true in the page: {condition}\npage text: {body}");
    }

    /// Saves a PNG screenshot of `tab` as `target/e2e/<name>.png` (a test artifact).
    pub(crate) async fn screenshot(&mut self, tab: &Tab, name: &str) -> PathBuf {
        use base64::Engine;
        let shot = self
            .call(
                Some(&tab.session),
                "Page.captureScreenshot",
                json!({ "format": "png" }),
            )
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("screenshot data"))
            .expect("base64 PNG");
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/e2e");
        std::fs::create_dir_all(&dir).expect("screenshot directory");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("screenshot written");
        path
    }

    /// Closes `tab` (its page's WebSockets close with it).
    pub(crate) async fn close(&mut self, tab: &Tab) {
        self.call(
            None,
            "Target.closeTarget",
            json!({ "targetId": tab.target }),
        )
        .await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// Whether a DevTools error says that the page's context went away under a navigation.
fn navigating(error: &Value) -> bool {
    let message = error["message"].as_str().unwrap_or_default();
    message.contains("Execution context was destroyed")
        || message.contains("Cannot find context")
        || message.contains("Inspected target navigated")
}
