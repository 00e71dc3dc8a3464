//! Golden test: real traffic of a 3-service chain (tools/fixtures/chain.py) recorded with
//! tcpdump on loopback (fixtures/chain/chain.pcap), imported with podtrace-import together
//! with the chain's Kubernetes objects, analysed, and compared with the checked-in outputs
//! (spans.json, graph.dot, stats.json). `UPDATE_GOLDEN=1` rewrites them;
//! `tools/fixtures/record.sh` re-records the traffic.

use crate::golden_support;

use std::collections::{BTreeMap, HashMap};

use golden_support::*;
use podtrace_analyzer::{analyze, spans_to_json, Analysis, AnalyzeOptions, Pipeline};
use podtrace_format::Record;
use podtrace_model::{Span, SpanKind};

/// The chain's records: the pcap imported (both sockets of every connection) with the
/// k8s objects.
fn chain_records() -> Vec<Record> {
    import_records("chain", "chain.pcap")
}

fn status(s: &Span) -> i64 {
    attr_int(s, "http.response.status_code").unwrap_or(0)
}

fn analysis() -> Analysis {
    analyze(chain_records().into_iter(), &AnalyzeOptions::default()).expect("analyze")
}

#[test]
fn chain_matches_golden_outputs() {
    let a = analysis();
    check_golden(
        "chain",
        "spans.json",
        &spans_to_json(&a.spans).expect("json"),
    );
    check_golden("chain", "graph.dot", &a.graph.to_dot());
    let mut stats = serde_json::to_string_pretty(&a.stats).expect("stats json");
    stats.push('\n');
    check_golden("chain", "stats.json", &stats);
}

#[test]
fn chain_has_one_trace_per_driver_request_with_the_right_tree() {
    let a = analysis();
    assert_eq!(a.stats.orphans, 0, "{}", a.stats);
    assert_eq!(a.stats.unmatched_requests, 0, "{}", a.stats);
    assert!(a.stats.parse_errors.is_empty(), "{}", a.stats);
    // The driver (127.0.0.1, no pod) made 9 requests: 7 on a keep-alive connection and 2
    // pipelined. Each is the root CLIENT span of its own trace.
    let roots: Vec<&Span> = a
        .spans
        .iter()
        .filter(|s| s.parent_span_id.is_none())
        .collect();
    assert_eq!(
        roots.len(),
        9,
        "roots: {:#?}",
        roots.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    assert!(roots
        .iter()
        .all(|s| s.kind == SpanKind::Client && s.resource.service_name == "127.0.0.1"));
    assert_eq!(a.stats.traces, 9);

    let mut by_trace: BTreeMap<_, Vec<&Span>> = BTreeMap::new();
    for s in &a.spans {
        by_trace.entry(s.trace_id).or_default().push(s);
    }
    let names = ["frontend", "service-a", "service-b", "service-c"];
    for (trace, spans) in &by_trace {
        let ids: HashMap<_, &Span> = spans.iter().map(|s| (s.span_id, *s)).collect();
        assert_eq!(ids.len(), spans.len(), "duplicate span ids in {trace}");
        let root = spans
            .iter()
            .find(|s| s.parent_span_id.is_none())
            .expect("root");
        let upload = root.name == "POST /upload";
        assert_eq!(
            spans.len(),
            if upload { 6 } else { 8 },
            "{trace}: {:#?}",
            spans
                .iter()
                .map(|s| (&s.name, &s.resource.service_name))
                .collect::<Vec<_>>()
        );
        for s in spans {
            if s.resource.service_name != "127.0.0.1" {
                assert!(
                    names.contains(&s.resource.service_name.as_str()),
                    "{}",
                    s.resource.service_name
                );
                assert_eq!(s.resource.get("k8s.namespace.name"), Some("shop"));
                assert!(s
                    .resource
                    .get("k8s.pod.name")
                    .is_some_and(|p| p.starts_with(&s.resource.service_name)));
                assert_eq!(s.resource.get("k8s.node.name"), Some("node-1"));
            }
            let Some(parent) = s.parent_span_id else {
                continue;
            };
            let p = ids
                .get(&parent)
                .unwrap_or_else(|| panic!("{trace}: orphan {}", s.name));
            match s.kind {
                // The server span of B is the child of the client span of A that called B.
                SpanKind::Server => {
                    assert_eq!(p.kind, SpanKind::Client, "{}", s.name);
                    assert_eq!(
                        attr_str(p, "peer.service"),
                        Some(s.resource.service_name.as_str())
                    );
                    assert_eq!(attr_str(p, "url.path"), attr_str(s, "url.path"));
                }
                // A client span is the child of the server span of its own process.
                SpanKind::Client => {
                    assert_eq!(p.kind, SpanKind::Server, "{}", s.name);
                    assert_eq!(p.resource.service_name, s.resource.service_name);
                    assert!(p.start_time_unix_nano <= s.start_time_unix_nano);
                    assert!(p.end_time_unix_nano >= s.end_time_unix_nano);
                }
            }
        }
        let family = attr_str(root, "podtrace.context.family").expect("family");
        let mode = root
            .name
            .trim_start_matches("GET /")
            .trim_start_matches("POST /");
        let expect_family = match mode {
            "w3c" | "error" | "upload" => "w3c",
            "b3multi" | "b3single" => "b3",
            "splunk" => "splunk",
            _ => "none",
        };
        assert_eq!(family, expect_family, "{}", root.name);
        if mode == "error" {
            let errs: Vec<_> = spans
                .iter()
                .filter(|s| s.status.is_error())
                .map(|s| (&s.resource.service_name, s.kind, status(s)))
                .collect();
            assert_eq!(
                errs.len(),
                4,
                "b server, frontend client of b, frontend server, driver: {errs:?}"
            );
        }
    }
    let fe_to_b = a
        .graph
        .edges()
        .find(|(f, t, _)| *f == "frontend" && *t == "service-b")
        .expect("edge");
    assert_eq!((fe_to_b.2.count, fe_to_b.2.errors), (8, 1));
}

#[test]
fn chain_analysis_is_deterministic_and_batching_independent() {
    let records = chain_records();
    let a = analyze(records.clone().into_iter(), &AnalyzeOptions::default()).expect("analyze");
    let b = analyze(records.clone().into_iter(), &AnalyzeOptions::default()).expect("analyze");
    assert_eq!(
        spans_to_json(&a.spans).expect("json"),
        spans_to_json(&b.spans).expect("json")
    );
    assert_eq!(a.graph.to_dot(), b.graph.to_dot());
    // Record by record through the incremental pipeline, draining after each push.
    let mut p = Pipeline::new(&AnalyzeOptions::default()).expect("pipeline");
    let mut spans = Vec::new();
    for r in records {
        p.push(std::slice::from_ref(&r));
        spans.extend(p.drain_completed());
    }
    let rest = p.finish();
    spans.extend(rest.spans);
    assert_eq!(
        spans_to_json(&a.spans).expect("json"),
        spans_to_json(&spans).expect("json")
    );
    assert_eq!(a.graph.to_dot(), rest.graph.to_dot());
}

#[test]
fn chain_with_a_short_window_streams_and_evicts_with_the_same_result() {
    // The driver's requests are ~50 ms apart: a 20 ms window links, emits and evicts
    // state between them, record by record, and must give the same spans.
    let records = chain_records();
    let all = analyze(records.clone().into_iter(), &AnalyzeOptions::default()).expect("analyze");
    let opts = AnalyzeOptions {
        window_ns: 20_000_000,
        ..AnalyzeOptions::default()
    };
    let mut p = Pipeline::new(&opts).expect("pipeline");
    let mut spans = Vec::new();
    let mut drained_early = 0;
    for r in records {
        p.push(std::slice::from_ref(&r));
        let d = p.drain_completed();
        drained_early += d.len();
        spans.extend(d);
    }
    let rest = p.finish();
    spans.extend(rest.spans);
    assert!(
        drained_early > 40,
        "spans streamed out before the end: {drained_early}"
    );
    assert!(rest.stats.evictions.connections > 0, "{}", rest.stats);
    assert_eq!(rest.stats.evictions.requests, 0);
    assert_eq!(
        spans_to_json(&all.spans).expect("json"),
        spans_to_json(&spans).expect("json")
    );
}

#[test]
fn chain_sampling_keeps_whole_traces() {
    let records = chain_records();
    let opts = AnalyzeOptions {
        sample_rate: 0.5,
        ..AnalyzeOptions::default()
    };
    let half = analyze(records.clone().into_iter(), &opts).expect("analyze");
    let all = analysis();
    let kept: std::collections::BTreeSet<_> = half.spans.iter().map(|s| s.trace_id).collect();
    for s in &all.spans {
        assert_eq!(
            kept.contains(&s.trace_id),
            half.spans.contains(s),
            "whole traces only"
        );
    }
    assert_eq!(
        half.stats.sampled_out as usize,
        all.spans.len() - half.spans.len()
    );
    let none = analyze(
        records.into_iter(),
        &AnalyzeOptions {
            sample_rate: 0.0,
            ..opts
        },
    )
    .expect("analyze");
    assert!(none.spans.is_empty());
    assert_eq!(
        none.graph.to_dot(),
        all.graph.to_dot(),
        "the graph counts every span"
    );
}
