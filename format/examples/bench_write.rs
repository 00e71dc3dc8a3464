//! The capture writer's cost on a real capture, as the recorder pays it: every row of
//! CAPTURE (payloads included) is read into memory first, then written again ROUNDS times
//! in the recorder's batches (256 rows), a row group each ROWS_PER_GROUP rows (about a
//! second of a busy node), so that only the writer (Arrow columns, Parquet encoding,
//! zstd) is timed.
//!
//! ```text
//! cargo run --release -p podtrace-format --example bench_write -- CAPTURE [ROUNDS] [ROWS_PER_GROUP]
//! ```
//! Prints one line of `key=value` pairs: rows, rounds, write_s, ns_per_row, bytes_per_row,
//! and the durations of single `write_all` (256 rows) and `flush` calls: how long the
//! writer holds a core at once.
//! Under `perf stat -e instructions:u` or callgrind the writer's instructions per row are
//! the repeatable figure (wall time on a shared machine is not).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use podtrace_format::{
    CaptureReader, CaptureWriter, FileMeta, FormatError, ReadOptions, WriterOptions,
};

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
    // every call's duration: how long the writer holds its core at once (a flush closes a
    // row group: compresses and writes every column's last pages)
    let (mut writes, mut flushes) = (Vec::new(), Vec::new());
    let timed = |all: &mut Vec<Duration>, f: &mut dyn FnMut() -> Result<(), FormatError>| {
        let t = Instant::now();
        let r = f();
        all.push(t.elapsed());
        r
    };
    let t = Instant::now();
    for _ in 0..rounds {
        let mut w = CaptureWriter::create(&out, FileMeta::default(), opts.clone())?;
        let mut since_flush = 0;
        for batch in rows.chunks(BATCH) {
            timed(&mut writes, &mut || w.write_all(batch))?;
            since_flush += batch.len();
            if since_flush >= group {
                timed(&mut flushes, &mut || w.flush())?;
                since_flush = 0;
            }
        }
        w.finish()?;
        bytes = std::fs::metadata(&out)?.len();
    }
    let secs = t.elapsed().as_secs_f64();
    let n = (rows.len() * rounds) as f64;
    writes.sort();
    flushes.sort();
    let ms = |d: Option<&Duration>| d.map_or(0.0, |d| d.as_secs_f64() * 1e3);
    println!(
        "rows={} rounds={rounds} write_s={secs:.3} ns_per_row={:.0} bytes_per_row={:.1} \
         write_all_p99_ms={:.3} write_all_max_ms={:.3} flush_median_ms={:.3} flush_max_ms={:.3}",
        rows.len(),
        secs * 1e9 / n,
        bytes as f64 / rows.len() as f64,
        ms(writes.get(writes.len() * 99 / 100)),
        ms(writes.last()),
        ms(flushes.get(flushes.len() / 2)),
        ms(flushes.last()),
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
