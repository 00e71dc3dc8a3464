//! Redis (RESP2 and RESP3) over reassembled streams.
//!
//! [`Redis`] is Redis as a [`Protocol`]: its detector claims a connection whose client
//! sends a RESP array of bulk strings (`*N\r\n$M\r\n`, what every client library sends),
//! or, on the port hint 6379, a request direction starting with `*` or an inline command.
//! Each direction is read by a bounded [`resp::Reader`] (payloads skipped by length, only
//! short prefixes kept); every command becomes a request whose detail is a
//! [`RedisCommand`] (operation, sanitized query text, the database selected on the
//! connection), every reply a response whose detail is a [`RedisReply`] (its error, and
//! errors nested in an `EXEC` reply). Replies answer commands in order (pipelining and
//! `MULTI`/`QUEUED`/`EXEC` need nothing more); RESP3 pushes and attributes are not
//! replies and are passed over; a connection that subscribes (pub/sub) stops giving
//! exchanges from there (`redis_pubsub`). Malformed input is counted by reason (`redis_*`),
//! never a panic.

pub mod command;
pub mod resp;
#[cfg(test)]
mod tests;

use podtrace_format::Role;

use crate::protocol::{
    first_bytes, Detection, MessageEvent, Output, Protocol, QueryText, Request, RequestDetail,
    Response, ResponseDetail, Start,
};
use crate::reassemble::Segment;
use resp::{Frame, Reader};

/// The port Redis listens on by default (a detection hint).
pub const PORT: u16 = 6379;

/// Bounds of one Redis connection's parser state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest header line (type byte, length or simple string) accepted.
    pub max_line: usize,
    /// Bytes kept of each top-level element (command name, keys, error text).
    pub max_keep: usize,
    /// Top-level elements kept per message (command arguments).
    pub max_args: usize,
    /// Deepest aggregate nesting followed.
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line: 64 * 1024,
            max_keep: 256,
            max_args: 64,
            max_depth: 32,
        }
    }
}

/// The Redis part of a request: one command.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RedisCommand {
    /// The command name, upper case (`GET`, `HSET`, `EXEC`).
    pub operation: String,
    /// The query text: by default the command with its keys as sent and every other
    /// argument as `?` (see [`QueryText`]); `None` when off.
    pub query: Option<String>,
    /// The database index selected on the connection when the command was sent.
    pub database: u32,
}

/// The Redis part of a response: one reply.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RedisReply {
    /// The error reply's text (`WRONGTYPE Operation against a key ...`).
    pub error: Option<String>,
    /// Errors nested in the reply (an `EXEC` whose queued commands failed).
    pub nested_errors: u32,
    /// The first nested error's text.
    pub first_nested_error: Option<String>,
}

impl RedisReply {
    /// The error prefix (`ERR`, `WRONGTYPE`) of the reply or its first nested error.
    pub fn error_code(&self) -> Option<&str> {
        self.error
            .as_deref()
            .or(self.first_nested_error.as_deref())
            .and_then(|e| e.split_whitespace().next())
    }
}

/// Redis on one connection.
#[derive(Debug)]
pub struct Redis {
    /// The connection's socket sends the commands.
    requests_egress: bool,
    requests: Reader,
    replies: Reader,
    /// The database selected (`SELECT`), 0 until then.
    database: u32,
    /// Commands emitted / replies emitted.
    commands: u64,
    answered: u64,
    /// Commands emitted before the connection subscribed (replies past them are pushes).
    pubsub_after: Option<u64>,
    /// What is kept of each command's text.
    query_text: QueryText,
}

impl Redis {
    /// A parser for a connection whose socket sends the commands when `requests_egress`.
    pub fn new(requests_egress: bool, limits: Limits) -> Self {
        Redis {
            requests_egress,
            requests: Reader::new(limits, true),
            replies: Reader::new(limits, false),
            database: 0,
            commands: 0,
            answered: 0,
            pubsub_after: None,
            query_text: QueryText::Sanitized,
        }
    }

    /// Keeps `mode` of each command's text (default: sanitized).
    pub fn with_query_text(mut self, mode: QueryText) -> Self {
        self.query_text = mode;
        self
    }

    fn command(&mut self, f: Frame, errors: &mut Vec<&'static str>) -> Option<Request> {
        if self.pubsub_after.is_some() {
            return None;
        }
        let Some(name) = f.items.first() else {
            errors.push("redis_empty_command");
            return None;
        };
        let operation = String::from_utf8_lossy(name).to_ascii_uppercase();
        let argc = f.item_count.saturating_sub(1) as usize;
        let query = match self.query_text {
            QueryText::Off => None,
            QueryText::Sanitized => Some(command::sanitized(&operation, &f.items[1..], argc)),
            QueryText::Raw => Some(command::raw(&operation, &f.items[1..], argc)),
        };
        let database = self.database;
        match operation.as_str() {
            "SELECT" => {
                if let Some(db) = f
                    .items
                    .get(1)
                    .and_then(|a| std::str::from_utf8(a).ok())
                    .and_then(|s| s.parse().ok())
                {
                    self.database = db;
                }
            }
            "SUBSCRIBE" | "PSUBSCRIBE" | "SSUBSCRIBE" => {
                errors.push("redis_pubsub");
                self.pubsub_after = Some(self.commands);
                return None;
            }
            _ => {}
        }
        self.commands += 1;
        Some(Request {
            headers: crate::protocol::Headers::new(),
            body_size: f.size,
            start_ts: f.start_ts,
            end_ts: f.end_ts,
            truncated: f.truncated,
            tid: f.tid,
            detail: RequestDetail::Redis(RedisCommand {
                operation,
                query,
                database,
            }),
        })
    }

    fn reply(&mut self, f: Frame) -> Option<Response> {
        // Out-of-band data, not the answer to a command.
        if f.kind == b'>' {
            return None;
        }
        if self.pubsub_after.is_some_and(|n| self.answered >= n) {
            return None;
        }
        self.answered += 1;
        Some(Response {
            body_size: f.size,
            start_ts: f.start_ts,
            end_ts: f.end_ts,
            truncated: f.truncated,
            detail: ResponseDetail::Redis(RedisReply {
                error: f.error,
                nested_errors: f.nested_errors,
                first_nested_error: f.first_nested_error,
            }),
        })
    }
}

/// Whether bytes start like a command array: `*N\r\n$M\r\n` (`Some(true)`), could still
/// (`None`: a consistent prefix), or cannot (`Some(false)`).
fn command_array_start(b: &[u8]) -> Option<bool> {
    if b.is_empty() {
        return Some(false);
    }
    let mut i = 0;
    for (marker, min_digits) in [(b'*', 1), (b'$', 1)] {
        match b.get(i) {
            None => return None,
            Some(c) if *c == marker => i += 1,
            Some(_) => return Some(false),
        }
        let digits = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits > 10 {
            return Some(false);
        }
        i += digits;
        match b.get(i..i + 2) {
            _ if i == b.len() => return None,
            Some(b"\r\n") if digits >= min_digits => i += 2,
            None if b[i..] == *b"\r" => return None,
            _ => return Some(false),
        }
    }
    Some(true)
}

/// A request direction on the Redis port: an array or an inline command.
fn plausible_on_port(b: &[u8]) -> bool {
    b.first()
        .is_some_and(|c| *c == b'*' || c.is_ascii_alphabetic())
}

impl Protocol for Redis {
    fn detect(start: &Start<'_>) -> Detection<Self> {
        let e = first_bytes(start.egress, 64);
        let i = first_bytes(start.ingress, 64);
        let limits = start.limits.redis;
        let (ve, vi) = (command_array_start(&e), command_array_start(&i));
        let found = |requests_egress| {
            Detection::Found(
                Redis::new(requests_egress, limits).with_query_text(start.limits.db_query_text),
            )
        };
        if ve == Some(true) && start.role != Role::Server {
            return found(true);
        }
        if vi == Some(true) && start.role != Role::Client {
            return found(false);
        }
        let local = start.local.is_some_and(|a| a.port() == PORT);
        let remote = start.remote.is_some_and(|a| a.port() == PORT);
        if start.has_port(PORT) {
            let requests_egress = match start.role {
                Role::Client => true,
                Role::Server => false,
                Role::Unknown => remote && !local,
            };
            let req = if requests_egress { &e } else { &i };
            if plausible_on_port(req) {
                return found(requests_egress);
            }
        }
        if (ve.is_none() || vi.is_none()) && !start.closed {
            Detection::NeedMore
        } else {
            Detection::NotMine
        }
    }

    fn feed(&mut self, egress: &[Segment], ingress: &[Segment], closed: bool) -> Output {
        let (req_segs, rep_segs) = if self.requests_egress {
            (egress, ingress)
        } else {
            (ingress, egress)
        };
        for s in req_segs {
            self.requests.feed(s);
        }
        for s in rep_segs {
            self.replies.feed(s);
        }
        if closed {
            self.requests.finish();
            self.replies.finish();
        }
        let mut errors = self.requests.take_errors();
        errors.extend(self.replies.take_errors());
        let mut events = Vec::new();
        for f in self.requests.take_frames() {
            if let Some(request) = self.command(f, &mut errors) {
                events.push(MessageEvent::Request {
                    stream: None,
                    request,
                });
            }
        }
        for f in self.replies.take_frames() {
            if let Some(response) = self.reply(f) {
                events.push(MessageEvent::Response {
                    stream: None,
                    response,
                });
            }
        }
        Output {
            role: Some(if self.requests_egress {
                Role::Client
            } else {
                Role::Server
            }),
            events,
            errors,
        }
    }

    fn set_role(&mut self, role: Role) {
        match role {
            Role::Client => self.requests_egress = true,
            Role::Server => self.requests_egress = false,
            Role::Unknown => {}
        }
    }
}
