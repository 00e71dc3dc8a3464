//! The record-time redactor's cost on a real capture, as the ring consumer pays it: every
//! `socket_data` payload of CAPTURE is read into memory first, then redacted ROUNDS times in
//! capture order (each round with a fresh [`Redactor`], each payload a fresh copy), so that
//! only the redactor is timed, through the consumer's own calls
//! ([`podtrace_recorder::convert::redact_payload`] per data row,
//! [`podtrace_recorder::convert::forget_connection`] at each close).
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
use podtrace_recorder::convert::{forget_connection, redact_payload};
use podtrace_recorder::redact::Redactor;

/// The shipping binary's allocator (src/main.rs), as in the other benchmarks.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The rows of a capture the consumer's redaction sees.
enum Row {
    /// A data row of a connection: the consumer's arguments of [`redact_payload`].
    Data {
        conn: u64,
        dir: u8,
        tls: bool,
        gap: bool,
        ret: i64,
        bytes: Vec<u8>,
    },
    /// A connection closed.
    Close(u64),
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let input = args.next().ok_or("usage: bench_redact CAPTURE [ROUNDS]")?;
    let rounds: usize = args.next().map_or(Ok(5), |s| s.parse())?;
    let reader = CaptureReader::open(&[input])?;
    let (mut rows, mut payloads, mut bytes) = (Vec::new(), 0, 0);
    for r in reader.records(&ReadOptions::default()) {
        match r? {
            Record::SocketData(d) => {
                payloads += 1;
                bytes += d.payload.len();
                rows.push(Row::Data {
                    conn: d.meta.conn_id,
                    dir: u8::from(d.direction == Direction::Ingress),
                    tls: d.flags & flags::TLS_PLAINTEXT != 0,
                    gap: d.flags & flags::GAP_BEFORE != 0,
                    ret: d.ret,
                    bytes: d.payload,
                });
            }
            Record::SocketClose(c) => rows.push(Row::Close(c.meta.conn_id)),
            _ => {}
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
                    conn,
                    dir,
                    tls,
                    gap,
                    ret,
                    bytes,
                } => {
                    buf.clear();
                    buf.extend_from_slice(bytes);
                    let c = redact_payload(&mut redactor, *conn, *dir, *tls, *gap, *ret, &mut buf);
                    changed += usize::from(c);
                }
                Row::Close(conn) => forget_connection(&mut redactor, *conn),
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
