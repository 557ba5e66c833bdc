//! What the engine counts, through the `metrics` facade.
//!
//! | name | kind | what |
//! |---|---|---|
//! | `verb_ws_connections_open` | gauge | open WebSockets |
//! | `verb_ws_upgrades_total{result, status}` | counter | upgrades accepted (`101`) or refused (by status) |
//! | `verb_ws_messages_received_total`, `verb_ws_bytes_received_total` | counter | complete data messages in |
//! | `verb_ws_messages_sent_total`, `verb_ws_bytes_sent_total` | counter | data messages queued out |
//! | `verb_ws_backpressure_total{event}` | counter | sends over the limit (`backpressured`) or refused (`dropped`) |
//! | `verb_ws_closes_total{code}` | counter | connections ended, by the close code `close` got |
//!
//! The hot counters are registered once per endpoint, at its first connection (so a recorder installed
//! before serving sees them), and each connection keeps a shared handle.

use std::sync::{Arc, OnceLock};

use metrics::{Counter, Gauge, counter, gauge};

use crate::message::CloseCode;
use crate::socket::SendStatus;

pub(crate) struct WsMetrics {
    pub(crate) open: Gauge,
    messages_in: Counter,
    bytes_in: Counter,
    messages_out: Counter,
    bytes_out: Counter,
    backpressured: Counter,
    dropped: Counter,
}

impl WsMetrics {
    fn register() -> Self {
        Self {
            open: gauge!("verb_ws_connections_open"),
            messages_in: counter!("verb_ws_messages_received_total"),
            bytes_in: counter!("verb_ws_bytes_received_total"),
            messages_out: counter!("verb_ws_messages_sent_total"),
            bytes_out: counter!("verb_ws_bytes_sent_total"),
            backpressured: counter!("verb_ws_backpressure_total", "event" => "backpressured"),
            dropped: counter!("verb_ws_backpressure_total", "event" => "dropped"),
        }
    }

    pub(crate) fn received(&self, bytes: usize) {
        self.messages_in.increment(1);
        self.bytes_in.increment(bytes as u64);
    }

    pub(crate) fn sent(&self, status: SendStatus, bytes: usize) {
        match status {
            SendStatus::Sent => {}
            SendStatus::Backpressured => self.backpressured.increment(1),
            SendStatus::Dropped => {
                self.dropped.increment(1);
                return;
            }
        }
        self.messages_out.increment(1);
        self.bytes_out.increment(bytes as u64);
    }

    pub(crate) fn closed(&self, code: CloseCode) {
        self.open.decrement(1.0);
        counter!("verb_ws_closes_total", "code" => code.as_u16().to_string()).increment(1);
    }
}

/// An endpoint's handles, registered at its first connection.
#[derive(Clone, Default)]
pub(crate) struct EndpointMetrics(Arc<OnceLock<Arc<WsMetrics>>>);

impl EndpointMetrics {
    pub(crate) fn get(&self) -> Arc<WsMetrics> {
        self.0
            .get_or_init(|| Arc::new(WsMetrics::register()))
            .clone()
    }
}

/// Counts an upgrade answered with `status`.
pub(crate) fn upgrade(status: http::StatusCode) {
    let result = if status == http::StatusCode::SWITCHING_PROTOCOLS {
        "accepted"
    } else {
        "refused"
    };
    counter!("verb_ws_upgrades_total", "result" => result, "status" => status.as_str().to_owned())
        .increment(1);
}
