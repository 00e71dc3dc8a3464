//! Write and read throughput of the capture format on HTTP-like traffic:
//! `cargo run --release -p podtrace-format --example bench_read -- [requests]`.
//! Each request is 4 socket_data rows (request and response, seen by client and server).
//! `BENCH_PATH=/tmp/b.parquet` keeps the capture for other tools.

use std::net::SocketAddr;
use std::time::Instant;

use podtrace_format::*;

fn main() {
    let requests: u64 = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(500_000);
    let dir = tempfile::tempdir().unwrap();
    let path = std::env::var("BENCH_PATH")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| dir.path().join("bench.parquet"));
    let client: SocketAddr = "10.0.0.1:40000".parse().unwrap();
    let server: SocketAddr = "10.0.0.2:8080".parse().unwrap();
    let row = |i: u64, k: u64| {
        let conn = i % 64;
        let (local, remote, comm) = if k.is_multiple_of(2) {
            (client, server, "frontend")
        } else {
            (server, client, "backend")
        };
        let payload = if k < 2 {
            format!("GET /api/items/{i} HTTP/1.1\r\nHost: backend\r\ntraceparent: 00-4bf92f3577b34da6a3ce929d0e0e{i:04x}-00f067aa0ba902b7-01\r\nUser-Agent: bench\r\n\r\n")
        } else {
            format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 24\r\n\r\n{{\"id\":{i},\"ok\":true}}")
        };
        Record::SocketData(SocketData {
            meta: SocketMeta {
                ts_ns: 1_790_000_000_000_000_000 + i * 10_000 + k,
                cpu: (i % 2) as u32,
                pid: 100 + (k % 2) as u32,
                tid: 100 + (k % 2) as u32,
                comm: comm.into(),
                cgroup_id: 7 + k % 2,
                conn_id: conn * 2 + k % 2,
                local: Some(local),
                remote: Some(remote),
            },
            direction: if k == 0 || k == 3 {
                Direction::Egress
            } else {
                Direction::Ingress
            },
            syscall: "write".into(),
            ret: payload.len() as i64,
            payload: payload.into_bytes(),
            flags: 0,
        })
    };

    let t = Instant::now();
    let mut w =
        CaptureWriter::create(&path, FileMeta::default(), WriterOptions::default()).unwrap();
    let mut buf = Vec::with_capacity(4096);
    for i in 0..requests {
        for k in 0..4 {
            buf.push(row(i, k));
        }
        if buf.len() >= 4096 {
            w.write_all(&buf).unwrap();
            buf.clear();
        }
    }
    w.write_all(&buf).unwrap();
    let s = w.finish().unwrap();
    let dt = t.elapsed().as_secs_f64();
    println!(
        "write: {} rows in {dt:.2} s = {:.0} rows/s ({} bytes, {} row groups)",
        s.rows,
        s.rows as f64 / dt,
        s.bytes,
        s.row_groups
    );

    let reader = CaptureReader::open(&[&path]).unwrap();
    for (name, opts) in [
        ("batches", ReadOptions::default()),
        ("batches without payload", ReadOptions::without_payload()),
    ] {
        let t = Instant::now();
        let rows: usize = reader.batches(&opts).map(|b| b.unwrap().num_rows()).sum();
        let dt = t.elapsed().as_secs_f64();
        println!(
            "{name}: {rows} rows in {dt:.2} s = {:.0} rows/s",
            rows as f64 / dt
        );
    }
    let t = Instant::now();
    let mut bytes = 0usize;
    let mut rows = 0usize;
    for r in reader.records(&ReadOptions::default()) {
        if let Record::SocketData(d) = r.unwrap() {
            bytes += d.payload.len();
        }
        rows += 1;
    }
    let dt = t.elapsed().as_secs_f64();
    println!(
        "records: {rows} rows in {dt:.2} s = {:.0} rows/s = {:.0} requests/s ({bytes} payload bytes)",
        rows as f64 / dt,
        rows as f64 / 4.0 / dt
    );
}
