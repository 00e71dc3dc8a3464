//! Test harness shared by the exporter tests: real receivers (the Python stand-ins in
//! `tools/receivers/`, rotel) started as child processes on free loopback ports, and a
//! deterministic set of spans to send them.
//!
//! Receivers print `LISTENING <port>` when ready and append what they decoded as JSON lines
//! to a file in a temp dir; [`Receiver`] kills the process and removes the dir on drop.
//! Tools that are missing (no venv, no node) make a test skip with a loud message.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use podtrace_export::{ExportConfig, Url};
use podtrace_model::{KeyValue, Resource, Span, SpanId, SpanKind, Status, TraceId};
use serde_json::Value;

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("export/ has a parent")
        .to_path_buf()
}

/// The venv with the Python test peers (`PODTRACE_VENV` or `<workspace>/.venv`).
pub fn venv() -> Option<PathBuf> {
    let dir = std::env::var_os("PODTRACE_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join(".venv"));
    if dir.join("bin/python").exists() {
        Some(dir)
    } else {
        eprintln!(
            "SKIPPING: no Python venv with the test peers at {} (make venv)",
            dir.display()
        );
        None
    }
}

/// rotel's binary inside the venv's site-packages.
pub fn rotel_agent(venv: &Path) -> Option<PathBuf> {
    let lib = venv.join("lib");
    let found = std::fs::read_dir(&lib).ok()?.flatten().find_map(|e| {
        let p = e.path().join("site-packages/rotel/rotel-agent");
        p.exists().then_some(p)
    });
    if found.is_none() {
        eprintln!("SKIPPING: rotel-agent not found under {}", lib.display());
    }
    found
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
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    false
}

/// Polls `f` until it is true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A child process killed (and reaped) on drop.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running test receiver from `tools/receivers/`.
pub struct Receiver {
    proc: Proc,
    /// The port it listens on.
    pub port: u16,
    /// Its JSON-lines output.
    pub out: PathBuf,
    _dir: tempfile::TempDir,
}

impl Receiver {
    /// Starts `tools/receivers/<script>` with `args` (plus `--out`), waiting for readiness.
    pub fn start(venv: &Path, script: &str, args: &[&str]) -> Receiver {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("received.jsonl");
        let mut child = Command::new(venv.join("bin/python"))
            .arg(workspace().join("tools/receivers").join(script))
            .arg("--out")
            .arg(&out)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start receiver");
        let stdout = child.stdout.take().expect("piped stdout");
        let proc = Proc(child);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(15))
            .unwrap_or_else(|_| panic!("{script} did not start within 15 s"));
        let port = line
            .trim()
            .strip_prefix("LISTENING ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("{script} printed {line:?} instead of LISTENING <port>"));
        Receiver {
            proc,
            port,
            out,
            _dir: dir,
        }
    }

    /// `http://127.0.0.1:<port>` (or https).
    pub fn url(&self, scheme: &str) -> Url {
        Url::parse(&format!("{scheme}://127.0.0.1:{}", self.port)).expect("url")
    }

    fn lines(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).expect("receiver wrote JSON"))
            .collect()
    }

    /// What it decoded (spans or events), in arrival order.
    pub fn records(&self) -> Vec<Value> {
        self.lines()
            .into_iter()
            .filter(|v| v.get("_request").is_none())
            .collect()
    }

    /// POST requests it got (faulted ones included).
    pub fn requests(&self) -> usize {
        self.lines()
            .iter()
            .filter(|v| v.get("_request").is_some())
            .count()
    }

    /// The `Content-Encoding` of each POST it got.
    pub fn request_encodings(&self) -> Vec<String> {
        self.lines()
            .iter()
            .filter(|v| v.get("_request").is_some())
            .map(|v| {
                v["content_encoding"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect()
    }

    /// Waits until at least `n` records arrived; returns them.
    pub fn wait_records(&self, n: usize, timeout: Duration) -> Vec<Value> {
        wait_until(timeout, || self.records().len() >= n);
        self.records()
    }

    /// The process id (for logs).
    pub fn pid(&self) -> u32 {
        self.proc.0.id()
    }
}

fn mix(mut x: u64) -> u64 {
    // splitmix64: deterministic, well spread ids (half of them have the top bit set).
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

const SERVICES: [(&str, &str, &str); 3] = [
    ("frontend", "frontend-7d9f-abcde", "node-a"),
    ("cart", "cart-5c4b-xyz12", "node-b"),
    ("payments", "payments-0", "node-a"),
];

/// `n` spans over three workloads, in traces of four spans (server root → client → server
/// → client), with typed attributes, errors on every seventh span and ids with the top bit
/// set on about half.
pub fn sample_spans(n: usize) -> Vec<Span> {
    (0..n)
        .map(|i| {
            let trace = (i / 4) as u64;
            let depth = i % 4;
            let hi = mix(trace * 2 + 1);
            let lo = mix(trace * 2 + 2);
            let mut trace_bytes = [0u8; 16];
            trace_bytes[..8].copy_from_slice(&hi.to_be_bytes());
            trace_bytes[8..].copy_from_slice(&lo.to_be_bytes());
            let span_id =
                |k: usize| SpanId((mix(1_000_000 + (i - depth + k) as u64) | 1).to_be_bytes());
            let (service, pod, node) = SERVICES[(i / 2 + depth / 2) % SERVICES.len()];
            let status_code: i64 = if i % 7 == 3 { 503 } else { 200 };
            let kind = if depth % 2 == 0 {
                SpanKind::Server
            } else {
                SpanKind::Client
            };
            let start =
                1_764_000_000_000_000_000u64 + (i as u64) * 1_000_123 + depth as u64 * 10_000;
            Span {
                trace_id: TraceId(trace_bytes),
                span_id: span_id(depth),
                parent_span_id: (depth > 0).then(|| span_id(depth - 1)),
                trace_state: if i % 5 == 0 {
                    "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7".to_string()
                } else {
                    String::new()
                },
                flags: if i % 9 == 8 { 0 } else { 1 },
                name: format!("GET /api/items/{{id}} {i}"),
                kind,
                start_time_unix_nano: start,
                end_time_unix_nano: start + 2_345_678 + (i as u64 % 13) * 1_000,
                attributes: vec![
                    KeyValue::new("http.request.method", "GET"),
                    KeyValue::new("url.path", format!("/api/items/{i}")),
                    KeyValue::new("http.response.status_code", status_code),
                    KeyValue::new("server.address", "cart.shop.svc"),
                    KeyValue::new("server.port", 8080i64),
                    KeyValue::new("network.peer.address", "10.0.0.7"),
                    KeyValue::new("podtrace.retransmits", i % 2 == 0),
                    KeyValue::new("podtrace.rtt_ms", 0.25 * (i % 8) as f64),
                    KeyValue::new("podtrace.note", "ünïcode \"quoted\" \\ tab\t"),
                ],
                status: if status_code >= 500 {
                    Status::error("HTTP 503")
                } else {
                    Status::unset()
                },
                resource: Resource::new(service)
                    .with("k8s.namespace.name", "shop")
                    .with("k8s.pod.name", pod)
                    .with("k8s.node.name", node),
            }
        })
        .collect()
}

/// Exporter settings tuned for tests: small batches, one request at a time (exact request
/// counts), short timeouts, fast backoff.
pub fn test_config() -> ExportConfig {
    ExportConfig {
        delivery: podtrace_export::DeliveryConfig {
            batch_size: 50,
            concurrency: 1,
            timeout: Duration::from_secs(5),
            max_retries: 3,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(400),
            ..Default::default()
        },
        ..ExportConfig::default()
    }
}

/// A span's attribute as the JSON value receivers record.
pub fn attr_json(v: &podtrace_model::AttrValue) -> Value {
    match v {
        podtrace_model::AttrValue::Str(s) => Value::from(s.clone()),
        podtrace_model::AttrValue::Bool(b) => Value::from(*b),
        podtrace_model::AttrValue::Int(i) => Value::from(*i),
        podtrace_model::AttrValue::Double(d) => Value::from(*d),
    }
}

/// Records keyed by `trace_id/span_id`.
pub fn by_id(records: &[Value]) -> std::collections::BTreeMap<String, Value> {
    records
        .iter()
        .map(|r| {
            let key = format!(
                "{}/{}",
                r["trace_id"].as_str().unwrap_or_default(),
                r["span_id"].as_str().unwrap_or_default()
            );
            (key, r.clone())
        })
        .collect()
}

/// The `trace_id/span_id` key of a span.
pub fn key(span: &Span) -> String {
    format!("{}/{}", span.trace_id, span.span_id)
}

/// Test PKI made with `openssl`: a CA and a server leaf for 127.0.0.1 (`CA:FALSE`, SAN IP).
pub struct TestPki {
    /// The CA certificate (PEM).
    pub ca: PathBuf,
    /// The server certificate (PEM).
    pub cert: PathBuf,
    /// The server key (PEM).
    pub key: PathBuf,
}

/// Creates a [`TestPki`] in `dir`, or `None` (with a loud message) without `openssl`.
pub fn make_pki(dir: &Path) -> Option<TestPki> {
    let run = |args: &[&str]| -> bool {
        Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    let ext = dir.join("leaf.ext");
    std::fs::write(
        &ext,
        "basicConstraints=critical,CA:FALSE\nsubjectAltName=IP:127.0.0.1\n\
         keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .ok()?;
    let ok = run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=podtrace test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]) && run(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "leaf.key",
        "-out",
        "leaf.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]) && run(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "leaf.pem",
        "-days",
        "2",
        "-extfile",
        "leaf.ext",
    ]);
    if !ok {
        eprintln!("SKIPPING: openssl could not make a test CA");
        return None;
    }
    Some(TestPki {
        ca: dir.join("ca.pem"),
        cert: dir.join("leaf.pem"),
        key: dir.join("leaf.key"),
    })
}

/// `node` plus the official `splunk-logging` client in `tools/receivers/node_modules`
/// (installed with `npm ci` when missing), or `None` with a loud message.
pub fn splunk_logging_client() -> Option<PathBuf> {
    let dir = workspace().join("tools/receivers");
    let module = dir.join("node_modules/splunk-logging");
    if !module.exists() {
        let installed = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .stdout(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !installed {
            eprintln!(
                "SKIPPING: cannot install splunk-logging with npm in {}",
                dir.display()
            );
            return None;
        }
    }
    Some(dir.join("splunk_logging_send.js"))
}
