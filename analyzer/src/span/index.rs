//! The linker's keys of held exchanges ([`Xid`]) and the indexes its identification
//! searches ([`PeerIndex`]): SERVER exchanges by process (parent search) and CLIENT
//! exchanges by address pair (caller search). Both indexes are kept by one type whose
//! insert and remove derive an exchange's place the same way, so they cannot drift.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use foldhash::{HashMap, HashSet};
use podtrace_model::SpanKind;

use super::ProcessKey;
use crate::exchange::ExchangeId;
use crate::reassemble::{ConnInfo, ConnKey};

/// A connection's small dense id in the linker, given at first sight (while any of
/// its exchanges is held, the same connection keeps the same id).
pub(super) type ConnNo = u64;

/// The linker's key of a held exchange: its [`ExchangeId`] for ordering, and a dense
/// (connection number, seq) pair for hashing and equality, so the slot table hashes and
/// compares 16 bytes instead of the 80-byte connection key. Equal pairs imply equal
/// exchange ids (a number is given to one connection key), so equality agrees with the
/// order (exchange id, then pair).
#[derive(Debug, Clone, Copy)]
pub(super) struct Xid {
    /// The exchange's id.
    pub(super) id: ExchangeId,
    /// (connection number, seq).
    pub(super) no: (ConnNo, u64),
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

/// What the linker's hash tables are keyed by: a held exchange's [`SlotKey`], of an
/// [`Xid`] or as it is.
pub(super) trait Keyed {
    /// The slot key.
    fn slot_key(&self) -> SlotKey;
}

impl Keyed for Xid {
    fn slot_key(&self) -> SlotKey {
        self.no
    }
}

impl Keyed for SlotKey {
    fn slot_key(&self) -> SlotKey {
        *self
    }
}

/// The hashed part of an [`Xid`] (its (connection number, seq) pair): 16 bytes instead
/// of the whole key's 96, so that the tables keyed or valued by held exchanges (slots,
/// span ids, pending orphans, invented traces, claimed clients) stay dense.
pub(super) type SlotKey = (ConnNo, u64);

/// Below every held exchange's key.
pub(super) fn min_xid() -> Xid {
    Xid {
        id: min_id(),
        no: (0, 0),
    }
}

/// Above every held exchange's key.
pub(super) fn max_xid() -> Xid {
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

/// An index entry: request start, then the exchange's key.
type Entry = (u64, Xid);

/// What the [`PeerIndex`] reads of a held exchange.
#[derive(Debug, Clone, Copy)]
pub(super) struct Peer<'a> {
    /// Its side.
    pub(super) side: SpanKind,
    /// Its socket.
    pub(super) conn: &'a ConnInfo,
    /// Its request start.
    pub(super) start: u64,
}

/// Where an exchange is listed in the [`PeerIndex`].
enum Place {
    /// A SERVER exchange, under its process.
    Server(ProcessKey),
    /// A CLIENT exchange, under its (local, remote) addresses.
    Client((SocketAddr, SocketAddr)),
}

impl Place {
    /// The place of `ex` (`None`: a CLIENT exchange without both addresses, which no
    /// server can be matched with).
    fn of(ex: Peer<'_>) -> Option<Place> {
        match ex.side {
            SpanKind::Server => Some(Place::Server(ProcessKey::of(ex.conn))),
            SpanKind::Client => match (ex.conn.key.local, ex.conn.key.remote) {
                (Some(l), Some(r)) => Some(Place::Client((l, r))),
                _ => None,
            },
        }
    }
}

/// Removes `entry` from the set under `key`, and the set once empty.
fn remove_entry<K: std::hash::Hash + Eq>(
    map: &mut HashMap<K, BTreeSet<Entry>>,
    key: &K,
    entry: &Entry,
) {
    if let Some(set) = map.get_mut(key) {
        set.remove(entry);
        if set.is_empty() {
            map.remove(key);
        }
    }
}

/// The held exchanges indexed for the two searches of identification, by request start:
/// SERVER exchanges by process (a CLIENT exchange's parent is one in flight in its
/// process) and unclaimed CLIENT exchanges by address pair (a SERVER exchange's recorded
/// caller is one on the other end of its connection).
#[derive(Debug, Default)]
pub(super) struct PeerIndex {
    servers_by_proc: HashMap<ProcessKey, BTreeSet<Entry>>,
    clients_by_addr: HashMap<(SocketAddr, SocketAddr), BTreeSet<Entry>>,
    /// CLIENT exchanges whose SERVER side was found (out of the caller search for good,
    /// even if the same exchange id is held again).
    claimed_clients: HashSet<SlotKey>,
}

impl PeerIndex {
    /// Lists a newly held exchange.
    pub(super) fn insert(&mut self, ex: Peer<'_>, id: Xid) {
        let entry = (ex.start, id);
        match Place::of(ex) {
            Some(Place::Server(pk)) => {
                self.servers_by_proc.entry(pk).or_default().insert(entry);
            }
            Some(Place::Client(pair)) => {
                self.clients_by_addr.entry(pair).or_default().insert(entry);
            }
            None => {}
        }
    }

    /// Takes an exchange that is no longer held out of every index.
    pub(super) fn remove(&mut self, ex: Peer<'_>, id: Xid) {
        self.claimed_clients.remove(&id.slot_key());
        self.unlist(ex, id);
    }

    /// Takes `ex` out of its search set (not out of the claimed ones).
    fn unlist(&mut self, ex: Peer<'_>, id: Xid) {
        let entry = (ex.start, id);
        match Place::of(ex) {
            Some(Place::Server(pk)) => remove_entry(&mut self.servers_by_proc, &pk, &entry),
            Some(Place::Client(pair)) => remove_entry(&mut self.clients_by_addr, &pair, &entry),
            None => {}
        }
    }

    /// Takes the CLIENT exchange `id` (held as `ex`, if still held) out of the caller
    /// search: its SERVER side was found.
    pub(super) fn claim_client(&mut self, id: Xid, ex: Option<Peer<'_>>) {
        self.claimed_clients.insert(id.slot_key());
        if let Some(ex) = ex {
            self.unlist(ex, id);
        }
    }

    /// The SERVER exchanges of `process` whose request started in `from..=to`, by start
    /// (none when `from > to`: out-of-order times never make the range panic).
    pub(super) fn servers(
        &self,
        process: &ProcessKey,
        from: u64,
        to: u64,
    ) -> impl DoubleEndedIterator<Item = Entry> + '_ {
        self.servers_by_proc
            .get(process)
            .filter(|_| from <= to)
            .into_iter()
            .flat_map(move |set| set.range((from, min_xid())..=(to, max_xid())).copied())
    }

    /// Takes a SERVER exchange of `process` out of the parent search (it can no longer
    /// be in flight for anything identified later).
    pub(super) fn drop_server(&mut self, process: &ProcessKey, entry: Entry) {
        remove_entry(&mut self.servers_by_proc, process, &entry);
    }

    /// The unclaimed CLIENT exchanges on `(local, remote)` whose request started in
    /// `from..=to`, by start (none when `from > to`).
    pub(super) fn clients(
        &self,
        pair: (SocketAddr, SocketAddr),
        from: u64,
        to: u64,
    ) -> impl Iterator<Item = Xid> + '_ {
        self.clients_by_addr
            .get(&pair)
            .filter(|_| from <= to)
            .into_iter()
            .flat_map(move |set| set.range((from, min_xid())..=(to, max_xid())))
            .map(|(_, id)| *id)
            .filter(|id| !self.claimed_clients.contains(&id.slot_key()))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use podtrace_format::Role;

    use super::*;
    use crate::exchange::{Exchange, Request};
    use crate::protocol::http::HttpRequest;
    use crate::protocol::RequestDetail;

    fn exchange(
        no: ConnNo,
        pid: u32,
        local: &str,
        remote: &str,
        side: SpanKind,
    ) -> (Exchange, Xid) {
        let key = ConnKey {
            conn_id: no,
            local: Some(local.parse().expect("local")),
            remote: Some(remote.parse().expect("remote")),
        };
        let id = ExchangeId { conn: key, seq: 0 };
        let ex = Exchange {
            id,
            conn: Arc::new(ConnInfo {
                key,
                pid,
                comm: String::new(),
                cgroup_id: 0,
                role: Role::Unknown,
                tls: false,
            }),
            side,
            request: Request {
                detail: RequestDetail::Http(HttpRequest {
                    method: "GET".into(),
                    target: "/".into(),
                    path: "/".into(),
                    query: None,
                    version: 1,
                    h2: None,
                }),
                headers: crate::protocol::Headers::new(),
                body_size: 0,
                start_ts: 100 * no,
                end_ts: 100 * no,
                truncated: false,
                tid: 0,
            },
            response: None,
            ordinal: 0,
        };
        (ex, Xid { id, no: (no, 0) })
    }

    impl<'a> Peer<'a> {
        /// What the index reads of `ex`.
        fn of(ex: &'a Exchange) -> Self {
            Peer {
                side: ex.side,
                conn: &ex.conn,
                start: ex.start_ts(),
            }
        }
    }

    fn is_empty(ix: &PeerIndex) -> bool {
        ix.servers_by_proc.is_empty()
            && ix.clients_by_addr.is_empty()
            && ix.claimed_clients.is_empty()
    }

    #[test]
    fn servers_are_found_by_process_and_start() {
        let mut ix = PeerIndex::default();
        let (a, ida) = exchange(1, 7, "10.0.0.1:80", "10.0.0.2:5000", SpanKind::Server);
        let (b, idb) = exchange(2, 7, "10.0.0.1:80", "10.0.0.3:5000", SpanKind::Server);
        let (c, idc) = exchange(3, 8, "10.0.0.1:81", "10.0.0.3:5001", SpanKind::Server);
        for (ex, id) in [(&a, ida), (&b, idb), (&c, idc)] {
            ix.insert(Peer::of(ex), id);
        }
        let pk = ProcessKey::of(&a.conn);
        let found: Vec<Xid> = ix.servers(&pk, 0, u64::MAX).map(|(_, id)| id).collect();
        assert_eq!(found, [ida, idb]);
        let found: Vec<u64> = ix.servers(&pk, 150, 250).map(|(s, _)| s).collect();
        assert_eq!(found, [200]);
        assert_eq!(ix.servers(&pk, 0, 99).count(), 0);
        assert_eq!(ix.servers(&pk, 250, 150).count(), 0, "an empty range");
        ix.drop_server(&pk, (100, ida));
        assert_eq!(ix.servers(&pk, 0, u64::MAX).count(), 1);
        ix.remove(Peer::of(&b), idb);
        ix.remove(Peer::of(&c), idc);
        assert!(is_empty(&ix), "{ix:?}");
    }

    #[test]
    fn claimed_clients_leave_the_caller_search() {
        let mut ix = PeerIndex::default();
        let pair = ("10.0.0.2:5000", "10.0.0.1:80");
        let (a, ida) = exchange(1, 7, pair.0, pair.1, SpanKind::Client);
        let (b, idb) = exchange(2, 7, pair.0, pair.1, SpanKind::Client);
        ix.insert(Peer::of(&a), ida);
        ix.insert(Peer::of(&b), idb);
        let key = (a.conn.key.local.expect("l"), a.conn.key.remote.expect("r"));
        assert_eq!(ix.clients(key, 0, u64::MAX).collect::<Vec<_>>(), [ida, idb]);
        assert_eq!(ix.clients(key, 300, 100).count(), 0, "an empty range");
        ix.claim_client(ida, Some(Peer::of(&a)));
        assert_eq!(ix.clients(key, 0, u64::MAX).collect::<Vec<_>>(), [idb]);
        // Held again under the same id: still claimed.
        ix.insert(Peer::of(&a), ida);
        assert_eq!(ix.clients(key, 0, u64::MAX).collect::<Vec<_>>(), [idb]);
        ix.remove(Peer::of(&a), ida);
        ix.remove(Peer::of(&b), idb);
        assert!(is_empty(&ix), "{ix:?}");
    }
}
