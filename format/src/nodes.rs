//! Multi-node record sets made from one capture's records, for what scales the analysis
//! out (the cluster tests and the `chain_nodes` generator of docs/scale-out.md): the
//! records repeated in time with fresh connection ids, and split per node.

use std::net::IpAddr;

use crate::model::Record;

/// Which connections' closes the copies of [`repeat`] keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closes {
    /// Every copy keeps its closes.
    All,
    /// Odd copies drop theirs: those connections stay open, idle, and are evicted a window
    /// later (the analysis' eviction path exercised).
    EvenCopies,
}

/// `base` repeated `copies` times, `step_ns` apart, in time order: copy `c`'s socket rows
/// shifted by `c * step_ns` with `c << 32` added to their connection ids; Kubernetes
/// objects and stats once (the first copy's).
pub fn repeat(base: &[Record], copies: u64, step_ns: u64, closes: Closes) -> Vec<Record> {
    let mut out = Vec::new();
    for c in 0..copies {
        for r in base {
            if c > 0 && r.socket_meta().is_none() {
                continue;
            }
            if closes == Closes::EvenCopies && c % 2 == 1 && matches!(r, Record::SocketClose(_)) {
                continue;
            }
            let mut r = r.clone();
            if let Some(meta) = r.socket_meta_mut() {
                meta.ts_ns += c * step_ns;
                meta.conn_id += c << 32;
            }
            out.push(r);
        }
    }
    out.sort_by_key(Record::ts_ns);
    out
}

/// `records` split per node, in order: a socket row's node is its local address (one per
/// node in the fixtures), nodes numbered as first seen; rows without a local address
/// (Kubernetes objects, stats) go with node 0.
pub fn split_by_local_ip(records: &[Record]) -> Vec<Vec<Record>> {
    let mut nodes: Vec<IpAddr> = Vec::new();
    let mut out: Vec<Vec<Record>> = Vec::new();
    for r in records {
        let n = match r.socket_meta().and_then(|m| m.local).map(|a| a.ip()) {
            None => 0,
            Some(ip) => nodes.iter().position(|n| *n == ip).unwrap_or_else(|| {
                nodes.push(ip);
                nodes.len() - 1
            }),
        };
        if out.len() <= n {
            out.resize_with(n + 1, Vec::new);
        }
        out[n].push(r.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::model::{Direction, Role, SocketData, SocketEvent, SocketMeta, Stat};

    fn meta(ts_ns: u64, local: &str) -> SocketMeta {
        SocketMeta {
            ts_ns,
            cpu: 0,
            pid: 1,
            tid: 1,
            comm: Arc::from("x"),
            cgroup_id: 0,
            conn_id: 1,
            local: Some(local.parse().expect("addr")),
            remote: None,
        }
    }

    fn event(ts_ns: u64) -> SocketEvent {
        SocketEvent {
            meta: meta(ts_ns, "10.0.0.1:1000"),
            role: Role::Client,
            syscall: Arc::from("connect"),
        }
    }

    fn base() -> Vec<Record> {
        vec![
            Record::Stats(Stat {
                ts_ns: 5,
                cpu: None,
                name: "events".into(),
                value: 0,
            }),
            Record::SocketOpen(event(10)),
            Record::SocketData(SocketData {
                meta: meta(20, "10.0.0.2:80"),
                direction: Direction::Ingress,
                syscall: Arc::from("read"),
                ret: 0,
                payload: Vec::new(),
                flags: 0,
            }),
            Record::SocketClose(event(30)),
        ]
    }

    #[test]
    fn copies_are_shifted_with_fresh_ids_and_odd_closes_dropped_when_asked() {
        let all = repeat(&base(), 3, 100, Closes::All);
        let ts: Vec<u64> = all.iter().map(Record::ts_ns).collect();
        assert_eq!(ts, [5, 10, 20, 30, 110, 120, 130, 210, 220, 230]);
        let ids: Vec<u64> = all
            .iter()
            .filter_map(Record::socket_meta)
            .map(|m| m.conn_id)
            .collect();
        assert_eq!(
            ids,
            [
                1,
                1,
                1,
                1 + (1 << 32),
                1 + (1 << 32),
                1 + (1 << 32),
                1 + (2 << 32),
                1 + (2 << 32),
                1 + (2 << 32)
            ]
        );
        let even = repeat(&base(), 3, 100, Closes::EvenCopies);
        let closes: Vec<u64> = even
            .iter()
            .filter(|r| matches!(r, Record::SocketClose(_)))
            .map(Record::ts_ns)
            .collect();
        assert_eq!(closes, [30, 230]);
    }

    #[test]
    fn split_by_local_ip_numbers_nodes_as_first_seen() {
        let parts = split_by_local_ip(&base());
        let ts = |p: &[Record]| p.iter().map(Record::ts_ns).collect::<Vec<_>>();
        assert_eq!(parts.len(), 2);
        assert_eq!(ts(&parts[0]), [5, 10, 30]);
        assert_eq!(ts(&parts[1]), [20]);
    }
}
