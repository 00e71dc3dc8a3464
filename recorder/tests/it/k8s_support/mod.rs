//! Test support: the project's test API server (tools/k8s-apiserver), kubectl and fakenode
//! (tools/fakenode) driven from Rust tests, with timeouts on every wait and cleanup on drop.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Whether `tool` runs (`tool --version`-like probe); prints a loud skip message if not.
pub fn have(tool: &str, args: &[&str]) -> bool {
    let ok = Command::new(tool)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("!!! SKIPPING: `{tool}` is not available on this machine !!!");
    }
    ok
}

/// Whether the test runs as root; prints a loud skip message if not.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("!!! SKIPPING: this test needs root (cgroup writes) !!!");
    }
    root
}

/// Reads lines of a child's stdout on a thread.
pub fn line_reader(out: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits for a line satisfying `pred`, at most `timeout`; returns the lines read so far on timeout.
pub fn wait_line(
    rx: &mpsc::Receiver<String>,
    timeout: Duration,
    pred: impl Fn(&str) -> bool,
) -> Result<String, Vec<String>> {
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if pred(&line) => return Ok(line),
            Ok(line) => seen.push(line),
            Err(_) => return Err(seen),
        }
    }
}

/// Reads `child`'s piped stdout until a line satisfying `pred` (at most `timeout`); returns
/// that line and the reader for later lines. Otherwise stops the child and panics with
/// `failure` and the lines seen.
pub fn child_line(
    child: &mut Child,
    timeout: Duration,
    failure: &str,
    pred: impl Fn(&str) -> bool,
) -> (String, mpsc::Receiver<String>) {
    let rx = line_reader(child.stdout.take().expect("stdout"));
    match wait_line(&rx, timeout, pred) {
        Ok(l) => (l, rx),
        Err(seen) => {
            stop_child(child);
            panic!("{failure}: {seen:?}");
        }
    }
}

/// Sends SIGTERM, waits up to 5 s, then SIGKILL.
pub fn stop_child(child: &mut Child) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Output of a command run with a timeout.
pub struct Run {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs a command to completion, killing it after `timeout`.
pub fn run(cmd: &mut Command, timeout: Duration) -> Run {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Ok(Some(st)) = child.try_wait() {
            break Some(st);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let stdout = t_out.join().unwrap_or_default();
    let mut stderr = t_err.join().unwrap_or_default();
    if status.is_none() {
        stderr.push_str("\n(timed out)");
    }
    Run {
        ok: status.is_some_and(|s| s.success()),
        stdout,
        stderr,
    }
}

/// A running test API server.
pub struct ApiServer {
    child: Child,
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
    pub port: u16,
}

impl ApiServer {
    /// Starts tools/k8s-apiserver with `state` (a v1 List) and waits for its ready line.
    pub fn start(state: &serde_json::Value) -> ApiServer {
        Self::start_with(state, &[])
    }

    /// Same, with extra server arguments (e.g. `--allowed-namespaces demo`).
    pub fn start_with(state: &serde_json::Value, extra: &[&str]) -> ApiServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let state_file = dir.path().join("state.json");
        std::fs::write(&state_file, state.to_string()).expect("write state");
        let mut child = Command::new("python3")
            .arg(repo().join("tools/k8s-apiserver/apiserver.py"))
            .arg("--dir")
            .arg(dir.path())
            .arg("--state")
            .arg(&state_file)
            .args(["--bookmark-interval", "1"])
            .args(extra)
            .args(std::env::var_os("PODTRACE_TEST_APISERVER_VERBOSE").map(|_| "--verbose"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start apiserver.py");
        let (line, _) = child_line(
            &mut child,
            Duration::from_secs(20),
            "API server did not start",
            |l| l.contains("\"ready\""),
        );
        let v: serde_json::Value = serde_json::from_str(&line).expect("ready json");
        let port = u16::try_from(v["port"].as_u64().expect("port")).expect("port fits");
        let kubeconfig = PathBuf::from(v["kubeconfig"].as_str().expect("kubeconfig"));
        ApiServer {
            child,
            dir,
            kubeconfig,
            port,
        }
    }

    /// `kubectl --kubeconfig K args...` with a timeout.
    pub fn kubectl(&self, args: &[&str]) -> Run {
        run(
            Command::new("kubectl")
                .arg("--kubeconfig")
                .arg(&self.kubeconfig)
                .args(args),
            Duration::from_secs(30),
        )
    }

    /// Creates or replaces an object through the control API (with kubectl as the client).
    pub fn put(&self, obj: &serde_json::Value) {
        let f = self
            .dir
            .path()
            .join(format!("obj-{}.json", std::process::id()));
        std::fs::write(&f, obj.to_string()).expect("write obj");
        let r = self.kubectl(&[
            "replace",
            "--raw",
            "/_control/objects",
            "-f",
            f.to_str().expect("utf8"),
        ]);
        assert!(r.ok, "put failed: {} {}", r.stdout, r.stderr);
    }

    /// POSTs `body` to a control API path (`/_control/watches`, `/_control/compact`).
    pub fn control(&self, path: &str, body: &serde_json::Value) {
        let f = self
            .dir
            .path()
            .join(format!("control-{}.json", std::process::id()));
        std::fs::write(&f, body.to_string()).expect("write body");
        let r = self.kubectl(&["create", "--raw", path, "-f", f.to_str().expect("utf8")]);
        assert!(r.ok, "{path} failed: {} {}", r.stdout, r.stderr);
    }

    /// Deletes an object through the control API.
    pub fn delete(&self, kind: &str, namespace: &str, name: &str) {
        let path = format!("/_control/objects?kind={kind}&namespace={namespace}&name={name}");
        let r = self.kubectl(&["delete", "--raw", &path]);
        assert!(r.ok, "delete failed: {} {}", r.stdout, r.stderr);
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        stop_child(&mut self.child);
    }
}

/// A Pod object as the test state uses it; `ns_name` is `namespace/name`.
pub fn pod(
    ns_name: &str,
    uid: &str,
    node: &str,
    phase: &str,
    ip: &str,
    ids: &[&str],
    labels: serde_json::Value,
) -> serde_json::Value {
    let (ns, name) = ns_name.split_once('/').expect("namespace/name");
    let statuses: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            serde_json::json!({"name": format!("c{i}"), "ready": true, "restartCount": 0, "image": "img",
                               "imageID": "", "containerID": format!("containerd://{id}"),
                               "state": {"running": {}}})
        })
        .collect();
    let containers: Vec<_> = (0..ids.len().max(1))
        .map(|i| serde_json::json!({"name": format!("c{i}")}))
        .collect();
    serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "uid": uid, "labels": labels,
                     "managedFields": [{"manager": "kubelet", "operation": "Update"}]},
        "spec": {"nodeName": node, "containers": containers},
        "status": {"phase": phase, "podIP": ip, "containerStatuses": statuses}
    })
}

/// The cluster most tests start from: pods on two nodes, a service and its EndpointSlice.
pub fn demo_state() -> serde_json::Value {
    serde_json::json!({"apiVersion": "v1", "kind": "List", "items": [
        pod(
    "demo/web-1", "1b4e28ba-2fa1-11d2-883f-0016d3cca427", "node-a", "Running", "127.0.1.5",
            &["aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"], serde_json::json!({"app": "web"})),
        pod(
    "demo/web-2", "6fa459ea-ee8a-3ca4-894e-db77e160355e", "node-b", "Running", "127.0.1.6",
            &["bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"], serde_json::json!({"app": "web"})),
        pod(
    "demo/starting", "0c7e3f2a-1111-2222-3333-444455556666", "node-a", "Pending", "",
            &[], serde_json::json!({"app": "batch"})),
        pod(
    "other/db-1", "9d4a1c2b-aaaa-bbbb-cccc-ddddeeeeffff", "node-b", "Running", "127.0.1.7",
            &["cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"], serde_json::json!({"app": "db"})),
        {"apiVersion": "v1", "kind": "Node",
         "metadata": {"name": "node-b", "uid": "0de00000-0000-0000-0000-00000000000b", "labels": {"kubernetes.io/hostname": "node-b"}},
         "status": {"addresses": [{"type": "InternalIP", "address": "127.0.2.2"}],
                    "conditions": [{"type": "Ready", "status": "True"}]}},
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": "web", "namespace": "demo", "uid": "5e1f0000-0000-0000-0000-000000000001"},
         "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.10", "selector": {"app": "web"},
                  "ports": [{"port": 80, "protocol": "TCP", "targetPort": 8080}]}},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": {"name": "web-abc12", "namespace": "demo", "uid": "e5e50000-0000-0000-0000-000000000001",
                      "labels": {"kubernetes.io/service-name": "web"}},
         "addressType": "IPv4", "ports": [{"name": "", "port": 8080, "protocol": "TCP"}],
         "endpoints": [{"addresses": ["127.0.1.5"], "conditions": {"ready": true}},
                       {"addresses": ["127.0.1.6"], "conditions": {"ready": true}}]}
    ]})
}
