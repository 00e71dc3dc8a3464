//! Targeting: `--pid`, cgroups created below a `--cgroup` root after the recording began
//! (periodic rescan), cgroup ids added and removed at run time through the handle, and
//! the errors for bad targets. Recording needs root (skips otherwise).

use crate::ebpf_util as util;

use std::time::Duration;

use podtrace_format::model::Record;
use podtrace_recorder::{RecordConfig, Recorder, RecorderError};
use util::*;

fn comms(rows: &[Record]) -> Vec<(String, u32)> {
    rows.iter()
        .filter_map(|r| match r {
            Record::SocketData(d) => Some((d.meta.comm.to_string(), d.meta.pid)),
            Record::SocketOpen(e) | Record::SocketClose(e) => {
                Some((e.meta.comm.to_string(), e.meta.pid))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn pid_target_records_only_that_processs_cgroup() {
    let name = "pid_target_records_only_that_processs_cgroup";
    if !root_or_skip(name) || !tool_or_skip("python3", name) || !tool_or_skip("curl", name) {
        return;
    }
    let env = PeerEnv::acquire();
    let port = env.port;
    let mut cg = TestCgroup::new("pid");
    let server = env.serve_in(&mut cg);
    let cfg = RecordConfig {
        pids: vec![server],
        ..Default::default()
    };
    let rows = record_while(&rt(), cfg, move |_| {
        run_bounded(
            {
                let mut c = std::process::Command::new("curl");
                c.args([
                    "-sS",
                    "-o",
                    "/dev/null",
                    &format!("http://127.0.0.1:{port}/by-pid"),
                ]);
                c
            },
            T,
        );
    })
    .rows;
    let seen = comms(&rows);
    assert!(
        seen.iter()
            .any(|(c, p)| c.starts_with("python") && *p == server),
        "server rows"
    );
    assert!(
        seen.iter().all(|(c, _)| c != "curl"),
        "curl runs outside the server's cgroup"
    );
    assert!(streams(&rows)
        .values()
        .any(|s| contains(&concat(s), b"GET /by-pid ")));
}

#[test]
fn new_child_cgroups_and_runtime_ids_are_picked_up() {
    let name = "new_child_cgroups_and_runtime_ids_are_picked_up";
    if !root_or_skip(name) || !tool_or_skip("python3", name) || !tool_or_skip("curl", name) {
        return;
    }
    let env = PeerEnv::acquire();
    let port = env.port;
    // The server runs outside every recorded cgroup: only clients are seen.
    let server = env.listen_outside("serve");
    let root = TestCgroup::new("tree");
    let other = TestCgroup::new("other");
    let other_path = other.path.clone();
    let other_id = other.id();
    let root_path = root.path.clone();
    let cfg = RecordConfig {
        cgroup_paths: vec![root.path.clone()],
        rescan_interval: Duration::from_millis(50),
        ..Default::default()
    };
    let url = format!("http://127.0.0.1:{port}");
    let dir_outside = tempfile::tempdir().expect("tempdir");
    let rows = record_while(&rt(), cfg, move |h| {
        // a cgroup created after the start, below the root
        let child = root_path.join("late-child");
        std::fs::create_dir(&child).expect("mkdir child");
        let child_id = podtrace_recorder::cgroups::cgroup_id(&child).expect("id");
        let t0 = std::time::Instant::now();
        while !h.cgroups().contains(&child_id) {
            assert!(t0.elapsed() < T, "child cgroup not picked up");
            std::thread::sleep(Duration::from_millis(10));
        }
        let in_cg = |path: &std::path::Path, what: &str| {
            let mut c = std::process::Command::new("sh");
            c.arg("-c").arg(format!(
                "echo $$ > '{}/cgroup.procs' && exec curl -sS -o /dev/null {url}/{what}",
                path.display()
            ));
            run_bounded(c, T);
        };
        in_cg(&child, "late-child");
        // a directory added at run time as a new root (what pod following does)
        h.add_cgroup_path(&other_path).expect("add path");
        in_cg(&other_path, "added-path");
        h.remove_cgroup(other_id);
        h.add_cgroup_path(dir_outside.path())
            .expect_err("not a cgroup");
        // a cgroup outside the root: absent until added, absent again once removed
        in_cg(&other_path, "before-add");
        h.add_cgroup(other_id).expect("add");
        in_cg(&other_path, "added");
        h.remove_cgroup(other_id);
        in_cg(&other_path, "after-remove");
        let _ = std::fs::remove_dir(&child);
    })
    .rows;
    drop(server);
    let out: Vec<Vec<u8>> = streams(&rows).values().map(|s| concat(s)).collect();
    let seen = |p: &str| {
        out.iter()
            .any(|s| contains(s, format!("GET /{p} ").as_bytes()))
    };
    assert!(seen("late-child"), "request from the late child cgroup");
    assert!(seen("added"), "request from the added cgroup");
    assert!(seen("added-path"), "request from the cgroup added by path");
    assert!(!seen("before-add"));
    assert!(!seen("after-remove"));
}

#[test]
fn bad_targets_are_clear_errors() {
    // no root needed: targets are resolved before anything is loaded
    let rt = rt();
    let _g = rt.enter();
    match Recorder::start(RecordConfig::default()) {
        Err(RecorderError::NoTarget) => {}
        other => panic!("expected NoTarget, got {:?}", other.err()),
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = RecordConfig {
        cgroup_paths: vec![dir.path().to_path_buf()],
        ..Default::default()
    };
    match Recorder::start(cfg) {
        Err(e @ RecorderError::NotACgroup { .. }) => {
            assert!(e.to_string().contains("not a cgroup v2 directory"), "{e}")
        }
        Err(RecorderError::Cgroup(e)) => eprintln!("no cgroup v2 here: {e}"),
        other => panic!("expected NotACgroup, got {:?}", other.err()),
    }
    let cfg = RecordConfig {
        pids: vec![u32::MAX - 1],
        ..Default::default()
    };
    assert!(matches!(
        Recorder::start(cfg),
        Err(RecorderError::Cgroup(_))
    ));
}

/// Run by [`missing_privileges_name_the_capabilities`] as an unprivileged user.
#[test]
#[ignore = "helper: run as an unprivileged child by missing_privileges_name_the_capabilities"]
fn privileges_child() {
    let rt = rt();
    let _g = rt.enter();
    let cfg = RecordConfig {
        cgroup_ids: vec![1],
        ..Default::default()
    };
    match Recorder::start(cfg) {
        Err(e @ RecorderError::Privileges { .. }) => println!("PRIVILEGE-ERROR: {e}"),
        other => panic!("expected a privileges error, got {:?}", other.err()),
    }
}

#[test]
fn missing_privileges_name_the_capabilities() {
    let name = "missing_privileges_name_the_capabilities";
    if !root_or_skip(name) || !tool_or_skip("setpriv", name) {
        return;
    }
    let exe = std::env::current_exe().expect("test binary");
    let mut c = std::process::Command::new("setpriv");
    c.args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--inh-caps=-all",
    ])
    .arg(exe)
    .args([
        "--exact",
        "ebpf_targets::privileges_child",
        "--ignored",
        "--nocapture",
    ]);
    let out = String::from_utf8(run_bounded(c, T)).expect("utf8");
    assert!(out.contains("PRIVILEGE-ERROR"), "{out}");
    assert!(
        out.contains("CAP_BPF") && out.contains("CAP_PERFMON"),
        "{out}"
    );
}

#[test]
fn kprobe_set_needs_config_kprobes() {
    let name = "kprobe_set_needs_config_kprobes";
    if !root_or_skip(name) {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let cg = TestCgroup::new("kprobe");
    let rt = rt();
    let _g = rt.enter();
    let cfg = RecordConfig {
        cgroup_paths: vec![cg.path.clone()],
        probes: podtrace_recorder::ProbeSet::Kprobe,
        ..Default::default()
    };
    let res = Recorder::start(cfg);
    if podtrace_recorder::probes::kprobes_available() {
        // a kernel with kprobes: the alternative set must load and attach
        let (handle, _rx) = res.expect("kprobe set on a kernel with kprobes");
        rt.block_on(handle.stop()).expect("stop");
        eprintln!("{name}: this kernel has kprobes; the kprobe set attached");
        return;
    }
    match res {
        Err(e @ RecorderError::Unsupported(_)) => {
            assert!(e.to_string().contains("CONFIG_KPROBES"), "{e}");
        }
        other => panic!(
            "expected an error naming CONFIG_KPROBES, got {:?}",
            other.err()
        ),
    }
}
