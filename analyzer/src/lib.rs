//! # podtrace-analyzer — captures to spans, traces and a request-flow graph
//!
//! Pure functions over capture records ([`podtrace_format::Record`]): no network, no
//! terminal, no kernel access. The stages follow the data:
//!
//! `reassemble` (per-connection byte streams) → `protocol` (detection, then
//! [`http1`] / [`http2`] / Redis / PostgreSQL / MySQL messages as protocol-neutral events)
//! → `exchange` (request ↔ response) → `context` (W3C / B3 / Splunk / Jaeger headers) →
//! `span` (spans and parent links; names from [`route`]s) → `enrich` (Kubernetes
//! workloads) → `sample` (trace-id ratio) → [`graph`] (who calls whom). The stages are
//! private to the crate; [`internals`] exposes the parsers for fuzzing and tests.
//! [`Pipeline`] runs them incrementally over record batches (live mode); [`analyze`] runs
//! them over whole captures. Exporters live in `podtrace-export`; this crate does not send
//! anything.
//!
//! The same input and options always give the same output: ids podtrace invents are hashes
//! of stable inputs, and spans come out in a fixed order.
//!
//! ```
//! use podtrace_analyzer::{analyze, AnalyzeOptions};
//! let analysis = analyze(std::iter::empty(), &AnalyzeOptions::default()).unwrap();
//! assert!(analysis.spans.is_empty());
//! assert!(analysis.graph.to_dot().starts_with("digraph"));
//! ```

#![warn(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)
)]

// The stages are the crate's own; what other crates use is re-exported below, and what
// the fuzz targets, benchmarks and protocol-level tests reach into is in `internals`.
pub(crate) mod baggage;
pub(crate) mod context;
pub(crate) mod details;
pub(crate) mod enrich;
pub(crate) mod exchange;
pub mod graph;
pub mod pipeline;
pub(crate) mod protocol;
pub(crate) mod reassemble;
pub mod route;
pub(crate) mod sample;
pub(crate) mod span;
pub mod stats;

use podtrace_format::Record;
use podtrace_model::Span;

pub use graph::{Graph, GraphNodes};
pub use pipeline::{Pipeline, StageTimes};
pub use protocol::{http1, http2, QueryText};
pub use route::RouteError;
pub use sample::{InvalidRate, SamplerMode};
pub use stats::AnalysisStats;

/// The building blocks under [`analyze`], for the fuzz targets (`fuzz/`), benchmarks and
/// protocol-level tests: the TCP reassembler, the protocol parsers behind one interface
/// ([`internals::Protocol`], [`internals::ConnectionParser`]) and the trace-context
/// extractor. Not a stable interface: the stages behind it change with the analyzer.
pub mod internals {
    pub use crate::context::extract;
    pub use crate::protocol::{
        dispatch, first_bytes, http, http1, http2, mysql, postgres, redis, sql, ConnectionParser,
        Detection, Limits, MessageEvent, Output, Protocol, QueryText, Request, RequestDetail,
        Response, ResponseDetail, Start,
    };
    pub use crate::reassemble::{segments_of, Reassembler, Segment};
}

/// Errors of the analyzer (bad options; bad input data is counted, not an error).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The sample rate is outside 0.0–1.0.
    #[error(transparent)]
    SampleRate(#[from] sample::InvalidRate),
    /// A user route (`--route`) that cannot be used.
    #[error(transparent)]
    Route(#[from] route::RouteError),
    /// The time window must be positive.
    #[error("the analysis time window must be greater than zero")]
    Window,
    /// Span serialisation failed.
    #[error("serialising spans: {0}")]
    Json(#[from] serde_json::Error),
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Options of an analysis.
#[derive(Debug, Clone, PartialEq)]
pub struct AnalyzeOptions {
    /// Fraction of traces kept, 0.0–1.0 (trace-id ratio).
    pub sample_rate: f64,
    /// Whether a propagated "not sampled" decision also drops spans.
    pub sampler_mode: SamplerMode,
    /// State older than this (relative to the newest record) is linked, emitted and then
    /// evicted; it bounds memory. Exchanges longer than this, or inputs out of time order
    /// by more than this, lose links (counted as evictions / late records).
    pub window_ns: u64,
    /// An exchange is linked, and its span handed out, once the newest record is this far
    /// past its request start: room for clock skew and reordering between the sockets of
    /// one exchange (capped at `window_ns`). Live mode sees spans this long after they end.
    pub link_delay_ns: u64,
    /// HTTP/1 parser bounds.
    pub limits: http1::Limits,
    /// Graph nodes: services (default) or pods.
    pub graph_nodes: GraphNodes,
    /// User route templates (`/order/{id}`, see [`route`]): they win over inferred routes
    /// for span names and `http.route`.
    pub routes: Vec<String>,
    /// W3C `baggage` entries become `baggage.<key>` span attributes (off: baggage can
    /// carry user data).
    pub baggage_attributes: bool,
    /// What database spans keep of the query (`db.query.text`): sanitized by default.
    pub db_query_text: QueryText,
}

impl Default for AnalyzeOptions {
    fn default() -> Self {
        AnalyzeOptions {
            sample_rate: 1.0,
            sampler_mode: SamplerMode::TraceIdRatio,
            window_ns: 120 * 1_000_000_000,
            link_delay_ns: 2 * 1_000_000_000,
            limits: http1::Limits::default(),
            graph_nodes: GraphNodes::Services,
            routes: Vec::new(),
            baggage_attributes: false,
            db_query_text: QueryText::Sanitized,
        }
    }
}

/// Everything an analysis produced.
#[derive(Debug, Clone)]
pub struct Analysis {
    /// The sampled spans, in a deterministic order (start time, trace id, span id).
    pub spans: Vec<Span>,
    /// The request-flow graph (of all spans, before sampling).
    pub graph: Graph,
    /// The summary.
    pub stats: AnalysisStats,
}

/// Records pushed to the pipeline at once by [`analyze`].
const BATCH: usize = 8192;

/// Analyses records (from any number of captures; for traces that span captures, feed
/// them merged by time, e.g. with [`merge_by_time`]) and returns every sampled span, sorted.
/// Holds all spans: for large captures use [`analyze_into`].
pub fn analyze(records: impl Iterator<Item = Record>, opts: &AnalyzeOptions) -> Result<Analysis> {
    let mut spans = Vec::new();
    let mut analysis = analyze_into(
        Pipeline::new(opts)?,
        records,
        |mut batch| -> std::result::Result<(), std::convert::Infallible> {
            spans.append(&mut batch);
            Ok(())
        },
    )
    .unwrap_or_else(|never| match never {});
    pipeline::sort_spans(&mut spans);
    analysis.spans = spans;
    Ok(analysis)
}

/// Runs `pipeline` over `records` and hands the sampled spans to `sink` batch by batch as
/// they complete, each batch in the deterministic span order ([`pipeline::sort_spans`]),
/// instead of collecting them: memory stays bounded by the pipeline's window whatever the
/// size of the input. Batches follow fixed record counts, so the same input gives the same
/// batches. Stops at the first error of `sink`. The returned analysis has no spans (they
/// went to `sink`); its graph and stats cover everything. With more than one rayon thread
/// the linking half of the pipeline runs on a thread of its own beside the parsing half
/// (`pipeline::split`); the output is the same for any thread count.
pub fn analyze_into<E>(
    pipeline: Pipeline,
    records: impl Iterator<Item = Record>,
    sink: impl FnMut(Vec<Span>) -> std::result::Result<(), E>,
) -> std::result::Result<Analysis, E> {
    analyze_into_timed(pipeline, records, sink).map(|(analysis, _)| analysis)
}

/// [`analyze_into`], also returning the wall time of each stage ([`StageTimes`]; with
/// more than one rayon thread the front stages — reassemble, parse — and the back ones —
/// intake, link, enrich, graph — run at the same time, on two threads).
pub fn analyze_into_timed<E>(
    pipeline: Pipeline,
    records: impl Iterator<Item = Record>,
    mut sink: impl FnMut(Vec<Span>) -> std::result::Result<(), E>,
) -> std::result::Result<(Analysis, StageTimes), E> {
    let hand_out = |mut spans: Vec<Span>| {
        if spans.is_empty() {
            return Ok(());
        }
        pipeline::sort_spans(&mut spans);
        sink(spans)
    };
    pipeline::split::run(pipeline, records, hand_out)
}

/// Merges per-capture record iterators (each in time order) into one in time order;
/// ties keep the input order of the iterators. O(log k) per record for k inputs.
pub fn merge_by_time<I>(inputs: Vec<I>) -> impl Iterator<Item = Record>
where
    I: Iterator<Item = Record>,
{
    merge_by_time_tagged(inputs).map(|(_, r)| r)
}

/// [`merge_by_time`], each record with the index of its input (the same order).
pub fn merge_by_time_tagged<I>(inputs: Vec<I>) -> impl Iterator<Item = (usize, Record)>
where
    I: Iterator<Item = Record>,
{
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    let mut iters = inputs;
    let mut heads: Vec<Option<Record>> = Vec::with_capacity(iters.len());
    let mut heap = BinaryHeap::new();
    for (i, it) in iters.iter_mut().enumerate() {
        let head = it.next();
        if let Some(r) = &head {
            heap.push(Reverse((r.ts_ns(), i)));
        }
        heads.push(head);
    }
    std::iter::from_fn(move || {
        let Reverse((_, i)) = heap.pop()?;
        let out = heads[i].take();
        if let Some(next) = iters[i].next() {
            heap.push(Reverse((next.ts_ns(), i)));
            heads[i] = Some(next);
        }
        out.map(|r| (i, r))
    })
}

/// Spans as pretty JSON for golden files: grouped by trace (trace id, start, span id).
pub fn spans_to_json(spans: &[Span]) -> Result<String> {
    let mut sorted: Vec<&Span> = spans.iter().collect();
    // At equal times the CLIENT span (the sender) comes before the SERVER span.
    let side = |s: &Span| u8::from(s.kind == podtrace_model::SpanKind::Server);
    sorted.sort_by(|a, b| {
        (a.trace_id, a.start_time_unix_nano, side(a), a.span_id).cmp(&(
            b.trace_id,
            b.start_time_unix_nano,
            side(b),
            b.span_id,
        ))
    });
    let mut s = serde_json::to_string_pretty(&sorted)?;
    s.push('\n');
    Ok(s)
}

#[cfg(test)]
mod tests {
    use podtrace_format::{Record, Stat};

    #[test]
    fn merge_by_time_orders_across_inputs_and_keeps_ties_stable() {
        let stat = |ts: u64, name: &str| {
            Record::Stats(Stat {
                ts_ns: ts,
                cpu: None,
                name: name.into(),
                value: 0,
            })
        };
        let a = vec![stat(1, "a1"), stat(5, "a5"), stat(5, "a5b"), stat(9, "a9")];
        let b = vec![stat(2, "b2"), stat(5, "b5"), stat(6, "b6")];
        let c: Vec<Record> = vec![];
        let merged: Vec<String> =
            super::merge_by_time(vec![a.into_iter(), b.into_iter(), c.into_iter()])
                .map(|r| match r {
                    Record::Stats(s) => s.name,
                    _ => String::new(),
                })
                .collect();
        assert_eq!(merged, ["a1", "b2", "a5", "a5b", "b5", "b6", "a9"]);
    }

    #[test]
    fn pipeline_can_move_to_another_thread() {
        fn send<T: Send>() {}
        send::<super::Pipeline>();
        send::<super::Analysis>();
    }
}
