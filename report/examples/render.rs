//! Renders the HTML report of capture files — what `podtrace analyze` does for its report,
//! in a few lines: read the captures, analyze, lay the graph out with Graphviz when it is
//! installed, render, write.
//!
//! `cargo run -p podtrace-report --example render -- report.html cap.parquet [more.parquet ...]`

use podtrace_analyzer::{analyze, AnalyzeOptions};
use podtrace_format::{CaptureReader, ReadOptions};
use podtrace_report::{dot_to_svg, render_html, ReportInput};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [out, inputs @ ..] = args.as_slice() else {
        return Err("usage: render <report.html> <capture> [capture ...]".into());
    };
    if inputs.is_empty() {
        return Err("usage: render <report.html> <capture> [capture ...]".into());
    }
    let reader = CaptureReader::open(inputs)?;
    let mut read_error = None;
    let records = reader
        .records(&ReadOptions::default())
        .map_while(|r| r.map_err(|e| read_error = Some(e)).ok());
    let analysis = analyze(records, &AnalyzeOptions::default())?;
    if let Some(e) = read_error {
        return Err(e.into());
    }
    let svg = dot_to_svg(&analysis.graph.to_dot())?;
    let title = format!("podtrace report: {}", inputs.join(", "));
    let html = render_html(&ReportInput::from_analysis(&title, &analysis, svg));
    std::fs::write(out, html)?;
    eprintln!(
        "{out}: {} spans, {} traces",
        analysis.spans.len(),
        analysis.stats.traces
    );
    Ok(())
}
