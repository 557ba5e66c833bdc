//! hyper's automatic answers, given Verb's JSON error body.
//!
//! hyper answers an HTTP/1.1 request it cannot parse at all (a malformed request line or header, a
//! head over the limit, a URI too long) by itself, before any Verb code runs, with an empty body and
//! `connection: close`. [`ParseErrorAnswers`] sits in the connection's write path and replaces such an
//! answer, byte for byte recognisable, by the same status with the body every other Verb error has
//! (`{"error":"<reason>","message":"<what went wrong>"}`, `content-type: application/json`).
//!
//! An app may answer with an empty `400`, `414` or `431` of its own, which hyper writes in exactly the
//! same shape. The service counts those before hyper writes them ([`AppHeads`]); a head of that shape
//! while the count is above zero is the app's, and passes unchanged. Should the count ever be off (an
//! app's empty `400` not written at the start of a write, as with pipelined requests), the error is on
//! the safe side: hyper's answer then keeps its empty body, and nothing of the app's is ever changed.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Empty-bodied `400`/`414`/`431` responses of the app that hyper has yet to write on a connection.
#[derive(Clone, Debug, Default)]
pub(crate) struct AppHeads(Arc<AtomicUsize>);

impl AppHeads {
    /// Notes a response the handler returned, before hyper writes it.
    pub(crate) fn note(&self, status: http::StatusCode, empty_body: bool) {
        if empty_body && matches!(status.as_u16(), 400 | 414 | 431) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Takes one noted response, if there is one.
    fn take(&self) -> bool {
        self.0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
    }
}

/// The write-path state of one HTTP/1.1 connection.
#[derive(Debug)]
pub(crate) struct ParseErrorAnswers {
    app_heads: AppHeads,
    /// The rewritten answer and how much of it the socket has taken.
    pending: Option<(Vec<u8>, usize)>,
}

impl ParseErrorAnswers {
    pub(crate) fn new(app_heads: AppHeads) -> Self {
        Self {
            app_heads,
            pending: None,
        }
    }

    /// Looks at what hyper writes next (`first` is its first buffer, `total` the length of the whole
    /// write): when it is hyper's own answer to a request it could not parse, stages Verb's answer in
    /// its place and returns `true`; the caller then reports the write done and writes
    /// [`pending`](Self::pending) instead.
    pub(crate) fn intercept(&mut self, first: &[u8], total: usize) -> bool {
        if self.pending.is_some() || first.len() != total {
            return false;
        }
        let Some(head) = Automatic::parse(first) else {
            return false;
        };
        if self.app_heads.take() || !head.closes {
            return false;
        }
        tracing::debug!(
            status = head.status,
            "hyper's answer to an unparsable request given a JSON body"
        );
        self.pending = Some((head.with_json_body(), 0));
        true
    }

    /// What remains of a staged answer.
    pub(crate) fn pending(&self) -> Option<&[u8]> {
        self.pending.as_ref().map(|(bytes, done)| &bytes[*done..])
    }

    /// Records that the socket took `n` more bytes of the staged answer.
    pub(crate) fn advance(&mut self, n: usize) {
        if let Some((bytes, done)) = &mut self.pending {
            *done += n;
            if *done >= bytes.len() {
                self.pending = None;
            }
        }
    }
}

/// A head in the shape of hyper's automatic answer: `HTTP/1.1 <status> <reason>`, then optionally
/// `connection: close`, then `content-length: 0` and `date: <IMF-fixdate>`, and nothing else.
struct Automatic<'a> {
    status: u16,
    status_line: &'a [u8],
    closes: bool,
    date_line: &'a [u8],
}

/// The statuses hyper answers by itself, with the messages Verb gives them.
const AUTOMATIC: [(u16, &[u8], &str); 3] = [
    (
        400,
        b"HTTP/1.1 400 Bad Request\r\n",
        "the request could not be parsed as HTTP/1.1",
    ),
    (
        414,
        b"HTTP/1.1 414 URI Too Long\r\n",
        "the request URI is too long",
    ),
    (
        431,
        b"HTTP/1.1 431 Request Header Fields Too Large\r\n",
        "the request head is over the server's limit (size or number of fields)",
    ),
];

/// `date: ` + 29 bytes of IMF-fixdate + CRLF.
const DATE_LINE_LEN: usize = 6 + 29 + 2;

impl<'a> Automatic<'a> {
    fn parse(head: &'a [u8]) -> Option<Self> {
        let (status, status_line) = AUTOMATIC
            .iter()
            .find(|(_, line, _)| head.starts_with(line))
            .map(|(status, line, _)| (*status, *line))?;
        let rest = &head[status_line.len()..];
        let (closes, rest) = match rest.strip_prefix(b"connection: close\r\n".as_slice()) {
            Some(rest) => (true, rest),
            None => (false, rest),
        };
        let rest = rest.strip_prefix(b"content-length: 0\r\n".as_slice())?;
        let date_line = rest.strip_suffix(b"\r\n".as_slice())?;
        let well_formed = date_line.len() == DATE_LINE_LEN
            && date_line.starts_with(b"date: ")
            && date_line.ends_with(b"\r\n")
            && !date_line[6..DATE_LINE_LEN - 2].contains(&b'\r');
        well_formed.then_some(Self {
            status,
            status_line,
            closes,
            date_line,
        })
    }

    fn with_json_body(&self) -> Vec<u8> {
        let (_, _, message) = AUTOMATIC
            .iter()
            .find(|(status, _, _)| *status == self.status)
            .copied()
            .unwrap_or(AUTOMATIC[0]);
        let reason = http::StatusCode::from_u16(self.status)
            .ok()
            .and_then(|status| status.canonical_reason())
            .unwrap_or("Error");
        let body = serde_json::json!({ "error": reason, "message": message }).to_string();
        let mut out = Vec::with_capacity(160 + body.len());
        out.extend_from_slice(self.status_line);
        out.extend_from_slice(b"connection: close\r\ncontent-type: application/json\r\n");
        out.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
        out.extend_from_slice(self.date_line);
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(body.as_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYPER_400: &[u8] = b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\ndate: Mon, 07 Dec 2026 18:56:57 GMT\r\n\r\n";

    fn body_of(answer: &[u8]) -> serde_json::Value {
        let text = std::str::from_utf8(answer).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains("content-type: application/json"), "{head}");
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
        serde_json::from_str(body).unwrap()
    }

    #[test]
    fn hyper_answers_get_the_json_body() {
        let mut answers = ParseErrorAnswers::new(AppHeads::default());
        assert!(answers.intercept(HYPER_400, HYPER_400.len()));
        let body = body_of(answers.pending().unwrap());
        assert_eq!(body["error"], "Bad Request");
        answers.advance(10);
        assert!(answers.pending().is_some());
        answers.advance(10_000);
        assert!(answers.pending().is_none());
    }

    #[test]
    fn the_apps_own_empty_answers_pass_unchanged() {
        let heads = AppHeads::default();
        heads.note(http::StatusCode::BAD_REQUEST, true);
        heads.note(http::StatusCode::BAD_REQUEST, false);
        heads.note(http::StatusCode::NOT_FOUND, true);
        let mut answers = ParseErrorAnswers::new(heads);
        assert!(!answers.intercept(HYPER_400, HYPER_400.len()), "the app's");
        assert!(answers.intercept(HYPER_400, HYPER_400.len()), "hyper's");
    }

    #[test]
    fn other_writes_pass_unchanged() {
        let mut answers = ParseErrorAnswers::new(AppHeads::default());
        let kept_alive = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\ndate: Mon, 07 Dec 2026 18:56:57 GMT\r\n\r\n";
        assert!(!answers.intercept(kept_alive, kept_alive.len()));
        let with_body = b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 2\r\ndate: Mon, 07 Dec 2026 18:56:57 GMT\r\n\r\n{}";
        assert!(!answers.intercept(with_body, with_body.len()));
        assert!(
            !answers.intercept(HYPER_400, HYPER_400.len() + 5),
            "more follows"
        );
        assert!(!answers.intercept(b"HTTP/1.1 200 OK\r\n\r\n", 19));
    }
}
