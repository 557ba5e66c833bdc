//! Monitoring: the Prometheus endpoint and a JSON snapshot.
//!
//! Verb counts through the `metrics` facade; the names are listed on `App::metrics`.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde::Serialize;
use verb_rooms::Rooms;
use verb_ws::ConnectionCount;

/// Why the metrics endpoint could not be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MetricsError {
    /// Another `metrics` recorder is installed in this process; serve its output yourself.
    #[error("another metrics recorder is already installed in this process")]
    RecorderInstalled,
}

/// The process's Prometheus recorder, installed on first use (a process has one recorder).
pub(crate) fn prometheus() -> Result<&'static PrometheusHandle, MetricsError> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| match PrometheusBuilder::new().install_recorder() {
            Ok(handle) => Some(handle),
            Err(err) => {
                tracing::error!(error = %err, "cannot install the Prometheus metrics recorder");
                None
            }
        })
        .as_ref()
        .ok_or(MetricsError::RecorderInstalled)
}

/// A live view of an app's state, for a JSON status endpoint: `app.stats()`.
///
/// ```
/// let mut app = verb::create_server();
/// let stats = app.stats();
/// app.get("/stats", move |_req| {
///     let snapshot = stats.snapshot();
///     async move { verb::Json(snapshot) }
/// });
/// ```
#[derive(Debug, Clone)]
pub struct Stats {
    pub(crate) websockets: ConnectionCount,
    pub(crate) rooms: Rooms,
}

impl Stats {
    /// The numbers right now.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            websockets: self.websockets.get(),
            rooms: self.rooms.room_count(),
            hub_connections: self.rooms.connections(),
        }
    }
}

/// What [`Stats::snapshot`] returns; serializes as
/// `{"websockets":n,"rooms":n,"hub_connections":n}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct StatsSnapshot {
    /// Open WebSockets on the app's endpoints.
    pub websockets: usize,
    /// Rooms (and topics) with members.
    pub rooms: usize,
    /// Connections the app's hub knows.
    pub hub_connections: usize,
}
