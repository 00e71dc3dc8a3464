//! A real, uninstrumented reverse proxy: curl → nginx → Python backend
//! (fixtures/nginx/nginx.pcap, recorded by tools/fixtures/record_nginx.sh). nginx forwards
//! the client's trace headers unchanged, so its outgoing request names the client's span:
//! the analyzer must still give every hop its own span, in one trace per curl request.
//! The last request is a POST sent with `Expect: 100-continue`.

use std::collections::BTreeMap;
use std::path::Path;

use podtrace_analyzer::{analyze, spans_to_json, AnalyzeOptions};
use podtrace_format::{flags, CaptureReader, ReadOptions, Record};
use podtrace_import::{import, ImportOptions};
use podtrace_model::{AttrValue, Span, SpanKind};

/// The raw path of a span (span names use the route: `GET /items/{id}`).
fn path(s: &Span) -> Option<&str> {
    match s.attribute("url.path") {
        Some(AttrValue::Str(p)) => Some(p),
        _ => None,
    }
}

fn spans() -> podtrace_analyzer::Analysis {
    let pcap = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/nginx/nginx.pcap");
    let tmp = tempfile::tempdir().expect("tempdir");
    let cap = tmp.path().join("nginx.parquet");
    import(&pcap, &cap, &ImportOptions::default()).expect("import");
    let records = CaptureReader::open(&[&cap])
        .expect("open")
        .records(&ReadOptions::default())
        .collect::<Result<Vec<_>, _>>()
        .expect("read");
    analyze(records.into_iter(), &AnalyzeOptions::default()).expect("analyze")
}

#[test]
fn proxy_hops_form_one_trace_per_client_request() {
    let a = spans();
    assert_eq!(a.stats.orphans, 0, "{}", a.stats);
    assert_eq!(a.stats.traces, 6, "{}", a.stats);
    assert_eq!(a.spans.len(), 24, "{}", a.stats);
    assert!(a.stats.parse_errors.is_empty(), "{}", a.stats);
    let mut traces: BTreeMap<_, Vec<&Span>> = BTreeMap::new();
    for s in &a.spans {
        traces.entry(s.trace_id).or_default().push(s);
    }
    for spans in traces.values() {
        let by = |kind: SpanKind, svc: &str| {
            *spans
                .iter()
                .find(|s| s.kind == kind && s.resource.service_name == svc)
                .unwrap_or_else(|| panic!("{kind:?} {svc} in {spans:#?}"))
        };
        let curl = by(SpanKind::Client, "127.0.0.1");
        let proxy_in = by(SpanKind::Server, "127.0.2.1");
        let proxy_out = by(SpanKind::Client, "127.0.2.1");
        let backend = by(SpanKind::Server, "127.0.2.2");
        assert_eq!(curl.parent_span_id, None);
        assert_eq!(proxy_in.parent_span_id, Some(curl.span_id));
        assert_eq!(proxy_out.parent_span_id, Some(proxy_in.span_id));
        assert_eq!(backend.parent_span_id, Some(proxy_out.span_id));
        assert_eq!(proxy_in.name, backend.name, "nginx proxies the same path");
        let failed = curl.name == "GET /fail";
        for s in spans {
            assert_eq!(s.status.is_error(), failed, "{} {:?}", s.name, s.kind);
        }
    }
    let w3c = a
        .spans
        .iter()
        .find(|s| {
            s.kind == SpanKind::Client
                && s.name == "GET /items/{id}"
                && path(s) == Some("/items/3")
                && s.resource.service_name == "127.0.0.1"
        })
        .expect("curl /items/3");
    assert_eq!(w3c.trace_id.to_string(), "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(w3c.span_id.to_string(), "b7ad6b7169203331");
    let b3 = a
        .spans
        .iter()
        .find(|s| path(s) == Some("/items/0"))
        .expect("/items/0");
    assert_eq!(b3.trace_id.to_string(), "80f198ee56343ba864fe8b2a57d3eff7");
    // curl sent `Expect: 100-continue`: nginx's interim 100 is skipped, the body counted.
    let upload: Vec<&Span> = a
        .spans
        .iter()
        .filter(|s| s.name == "POST /upload")
        .collect();
    assert_eq!(upload.len(), 4);
    for s in &upload {
        assert_eq!(
            s.attribute("http.request.body.size"),
            Some(&AttrValue::Int(3000))
        );
        assert_eq!(
            s.attribute("http.response.status_code"),
            Some(&AttrValue::Int(201))
        );
    }
    let dot = a.graph.to_dot();
    assert!(
        dot.contains("\"127.0.2.1\" -> \"127.0.2.2\" [label=\"6 req"),
        "{dot}"
    );
}

#[test]
fn snaplen_truncation_keeps_every_exchange() {
    // The same traffic as if recorded with a 512-byte snaplen: rows keep their first 512
    // bytes, `ret` keeps the real size. Bodies are skipped by their declared lengths, so
    // the spans are the same.
    let full = spans();
    let pcap = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/nginx/nginx.pcap");
    let tmp = tempfile::tempdir().expect("tempdir");
    let cap = tmp.path().join("nginx.parquet");
    import(&pcap, &cap, &ImportOptions::default()).expect("import");
    let mut truncated_rows = 0;
    let records: Vec<_> = CaptureReader::open(&[&cap])
        .expect("open")
        .records(&ReadOptions::default())
        .map(|r| {
            let mut r = r.expect("record");
            if let Record::SocketData(d) = &mut r {
                if d.payload.len() > 512 {
                    d.payload.truncate(512);
                    d.flags |= flags::TRUNCATED;
                    truncated_rows += 1;
                }
            }
            r
        })
        .collect();
    assert!(truncated_rows >= 8, "{truncated_rows}");
    let cut = analyze(records.into_iter(), &AnalyzeOptions::default()).expect("analyze");
    assert!(cut.stats.parse_errors.is_empty(), "{}", cut.stats);
    assert_eq!(
        spans_to_json(&full.spans).expect("json"),
        spans_to_json(&cut.spans).expect("json")
    );
}
