//! Secrets in recorded traffic: real curl requests with Authorization, Proxy-Authorization,
//! Cookie and a custom header (`--redact-header`) against a real server answering with
//! Set-Cookie, recorded with eBPF in a test cgroup. The secret values must not appear in any
//! decoded column of the capture (every row read back with podtrace_format), the header
//! names must (the traffic was really captured), and the file must be mode 0600.

use crate::reliability_support as support;

use std::os::unix::fs::PermissionsExt;

use podtrace_format::{flags, CaptureReader, ReadOptions, Record};
use support::*;

const SECRETS: [&str; 5] = [
    "AuthzS3cretValue1",
    "ProxyS3cretValue2",
    "CookieS3cretValue3",
    "SetCookieS3cretValue4",
    "ApiKeyS3cretValue5",
];

/// A server that answers every GET with `Set-Cookie` carrying a secret.
const SERVER: &str = r#"
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = b"hello\n"
        self.send_response(200)
        self.send_header("Set-Cookie", "session=SetCookieS3cretValue4; HttpOnly")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"#;

#[test]
fn secrets_never_reach_the_capture_and_the_file_is_private() {
    if !need_root_and(&["curl", "python3"], "security_redaction") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server_py = dir.path().join("server.py");
    std::fs::write(&server_py, SERVER).unwrap();
    let port = free_port();
    let mut cg = TestCgroup::new("redact");
    cg.spawn(&format!("exec python3 {} {port}", server_py.display()));
    wait_port(port);
    cg.curl_loop(
        port,
        &[
            "Authorization: Bearer AuthzS3cretValue1",
            "Proxy-Authorization: Basic ProxyS3cretValue2",
            "Cookie: a=1; sid=CookieS3cretValue3",
            "X-Api-Key: ApiKeyS3cretValue5",
        ],
        "0.05",
    );
    let cap = dir.path().join("cap.parquet");
    let o = podtrace(&[
        "record",
        "--cgroup",
        s(&cg.path),
        "--redact-header",
        "x-api-key",
        "-o",
        s(&cap),
        "--duration",
        "3s",
    ]);
    assert!(o.status.success(), "record: {}", stderr(&o));
    drop(cg);

    let mode = std::fs::metadata(&cap).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "capture mode {mode:o}");

    let records: Vec<Record> = CaptureReader::open(&[&cap])
        .unwrap()
        .records(&ReadOptions::default())
        .collect::<Result<_, _>>()
        .unwrap();
    let mut all = Vec::new();
    let (mut requests, mut redacted_rows) = (0, 0);
    for r in &records {
        match r {
            Record::SocketData(d) => {
                all.extend_from_slice(&d.payload);
                all.extend(d.meta.comm.as_bytes());
                all.extend(d.syscall.as_bytes());
                let text = String::from_utf8_lossy(&d.payload);
                requests += text.matches("GET / HTTP/1.1").count();
                if d.flags & flags::REDACTED != 0 {
                    redacted_rows += 1;
                }
            }
            Record::SocketOpen(e) | Record::SocketClose(e) => all.extend(e.meta.comm.as_bytes()),
            Record::K8sObject(k) => all.extend(k.json.as_bytes()),
            Record::Stats(st) => all.extend(st.name.as_bytes()),
        }
    }
    let text = String::from_utf8_lossy(&all);
    assert!(requests >= 5, "only {requests} requests captured");
    for name in [
        "Authorization:",
        "Proxy-Authorization:",
        "Cookie:",
        "Set-Cookie:",
        "X-Api-Key:",
    ] {
        assert!(text.contains(name), "header {name} not captured at all");
    }
    assert!(redacted_rows > 0, "no row flagged REDACTED");
    for secret in SECRETS {
        assert!(!text.contains(secret), "secret {secret} is in the capture");
        // Also as raw bytes of the (compressed) file, e.g. in statistics or metadata.
        let raw = std::fs::read(&cap).unwrap();
        assert!(
            !raw.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "secret {secret} in the raw file"
        );
    }
    // The analysis of the redacted capture still finds the exchanges.
    let out = dir.path().join("out");
    let o = podtrace(&["analyze", s(&cap), "--out", s(&out)]);
    assert!(o.status.success(), "analyze: {}", stderr(&o));
    let spans = std::fs::read_to_string(out.join("spans.json")).unwrap();
    assert!(spans.contains("\"GET"), "no GET span");
    for secret in SECRETS {
        assert!(!spans.contains(secret), "secret {secret} in spans");
    }
}
