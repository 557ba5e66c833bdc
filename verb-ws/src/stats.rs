//! What the engine counts, through the `metrics` facade.
//!
//! | name | kind | what |
//! |---|---|---|
//! | `verb_ws_connections_open` | gauge | open WebSockets |
//! | `verb_ws_upgrades_total{result, status, http}` | counter | upgrades accepted (`101`; `200` over HTTP/2) or refused (by status), by HTTP version (`1.1`, `2`) |
//! | `verb_ws_messages_received_total`, `verb_ws_bytes_received_total` | counter | complete data messages in |
//! | `verb_ws_messages_sent_total`, `verb_ws_bytes_sent_total` | counter | data messages queued out |
//! | `verb_ws_backpressure_total{event}` | counter | sends over the limit (`backpressured`) or refused (`dropped`) |
//! | `verb_ws_closes_total{code}` | counter | connections ended, by the close code `close` got: `1000`–`1015` as they are, a peer's application codes folded into `3xxx` and `4xxx`, anything else `other` (so a peer cannot grow the label set) |
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
        counter!("verb_ws_closes_total", "code" => code_label(code)).increment(1);
    }
}

/// The `code` label of a close: a bounded set, whatever code a peer sends.
fn code_label(code: CloseCode) -> &'static str {
    const PROTOCOL: [&str; 16] = [
        "1000", "1001", "1002", "1003", "1004", "1005", "1006", "1007", "1008", "1009", "1010",
        "1011", "1012", "1013", "1014", "1015",
    ];
    match code.as_u16() {
        n @ 1000..=1015 => PROTOCOL[usize::from(n - 1000)],
        3000..=3999 => "3xxx",
        4000..=4999 => "4xxx",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Protocol codes keep their number; peer-chosen ones fold, so the label set has 19 values at most.
    #[test]
    fn close_code_labels_are_bounded() {
        assert_eq!(code_label(CloseCode::from(1000)), "1000");
        assert_eq!(code_label(CloseCode::from(1011)), "1011");
        assert_eq!(code_label(CloseCode::from(1015)), "1015");
        assert_eq!(code_label(CloseCode::from(3000)), "3xxx");
        assert_eq!(code_label(CloseCode::from(3999)), "3xxx");
        assert_eq!(code_label(CloseCode::from(4321)), "4xxx");
        assert_eq!(code_label(CloseCode::from(2999)), "other");
        assert_eq!(code_label(CloseCode::from(65535)), "other");
        let labels: std::collections::HashSet<&str> = (0..=u16::MAX)
            .map(|n| code_label(CloseCode::from(n)))
            .collect();
        assert_eq!(labels.len(), 19);
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
pub(crate) fn upgrade(status: http::StatusCode, version: http::Version) {
    // HTTP/1.1 accepts with 101, HTTP/2 (RFC 8441) with 200.
    let result = if status == http::StatusCode::SWITCHING_PROTOCOLS
        || (status == http::StatusCode::OK && version == http::Version::HTTP_2)
    {
        "accepted"
    } else {
        "refused"
    };
    let http = if version == http::Version::HTTP_2 {
        "2"
    } else {
        "1.1"
    };
    counter!(
        "verb_ws_upgrades_total",
        "result" => result,
        "status" => status.as_str().to_owned(),
        "http" => http
    )
    .increment(1);
}
