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
//!
//! Files: `linker.rs` (the state machine; its tests in `linker/tests.rs`), `index.rs` (its keys and search indexes),
//! `identity.rs` (the identity rules), `ids.rs` (stable id derivation), `build.rs` (the
//! OpenTelemetry span of an identified exchange; `db.rs` for database protocols), `addr.rs` (address text).
//!
//! [`Exchange`]: crate::exchange::Exchange

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use podtrace_model::Span;

use crate::context::{Family, IgnoreReason};
use crate::reassemble::{ConnInfo, ConnKey};

mod addr;
mod build;
mod db;
mod identity;
mod ids;
mod index;
mod linker;

pub use build::default_service_name;
pub use identity::request_context;
pub use linker::{build_all, Linked, Linker};

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
    /// Spans whose parent id is not a span of their trace: a parent never seen, or seen
    /// but never emitted (its response was not captured, or it was evicted).
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
