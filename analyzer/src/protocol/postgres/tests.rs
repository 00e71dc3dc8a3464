//! PostgreSQL parser tests: one per message kind and flow (startup, SSLRequest, simple
//! query, extended protocol with named and unnamed statements, pipelines, errors, COPY,
//! large results, partial input, bounds, detection).

use podtrace_format::Role;

use super::*;
use crate::protocol::{ConnectionParser, Limits as AllLimits};

fn data(ts: u64, b: &[u8]) -> Segment {
    Segment::Data {
        ts_ns: ts,
        tid: 7,
        bytes: b.to_vec(),
    }
}

/// A typed message.
fn msg(t: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![t];
    out.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn cstrs(parts: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts {
        out.extend_from_slice(p.as_bytes());
        out.push(0);
    }
    out
}

fn startup(user: &str, db: &str) -> Vec<u8> {
    let mut body = wire::PROTOCOL_3.to_be_bytes().to_vec();
    body.extend(cstrs(&[
        "user",
        user,
        "database",
        db,
        "application_name",
        "t",
    ]));
    body.push(0);
    let mut out = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    out.extend(body);
    out
}

fn ssl_request() -> Vec<u8> {
    let mut out = 8u32.to_be_bytes().to_vec();
    out.extend(wire::SSL_REQUEST.to_be_bytes());
    out
}

fn query(sql: &str) -> Vec<u8> {
    msg(b'Q', &cstrs(&[sql]))
}

fn parse(name: &str, sql: &str) -> Vec<u8> {
    let mut b = cstrs(&[name, sql]);
    b.extend(0u16.to_be_bytes());
    msg(b'P', &b)
}

fn bind(portal: &str, stmt: &str, params: &[&[u8]]) -> Vec<u8> {
    let mut b = cstrs(&[portal, stmt]);
    b.extend(0u16.to_be_bytes());
    b.extend((params.len() as u16).to_be_bytes());
    for p in params {
        b.extend((p.len() as u32).to_be_bytes());
        b.extend_from_slice(p);
    }
    b.extend(0u16.to_be_bytes());
    msg(b'B', &b)
}

fn describe_portal(portal: &str) -> Vec<u8> {
    let mut b = vec![b'P'];
    b.extend(cstrs(&[portal]));
    msg(b'D', &b)
}

fn execute(portal: &str) -> Vec<u8> {
    let mut b = cstrs(&[portal]);
    b.extend(0u32.to_be_bytes());
    msg(b'E', &b)
}

fn sync() -> Vec<u8> {
    msg(b'S', &[])
}

fn ready() -> Vec<u8> {
    msg(b'Z', b"I")
}

fn complete(tag: &str) -> Vec<u8> {
    msg(b'C', &cstrs(&[tag]))
}

fn data_row(bytes: usize) -> Vec<u8> {
    let mut b = 1u16.to_be_bytes().to_vec();
    b.extend((bytes as u32).to_be_bytes());
    b.extend(std::iter::repeat_n(b'x', bytes));
    msg(b'D', &b)
}

fn error(code: &str, text: &str) -> Vec<u8> {
    let mut b = Vec::new();
    for (f, v) in [(b'S', "ERROR"), (b'V', "ERROR"), (b'C', code), (b'M', text)] {
        b.push(f);
        b.extend(cstrs(&[v]));
    }
    b.push(0);
    msg(b'E', &b)
}

/// The authentication and parameter messages a server sends before its first ReadyForQuery.
fn server_hello() -> Vec<u8> {
    let mut out = msg(b'R', &0u32.to_be_bytes());
    out.extend(msg(b'S', &cstrs(&["server_version", "15.8"])));
    out.extend(msg(b'K', &[0, 0, 0, 1, 0, 0, 0, 2]));
    out.extend(ready());
    out
}

fn cat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

/// A client socket whose capture starts at the startup message.
fn fresh() -> Postgres {
    Postgres::new(true, true, Limits::default())
}

/// A client socket whose capture starts after the startup.
fn client() -> Postgres {
    Postgres::new(true, false, Limits::default())
}

type Row = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

fn requests(out: &Output) -> Vec<(u32, Row)> {
    out.events
        .iter()
        .filter_map(|e| match e {
            MessageEvent::Request {
                stream: Some(s),
                request:
                    Request {
                        detail: RequestDetail::Postgres(q),
                        ..
                    },
            } => Some((
                *s,
                (
                    q.operation.clone(),
                    q.collection.clone(),
                    q.query.clone(),
                    q.database.clone(),
                ),
            )),
            _ => None,
        })
        .collect()
}

fn responses(out: &Output) -> Vec<(u32, PostgresResult, u64, u64)> {
    out.events
        .iter()
        .filter_map(|e| match e {
            MessageEvent::Response {
                stream: Some(s),
                response:
                    r @ Response {
                        detail: ResponseDetail::Postgres(x),
                        ..
                    },
            } => Some((*s, x.clone(), r.start_ts, r.end_ts)),
            _ => None,
        })
        .collect()
}

#[test]
fn startup_then_simple_query() {
    let mut p = fresh();
    let out = p.feed(
        &[
            data(1, &startup("alice", "shop")),
            data(3, &query("SELECT * FROM items WHERE id = 42")),
        ],
        &[
            data(2, &server_hello()),
            data(
                4,
                &cat(&[
                    msg(b'T', &[0, 0]),
                    data_row(3),
                    data_row(3),
                    complete("SELECT 2"),
                    ready(),
                ]),
            ),
        ],
        false,
    );
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(out.role, Some(Role::Client));
    let reqs = requests(&out);
    assert_eq!(reqs.len(), 1);
    assert_eq!(
        reqs[0].1,
        (
            Some("SELECT".into()),
            Some("items".into()),
            Some("SELECT * FROM items WHERE id = ?".into()),
            Some("shop".into())
        )
    );
    let resp = responses(&out);
    assert_eq!(resp.len(), 1);
    assert_eq!(resp[0].0, reqs[0].0);
    assert_eq!(resp[0].1.command_tag.as_deref(), Some("SELECT 2"));
    assert_eq!(resp[0].1.rows, 2);
    assert_eq!((resp[0].2, resp[0].3), (4, 4));
}

#[test]
fn database_defaults_to_user() {
    let mut body = wire::PROTOCOL_3.to_be_bytes().to_vec();
    body.extend(cstrs(&["user", "bob"]));
    body.push(0);
    let mut m = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    m.extend(body);
    let mut p = fresh();
    let out = p.feed(&[data(1, &m), data(2, &query("BEGIN"))], &[], false);
    assert_eq!(requests(&out)[0].1 .3.as_deref(), Some("bob"));
}

#[test]
fn ssl_request_answered_n_continues_in_cleartext() {
    let mut p = fresh();
    let out = p.feed(
        &[
            data(1, &ssl_request()),
            data(3, &startup("u", "d")),
            data(5, &query("SELECT 1")),
        ],
        &[
            data(2, b"N"),
            data(4, &server_hello()),
            data(6, &cat(&[data_row(1), complete("SELECT 1"), ready()])),
        ],
        false,
    );
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(requests(&out).len(), 1);
    assert_eq!(responses(&out).len(), 1);
    assert_eq!(requests(&out)[0].1 .3.as_deref(), Some("d"));
}

#[test]
fn ssl_request_answered_s_is_passed_over() {
    let mut p = fresh();
    let hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03";
    let out = p.feed(
        &[data(1, &ssl_request()), data(3, hello)],
        &[data(2, b"S"), data(4, b"\x16\x03\x03\x00\x7a")],
        false,
    );
    assert_eq!(out.errors, vec!["postgres_tls"]);
    assert!(out.events.is_empty());
    // Later encrypted bytes are not read.
    let out = p.feed(&[data(5, &query("SELECT 1"))], &[data(6, b"garbage")], true);
    assert!(out.events.is_empty() && out.errors.is_empty(), "{out:?}");
}

#[test]
fn extended_protocol_unnamed_statement() {
    let mut p = client();
    let batch = cat(&[
        parse("", "INSERT INTO orders (item, qty) VALUES ($1, $2)"),
        bind("", "", &[b"7", b"2"]),
        describe_portal(""),
        execute(""),
        sync(),
    ]);
    let answer = cat(&[
        msg(b'1', &[]),
        msg(b'2', &[]),
        msg(b'n', &[]),
        complete("INSERT 0 1"),
        ready(),
    ]);
    let out = p.feed(&[data(10, &batch)], &[data(12, &answer)], false);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let reqs = requests(&out);
    assert_eq!(
        reqs[0].1,
        (
            Some("INSERT".into()),
            Some("orders".into()),
            Some("INSERT INTO orders (item, qty) VALUES ($1, $2)".into()),
            None
        )
    );
    let resp = responses(&out);
    assert_eq!(resp.len(), 1);
    assert_eq!(resp[0].1.command_tag.as_deref(), Some("INSERT 0 1"));
    // The request starts at the Parse; its size counts Parse, Bind, Describe and Execute.
    let MessageEvent::Request { request, .. } = &out.events[0] else {
        panic!("request first");
    };
    assert_eq!(request.start_ts, 10);
    assert_eq!(request.tid, 7);
    assert_eq!(request.body_size, (batch.len() - sync().len()) as u64);
    assert!(matches!(
        &request.detail,
        RequestDetail::Postgres(PostgresQuery { extended: true, .. })
    ));
}

#[test]
fn named_statement_executed_later_takes_its_parse_sql() {
    let mut p = client();
    let prep = cat(&[parse("s1", "SELECT name FROM users WHERE id = $1"), sync()]);
    let out = p.feed(
        &[data(1, &prep)],
        &[data(2, &cat(&[msg(b'1', &[]), ready()]))],
        false,
    );
    assert!(out.events.is_empty(), "a Parse alone is no request");
    for (i, ts) in [(0, 10u64), (1, 20)] {
        let run = cat(&[bind("", "s1", &[b"1"]), execute(""), sync()]);
        let ans = cat(&[msg(b'2', &[]), data_row(5), complete("SELECT 1"), ready()]);
        let out = p.feed(&[data(ts, &run)], &[data(ts + 1, &ans)], false);
        let reqs = requests(&out);
        assert_eq!(reqs.len(), 1, "run {i}");
        assert_eq!(reqs[0].1 .1.as_deref(), Some("users"));
        assert_eq!(reqs[0].0, i);
        assert_eq!(responses(&out)[0].1.rows, 1);
    }
    // Closed: the statement is forgotten.
    let mut close = vec![b'S'];
    close.extend(cstrs(&["s1"]));
    let run = cat(&[msg(b'C', &close), bind("", "s1", &[]), execute(""), sync()]);
    let out = p.feed(&[data(30, &run)], &[], false);
    assert!(out.errors.contains(&"postgres_unknown_statement"));
    assert_eq!(requests(&out)[0].1 .0, None);
}

#[test]
fn pipelined_batch_with_error_aborts_the_rest() {
    let mut p = client();
    let batch = cat(&[
        parse("", "INSERT INTO t VALUES ($1)"),
        bind("", "", &[b"1"]),
        execute(""),
        parse("", "SELECT * FROM missing"),
        bind("", "", &[]),
        execute(""),
        parse("", "UPDATE t SET a = 2"),
        bind("", "", &[]),
        execute(""),
        sync(),
        parse("", "SELECT 1"),
        bind("", "", &[]),
        execute(""),
        sync(),
    ]);
    let answer = cat(&[
        msg(b'1', &[]),
        msg(b'2', &[]),
        complete("INSERT 0 1"),
        error("42P01", "relation \"missing\" does not exist"),
        ready(),
        msg(b'1', &[]),
        msg(b'2', &[]),
        data_row(1),
        complete("SELECT 1"),
        ready(),
    ]);
    let out = p.feed(&[data(1, &batch)], &[data(2, &answer)], false);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let reqs = requests(&out);
    assert_eq!(
        reqs.iter()
            .map(|r| r.1 .0.clone().unwrap_or_default())
            .collect::<Vec<_>>(),
        ["INSERT", "SELECT", "UPDATE", "SELECT"]
    );
    let resp = responses(&out);
    assert_eq!(resp.iter().map(|r| r.0).collect::<Vec<_>>(), [0, 1, 2, 3]);
    assert!(resp[0].1.error.is_none() && !resp[0].1.aborted);
    assert_eq!(
        resp[1].1.error.as_ref().map(|e| e.code.as_str()),
        Some("42P01")
    );
    assert!(resp[2].1.aborted);
    assert!(resp[3].1.error.is_none() && !resp[3].1.aborted);
    assert_eq!(resp[3].1.rows, 1);
}

#[test]
fn simple_query_error_and_multi_statement() {
    let mut p = client();
    let out = p.feed(
        &[
            data(1, &query("SELECT 1/0")),
            data(3, &query("BEGIN; SELECT 1; COMMIT")),
        ],
        &[
            data(2, &cat(&[error("22012", "division by zero"), ready()])),
            data(
                4,
                &cat(&[
                    complete("BEGIN"),
                    data_row(1),
                    complete("SELECT 1"),
                    complete("COMMIT"),
                    ready(),
                ]),
            ),
        ],
        false,
    );
    let resp = responses(&out);
    assert_eq!(resp.len(), 2);
    assert_eq!(
        resp[0].1.error.as_ref().map(|e| e.code.as_str()),
        Some("22012")
    );
    assert_eq!(
        resp[0].1.error.as_ref().map(|e| e.severity.as_str()),
        Some("ERROR")
    );
    assert_eq!(resp[1].1.command_tag.as_deref(), Some("COMMIT"));
    assert_eq!(resp[1].1.rows, 1);
    assert_eq!(requests(&out)[1].1 .0.as_deref(), Some("BEGIN"));
}

#[test]
fn copy_data_is_passed_over_by_length() {
    let mut p = client();
    let rows: Vec<u8> = (0..50).flat_map(|_| msg(b'd', &[b'z'; 1000])).collect();
    let out = p.feed(
        &[
            data(1, &query("COPY items FROM STDIN")),
            data(3, &rows),
            data(4, &msg(b'c', &[])),
            data(6, &query("COPY items TO STDOUT")),
        ],
        &[
            data(2, &msg(b'G', &[0, 0, 0])),
            data(5, &cat(&[complete("COPY 50"), ready()])),
            data(
                7,
                &cat(&[
                    msg(b'H', &[0, 0, 0]),
                    rows.clone(),
                    msg(b'c', &[]),
                    complete("COPY 50"),
                    ready(),
                ]),
            ),
        ],
        false,
    );
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(requests(&out)[0].1 .1.as_deref(), Some("items"));
    let resp = responses(&out);
    assert_eq!(resp.len(), 2);
    assert_eq!(resp[0].1.command_tag.as_deref(), Some("COPY 50"));
    assert_eq!(resp[1].1.command_tag.as_deref(), Some("COPY 50"));
}

#[test]
fn large_result_rows_are_skipped_not_kept() {
    let mut p = client();
    let _ = p.feed(&[data(1, &query("SELECT blob FROM big"))], &[], false);
    let row = data_row(1 << 20);
    // Fed in small pieces: nothing of the rows is kept.
    for (i, chunk) in row.chunks(4096).enumerate() {
        let out = p.feed(&[], &[data(2 + i as u64, chunk)], false);
        assert!(out.events.is_empty());
        assert!(p.back.open_kept() <= 128);
    }
    let out = p.feed(
        &[],
        &[data(9999, &cat(&[complete("SELECT 1"), ready()]))],
        false,
    );
    let resp = responses(&out);
    assert_eq!(resp[0].1.rows, 1);
    assert_eq!(resp[0].2, 2, "the response starts at its first byte");
}

#[test]
fn split_messages_across_segments() {
    let mut p = fresh();
    let all = cat(&[startup("u", "d"), query("SELECT a FROM b")]);
    let mut out = Output::default();
    for (i, b) in all.iter().enumerate() {
        let o = p.feed(&[data(i as u64, &[*b])], &[], false);
        out.events.extend(o.events);
        out.errors.extend(o.errors);
    }
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(requests(&out)[0].1 .1.as_deref(), Some("b"));
    let MessageEvent::Request { request, .. } = &out.events[0] else {
        panic!("request");
    };
    assert_eq!(request.start_ts, startup("u", "d").len() as u64);
}

#[test]
fn malformed_input_is_counted() {
    let mut p = fresh();
    let out = p.feed(
        &[
            data(1, &startup("u", "d")),
            data(2, b"\x01\x00\x00\x00\x05x"),
        ],
        &[],
        false,
    );
    assert_eq!(out.errors, vec!["postgres_bad_type"]);
    // The next segment is read as a new message.
    let out = p.feed(&[data(3, &query("SELECT 1"))], &[], false);
    assert_eq!(requests(&out).len(), 1);
    let out = p.feed(&[data(4, b"Q\x00\x00\x00\x02")], &[], false);
    assert_eq!(out.errors, vec!["postgres_bad_length"]);
    let out = p.feed(&[data(5, b"Q\x00\x00")], &[], true);
    assert!(
        out.errors.contains(&"postgres_incomplete"),
        "{:?}",
        out.errors
    );
    // The waiting SELECT 1 is unanswered at the end.
    assert!(out.events.contains(&MessageEvent::Unanswered(0)));
}

#[test]
fn lost_answers_leave_requests_unanswered() {
    let mut p = fresh();
    let out = p.feed(
        &[
            data(1, &startup("u", "d")),
            data(2, &query("SELECT 1")),
            data(3, &query("SELECT 2")),
        ],
        &[data(4, &server_hello()[..7]), Segment::Gap { ts_ns: 5 }],
        false,
    );
    assert!(out.errors.contains(&"postgres_gap"), "{:?}", out.errors);
    assert!(out.events.contains(&MessageEvent::Unanswered(0)));
    assert!(out.events.contains(&MessageEvent::Unanswered(1)));
    // Later requests pair with later answers.
    let out = p.feed(
        &[data(6, &query("SELECT 3"))],
        &[data(7, &cat(&[complete("SELECT 1"), ready()]))],
        false,
    );
    assert_eq!(responses(&out).iter().map(|r| r.0).collect::<Vec<_>>(), [2]);
}

#[test]
fn snaplen_truncated_rows_are_counted_in_place() {
    let mut p = client();
    let _ = p.feed(&[data(1, &query("SELECT x FROM y"))], &[], false);
    let row = data_row(10_000);
    let out = p.feed(
        &[],
        &[
            data(2, &row[..100]),
            Segment::Missing {
                ts_ns: 2,
                len: (row.len() - 100) as u64,
            },
            data(3, &cat(&[complete("SELECT 1"), ready()])),
        ],
        false,
    );
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let MessageEvent::Response { response, .. } = &out.events[0] else {
        panic!("response");
    };
    assert!(response.truncated);
}

#[test]
fn query_text_modes_and_long_statements() {
    for (mode, want) in [
        (QueryText::Sanitized, Some("SELECT ? FROM t")),
        (QueryText::Raw, Some("SELECT 'x' FROM t")),
        (QueryText::Off, None),
    ] {
        let mut p = client().with_query_text(mode);
        let out = p.feed(&[data(1, &query("SELECT 'x' FROM t"))], &[], false);
        assert_eq!(requests(&out)[0].1 .2.as_deref(), want);
    }
    let long = format!("SELECT * FROM wide WHERE a IN ({})", "1,".repeat(10_000));
    let mut p = client();
    let out = p.feed(&[data(1, &query(&long))], &[], false);
    let (_, (op, coll, text, _)) = &requests(&out)[0];
    assert_eq!(op.as_deref(), Some("SELECT"));
    assert_eq!(coll.as_deref(), Some("wide"));
    assert!(text
        .as_ref()
        .is_some_and(|t| t.len() <= Limits::default().max_query));
}

#[test]
fn bounds_are_counted() {
    let limits = Limits {
        max_statements: 2,
        max_pending: 2,
        ..Limits::default()
    };
    let mut p = Postgres::new(true, false, limits);
    let prep = cat(&[
        parse("a", "SELECT 1"),
        parse("b", "SELECT 2"),
        parse("c", "SELECT 3"),
    ]);
    let out = p.feed(&[data(1, &prep)], &[], false);
    assert_eq!(out.errors, vec!["postgres_too_many_statements"]);
    let out = p.feed(
        &[data(
            2,
            &cat(&[query("SELECT 1"), query("SELECT 2"), query("SELECT 3")]),
        )],
        &[],
        false,
    );
    assert_eq!(requests(&out).len(), 2);
    assert_eq!(out.errors, vec!["postgres_too_many_pending"]);
}

#[test]
fn server_side_socket() {
    let mut p = Postgres::new(false, true, Limits::default());
    let out = p.feed(
        &[
            data(2, &cat(&[server_hello()])),
            data(4, &cat(&[complete("CREATE TABLE"), ready()])),
        ],
        &[
            data(1, &startup("u", "d")),
            data(3, &query("CREATE TABLE kv (k text)")),
        ],
        false,
    );
    assert_eq!(out.role, Some(Role::Server));
    assert_eq!(requests(&out)[0].1 .1.as_deref(), Some("kv"));
    assert_eq!(responses(&out).len(), 1);
}

fn detect_with(
    egress: &[Segment],
    ingress: &[Segment],
    role: Role,
    remote_port: Option<u16>,
) -> &'static str {
    let limits = AllLimits::default();
    let start = Start {
        egress,
        ingress,
        closed: false,
        role,
        local: Some("127.0.0.1:40000".parse().expect("addr")),
        remote: remote_port.map(|p| std::net::SocketAddr::from(([127, 0, 0, 1], p))),
        limits: &limits,
    };
    match Postgres::detect(&start) {
        Detection::Found(p) if p.requests_egress => "client",
        Detection::Found(_) => "server",
        Detection::NeedMore => "more",
        Detection::NotMine => "no",
    }
}

#[test]
fn detection() {
    let su = [data(1, &startup("u", "d"))];
    assert_eq!(detect_with(&su, &[], Role::Unknown, None), "client");
    assert_eq!(detect_with(&[], &su, Role::Unknown, None), "server");
    assert_eq!(
        detect_with(&[data(1, &ssl_request())], &[], Role::Client, None),
        "client"
    );
    assert_eq!(
        detect_with(&[data(1, &[0, 0, 0])], &[], Role::Client, None),
        "more"
    );
    assert_eq!(
        detect_with(&[data(1, b"GET / HTTP/1.1\r\n")], &[], Role::Client, None),
        "no"
    );
    // A capture joined mid-connection: typed messages on the port hint.
    let q = [data(1, &query("SELECT 1"))];
    assert_eq!(detect_with(&q, &[], Role::Client, Some(PORT)), "client");
    assert_eq!(detect_with(&q, &[], Role::Client, Some(5433)), "no");
    // Through the dispatcher: the whole exchange.
    let mut c = ConnectionParser::with_limits(Role::Client, AllLimits::default());
    let out = c.feed(
        &[data(1, &startup("u", "d")), data(3, &query("SELECT 1"))],
        &[
            data(2, &server_hello()),
            data(4, &cat(&[complete("SELECT 1"), ready()])),
        ],
        false,
    );
    assert!(c.is_decided());
    assert_eq!(requests(&out).len(), 1);
    assert_eq!(responses(&out).len(), 1);
}

#[test]
fn function_call_answer_does_not_end_a_later_query() {
    let mut p = client();
    let call = msg(b'F', &[0, 0, 0, 42, 0, 0, 0, 0, 0, 0]);
    let out = p.feed(
        &[data(1, &call), data(2, &query("SELECT 1"))],
        &[
            data(3, &cat(&[msg(b'V', &[0, 0, 0, 0]), ready()])),
            data(4, &cat(&[data_row(1), complete("SELECT 1"), ready()])),
        ],
        false,
    );
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let resp = responses(&out);
    assert_eq!(resp.len(), 1);
    assert_eq!((resp[0].1.rows, resp[0].3), (1, 4));
}

#[test]
fn tls_plaintext_after_the_ssl_answer_is_read() {
    let mut p = fresh();
    let out = p.feed(
        &[
            data(1, &ssl_request()),
            data(3, b"\x16\x03\x01\x02\x00\x01\x00"),
        ],
        &[data(2, b"S"), data(4, b"\x16\x03\x03\x00\x7a\x02\x00")],
        false,
    );
    assert_eq!(out.errors, vec!["postgres_tls"]);
    // Then the plaintext rows of the TLS library: startup, a query, its answer.
    let out = p.feed(
        &[
            data(5, &startup("u", "secure")),
            data(7, &query("SELECT 1")),
        ],
        &[
            data(6, &server_hello()),
            data(8, &cat(&[data_row(1), complete("SELECT 1"), ready()])),
        ],
        false,
    );
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(requests(&out)[0].1 .3.as_deref(), Some("secure"));
    assert_eq!(responses(&out).len(), 1);
}
