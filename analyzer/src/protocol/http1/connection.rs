//! Both directions of one connection: who sends requests, and request hints for responses.

use podtrace_format::Role;

use super::{Head, KeepHeaders, Kind, Limits, Message, MessageParser, RequestHint};
use crate::reassemble::Segment;

/// Bytes buffered per direction while the role of a connection is still unknown.
const MAX_UNDECIDED_BYTES: usize = 64 * 1024;

/// What one [`ConnectionParser::feed`] produced.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// The role, once known (`Unknown` while undecided or for non-HTTP connections).
    pub role: Option<Role>,
    /// Requests finished in this call, in stream order (header fields: only those in
    /// [`crate::protocol::http::KEPT_HEADERS`]).
    pub requests: Vec<Message>,
    /// Final responses finished in this call, in stream order (no header fields: only
    /// their framing is used).
    pub responses: Vec<Message>,
    /// Error reasons counted in this call.
    pub errors: Vec<&'static str>,
}

/// Parser state of one connection (both directions).
#[derive(Debug)]
pub struct ConnectionParser {
    role: Role,
    requests: MessageParser,
    responses: MessageParser,
    undecided_egress: Vec<Segment>,
    undecided_ingress: Vec<Segment>,
    given_up: bool,
}

impl ConnectionParser {
    /// A parser for a connection whose socket role is `role` (`Unknown` → inferred).
    pub fn new(role: Role, limits: Limits) -> Self {
        let mut requests = MessageParser::new(Kind::Request, limits);
        requests.keep_headers(KeepHeaders::Only(&crate::protocol::http::KEPT_HEADERS));
        let mut responses = MessageParser::new(Kind::Response, limits);
        responses.keep_headers(KeepHeaders::Only(&[]));
        ConnectionParser {
            role,
            requests,
            responses,
            undecided_egress: Vec::new(),
            undecided_ingress: Vec::new(),
            given_up: false,
        }
    }

    /// The connection's role (client = this process sends the requests).
    pub fn role(&self) -> Role {
        self.role
    }

    /// Learns the role later (a `socket_open` row that arrived after data).
    pub fn set_role(&mut self, role: Role) {
        if self.role == Role::Unknown && role != Role::Unknown {
            self.role = role;
        }
    }

    /// Feeds new segments of both directions; `closed` ends both streams.
    pub fn feed(&mut self, egress: &[Segment], ingress: &[Segment], closed: bool) -> Parsed {
        let mut out = Parsed::default();
        if self.given_up {
            return out;
        }
        if self.role == Role::Unknown {
            self.undecided_egress.extend_from_slice(egress);
            self.undecided_ingress.extend_from_slice(ingress);
            match infer_role(&self.undecided_egress, &self.undecided_ingress) {
                Some(role) => self.role = role,
                None => {
                    let buffered =
                        data_len(&self.undecided_egress).max(data_len(&self.undecided_ingress));
                    if closed || buffered > MAX_UNDECIDED_BYTES {
                        if buffered > 0 {
                            out.errors.push("not_http");
                        }
                        self.given_up = true;
                        self.undecided_egress.clear();
                        self.undecided_ingress.clear();
                    }
                    return out;
                }
            }
            let e = std::mem::take(&mut self.undecided_egress);
            let i = std::mem::take(&mut self.undecided_ingress);
            return self.feed_known(&e, &i, closed, out);
        }
        self.feed_known(egress, ingress, closed, out)
    }

    /// Ends both streams (end of the analysis): finishes close-delimited bodies.
    pub fn finish(&mut self) -> Parsed {
        self.feed(&[], &[], true)
    }

    fn feed_known(
        &mut self,
        egress: &[Segment],
        ingress: &[Segment],
        closed: bool,
        mut out: Parsed,
    ) -> Parsed {
        let (req_segs, resp_segs) = match self.role {
            Role::Server => (ingress, egress),
            _ => (egress, ingress),
        };
        for s in req_segs {
            self.requests.feed(s);
        }
        if closed {
            self.requests.finish();
        }
        let requests = self.requests.take_messages();
        for r in &requests {
            if let Head::Request { method, .. } = &r.head {
                self.responses.push_hint(RequestHint {
                    head: method.eq_ignore_ascii_case("HEAD"),
                    connect: method.eq_ignore_ascii_case("CONNECT"),
                });
            }
        }
        for s in resp_segs {
            self.responses.feed(s);
        }
        if closed {
            self.responses.finish();
        }
        out.role = Some(self.role);
        out.requests = requests;
        out.responses = self.responses.take_messages();
        out.errors.extend(self.requests.take_errors());
        out.errors.extend(self.responses.take_errors());
        out
    }
}

fn data_len(segs: &[Segment]) -> usize {
    segs.iter()
        .map(|s| match s {
            Segment::Data { bytes, .. } => bytes.len(),
            _ => 0,
        })
        .sum()
}

/// First captured bytes of a direction (up to 64).
fn first_bytes(segs: &[Segment]) -> Vec<u8> {
    let mut out = Vec::new();
    for s in segs {
        match s {
            Segment::Data { bytes, .. } => {
                out.extend_from_slice(&bytes[..bytes.len().min(64 - out.len())]);
                if out.len() >= 64 {
                    break;
                }
            }
            _ if out.is_empty() => continue,
            _ => break,
        }
    }
    out
}

/// A request line start: a token, a space, a target, a space, `HTTP/1.`.
fn looks_like_request(b: &[u8]) -> bool {
    let Some(sp) = b.iter().position(|c| *c == b' ') else {
        return false;
    };
    if sp == 0 || !b[..sp].iter().all(|c| c.is_ascii_uppercase()) {
        return false;
    }
    let rest = &b[sp + 1..];
    match rest.iter().position(|c| *c == b' ') {
        Some(sp2) => rest[sp2 + 1..].starts_with(b"HTTP/1.") || rest.len() - sp2 - 1 < 7,
        // The line did not fit in the first bytes: a long target.
        None => rest.len() >= 48,
    }
}

/// The side that sends the first bytes parsing as an HTTP request is the client.
fn infer_role(egress: &[Segment], ingress: &[Segment]) -> Option<Role> {
    let e = first_bytes(egress);
    let i = first_bytes(ingress);
    if looks_like_request(&e) {
        Some(Role::Client)
    } else if looks_like_request(&i) || e.starts_with(b"HTTP/1.") {
        Some(Role::Server)
    } else if i.starts_with(b"HTTP/1.") {
        Some(Role::Client)
    } else if has_request_line(egress) {
        // The recording started mid-message: a complete request line further on.
        Some(Role::Client)
    } else if has_request_line(ingress) {
        Some(Role::Server)
    } else {
        None
    }
}

/// True when the captured bytes hold a complete request line at the start of a line
/// (`METHOD target HTTP/1.x` followed by CRLF) after the first line break.
fn has_request_line(segs: &[Segment]) -> bool {
    let mut data = Vec::new();
    for s in segs {
        if let Segment::Data { bytes, .. } = s {
            data.extend_from_slice(bytes);
        }
    }
    data.split(|b| *b == b'\n').skip(1).any(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let mut parts = line.split(|b| *b == b' ');
        let (Some(method), Some(target), Some(version), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return false;
        };
        !method.is_empty()
            && method.iter().all(|c| c.is_ascii_uppercase())
            && !target.is_empty()
            && (version == b"HTTP/1.1" || version == b"HTTP/1.0")
    })
}
