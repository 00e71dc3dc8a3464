//! What `analyze` (and live mode at its end) leaves behind: local files, exporter runs, the
//! summary on stdout, and the exit code.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use podtrace_analyzer::Analysis;
use podtrace_export::{exports_succeeded, ExporterReport, SpanObserver};
use podtrace_model::Span;
use podtrace_report::collect::{Collected, CollectorLimits, TraceCollector};
use podtrace_report::ReportInput;

use crate::cli::OutputArgs;
use crate::error::CliError;

/// Local output settings.
pub struct Outputs<'a> {
    args: &'a OutputArgs,
}

impl<'a> Outputs<'a> {
    /// Outputs as the flags ask.
    pub fn new(args: &'a OutputArgs) -> Self {
        Outputs { args }
    }

    /// Writes what needs the whole analysis, once it is over: `graph.dot`, `summary.json`,
    /// `graph.svg` (when Graphviz is installed), `report.html` (the traces `traces` kept),
    /// and the `--graph-*` / `--report` files. (`traces.otlp.json` and `spans.json` were
    /// streamed while the analysis ran, by [`podtrace_export::SpanSinks`].) Returns the
    /// files written.
    pub fn write_end(
        &self,
        analysis: &Analysis,
        traces: &Collected,
    ) -> Result<Vec<PathBuf>, CliError> {
        let (mut written, svg) = self.graph_and_summary(analysis)?;
        let dir = self.create_dir()?;
        let title = format!("podtrace — {} traces", analysis.stats.traces);
        let stats =
            serde_json::to_value(&analysis.stats).map_err(|e| CliError::Runtime(e.into()))?;
        let html = podtrace_report::render_html(&ReportInput::from_collected(
            &title,
            traces,
            &analysis.graph,
            svg,
            stats,
        ));
        written.push(write(dir.join("report.html"), html.as_bytes())?);
        if let Some(path) = &self.args.report {
            written.push(write(path.clone(), html.as_bytes())?);
        }
        Ok(written)
    }

    /// Creates the output directory (if needed) and returns it.
    pub fn create_dir(&self) -> Result<&Path, CliError> {
        let dir = &self.args.out;
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating output directory {}", dir.display()))
            .map_err(CliError::Runtime)?;
        Ok(dir)
    }

    /// Writes `graph.dot`, `summary.json`, `graph.svg` (with Graphviz) and the `--graph-*`
    /// files: what live mode leaves at its end (its spans went out as they completed).
    pub fn write_graph_and_summary(&self, analysis: &Analysis) -> Result<Vec<PathBuf>, CliError> {
        Ok(self.graph_and_summary(analysis)?.0)
    }

    /// [`Self::write_graph_and_summary`], also returning the SVG when Graphviz made one.
    fn graph_and_summary(
        &self,
        analysis: &Analysis,
    ) -> Result<(Vec<PathBuf>, Option<String>), CliError> {
        let dir = self.create_dir()?;
        let mut written = Vec::new();
        let dot = analysis.graph.to_dot();
        written.push(write(dir.join("graph.dot"), dot.as_bytes())?);
        let stats = serde_json::to_string_pretty(&analysis.stats)
            .map_err(|e| CliError::Runtime(e.into()))?;
        written.push(write(dir.join("summary.json"), stats.as_bytes())?);
        if let Some(path) = &self.args.graph_dot {
            written.push(write(path.clone(), dot.as_bytes())?);
        }
        let svg = match render_svg(&dot) {
            Ok(svg) => {
                written.push(write(dir.join("graph.svg"), svg.as_bytes())?);
                if let Some(path) = &self.args.graph_svg {
                    written.push(write(path.clone(), svg.as_bytes())?);
                }
                Some(svg)
            }
            Err(e) if self.args.graph_svg.is_some() => return Err(CliError::Environment(e)),
            Err(e) => {
                tracing::info!("no graph.svg: {e:#}");
                None
            }
        };
        Ok((written, svg))
    }
}

/// Writes a file; returns its path.
fn write(path: PathBuf, bytes: &[u8]) -> Result<PathBuf, CliError> {
    std::fs::write(&path, bytes)
        .with_context(|| format!("writing {}", path.display()))
        .map_err(CliError::Runtime)?;
    Ok(path)
}

/// Renders DOT to SVG with Graphviz `dot` ([`podtrace_report::dot_to_svg`]); not having
/// Graphviz installed is an error here (the caller decides whether it matters).
fn render_svg(dot: &str) -> anyhow::Result<String> {
    podtrace_report::dot_to_svg(dot)?
        .context("Graphviz `dot` is not installed (apt-get install graphviz) — cannot render SVG")
}

/// Prints the analysis summary (text, or JSON with `--json`) to stdout.
pub fn print_summary(
    args: &OutputArgs,
    analysis: &Analysis,
    spans_kept: u64,
    written: &[PathBuf],
    reports: &[ExporterReport],
    skipped: &[(PathBuf, podtrace_format::FormatError)],
) -> Result<(), CliError> {
    if args.json {
        let json = serde_json::json!({
            "stats": analysis.stats,
            "spans_exported": spans_kept,
            "outputs": written,
            "exporters": reports,
            "skipped_files": skipped.iter().map(|(p, e)| serde_json::json!({
                "file": p, "error": e.to_string()
            })).collect::<Vec<_>>(),
        });
        let text = serde_json::to_string_pretty(&json).map_err(|e| CliError::Runtime(e.into()))?;
        println!("{text}");
        return Ok(());
    }
    print!("{}", analysis.stats);
    println!("spans kept after sampling: {spans_kept}");
    for (path, err) in skipped {
        println!("skipped: {} ({err})", path.display());
    }
    println!("outputs:");
    let mut shown = std::collections::BTreeSet::new();
    for path in written
        .iter()
        .filter(|p| shown.insert(std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())))
    {
        println!("  {}", display(path));
    }
    print_export_lines(reports);
    Ok(())
}

/// The per-exporter summary lines, the same for `analyze` and live mode.
pub fn print_export_lines(reports: &[ExporterReport]) {
    for line in podtrace_export::sinks::export_lines(reports) {
        println!("{line}");
    }
}

fn display(p: &Path) -> String {
    p.display().to_string()
}

/// 0 when every exporter succeeded (or failures are allowed), else 1
/// ([`podtrace_export::exports_succeeded`], the one rule).
pub fn exit_code(reports: &[ExporterReport], allow_failures: bool) -> ExitCode {
    if exports_succeeded(reports, allow_failures) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// The report's bounded trace collector, fed by the span fan-out like the local files.
pub enum ReportTraces {
    /// Collecting the fan-out's batches.
    Collecting(Box<TraceCollector>),
    /// Finished at the fan-out's end ([`SpanObserver::end`]): what it kept.
    Collected(Box<Collected>),
}

impl ReportTraces {
    /// A collector with the report's default limits.
    pub fn new() -> Self {
        ReportTraces::Collecting(Box::new(TraceCollector::new(CollectorLimits::default())))
    }

    /// The traces the report shows, and totals over every span.
    pub fn finish(self) -> Collected {
        match self {
            ReportTraces::Collecting(c) => c.finish(),
            ReportTraces::Collected(c) => *c,
        }
    }
}

impl SpanObserver for ReportTraces {
    fn observe(&mut self, spans: &[Span]) {
        if let ReportTraces::Collecting(c) = self {
            c.add(spans);
        }
    }

    /// Ranks and picks the kept traces (and frees the others' spans) beside the files'
    /// commits, not after them.
    fn end(&mut self) {
        if !matches!(self, ReportTraces::Collecting(_)) {
            return; // already finished
        }
        let placeholder = ReportTraces::Collected(Box::default());
        if let ReportTraces::Collecting(c) = std::mem::replace(self, placeholder) {
            *self = ReportTraces::Collected(Box::new(c.finish()));
        }
    }
}

/// A progress bar over `total` records on stderr; invisible when stderr is not a terminal.
pub fn progress(total: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} analyzing {pos}/{len} records ({per_sec}) {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}
