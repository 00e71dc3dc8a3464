//! Live mode end to end (root): `podtrace -n demo -l SEL --tracing --tracing-otlp-endpoint`
//! against the demo cluster with rotel as the OTLP receiver. Every request the load generator
//! logged must arrive as a linked trace; the export latency (the load generator got its
//! response → the span reached the sink behind rotel) is measured and printed; `--save`
//! must give the same spans when analyzed afterwards; Ctrl-C under load must exit cleanly
//! with every span accounted for.

use crate::support;

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
        // `12/34 spans sent`: the first number; `5 spans dropped`: the number.
        line[..i]
            .split_whitespace()
            .last()?
            .split('/')
            .next()?
            .parse()
            .ok()
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
    // The recording ends at one instant when the duration is up; the summary follows at
    // once. The process exits later (the kernel detaches the probes one by one, ~1–2 s),
    // so the end of the recording is taken from the summary, not from the exit.
    assert!(
        stdout.wait_for("live: ", Duration::from_secs(60)),
        "no summary from live mode"
    );
    let stopped = now_ns();
    let status = proc
        .wait_timeout(Duration::from_secs(60))
        .expect("live mode ended");
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

/// A TCP server on loopback that accepts connections and never answers (an endpoint that
/// hangs). Stops with the returned guard.
fn hanging_endpoint() -> (u16, Arc<AtomicBool>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    listener.set_nonblocking(true).expect("nonblocking");
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = Arc::clone(&stop);
    std::thread::spawn(move || {
        let mut held = Vec::new();
        while !stopped.load(Ordering::SeqCst) {
            match listener.accept() {
                Ok((s, _)) => held.push(s),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    });
    (port, stop)
}

/// An HTTP server on loopback that answers every request with 503 after `delay` (a
/// backend that is overloaded and slow to say so).
fn slow_503_endpoint(delay: Duration) -> (u16, Arc<AtomicBool>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    listener.set_nonblocking(true).expect("nonblocking");
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = Arc::clone(&stop);
    std::thread::spawn(move || {
        while !stopped.load(Ordering::SeqCst) {
            match listener.accept() {
                Ok((mut s, _)) => {
                    let stopped = Arc::clone(&stopped);
                    std::thread::spawn(move || {
                        let _ = s.set_nonblocking(false);
                        let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
                        let mut buf = vec![0u8; 1 << 16];
                        while !stopped.load(Ordering::SeqCst) {
                            match s.read(&mut buf) {
                                Ok(0) => return,
                                Ok(_) => {
                                    std::thread::sleep(delay);
                                    let body = "busy";
                                    let resp = format!(
                                        "HTTP/1.1 503 Service Unavailable\r\ncontent-length: {}\r\n\r\n{body}",
                                        body.len()
                                    );
                                    if s.write_all(resp.as_bytes()).is_err() {
                                        return;
                                    }
                                }
                                Err(_) => {}
                            }
                        }
                    });
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    });
    (port, stop)
}

/// The numbers of one exporter's final `export:` line: (spans handed, sent, dropped).
fn export_line(stdout: &[String], name: &str) -> (u64, u64, u64) {
    let line = stdout
        .iter()
        .find(|l| l.starts_with(&format!("export: {name} ")))
        .unwrap_or_else(|| panic!("no export line of {name} in {stdout:?}"));
    let sent_part = line
        .split(": ")
        .nth(2)
        .and_then(|rest| rest.split(" spans sent").next())
        .unwrap_or_else(|| panic!("{line}"));
    let (sent, handed) = sent_part
        .split_once('/')
        .unwrap_or_else(|| panic!("{line}"));
    let dropped = line
        .split(" spans dropped")
        .next()
        .and_then(|s| s.split_whitespace().last())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    (
        handed.trim().parse().expect("handed"),
        sent.trim().parse().expect("sent"),
        dropped,
    )
}

/// Live mode with a hanging Jaeger endpoint (accepts, never answers) and a Splunk endpoint
/// that answers 503 slowly, beside a healthy OTLP receiver, under steady load: the
/// recording loop never waits for them, so the kernel drops nothing; the healthy exporter
/// gets every span, the others' spans are counted as dropped; SIGINT still exits promptly.
#[test]
fn slow_and_hanging_backends_never_stall_recording() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(venv) = prerequisites(true) else {
        return;
    };
    let cluster = DemoCluster::start("127.0.10", 150.0);
    let collector = Collector::start(&venv);
    let (hang_port, hang_stop) = hanging_endpoint();
    let (busy_port, busy_stop) = slow_503_endpoint(Duration::from_millis(800));
    let dir = tempfile::tempdir().expect("tempdir");
    let out_arg = dir.path().join("out").display().to_string();
    let jaeger = format!("http://127.0.0.1:{hang_port}/api/traces");
    let splunk = format!("http://127.0.0.1:{busy_port}");
    let (mut proc, stdout, _err) = live(
        &cluster,
        &collector,
        &[
            "--out",
            &out_arg,
            "--tracing-jaeger-endpoint",
            &jaeger,
            "--tracing-splunk-endpoint",
            &splunk,
            "--tracing-splunk-token",
            "00000000-0000-0000-0000-000000000000",
        ],
    );
    cluster.go();
    std::thread::sleep(Duration::from_secs(12));
    proc.signal("INT");
    let signalled = std::time::Instant::now();
    let status = proc
        .wait_timeout(Duration::from_secs(30))
        .expect("live mode did not stop within 30 s of SIGINT");
    let stop_secs = signalled.elapsed().as_secs_f64();
    hang_stop.store(true, Ordering::SeqCst);
    busy_stop.store(true, Ordering::SeqCst);
    let out = stdout.all();
    let live_line = out
        .iter()
        .find(|l| l.starts_with("live: "))
        .unwrap_or_else(|| panic!("no `live:` line in {out:?}"));
    eprintln!("{live_line}; stopped {stop_secs:.1} s after SIGINT");
    for l in out.iter().filter(|l| l.starts_with("export: ")) {
        eprintln!("{l}");
    }
    // "live: N rows from the recorder, D dropped in the kernel; S spans"
    let kernel_dropped: u64 = live_line
        .split(", ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{live_line}"));
    assert_eq!(
        kernel_dropped, 0,
        "a slow backend made the kernel drop events"
    );
    let (emitted, _, _) = accounting(&out);
    assert!(emitted >= 500, "only {emitted} spans under load");
    let (otlp_handed, otlp_sent, otlp_dropped) = export_line(&out, "otlp");
    assert_eq!(
        (otlp_handed, otlp_sent, otlp_dropped),
        (emitted, emitted, 0)
    );
    for name in ["jaeger", "splunk"] {
        let (handed, sent, dropped) = export_line(&out, name);
        assert_eq!(handed, emitted, "{name}");
        assert_eq!(sent, 0, "{name}");
        assert_eq!(dropped, emitted, "{name}: every span counted");
    }
    assert!(!status.success(), "export failures give exit 1: {status}");
    assert!(stop_secs < 15.0, "SIGINT took {stop_secs:.1} s");
    let arrived = collector.wait_settled(emitted as usize, Duration::from_secs(30));
    assert_eq!(arrived.len() as u64, emitted, "spans sent vs arrived");
    drop(collector);
    cluster.stop();
}
