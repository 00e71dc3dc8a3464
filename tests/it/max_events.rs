//! `--max-events N` means the same in `record` and in live mode (root): both run the one
//! recording session (`podtrace_recorder::Session`), so under the same real traffic (an
//! HTTP server and two curl loops in a cgroup) both stop by themselves and their captures
//! (`record -o`, live `--save`) hold exactly N socket events (data, open, close rows).

use crate::reliability_support::*;

use std::process::{Command, Stdio};
use std::time::Instant;

/// Socket events in a capture, by `podtrace inspect --json`.
fn socket_events(cap: &std::path::Path) -> u64 {
    let o = podtrace(&["inspect", "--json", s(cap)]);
    assert_eq!(o.status.code(), Some(0), "inspect: {}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("inspect json");
    ["socket_data", "socket_open", "socket_close"]
        .iter()
        .map(|t| v["rows_by_type"][t].as_u64().expect("rows_by_type"))
        .sum()
}

/// Runs podtrace with `args` until it exits by itself (≤ 60 s, else killed and failed);
/// returns (stdout, stderr).
fn run_until_exit(args: &[&str]) -> (String, String) {
    let mut child = Command::new(bin())
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn podtrace");
    let t0 = Instant::now();
    let status = wait_timeout(&mut child, 60);
    let out = child.wait_with_output().expect("output");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(status.success(), "{args:?}: {status}\n{stdout}\n{stderr}");
    eprintln!(
        "{args:?}: stopped by itself after {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    (stdout, stderr)
}

#[test]
fn record_and_live_stop_at_the_same_count_of_socket_events() {
    if !need_root_and(&["curl", "python3"], "max_events") {
        return;
    }
    const N: u64 = 400;
    let port = free_port();
    let mut cg = TestCgroup::new("max-events");
    cg.http_server(port);
    cg.curl_loop(port, &["X-Load: 1"], "0.01");
    cg.curl_loop(port, &["X-Load: 2"], "0.01");
    let dir = tempfile::tempdir().expect("tempdir");
    let (rec_cap, live_cap) = (
        dir.path().join("record.parquet"),
        dir.path().join("live.parquet"),
    );
    let n = N.to_string();

    let (stdout, stderr) = run_until_exit(&[
        "record",
        "--cgroup",
        s(&cg.path),
        "--max-events",
        &n,
        "-o",
        s(&rec_cap),
    ]);
    assert!(
        stdout.contains(&format!("recorded {N} socket events")) && stdout.contains("(MaxEvents)"),
        "{stdout}"
    );
    eprintln!("{stderr}");

    let (stdout, stderr) = run_until_exit(&[
        "--cgroup",
        s(&cg.path),
        "--max-events",
        &n,
        "--save",
        s(&live_cap),
    ]);
    assert!(stdout.contains("live: "), "{stdout}");
    eprintln!("{stderr}");

    let (recorded, live) = (socket_events(&rec_cap), socket_events(&live_cap));
    eprintln!("--max-events {N}: record kept {recorded}, live kept {live} socket events");
    assert_eq!(recorded, N, "record");
    assert_eq!(live, N, "live");
    // Live analysed the same traffic it saved: the exchanges were printed.
    assert!(stdout.lines().any(|l| l.contains(" → ")), "{stdout}");
}
