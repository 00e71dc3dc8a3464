//! Exchanges: each request paired with its response, whatever the protocol.
//!
//! The protocol stage ([`crate::protocol`]) hands out each connection's requests and
//! responses as protocol-neutral [`MessageEvent`]s; this stage pairs them into
//! [`Exchange`]s — by stream id on multiplexed protocols (HTTP/2), first-in first-out
//! otherwise (HTTP/1) — and adds which side of the connection observed it (client or
//! server socket) and the process and addresses ([`ConnInfo`]). A request is announced as
//! soon as it is parsed ([`ExchangeEvent::Request`]) so that spans can be linked while its
//! response is still outstanding; the response follows as [`ExchangeEvent::Response`].
//! Nothing here knows a protocol: the protocol-specific part rides along in the request's
//! and response's `detail`.

use std::collections::VecDeque;
use std::sync::Arc;

use podtrace_format::Role;
use podtrace_model::SpanKind;

use crate::protocol::{MessageEvent, Output};
pub use crate::protocol::{Request, Response};
use crate::reassemble::{ConnInfo, ConnKey};

/// Identity of an exchange: its connection and its position on it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct ExchangeId {
    /// The connection.
    pub conn: ConnKey,
    /// 0-based index of the request on the connection.
    pub seq: u64,
}

/// One request and (once seen) its response, observed on one socket.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
}

/// What pairing produced.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ExchangeEvent {
    /// A new request (its response is `None`). Boxed where it is parsed: the linker holds
    /// it, and hands it on to span building, as this pointer, never copying it.
    Request(Box<Exchange>),
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
    #[cfg(test)]
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Pairs what the protocol stage parsed; `closed` turns waiting requests into
    /// [`ExchangeEvent::Unanswered`].
    pub fn pair(
        &mut self,
        conn: &Arc<ConnInfo>,
        parsed: Output,
        closed: bool,
    ) -> Vec<ExchangeEvent> {
        let mut out = Vec::with_capacity(parsed.events.len());
        let side = match parsed.role.unwrap_or(conn.role) {
            Role::Server => SpanKind::Server,
            _ => SpanKind::Client,
        };
        let id = |seq: u64| ExchangeId {
            conn: conn.key,
            seq,
        };
        for ev in parsed.events {
            match ev {
                MessageEvent::Request {
                    stream: None,
                    request,
                } => {
                    let seq = self.next_seq;
                    self.next_seq += 1;
                    self.waiting.push_back((seq, request.start_ts));
                    if self.last_start == Some(request.start_ts) {
                        self.same_start += 1;
                    } else {
                        self.last_start = Some(request.start_ts);
                        self.same_start = 0;
                    }
                    out.push(ExchangeEvent::Request(Box::new(Exchange {
                        id: id(seq),
                        conn: conn.clone(),
                        side,
                        request,
                        response: None,
                        ordinal: self.same_start,
                    })));
                }
                MessageEvent::Request {
                    stream: Some(s),
                    request,
                } => out.push(ExchangeEvent::Request(Box::new(Exchange {
                    id: id(u64::from(s)),
                    conn: conn.clone(),
                    side,
                    request,
                    response: None,
                    // The stream id is a stable identity within the connection.
                    ordinal: s,
                }))),
                MessageEvent::Response {
                    stream: None,
                    response,
                } => {
                    // A response that began before the oldest waiting request answers a
                    // request that was not recorded (recording started mid-exchange);
                    // pairing it would shift every later exchange of the connection by one.
                    let answers_front = self
                        .waiting
                        .front()
                        .is_some_and(|&(_, req_start)| response.start_ts >= req_start);
                    match answers_front.then(|| self.waiting.pop_front()).flatten() {
                        Some((seq, _)) => out.push(ExchangeEvent::Response {
                            id: id(seq),
                            response,
                        }),
                        None => out.push(ExchangeEvent::UnmatchedResponse(conn.key)),
                    }
                }
                MessageEvent::Response {
                    stream: Some(s),
                    response,
                } => out.push(ExchangeEvent::Response {
                    id: id(u64::from(s)),
                    response,
                }),
                MessageEvent::Unanswered(s) => {
                    out.push(ExchangeEvent::Unanswered(id(u64::from(s))))
                }
                MessageEvent::UnmatchedResponse => {
                    out.push(ExchangeEvent::UnmatchedResponse(conn.key))
                }
            }
        }
        if closed {
            for (seq, _) in self.waiting.drain(..) {
                out.push(ExchangeEvent::Unanswered(id(seq)));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::http1::{to_output, ConnectionParser, Head, Limits, Message, Parsed};
    use crate::protocol::{RequestDetail, ResponseDetail};
    use crate::reassemble::Segment;

    /// The HTTP status of a response.
    fn status(r: &Response) -> u16 {
        match &r.detail {
            ResponseDetail::Http(h) => h.status,
            other => panic!("HTTP response expected: {other:?}"),
        }
    }

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
            tls: false,
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
    fn pipelined_requests_pair_fifo_with_times() {
        let c = conn(Role::Server);
        let mut parser = ConnectionParser::new(Role::Server, Limits::default());
        let mut pairing = Pairing::new();
        let parsed = to_output(parser.feed(
            &[],
            &[data(
                10,
                b"GET /a HTTP/1.1\r\nHost: svc:80\r\nTraceparent: x\r\nAccept: */*\r\n\r\nGET /b HTTP/1.1\r\n\r\n",
            )],
            false,
        ));
        let ev = pairing.pair(&c, parsed, false);
        assert_eq!(ev.len(), 2);
        let ExchangeEvent::Request(first) = &ev[0] else {
            panic!("request expected")
        };
        assert_eq!(first.side, SpanKind::Server);
        assert_eq!(
            first.request.detail,
            RequestDetail::Http(crate::protocol::http::HttpRequest {
                method: "GET".into(),
                target: "/a".into(),
                path: "/a".into(),
                query: None,
                version: 1,
                h2: None,
            })
        );
        assert_eq!(first.request.headers.len(), 2, "only kept headers");
        assert_eq!(first.request.header("host"), Some("svc:80"));
        let parsed = to_output(parser.feed(
            &[
                data(20, b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx"),
                data(30, b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n"),
            ],
            &[],
            false,
        ));
        let ev = pairing.pair(&c, parsed, false);
        let statuses: Vec<(u64, u16, u64)> = ev
            .iter()
            .filter_map(|e| match e {
                ExchangeEvent::Response { id, response } => {
                    Some((id.seq, status(response), response.end_ts))
                }
                _ => None,
            })
            .collect();
        assert_eq!(statuses, vec![(0, 200, 20), (1, 503, 30)]);
        let ev = pairing.pair(&c, Output::default(), true);
        assert!(ev.is_empty());
    }

    #[test]
    fn response_older_than_the_waiting_request_is_not_its_answer() {
        // Recording began after the server read request 0 but before it answered: the
        // first response seen belongs to a request that was never recorded.
        let c = conn(Role::Server);
        let mut parser = ConnectionParser::new(Role::Server, Limits::default());
        let mut pairing = Pairing::new();
        let parsed = to_output(parser.feed(
            &[
                data(5, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
                data(20, b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"),
            ],
            &[data(10, b"POST /b HTTP/1.1\r\nContent-Length: 0\r\n\r\n")],
            false,
        ));
        let ev = pairing.pair(&c, parsed, false);
        let unmatched = ev
            .iter()
            .filter(|e| matches!(e, ExchangeEvent::UnmatchedResponse(_)))
            .count();
        let answered: Vec<(u64, u16)> = ev
            .iter()
            .filter_map(|e| match e {
                ExchangeEvent::Response { id, response } => Some((id.seq, status(response))),
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
        let parsed = to_output(parser.feed(&[data(1, b"GET / HTTP/1.1\r\n\r\n")], &[], false));
        let _ = pairing.pair(&c, parsed, false);
        assert_eq!(pairing.waiting(), 1);
        let ev = pairing.pair(&c, Output::default(), true);
        assert!(matches!(
            ev[0],
            ExchangeEvent::Unanswered(ExchangeId { seq: 0, .. })
        ));
        let parsed = to_output(Parsed {
            role: Some(Role::Client),
            responses: vec![Message {
                head: Head::Response {
                    status: 200,
                    version: 1,
                },
                headers: crate::protocol::Headers::new(),
                body_size: 0,
                start_ts: 1,
                end_ts: 1,
                tid: 0,
                truncated: false,
            }],
            ..Parsed::default()
        });
        let ev = pairing.pair(&c, parsed, false);
        assert!(matches!(ev[0], ExchangeEvent::UnmatchedResponse(_)));
    }
}
