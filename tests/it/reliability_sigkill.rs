//! Crash safety of the recorder: `podtrace record` on a test cgroup with a busy HTTP
//! client and server inside, SIGKILLed at pseudo-random moments under load. Afterwards the
//! capture is readable (`inspect`, through the sidecar footer log), holds the data up to
//! about one flush interval (1 s) before the kill, and `analyze` makes spans from it.
//! SIGINT and SIGTERM end the recording cleanly: a complete file, no sidecar left.
//! While it records, the writer and the ring consumer are in the idle CPU class, their
//! guard thread is not.

use crate::reliability_support as support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use support::*;

fn start_record(cg: &TestCgroup, cap: &std::path::Path) -> Child {
    Command::new(bin())
        .args(["record", "--cgroup", s(&cg.path), "-o", s(cap)])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until the recording `rec` has flushed its first row group to `cap`: its probes are
/// loaded and its threads started (up to 30 s: loading the probes on a loaded host takes
/// seconds).
fn wait_for_first_flush(rec: &mut Child, cap: &std::path::Path) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::fs::metadata(cap).map_or(0, |m| m.len()) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "recorder never flushed"
        );
        assert!(rec.try_wait().unwrap().is_none(), "recorder exited early");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

fn inspect_json(cap: &std::path::Path) -> serde_json::Value {
    let o = podtrace(&["inspect", "--json", s(cap)]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "inspect {}: {}",
        cap.display(),
        stderr(&o)
    );
    assert!(!stderr(&o).contains("panicked"));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// Spans `analyze` makes from a capture.
fn spans_of(cap: &std::path::Path) -> usize {
    let out = cap.with_extension("out");
    let o = podtrace(&["analyze", s(cap), "--out", s(&out)]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "analyze {}: {}",
        cap.display(),
        stderr(&o)
    );
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("spans.json")).unwrap()).unwrap();
    v.as_array().map_or(0, Vec::len)
}

/// A cgroup with a server and two tight curl loops.
fn busy_cgroup(name: &str) -> TestCgroup {
    let port = free_port();
    let mut cg = TestCgroup::new(name);
    cg.http_server(port);
    cg.curl_loop(port, &["X-Load: 1"], "0.005");
    cg.curl_loop(port, &["X-Load: 2"], "0.005");
    cg
}

#[test]
fn sigkilled_recordings_stay_readable() {
    if !need_root_and(&["curl", "python3"], "reliability_sigkill") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cg = busy_cgroup("kill");
    // Kill moments in ms after start after the first flush (deterministic "random", 0–4 s).
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for i in 0..4 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let after = Duration::from_millis(x % 4000);
        let cap = dir.path().join(format!("killed-{i}.parquet"));
        let mut rec = start_record(&cg, &cap);
        // From the first flush on (probes loaded, data on disk), kill at a random moment.
        wait_for_first_flush(&mut rec, &cap);
        std::thread::sleep(after);
        let killed_at = now_ns();
        signal(rec.id(), "KILL");
        // the last thread to exit unmaps the process's memory in the idle class it was in:
        // seconds on a host whose CPUs are all taken by normal-priority work
        let _ = wait_timeout(&mut rec, 30);

        let sum = inspect_json(&cap);
        let file = &sum["files"][0];
        eprintln!(
            "killed after {after:?}: {} rows in {} row groups, recovered={}",
            file["rows"], file["row_groups"], file["recovered"]
        );
        assert!(
            file["rows"].as_u64().unwrap() > 0,
            "nothing readable after {after:?}"
        );
        assert_eq!(file["recovered"], serde_json::Value::Bool(true));
        let end_ns = sum["end_ns"].as_u64().unwrap();
        // Flushed every second: at most ~1 s (plus scheduling slack on a loaded host) lost.
        assert!(
            killed_at.saturating_sub(end_ns) < 3_500_000_000,
            "newest readable row {:.1} s before the kill",
            (killed_at - end_ns) as f64 / 1e9
        );
        assert!(spans_of(&cap) > 0, "no spans from the killed capture");
    }
}

#[test]
fn sigint_and_sigterm_finish_the_file() {
    if !need_root_and(&["curl", "python3"], "reliability_sigkill (INT/TERM)") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cg = busy_cgroup("term");
    for sig in ["INT", "TERM"] {
        let cap = dir.path().join(format!("{sig}.parquet"));
        let mut rec = start_record(&cg, &cap);
        wait_for_first_flush(&mut rec, &cap);
        std::thread::sleep(Duration::from_millis(1000));
        if sig == "INT" {
            assert_background_classes(rec.id());
        }
        signal(rec.id(), sig);
        let st = wait_timeout(&mut rec, 20);
        let mut err = String::new();
        std::io::Read::read_to_string(rec.stderr.as_mut().unwrap(), &mut err).unwrap();
        assert!(st.success(), "SIG{sig}: {st:?}\n{err}");
        assert!(
            !podtrace_format::sidecar_path(&cap).exists(),
            "SIG{sig}: sidecar left behind"
        );
        // Complete: the Parquet footer is there (no recovery needed).
        let bytes = std::fs::read(&cap).unwrap();
        assert_eq!(&bytes[bytes.len() - 4..], b"PAR1", "SIG{sig}: no footer");
        let sum = inspect_json(&cap);
        assert_eq!(sum["files"][0]["recovered"], serde_json::Value::Bool(false));
        assert!(spans_of(&cap) > 0, "SIG{sig}: no spans");
    }
}

/// `SCHED_OTHER` and `SCHED_IDLE` in /proc/PID/task/TID/stat's policy field.
const SCHED_OTHER: u32 = 0;
const SCHED_IDLE: u32 = 5;

/// Each thread of process `pid`: its name and scheduling policy.
fn thread_policies(pid: u32) -> Vec<(u32, String, u32)> {
    let mut out = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let t = t.unwrap();
        let Ok(stat) = std::fs::read_to_string(t.path().join("stat")) else {
            continue; // exited meanwhile
        };
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        // fields after "(comm)" start at field 3; the policy is field 41
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let policy = rest.split(' ').nth(41 - 3).unwrap().parse().unwrap();
        let tid = t.file_name().to_string_lossy().parse().unwrap();
        out.push((tid, comm.trim().to_string(), policy));
    }
    out
}

/// A recording under load: the capture writer (the main thread) and the runtime workers
/// that drained the ring are in the idle CPU class, the guard thread that raises them is
/// not (docs/architecture.md, "The ring consumer's CPU priority"). A raise on a loaded
/// machine lasts a second at least, and the guard leaves the writer's class only once it
/// runs: looked at for up to 10 s, until all three hold at one reading.
fn assert_background_classes(pid: u32) {
    let mut threads = Vec::new();
    for _ in 0..100 {
        threads = thread_policies(pid);
        let of = |name: &dyn Fn(&(u32, String, u32)) -> bool| -> Vec<u32> {
            threads.iter().filter(|t| name(t)).map(|t| t.2).collect()
        };
        if of(&|t| t.1 == "podtrace-guard") == [SCHED_OTHER]
            && of(&|t| t.0 == pid) == [SCHED_IDLE]
            && of(&|t| t.1 == "tokio-rt-worker").contains(&SCHED_IDLE)
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "not one guard at normal priority, or writer or ring consumer not in the idle class \
         (tid, name, policy): {threads:?}"
    );
}
