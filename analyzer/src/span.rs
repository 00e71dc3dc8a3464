//! Spans: one per exchange per observed side, linked into traces.
//!
//! Each [`Exchange`] becomes a SERVER span (accepted socket) or a CLIENT span (connected
//! socket). Identity rules, applied in request-start order:
//! - The request's trace context (see [`crate::context`]) gives the trace id. Its span id
//!   is the *caller's* span: the CLIENT span that sent the request takes it as its own id,
//!   the SERVER span that received it takes it as parent and gets a derived id.
//! - When both sides of one exchange were recorded (same 4-tuple reversed, overlapping
//!   times), the SERVER span without context joins its CLIENT span's trace as its child.
//! - A CLIENT span sent while a SERVER span of the same process was in flight is that
//!   server span's child (and, without context of its own, joins its trace): this links
//!   hops of services that do not propagate headers.
//! - Otherwise a new trace starts. Ids podtrace invents are hashes of stable inputs
//!   (connection, request position and time, side), never random; no two spans share
//!   (trace id, span id) — a clash gets a re-derived id and is counted.
//!
//! The [`Linker`] keeps exchanges of a bounded time window; [`Linker::link`] identifies
//! exchanges older than a cutoff and emits the finished ones, [`Linker::evict`] forgets
//! old ones (counting requests that never got an answer).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

mod addr;

use foldhash::{HashMap, HashSet};
use podtrace_model::{KeyValue, Resource, Span, SpanId, SpanKind, Status, TraceId};
use rayon::prelude::*;

use crate::context::{extract, Extraction, Family, IgnoreReason, TraceContext};
use crate::details::SpanDetails;
use crate::exchange::{Exchange, ExchangeEvent, ExchangeId, Request};
use crate::reassemble::{ConnInfo, ConnKey};

/// A span plus what enrichment and the graph need to know about where it was observed.
#[derive(Debug, Clone, PartialEq)]
pub struct ObservedSpan {
    /// The span (resource still the process default until enrichment).
    pub span: Span,
    /// The socket's process and addresses.
    pub conn: Arc<ConnInfo>,
    /// For SERVER spans: the CLIENT side of the same exchange was recorded too (so the
    /// caller → callee edge is already known from that client span).
    pub caller_recorded: bool,
}

/// Counters of the linking stage.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Exchanges seen (requests).
    pub exchanges: u64,
    /// Propagation headers ignored, by (family, reason).
    pub ignored_headers: BTreeMap<(Family, IgnoreReason), u64>,
    /// Spans whose parent id is not a span of their trace.
    pub orphans: u64,
    /// Span ids re-derived because (trace id, span id) was taken.
    pub duplicate_ids: u64,
    /// Requests whose connection closed (or analysis ended) without a response.
    pub unmatched_requests: u64,
    /// Responses with no request waiting.
    pub unmatched_responses: u64,
    /// Outstanding requests dropped because they outlived the time window.
    pub evicted_requests: u64,
    /// CLIENT spans whose parent was chosen among several in-flight SERVER exchanges of
    /// their process that neither the wire trace id nor the thread told apart (the
    /// innermost was taken).
    pub ambiguous_parents: u64,
    /// Traces podtrace had invented for context-less requests that took the trace id a
    /// service's own tracer started for them (root adoption).
    pub adopted_traces: u64,
}

/// Which process observed a socket: pid (+ cgroup) when recorded, else the local IP
/// (imported captures have no pids; each workload has its own address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProcessKey {
    /// A recorded process.
    Pid {
        /// Process id.
        pid: u32,
        /// cgroup id.
        cgroup_id: u64,
    },
    /// An imported socket: its local IP.
    Addr(IpAddr),
    /// Nothing known: the connection only.
    Conn(ConnKey),
}

impl ProcessKey {
    /// The process key of a connection.
    pub fn of(conn: &ConnInfo) -> Self {
        if conn.pid != 0 {
            ProcessKey::Pid {
                pid: conn.pid,
                cgroup_id: conn.cgroup_id,
            }
        } else if let Some(local) = conn.key.local {
            ProcessKey::Addr(local.ip())
        } else {
            ProcessKey::Conn(conn.key)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Identity {
    trace_id: TraceId,
    span_id: SpanId,
    parent: Option<SpanId>,
    flags: u32,
    trace_state: String,
    family: Option<Family>,
    caller_recorded: bool,
    /// The trace id was invented by podtrace (no context on the wire for this request or
    /// any recorded ancestor) and may still be replaced by the one a service's tracer
    /// started (root adoption); the span waits until its trace is final.
    invented: bool,
    /// The trace id under which the parent span was registered when this one was
    /// identified (differs from `trace_id` after an adoption; for the orphan count).
    parent_trace: TraceId,
    /// The trace id under which this span is in the linker's id table (its trace id when
    /// it was identified; an adoption changes `trace_id` only).
    registered: TraceId,
}

impl Identity {
    /// The trace id under which this span is registered in the linker's id table (its
    /// trace id when it was identified: adoption changes `trace_id`, not the table).
    fn parent_key(&self) -> TraceId {
        self.registered
    }
}

#[derive(Debug)]
struct Slot {
    ex: Exchange,
    /// Its key in the linker.
    xid: Xid,
    /// The request's trace context when it was extracted ahead (in parallel, see
    /// [`request_context`]); taken when the exchange is identified.
    extraction: Option<Extraction>,
    identity: Option<Identity>,
    in_progress: bool,
    emitted: bool,
    unanswered: bool,
}

/// Spans built by one parallel task at least (smaller batches are not worth a split).
const SPANS_PER_TASK: usize = 256;

/// A connection's small dense id in the linker, given at first sight (while any of
/// its exchanges is held, the same connection keeps the same id).
type ConnNo = u64;

/// The linker's key of a held exchange: its [`ExchangeId`] for ordering, and a dense
/// (connection number, seq) pair for hashing and equality, so the slot table hashes and
/// compares 16 bytes instead of the 80-byte connection key. Equal pairs imply equal
/// exchange ids (a number is given to one connection key), so equality agrees with the
/// order (exchange id, then pair).
#[derive(Debug, Clone, Copy)]
struct Xid {
    id: ExchangeId,
    no: (ConnNo, u64),
}

impl PartialEq for Xid {
    fn eq(&self, other: &Self) -> bool {
        self.no == other.no
    }
}

impl Eq for Xid {}

impl std::hash::Hash for Xid {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.no.hash(state);
    }
}

impl PartialOrd for Xid {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Xid {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.id.cmp(&other.id).then(self.no.cmp(&other.no))
    }
}

/// Sort key: request start, CLIENT before SERVER (the sender's side first), identity.
type OrderKey = (u64, u8, Xid);

fn order_key(ex: &Exchange, xid: Xid) -> OrderKey {
    let side = match ex.side {
        SpanKind::Client => 0,
        SpanKind::Server => 1,
    };
    (ex.start_ts(), side, xid)
}

/// The linking stage: exchanges in, identified spans out.
#[derive(Debug, Default)]
pub struct Linker {
    /// Boxed: the table stays small (key + pointer per entry), so probing and growth
    /// touch little memory.
    slots: HashMap<Xid, Box<Slot>>,
    /// Each connection with held exchanges: its number and how many it has held.
    conn_nos: HashMap<ConnKey, (ConnNo, usize)>,
    /// The next connection number.
    next_conn_no: ConnNo,
    /// Every held exchange by request start (eviction scans only old ones).
    by_start: BTreeSet<(u64, Xid)>,
    unidentified: BTreeSet<OrderKey>,
    /// Identified exchanges not emitted yet, in no particular order (sorted when
    /// [`Linker::link`] emits). Entries of exchanges that went unanswered or were evicted
    /// are not taken out one by one: `link` drops them when it meets them.
    awaiting_emit: Vec<OrderKey>,
    servers_by_proc: HashMap<ProcessKey, BTreeSet<(u64, Xid)>>,
    clients_by_addr: HashMap<(SocketAddr, SocketAddr), BTreeSet<(u64, Xid)>>,
    claimed_clients: HashSet<Xid>,
    ids: HashMap<(TraceId, SpanId), Xid>,
    /// Invented traces that may still be adopted: their identified members. An entry
    /// leaves when the trace is adopted (members rewritten) or closed (no member can
    /// gain a child any more), or when a member is evicted.
    invented: HashMap<TraceId, Vec<Xid>>,
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
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Takes one event of the exchange stage.
    pub fn on_event(&mut self, ev: ExchangeEvent) {
        self.on_event_extracted(ev, None);
    }

    /// Takes one event of the exchange stage with, for a request, its trace context
    /// already extracted by [`request_context`] (`None`: extracted when identified).
    pub fn on_event_extracted(&mut self, ev: ExchangeEvent, extraction: Option<Extraction>) {
        match ev {
            ExchangeEvent::Request(ex) => {
                self.stats.exchanges += 1;
                let next = self.next_conn_no;
                let entry = self.conn_nos.entry(ex.id.conn).or_insert((next, 0));
                if entry.0 == next {
                    self.next_conn_no += 1;
                }
                entry.1 += 1;
                let id = Xid {
                    id: ex.id,
                    no: (entry.0, ex.id.seq),
                };
                let key = order_key(&ex, id);
                match ex.side {
                    SpanKind::Server => {
                        self.servers_by_proc
                            .entry(ProcessKey::of(&ex.conn))
                            .or_default()
                            .insert((ex.start_ts(), id));
                    }
                    SpanKind::Client => {
                        if let (Some(l), Some(r)) = (ex.conn.key.local, ex.conn.key.remote) {
                            self.clients_by_addr
                                .entry((l, r))
                                .or_default()
                                .insert((ex.start_ts(), id));
                        }
                    }
                }
                self.unidentified.insert(key);
                self.by_start.insert((key.0, id));
                let displaced = self.slots.insert(
                    id,
                    Box::new(Slot {
                        ex,
                        xid: id,
                        extraction,
                        identity: None,
                        in_progress: false,
                        emitted: false,
                        unanswered: false,
                    }),
                );
                if displaced.is_some() {
                    // The same exchange id again: it took the place of the held one.
                    self.release_conn(&id.id.conn);
                }
            }
            ExchangeEvent::Response { id, response } => {
                if let Some(slot) = self.xid(id).and_then(|x| self.slots.get_mut(&x)) {
                    slot.ex.response = Some(response);
                }
            }
            ExchangeEvent::Unanswered(id) => {
                if let Some(slot) = self.xid(id).and_then(|x| self.slots.get_mut(&x)) {
                    if !slot.unanswered && slot.ex.response.is_none() {
                        slot.unanswered = true;
                        self.stats.unmatched_requests += 1;
                    }
                }
            }
            ExchangeEvent::UnmatchedResponse(_) => self.stats.unmatched_responses += 1,
        }
    }

    /// The key of a held exchange's id (`None`: no exchange of its connection held).
    fn xid(&self, id: ExchangeId) -> Option<Xid> {
        self.conn_nos.get(&id.conn).map(|(no, _)| Xid {
            id,
            no: (*no, id.seq),
        })
    }

    /// One exchange of connection `conn` is no longer held.
    fn release_conn(&mut self, conn: &ConnKey) {
        if let Some(entry) = self.conn_nos.get_mut(conn) {
            entry.1 -= 1;
            if entry.1 == 0 {
                self.conn_nos.remove(conn);
            }
        }
    }

    /// Identifies every exchange whose request started before `cutoff` (in start order)
    /// and returns the spans of identified exchanges that have their response.
    pub fn link(&mut self, cutoff: u64) -> Vec<ObservedSpan> {
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
        let mut emit = Vec::with_capacity(awaiting.len());
        // Invented traces found closed in this pass: they are final now.
        let mut closed: HashSet<TraceId> = HashSet::default();
        let mut open: HashSet<TraceId> = HashSet::default();
        for key in awaiting {
            let (trace, invented) = {
                let Some(slot) = self.slots.get(&key.2) else {
                    // Evicted while waiting.
                    continue;
                };
                if slot.unanswered || slot.emitted || order_key(&slot.ex, slot.xid) != key {
                    // Gone unanswered while waiting (never emitted), or a stale entry.
                    continue;
                }
                if slot.ex.response.is_none() {
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
                    // Its trace may still be adopted: wait until it is final.
                    open.insert(trace);
                    waiting.push(key);
                    continue;
                }
                closed.insert(trace);
            }
            let Some(slot) = self.slots.get_mut(&key.2) else {
                continue;
            };
            let Some(identity) = &slot.identity else {
                continue;
            };
            if let Some(parent) = identity.parent {
                if !self.ids.contains_key(&(identity.parent_trace, parent)) {
                    self.stats.orphans += 1;
                }
            }
            slot.emitted = true;
            // Its strings are not needed once emitted: they move into the span.
            let kept = emptied(&slot.ex.request);
            let request = std::mem::replace(&mut slot.ex.request, kept);
            emit.push((key.2, request));
        }
        self.awaiting_emit = waiting;
        for t in closed {
            self.invented.remove(&t);
        }
        // Building the spans reads only their own slot: in parallel, in order.
        let slots = &self.slots;
        let details = &*self.details;
        emit.into_par_iter()
            .with_min_len(SPANS_PER_TASK)
            .filter_map(|(id, request)| {
                let slot = slots.get(&id)?;
                let identity = slot.identity.as_ref()?;
                Some(ObservedSpan {
                    span: build_span(&slot.ex, request, identity, details),
                    conn: slot.ex.conn.clone(),
                    caller_recorded: identity.caller_recorded,
                })
            })
            .collect()
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
                .all(|s| s.identity.is_some() && s.ex.end_ts() < before);
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
        let later = self.by_start.split_off(&(before, min_xid()));
        let candidates = std::mem::replace(&mut self.by_start, later);
        // Each candidate's slot is taken out once; one that cannot go yet is put back.
        let mut old: Vec<(Xid, Box<Slot>)> = Vec::with_capacity(candidates.len());
        for (start, id) in candidates {
            let Some(slot) = self.slots.remove(&id) else {
                continue;
            };
            if slot.identity.is_some() && slot.ex.end_ts() < before {
                old.push((id, slot));
            } else {
                self.slots.insert(id, slot);
                self.by_start.insert((start, id));
            }
        }
        for (id, slot) in old {
            self.release_conn(&id.id.conn);
            if !slot.emitted && !slot.unanswered {
                self.stats.evicted_requests += 1;
            }
            if !slot.emitted {
                // An emitted exchange left both sets when it was identified and emitted.
                // (`awaiting_emit` drops its entry in `link`.)
                let key = order_key(&slot.ex, id);
                self.unidentified.remove(&key);
            }
            self.claimed_clients.remove(&id);
            match slot.ex.side {
                SpanKind::Server => {
                    let pk = ProcessKey::of(&slot.ex.conn);
                    if let Some(set) = self.servers_by_proc.get_mut(&pk) {
                        set.remove(&(slot.ex.start_ts(), id));
                        if set.is_empty() {
                            self.servers_by_proc.remove(&pk);
                        }
                    }
                }
                SpanKind::Client => {
                    if let (Some(l), Some(r)) = (slot.ex.conn.key.local, slot.ex.conn.key.remote) {
                        if let Some(set) = self.clients_by_addr.get_mut(&(l, r)) {
                            set.remove(&(slot.ex.start_ts(), id));
                            if set.is_empty() {
                                self.clients_by_addr.remove(&(l, r));
                            }
                        }
                    }
                }
            }
            if let Some(idn) = slot.identity {
                if self.ids.get(&(idn.registered, idn.span_id)) == Some(&id) {
                    self.ids.remove(&(idn.registered, idn.span_id));
                }
                if idn.invented {
                    // A member left: the trace can no longer be adopted whole.
                    self.invented.remove(&idn.trace_id);
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
        slot.in_progress = true;
        // What the rules need of the exchange, taken without copying its headers and
        // strings: the recursive searches below borrow other slots.
        let facts = Facts::of(&slot.ex, id);
        let extraction = match slot.extraction.take() {
            Some(e) => e,
            None => request_context(&slot.ex.request),
        };
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
            .is_some_and(|other| *other != id)
        {
            salt += 1;
            self.stats.duplicate_ids += 1;
            identity.span_id = facts.parts.span_id(&identity.trace_id, salt);
        }
        self.ids.insert((identity.trace_id, identity.span_id), id);
        identity.registered = identity.trace_id;
        if identity.invented {
            self.invented.entry(identity.trace_id).or_default().push(id);
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
            let tid = self.slots.get(&sid).map_or(0, |s| s.ex.request.tid);
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
            Some(s) => s.unanswered || s.ex.response.as_ref().is_some_and(|r| r.end_ts < cutoff),
        })
    }

    /// The SERVER exchanges of the same process in flight when `client` was sent, in
    /// nesting order (by when the process could start on them; innermost last). A server
    /// exchange is in flight from when its process could start on it (its request arrived
    /// and, on a pipelined connection, the previous response was sent) until its last
    /// response byte.
    fn in_flight_servers(&mut self, client: &Facts) -> Vec<(u64, Xid)> {
        let pk = client.process;
        let Some(set) = self.servers_by_proc.get(&pk) else {
            return Vec::new();
        };
        let start = client.start;
        let mut found: Vec<(u64, Xid)> = Vec::new();
        let mut dead = Vec::new();
        for (s_start, id) in set
            .range((self.earliest(start), min_xid())..=(start, max_xid()))
            .rev()
        {
            if *id == client.id {
                continue;
            }
            let Some(s) = self.slots.get(id) else {
                dead.push((*s_start, *id));
                continue;
            };
            // The server side of the client's own connection (both ends share an address
            // in imported captures) is its callee, never its parent.
            if s.in_progress
                || (s.ex.conn.key.local == client.key.remote
                    && s.ex.conn.key.remote == client.key.local)
            {
                continue;
            }
            let alive = match &s.ex.response {
                Some(r) if r.end_ts < self.horizon => {
                    // Over before anything still to be identified started.
                    dead.push((*s_start, *id));
                    false
                }
                Some(r) => r.end_ts >= start,
                None => !s.unanswered,
            };
            let Some(begin) = self.processing_start(&s.ex, *id) else {
                continue;
            };
            if alive && begin <= start {
                found.push((begin, *id));
            }
        }
        if let Some(set) = self.servers_by_proc.get_mut(&pk) {
            for d in dead {
                set.remove(&d);
            }
        }
        found.sort_unstable();
        found
    }

    /// Takes a client exchange out of the caller search: its server side was found.
    fn claim_client(&mut self, id: Xid) {
        self.claimed_clients.insert(id);
        let Some(slot) = self.slots.get(&id) else {
            return;
        };
        if let (Some(l), Some(r)) = (slot.ex.conn.key.local, slot.ex.conn.key.remote) {
            if let Some(set) = self.clients_by_addr.get_mut(&(l, r)) {
                set.remove(&(slot.ex.start_ts(), id));
                if set.is_empty() {
                    self.clients_by_addr.remove(&(l, r));
                }
            }
        }
    }

    /// When the server could start working on `ex`: its request start, or the end of the
    /// previous response on the same connection if later; `None` while that previous
    /// response is still outstanding (a pipelined request waiting its turn).
    fn processing_start(&self, ex: &Exchange, xid: Xid) -> Option<u64> {
        if ex.id.seq == 0 {
            return Some(ex.start_ts());
        }
        let prev = Xid {
            id: ExchangeId {
                conn: ex.id.conn,
                seq: ex.id.seq - 1,
            },
            no: (xid.no.0, ex.id.seq - 1),
        };
        match self.slots.get(&prev) {
            None => Some(ex.start_ts()),
            Some(p) => match &p.ex.response {
                Some(r) => Some(ex.start_ts().max(r.end_ts)),
                None if p.unanswered => Some(ex.start_ts()),
                None => None,
            },
        }
    }

    /// The CLIENT exchange recorded on the other end of `server`'s connection whose time
    /// overlaps it (closest request start wins), not already claimed by another server.
    fn matching_client(&self, server: &Facts) -> Option<Xid> {
        let (local, remote) = (server.key.local?, server.key.remote?);
        let set = self.clients_by_addr.get(&(remote, local))?;
        let (s_start, s_end) = (server.start, server.open_end);
        set.range((self.earliest(s_start), min_xid())..=(s_end, max_xid()))
            .filter(|(_, id)| !self.claimed_clients.contains(id))
            .filter_map(|(_, id)| self.slots.get(id).map(|s| (id, s)))
            .filter(|(_, s)| !s.in_progress)
            .filter(|(_, s)| s_start <= open_end(&s.ex))
            .min_by_key(|(id, s)| (s.ex.start_ts().abs_diff(s_start), **id))
            .map(|(id, _)| *id)
    }
}

/// The trace context of a request's headers (what [`Linker`] reads when it identifies
/// the exchange; callers may extract it ahead, off the serial path).
pub fn request_context(req: &Request) -> Extraction {
    extract(req.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())))
}

/// What an emitted exchange keeps of its request: the times and sizes linking still reads
/// (no strings, no HTTP/2 facts).
fn emptied(req: &Request) -> Request {
    Request {
        method: String::new(),
        target: String::new(),
        path: String::new(),
        query: None,
        version: req.version,
        headers: Vec::new(),
        body_size: req.body_size,
        start_ts: req.start_ts,
        end_ts: req.end_ts,
        truncated: req.truncated,
        tid: req.tid,
        h2: None,
    }
}

fn open_end(ex: &Exchange) -> u64 {
    match &ex.response {
        Some(r) => r.end_ts,
        None => u64::MAX,
    }
}

/// Below every held exchange's key.
fn min_xid() -> Xid {
    Xid {
        id: min_id(),
        no: (0, 0),
    }
}

/// Above every held exchange's key.
fn max_xid() -> Xid {
    Xid {
        id: max_id(),
        no: (ConnNo::MAX, u64::MAX),
    }
}

fn min_id() -> ExchangeId {
    ExchangeId {
        conn: ConnKey {
            conn_id: 0,
            local: None,
            remote: None,
        },
        seq: 0,
    }
}

fn max_id() -> ExchangeId {
    use std::net::{Ipv6Addr, SocketAddrV6};
    let max = SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(u128::MAX), u16::MAX, 0, 0));
    ExchangeId {
        conn: ConnKey {
            conn_id: u64::MAX,
            local: Some(max),
            remote: Some(max),
        },
        seq: u64::MAX,
    }
}

fn flags_of(ctx: Option<&TraceContext>, inherited: Option<u32>) -> u32 {
    match ctx.and_then(|c| c.sampled) {
        Some(true) => 1,
        Some(false) => 0,
        None => inherited.unwrap_or(1),
    }
}

fn client_identity(ex: &IdParts, ctx: Option<TraceContext>, parent: Option<Identity>) -> Identity {
    match ctx {
        Some(ctx) => {
            let same_trace = parent.as_ref().filter(|p| p.trace_id == ctx.trace_id);
            // A header forwarded unchanged from the incoming request names the caller's
            // span, not one this process created: derive an id instead.
            let passed_through = same_trace.is_some_and(|p| p.parent == ctx.parent_id);
            Identity {
                trace_id: ctx.trace_id,
                span_id: match ctx.parent_id {
                    Some(id) if !passed_through => id,
                    _ => ex.span_id(&ctx.trace_id, 0),
                },
                parent: same_trace.map(|p| p.span_id),
                flags: flags_of(Some(&ctx), same_trace.map(|p| p.flags)),
                trace_state: ctx.trace_state,
                family: Some(ctx.family),
                caller_recorded: false,
                invented: false,
                parent_trace: same_trace.map(|p| p.parent_key()).unwrap_or(ctx.trace_id),
                registered: ctx.trace_id,
            }
        }
        None => match parent {
            Some(p) => Identity {
                trace_id: p.trace_id,
                span_id: ex.span_id(&p.trace_id, 0),
                parent: Some(p.span_id),
                flags: p.flags,
                parent_trace: p.parent_key(),
                registered: p.trace_id,
                trace_state: p.trace_state,
                family: None,
                caller_recorded: false,
                invented: p.invented,
            },
            None => root_identity(ex),
        },
    }
}

fn server_identity(ex: &IdParts, ctx: Option<TraceContext>, caller: Option<Identity>) -> Identity {
    let caller_recorded = caller.is_some();
    match ctx {
        Some(ctx) => {
            let caller_same = caller.as_ref().filter(|c| c.trace_id == ctx.trace_id);
            Identity {
                trace_id: ctx.trace_id,
                span_id: ex.span_id(&ctx.trace_id, 0),
                // The recorded caller is the parent; its id differs from the header's
                // only when it forwarded an incoming header unchanged.
                parent: caller_same.map(|c| c.span_id).or(ctx.parent_id),
                flags: flags_of(Some(&ctx), caller_same.map(|c| c.flags)),
                trace_state: ctx.trace_state,
                family: Some(ctx.family),
                caller_recorded,
                invented: false,
                parent_trace: caller_same.map(|c| c.parent_key()).unwrap_or(ctx.trace_id),
                registered: ctx.trace_id,
            }
        }
        None => match caller {
            Some(c) => Identity {
                trace_id: c.trace_id,
                span_id: ex.span_id(&c.trace_id, 0),
                parent: Some(c.span_id),
                flags: c.flags,
                parent_trace: c.parent_key(),
                registered: c.trace_id,
                trace_state: c.trace_state,
                family: None,
                caller_recorded,
                invented: c.invented,
            },
            None => root_identity(ex),
        },
    }
}

fn root_identity(ex: &IdParts) -> Identity {
    let trace_id = ex.trace_id();
    Identity {
        trace_id,
        span_id: ex.span_id(&trace_id, 0),
        parent: None,
        flags: 1,
        trace_state: String::new(),
        family: None,
        caller_recorded: false,
        invented: true,
        parent_trace: trace_id,
        registered: trace_id,
    }
}

/// FNV-1a over length-prefixed parts, finished with the splitmix64 mixer (streamed: the
/// parts are fed one by one, nothing is collected).
struct StableHasher(u64);

impl StableHasher {
    fn new(seed: u64) -> Self {
        StableHasher(0xcbf2_9ce4_8422_2325 ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }

    fn bytes(&mut self, bytes: &[u8]) {
        let mut h = self.0;
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.0 = h;
    }

    /// One part: its length (8 bytes, little endian), then its bytes.
    fn part(&mut self, part: &[u8]) {
        self.bytes(&(part.len() as u64).to_le_bytes());
        self.bytes(part);
    }

    fn finish(self) -> u64 {
        let mut h = self.0;
        h ^= h >> 30;
        h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h ^= h >> 27;
        h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
        h ^ (h >> 31)
    }
}

/// A small text buffer on the stack for the `local>remote` part (longer text, which
/// socket addresses never produce, spills to the heap).
struct AddrText {
    buf: [u8; 128],
    len: usize,
    spill: Option<String>,
}

impl AddrText {
    fn of(local: Option<SocketAddr>, remote: Option<SocketAddr>) -> Self {
        use std::fmt::Write;
        let mut t = AddrText {
            buf: [0; 128],
            len: 0,
            spill: None,
        };
        // `{local}>{remote}`, an absent address as nothing.
        let written = (|| {
            if let Some(l) = local {
                addr::write_socket_addr(&mut t, l)?;
            }
            t.write_char('>')?;
            if let Some(r) = remote {
                addr::write_socket_addr(&mut t, r)?;
            }
            Ok::<(), std::fmt::Error>(())
        })();
        if written.is_err() {
            let addr = |a: Option<SocketAddr>| a.map(|a| a.to_string()).unwrap_or_default();
            t.spill = Some(format!("{}>{}", addr(local), addr(remote)));
        }
        t
    }

    fn as_bytes(&self) -> &[u8] {
        match &self.spill {
            Some(s) => s.as_bytes(),
            None => &self.buf[..self.len],
        }
    }
}

impl std::fmt::Write for AddrText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        if end > self.buf.len() {
            return Err(std::fmt::Error);
        }
        self.buf[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// Stable inputs identifying an exchange observation: the connection, the request's
/// start time and its position among requests that started then, and the side.
#[derive(Debug, Clone, Copy)]
struct IdParts {
    conn: ConnKey,
    ordinal: u32,
    start: u64,
    side: SpanKind,
}

impl IdParts {
    fn of(ex: &Exchange) -> Self {
        IdParts {
            conn: ex.id.conn,
            ordinal: ex.ordinal,
            start: ex.start_ts(),
            side: ex.side,
        }
    }

    /// Feeds the parts (connection id, addresses, ordinal, start, side) to `h`.
    fn feed(&self, h: &mut StableHasher, addrs: &AddrText) {
        h.part(&self.conn.conn_id.to_le_bytes());
        h.part(addrs.as_bytes());
        h.part(&self.ordinal.to_le_bytes());
        h.part(&self.start.to_le_bytes());
        h.part(match self.side {
            SpanKind::Server => b"server",
            SpanKind::Client => b"client",
        });
    }

    fn addrs(&self) -> AddrText {
        AddrText::of(self.conn.local, self.conn.remote)
    }

    fn trace_id(&self) -> TraceId {
        let addrs = self.addrs();
        let halves = [1u64, 2].map(|seed| {
            let mut h = StableHasher::new(seed);
            self.feed(&mut h, &addrs);
            h.finish()
        });
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&halves[0].to_be_bytes());
        b[8..].copy_from_slice(&halves[1].to_be_bytes());
        if b == [0; 16] {
            b[15] = 1;
        }
        TraceId(b)
    }

    fn span_id(&self, trace_id: &TraceId, salt: u64) -> SpanId {
        let mut h = StableHasher::new(3);
        h.part(trace_id.as_bytes());
        self.feed(&mut h, &self.addrs());
        h.part(&salt.to_le_bytes());
        let v = h.finish();
        SpanId(if v == 0 { 1 } else { v }.to_be_bytes())
    }
}

/// What identification needs of the exchange being identified (copied out of its slot so
/// the slot map can be searched and updated meanwhile).
#[derive(Debug, Clone, Copy)]
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
    fn of(ex: &Exchange, id: Xid) -> Self {
        Facts {
            id,
            tid: ex.request.tid,
            key: ex.conn.key,
            process: ProcessKey::of(&ex.conn),
            side: ex.side,
            start: ex.start_ts(),
            open_end: open_end(ex),
            parts: IdParts::of(ex),
        }
    }

    fn order_key(&self) -> OrderKey {
        let side = match self.side {
            SpanKind::Client => 0,
            SpanKind::Server => 1,
        };
        (self.start, side, self.id)
    }
}

/// A trace id derived from the exchange (for requests without context).
pub fn derive_trace_id(ex: &Exchange) -> TraceId {
    IdParts::of(ex).trace_id()
}

/// A span id derived from the trace id, the exchange and a salt (re-derivation on clash).
pub fn derive_span_id(trace_id: &TraceId, ex: &Exchange, salt: u64) -> SpanId {
    IdParts::of(ex).span_id(trace_id, salt)
}

/// Whether a gRPC status code makes a span an error, by the OpenTelemetry semantic
/// conventions for gRPC: on the CLIENT side every code but OK; on the SERVER side only
/// UNKNOWN (2), DEADLINE_EXCEEDED (4), UNIMPLEMENTED (12), INTERNAL (13), UNAVAILABLE (14)
/// and DATA_LOSS (15) — the others (NOT_FOUND, INVALID_ARGUMENT, ...) are the caller's
/// problem, not the server's.
pub fn grpc_is_error(code: i64, side: SpanKind) -> bool {
    match side {
        SpanKind::Client => code != 0,
        SpanKind::Server => matches!(code, 2 | 4 | 12 | 13 | 14 | 15),
    }
}

/// Splits a Host header into host and port.
fn split_host(host: &str) -> (String, Option<u16>) {
    if let Some(rest) = host.strip_prefix('[') {
        if let Some((h, tail)) = rest.split_once(']') {
            return (
                h.to_string(),
                tail.strip_prefix(':').and_then(|p| p.parse().ok()),
            );
        }
    }
    match host.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h.to_string(), p.parse().ok()),
        _ => (host.to_string(), None),
    }
}

/// The service name of a process before Kubernetes enrichment: its comm, else (and for
/// imported sockets, which have no process) its local IP.
pub fn default_service_name(conn: &ConnInfo) -> String {
    if conn.pid == 0 {
        // Imported captures have no process: the workload is its address.
        if let Some(local) = conn.key.local {
            return addr::ip_string(local.ip());
        }
    }
    if !conn.comm.is_empty() {
        conn.comm.clone()
    } else if let Some(local) = conn.key.local {
        addr::ip_string(local.ip())
    } else {
        "unknown".to_string()
    }
}

/// Attributes an HTTP/1 span typically ends with (with enrichment's): the list is
/// allocated once at this size (the largest, gRPC ones, grow once).
const ATTRS_CAPACITY: usize = 16;

/// The span of an exchange whose request was taken out of it (`req`): its strings move
/// into the span's attributes instead of being copied.
fn build_span(ex: &Exchange, mut req: Request, idn: &Identity, details: &SpanDetails) -> Span {
    let resp = ex.response.as_ref();
    let local = ex.conn.key.local;
    let remote = ex.conn.key.remote;
    let (server_sock, client_sock) = match ex.side {
        SpanKind::Server => (local, remote),
        SpanKind::Client => (remote, local),
    };
    let grpc = req.h2.as_ref().and_then(|h| h.grpc.as_ref());
    // HTTP: `{method} {route}` (user route, else inferred), else `{method}`.
    let (name, route) = match grpc {
        Some(g) => (format!("{}/{}", g.service, g.method), None),
        None => details.http_name(&req.method, &req.path),
    };
    let mut attrs = Vec::with_capacity(ATTRS_CAPACITY);
    attrs.push(KeyValue::new(
        "http.request.method",
        std::mem::take(&mut req.method),
    ));
    attrs.push(KeyValue::new("url.path", std::mem::take(&mut req.path)));
    if let Some(q) = req.query.take() {
        attrs.push(KeyValue::new("url.query", q));
    }
    if let Some(route) = route {
        attrs.push(KeyValue::new(SpanDetails::route_key(ex.side), route));
    }
    if let Some(r) = resp.filter(|r| r.status != 0) {
        attrs.push(KeyValue::new(
            "http.response.status_code",
            i64::from(r.status),
        ));
    }
    let (host, host_port) = match req.header("host") {
        Some(h) if !h.is_empty() => {
            let (h, p) = split_host(h);
            (Some(h), p)
        }
        _ => (None, None),
    };
    let server_address = host.or_else(|| server_sock.map(|s| addr::ip_string(s.ip())));
    if let Some(a) = server_address {
        attrs.push(KeyValue::new("server.address", a));
    }
    let server_port = host_port.or(server_sock.map(|s| s.port()));
    if let Some(p) = server_port {
        attrs.push(KeyValue::new("server.port", i64::from(p)));
    }
    // On the server side the client is the peer: its address is formatted once.
    let peer_ip = remote.map(|r| addr::ip_string(r.ip()));
    if let Some(c) = client_sock {
        let ip = match (&peer_ip, ex.side) {
            (Some(ip), SpanKind::Server) => ip.clone(),
            _ => addr::ip_string(c.ip()),
        };
        attrs.push(KeyValue::new("client.address", ip));
    }
    if let (Some(r), Some(ip)) = (remote, peer_ip) {
        attrs.push(KeyValue::new("network.peer.address", ip));
        attrs.push(KeyValue::new("network.peer.port", i64::from(r.port())));
    }
    if req.h2.is_some() {
        attrs.push(KeyValue::new("network.protocol.name", "http"));
        attrs.push(KeyValue::new("network.protocol.version", "2"));
    } else {
        attrs.push(KeyValue::new(
            "network.protocol.version",
            format!("1.{}", req.version),
        ));
    }
    let h2_resp = resp.and_then(|r| r.h2.as_ref());
    if let Some(g) = grpc {
        attrs.push(KeyValue::new("rpc.system", "grpc"));
        attrs.push(KeyValue::new("rpc.service", g.service.as_str()));
        attrs.push(KeyValue::new("rpc.method", g.method.as_str()));
        if let Some(code) = h2_resp.and_then(|r| r.grpc_status) {
            attrs.push(KeyValue::new("rpc.grpc.status_code", code));
        }
    }
    if let Some(i) = req
        .headers
        .iter()
        .position(|(n, _)| n.eq_ignore_ascii_case("user-agent"))
    {
        attrs.push(KeyValue::new(
            "user_agent.original",
            std::mem::take(&mut req.headers[i].1),
        ));
    }
    details.add_baggage(&req.headers, &mut attrs);
    attrs.push(KeyValue::new(
        "http.request.body.size",
        req.body_size as i64,
    ));
    if let Some(r) = resp {
        attrs.push(KeyValue::new("http.response.body.size", r.body_size as i64));
    }
    attrs.push(KeyValue::new(
        "podtrace.context.family",
        idn.family.map(|f| f.as_str()).unwrap_or("none"),
    ));
    let grpc_code = h2_resp
        .and_then(|r| r.grpc_status)
        .filter(|_| grpc.is_some());
    let reset = h2_resp.and_then(|r| r.reset);
    let status = match resp.map(|r| r.status) {
        _ if grpc_code.is_some_and(|c| grpc_is_error(c, ex.side)) => {
            let msg = h2_resp
                .and_then(|r| r.grpc_message.as_deref())
                .unwrap_or("");
            Status::error(format!("gRPC {}: {msg}", grpc_code.unwrap_or(0)))
        }
        _ if reset.is_some_and(|c| c != 0) => {
            Status::error(format!("HTTP/2 stream reset ({})", reset.unwrap_or(0)))
        }
        Some(s) if s >= 500 => Status::error(format!("HTTP {s}")),
        Some(s) if s >= 400 && ex.side == SpanKind::Client => Status::error(format!("HTTP {s}")),
        _ => Status::unset(),
    };
    Span {
        trace_id: idn.trace_id,
        span_id: idn.span_id,
        parent_span_id: idn.parent,
        trace_state: idn.trace_state.clone(),
        flags: idn.flags,
        name,
        kind: ex.side,
        start_time_unix_nano: req.start_ts,
        end_time_unix_nano: resp
            .map(|r| r.end_ts)
            .unwrap_or(req.end_ts)
            .max(req.start_ts),
        attributes: attrs,
        status,
        resource: Resource::new(default_service_name(&ex.conn)),
    }
}

#[cfg(test)]
mod tests;
