//! Bounded report input: keeps the traces the page ranks first out of a span stream.
//!
//! `podtrace analyze` hands spans over in batches (each sorted by start time, batches
//! roughly in time order, one trace's spans possibly spread over several batches). A
//! [`TraceCollector`] keeps, within [`CollectorLimits`], the traces the page lists first —
//! erroring first, then slowest, then by trace id, the order of
//! [`crate::data::ReportData::from_spans`] — and leaves the others out *whole*:
//!
//! * A trace is *pending* while spans may still arrive for it (its last span ended less than
//!   [`CollectorLimits::settle_ns`] before the newest span end seen) and *settled* after.
//!   Settled traces beyond [`CollectorLimits::max_traces`] are left out, worst first; a
//!   pending trace is only judged once settled, so a trace whose error or slow span comes in a
//!   later batch is ranked on all its spans.
//! * Whenever the collector would hold more than [`CollectorLimits::max_spans`] spans, it
//!   leaves out the worst trace it holds (pending or settled: a trace's rank only improves as
//!   spans arrive, so the worst one is the best guess to drop).
//! * The ids of left-out traces are remembered so their later spans are left out too; the
//!   memory forgets ids left out more than [`CollectorLimits::dropped_horizon_ns`] (span
//!   time) before the newest span end, and holds at most [`CollectorLimits::max_dropped_ids`].
//!
//! Every span handed over, kept or not, is also accounted in the [`ReportTotals`] (service
//! counts and latency histograms, time range, totals). Memory therefore stays bounded by
//! `max_spans` spans, `max_dropped_ids` ids and the per-service histograms, whatever the
//! number of spans added.

use std::cmp::Reverse;
use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, VecDeque};

// Trace ids are looked up several times per span added; foldhash hashes them in a few
// instructions (the maps are never iterated in an order that shows).
use foldhash::HashMap;
use podtrace_model::{Span, TraceId};

use crate::totals::ReportTotals;

/// Bounds of a [`TraceCollector`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CollectorLimits {
    /// Most traces the report lists (default 2 000).
    pub max_traces: usize,
    /// Most spans the collector holds at any time, pending traces included (default 50 000).
    pub max_spans: usize,
    /// How long after its last span's end (span time, ns) a trace may still receive spans
    /// before it is ranked for good (default 10 s).
    pub settle_ns: u64,
    /// How long (span time, ns) the id of a left-out trace is remembered (default 120 s).
    pub dropped_horizon_ns: u64,
    /// Most left-out trace ids remembered at once, oldest forgotten first (default 250 000).
    pub max_dropped_ids: usize,
}

impl Default for CollectorLimits {
    fn default() -> Self {
        CollectorLimits {
            max_traces: 2_000,
            max_spans: 50_000,
            settle_ns: 10_000_000_000,
            dropped_horizon_ns: 120_000_000_000,
            max_dropped_ids: 250_000,
        }
    }
}

/// A trace's place in the page's order: erroring first, then slowest, then trace id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Rank {
    error: Reverse<bool>,
    duration: Reverse<u64>,
    id: TraceId,
}

/// One held trace.
#[derive(Debug)]
struct Held {
    spans: Vec<Span>,
    /// Spans of the trace added so far: `spans.len()`, plus its spans of the batch being
    /// added (cloned at the batch's end if the trace is still held then).
    len: usize,
    /// Which held trace this is: a trace left out and held again later (its id forgotten)
    /// is another one.
    serial: u64,
    start: u64,
    end: u64,
    error: bool,
    settled: bool,
}

impl Held {
    fn rank(&self, id: TraceId) -> Rank {
        Rank {
            error: Reverse(self.error),
            duration: Reverse(self.end - self.start),
            id,
        }
    }
}

/// Ids of recently left-out traces, forgotten by age (span time) and count.
#[derive(Debug, Default)]
struct DroppedIds {
    at: HashMap<TraceId, u64>,
    order: VecDeque<(u64, TraceId)>,
}

impl DroppedIds {
    fn contains(&self, id: &TraceId) -> bool {
        self.at.contains_key(id)
    }

    fn insert(&mut self, id: TraceId, now: u64) {
        self.at.insert(id, now);
        self.order.push_back((now, id));
    }

    fn expire(&mut self, now: u64, horizon: u64, max: usize) {
        while let Some(&(t, id)) = self.order.front() {
            if t.saturating_add(horizon) >= now && self.order.len() <= max {
                break;
            }
            self.order.pop_front();
            // The id may have been left out again later; only its latest entry counts.
            if self.at.get(&id) == Some(&t) {
                self.at.remove(&id);
            }
        }
    }

    fn len(&self) -> usize {
        self.at.len()
    }
}

/// Keeps the traces a report lists first out of a span stream, in bounded memory.
///
/// ```
/// use podtrace_report::collect::{CollectorLimits, TraceCollector};
/// let mut c = TraceCollector::new(CollectorLimits::default());
/// c.add(&[]);
/// let collected = c.finish();
/// assert!(collected.spans.is_empty() && !collected.totals.is_partial());
/// ```
#[derive(Debug)]
pub struct TraceCollector {
    limits: CollectorLimits,
    held: HashMap<TraceId, Held>,
    /// Every held trace, best first.
    ranked: BTreeSet<Rank>,
    /// Settled held traces, best first.
    settled: BTreeSet<Rank>,
    /// Pending held traces by their last span end.
    pending: BTreeSet<(u64, TraceId)>,
    held_spans: usize,
    /// Serial of the next new held trace.
    next_serial: u64,
    /// The batch being added: its held spans (index in the batch, serial of their trace),
    /// in order, cloned at its end into the traces still held (a trace left out within
    /// the batch clones none).
    fresh: Vec<(usize, u64)>,
    dropped: DroppedIds,
    /// Newest span end seen (span time "now").
    now: u64,
    totals: ReportTotals,
}

/// What a [`TraceCollector`] kept: the spans to list and the totals over all spans.
#[derive(Debug, Clone, Default)]
pub struct Collected {
    /// Spans of the kept traces, trace by trace (best first), each trace's spans by start.
    pub spans: Vec<Span>,
    /// Totals over every span added, with kept/left-out counts.
    pub totals: ReportTotals,
}

impl TraceCollector {
    /// An empty collector. Limits of 0 are raised to 1.
    pub fn new(limits: CollectorLimits) -> Self {
        let limits = CollectorLimits {
            max_traces: limits.max_traces.max(1),
            max_spans: limits.max_spans.max(1),
            max_dropped_ids: limits.max_dropped_ids.max(1),
            ..limits
        };
        TraceCollector {
            limits,
            held: HashMap::default(),
            ranked: BTreeSet::new(),
            settled: BTreeSet::new(),
            pending: BTreeSet::new(),
            held_spans: 0,
            next_serial: 0,
            fresh: Vec::new(),
            dropped: DroppedIds::default(),
            now: 0,
            totals: ReportTotals::default(),
        }
    }

    /// The limits in effect.
    pub fn limits(&self) -> &CollectorLimits {
        &self.limits
    }

    /// Adds a batch of spans (any order; clones the spans of the traces it still holds
    /// after each one).
    pub fn add(&mut self, spans: &[Span]) {
        for (i, s) in spans.iter().enumerate() {
            if let Some(serial) = self.add_one(s) {
                self.fresh.push((i, serial));
            }
        }
        self.keep_clones(spans);
    }

    /// Spans held now (kept and pending traces); never more than `max_spans`.
    pub fn held_spans(&self) -> usize {
        self.held_spans
    }

    /// Traces held now (kept and pending).
    pub fn held_traces(&self) -> usize {
        self.held.len()
    }

    /// Left-out trace ids remembered now.
    pub fn remembered_dropped_ids(&self) -> usize {
        self.dropped.len()
    }

    /// Totals so far (the kept counts are final only after [`TraceCollector::finish`]).
    pub fn totals(&self) -> &ReportTotals {
        &self.totals
    }

    /// Ranks the traces still pending, keeps the first `max_traces` and returns their spans
    /// (best trace first) with the totals.
    pub fn finish(mut self) -> Collected {
        let keep: Vec<Rank> = self
            .ranked
            .iter()
            .take(self.limits.max_traces)
            .copied()
            .collect();
        let mut spans = Vec::with_capacity(self.held_spans);
        for r in &keep {
            if let Some(mut h) = self.held.remove(&r.id) {
                h.spans.sort_by_key(|s| s.start_time_unix_nano);
                spans.append(&mut h.spans);
            }
        }
        for h in self.held.values() {
            self.totals.dropped_traces += 1;
            self.totals.dropped_spans += h.len as u64;
        }
        self.totals.kept_traces = keep.len() as u64;
        self.totals.kept_spans = spans.len() as u64;
        Collected {
            spans,
            totals: self.totals,
        }
    }

    /// Accounts one span and updates the held traces; the serial of the trace it was
    /// counted in when it was held (to be cloned by [`TraceCollector::keep_clones`]).
    fn add_one(&mut self, s: &Span) -> Option<u64> {
        self.totals.observe(s);
        let end = s.end_time_unix_nano.max(s.start_time_unix_nano);
        self.now = self.now.max(end);
        let id = s.trace_id;
        let serial = if self.dropped.contains(&id) {
            self.totals.dropped_spans += 1;
            None
        } else {
            Some(self.hold(s, end))
        };
        self.settle();
        self.dropped.expire(
            self.now,
            self.limits.dropped_horizon_ns,
            self.limits.max_dropped_ids,
        );
        while self.held_spans > self.limits.max_spans {
            match self.ranked.last().copied() {
                Some(worst) => self.leave_out(worst),
                None => break,
            }
        }
        serial
    }

    /// Stores clones of the batch's held spans (`fresh`, in batch order) in their traces
    /// that are still held at its end: the spans of traces left out within the batch
    /// (most of them when the collector is full) are never cloned. Held or not, each was
    /// already counted in its trace's `len` by [`TraceCollector::hold`].
    fn keep_clones(&mut self, spans: &[Span]) {
        for (i, serial) in self.fresh.drain(..) {
            let s = &spans[i];
            if let Some(h) = self.held.get_mut(&s.trace_id) {
                if h.serial == serial {
                    h.spans.push(s.clone());
                }
            }
        }
    }

    /// Counts a span in its held trace (a new trace when there is none) and updates the
    /// trace's rank; returns the trace's serial. The span itself is stored by
    /// [`TraceCollector::keep_clones`].
    fn hold(&mut self, s: &Span, end: u64) -> u64 {
        let id = s.trace_id;
        let h = match self.held.entry(id) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => {
                self.totals.traces += 1;
                let h = Held {
                    spans: Vec::new(),
                    len: 0,
                    serial: self.next_serial,
                    start: s.start_time_unix_nano,
                    end,
                    error: false,
                    settled: false,
                };
                self.next_serial += 1;
                self.ranked.insert(h.rank(id));
                self.pending.insert((h.end, id));
                e.insert(h)
            }
        };
        let serial = h.serial;
        let (old_rank, old_end) = (h.rank(id), h.end);
        h.start = h.start.min(s.start_time_unix_nano);
        h.end = h.end.max(end);
        h.error |= s.status.is_error();
        h.len += 1;
        self.held_spans += 1;
        let new_rank = h.rank(id);
        if new_rank != old_rank {
            self.ranked.remove(&old_rank);
            self.ranked.insert(new_rank);
            if h.settled {
                self.settled.remove(&old_rank);
                self.settled.insert(new_rank);
            }
        }
        if !h.settled && h.end != old_end {
            self.pending.remove(&(old_end, id));
            self.pending.insert((h.end, id));
        }
        serial
    }

    /// Settles pending traces that can no longer expect spans; leaves out settled traces
    /// beyond `max_traces`, worst first.
    fn settle(&mut self) {
        while let Some(&(end, id)) = self.pending.first() {
            if end.saturating_add(self.limits.settle_ns) > self.now {
                break;
            }
            self.pending.pop_first();
            if let Some(h) = self.held.get_mut(&id) {
                h.settled = true;
                self.settled.insert(h.rank(id));
            }
        }
        while self.settled.len() > self.limits.max_traces {
            match self.settled.last().copied() {
                Some(worst) => self.leave_out(worst),
                None => break,
            }
        }
    }

    /// Leaves one held trace out, whole, and remembers its id.
    fn leave_out(&mut self, rank: Rank) {
        let Some(h) = self.held.remove(&rank.id) else {
            return;
        };
        self.ranked.remove(&rank);
        if h.settled {
            self.settled.remove(&rank);
        } else {
            self.pending.remove(&(h.end, rank.id));
        }
        self.held_spans -= h.len;
        self.totals.dropped_traces += 1;
        self.totals.dropped_spans += h.len as u64;
        self.dropped.insert(rank.id, self.now);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::data::ReportData;
    use crate::tables::service_rows;
    use podtrace_model::{Resource, SpanId, SpanKind, Status};

    const BASE: u64 = 1_795_674_928_000_000_000;
    const SERVICES: [&str; 4] = ["gateway", "api", "db", "cache"];

    /// splitmix64: deterministic pseudo-random numbers for the synthetic traces.
    fn mix(mut z: u64) -> u64 {
        z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn trace_id(t: u64) -> TraceId {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&mix(t).to_be_bytes());
        id[8..].copy_from_slice(&t.to_be_bytes());
        TraceId(id)
    }

    fn span(t: u64, i: u8, start: u64, dur: u64, kind: SpanKind, err: bool) -> Span {
        let mut sid = [i + 1; 8];
        sid[..4].copy_from_slice(&(t as u32).to_be_bytes());
        Span {
            trace_id: trace_id(t),
            span_id: SpanId(sid),
            parent_span_id: (i > 0).then(|| {
                let mut p = sid;
                p[4..].copy_from_slice(&[1; 4]);
                SpanId(p)
            }),
            trace_state: String::new(),
            flags: 1,
            name: "GET /x".into(),
            kind,
            start_time_unix_nano: start,
            end_time_unix_nano: start + dur,
            attributes: vec![],
            status: if err {
                Status::error("HTTP 503")
            } else {
                Status::unset()
            },
            resource: Resource::new(SERVICES[usize::from(i) % SERVICES.len()]),
        }
    }

    /// Trace `t` (5 spans) starting `gap_ns * t` after BASE. Its spans start up to 2 s after
    /// the root (so they land in different batches), its duration is decided by any of them,
    /// and about 1 % of traces have an error on the last span (the latest to arrive).
    fn synthetic_trace(t: u64, gap_ns: u64) -> Vec<Span> {
        let start = BASE + t * gap_ns;
        let r = mix(t ^ 0x5eed);
        let err = r % 100 == 3;
        (0..5u8)
            .map(|i| {
                let ri = mix(r.wrapping_add(u64::from(i)));
                let off = if i == 0 { 0 } else { ri % 2_000_000_000 };
                let dur = 1_000 + (ri >> 20) % 300_000_000;
                let kind = if i % 2 == 1 {
                    SpanKind::Client
                } else {
                    SpanKind::Server
                };
                span(t, i, start + off, dur, kind, err && i == 4)
            })
            .collect()
    }

    /// All spans of `traces` traces in batches of `batch` spans, each batch sorted by start
    /// time and batches in time order (one trace's spans spread over several batches).
    fn batches(traces: std::ops::Range<u64>, gap_ns: u64, batch: usize) -> Vec<Vec<Span>> {
        let mut all: Vec<Span> = traces.flat_map(|t| synthetic_trace(t, gap_ns)).collect();
        all.sort_by_key(|s| s.start_time_unix_nano);
        all.chunks(batch).map(<[Span]>::to_vec).collect()
    }

    fn ids(d: &ReportData) -> Vec<String> {
        d.traces.iter().map(|t| t.id.clone()).collect()
    }

    fn spans_per_trace(spans: &[Span]) -> HashMap<TraceId, usize> {
        let mut m = HashMap::new();
        for s in spans {
            *m.entry(s.trace_id).or_default() += 1;
        }
        m
    }

    fn within_bucket(got: Option<u64>, exact: Option<u64>) -> bool {
        match (got, exact) {
            (Some(g), Some(e)) => g.abs_diff(e) <= e / 64 + 1,
            (None, None) => true,
            _ => false,
        }
    }

    #[test]
    fn keeps_exactly_the_top_traces_of_the_full_set_and_totals_all_spans() {
        let input = batches(0..20_000, 5_000_000, 1_000);
        let all: Vec<Span> = input.iter().flatten().cloned().collect();
        assert_eq!(all.len(), 100_000);
        let whole_set_ranking = ReportData::from_spans(&all);
        let mut c = TraceCollector::new(CollectorLimits {
            max_traces: 1_000,
            ..CollectorLimits::default()
        });
        let mut spread = HashMap::<TraceId, BTreeSet<usize>>::new();
        for (n, b) in input.iter().enumerate() {
            for s in b {
                spread.entry(s.trace_id).or_default().insert(n);
            }
            c.add(b);
        }
        assert!(
            spread.values().filter(|b| b.len() >= 3).count() > 5_000,
            "the stream spreads traces over batches"
        );
        let got = c.finish();
        let kept = ReportData::from_spans(&got.spans);
        let expected = &ids(&whole_set_ranking)[..1_000];
        assert_eq!(ids(&kept), expected);
        let errors = kept.traces.iter().filter(|t| t.errors > 0).count();
        assert!((100..1_000).contains(&errors), "{errors} erroring traces");
        // Whole traces only.
        assert!(spans_per_trace(&got.spans).values().all(|&n| n == 5));
        let t = &got.totals;
        assert_eq!((t.spans, t.traces), (100_000, 20_000));
        assert_eq!((t.kept_traces, t.kept_spans), (1_000, 5_000));
        assert_eq!((t.dropped_traces, t.dropped_spans), (19_000, 95_000));
        let range = (
            all.iter().map(|s| s.start_time_unix_nano).min(),
            all.iter().map(|s| s.end_time_unix_nano).max(),
        );
        assert_eq!((t.start_unix_nano, t.end_unix_nano), range);
        // Service totals equal the full set's (counts exact, percentiles within a bucket).
        let exact = service_rows(&[], &all);
        let rows = crate::tables::service_rows_from_totals(&[], t);
        assert_eq!(rows.len(), exact.len());
        for (r, e) in rows.iter().zip(&exact) {
            assert_eq!(
                (&r.name, r.server_spans, r.client_spans),
                (&e.name, e.server_spans, e.client_spans)
            );
            assert!(within_bucket(r.p50_ns, e.p50_ns), "{r:?} vs {e:?}");
            assert!(within_bucket(r.p99_ns, e.p99_ns), "{r:?} vs {e:?}");
        }
        assert!(rows.iter().any(|r| r.p50_ns.is_some_and(|v| v > 1_000_000)));
        assert_eq!(
            t.left_out_note().as_deref(),
            Some("showing 1000 of 20000 traces: erroring and slowest first; 19000 traces left out")
        );
    }

    #[test]
    fn a_trace_over_three_batches_is_kept_or_left_out_whole() {
        let a = |i: u8, start: u64, dur: u64, err: bool| {
            span(7, i, BASE + start, dur, SpanKind::Server, err)
        };
        let other = |t: u64, start: u64, dur: u64| {
            span(100 + t, 0, BASE + start, dur, SpanKind::Server, false)
        };
        let limits = CollectorLimits {
            max_traces: 3,
            max_spans: 8,
            settle_ns: 1_000_000_000,
            ..CollectorLimits::default()
        };
        let count_a = |spans: &[Span]| spans.iter().filter(|s| s.trace_id == trace_id(7)).count();

        // Kept: the slowest trace, its spans in batches 1, 2 and 3 among fast traces.
        let mut c = TraceCollector::new(limits);
        c.add(&[a(0, 0, 5_000_000_000, false), other(0, 1, 10)]);
        c.add(&[other(1, 100, 10), a(1, 200, 10, false), other(2, 300, 20)]);
        c.add(&[other(3, 400, 30), other(4, 500, 40), a(2, 600, 10, false)]);
        c.add(&[other(5, 3_000_000_000, 50)]);
        assert!(c.held_spans() <= 8);
        let got = c.finish();
        assert_eq!(count_a(&got.spans), 3);
        assert_eq!(
            ReportData::from_spans(&got.spans).traces[0].id,
            trace_id(7).to_string()
        );
        assert_eq!(got.totals.kept_traces, 3);

        // Left out: fast when its first span came while the collector was full, so it was
        // left out; its later spans (which would have made it erroring and slowest) are
        // left out too, never half of it kept.
        let mut c = TraceCollector::new(limits);
        let slow: Vec<Span> = (0..8).map(|t| other(t, t, 1_000_000 + t)).collect();
        c.add(&slow);
        c.add(&[a(0, 10, 1, false)]);
        assert_eq!((c.held_spans(), c.remembered_dropped_ids()), (8, 1));
        c.add(&[a(1, 20, 9_000_000_000, false), other(8, 30, 5)]);
        c.add(&[a(2, 40, 10, true)]);
        let got = c.finish();
        assert_eq!(count_a(&got.spans), 0);
        assert!(got.spans.iter().all(|s| !s.status.is_error()));
        let t = &got.totals;
        assert_eq!((t.spans, t.kept_traces, t.kept_spans), (12, 3, 3));
        assert_eq!((t.traces, t.dropped_traces, t.dropped_spans), (10, 7, 9));
    }

    #[test]
    fn memory_stays_bounded_over_a_million_spans() {
        let limits = CollectorLimits::default();
        let mut c = TraceCollector::new(limits);
        let mut max_held = 0;
        let mut max_ids = 0;
        let mut adding = std::time::Duration::ZERO;
        // 200 000 traces, one every 1 ms (200 s of traffic), in slices of 2 000 traces.
        for slice in 0..100u64 {
            for b in batches(slice * 2_000..(slice + 1) * 2_000, 1_000_000, 4_000) {
                let t = std::time::Instant::now();
                c.add(&b);
                adding += t.elapsed();
                max_held = max_held.max(c.held_spans());
                max_ids = max_ids.max(c.remembered_dropped_ids());
            }
        }
        eprintln!("1 M spans added in {adding:?}; at most {max_held} spans, {max_ids} ids held");
        assert!(max_held <= limits.max_spans, "held {max_held} spans");
        assert!(
            max_ids <= limits.max_dropped_ids,
            "remembered {max_ids} ids"
        );
        let services = &c.totals().services;
        assert_eq!(services.len(), 4);
        let server: u64 = services.values().map(|s| s.server_latency.count()).sum();
        assert_eq!(
            server, 600_000,
            "latencies of all SERVER spans, kept or not"
        );
        let got = c.finish();
        // Counted: at most the span limit, at most the trace limit, whole traces.
        assert!(got.spans.len() <= limits.max_spans);
        let per_trace = spans_per_trace(&got.spans);
        assert_eq!(per_trace.len(), limits.max_traces);
        assert!(per_trace.values().all(|&n| n == 5));
        let t = &got.totals;
        assert_eq!(t.spans, 1_000_000);
        assert_eq!(t.kept_spans + t.dropped_spans, 1_000_000);
        assert_eq!(t.kept_traces + t.dropped_traces, t.traces);
    }

    #[test]
    fn a_trace_larger_than_the_span_limit_is_left_out_whole() {
        let mut c = TraceCollector::new(CollectorLimits {
            max_spans: 8,
            ..CollectorLimits::default()
        });
        let big: Vec<Span> = (0..12u8)
            .map(|i| span(1, i, BASE + u64::from(i), 1_000, SpanKind::Server, false))
            .collect();
        c.add(&big[..6]);
        assert_eq!(c.held_spans(), 6);
        c.add(&big[6..]);
        c.add(&[span(2, 0, BASE + 50, 10, SpanKind::Server, false)]);
        let got = c.finish();
        assert!(got.spans.iter().all(|s| s.trace_id == trace_id(2)));
        let t = &got.totals;
        assert_eq!((t.kept_traces, t.kept_spans), (1, 1));
        assert_eq!((t.dropped_traces, t.dropped_spans), (1, 12));
    }

    #[test]
    fn left_out_ids_are_forgotten_by_age_and_count() {
        let mut c = TraceCollector::new(CollectorLimits {
            max_traces: 1,
            max_spans: 1,
            settle_ns: 0,
            dropped_horizon_ns: 1_000,
            max_dropped_ids: 3,
        });
        for t in 0..10 {
            c.add(&[span(t, 0, BASE + t, 1, SpanKind::Server, false)]);
            assert!(c.remembered_dropped_ids() <= 3);
        }
        assert_eq!(c.remembered_dropped_ids(), 3);
        c.add(&[span(99, 0, BASE + 1_000_000, 1, SpanKind::Server, false)]);
        assert_eq!(c.remembered_dropped_ids(), 1, "older ids expired");
        let got = c.finish();
        assert_eq!(got.spans.len(), 1);
        assert_eq!(got.totals.dropped_traces, 10);
    }
}
