//! The spine end to end (root): every pod of the demo cluster recorded with a label selector
//! → capture → `podtrace analyze --tracing-otlp-endpoint` → rotel (a real OTLP collector) →
//! the OTLP test sink, which decodes with PyPI `opentelemetry-proto`. Every span podtrace
//! wrote locally must arrive with the same ids, parents and services.

use crate::support;

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use support::*;

/// (trace, span) → (parent, service, kind, name, status code) of what arrived at the sink.
type Key = (String, String);
type Facts = (String, String, String, String, Option<i64>);

fn sink_facts(r: &Value) -> (Key, Facts) {
    let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
    let kind = match r["kind"].as_i64() {
        Some(2) => "server",
        Some(3) => "client",
        _ => "other",
    };
    (
        (s("trace_id"), s("span_id")),
        (
            s("parent_span_id"),
            s("service"),
            kind.to_string(),
            s("name"),
            r["attributes"]["http.response.status_code"].as_i64(),
        ),
    )
}

fn local_facts(s: &SpanRow) -> (Key, Facts) {
    (
        (s.trace_id.clone(), s.span_id.clone()),
        (
            s.parent.clone(),
            s.service.clone(),
            s.kind.clone(),
            s.name.clone(),
            s.attr("http.response.status_code").and_then(Value::as_i64),
        ),
    )
}

#[test]
fn recorded_capture_reaches_rotel_with_ids_parents_and_services() {
    let Some(venv) = prerequisites(true) else {
        return;
    };
    let cluster = DemoCluster::start("127.0.6", 20.0);
    let collector = Collector::start(&venv);
    let dir = tempfile::tempdir().expect("tempdir");
    let cap = dir.path().join("demo.parquet");

    let mut child = podtrace()
        .args(["record", "-n", "demo", "-l", &cluster.selector(), "-o"])
        .arg(&cap)
        .args(["--duration", "6s"])
        .env("KUBECONFIG", cluster.kubeconfig())
        // progress lines (debug) start once the probes run: the readiness signal
        .env("RUST_LOG", "warn,podtrace::cmd::record=debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn podtrace record");
    let err = Lines::collect(child.stderr.take().expect("stderr"), "record");
    let out = Lines::collect(child.stdout.take().expect("stdout"), "record");
    let mut rec = Proc::new(child, "INT", Duration::from_secs(20));
    assert!(
        err.wait_for("events/s", Duration::from_secs(30)),
        "podtrace record did not start"
    );
    let go = cluster.go();
    // The recording ends at one instant when the duration is up, and the summary follows
    // at once; the process exits later (the kernel detaches the probes one by one, ~1–2 s),
    // so the end of the recording is taken from the summary, not from the exit.
    assert!(
        out.wait_for("wrote ", Duration::from_secs(40)),
        "no summary from record"
    );
    let recorded_until = support::now_ns();
    let status = rec
        .wait_timeout(Duration::from_secs(40))
        .expect("record ended");
    assert!(status.success(), "record failed: {status}");

    let out = dir.path().join("out");
    let o = run(
        podtrace()
            .arg("analyze")
            .arg(&cap)
            .arg("--out")
            .arg(&out)
            .args(["--tracing-otlp-endpoint", &collector.url()]),
        Duration::from_secs(60),
    );
    assert!(o.status.success(), "analyze with OTLP export failed");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("export:"), "no export report: {stdout}");

    let local = read_spans(&out);
    assert!(local.len() >= 300, "only {} spans", local.len());
    let arrived = collector.wait_settled(local.len(), Duration::from_secs(30));
    assert_eq!(
        arrived.len(),
        local.len(),
        "spans lost or duplicated on the way"
    );
    let want: BTreeMap<Key, Facts> = local.iter().map(local_facts).collect();
    let got: BTreeMap<Key, Facts> = arrived.iter().map(sink_facts).collect();
    assert_eq!(
        got.len(),
        arrived.len(),
        "duplicate (trace, span) at the sink"
    );
    for (k, v) in &want {
        assert_eq!(
            got.get(k),
            Some(v),
            "span {k:?} arrived different or not at all"
        );
    }
    // resources carry the k8s identity
    for r in &arrived {
        let pod = r["resource"]["k8s.pod.name"].as_str().unwrap_or_default();
        let svc = r["service"].as_str().unwrap_or_default();
        assert_eq!(pod, format!("{svc}-0"), "resource of {r}");
        assert_eq!(r["resource"]["k8s.namespace.name"], "demo");
    }

    // every request the load generator made while recording is one whole trace of 10 spans
    // rooted at its own client span (the span id it sent)
    let per_trace = group_by_trace(&arrived);
    let requests = cluster.requests_ended_between(go, recorded_until.saturating_sub(1_500_000_000));
    assert!(requests.len() >= 40, "{} requests", requests.len());
    for r in &requests {
        let t = r["trace_id"].as_str().unwrap_or_default();
        let spans = per_trace.get(t).map(Vec::as_slice).unwrap_or_default();
        assert_eq!(spans.len(), 10, "trace {t} has {} spans", spans.len());
        let roots: Vec<_> = spans.iter().filter(|s| s["parent_span_id"] == "").collect();
        assert_eq!(roots.len(), 1, "trace {t}: {} roots", roots.len());
        assert_eq!(
            roots[0]["span_id"], r["span_id"],
            "trace {t}: root is not the request sent"
        );
        assert_eq!(roots[0]["service"], "loadgen");
        assert_eq!(
            roots[0]["attributes"]["http.response.status_code"].as_i64(),
            r["status"].as_i64()
        );
    }
    drop(collector);
    cluster.stop();
}
