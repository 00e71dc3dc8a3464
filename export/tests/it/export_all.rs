//! `export_all` with the three exporters at once: every receiver gets exactly the same
//! spans, and the reports say so.

use crate::common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use podtrace_export::{build_exporters, export_all, SplunkConfig};
use serde_json::Value;

fn ids(records: &[Value]) -> BTreeSet<String> {
    by_id(records).into_keys().collect()
}

#[tokio::test]
async fn every_receiver_gets_the_same_spans() {
    let Some(venv) = venv() else { return };
    let otlp = Receiver::start(&venv, "otlp_sink.py", &[]);
    let jaeger = Receiver::start(&venv, "jaeger_collector.py", &[]);
    let hec = Receiver::start(&venv, "hec.py", &["--token", "tok"]);
    let spans = sample_spans(257);
    let config = podtrace_export::ExportConfig {
        otlp: Some(otlp.url("http")),
        jaeger: Some(jaeger.url("http")),
        splunk: Some(SplunkConfig::new(hec.url("http"), "tok")),
        delivery: podtrace_export::DeliveryConfig {
            gzip: true,
            ..test_config().delivery
        },
    };
    let exporters = build_exporters(&config).unwrap();
    let names: Vec<_> = exporters.iter().map(|e| e.name().to_string()).collect();
    assert_eq!(names, ["otlp", "jaeger", "splunk"]);
    let reports = export_all(&exporters, &spans).await;
    for r in &reports {
        assert!(r.is_ok(), "{r}");
        assert_eq!(r.accounting.spans_sent, 257, "{r}");
        assert_eq!(r.spans, 257);
        let text = r.to_string();
        assert!(text.contains("257/257 spans sent"), "{text}");
        let json = serde_json::to_value(r).unwrap();
        assert_eq!(json["spans_sent"], 257);
        assert_eq!(json["error"], Value::Null);
    }

    let want: BTreeSet<String> = spans.iter().map(key).collect();
    assert_eq!(want.len(), 257);
    let otlp_got = otlp.wait_records(257, Duration::from_secs(5));
    let jaeger_got = jaeger.wait_records(257, Duration::from_secs(5));
    let hec_got: Vec<Value> = hec
        .wait_records(257, Duration::from_secs(5))
        .into_iter()
        .map(|e| e["event"].clone())
        .collect();
    for (name, got) in [
        ("otlp", &otlp_got),
        ("jaeger", &jaeger_got),
        ("splunk", &hec_got),
    ] {
        assert_eq!(got.len(), 257, "{name}: each span once");
        assert_eq!(ids(got), want, "{name}");
    }

    // gzip where the receiver supports it; never to the Jaeger collector.
    assert!(otlp.request_encodings().iter().all(|e| e == "gzip"));
    assert!(hec.request_encodings().iter().all(|e| e == "gzip"));
    assert!(jaeger.request_encodings().iter().all(|e| e.is_empty()));
    assert!(!jaeger.request_encodings().is_empty());

    // The exporters are reusable: a second small batch goes through again.
    let reports = export_all(&exporters, &spans[..5]).await;
    assert!(reports
        .iter()
        .all(|r| r.is_ok() && r.accounting.spans_sent == 5));
    assert_eq!(exporters[0].accounting().spans_sent, 262, "cumulative");
}

#[tokio::test]
async fn concurrent_requests_deliver_every_span_once() {
    let Some(venv) = venv() else { return };
    let otlp = Receiver::start(&venv, "otlp_sink.py", &[]);
    let jaeger = Receiver::start(&venv, "jaeger_collector.py", &[]);
    let hec = Receiver::start(&venv, "hec.py", &["--token", "tok", "--busy", "3"]);
    let spans = sample_spans(301);
    let config = podtrace_export::ExportConfig {
        otlp: Some(otlp.url("http")),
        jaeger: Some(jaeger.url("http")),
        splunk: Some(SplunkConfig::new(hec.url("http"), "tok")),
        delivery: podtrace_export::DeliveryConfig {
            batch_size: 7,
            concurrency: 4,
            ..test_config().delivery
        },
    };
    let exporters = build_exporters(&config).unwrap();
    let reports = export_all(&exporters, &spans).await;
    for r in &reports {
        assert!(r.is_ok(), "{r}");
        assert_eq!(r.accounting.spans_sent, 301, "{r}");
    }
    assert_eq!(
        reports[0].accounting.requests, 43,
        "301 spans / 7 per batch"
    );
    assert_eq!(
        reports[2].accounting.retried_requests, 3,
        "HEC busy three times"
    );
    let want: BTreeSet<String> = spans.iter().map(key).collect();
    let hec_events: Vec<Value> = hec
        .wait_records(301, Duration::from_secs(5))
        .into_iter()
        .map(|e| e["event"].clone())
        .collect();
    for got in [
        otlp.wait_records(301, Duration::from_secs(5)),
        jaeger.wait_records(301, Duration::from_secs(5)),
        hec_events,
    ] {
        assert_eq!(got.len(), 301, "each span once");
        assert_eq!(ids(&got), want);
    }
}
