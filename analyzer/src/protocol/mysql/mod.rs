//! MySQL and MariaDB (the client/server protocol) over reassembled streams.
//!
//! [`Mysql`] is MySQL as a [`Protocol`]. The server speaks first: the detector claims a
//! connection whose server direction starts with a handshake v10 greeting (protocol byte
//! 10, a NUL-terminated version string), on any port; on the port hint 3306 it also
//! claims a connection joined late whose client direction starts with a command packet.
//!
//! Both directions are cut into packets by a bounded [`packet::Reader`] (payloads skipped
//! by length, only prefixes kept, 16 MiB continuation packets joined), then one state
//! machine reads them in time order:
//! - the handshake: the greeting (server version: MariaDB or MySQL; capabilities), the
//!   client's `HandshakeResponse41` (user, database, capabilities: `CLIENT_DEPRECATE_EOF`),
//!   authentication switches and extra rounds passed over until the server's OK or ERR. An
//!   `SSLRequest` (counted, `mysql_tls`) makes the rest of the socket's bytes TLS records:
//!   they are passed over until a client segment starts with the `HandshakeResponse41`
//!   that follows an `SSLRequest` (sequence id 2, `CLIENT_SSL`): the TLS library's
//!   plaintext, recorded by uprobes on the same connection, which is then read from there
//!   on (ciphertext never starts so). When the reassembler already dropped the cleartext
//!   greeting and `SSLRequest` (they came in the same batch as the plaintext), the
//!   connection is detected from that `HandshakeResponse41` (the server's version is then
//!   unknown: `mysql`, unless a MariaDB connector's extended capabilities say `mariadb`). A compressed connection is skipped (`mysql_compressed`);
//! - commands, one request each: `COM_QUERY`, `COM_INIT_DB`, `COM_PING`,
//!   `COM_STMT_PREPARE` (the statement id from its OK keeps the SQL for the connection),
//!   `COM_STMT_EXECUTE` (its SQL from the prepare), `COM_STMT_RESET`, `COM_STMT_FETCH`,
//!   `COM_RESET_CONNECTION`, `COM_CHANGE_USER`, `COM_STATISTICS`, `COM_FIELD_LIST`;
//!   `COM_QUIT`, `COM_STMT_CLOSE` and `COM_STMT_SEND_LONG_DATA` have no reply and make no
//!   request (a closed statement's SQL is forgotten);
//! - replies, one response per command: OK, ERR (error code, SQLSTATE, message), result
//!   sets (column count, column definitions and rows counted, not kept; EOF or OK
//!   terminators, with or without `CLIENT_DEPRECATE_EOF`; more results), the prepare OK
//!   with its parameter and column definitions, `LOCAL INFILE` requests.
//!
//! Replies answer commands in order; sequence ids are checked (`mysql_sequence`).
//! Malformed input is counted by reason (`mysql_*`), never a panic.

pub mod packet;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};

use podtrace_format::Role;

use crate::protocol::sql::{self, Dialect};
use crate::protocol::{
    first_bytes, Detection, MessageEvent, Output, Protocol, QueryText, Request, RequestDetail,
    Response, ResponseDetail, Start,
};
use crate::reassemble::Segment;
use packet::{Packet, Reader, MAX_PAYLOAD};

/// The port MySQL and MariaDB listen on by default (a detection hint).
pub const PORT: u16 = 3306;

/// Capability flags this parser reads.
mod cap {
    pub const CONNECT_WITH_DB: u32 = 0x0000_0008;
    pub const COMPRESS: u32 = 0x0000_0020;
    pub const PROTOCOL_41: u32 = 0x0000_0200;
    pub const SSL: u32 = 0x0000_0800;
    pub const SECURE_CONNECTION: u32 = 0x0000_8000;
    pub const PLUGIN_AUTH_LENENC_CLIENT_DATA: u32 = 0x0020_0000;
    pub const DEPRECATE_EOF: u32 = 0x0100_0000;
    pub const QUERY_ATTRIBUTES: u32 = 0x0800_0000;
}

/// Server status flags this parser reads (OK and EOF packets).
const SERVER_MORE_RESULTS_EXISTS: u16 = 0x0008;
const SERVER_STATUS_CURSOR_EXISTS: u16 = 0x0040;

/// Command bytes.
mod com {
    pub const QUIT: u8 = 0x01;
    pub const INIT_DB: u8 = 0x02;
    pub const QUERY: u8 = 0x03;
    pub const FIELD_LIST: u8 = 0x04;
    pub const STATISTICS: u8 = 0x09;
    pub const PING: u8 = 0x0e;
    pub const CHANGE_USER: u8 = 0x11;
    pub const STMT_PREPARE: u8 = 0x16;
    pub const STMT_EXECUTE: u8 = 0x17;
    pub const STMT_SEND_LONG_DATA: u8 = 0x18;
    pub const STMT_CLOSE: u8 = 0x19;
    pub const STMT_RESET: u8 = 0x1a;
    pub const SET_OPTION: u8 = 0x1b;
    pub const STMT_FETCH: u8 = 0x1c;
    pub const RESET_CONNECTION: u8 = 0x1f;
}

/// Bounds of one MySQL connection's parser state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes kept of each client packet (the SQL text of a query or prepare).
    pub max_query: usize,
    /// Bytes kept of each server packet (greeting, OK, ERR with its message).
    pub max_reply: usize,
    /// Prepared statements remembered per connection.
    pub max_statements: usize,
    /// Packets waiting for the other direction (commands sent ahead of replies).
    pub max_pending: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_query: 4096,
            max_reply: 512,
            max_statements: 1024,
            max_pending: 1024,
        }
    }
}

/// The MySQL part of a request: one command.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MysqlCommand {
    /// The operation: the SQL statement's first keyword (`SELECT`, `INSERT`) for a query
    /// or an executed prepared statement; `PREPARE` for a prepare; the command for the
    /// others (`PING`, `USE` for `COM_INIT_DB`, `STMT_RESET`...). See docs/span-model.md.
    pub operation: String,
    /// The first table the SQL names, where derivable.
    pub collection: Option<String>,
    /// The query text (see [`QueryText`]); `None` when off or when the command has none.
    pub query: Option<String>,
    /// The database selected on the connection when the command was sent.
    pub database: Option<String>,
    /// The server is MariaDB (from its greeting's version string).
    pub mariadb: bool,
}

/// The MySQL part of a response: one reply.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MysqlReply {
    /// The ERR packet's error code (`1064`).
    pub error_code: Option<u16>,
    /// The ERR packet's SQLSTATE (`42000`).
    pub sql_state: Option<String>,
    /// The ERR packet's message (a kept prefix).
    pub message: Option<String>,
    /// Rows of the result sets (`None`: the reply had none).
    pub rows: Option<u64>,
}

/// A statement prepared on the connection.
#[derive(Debug, Clone)]
struct Statement {
    operation: Option<String>,
    collection: Option<String>,
    query: Option<String>,
}

/// Where the connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the server's greeting.
    Greeting,
    /// Waiting for the client's handshake response.
    Login,
    /// Authentication rounds until the server's OK or ERR.
    Auth,
    /// Commands and replies.
    Command,
    /// After an `SSLRequest`: TLS records, passed over until the client's plaintext
    /// `HandshakeResponse41` (recorded at the TLS library).
    Tls,
    /// Nothing more is read (TLS, compression, a refused or ended connection).
    Done,
}

/// What the reply to the current command is expected to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// One OK or ERR.
    Ok,
    /// A result set (or OK/ERR, or a `LOCAL INFILE` request).
    First,
    /// `n` column definitions left.
    Columns(u64),
    /// The EOF after the column definitions.
    ColumnsEof,
    /// Rows until an EOF/OK terminator or ERR.
    Rows,
    /// After a `LOCAL INFILE` request: the client's file, then the server's OK or ERR.
    Infile,
    /// The prepare OK (statement id, columns, parameters) or ERR.
    PrepareOk,
    /// `params` parameter definitions left, then `columns` column definitions.
    Params { params: u64, columns: u64 },
    /// The EOF after the parameter definitions, then `columns` column definitions.
    ParamsEof { columns: u64 },
    /// `n` column definitions of a prepare left.
    PrepareColumns(u64),
    /// The EOF after a prepare's column definitions.
    PrepareColumnsEof,
    /// Authentication rounds (`COM_CHANGE_USER`) until OK or ERR.
    Auth,
    /// Any one packet (`COM_STATISTICS`: a string).
    Single,
}

/// The command being answered.
#[derive(Debug)]
struct Current {
    command: u8,
    expect: Expect,
    /// The sequence id the next reply packet should carry.
    next_seq: u8,
    reply: MysqlReply,
    /// Times and size of the reply so far (`start_ts` 0: nothing yet).
    start_ts: u64,
    end_ts: u64,
    size: u64,
    truncated: bool,
    /// The database the command selects once it succeeds (`COM_INIT_DB`, `USE db`).
    selects: Option<String>,
    /// The statement a prepare defines once it succeeds.
    prepares: Option<Statement>,
}

/// MySQL on one connection.
#[derive(Debug)]
pub struct Mysql {
    /// The connection's socket sends the commands.
    requests_egress: bool,
    requests: Reader,
    replies: Reader,
    /// Client packets not yet read by the state machine.
    cmds: VecDeque<Packet>,
    /// Server packets not yet read by the state machine.
    reps: VecDeque<Packet>,
    phase: Phase,
    /// The server's capability flags (from the greeting; all when it was not seen).
    server_caps: u32,
    /// Whether the server and client agreed on `CLIENT_DEPRECATE_EOF`.
    deprecate_eof: bool,
    /// Whether `deprecate_eof` is known (from the handshake, or learnt from the first
    /// result set of a connection joined late).
    eof_known: bool,
    /// Whether `COM_QUERY` carries query attributes.
    query_attributes: bool,
    mariadb: bool,
    database: Option<String>,
    statements: HashMap<u32, Statement>,
    current: Option<Current>,
    query_text: QueryText,
    limits: Limits,
    events: Vec<MessageEvent>,
    errors: Vec<&'static str>,
}

impl Mysql {
    /// A parser for a connection whose socket sends the commands when `requests_egress`;
    /// `greeting` when the connection's start (the server greeting) is in the capture.
    pub fn new(requests_egress: bool, greeting: bool, limits: Limits) -> Self {
        Mysql {
            requests_egress,
            requests: Reader::new(limits.max_query),
            replies: Reader::new(limits.max_reply),
            cmds: VecDeque::new(),
            reps: VecDeque::new(),
            phase: if greeting {
                Phase::Greeting
            } else {
                Phase::Command
            },
            server_caps: u32::MAX,
            deprecate_eof: false,
            eof_known: greeting,
            query_attributes: false,
            mariadb: false,
            database: None,
            statements: HashMap::new(),
            current: None,
            query_text: QueryText::Sanitized,
            limits,
            events: Vec::new(),
            errors: Vec::new(),
        }
    }

    /// A parser for a connection whose first captured client bytes are the plaintext
    /// `HandshakeResponse41` sent over TLS (the greeting and `SSLRequest` not seen).
    fn after_tls(requests_egress: bool, limits: Limits) -> Self {
        let mut m = Mysql::new(requests_egress, true, limits);
        m.phase = Phase::Login;
        m
    }

    /// Keeps `mode` of each statement's text (default: sanitized).
    pub fn with_query_text(mut self, mode: QueryText) -> Self {
        self.query_text = mode;
        self
    }

    /// Reads one segment of the request (`client`) or reply direction, then every packet
    /// the state machine can take.
    fn segment(&mut self, seg: &Segment, client: bool) {
        if self.phase == Phase::Done {
            return;
        }
        if self.phase == Phase::Tls {
            match seg {
                // The TLS library's plaintext: both directions start again from here.
                Segment::Data { bytes, .. } if client && looks_like_tls_login(bytes) => {
                    self.requests = Reader::new(self.limits.max_query);
                    self.replies = Reader::new(self.limits.max_reply);
                    self.cmds.clear();
                    self.reps.clear();
                    self.phase = Phase::Login;
                }
                // TLS records (ciphertext) of either direction.
                _ => return,
            }
        }
        let (reader, queue) = if client {
            (&mut self.requests, &mut self.cmds)
        } else {
            (&mut self.replies, &mut self.reps)
        };
        reader.feed(seg);
        self.errors.extend(reader.take_errors());
        for p in reader.take_packets() {
            if queue.len() >= self.limits.max_pending {
                self.errors.push("mysql_pending_full");
                continue;
            }
            queue.push_back(p);
        }
        self.step();
    }

    /// Runs the state machine over the queued packets as far as it can go.
    fn step(&mut self) {
        loop {
            let progressed = match self.phase {
                Phase::Greeting => match self.reps.pop_front() {
                    Some(p) => {
                        self.greeting(&p);
                        true
                    }
                    None => false,
                },
                Phase::Login => match self.cmds.pop_front() {
                    Some(p) => {
                        self.login(&p);
                        true
                    }
                    None => false,
                },
                Phase::Auth => {
                    // The client's authentication data (sequence ids past 0) is passed
                    // over; a command (sequence 0) waits for the server's OK.
                    while self.cmds.front().is_some_and(|p| p.seq != 0) {
                        self.cmds.pop_front();
                    }
                    match self.reps.pop_front() {
                        Some(p) => {
                            match p.first() {
                                Some(0x00) => self.phase = Phase::Command,
                                Some(0xff) => self.phase = Phase::Done,
                                // Auth switch (0xFE), more data (0x01): another round.
                                _ => {}
                            }
                            true
                        }
                        None => false,
                    }
                }
                Phase::Command => self.command_step(),
                Phase::Tls => {
                    self.cmds.clear();
                    self.reps.clear();
                    false
                }
                Phase::Done => {
                    self.cmds.clear();
                    self.reps.clear();
                    false
                }
            };
            if !progressed {
                break;
            }
        }
    }

    fn greeting(&mut self, p: &Packet) {
        match parse_greeting(&p.head) {
            Some((version, caps)) => {
                self.mariadb = version.contains("MariaDB");
                self.server_caps = caps;
                self.phase = Phase::Login;
            }
            // The server refused the connection (too many connections, host blocked).
            None if p.first() == Some(0xff) => self.phase = Phase::Done,
            None => {
                self.errors.push("mysql_bad_greeting");
                self.phase = Phase::Done;
            }
        }
    }

    fn login(&mut self, p: &Packet) {
        let b = &p.head;
        let Some(client_caps) = le_u32(b, 0) else {
            self.errors.push("mysql_bad_login");
            self.phase = Phase::Done;
            return;
        };
        if client_caps & cap::PROTOCOL_41 == 0 {
            self.errors.push("mysql_protocol_320");
            self.phase = Phase::Done;
            return;
        }
        let caps = client_caps & self.server_caps;
        if caps & cap::SSL != 0 && p.len == 32 {
            // SSLRequest: the socket's bytes are TLS records from here on; the plaintext
            // (if the recorder captured it) starts with the full HandshakeResponse41.
            self.errors.push("mysql_tls");
            self.phase = Phase::Tls;
            return;
        }
        if caps & cap::COMPRESS != 0 {
            self.errors.push("mysql_compressed");
            self.phase = Phase::Done;
            return;
        }
        // MariaDB's connectors put their extended capabilities in the filler's last 4 bytes
        // when the server is MariaDB (MySQL clients leave them zero): the server is known
        // even when its greeting was not seen (a TLS connection's plaintext).
        if le_u32(b, 28).is_some_and(|ext| ext != 0) {
            self.mariadb = true;
        }
        self.deprecate_eof = caps & cap::DEPRECATE_EOF != 0;
        self.eof_known = true;
        self.query_attributes = caps & cap::QUERY_ATTRIBUTES != 0;
        if caps & cap::CONNECT_WITH_DB != 0 {
            self.database = login_database(b, caps);
        }
        self.phase = Phase::Auth;
    }

    /// One step of the command phase: start the next command, or read one reply packet.
    fn command_step(&mut self) -> bool {
        if self.current.is_none() {
            let Some(p) = self.cmds.pop_front() else {
                if self.reps.pop_front().is_some() {
                    // A reply to no command (a capture joined mid-reply).
                    self.errors.push("mysql_unexpected_reply");
                    return true;
                }
                return false;
            };
            if p.seq != 0 {
                self.errors.push("mysql_sequence");
            }
            self.start_command(p);
            return true;
        }
        if matches!(
            self.current.as_ref().map(|c| c.expect),
            Some(Expect::Infile | Expect::Auth)
        ) {
            // The client's file contents or authentication data (sequence ids past 0).
            while self.cmds.front().is_some_and(|p| p.seq != 0) {
                self.cmds.pop_front();
            }
        }
        let Some(p) = self.reps.pop_front() else {
            return false;
        };
        self.reply_packet(p);
        true
    }

    fn start_command(&mut self, p: Packet) {
        let Some(command) = p.first() else {
            self.errors.push("mysql_empty_command");
            return;
        };
        let body = &p.head[1..];
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let mut selects = None;
        let mut prepares = None;
        let (operation, collection, query, expect) = match command {
            com::QUERY => {
                let Some(sql) = self.query_sql(body) else {
                    self.errors.push("mysql_query_attributes");
                    return;
                };
                let sql = text(sql);
                let s = self.statement(&sql, p.len > p.head.len() as u64);
                if s.operation.as_deref() == Some("USE") {
                    selects = used_database(&sql);
                }
                (
                    s.operation.unwrap_or_else(|| "QUERY".into()),
                    s.collection,
                    s.query,
                    Expect::First,
                )
            }
            com::STMT_PREPARE => {
                let sql = text(body);
                let s = self.statement(&sql, p.len > p.head.len() as u64);
                prepares = Some(s.clone());
                ("PREPARE".into(), s.collection, s.query, Expect::PrepareOk)
            }
            com::STMT_EXECUTE => {
                let s = le_u32(body, 0).and_then(|id| self.statements.get(&id));
                if s.is_none() {
                    self.errors.push("mysql_unknown_statement");
                }
                let s = s.cloned();
                (
                    s.as_ref()
                        .and_then(|s| s.operation.clone())
                        .unwrap_or_else(|| "EXECUTE".into()),
                    s.as_ref().and_then(|s| s.collection.clone()),
                    s.and_then(|s| s.query),
                    Expect::First,
                )
            }
            com::INIT_DB => {
                selects = Some(text(body));
                ("USE".into(), None, None, Expect::Ok)
            }
            com::PING => ("PING".into(), None, None, Expect::Ok),
            com::STMT_RESET => ("STMT_RESET".into(), None, None, Expect::Ok),
            com::RESET_CONNECTION => ("RESET_CONNECTION".into(), None, None, Expect::Ok),
            com::SET_OPTION => ("SET_OPTION".into(), None, None, Expect::Ok),
            com::STMT_FETCH => ("STMT_FETCH".into(), None, None, Expect::Rows),
            com::FIELD_LIST => ("FIELD_LIST".into(), None, None, Expect::Rows),
            com::STATISTICS => ("STATISTICS".into(), None, None, Expect::Single),
            com::CHANGE_USER => ("CHANGE_USER".into(), None, None, Expect::Auth),
            com::QUIT => {
                self.phase = Phase::Done;
                return;
            }
            com::STMT_CLOSE => {
                if let Some(id) = le_u32(body, 0) {
                    self.statements.remove(&id);
                }
                return;
            }
            com::STMT_SEND_LONG_DATA => return,
            _ => {
                self.errors.push("mysql_unknown_command");
                return;
            }
        };
        self.events.push(MessageEvent::Request {
            stream: None,
            request: Request {
                headers: crate::protocol::Headers::new(),
                body_size: p.len,
                start_ts: p.start_ts,
                end_ts: p.end_ts,
                truncated: p.truncated,
                tid: p.tid,
                detail: RequestDetail::Mysql(MysqlCommand {
                    operation,
                    collection,
                    query,
                    database: self.database.clone(),
                    mariadb: self.mariadb,
                }),
            },
        });
        self.current = Some(Current {
            command,
            expect,
            next_seq: p.last_seq.wrapping_add(1),
            reply: MysqlReply::default(),
            start_ts: 0,
            end_ts: 0,
            size: 0,
            truncated: false,
            selects,
            prepares,
        });
    }

    /// The SQL of a `COM_QUERY` body: after the query attributes when they were agreed
    /// (only an empty set is understood: `None` otherwise).
    fn query_sql<'a>(&self, body: &'a [u8]) -> Option<&'a [u8]> {
        if !self.query_attributes {
            return Some(body);
        }
        let (count, n) = lenenc(body)?;
        let (_sets, m) = lenenc(&body[n..])?;
        (count == 0).then(|| &body[n + m..])
    }

    /// Operation, collection and query text of SQL (`cut`: only a prefix was kept).
    fn statement(&self, sql: &str, cut: bool) -> Statement {
        let query = match self.query_text {
            QueryText::Off => None,
            QueryText::Sanitized => Some(sql::sanitize(sql, Dialect::MySql)),
            // Credentials stay hidden even in raw mode (`CREATE USER ... IDENTIFIED BY
            // 'pw'`, `SET PASSWORD = PASSWORD('pw')`): such statements are sanitized.
            QueryText::Raw if has_credentials(sql) => Some(sql::sanitize(sql, Dialect::MySql)),
            QueryText::Raw => Some(sql.to_string()),
        };
        Statement {
            operation: sql::operation(sql),
            collection: sql::collection(sql, Dialect::MySql),
            query: query.map(|mut q| {
                if cut {
                    q.push('…');
                }
                q
            }),
        }
    }

    fn reply_packet(&mut self, p: Packet) {
        let deprecate_eof = self.deprecate_eof;
        let Some(cur) = self.current.as_mut() else {
            return;
        };
        // Authentication rounds and LOCAL INFILE interleave the client's packets.
        if p.seq != cur.next_seq && !matches!(cur.expect, Expect::Auth | Expect::Infile) {
            self.errors.push("mysql_sequence");
        }
        cur.next_seq = p.last_seq.wrapping_add(1);
        if cur.start_ts == 0 {
            cur.start_ts = p.start_ts;
        }
        cur.end_ts = p.end_ts;
        cur.size += p.len;
        cur.truncated |= p.truncated;
        let first = p.first();
        let is_err = first == Some(0xff);
        // An EOF packet, or an OK packet in its place (`CLIENT_DEPRECATE_EOF`).
        let is_end = first == Some(0xfe) && p.len < u64::from(MAX_PAYLOAD);
        let mut done = false;
        if is_err {
            let (code, state, message) = parse_err(&p.head);
            cur.reply.error_code = code;
            cur.reply.sql_state = state;
            cur.reply.message = message;
            done = true;
        } else {
            match cur.expect {
                Expect::Ok => {
                    if !matches!(first, Some(0x00 | 0xfe)) {
                        self.errors.push("mysql_unexpected_reply");
                    }
                    done = true;
                }
                Expect::Single => done = true,
                Expect::Auth => done = first == Some(0x00),
                Expect::First => match first {
                    Some(0x00) if p.len >= 7 => {
                        done = ok_status(&p.head) & SERVER_MORE_RESULTS_EXISTS == 0;
                    }
                    Some(0xfb) => cur.expect = Expect::Infile,
                    _ => match lenenc(&p.head) {
                        Some((n @ 1..=4096, _)) => {
                            cur.expect = Expect::Columns(n);
                            cur.reply.rows.get_or_insert(0);
                        }
                        _ => {
                            self.errors.push("mysql_bad_column_count");
                            done = true;
                        }
                    },
                },
                Expect::Columns(n) => {
                    cur.expect = match (n - 1, deprecate_eof) {
                        (0, true) => Expect::Rows,
                        (0, false) => Expect::ColumnsEof,
                        (left, _) => Expect::Columns(left),
                    };
                }
                Expect::ColumnsEof => {
                    if is_end {
                        self.eof_known = true;
                        // A cursor was opened: the rows come with COM_STMT_FETCH.
                        if eof_status(&p.head) & SERVER_STATUS_CURSOR_EXISTS != 0 {
                            done = true;
                        }
                    } else {
                        if self.eof_known {
                            self.errors.push("mysql_expected_eof");
                        } else {
                            // A connection joined late: its client asked for no EOFs.
                            self.deprecate_eof = true;
                            self.eof_known = true;
                        }
                        *cur.reply.rows.get_or_insert(0) += 1;
                    }
                    cur.expect = Expect::Rows;
                }
                Expect::Rows => {
                    if is_end {
                        let status = if deprecate_eof {
                            ok_status(&p.head)
                        } else {
                            eof_status(&p.head)
                        };
                        if status & SERVER_MORE_RESULTS_EXISTS != 0 {
                            cur.expect = Expect::First;
                        } else {
                            done = true;
                        }
                    } else if cur.command != com::FIELD_LIST {
                        *cur.reply.rows.get_or_insert(0) += 1;
                    }
                }
                Expect::Infile => done = true,
                Expect::PrepareOk => match (first, le_u32(&p.head, 1)) {
                    (Some(0x00), Some(id)) if p.head.len() >= 9 => {
                        let columns = u64::from(le_u16(&p.head, 5).unwrap_or(0));
                        let params = u64::from(le_u16(&p.head, 7).unwrap_or(0));
                        if let Some(s) = cur.prepares.take() {
                            if self.statements.len() < self.limits.max_statements
                                || self.statements.contains_key(&id)
                            {
                                self.statements.insert(id, s);
                            } else {
                                self.errors.push("mysql_statements_full");
                            }
                        }
                        match definitions(params, columns) {
                            Some(next) => cur.expect = next,
                            None => done = true,
                        }
                    }
                    _ => {
                        self.errors.push("mysql_unexpected_reply");
                        done = true;
                    }
                },
                Expect::Params { params, columns } => match (params - 1, deprecate_eof) {
                    (0, false) => cur.expect = Expect::ParamsEof { columns },
                    (0, true) => match definitions(0, columns) {
                        Some(next) => cur.expect = next,
                        None => done = true,
                    },
                    (left, _) => {
                        cur.expect = Expect::Params {
                            params: left,
                            columns,
                        }
                    }
                },
                Expect::ParamsEof { columns } => {
                    if !is_end {
                        self.errors.push("mysql_expected_eof");
                    }
                    match definitions(0, columns) {
                        Some(next) => cur.expect = next,
                        None => done = true,
                    }
                }
                Expect::PrepareColumns(n) => match (n - 1, deprecate_eof) {
                    (0, false) => cur.expect = Expect::PrepareColumnsEof,
                    (0, true) => done = true,
                    (left, _) => cur.expect = Expect::PrepareColumns(left),
                },
                Expect::PrepareColumnsEof => {
                    if !is_end {
                        self.errors.push("mysql_expected_eof");
                    }
                    done = true;
                }
            }
        }
        if !done {
            return;
        }
        let Some(cur) = self.current.take() else {
            return;
        };
        if !is_err {
            if let Some(db) = cur.selects {
                self.database = Some(db);
            }
        }
        self.events.push(MessageEvent::Response {
            stream: None,
            response: Response {
                body_size: cur.size,
                start_ts: cur.start_ts,
                end_ts: cur.end_ts,
                truncated: cur.truncated,
                detail: ResponseDetail::Mysql(cur.reply),
            },
        });
    }
}

/// What follows a prepare OK: `params` parameter definitions, then `columns` column
/// definitions (each run followed by an EOF unless `CLIENT_DEPRECATE_EOF`); `None` when
/// nothing does.
fn definitions(params: u64, columns: u64) -> Option<Expect> {
    if params > 0 {
        Some(Expect::Params { params, columns })
    } else if columns > 0 {
        Some(Expect::PrepareColumns(columns))
    } else {
        None
    }
}

/// Server version and capability flags of a handshake v10 greeting.
fn parse_greeting(b: &[u8]) -> Option<(String, u32)> {
    if b.first() != Some(&10) {
        return None;
    }
    let end = 1 + b[1..].iter().position(|c| *c == 0)?;
    let version = std::str::from_utf8(&b[1..end]).ok()?;
    if version.is_empty() || !version.bytes().all(|c| c.is_ascii_graphic()) {
        return None;
    }
    // Thread id (4), auth data part 1 (8), filler (1), capabilities low (2), charset (1),
    // status (2), capabilities high (2).
    let low = le_u16(b, end + 1 + 4 + 8 + 1)?;
    let high = le_u16(b, end + 1 + 4 + 8 + 1 + 2 + 1 + 2).unwrap_or(0);
    Some((
        version.to_string(),
        u32::from(low) | (u32::from(high) << 16),
    ))
}

/// The database of a `HandshakeResponse41` (`CLIENT_CONNECT_WITH_DB`).
fn login_database(b: &[u8], caps: u32) -> Option<String> {
    // Capabilities (4), max packet (4), charset (1), filler (23), user (NUL-terminated).
    let mut i = 32;
    i += b.get(i..)?.iter().position(|c| *c == 0)? + 1;
    let auth_len = if caps & cap::PLUGIN_AUTH_LENENC_CLIENT_DATA != 0 {
        let (n, k) = lenenc(b.get(i..)?)?;
        i += k;
        n as usize
    } else if caps & cap::SECURE_CONNECTION != 0 {
        let n = *b.get(i)? as usize;
        i += 1;
        n
    } else {
        b.get(i..)?.iter().position(|c| *c == 0)? + 1
    };
    i = i.checked_add(auth_len)?;
    let rest = b.get(i..)?;
    let end = rest.iter().position(|c| *c == 0)?;
    let db = String::from_utf8_lossy(&rest[..end]).into_owned();
    (!db.is_empty()).then_some(db)
}

/// Whether a statement can carry a password (`IDENTIFIED BY`, `PASSWORD(...)`,
/// `CHANGE MASTER ... MASTER_PASSWORD=`).
fn has_credentials(sql: &str) -> bool {
    let b = sql.as_bytes();
    ["IDENTIFIED", "PASSWORD"].iter().any(|w| {
        b.windows(w.len())
            .any(|x| x.eq_ignore_ascii_case(w.as_bytes()))
    })
}

/// The database `USE db` selects.
fn used_database(sql: &str) -> Option<String> {
    let mut words = sql.split_whitespace();
    words.next()?;
    let db = words.next()?.trim_end_matches(';').trim_matches('`');
    (!db.is_empty()).then(|| db.to_string())
}

/// Error code, SQLSTATE and message of an ERR packet.
fn parse_err(b: &[u8]) -> (Option<u16>, Option<String>, Option<String>) {
    let code = le_u16(b, 1);
    let (state, msg_at) = if b.get(3) == Some(&b'#') && b.len() >= 9 {
        (Some(String::from_utf8_lossy(&b[4..9]).into_owned()), 9)
    } else {
        (None, 3)
    };
    let message = b
        .get(msg_at..)
        .map(|m| String::from_utf8_lossy(m).into_owned());
    (code, state, message)
}

/// Status flags of an OK packet (header, affected rows, last insert id, status).
fn ok_status(b: &[u8]) -> u16 {
    let Some((_, a)) = b.get(1..).and_then(lenenc) else {
        return 0;
    };
    let Some((_, c)) = b.get(1 + a..).and_then(lenenc) else {
        return 0;
    };
    le_u16(b, 1 + a + c).unwrap_or(0)
}

/// Status flags of an EOF packet (header, warnings, status).
fn eof_status(b: &[u8]) -> u16 {
    le_u16(b, 3).unwrap_or(0)
}

/// A length-encoded integer and its size in bytes.
fn lenenc(b: &[u8]) -> Option<(u64, usize)> {
    let n = match *b.first()? {
        c @ 0..=0xfa => return Some((u64::from(c), 1)),
        0xfc => 2,
        0xfd => 3,
        0xfe => 8,
        _ => return None,
    };
    let bytes = b.get(1..1 + n)?;
    let mut v = [0u8; 8];
    v[..n].copy_from_slice(bytes);
    Some((u64::from_le_bytes(v), 1 + n))
}

fn le_u16(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(i..i + 2)?.try_into().ok()?))
}

fn le_u32(b: &[u8], i: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(i..i + 4)?.try_into().ok()?))
}

/// How the first bytes of a direction look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Looks {
    /// A handshake v10 greeting.
    Greeting,
    /// Maybe, once more bytes come.
    Partial,
    /// Not a greeting.
    No,
}

/// Whether bytes start with a greeting packet: length plausible, sequence 0, protocol 10,
/// a printable version string starting with a digit, NUL-terminated inside the packet.
fn looks_like_greeting(b: &[u8]) -> Looks {
    if b.is_empty() {
        return Looks::Partial;
    }
    if b.len() >= 3 {
        let len = u32::from_le_bytes([b[0], b[1], b[2], 0]);
        if !(30..=1024).contains(&len) {
            return Looks::No;
        }
    }
    if b.get(3).is_some_and(|s| *s != 0) || b.get(4).is_some_and(|p| *p != 10) {
        return Looks::No;
    }
    if b.get(5).is_some_and(|c| !c.is_ascii_digit()) {
        return Looks::No;
    }
    let Some(version) = b.get(5..) else {
        return Looks::Partial;
    };
    match version.iter().position(|c| *c == 0) {
        Some(0) => Looks::No,
        Some(n) if version[..n].iter().all(u8::is_ascii_graphic) => Looks::Greeting,
        Some(_) => Looks::No,
        None if version.len() < 64 && version.iter().all(u8::is_ascii_graphic) => Looks::Partial,
        None => Looks::No,
    }
}

/// Whether bytes start with the `HandshakeResponse41` a client sends after its `SSLRequest`
/// (over TLS): a plausible length past the `SSLRequest`'s 32 bytes, sequence id 2,
/// `CLIENT_PROTOCOL_41` and `CLIENT_SSL` set, and the filler's first 19 bytes zero (MariaDB
/// clients use its last 4). Ciphertext never starts so: those 19 bytes would be encrypted
/// record bytes.
fn looks_like_tls_login(b: &[u8]) -> bool {
    let Some(caps) = le_u32(b, 4) else {
        return false;
    };
    let len = u32::from_le_bytes([b[0], b[1], b[2], 0]);
    b.len() >= 36
        && (33..=0x1_0000).contains(&len)
        && b[3] == 2
        && caps & (cap::PROTOCOL_41 | cap::SSL) == cap::PROTOCOL_41 | cap::SSL
        && b[13..32].iter().all(|c| *c == 0)
}

/// Whether bytes start with a command packet (sequence 0, a known command byte): what a
/// client direction joined late looks like.
fn looks_like_command(b: &[u8]) -> bool {
    b.len() >= 5
        && b[3] == 0
        && u32::from_le_bytes([b[0], b[1], b[2], 0]) >= 1
        && matches!(
            b[4],
            com::QUERY
                | com::INIT_DB
                | com::PING
                | com::QUIT
                | com::STMT_PREPARE
                | com::STMT_EXECUTE
                | com::STMT_CLOSE
                | com::STMT_RESET
        )
}

impl Protocol for Mysql {
    fn detect(start: &Start<'_>) -> Detection<Self> {
        let e = first_bytes(start.egress, 80);
        let i = first_bytes(start.ingress, 80);
        let limits = start.limits.mysql;
        let found = |requests_egress, greeting| {
            Detection::Found(
                Mysql::new(requests_egress, greeting, limits)
                    .with_query_text(start.limits.db_query_text),
            )
        };
        let (ge, gi) = (looks_like_greeting(&e), looks_like_greeting(&i));
        // The server speaks first: its side's bytes are the greeting.
        if ge == Looks::Greeting && start.role != Role::Client {
            return found(false, true);
        }
        if gi == Looks::Greeting && start.role != Role::Server {
            return found(true, true);
        }
        // A TLS connection whose cleartext start the reassembler dropped: its plaintext
        // starts with the client's HandshakeResponse41 (sequence 2).
        if looks_like_tls_login(&e) && start.role != Role::Server {
            return Detection::Found(
                Mysql::after_tls(true, limits).with_query_text(start.limits.db_query_text),
            );
        }
        if looks_like_tls_login(&i) && start.role != Role::Client {
            return Detection::Found(
                Mysql::after_tls(false, limits).with_query_text(start.limits.db_query_text),
            );
        }
        if start.has_port(PORT) {
            let requests_egress = match start.role {
                Role::Client => Some(true),
                Role::Server => Some(false),
                Role::Unknown => {
                    let remote = start.remote.is_some_and(|a| a.port() == PORT);
                    let local = start.local.is_some_and(|a| a.port() == PORT);
                    (remote != local).then_some(remote)
                }
            };
            if let Some(req_egress) = requests_egress {
                let req = if req_egress { &e } else { &i };
                if looks_like_command(req) {
                    return found(req_egress, false);
                }
            }
        }
        let waiting = ge == Looks::Partial && gi == Looks::Partial;
        let one_side =
            (ge == Looks::Partial && i.is_empty()) || (gi == Looks::Partial && e.is_empty());
        if (waiting || one_side) && !start.closed {
            Detection::NeedMore
        } else {
            Detection::NotMine
        }
    }

    fn feed(&mut self, egress: &[Segment], ingress: &[Segment], closed: bool) -> Output {
        // Both directions in time order: the handshake and each command's reply depend on
        // what the other side said before.
        let (req, rep) = if self.requests_egress {
            (egress, ingress)
        } else {
            (ingress, egress)
        };
        let (mut a, mut b) = (0, 0);
        while a < req.len() || b < rep.len() {
            let take_req = match (req.get(a), rep.get(b)) {
                (Some(x), Some(y)) => x.ts_ns() <= y.ts_ns(),
                (Some(_), None) => true,
                _ => false,
            };
            if take_req {
                self.segment(&req[a], true);
                a += 1;
            } else {
                self.segment(&rep[b], false);
                b += 1;
            }
        }
        if closed && self.phase != Phase::Done {
            self.requests.finish();
            self.replies.finish();
            self.errors.extend(self.requests.take_errors());
            self.errors.extend(self.replies.take_errors());
            for p in self.requests.take_packets() {
                self.cmds.push_back(p);
            }
            for p in self.replies.take_packets() {
                self.reps.push_back(p);
            }
            self.step();
        }
        Output {
            role: Some(if self.requests_egress {
                Role::Client
            } else {
                Role::Server
            }),
            events: std::mem::take(&mut self.events),
            errors: std::mem::take(&mut self.errors),
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
