//! HTTP/1 as a [`Protocol`]: the [`ConnectionParser`]'s messages as protocol-neutral
//! [`MessageEvent`]s (requests, then responses, both paired in order).

use podtrace_format::Role;

use super::{ConnectionParser, Head, Message, Parsed};
use crate::protocol::http::{split_target, HttpRequest, HttpResponse};
use crate::protocol::{
    Detection, MessageEvent, Output, Protocol, Request, RequestDetail, Response, ResponseDetail,
    Start,
};
use crate::reassemble::Segment;

/// HTTP/1.x on one connection. It is the dispatcher's fallback: it claims every connection
/// no other protocol claimed (what is not HTTP/1 is then counted as `not_http` or as
/// garbage).
#[derive(Debug)]
pub struct Http1 {
    parser: ConnectionParser,
}

impl Http1 {
    /// A parser for a connection whose socket role is `role` (`Unknown` → inferred).
    pub fn new(role: Role, limits: super::Limits) -> Self {
        Http1 {
            parser: ConnectionParser::new(role, limits),
        }
    }
}

impl Protocol for Http1 {
    fn detect(start: &Start<'_>) -> Detection<Self> {
        Detection::Found(Http1::new(start.role, start.limits.http1))
    }

    fn feed(&mut self, egress: &[Segment], ingress: &[Segment], closed: bool) -> Output {
        to_output(self.parser.feed(egress, ingress, closed))
    }

    fn set_role(&mut self, role: Role) {
        self.parser.set_role(role);
    }
}

/// The neutral form of what the HTTP/1 parser produced: its requests, then its responses.
pub fn to_output(parsed: Parsed) -> Output {
    let mut events = Vec::with_capacity(parsed.requests.len() + parsed.responses.len());
    events.extend(
        parsed
            .requests
            .into_iter()
            .filter_map(to_request)
            .map(|request| MessageEvent::Request {
                stream: None,
                request,
            }),
    );
    events.extend(
        parsed
            .responses
            .into_iter()
            .filter_map(to_response)
            .map(|response| MessageEvent::Response {
                stream: None,
                response,
            }),
    );
    Output {
        role: parsed.role,
        events,
        errors: parsed.errors,
    }
}

/// A request message as a neutral request. Its header fields are taken as they are: the
/// connection parser keeps only
/// [`KEPT_HEADERS`](crate::protocol::http::KEPT_HEADERS) of a request (see
/// [`Parsed::requests`]), so they are not filtered again here.
pub fn to_request(m: Message) -> Option<Request> {
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
    Some(Request {
        headers: m.headers,
        body_size: m.body_size,
        start_ts: m.start_ts,
        end_ts: m.end_ts,
        truncated: m.truncated,
        tid: m.tid,
        detail: RequestDetail::Http(HttpRequest {
            method,
            target,
            path,
            query,
            version,
            h2: None,
        }),
    })
}

/// A response message as a neutral response.
pub fn to_response(m: Message) -> Option<Response> {
    let Head::Response { status, version } = m.head else {
        return None;
    };
    Some(Response {
        body_size: m.body_size,
        start_ts: m.start_ts,
        end_ts: m.end_ts,
        truncated: m.truncated,
        detail: ResponseDetail::Http(HttpResponse {
            status,
            version,
            h2: None,
        }),
    })
}
