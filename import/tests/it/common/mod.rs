//! Helpers shared by the import tests: building pcaps packet by packet, reading the
//! imported capture back, reassembling what each socket saw, and asking tshark.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use etherparse::PacketBuilder;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::{DataLink, TsResolution};
use podtrace_format::{
    CaptureReader, Direction, FileMeta, ReadOptions, Record, Role, SocketData, SocketEvent,
};

/// TCP flags of a synthetic segment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Flags {
    pub syn: bool,
    pub ack: Option<u32>,
    pub fin: bool,
    pub rst: bool,
}

/// An Ethernet frame carrying one TCP segment (IPv4 or IPv6 after the addresses).
pub fn tcp_frame(src: SocketAddr, dst: SocketAddr, seq: u32, f: Flags, payload: &[u8]) -> Vec<u8> {
    let eth = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
    let ip = match (src, dst) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => eth.ipv4(s.ip().octets(), d.ip().octets(), 64),
        (SocketAddr::V6(s), SocketAddr::V6(d)) => eth.ipv6(s.ip().octets(), d.ip().octets(), 64),
        _ => panic!("mixed address families"),
    };
    let mut tcp = ip.tcp(src.port(), dst.port(), seq, 65535);
    if f.syn {
        tcp = tcp.syn();
    }
    if let Some(a) = f.ack {
        tcp = tcp.ack(a);
    }
    if f.fin {
        tcp = tcp.fin();
    }
    if f.rst {
        tcp = tcp.rst();
    }
    if !payload.is_empty() {
        tcp = tcp.psh();
    }
    let mut out = Vec::new();
    tcp.write(&mut out, payload).expect("build packet");
    out
}

/// A TCP conversation under construction: tracks sequence numbers of both sides, so that
/// tests only say what happens (send, lose, reorder, retransmit).
pub struct Conv {
    pub client: SocketAddr,
    pub server: SocketAddr,
    /// Next sequence number of each side.
    pub cseq: u32,
    pub sseq: u32,
    pub ts: u64,
    /// Frames with their timestamps, in capture order.
    pub frames: Vec<(u64, Vec<u8>)>,
}

pub const STEP_NS: u64 = 1_000_000;

impl Conv {
    pub fn new(client: &str, server: &str, cisn: u32, sisn: u32) -> Conv {
        Conv {
            client: client.parse().unwrap(),
            server: server.parse().unwrap(),
            cseq: cisn,
            sseq: sisn,
            ts: 1_700_000_000_000_000_000,
            frames: Vec::new(),
        }
    }

    fn tick(&mut self) -> u64 {
        self.ts += STEP_NS;
        self.ts
    }

    /// Records a frame built now (ts advances).
    pub fn push(&mut self, frame: Vec<u8>) {
        let ts = self.tick();
        self.frames.push((ts, frame));
    }

    pub fn handshake(&mut self) {
        let (c, s) = (self.client, self.server);
        let syn = Flags {
            syn: true,
            ..Flags::default()
        };
        self.push(tcp_frame(c, s, self.cseq, syn, b""));
        self.cseq = self.cseq.wrapping_add(1);
        let synack = Flags {
            syn: true,
            ack: Some(self.cseq),
            ..Flags::default()
        };
        self.push(tcp_frame(s, c, self.sseq, synack, b""));
        self.sseq = self.sseq.wrapping_add(1);
        let ack = Flags {
            ack: Some(self.sseq),
            ..Flags::default()
        };
        self.push(tcp_frame(c, s, self.cseq, ack, b""));
    }

    /// A frame from the client (`from_client`) or the server at that side's current
    /// sequence number, acknowledging everything the other side sent so far.
    fn frame_from(&self, from_client: bool, flags: Flags, data: &[u8]) -> Vec<u8> {
        let (src, dst, seq, ack) = if from_client {
            (self.client, self.server, self.cseq, self.sseq)
        } else {
            (self.server, self.client, self.sseq, self.cseq)
        };
        let flags = Flags {
            ack: Some(ack),
            ..flags
        };
        tcp_frame(src, dst, seq, flags, data)
    }

    /// Advances the sequence number of one side by `n`.
    fn advance(&mut self, from_client: bool, n: u32) {
        let seq = if from_client {
            &mut self.cseq
        } else {
            &mut self.sseq
        };
        *seq = seq.wrapping_add(n);
    }

    /// A data segment from the client (`from_client`) or the server, at the side's current
    /// sequence number, which then advances. Returns the frame without recording it.
    pub fn segment(&mut self, from_client: bool, data: &[u8]) -> Vec<u8> {
        let f = self.frame_from(from_client, Flags::default(), data);
        self.advance(from_client, data.len() as u32);
        f
    }

    /// Sends and records a data segment.
    pub fn send(&mut self, from_client: bool, data: &[u8]) {
        let f = self.segment(from_client, data);
        self.push(f);
    }

    /// A pure ACK of everything the other side sent so far.
    pub fn ack(&mut self, from_client: bool) {
        let f = self.frame_from(from_client, Flags::default(), b"");
        self.push(f);
    }

    /// FIN from one side (consumes one sequence number).
    pub fn fin(&mut self, from_client: bool) {
        let fin = Flags {
            fin: true,
            ..Flags::default()
        };
        let f = self.frame_from(from_client, fin, b"");
        self.advance(from_client, 1);
        self.push(f);
    }

    /// FIN from both sides and the last ACK.
    pub fn close(&mut self) {
        self.fin(true);
        self.fin(false);
        self.ack(true);
    }

    /// RST from one side.
    pub fn rst(&mut self, from_client: bool) {
        let rst = Flags {
            rst: true,
            ..Flags::default()
        };
        let f = self.frame_from(from_client, rst, b"");
        self.push(f);
    }
}

/// Writes Ethernet frames as a nanosecond pcap.
pub fn write_pcap(path: &Path, frames: &[(u64, Vec<u8>)]) {
    let file = std::fs::File::create(path).expect("create pcap");
    let header = PcapHeader {
        datalink: DataLink::ETHERNET,
        ts_resolution: TsResolution::NanoSecond,
        ..PcapHeader::default()
    };
    let mut w = PcapWriter::with_header(file, header).expect("pcap header");
    for (ts, data) in frames {
        w.write_packet(&PcapPacket::new(
            Duration::from_nanos(*ts),
            data.len() as u32,
            data,
        ))
        .expect("write packet");
    }
}

/// Writes Ethernet frames as pcapng, with nanosecond `if_tsresol` (pcap-file stores the
/// raw units as given).
pub fn write_pcapng(path: &Path, frames: &[(u64, Vec<u8>)]) {
    let file = std::fs::File::create(path).expect("create pcapng");
    let mut w = PcapNgWriter::new(file).expect("pcapng header");
    let mut idb = InterfaceDescriptionBlock::new(DataLink::ETHERNET, 0);
    idb.options.push(InterfaceDescriptionOption::IfTsResol(9));
    w.write_pcapng_block(idb).expect("idb");
    for (ts, data) in frames {
        let epb = EnhancedPacketBlock {
            interface_id: 0,
            timestamp: Duration::from_nanos(*ts),
            original_len: data.len() as u32,
            data: data.as_slice().into(),
            options: vec![],
        };
        w.write_pcapng_block(epb).expect("epb");
    }
}

/// Every row of a capture, and its file metadata.
pub fn read_capture(path: &Path) -> (FileMeta, Vec<Record>) {
    let reader = CaptureReader::open(&[path]).expect("open capture");
    let meta = reader.files()[0].meta.clone();
    let rows = reader
        .records(&ReadOptions::default())
        .collect::<Result<Vec<_>, _>>()
        .expect("read capture");
    (meta, rows)
}

/// Rows must be sorted by timestamp.
pub fn assert_sorted(rows: &[Record]) {
    for w in rows.windows(2) {
        assert!(
            w[0].ts_ns() <= w[1].ts_ns(),
            "rows out of order: {:?} then {:?}",
            w[0],
            w[1]
        );
    }
}

/// One socket as the importer wrote it.
#[derive(Debug, Default, Clone)]
pub struct Socket {
    pub local: Option<SocketAddr>,
    pub remote: Option<SocketAddr>,
    pub role: Option<Role>,
    pub opens: usize,
    pub closes: usize,
    pub egress: Vec<u8>,
    pub ingress: Vec<u8>,
    pub data_rows: Vec<SocketData>,
    pub events: Vec<SocketEvent>,
}

/// Sockets by conn_id.
pub fn sockets(rows: &[Record]) -> BTreeMap<u64, Socket> {
    let mut out: BTreeMap<u64, Socket> = BTreeMap::new();
    for r in rows {
        match r {
            Record::SocketOpen(e) | Record::SocketClose(e) => {
                let s = out.entry(e.meta.conn_id).or_default();
                s.local = e.meta.local;
                s.remote = e.meta.remote;
                s.role = Some(e.role);
                if matches!(r, Record::SocketOpen(_)) {
                    s.opens += 1;
                } else {
                    s.closes += 1;
                }
                s.events.push(e.clone());
            }
            Record::SocketData(d) => {
                let s = out.entry(d.meta.conn_id).or_default();
                match d.direction {
                    Direction::Egress => s.egress.extend_from_slice(&d.payload),
                    Direction::Ingress => s.ingress.extend_from_slice(&d.payload),
                }
                s.data_rows.push(d.clone());
            }
            _ => {}
        }
    }
    out
}

/// The socket whose role is `role` and whose local address is `local`.
pub fn socket_of(socks: &BTreeMap<u64, Socket>, role: Role, local: SocketAddr) -> &Socket {
    socks
        .values()
        .find(|s| s.role == Some(role) && s.local == Some(local))
        .unwrap_or_else(|| panic!("no {role:?} socket at {local}: {socks:#?}"))
}

/// Whether a program can be run (`prog --version` works).
pub fn have(prog: &str) -> bool {
    Command::new(prog)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok()
}

/// One TCP stream as tshark's "Follow TCP stream" (raw) reassembles it.
#[derive(Debug, Clone, Default)]
pub struct Followed {
    /// The endpoint that sent first (tshark's node 0) and the other one.
    pub node0: Option<SocketAddr>,
    pub node1: Option<SocketAddr>,
    /// Bytes sent by node 0 / node 1.
    pub from0: Vec<u8>,
    pub from1: Vec<u8>,
    /// Holes tshark marked ("[N bytes missing in capture file]") in each direction.
    pub missing0: Vec<u64>,
    pub missing1: Vec<u64>,
}

/// tshark's marker for a hole, written into the followed data: returns N.
fn missing_marker(bytes: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(bytes).ok()?;
    let text = text.trim_end_matches('\0');
    let n = text
        .strip_prefix('[')?
        .strip_suffix(" bytes missing in capture file]")?;
    n.parse().ok()
}

/// Runs `tshark -r PCAP -q -z follow,tcp,raw,N` for every TCP stream of the file.
pub fn tshark_follow_all(pcap: &Path) -> Vec<Followed> {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(pcap)
        .args(["-T", "fields", "-e", "tcp.stream"])
        .stderr(std::process::Stdio::null())
        .output()
        .expect("run tshark");
    assert!(out.status.success(), "tshark failed");
    let mut streams: Vec<u32> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    streams.sort_unstable();
    streams.dedup();
    streams
        .into_iter()
        .map(|n| tshark_follow(pcap, n))
        .collect()
}

/// `tshark -q -z follow,tcp,raw,N`: lines of hex, node 1's indented by a tab.
pub fn tshark_follow(pcap: &Path, stream: u32) -> Followed {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(pcap)
        .args(["-q", "-z", &format!("follow,tcp,raw,{stream}")])
        .stderr(std::process::Stdio::null())
        .output()
        .expect("run tshark");
    assert!(out.status.success(), "tshark follow failed");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut f = Followed::default();
    let mut in_body = false;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("Node 0: ") {
            f.node0 = rest.trim().parse().ok();
            continue;
        }
        if let Some(rest) = line.strip_prefix("Node 1: ") {
            f.node1 = rest.trim().parse().ok();
            in_body = true;
            continue;
        }
        if line.starts_with("====") {
            in_body = false;
            continue;
        }
        if !in_body || line.trim().is_empty() {
            continue;
        }
        let (target, missing, hex) = match line.strip_prefix('\t') {
            Some(h) => (&mut f.from1, &mut f.missing1, h),
            None => (&mut f.from0, &mut f.missing0, line),
        };
        let bytes = hex_decode(hex.trim());
        match missing_marker(&bytes) {
            Some(n) => missing.push(n),
            None => target.extend(bytes),
        }
    }
    f
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex from tshark"))
        .collect()
}

/// The socket whose role is `role`, local address `local` and peer `remote`.
pub fn socket_between(
    socks: &BTreeMap<u64, Socket>,
    role: Role,
    local: SocketAddr,
    remote: SocketAddr,
) -> &Socket {
    socks
        .values()
        .find(|s| s.role == Some(role) && s.local == Some(local) && s.remote == Some(remote))
        .unwrap_or_else(|| panic!("no {role:?} socket {local} -> {remote}: {socks:#?}"))
}

/// Segments tshark says the capture missed (`tcp.analysis.lost_segment`).
pub fn tshark_lost_segments(pcap: &Path) -> usize {
    tshark_count(pcap, "tcp.analysis.lost_segment")
}

/// Packets acknowledging data the capture does not have (`tcp.analysis.ack_lost_segment`).
pub fn tshark_acked_unseen(pcap: &Path) -> usize {
    tshark_count(pcap, "tcp.analysis.ack_lost_segment")
}

/// Packets matching a display filter.
pub fn tshark_count(pcap: &Path, filter: &str) -> usize {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(pcap)
        .args(["-Y", filter, "-T", "fields", "-e", "frame.number"])
        .stderr(std::process::Stdio::null())
        .output()
        .expect("run tshark");
    assert!(out.status.success(), "tshark failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count()
}
