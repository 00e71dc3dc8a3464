//! The linking state machine: exchanges are held in slots for a bounded time window,
//! identified in request-start order ([`Linker::link`]), emitted as spans once answered
//! and their trace is final, and forgotten when old ([`Linker::evict`]).

use std::collections::{hash_map, BTreeSet};
use std::hash::BuildHasher;
use std::sync::Arc;

use foldhash::{HashMap, HashSet};
use podtrace_model::{SpanId, SpanKind, TraceId};
use rayon::prelude::*;

use super::build::{build_span, emptied};
use super::identity::{client_identity, request_context, server_identity, Identity};
use super::ids::{AddrText, IdParts};
use super::index::{min_xid, ConnNo, Keyed, Peer, PeerIndex, SlotKey, Xid};
use super::{LinkStats, ObservedSpan, ProcessKey};
use crate::context::{Extraction, TraceContext};
use crate::details::SpanDetails;
use crate::exchange::{Exchange, ExchangeEvent, ExchangeId};
use crate::reassemble::{ConnInfo, ConnKey};

/// A held exchange. Everything linking reads of it for the whole window is in `held`
/// (64 bytes); the exchange itself (its request and response with their strings
/// and protocol details, about 400 bytes) is boxed in `live` and leaves when the exchange
/// is emitted, into its span: emitted exchanges, nearly all of the window's, stay small.
/// The exchange and its extracted context arrive boxed from the parsing threads; the
/// linker moves the boxes, it does not copy, allocate or free them.
#[derive(Debug)]
struct Slot {
    held: Held,
    /// The exchange until it is emitted.
    live: Option<Box<Exchange>>,
    /// The request's trace context when it was extracted ahead (in parallel, see
    /// [`request_context`]); taken when the exchange is identified.
    extraction: Option<Box<Extraction>>,
    identity: Option<Identity>,
    /// Its connection's address text, an input of the ids it is given.
    addrs: Arc<AddrText>,
    in_progress: bool,
    emitted: bool,
    unanswered: bool,
}

/// What linking reads of a held exchange from its request until it is evicted.
#[derive(Debug)]
struct Held {
    /// Its socket (whose key is its id's connection: see [`Held::id`]).
    conn: Arc<ConnInfo>,
    /// Its sequence number on the connection.
    seq: u64,
    side: SpanKind,
    /// Request start.
    start: u64,
    /// Last request byte.
    request_end: u64,
    /// The thread that read or wrote the request (0: unknown).
    tid: u32,
    /// Its position among the connection's requests that started at the same time (an
    /// input of its ids).
    ordinal: u32,
    /// Last response byte, once answered.
    response_end: Option<u64>,
}

impl Held {
    fn of(ex: &Exchange) -> Self {
        // Pairing names an exchange by its socket's key: the id is not held twice.
        debug_assert_eq!(ex.id.conn, ex.conn.key, "an exchange's id names its socket");
        Held {
            conn: ex.conn.clone(),
            seq: ex.id.seq,
            side: ex.side,
            start: ex.start_ts(),
            request_end: ex.request.end_ts,
            tid: ex.request.tid,
            ordinal: ex.ordinal,
            response_end: ex.response.as_ref().map(|r| r.end_ts),
        }
    }

    /// Its exchange id.
    fn id(&self) -> ExchangeId {
        ExchangeId {
            conn: self.conn.key,
            seq: self.seq,
        }
    }

    /// Last response byte (last request byte while the response is outstanding).
    fn end_ts(&self) -> u64 {
        self.response_end.unwrap_or(self.request_end)
    }

    /// Until when it may still be in flight: its last response byte, or forever while the
    /// response is outstanding.
    fn open_end(&self) -> u64 {
        self.response_end.unwrap_or(u64::MAX)
    }

    fn order_key(&self, xid: Xid) -> OrderKey {
        (self.start, side_rank(self.side), xid)
    }

    fn peer(&self) -> Peer<'_> {
        Peer {
            side: self.side,
            conn: &self.conn,
            start: self.start,
        }
    }
}

/// The held exchanges by [`SlotKey`] (the table holds 16-byte keys and pointers: probing
/// and growth touch little memory). Looked up by an [`Xid`] or by its slot key.
#[derive(Debug, Default)]
struct Slots(HashMap<SlotKey, Box<Slot>>);

impl Slots {
    fn get(&self, k: &impl Keyed) -> Option<&Slot> {
        self.0.get(&k.slot_key()).map(|s| &**s)
    }

    fn get_mut(&mut self, k: &impl Keyed) -> Option<&mut Slot> {
        self.0.get_mut(&k.slot_key()).map(|s| &mut **s)
    }

    /// Holds `slot` under `id`; the slot it displaced, if any.
    fn insert(&mut self, id: Xid, slot: Box<Slot>) -> Option<Box<Slot>> {
        self.0.insert(id.slot_key(), slot)
    }

    fn remove(&mut self, k: &impl Keyed) -> Option<Box<Slot>> {
        self.0.remove(&k.slot_key())
    }

    fn values(&self) -> impl Iterator<Item = &Slot> {
        self.0.values().map(|s| &**s)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.len()
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A connection with held exchanges.
#[derive(Debug)]
struct HeldConn {
    /// Its number.
    no: ConnNo,
    /// How many of its exchanges are held.
    held: usize,
    /// The text of its addresses for id derivation, made once for all its exchanges.
    addrs: Arc<AddrText>,
}

/// Spans built by one parallel task at least (smaller batches are not worth a split).
const SPANS_PER_TASK: usize = 256;

/// Sort key: request start, CLIENT before SERVER (the sender's side first), identity.
type OrderKey = (u64, u8, Xid);

/// CLIENT before SERVER in [`OrderKey`]s.
fn side_rank(side: SpanKind) -> u8 {
    match side {
        SpanKind::Client => 0,
        SpanKind::Server => 1,
    }
}

/// The linking stage: exchanges in, identified spans out.
#[derive(Debug, Default)]
pub struct Linker {
    /// Boxed, by slot key: the table stays small (16-byte key + pointer per entry), so
    /// probing and growth touch little memory.
    slots: Slots,
    /// Each connection with held exchanges.
    conn_nos: HashMap<ConnKey, HeldConn>,
    /// The next connection number.
    next_conn_no: ConnNo,
    /// Every held exchange by request start (eviction scans only old ones).
    /// By slot key, not the whole key: eviction does not depend on the order of
    /// exchanges that started at the same time.
    by_start: BTreeSet<(u64, SlotKey)>,
    unidentified: BTreeSet<OrderKey>,
    /// Identified exchanges not emitted yet, in no particular order (sorted when
    /// [`Linker::link`] emits). Entries of exchanges that went unanswered or were evicted
    /// are not taken out one by one: `link` drops them when it meets them.
    awaiting_emit: Vec<OrderKey>,
    /// Held exchanges indexed for the parent and caller searches.
    peers: PeerIndex,
    ids: HashMap<(TraceId, SpanId), SlotKey>,
    /// Invented traces that may still be adopted: their identified members. An entry
    /// leaves when the trace is adopted (members rewritten) or closed (no member can
    /// gain a child any more), or when a member is evicted.
    invented: HashMap<TraceId, Vec<SlotKey>>,
    /// Emitted spans by the parent they name, for parents that are identified but not
    /// emitted yet: if such a parent is dropped without being emitted (it went unanswered:
    /// the capture ended before its response; or it was evicted), its children are orphans
    /// after all — their parent is in no output.
    orphans_if_dropped: HashMap<SlotKey, u64>,
    stats: LinkStats,
    /// Request start of the exchange being identified in order: server exchanges that
    /// ended before it can no longer be in flight for anything identified later.
    horizon: u64,
    /// Where [`Linker::link`] split `unidentified`: keys of exchanges that started
    /// before it are out of the set.
    split: u64,
    /// Longest time between related requests considered when searching parents and
    /// callers (the pipeline's window; 0 = unbounded).
    window_ns: u64,
    /// Route and baggage settings of span building ([`crate::details`]).
    details: Arc<SpanDetails>,
}

impl Linker {
    /// An empty linker with no bound on the search for parents and callers.
    #[cfg(test)]
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty linker that searches parents and callers within `window_ns` before a
    /// request (the pipeline's time window: older state is evicted anyway).
    pub fn with_window(window_ns: u64) -> Self {
        Linker {
            window_ns,
            ..Self::default()
        }
    }

    /// Sets how spans are named (routes) and whether baggage becomes attributes.
    pub fn set_details(&mut self, details: Arc<SpanDetails>) {
        self.details = details;
    }

    fn earliest(&self, ts: u64) -> u64 {
        if self.window_ns == 0 {
            0
        } else {
            ts.saturating_sub(self.window_ns)
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> &LinkStats {
        &self.stats
    }

    /// Exchanges currently held (bounded by the time window).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True when nothing is held.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Takes one event of the exchange stage.
    #[cfg(test)]
    pub fn on_event(&mut self, ev: ExchangeEvent) {
        self.on_event_extracted(ev, None);
    }

    /// Takes one event of the exchange stage with, for a request, its trace context
    /// already extracted by [`request_context`] (`None`: extracted when identified).
    pub fn on_event_extracted(&mut self, ev: ExchangeEvent, extraction: Option<Box<Extraction>>) {
        match ev {
            ExchangeEvent::Request(ex) => {
                self.stats.exchanges += 1;
                let next = self.next_conn_no;
                let conn = ex.id.conn;
                let entry = self.conn_nos.entry(conn).or_insert_with(|| HeldConn {
                    no: next,
                    held: 0,
                    addrs: Arc::new(AddrText::of(conn.local, conn.remote)),
                });
                if entry.no == next {
                    self.next_conn_no += 1;
                }
                entry.held += 1;
                let addrs = entry.addrs.clone();
                let id = Xid {
                    id: ex.id,
                    no: (entry.no, ex.id.seq),
                };
                let held = Held::of(&ex);
                let key = held.order_key(id);
                self.peers.insert(held.peer(), id);
                self.unidentified.insert(key);
                self.by_start.insert((key.0, id.slot_key()));
                let displaced = self.slots.insert(
                    id,
                    Box::new(Slot {
                        held,
                        live: Some(ex),
                        extraction,
                        identity: None,
                        addrs,
                        in_progress: false,
                        emitted: false,
                        unanswered: false,
                    }),
                );
                if displaced.is_some() {
                    // The same exchange id again: it took the place of the held one.
                    self.release_conn(&id.id.conn);
                    self.dropped_unemitted(id);
                }
            }
            ExchangeEvent::Response { id, response } => {
                if let Some(slot) = self.xid(id).and_then(|x| self.slots.get_mut(&x)) {
                    slot.held.response_end = Some(response.end_ts);
                    if let Some(ex) = &mut slot.live {
                        ex.response = Some(response);
                    }
                }
            }
            ExchangeEvent::Unanswered(id) => {
                if let Some(slot) = self.xid(id).and_then(|x| self.slots.get_mut(&x)) {
                    if !slot.unanswered && slot.held.response_end.is_none() {
                        slot.unanswered = true;
                        self.stats.unmatched_requests += 1;
                    }
                }
            }
            ExchangeEvent::UnmatchedResponse(_) => self.stats.unmatched_responses += 1,
        }
    }

    /// A held exchange leaves without having been emitted: the spans emitted as its
    /// children are orphans.
    fn dropped_unemitted(&mut self, id: Xid) {
        if self.orphans_if_dropped.is_empty() {
            return;
        }
        if let Some(n) = self.orphans_if_dropped.remove(&id.slot_key()) {
            self.stats.orphans += n;
        }
    }

    /// The key of a held exchange's id (`None`: no exchange of its connection held).
    fn xid(&self, id: ExchangeId) -> Option<Xid> {
        self.conn_nos.get(&id.conn).map(|c| Xid {
            id,
            no: (c.no, id.seq),
        })
    }

    /// One exchange of connection `conn` is no longer held.
    fn release_conn(&mut self, conn: &ConnKey) {
        if let Some(entry) = self.conn_nos.get_mut(conn) {
            entry.held -= 1;
            if entry.held == 0 {
                self.conn_nos.remove(conn);
            }
        }
    }

    /// Identifies every exchange whose request started before `cutoff` (in start order)
    /// and returns the spans of identified exchanges that have their response.
    #[cfg(test)]
    pub fn link(&mut self, cutoff: u64) -> Vec<ObservedSpan> {
        let details = self.details.clone();
        build_all(self.link_unbuilt(cutoff), &details)
    }

    /// Request starts below `below` that split the exchanges not identified yet which
    /// started before it into runs of about `per` (in identification order), increasing:
    /// cutoffs that link a run at a time (each run's spans can be built while the next
    /// run is identified) instead of all at once — the end of an analysis
    /// ([`Linker::link_unbuilt`] per run) or a large drain ([`Linker::link_part`] per run,
    /// then `link_unbuilt(below)`). Walks only the exchanges below `below`.
    pub fn run_cutoffs(&self, per: usize, below: u64) -> Vec<u64> {
        let mut out: Vec<u64> = Vec::new();
        let ready = self.unidentified.range(..(below, 0, min_xid()));
        for key in ready.step_by(per.max(1)).skip(1) {
            if out.last().is_none_or(|&last| key.0 > last) {
                out.push(key.0);
            }
        }
        out
    }

    /// [`Linker::link`] without building the spans: the identified exchanges that have
    /// their response, in emit order, each to be built with [`build_all`] (anywhere: they
    /// no longer depend on the linker).
    pub fn link_unbuilt(&mut self, cutoff: u64) -> Vec<Linked> {
        self.link_to(cutoff, false)
    }

    /// The first part of a drain to a later cutoff, linked up to `cutoff`: the exchanges
    /// that started before `cutoff` are identified, and the emitted ones are exactly the
    /// first ones [`Linker::link_unbuilt`] would emit at the drain's own cutoff, in its
    /// order. So a large drain linked in parts (`link_part` at increasing cutoffs, then
    /// `link_unbuilt` at the drain's) emits the same exchanges in the same order as
    /// `link_unbuilt` at once, while the parts already linked are built.
    ///
    /// Why the parts agree: emission goes through the identified exchanges in order, and
    /// a part stops at the first one whose fate it cannot know yet — one that started at
    /// or after `cutoff` (an exchange identified later may sort before it), or one of an
    /// invented trace that is still open at `cutoff` (it may close by the drain's cutoff,
    /// or be adopted). What it emits before that is final: an answered exchange with a
    /// trace from the wire keeps its identity, and an invented trace closed at `cutoff`
    /// (every member answered before it, and everything that started before it
    /// identified) can gain no member and no adoption later. Unanswered exchanges wait in
    /// both (no response arrives during a drain).
    pub fn link_part(&mut self, cutoff: u64) -> Vec<Linked> {
        self.link_to(cutoff, true)
    }

    /// [`Linker::link_unbuilt`] (`part` false) or [`Linker::link_part`] (`part` true).
    /// Not inlined: the benchmarks count its instructions as the link stage's.
    #[inline(never)]
    fn link_to(&mut self, cutoff: u64, part: bool) -> Vec<Linked> {
        // The ready ones leave the set at once (split, not one by one).
        let split = (cutoff, 0, min_xid());
        let later = self.unidentified.split_off(&split);
        let ready = std::mem::replace(&mut self.unidentified, later);
        self.split = cutoff;
        for key in ready {
            self.horizon = key.0;
            self.identify(key.2);
        }
        // One pass in order: pick the answered ones, keep the rest waiting. The waiting
        // ones are sorted and the new ones nearly so: a stable sort merges the runs.
        let mut awaiting = std::mem::take(&mut self.awaiting_emit);
        awaiting.sort();
        let mut waiting = Vec::new();
        let mut emit: Vec<Linked> = Vec::with_capacity(awaiting.len());
        // Invented traces found closed in this pass: they are final now.
        let mut closed: HashSet<TraceId> = HashSet::default();
        let mut open: HashSet<TraceId> = HashSet::default();
        // A part stops at the first exchange whose fate it cannot know yet: that one and
        // every later one stay for the drain's later parts.
        let mut undecided = awaiting.len();
        for (at, &key) in awaiting.iter().enumerate() {
            if part && key.0 >= cutoff {
                undecided = at;
                break;
            }
            let (trace, invented) = {
                let Some(slot) = self.slots.get(&key.2) else {
                    // Evicted while waiting.
                    continue;
                };
                if slot.unanswered || slot.emitted || slot.held.order_key(key.2) != key {
                    // Gone unanswered while waiting (never emitted), or a stale entry.
                    continue;
                }
                if slot.held.response_end.is_none() {
                    waiting.push(key);
                    continue;
                }
                let Some(identity) = &slot.identity else {
                    continue;
                };
                (identity.trace_id, identity.invented)
            };
            if invented && !closed.contains(&trace) {
                if open.contains(&trace) || !self.invented_closed(&trace, cutoff) {
                    if part {
                        undecided = at;
                        break;
                    }
                    // Its trace may still be adopted: wait until it is final.
                    open.insert(trace);
                    waiting.push(key);
                    continue;
                }
                closed.insert(trace);
            }
            let Some(identity) = self.slots.get(&key.2).and_then(|s| s.identity.clone()) else {
                continue;
            };
            if let Some(parent) = identity.parent {
                match self.ids.get(&(identity.parent_trace, parent)) {
                    None => self.stats.orphans += 1,
                    Some(px) if !self.slots.get(px).is_some_and(|p| p.emitted) => {
                        // known, not emitted yet: an orphan if it never is
                        *self.orphans_if_dropped.entry(*px).or_default() += 1;
                    }
                    Some(_) => {}
                }
            }
            // its children emitted so far have their parent now (mostly none are waiting:
            // no lookup then)
            if !self.orphans_if_dropped.is_empty() {
                self.orphans_if_dropped.remove(&key.2.slot_key());
            }
            let Some(slot) = self.slots.get_mut(&key.2) else {
                continue;
            };
            // The exchange moves into its span (as its box: the exchange itself is not
            // touched here); the slot keeps what linking reads.
            let Some(ex) = slot.live.take() else {
                continue;
            };
            slot.emitted = true;
            emit.push(Linked { ex, identity });
        }
        waiting.extend_from_slice(&awaiting[undecided..]);
        self.awaiting_emit = waiting;
        for t in closed {
            self.invented.remove(&t);
        }
        emit
    }

    /// Forgets exchanges that ended before `before`: emitted ones silently, outstanding
    /// ones counted as evicted (unanswered ones were already counted).
    pub fn evict(&mut self, before: u64) {
        let all_go = before == u64::MAX
            && self
                .by_start
                .last()
                .is_none_or(|(start, _)| *start < before)
            && self
                .slots
                .values()
                .all(|s| s.identity.is_some() && s.held.end_ts() < before);
        if all_go {
            // The end of an analysis: everything goes (every held exchange has a start
            // index entry). Count in one scan, then drop the indexes whole instead of
            // taking every exchange out of each one.
            let outstanding = self
                .slots
                .values()
                .filter(|s| !s.emitted && !s.unanswered)
                .count();
            self.stats.evicted_requests += outstanding as u64;
            // every parent still pending was never emitted
            self.stats.orphans += self.orphans_if_dropped.values().sum::<u64>();
            *self = Linker {
                stats: std::mem::take(&mut self.stats),
                horizon: self.horizon,
                split: self.split,
                window_ns: self.window_ns,
                next_conn_no: self.next_conn_no,
                details: std::mem::take(&mut self.details),
                ..Linker::default()
            };
            return;
        }
        // Take the old part of the start index off at once; what cannot go yet goes back.
        let later = self.by_start.split_off(&(before, (0, 0)));
        let candidates = std::mem::replace(&mut self.by_start, later);
        // Each candidate's slot is taken out once; one that cannot go yet is put back.
        let mut old: Vec<(Xid, Box<Slot>)> = Vec::with_capacity(candidates.len());
        for (start, key) in candidates {
            let Some(slot) = self.slots.remove(&key) else {
                continue;
            };
            let id = Xid {
                id: slot.held.id(),
                no: key,
            };
            if slot.identity.is_some() && slot.held.end_ts() < before {
                old.push((id, slot));
            } else {
                self.slots.insert(id, slot);
                self.by_start.insert((start, key));
            }
        }
        self.forget_ids(&old);
        for (id, slot) in old {
            self.release_conn(&id.id.conn);
            if !slot.emitted && !slot.unanswered {
                self.stats.evicted_requests += 1;
            }
            if !slot.emitted {
                // An emitted exchange left both sets when it was identified and emitted.
                // (`awaiting_emit` drops its entry in `link`.)
                let key = slot.held.order_key(id);
                self.unidentified.remove(&key);
                self.dropped_unemitted(id);
            }
            self.peers.remove(slot.held.peer(), id);
            if let Some(idn) = slot.identity {
                if idn.invented {
                    // A member left: the trace can no longer be adopted whole.
                    self.invented.remove(&idn.trace_id);
                }
            }
        }
    }

    /// Takes the span ids of evicted exchanges out of the span-id table (each id that is
    /// still its exchange's). In the table's own order: the entries are sorted by the
    /// bucket their key hashes to, so a large eviction (the window moved past a whole
    /// capture, or a long pause) walks the table instead of missing the cache at each of
    /// its hundreds of thousands of entries. The removals are independent of each other:
    /// their order changes nothing else.
    fn forget_ids(&mut self, old: &[(Xid, Box<Slot>)]) {
        let mask = bucket_mask(self.ids.capacity());
        let hasher = self.ids.hasher();
        let mut keys: Vec<(u64, (TraceId, SpanId), SlotKey)> = old
            .iter()
            .filter_map(|(id, slot)| {
                let idn = slot.identity.as_ref()?;
                let key = (idn.registered, idn.span_id);
                Some((hasher.hash_one(key) & mask, key, id.slot_key()))
            })
            .collect();
        keys.sort_unstable_by_key(|k| k.0);
        for (_, key, slot_key) in keys {
            if let hash_map::Entry::Occupied(e) = self.ids.entry(key) {
                if *e.get() == slot_key {
                    e.remove();
                }
            }
        }
    }

    /// Identifies one exchange (and, first, the exchanges its identity depends on).
    fn identify(&mut self, id: Xid) -> Option<Identity> {
        let slot = self.slots.get_mut(&id)?;
        if let Some(i) = &slot.identity {
            return Some(i.clone());
        }
        if slot.in_progress {
            return None;
        }
        let Some(ex) = slot.live.as_ref() else {
            // Emitted, so identified long ago (not reached: its identity is kept).
            return None;
        };
        // What the rules need of the exchange, from the slot (the exchange itself is read
        // only when its context was not extracted ahead): the recursive searches below
        // borrow other slots.
        let facts = Facts::of(&slot.held, id, slot.addrs.clone());
        let extraction = match slot.extraction.take() {
            Some(e) => *e,
            None => request_context(&ex.request),
        };
        slot.in_progress = true;
        for ig in &extraction.ignored {
            *self.stats.ignored_headers.entry(*ig).or_default() += 1;
        }
        let ctx = extraction.context;
        let mut identity = match facts.side {
            SpanKind::Client => {
                let wire = ctx.as_ref().map(|c| c.trace_id);
                let mut parent = self.choose_parent(&facts, wire);
                if let (Some((sid, p)), Some(c)) = (&parent, &ctx) {
                    if p.invented && p.trace_id != c.trace_id {
                        // Root adoption: the service's tracer started the trace that
                        // this call carries for the context-less request it serves.
                        self.adopt(p.trace_id, c);
                        let sid = *sid;
                        parent = self
                            .slots
                            .get(&sid)
                            .and_then(|s| s.identity.clone())
                            .map(|i| (sid, i));
                    }
                }
                client_identity(&facts.parts, ctx, parent.map(|(_, p)| p))
            }
            SpanKind::Server => {
                let caller = self.matching_client(&facts);
                if let Some(cid) = caller {
                    self.claim_client(cid);
                }
                let caller_identity = caller.and_then(|cid| self.identify(cid));
                server_identity(&facts.parts, ctx, caller_identity)
            }
        };
        let mut salt = 0u64;
        while self
            .ids
            .get(&(identity.trace_id, identity.span_id))
            .is_some_and(|other| *other != id.slot_key())
        {
            salt += 1;
            self.stats.duplicate_ids += 1;
            identity.span_id = facts.parts.span_id(&identity.trace_id, salt);
        }
        self.ids
            .insert((identity.trace_id, identity.span_id), id.slot_key());
        identity.registered = identity.trace_id;
        if identity.invented {
            self.invented
                .entry(identity.trace_id)
                .or_default()
                .push(id.slot_key());
        }
        let key = facts.order_key();
        if key.0 >= self.split {
            // Identified ahead of its turn (a dependency): still in the set.
            self.unidentified.remove(&key);
        }
        if let Some(slot) = self.slots.get_mut(&id) {
            slot.in_progress = false;
            slot.identity = Some(identity.clone());
            if !slot.unanswered {
                self.awaiting_emit.push(key);
            }
        }
        Some(identity)
    }

    /// The parent of a CLIENT exchange among the SERVER exchanges of its process in flight
    /// when it was sent ([`Linker::in_flight_servers`]), with that parent's identity:
    /// (a) the innermost one whose trace id is the client's wire trace id; with a wire
    /// trace id that none has, only servers whose trace podtrace invented remain (a
    /// context-less request, whose service may have started that trace: root adoption);
    /// (b) among those, the ones whose request was read by the thread that sent the
    /// client request (thread-per-request servers); (c) the innermost of what is left.
    /// When (c) still had several to choose from, the choice is counted as ambiguous.
    fn choose_parent(&mut self, client: &Facts, wire: Option<TraceId>) -> Option<(Xid, Identity)> {
        let found = self.in_flight_servers(client);
        if found.is_empty() {
            return None;
        }
        // Candidates in nesting order (innermost last), with their identities.
        let mut cands: Vec<(Xid, Identity, u32)> = Vec::with_capacity(found.len());
        for (_, sid) in found {
            let Some(idn) = self.identify(sid) else {
                continue;
            };
            let tid = self.slots.get(&sid).map_or(0, |s| s.held.tid);
            cands.push((sid, idn, tid));
        }
        let mut adoption = false;
        if let Some(t) = wire {
            if let Some(i) = cands.iter().rposition(|(_, idn, _)| idn.trace_id == t) {
                let (sid, idn, _) = cands.swap_remove(i);
                return Some((sid, idn));
            }
            cands.retain(|(_, idn, _)| idn.invented);
            adoption = true;
        }
        if client.tid != 0 && cands.iter().any(|(_, _, tid)| *tid == client.tid) {
            cands.retain(|(_, _, tid)| *tid == client.tid);
        }
        if cands.len() > 1 {
            self.stats.ambiguous_parents += 1;
        }
        if adoption {
            // A new trace among several context-less requests: the oldest one waiting
            // for its trace takes it. An event loop serves requests in arrival order, so
            // the first trace its tracer starts is the oldest waiting request's; the
            // innermost would hand it to a request read while the first was still being
            // set up (its call on a new connection, say) and swap the two traces.
            return cands.into_iter().next().map(|(sid, idn, _)| (sid, idn));
        }
        cands.pop().map(|(sid, idn, _)| (sid, idn))
    }

    /// Root adoption: the invented trace `invented` becomes the trace of `ctx` (a call
    /// made while serving a context-less request carries the trace the service's tracer
    /// started). Every identified member of the invented trace — the server span, the
    /// context-less calls and callers around it — moves to that trace; spans ids stay.
    fn adopt(&mut self, invented: TraceId, ctx: &TraceContext) {
        let Some(members) = self.invented.remove(&invented) else {
            return;
        };
        self.stats.adopted_traces += 1;
        for m in members {
            if let Some(idn) = self.slots.get_mut(&m).and_then(|s| s.identity.as_mut()) {
                idn.trace_id = ctx.trace_id;
                idn.invented = false;
                if let Some(sampled) = ctx.sampled {
                    idn.flags = u32::from(sampled);
                }
            }
        }
    }

    /// True when no span of the invented trace `trace` can gain a child any more: every
    /// member got its response before `cutoff` (everything that started before `cutoff`
    /// is identified), or will never get one.
    fn invented_closed(&self, trace: &TraceId, cutoff: u64) -> bool {
        let Some(members) = self.invented.get(trace) else {
            return true;
        };
        members.iter().all(|m| match self.slots.get(m) {
            None => true,
            Some(s) => s.unanswered || s.held.response_end.is_some_and(|end| end < cutoff),
        })
    }

    /// The SERVER exchanges of the same process in flight when `client` was sent, in
    /// nesting order (by when the process could start on them; innermost last). A server
    /// exchange is in flight from when its process could start on it (its request arrived
    /// and, on a pipelined connection, the previous response was sent) until its last
    /// response byte.
    fn in_flight_servers(&mut self, client: &Facts) -> Vec<(u64, Xid)> {
        let pk = client.process;
        let start = client.start;
        let mut found: Vec<(u64, Xid)> = Vec::new();
        let mut dead = Vec::new();
        for (s_start, id) in self.peers.servers(&pk, self.earliest(start), start).rev() {
            if id == client.id {
                continue;
            }
            let Some(s) = self.slots.get(&id) else {
                dead.push((s_start, id));
                continue;
            };
            // The server side of the client's own connection (both ends share an address
            // in imported captures) is its callee, never its parent.
            if s.in_progress
                || (s.held.conn.key.local == client.key.remote
                    && s.held.conn.key.remote == client.key.local)
            {
                continue;
            }
            let alive = match s.held.response_end {
                Some(end) if end < self.horizon => {
                    // Over before anything still to be identified started.
                    dead.push((s_start, id));
                    false
                }
                Some(end) => end >= start,
                None => !s.unanswered,
            };
            let Some(begin) = self.processing_start(&s.held, id) else {
                continue;
            };
            if alive && begin <= start {
                found.push((begin, id));
            }
        }
        for d in dead {
            self.peers.drop_server(&pk, d);
        }
        found.sort_unstable();
        found
    }

    /// Takes a client exchange out of the caller search: its server side was found.
    fn claim_client(&mut self, id: Xid) {
        self.peers
            .claim_client(id, self.slots.get(&id).map(|s| s.held.peer()));
    }

    /// When the server could start working on `ex`: its request start, or the end of the
    /// previous response on the same connection if later; `None` while that previous
    /// response is still outstanding (a pipelined request waiting its turn).
    fn processing_start(&self, ex: &Held, xid: Xid) -> Option<u64> {
        if ex.seq == 0 {
            return Some(ex.start);
        }
        let prev: SlotKey = (xid.no.0, ex.seq - 1);
        match self.slots.get(&prev) {
            None => Some(ex.start),
            Some(p) => match p.held.response_end {
                Some(end) => Some(ex.start.max(end)),
                None if p.unanswered => Some(ex.start),
                None => None,
            },
        }
    }

    /// The CLIENT exchange recorded on the other end of `server`'s connection whose time
    /// overlaps it (closest request start wins), not already claimed by another server.
    fn matching_client(&self, server: &Facts) -> Option<Xid> {
        let (local, remote) = (server.key.local?, server.key.remote?);
        let (s_start, s_end) = (server.start, server.open_end);
        self.peers
            .clients((remote, local), self.earliest(s_start), s_end)
            .filter_map(|id| self.slots.get(&id).map(|s| (id, s)))
            .filter(|(_, s)| !s.in_progress)
            .filter(|(_, s)| s_start <= s.held.open_end())
            .min_by_key(|(id, s)| (s.held.start.abs_diff(s_start), *id))
            .map(|(id, _)| id)
    }
}

/// What identification needs of the exchange being identified (copied out of its slot so
/// the slot map can be searched and updated meanwhile).
#[derive(Debug, Clone)]
struct Facts {
    id: Xid,
    key: ConnKey,
    process: ProcessKey,
    side: SpanKind,
    start: u64,
    open_end: u64,
    parts: IdParts,
    /// The thread that read/wrote the first request byte (0: not known).
    tid: u32,
}

impl Facts {
    /// The facts of the exchange held as `held` under `id`, whose connection's address
    /// text is `addrs`.
    fn of(held: &Held, id: Xid, addrs: Arc<AddrText>) -> Self {
        Facts {
            id,
            tid: held.tid,
            key: held.conn.key,
            process: ProcessKey::of(&held.conn),
            side: held.side,
            start: held.start,
            open_end: held.open_end(),
            parts: IdParts::new(held.conn.key, held.ordinal, held.start, held.side, addrs),
        }
    }

    fn order_key(&self) -> OrderKey {
        (self.start, side_rank(self.side), self.id)
    }
}

/// The bucket mask of a hash table of `capacity` (its buckets are the power of two above
/// 8/7 of its capacity): keys sorted by their hash under it are visited in the table's
/// order. Only an order for locality: a few bits more or fewer walk it about as well.
fn bucket_mask(capacity: usize) -> u64 {
    (capacity.saturating_mul(8) / 7).max(1).next_power_of_two() as u64 - 1
}

/// An identified exchange ready to become a span: what [`Linker::link_unbuilt`] hands
/// out (the exchange with its request strings, which the linker no longer holds).
#[derive(Debug)]
pub struct Linked {
    /// Moved out of its slot as it is (a pointer): the linker's thread does not touch the
    /// exchange's memory again; the span is built from it elsewhere.
    ex: Box<Exchange>,
    identity: Identity,
}

/// The spans of linked exchanges, in order (built in parallel: each reads only its own).
#[inline(never)]
pub fn build_all(linked: Vec<Linked>, details: &SpanDetails) -> Vec<ObservedSpan> {
    linked
        .into_par_iter()
        .with_min_len(SPANS_PER_TASK)
        .map(|l| {
            let Linked { mut ex, identity } = l;
            let kept = emptied(&ex.request);
            let request = std::mem::replace(&mut ex.request, kept);
            ObservedSpan {
                span: build_span(&ex, request, &identity, details),
                conn: ex.conn,
                caller_recorded: identity.caller_recorded,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
