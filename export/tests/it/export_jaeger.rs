//! Jaeger export, checked by `tools/receivers/jaeger_collector.py`: the collector's HTTP
//! contract (202; 400 on a wrong content type or an undecodable body) with the body decoded
//! by PyPI jaeger-client's generated Thrift code (TBinaryProtocol over TMemoryBuffer).

use crate::common;

use std::time::Duration;

use common::*;
use podtrace_export::{jaeger_exporter, ExportError, Exporter};
use podtrace_model::{AttrValue, Span, SpanKind, StatusCode};
use serde_json::Value;

fn assert_span(rec: &Value, span: &Span) {
    let k = key(span);
    assert_eq!(
        rec["parent_span_id"],
        format!(
            "{:016x}",
            span.parent_span_id.map(|p| p.as_u64()).unwrap_or(0)
        ),
        "{k}"
    );
    assert_eq!(rec["operation"], span.name.as_str(), "{k}");
    assert_eq!(rec["flags"], span.flags & 0xff, "{k}");
    assert_eq!(rec["start_us"], span.start_time_unix_nano / 1000, "{k}");
    assert_eq!(rec["duration_us"], span.duration_ns() / 1000, "{k}");
    assert_eq!(rec["service"], span.resource.service_name.as_str(), "{k}");
    for (key, value) in &span.resource.attributes {
        assert_eq!(rec["process_tags"][key], value.as_str(), "{k} {key}");
    }
    let refs = rec["references"].as_array().unwrap();
    match span.parent_span_id {
        Some(p) => assert_eq!(
            refs,
            &vec![Value::from(vec![
                Value::from(0),
                Value::from(span.trace_id.to_string()),
                Value::from(p.to_string())
            ])],
            "{k} CHILD_OF"
        ),
        None => assert!(refs.is_empty(), "{k}"),
    }
    let tags = &rec["tags"];
    let kind = match span.kind {
        SpanKind::Server => "server",
        SpanKind::Client => "client",
    };
    assert_eq!(tags["span.kind"], kind, "{k}");
    assert_eq!(tags["http.method"], "GET", "{k}");
    let code = match span.attribute("http.response.status_code") {
        Some(AttrValue::Int(c)) => *c,
        other => panic!("{other:?}"),
    };
    assert_eq!(tags["http.status_code"], code, "{k}");
    if span.status.code == StatusCode::Error {
        assert_eq!(tags["error"], true, "{k}");
    } else {
        assert!(tags.get("error").is_none(), "{k}");
    }
    for kv in &span.attributes {
        assert_eq!(tags[&*kv.key], attr_json(&kv.value), "{k} {}", kv.key);
    }
}

#[tokio::test]
async fn collector_decodes_every_span_with_jaeger_clients_thrift_code() {
    let Some(venv) = venv() else { return };
    let collector = Receiver::start(&venv, "jaeger_collector.py", &[]);
    let spans = sample_spans(300);
    let exporter = jaeger_exporter(&collector.url("http"), &test_config().delivery).unwrap();
    assert!(exporter.endpoint().ends_with("/api/traces"));
    exporter.export(&spans).await.unwrap();
    let acc = exporter.accounting();
    assert_eq!(acc.spans_sent, 300);
    assert_eq!(acc.failed_requests, 0);
    // 6 batches of 50, each split into one Batch per workload (three workloads).
    assert_eq!(acc.requests as usize, collector.requests());
    assert!(acc.requests >= 6 && acc.requests <= 18, "{acc:?}");

    let records = collector.wait_records(300, Duration::from_secs(5));
    assert_eq!(records.len(), 300, "each span exactly once");
    let got = by_id(&records);
    for span in &spans {
        assert_span(&got[&key(span)], span);
    }
    // Ids with the top bit set travel as negative i64 and come back unsigned.
    assert!(spans.iter().any(|s| s.span_id.as_u64() >= 1 << 63));

    // Reusable across calls (live mode).
    exporter.export(&spans[..10]).await.unwrap();
    assert_eq!(exporter.accounting().spans_sent, 310);
}

#[tokio::test]
async fn collector_contract_rejects_wrong_content_type_and_garbage() {
    let Some(venv) = venv() else { return };
    let collector = Receiver::start(&venv, "jaeger_collector.py", &[]);
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{}/api/traces", collector.port);
    let body = podtrace_export::jaeger::batch_bytes(
        &podtrace_export::jaeger::encode_batches(&sample_spans(4))[0],
    )
    .unwrap();
    let r = client
        .post(&url)
        .header("Content-Type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("Unsupported content type"));
    let r = client
        .post(&url)
        .header("Content-Type", "application/x-thrift")
        .body(b"\x0c\x00\x01garbage".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("Unable to process request body"));
    let r = client
        .post(&url)
        .header("Content-Type", "application/vnd.apache.thrift.binary")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);

    // A 400 is a permanent rejection for the exporter: not retried, reported with the text,
    // and the next batch is still sent.
    let picky = Receiver::start(
        &venv,
        "jaeger_collector.py",
        &[
            "--fail",
            "1",
            "--fail-status",
            "400",
            "--fail-body",
            "Unable to process request body: test",
        ],
    );
    let mut delivery = test_config().delivery;
    delivery.batch_size = 4;
    let exporter = jaeger_exporter(&picky.url("http"), &delivery).unwrap();
    let spans: Vec<_> = sample_spans(40)
        .into_iter()
        .filter(|s| s.resource.service_name == "frontend")
        .collect();
    let err = exporter.export(&spans).await.unwrap_err();
    assert!(
        matches!(err, ExportError::Rejected { status: 400, .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("Unable to process request body"),
        "{err}"
    );
    let acc = exporter.accounting();
    assert_eq!(acc.retried_requests, 0);
    assert_eq!(acc.failed_requests, 1);
    assert!(spans.len() > 4, "several batches");
    assert_eq!(acc.requests as usize, spans.len().div_ceil(4), "{acc:?}");
    assert_eq!(acc.spans_sent + acc.dropped_spans, spans.len() as u64);
    assert_eq!(
        picky
            .wait_records(acc.spans_sent as usize, Duration::from_secs(5))
            .len() as u64,
        acc.spans_sent
    );
}
