//! The capture writer's cost on a real capture, as the recorder pays it: every row of
//! CAPTURE (payloads included) is read into memory first, then written again ROUNDS times
//! in the recorder's batches (256 rows), a row group each ROWS_PER_GROUP rows (about a
//! second of a busy node), so that only the writer (Arrow columns, Parquet encoding,
//! zstd) is timed.
//!
//! ```text
//! cargo run --release -p podtrace-format --example bench_write -- CAPTURE [ROUNDS] [ROWS_PER_GROUP]
//! ```
//! Prints one line of `key=value` pairs: rows, rounds, write_s, ns_per_row, bytes_per_row.
//! Under `perf stat -e instructions:u` or callgrind the writer's instructions per row are
//! the repeatable figure (wall time on a shared machine is not).

use std::process::ExitCode;
use std::time::Instant;

use podtrace_format::{CaptureReader, CaptureWriter, FileMeta, ReadOptions, WriterOptions};

/// The shipping binary's allocator (src/main.rs), as in the other benchmarks.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Rows per `write_all` call: the recorder's channel batches.
const BATCH: usize = 256;

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let input = args
        .next()
        .ok_or("usage: bench_write CAPTURE [ROUNDS] [ROWS_PER_GROUP]")?;
    let rounds: usize = args.next().map_or(Ok(3), |s| s.parse())?;
    let group: usize = args.next().map_or(Ok(150_000), |s| s.parse())?;
    let reader = CaptureReader::open(&[input])?;
    let rows = reader
        .records(&ReadOptions::default())
        .collect::<Result<Vec<_>, _>>()?;
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("bench.parquet");
    let opts = WriterOptions::default()
        .flush_interval(None)
        .row_group_rows(usize::MAX);
    let mut bytes = 0;
    let t = Instant::now();
    for _ in 0..rounds {
        let mut w = CaptureWriter::create(&out, FileMeta::default(), opts.clone())?;
        for (i, batch) in rows.chunks(BATCH).enumerate() {
            w.write_all(batch)?;
            if ((i + 1) * BATCH).is_multiple_of(group) {
                w.flush()?;
            }
        }
        w.finish()?;
        bytes = std::fs::metadata(&out)?.len();
    }
    let secs = t.elapsed().as_secs_f64();
    let n = (rows.len() * rounds) as f64;
    println!(
        "rows={} rounds={rounds} write_s={secs:.3} ns_per_row={:.0} bytes_per_row={:.1}",
        rows.len(),
        secs * 1e9 / n,
        bytes as f64 / rows.len() as f64
    );
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench_write: {e}");
            ExitCode::FAILURE
        }
    }
}
