//! PostgreSQL (frontend/backend protocol version 3) over reassembled streams.
//!
//! [`Postgres`] is PostgreSQL as a [`Protocol`]: its detector claims a connection whose
//! client's first message is a `StartupMessage` (protocol 3.x), an `SSLRequest`, a
//! `GSSENCRequest` or a `CancelRequest`, or, on the port hint 5432, whose request direction
//! starts with a typed frontend message (a capture joined after the startup). Each
//! direction is read by a bounded [`wire::Reader`]: bodies are skipped by their declared
//! length (`DataRow`s, `COPY` data, passwords), only prefixes are kept (SQL text, statement
//! and portal names, command tags, error fields).
//!
//! One request per simple `Query` and per extended-protocol `Execute`, whose SQL comes from
//! the `Parse` of the statement its portal was bound to (named statements are remembered
//! until closed; the unnamed one until replaced). Responses are matched by the server's
//! answers in order: a `Query` ends at `ReadyForQuery`, an `Execute` at its
//! `CommandComplete` / `EmptyQueryResponse` / `PortalSuspended` / `ErrorResponse`; after an
//! error the server skips the rest of the batch up to `Sync`, so those `Execute`s get an
//! aborted response at the `ReadyForQuery`. Requests and responses carry a per-connection
//! stream id, so a lost response (bytes missing) leaves its request unanswered instead of
//! shifting the pairing of later ones.
//!
//! An `SSLRequest` answered `N` continues in cleartext; answered `S` (or a
//! `GSSENCRequest` answered `G`) the connection is encrypted and passed over
//! (`postgres_tls` / `postgres_gss`) — until a client segment starts with a
//! `StartupMessage` again: the TLS library's plaintext, when the recorder's uprobes captured
//! it on the same connection, which is then read from there. Malformed input is counted by reason (`postgres_*`),
//! never a panic.

#[cfg(test)]
mod tests;
pub mod wire;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use podtrace_format::Role;

use crate::protocol::sql::{self, Dialect};
use crate::protocol::{
    first_bytes, Detection, MessageEvent, Output, Protocol, QueryText, Request, RequestDetail,
    Response, ResponseDetail, Start,
};
use crate::reassemble::Segment;
use wire::{Head, Message, Reader};

/// The port PostgreSQL listens on by default (a detection hint).
pub const PORT: u16 = 5432;

/// Bounds of one PostgreSQL connection's parser state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of SQL text kept per statement (longer statements are cut).
    pub max_query: usize,
    /// Named prepared statements (and named portals) remembered per connection.
    pub max_statements: usize,
    /// Requests waiting for their answer per connection.
    pub max_pending: usize,
    /// Bytes of the client's segments held while an `SSLRequest` waits for its answer.
    pub max_held: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_query: 8 * 1024,
            max_statements: 256,
            max_pending: 4096,
            max_held: 64 * 1024,
        }
    }
}

/// Body bytes kept per message type. Names are at most 63 bytes (`NAMEDATALEN`).
fn keep(head: Head) -> usize {
    match head {
        Head::Startup => 2048,
        // Query: the SQL; Parse: name and SQL. `max_query` cuts them later (the longest
        // setting a caller may choose is this).
        Head::Typed(b'Q' | b'P') => 64 * 1024,
        // Bind: portal and statement names; Execute, Close: a name.
        Head::Typed(b'B' | b'E' | b'C') => 160,
        _ => 0,
    }
}

/// Body bytes kept per backend message type.
fn keep_backend(head: Head) -> usize {
    match head {
        // CommandComplete tag, ReadyForQuery status.
        Head::Typed(b'C' | b'Z') => 128,
        // ErrorResponse fields.
        Head::Typed(b'E') => 1024,
        _ => 0,
    }
}

/// The PostgreSQL part of a request: one simple query or one execution of a prepared
/// statement.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PostgresQuery {
    /// The statement's first keyword, upper case (`SELECT`, `INSERT`, `BEGIN`).
    pub operation: Option<String>,
    /// The first table it names (`users`, `public.items`).
    pub collection: Option<String>,
    /// The query text: by default with its literals as `?` (see [`QueryText`]); `None`
    /// when off or when the statement's SQL was not seen (its `Parse` was not recorded).
    pub query: Option<String>,
    /// The database of the connection (startup `database`, else `user`).
    pub database: Option<String>,
    /// Sent by the extended protocol (`Parse`/`Bind`/`Execute`) rather than a simple
    /// `Query`.
    pub extended: bool,
}

/// The PostgreSQL part of a response.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PostgresResult {
    /// The last command tag (`SELECT 3`, `INSERT 0 1`, `BEGIN`).
    pub command_tag: Option<String>,
    /// Rows returned (`DataRow` messages, skipped by length).
    pub rows: u64,
    /// The error, when the server answered one.
    pub error: Option<PostgresError>,
    /// Not executed: an earlier statement of its batch failed (the server skipped it).
    pub aborted: bool,
}

/// The fields of an `ErrorResponse` kept.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PostgresError {
    /// SQLSTATE code (`42P01`).
    pub code: String,
    /// Severity (`ERROR`, `FATAL`).
    pub severity: String,
    /// The primary message.
    pub message: String,
}

/// What a pending request waits for.
#[derive(Debug)]
enum Pending {
    /// A simple `Query`: complete at `ReadyForQuery`.
    Query(u32),
    /// An `Execute`: complete at its `CommandComplete` (or error).
    Execute(u32),
    /// A `Sync`: its `ReadyForQuery` closes the batch.
    Sync,
}

/// The answer being gathered for the oldest pending request.
#[derive(Debug, Default)]
struct Gathering {
    start_ts: Option<u64>,
    size: u64,
    truncated: bool,
    result: PostgresResult,
}

/// PostgreSQL on one connection.
#[derive(Debug)]
pub struct Postgres {
    /// The connection's socket sends the frontend messages.
    requests_egress: bool,
    front: Reader,
    back: Reader,
    limits: Limits,
    query_text: QueryText,
    database: Option<String>,
    /// Encrypted (`SSLRequest` answered `S`, `GSSENCRequest` answered `G`): passed over.
    encrypted: bool,
    /// An `SSLRequest` / `GSSENCRequest` waits for its answer: client segments are held.
    held: Option<Vec<Segment>>,
    held_bytes: usize,
    /// Prepared statements: name → the request detail of its SQL, worked out once at its
    /// `Parse` ("" is the unnamed statement).
    statements: HashMap<String, Arc<PostgresQuery>>,
    /// Portals: name → SQL of the bound statement.
    portals: HashMap<String, Option<Arc<PostgresQuery>>>,
    /// Time and thread of the first message of the extended batch element being built
    /// (`Parse`/`Bind`/`Describe` before the `Execute`).
    element_start: Option<(u64, u32)>,
    element_size: u64,
    pending: VecDeque<Pending>,
    gathering: Gathering,
    /// An `Execute` of the current batch failed: the rest are skipped up to `Sync`.
    aborting: bool,
    next_stream: u32,
}

impl Postgres {
    /// A parser for a connection whose socket sends the frontend messages when
    /// `requests_egress`; `in_startup` when the capture starts with the startup phase.
    pub fn new(requests_egress: bool, in_startup: bool, limits: Limits) -> Self {
        let front = Reader::new(true, keep);
        Postgres {
            requests_egress,
            front: if in_startup { front } else { front.typed() },
            back: Reader::new(false, keep_backend),
            limits,
            query_text: QueryText::Sanitized,
            database: None,
            encrypted: false,
            held: None,
            held_bytes: 0,
            statements: HashMap::new(),
            portals: HashMap::new(),
            element_start: None,
            element_size: 0,
            pending: VecDeque::new(),
            gathering: Gathering::default(),
            aborting: false,
            next_stream: 0,
        }
    }

    /// Keeps `mode` of each statement's text (default: sanitized).
    pub fn with_query_text(mut self, mode: QueryText) -> Self {
        self.query_text = mode;
        self
    }

    /// Feeds client segments (held while an `SSLRequest` waits for its answer).
    fn feed_front(&mut self, segs: &[Segment], out: &mut Output) {
        for s in segs {
            if self.encrypted {
                // The TLS library's plaintext (recorded by uprobes) may follow the socket's
                // cleartext SSLRequest on the same connection: it starts with a
                // StartupMessage, which ciphertext (TLS records) never does.
                match s {
                    Segment::Data { bytes, .. } if is_protocol3_startup(bytes) => {
                        self.encrypted = false;
                        self.front = Reader::new(true, keep);
                        self.back = Reader::new(false, keep_backend);
                    }
                    _ => continue,
                }
            }
            if let Some(held) = &mut self.held {
                let n = match s {
                    Segment::Data { bytes, .. } => bytes.len(),
                    _ => 0,
                };
                if self.held_bytes + n > self.limits.max_held {
                    out.errors.push("postgres_held_overflow");
                    continue;
                }
                self.held_bytes += n;
                held.push(s.clone());
                continue;
            }
            self.front.feed(s);
            self.front_messages(out);
        }
    }

    fn front_messages(&mut self, out: &mut Output) {
        out.errors.extend(self.front.take_errors());
        for m in self.front.take_messages() {
            self.frontend(m, out);
        }
    }

    /// One frontend message.
    fn frontend(&mut self, m: Message, out: &mut Output) {
        let Head::Typed(t) = m.head else {
            if m.head == Head::Startup {
                self.startup(&m);
            }
            return;
        };
        if matches!(t, b'P' | b'B' | b'D') {
            if self.element_start.is_none() {
                self.element_start = Some((m.start_ts, m.tid));
                self.element_size = 0;
            }
            self.element_size = self.element_size.saturating_add(m.size());
        }
        match t {
            b'Q' => {
                let sql = cstr(&m.body).0;
                let q = self.query(&sql, false);
                self.request(
                    Pending::Query,
                    m.start_ts,
                    m.end_ts,
                    m.tid,
                    m.size(),
                    m.truncated,
                    q,
                    out,
                );
            }
            b'P' => {
                let (name, rest) = cstr(&m.body);
                let sql = cstr(rest).0;
                if self.statements.len() >= self.limits.max_statements
                    && !self.statements.contains_key(&name)
                {
                    out.errors.push("postgres_too_many_statements");
                } else {
                    let q = Arc::new(self.query(&sql, true));
                    self.statements.insert(name, q);
                }
            }
            b'B' => {
                let (portal, rest) = cstr(&m.body);
                let (stmt, _) = cstr(rest);
                let q = self.statements.get(&stmt).cloned();
                if q.is_none() {
                    out.errors.push("postgres_unknown_statement");
                }
                if self.portals.len() >= self.limits.max_statements
                    && !self.portals.contains_key(&portal)
                {
                    out.errors.push("postgres_too_many_statements");
                } else {
                    self.portals.insert(portal, q);
                }
            }
            b'E' => {
                let (portal, _) = cstr(&m.body);
                let q = match self.portals.get(&portal) {
                    Some(Some(q)) => PostgresQuery::clone(q),
                    _ => self.query("", true),
                };
                let (start, tid) = self.element_start.take().unwrap_or((m.start_ts, m.tid));
                let size = std::mem::take(&mut self.element_size).saturating_add(m.size());
                self.request(
                    Pending::Execute,
                    start,
                    m.end_ts,
                    tid,
                    size,
                    m.truncated,
                    q,
                    out,
                );
            }
            // A Sync, or a FunctionCall: either is answered up to a ReadyForQuery that
            // answers no query.
            b'S' | b'F' => {
                self.element_start = None;
                self.element_size = 0;
                self.push_pending(Pending::Sync, out);
            }
            b'C' => {
                // Close a statement (`S`) or a portal (`P`).
                if let Some((&kind, rest)) = m.body.split_first() {
                    let name = cstr(rest).0;
                    if kind == b'S' {
                        self.statements.remove(&name);
                    } else {
                        self.portals.remove(&name);
                    }
                }
            }
            _ => {}
        }
    }

    /// A startup-phase message: the database (else the user) of the connection; an
    /// `SSLRequest` / `GSSENCRequest` holds the client's bytes until the answer.
    fn startup(&mut self, m: &Message) {
        match m.code() {
            Some(wire::SSL_REQUEST | wire::GSSENC_REQUEST) => {
                self.held = Some(Vec::new());
                self.held_bytes = 0;
                self.back.expect_answer();
            }
            Some(c) if c >> 16 == 3 => {
                let mut params = m.body.get(4..).unwrap_or_default();
                let (mut user, mut database) = (None, None);
                while !params.is_empty() && params[0] != 0 {
                    let (k, rest) = cstr(params);
                    let (v, rest) = cstr(rest);
                    match k.as_str() {
                        "user" => user = Some(v),
                        "database" => database = Some(v),
                        _ => {}
                    }
                    params = rest;
                }
                self.database = database.filter(|d| !d.is_empty()).or(user);
            }
            _ => {}
        }
    }

    /// The request detail of a statement's SQL (cut to the kept length).
    fn query(&self, sql: &str, extended: bool) -> PostgresQuery {
        let sql = cut_str(sql, self.limits.max_query);
        let known = !sql.is_empty();
        let text = match self.query_text {
            _ if !known => None,
            QueryText::Off => None,
            QueryText::Sanitized => Some(sql::sanitize(sql, Dialect::Postgres)),
            QueryText::Raw => Some(sql.to_string()),
        };
        PostgresQuery {
            operation: sql::operation(sql),
            collection: sql::collection(sql, Dialect::Postgres),
            query: text,
            database: self.database.clone(),
            extended,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn request(
        &mut self,
        pending: fn(u32) -> Pending,
        start_ts: u64,
        end_ts: u64,
        tid: u32,
        size: u64,
        truncated: bool,
        q: PostgresQuery,
        out: &mut Output,
    ) {
        if self.pending.len() >= self.limits.max_pending {
            out.errors.push("postgres_too_many_pending");
            return;
        }
        let stream = self.next_stream;
        self.next_stream = self.next_stream.wrapping_add(1);
        self.pending.push_back(pending(stream));
        out.events.push(MessageEvent::Request {
            stream: Some(stream),
            request: Request {
                headers: crate::protocol::Headers::new(),
                body_size: size,
                start_ts,
                end_ts,
                truncated,
                tid,
                detail: RequestDetail::Postgres(q),
            },
        });
    }

    fn push_pending(&mut self, p: Pending, out: &mut Output) {
        if self.pending.len() >= self.limits.max_pending {
            out.errors.push("postgres_too_many_pending");
            return;
        }
        self.pending.push_back(p);
    }

    /// Feeds server segments; an answer `N` to an `SSLRequest` releases the held client
    /// segments.
    fn feed_back(&mut self, segs: &[Segment], out: &mut Output) {
        for s in segs {
            if self.encrypted {
                continue;
            }
            self.back.feed(s);
            out.errors.extend(self.back.take_errors());
            for m in self.back.take_messages() {
                self.backend(m, out);
                if self.encrypted {
                    return;
                }
            }
        }
    }

    /// One backend message.
    fn backend(&mut self, m: Message, out: &mut Output) {
        let t = match m.head {
            Head::Answer(a) => {
                match a {
                    b'N' => {
                        let held = self.held.take().unwrap_or_default();
                        self.feed_front(&held, out);
                    }
                    b'S' | b'G' => {
                        out.errors.push(if a == b'S' {
                            "postgres_tls"
                        } else {
                            "postgres_gss"
                        });
                        self.encrypted = true;
                        self.held = None;
                        self.fail_pending(out);
                    }
                    _ => out.errors.push("postgres_bad_answer"),
                }
                return;
            }
            Head::Lost => {
                // Answers may be missing: what waits can no longer be matched.
                self.fail_pending(out);
                return;
            }
            Head::Startup => return,
            Head::Typed(t) => t,
        };
        if self.pending.is_empty() {
            // Authentication, parameters, the first ReadyForQuery, notices.
            return;
        }
        let g = &mut self.gathering;
        g.start_ts.get_or_insert(m.start_ts);
        g.size = g.size.saturating_add(m.size());
        g.truncated |= m.truncated;
        match t {
            b'D' => g.result.rows = g.result.rows.saturating_add(1),
            b'C' => g.result.command_tag = Some(cstr(&m.body).0),
            b'E' if g.result.error.is_none() => g.result.error = Some(error_fields(&m.body)),
            _ => {}
        }
        match (t, self.pending.front()) {
            (b'C' | b'I' | b's' | b'E', Some(Pending::Execute(s))) => {
                let s = *s;
                if t == b'E' {
                    self.aborting = true;
                }
                self.pending.pop_front();
                self.respond(s, m.end_ts, out);
            }
            (b'Z', Some(Pending::Query(s))) => {
                let s = *s;
                self.pending.pop_front();
                self.respond(s, m.end_ts, out);
            }
            (b'Z', _) => {
                // The end of a batch: executes still waiting were skipped by the server
                // (after an error) or not answered.
                while let Some(p) = self.pending.pop_front() {
                    match p {
                        Pending::Execute(s) => {
                            if !self.aborting {
                                out.errors.push("postgres_execute_unanswered");
                            }
                            self.gathering.result.aborted = true;
                            self.respond(s, m.end_ts, out);
                        }
                        Pending::Sync => break,
                        Pending::Query(s) => {
                            // A ReadyForQuery cannot end a batch before its query.
                            out.errors.push("postgres_out_of_order");
                            out.events.push(MessageEvent::Unanswered(s));
                        }
                    }
                }
                self.aborting = false;
                self.gathering = Gathering::default();
            }
            _ => {}
        }
    }

    /// Emits the response of stream `s` from what was gathered.
    fn respond(&mut self, s: u32, end_ts: u64, out: &mut Output) {
        let g = std::mem::take(&mut self.gathering);
        out.events.push(MessageEvent::Response {
            stream: Some(s),
            response: Response {
                body_size: g.size,
                start_ts: g.start_ts.unwrap_or(end_ts),
                end_ts,
                truncated: g.truncated,
                detail: ResponseDetail::Postgres(g.result),
            },
        });
    }

    /// Every waiting request is reported unanswered.
    fn fail_pending(&mut self, out: &mut Output) {
        for p in self.pending.drain(..) {
            if let Pending::Query(s) | Pending::Execute(s) = p {
                out.events.push(MessageEvent::Unanswered(s));
            }
        }
        self.gathering = Gathering::default();
        self.aborting = false;
    }
}

/// Whether `b` starts with a protocol 3.0 `StartupMessage` (a sane length, the exact code).
fn is_protocol3_startup(b: &[u8]) -> bool {
    wire::startup_start(b) == Some(true) && wire::be32(&b[4..]) == Some(wire::PROTOCOL_3)
}

/// A NUL-terminated string at the start of `b` (lossily decoded) and the bytes after its
/// NUL; a string cut before its NUL takes all of `b`.
fn cstr(b: &[u8]) -> (String, &[u8]) {
    match b.iter().position(|c| *c == 0) {
        Some(i) => (String::from_utf8_lossy(&b[..i]).into_owned(), &b[i + 1..]),
        None => (String::from_utf8_lossy(b).into_owned(), &[]),
    }
}

/// `s` cut to at most `max` bytes at a character boundary.
fn cut_str(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut i = max;
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    &s[..i]
}

/// The fields of an `ErrorResponse` body: code, severity, message.
fn error_fields(mut b: &[u8]) -> PostgresError {
    let mut e = PostgresError::default();
    while let Some((&field, rest)) = b.split_first() {
        if field == 0 {
            break;
        }
        let (v, rest) = cstr(rest);
        match field {
            b'C' => e.code = v,
            b'V' => e.severity = v,
            b'S' if e.severity.is_empty() => e.severity = v,
            b'M' => e.message = v,
            _ => {}
        }
        b = rest;
    }
    e
}

impl Protocol for Postgres {
    fn detect(start: &Start<'_>) -> Detection<Self> {
        let e = first_bytes(start.egress, 8);
        let i = first_bytes(start.ingress, 8);
        let (ve, vi) = (wire::startup_start(&e), wire::startup_start(&i));
        let limits = start.limits.postgres;
        let found = |requests_egress, in_startup| {
            Detection::Found(
                Postgres::new(requests_egress, in_startup, limits)
                    .with_query_text(start.limits.db_query_text),
            )
        };
        if ve == Some(true) && start.role != Role::Server {
            return found(true, true);
        }
        if vi == Some(true) && start.role != Role::Client {
            return found(false, true);
        }
        if start.has_port(PORT) {
            let local = start.local.is_some_and(|a| a.port() == PORT);
            let remote = start.remote.is_some_and(|a| a.port() == PORT);
            let requests_egress = match start.role {
                Role::Client => true,
                Role::Server => false,
                Role::Unknown => remote && !local,
            };
            let req = if requests_egress { &e } else { &i };
            match wire::typed_frontend_start(req) {
                Some(true) => return found(requests_egress, false),
                None if !start.closed && !req.is_empty() => return Detection::NeedMore,
                _ => {}
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
        let mut out = Output {
            role: Some(if self.requests_egress {
                Role::Client
            } else {
                Role::Server
            }),
            ..Output::default()
        };
        // Both directions in time order (requests first on a tie): an answer is read after
        // what it answers, and the server's startup messages before the first query.
        let (mut a, mut b) = (0, 0);
        while a < req_segs.len() || b < rep_segs.len() {
            let front = b == rep_segs.len()
                || (a < req_segs.len() && req_segs[a].ts_ns() <= rep_segs[b].ts_ns());
            if front {
                self.feed_front(&req_segs[a..=a], &mut out);
                a += 1;
            } else {
                self.feed_back(&rep_segs[b..=b], &mut out);
                b += 1;
            }
        }
        if closed {
            self.front.finish();
            self.back.finish();
            out.errors.extend(self.front.take_errors());
            out.errors.extend(self.back.take_errors());
            self.fail_pending(&mut out);
        }
        out
    }

    fn set_role(&mut self, role: Role) {
        match role {
            Role::Client => self.requests_egress = true,
            Role::Server => self.requests_egress = false,
            Role::Unknown => {}
        }
    }
}
