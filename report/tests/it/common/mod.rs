//! Shared test inputs: the chain fixture analysed from its real capture, synthetic
//! many-trace span sets, and a span carrying markup from "untrusted traffic".

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use podtrace_analyzer::{analyze, Analysis, AnalyzeOptions};
use podtrace_format::{CaptureReader, ReadOptions, Record};
use podtrace_import::{import, ImportOptions};
use podtrace_model::{KeyValue, Resource, Span, SpanId, SpanKind, Status, TraceId};

/// The markup the injection tests plant in span names and attributes.
pub const EVIL: &str = "<script>alert(1)</script>";

/// The workspace's fixtures directory.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

/// The chain fixture (fixtures/chain: a 3-service chain recorded with tcpdump), imported
/// with its Kubernetes objects, read back with `CaptureReader` and analysed.
pub fn chain_analysis() -> Analysis {
    let dir = fixtures().join("chain");
    let tmp = tempfile::tempdir().expect("tempdir");
    let cap = tmp.path().join("chain.parquet");
    let opts = ImportOptions {
        k8s_objects: Some(dir.join("k8s-objects.json")),
        node: "node-1".into(),
        ..ImportOptions::default()
    };
    import(&dir.join("chain.pcap"), &cap, &opts).expect("import chain.pcap");
    let records: Vec<Record> = CaptureReader::open(&[&cap])
        .expect("open capture")
        .records(&ReadOptions::default())
        .collect::<Result<Vec<_>, _>>()
        .expect("read capture");
    analyze(records.into_iter(), &AnalyzeOptions::default()).expect("analyze")
}

/// A copy of the fastest error-free trace's leaf span, renamed to [`EVIL`] and with markup in
/// its attributes and service, added under the same parent (so it shows in a waterfall
/// that is not the first one).
pub fn with_evil_span(spans: &[Span]) -> Vec<Span> {
    let mut out = spans.to_vec();
    let Some(template) = spans
        .iter()
        .filter(|s| s.parent_span_id.is_some())
        .min_by_key(|s| s.duration_ns())
    else {
        return out;
    };
    let mut evil = template.clone();
    evil.span_id = SpanId([0xee; 8]);
    evil.name = EVIL.into();
    evil.attributes.push(KeyValue::new(
        "url.path",
        "/\"><img src=x onerror=alert(2)>",
    ));
    evil.resource.service_name = "</script><script>alert(3)</script>".into();
    out.push(evil);
    out
}

/// `traces` synthetic traces of a 5-span chain (gateway → api → {db, cache}; api → auth)
/// with a few errors, for scale tests.
pub fn synthetic_spans(traces: u32) -> Vec<Span> {
    let services = ["gateway", "api", "db", "cache", "auth"];
    let mut out = Vec::with_capacity(traces as usize * 5);
    let base = 1_795_674_928_000_000_000u64;
    for t in 0..traces {
        let mut tid = [0u8; 16];
        tid[..4].copy_from_slice(&t.to_be_bytes());
        tid[15] = 1;
        let start = base + u64::from(t) * 1_000_000;
        let slow = u64::from(t % 97) * 100_000;
        let plan: [(usize, Option<usize>, u64, u64); 5] = [
            (0, None, 0, 2_000_000 + slow),
            (1, Some(0), 100_000, 1_800_000 + slow),
            (2, Some(1), 200_000, 600_000 + slow / 2),
            (3, Some(1), 900_000, 50_000),
            (4, Some(1), 1_000_000, 300_000),
        ];
        for (i, (svc, parent, off, dur)) in plan.iter().enumerate() {
            let mut sid = [0u8; 8];
            sid[..4].copy_from_slice(&t.to_be_bytes());
            sid[7] = i as u8 + 1;
            let err = t % 50 == 7 && i == 2;
            out.push(Span {
                trace_id: TraceId(tid),
                span_id: SpanId(sid),
                parent_span_id: parent.map(|p| {
                    let mut s = sid;
                    s[7] = p as u8 + 1;
                    SpanId(s)
                }),
                trace_state: String::new(),
                flags: 1,
                name: format!("GET /{}/{}", services[*svc], t % 13),
                kind: SpanKind::Server,
                start_time_unix_nano: start + off,
                end_time_unix_nano: start + off + dur,
                attributes: vec![
                    KeyValue::new("http.request.method", "GET"),
                    KeyValue::new("http.response.status_code", if err { 503i64 } else { 200 }),
                ],
                status: if err {
                    Status::error("HTTP 503")
                } else {
                    Status::unset()
                },
                resource: Resource::new(services[*svc]).with("k8s.namespace.name", "shop"),
            });
        }
    }
    out
}
