//! Analyzer throughput on synthetic eBPF-style records (real HTTP/1.1 bytes, one row per
//! syscall): `C` frontend connections × `N` keep-alive requests each, every request making
//! one downstream call recorded on both sides, W3C context on half of them.
//!
//! `cargo run --release -p podtrace-analyzer --example bench -- [C] [N]` (default 200 500);
//! `BENCH_WINDOW_MS` sets the analysis time window (default: the library's).

use std::net::SocketAddr;
use std::time::Instant;

use podtrace_analyzer::{analyze, AnalyzeOptions};
use podtrace_format::{Direction, Record, SocketData, SocketMeta};

fn row(
    conn: u64,
    pid: u32,
    local: SocketAddr,
    remote: SocketAddr,
    ts: u64,
    dir: Direction,
    bytes: Vec<u8>,
) -> Record {
    Record::SocketData(SocketData {
        meta: SocketMeta {
            ts_ns: ts,
            cpu: 0,
            pid,
            tid: pid,
            comm: if pid == 1 { "frontend" } else { "backend" }.into(),
            cgroup_id: u64::from(pid),
            conn_id: conn,
            local: Some(local),
            remote: Some(remote),
        },
        direction: dir,
        syscall: "write".into(),
        ret: bytes.len() as i64,
        payload: bytes,
        flags: 0,
    })
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let conns = args.first().copied().unwrap_or(200);
    let per_conn = args.get(1).copied().unwrap_or(500);
    let body = vec![b'x'; 512];
    let mut records = Vec::new();
    let mut ts = 1_700_000_000_000_000_000u64;
    for c in 0..conns {
        let fe: SocketAddr = "10.0.0.1:80".parse().expect("addr");
        let client: SocketAddr = format!("10.1.{}.{}:40000", c / 250, c % 250 + 1)
            .parse()
            .expect("addr");
        let fe_out: SocketAddr = format!("10.0.0.1:{}", 20000 + c).parse().expect("addr");
        let be: SocketAddr = "10.0.0.2:8080".parse().expect("addr");
        for i in 0..per_conn {
            let ctx = if i % 2 == 0 {
                format!(
                    "traceparent: 00-{:016x}{:016x}-{:016x}-01\r\n",
                    c + 1,
                    i + 1,
                    (c << 32) | (i + 1)
                )
            } else {
                String::new()
            };
            let req = format!(
                "GET /api/{i}?c={c} HTTP/1.1\r\nHost: frontend\r\n{ctx}User-Agent: bench\r\n\r\n"
            );
            let sub = format!("GET /items/{i} HTTP/1.1\r\nHost: backend\r\n{ctx}\r\n");
            let mut resp =
                format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
            resp.extend_from_slice(&body);
            let sub_resp = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec();
            let a = 2 * c;
            let b = 2 * c + 1;
            let d = 1_000_000 + c;
            records.push(row(
                a,
                1,
                fe,
                client,
                ts,
                Direction::Ingress,
                req.into_bytes(),
            ));
            records.push(row(
                b,
                1,
                fe_out,
                be,
                ts + 10_000,
                Direction::Egress,
                sub.clone().into_bytes(),
            ));
            records.push(row(
                d,
                2,
                be,
                fe_out,
                ts + 12_000,
                Direction::Ingress,
                sub.into_bytes(),
            ));
            records.push(row(
                d,
                2,
                be,
                fe_out,
                ts + 50_000,
                Direction::Egress,
                sub_resp.clone(),
            ));
            records.push(row(
                b,
                1,
                fe_out,
                be,
                ts + 52_000,
                Direction::Ingress,
                sub_resp,
            ));
            records.push(row(a, 1, fe, client, ts + 60_000, Direction::Egress, resp));
            ts += 100_000;
        }
    }
    let n = records.len();
    let bytes: usize = records
        .iter()
        .map(|r| match r {
            Record::SocketData(d) => d.payload.len(),
            _ => 0,
        })
        .sum();
    let start = Instant::now();
    let mut opts = AnalyzeOptions::default();
    if let Some(ms) = std::env::var("BENCH_WINDOW_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        opts.window_ns = ms * 1_000_000;
    }
    let a = analyze(records.into_iter(), &opts).expect("analyze");
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{n} records ({:.1} MB payload), {} spans, {} traces in {secs:.2}s: {:.0} records/s, {:.0} spans/s, {:.1} MB/s",
        bytes as f64 / 1e6,
        a.stats.spans,
        a.stats.traces,
        n as f64 / secs,
        a.stats.spans as f64 / secs,
        bytes as f64 / 1e6 / secs
    );
    assert_eq!(
        a.stats.orphans,
        conns * per_conn / 2,
        "W3C callers are not recorded"
    );
    print!("{}", a.stats);
}
