//! `podtrace cluster ...` and `podtrace analyze --cluster df://HOST:PORT ...`.
//!
//! DataFusion and Ballista live in the `podtrace-cluster` binary (crate `cluster/`), so
//! this binary does not link them (docs/scale-out.md, decision D2). `podtrace cluster`
//! runs `podtrace-cluster` in its place. `analyze --cluster` plans the job here (the local
//! run's batches: a scan of the captures without payload), has `podtrace-cluster front`
//! run the per-node fronts on the cluster, merges their results and runs the rest of the
//! analysis and every output here, with the same code as `analyze`: the outputs are the
//! same files (`podtrace_analyzer::pipeline::parts`).

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use podtrace_analyzer::merge_by_time_tagged;
use podtrace_analyzer::pipeline::parts::{
    read_frame, write_frame, BatchPlanner, FrontGroup, FrontJob, FrontMessage, FrontOptions,
    MergeOrSink, Merger, END_OF_JOB,
};
use podtrace_analyzer::{Analysis, AnalyzeOptions};
use podtrace_export::SpanSinks;
use podtrace_format::{CaptureReader, FormatError, K8sObject, ReadOptions};

use crate::cmd::output::ReportTraces;
use crate::error::{CliError, CmdResult};

/// The binary with the cluster code.
const CLUSTER_BIN: &str = "podtrace-cluster";

/// `podtrace-cluster` next to the running `podtrace`, else on `PATH`.
pub fn cluster_binary() -> Result<PathBuf, CliError> {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(CLUSTER_BIN)))
        .filter(|p| p.is_file());
    let on_path = || {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(CLUSTER_BIN))
                .find(|p| p.is_file())
        })
    };
    beside.or_else(on_path).ok_or_else(|| {
        CliError::Usage(format!(
            "{CLUSTER_BIN} not found next to podtrace or on PATH \
             (build it: cargo build --release -p podtrace-cluster)"
        ))
    })
}

/// `podtrace cluster ARGS...`: runs `podtrace-cluster ARGS...` in place of this process.
pub fn exec(args: &[String]) -> CmdResult {
    let bin = cluster_binary()?;
    use std::os::unix::process::CommandExt;
    let err = Command::new(&bin).args(args).exec();
    Err(CliError::Runtime(anyhow::anyhow!(
        "running {}: {err}",
        bin.display()
    )))
}

/// The scheduler address of a `--cluster` value (`df://HOST:PORT`).
pub fn scheduler_address(url: &str) -> Result<String, CliError> {
    let bad = || {
        CliError::Usage(format!(
            "--cluster {url}: expected df://HOST:PORT (the Ballista scheduler)"
        ))
    };
    let rest = url.strip_prefix("df://").ok_or_else(bad)?;
    let (host, port) = rest.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(bad());
    }
    Ok(rest.to_string())
}

/// The capture groups: one per node (`podtrace.node`), in order of first appearance; a
/// capture without a node is a group of its own. Paths are made absolute (the executors
/// read them).
fn groups(reader: &CaptureReader) -> Result<(Vec<String>, Vec<Vec<usize>>), CliError> {
    let mut names = Vec::new();
    let mut members: Vec<Vec<usize>> = Vec::new();
    let mut by_node: HashMap<String, usize> = HashMap::new();
    for (i, f) in reader.files().iter().enumerate() {
        let node = f.meta.node.clone();
        let g = match by_node.get(&node) {
            Some(&g) if !node.is_empty() => g,
            _ => {
                names.push(if node.is_empty() {
                    f.path.display().to_string()
                } else {
                    node.clone()
                });
                members.push(Vec::new());
                by_node.insert(node, members.len() - 1);
                members.len() - 1
            }
        };
        members[g].push(i);
    }
    Ok((names, members))
}

fn absolute(path: &Path) -> Result<PathBuf, CliError> {
    std::fs::canonicalize(path)
        .map_err(|e| CliError::Input(anyhow::anyhow!("{}: {e}", path.display())))
}

/// The local run's batches over `reader`'s captures (a scan without payload) and the
/// Kubernetes objects per batch.
fn plan(
    reader: &CaptureReader,
) -> Result<
    (
        podtrace_analyzer::pipeline::parts::BatchPlan,
        Vec<Vec<K8sObject>>,
    ),
    CliError,
> {
    let first_error: RefCell<Option<FormatError>> = RefCell::new(None);
    let per_file = reader.records_per_file(&ReadOptions::without_payload(), &first_error);
    let mut planner = BatchPlanner::new(reader.files().len());
    for (i, r) in merge_by_time_tagged(per_file) {
        planner.push(i, &r);
    }
    if let Some(e) = first_error.into_inner() {
        return Err(CliError::Input(e.into()));
    }
    Ok(planner.finish())
}

/// Runs the analysis with the per-node fronts on the cluster at `url`, handing the spans
/// to `sinks` as the local run does; `Ok(None)` when the sinks stopped. A cluster that
/// cannot be reached or a job that fails is an error (exit 1): nothing is presented as
/// complete unless every node's part arrived.
pub fn run_analysis(
    url: &str,
    reader: &CaptureReader,
    opts: &AnalyzeOptions,
    k8s_fallback: &[K8sObject],
    sinks: &SpanSinks<ReportTraces>,
) -> Result<Option<Analysis>, CliError> {
    let scheduler = scheduler_address(url)?;
    let bin = cluster_binary()?;
    let (names, members) = groups(reader)?;
    let started = std::time::Instant::now();
    let (plan, k8s) = plan(reader)?;
    let planned = started.elapsed();
    let mut front_groups = Vec::with_capacity(members.len());
    for (name, files) in names.iter().zip(&members) {
        let paths = files
            .iter()
            .map(|&i| absolute(&reader.files()[i].path))
            .collect::<Result<Vec<_>, _>>()?;
        front_groups.push(FrontGroup {
            node: name.clone(),
            paths,
            rows: plan.group_rows(files),
        });
    }
    let plan_batches = plan.watermarks.len();
    let job = FrontJob::new(
        FrontOptions::of(opts),
        plan.watermarks.clone(),
        front_groups,
    );
    let job = serde_json::to_vec(&job).map_err(|e| CliError::Runtime(e.into()))?;

    let mut merger =
        Merger::new(opts, &plan, k8s, members.len()).map_err(|e| CliError::Usage(e.to_string()))?;
    merger.add_k8s_objects(k8s_fallback);

    let mut child = Command::new(&bin)
        .arg("front")
        .arg("--scheduler")
        .arg(&scheduler)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| CliError::Runtime(anyhow::anyhow!("running {}: {e}", bin.display())))?;
    let result = feed_and_merge(&mut child, &job, merger, sinks);
    if !matches!(result, Ok((_, Some(_)))) {
        // Nothing more is read: stop the job's client (its job is cancelled with it).
        let _ = child.kill();
    }
    let status = child
        .wait()
        .map_err(|e| CliError::Runtime(anyhow::anyhow!("waiting for {CLUSTER_BIN}: {e}")))?;
    let (ended, merger) = result?;
    if !status.success() || !ended {
        return Err(CliError::Runtime(anyhow::anyhow!(
            "the cluster job at {url} failed ({CLUSTER_BIN} {}); no output was written",
            exit_text(status)
        )));
    }
    let Some(merger) = merger else {
        return Ok(None);
    };
    let result = merger.finish(&mut |spans| sinks.send(spans));
    tracing::info!(
        "analyze --cluster: {} rows in {} capture(s) of {} node(s), {} batch(es); \
         plan scan {:.2} s, job and merge {:.2} s",
        reader.num_rows(),
        reader.files().len(),
        members.len(),
        plan_batches,
        planned.as_secs_f64(),
        (started.elapsed() - planned).as_secs_f64()
    );
    match result {
        Ok(analysis) => Ok(Some(analysis)),
        Err(MergeOrSink::Sink(_)) => Ok(None),
        Err(MergeOrSink::Merge(e)) => Err(CliError::Runtime(e.into())),
    }
}

fn exit_text(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => "ended".into(),
    }
}

/// Writes the job to the child and merges the frames it returns. Returns whether the
/// end-of-job frame came, and the merger (`None` when the sinks stopped).
fn feed_and_merge(
    child: &mut std::process::Child,
    job: &[u8],
    mut merger: Merger,
    sinks: &SpanSinks<ReportTraces>,
) -> Result<(bool, Option<Merger>), CliError> {
    let runtime = |e: std::io::Error| CliError::Runtime(anyhow::anyhow!("{CLUSTER_BIN}: {e}"));
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| CliError::Runtime(anyhow::anyhow!("{CLUSTER_BIN}: no stdin")))?;
    // The job is read whole before anything is written back: no deadlock. stdin stays
    // open while the results are read: its end (this process gone) stops the child.
    write_frame(&mut stdin, 0, job)
        .and_then(|_| stdin.flush())
        .map_err(runtime)?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| CliError::Runtime(anyhow::anyhow!("{CLUSTER_BIN}: no stdout")))?;
    let mut frames = BufReader::with_capacity(1 << 20, stdout);
    let mut ended = false;
    while let Some((group, bytes)) = read_frame(&mut frames).map_err(runtime)? {
        if group == END_OF_JOB {
            ended = true;
            continue;
        }
        if ended {
            return Err(CliError::Runtime(anyhow::anyhow!(
                "{CLUSTER_BIN}: messages after the end of the job"
            )));
        }
        let message = FrontMessage::from_bytes(&bytes).map_err(|e| CliError::Runtime(e.into()))?;
        match merger.push(group as usize, message, &mut |spans| sinks.send(spans)) {
            Ok(()) => {}
            Err(MergeOrSink::Sink(_)) => return Ok((true, None)),
            Err(MergeOrSink::Merge(e)) => return Err(CliError::Runtime(e.into())),
        }
    }
    drop(stdin);
    Ok((ended, Some(merger)))
}
