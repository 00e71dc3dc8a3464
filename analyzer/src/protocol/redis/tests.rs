//! Redis parser tests: commands and replies, pipelining, errors, partial input, RESP3,
//! transactions, bounds, detection.

use podtrace_format::Role;

use super::*;
use crate::protocol::{ConnectionParser, Limits as AllLimits};

fn data(ts: u64, b: &[u8]) -> Segment {
    Segment::Data {
        ts_ns: ts,
        tid: 0,
        bytes: b.to_vec(),
    }
}

/// RESP encoding of a command, as clients send it.
fn cmd(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend(format!("${}\r\n{a}\r\n", a.len()).into_bytes());
    }
    out
}

fn commands(out: &Output) -> Vec<(String, String, u32)> {
    out.events
        .iter()
        .filter_map(|e| match e {
            MessageEvent::Request {
                request:
                    Request {
                        detail: RequestDetail::Redis(c),
                        ..
                    },
                ..
            } => Some((
                c.operation.clone(),
                c.query.clone().unwrap_or_default(),
                c.database,
            )),
            _ => None,
        })
        .collect()
}

fn replies(out: &Output) -> Vec<(Option<String>, u32, u64)> {
    out.events
        .iter()
        .filter_map(|e| match e {
            MessageEvent::Response {
                response:
                    r @ Response {
                        detail: ResponseDetail::Redis(x),
                        ..
                    },
                ..
            } => Some((x.error.clone(), x.nested_errors, r.end_ts)),
            _ => None,
        })
        .collect()
}

#[test]
fn pipelined_commands_and_replies_in_order() {
    let mut r = Redis::new(true, Limits::default());
    let mut req = cmd(&["SET", "user:1", "alice"]);
    req.extend(cmd(&["GET", "user:1"]));
    req.extend(cmd(&["LPUSH", "user:1", "x"]));
    let out = r.feed(
        &[data(1, &req)],
        &[data(
            2,
            b"+OK\r\n$5\r\nalice\r\n-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
        )],
        false,
    );
    assert_eq!(out.role, Some(Role::Client));
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(
        commands(&out),
        vec![
            ("SET".into(), "SET user:1 ?".into(), 0),
            ("GET".into(), "GET user:1".into(), 0),
            ("LPUSH".into(), "LPUSH user:1 ?".into(), 0),
        ]
    );
    let rep = replies(&out);
    assert_eq!(rep.len(), 3);
    assert_eq!(rep[0].0, None);
    assert!(rep[2]
        .0
        .as_deref()
        .is_some_and(|e| e.starts_with("WRONGTYPE")));
}

#[test]
fn partial_input_across_segments_keeps_times() {
    let mut r = Redis::new(true, Limits::default());
    let req = cmd(&["HSET", "h", "f", "v"]);
    let mut total = Output::default();
    for (i, chunk) in req.chunks(3).enumerate() {
        let out = r.feed(&[data(10 + i as u64, chunk)], &[], false);
        total.events.extend(out.events);
    }
    let reply = b":1\r\n";
    let a = r.feed(&[], &[data(50, &reply[..2])], false);
    assert!(a.events.is_empty());
    let b = r.feed(&[], &[data(51, &reply[2..])], false);
    let cmds = commands(&total);
    assert_eq!(cmds, vec![("HSET".into(), "HSET h ? ?".into(), 0)]);
    let MessageEvent::Request { request, .. } = &total.events[0] else {
        panic!("request expected")
    };
    let last = 10 + (req.len() as u64 - 1) / 3;
    assert_eq!((request.start_ts, request.end_ts), (10, last));
    assert_eq!(replies(&b), vec![(None, 0, 51)]);
}

#[test]
fn select_sets_the_namespace_of_later_commands() {
    let mut r = Redis::new(true, Limits::default());
    let mut req = cmd(&["GET", "a"]);
    req.extend(cmd(&["SELECT", "3"]));
    req.extend(cmd(&["GET", "a"]));
    let out = r.feed(&[data(1, &req)], &[], false);
    let dbs: Vec<u32> = commands(&out).iter().map(|c| c.2).collect();
    assert_eq!(dbs, vec![0, 0, 3]);
}

#[test]
fn multi_exec_with_a_failed_queued_command() {
    let mut r = Redis::new(true, Limits::default());
    let mut req = cmd(&["MULTI"]);
    req.extend(cmd(&["SET", "k", "v"]));
    req.extend(cmd(&["LPUSH", "k", "x"]));
    req.extend(cmd(&["EXEC"]));
    let out = r.feed(
        &[data(1, &req)],
        &[data(
            2,
            b"+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n+OK\r\n-WRONGTYPE Operation against a key\r\n",
        )],
        false,
    );
    assert_eq!(commands(&out).len(), 4);
    let rep = replies(&out);
    assert_eq!(rep.len(), 4);
    assert_eq!((rep[3].0.clone(), rep[3].1), (None, 1));
}

#[test]
fn resp3_types_pushes_and_attributes() {
    let mut r = Redis::new(true, Limits::default());
    let mut req = cmd(&["HELLO", "3"]);
    req.extend(cmd(&["HGETALL", "h"]));
    req.extend(cmd(&["EXISTS", "h"]));
    req.extend(cmd(&["GET", "nope"]));
    req.extend(cmd(&["INCRBYFLOAT", "f", "1.5"]));
    req.extend(cmd(&["EVAL", "x", "0"]));
    // HELLO: a map with nested values; HGETALL: a map; a push (not a reply); EXISTS: a
    // boolean after an attribute; GET: null; a double; a bulk error.
    let rep = b"%2\r\n$6\r\nserver\r\n$5\r\nredis\r\n$5\r\nproto\r\n:3\r\n\
%1\r\n$1\r\nf\r\n$1\r\nv\r\n\
>3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\nm\r\n\
|1\r\n+key-popularity\r\n%1\r\n$1\r\nh\r\n,0.5\r\n#t\r\n\
_\r\n\
,2.5\r\n\
!21\r\nSYNTAX invalid syntax\r\n";
    let out = r.feed(&[data(1, &req)], &[data(2, rep)], false);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let rep = replies(&out);
    assert_eq!(rep.len(), 6, "the push is not a reply: {rep:?}");
    assert_eq!(rep[5].0.as_deref(), Some("SYNTAX invalid syntax"));
    assert!(rep[..5].iter().all(|r| r.0.is_none()));
}

#[test]
fn huge_bulk_strings_are_skipped_by_length_not_buffered() {
    let mut r = Redis::new(true, Limits::default());
    let big = "v".repeat(1 << 20);
    let req = cmd(&["SET", "big", &big]);
    let mut out = Output::default();
    for chunk in req.chunks(64 * 1024) {
        out.events
            .extend(r.feed(&[data(1, chunk)], &[], false).events);
        // Nothing of the value is kept: only the bounded prefixes of the elements.
        assert!(r.requests.in_message() || out.events.len() == 1);
    }
    let m = r.feed(&[Segment::Missing { ts_ns: 2, len: 10 }], &[], false);
    assert!(m.errors.contains(&"redis_missing_bytes"));
    assert_eq!(commands(&out), vec![("SET".into(), "SET big ?".into(), 0)]);
    let MessageEvent::Request { request, .. } = &out.events[0] else {
        panic!("request expected")
    };
    assert_eq!(request.body_size, req.len() as u64);
}

#[test]
fn snaplen_cut_inside_a_value_is_skipped() {
    let mut r = Redis::new(true, Limits::default());
    let req = cmd(&["SET", "k", &"v".repeat(100)]);
    let cut = 30;
    let out = r.feed(
        &[
            data(1, &req[..cut]),
            Segment::Missing {
                ts_ns: 1,
                len: (req.len() - cut - 2) as u64,
            },
            data(1, b"\r\n"),
        ],
        &[],
        false,
    );
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let MessageEvent::Request { request, .. } = &out.events[0] else {
        panic!("request expected")
    };
    assert!(request.truncated);
}

#[test]
fn malformed_input_is_counted_and_the_next_segment_resynchronises() {
    let mut r = Redis::new(true, Limits::default());
    let out = r.feed(
        &[
            data(1, b"*2\r\n$3\r\nGET\r\n$x\r\n"),
            data(2, &cmd(&["PING"])),
        ],
        &[],
        false,
    );
    assert_eq!(out.errors, vec!["redis_malformed"]);
    assert_eq!(commands(&out), vec![("PING".into(), "PING".into(), 0)]);
    // An over-long line and too deep nesting are bounded.
    let mut r = Redis::new(
        false,
        Limits {
            max_line: 16,
            max_depth: 2,
            ..Limits::default()
        },
    );
    let out = r.feed(
        &[
            data(1, b"+aaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n"),
            data(2, b"*1\r\n*1\r\n*1\r\n:1\r\n"),
        ],
        &[],
        false,
    );
    assert_eq!(out.errors, vec!["redis_line_too_long", "redis_too_deep"]);
    // A message cut by the end of the stream.
    let mut r = Redis::new(true, Limits::default());
    let out = r.feed(&[data(1, b"*2\r\n$3\r\nGET\r\n")], &[], true);
    assert_eq!(out.errors, vec!["redis_incomplete"]);
}

#[test]
fn inline_commands_and_gaps() {
    let mut r = Redis::new(false, Limits::default());
    let out = r.feed(&[data(2, b"+PONG\r\n")], &[data(1, b"PING\r\n")], false);
    assert_eq!(out.role, Some(Role::Server));
    assert_eq!(commands(&out), vec![("PING".into(), "PING".into(), 0)]);
    assert_eq!(replies(&out).len(), 1);
    let out = r.feed(
        &[],
        &[
            data(3, b"*2\r\n$3\r\nGET"),
            Segment::Gap { ts_ns: 4 },
            data(5, &cmd(&["GET", "b"])),
        ],
        false,
    );
    assert_eq!(out.errors, vec!["redis_gap"]);
    assert_eq!(commands(&out), vec![("GET".into(), "GET b".into(), 0)]);
}

#[test]
fn subscribed_connections_stop_giving_exchanges() {
    let mut r = Redis::new(true, Limits::default());
    let mut req = cmd(&["GET", "a"]);
    req.extend(cmd(&["SUBSCRIBE", "ch"]));
    let out = r.feed(
        &[data(1, &req)],
        &[data(
            2,
            b"$-1\r\n*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$1\r\nx\r\n",
        )],
        false,
    );
    assert_eq!(commands(&out).len(), 1);
    assert_eq!(replies(&out).len(), 1);
    assert_eq!(out.errors, vec!["redis_pubsub"]);
}

#[test]
fn detection_by_command_array_or_port() {
    let limits = AllLimits::default();
    // A client's command array.
    let mut p = ConnectionParser::with_limits(Role::Unknown, limits);
    let out = p.feed(&[data(1, &cmd(&["PING"]))], &[], false);
    assert_eq!(commands(&out).len(), 1);
    assert_eq!(out.role, Some(Role::Client));
    // A prefix waits; then the server side of the same bytes.
    let mut p = ConnectionParser::with_limits(Role::Unknown, limits);
    assert_eq!(p.feed(&[], &[data(1, b"*1\r")], false), Output::default());
    let out = p.feed(&[], &[data(2, b"\n$4\r\nPING\r\n")], false);
    assert_eq!(out.role, Some(Role::Server));
    assert_eq!(commands(&out).len(), 1);
    // An inline command is Redis only on the Redis port.
    let server: std::net::SocketAddr = "127.0.0.1:6379".parse().expect("addr");
    let client: std::net::SocketAddr = "127.0.0.1:40000".parse().expect("addr");
    let mut p = ConnectionParser::new(Role::Client, Some(client), Some(server), limits);
    let out = p.feed(&[data(1, b"PING\r\n")], &[data(2, b"+PONG\r\n")], false);
    assert_eq!((commands(&out).len(), replies(&out).len()), (1, 1));
    let mut p = ConnectionParser::new(Role::Client, Some(client), Some(client), limits);
    let out = p.feed(&[data(1, b"PING\r\n")], &[data(2, b"+PONG\r\n")], true);
    assert!(commands(&out).is_empty());
    // HTTP stays HTTP.
    let mut p = ConnectionParser::with_limits(Role::Client, limits);
    let out = p.feed(&[data(1, b"GET / HTTP/1.1\r\n\r\n")], &[], false);
    assert!(out.has_requests() && commands(&out).is_empty());
}

#[test]
fn random_bytes_never_panic() {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let alphabet = b"*$+-:_#,(!=%~>|\r\n0123456789-abc ";
    let small = Limits {
        max_line: 16,
        max_keep: 4,
        max_args: 2,
        max_depth: 3,
    };
    for round in 0..500 {
        let len = (next() % 120) as usize;
        let bytes: Vec<u8> = (0..len)
            .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
            .collect();
        let cut = (next() as usize) % (bytes.len() + 1);
        let limits = if round % 2 == 0 {
            small
        } else {
            Limits::default()
        };
        let mut r = Redis::new(round % 3 != 0, limits);
        let _ = r.feed(&[data(1, &bytes[..cut])], &[data(1, &bytes[cut..])], false);
        let _ = r.feed(
            &[
                Segment::Missing {
                    ts_ns: 2,
                    len: next() % 50,
                },
                data(3, &bytes),
            ],
            &[Segment::Gap { ts_ns: 2 }, data(3, &bytes[..cut])],
            true,
        );
    }
}

#[test]
fn query_text_sanitized_raw_or_off() {
    let req = cmd(&["SET", "k", "secret"]);
    let mut out = Vec::new();
    for mode in [QueryText::Sanitized, QueryText::Raw, QueryText::Off] {
        let mut r = Redis::new(true, Limits::default()).with_query_text(mode);
        let o = r.feed(&[data(1, &req)], &[], false);
        out.push(match &o.events[0] {
            MessageEvent::Request {
                request:
                    Request {
                        detail: RequestDetail::Redis(c),
                        ..
                    },
                ..
            } => c.query.clone(),
            other => panic!("{other:?}"),
        });
    }
    assert_eq!(
        out,
        vec![Some("SET k ?".into()), Some("SET k secret".into()), None]
    );
}
