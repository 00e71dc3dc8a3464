//! Exchanges: each request paired with its response (FIFO per connection).
//!
//! The HTTP stage hands out requests and final responses per connection; this stage turns
//! them into [`Exchange`]s: the request's method, target, host and the headers later stages
//! need (trace context, user agent), the response's status and body size, the times of the
//! first request byte and last response byte, which side of the connection observed it
//! (client or server socket) and the process and addresses ([`ConnInfo`]). A request is
//! announced as soon as it is parsed ([`ExchangeEvent::Request`]) so that spans can be
//! linked while its response is still outstanding; the response follows as
//! [`ExchangeEvent::Response`].

use std::collections::VecDeque;
use std::sync::Arc;

use podtrace_format::Role;
use podtrace_model::SpanKind;

use crate::http1::{Head, Message, Parsed};
use crate::reassemble::{ConnInfo, ConnKey};

/// Request header names (lowercase) kept on an [`Exchange`]: trace context, W3C baggage
/// (read only with `--baggage-attributes`), host, agent.
pub const KEPT_HEADERS: [&str; 14] = [
    "traceparent",
    "tracestate",
    "b3",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
    "x-request-id",
    "x-span-id",
    "uber-trace-id",
    "baggage",
    "host",
    "user-agent",
];

/// Identity of an exchange: its connection and its position on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExchangeId {
    /// The connection.
    pub conn: ConnKey,
    /// 0-based index of the request on the connection.
    pub seq: u64,
}

/// The request half of an exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Method token.
    pub method: String,
    /// Request target as sent.
    pub target: String,
    /// Path part of the target (absolute-form targets reduced to their path).
    pub path: String,
    /// Query string without `?`, if any.
    pub query: Option<String>,
    /// HTTP minor version.
    pub version: u8,
    /// Headers in [`KEPT_HEADERS`], in wire order, names as sent.
    pub headers: Vec<(String, String)>,
    /// Body size in bytes.
    pub body_size: u64,
    /// Time of the first request byte.
    pub start_ts: u64,
    /// Time of the last request byte.
    pub end_ts: u64,
    /// Bytes of the request were not captured.
    pub truncated: bool,
    /// Thread of the recorded process that read (SERVER side) or wrote (CLIENT side) the
    /// first request byte; 0 when not known (imported captures, HTTP/2, whose I/O threads
    /// are not the application's).
    pub tid: u32,
    /// HTTP/2 stream facts (`None` for HTTP/1).
    pub h2: Option<Box<crate::http2::H2Request>>,
}

impl Request {
    /// The first value of a kept header (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The response half of an exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// HTTP minor version.
    pub version: u8,
    /// Body size in bytes.
    pub body_size: u64,
    /// Time of the first response byte.
    pub start_ts: u64,
    /// Time of the last response byte.
    pub end_ts: u64,
    /// Bytes of the response were not captured.
    pub truncated: bool,
    /// HTTP/2 stream facts: gRPC status, reset (`None` for HTTP/1).
    pub h2: Option<crate::http2::H2Response>,
}

/// One request and (once seen) its response, observed on one socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    /// Identity.
    pub id: ExchangeId,
    /// The socket's process and addresses.
    pub conn: Arc<ConnInfo>,
    /// `Server` when the socket was accepted, `Client` when it connected.
    pub side: SpanKind,
    /// The request.
    pub request: Request,
    /// The response, `None` while outstanding.
    pub response: Option<Response>,
    /// Position among the connection's requests that started at the same time (pipelined
    /// requests in one segment): with the connection and start time, a stable identity
    /// that does not depend on how much of the connection's history is still held.
    pub ordinal: u32,
}

impl Exchange {
    /// First request byte.
    pub fn start_ts(&self) -> u64 {
        self.request.start_ts
    }
    /// Last response byte (last request byte while the response is outstanding).
    pub fn end_ts(&self) -> u64 {
        self.response
            .as_ref()
            .map(|r| r.end_ts)
            .unwrap_or(self.request.end_ts)
    }
}

/// What pairing produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExchangeEvent {
    /// A new request (its response is `None`).
    Request(Exchange),
    /// The response to an earlier request.
    Response {
        /// Which exchange.
        id: ExchangeId,
        /// The response.
        response: Response,
    },
    /// The connection closed with this request unanswered.
    Unanswered(ExchangeId),
    /// A response arrived with no request waiting (the request was not recorded).
    UnmatchedResponse(ConnKey),
}

/// Per-connection FIFO pairing state.
#[derive(Debug, Default)]
pub struct Pairing {
    next_seq: u64,
    /// Requests waiting for a response: sequence number and first-byte time.
    waiting: VecDeque<(u64, u64)>,
    last_start: Option<u64>,
    same_start: u32,
}

impl Pairing {
    /// A new connection.
    pub fn new() -> Self {
        Self::default()
    }

    /// Requests waiting for a response.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Pairs what the HTTP stage parsed; `closed` turns waiting requests into
    /// [`ExchangeEvent::Unanswered`].
    pub fn pair(
        &mut self,
        conn: &Arc<ConnInfo>,
        parsed: Parsed,
        closed: bool,
    ) -> Vec<ExchangeEvent> {
        let mut out = Vec::new();
        let side = match parsed.role.unwrap_or(conn.role) {
            Role::Server => SpanKind::Server,
            _ => SpanKind::Client,
        };
        for m in parsed.requests {
            let seq = self.next_seq;
            self.next_seq += 1;
            let start = m.start_ts;
            self.waiting.push_back((seq, start));
            if let Some(request) = to_request(m) {
                if self.last_start == Some(request.start_ts) {
                    self.same_start += 1;
                } else {
                    self.last_start = Some(request.start_ts);
                    self.same_start = 0;
                }
                out.push(ExchangeEvent::Request(Exchange {
                    id: ExchangeId {
                        conn: conn.key,
                        seq,
                    },
                    conn: conn.clone(),
                    side,
                    request,
                    response: None,
                    ordinal: self.same_start,
                }));
            }
        }
        for m in parsed.responses {
            let Some(response) = to_response(m) else {
                continue;
            };
            // A response that began before the oldest waiting request answers a request
            // that was not recorded (recording started mid-exchange); pairing it would shift
            // every later exchange of the connection by one.
            let answers_front = self
                .waiting
                .front()
                .is_some_and(|&(_, req_start)| response.start_ts >= req_start);
            match answers_front.then(|| self.waiting.pop_front()).flatten() {
                Some((seq, _)) => out.push(ExchangeEvent::Response {
                    id: ExchangeId {
                        conn: conn.key,
                        seq,
                    },
                    response,
                }),
                None => out.push(ExchangeEvent::UnmatchedResponse(conn.key)),
            }
        }
        if closed {
            for (seq, _) in self.waiting.drain(..) {
                out.push(ExchangeEvent::Unanswered(ExchangeId {
                    conn: conn.key,
                    seq,
                }));
            }
        }
        out
    }
}

/// Splits a request target into path and query (absolute-form and authority-form reduced).
pub fn split_target(target: &str) -> (String, Option<String>) {
    let without_scheme = target
        .strip_prefix("http://")
        .or_else(|| target.strip_prefix("https://"));
    let rest = match without_scheme {
        Some(r) => match r.find('/') {
            Some(i) => &r[i..],
            None => "/",
        },
        None => target,
    };
    let rest = rest.split('#').next().unwrap_or(rest);
    match rest.split_once('?') {
        Some((p, q)) => (p.to_string(), Some(q.to_string())),
        None => (rest.to_string(), None),
    }
}

fn to_request(m: Message) -> Option<Request> {
    let Head::Request {
        method,
        target,
        version,
    } = m.head
    else {
        return None;
    };
    let (path, query) = if method.eq_ignore_ascii_case("CONNECT") {
        (String::new(), None)
    } else {
        split_target(&target)
    };
    let headers = m
        .headers
        .into_iter()
        .filter(|(n, _)| KEPT_HEADERS.iter().any(|k| n.eq_ignore_ascii_case(k)))
        .collect();
    Some(Request {
        method,
        target,
        path,
        query,
        version,
        headers,
        body_size: m.body_size,
        start_ts: m.start_ts,
        end_ts: m.end_ts,
        truncated: m.truncated,
        tid: m.tid,
        h2: None,
    })
}

fn to_response(m: Message) -> Option<Response> {
    let Head::Response {
        status, version, ..
    } = m.head
    else {
        return None;
    };
    Some(Response {
        status,
        version,
        body_size: m.body_size,
        start_ts: m.start_ts,
        end_ts: m.end_ts,
        truncated: m.truncated,
        h2: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::{ConnectionParser, Limits};
    use crate::reassemble::Segment;

    fn conn(role: Role) -> Arc<ConnInfo> {
        Arc::new(ConnInfo {
            key: ConnKey {
                conn_id: 1,
                local: None,
                remote: None,
            },
            pid: 1,
            comm: "c".into(),
            cgroup_id: 0,
            role,
        })
    }

    fn data(ts: u64, b: &[u8]) -> Segment {
        Segment::Data {
            ts_ns: ts,
            tid: 0,
            bytes: b.to_vec(),
        }
    }

    #[test]
    fn target_splitting() {
        assert_eq!(
            split_target("/a/b?x=1&y"),
            ("/a/b".into(), Some("x=1&y".into()))
        );
        assert_eq!(
            split_target("http://h:8080/p?q"),
            ("/p".into(), Some("q".into()))
        );
        assert_eq!(split_target("http://h"), ("/".into(), None));
        assert_eq!(split_target("*"), ("*".into(), None));
    }

    #[test]
    fn pipelined_requests_pair_fifo_with_times() {
        let c = conn(Role::Server);
        let mut parser = ConnectionParser::new(Role::Server, Limits::default());
        let mut pairing = Pairing::new();
        let parsed = parser.feed(
            &[],
            &[data(
                10,
                b"GET /a HTTP/1.1\r\nHost: svc:80\r\nTraceparent: x\r\nAccept: */*\r\n\r\nGET /b HTTP/1.1\r\n\r\n",
            )],
            false,
        );
        let ev = pairing.pair(&c, parsed, false);
        assert_eq!(ev.len(), 2);
        let ExchangeEvent::Request(first) = &ev[0] else {
            panic!("request expected")
        };
        assert_eq!(first.side, SpanKind::Server);
        assert_eq!(first.request.path, "/a");
        assert_eq!(first.request.headers.len(), 2, "only kept headers");
        assert_eq!(first.request.header("host"), Some("svc:80"));
        let parsed = parser.feed(
            &[
                data(20, b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx"),
                data(30, b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n"),
            ],
            &[],
            false,
        );
        let ev = pairing.pair(&c, parsed, false);
        let statuses: Vec<(u64, u16, u64)> = ev
            .iter()
            .filter_map(|e| match e {
                ExchangeEvent::Response { id, response } => {
                    Some((id.seq, response.status, response.end_ts))
                }
                _ => None,
            })
            .collect();
        assert_eq!(statuses, vec![(0, 200, 20), (1, 503, 30)]);
        let ev = pairing.pair(&c, Parsed::default(), true);
        assert!(ev.is_empty());
    }

    #[test]
    fn response_older_than_the_waiting_request_is_not_its_answer() {
        // Recording began after the server read request 0 but before it answered: the
        // first response seen belongs to a request that was never recorded.
        let c = conn(Role::Server);
        let mut parser = ConnectionParser::new(Role::Server, Limits::default());
        let mut pairing = Pairing::new();
        let parsed = parser.feed(
            &[
                data(5, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
                data(20, b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"),
            ],
            &[data(10, b"POST /b HTTP/1.1\r\nContent-Length: 0\r\n\r\n")],
            false,
        );
        let ev = pairing.pair(&c, parsed, false);
        let unmatched = ev
            .iter()
            .filter(|e| matches!(e, ExchangeEvent::UnmatchedResponse(_)))
            .count();
        let answered: Vec<(u64, u16)> = ev
            .iter()
            .filter_map(|e| match e {
                ExchangeEvent::Response { id, response } => Some((id.seq, response.status)),
                _ => None,
            })
            .collect();
        assert_eq!(unmatched, 1);
        assert_eq!(answered, vec![(0, 201)]);
        assert_eq!(pairing.waiting(), 0);
    }

    #[test]
    fn close_reports_unanswered_and_extra_responses() {
        let c = conn(Role::Client);
        let mut parser = ConnectionParser::new(Role::Client, Limits::default());
        let mut pairing = Pairing::new();
        let parsed = parser.feed(&[data(1, b"GET / HTTP/1.1\r\n\r\n")], &[], false);
        let _ = pairing.pair(&c, parsed, false);
        assert_eq!(pairing.waiting(), 1);
        let ev = pairing.pair(&c, Parsed::default(), true);
        assert!(matches!(
            ev[0],
            ExchangeEvent::Unanswered(ExchangeId { seq: 0, .. })
        ));
        let parsed = Parsed {
            role: Some(Role::Client),
            responses: vec![Message {
                head: Head::Response {
                    status: 200,
                    reason: "OK".into(),
                    version: 1,
                },
                headers: vec![],
                body_size: 0,
                start_ts: 1,
                end_ts: 1,
                tid: 0,
                truncated: false,
            }],
            ..Parsed::default()
        };
        let ev = pairing.pair(&c, parsed, false);
        assert!(matches!(ev[0], ExchangeEvent::UnmatchedResponse(_)));
    }
}
