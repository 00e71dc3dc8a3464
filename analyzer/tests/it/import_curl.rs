//! curl ↔ Python HTTP/1.1 server on 127.0.0.1 (fixtures/pcap/http1-curl.pcap, recorded by
//! tools/record-pcap-http1.sh), imported and analysed: both ends share one address, so the
//! client and server sides must pair by 4-tuple without becoming each other's parents.

use std::path::Path;

use podtrace_analyzer::{analyze, AnalyzeOptions};
use podtrace_format::{CaptureReader, ReadOptions};
use podtrace_import::{import, ImportOptions};
use podtrace_model::{AttrValue, Span, SpanKind};

/// `{method} {raw path}` of a span (span names use the route: `GET /size/{id}`).
fn raw(s: &Span) -> String {
    match (s.attribute("http.request.method"), s.attribute("url.path")) {
        (Some(AttrValue::Str(m)), Some(AttrValue::Str(p))) => format!("{m} {p}"),
        _ => String::new(),
    }
}

#[test]
fn curl_fixture_gives_paired_client_and_server_spans() {
    let pcap = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/pcap/http1-curl.pcap");
    if !pcap.exists() {
        eprintln!("SKIPPING: {} not found", pcap.display());
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let cap = tmp.path().join("curl.parquet");
    import(&pcap, &cap, &ImportOptions::default()).expect("import");
    let records = CaptureReader::open(&[&cap])
        .expect("open")
        .records(&ReadOptions::default())
        .collect::<Result<Vec<_>, _>>()
        .expect("read");
    let a = analyze(records.into_iter(), &AnalyzeOptions::default()).expect("analyze");
    assert!(a.stats.parse_errors.is_empty(), "{}", a.stats);
    assert_eq!(
        a.spans.len(),
        8,
        "4 exchanges seen from both sockets: {}",
        a.stats
    );
    for name in [
        "GET /hello",
        "POST /echo",
        "GET /status/404",
        "GET /size/2000",
    ] {
        let client = a
            .spans
            .iter()
            .find(|s| raw(s) == name && s.kind == SpanKind::Client)
            .unwrap_or_else(|| panic!("client {name}"));
        let server = a
            .spans
            .iter()
            .find(|s| raw(s) == name && s.kind == SpanKind::Server)
            .unwrap_or_else(|| panic!("server {name}"));
        assert_eq!(server.trace_id, client.trace_id, "{name}");
        assert_eq!(server.parent_span_id, Some(client.span_id), "{name}");
        assert_eq!(
            client.parent_span_id, None,
            "{name}: curl's span is the root"
        );
    }
    let hello = a
        .spans
        .iter()
        .find(|s| s.name == "GET /hello")
        .expect("hello");
    assert_eq!(
        hello.trace_id.to_string(),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    let echo = a
        .spans
        .iter()
        .find(|s| s.name == "POST /echo")
        .expect("echo");
    assert_eq!(
        echo.attribute("http.request.body.size"),
        Some(&AttrValue::Int(1000))
    );
    let size = a
        .spans
        .iter()
        .find(|s| raw(s) == "GET /size/2000")
        .expect("size");
    // Named after the inferred route, not the id-bearing path.
    assert_eq!(size.name, "GET /size/{id}");
    assert_eq!(
        size.attribute("http.response.body.size"),
        Some(&AttrValue::Int(2000))
    );
    for s in a.spans.iter().filter(|s| s.name == "GET /status/{id}") {
        assert_eq!(s.status.is_error(), s.kind == SpanKind::Client);
    }
    // curl sent the traceparent, so its CLIENT span *is* 00f067aa0ba902b7: no orphans.
    let hello_client = a
        .spans
        .iter()
        .find(|s| s.name == "GET /hello" && s.kind == SpanKind::Client)
        .expect("hello client");
    assert_eq!(hello_client.span_id.to_string(), "00f067aa0ba902b7");
    assert_eq!(a.stats.orphans, 0, "{}", a.stats);
    assert_eq!(a.stats.traces, 4);
}
