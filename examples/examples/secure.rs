//! The guide's secure WebSocket (WSS) example: `ServerProtocol::WebSockets` with a certificate, the
//! basic echo over TLS, and the demo page on `GET /`.
//!
//! ```text
//! cargo run --release -p examples --example secure -- --cert cert.pem --key key.pem
//! ```
//!
//! Without `--cert`/`--key` a self-signed development certificate for `localhost` and `127.0.0.1` is
//! generated; its file is logged so a client can be told to trust it. open → text
//! `Secure WebSocket connected!`; m → text `Secure echo: m`.

use std::path::PathBuf;

use clap::Parser;
use verb::prelude::*;
use verb::{DevCertificate, TlsConfig};

#[derive(Debug, Parser)]
#[command(about = "Verb's secure WebSocket (WSS) example")]
struct Cli {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on; 0 picks a free port.
    #[arg(long, env = "PORT", default_value_t = 3443)]
    port: u16,
    /// PEM certificate chain (leaf first); with `--key`.
    #[arg(long, requires = "key")]
    cert: Option<PathBuf>,
    /// PEM private key; with `--cert`.
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
}

const PAGE: &str = include_str!("../pages/basic.html");

/// The configured certificate, or a fresh development one written to a temporary directory.
fn tls_config(cli: &Cli) -> anyhow::Result<TlsConfig> {
    if let (Some(cert), Some(key)) = (&cli.cert, &cli.key) {
        return Ok(TlsConfig::from_pem_files(cert, key)?);
    }
    let dev = DevCertificate::generate(["localhost", "127.0.0.1"])?;
    let dir = std::env::temp_dir().join(format!("verb-secure-{}", std::process::id()));
    let (cert, _key) = dev.write_to(&dir)?;
    tracing::warn!(
        cert = %cert.display(),
        "no --cert/--key: serving a self-signed development certificate; trust this file in clients"
    );
    Ok(dev.tls_config()?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    examples::init_tracing();
    let mut app = verb::create_server_with(ServerProtocol::WebSockets);
    app.tls(tls_config(&cli)?);
    app.get("/", |_req| async { Response::html(PAGE) });
    app.websocket(
        Ws::new()
            .open(|ws: &WebSocket, _req: &Request| {
                tracing::info!(id = ws.id(), peer = %ws.remote_addr(), "secure client connected");
                ws.send_text("Secure WebSocket connected!");
            })
            .message(|ws: &WebSocket, msg: Message| {
                let text = match &msg {
                    Message::Text(text) => text.to_string(),
                    Message::Binary(bytes) => String::from_utf8_lossy(bytes).into_owned(),
                };
                ws.send_text(format!("Secure echo: {text}"));
            })
            .close(|ws: &WebSocket, code: CloseCode, _reason: &str| {
                tracing::info!(id = ws.id(), %code, "secure client disconnected");
            }),
    );
    app.listen((cli.host.as_str(), cli.port)).await?;
    Ok(())
}
