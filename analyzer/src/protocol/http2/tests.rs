//! Unit tests of the HTTP/2 stage: HPACK (RFC 7541 examples, round trips against
//! `fluke-hpack`'s encoder, hostile input), frames → stream events (padding, priority,
//! CONTINUATION, interleaving, RST_STREAM, limits) and protocol detection.

use podtrace_format::Role;

use super::frame::{flag, kind, PREFACE};
use super::hpack::{integer, Decoder, HpackError, MAX_TABLE_SIZE};
use super::{H2Connection, Limits, StreamEvent};
use crate::protocol::http::HttpRequest;
use crate::protocol::{ConnectionParser, MessageEvent, RequestDetail};
use crate::reassemble::Segment;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn pairs(b: &super::hpack::Block) -> Vec<(&str, &str)> {
    b.fields
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect()
}

#[test]
fn rfc7541_c4_huffman_requests_share_the_dynamic_table() {
    let mut d = Decoder::new(true);
    let b = d.decode(&hex("8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff"), 1 << 16);
    assert_eq!(
        pairs(&b),
        vec![
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/"),
            (":authority", "www.example.com"),
        ]
    );
    let b = d.decode(&hex("8286 84be 5886 a8eb 1064 9cbf"), 1 << 16);
    assert_eq!(b.error, None);
    assert_eq!(
        pairs(&b),
        vec![
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/"),
            (":authority", "www.example.com"),
            ("cache-control", "no-cache"),
        ]
    );
    assert_eq!(d.table_size(), 110);
}

#[test]
fn round_trips_blocks_of_the_fluke_hpack_encoder() {
    let mut enc = fluke_hpack::Encoder::new();
    let mut ours = Decoder::new(true);
    let mut theirs = fluke_hpack::Decoder::new();
    for i in 0..50 {
        let tp = format!("00-{:032x}-{:016x}-01", i + 1, i + 7);
        let path = format!("/svc.S/M{}", i % 3);
        let headers: Vec<(&[u8], &[u8])> = vec![
            (b":method", b"POST"),
            (b":path", path.as_bytes()),
            (b"content-type", b"application/grpc"),
            (b"traceparent", tp.as_bytes()),
            (b"x-long", &[b'a'; 300]),
        ];
        let block = enc.encode(headers.iter().copied());
        let b = ours.decode(&block, 1 << 16);
        let want = theirs.decode(&block).expect("fluke decodes");
        let got: Vec<(Vec<u8>, Vec<u8>)> = b
            .fields
            .iter()
            .map(|(n, v)| (n.clone().into_bytes(), v.clone().into_bytes()))
            .collect();
        assert_eq!(got, want, "block {i}");
        assert_eq!((b.unknown, b.error), (0, None));
    }
    assert!(ours.table_size() <= 4096);
}

#[test]
fn late_join_decodes_literals_and_marks_unknown_indices() {
    // A block from the middle of a connection: index 62 and 70 refer to entries the
    // decoder never saw; the literal traceparent and static entries still decode.
    let mut block = vec![0x80 | 62, 0x83, 0x80 | 70];
    block.push(0x00); // literal without indexing, new name
    block.push(11);
    block.extend_from_slice(b"traceparent");
    let v = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    block.push(v.len() as u8);
    block.extend_from_slice(v);
    block.extend_from_slice(&[0x40, 1, b'k', 1, b'v']); // literal with indexing
    block.push(0x80 | 62); // now known: the entry just added
    let mut d = Decoder::new(false);
    let b = d.decode(&block, 1 << 16);
    assert_eq!(b.error, None);
    assert_eq!(b.unknown, 2);
    assert_eq!(
        pairs(&b),
        vec![
            (":method", "POST"),
            ("traceparent", std::str::from_utf8(v).expect("utf8")),
            ("k", "v"),
            ("k", "v"),
        ]
    );
    // The same block while in sync is an error (index past the table) — fields before it
    // are kept and the decoder turns tolerant.
    let mut d = Decoder::new(true);
    let b = d.decode(&block, 1 << 16);
    assert_eq!(b.error, Some(HpackError::InvalidIndex));
    assert!(!d.synced());
}

#[test]
fn hostile_hpack_input_is_an_error_never_a_panic() {
    let mut d = Decoder::new(true);
    // Integer overflow: a 7-bit prefix followed by endless continuation bytes.
    let mut b = vec![0xff];
    b.extend_from_slice(&[0xff; 20]);
    assert_eq!(
        d.decode(&b, 1 << 16).error,
        Some(HpackError::IntegerOverflow)
    );
    let mut pos = 0;
    assert_eq!(
        integer(&[0x1f, 0xff, 0xff, 0xff, 0xff, 0x7f], &mut pos, 5),
        Err(HpackError::IntegerOverflow)
    );
    // Oversized dynamic table size update (2^20): clamped, counted.
    let mut d = Decoder::new(true);
    let b = d.decode(&[0x3f, 0xe1, 0xff, 0x3f], 1 << 16);
    assert_eq!(b.error, Some(HpackError::TableSizeTooLarge));
    // The table stays bounded whatever is inserted afterwards.
    let mut d = Decoder::new(true);
    let mut big = vec![0x3f, 0xe1, 0xff, 0x03]; // size update 65535 (allowed)
    for i in 0..200u32 {
        big.extend_from_slice(&[0x40, 4]);
        big.extend_from_slice(&i.to_be_bytes());
        big.extend_from_slice(&[0x7f, 0x81, 0x07]); // value length 127 + 0x81 + 7<<7
        big.extend(std::iter::repeat_n(b'x', 127 + 1 + (7 << 7)));
    }
    let b = d.decode(&big, 1 << 16);
    assert_eq!(b.error, None, "{:?}", b.error);
    assert!(d.table_size() <= MAX_TABLE_SIZE);
    // Huge header list: fields beyond the limit are dropped and counted.
    assert!(b.dropped > 0);
    assert!(b.fields.len() < 200);
    // Misplaced size update, index 0, truncated strings, bad Huffman.
    let mut d = Decoder::new(true);
    assert_eq!(
        d.decode(&[0x82, 0x20], 1 << 16).error,
        Some(HpackError::MisplacedSizeUpdate)
    );
    assert_eq!(
        d.decode(&[0x80], 1 << 16).error,
        Some(HpackError::InvalidIndex)
    );
    assert_eq!(
        d.decode(&[0x00, 0x05, b'a'], 1 << 16).error,
        Some(HpackError::Truncated)
    );
    assert_eq!(
        d.decode(&[0x00, 0x81, 0x00, 0x00], 1 << 16).error,
        Some(HpackError::Huffman)
    );
    // Random bytes: any outcome but a panic.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..2000 {
        let mut d = Decoder::new(x & 1 == 0);
        let n = (x % 64) as usize;
        let block: Vec<u8> = (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let _ = d.decode(&block, 1024);
        assert!(d.table_size() <= MAX_TABLE_SIZE);
    }
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = len.to_be_bytes()[1..].to_vec();
    f.extend_from_slice(&[kind, flags]);
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn data(ts: u64, b: Vec<u8>) -> Segment {
    Segment::Data {
        ts_ns: ts,
        tid: 0,
        bytes: b,
    }
}

fn enc(h: &[(&str, &str)], e: &mut fluke_hpack::Encoder<'_>) -> Vec<u8> {
    e.encode(h.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())))
}

#[test]
fn interleaved_grpc_streams_padding_continuation_and_reset() {
    let mut req = fluke_hpack::Encoder::new();
    let mut resp = fluke_hpack::Encoder::new();
    let rq = |path: &'static str, tp: &'static str| {
        vec![
            (":method", "POST"),
            (":scheme", "http"),
            (":path", path),
            (":authority", "svc:50051"),
            ("content-type", "application/grpc"),
            ("traceparent", tp),
        ]
    };
    let tp1 = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let tp3 = "00-1af7651916cd43dd8448eb211c80319c-c7ad6b7169203331-01";
    let tp5 = "00-2af7651916cd43dd8448eb211c80319c-d7ad6b7169203331-01";
    let b1 = enc(&rq("/pkg.Svc/A", tp1), &mut req);
    let b3 = enc(&rq("/pkg.Svc/B", tp3), &mut req);
    let b5 = enc(&rq("/pkg.Svc/C", tp5), &mut req);
    // Stream 1: HEADERS padded + priority, split into CONTINUATION.
    let mut p = vec![3u8]; // pad length
    p.extend_from_slice(&[0, 0, 0, 0, 16]); // priority
    p.extend_from_slice(&b1[..5]);
    p.extend_from_slice(&[0, 0, 0]);
    let mut egress = PREFACE.to_vec();
    egress.extend(frame(kind::SETTINGS, 0, 0, &[0, 1, 0, 0, 0x10, 0]));
    egress.extend(frame(kind::HEADERS, flag::PADDED | flag::PRIORITY, 1, &p));
    egress.extend(frame(kind::CONTINUATION, flag::END_HEADERS, 1, &b1[5..]));
    egress.extend(frame(kind::HEADERS, flag::END_HEADERS, 3, &b3));
    egress.extend(frame(kind::DATA, 0, 1, &[0; 10]));
    egress.extend(frame(kind::DATA, flag::END_STREAM, 3, &[0; 7]));
    egress.extend(frame(
        kind::DATA,
        flag::END_STREAM | flag::PADDED,
        1,
        &[2, 1, 0, 0],
    ));
    egress.extend(frame(kind::HEADERS, flag::END_HEADERS, 5, &b5));
    // Encoded in wire order (HPACK state is shared by the direction).
    let trailers_only = enc(
        &[
            (":status", "200"),
            ("grpc-status", "5"),
            ("grpc-message", "not%20found"),
        ],
        &mut resp,
    );
    let ok = enc(
        &[(":status", "200"), ("content-type", "application/grpc")],
        &mut resp,
    );
    let trailers_ok = enc(&[("grpc-status", "0")], &mut resp);
    let mut ingress = frame(kind::SETTINGS, 0, 0, &[]);
    // Stream 3: a trailers-only response (one HEADERS frame with END_STREAM).
    ingress.extend(frame(
        kind::HEADERS,
        flag::END_HEADERS | flag::END_STREAM,
        3,
        &trailers_only,
    ));
    let mut ingress2 = frame(kind::HEADERS, flag::END_HEADERS, 1, &ok);
    ingress2.extend(frame(kind::DATA, 0, 1, &[0; 5]));
    ingress2.extend(frame(
        kind::HEADERS,
        flag::END_HEADERS | flag::END_STREAM,
        1,
        &trailers_ok,
    ));
    ingress2.extend(frame(kind::RST_STREAM, 0, 5, &8u32.to_be_bytes()));

    let mut c = H2Connection::new(Role::Client, Some(true), Limits::default());
    let (ev, errors) = c.feed(
        &[
            data(10, egress[..30].to_vec()),
            data(11, egress[30..].to_vec()),
        ],
        &[data(20, ingress), data(30, ingress2)],
        false,
    );
    assert!(errors.is_empty(), "{errors:?}");
    let mut reqs = Vec::new();
    let mut resps = Vec::new();
    for e in ev {
        match e {
            StreamEvent::Request(id, r) => reqs.push((id, r)),
            StreamEvent::Response(id, r) => resps.push((id, r)),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(reqs.iter().map(|r| r.0).collect::<Vec<_>>(), vec![1, 3, 5]);
    let (_, r1) = &reqs[0];
    assert_eq!(http(r1).method, "POST");
    assert_eq!(http(r1).path, "/pkg.Svc/A");
    assert_eq!(r1.header("traceparent"), Some(tp1));
    assert_eq!(r1.header("host"), Some("svc:50051"));
    assert_eq!(r1.body_size, 14);
    assert_eq!(
        r1.start_ts, 11,
        "the HEADERS frame starts in the second segment"
    );
    let g = http(r1)
        .h2
        .as_ref()
        .and_then(|h| h.grpc.clone())
        .expect("grpc");
    assert_eq!((g.service.as_str(), g.method.as_str()), ("pkg.Svc", "A"));
    let by_id = |id| &resps.iter().find(|r| r.0 == id).expect("response").1;
    let r = by_id(1);
    assert_eq!((http_resp(r).status, r.body_size, r.end_ts), (200, 5, 30));
    assert_eq!(
        http_resp(r).h2.as_ref().and_then(|h| h.grpc_status),
        Some(0)
    );
    let r = by_id(3);
    let h = http_resp(r).h2.as_ref().expect("h2");
    assert_eq!(h.grpc_status, Some(5));
    assert_eq!(h.grpc_message.as_deref(), Some("not found"));
    let r = by_id(5);
    assert_eq!(http_resp(r).h2.as_ref().and_then(|h| h.reset), Some(8));
    assert_eq!(c.open_streams(), 0);
}

#[test]
fn stream_limit_and_closing_with_open_streams() {
    let mut e = fluke_hpack::Encoder::new();
    let mut egress = PREFACE.to_vec();
    for id in [1u32, 3, 5] {
        let b = enc(&[(":method", "GET"), (":path", "/x")], &mut e);
        egress.extend(frame(kind::HEADERS, flag::END_HEADERS, id, &b));
    }
    let limits = Limits {
        max_streams: 2,
        ..Limits::default()
    };
    let mut c = H2Connection::new(Role::Client, Some(true), limits);
    let (ev, errors) = c.feed(&[data(1, egress)], &[], true);
    assert_eq!(errors, vec!["h2_too_many_streams"]);
    let kinds: Vec<String> = ev
        .iter()
        .map(|e| match e {
            StreamEvent::Request(id, _) => format!("req{id}"),
            StreamEvent::Unanswered(id) => format!("unanswered{id}"),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(kinds, vec!["req1", "unanswered1", "req3", "unanswered3"]);
}

#[test]
fn gaps_resynchronise_on_the_next_frame_boundary() {
    let mut e = fluke_hpack::Encoder::new();
    let b1 = enc(&[(":method", "GET"), (":path", "/a")], &mut e);
    let b3 = enc(&[(":method", "GET"), (":path", "/b"), ("b3", "0")], &mut e);
    let mut c = H2Connection::new(Role::Client, Some(true), Limits::default());
    let mut first = PREFACE.to_vec();
    first.extend(frame(
        kind::HEADERS,
        flag::END_HEADERS | flag::END_STREAM,
        1,
        &b1,
    ));
    let second = frame(kind::HEADERS, flag::END_HEADERS | flag::END_STREAM, 3, &b3);
    let (ev, errors) = c.feed(
        &[
            data(1, first),
            Segment::Gap { ts_ns: 2 },
            data(2, vec![1, 2, 3]),
            data(3, second),
        ],
        &[],
        false,
    );
    assert_eq!(errors, vec!["h2_gap"]);
    let paths: Vec<String> = ev
        .iter()
        .filter_map(|e| match e {
            StreamEvent::Request(_, r) => Some(http(r).path.clone()),
            _ => None,
        })
        .collect();
    // Stream 3's `:path /b` literal decodes; its fields are complete (no dynamic refs
    // needed beyond what the decoder saw) — the stream is still announced.
    assert_eq!(paths, vec!["/a", "/b"]);
}

#[test]
fn random_frames_never_panic() {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for round in 0..300 {
        let mut bytes = if round % 2 == 0 {
            PREFACE.to_vec()
        } else {
            Vec::new()
        };
        for _ in 0..(next() % 8) {
            let k = (next() % 11) as u8;
            let fl = next() as u8;
            let stream = (next() % 8) as u32;
            let len = (next() % 40) as usize;
            let payload: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            bytes.extend(frame(k, fl, stream, &payload));
        }
        let cut = (next() as usize) % (bytes.len() + 1);
        let mut p = ConnectionParser::with_limits(Role::Unknown, Default::default());
        let _ = p.feed(&[data(1, bytes[..cut].to_vec())], &[], false);
        let _ = p.feed(
            &[
                data(2, bytes[cut..].to_vec()),
                Segment::Missing { ts_ns: 3, len: 5 },
            ],
            &[data(2, bytes.clone())],
            false,
        );
        let _ = p.finish();
    }
}

#[test]
fn detection_preface_frames_or_http1() {
    let mut p = ConnectionParser::with_limits(Role::Unknown, Default::default());
    // A partial preface waits.
    let out = p.feed(&[data(1, PREFACE[..10].to_vec())], &[], false);
    assert_eq!(out, Default::default());
    let _ = p.feed(&[data(2, PREFACE[10..].to_vec())], &[], false);
    assert!(p.is_http2());
    // Frames without a preface (late join): SETTINGS + WINDOW_UPDATE.
    let mut p = ConnectionParser::with_limits(Role::Unknown, Default::default());
    let mut b = frame(kind::SETTINGS, flag::ACK, 0, &[]);
    b.extend(frame(kind::WINDOW_UPDATE, 0, 0, &[0, 0, 1, 0]));
    let _ = p.feed(&[], &[data(1, b)], false);
    assert!(p.is_http2());
    // HTTP/1 goes to the HTTP/1 parser.
    let mut p = ConnectionParser::with_limits(Role::Unknown, Default::default());
    let out = p.feed(&[data(1, b"GET / HTTP/1.1\r\n\r\n".to_vec())], &[], false);
    assert!(!p.is_http2());
    assert_eq!(requests(&out.events), 1);
}

#[test]
fn table_size_updates_are_checked_against_settings() {
    // The server (ingress) allows 8192: the client's encoder may grow its table to it.
    let mut e = fluke_hpack::Encoder::new();
    let mut req = vec![0x3f, 0xe1, 0x3f]; // size update 8192
    req.extend(enc(&[(":method", "GET"), (":path", "/a")], &mut e));
    let mut egress = PREFACE.to_vec();
    egress.extend(frame(
        kind::HEADERS,
        flag::END_HEADERS | flag::END_STREAM,
        1,
        &req,
    ));
    let mut big = vec![0x3f, 0xe1, 0x7f]; // size update 16384: above the setting
    big.extend(enc(&[(":method", "GET"), (":path", "/b")], &mut e));
    egress.extend(frame(
        kind::HEADERS,
        flag::END_HEADERS | flag::END_STREAM,
        3,
        &big,
    ));
    let settings = frame(kind::SETTINGS, 0, 0, &[0, 1, 0, 0, 0x20, 0]);
    let mut c = H2Connection::new(Role::Client, Some(true), Limits::default());
    // The server's SETTINGS arrive first (feed order = time order across calls).
    let _ = c.feed(&[], &[data(1, settings)], false);
    let (ev, errors) = c.feed(&[data(2, egress)], &[], false);
    assert_eq!(errors, vec!["h2_table_size_above_setting"]);
    assert_eq!(
        ev.iter()
            .filter(|e| matches!(e, StreamEvent::Request(..)))
            .count(),
        2
    );
}

#[test]
fn declined_h2c_upgrade_is_counted() {
    let mut p = ConnectionParser::with_limits(Role::Client, Default::default());
    let req = b"GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n";
    let first = p.feed(&[data(1, req.to_vec())], &[], false);
    assert!(p.is_http2());
    assert!(first.errors.is_empty());
    // The upgrade request is stream 1, announced once its head is complete.
    assert!(
        matches!(first.events.as_slice(), [MessageEvent::Request { stream: Some(1), request: r }] if http(r).path == "/"),
        "{:?}",
        first.events
    );
    let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    let out = p.feed(&[], &[data(2, resp.to_vec())], true);
    assert_eq!(out.errors, vec!["h2c_upgrade_declined"]);
    // Its answer was HTTP/1: the stream stays unanswered.
    assert_eq!(out.events, vec![MessageEvent::Unanswered(1)]);
}

#[test]
fn late_join_inside_a_frame_starts_at_the_next_frame() {
    // The capture starts 5 bytes into a DATA frame; the next segment starts a HEADERS
    // frame with literals (a stream opened after the join).
    let mut e = fluke_hpack::Encoder::new();
    let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let b = enc(
        &[
            (":method", "POST"),
            (":path", "/s.S/M"),
            ("traceparent", tp),
        ],
        &mut e,
    );
    let data_frame = frame(kind::DATA, 0, 1, &[7; 40]);
    let mut p = ConnectionParser::with_limits(Role::Client, Default::default());
    let mut next = frame(kind::HEADERS, flag::END_HEADERS | flag::END_STREAM, 3, &b);
    next.extend(frame(kind::WINDOW_UPDATE, 0, 0, &[0, 0, 1, 0]));
    let out = p.feed(
        &[data(1, data_frame[5..].to_vec()), data(2, next)],
        &[],
        false,
    );
    assert!(p.is_http2());
    assert!(
        matches!(out.events.as_slice(), [MessageEvent::Request { stream: Some(3), request: r }]
            if r.header("traceparent") == Some(tp) && http(r).path == "/s.S/M"),
        "{out:?}"
    );
    // HTTP/1 with a binary body that happens to contain frame-like bytes stays HTTP/1.
    let mut p = ConnectionParser::with_limits(Role::Client, Default::default());
    let body = frame(kind::SETTINGS, 0, 0, &[]);
    let head = format!("POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n", body.len());
    let out = p.feed(&[data(1, head.into_bytes()), data(1, body)], &[], false);
    assert!(!p.is_http2());
    assert_eq!(requests(&out.events), 1);
}

/// The HTTP part of a request.
fn http(r: &crate::protocol::Request) -> &HttpRequest {
    match &r.detail {
        RequestDetail::Http(h) => h,
        other => panic!("HTTP request expected: {other:?}"),
    }
}

/// The HTTP part of a response.
fn http_resp(r: &crate::protocol::Response) -> &crate::protocol::http::HttpResponse {
    match &r.detail {
        crate::protocol::ResponseDetail::Http(h) => h,
        other => panic!("HTTP response expected: {other:?}"),
    }
}

/// Requests among message events.
fn requests(events: &[MessageEvent]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, MessageEvent::Request { .. }))
        .count()
}
