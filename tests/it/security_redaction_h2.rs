//! Secrets in HTTP/2 header blocks and gRPC metadata, recorded by the real recorder:
//! tools/fixtures/h2/secrets_driver.py runs a grpcio client/server pair (`authorization`
//! bearer token and `cookie` metadata, `set-cookie` in the server's initial metadata),
//! curl --http2-prior-knowledge and an h2c upgrade (curl --http2) against hypercorn, and a
//! Node http2 client (one session, dynamic table reuse), and a Node http2 server/client pair
//! over TLS (ALPN h2, recorded as TLS plaintext; certificate made by `openssl req`), all with
//! Authorization and Cookie headers and fixed traceparents. The same traffic is recorded twice: with redaction (the
//! default) and with `--no-redact`.
//! - Without redaction every secret is in the capture (raw or Huffman-coded): the test
//!   really sends them.
//! - With redaction no secret is anywhere: not in any payload, raw or Huffman-coded at
//!   any bit offset, nor in the raw file.
//! - Both captures analyze into the same spans: same count, names, kinds, trace ids,
//!   status and attributes (ports aside), with every RPC and request present.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use podtrace_format::{CaptureReader, ReadOptions, Record};
use podtrace_recorder::redact::huffman;
use serde_json::Value;

use crate::reliability_support::{have, is_root, TestCgroup};
use crate::support::{free_port, podtrace, repo, run, venv, Lines, Proc};

const SECRETS: [&str; 10] = [
    "TlsAuthS3cretValue",
    "TlsCookieS3cretValue",
    "TlsSetCookieS3cretValue",
    "GrpcAuthS3cretValue",
    "GrpcCookieS3cretValue",
    "GrpcSetCookieS3cretValue",
    "CurlAuthS3cretValue",
    "CurlCookieS3cretValue",
    "NodeAuthS3cretValue",
    "NodeCookieS3cretValue",
];

/// Records one run of the driver; returns the capture and record's stdout lines.
fn record_run(dir: &Path, python: &Path, name: &str, extra: &[&str]) -> (PathBuf, Vec<String>) {
    let tls_dir = dir.join("tls");
    if !tls_dir.join("cert.pem").exists() {
        std::fs::create_dir_all(&tls_dir).expect("tls dir");
        let o = run(
            std::process::Command::new("openssl")
                .args([
                    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                ])
                .args(["-subj", "/CN=localhost"])
                .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
                .arg("-keyout")
                .arg(tls_dir.join("key.pem"))
                .arg("-out")
                .arg(tls_dir.join("cert.pem")),
            Duration::from_secs(60),
        );
        assert!(o.status.success(), "openssl req failed");
    }
    let cap = dir.join(format!("{name}.parquet"));
    let mut cg = TestCgroup::new(name);
    // A Node.js process in the cgroup from the start, so the recorder hooks node's
    // OpenSSL before the short-lived TLS peers run (the cgroup is killed at the end).
    cg.spawn("exec node -e \"setTimeout(() => {}, 120000)\"");
    std::thread::sleep(Duration::from_millis(300));
    let mut record = Proc::new(
        podtrace()
            .args(["record", "--cgroup"])
            .arg(&cg.path)
            .args(extra)
            .arg("-o")
            .arg(&cap)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start podtrace record"),
        "INT",
        Duration::from_secs(30),
    );
    let err = Lines::collect(record.stderr().expect("stderr"), "record");
    let out = Lines::collect(record.stdout().expect("stdout"), "record");
    assert!(
        err.wait_for("probes attached", Duration::from_secs(60)),
        "the recorder did not attach: {:?}",
        err.all()
    );
    eprintln!(
        "security_redaction_h2: {:?}",
        err.all()
            .iter()
            .filter(|l| l.contains("probes attached"))
            .collect::<Vec<_>>()
    );
    let o = run(
        std::process::Command::new(python)
            .arg(repo().join("tools/fixtures/h2/secrets_driver.py"))
            .arg("--cgroup")
            .arg(&cg.path)
            .args(["--grpc-port", &free_port().to_string()])
            .args(["--h2-port", &free_port().to_string()])
            .arg("--tls-dir")
            .arg(&tls_dir)
            .args(["--tls-port", &free_port().to_string()]),
        Duration::from_secs(120),
    );
    assert!(
        o.status.success(),
        "driver: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    // the recorder flushes about every second
    std::thread::sleep(Duration::from_millis(1500));
    record.signal("INT");
    assert!(record.wait_timeout(Duration::from_secs(30)).is_some());
    drop(cg);
    (cap, out.all())
}

fn payloads(cap: &Path) -> Vec<Vec<u8>> {
    CaptureReader::open(&[cap])
        .expect("open capture")
        .records(&ReadOptions::default())
        .map(|r| r.expect("row"))
        .filter_map(|r| match r {
            Record::SocketData(d) => Some(d.payload),
            _ => None,
        })
        .collect()
}

fn bits(b: &[u8]) -> Vec<bool> {
    b.iter()
        .flat_map(|&x| (0..8).rev().map(move |k| x >> k & 1 == 1))
        .collect()
}

/// Occurrences of `secret` in the payloads: raw, or Huffman-coded at any bit offset.
fn occurrences(payloads: &[Vec<u8>], secret: &str) -> usize {
    let raw = secret.as_bytes();
    let pat: Vec<bool> = bits(&huffman::encode(raw))[..huffman::bit_len(raw)].to_vec();
    let mut n = 0;
    for p in payloads {
        n += p.windows(raw.len()).filter(|w| *w == raw).count();
        let b = bits(p);
        if b.len() >= pat.len() {
            n += b
                .windows(pat.len())
                .filter(|w| *w == pat.as_slice())
                .count();
        }
    }
    n
}

/// The spans of an analysis, as comparable keys (ports and times left out).
fn span_keys(cap: &Path, out: &Path) -> Vec<String> {
    let st = run(
        podtrace().arg("analyze").arg(cap).arg("--out").arg(out),
        Duration::from_secs(120),
    );
    assert!(
        st.status.success(),
        "analyze: {}",
        String::from_utf8_lossy(&st.stderr)
    );
    let spans: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(out.join("spans.json")).expect("spans"))
            .expect("spans.json");
    let mut keys: Vec<String> = spans
        .iter()
        .map(|s| {
            let mut attrs: Vec<String> = s["attributes"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|a| {
                    let k = a["key"].as_str().unwrap_or("");
                    !k.ends_with(".port")
                })
                .map(|a| format!("{}={}", a["key"], a["value"]))
                .collect();
            attrs.sort();
            format!(
                "{} {} {} {} {}",
                s["name"],
                s["kind"],
                s["trace_id"],
                s["status"],
                attrs.join(",")
            )
        })
        .collect();
    keys.sort();
    keys
}

#[test]
fn http2_and_grpc_secrets_never_reach_the_capture_and_spans_are_unchanged() {
    if !is_root() || !have("curl") || !have("node") || !have("openssl") {
        eprintln!("SKIPPED security_redaction_h2: needs root, curl, node and openssl");
        return;
    }
    let Some(venv) = venv() else {
        eprintln!("SKIPPED security_redaction_h2: no .venv (grpcio, hypercorn)");
        return;
    };
    let python = venv.join("bin/python");
    let dir = tempfile::tempdir().expect("tempdir");
    let (plain, _) = record_run(dir.path(), &python, "h2-plain", &["--no-redact"]);
    let (red, summary) = record_run(dir.path(), &python, "h2-redacted", &[]);

    let plain_payloads = payloads(&plain);
    let red_payloads = payloads(&red);
    let raw_file = std::fs::read(&red).expect("capture");
    let mut before = Vec::new();
    for secret in SECRETS {
        let n = occurrences(&plain_payloads, secret);
        before.push(format!("{secret}={n}"));
        assert!(
            n > 0,
            "{secret} was not sent (not in the unredacted capture)"
        );
        assert_eq!(
            occurrences(&red_payloads, secret),
            0,
            "{secret} is in the redacted capture"
        );
        assert!(
            !raw_file
                .windows(secret.len())
                .any(|w| w == secret.as_bytes()),
            "{secret} in the raw file"
        );
    }
    let line = summary
        .iter()
        .find(|l| l.starts_with("redacted "))
        .cloned()
        .unwrap_or_default();
    eprintln!(
        "security_redaction_h2: secrets in the unredacted capture: {}; in the redacted one: 0",
        before.join(" ")
    );
    eprintln!("security_redaction_h2: record: {line}");
    assert!(line.contains("HTTP/2: "), "no redaction line: {summary:?}");

    let a = span_keys(&plain, &dir.path().join("out-plain"));
    let b = span_keys(&red, &dir.path().join("out-redacted"));
    let count = |keys: &[String], needle: &str| keys.iter().filter(|k| k.contains(needle)).count();
    eprintln!(
        "security_redaction_h2: spans unredacted {} / redacted {}; gRPC {} / {}, curl {} / {}, node {} / {}, TLS {} / {}",
        a.len(),
        b.len(),
        count(&a, "rpc.method"),
        count(&b, "rpc.method"),
        count(&a, "/curl/"),
        count(&b, "/curl/"),
        count(&a, "/node/"),
        count(&b, "/node/"),
        count(&a, "/tls/"),
        count(&b, "/tls/"),
    );
    // 5 RPCs, 5 curl, 5 node, 5 node-over-TLS requests: a CLIENT and a SERVER span each
    assert_eq!(count(&a, "rpc.method"), 10, "{a:#?}");
    assert_eq!(count(&a, "/curl/"), 10, "{a:#?}");
    assert_eq!(count(&a, "/node/"), 10, "{a:#?}");
    assert_eq!(count(&a, "/tls/"), 10, "{a:#?}");
    if a != b {
        let only_a: Vec<_> = a.iter().filter(|k| !b.contains(k)).collect();
        let only_b: Vec<_> = b.iter().filter(|k| !a.contains(k)).collect();
        panic!("spans differ:\nonly unredacted {only_a:#?}\nonly redacted {only_b:#?}");
    }
}

/// The same traffic with a tiny snaplen (every header block cut): no secret byte run
/// survives, the cut blocks are blanked and counted, and the recording still finishes.
#[test]
fn http2_secrets_with_a_tiny_snaplen_are_still_never_stored() {
    if !is_root() || !have("curl") || !have("node") || !have("openssl") {
        eprintln!("SKIPPED security_redaction_h2 (snaplen): needs root, curl, node and openssl");
        return;
    }
    let Some(venv) = venv() else {
        eprintln!("SKIPPED security_redaction_h2 (snaplen): no .venv (grpcio, hypercorn)");
        return;
    };
    let python = venv.join("bin/python");
    let dir = tempfile::tempdir().expect("tempdir");
    let (cap, summary) = record_run(dir.path(), &python, "h2-snap", &["--snaplen", "96"]);
    let p = payloads(&cap);
    assert!(
        p.iter().any(|x| x.len() == 96),
        "no payload cut at the snaplen"
    );
    for secret in SECRETS {
        // every 8-byte piece of the secret, raw (Huffman-coded pieces are covered by the
        // full-length test: a cut value is rewritten as far as it was stored)
        for w in secret.as_bytes().windows(8) {
            assert!(
                !p.iter().any(|x| x.windows(8).any(|y| y == w)),
                "a piece of {secret} is in the capture"
            );
        }
    }
    let line = summary
        .iter()
        .find(|l| l.starts_with("redacted "))
        .cloned()
        .unwrap_or_default();
    eprintln!("security_redaction_h2 (snaplen 96): record: {line}");
    assert!(line.contains("HTTP/2: "), "no redaction line: {summary:?}");
}
