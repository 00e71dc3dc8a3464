//! `record_to_file` limits: `--duration`, `--max-events`, `--max-size` end the recording
//! with a finished, readable capture and the right stop reason. Needs root.

use crate::ebpf_util as util;

use std::time::{Duration, Instant};

use podtrace_format::model::Record;
use podtrace_format::WriterOptions;
use podtrace_recorder::{record_to_file, Limits, RecordConfig, StopReason};
use util::*;

#[test]
fn duration_limit_finishes_the_file() {
    let name = "duration_limit_finishes_the_file";
    if !root_or_skip(name) {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let cg = TestCgroup::new("duration");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("d.parquet");
    let cfg = RecordConfig {
        cgroup_paths: vec![cg.path.clone()],
        limits: Limits {
            duration: Some(Duration::from_millis(400)),
            ..Default::default()
        },
        stats_interval: Duration::from_millis(100),
        ..Default::default()
    };
    let t0 = Instant::now();
    let summary = rt()
        .block_on(record_to_file(
            cfg,
            &out,
            WriterOptions::default(),
            None,
            std::future::pending(),
            |_| {},
        ))
        .expect("record");
    assert_eq!(summary.reason, StopReason::Duration);
    assert!(t0.elapsed() < Duration::from_secs(20));
    let rows = read_all(&out);
    assert!(
        rows.iter().any(|r| matches!(r, Record::Stats(_))),
        "stats rows written"
    );
    assert_eq!(summary.write.rows, rows.len() as u64);
}

#[test]
fn max_events_and_max_size_stop_the_recording() {
    let name = "max_events_and_max_size_stop_the_recording";
    if !root_or_skip(name) || !tool_or_skip("python3", name) {
        return;
    }
    let env = PeerEnv::acquire();
    let (dir, peer, port) = (&env.dir, &env.peer, env.port);
    let _sink = env.listen_outside("sink");
    let cg = TestCgroup::new("limits");
    let rt = rt();
    for (limits, reason) in [
        (
            Limits {
                max_events: Some(50),
                ..Default::default()
            },
            StopReason::MaxEvents,
        ),
        (
            Limits {
                max_size: Some(64 * 1024),
                ..Default::default()
            },
            StopReason::MaxSize,
        ),
    ] {
        let out = dir.path().join(format!("{reason:?}.parquet"));
        let cfg = RecordConfig {
            cgroup_paths: vec![cg.path.clone()],
            limits,
            ..Default::default()
        };
        let opts = WriterOptions::default().flush_interval(Some(Duration::from_millis(100)));
        let t0 = Instant::now();
        let task = spawn_record_to_file(&rt, cfg, &out, opts, std::future::pending());
        // traffic until the recording stops by itself (bounded)
        while !task.is_finished() {
            assert!(t0.elapsed() < Duration::from_secs(60), "limit not reached");
            let mut c = std::process::Command::new("sh");
            c.arg("-c").arg(format!(
                "echo $$ > '{}/cgroup.procs' && exec python3 {peer} blast {port} 2000 4096",
                cg.path.display()
            ));
            run_bounded(c, Duration::from_secs(60));
        }
        let summary = rt.block_on(task).expect("join").expect("record");
        assert_eq!(summary.reason, reason);
        let rows = read_all(&out);
        let socket_rows = rows
            .iter()
            .filter(|r| !matches!(r, Record::Stats(_) | Record::K8sObject(_)))
            .count() as u64;
        assert_eq!(socket_rows, summary.socket_events);
        if reason == StopReason::MaxEvents {
            // Exactly the first 50: what was in flight when the limit was reached is
            // left out and counted.
            assert_eq!(summary.socket_events, 50);
            assert!(summary.beyond_max_events > 0, "the blast outran the limit");
        } else {
            assert!(summary.write.bytes >= 64 * 1024);
        }
    }
}
