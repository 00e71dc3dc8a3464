//! Hostile traffic: captures where well-formed exchanges surround a request with 10,000
//! headers, a 1 MiB header line, a 100 MiB chunked body (snaplen-truncated rows), a request
//! line that never ends, HTTP/2 with 1 M streams, and interleaved garbage. `analyze` must
//! keep its memory bounded (peak RSS of the child measured with `/usr/bin/time -v` and
//! printed), count a reason for what it could not parse, and still produce the spans of the
//! well-formed exchanges.

use crate::reliability_support as support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use podtrace_format::{
    flags, CaptureWriter, Direction, FileMeta, Record, Role, SocketData, SocketEvent, SocketMeta,
    WriterOptions,
};
use support::*;

/// Snaplen of the synthetic recorder (the CLI default).
const SNAPLEN: usize = 16384;
/// Peak RSS allowed for any of these analyses.
const MAX_RSS_KB: u64 = 400 * 1024;

/// Builds a capture's rows with increasing timestamps.
struct Capture {
    rows: Vec<Record>,
    ts: u64,
}

impl Capture {
    fn new() -> Self {
        Capture {
            rows: Vec::new(),
            ts: 1_700_000_000_000_000_000,
        }
    }
    fn meta(&mut self, conn: u64) -> SocketMeta {
        self.ts += 1_000;
        SocketMeta {
            ts_ns: self.ts,
            cpu: 0,
            pid: 4242,
            tid: 4242,
            comm: "client".into(),
            cgroup_id: 77,
            conn_id: conn,
            local: Some(SocketAddr::from((
                [10, 0, 0, 1],
                30000 + (conn % 30000) as u16,
            ))),
            remote: Some(SocketAddr::from(([10, 0, 0, 2], 8080))),
        }
    }
    fn event(&mut self, conn: u64, open: bool) {
        let ev = SocketEvent {
            meta: self.meta(conn),
            role: Role::Client,
            syscall: if open { "connect" } else { "close" }.into(),
        };
        self.rows.push(if open {
            Record::SocketOpen(ev)
        } else {
            Record::SocketClose(ev)
        });
    }
    /// One syscall moving `ret` bytes of which `payload` (≤ snaplen) was captured.
    fn data(&mut self, conn: u64, dir: Direction, payload: &[u8], ret: usize) {
        let meta = self.meta(conn);
        let cap = payload.len().min(SNAPLEN);
        self.rows.push(Record::SocketData(SocketData {
            meta,
            direction: dir,
            syscall: "write".into(),
            ret: ret as i64,
            payload: payload[..cap].to_vec(),
            flags: if ret > cap { flags::TRUNCATED } else { 0 },
        }));
    }
    /// Bytes sent in snaplen-sized syscalls.
    fn send(&mut self, conn: u64, bytes: &[u8]) {
        for chunk in bytes.chunks(SNAPLEN) {
            self.data(conn, Direction::Egress, chunk, chunk.len());
        }
    }
    /// A well-formed exchange on its own connection: `GET /ok-{n}` → 200.
    fn good(&mut self, n: u64) {
        let conn = n + 1;
        self.event(conn, true);
        self.send(
            conn,
            format!("GET /ok-{n} HTTP/1.1\r\nHost: svc\r\n\r\n").as_bytes(),
        );
        let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        self.data(conn, Direction::Ingress, resp, resp.len());
        self.event(conn, false);
    }
    fn write(&self, path: &Path) {
        let mut w =
            CaptureWriter::create(path, FileMeta::default(), WriterOptions::default()).unwrap();
        for chunk in self.rows.chunks(4096) {
            w.write_all(chunk).unwrap();
        }
        w.finish().unwrap();
    }
}

/// The hostile cases: name, builder on connection 1000, whether a parse reason must be
/// counted, and a span its own traffic must still give (if any).
type Case = (
    &'static str,
    fn(&mut Capture, u64),
    bool,
    Option<&'static str>,
);

fn ten_thousand_headers(c: &mut Capture, conn: u64) {
    let mut req = b"GET /many HTTP/1.1\r\nHost: svc\r\n".to_vec();
    for i in 0..10_000 {
        req.extend(format!("X-H{i}: v\r\n").as_bytes());
    }
    req.extend(b"\r\n");
    c.send(conn, &req);
}

fn one_mib_header_line(c: &mut Capture, conn: u64) {
    let mut req = b"GET /big HTTP/1.1\r\nX-Big: ".to_vec();
    req.extend(std::iter::repeat_n(b'a', 1 << 20));
    req.extend(b"\r\n\r\n");
    c.send(conn, &req);
}

fn hundred_mib_chunked_body(c: &mut Capture, conn: u64) {
    c.send(
        conn,
        b"POST /upload HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    // 100 writes of a 1 MiB chunk each; the snaplen keeps the first 16 KiB of each.
    let mut chunk = format!("{:x}\r\n", 1 << 20).into_bytes();
    chunk.extend(std::iter::repeat_n(b'z', SNAPLEN));
    for _ in 0..100 {
        // size line (8) + 1 MiB of data + CRLF (2)
        c.data(conn, Direction::Egress, &chunk, (1 << 20) + 10);
    }
    c.data(conn, Direction::Egress, b"0\r\n\r\n", 5);
    let resp = b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n";
    c.data(conn, Direction::Ingress, resp, resp.len());
}

fn never_ending_request_line(c: &mut Capture, conn: u64) {
    c.send(conn, b"GET /");
    let a = vec![b'a'; SNAPLEN];
    for _ in 0..1280 {
        c.data(conn, Direction::Egress, &a, a.len()); // 20 MiB, no newline ever
    }
}

fn h2_million_streams(c: &mut Capture, conn: u64) {
    let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    bytes.extend([0, 0, 0, 4, 0, 0, 0, 0, 0]); // empty SETTINGS
    for i in 0..1_000_000u32 {
        let id = 2 * i + 1;
        // HEADERS, END_HEADERS, no END_STREAM: :method GET, :scheme http, :path /
        bytes.extend([0, 0, 3, 1, 4]);
        bytes.extend(id.to_be_bytes());
        bytes.extend([0x82, 0x86, 0x84]);
        if bytes.len() >= SNAPLEN {
            c.send(conn, &bytes);
            bytes.clear();
        }
    }
    c.send(conn, &bytes);
}

fn interleaved_garbage(c: &mut Capture, conn: u64) {
    let mut x: u32 = 12345;
    let mut junk = Vec::with_capacity(4 << 20);
    for _ in 0..(4 << 20) {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        junk.push((x >> 16) as u8);
    }
    for piece in junk.chunks(1 << 20) {
        c.send(conn, piece);
        c.send(conn, b"GET /after-junk HTTP/1.1\r\nHost: svc\r\n\r\n");
    }
}

const CASES: [Case; 6] = [
    ("10000 headers", ten_thousand_headers, true, None),
    ("1 MiB header line", one_mib_header_line, true, None),
    (
        "100 MiB chunked body (truncated rows)",
        hundred_mib_chunked_body,
        false,
        Some("/upload\""),
    ),
    (
        "never-ending request line",
        never_ending_request_line,
        true,
        None,
    ),
    ("HTTP/2 with 1 M streams", h2_million_streams, true, None),
    ("interleaved garbage", interleaved_garbage, true, None),
];

/// Runs `analyze --json` under `/usr/bin/time -v`: (summary, peak RSS KiB, spans.json).
fn analyze(cap: &Path, out: &Path) -> (serde_json::Value, u64, String) {
    let o = Command::new("/usr/bin/time")
        .arg("-v")
        .arg(bin())
        .args(["analyze", s(cap), "--json", "--out", s(out)])
        .output()
        .unwrap();
    let err = stderr(&o);
    assert!(o.status.success(), "analyze {}: {err}", cap.display());
    assert!(!err.contains("panicked"), "{err}");
    let rss = err
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Maximum resident set size (kbytes): ")
        })
        .and_then(|v| v.trim().parse().ok())
        .expect("peak RSS from /usr/bin/time");
    let summary = serde_json::from_slice(&o.stdout).unwrap();
    (
        summary,
        rss,
        std::fs::read_to_string(out.join("spans.json")).unwrap(),
    )
}

#[test]
fn hostile_traffic_keeps_memory_bounded_and_good_spans() {
    if !Path::new("/usr/bin/time").exists() {
        eprintln!("SKIPPED reliability_hostile: /usr/bin/time (package `time`) not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut baseline = Capture::new();
    for n in 0..20 {
        baseline.good(n);
    }
    let cap = dir.path().join("baseline.parquet");
    baseline.write(&cap);
    let (_, base_rss, spans) = analyze(&cap, &dir.path().join("out-base"));
    assert!(spans.contains("/ok-19"), "baseline spans missing");
    eprintln!(
        "baseline (20 good exchanges): peak RSS {} MiB",
        base_rss / 1024
    );

    for (name, build, expect_reason, own_span) in CASES {
        let mut c = Capture::new();
        for n in 0..10 {
            c.good(n);
        }
        c.event(1000, true);
        build(&mut c, 1000);
        for n in 10..20 {
            c.good(n);
        }
        c.event(1000, false);
        let cap = dir.path().join("hostile.parquet");
        c.write(&cap);
        let size = std::fs::metadata(&cap).unwrap().len();
        let (summary, rss, spans) = analyze(&cap, &dir.path().join("out"));
        let errors = &summary["stats"]["parse_errors"];
        eprintln!(
            "{name}: capture {} KiB, peak RSS {} MiB, parse errors {errors}, ignored {}",
            size / 1024,
            rss / 1024,
            summary["stats"]["ignored_headers"]
        );
        for n in 0..20 {
            assert!(
                spans.contains(&format!("/ok-{n}\"")),
                "{name}: span of /ok-{n} missing"
            );
        }
        if let Some(path) = own_span {
            assert!(spans.contains(path), "{name}: no span for {path}");
        }
        if expect_reason {
            assert!(
                errors.as_object().is_some_and(|m| !m.is_empty()),
                "{name}: no reason counted ({summary})"
            );
        }
        assert!(rss < MAX_RSS_KB, "{name}: peak RSS {} MiB", rss / 1024);
    }
}
