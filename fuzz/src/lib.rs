//! # podtrace-fuzz — shared input encoding of the fuzz targets
//!
//! Most targets consume a *script* of capture-like operations rather than raw bytes, so that
//! libFuzzer can vary segmentation, directions, truncation, gaps, connection interleaving and
//! time jumps independently of the payload bytes. One operation is:
//!
//! ```text
//! op:u8  dt:u8  [len:u16le payload:len]  [missing:u16le]
//!   op bits 0-2  kind: 0 egress data, 1 ingress data, 2 open, 3 close, 4 k8s object, 5 stats
//!   op bit  3    data: snaplen-truncated (a `missing` length follows the payload)
//!   op bit  4    data: GAP_BEFORE; open/close: role server (else client)
//!   op bits 5-6  connection 0..3
//!   op bit  7    time jump of 200 s before this row (beyond the analyzer's window)
//! dt: microseconds since the previous row
//! ```
//!
//! [`decode`] turns any byte string into records (never fails: a short tail is ignored);
//! [`encode`] turns real records (the fixtures) into seeds, so the corpora start from real
//! HTTP/1, HTTP/2 and gRPC traffic.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use podtrace_analyzer::internals::Segment;
use podtrace_format::{
    flags, Direction, K8sEvent, K8sObject, Record, Role, SocketData, SocketEvent, SocketMeta, Stat,
};

/// First timestamp of a decoded script (2023-11-14, ns since the Unix epoch).
pub const BASE_TS: u64 = 1_700_000_000_000_000_000;
/// The time jump of op bit 7.
pub const JUMP_NS: u64 = 200 * 1_000_000_000;
/// Connections a script can address.
pub const CONNS: u64 = 4;

/// Operation kinds (op bits 0-2).
pub mod kind {
    /// Bytes the process sent.
    pub const EGRESS: u8 = 0;
    /// Bytes the process received.
    pub const INGRESS: u8 = 1;
    /// `socket_open`.
    pub const OPEN: u8 = 2;
    /// `socket_close`.
    pub const CLOSE: u8 = 3;
    /// A `k8s_object` row whose JSON is the payload.
    pub const K8S: u8 = 4;
    /// A `stats` row.
    pub const STATS: u8 = 5;
}

/// A little-endian byte cursor that yields `None` at the end of input.
struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn u8(&mut self) -> Option<u8> {
        let b = *self.data.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from(self.u8()?) | (u16::from(self.u8()?) << 8))
    }
    /// Up to `n` bytes (fewer at the end of input).
    fn take(&mut self, n: usize) -> &'a [u8] {
        let end = self.pos.saturating_add(n).min(self.data.len());
        let s = &self.data[self.pos..end];
        self.pos = end;
        s
    }
}

/// The socket identity of connection `conn` (0..3): loopback client port 40000+conn to
/// server port 8080, one process per connection side.
pub fn meta(conn: u64, ts_ns: u64) -> SocketMeta {
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    SocketMeta {
        ts_ns,
        cpu: 0,
        pid: 100 + conn as u32,
        tid: 100 + conn as u32,
        comm: format!("proc{conn}").into(),
        cgroup_id: 1000 + conn,
        conn_id: conn + 1,
        local: Some(SocketAddr::new(ip, 40000 + conn as u16)),
        remote: Some(SocketAddr::new(ip, 8080)),
    }
}

/// Decodes a script into records (see the crate docs). Any input is valid.
pub fn decode(data: &[u8]) -> Vec<Record> {
    let mut c = Cursor { data, pos: 0 };
    let mut ts = BASE_TS;
    let mut out = Vec::new();
    while let (Some(op), Some(dt)) = (c.u8(), c.u8()) {
        if op & 0x80 != 0 {
            ts = ts.saturating_add(JUMP_NS);
        }
        ts = ts.saturating_add(u64::from(dt) * 1000);
        let conn = u64::from((op >> 5) & 3);
        let bit3 = op & 0x08 != 0;
        let bit4 = op & 0x10 != 0;
        let m = meta(conn, ts);
        let rec = match op & 7 {
            k @ (kind::EGRESS | kind::INGRESS) => {
                let Some(len) = c.u16() else { break };
                let payload = c.take(usize::from(len)).to_vec();
                let missing = if bit3 {
                    c.u16().map_or(0, u64::from)
                } else {
                    0
                };
                Record::SocketData(SocketData {
                    meta: m,
                    direction: if k == kind::EGRESS {
                        Direction::Egress
                    } else {
                        Direction::Ingress
                    },
                    syscall: "write".into(),
                    ret: (payload.len() as u64 + missing) as i64,
                    payload,
                    flags: if missing > 0 { flags::TRUNCATED } else { 0 }
                        | if bit4 { flags::GAP_BEFORE } else { 0 },
                })
            }
            k @ (kind::OPEN | kind::CLOSE) => {
                let ev = SocketEvent {
                    meta: m,
                    role: if bit4 { Role::Server } else { Role::Client },
                    syscall: "connect".into(),
                };
                if k == kind::OPEN {
                    Record::SocketOpen(ev)
                } else {
                    Record::SocketClose(ev)
                }
            }
            kind::K8S => {
                let Some(len) = c.u16() else { break };
                let json = String::from_utf8_lossy(c.take(usize::from(len))).into_owned();
                Record::K8sObject(K8sObject {
                    ts_ns: ts,
                    kind: ["Pod", "Service", "EndpointSlice", "Node"][conn as usize].into(),
                    uid: format!("uid-{conn}"),
                    namespace: "default".into(),
                    name: format!("obj{conn}"),
                    event: if bit4 {
                        K8sEvent::Deleted
                    } else {
                        K8sEvent::Snapshot
                    },
                    json,
                })
            }
            _ => Record::Stats(Stat {
                ts_ns: ts,
                cpu: None,
                name: "events_dropped_ringbuf_full".into(),
                value: u64::from(dt),
            }),
        };
        out.push(rec);
    }
    out
}

/// The segments of one direction of connection 0..3 in decoded records, in order (what
/// the reassembler would hand out for a time-ordered input).
pub fn segments(records: &[Record], conn: u64, dir: Direction) -> Vec<Segment> {
    records
        .iter()
        .filter_map(|r| match r {
            Record::SocketData(d) if d.meta.conn_id == conn + 1 && d.direction == dir => {
                Some(podtrace_analyzer::internals::segments_of(d))
            }
            _ => None,
        })
        .flatten()
        .collect()
}

/// Encodes real records as a script: connections are numbered by first appearance modulo
/// [`CONNS`], payloads longer than 65535 bytes are cut (the rest becomes `missing`), and
/// Kubernetes objects and counters are left out.
pub fn encode(records: &[Record]) -> Vec<u8> {
    let mut conns: Vec<u64> = Vec::new();
    let mut out = Vec::new();
    let mut last_ts: Option<u64> = None;
    for r in records {
        let (m, op_kind) = match r {
            Record::SocketData(d) => (
                &d.meta,
                if d.direction == Direction::Egress {
                    kind::EGRESS
                } else {
                    kind::INGRESS
                },
            ),
            Record::SocketOpen(e) => (&e.meta, kind::OPEN),
            Record::SocketClose(e) => (&e.meta, kind::CLOSE),
            _ => continue,
        };
        let idx = match conns.iter().position(|c| *c == m.conn_id) {
            Some(i) => i,
            None => {
                conns.push(m.conn_id);
                conns.len() - 1
            }
        } as u64
            % CONNS;
        let dt_us = last_ts.map_or(0, |l| m.ts_ns.saturating_sub(l) / 1000);
        last_ts = Some(m.ts_ns);
        let mut op = op_kind | ((idx as u8) << 5);
        if dt_us > 255 * 1000 {
            op |= 0x80;
        }
        match r {
            Record::SocketData(d) => {
                let len = d.payload.len().min(usize::from(u16::MAX));
                let missing = (d.ret.max(0) as u64).saturating_sub(len as u64);
                if missing > 0 {
                    op |= 0x08;
                }
                if d.flags & flags::GAP_BEFORE != 0 {
                    op |= 0x10;
                }
                out.extend([op, dt_us.min(255) as u8]);
                out.extend((len as u16).to_le_bytes());
                out.extend(&d.payload[..len]);
                if missing > 0 {
                    out.extend((missing.min(u64::from(u16::MAX)) as u16).to_le_bytes());
                }
            }
            Record::SocketOpen(e) | Record::SocketClose(e) => {
                if e.role == Role::Server {
                    op |= 0x10;
                }
                out.extend([op, dt_us.min(255) as u8]);
            }
            _ => {}
        }
    }
    out
}

/// Splits raw bytes into `(name, value)` header pairs: one per line, split at the first
/// `:` (lines without one become a name with an empty value).
pub fn header_pairs(data: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(data)
        .split('\n')
        .map(|line| match line.split_once(':') {
            Some((n, v)) => (n.to_string(), v.to_string()),
            None => (line.to_string(), String::new()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_then_decode_keeps_directions_and_payloads() {
        let m = |ts| meta(7, ts);
        let records = vec![
            Record::SocketOpen(SocketEvent {
                meta: m(BASE_TS),
                role: Role::Client,
                syscall: "connect".into(),
            }),
            Record::SocketData(SocketData {
                meta: m(BASE_TS + 5000),
                direction: Direction::Egress,
                syscall: "write".into(),
                ret: 20,
                payload: b"GET / HTTP/1.1\r\n".to_vec(),
                flags: flags::TRUNCATED,
            }),
        ];
        let back = decode(&encode(&records));
        assert_eq!(back.len(), 2);
        let Record::SocketData(d) = &back[1] else {
            panic!("not data: {back:?}")
        };
        assert_eq!(d.payload, b"GET / HTTP/1.1\r\n");
        assert_eq!(d.ret, 20);
        assert_eq!(d.meta.ts_ns, BASE_TS + 5000);
        assert_eq!(d.flags, flags::TRUNCATED);
    }
}

/// Connection 0's role as the script's first byte picks it (client, server, unknown).
pub fn role(first: u8) -> Role {
    [Role::Client, Role::Server, Role::Unknown][usize::from(first % 3)]
}

/// Feeds one connection's segments to a parser the way the pipeline does: five segments
/// per direction at a time (the shorter direction continues with empty slices, so messages
/// split across calls and replies waiting for their request are exercised), then once more
/// with nothing new and `end = true`.
pub fn feed_in_chunks(
    egress: &[Segment],
    ingress: &[Segment],
    mut feed: impl FnMut(&[Segment], &[Segment], bool),
) {
    let (mut e, mut i) = (egress.chunks(5), ingress.chunks(5));
    loop {
        let (a, b) = (e.next(), i.next());
        if a.is_none() && b.is_none() {
            break;
        }
        feed(a.unwrap_or_default(), b.unwrap_or_default(), false);
    }
    feed(&[], &[], true);
}
