//! Golden tests on real HTTP/2 traffic (re-recorded by `tools/fixtures/h2/record.sh`):
//! - `fixtures/grpc-demo/grpc.pcap`: a grpcio client and server (generic handlers) on one
//!   HTTP/2 connection — W3C, B3 multi and B3 single metadata, 6 concurrent streams, a
//!   NOT_FOUND error (trailers-only response);
//! - `fixtures/grpc-demo/grpc-late.pcap`: the same capture cut after the first three RPCs
//!   (the dynamic HPACK tables were filled before the cut: a late join);
//! - `fixtures/h2-curl/h2c.pcap`: curl `--http2-prior-knowledge` and `--http2` (h2c
//!   upgrade) against hypercorn.
//!
//! Each pcap is imported with podtrace-import (both sockets of every connection) plus its
//! Kubernetes objects, analysed, and compared with the checked-in spans.json / graph.dot
//! (`UPDATE_GOLDEN=1` rewrites them); the structure is asserted independently of them.

use crate::golden_support;

use std::collections::{BTreeMap, HashMap};

use golden_support::*;
use podtrace_analyzer::{analyze, spans_to_json, Analysis, AnalyzeOptions};
use podtrace_model::{Span, SpanKind, TraceId};

fn analysis(dir: &str, pcap: &str) -> Analysis {
    analyze(
        import_records(dir, pcap).into_iter(),
        &AnalyzeOptions::default(),
    )
    .expect("analyze")
}

fn tid(hex: &str) -> TraceId {
    TraceId::from_hex(hex).expect("trace id")
}

/// The trace ids grpc_peers.py sends, by phase.
fn phase1_traces() -> Vec<TraceId> {
    vec![
        tid(&format!("{:032x}", 0xa100_0001u64)),
        tid("c1000000000000000000000000000001"),
        tid("c2000000000000000000000000000002"),
    ]
}

fn phase2_traces() -> Vec<TraceId> {
    let mut v: Vec<TraceId> = (10..16)
        .map(|i| tid(&format!("{:032x}", 0xa100_0000u64 + i)))
        .collect();
    v.push(tid(&format!("{:032x}", 0xa100_0000u64 + 20)));
    v.push(tid("c3000000000000000000000000000003"));
    v
}

/// Checks that every trace holds exactly one CLIENT and one SERVER span of one RPC, the
/// server span the child of the client span; returns the client spans by trace.
fn rpc_pairs(a: &Analysis) -> BTreeMap<TraceId, (Span, Span)> {
    let mut by_trace: BTreeMap<TraceId, Vec<&Span>> = BTreeMap::new();
    for s in &a.spans {
        by_trace.entry(s.trace_id).or_default().push(s);
    }
    let mut out = BTreeMap::new();
    for (t, spans) in by_trace {
        assert_eq!(spans.len(), 2, "{t}: {spans:#?}");
        let client = spans
            .iter()
            .find(|s| s.kind == SpanKind::Client)
            .expect("client span");
        let server = spans
            .iter()
            .find(|s| s.kind == SpanKind::Server)
            .expect("server span");
        assert_eq!(server.parent_span_id, Some(client.span_id), "{t}");
        assert_eq!(client.name, server.name);
        out.insert(t, ((*client).clone(), (*server).clone()));
    }
    out
}

fn check_rpc_span(s: &Span, method: &str, code: i64) {
    assert_eq!(s.name, format!("demo.Greeter/{method}"));
    assert_eq!(attr_str(s, "rpc.system"), Some("grpc"));
    assert_eq!(attr_str(s, "rpc.service"), Some("demo.Greeter"));
    assert_eq!(attr_str(s, "rpc.method"), Some(method));
    assert_eq!(attr_int(s, "rpc.grpc.status_code"), Some(code), "{s:#?}");
    assert_eq!(attr_str(s, "network.protocol.name"), Some("http"));
    assert_eq!(attr_str(s, "network.protocol.version"), Some("2"));
    assert_eq!(attr_int(s, "http.response.status_code"), Some(200));
    // Semantic conventions: a CLIENT span fails on every non-OK code, a SERVER span only
    // on the server-fault codes (NOT_FOUND = 5 is the caller's problem).
    let error = match s.kind {
        SpanKind::Client => code != 0,
        SpanKind::Server => matches!(code, 2 | 4 | 12 | 13 | 14 | 15),
    };
    assert_eq!(s.status.is_error(), error, "{s:#?}");
    let service = match s.kind {
        SpanKind::Client => "grpc-client",
        SpanKind::Server => "greeter",
    };
    assert_eq!(s.resource.service_name, service);
    assert!(s.end_time_unix_nano >= s.start_time_unix_nano);
}

#[test]
fn grpc_matches_golden_outputs() {
    let a = analysis("grpc-demo", "grpc.pcap");
    check_golden(
        "grpc-demo",
        "spans.json",
        &spans_to_json(&a.spans).expect("json"),
    );
    check_golden("grpc-demo", "graph.dot", &a.graph.to_dot());
}

#[test]
fn grpc_every_rpc_is_a_client_and_a_server_span_with_propagated_ids() {
    let a = analysis("grpc-demo", "grpc.pcap");
    assert!(a.stats.parse_errors.is_empty(), "{}", a.stats);
    assert_eq!(a.stats.orphans, 0, "{}", a.stats);
    assert_eq!(a.stats.unmatched_requests, 0, "{}", a.stats);
    assert_eq!(a.stats.unmatched_responses, 0, "{}", a.stats);
    assert_eq!(a.stats.exchanges, 22, "{}", a.stats);
    let pairs = rpc_pairs(&a);
    let mut expected: Vec<TraceId> = phase1_traces();
    expected.extend(phase2_traces());
    expected.sort();
    assert_eq!(pairs.keys().copied().collect::<Vec<_>>(), expected);
    let fail = tid(&format!("{:032x}", 0xa100_0000u64 + 20));
    for (t, (client, server)) in &pairs {
        let (method, code) = if *t == fail {
            ("Fail", 5)
        } else {
            ("SayHello", 0)
        };
        check_rpc_span(client, method, code);
        check_rpc_span(server, method, code);
        // The caller's span id is the one the client propagated.
        let family = attr_str(client, "podtrace.context.family").unwrap_or("");
        assert!(["w3c", "b3"].contains(&family), "{family}");
    }
    let (c, s) = &pairs[&fail];
    assert!(
        c.status.message.contains("no such user: 42%"),
        "{:?}",
        c.status
    );
    // NOT_FOUND: the caller's error, not the server's (semantic conventions).
    assert!(
        c.status.is_error() && !s.status.is_error(),
        "{:?}",
        s.status
    );
    // W3C ids: the client span is the propagated parent id, tracestate kept.
    let (c1, _) = &pairs[&phase1_traces()[0]];
    assert_eq!(c1.span_id.to_string(), format!("{:016x}", 0xb100_0001u64));
    assert_eq!(c1.trace_state, "vendor=abc");
    let (c2, _) = &pairs[&phase1_traces()[1]];
    assert_eq!(c2.span_id.to_string(), "d100000000000001");
    // The six concurrent calls overlap in time (interleaved streams on one connection).
    let concurrent: Vec<&Span> = phase2_traces()[..6].iter().map(|t| &pairs[t].0).collect();
    let first_end = concurrent
        .iter()
        .map(|s| s.end_time_unix_nano)
        .min()
        .expect("spans");
    let overlapping = concurrent
        .iter()
        .filter(|s| s.start_time_unix_nano < first_end)
        .count();
    assert!(overlapping >= 2, "streams were not concurrent");
}

#[test]
fn grpc_edge_in_the_graph_with_its_error_count() {
    let a = analysis("grpc-demo", "grpc.pcap");
    let g = &a.graph.graph;
    let edges: HashMap<(String, String), (u64, u64)> = g
        .edge_indices()
        .filter_map(|e| {
            let (f, t) = g.edge_endpoints(e)?;
            let w = &g[e];
            Some(((g[f].name.clone(), g[t].name.clone()), (w.count, w.errors)))
        })
        .collect();
    assert_eq!(
        edges.get(&("grpc-client".to_string(), "greeter".to_string())),
        Some(&(11, 1)),
        "{edges:?}"
    );
    let dot = a.graph.to_dot();
    assert!(dot.contains("\"grpc-client\" -> \"greeter\""), "{dot}");
}

#[test]
fn grpc_late_join_recovers_literal_trace_context() {
    let a = analysis("grpc-demo", "grpc-late.pcap");
    // Every phase-2 RPC comes out as a CLIENT + SERVER pair in its propagated trace,
    // although the static parts of its headers referred to dynamic-table entries the
    // capture never saw.
    let pairs = rpc_pairs(&a);
    let mut expected = phase2_traces();
    expected.sort();
    assert_eq!(
        pairs.keys().copied().collect::<Vec<_>>(),
        expected,
        "{}",
        a.stats
    );
    // Each stream's request headers (both sockets) and response headers were partly
    // undecodable: 8 RPCs × 2 sockets.
    assert_eq!(
        a.stats.parse_errors.get("h2_partial_headers"),
        Some(&16),
        "{}",
        a.stats
    );
    for (client, server) in pairs.values() {
        assert_eq!(attr_str(client, "network.protocol.version"), Some("2"));
        assert_eq!(server.parent_span_id, Some(client.span_id));
    }
}

#[test]
fn h2c_curl_matches_golden_and_has_http2_spans() {
    let a = analysis("h2-curl", "h2c.pcap");
    check_golden(
        "h2-curl",
        "spans.json",
        &spans_to_json(&a.spans).expect("json"),
    );
    assert!(a.stats.parse_errors.is_empty(), "{}", a.stats);
    assert_eq!(a.stats.orphans, 0, "{}", a.stats);
    let pairs = rpc_pairs(&a);
    let expect = [
        ("e1000000000000000000000000000001", "/one", 200, false),
        ("e2000000000000000000000000000002", "/b3", 200, false),
        ("e3000000000000000000000000000003", "/error", 500, true),
        // `curl --http2`: HTTP/1.1 request with `Upgrade: h2c`, 101, answer on stream 1.
        ("e4000000000000000000000000000004", "/upgrade", 200, false),
    ];
    assert_eq!(pairs.len(), expect.len());
    for (t, path, code, err) in expect {
        let (client, server) = &pairs[&tid(t)];
        for s in [client, server] {
            assert_eq!(s.name, format!("GET {path}"));
            assert_eq!(attr_str(s, "url.path"), Some(path));
            assert_eq!(attr_int(s, "http.response.status_code"), Some(code));
            assert_eq!(attr_str(s, "network.protocol.version"), Some("2"));
            assert_eq!(attr_str(s, "server.address"), Some("127.0.3.2"));
            assert_eq!(attr_str(s, "user_agent.original"), Some("curl/7.88.1"));
            assert_eq!(s.status.is_error(), err);
            assert!(s.attribute("rpc.system").is_none());
        }
        assert_eq!(client.resource.service_name, "curl-client");
        assert_eq!(server.resource.service_name, "hypercorn-app");
    }
    assert_eq!(
        attr_str(&pairs[&tid(expect[0].0)].0, "url.query"),
        Some("x=1")
    );
}

#[test]
fn grpc_streaming_pipeline_gives_the_same_spans() {
    // One record per push: frames and header blocks cross feed calls.
    let recs = import_records("grpc-demo", "grpc.pcap");
    let whole = analyze(recs.clone().into_iter(), &AnalyzeOptions::default()).expect("analyze");
    let mut p = podtrace_analyzer::Pipeline::new(&AnalyzeOptions::default()).expect("pipeline");
    let mut spans = Vec::new();
    for r in recs {
        p.push(std::slice::from_ref(&r));
        spans.extend(p.drain_completed());
    }
    let mut rest = p.finish();
    spans.append(&mut rest.spans);
    assert_eq!(
        spans_to_json(&spans).expect("json"),
        spans_to_json(&whole.spans).expect("json")
    );
    assert_eq!(rest.stats.parse_errors, whole.stats.parse_errors);
}
