//! Live mode end to end (root): `podtrace -n demo -l SEL --tracing --tracing-otlp-endpoint`
//! against the demo cluster with rotel as the OTLP receiver. Every request the load generator
//! logged must arrive as a linked trace; the export latency (the load generator got its
//! response → the span reached the sink behind rotel) is measured and printed; `--save`
//! must give the same spans when analyzed afterwards; Ctrl-C under load must exit cleanly
//! with every span accounted for.

mod support;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use support::*;

/// Live tests measure latency: one at a time, so they do not compete for the CPUs.
static SERIAL: Mutex<()> = Mutex::new(());

/// Watches the sink's output file and notes when each span line first appeared (polled every
/// 20 ms, so arrival times are late by at most that).
struct ArrivalClock {
    seen: Arc<Mutex<HashMap<(String, String), u64>>>,
    stop: Arc<AtomicBool>,
}

impl ArrivalClock {
    fn start(collector: &Collector) -> ArrivalClock {
        let seen = Arc::new(Mutex::new(HashMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st, path) = (seen.clone(), stop.clone(), collector.out.clone());
        std::thread::spawn(move || {
            let mut done = 0usize;
            while !st.load(Ordering::Relaxed) {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                let now = now_ns();
                let complete = text.rfind('\n').map_or("", |i| &text[..i]);
                let lines: Vec<&str> = complete.lines().collect();
                let mut map = s.lock().expect("arrivals lock");
                for l in lines.iter().skip(done) {
                    if let Ok(v) = serde_json::from_str::<Value>(l) {
                        let key = (
                            v["trace_id"].as_str().unwrap_or_default().to_string(),
                            v["span_id"].as_str().unwrap_or_default().to_string(),
                        );
                        map.entry(key).or_insert(now);
                    }
                }
                done = lines.len();
                drop(map);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        ArrivalClock { seen, stop }
    }

    fn get(&self, trace: &str, span: &str) -> Option<u64> {
        self.seen
            .lock()
            .expect("arrivals lock")
            .get(&(trace.to_string(), span.to_string()))
            .copied()
    }
}

impl Drop for ArrivalClock {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Starts live mode on every pod of the cluster, exporting to `collector`.
fn live(cluster: &DemoCluster, collector: &Collector, extra: &[&str]) -> (Proc, Lines, Lines) {
    let mut child = podtrace()
        .args(["-n", "demo", "-l", &cluster.selector(), "--tracing"])
        .args(["--tracing-otlp-endpoint", &collector.url()])
        .args(extra)
        .env("KUBECONFIG", cluster.kubeconfig())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn podtrace live");
    let err = Lines::collect(child.stderr.take().expect("stderr"), "live");
    let out = Lines::collect(child.stdout.take().expect("stdout"), "live");
    let proc = Proc::new(child, "INT", Duration::from_secs(30));
    assert!(
        err.wait_for("live on", Duration::from_secs(30)),
        "live mode did not start: {:?}",
        err.all()
    );
    (proc, out, err)
}

/// The numbers of the final summary: (spans emitted, spans sent, spans dropped).
fn accounting(stdout: &[String]) -> (u64, u64, u64) {
    let num_before = |line: &str, word: &str| -> Option<u64> {
        let i = line.find(word)?;
        line[..i].split_whitespace().last()?.parse().ok()
    };
    let live = stdout
        .iter()
        .find(|l| l.starts_with("live: "))
        .unwrap_or_else(|| panic!("no `live:` summary line in {stdout:?}"));
    let emitted = num_before(live, " spans").expect("emitted spans");
    let export = stdout
        .iter()
        .find(|l| l.starts_with("export: "))
        .unwrap_or_else(|| panic!("no export line in {stdout:?}"));
    let sent = num_before(export, " spans sent").expect("spans sent");
    let dropped = num_before(export, " spans dropped").expect("spans dropped");
    (emitted, sent, dropped)
}

fn quantile(sorted: &[u64], q: f64) -> f64 {
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i] as f64 / 1e6
}

#[test]
fn live_traces_reach_rotel_with_parents_and_saved_capture_agrees() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(venv) = prerequisites(true) else {
        return;
    };
    let cluster = DemoCluster::start("127.0.7", 20.0);
    let collector = Collector::start(&venv);
    let clock = ArrivalClock::start(&collector);
    let dir = tempfile::tempdir().expect("tempdir");
    let saved = dir.path().join("live.parquet");
    let out = dir.path().join("live-out");
    let save_arg = saved.display().to_string();
    let out_arg = out.display().to_string();
    let (mut proc, stdout, _err) = live(
        &cluster,
        &collector,
        &["--duration", "10s", "--save", &save_arg, "--out", &out_arg],
    );
    let go = cluster.go();
    let status = proc
        .wait_timeout(Duration::from_secs(60))
        .expect("live mode ended");
    let stopped = now_ns();
    assert!(status.success(), "live mode failed: {status}");
    let (emitted, sent, dropped) = accounting(&stdout.all());
    assert_eq!(dropped, 0, "spans dropped by the exporter");
    assert_eq!(emitted, sent, "spans built vs sent");
    let arrived = collector.wait_settled(sent as usize, Duration::from_secs(30));
    assert_eq!(
        arrived.len() as u64,
        sent,
        "spans sent vs arrived at the sink"
    );

    // every request made while live mode ran is a linked trace of 10 spans at the sink
    let per_trace = group_by_trace(&arrived);
    let requests = cluster.requests_ended_between(go, stopped.saturating_sub(2_000_000_000));
    assert!(requests.len() >= 80, "{} requests", requests.len());
    let mut root_latency = Vec::new();
    let mut trace_latency = Vec::new();
    for r in &requests {
        let t = r["trace_id"].as_str().unwrap_or_default();
        let spans = per_trace.get(t).map(Vec::as_slice).unwrap_or_default();
        assert_eq!(
            spans.len(),
            10,
            "trace {t} has {} spans at the sink",
            spans.len()
        );
        let ids: HashSet<&str> = spans.iter().filter_map(|s| s["span_id"].as_str()).collect();
        for s in spans {
            let p = s["parent_span_id"].as_str().unwrap_or_default();
            if p.is_empty() {
                assert_eq!(s["span_id"], r["span_id"], "trace {t}: unexpected root {s}");
                assert_eq!(s["service"], "loadgen");
            } else {
                assert!(ids.contains(p), "trace {t}: parent of {s} missing");
            }
        }
        let end = r["end_ns"].as_u64().unwrap_or_default();
        let root = clock
            .get(t, r["span_id"].as_str().unwrap_or_default())
            .expect("root span arrival time");
        root_latency.push(root.saturating_sub(end));
        let last = spans
            .iter()
            .filter_map(|s| clock.get(t, s["span_id"].as_str().unwrap_or_default()))
            .max()
            .expect("arrival times");
        trace_latency.push(last.saturating_sub(end));
    }
    root_latency.sort_unstable();
    trace_latency.sort_unstable();
    eprintln!(
        "EXPORT LATENCY (load generator got its response → span at the sink behind rotel), {} requests:\n  \
         root span:    min {:.0} ms, median {:.0} ms, p95 {:.0} ms, max {:.0} ms\n  \
         whole trace:  min {:.0} ms, median {:.0} ms, p95 {:.0} ms, max {:.0} ms",
        requests.len(),
        quantile(&root_latency, 0.0),
        quantile(&root_latency, 0.5),
        quantile(&root_latency, 0.95),
        quantile(&root_latency, 1.0),
        quantile(&trace_latency, 0.0),
        quantile(&trace_latency, 0.5),
        quantile(&trace_latency, 0.95),
        quantile(&trace_latency, 1.0),
    );
    assert!(
        quantile(&trace_latency, 1.0) < 30_000.0,
        "a trace took more than 30 s to arrive"
    );

    // the saved capture, analyzed afterwards, gives the same spans as live mode
    let later = dir.path().join("later");
    let o = run(
        podtrace()
            .arg("analyze")
            .arg(&saved)
            .arg("--out")
            .arg(&later),
        Duration::from_secs(60),
    );
    assert!(o.status.success(), "analyze of the saved capture failed");
    let again: BTreeSet<(String, String, String)> = read_spans(&later)
        .into_iter()
        .map(|s| (s.trace_id, s.span_id, s.parent))
        .collect();
    let live_ids: BTreeSet<(String, String, String)> = arrived
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
            (s("trace_id"), s("span_id"), s("parent_span_id"))
        })
        .collect();
    let only_live: Vec<_> = live_ids.difference(&again).collect();
    let only_saved: Vec<_> = again.difference(&live_ids).collect();
    assert!(
        only_live.is_empty() && only_saved.is_empty(),
        "live and saved differ: {} only live {:?}…, {} only in the saved capture {:?}…",
        only_live.len(),
        only_live.iter().take(3).collect::<Vec<_>>(),
        only_saved.len(),
        only_saved.iter().take(3).collect::<Vec<_>>()
    );
    drop(clock);
    drop(collector);
    cluster.stop();
}

#[test]
fn sigint_under_heavy_traffic_exits_cleanly_with_every_span_accounted() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(venv) = prerequisites(true) else {
        return;
    };
    let cluster = DemoCluster::start("127.0.8", 0.0); // load generator flat out
    let collector = Collector::start(&venv);
    let dir = tempfile::tempdir().expect("tempdir");
    let out_arg = dir.path().join("out").display().to_string();
    let (mut proc, stdout, _err) = live(&cluster, &collector, &["--out", &out_arg]);
    let go = cluster.go();
    std::thread::sleep(Duration::from_secs(5));
    proc.signal("INT");
    let status = proc
        .wait_timeout(Duration::from_secs(30))
        .expect("live mode did not stop within 30 s of SIGINT");
    assert!(status.success(), "exit status after SIGINT: {status}");
    let requests = cluster
        .load_log()
        .iter()
        .filter(|r| r["end_ns"].as_u64().unwrap_or(0) >= go)
        .count();
    let (emitted, sent, dropped) = accounting(&stdout.all());
    eprintln!(
        "SIGINT after 5 s at full load: {requests} requests, {emitted} spans built, {sent} sent, {dropped} dropped"
    );
    assert!(requests >= 100, "not heavy: {requests} requests in 5 s");
    assert!(emitted >= 500, "only {emitted} spans under heavy traffic");
    assert_eq!(emitted, sent + dropped, "spans in ≠ out + drops");
    let arrived = collector.wait_settled(sent as usize, Duration::from_secs(30));
    assert_eq!(arrived.len() as u64, sent, "spans sent vs arrived");
    drop(collector);
    cluster.stop();
}
