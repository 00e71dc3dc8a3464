//! OTLP export, checked by real receivers: rotel (a real OTLP collector) re-exports what
//! podtrace sent to `tools/receivers/otlp_sink.py`, which decodes with PyPI
//! `opentelemetry-proto`; the sink also decodes podtrace's own request bodies (protobuf,
//! gzip) and its OTLP/JSON with Google's `json_format` (the protobuf JSON mapping).

use crate::common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use podtrace_export::{export_all, otlp, otlp_exporter, write_otlp_json, Exporter};
use podtrace_model::{Span, SpanKind, StatusCode};
use serde_json::Value;

/// Starts rotel with its OTLP/HTTP receiver on a free port and `exporter` args; waits until
/// it listens and returns it with that port.
fn start_rotel(rotel: &std::path::Path, exporter: &[&str]) -> (Proc, u16) {
    // a start can lose its ports to another process between free_port() and rotel's bind
    // (seen once under the full suite): up to three starts, each on new ports
    for _ in 0..2 {
        let (proc, http) = spawn_rotel(rotel, exporter);
        if wait_port(http, Duration::from_secs(10)) {
            return (proc, http);
        }
    }
    let (proc, http) = spawn_rotel(rotel, exporter);
    assert!(
        wait_port(http, Duration::from_secs(10)),
        "rotel did not listen"
    );
    (proc, http)
}

/// rotel with its receivers on free ports (not waited for).
fn spawn_rotel(rotel: &std::path::Path, exporter: &[&str]) -> (Proc, u16) {
    let (http, grpc) = (free_port(), free_port());
    let proc = Proc(
        std::process::Command::new(rotel)
            .args([
                "start",
                "--otlp-http-endpoint",
                &format!("127.0.0.1:{http}"),
            ])
            .args(["--otlp-grpc-endpoint", &format!("127.0.0.1:{grpc}")])
            .args(exporter)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start rotel"),
    );
    (proc, http)
}

fn assert_span(rec: &Value, span: &Span) {
    let k = key(span);
    assert_eq!(rec["trace_id"], span.trace_id.to_string(), "{k}");
    assert_eq!(
        rec["parent_span_id"],
        span.parent_span_id
            .map(|p| p.to_string())
            .unwrap_or_default(),
        "{k} parent"
    );
    assert_eq!(rec["name"], span.name.as_str(), "{k}");
    let kind = match span.kind {
        SpanKind::Server => 2,
        SpanKind::Client => 3,
    };
    assert_eq!(rec["kind"], kind, "{k} kind");
    assert_eq!(rec["flags"], span.flags, "{k} flags");
    assert_eq!(rec["trace_state"], span.trace_state.as_str(), "{k}");
    assert_eq!(rec["start"], span.start_time_unix_nano, "{k}");
    assert_eq!(rec["end"], span.end_time_unix_nano, "{k}");
    let status = match span.status.code {
        StatusCode::Unset => 0,
        StatusCode::Ok => 1,
        StatusCode::Error => 2,
    };
    assert_eq!(rec["status_code"], status, "{k} status");
    assert_eq!(rec["status_message"], span.status.message.as_str(), "{k}");
    assert_eq!(rec["service"], span.resource.service_name.as_str(), "{k}");
    let mut resource: BTreeMap<String, Value> = span
        .resource
        .attributes
        .iter()
        .map(|(k, v)| (k.clone(), Value::from(v.clone())))
        .collect();
    resource.insert(
        "service.name".into(),
        span.resource.service_name.clone().into(),
    );
    assert_eq!(
        rec["resource"],
        serde_json::to_value(&resource).unwrap(),
        "{k}"
    );
    let attrs: serde_json::Map<String, Value> = span
        .attributes
        .iter()
        .map(|kv| (kv.key.to_string(), attr_json(&kv.value)))
        .collect();
    assert_eq!(rec["attributes"], Value::Object(attrs), "{k} attributes");
    assert_eq!(rec["scope"], "podtrace");
}

fn assert_all_arrived(records: &[Value], spans: &[Span]) {
    let got = by_id(records);
    assert_eq!(records.len(), spans.len(), "each span exactly once");
    for span in spans {
        let rec = got
            .get(&key(span))
            .unwrap_or_else(|| panic!("span {} missing", key(span)));
        assert_span(rec, span);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_a_real_collector_and_come_out_intact() {
    let Some(venv) = venv() else { return };
    let Some(rotel) = rotel_agent(&venv) else {
        return;
    };
    let sink = Receiver::start(&venv, "otlp_sink.py", &[]);
    let sink_url = format!("http://127.0.0.1:{}", sink.port);
    let (_rotel, http) = start_rotel(
        &rotel,
        &[
            "--exporter",
            "otlp",
            "--otlp-exporter-protocol",
            "http",
            "--otlp-exporter-endpoint",
            &sink_url,
            "--batch-timeout",
            "100ms",
        ],
    );

    let spans = sample_spans(400);
    let mut config = test_config();
    config.otlp = Some(podtrace_export::Url::parse(&format!("http://127.0.0.1:{http}")).unwrap());
    config.delivery.gzip = true;
    let exporters = podtrace_export::build_exporters(&config).unwrap();
    let reports = export_all(&exporters, &spans).await;
    assert!(reports[0].is_ok(), "{}", reports[0]);
    assert_eq!(reports[0].accounting.spans_sent, 400);
    assert_eq!(
        reports[0].accounting.requests, 8,
        "400 spans in batches of 50"
    );
    assert!(reports[0].endpoint.ends_with("/v1/traces"));

    let records = sink.wait_records(spans.len(), Duration::from_secs(20));
    assert_all_arrived(&records, &spans);
    assert!(records.iter().all(|r| r["via"] == "application/x-protobuf"));
}

#[tokio::test]
async fn raw_request_bodies_decode_with_opentelemetry_proto() {
    let Some(venv) = venv() else { return };
    let sink = Receiver::start(&venv, "otlp_sink.py", &[]);
    let spans = sample_spans(120);
    for gzip in [false, true] {
        let mut delivery = test_config().delivery;
        delivery.gzip = gzip;
        let exporter = otlp_exporter(&sink.url("http"), &delivery).unwrap();
        exporter.export(&spans).await.unwrap();
        assert_eq!(exporter.accounting().spans_sent, 120);
    }
    let records = sink.wait_records(240, Duration::from_secs(5));
    assert_all_arrived(&records[..120], &spans);
    assert_all_arrived(&records[120..], &spans);
}

#[tokio::test]
async fn otlp_json_parses_with_googles_json_format_and_rotel_accepts_it() {
    let Some(venv) = venv() else { return };
    let sink = Receiver::start(&venv, "otlp_sink.py", &[]);
    let spans = sample_spans(60);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(podtrace_export::DEFAULT_OTLP_JSON_FILE);
    write_otlp_json(&path, &spans).unwrap();
    let body = std::fs::read(&path).unwrap();
    // The sink parses OTLP/JSON with google.protobuf.json_format.ParseDict (unknown or
    // wrongly cased keys, non-integer enums, bad int64 strings are errors there).
    let client = reqwest::Client::new();
    let resp = client
        .post(format!("http://127.0.0.1:{}/v1/traces", sink.port))
        .header("Content-Type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    let status = resp.status();
    assert_eq!(status, 200, "{}", resp.text().await.unwrap());
    let records = sink.wait_records(60, Duration::from_secs(5));
    assert_all_arrived(&records, &spans);
    assert_eq!(
        otlp::from_json(std::str::from_utf8(&body).unwrap()).unwrap(),
        otlp::encode(&spans)
    );

    // rotel's OTLP/HTTP receiver takes the same JSON.
    let Some(rotel) = rotel_agent(&venv) else {
        return;
    };
    let (_rotel, http) = start_rotel(&rotel, &["--exporter", "blackhole"]);
    let resp = client
        .post(format!("http://127.0.0.1:{http}/v1/traces"))
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}
