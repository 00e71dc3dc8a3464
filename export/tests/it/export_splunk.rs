//! Splunk HEC export, checked by `tools/receivers/hec.py` (the HEC contract of
//! CONTRACTS.md). The stand-in first has to accept events from the official npm client
//! `splunk-logging` 0.11.1 (an independent sender) before it judges podtrace.

use crate::common;

use std::process::Command;
use std::time::Duration;

use common::*;
use podtrace_export::{splunk_exporter, ExportError, Exporter, SplunkConfig};
use podtrace_model::{Span, SpanKind, StatusCode};
use serde_json::Value;

const TOKEN: &str = "11111111-2222-4333-8444-555555555555";

fn assert_event(e: &Value, span: &Span, config: &SplunkConfig) {
    let k = key(span);
    let ev = &e["event"];
    assert_eq!(e["source"], "podtrace", "{k}");
    assert_eq!(e["sourcetype"], config.sourcetype.as_str(), "{k}");
    assert_eq!(
        e.get("index").and_then(|v| v.as_str()),
        config.index.as_deref(),
        "{k}"
    );
    assert_eq!(
        e["host"],
        span.resource.get("k8s.node.name").unwrap(),
        "{k}"
    );
    let t = e["time"].as_f64().unwrap();
    assert!(
        (t - span.start_time_unix_nano as f64 / 1e9).abs() < 0.002,
        "{k} time {t}"
    );
    assert_eq!(
        ev["parent_span_id"],
        span.parent_span_id
            .map(|p| Value::from(p.to_string()))
            .unwrap_or(Value::Null),
        "{k}"
    );
    assert_eq!(ev["name"], span.name.as_str());
    let kind = match span.kind {
        SpanKind::Server => "server",
        SpanKind::Client => "client",
    };
    assert_eq!(ev["kind"], kind, "{k}");
    assert_eq!(ev["service"], span.resource.service_name.as_str(), "{k}");
    assert_eq!(ev["pod"], span.resource.get("k8s.pod.name").unwrap(), "{k}");
    assert_eq!(ev["namespace"], "shop", "{k}");
    assert_eq!(
        ev["duration_ms"].as_f64().unwrap(),
        span.duration_ns() as f64 / 1e6,
        "{k}"
    );
    let status = match span.status.code {
        StatusCode::Error => "error",
        StatusCode::Ok => "ok",
        StatusCode::Unset => "unset",
    };
    assert_eq!(ev["status"], status, "{k}");
    assert!(
        ev["start_time"]
            .as_str()
            .unwrap()
            .starts_with("2025-11-24T"),
        "{k}"
    );
    for kv in &span.attributes {
        assert_eq!(
            ev["attributes"][&*kv.key],
            attr_json(&kv.value),
            "{k} {}",
            kv.key
        );
    }
}

#[tokio::test]
async fn stand_in_speaks_hec_to_the_npm_client_then_takes_podtrace_events() {
    let Some(venv) = venv() else { return };
    let Some(npm_client) = splunk_logging_client() else {
        return;
    };
    let hec = Receiver::start(&venv, "hec.py", &["--token", TOKEN]);
    let url = hec.url("http");

    // 1. The independent client.
    let out = Command::new("node")
        .arg(&npm_client)
        .args([url.as_str(), TOKEN, "3"])
        .output()
        .expect("run node");
    let answers: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(answers.len(), 3, "{answers:?}");
    assert!(answers.iter().all(|a| a["ok"] == true), "{answers:?}");
    let npm_events = hec.wait_records(3, Duration::from_secs(5));
    assert!(npm_events
        .iter()
        .all(|e| e["_path"] == "/services/collector/event/1.0" && e["time"].is_string()));
    let health: Value = serde_json::from_str(
        &reqwest::get(format!("{url}services/collector/health"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(health["code"], 17);

    // 2. podtrace, gzip on, an index and the default sourcetype.
    let spans = sample_spans(130);
    let config = SplunkConfig {
        index: Some("traces".into()),
        ..SplunkConfig::new(url, TOKEN)
    };
    let mut delivery = test_config().delivery;
    delivery.gzip = true;
    let exporter = splunk_exporter(&config, &delivery).unwrap();
    assert!(exporter.endpoint().ends_with("/services/collector"));
    exporter.export(&spans).await.unwrap();
    let acc = exporter.accounting();
    assert_eq!(
        (acc.spans_sent, acc.requests, acc.failed_requests),
        (130, 3, 0)
    );
    let records = hec.wait_records(133, Duration::from_secs(5));
    let ours: Vec<Value> = records
        .into_iter()
        .filter(|e| e["source"] == "podtrace")
        .collect();
    assert_eq!(ours.len(), 130);
    let got = by_id(&ours.iter().map(|e| e["event"].clone()).collect::<Vec<_>>());
    for span in &spans {
        let ev = got
            .get(&key(span))
            .unwrap_or_else(|| panic!("{} missing", key(span)));
        let e = ours.iter().find(|e| &e["event"] == ev).unwrap();
        assert_event(e, span, &config);
    }
}

#[tokio::test]
async fn stand_in_answers_with_hec_codes() {
    let Some(venv) = venv() else { return };
    let hec = Receiver::start(&venv, "hec.py", &["--token", TOKEN]);
    let client = reqwest::Client::new();
    let post = |path: &str, auth: Option<&str>, body: &'static str| {
        let mut r = client
            .post(format!("http://127.0.0.1:{}{path}", hec.port))
            .body(body);
        if let Some(a) = auth {
            r = r.header("Authorization", a.to_string());
        }
        async move {
            let r = r.send().await.unwrap();
            let status = r.status().as_u16();
            let v: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
            (status, v["code"].as_i64().unwrap())
        }
    };
    let good = format!("Splunk {TOKEN}");
    let good = good.as_str();
    let ev = r#"{"event":{"a":1}}"#;
    assert_eq!(post("/services/collector", None, ev).await, (401, 2));
    assert_eq!(
        post("/services/collector", Some("Bearer x"), ev).await,
        (401, 3)
    );
    assert_eq!(
        post("/services/collector", Some("Splunk nope"), ev).await,
        (403, 4)
    );
    assert_eq!(post("/services/collector", Some(good), "").await, (400, 5));
    assert_eq!(
        post("/services/collector", Some(good), "[1,2]").await,
        (400, 6)
    );
    assert_eq!(
        post("/services/collector", Some(good), r#"{"time":1}"#).await,
        (400, 12)
    );
    assert_eq!(
        post("/services/collector", Some(good), r#"{"event":""}"#).await,
        (400, 13)
    );
    assert_eq!(
        post(
            "/services/collector/event",
            Some(good),
            r#"{"event":"a"}{"event":{"b":2}}"#
        )
        .await,
        (200, 0)
    );
    assert_eq!(hec.wait_records(2, Duration::from_secs(5)).len(), 2);
}

#[tokio::test]
async fn https_verifies_certificates_unless_told_otherwise() {
    let Some(venv) = venv() else { return };
    let dir = tempfile::tempdir().unwrap();
    let Some(pki) = make_pki(dir.path()) else {
        return;
    };
    let hec = Receiver::start(
        &venv,
        "hec.py",
        &[
            "--token",
            TOKEN,
            "--cert",
            pki.cert.to_str().unwrap(),
            "--key",
            pki.key.to_str().unwrap(),
        ],
    );
    let spans = sample_spans(20);
    let delivery = test_config().delivery;
    let base = SplunkConfig::new(hec.url("https"), TOKEN);

    // Verification on, CA unknown: a TLS error, not retried, nothing delivered.
    let exporter = splunk_exporter(&base, &delivery).unwrap();
    let err = exporter.export(&spans).await.unwrap_err();
    assert!(matches!(err, ExportError::Tls { .. }), "{err}");
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
    assert_eq!(exporter.accounting().retried_requests, 0);
    assert_eq!(exporter.accounting().dropped_spans, 20);
    assert_eq!(hec.records().len(), 0);

    // With the CA file: delivered.
    let with_ca = SplunkConfig {
        ca_file: Some(pki.ca.clone()),
        ..base.clone()
    };
    let exporter = splunk_exporter(&with_ca, &delivery).unwrap();
    exporter.export(&spans).await.unwrap();
    assert_eq!(hec.wait_records(20, Duration::from_secs(5)).len(), 20);

    // Insecure switch: delivered without the CA.
    let insecure = SplunkConfig {
        insecure: true,
        ..base.clone()
    };
    let exporter = splunk_exporter(&insecure, &delivery).unwrap();
    exporter.export(&spans).await.unwrap();
    assert_eq!(hec.wait_records(40, Duration::from_secs(5)).len(), 40);

    // A CA file that is not a certificate is a configuration error up front.
    let bad = SplunkConfig {
        ca_file: Some(pki.key.clone()),
        ..base
    };
    let err = splunk_exporter(&bad, &delivery).unwrap_err();
    assert!(matches!(err, ExportError::Config(_)), "{err}");
}
