//! Reassembly: `socket_data` rows → per-connection, per-direction ordered byte streams.
//!
//! Rows are grouped by [`ConnKey`] (the capture's connection id plus the socket's
//! addresses) and direction, ordered by timestamp then input order, and turned into
//! [`Segment`]s: captured bytes with the time of the syscall that moved them, the length of
//! bytes the snaplen cut off ([`Segment::Missing`], so parsers can skip them by declared
//! lengths), and markers for bytes lost before a row ([`Segment::Gap`]). The connection's
//! role comes from `socket_open` rows when present; otherwise it stays
//! [`Role::Unknown`] and the HTTP stage infers it. The reassembler is incremental: rows are
//! pushed in batches and [`Reassembler::take_ready`] hands out only the new segments.
//!
//! TLS: a connection is TLS ([`ConnInfo::tls`]) when it has rows of TLS plaintext
//! (`flags::TLS_PLAINTEXT`, from the recorder's uprobes on the TLS library), or when its
//! first captured bytes are a TLS record header (handshake, alert, change cipher spec or
//! application data, version 3.x). Its streams are then made of the plaintext rows only:
//! the socket's own rows (ciphertext) are skipped and counted
//! ([`Reassembler::tls_ciphertext_skipped`]), never parsed, so they are no parse errors. A
//! TLS connection whose plaintext was not captured (a library podtrace does not hook)
//! yields no spans rather than errors.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use foldhash::HashMap;
use podtrace_format::{flags, Direction, Role, SocketData, SocketEvent, SocketMeta};

/// Identity of one recorded socket.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct ConnKey {
    /// The capture's connection id (socket cookie, or the importer's flow id).
    pub conn_id: u64,
    /// Local address of the socket.
    pub local: Option<SocketAddr>,
    /// Remote address of the socket.
    pub remote: Option<SocketAddr>,
}

/// Three words per key: the connection id and each address packed into one word. The
/// derived hash fed every field of both `Option<SocketAddr>`s apart (discriminants, octets,
/// port, IPv6 flow info and scope), about 140 instructions a key; the front and the linker
/// hash keys several times per span. Equal keys give equal words (a hash may use less than
/// the whole key).
impl std::hash::Hash for ConnKey {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        h.write_u64(self.conn_id);
        h.write_u64(addr_word(self.local));
        h.write_u64(addr_word(self.remote));
    }
}

/// One word of a socket address for [`ConnKey`]'s hash (IPv6 addresses folded).
fn addr_word(a: Option<SocketAddr>) -> u64 {
    match a {
        None => 0,
        Some(SocketAddr::V4(v)) => {
            (1 << 63) | (u64::from(u32::from(*v.ip())) << 16) | u64::from(v.port())
        }
        Some(SocketAddr::V6(v)) => {
            let ip = u128::from(*v.ip());
            ((ip >> 64) as u64 ^ (ip as u64).rotate_left(17)) ^ (u64::from(v.port()) << 1) ^ 1
        }
    }
}

impl ConnKey {
    /// The key of a socket row.
    pub fn of(meta: &SocketMeta) -> Self {
        ConnKey {
            conn_id: meta.conn_id,
            local: meta.local,
            remote: meta.remote,
        }
    }
}

/// Who owns a connection: the process and its socket addresses (from the first row seen).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConnInfo {
    /// The connection's key.
    pub key: ConnKey,
    /// Process id.
    pub pid: u32,
    /// Process name.
    pub comm: String,
    /// cgroup v2 id of the process.
    pub cgroup_id: u64,
    /// Client, server, or not known from `socket_open`.
    pub role: Role,
    /// The connection is TLS: its streams are the plaintext captured at the TLS library.
    pub tls: bool,
}

/// A piece of one direction's byte stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Captured bytes moved by one syscall at `ts_ns`.
    Data {
        /// Syscall time.
        ts_ns: u64,
        /// Thread that made the syscall (0: not known, e.g. imported captures).
        tid: u32,
        /// The bytes.
        bytes: Vec<u8>,
    },
    /// `len` bytes were transferred at `ts_ns` but not captured (snaplen truncation).
    Missing {
        /// Syscall time.
        ts_ns: u64,
        /// How many bytes are missing.
        len: u64,
    },
    /// An unknown number of bytes is missing before the next segment (lost events).
    Gap {
        /// Time of the row after the gap.
        ts_ns: u64,
    },
}

impl Segment {
    /// The segment's time.
    pub fn ts_ns(&self) -> u64 {
        match self {
            Segment::Data { ts_ns, .. }
            | Segment::Missing { ts_ns, .. }
            | Segment::Gap { ts_ns } => *ts_ns,
        }
    }
}

/// The segments one row contributes, in order: gap marker, captured bytes, missing tail.
pub fn segments_of(row: &SocketData) -> Vec<Segment> {
    let mut out = Vec::with_capacity(2);
    push_segments(row, |s| out.push(s));
    out
}

/// Hands the segments of [`segments_of`] to `push` one by one (no list per row).
fn push_segments(row: &SocketData, mut push: impl FnMut(Segment)) {
    let ts_ns = row.meta.ts_ns;
    if row.flags & flags::GAP_BEFORE != 0 {
        push(Segment::Gap { ts_ns });
    }
    if row.ret <= 0 {
        return;
    }
    let ret = row.ret as u64;
    let captured = (row.payload.len() as u64).min(ret);
    if captured > 0 {
        push(Segment::Data {
            ts_ns,
            tid: row.meta.tid,
            bytes: row.payload[..captured as usize].to_vec(),
        });
    }
    if ret > captured {
        push(Segment::Missing {
            ts_ns,
            len: ret - captured,
        });
    }
}

/// Captured payload bytes among held segments.
fn data_bytes(segs: &[(u64, u64, Segment)]) -> u64 {
    segs.iter()
        .map(|(_, _, s)| match s {
            Segment::Data { bytes, .. } => bytes.len() as u64,
            _ => 0,
        })
        .sum()
}

/// New stream pieces of one connection since the last [`Reassembler::take_ready`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionDelta {
    /// Who owns the connection.
    pub info: ConnInfo,
    /// New bytes the process sent, in order.
    pub egress: Vec<Segment>,
    /// New bytes the process received, in order.
    pub ingress: Vec<Segment>,
    /// The connection was closed (`socket_close`): no more data will come.
    pub closed: bool,
    /// Time of the newest row of the connection.
    pub last_ts: u64,
}

#[derive(Debug)]
struct Pending {
    info: ConnInfo,
    /// (ts, input sequence, segment)
    egress: Vec<(u64, u64, Segment)>,
    ingress: Vec<(u64, u64, Segment)>,
    closed: bool,
    last_ts: u64,
    dirty: bool,
    /// A data row of the connection has been seen (the TLS sniff looks at the first).
    sniffed: bool,
    /// Socket rows (not plaintext) among the segments not yet handed out.
    socket_rows: u64,
}

/// Whether `b` starts like a TLS record: content type 20..=23 (change cipher spec, alert,
/// handshake, application data), major version 3, minor 0..=4, and, when present, a
/// record length within TLS's bound (2^14 + 2048).
pub fn looks_like_tls_record(b: &[u8]) -> bool {
    if b.len() < 3 || !(20..=23).contains(&b[0]) || b[1] != 3 || b[2] > 4 {
        return false;
    }
    b.len() < 5 || u16::from_be_bytes([b[3], b[4]]) <= 16384 + 2048
}

/// Incremental reassembler over socket rows.
#[derive(Debug, Default)]
pub struct Reassembler {
    pending: BTreeMap<ConnKey, Pending>,
    roles: HashMap<ConnKey, Role>,
    seq: u64,
    tls_skipped: u64,
    tls_skipped_bytes: u64,
}

impl Reassembler {
    /// An empty reassembler.
    pub fn new() -> Self {
        Self::default()
    }

    fn entry(&mut self, meta: &SocketMeta) -> &mut Pending {
        let key = ConnKey::of(meta);
        let roles = &self.roles;
        self.pending.entry(key).or_insert_with(|| Pending {
            info: ConnInfo {
                key,
                pid: meta.pid,
                comm: meta.comm.to_string(),
                cgroup_id: meta.cgroup_id,
                role: roles.get(&key).copied().unwrap_or(Role::Unknown),
                tls: false,
            },
            egress: Vec::new(),
            ingress: Vec::new(),
            closed: false,
            last_ts: meta.ts_ns,
            dirty: false,
            sniffed: false,
            socket_rows: 0,
        })
    }

    /// A `socket_open` row: records the connection's role.
    pub fn push_open(&mut self, ev: &SocketEvent) {
        let key = ConnKey::of(&ev.meta);
        if ev.role != Role::Unknown {
            self.roles.insert(key, ev.role);
            if let Some(p) = self.pending.get_mut(&key) {
                p.info.role = ev.role;
                p.dirty = true;
            }
        }
    }

    /// A `socket_close` row: the connection's streams end.
    pub fn push_close(&mut self, ev: &SocketEvent) {
        let p = self.entry(&ev.meta);
        p.closed = true;
        p.dirty = true;
        p.last_ts = p.last_ts.max(ev.meta.ts_ns);
        if ev.role != Role::Unknown && p.info.role == Role::Unknown {
            p.info.role = ev.role;
        }
        let key = ConnKey::of(&ev.meta);
        self.roles.remove(&key);
    }

    /// A `socket_data` row.
    pub fn push_data(&mut self, row: &SocketData) {
        let seq = self.seq;
        self.seq += 1;
        let p = self.entry(&row.meta);
        p.last_ts = p.last_ts.max(row.meta.ts_ns);
        p.dirty = true;
        let plaintext = row.flags & flags::TLS_PLAINTEXT != 0;
        if plaintext {
            if !p.info.tls {
                // the socket rows held so far were ciphertext
                p.info.tls = true;
                let held = std::mem::take(&mut p.socket_rows);
                let bytes = data_bytes(&p.egress) + data_bytes(&p.ingress);
                p.egress.clear();
                p.ingress.clear();
                self.tls_skipped += held;
                self.tls_skipped_bytes += bytes;
                return self.push_plaintext(row, seq);
            }
        } else {
            if !p.sniffed && !p.info.tls {
                let first = &row.payload[..row.payload.len().min(5)];
                p.info.tls = looks_like_tls_record(first);
            }
            if p.info.tls {
                p.sniffed = true;
                self.tls_skipped += 1;
                self.tls_skipped_bytes += (row.payload.len() as u64).min(row.ret.max(0) as u64);
                return;
            }
            p.socket_rows += 1;
        }
        p.sniffed |= !row.payload.is_empty();
        Self::push_row(p, row, seq);
    }

    /// The first plaintext row of a connection (after its held socket rows were dropped).
    fn push_plaintext(&mut self, row: &SocketData, seq: u64) {
        let p = self.entry(&row.meta);
        p.sniffed = true;
        Self::push_row(p, row, seq);
    }

    fn push_row(p: &mut Pending, row: &SocketData, seq: u64) {
        let dir = match row.direction {
            Direction::Egress => &mut p.egress,
            Direction::Ingress => &mut p.ingress,
        };
        let ts = row.meta.ts_ns;
        push_segments(row, |s| dir.push((ts, seq, s)));
    }

    /// Hands out what is new for every connection that changed, ordered by key, with the
    /// segments of each direction sorted by (time, input order). Closed connections are
    /// forgotten after this.
    pub fn take_ready(&mut self) -> Vec<ConnectionDelta> {
        let mut out = Vec::new();
        let mut done = Vec::new();
        for (key, p) in self.pending.iter_mut() {
            if !p.dirty {
                continue;
            }
            p.dirty = false;
            p.socket_rows = 0;
            let mut egress = std::mem::take(&mut p.egress);
            let mut ingress = std::mem::take(&mut p.ingress);
            egress.sort_by_key(|(ts, seq, _)| (*ts, *seq));
            ingress.sort_by_key(|(ts, seq, _)| (*ts, *seq));
            out.push(ConnectionDelta {
                info: p.info.clone(),
                egress: egress.into_iter().map(|(_, _, s)| s).collect(),
                ingress: ingress.into_iter().map(|(_, _, s)| s).collect(),
                closed: p.closed,
                last_ts: p.last_ts,
            });
            if p.closed {
                done.push(*key);
            }
        }
        for key in done {
            self.pending.remove(&key);
        }
        out
    }

    /// Forgets connections whose newest row is older than `before_ts` (idle ones), returning
    /// their keys so later stages can drop their state too.
    pub fn evict_idle(&mut self, before_ts: u64) -> Vec<ConnKey> {
        let idle: Vec<ConnKey> = self
            .pending
            .iter()
            .filter(|(_, p)| p.last_ts < before_ts && !p.dirty)
            .map(|(k, _)| *k)
            .collect();
        for k in &idle {
            self.pending.remove(k);
            self.roles.remove(k);
        }
        idle
    }

    /// Socket rows of TLS connections skipped so far (ciphertext: the connection is parsed
    /// from its plaintext rows).
    pub fn tls_ciphertext_skipped(&self) -> u64 {
        self.tls_skipped
    }

    /// Captured payload bytes of those rows (so that bytes in = bytes handed out + these).
    pub fn tls_ciphertext_skipped_bytes(&self) -> u64 {
        self.tls_skipped_bytes
    }

    /// Number of connections currently tracked.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// True when no connection is tracked.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    pub(crate) fn meta(conn_id: u64, ts_ns: u64) -> SocketMeta {
        SocketMeta {
            ts_ns,
            cpu: 0,
            pid: 7,
            tid: 7,
            comm: "svc".into(),
            cgroup_id: 1,
            conn_id,
            local: Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 1, 1)), 80)),
            remote: Some(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)),
                5000,
            )),
        }
    }

    fn row(conn_id: u64, ts: u64, dir: Direction, bytes: &[u8], ret: i64, fl: u32) -> SocketData {
        SocketData {
            meta: meta(conn_id, ts),
            direction: dir,
            syscall: "read".into(),
            ret,
            payload: bytes.to_vec(),
            flags: fl,
        }
    }

    #[test]
    fn truncation_and_gap_become_segments() {
        let r = row(
            1,
            5,
            Direction::Ingress,
            b"abc",
            10,
            flags::TRUNCATED | flags::GAP_BEFORE,
        );
        assert_eq!(
            segments_of(&r),
            vec![
                Segment::Gap { ts_ns: 5 },
                Segment::Data {
                    ts_ns: 5,
                    tid: 7,
                    bytes: b"abc".to_vec()
                },
                Segment::Missing { ts_ns: 5, len: 7 },
            ]
        );
        assert!(segments_of(&row(1, 5, Direction::Ingress, b"", -11, 0)).is_empty());
    }

    fn ingress_bytes(d: &ConnectionDelta) -> Vec<u8> {
        d.ingress
            .iter()
            .flat_map(|s| match s {
                Segment::Data { bytes, .. } => bytes.clone(),
                _ => Vec::new(),
            })
            .collect()
    }

    #[test]
    fn tls_connections_are_parsed_from_plaintext_rows_only() {
        let tls = flags::TLS_PLAINTEXT;
        // sniffed at the first row (a ClientHello header, read alone as OpenSSL does)
        let mut r = Reassembler::new();
        r.push_data(&row(1, 1, Direction::Ingress, &[22, 3, 1, 0, 200], 5, 0));
        r.push_data(&row(1, 2, Direction::Ingress, &[1; 200], 200, 0));
        r.push_data(&row(1, 3, Direction::Egress, &[22, 3, 3, 0, 90, 2], 95, 0));
        r.push_data(&row(1, 4, Direction::Ingress, &[23, 3, 3, 0, 30], 5, 0));
        r.push_data(&row(
            1,
            5,
            Direction::Ingress,
            b"GET / HTTP/1.1\r\n\r\n",
            18,
            tls,
        ));
        let d = r.take_ready();
        assert_eq!(d.len(), 1);
        assert!(d[0].info.tls);
        assert_eq!(ingress_bytes(&d[0]), b"GET / HTTP/1.1\r\n\r\n");
        assert!(d[0].egress.is_empty());
        assert_eq!(r.tls_ciphertext_skipped(), 4);
        // a plaintext row arriving after socket rows that did not look like TLS (the
        // recorder joined late): the held socket rows are dropped, later ones skipped
        let mut r = Reassembler::new();
        r.push_data(&row(2, 1, Direction::Ingress, b"\x00\x01garbage", 9, 0));
        r.push_data(&row(2, 2, Direction::Ingress, b"ping", 4, tls));
        r.push_data(&row(2, 3, Direction::Ingress, b"\x00more", 5, 0));
        let d = r.take_ready();
        assert!(d[0].info.tls);
        assert_eq!(ingress_bytes(&d[0]), b"ping");
        assert_eq!(r.tls_ciphertext_skipped(), 2);
        // cleartext stays cleartext
        let mut r = Reassembler::new();
        r.push_data(&row(3, 1, Direction::Ingress, b"GET / HTTP/1.1\r\n", 16, 0));
        r.push_data(&row(3, 2, Direction::Ingress, &[23, 3, 3, 0, 1], 5, 0));
        let d = r.take_ready();
        assert!(!d[0].info.tls);
        assert_eq!(ingress_bytes(&d[0]).len(), 21);
        assert_eq!(r.tls_ciphertext_skipped(), 0);
        assert!(looks_like_tls_record(&[23, 3, 3]));
        assert!(!looks_like_tls_record(&[23, 3, 3, 0xff, 0xff]));
        assert!(!looks_like_tls_record(b"PRI * HTTP/2.0"));
        assert!(!looks_like_tls_record(&[22, 3]));
    }

    #[test]
    fn orders_by_time_then_input_and_keeps_role() {
        let mut r = Reassembler::new();
        r.push_open(&SocketEvent {
            meta: meta(1, 0),
            role: Role::Server,
            syscall: "accept4".into(),
        });
        r.push_data(&row(1, 20, Direction::Ingress, b"b", 1, 0));
        r.push_data(&row(1, 10, Direction::Ingress, b"a", 1, 0));
        r.push_data(&row(1, 20, Direction::Ingress, b"c", 1, 0));
        r.push_data(&row(1, 30, Direction::Egress, b"x", 1, 0));
        let ready = r.take_ready();
        assert_eq!(ready.len(), 1);
        let d = &ready[0];
        assert_eq!(d.info.role, Role::Server);
        let bytes: Vec<u8> = d
            .ingress
            .iter()
            .flat_map(|s| match s {
                Segment::Data { bytes, .. } => bytes.clone(),
                _ => vec![],
            })
            .collect();
        assert_eq!(bytes, b"abc");
        assert_eq!(d.egress.len(), 1);
        assert_eq!(d.last_ts, 30);
        assert!(r.take_ready().is_empty());
        assert_eq!(r.evict_idle(31), vec![ConnKey::of(&meta(1, 0))]);
        assert!(r.is_empty());
    }
}
