//! `podtrace record --node-local -o DIR --rotate`: every pod of the node (the kubelet's
//! kubepods cgroup tree) into per-node, rotated captures — what the node-recorder DaemonSet
//! runs. Root only: real probes, a real server process in a kubepods-like cgroup.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::Lines;

const BIN: &str = env!("CARGO_BIN_EXE_podtrace");

fn cgroup2_mount() -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        post.starts_with("cgroup2 ")
            .then(|| PathBuf::from(pre.split(' ').nth(4).unwrap_or_default()))
    })
}

struct Server {
    child: Child,
    scope: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir(&self.scope);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn start_server(scope: &Path, port: u16) -> Server {
    std::fs::create_dir_all(scope).expect("create pod cgroup");
    let script = format!(
        "echo $$ > {}/cgroup.procs && exec python3 -m http.server {port} --bind 127.0.0.1",
        scope.display()
    );
    let child = Command::new("sh")
        .args(["-c", &script])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start python http.server");
    let server = Server {
        child,
        scope: scope.to_path_buf(),
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "http.server did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    server
}

#[test]
fn node_local_records_every_pod_into_rotated_per_node_files() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("!!! SKIPPING node-local recording test: needs root (eBPF) !!!");
        return;
    }
    let Some(mount) = cgroup2_mount() else {
        eprintln!("!!! SKIPPING node-local recording test: no cgroup v2 mount !!!");
        return;
    };
    let scope = mount
        .join("kubepods.slice")
        .join(format!("podtrace-test-{}.scope", std::process::id()));
    let port = free_port();
    let _server = start_server(&scope, port);
    let out = tempfile::tempdir().expect("tempdir");
    let objects = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/chain/k8s-objects.json");
    let mut rec = Command::new(BIN)
        .args([
            "record",
            "--node-local",
            "--node",
            "test-node",
            "--rotate",
            "1s",
        ])
        .args(["--duration", "4s", "--k8s-objects"])
        .arg(&objects)
        .arg("-o")
        .arg(format!("{}/", out.path().display()))
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("podtrace record");
    // Wait for the probes (a fixed sleep was too short on a loaded machine: the requests
    // went out before the programs were attached and nothing was recorded), then make
    // requests the pod's server answers.
    let err = Lines::collect(rec.stderr.take().expect("stderr"), "record");
    assert!(
        err.wait_for("probes attached", Duration::from_secs(60)),
        "the recorder did not attach: {:?}",
        err.all()
    );
    let mut answered = 0;
    for i in 0..3 {
        let o = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
            .arg(format!("http://127.0.0.1:{port}/?n={i}"))
            .output()
            .expect("curl");
        if String::from_utf8_lossy(&o.stdout) == "200" {
            answered += 1;
        }
    }
    assert_eq!(answered, 3);
    let status = rec.wait().expect("record");
    assert!(status.success(), "record failed: {:?}", err.all());
    assert!(
        err.wait_for("every pod on this node", Duration::from_secs(5)),
        "{:?}",
        err.all()
    );

    let mut files: Vec<String> = std::fs::read_dir(out.path())
        .expect("read out dir")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.ends_with(".parquet"))
        .collect();
    files.sort();
    assert!(files.len() >= 2, "rotation made no segments: {files:?}");
    for f in &files {
        assert!(
            f.starts_with("test-node-") && f.contains('T') && f.contains("Z."),
            "per-node name expected, got {f}"
        );
    }
    let o = Command::new(BIN)
        .args(["inspect", "--json"])
        .arg(out.path())
        .output()
        .expect("inspect");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("inspect json");
    let socket_data = v["rows_by_type"]["socket_data"].as_u64().unwrap_or(0);
    assert!(socket_data >= 6, "3 requests and 3 responses at least: {v}");
    assert_eq!(v["pods"].as_array().map(Vec::len), Some(4), "{v}");

    let analysis = tempfile::tempdir().expect("tempdir");
    let o = Command::new(BIN)
        .arg("analyze")
        .arg(out.path())
        .arg("--out")
        .arg(analysis.path())
        .arg("--json")
        .output()
        .expect("analyze");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("analyze json");
    // Other tests of this binary may run pods of their own under kubepods.slice meanwhile,
    // and node-local mode records every pod: count the exchanges of this test's server.
    let spans: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(analysis.path().join("spans.json")).expect("spans.json"),
    )
    .expect("spans.json is JSON");
    let ours = spans
        .as_array()
        .expect("spans.json is an array")
        .iter()
        .filter(|s| {
            s["attributes"].as_array().is_some_and(|attrs| {
                attrs.iter().any(|a| {
                    a["key"] == "server.port" && a["value"].as_u64() == Some(u64::from(port))
                })
            })
        })
        .count();
    assert_eq!(ours, 3, "3 requests to this test's server: {v}");
}
