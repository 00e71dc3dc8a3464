//! The pipeline cut where its front ends, for running the fronts of disjoint groups of
//! captures (one node's captures) in other processes — `podtrace analyze --cluster`
//! (docs/scale-out.md) — and the back and the tail in one place, with **the same output
//! as [`crate::analyze_into`]**.
//!
//! The local run merges every capture by time ([`crate::merge_by_time`]) and pushes the
//! merged records in batches of 8192: after each full batch the front's watermark (the
//! newest socket-row time of *all* captures so far) decides which exchanges are linked and
//! which idle connections are closed. Everything else the front does depends on one
//! connection only, and a connection's rows are in one capture group. So:
//!
//! 1. [`BatchPlanner`] replays the local merge over the records (without payload) and
//!    records, per batch, the watermark after it and how many rows of each capture it
//!    holds ([`BatchPlan`]), plus the Kubernetes objects in merged order.
//! 2. [`run_front`] runs one group's front over the group's records (its captures merged
//!    by time: the relative order of its records is the same as in the global merge), cut
//!    into the same batches, with the watermark set to the global one: the group's parse
//!    results come out as [`FrontMessage`]s (serializable: they cross the network).
//! 3. [`Merger`] takes every group's messages, batch by batch: the parse results of a step
//!    are lists ordered by connection key in every group, and the local front produces
//!    them ordered by key too, so a merge by key gives exactly the local step; the back
//!    and the tail (unchanged) then link, build, enrich and sample as locally.
//!
//! A connection key seen in two groups in the same step (two nodes' sockets with the
//! same cookie and addresses) would be one connection locally and two here: the merger
//! refuses it ([`MergeError::KeyCollision`]) instead of giving a different result.

use std::borrow::Cow;
use std::collections::VecDeque;

use podtrace_format::{K8sObject, Record};
use podtrace_model::Span;
use serde::{Deserialize, Serialize};

use super::back::Back;
use super::front::{drain_bounds, Absorbed, Front, Step};
use super::tail::{Handoff, Tail};
use super::{finish_parts, sort_spans, Pipeline};
use crate::reassemble::ConnKey;
use crate::stats::AnalysisStats;
use crate::{http1, Analysis, AnalyzeOptions, QueryText, BATCH};

/// The options the front reads (the rest of [`AnalyzeOptions`] is the back's and the
/// tail's business): what a front run elsewhere needs to be told.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrontOptions {
    /// [`AnalyzeOptions::window_ns`].
    pub window_ns: u64,
    /// [`AnalyzeOptions::link_delay_ns`].
    pub link_delay_ns: u64,
    /// [`AnalyzeOptions::limits`].
    pub limits: http1::Limits,
    /// [`AnalyzeOptions::db_query_text`].
    pub db_query_text: QueryText,
}

impl FrontOptions {
    /// The front's part of `opts`.
    pub fn of(opts: &AnalyzeOptions) -> Self {
        FrontOptions {
            window_ns: opts.window_ns,
            link_delay_ns: opts.link_delay_ns,
            limits: opts.limits,
            db_query_text: opts.db_query_text,
        }
    }

    fn analyze_options(&self) -> AnalyzeOptions {
        AnalyzeOptions {
            window_ns: self.window_ns,
            link_delay_ns: self.link_delay_ns,
            limits: self.limits,
            db_query_text: self.db_query_text,
            ..AnalyzeOptions::default()
        }
    }
}

/// How the local run cuts the merged input into batches (see the module doc).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchPlan {
    /// Per batch, the newest socket-row time of every capture up to the batch's end. The
    /// last batch is the partial one (possibly empty) that the run ends with; every other
    /// batch is full and followed by a drain.
    pub watermarks: Vec<u64>,
    /// Per capture (in input order), its rows per batch: `(batch, rows)`, batches
    /// ascending, rows > 0.
    pub rows: Vec<Vec<(u32, u32)>>,
}

impl BatchPlan {
    /// The rows per batch of a group of captures (indices into [`BatchPlan::rows`]), as
    /// [`run_front`] takes them: `(batch, rows)`, batches ascending.
    pub fn group_rows(&self, captures: &[usize]) -> Vec<(u32, u32)> {
        let mut all: Vec<(u32, u32)> = captures
            .iter()
            .filter_map(|&c| self.rows.get(c))
            .flatten()
            .copied()
            .collect();
        all.sort_unstable();
        let mut out: Vec<(u32, u32)> = Vec::with_capacity(all.len());
        for (batch, rows) in all {
            match out.last_mut() {
                Some(last) if last.0 == batch => last.1 += rows,
                _ => out.push((batch, rows)),
            }
        }
        out
    }
}

/// Replays the local run's batching over the merged records (see the module doc).
#[derive(Debug)]
pub struct BatchPlanner {
    plan: BatchPlan,
    /// Kubernetes objects per batch, in merged order.
    k8s: Vec<Vec<K8sObject>>,
    in_batch: usize,
    watermark: u64,
}

impl BatchPlanner {
    /// A planner for `captures` inputs.
    pub fn new(captures: usize) -> Self {
        BatchPlanner {
            plan: BatchPlan {
                watermarks: Vec::new(),
                rows: vec![Vec::new(); captures],
            },
            k8s: vec![Vec::new()],
            in_batch: 0,
            watermark: 0,
        }
    }

    /// The next record of the merged input, from capture `capture` (the payload is not
    /// needed). A capture index out of range is a caller's bug and is ignored.
    pub fn push(&mut self, capture: usize, record: &Record) {
        let batch = self.plan.watermarks.len() as u32;
        let Some(rows) = self.plan.rows.get_mut(capture) else {
            return;
        };
        match rows.last_mut() {
            Some(last) if last.0 == batch => last.1 += 1,
            _ => rows.push((batch, 1)),
        }
        match record {
            Record::SocketData(d) => self.watermark = self.watermark.max(d.meta.ts_ns),
            Record::SocketOpen(e) | Record::SocketClose(e) => {
                self.watermark = self.watermark.max(e.meta.ts_ns)
            }
            Record::K8sObject(o) => {
                if let Some(k) = self.k8s.last_mut() {
                    k.push(o.clone());
                }
            }
            Record::Stats(_) => {}
        }
        self.in_batch += 1;
        if self.in_batch == BATCH {
            self.plan.watermarks.push(self.watermark);
            self.k8s.push(Vec::new());
            self.in_batch = 0;
        }
    }

    /// The plan, and the Kubernetes objects of each batch (for [`Merger::step`]).
    pub fn finish(mut self) -> (BatchPlan, Vec<Vec<K8sObject>>) {
        self.plan.watermarks.push(self.watermark);
        (self.plan, self.k8s)
    }
}

/// The front's counters of one group (added up by the [`Merger`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrontCounters {
    records: u64,
    late_records: u64,
    connections: u64,
    tls_ciphertext_skipped: u64,
    evicted_connections: u64,
    recorder_drops: std::collections::BTreeMap<String, u64>,
}

impl FrontCounters {
    fn of(stats: &AnalysisStats) -> Self {
        FrontCounters {
            records: stats.records,
            late_records: stats.late_records,
            connections: stats.connections,
            tls_ciphertext_skipped: stats.tls_ciphertext_skipped,
            evicted_connections: stats.evictions.connections,
            recorder_drops: stats.recorder_drops.clone(),
        }
    }

    fn add_to(&self, stats: &mut AnalysisStats) {
        stats.records += self.records;
        stats.late_records += self.late_records;
        stats.connections += self.connections;
        stats.tls_ciphertext_skipped += self.tls_ciphertext_skipped;
        stats.evictions.connections += self.evicted_connections;
        for (name, v) in &self.recorder_drops {
            let e = stats.recorder_drops.entry(name.clone()).or_default();
            *e = (*e).max(*v);
        }
    }

    /// Records the group's front read.
    pub fn records(&self) -> u64 {
        self.records
    }
}

#[derive(Debug, Serialize, Deserialize)]
enum Body {
    /// The parse results of a batch's records (by connection key).
    Intake(Vec<Absorbed>),
    /// The parse results of the idle connections the drain after a batch closed (by key).
    Evict(Vec<Absorbed>),
    /// The end: the rest of the streams, the connections still open, the counters.
    Finish {
        rest: Vec<Absorbed>,
        open: Vec<Absorbed>,
        counters: FrontCounters,
    },
}

/// What one group's front produced for one batch (or at the end). Opaque: serialized with
/// [`FrontMessage::to_bytes`] where it crosses a process boundary. Empty steps are not
/// sent.
#[derive(Debug, Serialize, Deserialize)]
pub struct FrontMessage {
    batch: u32,
    body: Body,
}

/// Version tag of the serialized [`FrontMessage`]s: a front of another podtrace version is
/// refused rather than misread.
const WIRE_VERSION: &str = concat!("podtrace-front/", env!("CARGO_PKG_VERSION"), "/1");

#[derive(Serialize)]
struct WireOut<'a> {
    v: &'a str,
    m: &'a FrontMessage,
}

#[derive(Deserialize)]
struct WireIn<'a> {
    #[serde(borrow)]
    v: Cow<'a, str>,
    m: FrontMessage,
}

impl FrontMessage {
    /// The batch the message belongs to.
    pub fn batch(&self) -> u32 {
        self.batch
    }

    /// The group's counters, on its last message.
    pub fn counters(&self) -> Option<&FrontCounters> {
        match &self.body {
            Body::Finish { counters, .. } => Some(counters),
            _ => None,
        }
    }

    /// Serialized (JSON, with a version tag).
    pub fn to_bytes(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(&WireOut {
            v: WIRE_VERSION,
            m: self,
        })
    }

    /// The message [`FrontMessage::to_bytes`] made.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, MergeError> {
        let wire: WireIn = serde_json::from_slice(bytes).map_err(MergeError::Decode)?;
        if wire.v != WIRE_VERSION {
            return Err(MergeError::Version {
                got: wire.v.into_owned(),
                want: WIRE_VERSION,
            });
        }
        Ok(wire.m)
    }
}

/// Why a front run or a merge cannot give the local result.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// The group's captures hold other rows than when the plan was made.
    #[error("the captures changed since the analysis was planned ({0})")]
    Changed(&'static str),
    /// Two groups hold the same connection (socket cookie and addresses) at once.
    #[error(
        "connection {0} appears in two capture groups at the same time; \
         analyse these captures on one machine (podtrace analyze without --cluster)"
    )]
    KeyCollision(String),
    /// A message that is not a front message of this version.
    #[error("reading a front message: {0}")]
    Decode(serde_json::Error),
    /// A front message of another podtrace version.
    #[error("front message of version {got}, this is {want}")]
    Version {
        /// The message's version tag.
        got: String,
        /// This build's.
        want: &'static str,
    },
    /// A group's messages out of order, or for a batch the plan does not have.
    #[error("front messages out of order (group {group}, batch {batch})")]
    Order {
        /// The group.
        group: usize,
        /// The message's batch.
        batch: u32,
    },
    /// A group ended without its final message.
    #[error("capture group {0} ended without its final message (incomplete result)")]
    Incomplete(usize),
    /// The analysis options are not usable.
    #[error(transparent)]
    Options(#[from] crate::Error),
}

/// Runs the front of one group of captures (see the module doc): `records` are the
/// group's captures merged by time ([`crate::merge_by_time`], in input order), `rows` the
/// group's rows per batch ([`BatchPlan::group_rows`]), `watermarks` the plan's. Each
/// non-empty step goes to `emit`, in order, the final message last; stops at `emit`'s
/// first error.
pub fn run_front<E>(
    opts: &FrontOptions,
    watermarks: &[u64],
    rows: &[(u32, u32)],
    mut records: impl Iterator<Item = Record>,
    mut emit: impl FnMut(FrontMessage) -> Result<(), E>,
) -> Result<FrontCounters, FrontRunError<E>> {
    let opts = opts.analyze_options();
    if opts.window_ns == 0 {
        return Err(FrontRunError::Merge(MergeError::Options(
            crate::Error::Window,
        )));
    }
    let Some(last) = watermarks.len().checked_sub(1) else {
        return Err(FrontRunError::Merge(MergeError::Changed("empty plan")));
    };
    let mut front = Front::new(&opts);
    let mut rows = rows.iter().peekable();
    let mut batch = Vec::with_capacity(BATCH);
    for (k, wm) in watermarks.iter().enumerate() {
        let k32 = k as u32;
        front.advance_to(if k == 0 { 0 } else { watermarks[k - 1] });
        let want = match rows.peek() {
            Some(&&(b, n)) if b == k32 => {
                rows.next();
                n as usize
            }
            Some(&&(b, _)) if b < k32 => {
                return Err(FrontRunError::Merge(MergeError::Changed(
                    "plan out of order",
                )))
            }
            _ => 0,
        };
        batch.clear();
        batch.extend(records.by_ref().take(want));
        if batch.len() != want {
            return Err(FrontRunError::Merge(MergeError::Changed("fewer rows")));
        }
        if let Step::Intake { absorbed, .. } = front.push(&batch) {
            if !absorbed.is_empty() {
                emit(FrontMessage {
                    batch: k32,
                    body: Body::Intake(absorbed),
                })
                .map_err(FrontRunError::Emit)?;
            }
        }
        if k < last {
            front.advance_to(*wm);
            if let Step::Drain {
                evict: Some((_, idle)),
                ..
            } = front.drain()
            {
                if !idle.is_empty() {
                    emit(FrontMessage {
                        batch: k32,
                        body: Body::Evict(idle),
                    })
                    .map_err(FrontRunError::Emit)?;
                }
            }
        }
    }
    if records.next().is_some() || rows.next().is_some() {
        return Err(FrontRunError::Merge(MergeError::Changed("more rows")));
    }
    let (rest, open) = front.finish_parts();
    let counters = FrontCounters::of(&front.stats);
    emit(FrontMessage {
        batch: last as u32,
        body: Body::Finish {
            rest,
            open,
            counters: counters.clone(),
        },
    })
    .map_err(FrontRunError::Emit)?;
    Ok(counters)
}

/// Why [`run_front`] stopped.
#[derive(Debug, thiserror::Error)]
pub enum FrontRunError<E> {
    /// The input does not match the plan.
    #[error(transparent)]
    Merge(MergeError),
    /// `emit` failed.
    #[error("{0}")]
    Emit(E),
}

/// The back and the tail over every group's front messages (see the module doc).
#[derive(Debug)]
pub struct Merger {
    opts: AnalyzeOptions,
    back: Back,
    tail: Tail,
    watermarks: Vec<u64>,
    k8s: VecDeque<Vec<K8sObject>>,
    queues: Vec<VecDeque<FrontMessage>>,
    finished: Vec<bool>,
    next_batch: usize,
    front_stats: AnalysisStats,
}

impl Merger {
    /// A merger for `groups` groups run with `plan`, `k8s` the Kubernetes objects per
    /// batch ([`BatchPlanner::finish`]), `opts` the whole analysis' options.
    pub fn new(
        opts: &AnalyzeOptions,
        plan: &BatchPlan,
        k8s: Vec<Vec<K8sObject>>,
        groups: usize,
    ) -> Result<Self, MergeError> {
        let (_, back, tail) = Pipeline::new(opts)?.into_parts();
        Ok(Merger {
            opts: opts.clone(),
            back,
            tail,
            watermarks: plan.watermarks.clone(),
            k8s: k8s.into(),
            queues: (0..groups).map(|_| VecDeque::new()).collect(),
            finished: vec![false; groups],
            next_batch: 0,
            front_stats: AnalysisStats::default(),
        })
    }

    /// Kubernetes objects given at analysis time ([`Pipeline::add_k8s_objects`]).
    pub fn add_k8s_objects(&mut self, objects: &[K8sObject]) {
        self.tail.enricher.add_fallback(objects);
    }

    /// Takes one message of group `group` (each group's in the order [`run_front`] made
    /// them) and hands every batch of spans it completes to `hand_out`, as
    /// [`crate::analyze_into`] would (sorted, non-empty).
    pub fn push<E>(
        &mut self,
        group: usize,
        message: FrontMessage,
        hand_out: &mut impl FnMut(Vec<Span>) -> Result<(), E>,
    ) -> Result<(), MergeOrSink<E>> {
        let last = self.watermarks.len().saturating_sub(1) as u32;
        let Some(queue) = self.queues.get_mut(group) else {
            return Err(MergeOrSink::Merge(MergeError::Order {
                group,
                batch: message.batch,
            }));
        };
        let in_order = queue.back().is_none_or(|prev| prev.batch <= message.batch)
            && message.batch as usize >= self.next_batch
            && message.batch <= last
            && !self.finished[group];
        if !in_order {
            return Err(MergeOrSink::Merge(MergeError::Order {
                group,
                batch: message.batch,
            }));
        }
        if matches!(message.body, Body::Finish { .. }) {
            self.finished[group] = true;
        }
        queue.push_back(message);
        self.advance(hand_out)
    }

    /// Runs every batch all groups are past.
    fn advance<E>(
        &mut self,
        hand_out: &mut impl FnMut(Vec<Span>) -> Result<(), E>,
    ) -> Result<(), MergeOrSink<E>> {
        let last = self.watermarks.len().saturating_sub(1);
        while self.next_batch < last {
            let k = self.next_batch as u32;
            let ready = self
                .queues
                .iter()
                .zip(&self.finished)
                .all(|(q, done)| *done || q.back().is_some_and(|m| m.batch > k));
            if !ready {
                return Ok(());
            }
            let mut intake = Vec::new();
            let mut evict = Vec::new();
            for q in self.queues.iter_mut() {
                while q.front().is_some_and(|m| m.batch == k) {
                    match q.pop_front().map(|m| m.body) {
                        Some(Body::Intake(a)) => intake.push(a),
                        Some(Body::Evict(a)) => evict.push(a),
                        Some(Body::Finish { .. }) | None => {
                            return Err(MergeOrSink::Merge(MergeError::Changed(
                                "a group ended early",
                            )))
                        }
                    }
                }
            }
            let k8s = self.k8s.pop_front().unwrap_or_default();
            let absorbed = merge_by_key(intake).map_err(MergeOrSink::Merge)?;
            self.step(Step::Intake { k8s, absorbed }, hand_out)?;
            let (cutoff, old) = drain_bounds(&self.opts, self.watermarks[self.next_batch]);
            let evict = if old > 0 {
                Some((old, merge_by_key(evict).map_err(MergeOrSink::Merge)?))
            } else {
                None
            };
            self.step(Step::Drain { cutoff, evict }, hand_out)?;
            self.next_batch += 1;
        }
        Ok(())
    }

    fn step<E>(
        &mut self,
        step: Step,
        hand_out: &mut impl FnMut(Vec<Span>) -> Result<(), E>,
    ) -> Result<(), MergeOrSink<E>> {
        let mut handoffs: Vec<Handoff> = Vec::new();
        self.back.step(step, &mut |mut h| handoffs.append(&mut h));
        let mut spans = Vec::new();
        for h in handoffs {
            if let Some(mut s) = self.tail.take(h) {
                spans.append(&mut s);
            }
        }
        if !spans.is_empty() {
            sort_spans(&mut spans);
            hand_out(spans).map_err(MergeOrSink::Sink)?;
        }
        Ok(())
    }

    /// Ends the analysis once every group sent its final message: the last batch, the end
    /// of every stream, the last spans to `hand_out`; the analysis (without spans: they
    /// went to `hand_out`), as [`crate::analyze_into`] returns it.
    pub fn finish<E>(
        mut self,
        hand_out: &mut impl FnMut(Vec<Span>) -> Result<(), E>,
    ) -> Result<Analysis, MergeOrSink<E>> {
        if let Some(g) = self.finished.iter().position(|done| !done) {
            return Err(MergeOrSink::Merge(MergeError::Incomplete(g)));
        }
        if self.next_batch + 1 != self.watermarks.len() {
            return Err(MergeOrSink::Merge(MergeError::Changed("batches missing")));
        }
        let k = self.next_batch as u32;
        let mut intake = Vec::new();
        let mut rest = Vec::new();
        let mut open = Vec::new();
        for q in self.queues.iter_mut() {
            for m in q.drain(..) {
                match m.body {
                    Body::Intake(a) if m.batch == k => intake.push(a),
                    Body::Finish {
                        rest: r,
                        open: o,
                        counters,
                    } => {
                        rest.push(r);
                        open.push(o);
                        counters.add_to(&mut self.front_stats);
                    }
                    _ => {
                        return Err(MergeOrSink::Merge(MergeError::Changed(
                            "a message after the last batch",
                        )))
                    }
                }
            }
        }
        let k8s = self.k8s.pop_front().unwrap_or_default();
        let absorbed = merge_by_key(intake).map_err(MergeOrSink::Merge)?;
        self.step(Step::Intake { k8s, absorbed }, hand_out)?;
        let mut last = merge_by_key(rest).map_err(MergeOrSink::Merge)?;
        last.append(&mut merge_by_key(open).map_err(MergeOrSink::Merge)?);
        let (mut analysis, _) = finish_parts(
            &self.front_stats,
            super::StageTimes::default(),
            self.back,
            self.tail,
            last,
        );
        let spans = std::mem::take(&mut analysis.spans);
        if !spans.is_empty() {
            hand_out(spans).map_err(MergeOrSink::Sink)?;
        }
        Ok(analysis)
    }
}

/// A [`Merger`] error or the span sink's.
#[derive(Debug, thiserror::Error)]
pub enum MergeOrSink<E> {
    /// The merge cannot give the local result.
    #[error(transparent)]
    Merge(MergeError),
    /// The sink failed.
    #[error("{0}")]
    Sink(E),
}

/// Merges lists each ordered by connection key into one ordered by key; a key in two
/// lists is a collision.
fn merge_by_key(lists: Vec<Vec<Absorbed>>) -> Result<Vec<Absorbed>, MergeError> {
    let mut lists: Vec<_> = lists.into_iter().filter(|l| !l.is_empty()).collect();
    if lists.len() <= 1 {
        return Ok(lists.pop().unwrap_or_default());
    }
    let mut all: Vec<(ConnKey, usize, Absorbed)> = lists
        .into_iter()
        .enumerate()
        .flat_map(|(g, l)| l.into_iter().map(move |a| (a.key, g, a)))
        .collect();
    // Each list is sorted by key: a stable sort by key is the merge.
    all.sort_by_key(|(key, _, _)| *key);
    for pair in all.windows(2) {
        if pair[0].0 == pair[1].0 && pair[0].1 != pair[1].1 {
            return Err(MergeError::KeyCollision(format!("{:?}", pair[0].0)));
        }
    }
    Ok(all.into_iter().map(|(_, _, a)| a).collect())
}

/// A front job (`podtrace analyze --cluster` → `podtrace-cluster front`): the options, the
/// plan's watermarks and, per group (node), its capture paths and rows per batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrontJob {
    /// [`WIRE_VERSION`] of the podtrace that planned the job.
    pub version: String,
    /// The front's options.
    pub options: FrontOptions,
    /// [`BatchPlan::watermarks`].
    pub watermarks: Vec<u64>,
    /// The groups, in the order their messages are numbered.
    pub groups: Vec<FrontGroup>,
}

/// One group of a [`FrontJob`]: one node's captures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrontGroup {
    /// The node the captures come from (`podtrace.node`; for messages only).
    pub node: String,
    /// The captures, in input order (paths every executor sees).
    pub paths: Vec<std::path::PathBuf>,
    /// [`BatchPlan::group_rows`] of these captures.
    pub rows: Vec<(u32, u32)>,
}

impl FrontJob {
    /// A job for this podtrace version.
    pub fn new(options: FrontOptions, watermarks: Vec<u64>, groups: Vec<FrontGroup>) -> Self {
        FrontJob {
            version: WIRE_VERSION.to_string(),
            options,
            watermarks,
            groups,
        }
    }

    /// Refuses a job planned by another podtrace version.
    pub fn check_version(&self) -> Result<(), MergeError> {
        if self.version == WIRE_VERSION {
            Ok(())
        } else {
            Err(MergeError::Version {
                got: self.version.clone(),
                want: WIRE_VERSION,
            })
        }
    }
}

/// The group number of the frame that ends a complete stream of front messages
/// ([`write_frame`]): a stream without it was cut short.
pub const END_OF_JOB: u32 = u32::MAX;

/// Writes one frame of a front message stream: group (u32 LE), length (u32 LE), bytes.
pub fn write_frame(w: &mut impl std::io::Write, group: u32, bytes: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(bytes.len())
        .map_err(|_| std::io::Error::other("a front message over 4 GiB"))?;
    w.write_all(&group.to_le_bytes())?;
    w.write_all(&len.to_le_bytes())?;
    w.write_all(bytes)
}

/// Reads one frame ([`write_frame`]); `None` at a clean end of the stream.
pub fn read_frame(r: &mut impl std::io::Read) -> std::io::Result<Option<(u32, Vec<u8>)>> {
    let mut head = [0u8; 8];
    let mut got = 0;
    while got < head.len() {
        match r.read(&mut head[got..])? {
            0 if got == 0 => return Ok(None),
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => got += n,
        }
    }
    let group = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
    let len = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as usize;
    let mut bytes = vec![0u8; len];
    r.read_exact(&mut bytes)?;
    Ok(Some((group, bytes)))
}
