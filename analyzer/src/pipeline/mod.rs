//! The incremental pipeline: record batches in, finished spans out.
//!
//! [`Pipeline`] runs every stage in order — reassemble → protocols → exchanges → spans →
//! enrichment → sampling → graph — over batches of records, keeping only a bounded time
//! window of state: an exchange is linked once the newest record seen (the watermark) is
//! the link delay past its start, its span is handed out once linked and answered, and
//! state a window older than that is evicted (counted). Live mode feeds recorder batches to
//! [`Pipeline::push`] and exports what [`Pipeline::drain_completed`] returns;
//! [`crate::analyze`] does the same over whole captures.
//!
//! Files: `front.rs` (reassembly and per-connection parsing: state of one connection
//! only), `back.rs` (linking, enrichment, graph, sampling: state shared across
//! connections), `split.rs` (the whole-input driver that runs the two on two threads).

use std::time::Duration;

use podtrace_format::Record;
use podtrace_model::Span;

use crate::stats::AnalysisStats;
use crate::{Analysis, AnalyzeOptions, Error, Graph};
use back::Back;
use front::{Absorbed, Front};

mod back;
mod front;
pub(crate) mod split;

/// Wall time spent in each stage of a [`Pipeline`] so far (benchmarks: see
/// `analyzer/examples/bench_stages.rs`). Measured per batch, so the clock costs nothing
/// per record; stages that run in parallel count their wall time, not CPU time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StageTimes {
    /// Records into per-connection byte streams ([`Reassembler`]).
    pub reassemble: Duration,
    /// Protocol parsing, request/response pairing and trace-context extraction
    /// (connections in parallel).
    pub parse: Duration,
    /// Exchange events handed to the linker, in order (serial).
    pub intake: Duration,
    /// Identification (parents, callers, ids) and span building (`Linker::link`).
    pub link: Duration,
    /// Kubernetes enrichment (spans in parallel).
    pub enrich: Duration,
    /// Graph, trace count and sampling of emitted spans (serial).
    pub graph: Duration,
    /// Eviction of idle connections and old exchanges.
    pub evict: Duration,
}

impl StageTimes {
    /// The sum of every stage.
    pub fn total(&self) -> Duration {
        self.reassemble
            + self.parse
            + self.intake
            + self.link
            + self.enrich
            + self.graph
            + self.evict
    }

    /// Stage by stage, the sum of two (the front's and the back's times).
    fn plus(&self, other: &StageTimes) -> StageTimes {
        StageTimes {
            reassemble: self.reassemble + other.reassemble,
            parse: self.parse + other.parse,
            intake: self.intake + other.intake,
            link: self.link + other.link,
            enrich: self.enrich + other.enrich,
            graph: self.graph + other.graph,
            evict: self.evict + other.evict,
        }
    }
}

/// The analyzer as a streaming pipeline (see the module doc): a [`Front`] (reassembly and
/// per-connection parsing) feeding a [`Back`] (linking, enrichment, graph) step by step.
/// Called directly they run one after the other on the caller's thread;
/// [`crate::analyze_into`] runs the back on a thread of its own ([`split`]).
#[derive(Debug)]
pub struct Pipeline {
    front: Front,
    back: Back,
}

impl Pipeline {
    /// A pipeline with validated options.
    pub fn new(opts: &AnalyzeOptions) -> Result<Self, Error> {
        if opts.window_ns == 0 {
            return Err(Error::Window);
        }
        Ok(Pipeline {
            back: Back::new(opts)?,
            front: Front::new(opts),
        })
    }

    /// Kubernetes objects given at analysis time (`podtrace analyze --k8s-objects`, e.g.
    /// `kubectl get pods,services,endpointslices -A -o json` taken later) for captures
    /// recorded without them: they name workloads where the capture's own `k8s_object`
    /// rows do not (the capture's rows win where both know an object; see
    /// `Enricher::add_fallback`).
    pub fn add_k8s_objects(&mut self, objects: &[podtrace_format::K8sObject]) {
        self.back.add_k8s_objects(objects);
    }

    /// The newest socket-row time seen.
    pub fn watermark(&self) -> u64 {
        self.front.watermark()
    }

    /// Takes a batch of records (any mix of types, any captures).
    pub fn push(&mut self, records: &[Record]) {
        let step = self.front.push(records);
        self.back.step(step);
    }

    /// Wall time spent in each stage so far.
    pub fn stage_times(&self) -> StageTimes {
        self.front.times.plus(&self.back.times)
    }

    /// Moves the watermark to `ts_ns` (wall clock) when no newer record has moved it: live
    /// mode calls it with "now" so the last exchanges of an idle period are emitted without
    /// waiting for more traffic.
    pub fn advance_to(&mut self, ts_ns: u64) {
        self.front.advance_to(ts_ns);
    }

    /// Spans of exchanges that started more than the link delay ago and have their
    /// response (sampled), and eviction of state a window older than that.
    pub fn drain_completed(&mut self) -> Vec<Span> {
        let step = self.front.drain();
        self.back.step(step).unwrap_or_default()
    }

    /// The summary so far (live mode can print it while running).
    pub fn stats(&self) -> AnalysisStats {
        self.back.stats(&self.front.stats)
    }

    /// The request-flow graph of the spans emitted so far.
    pub fn graph(&self) -> Graph {
        self.back.graph()
    }

    /// Ends the analysis: closes every stream, links and emits everything left, and returns
    /// the spans not drained before (sampled, sorted), the graph and the stats.
    pub fn finish(self) -> Analysis {
        self.finish_timed().0
    }

    /// [`Pipeline::finish`], also returning the wall time of each stage over the whole run.
    pub fn finish_timed(mut self) -> (Analysis, StageTimes) {
        let last = self.front.finish();
        finish_back(&self.front, self.back, last)
    }

    /// The two halves, for [`split`] to run on two threads.
    fn into_parts(self) -> (Front, Back) {
        (self.front, self.back)
    }
}

/// The end of an analysis once the front is done: the back takes the front's last parse
/// results, emits everything left; the analysis with its spans sorted.
fn finish_back(front: &Front, mut back: Back, last: Vec<Absorbed>) -> (Analysis, StageTimes) {
    let mut spans = back.finish(last);
    sort_spans(&mut spans);
    let stats = back.stats(&front.stats);
    (
        Analysis {
            spans,
            graph: back.graph(),
            stats,
        },
        front.times.plus(&back.times),
    )
}

/// The deterministic span order: start time, then trace id, then span id.
pub fn sort_spans(spans: &mut [Span]) {
    spans.sort_by(|a, b| {
        (a.start_time_unix_nano, a.trace_id, a.span_id).cmp(&(
            b.start_time_unix_nano,
            b.trace_id,
            b.span_id,
        ))
    });
}
