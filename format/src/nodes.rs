//! Multi-node record sets for what scales the analysis out (the cluster tests and the
//! `chain_nodes` / `header_nodes` generators of docs/scale-out.md): one capture's records
//! repeated in time with fresh connection ids, split per node, and generated node pairs
//! whose requests carry large headers ([`HeaderTraffic`]).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use crate::model::{Direction, Record, Role, SocketData, SocketEvent, SocketMeta};

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

/// A client node (10.0.1.`pair`) and a server node (10.0.2.`pair`:8080), both sockets of
/// every connection recorded, exchanging HTTP/1.1 requests that carry `header_bytes` of
/// pseudo-random `x-request-id` values (lines of at most 6,000 bytes: the HTTP/1 parser's
/// line limit is 8 KiB) over `connections` keep-alive connections: front messages as
/// large as wanted (the values are kept in the front's messages, absent from the outputs,
/// and do not compress).
#[derive(Debug, Clone, Copy)]
pub struct HeaderTraffic {
    /// The pair's number: its addresses, its connection ids (`pair` × 1,000,000 + …), its
    /// header values' seed, and a `pair` µs offset so that pairs interleave.
    pub pair: u8,
    /// Keep-alive connections, opened first and closed last.
    pub connections: u64,
    /// Request/response exchanges, round robin over the connections.
    pub exchanges: u64,
    /// Header bytes per request.
    pub header_bytes: usize,
    /// When the first connection opens (ns).
    pub start_ns: u64,
    /// Between two requests (ns).
    pub interval_ns: u64,
}

impl HeaderTraffic {
    /// The pair's records, both nodes', in time order.
    pub fn records(&self) -> Vec<Record> {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ u64::from(self.pair);
        let mut text = |n: usize| -> String {
            (0..n)
                .map(|_| {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    ALPHABET[(rng >> 58) as usize] as char
                })
                .collect()
        };
        let p = self.pair;
        let client_ip: IpAddr = [10, 0, 1, p].into();
        let server = SocketAddr::from(([10, 0, 2, p], 8080));
        let id = u64::from(p) * 1_000_000;
        let meta = |ts_ns: u64, conn: u64, server_side: bool| {
            let client = SocketAddr::new(client_ip, 40_000 + conn as u16);
            SocketMeta {
                ts_ns,
                cpu: 0,
                pid: if server_side { 200 } else { 100 },
                tid: if server_side { 200 } else { 100 },
                comm: Arc::from(if server_side { "server" } else { "client" }),
                cgroup_id: if server_side { 2 } else { 1 },
                conn_id: id + if server_side { 20_000 } else { 10_000 } + conn,
                local: Some(if server_side { server } else { client }),
                remote: Some(if server_side { client } else { server }),
            }
        };
        let data = |meta: SocketMeta, direction: Direction, payload: &[u8]| {
            Record::SocketData(SocketData {
                meta,
                direction,
                syscall: Arc::from(if direction == Direction::Egress {
                    "write"
                } else {
                    "read"
                }),
                ret: payload.len() as i64,
                payload: payload.to_vec(),
                flags: 0,
            })
        };
        let mut out = Vec::new();
        // each connection's client then server event of one kind (open or close) at `at`
        let both_sides = |out: &mut Vec<Record>, at: u64, client: &str, server: &str| {
            for c in 0..self.connections {
                for (server_side, role, syscall) in
                    [(false, Role::Client, client), (true, Role::Server, server)]
                {
                    let e = SocketEvent {
                        meta: meta(
                            at + c * 1_000 + 100 * u64::from(server_side),
                            c,
                            server_side,
                        ),
                        role,
                        syscall: Arc::from(syscall),
                    };
                    out.push(if syscall == "close" {
                        Record::SocketClose(e)
                    } else {
                        Record::SocketOpen(e)
                    });
                }
            }
        };
        let offset = u64::from(p) * 1_000;
        both_sides(&mut out, self.start_ns + offset, "connect", "accept4");
        let first = self.start_ns + 1_000_000 + offset;
        let response = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        for i in 0..self.exchanges {
            let c = i % self.connections.max(1);
            let t = first + i * self.interval_ns;
            let mut request = format!("GET /items/{i} HTTP/1.1\r\nhost: server:8080\r\n");
            let mut left = self.header_bytes;
            while left > 0 {
                let n = left.min(6_000);
                request.push_str(&format!("x-request-id: {}\r\n", text(n)));
                left -= n;
            }
            request.push_str("\r\n");
            out.push(data(
                meta(t, c, false),
                Direction::Egress,
                request.as_bytes(),
            ));
            out.push(data(
                meta(t + 50_000, c, true),
                Direction::Ingress,
                request.as_bytes(),
            ));
            out.push(data(
                meta(t + 200_000, c, true),
                Direction::Egress,
                response,
            ));
            out.push(data(
                meta(t + 250_000, c, false),
                Direction::Ingress,
                response,
            ));
        }
        both_sides(
            &mut out,
            first + self.exchanges * self.interval_ns,
            "close",
            "close",
        );
        out.sort_by_key(Record::ts_ns);
        out
    }
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

    #[test]
    fn header_traffic_is_two_nodes_with_headers_of_the_size_asked() {
        let t = HeaderTraffic {
            pair: 3,
            connections: 2,
            exchanges: 5,
            header_bytes: 7_000,
            start_ns: 1_000,
            interval_ns: 10_000_000,
        };
        let recs = t.records();
        // 2 opens + 2 closes per side, 4 data rows per exchange
        assert_eq!(recs.len(), 2 * 2 * 2 + 4 * 5);
        assert!(recs.windows(2).all(|w| w[0].ts_ns() <= w[1].ts_ns()));
        let nodes = split_by_local_ip(&recs);
        assert_eq!(nodes.len(), 2, "the client node and the server node");
        let Record::SocketData(first) = recs
            .iter()
            .find(|r| matches!(r, Record::SocketData(_)))
            .unwrap()
        else {
            unreachable!()
        };
        assert!(first.payload.len() > 7_000 && first.payload.len() < 7_200);
        assert_eq!(first.meta.local.unwrap().ip(), IpAddr::from([10, 0, 1, 3]));
        assert_eq!(t.records().len(), recs.len(), "deterministic");
    }
}
