//! HTTP/2, HPACK and gRPC over reassembled streams.
//!
//! [`ProtocolParser`] sits where a connection's segments are parsed: it looks at the first
//! bytes of each direction and hands the connection either to the HTTP/1 parser
//! ([`crate::http1::ConnectionParser`]) or to an [`H2Connection`]. HTTP/2 is recognised by
//! the client preface, or — for captures that joined a connection late — by a run of
//! plausible frame headers (prior knowledge). An HTTP/2 connection decodes frames
//! ([`frame`]) and header blocks ([`hpack`], one tolerant decoder per direction) into
//! per-stream [`StreamEvent`]s, which [`to_exchange_events`] turns into the exchange
//! events the span stage consumes (the exchange's sequence number is the stream id).
//! gRPC calls (`content-type: application/grpc*`) carry their service and method
//! ([`GrpcCall`]) and their `grpc-status` / `grpc-message` ([`H2Response`]).
//!
//! Memory per connection is bounded by [`Limits`]; everything malformed is counted by
//! reason (`h2_*` in the analysis stats' parse errors), never a panic.

pub mod connection;
pub mod frame;
pub mod hpack;
mod switch;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use podtrace_format::Role;
use podtrace_model::SpanKind;

use crate::exchange::{Exchange, ExchangeEvent, ExchangeId, Request, Response};
use crate::reassemble::ConnInfo;

pub use connection::{H2Connection, HeaderBlock};
pub use switch::ProtocolParser;

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

/// A gRPC call's name, from the `:path` `/package.Service/Method`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcCall {
    /// `package.Service`.
    pub service: String,
    /// `Method`.
    pub method: String,
}

impl GrpcCall {
    /// Splits a gRPC path; a path without the two parts gives the whole path as the
    /// service and an empty method.
    pub fn from_path(path: &str) -> Self {
        let p = path.strip_prefix('/').unwrap_or(path);
        match p.split_once('/') {
            Some((s, m)) => GrpcCall {
                service: s.to_string(),
                method: m.to_string(),
            },
            None => GrpcCall {
                service: p.to_string(),
                method: String::new(),
            },
        }
    }
}

/// HTTP/2 facts of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct H2Request {
    /// The stream id.
    pub stream_id: u32,
    /// Set for gRPC requests.
    pub grpc: Option<GrpcCall>,
    /// Some header fields could not be decoded (capture joined late, lost bytes).
    pub partial_headers: bool,
}

/// HTTP/2 facts of a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct H2Response {
    /// `grpc-status` from the trailers (or a trailers-only response).
    pub grpc_status: Option<i64>,
    /// `grpc-message`, percent-decoded.
    pub grpc_message: Option<String>,
    /// The stream ended with RST_STREAM and this error code.
    pub reset: Option<u32>,
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

/// Turns stream events into exchange events of `conn` (side from `role`).
pub fn to_exchange_events(
    conn: &Arc<ConnInfo>,
    role: Role,
    events: Vec<StreamEvent>,
) -> Vec<ExchangeEvent> {
    let side = match role {
        Role::Server => SpanKind::Server,
        _ => SpanKind::Client,
    };
    let id = |stream: u32| ExchangeId {
        conn: conn.key,
        seq: u64::from(stream),
    };
    events
        .into_iter()
        .map(|e| match e {
            StreamEvent::Request(s, request) => ExchangeEvent::Request(Exchange {
                id: id(s),
                conn: conn.clone(),
                side,
                request,
                response: None,
                // The stream id is a stable identity within the connection.
                ordinal: s,
            }),
            StreamEvent::Response(s, response) => ExchangeEvent::Response {
                id: id(s),
                response,
            },
            StreamEvent::Unanswered(s) => ExchangeEvent::Unanswered(id(s)),
            StreamEvent::UnmatchedResponse => ExchangeEvent::UnmatchedResponse(conn.key),
        })
        .collect()
}
