//! The record-time redactor's cost on a real capture, as the ring consumer pays it: every
//! `socket_data` payload of CAPTURE is read into memory first, then redacted ROUNDS times in
//! capture order (each round with a fresh [`Redactor`], each payload a fresh copy), so that
//! only [`Redactor::redact_cut`] is timed.
//!
//! ```text
//! cargo run --release -p podtrace-recorder --example bench_redact -- CAPTURE [ROUNDS]
//! ```
//! Prints one line of `key=value` pairs: payloads, bytes, rounds, ns_per_payload (the
//! fastest round), changed (payloads with a redacted header, per round). Under
//! `perf stat -e instructions:u` or callgrind the instructions per payload are the
//! repeatable figure.

use std::process::ExitCode;
use std::time::Instant;

use podtrace_format::model::{Direction, Record};
use podtrace_format::{CaptureReader, ReadOptions};
use podtrace_recorder::redact::Redactor;

/// The shipping binary's allocator (src/main.rs), as in the other benchmarks.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// One payload as the consumer hands it to the redactor.
struct Payload {
    conn: u64,
    dir: u8,
    missing: u64,
    bytes: Vec<u8>,
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let input = args.next().ok_or("usage: bench_redact CAPTURE [ROUNDS]")?;
    let rounds: usize = args.next().map_or(Ok(5), |s| s.parse())?;
    let reader = CaptureReader::open(&[input])?;
    let mut payloads = Vec::new();
    for r in reader.records(&ReadOptions::default()) {
        if let Record::SocketData(d) = r? {
            let missing = u64::try_from(d.ret)
                .unwrap_or(0)
                .saturating_sub(d.payload.len() as u64);
            payloads.push(Payload {
                conn: d.meta.conn_id,
                dir: u8::from(d.direction == Direction::Ingress),
                missing,
                bytes: d.payload,
            });
        }
    }
    let bytes: usize = payloads.iter().map(|p| p.bytes.len()).sum();
    let mut best = f64::INFINITY;
    let mut changed = 0;
    // one scratch buffer, refilled per payload: the copy is not what is measured
    let mut buf = Vec::with_capacity(1 << 16);
    for _ in 0..rounds {
        let mut redactor = Redactor::new::<&str>(&[]);
        changed = 0;
        let t = Instant::now();
        for p in &payloads {
            buf.clear();
            buf.extend_from_slice(&p.bytes);
            changed += usize::from(redactor.redact_cut(p.conn, p.dir, &mut buf, Some(p.missing)));
        }
        best = best.min(t.elapsed().as_secs_f64());
    }
    let n = payloads.len().max(1);
    println!(
        "payloads={} bytes={bytes} rounds={rounds} ns_per_payload={:.1} changed={changed}",
        payloads.len(),
        best * 1e9 / n as f64
    );
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench_redact: {e}");
            ExitCode::FAILURE
        }
    }
}
