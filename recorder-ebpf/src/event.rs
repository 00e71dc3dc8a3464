//! Rust mirror of `bpf/event.h`: the header of every ring-buffer record.
//!
//! A record is one [`PtEvent`] followed by `cap_len` payload bytes (data events only).
//! [`PtEvent::parse`] splits a record safely (no pointer casts on untrusted lengths).

/// Largest payload copied per event (`PT_MAX_SNAPLEN`).
pub const MAX_SNAPLEN: u32 = 16384;

/// `kind`: bytes moved by a read/write-family syscall.
pub const KIND_DATA: u32 = 1;
/// `kind`: connect() (client) or accept() (server) returned a socket.
pub const KIND_OPEN: u32 = 2;
/// `kind`: close() of a socket fd.
pub const KIND_CLOSE: u32 = 3;

/// `direction`: sent by the process.
pub const DIR_EGRESS: u8 = 0;
/// `direction`: received by the process.
pub const DIR_INGRESS: u8 = 1;

/// `role`: not known.
pub const ROLE_UNKNOWN: u8 = 0;
/// `role`: connect().
pub const ROLE_CLIENT: u8 = 1;
/// `role`: accept().
pub const ROLE_SERVER: u8 = 2;

/// `flags`: the payload was cut at the snaplen.
pub const FLAG_TRUNCATED: u32 = 1;
/// `flags`: copying the user buffer failed; the payload is incomplete.
pub const FLAG_READ_ERROR: u32 = 2;
/// `flags`: an earlier data event of this socket and direction was dropped.
pub const FLAG_GAP: u32 = 4;
/// `flags`, with [`FLAG_TRUNCATED`]: the payload was cut at the snaplen.
pub const FLAG_CUT_SNAPLEN: u32 = 8;
/// `flags`, with [`FLAG_TRUNCATED`]: the bytes were not in user memory (sendfile).
pub const FLAG_CUT_NOT_USER: u32 = 16;
/// `flags`, with [`FLAG_TRUNCATED`]: more iovecs or messages than [`MAX_IOV`].
pub const FLAG_CUT_IOV_LIMIT: u32 = 32;
/// `flags`, with [`FLAG_TRUNCATED`]: the byte count exceeds the buffers passed (MSG_TRUNC).
pub const FLAG_CUT_BEYOND: u32 = 64;
/// `flags`: emitted outside the socket's process (softirq, timer: the socket tracepoint
/// set's server opens and most closes); `pid`, `tid` and `comm` are 0, `cgroup_id` is the
/// socket's cgroup.
pub const FLAG_NO_TASK: u32 = 256;
/// Flag: an open or close of a TCP socket whose `ret` carries the kernel's read position
/// of the stream (see [`PtEvent::read_position`]).
pub const FLAG_SEQ: u32 = 512;
/// Flag: a close with [`FLAG_SEQ`] whose `ret` also carries the bytes the application
/// wrote to the connection since its open (see [`PtEvent::bytes_written`]).
pub const FLAG_WSEQ: u32 = 1024;

/// Most iovecs per call, and messages per sendmmsg/recvmmsg call, copied (`PT_MAX_IOV`):
/// the kernel's own `UIO_MAXIOV`, so no successful call is cut by it.
pub const MAX_IOV: u32 = 1024;

/// Counter index: records written to the ring buffer.
pub const CTR_EVENTS: u32 = 0;
/// Counter index: records lost because the ring buffer was full.
pub const CTR_RINGBUF_FULL: u32 = 1;
/// Counter index: data events whose payload is shorter than the call's byte count (any
/// reason; the `CTR_TRUNC_*` counters split it by reason and add up to it).
pub const CTR_TRUNCATED: u32 = 2;
/// Counter index: failed copies of user memory.
pub const CTR_READ_ERRORS: u32 = 3;
/// Counter index: payload bytes written to the ring buffer.
pub const CTR_BYTES_CAPTURED: u32 = 4;
/// Counter index: syscall bytes of data events lost to a full ring buffer.
pub const CTR_BYTES_DROPPED: u32 = 5;
/// Counter index: syscalls missed because no per-thread slot for the arguments could be had.
pub const CTR_ARGS_FULL: u32 = 6;
/// Counter index: targeted socket-candidate syscalls seen at entry.
pub const CTR_SYSCALLS: u32 = 7;
/// Counter index: events lost because the CPU's scratch slot was in use (preemption).
pub const CTR_SCRATCH_BUSY: u32 = 8;
/// Counter index: truncated data events cut at the snaplen.
pub const CTR_TRUNC_SNAPLEN: u32 = 9;
/// Counter index: truncated data events cut by a failed copy of user memory.
pub const CTR_TRUNC_READ_ERROR: u32 = 10;
/// Counter index: truncated data events whose bytes were not in user memory (sendfile).
pub const CTR_TRUNC_NOT_USER: u32 = 11;
/// Counter index: truncated data events with more iovecs/messages than [`MAX_IOV`].
pub const CTR_TRUNC_IOV_LIMIT: u32 = 12;
/// Counter index: truncated data events whose byte count exceeds the buffers (MSG_TRUNC).
pub const CTR_TRUNC_BEYOND: u32 = 13;
/// Number of counters.
pub const CTR_MAX: u32 = 14;

/// Name of each counter as written in `stats` rows, by index.
pub const COUNTER_NAMES: [&str; CTR_MAX as usize] = [
    "events_seen",
    "events_dropped_ringbuf_full",
    "payload_truncated",
    "read_errors",
    "bytes_captured",
    "bytes_dropped",
    "syscalls_missed_args_full",
    "syscalls_targeted",
    "events_dropped_scratch_busy",
    "payload_truncated_snaplen",
    "payload_truncated_read_error",
    "payload_truncated_not_user_memory",
    "payload_truncated_iov_limit",
    "payload_truncated_beyond_buffers",
];

/// `struct pt_event` of `bpf/event.h`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PtEvent {
    /// `bpf_ktime_get_boot_ns()` at the syscall's exit (CLOCK_BOOTTIME).
    pub ts_ns: u64,
    /// cgroup v2 id of the process.
    pub cgroup_id: u64,
    /// Kernel `struct sock *` value: the connection key.
    pub sock: u64,
    /// Process id (tgid).
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// `KIND_*`.
    pub kind: u32,
    /// x86_64 syscall number.
    pub syscall: u32,
    /// Syscall return value.
    pub ret: i64,
    /// Payload bytes after the header.
    pub cap_len: u32,
    /// `FLAG_*`.
    pub flags: u32,
    /// File descriptor.
    pub fd: u32,
    /// `AF_INET` (2) or `AF_INET6` (10).
    pub family: u16,
    /// Local port, host order.
    pub lport: u16,
    /// Remote port, host order.
    pub rport: u16,
    /// `ROLE_*`.
    pub role: u8,
    /// `DIR_*`.
    pub direction: u8,
    /// CPU the event was produced on.
    pub cpu: u32,
    /// Local address (IPv4: first 4 bytes), network order.
    pub laddr: [u8; 16],
    /// Remote address, network order.
    pub raddr: [u8; 16],
    /// Process name, NUL padded.
    pub comm: [u8; 16],
}

/// Size of the header in bytes.
pub const EVENT_SIZE: usize = std::mem::size_of::<PtEvent>();

/// Why a ring-buffer record could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// The record is shorter than the header.
    Short(usize),
    /// `cap_len` claims more payload than the record holds.
    BadCapLen {
        /// `cap_len` in the header.
        cap_len: u32,
        /// Bytes available after the header.
        available: usize,
    },
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParseError::Short(n) => write!(
                f,
                "event record of {n} bytes is shorter than the {EVENT_SIZE}-byte header"
            ),
            ParseError::BadCapLen { cap_len, available } => {
                write!(
                    f,
                    "event cap_len {cap_len} exceeds the {available} payload bytes present"
                )
            }
        }
    }
}

impl std::error::Error for ParseError {}

impl PtEvent {
    /// Splits a ring-buffer record into its header and payload.
    pub fn parse(record: &[u8]) -> Result<(PtEvent, &[u8]), ParseError> {
        if record.len() < EVENT_SIZE {
            return Err(ParseError::Short(record.len()));
        }
        // SAFETY: the length is checked above, `PtEvent` is plain old data (every bit
        // pattern is valid) and `read_unaligned` has no alignment requirement.
        let ev = unsafe { std::ptr::read_unaligned(record.as_ptr().cast::<PtEvent>()) };
        let rest = &record[EVENT_SIZE..];
        let cap = ev.cap_len as usize;
        if cap > rest.len() {
            return Err(ParseError::BadCapLen {
                cap_len: ev.cap_len,
                available: rest.len(),
            });
        }
        Ok((ev, &rest[..cap]))
    }

    /// The ring-buffer record of this header followed by `payload`, as the programs write
    /// it (the inverse of [`PtEvent::parse`] when `cap_len` is `payload.len()`): for tests
    /// and benchmarks that feed the converter without the kernel.
    pub fn to_record(&self, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![0u8; EVENT_SIZE];
        // SAFETY: the buffer holds EVENT_SIZE bytes, `PtEvent` is plain old data and
        // `write_unaligned` has no alignment requirement.
        unsafe { std::ptr::write_unaligned(v.as_mut_ptr().cast::<PtEvent>(), *self) };
        v.extend_from_slice(payload);
        v
    }

    /// With [`FLAG_SEQ`] (opens and closes of TCP sockets, socket tracepoint set): the
    /// kernel's read position of the stream, carried in `ret`: how far the application has
    /// read (tcp `copied_seq`, less the FIN's sequence number once it read the end of the
    /// stream), so the bytes it read between an open and a close are the difference of
    /// the two positions (mod 2^32).
    pub fn read_position(&self) -> Option<u32> {
        if self.flags & FLAG_SEQ == 0 || self.kind == KIND_DATA {
            return None;
        }
        Some(self.ret as u32)
    }

    /// With [`FLAG_WSEQ`] (closes of TCP sockets whose open the socket tracepoint set
    /// saw): the bytes the application wrote to the connection between its open and its
    /// close, by the kernel's count (the difference of tcp `write_seq` at the open and at
    /// the end of the data, a FIN not counted; mod 2^32), carried in `ret`'s high 32 bits.
    pub fn bytes_written(&self) -> Option<u32> {
        if self.flags & (FLAG_SEQ | FLAG_WSEQ) != FLAG_SEQ | FLAG_WSEQ || self.kind != KIND_CLOSE {
            return None;
        }
        Some((self.ret as u64 >> 32) as u32)
    }

    /// The process name up to its first NUL, lossily decoded.
    pub fn comm_str(&self) -> String {
        let end = self
            .comm
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(self.comm.len());
        String::from_utf8_lossy(&self.comm[..end]).into_owned()
    }
}

/// `syscall` of events from the kprobe set: `tcp_sendmsg`.
pub const KP_SENDMSG: u32 = 1000;
/// `syscall` of events from the kprobe set: `tcp_recvmsg`.
pub const KP_RECVMSG: u32 = 1001;
/// `syscall` of events from the kprobe set: `tcp_connect`.
pub const KP_CONNECT: u32 = 1002;
/// `syscall` of events from the kprobe set: `inet_csk_accept`.
pub const KP_ACCEPT: u32 = 1003;
/// `syscall` of events from the kprobe set: `tcp_close`.
pub const KP_CLOSE: u32 = 1004;
/// `syscall` of a socket call made by a kernel thread or an io_uring worker of a targeted
/// cgroup (socket tracepoint set: no user registers, the bytes are not copied).
pub const NR_KERNEL_THREAD: u32 = 1010;

/// Name of an x86_64 syscall number podtrace follows (or of a kprobe set function) (`"?"` for others).
pub fn syscall_name(nr: u32) -> &'static str {
    match nr {
        0 => "read",
        1 => "write",
        3 => "close",
        19 => "readv",
        20 => "writev",
        40 => "sendfile",
        42 => "connect",
        43 => "accept",
        44 => "sendto",
        45 => "recvfrom",
        46 => "sendmsg",
        47 => "recvmsg",
        275 => "splice",
        288 => "accept4",
        295 => "preadv",
        296 => "pwritev",
        327 => "preadv2",
        328 => "pwritev2",
        426 => "io_uring_enter",
        299 => "recvmmsg",
        307 => "sendmmsg",
        KP_SENDMSG => "tcp_sendmsg",
        KP_RECVMSG => "tcp_recvmsg",
        KP_CONNECT => "tcp_connect",
        KP_ACCEPT => "inet_csk_accept",
        KP_CLOSE => "tcp_close",
        NR_KERNEL_THREAD => "kernel_thread",
        nr => crate::tls::call_name(nr).unwrap_or("?"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_rejects_short_and_overlong() {
        assert_eq!(PtEvent::parse(&[0u8; 10]), Err(ParseError::Short(10)));
        let ev = PtEvent {
            cap_len: 4,
            ..Default::default()
        };
        let mut rec = ev.to_record(b"abc");
        assert!(matches!(
            PtEvent::parse(&rec),
            Err(ParseError::BadCapLen {
                cap_len: 4,
                available: 3
            })
        ));
        rec.push(b'x');
        rec[EVENT_SIZE..].copy_from_slice(b"abcd");
        let (h, p) = PtEvent::parse(&rec).expect("valid record");
        assert_eq!(h.cap_len, 4);
        assert_eq!(p, b"abcd");
    }

    #[test]
    fn comm_stops_at_nul() {
        let mut ev = PtEvent::default();
        ev.comm[..4].copy_from_slice(b"curl");
        assert_eq!(ev.comm_str(), "curl");
    }
}
