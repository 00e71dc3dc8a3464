//! The tail of the pipeline: identified exchanges → spans (built in parallel) →
//! Kubernetes enrichment → graph, trace count and sampling. It takes the back's
//! [`Handoff`]s in order: the enrichment facts (Kubernetes objects, listening sockets) in
//! the order the back met them, between the batches of exchanges it linked, so every
//! span is enriched with exactly what was known when the one-thread pipeline emitted it.

use std::collections::hash_map;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use foldhash::HashMap;
use podtrace_format::K8sObject;
use podtrace_model::{Span, TraceId};
use rayon::prelude::*;

use super::StageTimes;
use crate::details::SpanDetails;
use crate::enrich::Enricher;
use crate::graph::GraphBuilder;
use crate::sample::Sampler;
use crate::span::{build_all, Linked};
use crate::{AnalyzeOptions, Error, Graph};

/// Spans enriched by one parallel task at least (smaller batches are not worth a split).
const SPANS_PER_TASK: usize = 256;

/// What the back hands to the tail, in order.
#[derive(Debug)]
pub(super) enum Handoff {
    /// Kubernetes objects of a batch of records, in record order.
    K8s(Vec<K8sObject>),
    /// A server socket that answered requests: (listening address, default service).
    Listener(SocketAddr, String),
    /// Exchanges linked by one drain, in emit order (its last part, or all of it).
    Linked(Vec<Linked>),
    /// A part of a drain linked in parts, in emit order: its spans are handed out with
    /// the drain's [`Handoff::Linked`], in one batch.
    LinkedPart(Vec<Linked>),
    /// Trace ids whose newest span ended before this are forgotten (the window moved).
    Forget(u64),
}

/// Span building, enrichment, graph and sampling (see the module doc).
#[derive(Debug)]
pub(super) struct Tail {
    sampler: Sampler,
    /// Route and baggage settings of span building (and its counters).
    pub(super) details: Arc<SpanDetails>,
    pub(super) enricher: Enricher,
    graph: GraphBuilder,
    /// Trace ids seen within the window (→ newest span end), for the trace count.
    traces: HashMap<TraceId, u64>,
    pub(super) trace_count: u64,
    /// Spans built (before sampling).
    pub(super) spans: u64,
    /// Spans the sampler dropped.
    pub(super) sampled_out: u64,
    pub(super) times: StageTimes,
    /// The spans of the current drain's parts so far ([`Handoff::LinkedPart`]).
    parts: Vec<Vec<Span>>,
}

impl Tail {
    /// A tail for `opts` building spans with `details`.
    pub(super) fn new(opts: &AnalyzeOptions, details: Arc<SpanDetails>) -> Result<Self, Error> {
        Ok(Tail {
            sampler: Sampler::new(opts.sample_rate, opts.sampler_mode)?,
            details,
            enricher: Enricher::new(),
            graph: GraphBuilder::by(opts.graph_nodes),
            traces: HashMap::default(),
            trace_count: 0,
            spans: 0,
            sampled_out: 0,
            times: StageTimes::default(),
            parts: Vec::new(),
        })
    }

    /// Takes one handoff of the back; the last (or only) part of a drain returns the
    /// spans of its exchanges (sampled, in link order).
    pub(super) fn take(&mut self, handoff: Handoff) -> Option<Vec<Span>> {
        match handoff {
            Handoff::K8s(objects) => {
                for o in &objects {
                    self.enricher.add(o);
                }
                None
            }
            Handoff::Listener(local, name) => {
                self.enricher.note_listener(local, name);
                None
            }
            Handoff::LinkedPart(linked) => {
                let spans = self.emit(linked);
                self.parts.push(spans);
                None
            }
            Handoff::Linked(linked) => {
                let spans = self.emit(linked);
                if self.parts.is_empty() {
                    return Some(spans);
                }
                let mut parts = std::mem::take(&mut self.parts);
                parts.push(spans);
                Some(super::concat(parts))
            }
            Handoff::Forget(before) => {
                self.traces.retain(|_, end| *end >= before);
                None
            }
        }
    }

    /// Builds, enriches and counts linked exchanges; the sampled spans.
    #[inline(never)]
    fn emit(&mut self, linked: Vec<Linked>) -> Vec<Span> {
        let started = Instant::now();
        let mut built = build_all(linked, &self.details);
        let build_done = Instant::now();
        self.times.build += build_done - started;
        // Enrichment reads only shared lookup tables: in parallel.
        let enricher = &self.enricher;
        built
            .par_iter_mut()
            .with_min_len(SPANS_PER_TASK)
            .for_each(|s| enricher.enrich(s));
        let enriched = Instant::now();
        self.times.enrich += enriched - build_done;
        let mut out = Vec::with_capacity(built.len());
        for s in built {
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

    /// The request-flow graph of the spans emitted so far.
    pub(super) fn graph(&self) -> Graph {
        self.graph.build()
    }
}
