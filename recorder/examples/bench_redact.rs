//! The record-time redactor's cost on a real capture, as the ring consumer pays it: every
//! `socket_data` payload of CAPTURE is read into memory first, then redacted ROUNDS times in
//! capture order (each round with a fresh [`Redactor`], each payload a fresh copy), so that
//! only the redactor is timed. Its calls are the consumer's (`podtrace_recorder::convert`):
//! TLS plaintext under its own stream key, a reset before a row that follows lost bytes,
//! the bytes the call moved beyond the captured ones as missing, and a connection's state
//! forgotten at its close.
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

use podtrace_format::model::{flags, Direction, Record};
use podtrace_format::{CaptureReader, ReadOptions};
use podtrace_recorder::convert::tls_stream;
use podtrace_recorder::redact::Redactor;

/// The shipping binary's allocator (src/main.rs), as in the other benchmarks.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// One row as the consumer hands it to the redactor.
enum Row {
    /// A payload of stream (key, dir); `reset`: bytes before it were lost.
    Data {
        key: u64,
        dir: u8,
        reset: bool,
        missing: u64,
        bytes: Vec<u8>,
    },
    /// A connection closed: its streams are forgotten.
    Close(u64),
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let input = args.next().ok_or("usage: bench_redact CAPTURE [ROUNDS]")?;
    let rounds: usize = args.next().map_or(Ok(5), |s| s.parse())?;
    let reader = CaptureReader::open(&[input])?;
    let mut rows = Vec::new();
    for r in reader.records(&ReadOptions::default()) {
        match r? {
            Record::SocketData(d) => {
                let conn = d.meta.conn_id;
                rows.push(Row::Data {
                    key: if d.flags & flags::TLS_PLAINTEXT != 0 {
                        tls_stream(conn)
                    } else {
                        conn
                    },
                    dir: u8::from(d.direction == Direction::Ingress),
                    reset: d.flags & flags::GAP_BEFORE != 0,
                    missing: u64::try_from(d.ret)
                        .unwrap_or(0)
                        .saturating_sub(d.payload.len() as u64),
                    bytes: d.payload,
                });
            }
            Record::SocketClose(c) => rows.push(Row::Close(c.meta.conn_id)),
            _ => {}
        }
    }
    let (mut payloads, mut bytes) = (0, 0);
    for r in &rows {
        if let Row::Data { bytes: b, .. } = r {
            payloads += 1;
            bytes += b.len();
        }
    }
    let mut best = f64::INFINITY;
    let mut changed = 0;
    // one scratch buffer, refilled per payload: the copy is not what is measured
    let mut buf = Vec::with_capacity(1 << 16);
    for _ in 0..rounds {
        let mut redactor = Redactor::new::<&str>(&[]);
        changed = 0;
        let t = Instant::now();
        for r in &rows {
            match r {
                Row::Data {
                    key,
                    dir,
                    reset,
                    missing,
                    bytes,
                } => {
                    if *reset {
                        redactor.reset(*key, *dir);
                    }
                    buf.clear();
                    buf.extend_from_slice(bytes);
                    let c = redactor.redact_cut(*key, *dir, &mut buf, Some(*missing));
                    changed += usize::from(c);
                }
                Row::Close(conn) => {
                    redactor.forget(*conn);
                    redactor.forget(tls_stream(*conn));
                }
            }
        }
        best = best.min(t.elapsed().as_secs_f64());
    }
    println!(
        "payloads={payloads} bytes={bytes} rounds={rounds} ns_per_payload={:.1} changed={changed}",
        best * 1e9 / payloads.max(1) as f64
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
