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
//! only), `back.rs` (intake and identification: the linker, state shared across
//! connections), `tail.rs` (span building, enrichment, graph, sampling), `split.rs` (the
//! whole-input driver that runs the back on a thread of its own).

use std::time::Duration;

use podtrace_format::Record;
use podtrace_model::Span;

use std::sync::Arc;

use crate::details::SpanDetails;
use crate::route::Routes;
use crate::stats::AnalysisStats;
use crate::{Analysis, AnalyzeOptions, Error, Graph};
use back::Back;
use front::{Absorbed, Front};
use tail::{Handoff, Tail};

mod back;
mod front;
pub mod parts;
pub(crate) mod split;
mod tail;

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
    /// Identification (parents, callers, ids: `Linker::link_unbuilt`, serial).
    pub link: Duration,
    /// Span building of identified exchanges (spans in parallel).
    pub build: Duration,
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
            + self.build
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
            build: self.build + other.build,
            enrich: self.enrich + other.enrich,
            graph: self.graph + other.graph,
            evict: self.evict + other.evict,
        }
    }
}

/// The analyzer as a streaming pipeline (see the module doc): a [`Front`] (reassembly and
/// per-connection parsing) feeding a [`Back`] (linking) feeding a [`Tail`] (span building,
/// enrichment, graph, sampling), step by step. Called directly they run one after the
/// other on the caller's thread; [`crate::analyze_into`] runs the back on a thread of its
/// own ([`split`]).
#[derive(Debug)]
pub struct Pipeline {
    front: Front,
    back: Back,
    tail: Tail,
    /// The back's handoffs not taken by the tail yet (always empty between calls).
    handoffs: Vec<Handoff>,
}

impl Pipeline {
    /// A pipeline with validated options.
    pub fn new(opts: &AnalyzeOptions) -> Result<Self, Error> {
        if opts.window_ns == 0 {
            return Err(Error::Window);
        }
        let details = Arc::new(SpanDetails::new(
            Routes::parse(&opts.routes)?,
            opts.baggage_attributes,
        ));
        Ok(Pipeline {
            tail: Tail::new(opts, details.clone())?,
            back: Back::new(opts.window_ns, details),
            front: Front::new(opts),
            handoffs: Vec::new(),
        })
    }

    /// Kubernetes objects given at analysis time (`podtrace analyze --k8s-objects`, e.g.
    /// `kubectl get pods,services,endpointslices -A -o json` taken later) for captures
    /// recorded without them: they name workloads where the capture's own `k8s_object`
    /// rows do not (the capture's rows win where both know an object; see
    /// `Enricher::add_fallback`).
    pub fn add_k8s_objects(&mut self, objects: &[podtrace_format::K8sObject]) {
        self.tail.enricher.add_fallback(objects);
    }

    /// The newest socket-row time seen.
    pub fn watermark(&self) -> u64 {
        self.front.watermark()
    }

    /// Takes a batch of records (any mix of types, any captures).
    pub fn push(&mut self, records: &[Record]) {
        let step = self.front.push(records);
        let handoffs = &mut self.handoffs;
        self.back.step(step, &mut |mut h| handoffs.append(&mut h));
        self.take_handoffs();
    }

    /// The tail takes what the back handed out; the spans of linked exchanges.
    fn take_handoffs(&mut self) -> Vec<Span> {
        let mut out = Vec::new();
        for h in self.handoffs.drain(..) {
            if let Some(mut spans) = self.tail.take(h) {
                out.append(&mut spans);
            }
        }
        out
    }

    /// Wall time spent in each stage so far.
    pub fn stage_times(&self) -> StageTimes {
        times_of(self.front.times, &self.back, &self.tail)
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
        let handoffs = &mut self.handoffs;
        self.back.step(step, &mut |mut h| handoffs.append(&mut h));
        self.take_handoffs()
    }

    /// The summary so far (live mode can print it while running).
    pub fn stats(&self) -> AnalysisStats {
        stats_of(&self.front.stats, &self.back, &self.tail)
    }

    /// The request-flow graph of the spans emitted so far.
    pub fn graph(&self) -> Graph {
        self.tail.graph()
    }

    /// Ends the analysis: closes every stream, links and emits everything left, and returns
    /// the spans not drained before (sampled, sorted), the graph and the stats.
    pub fn finish(self) -> Analysis {
        self.finish_timed().0
    }

    /// [`Pipeline::finish`], also returning the wall time of each stage over the whole run.
    pub fn finish_timed(mut self) -> (Analysis, StageTimes) {
        let last = self.front.finish();
        finish_parts(
            &self.front.stats,
            self.front.times,
            self.back,
            self.tail,
            last,
        )
    }

    /// The three parts, for [`split`] to run on two threads.
    fn into_parts(self) -> (Front, Back, Tail) {
        (self.front, self.back, self.tail)
    }
}

/// The end of an analysis once the front is done: the back takes the front's last parse
/// results and links everything left, the tail builds it; the analysis with its spans
/// sorted. `front_stats` and `front_times` are the front's counters and stage times.
fn finish_parts(
    front_stats: &AnalysisStats,
    front_times: StageTimes,
    mut back: Back,
    mut tail: Tail,
    last: Vec<Absorbed>,
) -> (Analysis, StageTimes) {
    let mut handoffs = Vec::new();
    back.finish(last, |mut h| handoffs.append(&mut h));
    let runs: Vec<Vec<Span>> = handoffs.into_iter().filter_map(|h| tail.take(h)).collect();
    end_parts(front_stats, front_times, &back, &tail, concat(runs))
}

/// The spans of `runs` in one list, moved once each (the list allocated at its size
/// instead of grown, and its spans moved again, run after run).
fn concat(runs: Vec<Vec<Span>>) -> Vec<Span> {
    if runs.len() == 1 {
        return runs.into_iter().next().unwrap_or_default();
    }
    let mut spans = Vec::with_capacity(runs.iter().map(Vec::len).sum());
    for mut run in runs {
        spans.append(&mut run);
    }
    spans
}

/// The analysis once the back is finished and the tail took all it handed out: `spans`
/// (the spans of the back's last handoffs) sorted, the graph, the stats and the stage
/// times.
fn end_parts(
    front_stats: &AnalysisStats,
    front_times: StageTimes,
    back: &Back,
    tail: &Tail,
    mut spans: Vec<Span>,
) -> (Analysis, StageTimes) {
    sort_spans(&mut spans);
    (
        Analysis {
            spans,
            graph: tail.graph(),
            stats: stats_of(front_stats, back, tail),
        },
        times_of(front_times, back, tail),
    )
}

/// The summary: the front's counters with the back's and the tail's filled in.
fn stats_of(front_stats: &AnalysisStats, back: &Back, tail: &Tail) -> AnalysisStats {
    let mut stats = front_stats.clone();
    back.add_stats(&mut stats);
    stats.spans = tail.spans;
    stats.sampled_out = tail.sampled_out;
    stats.traces = tail.trace_count;
    for (key, n) in tail.details.skipped() {
        stats.ignored_headers.insert(key.to_string(), n);
    }
    let (objects, bad) = tail.enricher.counts();
    stats.k8s_objects = objects;
    stats.bad_k8s_objects = bad;
    stats
}

/// Each stage's time: the sum over the three parts (each stage runs in one of them).
fn times_of(front_times: StageTimes, back: &Back, tail: &Tail) -> StageTimes {
    front_times.plus(&back.times).plus(&tail.times)
}

/// The deterministic span order: start time, then trace id, then span id (stable: equal
/// keys keep their order). The keys are sorted with the spans' positions and the spans
/// then moved once each, instead of the merges moving whole spans again and again.
pub fn sort_spans(spans: &mut [Span]) {
    spans.sort_by_cached_key(|s| (s.start_time_unix_nano, s.trace_id, s.span_id));
}
