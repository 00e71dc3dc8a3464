//! The front of the pipeline: records → per-connection byte streams (reassembly) →
//! protocol messages → exchange events (parsing, pairing and trace-context extraction,
//! connections in parallel). It touches only per-connection state and hands what it
//! produced to the back ([`super::back`]) as [`Step`]s, in order, so the back can run on
//! another thread without changing what it sees.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use foldhash::HashMap;
use podtrace_format::{counters, K8sObject, Record, Role};
use rayon::prelude::*;

use super::StageTimes;
use crate::context::Extraction;
use crate::exchange::{ExchangeEvent, Pairing};
use crate::protocol::{self, ConnectionParser, Output};
use crate::reassemble::{ConnInfo, ConnKey, ConnectionDelta, Reassembler};
use crate::span::{default_service_name, request_context};
use crate::stats::AnalysisStats;
use crate::AnalyzeOptions;

/// Parsing state of one live connection.
#[derive(Debug)]
struct ConnState {
    info: Arc<ConnInfo>,
    parser: ConnectionParser,
    pairing: Pairing,
    last_ts: u64,
}

/// What one connection's new messages mean for the back's shared stages. Serializable:
/// a front run elsewhere ([`super::parts`]) ships these to the back.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(super) struct Absorbed {
    /// The connection (lists of these are ordered by it).
    pub(super) key: ConnKey,
    /// Parse error reasons to count.
    pub(super) errors: Vec<Cow<'static, str>>,
    /// A server socket that answered requests: (listening address, default service).
    pub(super) listener: Option<(SocketAddr, String)>,
    /// Exchange events, in stream order.
    pub(super) events: Vec<ExchangeEvent>,
    /// Per event, a request's trace context (extracted here, in parallel, instead of in
    /// the serial linking step, and boxed here too: the linker holds it as a pointer until
    /// it identifies the request); `None` for the other events.
    pub(super) extractions: Vec<Option<Box<Extraction>>>,
}

/// One step of work for the back, in the order the front produced it.
#[derive(Debug)]
pub(super) enum Step {
    /// A batch of records: Kubernetes objects seen in it, then every connection's parse
    /// results, in the order they are applied.
    Intake {
        /// Kubernetes objects, in record order.
        k8s: Vec<K8sObject>,
        /// Parse results per connection, in delta order.
        absorbed: Vec<Absorbed>,
    },
    /// Link and emit the exchanges that started before `cutoff`; then, with `evict`,
    /// apply the parse results of the idle connections the front closed and forget the
    /// back's state older than the given time.
    Drain {
        /// Exchanges that started before this are linked and emitted.
        cutoff: u64,
        /// (time before which state goes, idle connections' last parse results).
        evict: Option<(u64, Vec<Absorbed>)>,
    },
}

/// Reassembly and per-connection parsing (see the module doc).
#[derive(Debug)]
pub(super) struct Front {
    opts: AnalyzeOptions,
    reassembler: Reassembler,
    conns: HashMap<ConnKey, ConnState>,
    /// The front's counters: records, late records, connections, recorder drops, TLS
    /// ciphertext skipped, evicted connections (the back keeps the others).
    pub(super) stats: AnalysisStats,
    watermark: u64,
    pub(super) times: StageTimes,
}

impl Front {
    /// A front with (already validated) options.
    pub(super) fn new(opts: &AnalyzeOptions) -> Self {
        Front {
            opts: opts.clone(),
            reassembler: Reassembler::new(),
            conns: HashMap::default(),
            stats: AnalysisStats::default(),
            watermark: 0,
            times: StageTimes::default(),
        }
    }

    /// The newest socket-row time seen (or given by [`Front::advance_to`]).
    pub(super) fn watermark(&self) -> u64 {
        self.watermark
    }

    /// Moves the watermark to `ts_ns` when no newer record has moved it.
    pub(super) fn advance_to(&mut self, ts_ns: u64) {
        self.watermark = self.watermark.max(ts_ns);
    }

    /// Takes a batch of records: reassembles and parses what they complete.
    #[inline(never)]
    pub(super) fn push(&mut self, records: &[Record]) -> Step {
        let started = Instant::now();
        let cutoff = self.cutoff();
        let mut k8s = Vec::new();
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
                Record::K8sObject(o) => k8s.push(o.clone()),
                Record::Stats(s) => {
                    if s.cpu.is_none() && counters::CAPTURE_LOSSES.contains(&s.name.as_str()) {
                        let v = self.stats.recorder_drops.entry(s.name.clone()).or_default();
                        *v = (*v).max(s.value);
                    }
                }
            }
        }
        let ready = self.reassembler.take_ready();
        self.stats.tls_ciphertext_skipped = self.reassembler.tls_ciphertext_skipped();
        self.times.reassemble += started.elapsed();
        Step::Intake {
            k8s,
            absorbed: self.process(ready),
        }
    }

    fn note_time(&mut self, ts: u64, cutoff: u64) {
        if ts < cutoff {
            self.stats.late_records += 1;
        }
        self.watermark = self.watermark.max(ts);
    }

    /// Exchanges that started before this are linked and emitted.
    fn cutoff(&self) -> u64 {
        drain_bounds(&self.opts, self.watermark).0
    }

    /// The drain step at the current watermark; closes (and parses the rest of) the
    /// connections idle for a window before it.
    pub(super) fn drain(&mut self) -> Step {
        let (cutoff, old) = drain_bounds(&self.opts, self.watermark);
        let evict = (old > 0).then(|| {
            let started = Instant::now();
            let idle = self.evict(old);
            self.times.evict += started.elapsed();
            (old, idle)
        });
        Step::Drain { cutoff, evict }
    }

    fn evict(&mut self, before: u64) -> Vec<Absorbed> {
        let mut idle: Vec<ConnKey> = self
            .conns
            .iter()
            .filter(|(_, s)| s.last_ts < before)
            .map(|(k, _)| *k)
            .collect();
        idle.sort();
        let mut out = Vec::with_capacity(idle.len());
        for key in idle {
            if let Some(mut state) = self.conns.remove(&key) {
                self.stats.evictions.connections += 1;
                let parsed = state.parser.finish();
                out.push(prepare(&mut state, parsed, true));
            }
        }
        self.reassembler.evict_idle(before);
        out
    }

    /// The end of the input: every stream closed; the parse results of what was left, in
    /// order (connections by key).
    #[inline(never)]
    pub(super) fn finish(&mut self) -> Vec<Absorbed> {
        let (mut out, mut open) = self.finish_parts();
        out.append(&mut open);
        out
    }

    /// [`Front::finish`] in its two parts: the parse results of the rows not handed out
    /// yet (connections by key), then those of the connections still open when the input
    /// ended (by key). Fronts of disjoint connections ([`super::parts`]) are merged part
    /// by part.
    pub(super) fn finish_parts(&mut self) -> (Vec<Absorbed>, Vec<Absorbed>) {
        let remaining = self.reassembler.take_ready();
        self.stats.tls_ciphertext_skipped = self.reassembler.tls_ciphertext_skipped();
        let rest = self.process_rest(remaining);
        let started = Instant::now();
        let mut keys: Vec<ConnKey> = self.conns.keys().copied().collect();
        keys.sort();
        let mut open = Vec::with_capacity(keys.len());
        for key in keys {
            if let Some(mut state) = self.conns.remove(&key) {
                let parsed = state.parser.finish();
                open.push(prepare(&mut state, parsed, true));
            }
        }
        self.times.parse += started.elapsed();
        (rest, open)
    }

    /// [`Front::process`] of the streams' last pieces at the end of the input (a function
    /// of its own so profiles tell it from the batches' parsing).
    #[inline(never)]
    fn process_rest(&mut self, deltas: Vec<ConnectionDelta>) -> Vec<Absorbed> {
        self.process(deltas)
    }

    /// Parses the new stream pieces, connections in parallel; their results in delta
    /// order.
    #[inline(never)]
    fn process(&mut self, deltas: Vec<ConnectionDelta>) -> Vec<Absorbed> {
        if deltas.is_empty() {
            return Vec::new();
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
        // they produce is applied to the shared stages (the back) in delta order.
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
        for (state, d) in work {
            if !d.closed {
                self.conns.insert(d.info.key, state);
            }
        }
        self.times.parse += started.elapsed();
        absorbed
    }
}

impl ConnInfo {
    fn role_known(&self) -> bool {
        self.role != Role::Unknown
    }
}

/// The drain bounds at watermark `watermark`: (exchanges that started before the first
/// are linked and emitted; state older than the second is evicted when it is not 0).
pub(super) fn drain_bounds(opts: &AnalyzeOptions, watermark: u64) -> (u64, u64) {
    let delay = opts.link_delay_ns.min(opts.window_ns);
    let cutoff = watermark.saturating_sub(delay);
    (cutoff, cutoff.saturating_sub(opts.window_ns))
}

/// Turns a connection's parse results into exchange events (touches only that
/// connection's state, so connections can be prepared in parallel).
fn prepare(state: &mut ConnState, mut parsed: Output, closed: bool) -> Absorbed {
    let errors = std::mem::take(&mut parsed.errors)
        .into_iter()
        .map(Cow::Borrowed)
        .collect();
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
            ExchangeEvent::Request(ex) => Some(Box::new(request_context(&ex.request))),
            _ => None,
        })
        .collect();
    Absorbed {
        key: state.info.key,
        errors,
        listener,
        events,
        extractions,
    }
}
