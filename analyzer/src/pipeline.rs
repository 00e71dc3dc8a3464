//! The incremental pipeline: record batches in, finished spans out.
//!
//! [`Pipeline`] runs every stage in order — reassemble → protocols → exchanges → spans →
//! enrichment → sampling → graph — over batches of records, keeping only a bounded time
//! window of state: an exchange is linked once the newest record seen (the watermark) is
//! the link delay past its start, its span is handed out once linked and answered, and
//! state a window older than that is evicted (counted). Live mode feeds recorder batches to
//! [`Pipeline::push`] and exports what [`Pipeline::drain_completed`] returns;
//! [`crate::analyze`] does the same over whole captures.

use std::collections::{hash_map, BTreeMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use foldhash::HashMap;
use podtrace_format::{counters, Record, Role};
use podtrace_model::{Span, TraceId};
use rayon::prelude::*;

use crate::context::Extraction;
use crate::details::SpanDetails;
use crate::enrich::Enricher;
use crate::exchange::{ExchangeEvent, Pairing};
use crate::graph::GraphBuilder;
use crate::protocol::{self, ConnectionParser, Output};
use crate::reassemble::{ConnInfo, ConnKey, ConnectionDelta, Reassembler};
use crate::route::Routes;
use crate::sample::Sampler;
use crate::span::{default_service_name, request_context, Linker};
use crate::stats::AnalysisStats;
use crate::{Analysis, AnalyzeOptions, Error, Graph};

/// Spans enriched by one parallel task at least (smaller batches are not worth a split).
const SPANS_PER_TASK: usize = 256;

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
}

/// Parsing state of one live connection.
#[derive(Debug)]
struct ConnState {
    info: Arc<ConnInfo>,
    parser: ConnectionParser,
    pairing: Pairing,
    last_ts: u64,
}

/// The analyzer as a streaming pipeline (see the module doc).
#[derive(Debug)]
pub struct Pipeline {
    opts: AnalyzeOptions,
    sampler: Sampler,
    reassembler: Reassembler,
    conns: HashMap<ConnKey, ConnState>,
    linker: Linker,
    /// Route and baggage settings the linker's span builder uses (and its counters).
    details: Arc<SpanDetails>,
    enricher: Enricher,
    graph: GraphBuilder,
    /// Trace ids seen within the window (→ newest span end), for the trace count.
    traces: HashMap<TraceId, u64>,
    trace_count: u64,
    stats: AnalysisStats,
    watermark: u64,
    times: StageTimes,
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
        let mut linker = Linker::with_window(opts.window_ns);
        linker.set_details(details.clone());
        Ok(Pipeline {
            opts: opts.clone(),
            sampler: Sampler::new(opts.sample_rate, opts.sampler_mode)?,
            reassembler: Reassembler::new(),
            conns: HashMap::default(),
            linker,
            details,
            enricher: Enricher::new(),
            graph: GraphBuilder::by(opts.graph_nodes),
            traces: HashMap::default(),
            trace_count: 0,
            stats: AnalysisStats::default(),
            watermark: 0,
            times: StageTimes::default(),
        })
    }

    /// Kubernetes objects given at analysis time (`podtrace analyze --k8s-objects`, e.g.
    /// `kubectl get pods,services,endpointslices -A -o json` taken later) for captures
    /// recorded without them: they name workloads where the capture's own `k8s_object`
    /// rows do not (the capture's rows win where both know an object; see
    /// `Enricher::add_fallback`).
    pub fn add_k8s_objects(&mut self, objects: &[podtrace_format::K8sObject]) {
        self.enricher.add_fallback(objects);
    }

    /// The newest socket-row time seen.
    pub fn watermark(&self) -> u64 {
        self.watermark
    }

    /// Takes a batch of records (any mix of types, any captures).
    pub fn push(&mut self, records: &[Record]) {
        let started = Instant::now();
        let cutoff = self.cutoff();
        for r in records {
            self.stats.records += 1;
            match r {
                Record::SocketData(d) => {
                    self.note_time(d.meta.ts_ns, cutoff);
                    self.reassembler.push_data(d);
                }
                Record::SocketOpen(e) => {
                    self.note_time(e.meta.ts_ns, cutoff);
                    self.reassembler.push_open(e);
                }
                Record::SocketClose(e) => {
                    self.note_time(e.meta.ts_ns, cutoff);
                    self.reassembler.push_close(e);
                }
                Record::K8sObject(o) => self.enricher.add(o),
                Record::Stats(s) => {
                    if s.cpu.is_none() && counters::KERNEL_DROPS.contains(&s.name.as_str()) {
                        let v = self.stats.recorder_drops.entry(s.name.clone()).or_default();
                        *v = (*v).max(s.value);
                    }
                }
            }
        }
        let ready = self.reassembler.take_ready();
        self.stats.tls_ciphertext_skipped = self.reassembler.tls_ciphertext_skipped();
        self.times.reassemble += started.elapsed();
        self.process(ready);
    }

    /// Wall time spent in each stage so far.
    pub fn stage_times(&self) -> StageTimes {
        self.times
    }

    /// Moves the watermark to `ts_ns` (wall clock) when no newer record has moved it: live
    /// mode calls it with "now" so the last exchanges of an idle period are emitted without
    /// waiting for more traffic.
    pub fn advance_to(&mut self, ts_ns: u64) {
        self.watermark = self.watermark.max(ts_ns);
    }

    fn note_time(&mut self, ts: u64, cutoff: u64) {
        if ts < cutoff {
            self.stats.late_records += 1;
        }
        self.watermark = self.watermark.max(ts);
    }

    /// Exchanges that started before this are linked and emitted.
    fn cutoff(&self) -> u64 {
        let delay = self.opts.link_delay_ns.min(self.opts.window_ns);
        self.watermark.saturating_sub(delay)
    }

    /// Parses the new stream pieces (connections in parallel), pairs and links.
    fn process(&mut self, deltas: Vec<ConnectionDelta>) {
        if deltas.is_empty() {
            return;
        }
        let started = Instant::now();
        let mut work: Vec<(ConnState, ConnectionDelta)> = deltas
            .into_iter()
            .map(|d| {
                let state = self.conns.remove(&d.info.key).unwrap_or_else(|| {
                    self.stats.connections += 1;
                    ConnState {
                        info: Arc::new(d.info.clone()),
                        parser: ConnectionParser::new(
                            d.info.role,
                            d.info.key.local,
                            d.info.key.remote,
                            protocol::Limits {
                                http1: self.opts.limits,
                                db_query_text: self.opts.db_query_text,
                                ..protocol::Limits::default()
                            },
                        ),
                        pairing: Pairing::new(),
                        last_ts: d.last_ts,
                    }
                });
                (state, d)
            })
            .collect();
        // Parsing and pairing touch only the connection's own state: in parallel. What
        // they produce is applied to the shared stages below in delta order.
        let absorbed: Vec<Absorbed> = work
            .par_iter_mut()
            .map(|(state, d)| {
                if d.info.role != Role::Unknown {
                    state.parser.set_role(d.info.role);
                }
                state.last_ts = state.last_ts.max(d.last_ts);
                if d.info.tls && !state.info.tls {
                    // TLS plaintext arrived after the connection's first rows
                    state.info = Arc::new(d.info.clone());
                }
                let parsed = state.parser.feed(&d.egress, &d.ingress, d.closed);
                prepare(state, parsed, d.closed)
            })
            .collect();
        let parsed = Instant::now();
        self.times.parse += parsed - started;
        for ((state, d), absorbed) in work.into_iter().zip(absorbed) {
            self.apply(absorbed);
            if !d.closed {
                self.conns.insert(d.info.key, state);
            }
        }
        self.times.intake += parsed.elapsed();
    }

    /// Parses what is left of a connection that ends and applies it.
    fn absorb(&mut self, state: &mut ConnState, parsed: Output, closed: bool) {
        let absorbed = prepare(state, parsed, closed);
        self.apply(absorbed);
    }

    /// Applies one connection's parse results to the shared stages, in order.
    fn apply(&mut self, absorbed: Absorbed) {
        for e in &absorbed.errors {
            *self.stats.parse_errors.entry((*e).to_string()).or_default() += 1;
        }
        if let Some((local, name)) = absorbed.listener {
            self.enricher.note_listener(local, name);
        }
        for (ev, extraction) in absorbed.events.into_iter().zip(absorbed.extractions) {
            self.linker.on_event_extracted(ev, extraction);
        }
    }

    /// Spans of exchanges that started more than the link delay ago and have their
    /// response (sampled), and eviction of state a window older than that.
    pub fn drain_completed(&mut self) -> Vec<Span> {
        let cutoff = self.cutoff();
        let out = self.emit(cutoff);
        let old = cutoff.saturating_sub(self.opts.window_ns);
        if old > 0 {
            let started = Instant::now();
            self.evict(old);
            self.times.evict += started.elapsed();
        }
        out
    }

    fn evict(&mut self, before: u64) {
        let idle: Vec<ConnKey> = self
            .conns
            .iter()
            .filter(|(_, s)| s.last_ts < before)
            .map(|(k, _)| *k)
            .collect();
        let mut idle_sorted = idle;
        idle_sorted.sort();
        for key in idle_sorted {
            if let Some(mut state) = self.conns.remove(&key) {
                self.stats.evictions.connections += 1;
                let parsed = state.parser.finish();
                self.absorb(&mut state, parsed, true);
            }
        }
        self.reassembler.evict_idle(before);
        self.linker.evict(before);
        self.traces.retain(|_, end| *end >= before);
    }

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
            self.stats.spans += 1;
            if self.sampler.keeps(&s.span) {
                out.push(s.span);
            } else {
                self.stats.sampled_out += 1;
            }
        }
        self.times.graph += enriched.elapsed();
        out
    }

    /// The summary so far (live mode can print it while running).
    pub fn stats(&self) -> AnalysisStats {
        let link = self.linker.stats();
        let mut stats = self.stats.clone();
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
    pub fn graph(&self) -> Graph {
        self.graph.build()
    }

    /// Ends the analysis: closes every stream, links and emits everything left, and returns
    /// the spans not drained before (sampled, sorted), the graph and the stats.
    pub fn finish(self) -> Analysis {
        self.finish_timed().0
    }

    /// [`Pipeline::finish`], also returning the wall time of each stage over the whole run.
    pub fn finish_timed(mut self) -> (Analysis, StageTimes) {
        let remaining = self.reassembler.take_ready();
        self.stats.tls_ciphertext_skipped = self.reassembler.tls_ciphertext_skipped();
        self.process(remaining);
        let started = Instant::now();
        let mut keys: Vec<ConnKey> = self.conns.keys().copied().collect();
        keys.sort();
        for key in keys {
            if let Some(mut state) = self.conns.remove(&key) {
                let parsed = state.parser.finish();
                self.absorb(&mut state, parsed, true);
            }
        }
        self.times.parse += started.elapsed();
        let mut spans = self.emit(u64::MAX);
        let started = Instant::now();
        self.linker.evict(u64::MAX);
        self.times.evict += started.elapsed();
        sort_spans(&mut spans);
        let stats = self.stats();
        (
            Analysis {
                spans,
                graph: self.graph.build(),
                stats,
            },
            self.times,
        )
    }
}

impl ConnInfo {
    fn role_known(&self) -> bool {
        self.role != Role::Unknown
    }
}

/// What one connection's new messages mean for the shared stages.
#[derive(Debug)]
struct Absorbed {
    /// Parse error reasons to count.
    errors: Vec<&'static str>,
    /// A server socket that answered requests: (listening address, default service).
    listener: Option<(SocketAddr, String)>,
    /// Exchange events, in stream order.
    events: Vec<ExchangeEvent>,
    /// Per event, a request's trace context (extracted here, in parallel, instead of in
    /// the serial linking step); `None` for the other events.
    extractions: Vec<Option<Extraction>>,
}

/// Turns a connection's parse results into exchange events (touches only that
/// connection's state, so connections can be prepared in parallel).
fn prepare(state: &mut ConnState, mut parsed: Output, closed: bool) -> Absorbed {
    let errors = std::mem::take(&mut parsed.errors);
    if parsed.role.is_some() && !state.info.role_known() {
        let mut info = (*state.info).clone();
        info.role = parsed.role.unwrap_or(Role::Unknown);
        state.info = Arc::new(info);
    }
    let has_requests = parsed.has_requests();
    let listener = match state.info.key.local {
        Some(local) if has_requests && parsed.role == Some(Role::Server) => {
            Some((local, default_service_name(&state.info)))
        }
        _ => None,
    };
    let events = state.pairing.pair(&state.info, parsed, closed);
    let extractions = events
        .iter()
        .map(|ev| match ev {
            ExchangeEvent::Request(ex) => Some(request_context(&ex.request)),
            _ => None,
        })
        .collect();
    Absorbed {
        errors,
        listener,
        events,
        extractions,
    }
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
