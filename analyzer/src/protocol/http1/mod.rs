//! HTTP/1.x parsing over reassembled streams.
//!
//! [`MessageParser`] is an incremental, httparse-based parser for one direction of one
//! connection (requests or responses): keep-alive and pipelining, `Content-Length`,
//! chunked bodies with trailers, `Expect: 100-continue` (1xx responses are skipped),
//! HEAD/204/304 without body, close-delimited response bodies, Upgrade/CONNECT (parsing
//! stops), snaplen-truncated bodies (missing bytes are skipped using the declared lengths),
//! and garbage (resynchronised on the next message start, or given up). Memory is bounded
//! by [`Limits`]; every problem is counted by reason.
//!
//! [`ConnectionParser`] drives both directions of a connection: it decides which side sends
//! requests (from the socket's role, else by looking at the first bytes) and tells the
//! response parser each request's method so HEAD and CONNECT responses are framed right.
//!
//! [`Http1`] is HTTP/1 as a [`crate::protocol::Protocol`]: the dispatcher's fallback, its
//! messages turned into protocol-neutral events.

mod connection;
mod parser;
mod protocol;
#[cfg(test)]
mod tests;

pub use connection::{ConnectionParser, Parsed};

use crate::protocol::Headers;
pub use parser::{KeepHeaders, MessageParser, RequestHint};
pub use protocol::{to_output, Http1};

/// Which kind of messages a stream carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Requests (client → server).
    Request,
    /// Responses (server → client).
    Response,
}

/// The first line of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Head {
    /// `METHOD target HTTP/1.x`
    Request {
        /// Method token, as sent.
        method: String,
        /// Request target, as sent.
        target: String,
        /// Minor version (0 or 1).
        version: u8,
    },
    /// `HTTP/1.x status reason` (the reason phrase is not kept: nothing reads it, and it
    /// was a string allocated per response).
    Response {
        /// Status code.
        status: u16,
        /// Minor version (0 or 1).
        version: u8,
    },
}

/// One parsed HTTP/1 message (head and body size; body bytes are not kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Request or status line.
    pub head: Head,
    /// Header fields in wire order (values lossily decoded as UTF-8).
    pub headers: Headers,
    /// Body length in bytes (decoded length for chunked bodies), including bytes the
    /// snaplen cut off.
    pub body_size: u64,
    /// Time of the segment holding the first byte.
    pub start_ts: u64,
    /// Time of the segment holding the last byte.
    pub end_ts: u64,
    /// Thread that sent or received the first byte (0: not known).
    pub tid: u32,
    /// Some of the message's bytes were not captured (snaplen) or lost (gap).
    pub truncated: bool,
}

impl Message {
    /// The first value of a header (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }
}

/// Bounds that keep a parser's memory small whatever the traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    /// Largest request/status line plus headers accepted.
    pub max_head_bytes: usize,
    /// Most header fields in one message.
    pub max_headers: usize,
    /// Garbage bytes skipped while resynchronising before the stream is given up.
    pub max_garbage_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head_bytes: 64 * 1024,
            max_headers: 128,
            max_garbage_bytes: 1024 * 1024,
        }
    }
}
