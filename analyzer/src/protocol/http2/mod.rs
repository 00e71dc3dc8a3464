//! HTTP/2, HPACK and gRPC over reassembled streams.
//!
//! [`Http2`] is HTTP/2 as a [`Protocol`]: its detector ([`detect`]) claims a connection by
//! the client preface, by an HTTP/1 request asking for `Upgrade: h2c`, or — for captures
//! that joined a connection late — by a run of plausible frame headers (prior knowledge).
//! An HTTP/2 connection ([`H2Connection`]) decodes frames ([`frame`]) and header blocks
//! ([`hpack`], one tolerant decoder per direction) into per-stream [`StreamEvent`]s, which
//! become protocol-neutral message events named by their stream id. gRPC calls
//! (`content-type: application/grpc*`) carry their service and method ([`GrpcCall`]) and
//! their `grpc-status` / `grpc-message` ([`H2Response`]).
//!
//! Memory per connection is bounded by [`Limits`]; everything malformed is counted by
//! reason (`h2_*` in the analysis stats' parse errors), never a panic.

pub mod connection;
pub mod detect;
pub mod frame;
pub mod hpack;
#[cfg(test)]
mod tests;

use podtrace_format::Role;

use crate::protocol::{Detection, MessageEvent, Output, Protocol, Request, Response, Start};
use crate::reassemble::Segment;

pub use super::http::{GrpcCall, H2Request, H2Response};
pub use connection::{H2Connection, HeaderBlock};

/// Bounds of one HTTP/2 connection's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Streams tracked at once; HEADERS of further streams are decoded (HPACK must stay in
    /// step) but not tracked (`h2_too_many_streams`).
    pub max_streams: usize,
    /// Largest header block (HEADERS + CONTINUATION fragments) decoded.
    pub max_header_block: usize,
    /// Largest decoded header list kept (name + value + 32 per field).
    pub max_header_list: usize,
    /// Largest non-DATA frame payload buffered (bigger ones are skipped).
    pub max_frame_keep: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_streams: 1024,
            max_header_block: 256 * 1024,
            max_header_list: 64 * 1024,
            max_frame_keep: 256 * 1024,
        }
    }
}

/// What an HTTP/2 connection produced for one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    /// A request (stream id, request).
    Request(u32, Request),
    /// The response of an announced request.
    Response(u32, Response),
    /// The connection ended with the stream's request unanswered.
    Unanswered(u32),
    /// A stream ended whose request was not seen (capture joined late).
    UnmatchedResponse,
}

/// HTTP/2 on one connection.
#[derive(Debug)]
pub struct Http2 {
    conn: H2Connection,
}

impl Http2 {
    /// Wraps a connection's HTTP/2 state.
    pub fn new(conn: H2Connection) -> Self {
        Http2 { conn }
    }
}

impl Protocol for Http2 {
    fn detect(start: &Start<'_>) -> Detection<Self> {
        match detect::detect(start.egress, start.ingress, start.closed) {
            Detection::Found(how) => {
                let limits = start.limits.http2;
                Detection::Found(Http2::new(match how {
                    detect::Start::Upgrade { client_egress } => {
                        H2Connection::new_upgrade(start.role, client_egress, limits)
                    }
                    detect::Start::Frames { preface_egress } => {
                        H2Connection::new(start.role, preface_egress, limits)
                    }
                }))
            }
            Detection::NotMine => Detection::NotMine,
            Detection::NeedMore => Detection::NeedMore,
        }
    }

    fn feed(&mut self, egress: &[Segment], ingress: &[Segment], closed: bool) -> Output {
        let (events, errors) = self.conn.feed(egress, ingress, closed);
        let role = self.conn.role();
        Output {
            role: (role != Role::Unknown).then_some(role),
            events: events.into_iter().map(to_message_event).collect(),
            errors,
        }
    }

    fn set_role(&mut self, role: Role) {
        self.conn.set_role(role);
    }
}

/// A stream event as a neutral message event (the stream id names the exchange).
fn to_message_event(e: StreamEvent) -> MessageEvent {
    match e {
        StreamEvent::Request(s, request) => MessageEvent::Request {
            stream: Some(s),
            request,
        },
        StreamEvent::Response(s, response) => MessageEvent::Response {
            stream: Some(s),
            response,
        },
        StreamEvent::Unanswered(s) => MessageEvent::Unanswered(s),
        StreamEvent::UnmatchedResponse => MessageEvent::UnmatchedResponse,
    }
}
