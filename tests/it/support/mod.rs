//! Harness of the root end-to-end tests: the fake demo cluster (tools/fakenode/demo_cluster.py),
//! rotel re-exporting to the OTLP test sink (tools/receivers/otlp_sink.py), the podtrace binary
//! as a child process, and DuckDB (from the venv) as an independent reader of capture files.
//!
//! Every child process is owned by a guard that stops it on drop (the demo cluster with
//! SIGTERM, so it removes its cgroups and API objects), so a failing assertion cleans up too.
//! Missing prerequisites (not root, no venv, no rotel, no openssl/dot) make a test skip with a
//! loud message, never pass silently.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The podtrace binary under test.
pub fn podtrace_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_podtrace"))
}

/// A podtrace command with every `PODTRACE_*` variable of the caller removed.
pub fn podtrace() -> Command {
    let mut cmd = Command::new(podtrace_bin());
    for (k, _) in std::env::vars() {
        if k.starts_with("PODTRACE_") {
            cmd.env_remove(k);
        }
    }
    cmd.stdin(Stdio::null());
    cmd
}

/// Now, in Unix nanoseconds (the clock of capture timestamps and the load generator's log).
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

fn have(tool: &str, arg: &str) -> bool {
    Command::new(tool)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The venv with the Python test peers (`PODTRACE_VENV` or `<repo>/.venv`).
pub fn venv() -> Option<PathBuf> {
    let dir = std::env::var_os("PODTRACE_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".venv"));
    dir.join("bin/python").exists().then_some(dir)
}

/// rotel's binary inside the venv's site-packages.
pub fn rotel_agent(venv: &Path) -> Option<PathBuf> {
    std::fs::read_dir(venv.join("lib"))
        .ok()?
        .flatten()
        .map(|e| e.path().join("site-packages/rotel/rotel-agent"))
        .find(|p| p.exists())
}

/// What the root e2e tests need: root, python3, openssl (API server certificates), the venv.
/// `None` (after a loud message) when something is missing.
pub fn prerequisites(need_rotel: bool) -> Option<PathBuf> {
    let skip = |why: &str| {
        eprintln!("!!! SKIPPING end-to-end test: {why} !!!");
        None
    };
    if !is_root() {
        return skip("needs root (eBPF probes, cgroups)");
    }
    for (tool, arg) in [("python3", "--version"), ("openssl", "version")] {
        if !have(tool, arg) {
            return skip(&format!("`{tool}` is not installed"));
        }
    }
    let Some(venv) = venv() else {
        return skip("no Python venv with the test peers (PODTRACE_VENV or .venv; make deps)");
    };
    if need_rotel && rotel_agent(&venv).is_none() {
        return skip("rotel-agent not found in the venv (pip install rotel==0.0.1a15)");
    }
    Some(venv)
}

/// `dot` (Graphviz) is installed.
pub fn have_dot() -> bool {
    have("dot", "-V")
}

/// A free loopback TCP port (bound then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind a free port")
}

/// Waits until something accepts TCP connections on `port`.
pub fn wait_port(port: u16, timeout: Duration) -> bool {
    wait_until(timeout, || TcpStream::connect(("127.0.0.1", port)).is_ok())
}

/// Polls `f` every 20 ms until it is true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A child process stopped on drop: SIGTERM (or the chosen signal), then SIGKILL after a grace.
pub struct Proc {
    child: Child,
    signal: &'static str,
    grace: Duration,
}

impl Proc {
    /// Guards `child`; `signal` is what drop sends first (`TERM`, `INT`).
    pub fn new(child: Child, signal: &'static str, grace: Duration) -> Proc {
        Proc {
            child,
            signal,
            grace,
        }
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (`INT`, `TERM`, ...).
    pub fn signal(&self, name: &str) {
        let _ = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status();
    }

    /// Takes the piped stdout.
    pub fn stdout(&mut self) -> Option<ChildStdout> {
        self.child.stdout.take()
    }

    /// Takes the piped stderr.
    pub fn stderr(&mut self) -> Option<ChildStderr> {
        self.child.stderr.take()
    }

    /// Waits up to `timeout` for the exit status.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.signal(self.signal);
            if self.wait_timeout(self.grace).is_none() {
                let _ = self.child.kill();
            }
        }
        let _ = self.child.wait();
    }
}

/// Lines of a child's pipe, collected by a thread; shared so tests can wait for one.
#[derive(Clone, Default)]
pub struct Lines(Arc<Mutex<Vec<String>>>);

impl Lines {
    /// Starts collecting `pipe`'s lines (also echoed to the test's stderr with `tag`).
    pub fn collect(pipe: impl Read + Send + 'static, tag: &'static str) -> Lines {
        let lines = Lines::default();
        let sink = lines.0.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                eprintln!("[{tag}] {line}");
                sink.lock().expect("lines lock").push(line);
            }
        });
        lines
    }

    /// Everything so far.
    pub fn all(&self) -> Vec<String> {
        self.0.lock().expect("lines lock").clone()
    }

    /// Waits for a line containing `needle`.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> bool {
        wait_until(timeout, || self.all().iter().any(|l| l.contains(needle)))
    }
}

/// The fake cluster of `make demo` (tools/fakenode/demo_cluster.py, default topology) on its
/// own pod network, with the load generator held back until [`DemoCluster::go`].
pub struct DemoCluster {
    proc: Proc,
    /// Its one-line JSON description (kubeconfig, node, selector, pods).
    pub info: Value,
    /// Temp dir with the API server files and the load log.
    pub dir: tempfile::TempDir,
}

impl DemoCluster {
    /// Starts the cluster with pod IPs `<net>.10-14` and the load generator at `rps`
    /// requests per second (0 = as fast as it can).
    pub fn start(net: &str, rps: f64) -> DemoCluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut child = Command::new("python3")
            .arg(repo().join("tools/fakenode/demo_cluster.py"))
            .arg("--dir")
            .arg(dir.path().join("api"))
            .args(["--net", net, "--rps", &rps.to_string()])
            .arg("--load-log")
            .arg(dir.path().join("load.jsonl"))
            .arg("--load-wait")
            .arg(dir.path().join("go"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start demo_cluster.py");
        let stdout = child.stdout.take().expect("piped stdout");
        let proc = Proc::new(child, "TERM", Duration::from_secs(15));
        let line =
            first_line(stdout, Duration::from_secs(40)).expect("demo cluster ready within 40 s");
        let info: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("demo_cluster.py printed {line:?}: {e}"));
        DemoCluster { proc, info, dir }
    }

    /// The kubeconfig of its API server.
    pub fn kubeconfig(&self) -> PathBuf {
        PathBuf::from(self.info["kubeconfig"].as_str().expect("kubeconfig"))
    }

    /// The label selector matching every pod of the demo.
    pub fn selector(&self) -> String {
        self.info["selector"]
            .as_str()
            .expect("selector")
            .to_string()
    }

    /// A pod's IP.
    pub fn ip(&self, pod: &str) -> String {
        self.info["pods"][pod]["ip"]
            .as_str()
            .expect("pod ip")
            .to_string()
    }

    /// A pod's container pids.
    pub fn pids(&self, pod: &str) -> Vec<u64> {
        self.info["pods"][pod]["pids"]
            .as_object()
            .expect("pids")
            .values()
            .filter_map(Value::as_u64)
            .collect()
    }

    /// Lets the load generator start; returns the time it was allowed to.
    pub fn go(&self) -> u64 {
        std::fs::write(self.dir.path().join("go"), b"").expect("write go file");
        now_ns()
    }

    /// What the load generator logged: one object per request it made.
    pub fn load_log(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.path().join("load.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The requests of [`Self::load_log`] that ended at or after `from_ns` and before
    /// `until_ns` (wall clock, ns).
    pub fn requests_ended_between(&self, from_ns: u64, until_ns: u64) -> Vec<Value> {
        self.load_log()
            .into_iter()
            .filter(|r| {
                let end = r["end_ns"].as_u64().unwrap_or(u64::MAX);
                end >= from_ns && end < until_ns
            })
            .collect()
    }

    /// The cgroup directories of its pods.
    pub fn cgroup_dirs(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        if let Some(pods) = self.info["pods"].as_object() {
            for p in pods.values() {
                if let Some(dirs) = p["cgroup_dirs"].as_object() {
                    out.extend(dirs.values().filter_map(Value::as_str).map(PathBuf::from));
                }
            }
        }
        out
    }

    /// Stops the cluster (SIGTERM) and checks its cgroups are gone.
    pub fn stop(self) {
        let dirs = self.cgroup_dirs();
        drop(self.proc);
        for d in dirs {
            assert!(!d.exists(), "{} left behind", d.display());
        }
    }
}

/// rotel (a real OTLP collector) re-exporting to the OTLP test sink, which decodes with
/// PyPI `opentelemetry-proto` and appends one JSON line per span.
pub struct Collector {
    _rotel: Proc,
    _sink: Proc,
    /// rotel's OTLP/HTTP port.
    pub port: u16,
    /// The sink's JSON lines.
    pub out: PathBuf,
    _dir: tempfile::TempDir,
}

impl Collector {
    /// Starts the sink, then rotel pointing at it.
    pub fn start(venv: &Path) -> Collector {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("spans.jsonl");
        let mut child = Command::new(venv.join("bin/python"))
            .arg(repo().join("tools/receivers/otlp_sink.py"))
            .arg("--out")
            .arg(&out)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start otlp_sink.py");
        let stdout = child.stdout.take().expect("piped stdout");
        let sink = Proc::new(child, "TERM", Duration::from_secs(2));
        let line = first_line(stdout, Duration::from_secs(15)).expect("otlp_sink.py ready");
        let sink_port =
            listening_port(&line).unwrap_or_else(|| panic!("otlp_sink.py printed {line:?}"));
        let port = free_port();
        let grpc = free_port();
        let rotel = Command::new(rotel_agent(venv).expect("rotel-agent"))
            .args([
                "start",
                "--otlp-http-endpoint",
                &format!("127.0.0.1:{port}"),
            ])
            .args(["--otlp-grpc-endpoint", &format!("127.0.0.1:{grpc}")])
            .args(["--exporter", "otlp", "--otlp-exporter-protocol", "http"])
            .args([
                "--otlp-exporter-endpoint",
                &format!("http://127.0.0.1:{sink_port}"),
            ])
            .args(["--batch-timeout", "100ms"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start rotel");
        let rotel = Proc::new(rotel, "TERM", Duration::from_secs(3));
        assert!(
            wait_port(port, Duration::from_secs(10)),
            "rotel did not listen"
        );
        Collector {
            _rotel: rotel,
            _sink: sink,
            port,
            out,
            _dir: dir,
        }
    }

    /// rotel's base URL (what podtrace gets as --tracing-otlp-endpoint).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Spans that reached the sink so far.
    pub fn records(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v.get("_request").is_none())
            .collect()
    }

    /// Waits until `n` spans arrived and no more come for 1.5 s; returns them.
    pub fn wait_settled(&self, n: usize, timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        let mut last = usize::MAX;
        let mut since = Instant::now();
        loop {
            let now = self.records().len();
            if now != last {
                last = now;
                since = Instant::now();
            }
            if (now >= n && since.elapsed() > Duration::from_millis(1500))
                || Instant::now() > deadline
            {
                return self.records();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Runs a command to completion with a time limit; panics (with its output) on timeout.
pub fn run(cmd: &mut Command, timeout: Duration) -> std::process::Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let id = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(out) => {
            let out = out.expect("wait");
            eprintln!(
                "[run] {:?} → {}\n{}{}",
                cmd.get_args().collect::<Vec<_>>(),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            out
        }
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &id.to_string()])
                .status();
            panic!("{cmd:?} did not finish within {timeout:?}");
        }
    }
}

/// SQL over capture files with DuckDB from the venv (an independent Parquet reader);
/// rows come back as JSON objects.
pub fn duckdb(venv: &Path, sql: &str) -> Vec<Value> {
    let script = "import duckdb, json, sys\n\
                  cur = duckdb.connect().execute(sys.argv[1])\n\
                  cols = [d[0] for d in cur.description]\n\
                  for row in cur.fetchall():\n    \
                  print(json.dumps(dict(zip(cols, row)), default=str))\n";
    let out = run(
        Command::new(venv.join("bin/python"))
            .args(["-c", script, sql])
            .stdin(Stdio::null()),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "duckdb failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("duckdb row as JSON"))
        .collect()
}

/// A span of `spans.json` (the analyzer's local output).
#[derive(Debug, Clone)]
pub struct SpanRow {
    /// Trace id (hex).
    pub trace_id: String,
    /// Span id (hex).
    pub span_id: String,
    /// Parent span id (hex, empty for a root).
    pub parent: String,
    /// `server` or `client`.
    pub kind: String,
    /// Span name (`GET /api`).
    pub name: String,
    /// Resource service name.
    pub service: String,
    /// The whole JSON object.
    pub raw: Value,
}

impl SpanRow {
    /// An attribute's value.
    pub fn attr(&self, key: &str) -> Option<&Value> {
        self.raw["attributes"]
            .as_array()?
            .iter()
            .find(|a| a["key"] == key)
            .map(|a| &a["value"])
    }

    /// A resource attribute's value.
    pub fn resource_attr(&self, key: &str) -> Option<String> {
        self.raw["resource"]["attributes"]
            .as_array()?
            .iter()
            .find(|kv| kv[0] == key)
            .and_then(|kv| kv[1].as_str().map(str::to_string))
    }
}

/// Reads `<dir>/spans.json`.
pub fn read_spans(dir: &Path) -> Vec<SpanRow> {
    let text = std::fs::read_to_string(dir.join("spans.json")).expect("spans.json");
    let v: Value = serde_json::from_str(&text).expect("spans.json is JSON");
    v.as_array()
        .expect("spans.json is an array")
        .iter()
        .map(|s| SpanRow {
            trace_id: s["trace_id"].as_str().unwrap_or_default().to_string(),
            span_id: s["span_id"].as_str().unwrap_or_default().to_string(),
            parent: s["parent_span_id"].as_str().unwrap_or_default().to_string(),
            kind: s["kind"].as_str().unwrap_or_default().to_string(),
            name: s["name"].as_str().unwrap_or_default().to_string(),
            service: s["resource"]["service_name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            raw: s.clone(),
        })
        .collect()
}

/// Reads `<dir>/summary.json`.
pub fn read_summary(dir: &Path) -> Value {
    let text = std::fs::read_to_string(dir.join("summary.json")).expect("summary.json");
    serde_json::from_str(&text).expect("summary.json is JSON")
}

/// Span records (objects with a `trace_id` string) grouped by trace id.
pub fn group_by_trace(records: &[Value]) -> std::collections::HashMap<&str, Vec<&Value>> {
    let mut out: std::collections::HashMap<&str, Vec<&Value>> = Default::default();
    for r in records {
        out.entry(r["trace_id"].as_str().unwrap_or_default())
            .or_default()
            .push(r);
    }
    out
}

/// The first line a child prints on stdout, or `None` when none comes within `timeout`.
pub fn first_line(stdout: ChildStdout, timeout: Duration) -> Option<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    rx.recv_timeout(timeout).ok()
}

/// The port of a receiver's `LISTENING <port>` ready line.
pub fn listening_port(line: &str) -> Option<u16> {
    line.trim().strip_prefix("LISTENING ")?.parse().ok()
}

/// The capture filter term [`pcap_sync`]'s marker needs: tcpdump must take `udp port PORT`.
pub fn pcap_sync_filter(marker_port: u16) -> String {
    format!("udp port {marker_port}")
}

/// Waits until tcpdump (started with `-U` and a filter that takes
/// [`pcap_sync_filter`]`(marker_port)`) has written every packet sent before this call:
/// sends a marker datagram to `127.0.0.1:marker_port` (nobody listens; `podtrace import`
/// counts UDP and skips it) and waits until the marker's bytes are in the file. Packets on
/// `lo` reach tcpdump in the order they were sent, so everything before the marker is in
/// the file too. (Waiting for the file to stop growing was not enough: under load tcpdump
/// is not scheduled for longer than any pause, and SIGINT drops what it still holds.)
pub fn pcap_sync(pcap: &Path, marker_port: u16) {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let marker = format!("podtrace-pcap-sync-{}-{nanos}", std::process::id());
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind a UDP socket");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut sent: Option<Instant> = None;
    while Instant::now() < deadline {
        if sent.is_none_or(|t| t.elapsed() >= Duration::from_millis(500)) {
            let _ = sock.send_to(marker.as_bytes(), ("127.0.0.1", marker_port));
            sent = Some(Instant::now());
        }
        std::thread::sleep(Duration::from_millis(50));
        let bytes = std::fs::read(pcap).unwrap_or_default();
        if bytes.windows(marker.len()).any(|w| w == marker.as_bytes()) {
            return;
        }
    }
    panic!(
        "tcpdump did not write the sync marker to {} within 30 s",
        pcap.display()
    );
}

/// Fails when tcpdump (whose stderr `lines` holds, after it exited) reported packets
/// dropped by the kernel: its capture then misses traffic, and a comparison with it would
/// fail for the wrong reason. Start tcpdump with `-B 65536`: with the default 2 MiB buffer
/// and `--immediate-mode`, a few lo packets fill the ring while tcpdump waits for a CPU.
pub fn assert_tcpdump_complete(lines: &Lines) {
    lines.wait_for("dropped by kernel", Duration::from_secs(5));
    let all = lines.all();
    let Some(line) = all.iter().find(|l| l.contains("dropped by kernel")) else {
        panic!("tcpdump printed no drop count: {all:?}");
    };
    let words: Vec<&str> = line.split_whitespace().collect();
    let dropped = words
        .iter()
        .position(|w| *w == "dropped")
        .and_then(|i| i.checked_sub(2))
        .and_then(|i| words[i].parse::<u64>().ok());
    assert_eq!(
        dropped,
        Some(0),
        "tcpdump lost packets, its pcap is incomplete: {line}"
    );
}

/// `podtrace import PCAP -o CAPTURE`: the tcpdump path into a capture; fails the test with
/// import's stderr when it fails.
pub fn import_pcap(pcap: &Path, capture: &Path) {
    let st = run(
        podtrace().arg("import").arg(pcap).arg("-o").arg(capture),
        Duration::from_secs(60),
    );
    assert!(
        st.status.success(),
        "import: {}",
        String::from_utf8_lossy(&st.stderr)
    );
}

/// `podtrace analyze CAPTURE --out OUT`; fails the test with analyze's stderr when it
/// fails. The outputs are read with [`read_spans`] and [`read_summary`].
pub fn analyze_capture(capture: &Path, out: &Path) {
    let st = run(
        podtrace().arg("analyze").arg(capture).arg("--out").arg(out),
        Duration::from_secs(120),
    );
    assert!(
        st.status.success(),
        "analyze: {}",
        String::from_utf8_lossy(&st.stderr)
    );
}
