//! TLS plaintext through uprobes on OpenSSL 3, end to end with real processes (root):
//! a Python `http.server` wrapped with `ssl` (certificate made by `openssl req` at test time)
//! started after the recorder, driven by curl (`--cacert`), Python `requests` and Node's
//! `https` (OpenSSL linked statically into node, exported symbols, memory BIOs), each over a
//! keep-alive connection where the client allows it. The independent decoder is tshark:
//! the server writes the TLS secrets (SSLKEYLOGFILE format), tcpdump records the same
//! traffic on `lo`, and `tshark -z follow,tls,raw` decrypts every stream. For every TCP
//! connection, the plaintext rows of both ends (server and client, each flagged
//! TLS_PLAINTEXT, under the conn_id of that socket's open/close rows) must equal tshark's
//! decrypted bytes, byte for byte, in both directions.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use podtrace_format::model::{flags, Direction, Record, SocketData};
use podtrace_recorder::RecordConfig;

use crate::ebpf_util::*;

/// The test venv's Python (`PODTRACE_VENV` or `<workspace>/.venv`), else `python3`.
fn python() -> String {
    let venv = std::env::var_os("PODTRACE_VENV")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv"));
    let p = venv.join("bin/python3");
    if p.exists() {
        p.to_string_lossy().into_owned()
    } else {
        "python3".into()
    }
}

/// HTTP/1.1 keep-alive server over TLS: GET answers `hello <path>`, POST echoes the body.
/// argv: port cert key keylog
const SERVER: &str = r#"
import http.server, ssl, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    def reply(self, body):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Set-Cookie", "session=s3cr3t-cookie")
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        self.reply(b"hello " + self.path.encode())
    def do_POST(self):
        n = int(self.headers.get("Content-Length", 0))
        self.reply(self.rfile.read(n))
    def log_message(self, *a):
        pass
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[2], sys.argv[3])
ctx.keylog_filename = sys.argv[4]
s = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H)
s.socket = ctx.wrap_socket(s.socket, server_side=True)
s.serve_forever()
"#;

/// Python requests: two requests on one keep-alive connection. argv: port cafile
const REQUESTS: &str = r#"
import sys, requests
sys.stdin.readline()  # the test's go: sent once this process's OpenSSL is hooked
with requests.Session() as s:
    u = "https://127.0.0.1:%s" % sys.argv[1]
    r = s.get(u + "/from-requests", headers={"Authorization": "Bearer py-token"}, verify=sys.argv[2], timeout=10)
    assert r.text == "hello /from-requests", r.text
    r = s.post(u + "/echo", data=b"requests body " * 300, verify=sys.argv[2], timeout=10)
    assert r.content == b"requests body " * 300
"#;

/// Node https with a keep-alive agent: waits for a go file (so the test can see node's
/// binary hooked first), then two requests on one connection. argv: port cafile gofile
const NODE: &str = r#"
const https = require('https'), fs = require('fs');
const [port, ca, go] = process.argv.slice(2);
const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
function req(method, path, body) {
  return new Promise((ok, fail) => {
    const r = https.request({ host: '127.0.0.1', port, path, method, agent, ca: fs.readFileSync(ca),
      headers: { Authorization: 'Bearer node-token', 'Content-Length': Buffer.byteLength(body) } }, (res) => {
      const parts = []; res.on('data', (d) => parts.push(d)); res.on('end', () => ok(Buffer.concat(parts).toString()));
    });
    r.on('error', fail); r.end(body);
  });
}
const t0 = Date.now();
(function wait() {
  if (!fs.existsSync(go)) { if (Date.now() - t0 > 20000) process.exit(3); return setTimeout(wait, 20); }
  (async () => {
    const a = await req('GET', '/from-node', '');
    if (a !== 'hello /from-node') throw new Error(a);
    const b = await req('POST', '/echo', 'node body '.repeat(50));
    if (b !== 'node body '.repeat(50)) throw new Error(b);
    agent.destroy();
  })().catch((e) => { console.error(e); process.exit(1); });
})();
"#;

/// A command that runs `argv` inside the cgroup directory `cg`.
fn in_cgroup(cg: &Path, argv: &[&str]) -> Command {
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(format!(
            "echo $$ > '{}/cgroup.procs' && exec \"$@\"",
            cg.display()
        ))
        .arg("sh")
        .args(argv)
        .stdin(Stdio::null());
    c
}

/// Makes a self-signed certificate for 127.0.0.1/localhost in `dir`.
fn make_cert(dir: &Path) -> (String, String) {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let mut cmd = Command::new("openssl");
    cmd.args([
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
    ])
    .args(["-subj", "/CN=localhost"])
    .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
    .arg("-keyout")
    .arg(&key)
    .arg("-out")
    .arg(&cert);
    run_bounded(cmd, T);
    (
        cert.to_string_lossy().into_owned(),
        key.to_string_lossy().into_owned(),
    )
}

/// Waits (bounded) until the recorder reports a hooked file whose path contains `what`.
fn wait_hooked(h: &podtrace_recorder::RecorderHandle, what: &str) {
    let t0 = Instant::now();
    while !h.tls_libraries().iter().any(|l| l.contains(what)) {
        assert!(
            t0.elapsed() < T,
            "{what} never hooked: {:?}",
            h.tls_libraries()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// tcpdump on lo for one port, started and waited for; stop with [`stop_tcpdump`].
fn start_tcpdump(port: u16, pcap: &Path) -> std::process::Child {
    let mut child = Command::new("tcpdump")
        .args([
            "-i",
            "lo",
            "-U",
            "--immediate-mode",
            "-Z",
            "root",
            "-s",
            "0",
            "-w",
        ])
        .arg(pcap)
        .arg(format!("tcp port {port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tcpdump");
    // "listening on" on stderr means the capture runs
    let mut err = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::Read;
        let mut buf = [0u8; 256];
        let mut seen = Vec::new();
        while let Ok(n) = err.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
            if contains(&seen, b"listening on") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(T).expect("tcpdump listening");
    child
}

/// Lets the pcap settle (file stops growing), then SIGINT and wait.
fn stop_tcpdump(mut child: std::process::Child, pcap: &Path) {
    let mut last = 0;
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(100));
        let len = std::fs::metadata(pcap).map(|m| m.len()).unwrap_or(0);
        if len == last && len > 0 {
            break;
        }
        last = len;
    }
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let t0 = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if t0.elapsed() > T {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.wait();
}

/// tshark's decrypted plaintext of every TCP stream: client port → (client→server,
/// server→client) bytes.
fn tshark_plaintext(pcap: &Path, keylog: &Path, port: u16) -> BTreeMap<u16, (Vec<u8>, Vec<u8>)> {
    let pcap_s = pcap.to_string_lossy().into_owned();
    let keylog_opt = format!("tls.keylog_file:{}", keylog.display());
    let decode = format!("tcp.port=={port},tls");
    let streams = run_bounded(
        {
            let mut c = Command::new("tshark");
            c.args(["-r", &pcap_s, "-o", &keylog_opt, "-d", &decode])
                .args(["-T", "fields", "-e", "tcp.stream", "-e", "tcp.srcport"])
                .args(["-Y", "tcp.flags.syn==1 && tcp.flags.ack==0"]);
            c
        },
        T,
    );
    let mut out = BTreeMap::new();
    for line in String::from_utf8_lossy(&streams).lines() {
        let mut f = line.split('\t');
        let (Some(stream), Some(cport)) = (f.next(), f.next()) else {
            continue;
        };
        let cport: u16 = cport.trim().parse().expect("port");
        let follow = run_bounded(
            {
                let mut c = Command::new("tshark");
                c.args(["-r", &pcap_s, "-o", &keylog_opt, "-d", &decode, "-q"])
                    .args(["-z", &format!("follow,tls,raw,{}", stream.trim())]);
                c
            },
            T,
        );
        let text = String::from_utf8_lossy(&follow);
        let (mut c2s, mut s2c) = (Vec::new(), Vec::new());
        let mut in_body = false;
        // data from node 0 is not indented, data from node 1 is (tab)
        let mut node0_is_client = true;
        for l in text.lines() {
            if let Some(n0) = l.strip_prefix("Node 0:") {
                node0_is_client = n0.trim().ends_with(&format!(":{cport}"));
                continue;
            }
            if l.starts_with("Node 1:") {
                in_body = true;
                continue;
            }
            if !in_body || l.starts_with("====") || l.trim().is_empty() {
                continue;
            }
            let (from_node0, hex) = match l.strip_prefix('\t') {
                Some(h) => (false, h),
                None => (true, l),
            };
            let dst = if from_node0 == node0_is_client {
                &mut c2s
            } else {
                &mut s2c
            };
            let hex = hex.trim();
            for i in (0..hex.len()).step_by(2) {
                dst.push(u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"));
            }
        }
        out.insert(cport, (c2s, s2c));
    }
    out
}

/// TLS plaintext rows per (local port, remote port, direction), concatenated in order;
/// and every socket row's conn_id per (local, remote) port pair.
type Streams = BTreeMap<(u16, u16, Direction), Vec<u8>>;

fn plaintext_streams(rows: &[Record]) -> (Streams, BTreeMap<(u16, u16), Vec<u64>>) {
    let mut s: Streams = BTreeMap::new();
    let mut ids: BTreeMap<(u16, u16), Vec<u64>> = BTreeMap::new();
    let port = |a: Option<std::net::SocketAddr>| a.map(|a| a.port()).unwrap_or(0);
    for r in rows {
        let (meta, data): (_, Option<&SocketData>) = match r {
            Record::SocketData(d) => (&d.meta, Some(d)),
            Record::SocketOpen(e) | Record::SocketClose(e) => (&e.meta, None),
            _ => continue,
        };
        let key = (port(meta.local), port(meta.remote));
        let v = ids.entry(key).or_default();
        if !v.contains(&meta.conn_id) {
            v.push(meta.conn_id);
        }
        if let Some(d) = data {
            if d.flags & flags::TLS_PLAINTEXT != 0 {
                assert_eq!(d.flags & flags::TRUNCATED, 0, "truncated plaintext row");
                s.entry((key.0, key.1, d.direction))
                    .or_default()
                    .extend_from_slice(&d.payload);
            }
        }
    }
    (s, ids)
}

#[test]
fn tls_plaintext_equals_tshark_decryption_curl_requests_node() {
    if !root_or_skip("tls_plaintext_equals_tshark_decryption_curl_requests_node") {
        return;
    }
    for tool in ["openssl", "curl", "node", "tcpdump", "tshark"] {
        if !tool_or_skip(
            tool,
            "tls_plaintext_equals_tshark_decryption_curl_requests_node",
        ) {
            return;
        }
    }
    let env = PeerEnv::acquire();
    let dir = env.dir.path().to_path_buf();
    let port = env.port;
    let (cert, key) = make_cert(&dir);
    for (name, text) in [
        ("server.py", SERVER),
        ("req.py", REQUESTS),
        ("client.js", NODE),
    ] {
        std::fs::write(dir.join(name), text).expect("script");
    }
    let keylog = dir.join("keys.log");
    let pcap = dir.join("tls.pcap");
    let go = dir.join("go");
    let cg = TestCgroup::new("tls");
    let cfg = RecordConfig {
        cgroup_ids: vec![cg.id()],
        no_redact: true, // byte-exact comparison; redaction has its own test
        ..RecordConfig::default()
    };
    let rt = rt();
    let cg_path = cg.path.clone();
    let (dir2, cert2, key2, keylog2, go2) = (
        dir.clone(),
        cert.clone(),
        key.clone(),
        keylog.clone(),
        go.clone(),
    );
    let server_cmd = {
        let mut c = cg.command(&[
            &python(),
            dir.join("server.py").to_str().expect("utf8"),
            &port.to_string(),
            &cert,
            &key,
            keylog.to_str().expect("utf8"),
        ]);
        c.stdout(Stdio::null()).stderr(Stdio::null());
        c
    };
    let rec = record_while(&rt, cfg, move |h| {
        // the recorder runs before any TLS process exists in the cgroup: the server and
        // the clients are found by the periodic rescan
        assert!(h.tls_libraries().is_empty(), "{:?}", h.tls_libraries());
        let server = KillOnDrop::spawn(server_cmd);
        wait_listening(port);
        wait_hooked(h, "libssl.so.3");
        wait_all_hooked(server.0.id());
        let dump = start_tcpdump(port, &dir2.join("tls.pcap"));
        let url = format!("https://127.0.0.1:{port}/from-curl");
        // curl reads its URL from stdin (-K -), after its libssl is hooked
        let body = gated_run(
            in_cgroup(
                &cg_path,
                &[
                    "curl",
                    "-sS",
                    "--cacert",
                    &cert2,
                    "-H",
                    "Authorization: Bearer curl-token",
                    "-K",
                    "-",
                ],
            ),
            format!("url = \"{url}\"\n").as_bytes(),
        );
        assert_eq!(body, b"hello /from-curl");
        let py = python();
        gated_run(
            in_cgroup(
                &cg_path,
                &[
                    &py,
                    dir2.join("req.py").to_str().expect("utf8"),
                    &port.to_string(),
                    &cert2,
                ],
            ),
            b"go\n",
        );
        let mut node = in_cgroup(
            &cg_path,
            &[
                "node",
                dir2.join("client.js").to_str().expect("utf8"),
                &port.to_string(),
                &cert2,
                go2.to_str().expect("utf8"),
            ],
        );
        node.stdout(Stdio::piped()).stderr(Stdio::piped());
        let node = node.spawn().expect("node");
        wait_hooked(h, "node");
        wait_all_hooked(node.id());
        std::fs::write(&go2, b"go").expect("go");
        let out = node.wait_with_output().expect("node");
        assert!(
            out.status.success(),
            "node: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
        stop_tcpdump(dump, &dir2.join("tls.pcap"));
        drop(server);
        let _ = (key2, keylog2);
        h.tls_libraries()
    });
    drop(cg);
    let hooked = rec.work;
    assert!(
        hooked.iter().any(|l| l.ends_with("libssl.so.3")),
        "{hooked:?}"
    );
    assert!(hooked.iter().any(|l| l.ends_with("/node")), "{hooked:?}");

    let truth = tshark_plaintext(&pcap, &keylog, port);
    assert_eq!(truth.len(), 3, "curl, requests, node: {:?}", truth.keys());
    let (plain, ids) = plaintext_streams(&rec.rows);
    let mut checked_ends = 0;
    let mut bytes = 0;
    for (cport, (c2s, s2c)) in &truth {
        assert!(
            !c2s.is_empty() && !s2c.is_empty(),
            "tshark decrypted nothing for {cport}"
        );
        // server end: local = port, remote = client port
        let server_in = plain.get(&(port, *cport, Direction::Ingress));
        let server_out = plain.get(&(port, *cport, Direction::Egress));
        assert_eq!(
            server_in,
            Some(c2s),
            "server ingress of client port {cport}"
        );
        assert_eq!(
            server_out,
            Some(s2c),
            "server egress of client port {cport}"
        );
        // client end
        let client_out = plain.get(&(*cport, port, Direction::Egress));
        let client_in = plain.get(&(*cport, port, Direction::Ingress));
        assert_eq!(
            client_out,
            Some(c2s),
            "client egress of client port {cport}"
        );
        assert_eq!(
            client_in,
            Some(s2c),
            "client ingress of client port {cport}"
        );
        // one conn_id per socket: plaintext, ciphertext, open and close rows share it
        assert_eq!(ids[&(port, *cport)].len(), 1, "server socket ids {cport}");
        assert_eq!(ids[&(*cport, port)].len(), 1, "client socket ids {cport}");
        checked_ends += 2;
        bytes += c2s.len() + s2c.len();
    }
    eprintln!(
        "TLS plaintext equal to tshark's decryption: {} connections, {checked_ends} socket ends, {bytes} plaintext bytes per end pair; hooked {hooked:?}",
        truth.len()
    );
}

/// Two-hop service for the twin test: `front` answers GET /a/<n> by calling
/// `back` /b/<n> (over TLS when mode is `tls`) and relaying its status; `back` answers 200,
/// or 500 when n % 3 == 0. argv: mode role port backport cert key cafile
const CHAIN: &str = r#"
import http.server, ssl, sys, requests
mode, role, port, backport, cert, key, ca = sys.argv[1:8]
scheme = "https" if mode == "tls" else "http"
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    def send(self, status, body):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        n = int(self.path.rsplit("/", 1)[1])
        if role == "back":
            return self.send(500 if n % 3 == 0 else 200, b"b %d" % n)
        r = requests.get("%s://127.0.0.1:%s/b/%d" % (scheme, backport, n), verify=ca, timeout=10)
        self.send(r.status_code, b"a " + r.content)
    def log_message(self, *a):
        pass
s = http.server.ThreadingHTTPServer(("127.0.0.1", int(port)), H)
if mode == "tls":
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    s.socket = ctx.wrap_socket(s.socket, server_side=True)
s.serve_forever()
"#;

/// Drives `front`: `count` GETs on one keep-alive connection, each with its own W3C trace
/// context. argv: mode port cafile count
const DRIVE: &str = r#"
import sys, requests
sys.stdin.readline()  # the test's go: sent once this process's OpenSSL is hooked
mode, port, ca, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
scheme = "https" if mode == "tls" else "http"
with requests.Session() as s:
    for i in range(1, count + 1):
        tp = "00-%032x-%016x-01" % (0xabc000 + i, 0x5000 + i)
        r = s.get("%s://127.0.0.1:%s/a/%d" % (scheme, port, i), headers={"traceparent": tp, "Cookie": "twin-secret=%d" % i}, verify=ca, timeout=10)
        assert r.status_code == (500 if i % 3 == 0 else 200), r.status_code
"#;

/// A span reduced to what must not depend on TLS or on ports: trace id, kind, name,
/// status, the parent's kind and name (or the wire parent id for remote parents), and the
/// attributes without ports, url.scheme and connection-specific values.
fn canonical(a: &podtrace_analyzer::Analysis) -> Vec<String> {
    let by_id: BTreeMap<_, _> = a.spans.iter().map(|s| (s.span_id, s)).collect();
    let mut out: Vec<String> = a
        .spans
        .iter()
        .map(|s| {
            let parent = match s.parent_span_id {
                None => "root".to_string(),
                Some(p) => match by_id.get(&p) {
                    Some(ps) => format!("{:?} {}", ps.kind, ps.name),
                    None => format!("remote {p:?}"),
                },
            };
            let mut attrs: Vec<String> = s
                .attributes
                .iter()
                .filter(|kv| {
                    !kv.key.contains("port")
                        && kv.key != "url.scheme"
                        && !kv.key.starts_with("podtrace.conn")
                })
                .map(|kv| format!("{}={:?}", kv.key, kv.value))
                .collect();
            attrs.sort();
            format!(
                "{:?} {:?} {} {:?} parent=[{parent}] {}",
                s.trace_id,
                s.kind,
                s.name,
                s.status.code,
                attrs.join(" ")
            )
        })
        .collect();
    out.sort();
    out
}

/// Records the chain scenario in one mode and analyzes it; returns the analysis and the
/// hooked files.
fn chain_run(
    mode: &str,
    env: &PeerEnv,
    cert: &str,
    key: &str,
    count: usize,
) -> podtrace_analyzer::Analysis {
    let dir = env.dir.path().to_path_buf();
    std::fs::write(dir.join("chain.py"), CHAIN).expect("script");
    std::fs::write(dir.join("drive.py"), DRIVE).expect("script");
    let cg = TestCgroup::new(&format!("tls-chain-{mode}"));
    let (front, back) = (free_port(), free_port());
    let py = python();
    let chain = dir.join("chain.py").to_string_lossy().into_owned();
    let spawn = |role: &str, port: u16| {
        let mut c = cg.command(&[
            &py,
            &chain,
            mode,
            role,
            &port.to_string(),
            &back.to_string(),
            cert,
            key,
            cert,
        ]);
        c.stdout(Stdio::null()).stderr(Stdio::null());
        KillOnDrop::spawn(c)
    };
    let _b = spawn("back", back);
    let _f = spawn("front", front);
    wait_listening(back);
    wait_listening(front);
    let cfg = RecordConfig {
        cgroup_ids: vec![cg.id()],
        ..RecordConfig::default()
    };
    let rt = rt();
    let drive = cg.command(&[
        &py,
        dir.join("drive.py").to_str().expect("utf8"),
        mode,
        &front.to_string(),
        cert,
        &count.to_string(),
    ]);
    let rec = record_while(&rt, cfg, move |_| {
        gated_run(drive, b"go\n");
    });
    // redaction applies to TLS plaintext as to cleartext: the cookie is nowhere
    for r in &rec.rows {
        if let Record::SocketData(d) = r {
            assert!(
                !contains(&d.payload, b"twin-secret"),
                "{mode}: cookie in {d:?}"
            );
        }
    }
    if mode == "tls" {
        let n = rec
            .rows
            .iter()
            .filter(|r| matches!(r, Record::SocketData(d) if d.flags & flags::TLS_PLAINTEXT != 0))
            .count();
        assert!(n > 0, "no plaintext rows");
    }
    podtrace_analyzer::analyze(rec.rows.into_iter(), &Default::default()).expect("analyze")
}

#[test]
fn tls_traces_equal_their_plain_http_twin() {
    if !root_or_skip("tls_traces_equal_their_plain_http_twin") {
        return;
    }
    if !tool_or_skip("openssl", "tls_traces_equal_their_plain_http_twin") {
        return;
    }
    let env = PeerEnv::acquire();
    let (cert, key) = make_cert(env.dir.path());
    let count = 9;
    let plain = chain_run("plain", &env, &cert, &key, count);
    let tls = chain_run("tls", &env, &cert, &key, count);
    // driver → front (CLIENT + SERVER), front → back (CLIENT + SERVER): 4 spans a request
    assert_eq!(plain.spans.len(), 4 * count, "plain: {}", plain.stats);
    assert_eq!(tls.spans.len(), 4 * count, "tls: {}", tls.stats);
    assert!(tls.stats.parse_errors.is_empty(), "{}", tls.stats);
    assert!(tls.stats.tls_ciphertext_skipped > 0, "{}", tls.stats);
    assert_eq!(plain.stats.tls_ciphertext_skipped, 0);
    for s in &tls.spans {
        assert_eq!(
            s.attribute("url.scheme"),
            Some(&podtrace_model::AttrValue::Str("https".into())),
            "{}",
            s.name
        );
    }
    let (ct, cp) = (canonical(&tls), canonical(&plain));
    let only_tls: Vec<_> = ct.iter().filter(|x| !cp.contains(x)).collect();
    let only_plain: Vec<_> = cp.iter().filter(|x| !ct.contains(x)).collect();
    assert!(
        only_tls.is_empty() && only_plain.is_empty(),
        "spans only over TLS: {only_tls:#?}\nspans only over plain HTTP: {only_plain:#?}"
    );
    let traces: std::collections::BTreeSet<_> = tls.spans.iter().map(|s| s.trace_id).collect();
    assert_eq!(traces.len(), count);
    eprintln!(
        "TLS twin: {} spans in {} traces equal to the plain HTTP twin's (trace ids, parents, names, status, attributes); {} ciphertext rows skipped",
        tls.spans.len(),
        traces.len(),
        tls.stats.tls_ciphertext_skipped
    );
}

/// gRPC over TLS (HTTP/2 with ALPN h2) between two Node.js processes (OpenSSL inside node):
/// the gRPC wire format by hand (length-prefixed messages, `grpc-status` trailers) on
/// `http2.createSecureServer` / `http2.connect`. `server port cert key` or
/// `client port cafile count`: RPC i calls /demo.Echo/Say, or /demo.Echo/Fail (status 5)
/// when i % 4 == 0, with a traceparent of trace id 0xfeed000 + i.
const GRPC_NODE: &str = r#"
const http2 = require('http2'), fs = require('fs');
const [mode, port] = process.argv.slice(2, 4);
function frame(buf) { const h = Buffer.alloc(5); h.writeUInt32BE(buf.length, 1); return Buffer.concat([h, buf]); }
if (mode === 'server') {
  const [cert, key] = process.argv.slice(4, 6);
  const srv = http2.createSecureServer({ cert: fs.readFileSync(cert), key: fs.readFileSync(key) });
  srv.on('stream', (stream, headers) => {
    const parts = [];
    stream.on('data', (d) => parts.push(d));
    stream.on('end', () => {
      const fail = headers[':path'].endsWith('/Fail');
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers(fail ? { 'grpc-status': '5', 'grpc-message': 'not found' } : { 'grpc-status': '0' }));
      stream.end(fail ? Buffer.alloc(0) : frame(Buffer.concat(parts).subarray(5)));
    });
  });
  srv.listen(Number(port), '127.0.0.1');
} else {
  const [ca, count] = process.argv.slice(4, 6);
  // the test's go (a line on stdin) comes once this process's OpenSSL is hooked
  process.stdin.once('data', () => { process.stdin.destroy();
  const c = http2.connect(`https://127.0.0.1:${port}`, { ca: fs.readFileSync(ca) });
  const call = (i) => new Promise((ok, fail) => {
    const path = i % 4 === 0 ? '/demo.Echo/Fail' : '/demo.Echo/Say';
    const tp = '00-' + (0xfeed000 + i).toString(16).padStart(32, '0') + '-' + (0x7000 + i).toString(16).padStart(16, '0') + '-01';
    const s = c.request({ ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers', traceparent: tp,  });
    let status = null;
    s.on('trailers', (t) => { status = t['grpc-status']; });
    s.on('data', () => {});
    s.on('end', () => (status === (i % 4 === 0 ? '5' : '0') ? ok() : fail(new Error('status ' + status))));
    s.on('error', fail);
    s.end(frame(Buffer.from('hello ' + i)));
  });
  (async () => { for (let i = 1; i <= Number(count); i++) await call(i); c.close(); })()
    .catch((e) => { console.error(e); process.exit(1); });
  });
}
"#;

#[test]
fn tls_grpc_over_http2_alpn_h2_node() {
    if !root_or_skip("tls_grpc_over_http2_alpn_h2_node") {
        return;
    }
    for tool in ["openssl", "node"] {
        if !tool_or_skip(tool, "tls_grpc_over_http2_alpn_h2_node") {
            return;
        }
    }
    let env = PeerEnv::acquire();
    let dir = env.dir.path().to_path_buf();
    let (cert, key) = make_cert(&dir);
    let script = dir.join("grpc.js").to_string_lossy().into_owned();
    std::fs::write(&script, GRPC_NODE).expect("script");
    let cg = TestCgroup::new("tls-grpc");
    let port = env.port;
    let mut server = cg.command(&["node", &script, "server", &port.to_string(), &cert, &key]);
    server.stdout(Stdio::null()).stderr(Stdio::null());
    let _server = KillOnDrop::spawn(server);
    wait_listening(port);
    let count = 12;
    let client = cg.command(&[
        "node",
        &script,
        "client",
        &port.to_string(),
        &cert,
        &count.to_string(),
    ]);
    let cfg = RecordConfig {
        cgroup_ids: vec![cg.id()],
        ..RecordConfig::default()
    };
    let rt = rt();
    let rec = record_while(&rt, cfg, move |h| {
        wait_hooked(h, "node");
        gated_run(client, b"go\n");
        h.tls_libraries()
    });
    let a = podtrace_analyzer::analyze(rec.rows.into_iter(), &Default::default()).expect("analyze");
    assert!(a.stats.parse_errors.is_empty(), "{}", a.stats);
    let attr = |s: &podtrace_model::Span, k: &str| s.attribute(k).cloned();
    use podtrace_model::{AttrValue, SpanKind};
    let mut rpcs = 0;
    for kind in [SpanKind::Client, SpanKind::Server] {
        let spans: Vec<_> = a.spans.iter().filter(|s| s.kind == kind).collect();
        assert_eq!(spans.len(), count, "{kind:?} spans: {}", a.stats);
        for s in spans {
            assert_eq!(attr(s, "rpc.system"), Some(AttrValue::Str("grpc".into())));
            assert_eq!(
                attr(s, "rpc.service"),
                Some(AttrValue::Str("demo.Echo".into()))
            );
            assert_eq!(attr(s, "url.scheme"), Some(AttrValue::Str("https".into())));
            let method = attr(s, "rpc.method");
            let code = attr(s, "rpc.grpc.status_code");
            match method {
                Some(AttrValue::Str(m)) if m == "Fail" => {
                    assert_eq!(code, Some(AttrValue::Int(5)))
                }
                Some(AttrValue::Str(m)) if m == "Say" => assert_eq!(code, Some(AttrValue::Int(0))),
                other => panic!("rpc.method {other:?}"),
            }
            // the wire trace context: trace id 0xfeed000 + i
            let tid = format!("{:?}", s.trace_id);
            assert!(tid.contains("feed"), "trace id {tid}");
            rpcs += 1;
        }
    }
    let traces: std::collections::BTreeSet<_> = a.spans.iter().map(|s| s.trace_id).collect();
    assert_eq!(traces.len(), count);
    eprintln!(
        "gRPC over TLS (h2, node): {rpcs} rpc spans ({count} RPCs, both sides) with rpc.* and the wire trace ids; hooked {:?}; {} ciphertext rows skipped",
        rec.work, a.stats.tls_ciphertext_skipped
    );
}

#[test]
fn tls_off_records_no_plaintext_and_hooks_nothing() {
    if !root_or_skip("tls_off_records_no_plaintext_and_hooks_nothing") {
        return;
    }
    if !tool_or_skip("openssl", "tls_off_records_no_plaintext_and_hooks_nothing") {
        return;
    }
    let env = PeerEnv::acquire();
    let dir = env.dir.path().to_path_buf();
    let (cert, key) = make_cert(&dir);
    let count = 3;
    std::fs::write(dir.join("chain.py"), CHAIN).expect("script");
    std::fs::write(dir.join("drive.py"), DRIVE).expect("script");
    let cg = TestCgroup::new("tls-off");
    let (front, back) = (env.port, free_port());
    let py = python();
    let chain = dir.join("chain.py").to_string_lossy().into_owned();
    let spawn = |role: &str, port: u16| {
        let mut c = cg.command(&[
            &py,
            &chain,
            "tls",
            role,
            &port.to_string(),
            &back.to_string(),
            &cert,
            &key,
            &cert,
        ]);
        c.stdout(Stdio::null()).stderr(Stdio::null());
        KillOnDrop::spawn(c)
    };
    let _b = spawn("back", back);
    let _f = spawn("front", front);
    wait_listening(back);
    wait_listening(front);
    let cfg = RecordConfig {
        cgroup_ids: vec![cg.id()],
        tls: false,
        ..RecordConfig::default()
    };
    let drive = cg.command(&[
        &py,
        dir.join("drive.py").to_str().expect("utf8"),
        "tls",
        &front.to_string(),
        &cert,
        &count.to_string(),
    ]);
    let rt = rt();
    let rec = record_while(&rt, cfg, move |h| {
        run_bounded(drive, T);
        (h.tls_libraries(), h.probes_attached().to_string())
    });
    let (hooked, attached) = rec.work;
    assert!(hooked.is_empty(), "{hooked:?}");
    assert!(
        attached.contains("TLS plaintext off (--tls off)"),
        "{attached}"
    );
    let data: Vec<&SocketData> = rec
        .rows
        .iter()
        .filter_map(|r| match r {
            Record::SocketData(d) => Some(d),
            _ => None,
        })
        .collect();
    assert!(!data.is_empty(), "the ciphertext is still recorded");
    assert!(data.iter().all(|d| d.flags & flags::TLS_PLAINTEXT == 0));
    let n_data = data.len();
    // the analyzer recognises the ciphertext and skips it: no spans, no parse errors
    let a = podtrace_analyzer::analyze(rec.rows.into_iter(), &Default::default()).expect("analyze");
    assert!(a.spans.is_empty(), "{}", a.stats);
    assert!(a.stats.parse_errors.is_empty(), "{}", a.stats);
    assert_eq!(a.stats.tls_ciphertext_skipped as usize, n_data);
}

/// The first byte of OpenSSL's `sym` in the first file mapped by process `pid` that
/// exports it (`libssl.so.3`, node), read through `/proc/PID/mem`: 0xCC (int3) while a
/// uprobe is installed in that process's address space. None while no such file is mapped.
fn ssl_first_byte(pid: u32, sym: &str) -> Option<u8> {
    use podtrace_recorder::tls::discover;
    use std::os::unix::fs::FileExt;
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
    for line in maps.lines() {
        let f: Vec<&str> = line.split_ascii_whitespace().collect();
        if f.len() < 6 || f[1].as_bytes().get(2) != Some(&b'x') || !f[5].starts_with('/') {
            continue;
        }
        let (start, end) = f[0].split_once('-')?;
        let start = u64::from_str_radix(start, 16).ok()?;
        let end = u64::from_str_radix(end, 16).ok()?;
        let pgoff = u64::from_str_radix(f[2], 16).ok()?;
        let Ok(found) = discover::exported_symbols(&discover::host_path(pid, f[5])) else {
            continue;
        };
        let Some(&(_, off)) = found.iter().find(|(s, _)| *s == sym) else {
            continue;
        };
        if off < pgoff || off >= pgoff + (end - start) {
            continue;
        }
        let mem = std::fs::File::open(format!("/proc/{pid}/mem")).ok()?;
        let mut b = [0u8; 1];
        mem.read_exact_at(&mut b, start + off - pgoff).ok()?;
        return Some(b[0]);
    }
    None
}

/// Polls (bounded by `T`) until `pid`'s first byte of `SSL_write` satisfies `ok`; returns
/// the time it took.
fn wait_byte(pid: u32, what: &str, ok: impl Fn(u8) -> bool) -> Duration {
    let t0 = Instant::now();
    loop {
        let b = ssl_first_byte(pid, "SSL_write");
        if b.is_some_and(&ok) {
            return t0.elapsed();
        }
        assert!(t0.elapsed() < T, "pid {pid}: {what} (SSL_write byte {b:?})");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits (bounded) until every one of the four OpenSSL functions in `pid` starts with a
/// breakpoint, then 200 ms more: the recorder attaches a process's eight probes (entry and
/// return per function) one after the other within one rescan, and the last ones are not
/// visible in memory (a return probe shares its function's entry breakpoint).
fn wait_all_hooked(pid: u32) {
    let t0 = Instant::now();
    // the functions the process's file exports (node may lack the _ex ones)
    let hooked = || {
        let bytes: Vec<u8> = podtrace_recorder::tls::discover::SYMBOLS
            .iter()
            .filter_map(|s| ssl_first_byte(pid, s))
            .collect();
        bytes.len() >= 2 && bytes.iter().all(|b| *b == INT3)
    };
    while !hooked() {
        assert!(t0.elapsed() < T, "pid {pid}: not every SSL function hooked");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(200));
}

/// The x86 breakpoint a uprobe plants.
const INT3: u8 = 0xCC;

/// Runs `cmd` (stdin piped) to completion, bounded by `T`: waits until the process's
/// OpenSSL has the uprobes (probes are attached per process, at the rescan after it
/// appears), then writes `go` to its stdin and closes it. Panics on failure; returns stdout.
fn gated_run(mut cmd: Command, go: &[u8]) -> Vec<u8> {
    use std::io::{Read, Write};
    // killed and reaped on every way out (KillOnDrop)
    let mut guard = KillOnDrop(
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn"),
    );
    let child = &mut guard.0;
    wait_all_hooked(child.id());
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(go).expect("go");
    drop(stdin);
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(t0.elapsed() < T, "gated process timed out");
        std::thread::sleep(Duration::from_millis(10));
    };
    let (mut out, mut err) = (Vec::new(), String::new());
    if let Some(mut o) = child.stdout.take() {
        o.read_to_end(&mut out).expect("stdout");
    }
    if let Some(mut e) = child.stderr.take() {
        e.read_to_string(&mut err).expect("stderr");
    }
    assert!(status.success(), "{status}: {err}");
    out
}

#[test]
fn tls_uprobes_only_in_targeted_processes_attached_and_detached_per_process() {
    if !root_or_skip("tls_uprobes_only_in_targeted_processes_attached_and_detached_per_process") {
        return;
    }
    // alone among the recording tests: a test hooking libssl.so.3 file-wide (the default
    // scope) at the same time would plant the breakpoints in every process
    let _serial = PeerEnv::acquire();
    let cg = TestCgroup::new("tls-pid");
    let other = TestCgroup::new("tls-pid-other");
    let py = python();
    let sleeper = |c: &TestCgroup| {
        KillOnDrop::spawn(c.command(&[&py, "-c", "import ssl, time; time.sleep(60)"]))
    };
    let a = sleeper(&cg);
    let b = sleeper(&other);
    let (pa, pb) = (a.0.id(), b.0.id());
    // both map libssl.so.3, without breakpoints before the recorder
    wait_byte(pa, "libssl mapped", |x| x != INT3);
    wait_byte(pb, "libssl mapped", |x| x != INT3);
    let cfg = RecordConfig {
        cgroup_ids: vec![cg.id()],
        tls_attach: podtrace_recorder::tls::TlsAttach::Process,
        ..RecordConfig::default()
    };
    let other_procs = other.path.join("cgroup.procs");
    let late_cmd = cg.command(&[&py, "-c", "import ssl, time; time.sleep(60)"]);
    let rt = rt();
    let rec = record_while(&rt, cfg, move |h| {
        wait_hooked(h, "libssl.so.3");
        // the targeted process has the breakpoint; the untargeted one mapping the same
        // file does not
        wait_byte(pa, "targeted process hooked", |x| x == INT3);
        let untargeted = ssl_first_byte(pb, "SSL_write");
        // a process started after the recorder is found by the rescan
        let c = KillOnDrop::spawn(late_cmd);
        let pc = c.0.id();
        let late = wait_byte(pc, "late targeted process hooked", |x| x == INT3);
        // a process that leaves the targeted cgroup loses its breakpoints
        std::fs::write(&other_procs, pa.to_string()).expect("move to the other cgroup");
        let left = wait_byte(pa, "moved process unhooked", |x| x != INT3);
        let still = ssl_first_byte(pc, "SSL_write");
        drop(c);
        (untargeted, late, left, still)
    });
    let (untargeted, late, left, still) = rec.work;
    assert!(
        untargeted.is_some_and(|x| x != INT3),
        "untargeted: {untargeted:?}"
    );
    assert_eq!(
        still,
        Some(INT3),
        "the other targeted process keeps its probes"
    );
    eprintln!("late process hooked after {late:?}, moved process unhooked after {left:?}");
    let stat = |name: &str| {
        rec.rows
            .iter()
            .filter_map(|r| match r {
                Record::Stats(s) if s.name == name => Some(s.value),
                _ => None,
            })
            .next_back()
    };
    assert!(
        stat("tls_processes_hooked") >= Some(2),
        "{:?}",
        stat("tls_processes_hooked")
    );
    assert!(
        stat("tls_processes_detached") >= Some(1),
        "{:?}",
        stat("tls_processes_detached")
    );
    assert_eq!(stat("tls_processes_over_bound"), Some(0));
    drop((a, b));
}
