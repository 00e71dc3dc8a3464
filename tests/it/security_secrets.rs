//! The Splunk HEC token and TLS: the token never appears in stdout/stderr (even at
//! `RUST_LOG=trace -vvv`, on export errors, or when a hostile server echoes it back), and
//! TLS certificates are verified unless `--tracing-splunk-insecure` is given.
//! Uses the HEC stand-in `tools/receivers/hec.py` from the test venv.

use crate::reliability_support as support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use support::*;

const TOKEN: &str = "f00dcafe-5ecr-e7t0-kenX-a1b2c3d4e5f6";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn venv_python() -> Option<PathBuf> {
    let p = root().join(".venv/bin/python");
    p.exists().then_some(p)
}

/// A HEC receiver; killed on drop.
struct Hec {
    child: Child,
    port: u16,
    out: PathBuf,
}

impl Hec {
    fn start(dir: &Path, extra: &[&str]) -> Hec {
        let out = dir.join(format!("hec-{}.jsonl", free_port()));
        let mut child = Command::new(venv_python().unwrap())
            .arg(root().join("tools/receivers/hec.py"))
            .args(["--port", "0", "--out", s(&out), "--token", TOKEN])
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start hec.py");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("LISTENING ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("hec.py said {line:?}"));
        Hec { child, port, out }
    }
    fn events(&self) -> usize {
        std::fs::read_to_string(&self.out).map_or(0, |s| s.lines().count())
    }
}

impl Drop for Hec {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The chain fixture imported as a capture.
fn capture(dir: &Path) -> PathBuf {
    let cap = dir.join("chain.parquet");
    let pcap = root().join("fixtures/chain/chain.pcap");
    let o = podtrace(&["import", s(&pcap), "-o", s(&cap)]);
    assert!(o.status.success(), "import: {}", stderr(&o));
    cap
}

/// `analyze` with the token in the environment (like a real deployment), trace logging.
fn analyze(cap: &Path, out: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(bin());
    cmd.args(["analyze", s(cap), "--out", s(out), "-vvv"])
        .args(args)
        .env("RUST_LOG", "trace")
        .env("RUST_BACKTRACE", "1")
        .env("PODTRACE_TRACING_SPLUNK_TOKEN", TOKEN);
    cmd.output().unwrap()
}

fn assert_no_token(o: &Output, what: &str) {
    for (name, stream) in [("stdout", &o.stdout), ("stderr", &o.stderr)] {
        let text = String::from_utf8_lossy(stream);
        assert!(
            !text.contains(TOKEN),
            "{what}: the HEC token is in {name}:\n{text}"
        );
        assert!(!text.contains("panicked"), "{what}: panic\n{text}");
    }
}

#[test]
fn hec_token_never_printed() {
    let Some(_) = venv_python() else {
        eprintln!("SKIPPED hec_token_never_printed: no .venv (make deps)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cap = capture(dir.path());
    let out = dir.path().join("out");

    // Success at trace level.
    let hec = Hec::start(dir.path(), &[]);
    let url = format!("http://127.0.0.1:{}", hec.port);
    let o = analyze(&cap, &out, &["--tracing-splunk-endpoint", &url]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(hec.events() > 0, "nothing delivered");
    assert_no_token(&o, "success");

    // Token rejected, and a hostile server echoing it back in its error body.
    let hec = Hec::start(
        dir.path(),
        &[
            "--fail",
            "1000",
            "--fail-status",
            "403",
            "--fail-body",
            &format!("bad token {TOKEN}"),
        ],
    );
    let url = format!("http://127.0.0.1:{}", hec.port);
    let o = analyze(&cap, &out, &["--tracing-splunk-endpoint", &url]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_no_token(&o, "echoing server");

    // Nobody listening, and a bad URL given on the command line with the token.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let o = analyze(&cap, &out, &["--tracing-splunk-endpoint", &dead]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_no_token(&o, "connection refused");
    let o = podtrace(&[
        "analyze",
        s(&cap),
        "--tracing-splunk-endpoint",
        "not a url",
        "--tracing-splunk-token",
        TOKEN,
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_no_token(&o, "bad url");
}

#[test]
fn tls_is_verified_by_default() {
    if venv_python().is_none() || !have("openssl") {
        eprintln!("SKIPPED tls_is_verified_by_default: needs .venv and openssl");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // A test CA and a server certificate for 127.0.0.1 signed by it.
    let p = |n: &str| dir.path().join(n);
    let (ca, ca_key, cert, key) = (p("ca.pem"), p("ca.key"), p("cert.pem"), p("key.pem"));
    let (csr, ext) = (p("leaf.csr"), p("ext.cnf"));
    std::fs::write(
        p("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    let steps: [Vec<&str>; 3] = [
        vec![
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=podtrace test CA",
            "-keyout",
            s(&ca_key),
            "-out",
            s(&ca),
        ],
        vec![
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            s(&key),
            "-out",
            s(&csr),
        ],
        vec![
            "x509",
            "-req",
            "-in",
            s(&csr),
            "-CA",
            s(&ca),
            "-CAkey",
            s(&ca_key),
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            s(&ext),
            "-out",
            s(&cert),
        ],
    ];
    for args in steps {
        let st = Command::new("openssl")
            .args(&args)
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "openssl {args:?}");
    }
    let cap = capture(dir.path());
    let out = dir.path().join("out");
    let hec = Hec::start(dir.path(), &["--cert", s(&cert), "--key", s(&key)]);
    let url = format!("https://127.0.0.1:{}", hec.port);

    let o = analyze(&cap, &out, &["--tracing-splunk-endpoint", &url]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "self-signed accepted:\n{}",
        stderr(&o)
    );
    assert_eq!(
        hec.events(),
        0,
        "spans delivered over an unverified TLS connection"
    );
    assert!(
        stderr(&o).to_lowercase().contains("certificate"),
        "{}",
        stderr(&o)
    );
    assert_no_token(&o, "tls failure");

    let o = analyze(
        &cap,
        &out,
        &[
            "--tracing-splunk-endpoint",
            &url,
            "--tracing-splunk-ca",
            s(&ca),
        ],
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "with --tracing-splunk-ca:\n{}",
        stderr(&o)
    );
    let with_ca = hec.events();
    assert!(with_ca > 0);
    let o = analyze(
        &cap,
        &out,
        &[
            "--tracing-splunk-endpoint",
            &url,
            "--tracing-splunk-insecure",
        ],
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "with --tracing-splunk-insecure:\n{}",
        stderr(&o)
    );
    assert!(hec.events() > with_ca);
    assert_no_token(&o, "insecure");
}
