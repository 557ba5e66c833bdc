//! HTTP mode: N keep-alive HTTP/1.1 connections, each keeping K `GET` requests in flight (K = 1 is
//! the usual: a request, its response, the next request).
//!
//! With `--http2`, the connections speak HTTP/2 with prior knowledge (h2c): each request is a new
//! stream (HEADERS with END_STREAM), and its response is complete at the frame that ends its stream.
//!
//! A delivery is one complete response (head and `Content-Length` body). Responses that are not
//! `200`, or whose body length differs from the first one's, count as unexpected; a connection that
//! has not had a response for the loss timeout counts as timed out. Latency is request write to
//! response end.

use std::collections::VecDeque;
use std::io;
use std::time::Instant;

use super::conn::{Conn, Ended};
use super::{Answers, Config, Net, Report, closed_loop, h2};

/// Longest response head accepted.
const MAX_HEAD: usize = 16 * 1024;

/// One response read off a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Response {
    status: u16,
    /// Body length (`Content-Length`).
    body: usize,
    /// Bytes the whole response took.
    used: usize,
}

/// HTTP/2's per-connection state.
struct H2 {
    /// The request's HPACK header block.
    block: Vec<u8>,
    /// Per connection: the next stream id, the send times of the streams in flight, whether each
    /// stream's response said 200, and DATA bytes received since the window was last replenished.
    next_stream: Vec<u32>,
    flight: Vec<std::collections::HashMap<u32, (u64, bool)>>,
    unacked: Vec<u32>,
}

/// What the HTTP loop keeps and counts.
struct Http {
    request: Vec<u8>,
    /// HTTP/2 instead of HTTP/1.1.
    h2: Option<H2>,
    /// Per connection, the send times of its requests in flight, oldest first.
    flight: Vec<VecDeque<u64>>,
    /// Per connection, when its last response arrived (ns since start).
    last_rx_ns: Vec<u64>,
    /// The body length of the first response; later ones must match.
    body_len: Option<usize>,
    report: Report,
}

impl Answers for Http {
    fn read(
        &mut self,
        i: usize,
        conn: &mut Conn,
        scratch: &mut [u8],
        start: Instant,
        measuring: bool,
    ) -> io::Result<(usize, Option<Ended>)> {
        if self.h2.is_some() {
            return self.read_h2(i, conn, scratch, start, measuring);
        }
        let mut answered = 0usize;
        let ended = conn.read_with(scratch, |mut filled| {
            let mut used = 0;
            loop {
                let response = match parse_response(filled) {
                    Ok(Some(response)) => response,
                    Ok(None) => return (used, None),
                    Err(err) => return (used, Some(Ended::Error(err))),
                };
                used += response.used;
                filled = &filled[response.used..];
                let Some(sent_ns) = self.flight[i].pop_front() else {
                    return (used, Some(Ended::Error("a response to no request".into())));
                };
                let now_ns = start.elapsed().as_nanos() as u64;
                self.last_rx_ns[i] = now_ns;
                answered += 1;
                let body = *self.body_len.get_or_insert(response.body);
                let r = &mut self.report;
                if response.status != 200 || body != response.body {
                    r.foreign += 1;
                }
                if measuring {
                    r.deliveries += 1;
                    r.latency.saturating_record(now_ns.saturating_sub(sent_ns));
                }
            }
        })?;
        Ok((answered, ended))
    }

    fn requests(&mut self, i: usize, n: usize, now_ns: u64, burst: &mut Vec<u8>) {
        if let Some(h2) = &mut self.h2 {
            for _ in 0..n {
                let stream = h2.next_stream[i];
                h2.next_stream[i] += 2;
                h2::frame(
                    h2::HEADERS,
                    h2::END_HEADERS | END_STREAM,
                    stream,
                    &h2.block,
                    burst,
                );
                h2.flight[i].insert(stream, (now_ns, false));
            }
            return;
        }
        for _ in 0..n {
            burst.extend_from_slice(&self.request);
            self.flight[i].push_back(now_ns);
        }
    }

    fn report(&mut self) -> &mut Report {
        &mut self.report
    }
}

/// END_STREAM, on HEADERS and DATA frames.
const END_STREAM: u8 = 0x1;

impl Http {
    /// [`Answers::read`] over HTTP/2: frames, not responses; a stream's response is complete at the
    /// frame that ends it.
    fn read_h2(
        &mut self,
        i: usize,
        conn: &mut Conn,
        scratch: &mut [u8],
        start: Instant,
        measuring: bool,
    ) -> io::Result<(usize, Option<Ended>)> {
        let Some(h2) = self.h2.as_mut() else {
            return Ok((0, None));
        };
        let report = &mut self.report;
        let last_rx = &mut self.last_rx_ns[i];
        let (flight, unacked) = (&mut h2.flight[i], &mut h2.unacked[i]);
        let mut answered = 0usize;
        let mut control = Vec::new();
        let ended = conn.read_with(scratch, |filled| {
            let mut at = 0;
            while filled.len() - at >= 9 {
                let head = &filled[at..at + 9];
                let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
                if filled.len() - at < 9 + len {
                    break;
                }
                let (kind, flags) = (head[3], head[4]);
                let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
                let payload = &filled[at + 9..at + 9 + len];
                at += 9 + len;
                let ends = match kind {
                    h2::HEADERS => {
                        // `:status: 200` is HPACK's static entry 8.
                        if let Some(entry) = flight.get_mut(&stream) {
                            entry.1 |= payload.first() == Some(&0x88);
                        }
                        flags & END_STREAM != 0
                    }
                    h2::DATA => {
                        *unacked += len as u32;
                        flags & END_STREAM != 0
                    }
                    h2::SETTINGS if flags & h2::ACK == 0 => {
                        h2::frame(h2::SETTINGS, h2::ACK, 0, &[], &mut control);
                        false
                    }
                    h2::PING if flags & h2::ACK == 0 => {
                        h2::frame(h2::PING, h2::ACK, 0, payload, &mut control);
                        false
                    }
                    h2::RST_STREAM => {
                        report.foreign += 1;
                        true
                    }
                    h2::GOAWAY => return (at, Some(Ended::Error("the server sent GOAWAY".into()))),
                    _ => false,
                };
                if !ends {
                    continue;
                }
                let Some((sent_ns, ok)) = flight.remove(&stream) else {
                    continue;
                };
                let now_ns = start.elapsed().as_nanos() as u64;
                *last_rx = now_ns;
                answered += 1;
                if !ok {
                    report.foreign += 1;
                }
                if measuring {
                    report.deliveries += 1;
                    report
                        .latency
                        .saturating_record(now_ns.saturating_sub(sent_ns));
                }
            }
            (at, None)
        })?;
        if *unacked >= h2::REPLENISH {
            h2::frame(
                h2::WINDOW_UPDATE,
                0,
                0,
                &unacked.to_be_bytes(),
                &mut control,
            );
            *unacked = 0;
        }
        if !control.is_empty() && ended.is_none() {
            conn.send(&control)?;
        }
        Ok((answered, ended))
    }
}

pub(super) fn run(config: &Config) -> anyhow::Result<Report> {
    let (mut net, setup_s) = Net::connect_evenly(config)?;
    let n = net.conns.len();
    let host = config.addrs[0];
    let h2 = config.http2.then(|| {
        // GET, http, then `:path` and `:authority` as literals with indexed names (4 and 1).
        let mut block = vec![0x82, 0x86, 0x04, config.path.len() as u8];
        block.extend_from_slice(config.path.as_bytes());
        let authority = host.to_string();
        block.extend_from_slice(&[0x01, authority.len() as u8]);
        block.extend_from_slice(authority.as_bytes());
        H2 {
            block,
            next_stream: vec![1; n],
            flight: vec![std::collections::HashMap::new(); n],
            unacked: vec![0; n],
        }
    });
    if h2.is_some() {
        for conn in &mut net.conns {
            conn.send(&h2::preface())?;
        }
    }
    let mut http = Http {
        h2,
        request: format!("GET {} HTTP/1.1\r\nHost: {host}\r\n\r\n", config.path).into_bytes(),
        flight: vec![VecDeque::with_capacity(config.in_flight); n],
        last_rx_ns: vec![net.now_ns(); n],
        body_len: None,
        report: Report::empty(config, net.failed, setup_s),
    };
    let measured = closed_loop(config, &mut net, &mut http)?;

    let now_ns = net.now_ns();
    let stall_ns = config.loss_timeout.as_nanos() as u64;
    let mut report = http.report;
    report.timed_out = (0..n)
        .filter(|&i| net.open[i] && now_ns - http.last_rx_ns[i] >= stall_ns)
        .count() as u64;
    report.completed = report.deliveries;
    report.payload = http.body_len.unwrap_or(0);
    Ok(report.measured(measured))
}

/// The response at the start of `buf`, `None` while it is incomplete. Only `Content-Length` bodies
/// are understood (what the servers measured send for a fixed page).
fn parse_response(buf: &[u8]) -> Result<Option<Response>, String> {
    let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if buf.len() > MAX_HEAD {
            Err("response head too long".to_owned())
        } else {
            Ok(None)
        };
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| "response head is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut body = None;
    for (name, value) in lines.filter_map(|line| line.split_once(':')) {
        if name.trim().eq_ignore_ascii_case("content-length") {
            body = Some(
                value
                    .trim()
                    .parse::<usize>()
                    .map_err(|_| "bad content-length")?,
            );
        } else if name.trim().eq_ignore_ascii_case("transfer-encoding") {
            return Err(format!(
                "transfer-encoding {} is not supported",
                value.trim()
            ));
        }
    }
    let body = body.ok_or("a response without content-length")?;
    let used = head_end + 4 + body;
    Ok((buf.len() >= used).then_some(Response { status, body, used }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_responses_one_at_a_time() {
        let two = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ndate: x\r\n\r\nhelloHTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
        let first = parse_response(two).expect("valid").expect("complete");
        assert_eq!((first.status, first.body, first.used), (200, 5, 52));
        let second = parse_response(&two[first.used..])
            .expect("valid")
            .expect("complete");
        assert_eq!((second.status, second.body), (404, 0));
        assert_eq!(parse_response(&two[..40]), Ok(None));
        assert_eq!(parse_response(&two[..51]), Ok(None));
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n\r\n").is_err());
    }
}
