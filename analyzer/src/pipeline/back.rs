//! The back of the pipeline: exchange events → the linker (intake, identification,
//! eviction of old exchanges). It holds the state shared across connections, takes the
//! front's [`Step`]s in order and hands the tail ([`super::tail`]) what it needs, in
//! order, as [`Handoff`]s: the exchanges it linked and the enrichment facts passing
//! through.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use super::front::{Absorbed, Step};
use super::tail::Handoff;
use super::StageTimes;
use crate::details::SpanDetails;
use crate::span::Linker;
use crate::stats::AnalysisStats;

/// Exchanges linked at a time by [`Back::finish`].
const FINAL_RUN: usize = 4096;

/// Exchanges linked at a time by a large drain (see [`Back::step`]): a drain that links
/// more is cut into parts of about this many.
const DRAIN_PART: usize = 16_384;

/// Intake and identification (see the module doc).
#[derive(Debug)]
pub(super) struct Back {
    linker: Linker,
    /// Parse errors by reason.
    parse_errors: BTreeMap<String, u64>,
    pub(super) times: StageTimes,
}

impl Back {
    /// A back linking within `window_ns`, naming spans with `details`.
    pub(super) fn new(window_ns: u64, details: Arc<SpanDetails>) -> Self {
        let mut linker = Linker::with_window(window_ns);
        linker.set_details(details);
        Back {
            linker,
            parse_errors: BTreeMap::new(),
            times: StageTimes::default(),
        }
    }

    /// Takes one step of the front; what the tail is to take goes to `hand`, in order (in
    /// one or more calls).
    ///
    /// A drain that links many exchanges at once (the watermark jumped: a pause in the
    /// traffic, or the next capture of a set) is linked in parts of about [`DRAIN_PART`]
    /// ([`Linker::link_part`](crate::span::Linker::link_part)), each handed on as soon as
    /// it is linked: split, the tail builds a part while the back links the next, instead
    /// of the other threads waiting for the whole drain. The parts emit exactly what the
    /// drain at once would, in its order, and the tail hands the drain's spans out as one
    /// batch, as before.
    pub(super) fn step(&mut self, step: Step, hand: &mut dyn FnMut(Vec<Handoff>)) {
        let mut out = Vec::new();
        match step {
            Step::Intake { k8s, absorbed } => {
                let started = Instant::now();
                if !k8s.is_empty() {
                    out.push(Handoff::K8s(k8s));
                }
                for a in absorbed {
                    self.apply(a, &mut out);
                }
                self.times.intake += started.elapsed();
            }
            Step::Drain { cutoff, evict } => {
                let started = Instant::now();
                for part in self.linker.run_cutoffs(DRAIN_PART, cutoff) {
                    hand(vec![Handoff::LinkedPart(self.linker.link_part(part))]);
                }
                out.push(Handoff::Linked(self.linker.link_unbuilt(cutoff)));
                self.times.link += started.elapsed();
                if let Some((before, idle)) = evict {
                    let started = Instant::now();
                    for a in idle {
                        self.apply(a, &mut out);
                    }
                    self.linker.evict(before);
                    out.push(Handoff::Forget(before));
                    self.times.evict += started.elapsed();
                }
            }
        }
        if !out.is_empty() {
            hand(out);
        }
    }

    /// Applies one connection's parse results to the linker, in order.
    fn apply(&mut self, absorbed: Absorbed, out: &mut Vec<Handoff>) {
        for e in &absorbed.errors {
            *self.parse_errors.entry((*e).to_string()).or_default() += 1;
        }
        if let Some((local, name)) = absorbed.listener {
            out.push(Handoff::Listener(local, name));
        }
        for (ev, extraction) in absorbed.events.into_iter().zip(absorbed.extractions) {
            self.linker.on_event_extracted(ev, extraction);
        }
    }

    /// The end of the analysis: the front's last parse results applied, everything
    /// linked, the linker emptied. What the tail is to take goes to `hand` in order, a
    /// run of [`FINAL_RUN`] exchanges at a time (the last link delay's worth of exchanges
    /// is linked here: split, the tail builds a run while the next one is identified).
    pub(super) fn finish(&mut self, last: Vec<Absorbed>, mut hand: impl FnMut(Vec<Handoff>)) {
        let started = Instant::now();
        let mut out = Vec::new();
        for a in last {
            self.apply(a, &mut out);
        }
        self.times.intake += started.elapsed();
        let started = Instant::now();
        let cutoffs = self.linker.run_cutoffs(FINAL_RUN, u64::MAX);
        for cutoff in cutoffs.into_iter().chain([u64::MAX]) {
            out.push(Handoff::Linked(self.linker.link_unbuilt(cutoff)));
            hand(std::mem::take(&mut out));
        }
        self.times.link += started.elapsed();
        let started = Instant::now();
        self.linker.evict(u64::MAX);
        self.times.evict += started.elapsed();
    }

    /// Fills in the back's counters (parse errors, linking) of `stats`.
    pub(super) fn add_stats(&self, stats: &mut AnalysisStats) {
        let link = self.linker.stats();
        stats.parse_errors = self.parse_errors.clone();
        stats.exchanges = link.exchanges;
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
    }
}
