//! End to end, as a user runs it (root): the demo cluster, `podtrace record -n demo POD`
//! resolving pods through the API server (kubeconfig), the capture read back by DuckDB, and
//! `podtrace analyze` turning two pods' captures into linked traces named from k8s metadata.

use crate::support;

use std::collections::{HashMap, HashSet};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::*;

/// `record`'s progress line (logged at debug level once the probes run): its
/// "recording ..." announcement comes before the probes are attached.
const RECORDING: &str = "events/s";

/// The tests of this file one at a time (each runs recorders and a cluster).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Records `pod` for `secs` into `file`; returns the running podtrace and its stderr lines.
fn record(cluster: &DemoCluster, pod: &str, file: &std::path::Path, secs: u32) -> (Proc, Lines) {
    let mut child = podtrace()
        .args(["record", "-n", "demo", pod, "-o"])
        .arg(file)
        .args(["--duration", &format!("{secs}s")])
        .env("KUBECONFIG", cluster.kubeconfig())
        // progress lines (debug) start once the probes run: the readiness signal
        .env("RUST_LOG", "warn,podtrace::cmd::record=debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn podtrace record");
    let err = Lines::collect(child.stderr.take().expect("stderr"), "record");
    let _out = Lines::collect(child.stdout.take().expect("stdout"), "record");
    (Proc::new(child, "INT", Duration::from_secs(20)), err)
}

fn str_of(v: &serde_json::Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

#[test]
fn record_pods_then_analyze_gives_linked_traces_named_by_k8s() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(venv) = prerequisites(false) else {
        return;
    };
    let cluster = DemoCluster::start("127.0.5", 25.0);
    let dir = tempfile::tempdir().expect("tempdir");
    let front = dir.path().join("frontend.parquet");
    let back = dir.path().join("backend.parquet");

    // Two recorders at once, one pod each (as on two nodes); traffic starts once both run.
    let (mut rec_front, err_front) = record(&cluster, "frontend-0", &front, 7);
    let (mut rec_back, err_back) = record(&cluster, "backend-0", &back, 7);
    for e in [&err_front, &err_back] {
        assert!(
            e.wait_for(RECORDING, Duration::from_secs(30)),
            "podtrace record did not start: {:?}",
            e.all()
        );
    }
    let go = cluster.go();
    for rec in [&mut rec_front, &mut rec_back] {
        let status = rec
            .wait_timeout(Duration::from_secs(40))
            .expect("record finished");
        assert!(status.success(), "podtrace record failed: {status}");
    }

    // --- the capture of frontend-0, read by DuckDB ---
    let f = front.display().to_string();
    let front_ip = cluster.ip("frontend-0");
    let pids: HashSet<u64> = cluster.pids("frontend-0").into_iter().collect();
    let rows = duckdb(
        &venv,
        &format!("select distinct pid, local_addr from '{f}' where record_type = 'socket_data'"),
    );
    assert!(!rows.is_empty(), "no socket rows recorded");
    for r in &rows {
        assert!(
            pids.contains(&r["pid"].as_u64().unwrap_or(0)) && r["local_addr"] == front_ip.as_str(),
            "traffic of a pod that was not targeted: {r} (frontend-0 pids {pids:?}, ip {front_ip})"
        );
    }
    let pods = duckdb(
        &venv,
        &format!("select k8s_kind, k8s_name from '{f}' where record_type = 'k8s_object'"),
    );
    assert!(
        pods.iter()
            .any(|r| r["k8s_kind"] == "Pod" && r["k8s_name"] == "frontend-0"),
        "no k8s_object row for the pod: {pods:?}"
    );
    assert!(
        pods.iter()
            .any(|r| r["k8s_kind"] == "Service" && r["k8s_name"] == "backend"),
        "no Service row: {pods:?}"
    );
    // both recorders ran (they started and stopped a little apart) until `last`
    let last = [&front, &back]
        .iter()
        .map(|c| {
            duckdb(
                &venv,
                &format!(
                    "select max(ts_ns) as t from '{}' where record_type = 'socket_data'",
                    c.display()
                ),
            )[0]["t"]
                .as_u64()
                .expect("max ts")
        })
        .min()
        .expect("two captures");
    let requests = cluster.requests_ended_between(go, last.saturating_sub(300_000_000));
    assert!(
        requests.len() >= 50,
        "too few requests while recording: {}",
        requests.len()
    );
    let received: String = duckdb(
        &venv,
        &format!(
            "select decode(payload) as p from '{f}' where record_type = 'socket_data' \
             and direction = 'ingress' and local_port = 8080"
        ),
    )
    .iter()
    .filter_map(|r| r["p"].as_str().map(str::to_string))
    .collect();
    for r in &requests {
        let tp = format!(
            "traceparent: 00-{}-{}-01",
            r["trace_id"].as_str().unwrap_or_default(),
            r["span_id"].as_str().unwrap_or_default()
        );
        assert!(
            received.contains(&tp),
            "request {r} of the load generator is not in the capture (traffic from {go}, \
             last row {last})"
        );
    }

    // --- analyze both pods' captures together ---
    let out = dir.path().join("out");
    let o = run(
        podtrace()
            .arg("analyze")
            .arg(&front)
            .arg(&back)
            .arg("--out")
            .arg(&out),
        Duration::from_secs(60),
    );
    assert!(o.status.success(), "analyze failed");
    let spans = read_spans(&out);
    let by_id: HashMap<(&str, &str), &SpanRow> = spans
        .iter()
        .map(|s| ((s.trace_id.as_str(), s.span_id.as_str()), s))
        .collect();
    let parent_of = |s: &SpanRow| {
        by_id
            .get(&(s.trace_id.as_str(), s.parent.as_str()))
            .copied()
    };
    let status = |s: &SpanRow| s.attr("http.response.status_code").and_then(|v| v.as_i64());

    // service names and pods come from the k8s metadata
    for s in &spans {
        let pod = s.resource_attr("k8s.pod.name").unwrap_or_default();
        assert!(
            (s.service == "frontend" && pod == "frontend-0")
                || (s.service == "backend" && pod == "backend-0"),
            "span {} {} of service {:?} pod {pod:?}",
            s.kind,
            s.name,
            s.service
        );
        assert_eq!(
            s.resource_attr("k8s.namespace.name").as_deref(),
            Some("demo")
        );
    }
    // zero orphans among recorded hops: in the traces of requests made while both recorders
    // ran, only frontend's server spans point outside (at the load generator's client span,
    // which was not recorded) — exactly the logged span id. (A request at the very end can
    // be in one pod's capture only: the two recorders stop a few ms apart.)
    let inside: HashSet<String> = requests.iter().map(|r| str_of(&r["trace_id"])).collect();
    let logged: HashMap<String, String> = cluster
        .load_log()
        .iter()
        .map(|r| (str_of(&r["trace_id"]), str_of(&r["span_id"])))
        .collect();
    let mut outside = 0u64;
    for s in &spans {
        if parent_of(s).is_none() {
            // the analyzer counts a span as an orphan when it has a parent id not in its trace
            outside += u64::from(!s.parent.is_empty());
            if !inside.contains(&s.trace_id) {
                continue;
            }
            assert!(
                s.service == "frontend" && s.kind == "server",
                "orphan or root among recorded hops: {} {} {} parent {:?}",
                s.service,
                s.kind,
                s.name,
                s.parent
            );
            assert_eq!(
                logged.get(&s.trace_id),
                Some(&s.parent),
                "frontend's server span is not the child of the load generator's request"
            );
        }
    }
    assert_eq!(read_summary(&out)["orphans"].as_u64(), Some(outside));

    // every request made while recording is a whole trace across both pods
    for r in &requests {
        let t = r["trace_id"].as_str().unwrap_or_default();
        let of = |svc: &str, kind: &str, name: &str| -> Vec<&SpanRow> {
            spans
                .iter()
                .filter(|s| s.trace_id == t && s.service == svc && s.kind == kind && s.name == name)
                .collect()
        };
        let fs = of("frontend", "server", "GET /");
        let fc = of("frontend", "client", "GET /api");
        let fi = of("frontend", "client", "GET /stock");
        let bs = of("backend", "server", "GET /api");
        let bc = of("backend", "client", "GET /query");
        for (what, v) in [
            ("frontend server", &fs),
            ("frontend → backend", &fc),
            ("frontend → inventory", &fi),
            ("backend server", &bs),
            ("backend → db", &bc),
        ] {
            assert_eq!(v.len(), 1, "trace {t}: {what} spans {}", v.len());
        }
        let (fs, fc, fi, bs, bc) = (fs[0], fc[0], fi[0], bs[0], bc[0]);
        assert_eq!(
            fc.parent, fs.span_id,
            "trace {t}: frontend's call is not a child of its server span"
        );
        assert_eq!(
            fi.parent, fs.span_id,
            "trace {t}: inventory call is not a child of frontend's server span"
        );
        assert_eq!(
            bs.parent, fc.span_id,
            "trace {t}: backend's server span is not a child of frontend's client span"
        );
        assert_eq!(
            bc.parent, bs.span_id,
            "trace {t}: backend's call to db is not a child of its server span"
        );
        assert_eq!(
            fc.attr("peer.service").and_then(|v| v.as_str()),
            Some("backend")
        );
        assert_eq!(
            fi.attr("peer.service").and_then(|v| v.as_str()),
            Some("inventory")
        );
        // both ends of a hop saw the same answer, and the answer is what the load generator got
        assert_eq!(
            status(fc),
            status(bs),
            "trace {t}: client and server disagree on the status"
        );
        assert_eq!(
            status(fs),
            r["status"].as_i64(),
            "trace {t}: frontend's status is not what the load generator got"
        );
        assert!(fs.raw["end_time_unix_nano"].as_u64() > fs.raw["start_time_unix_nano"].as_u64());
    }
    // backend fails every 20th request: frontend answers 502
    let failed = requests.iter().filter(|r| r["status"] == 502).count();
    assert!(
        failed >= requests.len() / 20 - 1,
        "{failed} failures of {}",
        requests.len()
    );

    // the graph renders without warnings
    if have_dot() {
        let o = run(
            Command::new("dot").arg("-Tsvg").arg(out.join("graph.dot")),
            Duration::from_secs(30),
        );
        assert!(o.status.success(), "dot failed");
        assert!(
            o.stderr.is_empty(),
            "dot warned: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(String::from_utf8_lossy(&o.stdout).contains("<svg"));
    } else {
        eprintln!("!!! not checking graph.dot: Graphviz `dot` is not installed !!!");
    }
    cluster.stop();
}

/// Recording a pod whose keep-alive connections are already busy (the usual case in a real
/// cluster): the first row of a connection can be a response to a request sent before the
/// recording began. That response must not be paired with the next request, or every later
/// server span of the connection would get the previous response (regression test).
#[test]
fn recording_busy_connections_pairs_each_request_with_its_own_response() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(_venv) = prerequisites(false) else {
        return;
    };
    let cluster = DemoCluster::start("127.0.9", 25.0);
    cluster.go(); // traffic first, recording second
    std::thread::sleep(Duration::from_secs(1));
    let dir = tempfile::tempdir().expect("tempdir");
    let front = dir.path().join("frontend.parquet");
    let (mut rec, _err) = record(&cluster, "frontend-0", &front, 4);
    let status = rec
        .wait_timeout(Duration::from_secs(40))
        .expect("record ended");
    assert!(status.success(), "record failed: {status}");
    let out = dir.path().join("out");
    let o = run(
        podtrace().arg("analyze").arg(&front).arg("--out").arg(&out),
        Duration::from_secs(60),
    );
    assert!(o.status.success(), "analyze failed");
    let spans = read_spans(&out);
    let status: HashMap<String, Option<i64>> = cluster
        .load_log()
        .iter()
        .map(|r| (str_of(&r["trace_id"]), r["status"].as_i64()))
        .collect();
    let servers: Vec<&SpanRow> = spans.iter().filter(|s| s.kind == "server").collect();
    assert!(servers.len() >= 40, "{} server spans", servers.len());
    for s in servers {
        let (start, end) = (&s.raw["start_time_unix_nano"], &s.raw["end_time_unix_nano"]);
        assert!(
            end.as_u64() > start.as_u64(),
            "server span {} {} has no duration",
            s.trace_id,
            s.name
        );
        if let Some(want) = status.get(&s.trace_id) {
            assert_eq!(
                s.attr("http.response.status_code").and_then(|v| v.as_i64()),
                *want,
                "trace {}: frontend's server span has another request's status",
                s.trace_id
            );
        }
    }
    cluster.stop();
}
