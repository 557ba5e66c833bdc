//! What every example shares: the command line (`--host`, `--port`, `PORT`), logging (`RUST_LOG`,
//! default `info`) and serving until Ctrl-C/SIGTERM.

use clap::Args;

/// The flags every example takes.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on; 0 picks a free port.
    #[arg(long, env = "PORT", default_value_t = 3000)]
    pub port: u16,
}

impl Common {
    /// The `(host, port)` pair to hand to `app.listen`.
    pub fn addr(&self) -> (&str, u16) {
        (&self.host, self.port)
    }
}

/// Logs to stderr through `tracing`, filtered by `RUST_LOG` (default `info`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
