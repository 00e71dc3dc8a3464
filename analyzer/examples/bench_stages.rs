//! Per-stage throughput of the analyzer on a real capture (tools/bench/run.sh): read,
//! reassemble, parse (+ pairing, trace-context extraction), intake, link (identification),
//! build (span building), enrich, graph, evict, and the two local encoders (`traces.otlp.json`, `spans.json`), each
//! as wall time and spans (or records) per second, so the next regression shows where it is.
//!
//! ```text
//! cargo run --release -p podtrace-analyzer --example bench_stages -- CAPTURE... \
//!     [--limit RECORDS] [--dump DIR] [--inline]
//! ```
//!
//! The pipeline runs exactly as `podtrace analyze` drives it (`analyze_into`: batches of
//! 8,192 records, spans drained after each), on the rayon pool (`RAYON_NUM_THREADS`); with
//! more than one thread its back (intake, link) runs on a thread of its own beside the
//! front (reassemble, parse) and the tail (build, enrich, graph), so their stage times
//! overlap.
//! `--limit` reads only the first RECORDS records (short runs under valgrind). `--dump DIR`
//! writes `traces.otlp.json` and `spans.json` there exactly as the CLI does (to compare
//! builds with `cmp`); without it they are encoded into memory and dropped. `--inline` runs
//! everything on the calling thread (a one-thread pool that includes it): under
//! `valgrind --tool=callgrind` each stage's instructions are then the inclusive cost of its
//! function (`stage_*` here, `Pipeline` methods inside), see tools/bench/stages.sh.
//!
//! Prints one `stage=NAME s=SECONDS per_s=RATE` line per stage, then a `total` line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use podtrace_analyzer::{analyze_into_timed, AnalyzeOptions, Pipeline, StageTimes};
use podtrace_export::sinks::{SpanFile, SpansJsonWriter};
use podtrace_export::OtlpJsonWriter;
use podtrace_format::{CaptureReader, ReadOptions, Record};
use podtrace_model::Span;

/// The allocator the shipping `podtrace` binary uses (src/main.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Args {
    inputs: Vec<String>,
    limit: Option<usize>,
    dump: Option<PathBuf>,
    inline: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        inputs: Vec::new(),
        limit: None,
        dump: None,
        inline: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--limit" => {
                let v = it.next().ok_or("--limit needs a number")?;
                args.limit = Some(v.parse().map_err(|_| format!("bad --limit {v}"))?);
            }
            "--dump" => args.dump = Some(it.next().ok_or("--dump needs a directory")?.into()),
            "--inline" => args.inline = true,
            _ if a.starts_with("--") => return Err(format!("unknown option {a}")),
            _ => args.inputs.push(a),
        }
    }
    if args.inputs.is_empty() {
        return Err(
            "usage: bench_stages CAPTURE... [--limit RECORDS] [--dump DIR] [--inline]".into(),
        );
    }
    Ok(args)
}

/// Stage 1: the capture decoded into records.
#[inline(never)]
fn stage_read(inputs: &[String], limit: Option<usize>) -> Result<Vec<Record>, String> {
    let reader = CaptureReader::open(inputs).map_err(|e| e.to_string())?;
    let mut records = Vec::new();
    for r in reader.records(&ReadOptions::default()) {
        records.push(r.map_err(|e| e.to_string())?);
        if limit.is_some_and(|l| records.len() >= l) {
            break;
        }
    }
    Ok(records)
}

/// Stages 2–8: the pipeline over the records, driven by `analyze_into` as `podtrace
/// analyze` drives it; the batches of spans it hands out, and the time of each stage.
#[inline(never)]
fn stage_analyze(records: Vec<Record>) -> Result<(Vec<Vec<Span>>, StageTimes), String> {
    let pipeline = Pipeline::new(&AnalyzeOptions::default()).map_err(|e| e.to_string())?;
    let mut batches = Vec::new();
    let (_, times) = analyze_into_timed(
        pipeline,
        records.into_iter(),
        |spans| -> Result<(), std::convert::Infallible> {
            batches.push(spans);
            Ok(())
        },
    )
    .unwrap_or_else(|never| match never {});
    Ok((batches, times))
}

/// The OTLP/JSON file, batch by batch (the CLI's writer).
#[inline(never)]
fn stage_encode_otlp(batches: &[Vec<Span>], dir: &std::path::Path) -> Result<(), String> {
    let mut w = OtlpJsonWriter::create(dir.join("traces.otlp.json")).map_err(|e| e.to_string())?;
    for b in batches {
        w.write(b).map_err(|e| e.to_string())?;
    }
    w.finish().map(|_| ()).map_err(|e| e.to_string())
}

/// `spans.json`, one compact span per line, batch by batch (the CLI's writer: chunks
/// encoded on the rayon pool, written in order).
#[inline(never)]
fn stage_encode_spans_json(batches: &[Vec<Span>], dir: &std::path::Path) -> Result<(), String> {
    let mut file: Box<dyn SpanFile> =
        Box::new(SpansJsonWriter::create(dir.join("spans.json")).map_err(|e| e.to_string())?);
    for b in batches {
        file.write(b).map_err(|e| e.to_string())?;
    }
    file.finish().map(|_| ()).map_err(|e| e.to_string())
}

fn line(stage: &str, d: Duration, n: usize) {
    let s = d.as_secs_f64();
    let rate = if s > 0.0 { n as f64 / s } else { 0.0 };
    println!("stage={stage} s={s:.3} per_s={rate:.0}");
}

fn run() -> Result<(), String> {
    // Like the binary (src/main.rs): no transparent huge pages.
    // SAFETY: prctl with integer arguments only.
    #[allow(unsafe_code)] // a process setting, as in the binary; the library has none
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
    let args = parse_args()?;
    if args.inline {
        rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .use_current_thread()
            .build_global()
            .map_err(|e| e.to_string())?;
    }
    let threads = rayon::current_num_threads();

    let started = Instant::now();
    let records = stage_read(&args.inputs, args.limit)?;
    let read = started.elapsed();

    let n_records = records.len();
    let started = Instant::now();
    let (batches, times) = stage_analyze(records)?;
    let analyze = started.elapsed();
    let spans: usize = batches.iter().map(Vec::len).sum();

    let tmp;
    let dir = match &args.dump {
        Some(d) => {
            std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
            d.clone()
        }
        None => {
            tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
            tmp.path().to_path_buf()
        }
    };
    let started = Instant::now();
    stage_encode_otlp(&batches, &dir)?;
    let otlp = started.elapsed();
    let started = Instant::now();
    stage_encode_spans_json(&batches, &dir)?;
    let spans_json = started.elapsed();

    println!(
        "threads={threads} records={n_records} spans={spans} analyze_s={:.3} spans_per_s={:.0}",
        analyze.as_secs_f64(),
        spans as f64 / analyze.as_secs_f64().max(1e-9),
    );
    line("read", read, spans);
    line("reassemble", times.reassemble, spans);
    line("parse", times.parse, spans);
    line("intake", times.intake, spans);
    line("link", times.link, spans);
    line("build", times.build, spans);
    line("enrich", times.enrich, spans);
    line("graph", times.graph, spans);
    line("evict", times.evict, spans);
    line("encode_otlp", otlp, spans);
    line("encode_spans_json", spans_json, spans);
    line("total", read + analyze + otlp + spans_json, spans);
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench_stages: {e}");
            ExitCode::FAILURE
        }
    }
}
