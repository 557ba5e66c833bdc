//! Server-Sent Events (the WHATWG HTML standard's `text/event-stream`): a response that streams
//! events, with keep-alive comments while there is nothing to say.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_core::Stream;
use http::header::{self, HeaderValue};

use crate::response::{IntoResponse, Response};

/// How often a quiet stream sends a keep-alive comment, unless [`Sse::keep_alive`] says otherwise.
pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(15);

/// One event of a Server-Sent Events stream: `event:`, `id:`, `retry:` and `data:` lines.
///
/// Field values cannot break the stream: line breaks in `event` and `id` are removed (an `id` also
/// loses NUL characters, which browsers would reject), and multi-line `data` becomes one `data:` line
/// per line, which the browser joins back with `\n`.
///
/// ```
/// use verb_core::SseEvent;
///
/// let event = SseEvent::data("{\"n\":1}").event("tick").id("1");
/// assert_eq!(event.to_string(), "event: tick\nid: 1\ndata: {\"n\":1}\n\n");
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    event: Option<String>,
    id: Option<String>,
    retry: Option<Duration>,
    data: Option<String>,
    comment: Option<String>,
}

fn one_line(value: &str, drop_nul: bool) -> String {
    value
        .chars()
        .filter(|c| *c != '\n' && *c != '\r' && !(drop_nul && *c == '\0'))
        .collect()
}

impl SseEvent {
    /// An event carrying `data` (the `message` event, unless [`event`](Self::event) names another).
    pub fn data(data: impl Into<String>) -> Self {
        Self {
            data: Some(data.into()),
            ..Self::default()
        }
    }

    /// An event whose data is `value` as JSON.
    ///
    /// # Errors
    ///
    /// When `value` cannot be serialized.
    pub fn json<T: serde::Serialize + ?Sized>(value: &T) -> Result<Self, serde_json::Error> {
        serde_json::to_string(value).map(Self::data)
    }

    /// A comment line (`: text`), which browsers ignore: keeps proxies from timing out.
    pub fn comment(text: impl Into<String>) -> Self {
        Self {
            comment: Some(text.into()),
            ..Self::default()
        }
    }

    /// The event's type (`event:`), which the browser dispatches as `addEventListener(type, ..)`.
    pub fn event(mut self, event: impl AsRef<str>) -> Self {
        self.event = Some(one_line(event.as_ref(), false));
        self
    }

    /// The event's id (`id:`): the browser sends the last one it saw as `Last-Event-ID` when it
    /// reconnects ([`Request::last_event_id`](crate::Request::last_event_id)).
    pub fn id(mut self, id: impl AsRef<str>) -> Self {
        self.id = Some(one_line(id.as_ref(), true));
        self
    }

    /// How long the browser waits before reconnecting (`retry:`, whole milliseconds).
    pub fn retry(mut self, after: Duration) -> Self {
        self.retry = Some(after);
        self
    }
}

impl fmt::Display for SseEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(comment) = &self.comment {
            for line in comment.lines() {
                writeln!(f, ": {line}")?;
            }
        }
        if let Some(event) = &self.event {
            writeln!(f, "event: {event}")?;
        }
        if let Some(id) = &self.id {
            writeln!(f, "id: {id}")?;
        }
        if let Some(retry) = self.retry {
            writeln!(f, "retry: {}", retry.as_millis())?;
        }
        if let Some(data) = &self.data {
            // `lines` splits on `\n` and `\r\n`; a lone `\r` is a line break to the browser too.
            for line in data.split('\n') {
                for part in line.strip_suffix('\r').unwrap_or(line).split('\r') {
                    writeln!(f, "data: {part}")?;
                }
            }
        }
        writeln!(f)
    }
}

impl fmt::Debug for SseEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SseEvent").field(&self.to_string()).finish()
    }
}

/// A Server-Sent Events response: `text/event-stream`, `cache-control: no-cache`, each event sent as
/// the stream yields it, and a keep-alive comment after every [`DEFAULT_KEEP_ALIVE`] (15 s) without
/// one. The stream ends when `events` ends or the client goes away (the stream is dropped).
///
/// ```
/// use std::time::Duration;
/// use verb_core::{IntoResponse, Request, Response, Sse, SseEvent};
///
/// async fn ticks(req: Request) -> Response {
///     // Continue after the last event the browser saw, if it reconnects.
///     let from = req.last_event_id().and_then(|id| id.parse::<u64>().ok()).map_or(1, |n| n + 1);
///     let events = futures_util::stream::iter((from..).map(|n| SseEvent::data(n.to_string()).id(n.to_string())));
///     Sse::new(events).keep_alive(Duration::from_secs(30)).into_response()
/// }
/// # let _ = ticks;
/// ```
pub struct Sse<S> {
    events: S,
    keep_alive: Option<Duration>,
}

impl<S> Sse<S>
where
    S: Stream<Item = SseEvent> + Send + 'static,
{
    /// Streams `events`.
    pub fn new(events: S) -> Self {
        Self {
            events,
            keep_alive: Some(DEFAULT_KEEP_ALIVE),
        }
    }

    /// How long the stream may stay quiet before a keep-alive comment (default 15 s).
    pub fn keep_alive(mut self, every: Duration) -> Self {
        self.keep_alive = Some(every);
        self
    }

    /// Sends no keep-alive comments.
    pub fn without_keep_alive(mut self) -> Self {
        self.keep_alive = None;
        self
    }
}

impl<S> fmt::Debug for Sse<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sse")
            .field("keep_alive", &self.keep_alive)
            .finish_non_exhaustive()
    }
}

impl<S> IntoResponse for Sse<S>
where
    S: Stream<Item = SseEvent> + Send + 'static,
{
    fn into_response(self) -> Response {
        let stream = Framed {
            events: Box::pin(self.events),
            keep_alive: self
                .keep_alive
                .map(|every| (every, Box::pin(tokio::time::sleep(every)))),
        };
        let mut res = Response::stream(stream);
        let headers = res.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        res
    }
}

/// The events as bytes, with keep-alive comments in the gaps.
struct Framed<S> {
    events: Pin<Box<S>>,
    keep_alive: Option<(Duration, Pin<Box<tokio::time::Sleep>>)>,
}

impl<S: Stream<Item = SseEvent>> Stream for Framed<S> {
    type Item = Result<Bytes, std::convert::Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        match this.events.as_mut().poll_next(cx) {
            Poll::Ready(Some(event)) => {
                if let Some((every, sleep)) = &mut this.keep_alive {
                    sleep.as_mut().reset(tokio::time::Instant::now() + *every);
                }
                Poll::Ready(Some(Ok(Bytes::from(event.to_string()))))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let Some((every, sleep)) = &mut this.keep_alive else {
                    return Poll::Pending;
                };
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                sleep.as_mut().reset(tokio::time::Instant::now() + *every);
                Poll::Ready(Some(Ok(Bytes::from_static(b": keep-alive\n\n"))))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Line breaks cannot inject fields: they are dropped from `event`/`id` and split in `data`.
    #[test]
    fn fields_cannot_break_the_stream() {
        let event = SseEvent::data("a\nb\r\nc\rd")
            .event("x\ny")
            .id("1\r\n\0data: evil");
        assert_eq!(
            event.to_string(),
            "event: xy\nid: 1data: evil\ndata: a\ndata: b\ndata: c\ndata: d\n\n"
        );
        assert_eq!(
            SseEvent::comment("hi")
                .retry(Duration::from_millis(1500))
                .to_string(),
            ": hi\nretry: 1500\n\n"
        );
    }
}
