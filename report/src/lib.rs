//! # podtrace-report — one self-contained HTML file per analysis
//!
//! [`render_html`] turns the analyzer's output into a single HTML file that works offline:
//! the request-flow graph (Graphviz's SVG when the caller has it, else a simple layered SVG
//! drawn here), tables of services, routes, calls and database operations with counts,
//! errors and p50/p99 latencies, a paginated, filterable list of traces (erroring and slowest first) with a
//! waterfall of each trace's spans (nesting, durations, status, attributes on click), and
//! the capture summary (time range, drops, ignored propagation headers, orphans, ...).
//!
//! Nothing is fetched from the network: CSS and script are inline, the trace data is
//! embedded as JSON and rendered lazily by the script. Everything that comes from recorded
//! traffic is escaped, and a Content-Security-Policy forbids any other script and all
//! network access. This crate does not read captures or write files; the CLI does.
//!
//! When the spans come as a stream (a large capture), a [`collect::TraceCollector`] keeps
//! the traces the page lists first within fixed limits and totals every span;
//! [`ReportInput::from_collected`] renders from it, and the page then says how many traces
//! were left out.
//!
//! ```
//! use podtrace_analyzer::{analyze, AnalyzeOptions};
//! use podtrace_report::{render_html, ReportInput};
//! let analysis = analyze(std::iter::empty(), &AnalyzeOptions::default()).unwrap();
//! let html = render_html(&ReportInput::from_analysis("podtrace report", &analysis, None));
//! assert!(html.starts_with("<!DOCTYPE html>"));
//! ```

#![warn(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)
)]

pub mod collect;
pub mod data;
pub mod escape;
pub mod graphviz;
pub mod page;
pub mod summary;
pub mod svg;
pub mod tables;
pub mod totals;
pub mod units;

use podtrace_analyzer::{Analysis, Graph};
use podtrace_model::Span;

pub use collect::{Collected, CollectorLimits, TraceCollector};
pub use graphviz::{dot_to_svg, GraphvizError};
pub use totals::{ReportTotals, ServiceTotals};

/// What a report is made of (borrowed from the analysis, so the CLI can render right after
/// [`podtrace_analyzer::analyze`], or from a [`Collected`] when spans were streamed).
#[derive(Debug, Clone)]
pub struct ReportInput<'a> {
    /// Page title, e.g. `podtrace report: capture-2026-11-26`.
    pub title: &'a str,
    /// The spans to list (usually the sampled spans of the analysis).
    pub spans: &'a [Span],
    /// The request-flow graph (nodes and edges for the tables, and for the fallback drawing).
    pub graph: &'a Graph,
    /// `dot -Tsvg` output of `graph.to_dot()` (see [`dot_to_svg`]); `None` draws the graph
    /// in Rust.
    pub graph_svg: Option<String>,
    /// The statistics, usually `serde_json::to_value(&analysis.stats)`; rendered generically.
    pub stats_json: serde_json::Value,
    /// Totals over all spans when `spans` holds only some traces (see
    /// [`collect::TraceCollector`]); `None` when `spans` is every span.
    pub totals: Option<&'a ReportTotals>,
}

impl<'a> ReportInput<'a> {
    /// The input for a whole analysis.
    pub fn from_analysis(
        title: &'a str,
        analysis: &'a Analysis,
        graph_svg: Option<String>,
    ) -> Self {
        ReportInput {
            title,
            spans: &analysis.spans,
            graph: &analysis.graph,
            graph_svg,
            stats_json: serde_json::to_value(&analysis.stats).unwrap_or(serde_json::Value::Null),
            totals: None,
        }
    }

    /// The input for streamed spans: the traces a [`TraceCollector`] kept, with the totals
    /// over every span it was given (services table, summary and header counts use the
    /// totals; the page notes how many traces were left out).
    pub fn from_collected(
        title: &'a str,
        collected: &'a Collected,
        graph: &'a Graph,
        graph_svg: Option<String>,
        stats_json: serde_json::Value,
    ) -> Self {
        ReportInput {
            title,
            spans: &collected.spans,
            graph,
            graph_svg,
            stats_json,
            totals: Some(&collected.totals),
        }
    }
}

/// Renders the report as one self-contained HTML document.
pub fn render_html(input: &ReportInput<'_>) -> String {
    let nodes: Vec<(String, u64, u64)> = input
        .graph
        .nodes()
        .map(|n| (n.name.clone(), n.requests, n.errors))
        .collect();
    let edges: Vec<tables::EdgeRow> = input
        .graph
        .edges()
        .map(|(from, to, e)| tables::EdgeRow {
            from: from.to_string(),
            to: to.to_string(),
            count: e.count,
            errors: e.errors,
            avg_ns: e.avg_ns,
            p50_ns: e.p50_ns,
            p99_ns: e.p99_ns,
        })
        .collect();
    let services = match input.totals {
        Some(t) => tables::service_rows_from_totals(&nodes, t),
        None => tables::service_rows(&nodes, input.spans),
    };
    let routes = match input.totals {
        Some(t) => tables::route_rows_from_totals(t),
        None => tables::route_rows(input.spans),
    };
    let databases = match input.totals {
        Some(t) => tables::db_rows_from_totals(t),
        None => tables::db_rows(input.spans),
    };
    let databases = tables::databases_html(&databases);
    let data = data::ReportData::from_spans(input.spans);
    // Serialising plain structs of strings and integers cannot fail; an empty data set
    // keeps the page working should it ever.
    let data_json = serde_json::to_string(&data)
        .unwrap_or_else(|_| String::from("{\"resources\":[],\"traces\":[]}"));
    let (graph_svg, by_graphviz) = match &input.graph_svg {
        Some(svg) => (svg.clone(), true),
        None => (svg::draw(&nodes, &edges), false),
    };
    let left_out_note = input.totals.and_then(ReportTotals::left_out_note);
    page::render(&page::Parts {
        title: input.title,
        graph_svg: &graph_svg,
        graph_by_graphviz: by_graphviz,
        services: &tables::services_html(&services),
        routes: &tables::routes_html(&routes),
        edges: &tables::edges_html(&edges),
        databases: databases.as_deref(),
        summary: &summary::summary_html_with_totals(input.spans, input.totals, &input.stats_json),
        data_json: &data_json,
        counts: (data.traces.len(), input.spans.len(), services.len()),
        all_counts: input.totals.map(|t| (t.traces, t.spans)),
        left_out_note: left_out_note.as_deref(),
    })
}
