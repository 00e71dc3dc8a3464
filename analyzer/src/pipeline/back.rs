//! The back of the pipeline: exchange events → linker (intake, identification, span
//! building) → Kubernetes enrichment → graph, trace count and sampling. It holds the
//! state shared across connections and takes the front's [`Step`]s in order.

use std::collections::{hash_map, BTreeMap};
use std::sync::Arc;
use std::time::Instant;

use foldhash::HashMap;
use podtrace_model::{Span, TraceId};
use rayon::prelude::*;

use super::front::{Absorbed, Step};
use super::StageTimes;
use crate::details::SpanDetails;
use crate::enrich::Enricher;
use crate::graph::GraphBuilder;
use crate::route::Routes;
use crate::sample::Sampler;
use crate::span::Linker;
use crate::stats::AnalysisStats;
use crate::{AnalyzeOptions, Error, Graph};

/// Spans enriched by one parallel task at least (smaller batches are not worth a split).
const SPANS_PER_TASK: usize = 256;

/// Linking, enrichment, graph and sampling (see the module doc).
#[derive(Debug)]
pub(super) struct Back {
    sampler: Sampler,
    linker: Linker,
    /// Route and baggage settings the linker's span builder uses (and its counters).
    details: Arc<SpanDetails>,
    enricher: Enricher,
    graph: GraphBuilder,
    /// Trace ids seen within the window (→ newest span end), for the trace count.
    traces: HashMap<TraceId, u64>,
    trace_count: u64,
    /// Parse errors by reason.
    parse_errors: BTreeMap<String, u64>,
    /// Spans linked (before sampling).
    spans: u64,
    /// Spans the sampler dropped.
    sampled_out: u64,
    pub(super) times: StageTimes,
}

impl Back {
    /// A back for `opts` (routes and sample rate checked here).
    pub(super) fn new(opts: &AnalyzeOptions) -> Result<Self, Error> {
        let details = Arc::new(SpanDetails::new(
            Routes::parse(&opts.routes)?,
            opts.baggage_attributes,
        ));
        let mut linker = Linker::with_window(opts.window_ns);
        linker.set_details(details.clone());
        Ok(Back {
            sampler: Sampler::new(opts.sample_rate, opts.sampler_mode)?,
            linker,
            details,
            enricher: Enricher::new(),
            graph: GraphBuilder::by(opts.graph_nodes),
            traces: HashMap::default(),
            trace_count: 0,
            parse_errors: BTreeMap::new(),
            spans: 0,
            sampled_out: 0,
            times: StageTimes::default(),
        })
    }

    /// Kubernetes objects given at analysis time (see `Pipeline::add_k8s_objects`).
    pub(super) fn add_k8s_objects(&mut self, objects: &[podtrace_format::K8sObject]) {
        self.enricher.add_fallback(objects);
    }

    /// Takes one step of the front; a drain step returns the spans it emitted (sampled,
    /// in link order).
    pub(super) fn step(&mut self, step: Step) -> Option<Vec<Span>> {
        match step {
            Step::Intake { k8s, absorbed } => {
                let started = Instant::now();
                for o in &k8s {
                    self.enricher.add(o);
                }
                for a in absorbed {
                    self.apply(a);
                }
                self.times.intake += started.elapsed();
                None
            }
            Step::Drain { cutoff, evict } => {
                let out = self.emit(cutoff);
                if let Some((before, idle)) = evict {
                    let started = Instant::now();
                    for a in idle {
                        self.apply(a);
                    }
                    self.linker.evict(before);
                    self.traces.retain(|_, end| *end >= before);
                    self.times.evict += started.elapsed();
                }
                Some(out)
            }
        }
    }

    /// Applies one connection's parse results to the shared stages, in order.
    fn apply(&mut self, absorbed: Absorbed) {
        for e in &absorbed.errors {
            *self.parse_errors.entry((*e).to_string()).or_default() += 1;
        }
        if let Some((local, name)) = absorbed.listener {
            self.enricher.note_listener(local, name);
        }
        for (ev, extraction) in absorbed.events.into_iter().zip(absorbed.extractions) {
            self.linker.on_event_extracted(ev, extraction);
        }
    }

    /// Links, enriches and counts the exchanges that started before `cutoff`; the
    /// sampled spans.
    #[inline(never)]
    fn emit(&mut self, cutoff: u64) -> Vec<Span> {
        let started = Instant::now();
        let mut linked = self.linker.link(cutoff);
        let link_done = Instant::now();
        self.times.link += link_done - started;
        // Enrichment reads only shared lookup tables: in parallel.
        let enricher = &self.enricher;
        linked
            .par_iter_mut()
            .with_min_len(SPANS_PER_TASK)
            .for_each(|s| enricher.enrich(s));
        let enriched = Instant::now();
        self.times.enrich += enriched - link_done;
        let mut out = Vec::with_capacity(linked.len());
        for s in linked {
            self.graph.add(&s);
            let end = s.span.end_time_unix_nano;
            match self.traces.entry(s.span.trace_id) {
                hash_map::Entry::Occupied(mut e) => {
                    let seen = e.get_mut();
                    *seen = (*seen).max(end);
                }
                hash_map::Entry::Vacant(e) => {
                    e.insert(end);
                    self.trace_count += 1;
                }
            }
            self.spans += 1;
            if self.sampler.keeps(&s.span) {
                out.push(s.span);
            } else {
                self.sampled_out += 1;
            }
        }
        self.times.graph += enriched.elapsed();
        out
    }

    /// The end of the analysis: the front's last parse results applied, everything
    /// linked and emitted (spans in link order), the linker emptied.
    pub(super) fn finish(&mut self, last: Vec<Absorbed>) -> Vec<Span> {
        let started = Instant::now();
        for a in last {
            self.apply(a);
        }
        self.times.intake += started.elapsed();
        let spans = self.emit(u64::MAX);
        let started = Instant::now();
        self.linker.evict(u64::MAX);
        self.times.evict += started.elapsed();
        spans
    }

    /// The summary: the front's counters (`front`) with the back's filled in.
    pub(super) fn stats(&self, front: &AnalysisStats) -> AnalysisStats {
        let link = self.linker.stats();
        let mut stats = front.clone();
        stats.parse_errors = self.parse_errors.clone();
        stats.spans = self.spans;
        stats.sampled_out = self.sampled_out;
        stats.exchanges = link.exchanges;
        stats.traces = self.trace_count;
        stats.orphans = link.orphans;
        stats.ambiguous_parents = link.ambiguous_parents;
        stats.adopted_traces = link.adopted_traces;
        stats.duplicate_span_ids = link.duplicate_ids;
        stats.unmatched_requests = link.unmatched_requests;
        stats.unmatched_responses = link.unmatched_responses;
        stats.evictions.requests = link.evicted_requests;
        stats.ignored_headers = link
            .ignored_headers
            .iter()
            .map(|((f, r), n)| (format!("{f}/{r}"), *n))
            .collect::<BTreeMap<_, _>>();
        for (key, n) in self.details.skipped() {
            stats.ignored_headers.insert(key.to_string(), n);
        }
        let (objects, bad) = self.enricher.counts();
        stats.k8s_objects = objects;
        stats.bad_k8s_objects = bad;
        stats
    }

    /// The request-flow graph of the spans emitted so far.
    pub(super) fn graph(&self) -> Graph {
        self.graph.build()
    }
}
