//! Kernel events → capture rows.
//!
//! [`Converter`] decodes ring-buffer records ([`PtEvent`] + payload) into
//! [`podtrace_format::Record`]s: boot-time → wall clock, addresses, syscall names, and a
//! connection id. The kernel identifies a connection by its `struct sock *`, which the
//! kernel reuses after a socket is freed; the converter therefore gives every connection
//! it sees a sequence number from one counter (at its open, or at its first row when it
//! was already open), forgets it at close, and starts a new one when a connect/accept
//! shows a pointer still known (the close was not seen, e.g. the process exited). The
//! `conn_id` mixes pointer and sequence number, so a reused socket gets a new id, and the
//! state kept is bounded by the connections open at a time. The role learnt at open is
//! reported again on the close row. Payloads are redacted here.
//!
//! Events the kernel emits outside the socket's process (`FLAG_NO_TASK`: the socket
//! tracepoint set sees a server's open at the handshake's last ACK and most closes in
//! softirq) carry no pid, tid or comm: a close takes those of the socket's last data row,
//! and a server's open waits for the socket's first data row (or its close) and takes that
//! row's process, so every row names the process that owns the socket.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use podtrace_format::model::{flags, Direction, Record, Role, SocketData, SocketEvent, SocketMeta};
use podtrace_recorder_ebpf::event::{self as ev, PtEvent};

use crate::clock::to_wall;
use crate::redact::Redactor;
use podtrace_recorder_ebpf::tls::FLAG_TLS_PLAINTEXT as TLS_PLAINTEXT;

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

/// The redaction key of a connection's TLS plaintext stream (its ciphertext keeps
/// `conn_id`).
fn tls_stream(conn_id: u64) -> u64 {
    conn_id ^ 0x7f1a_5e5e_c0de_0001
}

/// Redacts the payload of one data row of connection `conn_id` in place, as the ring
/// consumer does (also `examples/bench_redact`): TLS plaintext and the socket's ciphertext
/// are two byte streams of one connection, followed under different keys; a row after lost
/// bytes (`gap`) restarts its stream; the payload is a prefix of the `ret` bytes the call
/// moved, the rest is missing. Whether any byte was overwritten.
pub fn redact_payload(
    r: &mut Redactor,
    conn_id: u64,
    dir: u8,
    tls: bool,
    gap: bool,
    ret: i64,
    payload: &mut [u8],
) -> bool {
    let key = if tls { tls_stream(conn_id) } else { conn_id };
    if gap {
        r.reset(key, dir);
    }
    let missing = u64::try_from(ret - payload.len() as i64).unwrap_or(0);
    r.redact_cut(key, dir, payload, Some(missing))
}

/// Forgets a closed connection's redaction state: both its streams.
pub fn forget_connection(r: &mut Redactor, conn_id: u64) {
    r.forget(conn_id);
    r.forget(tls_stream(conn_id));
}

/// How long a socket's state is kept without an event: sockets that never close in the
/// recorder's view (UDP, whose sockets have no close event; connections whose close came
/// while their cgroup was not targeted) would otherwise keep theirs for the whole
/// recording. Far beyond the analysis window (120 s), whose connection state the
/// analyzer drops much earlier; a socket used again after this long gets a new
/// connection id.
pub const SOCKET_IDLE_NS: u64 = 10 * 60 * 1_000_000_000;

/// How often (in event time) the states idle for [`SOCKET_IDLE_NS`] are dropped.
const SWEEP_EVERY_NS: u64 = 60 * 1_000_000_000;

/// A live connection: its sequence number and role, the process of its last data row, and
/// an open seen outside any process that waits for that process.
#[derive(Debug, Clone, Copy)]
struct SockState {
    seq: u64,
    /// The boot-time timestamp of the socket's last event.
    last_ns: u64,
    role: Option<Role>,
    task: Option<Task>,
    pending_open: Option<PtEvent>,
    check: StreamCheck,
}

/// The check of a connection's bytes read and written against the kernel's count: the
/// socket tracepoint set's open and close events carry the read position of the stream
/// ([`PtEvent::read_position`]), and the close the bytes written since the open
/// ([`PtEvent::bytes_written`]); they must be the sums of the connection's ingress and
/// egress rows. Connections with a row after a drop (`FLAG_GAP`: those bytes are counted as
/// dropped already) or opened before the recording are not checked; nor is a close whose
/// ports are not its open's (a later socket at the address of one whose close was not seen:
/// its cgroup was no longer targeted then).
#[derive(Debug, Clone, Copy, Default)]
struct StreamCheck {
    /// The read position at the open, when the open was seen with it.
    base: Option<u32>,
    /// The open's (local, remote) ports.
    ports: (u16, u16),
    /// Bytes of the ingress rows (TLS plaintext excluded: a stream of its own).
    read: u64,
    /// Bytes of the egress rows (TLS plaintext excluded).
    written: u64,
    /// A row of the connection followed a drop.
    gap: bool,
}

/// What the kernel counted beyond the rows' `rows` bytes on the socket `sock` (logged at
/// debug level with `verb`: what the application did): `kernel` is a 32-bit count
/// (mod 2^32), so the rows are compared modulo 2^32 too, and rows beyond the kernel's count
/// (which no loss explains: the difference wraps past 2^31) count nothing.
fn uncaptured(sock: u64, verb: &str, kernel: u32, rows: u64) -> u64 {
    let missed = kernel.wrapping_sub(rows as u32);
    if missed == 0 || missed >= 1 << 31 {
        return 0;
    }
    tracing::debug!(
        "connection {sock:#x}: the application {verb} {kernel} bytes, the rows carry {rows}"
    );
    u64::from(missed)
}

/// pid, tid and comm of an event.
#[derive(Debug, Clone, Copy)]
struct Task {
    pid: u32,
    tid: u32,
    comm: [u8; 16],
}

impl Task {
    fn of(e: &PtEvent) -> Task {
        Task {
            pid: e.pid,
            tid: e.tid,
            comm: e.comm,
        }
    }

    fn apply(self, e: &mut PtEvent) {
        e.pid = self.pid;
        e.tid = self.tid;
        e.comm = self.comm;
    }
}

/// Hasher for the `struct sock *` keys: one multiply (the keys are kernel pointers, not
/// attacker-chosen; SipHash cost more than the rest of a small event's lookup).
#[derive(Default)]
struct PtrHasher(u64);

impl Hasher for PtrHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn write_u64(&mut self, v: u64) {
        // Fibonacci hashing; the high bits carry the entropy of the low pointer bits
        self.0 = (v ^ (v >> 32)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// Most process names [`Names`] keeps (cleared when full).
const NAMES_MAX: usize = 4096;

/// The shared strings of the names rows repeat (process and syscall names): a row takes a
/// reference, not a copy of its own.
#[derive(Debug, Default)]
struct Names {
    comms: HashMap<[u8; 16], Arc<str>>,
    /// The last process name looked up: consecutive events are mostly one process's.
    last_comm: Option<([u8; 16], Arc<str>)>,
    /// By number: syscalls and podtrace's own numbers (kprobe calls 1000+, TLS calls 2000+)
    /// are all below [`SYSCALL_SLOTS`]; a larger one gets a string of its own.
    syscalls: Vec<Option<Arc<str>>>,
}

/// Syscall numbers [`Names`] keeps a slot for.
const SYSCALL_SLOTS: usize = 4096;

impl Names {
    fn comm(&mut self, raw: &[u8; 16]) -> Arc<str> {
        if let Some((k, v)) = &self.last_comm {
            if k == raw {
                return v.clone();
            }
        }
        if self.comms.len() >= NAMES_MAX {
            self.comms.clear();
        }
        let v = self
            .comms
            .entry(*raw)
            .or_insert_with(|| {
                let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
                Arc::from(String::from_utf8_lossy(&raw[..end]))
            })
            .clone();
        self.last_comm = Some((*raw, v.clone()));
        v
    }

    fn syscall(&mut self, nr: u32) -> Arc<str> {
        let Some(slot) = self.syscalls.get_mut(nr as usize) else {
            if (nr as usize) < SYSCALL_SLOTS {
                self.syscalls.resize(SYSCALL_SLOTS, None);
                return self.syscall(nr);
            }
            return Arc::from(ev::syscall_name(nr));
        };
        slot.get_or_insert_with(|| Arc::from(ev::syscall_name(nr)))
            .clone()
    }
}

/// Counters of the conversion itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConvertCounters {
    /// Records decoded.
    pub decoded: u64,
    /// Records that could not be decoded (malformed).
    pub malformed: u64,
    /// Data rows with at least one redacted header.
    pub redacted: u64,
    /// TCP connections recorded from their open to their close whose bytes read were
    /// checked against the kernel's stream position at the close.
    pub connections_checked: u64,
    /// Of those, the connections whose bytes written were checked too (the kernel side
    /// noted their open).
    pub connections_write_checked: u64,
    /// Bytes those connections' applications read (by the kernel's count) that no event
    /// carried: a read the probes did not see.
    pub bytes_read_uncaptured: u64,
    /// Bytes those connections' applications wrote (by the kernel's count) that no event
    /// carried: a write the probes did not see.
    pub bytes_written_uncaptured: u64,
    /// Socket states dropped after [`SOCKET_IDLE_NS`] without an event.
    pub sockets_expired: u64,
}

/// Stateful event → row converter (one per recording).
#[derive(Debug)]
pub struct Converter {
    offset_ns: i64,
    socks: HashMap<u64, SockState, BuildHasherDefault<PtrHasher>>,
    next_seq: u64,
    redactor: Option<Redactor>,
    names: Names,
    /// When (event time) the idle socket states were last dropped.
    last_sweep_ns: u64,
    /// Conversion counters.
    pub counters: ConvertCounters,
}

/// The connection id of the socket `sock`'s `seq`-th state (a pointer reused by a later
/// socket gets a new state, hence a new id).
fn conn_id(sock: u64, seq: u64) -> u64 {
    mix(sock ^ seq.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

/// splitmix64 finaliser: a bijective mix so different (pointer, generation) pairs give
/// well-spread ids.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn addr(family: u16, raw: &[u8; 16], port: u16) -> Option<SocketAddr> {
    let ip = match family {
        AF_INET => IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3])),
        AF_INET6 => {
            let v6 = Ipv6Addr::from(*raw);
            match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(v6),
            }
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

impl Converter {
    /// A converter with a boot-time → wall-clock offset and optional redaction.
    pub fn new(offset_ns: i64, redactor: Option<Redactor>) -> Self {
        Converter {
            offset_ns,
            socks: HashMap::default(),
            next_seq: 1,
            redactor,
            names: Names::default(),
            last_sweep_ns: 0,
            counters: ConvertCounters::default(),
        }
    }

    /// Sockets with state (live connections, and sockets seen in the last
    /// [`SOCKET_IDLE_NS`] without a close).
    pub fn sockets(&self) -> usize {
        self.socks.len()
    }

    /// Drops the states of sockets without an event since `now_ns - SOCKET_IDLE_NS`, and
    /// their redaction state. An open still waiting for its process is emitted as it is
    /// (as a close would).
    fn sweep(&mut self, now_ns: u64, out: &mut Vec<Record>) {
        self.last_sweep_ns = now_ns;
        let horizon = now_ns.saturating_sub(SOCKET_IDLE_NS);
        let (redactor, counters) = (&mut self.redactor, &mut self.counters);
        let mut opens = Vec::new();
        self.socks.retain(|&sock, st| {
            if st.last_ns >= horizon {
                return true;
            }
            counters.sockets_expired += 1;
            let conn_id = conn_id(sock, st.seq);
            if let Some(r) = redactor.as_mut() {
                forget_connection(r, conn_id);
            }
            if let Some(open) = st.pending_open {
                opens.push((open, conn_id));
            }
            false
        });
        for (open, conn_id) in opens {
            out.push(Record::SocketOpen(SocketEvent {
                meta: self.meta(&open, conn_id),
                role: role_of(open.role),
                syscall: self.names.syscall(open.syscall),
            }));
        }
    }

    /// The HTTP/2 redaction counters (zero without redaction).
    pub fn redaction_counters(&self) -> crate::redact::Counters {
        self.redactor
            .as_ref()
            .map(Redactor::counters)
            .unwrap_or_default()
    }

    /// Decodes one ring-buffer record and appends its rows (usually one) to `out`.
    pub fn convert(&mut self, record: &[u8], out: &mut Vec<Record>) {
        let (mut e, payload) = match PtEvent::parse(record) {
            Ok(x) => x,
            Err(err) => {
                self.counters.malformed += 1;
                tracing::debug!("malformed event: {err}");
                return;
            }
        };
        self.counters.decoded += 1;
        if e.ts_ns >= self.last_sweep_ns.saturating_add(SWEEP_EVERY_NS) {
            self.sweep(e.ts_ns, out);
        }
        if e.kind == ev::KIND_OPEN {
            // a pointer still known at a new open was reused without a close seen
            self.socks.remove(&e.sock);
        }
        let next_seq = &mut self.next_seq;
        let state = self.socks.entry(e.sock).or_insert_with(|| {
            let seq = *next_seq;
            *next_seq += 1;
            SockState {
                seq,
                last_ns: 0,
                role: None,
                task: None,
                pending_open: None,
                check: StreamCheck::default(),
            }
        });
        state.last_ns = state.last_ns.max(e.ts_ns);
        let conn_id = conn_id(e.sock, state.seq);
        if e.kind == ev::KIND_OPEN {
            state.role = Some(role_of(e.role));
            if let Some(read) = e.read_position() {
                state.check.base = Some(read);
                state.check.ports = (e.lport, e.rport);
            }
        } else if e.kind == ev::KIND_DATA {
            if e.flags & ev::FLAG_GAP != 0 {
                state.check.gap = true;
            }
            if e.flags & TLS_PLAINTEXT == 0 {
                let n = u64::try_from(e.ret).unwrap_or(0);
                if e.direction == ev::DIR_INGRESS {
                    state.check.read += n;
                } else {
                    state.check.written += n;
                }
            }
        }
        if e.flags & ev::FLAG_NO_TASK == 0 {
            state.task = Some(Task::of(&e));
        } else if let Some(task) = state.task {
            task.apply(&mut e);
        } else if e.kind == ev::KIND_OPEN {
            // an open seen outside the process (a server's handshake): wait for the process
            state.pending_open = Some(e);
            return;
        }
        let pending = state.pending_open.take();
        let close_role = state.role.unwrap_or(Role::Unknown);
        if e.kind == ev::KIND_CLOSE {
            if let (Some(base), false, Some(read)) = (
                state.check.base,
                state.check.gap
                    || e.flags & ev::FLAG_GAP != 0
                    || state.check.ports != (e.lport, e.rport),
                e.read_position(),
            ) {
                let c = &mut self.counters;
                c.connections_checked += 1;
                c.bytes_read_uncaptured +=
                    uncaptured(e.sock, "read", read.wrapping_sub(base), state.check.read);
                if let Some(kernel) = e.bytes_written() {
                    c.connections_write_checked += 1;
                    c.bytes_written_uncaptured +=
                        uncaptured(e.sock, "wrote", kernel, state.check.written);
                }
            }
            self.socks.remove(&e.sock);
        }
        if let Some(mut open) = pending {
            if e.flags & ev::FLAG_NO_TASK == 0 {
                Task::of(&e).apply(&mut open);
            }
            out.push(Record::SocketOpen(SocketEvent {
                meta: self.meta(&open, conn_id),
                role: role_of(open.role),
                syscall: self.names.syscall(open.syscall),
            }));
        }
        let meta = self.meta(&e, conn_id);
        let syscall = self.names.syscall(e.syscall);
        match e.kind {
            ev::KIND_DATA => {
                let direction = if e.direction == ev::DIR_INGRESS {
                    Direction::Ingress
                } else {
                    Direction::Egress
                };
                let mut data = payload.to_vec();
                let mut fl = 0;
                if e.flags & ev::FLAG_TRUNCATED != 0 || (data.len() as i64) < e.ret {
                    fl |= flags::TRUNCATED;
                }
                if e.flags & ev::FLAG_GAP != 0 {
                    fl |= flags::GAP_BEFORE;
                }
                let tls = e.flags & TLS_PLAINTEXT != 0;
                if tls {
                    fl |= flags::TLS_PLAINTEXT;
                }
                if let Some(r) = self.redactor.as_mut() {
                    let gap = e.flags & ev::FLAG_GAP != 0;
                    if redact_payload(r, conn_id, e.direction, tls, gap, e.ret, &mut data) {
                        fl |= flags::REDACTED;
                        self.counters.redacted += 1;
                    }
                }
                out.push(Record::SocketData(SocketData {
                    meta,
                    direction,
                    syscall,
                    ret: e.ret,
                    payload: data,
                    flags: fl,
                }));
            }
            ev::KIND_OPEN => out.push(Record::SocketOpen(SocketEvent {
                meta,
                role: role_of(e.role),
                syscall,
            })),
            ev::KIND_CLOSE => {
                if let Some(r) = self.redactor.as_mut() {
                    forget_connection(r, conn_id);
                }
                out.push(Record::SocketClose(SocketEvent {
                    meta,
                    role: close_role,
                    syscall,
                }));
            }
            _ => self.counters.malformed += 1,
        }
    }

    /// The row metadata of an event.
    fn meta(&mut self, e: &PtEvent, conn_id: u64) -> SocketMeta {
        SocketMeta {
            ts_ns: to_wall(e.ts_ns, self.offset_ns),
            cpu: e.cpu,
            pid: e.pid,
            tid: e.tid,
            comm: self.names.comm(&e.comm),
            cgroup_id: e.cgroup_id,
            conn_id,
            local: addr(e.family, &e.laddr, e.lport),
            remote: addr(e.family, &e.raddr, e.rport),
        }
    }
}

/// The row role of an event's `ROLE_*`.
fn role_of(role: u8) -> Role {
    match role {
        ev::ROLE_CLIENT => Role::Client,
        ev::ROLE_SERVER => Role::Server,
        _ => Role::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(e: PtEvent, payload: &[u8]) -> Vec<u8> {
        e.to_record(payload)
    }

    fn base(kind: u32) -> PtEvent {
        let mut e = PtEvent {
            kind,
            sock: 0xffff_8880_1234_5678,
            family: AF_INET,
            lport: 8080,
            rport: 40000,
            ts_ns: 1_000,
            pid: 10,
            tid: 11,
            syscall: 44,
            ..Default::default()
        };
        e.laddr[..4].copy_from_slice(&[127, 0, 0, 1]);
        e.raddr[..4].copy_from_slice(&[127, 0, 0, 2]);
        e.comm[..4].copy_from_slice(b"curl");
        e
    }

    /// One connection through a converter: an open whose `ret` is `open_ret`, data rows
    /// of (direction, bytes, flags), a close whose `ret` is `close_ret` flagged
    /// `close_flags`; returns [`checks`].
    fn connection(
        open_ret: i64,
        rows: &[(u8, i64, u32)],
        close_ret: i64,
        close_flags: u32,
    ) -> [u64; 3] {
        let mut c = Converter::new(0, None);
        let mut out = Vec::new();
        let mut open = base(ev::KIND_OPEN);
        open.role = ev::ROLE_CLIENT;
        open.flags = ev::FLAG_SEQ;
        open.ret = open_ret;
        c.convert(&record(open, b""), &mut out);
        for &(direction, ret, flags) in rows {
            let mut d = base(ev::KIND_DATA);
            d.direction = direction;
            d.ret = ret;
            d.flags = flags;
            c.convert(&record(d, b""), &mut out);
        }
        let mut close = base(ev::KIND_CLOSE);
        close.flags = ev::FLAG_NO_TASK | close_flags;
        close.ret = close_ret;
        c.convert(&record(close, b""), &mut out);
        checks(&c)
    }

    /// The first of `sizes` flagged `first_flags`, the others not, in `direction`.
    fn rows(direction: u8, sizes: &[i64], first_flags: u32) -> Vec<(u8, i64, u32)> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| (direction, n, if i == 0 { first_flags } else { 0 }))
            .collect()
    }

    /// The read check over one connection: an open at `open_seq`, ingress rows of `reads`
    /// bytes (the first flagged `first_flags`), 999 bytes written (not part of the read
    /// check), a close at `close_seq` flagged `close_flags`; returns (connections checked,
    /// bytes read uncaptured).
    fn read_check(
        open_seq: u32,
        reads: &[i64],
        first_flags: u32,
        close_seq: u32,
        close_flags: u32,
    ) -> (u64, u64) {
        let mut data = rows(ev::DIR_INGRESS, reads, first_flags);
        data.push((ev::DIR_EGRESS, 999, 0));
        let [checked, read, _] = connection(
            i64::from(open_seq),
            &data,
            i64::from(close_seq),
            close_flags,
        );
        (checked, read)
    }

    #[test]
    fn bytes_read_are_checked_against_the_kernels_position_at_close() {
        let seq = ev::FLAG_SEQ;
        // every byte in rows, across the 2^32 wrap of the sequence space
        assert_eq!(read_check(u32::MAX - 9, &[10, 20], 0, 20, seq), (1, 0));
        // 5 bytes read without an event
        assert_eq!(read_check(100, &[10, 20], 0, 135, seq), (1, 5));
        // TLS plaintext is a stream of its own: its bytes do not count
        assert_eq!(read_check(100, &[10, 20], TLS_PLAINTEXT, 130, seq), (1, 10));
        // a drop already counted (a row flagged GAP, or the close): not checked
        assert_eq!(read_check(100, &[10], ev::FLAG_GAP, 200, seq), (0, 0));
        assert_eq!(read_check(100, &[10], 0, 200, seq | ev::FLAG_GAP), (0, 0));
        // a close without positions (another probe set): not checked
        assert_eq!(read_check(100, &[10], 0, 200, 0), (0, 0));
    }

    /// The write check over one connection: an open, egress rows of `writes` bytes (the
    /// first flagged `first_flags`), 7 bytes read, a close whose `ret` carries `written`
    /// above the read position, flagged `close_flags`; returns (connections checked, bytes
    /// read uncaptured, bytes written uncaptured).
    fn write_check(writes: &[i64], first_flags: u32, written: u32, close_flags: u32) -> [u64; 3] {
        let mut data = vec![(ev::DIR_INGRESS, 7, 0)];
        data.extend(rows(ev::DIR_EGRESS, writes, first_flags));
        // the read position wrapped past 2^32: 7 bytes after u32::MAX - 2
        let close = ((u64::from(written) << 32) | 4) as i64;
        connection(i64::from(u32::MAX - 2), &data, close, close_flags)
    }

    /// (connections checked, bytes read uncaptured, bytes written uncaptured), once the
    /// write checks are seen to be those connections with a write count
    fn checks(c: &Converter) -> [u64; 3] {
        let k = c.counters;
        assert!(
            k.connections_write_checked <= k.connections_checked,
            "{k:?}"
        );
        [
            k.connections_checked,
            k.bytes_read_uncaptured,
            k.bytes_written_uncaptured,
        ]
    }

    #[test]
    fn bytes_written_are_checked_against_the_kernels_count_at_close() {
        let both = ev::FLAG_SEQ | ev::FLAG_WSEQ;
        // every byte in rows; the read position in the low half is unaffected
        assert_eq!(write_check(&[100, 23], 0, 123, both), [1, 0, 0]);
        // 40 bytes written without an event
        assert_eq!(write_check(&[100, 23], 0, 163, both), [1, 0, 40]);
        // TLS plaintext is a stream of its own
        assert_eq!(
            write_check(&[100, 23], TLS_PLAINTEXT, 123, both),
            [1, 0, 100]
        );
        // rows beyond the kernel's count: nothing uncaptured
        assert_eq!(write_check(&[100, 23], 0, 120, both), [1, 0, 0]);
        // no write count (the open was not seen by the kernel side): reads checked only
        assert_eq!(write_check(&[100], 0, 999, ev::FLAG_SEQ), [1, 0, 0]);
        // a drop already counted: nothing checked
        assert_eq!(write_check(&[100], ev::FLAG_GAP, 999, both), [0, 0, 0]);
        // counts compare modulo 2^32: 5 GiB of rows against the kernel's 32-bit count
        let gib = 1i64 << 30;
        assert_eq!(write_check(&[4 * gib, gib], 0, 1 << 30, both), [1, 0, 0]);
        assert_eq!(
            write_check(&[4 * gib, gib], 0, (1 << 30) + 9, both),
            [1, 0, 9]
        );
    }

    #[test]
    fn the_redactors_directions_are_the_events() {
        assert_eq!(crate::redact::DIRECTIONS, [ev::DIR_EGRESS, ev::DIR_INGRESS]);
    }

    /// Sockets without a close (UDP) do not keep their state for the whole recording:
    /// after [`SOCKET_IDLE_NS`] without an event it goes, with its redaction state; a
    /// socket with an event within that time keeps its connection id.
    #[test]
    fn idle_socket_states_expire() {
        let mut c = Converter::new(0, Some(Redactor::new::<&str>(&[])));
        let mut out = Vec::new();
        let minute = 60 * 1_000_000_000u64;
        let data = |sock: u64, ts_ns: u64| {
            let mut d = base(ev::KIND_DATA);
            d.sock = sock;
            d.ts_ns = ts_ns;
            d.ret = 4;
            d.cap_len = 4;
            record(d, b"GET ")
        };
        let conn = |out: &[Record]| match out.last() {
            Some(Record::SocketData(d)) => d.meta.conn_id,
            r => panic!("{r:?}"),
        };
        let t0 = 1_000 * minute;
        c.convert(&data(0xa, t0), &mut out);
        let a = conn(&out);
        c.convert(&data(0xb, t0), &mut out);
        assert_eq!(c.redactor.as_ref().map(Redactor::streams), Some(2));
        // b stays busy: an event every 5 minutes
        for m in [5, 10, 15] {
            c.convert(&data(0xb, t0 + m * minute), &mut out);
        }
        assert_eq!((c.sockets(), c.counters.sockets_expired), (1, 1));
        assert_eq!(c.redactor.as_ref().map(Redactor::streams), Some(1));
        // a's next event starts a new connection id; b keeps its own
        c.convert(&data(0xa, t0 + 16 * minute), &mut out);
        assert_ne!(conn(&out), a);
        c.convert(&data(0xb, t0 + 16 * minute), &mut out);
        let b = conn(&out);
        c.convert(&data(0xb, t0 + 17 * minute), &mut out);
        assert_eq!(conn(&out), b);
        assert_eq!(c.sockets(), 2);
        // an open still waiting for its process (a server's handshake, no data since)
        // is emitted when its state goes
        let mut open = base(ev::KIND_OPEN);
        open.sock = 0xc;
        open.ts_ns = t0 + 17 * minute;
        open.role = ev::ROLE_SERVER;
        open.flags = ev::FLAG_NO_TASK;
        let before = out.len();
        c.convert(&record(open, b""), &mut out);
        assert_eq!(out.len(), before, "the open waits for its process");
        c.convert(&data(0xb, t0 + 30 * minute), &mut out);
        assert!(
            matches!(&out[before], Record::SocketOpen(o) if o.role == Role::Server),
            "{:?}",
            &out[before..]
        );
        assert_eq!(c.sockets(), 1);
    }

    /// A socket at the address of one whose close was not seen (its cgroup stopped being
    /// targeted), opened unseen and closed seen: its close has other ports than the stale
    /// open's, and is not checked against it.
    #[test]
    fn a_close_with_other_ports_than_the_open_is_not_checked() {
        let mut open = base(ev::KIND_OPEN);
        open.flags = ev::FLAG_SEQ;
        open.ret = 100;
        let mut close = base(ev::KIND_CLOSE);
        close.flags = ev::FLAG_NO_TASK | ev::FLAG_SEQ | ev::FLAG_WSEQ;
        close.lport += 1;
        close.ret = ((50u64 << 32) | 5_000) as i64;
        assert_eq!(checks_after(open, close), [0, 0, 0]);
    }

    #[test]
    fn a_connection_opened_before_the_recording_is_not_checked() {
        let mut d = base(ev::KIND_DATA);
        d.direction = ev::DIR_INGRESS;
        d.ret = 10;
        let mut close = base(ev::KIND_CLOSE);
        close.flags = ev::FLAG_NO_TASK | ev::FLAG_SEQ;
        close.ret = 5_000;
        assert_eq!(checks_after(d, close), [0, 0, 0]);
    }

    /// The check counters after `first` (no payload), then `close`, on a new converter.
    fn checks_after(first: PtEvent, close: PtEvent) -> [u64; 3] {
        let mut c = Converter::new(0, None);
        let mut out = Vec::new();
        c.convert(&record(first, b""), &mut out);
        c.convert(&record(close, b""), &mut out);
        checks(&c)
    }

    #[test]
    fn data_row_fields_and_redaction() {
        let mut c = Converter::new(5_000, Some(Redactor::new::<&str>(&[])));
        let p = b"GET / HTTP/1.1\r\nAuthorization: x\r\n\r\n";
        let mut e = base(ev::KIND_DATA);
        e.ret = p.len() as i64 + 10;
        e.cap_len = p.len() as u32;
        e.flags = ev::FLAG_TRUNCATED;
        let mut out = Vec::new();
        c.convert(&record(e, p), &mut out);
        let Record::SocketData(d) = &out[0] else {
            panic!("not data: {out:?}")
        };
        assert_eq!(d.meta.ts_ns, 6_000);
        assert_eq!(d.meta.local, Some("127.0.0.1:8080".parse().expect("addr")));
        assert_eq!(
            d.meta.remote,
            Some("127.0.0.2:40000".parse().expect("addr"))
        );
        assert_eq!(&*d.meta.comm, "curl");
        assert_eq!(&*d.syscall, "sendto");
        assert_eq!(d.flags, flags::TRUNCATED | flags::REDACTED);
        assert!(d.payload.ends_with(b"Authorization: *\r\n\r\n"));
    }

    #[test]
    fn tls_plaintext_rows_are_flagged_named_and_redacted_apart_from_ciphertext() {
        let mut c = Converter::new(0, Some(Redactor::new::<&str>(&[])));
        let mut out = Vec::new();
        // ciphertext that happens to end mid-way through a header line ...
        let mut cipher = base(ev::KIND_DATA);
        cipher.syscall = 44;
        let junk = b"\x17\x03\x03\x00\x20Cookie";
        cipher.ret = junk.len() as i64;
        cipher.cap_len = junk.len() as u32;
        c.convert(&record(cipher, junk), &mut out);
        // ... does not disturb the plaintext stream of the same connection
        let p = b"GET / HTTP/1.1\r\nCookie: secret\r\nHost: a\r\n\r\n";
        let mut plain = base(ev::KIND_DATA);
        plain.syscall = podtrace_recorder_ebpf::tls::NR_SSL_WRITE;
        plain.flags = TLS_PLAINTEXT;
        plain.ret = p.len() as i64;
        plain.cap_len = p.len() as u32;
        c.convert(&record(plain, p), &mut out);
        let (Record::SocketData(a), Record::SocketData(b)) = (&out[0], &out[1]) else {
            panic!("not data: {out:?}")
        };
        assert_eq!(a.meta.conn_id, b.meta.conn_id);
        assert_eq!(a.flags & flags::TLS_PLAINTEXT, 0);
        assert_eq!(b.flags, flags::TLS_PLAINTEXT | flags::REDACTED);
        assert_eq!(&*b.syscall, "SSL_write");
        let text = String::from_utf8_lossy(&b.payload);
        assert!(!text.contains("secret"), "{text}");
        assert!(text.starts_with("GET / HTTP/1.1\r\nCookie: *"), "{text}");
        assert!(text.ends_with("\r\nHost: a\r\n\r\n"), "{text}");
    }

    /// An event of the socket tracepoint set emitted in softirq: no task fields.
    fn no_task(kind: u32) -> PtEvent {
        let mut e = base(kind);
        e.flags = ev::FLAG_NO_TASK;
        e.pid = 0;
        e.tid = 0;
        e.comm = [0; 16];
        e
    }

    #[test]
    fn opens_and_closes_outside_the_process_take_the_sockets_process() {
        let mut c = Converter::new(0, None);
        let mut out = Vec::new();
        // a server's open at the handshake's last ACK waits for the socket's first data row
        let mut open = no_task(ev::KIND_OPEN);
        open.role = ev::ROLE_SERVER;
        open.syscall = 43;
        open.ts_ns = 500;
        c.convert(&record(open, b""), &mut out);
        assert!(out.is_empty(), "{out:?}");
        let mut data = base(ev::KIND_DATA);
        data.ret = 3;
        data.cap_len = 3;
        c.convert(&record(data, b"GET"), &mut out);
        let [Record::SocketOpen(o), Record::SocketData(d)] = &out[..] else {
            panic!("open then data: {out:?}")
        };
        assert_eq!((o.meta.pid, o.meta.tid, &*o.meta.comm), (10, 11, "curl"));
        assert_eq!(o.meta.ts_ns, 500, "the open keeps its own time");
        assert_eq!(o.role, Role::Server);
        assert_eq!(&*o.syscall, "accept");
        assert_eq!(o.meta.conn_id, d.meta.conn_id);
        let conn = d.meta.conn_id;
        // the close (softirq) takes the process of the socket's last data row
        c.convert(&record(no_task(ev::KIND_CLOSE), b""), &mut out);
        let Record::SocketClose(cl) = &out[2] else {
            panic!("close: {out:?}")
        };
        assert_eq!((cl.meta.pid, &*cl.meta.comm), (10, "curl"));
        assert_eq!((cl.role, cl.meta.conn_id), (Role::Server, conn));

        // a socket closed before any data: its open and close come out together, processless
        let mut out = Vec::new();
        let mut other = no_task(ev::KIND_OPEN);
        other.sock ^= 0x100;
        other.role = ev::ROLE_SERVER;
        c.convert(&record(other, b""), &mut out);
        let mut close = no_task(ev::KIND_CLOSE);
        close.sock = other.sock;
        c.convert(&record(close, b""), &mut out);
        let [Record::SocketOpen(o), Record::SocketClose(cl)] = &out[..] else {
            panic!("open then close: {out:?}")
        };
        assert_eq!((o.meta.pid, cl.meta.pid), (0, 0));
        assert_eq!(o.meta.conn_id, cl.meta.conn_id);
        assert_eq!(cl.role, Role::Server);
    }

    #[test]
    fn socket_reuse_gets_new_conn_id_and_close_keeps_role() {
        let mut c = Converter::new(0, None);
        let mut out = Vec::new();
        let mut open = base(ev::KIND_OPEN);
        open.role = ev::ROLE_CLIENT;
        c.convert(&record(open, b""), &mut out);
        c.convert(&record(base(ev::KIND_CLOSE), b""), &mut out);
        c.convert(&record(open, b""), &mut out);
        // reuse without a close seen: a new open bumps the generation too
        c.convert(&record(open, b""), &mut out);
        let ids: Vec<u64> = out
            .iter()
            .map(|r| match r {
                Record::SocketOpen(e) | Record::SocketClose(e) => e.meta.conn_id,
                _ => 0,
            })
            .collect();
        assert_eq!(ids[0], ids[1]);
        assert_ne!(ids[1], ids[2]);
        assert_ne!(ids[2], ids[3]);
        let Record::SocketClose(cl) = &out[1] else {
            panic!()
        };
        assert_eq!(cl.role, Role::Client);
    }

    #[test]
    fn v4_mapped_v6_is_shown_as_v4_and_garbage_is_counted() {
        let mut c = Converter::new(0, None);
        let mut e = base(ev::KIND_DATA);
        e.family = AF_INET6;
        e.laddr = Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped().octets();
        let mut out = Vec::new();
        c.convert(&record(e, b""), &mut out);
        let Record::SocketData(d) = &out[0] else {
            panic!()
        };
        assert_eq!(d.meta.local, Some("10.0.0.1:8080".parse().expect("addr")));
        c.convert(&[1, 2, 3], &mut out);
        assert_eq!(c.counters.malformed, 1);
    }
}
