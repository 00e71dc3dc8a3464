//! Parser tests: one per HTTP/1 feature, on real request/response bytes.

use podtrace_format::Role;

use super::*;
use crate::reassemble::Segment;

fn data(ts: u64, b: &[u8]) -> Segment {
    Segment::Data {
        ts_ns: ts,
        tid: 0,
        bytes: b.to_vec(),
    }
}

fn parse(kind: Kind, segs: &[Segment], hints: &[RequestHint]) -> (Vec<Message>, Vec<&'static str>) {
    let mut p = MessageParser::new(kind, Limits::default());
    for h in hints {
        p.push_hint(*h);
    }
    for s in segs {
        p.feed(s);
    }
    p.finish();
    (p.take_messages(), p.take_errors())
}

fn status(m: &Message) -> u16 {
    match &m.head {
        Head::Response { status, .. } => *status,
        Head::Request { .. } => 0,
    }
}

fn target(m: &Message) -> &str {
    match &m.head {
        Head::Request { target, .. } => target,
        Head::Response { .. } => "",
    }
}

#[test]
fn keep_alive_content_length_and_times() {
    let segs = [
        data(
            10,
            b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhe",
        ),
        data(20, b"llo"),
        data(30, b"GET /b?q=1 HTTP/1.1\r\nHost: x\r\n\r\n"),
    ];
    let (msgs, errs) = parse(Kind::Request, &segs, &[]);
    assert!(errs.is_empty(), "{errs:?}");
    assert_eq!(msgs.len(), 2);
    assert_eq!(target(&msgs[0]), "/a");
    assert_eq!(msgs[0].body_size, 5);
    assert_eq!((msgs[0].start_ts, msgs[0].end_ts), (10, 20));
    assert_eq!(target(&msgs[1]), "/b?q=1");
    assert_eq!((msgs[1].start_ts, msgs[1].end_ts), (30, 30));
    assert_eq!(msgs[1].header("HOST"), Some("x"));
}

#[test]
fn pipelined_requests_and_responses() {
    let reqs = [data(
        1,
        b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\nGET /3 HTTP/1.1\r\nHost: a\r\n\r\n",
    )];
    let (msgs, errs) = parse(Kind::Request, &reqs, &[]);
    assert!(errs.is_empty());
    assert_eq!(
        msgs.iter().map(target).collect::<Vec<_>>(),
        vec!["/1", "/2", "/3"]
    );
    let resps = [data(
        2,
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n!",
    )];
    let (msgs, errs) = parse(Kind::Response, &resps, &[]);
    assert!(errs.is_empty());
    assert_eq!(
        msgs.iter().map(status).collect::<Vec<_>>(),
        vec![200, 404, 200]
    );
    assert_eq!(msgs[2].body_size, 1);
}

#[test]
fn chunked_with_extensions_and_trailers_byte_by_byte() {
    let wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: abc\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n";
    let segs: Vec<Segment> = wire
        .iter()
        .enumerate()
        .map(|(i, b)| data(i as u64, &[*b]))
        .collect();
    let (msgs, errs) = parse(Kind::Response, &segs, &[]);
    assert!(errs.is_empty(), "{errs:?}");
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[0].body_size, 11);
    assert_eq!(msgs[0].start_ts, 0);
    let trailer_end = wire
        .windows(5)
        .position(|w| w == b"\r\n\r\nH")
        .map(|p| p + 3);
    assert_eq!(msgs[0].end_ts, trailer_end.expect("end") as u64);
    assert_eq!(status(&msgs[1]), 204);
}

#[test]
fn chunked_request_body() {
    let segs = [data(
        1,
        b"PUT /up HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n",
    )];
    let (msgs, errs) = parse(Kind::Request, &segs, &[]);
    assert!(errs.is_empty());
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[0].body_size, 3);
}

#[test]
fn expect_100_continue_skips_interim_response() {
    let mut c = ConnectionParser::new(Role::Client, Limits::default());
    let p1 = c.feed(
        &[data(
            1,
            b"POST /u HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n",
        )],
        &[],
        false,
    );
    assert!(p1.requests.is_empty());
    let p2 = c.feed(&[], &[data(2, b"HTTP/1.1 100 Continue\r\n\r\n")], false);
    assert!(p2.responses.is_empty());
    let p3 = c.feed(
        &[data(3, b"data")],
        &[data(
            4,
            b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
        )],
        false,
    );
    assert_eq!(p3.requests.len(), 1);
    assert_eq!(p3.requests[0].body_size, 4);
    assert_eq!(p3.responses.len(), 1);
    assert_eq!(status(&p3.responses[0]), 201);
    assert!(p3.errors.is_empty());
}

#[test]
fn head_204_304_have_no_body() {
    let segs = [data(
        1,
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nHTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\n\r\nHTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi",
    )];
    let hints = [
        RequestHint {
            head: true,
            connect: false,
        },
        RequestHint::default(),
        RequestHint::default(),
        RequestHint::default(),
    ];
    let (msgs, errs) = parse(Kind::Response, &segs, &hints);
    assert!(errs.is_empty(), "{errs:?}");
    assert_eq!(
        msgs.iter().map(status).collect::<Vec<_>>(),
        vec![200, 304, 204, 200]
    );
    assert_eq!(
        msgs.iter().map(|m| m.body_size).collect::<Vec<_>>(),
        vec![0, 0, 0, 2]
    );
}

#[test]
fn close_delimited_response_ends_at_finish() {
    let segs = [
        data(1, b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nabc"),
        data(9, b"defg"),
    ];
    let (msgs, errs) = parse(Kind::Response, &segs, &[]);
    assert!(errs.is_empty());
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].body_size, 7);
    assert_eq!(msgs[0].end_ts, 9);
}

#[test]
fn upgrade_and_connect_stop_parsing() {
    let mut c = ConnectionParser::new(Role::Server, Limits::default());
    let p = c.feed(
        &[data(2, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x05hello")],
        &[data(1, b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x85garbage-frames")],
        false,
    );
    assert_eq!(p.requests.len(), 1);
    assert_eq!(p.responses.len(), 1);
    assert_eq!(status(&p.responses[0]), 101);
    assert!(p.errors.is_empty(), "{:?}", p.errors);
    let p = c.finish();
    assert!(p.errors.is_empty());

    let mut c = ConnectionParser::new(Role::Client, Limits::default());
    let p = c.feed(
        &[data(
            1,
            b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n\x16\x03\x01tls",
        )],
        &[data(
            2,
            b"HTTP/1.1 200 Connection Established\r\n\r\n\x16\x03\x03tls",
        )],
        true,
    );
    assert_eq!((p.requests.len(), p.responses.len()), (1, 1));
    assert!(p.errors.is_empty(), "{:?}", p.errors);
}

#[test]
fn truncated_body_is_skipped_by_declared_length() {
    let segs = [
        data(1, b"HTTP/1.1 200 OK\r\nContent-Length: 20000\r\n\r\nabcd"),
        Segment::Missing {
            ts_ns: 1,
            len: 19996,
        },
        data(2, b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"),
    ];
    let (msgs, errs) = parse(Kind::Response, &segs, &[]);
    assert!(errs.is_empty(), "{errs:?}");
    assert_eq!(msgs.len(), 2);
    assert!(msgs[0].truncated);
    assert_eq!(msgs[0].body_size, 20000);
    assert_eq!(status(&msgs[1]), 201);
}

#[test]
fn truncated_chunk_keeps_sync() {
    let segs = [
        data(
            1,
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n100\r\nab",
        ),
        Segment::Missing { ts_ns: 1, len: 254 },
        data(2, b"\r\n0\r\n\r\n"),
    ];
    let (msgs, errs) = parse(Kind::Response, &segs, &[]);
    assert!(errs.is_empty(), "{errs:?}");
    assert_eq!(msgs[0].body_size, 256);
    assert!(msgs[0].truncated);
}

#[test]
fn garbage_resyncs_on_next_request() {
    let segs = [data(
        1,
        b"\x00\x01binary junk\r\nmore junk\nGET /ok HTTP/1.1\r\nHost: h\r\n\r\n",
    )];
    let (msgs, errs) = parse(Kind::Request, &segs, &[]);
    assert_eq!(msgs.len(), 1);
    assert_eq!(target(&msgs[0]), "/ok");
    assert!(
        errs.contains(&"invalid_token") || errs.contains(&"invalid_header_name"),
        "{errs:?}"
    );
    assert!(errs.contains(&"skipped_garbage"));
}

#[test]
fn non_http_stream_is_given_up() {
    let junk = vec![0xABu8; 200 * 1024];
    let (msgs, errs) = parse(Kind::Request, &[data(1, &junk)], &[]);
    assert!(msgs.is_empty());
    assert!(errs.contains(&"not_http"), "{errs:?}");
}

#[test]
fn head_size_is_bounded() {
    let mut big = b"GET / HTTP/1.1\r\n".to_vec();
    for i in 0..5000 {
        big.extend_from_slice(format!("X-H{i}: {}\r\n", "v".repeat(20)).as_bytes());
    }
    let mut p = MessageParser::new(Kind::Request, Limits::default());
    p.feed(&data(1, &big));
    let errs = p.take_errors();
    assert!(
        errs.contains(&"too_many_headers") || errs.contains(&"head_too_large"),
        "{errs:?}"
    );
    assert!(p.take_messages().is_empty());
}

#[test]
fn gap_in_body_emits_truncated_and_resyncs() {
    let segs = [
        data(1, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"),
        Segment::Gap { ts_ns: 2 },
        data(2, b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n"),
    ];
    let (msgs, errs) = parse(Kind::Response, &segs, &[]);
    assert_eq!(msgs.iter().map(status).collect::<Vec<_>>(), vec![200, 500]);
    assert!(msgs[0].truncated);
    assert_eq!(errs, vec!["gap"]);
}

#[test]
fn role_is_inferred_from_first_request_bytes() {
    let mut c = ConnectionParser::new(Role::Unknown, Limits::default());
    let p = c.feed(&[], &[data(1, b"GE")], false);
    assert_eq!(p.role, None);
    let p = c.feed(
        &[data(3, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")],
        &[data(2, b"T / HTTP/1.1\r\nHost: h\r\n\r\n")],
        false,
    );
    assert_eq!(p.role, Some(Role::Server));
    assert_eq!((p.requests.len(), p.responses.len()), (1, 1));
}

#[test]
fn bad_content_length_is_counted() {
    let segs = [data(
        1,
        b"POST / HTTP/1.1\r\nContent-Length: 5, 6\r\n\r\nhelloGET /next HTTP/1.1\r\n\r\n",
    )];
    let (msgs, errs) = parse(Kind::Request, &segs, &[]);
    assert!(errs.contains(&"bad_content_length"));
    assert_eq!(msgs.len(), 1);
    assert!(msgs[0].truncated);
}

/// xorshift64*: a tiny deterministic generator for the robustness test.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn arbitrary_segments_never_panic() {
    let pieces: [&[u8]; 12] = [
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"POST /p HTTP/1.1\r\nContent-Length: 10\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"5\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
        b"HEAD / HTTP/1.1\r\n\r\n",
        b"\r\n",
        b"\x00\xff\xfe garbage \x80",
        b"Content-Length: 99999999999999999999999\r\n",
        b"ffffffffffffffffff\r\n",
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for round in 0..3000u64 {
        let role = match round % 3 {
            0 => Role::Client,
            1 => Role::Server,
            _ => Role::Unknown,
        };
        let mut c = ConnectionParser::new(role, Limits::default());
        for step in 0..rng.below(20) {
            let mut segs = [Vec::new(), Vec::new()];
            for _ in 0..rng.below(4) {
                let dir = rng.below(2) as usize;
                let seg = match rng.below(10) {
                    0 => Segment::Missing {
                        ts_ns: step,
                        len: rng.below(100_000),
                    },
                    1 => Segment::Gap { ts_ns: step },
                    _ => {
                        let p = pieces[rng.below(pieces.len() as u64) as usize];
                        let cut = rng.below(p.len() as u64 + 1) as usize;
                        let (a, b) = p.split_at(cut);
                        Segment::Data {
                            ts_ns: step,
                            tid: 0,
                            bytes: if rng.below(2) == 0 {
                                a.to_vec()
                            } else {
                                b.to_vec()
                            },
                        }
                    }
                };
                segs[dir].push(seg);
            }
            let p = c.feed(&segs[0], &segs[1], false);
            for m in p.requests.iter().chain(&p.responses) {
                assert!(m.start_ts <= m.end_ts);
            }
        }
        c.finish();
    }
}

#[test]
fn role_is_inferred_when_recording_starts_mid_message() {
    // The first captured bytes are the tail of a request body, then a whole request.
    let mut c = ConnectionParser::new(Role::Unknown, Limits::default());
    let p = c.feed(
        &[data(
            1,
            b"tail of a body\r\nGET /next HTTP/1.1\r\nHost: h\r\n\r\n",
        )],
        &[],
        false,
    );
    assert_eq!(p.role, Some(Role::Client));
    assert_eq!(p.requests.len(), 1);
    assert_eq!(target(&p.requests[0]), "/next");
    let p = c.feed(
        &[],
        &[data(2, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")],
        false,
    );
    assert_eq!(p.responses.len(), 1);
}

#[test]
fn kept_headers_are_filtered_but_framing_reads_them_all() {
    // Only `traceparent` is kept, yet the chunked body and the Content-Length of the next
    // message (headers that are dropped) still frame the stream.
    let mut p = MessageParser::new(Kind::Request, Limits::default());
    p.keep_headers(KeepHeaders::Only(&["traceparent"]));
    p.feed(&data(
        1,
        b"POST /a HTTP/1.1\r\nHost: x\r\nTraceparent: t1\r\nTransfer-Encoding: chunked\r\n\r\n\
          3\r\nabc\r\n0\r\n\r\n\
          PUT /b HTTP/1.1\r\nContent-Length: 2\r\nUser-Agent: u\r\n\r\nhi",
    ));
    p.finish();
    let msgs = p.take_messages();
    assert!(p.take_errors().is_empty());
    assert_eq!(msgs.len(), 2);
    assert_eq!(
        msgs[0].headers.iter().collect::<Vec<_>>(),
        [("Traceparent", "t1")]
    );
    assert_eq!((msgs[0].body_size, msgs[1].body_size), (3, 2));
    assert!(msgs[1].headers.is_empty());
    assert_eq!(target(&msgs[1]), "/b");
}

#[test]
fn connection_parser_keeps_request_context_headers_and_no_response_headers() {
    let mut c = ConnectionParser::new(Role::Client, Limits::default());
    let parsed = c.feed(
        &[data(
            1,
            b"GET / HTTP/1.1\r\nHost: h\r\nAccept: */*\r\nB3: 1-2\r\n\r\n",
        )],
        &[data(
            2,
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nServer: s\r\n\r\nx",
        )],
        false,
    );
    assert_eq!(parsed.requests.len(), 1);
    let names: Vec<&str> = parsed.requests[0].headers.iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["Host", "B3"]);
    assert_eq!(parsed.responses.len(), 1);
    assert!(parsed.responses[0].headers.is_empty());
    assert_eq!(parsed.responses[0].body_size, 1);
}

#[test]
fn kept_values_read_as_before_whatever_their_bytes() {
    // A kept value that is not UTF-8 (replaced), one ending in a non-ASCII space (trimmed),
    // spaces around a value, a non-ASCII field that is not kept between kept ones, and a
    // head past 128 fields: each kept value is the lossily decoded, trimmed value.
    let limits = Limits {
        max_headers: 200,
        ..Limits::default()
    };
    let mut p = MessageParser::new(Kind::Request, limits);
    p.keep_headers(KeepHeaders::Only(&crate::protocol::http::KEPT_HEADERS));
    let mut bytes = b"GET /a HTTP/1.1\r\nHost: h\xff\r\nX-Other: \xc3\xa9t\xc3\xa9\r\n\
        traceparent:  v1 \r\nUser-Agent: caf\xc3\xa9\xc2\xa0\r\n\r\n\
        GET /b HTTP/1.1\r\nUser-Agent: \xc3\xa9 x\xc2\xa0\r\nX-Other: \xc3\xa9\r\nB3: 1\r\n\r\n\
        GET /c HTTP/1.1\r\n"
        .to_vec();
    for i in 0..130 {
        bytes.extend_from_slice(format!("X-F{i}: {i}\r\n").as_bytes());
    }
    bytes.extend_from_slice(b"Host: \xc3\xa9h \r\n\r\n");
    p.feed(&data(1, &bytes));
    p.finish();
    let msgs = p.take_messages();
    assert!(p.take_errors().is_empty());
    let kept: Vec<Vec<(&str, &str)>> = msgs.iter().map(|m| m.headers.iter().collect()).collect();
    assert_eq!(
        kept,
        [
            vec![
                ("Host", "h\u{fffd}"),
                ("traceparent", "v1"),
                ("User-Agent", "café")
            ],
            vec![("User-Agent", "é x"), ("B3", "1")],
            vec![("Host", "éh")],
        ]
    );
}
