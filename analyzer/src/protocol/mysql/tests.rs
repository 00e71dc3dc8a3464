//! MySQL parser tests on hand-built packets (the recorded MariaDB traffic is the golden
//! test's).

use super::*;
use crate::protocol::{Limits as AllLimits, MessageEvent};

const CLIENT: u32 = cap::PROTOCOL_41 | cap::SECURE_CONNECTION | cap::CONNECT_WITH_DB;

fn packet(seq: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = (payload.len() as u32).to_le_bytes()[..3].to_vec();
    v.push(seq);
    v.extend_from_slice(payload);
    v
}

fn seg(ts: u64, b: Vec<u8>) -> Segment {
    Segment::Data {
        ts_ns: ts,
        tid: 1,
        bytes: b,
    }
}

fn greeting(version: &str, caps: u32) -> Vec<u8> {
    let mut p = vec![10];
    p.extend_from_slice(version.as_bytes());
    p.push(0);
    p.extend_from_slice(&42u32.to_le_bytes());
    p.extend_from_slice(b"abcdefgh\0");
    p.extend_from_slice(&(caps as u16).to_le_bytes());
    p.push(8);
    p.extend_from_slice(&2u16.to_le_bytes());
    p.extend_from_slice(&((caps >> 16) as u16).to_le_bytes());
    p.push(21);
    p.extend_from_slice(&[0; 10]);
    p.extend_from_slice(b"ijklmnopqrst\0mysql_native_password\0");
    packet(0, &p)
}

fn login(caps: u32, db: &str) -> Vec<u8> {
    let mut p = caps.to_le_bytes().to_vec();
    p.extend_from_slice(&(1u32 << 24).to_le_bytes());
    p.push(8);
    p.extend_from_slice(&[0; 23]);
    p.extend_from_slice(b"app\0");
    p.push(20);
    p.extend_from_slice(&[7; 20]);
    p.extend_from_slice(db.as_bytes());
    p.push(0);
    packet(1, &p)
}

fn ok(seq: u8, status: u16) -> Vec<u8> {
    let mut p = vec![0, 0, 0];
    p.extend_from_slice(&status.to_le_bytes());
    p.extend_from_slice(&[0, 0]);
    packet(seq, &p)
}

fn eof(seq: u8, status: u16) -> Vec<u8> {
    let mut p = vec![0xfe, 0, 0];
    p.extend_from_slice(&status.to_le_bytes());
    packet(seq, &p)
}

fn err(seq: u8, code: u16, state: &str, msg: &str) -> Vec<u8> {
    let mut p = vec![0xff];
    p.extend_from_slice(&code.to_le_bytes());
    p.push(b'#');
    p.extend_from_slice(state.as_bytes());
    p.extend_from_slice(msg.as_bytes());
    packet(seq, &p)
}

fn query(sql: &str) -> Vec<u8> {
    let mut p = vec![com::QUERY];
    p.extend_from_slice(sql.as_bytes());
    packet(0, &p)
}

fn column(seq: u8) -> Vec<u8> {
    packet(
        seq,
        b"\x03def\x04shop\x05users\x05users\x02id\x02id\x0c?\0\x0b\0\0\0\x03\0\0\0\0\0",
    )
}

/// A text result set of `rows` rows of one column, from sequence 1.
fn result_set(rows: usize, deprecate_eof: bool) -> Vec<u8> {
    let mut v = packet(1, &[1]);
    v.extend(column(2));
    let mut seq = 3;
    if !deprecate_eof {
        v.extend(eof(seq, 2));
        seq += 1;
    }
    for i in 0..rows {
        v.extend(packet(seq, format!("\x01{}", i % 10).as_bytes()));
        seq += 1;
    }
    if deprecate_eof {
        let mut p = vec![0xfe, 0, 0];
        p.extend_from_slice(&2u16.to_le_bytes());
        p.extend_from_slice(&[0, 0]);
        v.extend(packet(seq, &p));
    } else {
        v.extend(eof(seq, 2));
    }
    v
}

/// Requests and responses of a conversation (client bytes, server bytes) fed in turns.
fn run(
    turns: &[(Vec<u8>, Vec<u8>)],
    server_caps: u32,
    client_caps: u32,
) -> (Vec<MysqlCommand>, Vec<MysqlReply>, Vec<&'static str>) {
    let mut m = Mysql::new(true, true, Limits::default());
    let mut events = Vec::new();
    let mut errors = Vec::new();
    let mut ts = 1;
    let mut feed = |m: &mut Mysql, e: Vec<u8>, i: Vec<u8>| {
        let mut eg = Vec::new();
        let mut ig = Vec::new();
        if !e.is_empty() {
            eg.push(seg(ts, e));
        }
        ts += 1;
        if !i.is_empty() {
            ig.push(seg(ts, i));
        }
        ts += 1;
        let out = m.feed(&eg, &ig, false);
        events.extend(out.events);
        errors.extend(out.errors);
    };
    feed(
        &mut m,
        Vec::new(),
        greeting("5.5.5-10.11.6-MariaDB-0+deb12u1", server_caps),
    );
    feed(&mut m, login(client_caps, "shop"), ok(2, 2));
    for (c, s) in turns {
        feed(&mut m, c.clone(), s.clone());
    }
    let out = m.feed(&[], &[], true);
    events.extend(out.events);
    errors.extend(out.errors);
    let mut cmds = Vec::new();
    let mut reps = Vec::new();
    for e in events {
        match e {
            MessageEvent::Request {
                request:
                    Request {
                        detail: RequestDetail::Mysql(c),
                        ..
                    },
                ..
            } => cmds.push(c),
            MessageEvent::Response {
                response:
                    Response {
                        detail: ResponseDetail::Mysql(r),
                        ..
                    },
                ..
            } => reps.push(r),
            other => panic!("unexpected {other:?}"),
        }
    }
    (cmds, reps, errors)
}

#[test]
fn queries_result_sets_and_errors() {
    for deprecate in [false, true] {
        let caps = CLIENT | if deprecate { cap::DEPRECATE_EOF } else { 0 };
        let (cmds, reps, errors) = run(
            &[
                (
                    query("SELECT id FROM users WHERE name = 'bob'"),
                    result_set(3, deprecate),
                ),
                (query("UPDATE users SET n = 2"), ok(1, 2)),
                (
                    query("SELEC 1"),
                    err(1, 1064, "42000", "You have an error in your SQL syntax"),
                ),
                (packet(0, &[com::PING]), ok(1, 2)),
            ],
            u32::MAX,
            caps,
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(cmds.len(), 4);
        assert_eq!(reps.len(), 4);
        assert_eq!(cmds[0].operation, "SELECT");
        assert_eq!(cmds[0].collection.as_deref(), Some("users"));
        assert_eq!(
            cmds[0].query.as_deref(),
            Some("SELECT id FROM users WHERE name = ?")
        );
        assert_eq!(cmds[0].database.as_deref(), Some("shop"));
        assert!(cmds[0].mariadb);
        assert_eq!(reps[0].rows, Some(3));
        assert_eq!(reps[1].rows, None);
        assert_eq!(cmds[2].operation, "SELEC");
        assert_eq!(reps[2].error_code, Some(1064));
        assert_eq!(reps[2].sql_state.as_deref(), Some("42000"));
        assert_eq!(cmds[3].operation, "PING");
    }
}

#[test]
fn prepared_statements_keep_their_sql() {
    let prepare = {
        let mut p = vec![com::STMT_PREPARE];
        p.extend_from_slice(b"SELECT id FROM users WHERE id = ?");
        packet(0, &p)
    };
    // OK: statement 7, 1 column, 1 parameter; then the definitions with their EOFs.
    let mut prep_ok = packet(1, &[0, 7, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0]);
    prep_ok.extend(column(2));
    prep_ok.extend(eof(3, 2));
    prep_ok.extend(column(4));
    prep_ok.extend(eof(5, 2));
    let execute = packet(0, &[com::STMT_EXECUTE, 7, 0, 0, 0, 0, 1, 0, 0, 0]);
    // A binary result set: rows start with 0x00.
    let mut rs = packet(1, &[1]);
    rs.extend(column(2));
    rs.extend(eof(3, 2));
    rs.extend(packet(4, &[0, 0, 5, 0, 0, 0]));
    rs.extend(eof(5, 2));
    let close = packet(0, &[com::STMT_CLOSE, 7, 0, 0, 0]);
    let (cmds, reps, errors) = run(
        &[
            (prepare, prep_ok),
            (execute.clone(), rs),
            (close, Vec::new()),
            (
                execute,
                err(1, 1243, "HY000", "Unknown prepared statement handler"),
            ),
        ],
        u32::MAX,
        CLIENT,
    );
    assert_eq!(errors, vec!["mysql_unknown_statement"]);
    let ops: Vec<&str> = cmds.iter().map(|c| c.operation.as_str()).collect();
    assert_eq!(ops, ["PREPARE", "SELECT", "EXECUTE"]);
    assert_eq!(cmds[1].collection.as_deref(), Some("users"));
    assert_eq!(
        cmds[1].query.as_deref(),
        Some("SELECT id FROM users WHERE id = ?")
    );
    assert_eq!(reps.len(), 3);
    assert_eq!(reps[1].rows, Some(1));
    assert_eq!(reps[2].error_code, Some(1243));
}

#[test]
fn init_db_and_use_change_the_namespace() {
    let mut init = vec![com::INIT_DB];
    init.extend_from_slice(b"other");
    let (cmds, _, errors) = run(
        &[
            (packet(0, &init), ok(1, 2)),
            (query("SELECT 1"), result_set(1, false)),
            (query("USE `third`"), ok(1, 2)),
            (query("SELECT 2"), result_set(1, false)),
            (
                query("USE missing"),
                err(1, 1049, "42000", "Unknown database"),
            ),
            (query("SELECT 3"), result_set(1, false)),
        ],
        u32::MAX,
        CLIENT,
    );
    assert!(errors.is_empty(), "{errors:?}");
    let dbs: Vec<Option<&str>> = cmds.iter().map(|c| c.database.as_deref()).collect();
    assert_eq!(
        dbs,
        [
            Some("shop"),
            Some("other"),
            Some("other"),
            Some("third"),
            Some("third"),
            Some("third")
        ]
    );
    assert_eq!(cmds[0].operation, "USE");
}

#[test]
fn multiple_results_and_local_infile() {
    let mut two = result_set(1, false);
    // The first result set's final EOF says more results follow.
    let n = two.len();
    two[n - 2] = (SERVER_MORE_RESULTS_EXISTS | 2) as u8;
    // Sequence ids go on after the first set (5 packets).
    two.extend(renumber(&result_set(2, false), 6));
    let mut infile = packet(1, &[0xfb, b'/', b'x']);
    infile.extend(ok(4, 2));
    let (cmds, reps, errors) = run(
        &[
            (query("CALL p()"), two),
            (
                {
                    let mut c = query("LOAD DATA LOCAL INFILE '/x' INTO TABLE t");
                    c.extend(packet(2, b"1,2\n"));
                    c.extend(packet(3, b""));
                    c
                },
                infile,
            ),
        ],
        u32::MAX,
        CLIENT,
    );
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(cmds.len(), 2);
    assert_eq!(reps[0].rows, Some(3));
    assert_eq!(cmds[1].operation, "LOAD");
    assert_eq!(reps.len(), 2);
}

/// Rewrites the sequence ids of consecutive packets to start at `from`.
fn renumber(wire: &[u8], from: u8) -> Vec<u8> {
    let mut out = wire.to_vec();
    let mut i = 0;
    let mut seq = from;
    while i + 4 <= out.len() {
        let len = u32::from_le_bytes([out[i], out[i + 1], out[i + 2], 0]) as usize;
        out[i + 3] = seq;
        seq = seq.wrapping_add(1);
        i += 4 + len;
    }
    out
}

#[test]
fn tls_and_compression_are_skipped_and_counted() {
    let mut ssl = (CLIENT | cap::SSL).to_le_bytes().to_vec();
    ssl.extend_from_slice(&[0; 28]);
    let mut m = Mysql::new(true, true, Limits::default());
    let out = m.feed(
        &[
            seg(2, packet(1, &ssl)),
            seg(4, vec![0x16, 3, 1, 2, 0, 1, 2, 3]),
        ],
        &[seg(1, greeting("8.0.36", u32::MAX))],
        true,
    );
    assert_eq!(out.errors, vec!["mysql_tls"]);
    assert!(out.events.is_empty());
    let mut m = Mysql::new(true, true, Limits::default());
    let out = m.feed(
        &[seg(2, login(CLIENT | cap::COMPRESS, "x"))],
        &[seg(1, greeting("8.0.36", u32::MAX))],
        false,
    );
    assert_eq!(out.errors, vec!["mysql_compressed"]);
    assert!(!m.mariadb);
}

#[test]
fn authentication_rounds_are_passed_over() {
    let mut m = Mysql::new(false, true, Limits::default());
    // The server's socket: egress is the server.
    let out = m.feed(
        &[
            seg(1, greeting("8.0.36", u32::MAX)),
            seg(3, packet(2, b"\xfecaching_sha2_password\0salt")),
            seg(5, packet(4, b"\x01\x03")),
            seg(7, ok(6, 2)),
            seg(9, ok(1, 2)),
        ],
        &[
            seg(2, login(CLIENT, "shop")),
            seg(4, packet(3, &[9; 32])),
            seg(6, packet(5, b"pw")),
            seg(8, packet(0, &[com::PING])),
        ],
        false,
    );
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(out.role, Some(Role::Server));
    assert_eq!(out.events.len(), 2);
}

#[test]
fn detection_from_the_greeting_or_a_command_on_the_port() {
    let limits = AllLimits::default();
    let g = vec![seg(1, greeting("5.5.5-10.11.6-MariaDB", u32::MAX))];
    let start = |egress: &'static [Segment], ingress, role, remote| Start {
        egress,
        ingress,
        closed: false,
        role,
        local: None,
        remote,
        limits: &limits,
    };
    let g: &'static [Segment] = Box::leak(g.into_boxed_slice());
    match Mysql::detect(&start(&[], g, Role::Unknown, None)) {
        Detection::Found(m) => assert!(m.requests_egress),
        other => panic!("{other:?}"),
    }
    match Mysql::detect(&start(g, &[], Role::Unknown, None)) {
        Detection::Found(m) => assert!(!m.requests_egress),
        other => panic!("{other:?}"),
    }
    // Nothing yet, or half a greeting: wait.
    assert!(matches!(
        Mysql::detect(&start(&[], &[], Role::Client, None)),
        Detection::NeedMore
    ));
    let half: &'static [Segment] =
        Box::leak(vec![seg(1, greeting("8.0.36", 0)[..7].to_vec())].into_boxed_slice());
    assert!(matches!(
        Mysql::detect(&start(&[], half, Role::Client, None)),
        Detection::NeedMore
    ));
    // HTTP is not MySQL.
    let http: &'static [Segment] =
        Box::leak(vec![seg(1, b"GET / HTTP/1.1\r\n\r\n".to_vec())].into_boxed_slice());
    assert!(matches!(
        Mysql::detect(&start(http, &[], Role::Client, None)),
        Detection::NotMine
    ));
    // A connection joined late: a command on port 3306.
    let q: &'static [Segment] = Box::leak(vec![seg(1, query("SELECT 1"))].into_boxed_slice());
    let port = Some("127.0.0.1:3306".parse().expect("addr"));
    assert!(matches!(
        Mysql::detect(&start(q, &[], Role::Client, port)),
        Detection::Found(_)
    ));
    assert!(matches!(
        Mysql::detect(&start(q, &[], Role::Client, None)),
        Detection::NotMine
    ));
}

#[test]
fn a_connection_joined_late_learns_deprecate_eof() {
    // No greeting: commands from the first packet, CLIENT_DEPRECATE_EOF unknown.
    let mut m = Mysql::new(true, false, Limits::default());
    let mut events = Vec::new();
    let mut errors = Vec::new();
    for (ts, (c, s)) in [
        (query("SELECT id FROM users"), result_set(2, true)),
        (query("SELECT id FROM users"), result_set(3, true)),
    ]
    .into_iter()
    .enumerate()
    {
        let ts = ts as u64 * 10;
        let out = m.feed(&[seg(ts + 1, c)], &[seg(ts + 2, s)], false);
        events.extend(out.events);
        errors.extend(out.errors);
    }
    assert!(errors.is_empty(), "{errors:?}");
    let rows: Vec<Option<u64>> = events
        .iter()
        .filter_map(|e| match e {
            MessageEvent::Response { response, .. } => match &response.detail {
                ResponseDetail::Mysql(r) => Some(r.rows),
                _ => None,
            },
            _ => None,
        })
        .collect();
    assert_eq!(rows, [Some(2), Some(3)]);
}

#[test]
fn query_text_modes_and_credentials() {
    let parse = |mode: QueryText, sql: &str| {
        let m = Mysql::new(true, true, Limits::default()).with_query_text(mode);
        m.statement(sql, false).query
    };
    let q = "SELECT * FROM t WHERE a = 'x'";
    assert_eq!(
        parse(QueryText::Sanitized, q).as_deref(),
        Some("SELECT * FROM t WHERE a = ?")
    );
    assert_eq!(parse(QueryText::Raw, q).as_deref(), Some(q));
    assert_eq!(parse(QueryText::Off, q), None);
    // Raw keeps no password.
    assert_eq!(
        parse(QueryText::Raw, "CREATE USER u IDENTIFIED BY 'pw'").as_deref(),
        Some("CREATE USER u IDENTIFIED BY ?")
    );
    assert_eq!(
        parse(QueryText::Raw, "set password = PASSWORD('pw')").as_deref(),
        Some("set password = PASSWORD(?)")
    );
    // A statement cut at the kept prefix says so.
    let m = Mysql::new(true, true, Limits::default());
    assert_eq!(
        m.statement("SELECT 1", true).query.as_deref(),
        Some("SELECT ?…")
    );
}

#[test]
fn change_user_and_long_data() {
    let mut change = vec![com::CHANGE_USER];
    change.extend_from_slice(b"other\0\x14");
    change.extend_from_slice(&[1; 20]);
    // Auth switch, the client's answer (sequence 2), then OK.
    let mut reply = packet(1, b"\xfemysql_native_password\0salt");
    reply.extend(ok(3, 2));
    let mut client = packet(0, &change);
    client.extend(packet(2, &[5; 20]));
    let (cmds, reps, errors) = run(
        &[
            (client, reply),
            // No reply: no request.
            (
                packet(0, &[com::STMT_SEND_LONG_DATA, 1, 0, 0, 0, 0, 0, b'x']),
                Vec::new(),
            ),
            (packet(0, &[com::PING]), ok(1, 2)),
        ],
        u32::MAX,
        CLIENT,
    );
    assert!(errors.is_empty(), "{errors:?}");
    let ops: Vec<&str> = cmds.iter().map(|c| c.operation.as_str()).collect();
    assert_eq!(ops, ["CHANGE_USER", "PING"]);
    assert_eq!(reps.len(), 2);
}

#[test]
fn hostile_bytes_never_panic() {
    let mut x: u32 = 7;
    for round in 0..300 {
        let mut m = Mysql::new(round % 2 == 0, round % 3 != 0, Limits::default());
        for _ in 0..20 {
            let mut b = Vec::new();
            for _ in 0..(x % 64) {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                b.push(((x % 7) as u8).wrapping_mul(0x2b));
            }
            let _ = m.feed(&[seg(1, b.clone())], &[seg(2, b)], false);
        }
        let _ = m.feed(&[], &[], true);
    }
}

/// The commands and replies among `events`.
fn split(events: Vec<MessageEvent>) -> (Vec<MysqlCommand>, Vec<MysqlReply>) {
    let mut cmds = Vec::new();
    let mut reps = Vec::new();
    for e in events {
        match e {
            MessageEvent::Request {
                request:
                    Request {
                        detail: RequestDetail::Mysql(c),
                        ..
                    },
                ..
            } => cmds.push(c),
            MessageEvent::Response {
                response:
                    Response {
                        detail: ResponseDetail::Mysql(r),
                        ..
                    },
                ..
            } => reps.push(r),
            other => panic!("unexpected {other:?}"),
        }
    }
    (cmds, reps)
}

/// The HandshakeResponse41 a client sends over TLS after its SSLRequest (sequence 2).
fn tls_login(db: &str) -> Vec<u8> {
    let mut p = login(CLIENT | cap::SSL, db);
    p[3] = 2;
    p
}

#[test]
fn tls_plaintext_after_the_ssl_request_is_read() {
    let mut ssl = (CLIENT | cap::SSL).to_le_bytes().to_vec();
    ssl.extend_from_slice(&(1u32 << 24).to_le_bytes());
    ssl.extend_from_slice(&[8; 1]);
    ssl.extend_from_slice(&[0; 23]);
    let mut m = Mysql::new(true, true, Limits::default());
    // The socket's cleartext start, then its TLS records (handed out before any plaintext).
    let out = m.feed(
        &[
            seg(2, packet(1, &ssl)),
            seg(3, vec![0x16, 3, 1, 2, 0]),
            seg(4, vec![1; 512]),
        ],
        &[
            seg(1, greeting("5.5.5-10.11.6-MariaDB-0+deb12u1", u32::MAX)),
            seg(5, vec![0x16, 3, 3, 0, 0x7a]),
            seg(6, vec![2, 0, 0, 0, 0, 0, 0]),
        ],
        false,
    );
    assert_eq!(out.errors, vec!["mysql_tls"]);
    assert!(out.events.is_empty());
    // Then the TLS library's plaintext: the login (sequence 2, continuing the SSLRequest's
    // 1), an authentication switch round, the OK, and commands.
    let out = m.feed(
        &[
            seg(10, tls_login("shop")),
            seg(12, packet(4, &[7; 20])),
            seg(14, query("SELECT id FROM users WHERE id = 7")),
            seg(16, query("INSERT INTO orders VALUES (1)")),
        ],
        &[
            seg(11, packet(3, b"\xfemysql_native_password\0salt")),
            seg(13, ok(5, 2)),
            seg(15, result_set(2, false)),
            seg(17, ok(1, 2)),
        ],
        true,
    );
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let (cmds, reps) = split(out.events);
    assert_eq!(cmds.len(), 2);
    assert_eq!(reps.len(), 2);
    assert_eq!(
        (cmds[0].operation.as_str(), cmds[0].collection.as_deref()),
        ("SELECT", Some("users"))
    );
    assert_eq!(
        (cmds[1].operation.as_str(), cmds[1].collection.as_deref()),
        ("INSERT", Some("orders"))
    );
    assert_eq!(cmds[0].database.as_deref(), Some("shop"));
    // The greeting was seen before the switch: the server is known.
    assert!(cmds[0].mariadb);
    assert_eq!(reps[0].rows, Some(2));
}

#[test]
fn ciphertext_alone_stays_passed_over() {
    let mut ssl = (CLIENT | cap::SSL).to_le_bytes().to_vec();
    ssl.extend_from_slice(&[0; 28]);
    let mut m = Mysql::new(true, true, Limits::default());
    // A segment shaped like a packet of sequence 2 but not a login (the filler is not
    // zero), and an SSLRequest-sized one: both stay ciphertext.
    let mut fake = tls_login("x");
    fake[20] = 9;
    let out = m.feed(
        &[
            seg(2, packet(1, &ssl)),
            seg(3, fake),
            seg(4, packet(2, &ssl)),
            seg(5, query("SELECT 1")),
        ],
        &[seg(1, greeting("8.0.36", u32::MAX)), seg(6, ok(1, 2))],
        true,
    );
    assert_eq!(out.errors, vec!["mysql_tls"]);
    assert!(out.events.is_empty());
}

#[test]
fn tls_plaintext_alone_is_detected_and_read() {
    // The reassembler dropped the cleartext greeting and SSLRequest (they came in the batch
    // of the first plaintext row): the streams start with the plaintext login.
    let limits = AllLimits::default();
    let c = [seg(10, tls_login("shop"))];
    let s = [seg(11, ok(3, 2))];
    for (egress, ingress, role, requests_egress) in [
        (&c[..], &s[..], Role::Unknown, true),
        (&s[..], &c[..], Role::Server, false),
    ] {
        let start = Start {
            egress,
            ingress,
            closed: false,
            role,
            local: None,
            remote: None,
            limits: &limits,
        };
        let mut m = match Mysql::detect(&start) {
            Detection::Found(m) => m,
            other => panic!("{other:?}"),
        };
        assert_eq!(m.requests_egress, requests_egress);
        let q = [seg(12, query("UPDATE users SET n = 1"))];
        let r = [seg(13, ok(1, 2))];
        let (e1, i1, e2, i2) = if requests_egress {
            (&c[..], &s[..], &q[..], &r[..])
        } else {
            (&s[..], &c[..], &r[..], &q[..])
        };
        let mut out = m.feed(e1, i1, false);
        let more = m.feed(e2, i2, true);
        out.events.extend(more.events);
        out.errors.extend(more.errors);
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        let (cmds, reps) = split(out.events);
        assert_eq!(cmds.len(), 1);
        assert_eq!(reps.len(), 1);
        assert_eq!(cmds[0].operation, "UPDATE");
        assert_eq!(cmds[0].database.as_deref(), Some("shop"));
        assert!(!cmds[0].mariadb);
    }
    // A MariaDB connector's login (extended capabilities in the filler's last 4 bytes)
    // tells the server is MariaDB.
    let mut m = Mysql::after_tls(true, Limits::default());
    let mut l = tls_login("shop");
    l[4 + 28] = 0x04;
    let out = m.feed(
        &[seg(10, l), seg(12, query("SELECT 1"))],
        &[seg(11, ok(3, 2)), seg(13, ok(1, 2))],
        true,
    );
    let (cmds, _) = split(out.events);
    assert!(cmds[0].mariadb);
    // A cleartext login (sequence 1) or a TLS record is no such start.
    assert!(!looks_like_tls_login(&login(CLIENT | cap::SSL, "shop")));
    assert!(!looks_like_tls_login(&[0x17, 3, 3, 2, 0, 1, 2, 3]));
    assert!(looks_like_tls_login(&tls_login("")));
}
