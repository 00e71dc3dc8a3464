//! Analyzer throughput on a real capture (tools/bench): the time to read and decode the
//! capture alone, then to read it and run [`analyze`] over it (no output files written),
//! so the analyzer's own cost is separated from the CLI's output writers.
//!
//! ```text
//! cargo run --release -p podtrace-analyzer --example bench_capture -- CAPTURE...
//! ```
//! Prints one line of `key=value` pairs: records, spans, read_s, analyze_s, spans_per_s.

use std::process::ExitCode;
use std::time::Instant;

use podtrace_analyzer::{analyze, AnalyzeOptions};
use podtrace_format::{CaptureReader, ReadOptions};

/// The allocator the shipping `podtrace` binary uses (src/main.rs): the analysis is
/// allocation-heavy, so measuring it under glibc's malloc would not match the product.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn run() -> Result<(), Box<dyn std::error::Error>> {
    // Like the binary (src/main.rs): no transparent huge pages, whose 2 MiB zeroing on
    // first touch dominated profiles of this allocation-heavy work.
    // SAFETY: prctl with integer arguments only.
    #[allow(unsafe_code)] // a process setting, as in the binary; the library has none
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
    let inputs: Vec<String> = std::env::args().skip(1).collect();
    if inputs.is_empty() {
        return Err("usage: bench_capture CAPTURE...".into());
    }
    let reader = CaptureReader::open(&inputs)?;

    let started = Instant::now();
    let mut records = 0u64;
    for r in reader.records(&ReadOptions::default()) {
        r?;
        records += 1;
    }
    let read_s = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let mut error = None;
    let rows = reader
        .records(&ReadOptions::default())
        .map_while(|r| match r {
            Ok(r) => Some(r),
            Err(e) => {
                error = Some(e);
                None
            }
        });
    let analysis = analyze(rows, &AnalyzeOptions::default())?;
    let analyze_s = started.elapsed().as_secs_f64();
    if let Some(e) = error {
        return Err(e.into());
    }
    let spans = analysis.spans.len();
    println!(
        "records={records} spans={spans} read_s={read_s:.3} analyze_s={analyze_s:.3} spans_per_s={:.0}",
        spans as f64 / analyze_s
    );
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench_capture: {e}");
            ExitCode::FAILURE
        }
    }
}
