//! `podtrace analyze`: captures → spans, traces, graph → local files and exporters.

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use podtrace_analyzer::{analyze_into, merge_by_time, Analysis, Pipeline};
use podtrace_export::{build_exporters, local_files, ExportConfig, SinkOptions, SpanSinks};
use podtrace_format::{CaptureReader, FormatError, ReadOptions, Record};

use crate::cli::AnalyzeArgs;
use crate::cmd::cluster;
use crate::cmd::output::ReportTraces;
use crate::cmd::output::{self, Outputs};
use crate::cmd::tracing_config;
use crate::error::{CliError, CmdResult};

/// Runs the command.
pub fn run(args: AnalyzeArgs) -> CmdResult {
    // Every flag is checked before any file is read.
    let export = tracing_config::export_config(&args.tracing)?;
    let mut opts = tracing_config::analyze_options(&args.tracing)?;
    opts.window_ns = args.window * 1_000_000_000;
    tracing_config::span_options(&args.spans, &mut opts)?;
    let mut pipeline = Pipeline::new(&opts).map_err(|e| CliError::Usage(e.to_string()))?;
    let mut k8s_fallback = Vec::new();
    for path in &args.k8s_objects {
        let objects = read_k8s_objects(path)?;
        pipeline.add_k8s_objects(&objects);
        k8s_fallback.extend(objects);
    }
    if let Some(url) = &args.cluster {
        // Checked before any file is read or written.
        cluster::scheduler_address(url)?;
        cluster::cluster_binary()?;
    }
    let (reader, skipped) = open_inputs(&args.inputs, args.skip_bad_files)?;
    for (path, err) in &skipped {
        eprintln!("podtrace: skipped {}: {err}", path.display());
    }

    let outputs = Outputs::new(&args.output);
    let out_dir = outputs.create_dir()?;
    let sinks = start_sinks(
        out_dir,
        &export,
        args.spans_json,
        args.spans_parquet.as_deref(),
    )?;
    let result = match &args.cluster {
        Some(url) => cluster::run_analysis(url, &reader, &opts, &k8s_fallback, &sinks),
        None => run_analysis(&reader, pipeline, &sinks),
    };
    let analysis = match result {
        Ok(analysis) => analysis,
        Err(e) => {
            sinks.abandon();
            return Err(e);
        }
    };
    // The writer's own error (disk full, ...) is why the analysis stopped early, if it did.
    let collected = sinks.finish().map_err(|e| CliError::Runtime(e.into()))?;
    let analysis = analysis.ok_or_else(|| {
        CliError::Runtime(anyhow::anyhow!(
            "the output writer stopped before the analysis ended"
        ))
    })?;
    if !args.spans_json {
        remove_stale_spans_json(out_dir)?;
    }
    let mut written = collected.written;
    written.extend(outputs.write_end(&analysis, &collected.observer.finish())?);
    output::print_summary(
        &args.output,
        &analysis,
        collected.spans,
        &written,
        &collected.reports,
        &skipped,
    )?;
    Ok(output::exit_code(
        &collected.reports,
        args.tracing.allow_export_failures,
    ))
}

/// With `--spans-json false`, once this run's files are in place: an earlier run's
/// `spans.json` in `dir` would pass for this run's, so it goes (a run that fails leaves the
/// earlier run's files as they were).
fn remove_stale_spans_json(dir: &Path) -> Result<(), CliError> {
    let stale = dir.join(podtrace_export::SPANS_JSON_FILE);
    match std::fs::remove_file(&stale) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(CliError::Runtime(anyhow::anyhow!(
            "removing {}: {e}",
            stale.display()
        ))),
    }
}

/// Starts the span fan-out of the analysis ([`podtrace_export::SpanSinks`]): the local
/// files in `dir` (`spans.json` unless `spans_json` is false, and the `--spans-parquet`
/// table), the report's trace collector, and the exporters of `export` (a bad setting is
/// a usage error, before anything is read).
fn start_sinks(
    dir: &Path,
    export: &ExportConfig,
    spans_json: bool,
    spans_parquet: Option<&Path>,
) -> Result<SpanSinks<ReportTraces>, CliError> {
    let exporters = build_exporters(export).map_err(|e| CliError::Usage(e.to_string()))?;
    if let Some(arg) = spans_parquet.filter(|a| a.as_os_str().to_string_lossy().ends_with('/')) {
        std::fs::create_dir_all(arg)
            .map_err(|e| CliError::Runtime(anyhow::anyhow!("creating {}: {e}", arg.display())))?;
    }
    let files =
        local_files(dir, spans_json, spans_parquet).map_err(|e| CliError::Runtime(e.into()))?;
    SpanSinks::start(
        files,
        ReportTraces::new(),
        exporters,
        SinkOptions::offline(),
    )
    .map_err(|e| CliError::Runtime(e.into()))
}

/// Reads a `--k8s-objects` file (a `kubectl ... -o json` List or one object, parsed as
/// `podtrace import --k8s-objects` does); a file that cannot be read or parsed is an input
/// error (exit 2).
fn read_k8s_objects(path: &Path) -> Result<Vec<podtrace_format::K8sObject>, CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::Input(anyhow::anyhow!("{}: {e}", path.display())))?;
    podtrace_format::k8s::objects_from_list(&text, 0)
        .map_err(|e| CliError::Input(anyhow::anyhow!("{}: {e}", path.display())))
}

/// Opens the inputs; with `skip_bad`, files that cannot be read are left out and returned.
fn open_inputs(
    inputs: &[String],
    skip_bad: bool,
) -> Result<(CaptureReader, Vec<(PathBuf, FormatError)>), CliError> {
    match CaptureReader::open(inputs) {
        Ok(r) => Ok((r, Vec::new())),
        Err(e) if !skip_bad => Err(CliError::Input(e.into())),
        Err(_) => {
            let mut good = Vec::new();
            let mut bad = Vec::new();
            for path in expand_inputs(inputs).map_err(|e| CliError::Input(e.into()))? {
                match CaptureReader::open(&[&path]) {
                    Ok(_) => good.push(path),
                    Err(e) => bad.push((path, e)),
                }
            }
            if good.is_empty() {
                return Err(CliError::Input(anyhow::anyhow!(
                    "no readable capture among the inputs ({} bad file(s))",
                    bad.len()
                )));
            }
            let reader = CaptureReader::open(&good).map_err(|e| CliError::Input(e.into()))?;
            Ok((reader, bad))
        }
    }
}

/// The files behind inputs given as files, directories (their `*.parquet`) or globs.
fn expand_inputs(inputs: &[String]) -> Result<Vec<PathBuf>, FormatError> {
    let mut out = Vec::new();
    for input in inputs {
        out.extend(podtrace_format::reader::expand(Path::new(input))?);
    }
    Ok(out)
}

/// Reads every file (merged by time, so traces that cross nodes' captures join up) and runs
/// the analyzer, handing its spans to `sinks` as they complete. A read error stops the
/// analysis and is reported with its file; `Ok(None)` when the sinks stopped (their error
/// says why).
fn run_analysis(
    reader: &CaptureReader,
    pipeline: Pipeline,
    sinks: &SpanSinks<ReportTraces>,
) -> Result<Option<Analysis>, CliError> {
    let first_error: RefCell<Option<FormatError>> = RefCell::new(None);
    let progress = output::progress(reader.num_rows());
    let per_file: Vec<_> = reader
        .records_per_file(&ReadOptions::default(), &first_error)
        .into_iter()
        .map(|records| records.inspect(|_| progress.inc(1)))
        .collect();
    let records: Box<dyn Iterator<Item = Record>> = if per_file.len() == 1 {
        Box::new(per_file.into_iter().flatten())
    } else {
        Box::new(merge_by_time(per_file))
    };
    let analysis = analyze_into(pipeline, records, |spans| sinks.send(spans));
    progress.finish_and_clear();
    if let Some(e) = first_error.into_inner() {
        return Err(CliError::Input(e.into()));
    }
    Ok(analysis.ok())
}
