//! Connection events → capture rows, as the two processes would have recorded them.
//!
//! Every connection has two sockets: the client's (`connect`) and the server's (`accept`).
//! [`View`] selects which of them are written. Payload sent by one side is an `egress` row
//! on the sender's socket and an `ingress` row on the receiver's, split at
//! [`MAX_CHUNK`] bytes (the recorder's default snaplen), flagged [`flags::IMPORTED`] (and
//! [`flags::GAP_BEFORE`] on the first row after missing bytes). Process fields are those
//! of no process: pid/tid 0, comm `pcap`, cgroup 0, syscall `pcap`.
//!
//! `conn_id` is derived from the client and server addresses, the connection's start time
//! and the side, with 64-bit FNV-1a: the same capture always gives the same ids, and the
//! two sockets of a connection get different ids.

use std::net::SocketAddr;

use podtrace_format::{flags, Direction, Record, Role, SocketData, SocketEvent, SocketMeta};

use crate::flow::{FlowEvent, FlowInfo, Side};

/// Largest payload of one `socket_data` row: longer chunks are split.
pub const MAX_CHUNK: usize = 16 * 1024;

/// The syscall and comm written on imported rows.
pub const PCAP: &str = "pcap";

/// Which sockets of each connection are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum View {
    /// Only the client's socket.
    Client,
    /// Only the server's socket.
    Server,
    /// Both sockets (default).
    #[default]
    Both,
}

impl View {
    /// The sides this view writes.
    pub fn sides(self) -> &'static [Side] {
        match self {
            View::Client => &[Side::Client],
            View::Server => &[Side::Server],
            View::Both => &[Side::Client, Side::Server],
        }
    }

    /// Parses `client`, `server` or `both`.
    pub fn parse(s: &str) -> Option<View> {
        match s {
            "client" => Some(View::Client),
            "server" => Some(View::Server),
            "both" => Some(View::Both),
            _ => None,
        }
    }
}

/// The `conn_id` of `side`'s socket of a connection.
pub fn conn_id(flow: &FlowInfo, side: Side) -> u64 {
    let mut h = Fnv1a::new();
    for addr in [flow.client, flow.server] {
        h.write(&ip_bytes(addr));
        h.write(&addr.port().to_be_bytes());
    }
    h.write(&flow.start_ts_ns.to_be_bytes());
    h.write(&[match side {
        Side::Client => 1,
        Side::Server => 2,
    }]);
    // 0 is reserved for "no socket" by some consumers.
    h.finish().max(1)
}

fn ip_bytes(addr: SocketAddr) -> [u8; 16] {
    match addr {
        SocketAddr::V4(a) => a.ip().to_ipv6_mapped().octets(),
        SocketAddr::V6(a) => a.ip().octets(),
    }
}

/// 64-bit FNV-1a: tiny, stable across Rust versions and platforms.
struct Fnv1a(u64);

impl Fnv1a {
    fn new() -> Self {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

fn meta(flow: &FlowInfo, side: Side, ts_ns: u64) -> SocketMeta {
    let (local, remote) = match side {
        Side::Client => (flow.client, flow.server),
        Side::Server => (flow.server, flow.client),
    };
    SocketMeta {
        ts_ns,
        cpu: 0,
        pid: 0,
        tid: 0,
        comm: PCAP.into(),
        cgroup_id: 0,
        conn_id: conn_id(flow, side),
        local: Some(local),
        remote: Some(remote),
    }
}

fn role(side: Side) -> Role {
    match side {
        Side::Client => Role::Client,
        Side::Server => Role::Server,
    }
}

/// Appends the rows of one event for the sockets of `view`.
pub fn event_rows(view: View, flow: &FlowInfo, event: &FlowEvent, out: &mut Vec<Record>) {
    match event {
        FlowEvent::Open { ts_ns, .. } => {
            for &side in view.sides() {
                out.push(Record::SocketOpen(SocketEvent {
                    meta: meta(flow, side, *ts_ns),
                    role: role(side),
                    syscall: PCAP.into(),
                }));
            }
        }
        FlowEvent::Close { side, ts_ns, .. } => {
            if view.sides().contains(side) {
                out.push(Record::SocketClose(SocketEvent {
                    meta: meta(flow, *side, *ts_ns),
                    role: role(*side),
                    syscall: PCAP.into(),
                }));
            }
        }
        FlowEvent::Data { from, chunk, .. } => {
            for (n, piece) in chunk.data.chunks(MAX_CHUNK).enumerate() {
                let mut flag_bits = flags::IMPORTED;
                if n == 0 && chunk.gap_before {
                    flag_bits |= flags::GAP_BEFORE;
                }
                for &side in view.sides() {
                    let direction = if side == *from {
                        Direction::Egress
                    } else {
                        Direction::Ingress
                    };
                    out.push(Record::SocketData(SocketData {
                        meta: meta(flow, side, chunk.ts_ns),
                        direction,
                        syscall: PCAP.into(),
                        ret: piece.len() as i64,
                        payload: piece.to_vec(),
                        flags: flag_bits,
                    }));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::RoleSource;
    use crate::reassembly::Chunk;

    fn flow() -> FlowInfo {
        FlowInfo {
            client: "127.0.0.1:40000".parse().unwrap(),
            server: "127.0.0.1:8000".parse().unwrap(),
            start_ts_ns: 7,
            role_source: RoleSource::Handshake,
        }
    }

    #[test]
    fn conn_ids_are_stable_and_differ_per_side() {
        let f = flow();
        let c = conn_id(&f, Side::Client);
        assert_eq!(c, conn_id(&f, Side::Client));
        assert_ne!(c, conn_id(&f, Side::Server));
        let later = FlowInfo {
            start_ts_ns: 8,
            ..f.clone()
        };
        assert_ne!(c, conn_id(&later, Side::Client));
    }

    #[test]
    fn data_is_split_and_mirrored() {
        let f = flow();
        let event = FlowEvent::Data {
            flow: 0,
            from: Side::Client,
            chunk: Chunk {
                ts_ns: 9,
                data: vec![b'x'; MAX_CHUNK + 10],
                gap_before: true,
            },
        };
        let mut rows = Vec::new();
        event_rows(View::Both, &f, &event, &mut rows);
        assert_eq!(rows.len(), 4);
        let Record::SocketData(first) = &rows[0] else {
            panic!("not data")
        };
        assert_eq!(first.direction, Direction::Egress);
        assert_eq!(first.ret, MAX_CHUNK as i64);
        assert_eq!(first.flags, flags::IMPORTED | flags::GAP_BEFORE);
        assert_eq!(first.meta.local, Some(f.client));
        let Record::SocketData(mirror) = &rows[1] else {
            panic!("not data")
        };
        assert_eq!(mirror.direction, Direction::Ingress);
        assert_eq!(mirror.meta.local, Some(f.server));
        let Record::SocketData(last) = &rows[3] else {
            panic!("not data")
        };
        assert_eq!(last.payload.len(), 10);
        assert_eq!(last.flags, flags::IMPORTED);

        let mut client_only = Vec::new();
        event_rows(View::Client, &f, &event, &mut client_only);
        assert_eq!(client_only.len(), 2);
    }
}
