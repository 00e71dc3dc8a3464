//! Connection tracking: TCP segments → connection events (open, data, close).
//!
//! A connection (flow) is keyed by its two endpoints. It starts at a SYN, or at the first
//! packet seen for a connection that was already open when the capture began (*mid-stream*).
//!
//! **Who is the client.** The sender of a SYN (without ACK) is the client; the sender of a
//! SYN-ACK is the server. For a mid-stream flow the ports decide, in this order:
//! 1. exactly one port is well-known (< 1024): that side is the server;
//! 2. exactly one port is in the ephemeral range (≥ 32768, covering Linux's default
//!    32768–60999 and IANA's 49152–65535): that side is the client;
//! 3. the ports differ: the lower port is the server;
//! 4. otherwise the sender of the first packet seen is the client.
//!
//! **Boundaries.** Each direction is reassembled by a [`StreamReassembler`]. When both
//! directions have reached their FIN, both sockets close (at the time of the second FIN, so
//! that no socket receives data after its close). An RST delivers what is buffered
//! (declaring holes lost) and closes both sockets. A bare SYN that does not repeat a known
//! connection is port reuse: the old connection closes and a new one starts. Packets of a
//! closed connection (the last ACK, retransmitted FINs) are ignored. At the end of the
//! capture, buffered data is delivered; connections without both FINs stay open.

use std::collections::HashMap;
use std::net::SocketAddr;

use crate::decode::TcpSegment;
use crate::reassembly::{Chunk, StreamReassembler, StreamStats};

/// One endpoint of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The side that connected.
    Client,
    /// The side that accepted.
    Server,
}

/// How the client of a connection was identified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RoleSource {
    /// From the SYN (or SYN-ACK).
    Handshake,
    /// Mid-stream, from the port heuristic.
    Ports,
    /// Mid-stream, equal ports: the first sender is the client.
    FirstSender,
}

/// What is known about a connection once it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowInfo {
    /// The client's address.
    pub client: SocketAddr,
    /// The server's address.
    pub server: SocketAddr,
    /// Time of the connection's first packet, ns.
    pub start_ts_ns: u64,
    /// How the roles were decided.
    pub role_source: RoleSource,
}

/// A connection event, in capture order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlowEvent {
    /// Connection `flow` started.
    Open {
        /// Index into [`FlowTracker::flows`].
        flow: usize,
        /// Time of its first packet.
        ts_ns: u64,
    },
    /// In-order payload sent by `from`.
    Data {
        /// Index into [`FlowTracker::flows`].
        flow: usize,
        /// The sender.
        from: Side,
        /// The bytes.
        chunk: Chunk,
    },
    /// `side`'s socket closed.
    Close {
        /// Index into [`FlowTracker::flows`].
        flow: usize,
        /// Which socket.
        side: Side,
        /// When.
        ts_ns: u64,
    },
}

/// Counters of the tracker.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FlowStats {
    /// Connections started.
    pub flows: u64,
    /// Of which seen without their handshake.
    pub mid_stream: u64,
    /// Connections closed by FINs on both sides.
    pub closed: u64,
    /// Connections ended by an RST.
    pub resets: u64,
    /// Packets ignored: after their connection closed, or a lone RST.
    pub ignored_packets: u64,
    /// Client → server stream counters (all connections).
    pub client_to_server: StreamStats,
    /// Server → client stream counters (all connections).
    pub server_to_client: StreamStats,
}

/// State of one connection.
#[derive(Debug)]
struct FlowState {
    idx: usize,
    client: SocketAddr,
    c2s: StreamReassembler,
    s2c: StreamReassembler,
    closed: bool,
    last_ts: u64,
}

/// Tracks every connection of a capture. Feed packets in capture order with
/// [`FlowTracker::packet`], then call [`FlowTracker::finish`].
#[derive(Debug)]
pub struct FlowTracker {
    flows: Vec<FlowInfo>,
    states: Vec<FlowState>,
    by_endpoints: HashMap<(SocketAddr, SocketAddr), usize>,
    max_pending: usize,
    stats: FlowStats,
}

/// Ports at or above this are treated as ephemeral (client) ports.
const EPHEMERAL_START: u16 = 32768;
/// Ports below this are well-known (server) ports.
const WELL_KNOWN_END: u16 = 1024;

/// Decides which of two endpoints is the client of a connection seen mid-stream;
/// `first_src` sent the first packet seen. See the module doc.
pub fn guess_client(first_src: SocketAddr, first_dst: SocketAddr) -> (SocketAddr, RoleSource) {
    let (a, b) = (first_src.port(), first_dst.port());
    let other = |client_is_src: bool| {
        if client_is_src {
            first_src
        } else {
            first_dst
        }
    };
    if (a < WELL_KNOWN_END) != (b < WELL_KNOWN_END) {
        return (other(b < WELL_KNOWN_END), RoleSource::Ports);
    }
    if (a >= EPHEMERAL_START) != (b >= EPHEMERAL_START) {
        return (other(a >= EPHEMERAL_START), RoleSource::Ports);
    }
    if a != b {
        return (other(a > b), RoleSource::Ports);
    }
    (first_src, RoleSource::FirstSender)
}

fn endpoints_key(a: SocketAddr, b: SocketAddr) -> (SocketAddr, SocketAddr) {
    if a <= b {
        (a, b)
    } else {
        (b, a)
    }
}

impl FlowTracker {
    /// A tracker buffering at most `max_pending` bytes of out-of-order data per direction.
    pub fn new(max_pending: usize) -> Self {
        FlowTracker {
            flows: Vec::new(),
            states: Vec::new(),
            by_endpoints: HashMap::new(),
            max_pending,
            stats: FlowStats::default(),
        }
    }

    /// Every connection started so far, by index.
    pub fn flows(&self) -> &[FlowInfo] {
        &self.flows
    }

    /// Counters, including the stream counters of every connection.
    pub fn stats(&self) -> FlowStats {
        let mut s = self.stats;
        for st in &self.states {
            add(&mut s.client_to_server, st.c2s.stats());
            add(&mut s.server_to_client, st.s2c.stats());
        }
        s
    }

    /// Processes one TCP segment captured at `ts_ns`; events go to `out`.
    pub fn packet(&mut self, ts_ns: u64, seg: &TcpSegment<'_>, out: &mut Vec<FlowEvent>) {
        let key = endpoints_key(seg.src, seg.dst);
        let opening_syn = seg.syn && seg.ack.is_none();
        let idx = match self.by_endpoints.get(&key).copied() {
            Some(i) if !self.states[i].closed => {
                let st = &self.states[i];
                // A bare SYN is a new connection unless it repeats this one's SYN.
                let reused = opening_syn
                    && (st.client != seg.src || st.c2s.origin() != Some(seg.seq.wrapping_add(1)));
                if reused {
                    self.close(i, ts_ns, out);
                    self.open(key, ts_ns, seg, out)
                } else {
                    i
                }
            }
            Some(_) if opening_syn => self.open(key, ts_ns, seg, out),
            Some(_) => {
                self.stats.ignored_packets += 1;
                return;
            }
            None if seg.rst => {
                self.stats.ignored_packets += 1;
                return;
            }
            None => self.open(key, ts_ns, seg, out),
        };
        self.feed(idx, ts_ns, seg, out);
    }

    /// End of the capture: delivers buffered data of open connections and closes those
    /// whose both FINs are now reached.
    pub fn finish(&mut self, out: &mut Vec<FlowEvent>) {
        for i in 0..self.states.len() {
            if self.states[i].closed {
                continue;
            }
            let ts = self.states[i].last_ts;
            let mut chunks = Vec::new();
            self.states[i].c2s.flush(ts, &mut chunks);
            push_data(i, Side::Client, chunks, out);
            let mut chunks = Vec::new();
            self.states[i].s2c.flush(ts, &mut chunks);
            push_data(i, Side::Server, chunks, out);
            if self.states[i].c2s.is_finished() && self.states[i].s2c.is_finished() {
                self.stats.closed += 1;
                self.close(i, ts, out);
            }
        }
    }

    fn open(
        &mut self,
        key: (SocketAddr, SocketAddr),
        ts_ns: u64,
        seg: &TcpSegment<'_>,
        out: &mut Vec<FlowEvent>,
    ) -> usize {
        let (client, role_source) = match (seg.syn, seg.ack.is_some()) {
            (true, false) => (seg.src, RoleSource::Handshake),
            (true, true) => (seg.dst, RoleSource::Handshake),
            _ => guess_client(seg.src, seg.dst),
        };
        if role_source != RoleSource::Handshake {
            self.stats.mid_stream += 1;
        }
        let server = if client == seg.src { seg.dst } else { seg.src };
        let idx = self.flows.len();
        self.flows.push(FlowInfo {
            client,
            server,
            start_ts_ns: ts_ns,
            role_source,
        });
        self.states.push(FlowState {
            idx,
            client,
            c2s: StreamReassembler::new(self.max_pending),
            s2c: StreamReassembler::new(self.max_pending),
            closed: false,
            last_ts: ts_ns,
        });
        self.by_endpoints.insert(key, idx);
        self.stats.flows += 1;
        out.push(FlowEvent::Open { flow: idx, ts_ns });
        idx
    }

    fn feed(&mut self, i: usize, ts_ns: u64, seg: &TcpSegment<'_>, out: &mut Vec<FlowEvent>) {
        let st = &mut self.states[i];
        st.last_ts = st.last_ts.max(ts_ns);
        let from = if seg.src == st.client {
            Side::Client
        } else {
            Side::Server
        };
        let (this, peer) = match from {
            Side::Client => (&mut st.c2s, &mut st.s2c),
            Side::Server => (&mut st.s2c, &mut st.c2s),
        };
        let peer_side = match from {
            Side::Client => Side::Server,
            Side::Server => Side::Client,
        };
        let mut chunks = Vec::new();
        if let Some(ack) = seg.ack {
            peer.peer_ack(ts_ns, ack, &mut chunks);
        }
        push_data(st.idx, peer_side, std::mem::take(&mut chunks), out);
        if seg.rst {
            // RST payload is a diagnostic, not stream data.
            if !this.is_anchored() {
                this.segment(ts_ns, seg.seq, false, false, &[], &mut chunks);
            }
            this.flush(ts_ns, &mut chunks);
            push_data(st.idx, from, std::mem::take(&mut chunks), out);
            peer.flush(ts_ns, &mut chunks);
            push_data(st.idx, peer_side, chunks, out);
            self.stats.resets += 1;
            self.close(i, ts_ns, out);
            return;
        }
        this.segment(ts_ns, seg.seq, seg.syn, seg.fin, seg.payload, &mut chunks);
        push_data(st.idx, from, chunks, out);
        if st.c2s.is_finished() && st.s2c.is_finished() {
            self.stats.closed += 1;
            self.close(i, ts_ns, out);
        }
    }

    fn close(&mut self, i: usize, ts_ns: u64, out: &mut Vec<FlowEvent>) {
        let st = &mut self.states[i];
        if st.closed {
            return;
        }
        st.closed = true;
        for side in [Side::Client, Side::Server] {
            out.push(FlowEvent::Close {
                flow: st.idx,
                side,
                ts_ns,
            });
        }
    }
}

fn push_data(flow: usize, from: Side, chunks: Vec<Chunk>, out: &mut Vec<FlowEvent>) {
    out.extend(
        chunks
            .into_iter()
            .map(|chunk| FlowEvent::Data { flow, from, chunk }),
    );
}

fn add(total: &mut StreamStats, s: StreamStats) {
    total.segments += s.segments;
    total.bytes += s.bytes;
    total.retransmits += s.retransmits;
    total.out_of_order += s.out_of_order;
    total.gaps += s.gaps;
    total.gap_bytes += s.gap_bytes;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn port_heuristic() {
        let c = addr("10.0.0.1:45000");
        let s = addr("10.0.0.2:8000");
        assert_eq!(guess_client(c, s), (c, RoleSource::Ports));
        assert_eq!(guess_client(s, c), (c, RoleSource::Ports));
        let web = addr("10.0.0.2:443");
        let high = addr("10.0.0.1:2000");
        assert_eq!(guess_client(web, high), (high, RoleSource::Ports));
        let a = addr("10.0.0.1:9090");
        let b = addr("10.0.0.2:8080");
        assert_eq!(guess_client(b, a), (a, RoleSource::Ports));
        let x = addr("10.0.0.1:7000");
        let y = addr("10.0.0.2:7000");
        assert_eq!(guess_client(y, x), (y, RoleSource::FirstSender));
    }
}
