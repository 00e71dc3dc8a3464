//! Throughput of podtrace's exporters: spans/s to a real OTLP collector (rotel, blackhole
//! exporter) over OTLP/HTTP protobuf, against writing the OTLP/JSON file.
//!
//! ```text
//! cargo run --release -p podtrace-export --example bench_export -- \
//!     [--spans 100000,1000000] [--batch 1000] [--concurrency 2] [--gzip]
//! ```
//! Needs the venv with rotel (`PODTRACE_VENV`, default `<workspace>/.venv`). Spans are
//! generated (about 900 bytes of OTLP each: 8 attributes, 3 workloads); for more than
//! 100 000 the same 100 000 are sent again.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use podtrace_export::{otlp_exporter, write_otlp_json, DeliveryConfig, Exporter, Url};
use podtrace_model::{KeyValue, Resource, Span, SpanId, SpanKind, Status, TraceId};

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spans(n: usize) -> Vec<Span> {
    let services = ["frontend", "cart", "payments"];
    (0..n)
        .map(|i| {
            let x = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
            let mut t = [0u8; 16];
            t[..8].copy_from_slice(&x.to_be_bytes());
            t[8..].copy_from_slice(&((i / 4) as u64).to_be_bytes());
            let start = 1_764_000_000_000_000_000 + i as u64 * 1_000;
            let service = services[i % 3];
            Span {
                trace_id: TraceId(t),
                span_id: SpanId(x.rotate_left(17).to_be_bytes()),
                parent_span_id: (i % 4 != 0).then(|| SpanId(x.rotate_left(5).to_be_bytes())),
                trace_state: String::new(),
                flags: 1,
                name: "GET /api/items/{id}".into(),
                kind: if i % 2 == 0 {
                    SpanKind::Server
                } else {
                    SpanKind::Client
                },
                start_time_unix_nano: start,
                end_time_unix_nano: start + 1_500_000,
                attributes: vec![
                    KeyValue::new("http.request.method", "GET"),
                    KeyValue::new("url.path", format!("/api/items/{i}")),
                    KeyValue::new("http.response.status_code", 200i64),
                    KeyValue::new("server.address", "cart.shop.svc.cluster.local"),
                    KeyValue::new("server.port", 8080i64),
                    KeyValue::new("network.peer.address", "10.244.1.17"),
                    KeyValue::new("user_agent.original", "Go-http-client/1.1"),
                    KeyValue::new("http.request.body.size", 512i64),
                ],
                status: Status::unset(),
                resource: Resource::new(service)
                    .with("k8s.namespace.name", "shop")
                    .with("k8s.pod.name", format!("{service}-7d9f-abcde"))
                    .with("k8s.node.name", "node-a"),
            }
        })
        .collect()
}

fn rotel_binary() -> Option<PathBuf> {
    let venv = std::env::var_os("PODTRACE_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv"));
    std::fs::read_dir(venv.join("lib"))
        .ok()?
        .flatten()
        .find_map(|e| {
            let p = e.path().join("site-packages/rotel/rotel-agent");
            p.exists().then_some(p)
        })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let counts: Vec<usize> = arg("--spans")
        .unwrap_or_else(|| "100000,1000000".into())
        .split(',')
        .map(|s| s.trim().parse())
        .collect::<Result<_, _>>()?;
    let batch: usize = arg("--batch")
        .map(|b| b.parse())
        .transpose()?
        .unwrap_or(1000);
    let gzip = std::env::args().any(|a| a == "--gzip");
    let concurrency: usize = arg("--concurrency")
        .map(|c| c.parse())
        .transpose()?
        .unwrap_or(2);
    let rotel = rotel_binary().ok_or("rotel-agent not found in the venv (set PODTRACE_VENV)")?;
    let (http, grpc) = (free_port(), free_port());
    let _rotel = Killed(
        Command::new(rotel)
            .args([
                "start",
                "--otlp-http-endpoint",
                &format!("127.0.0.1:{http}"),
            ])
            .args(["--otlp-grpc-endpoint", &format!("127.0.0.1:{grpc}")])
            .args(["--exporter", "blackhole"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", http)).is_err() {
        if Instant::now() > deadline {
            return Err("rotel did not start".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let pool = spans(counts.iter().copied().max().unwrap_or(0).min(100_000));
    let delivery = DeliveryConfig {
        batch_size: batch,
        gzip,
        concurrency,
        ..DeliveryConfig::default()
    };
    let exporter = otlp_exporter(&Url::parse(&format!("http://127.0.0.1:{http}"))?, &delivery)?;
    let dir = std::env::temp_dir().join(format!("podtrace-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    println!(
        "batch {batch}, gzip {gzip}, {} cores",
        std::thread::available_parallelism()?
    );
    for &n in &counts {
        let before = exporter.accounting();
        let started = Instant::now();
        let mut left = n;
        while left > 0 {
            let take = left.min(pool.len());
            exporter.export(&pool[..take]).await?;
            left -= take;
        }
        let secs = started.elapsed().as_secs_f64();
        let acc = exporter.accounting().since(&before);
        println!(
            "rotel OTLP/HTTP  {n:>8} spans: {secs:7.2} s  {:>9.0} spans/s  ({} requests, {} retried)",
            n as f64 / secs,
            acc.requests,
            acc.retried_requests
        );

        let all: Vec<Span> = pool.iter().cycle().take(n).cloned().collect();
        let path = dir.join("traces.otlp.json");
        let started = Instant::now();
        write_otlp_json(&path, &all)?;
        let secs = started.elapsed().as_secs_f64();
        let size = std::fs::metadata(&path)?.len();
        println!(
            "OTLP/JSON file   {n:>8} spans: {secs:7.2} s  {:>9.0} spans/s  ({:.0} MB)",
            n as f64 / secs,
            size as f64 / 1e6
        );
        std::fs::remove_file(&path)?;
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
