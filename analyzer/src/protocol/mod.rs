//! Application protocols: one interface, one dispatcher, one folder per protocol.
//!
//! A connection's reassembled segments (both directions) go to a [`ConnectionParser`]
//! ([`dispatch`]): it buffers the first bytes of each direction until one protocol claims
//! them ([`Protocol::detect`], given the first bytes and the ports as a hint), then feeds
//! every later segment to that protocol's parser ([`Protocol::feed`]). Every parser emits
//! the same protocol-neutral record, [`MessageEvent`]s of [`Request`]s and [`Response`]s
//! (times, thread, sizes, trace-context carriers) whose protocol-specific part is a
//! [`RequestDetail`] / [`ResponseDetail`]; the exchange stage pairs them
//! ([`crate::exchange`]) without knowing any protocol.
//!
//! Protocols: [`http2`] (and gRPC), [`redis`], [`mysql`], [`postgres`], with [`http1`] as the fallback for
//! connections no other protocol claims. [`http`] holds what both HTTP versions share (the HTTP request and
//! response facts, the header names kept). Adding a protocol means a folder beside these
//! with a type implementing [`Protocol`], its variants in [`RequestDetail`] /
//! [`ResponseDetail`], and one line in the dispatcher's list (`protocols!` in
//! [`dispatch`]).
//!
//! This stage does not pair requests with responses, does not read trace context and does
//! not build spans.

pub mod dispatch;
pub mod headers;
pub mod http;
pub mod http1;
pub mod http2;
pub mod mysql;
pub mod postgres;
pub mod redis;
pub mod sql;

use std::net::SocketAddr;

use podtrace_format::Role;

use crate::reassemble::Segment;

pub use dispatch::ConnectionParser;
pub use headers::Headers;

/// How much of a database query is kept (`db.query.text`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum QueryText {
    /// None.
    Off,
    /// The statement with its literals as `?` (Redis: the command and its keys).
    #[default]
    Sanitized,
    /// As sent (Redis: every argument, each cut at the kept prefix length). Values can be
    /// personal data or secrets (`AUTH`): only on request.
    Raw,
}

/// Bounds of every protocol's parser state (per connection), and what is kept of it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// HTTP/1 bounds.
    pub http1: http1::Limits,
    /// HTTP/2 bounds.
    pub http2: http2::Limits,
    /// Redis bounds.
    pub redis: redis::Limits,
    /// MySQL / MariaDB bounds.
    pub mysql: mysql::Limits,
    /// PostgreSQL bounds.
    pub postgres: postgres::Limits,
    /// What is kept of database queries.
    pub db_query_text: QueryText,
}

/// What a protocol's detector is shown: the first buffered segments of each direction
/// and the connection's facts.
#[derive(Debug, Clone, Copy)]
pub struct Start<'a> {
    /// Segments this socket sent so far.
    pub egress: &'a [Segment],
    /// Segments this socket received so far.
    pub ingress: &'a [Segment],
    /// The connection ended: no more bytes will come (a detector must decide).
    pub closed: bool,
    /// The socket's role, if known.
    pub role: Role,
    /// The socket's own address (its port is a hint: a server's listening port).
    pub local: Option<SocketAddr>,
    /// The peer's address.
    pub remote: Option<SocketAddr>,
    /// Parser bounds.
    pub limits: &'a Limits,
}

impl Start<'_> {
    /// The port of the server side when the role is known, else both ports (a hint such
    /// as 6379 for Redis).
    pub fn has_port(&self, port: u16) -> bool {
        let local = self.local.map(|a| a.port());
        let remote = self.remote.map(|a| a.port());
        match self.role {
            Role::Server => local == Some(port),
            Role::Client => remote == Some(port),
            Role::Unknown => local == Some(port) || remote == Some(port),
        }
    }
}

/// A detector's answer.
#[derive(Debug)]
pub enum Detection<P> {
    /// The connection speaks this protocol: its parser (not yet fed the buffered bytes).
    Found(P),
    /// Not this protocol.
    NotMine,
    /// Not enough bytes to tell yet.
    NeedMore,
}

/// One application protocol's connection parser.
pub trait Protocol: Sized {
    /// Looks at a connection's first bytes (and ports): is it this protocol?
    fn detect(start: &Start<'_>) -> Detection<Self>;
    /// Feeds new segments of both directions, in order; `closed` ends both streams.
    fn feed(&mut self, egress: &[Segment], ingress: &[Segment], closed: bool) -> Output;
    /// Learns the socket's role later (a `socket_open` row that arrived after data).
    fn set_role(&mut self, role: Role);
}

/// The request half of an exchange, as every protocol reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Request {
    /// Metadata fields kept for later stages (trace-context carriers such as HTTP's
    /// [`http::KEPT_HEADERS`]), in wire order, names as sent; empty for protocols that
    /// carry none.
    pub headers: Headers,
    /// Payload size in bytes (HTTP: the body).
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
    /// The protocol-specific part.
    pub detail: RequestDetail,
}

impl Request {
    /// The first value of a kept metadata field (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }
}

/// The response half of an exchange, as every protocol reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Response {
    /// Payload size in bytes (HTTP: the body).
    pub body_size: u64,
    /// Time of the first response byte.
    pub start_ts: u64,
    /// Time of the last response byte.
    pub end_ts: u64,
    /// Bytes of the response were not captured.
    pub truncated: bool,
    /// The protocol-specific part.
    pub detail: ResponseDetail,
}

/// The protocol-specific part of a request (one variant per protocol family).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RequestDetail {
    /// HTTP/1.x or HTTP/2 (gRPC included).
    Http(http::HttpRequest),
    /// A Redis command.
    Redis(redis::RedisCommand),
    /// A MySQL / MariaDB command.
    Mysql(mysql::MysqlCommand),
    /// A PostgreSQL query or execution of a prepared statement.
    Postgres(postgres::PostgresQuery),
}

/// The protocol-specific part of a response (one variant per protocol family).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ResponseDetail {
    /// HTTP/1.x or HTTP/2 (gRPC included).
    Http(http::HttpResponse),
    /// A Redis reply.
    Redis(redis::RedisReply),
    /// A MySQL / MariaDB reply.
    Mysql(mysql::MysqlReply),
    /// A PostgreSQL result (command tag, rows, error).
    Postgres(postgres::PostgresResult),
}

/// What a protocol parser hands to the exchange stage, in stream order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageEvent {
    /// A request. `stream` names it on multiplexed protocols (HTTP/2 stream id); `None`
    /// means responses answer requests in order (pairing is first-in, first-out).
    Request {
        /// Stream id (multiplexed protocols).
        stream: Option<u32>,
        /// The request.
        request: Request,
    },
    /// A response: to the stream's request, or (`None`) to the oldest waiting request.
    Response {
        /// Stream id (multiplexed protocols).
        stream: Option<u32>,
        /// The response.
        response: Response,
    },
    /// The connection ended with this stream's request unanswered (multiplexed
    /// protocols; in-order ones have their waiting requests reported by pairing).
    Unanswered(u32),
    /// A response whose request was not seen (capture joined late).
    UnmatchedResponse,
}

/// What one feed of a connection produced.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Output {
    /// The socket's role, once known from the traffic.
    pub role: Option<Role>,
    /// Requests, responses and stream ends, in stream order.
    pub events: Vec<MessageEvent>,
    /// Error reasons counted in this call.
    pub errors: Vec<&'static str>,
}

impl Output {
    /// Whether a request was produced.
    pub fn has_requests(&self) -> bool {
        self.events
            .iter()
            .any(|e| matches!(e, MessageEvent::Request { .. }))
    }
}

/// Concatenated data bytes of the first segments (up to `max`), stopping at a gap once
/// some bytes were seen: what detectors look at.
pub fn first_bytes(segs: &[Segment], max: usize) -> Vec<u8> {
    let mut b = Vec::new();
    for s in segs {
        match s {
            Segment::Data { bytes, .. } => {
                b.extend_from_slice(&bytes[..bytes.len().min(max - b.len())]);
                if b.len() >= max {
                    break;
                }
            }
            _ if b.is_empty() => continue,
            _ => break,
        }
    }
    b
}
