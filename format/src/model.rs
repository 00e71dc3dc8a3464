//! Plain Rust values of the capture's rows (schema v1).
//!
//! These types are the contract between the recorder (which produces them), the pcap
//! importer (which produces them from packets) and the analyzer (which consumes them).
//! The Arrow/Parquet layout of each field is documented in `docs/capture-format.md`
//! and defined in [`crate::schema`].

use std::sync::Arc;

/// Bit flags of a `socket_data` row (`flags` column).
pub mod flags {
    /// The payload was cut at the snaplen: `cap_len < ret`.
    pub const TRUNCATED: u32 = 1 << 0;
    /// The payload is TLS plaintext captured from a TLS library (uprobe), not socket bytes.
    pub const TLS_PLAINTEXT: u32 = 1 << 1;
    /// One or more header values in the payload were redacted at record time.
    pub const REDACTED: u32 = 1 << 2;
    /// The row was synthesised by `podtrace import` from packets, not recorded by eBPF.
    pub const IMPORTED: u32 = 1 << 3;
    /// Bytes are missing before this row in its direction (lost packets / dropped events).
    pub const GAP_BEFORE: u32 = 1 << 4;
}

/// Names of `stats` counters that readers of a capture act on, as the recorder writes them
/// (`COUNTER_NAMES` of `podtrace-recorder-ebpf`).
pub mod counters {
    /// Events lost because the ring buffer was full (user space did not keep up).
    pub const EVENTS_DROPPED_RINGBUF_FULL: &str = "events_dropped_ringbuf_full";
    /// Events lost because the CPU's scratch slot was in use (preemption).
    pub const EVENTS_DROPPED_SCRATCH_BUSY: &str = "events_dropped_scratch_busy";
    /// Syscall bytes of data events lost to a full ring buffer.
    pub const BYTES_DROPPED: &str = "bytes_dropped";
    /// What the kernel side lost: the analysis reports these totals as recorder drops.
    pub const KERNEL_DROPS: [&str; 3] = [
        EVENTS_DROPPED_RINGBUF_FULL,
        EVENTS_DROPPED_SCRATCH_BUSY,
        BYTES_DROPPED,
    ];
    /// Bytes applications read, by the kernel's count at their connections' close, that
    /// no event carried (the socket tracepoint set checks every connection it saw open).
    pub const BYTES_READ_UNCAPTURED: &str = "bytes_read_uncaptured";
    /// Bytes applications wrote, by the kernel's count at their connections' close, that
    /// no event carried (checked where the socket tracepoint set saw the open).
    pub const BYTES_WRITTEN_UNCAPTURED: &str = "bytes_written_uncaptured";
    /// Everything the capture lacks by the recorder's own counts: the analysis reports
    /// these totals as recorder drops.
    pub const CAPTURE_LOSSES: [&str; 5] = [
        EVENTS_DROPPED_RINGBUF_FULL,
        EVENTS_DROPPED_SCRATCH_BUSY,
        BYTES_DROPPED,
        BYTES_READ_UNCAPTURED,
        BYTES_WRITTEN_UNCAPTURED,
    ];
}

/// Direction of a `socket_data` row, seen from the recorded process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    /// Bytes the process sent (write/send*).
    Egress,
    /// Bytes the process received (read/recv*).
    Ingress,
}

impl Direction {
    /// The string stored in the `direction` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Egress => "egress",
            Direction::Ingress => "ingress",
        }
    }
    /// Parses the `direction` column.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "egress" => Some(Direction::Egress),
            "ingress" => Some(Direction::Ingress),
            _ => None,
        }
    }
}

/// Who initiated a connection, from the recorded socket's point of view.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum Role {
    /// The process called `connect()`.
    Client,
    /// The process got the socket from `accept()`.
    Server,
    /// Not known (the connection was already open when recording started).
    Unknown,
}

impl Role {
    /// The string stored in the `role` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Client => "client",
            Role::Server => "server",
            Role::Unknown => "unknown",
        }
    }
    /// Parses the `role` column.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "client" => Some(Role::Client),
            "server" => Some(Role::Server),
            "unknown" => Some(Role::Unknown),
            _ => None,
        }
    }
}

/// Who did the I/O and on which socket: the columns shared by every socket row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketMeta {
    /// Wall-clock time of the syscall's return, ns since the Unix epoch.
    pub ts_ns: u64,
    /// CPU the event was seen on.
    pub cpu: u32,
    /// Process id (tgid) in the root pid namespace.
    pub pid: u32,
    /// Thread id in the root pid namespace.
    pub tid: u32,
    /// Process name (`comm`, at most 16 bytes). Shared: a capture's rows name few
    /// processes, and a row is cheaper to make and to drop without its own copy.
    pub comm: Arc<str>,
    /// cgroup v2 id (inode of the cgroup directory) of the process.
    pub cgroup_id: u64,
    /// Stable key of the connection (socket cookie or kernel socket pointer hash); unique
    /// per capture for the connection's lifetime. Same value for every row of one socket.
    pub conn_id: u64,
    /// Local address and port of the socket.
    pub local: Option<std::net::SocketAddr>,
    /// Remote (peer) address and port of the socket.
    pub remote: Option<std::net::SocketAddr>,
}

/// A `socket_data` row: bytes one syscall moved through a socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketData {
    /// Who and which socket.
    pub meta: SocketMeta,
    /// Egress (sent) or ingress (received).
    pub direction: Direction,
    /// Syscall name (`write`, `sendto`, `recvmsg`, ..., or `pcap` for imported rows).
    pub syscall: Arc<str>,
    /// Bytes the syscall returned (the real size of the transfer).
    pub ret: i64,
    /// The captured bytes: at most the snaplen, `payload.len() == cap_len`.
    pub payload: Vec<u8>,
    /// [`flags`] bits.
    pub flags: u32,
}

/// A `socket_open` / `socket_close` row: connection boundaries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketEvent {
    /// Who and which socket.
    pub meta: SocketMeta,
    /// Client (connect) or server (accept) side.
    pub role: Role,
    /// Syscall name (`connect`, `accept4`, `close`, or `pcap`).
    pub syscall: Arc<str>,
}

/// What happened to a Kubernetes object (`k8s_event` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum K8sEvent {
    /// Listed at the start of the recording (or imported from a List).
    Snapshot,
    /// Watch event ADDED.
    Added,
    /// Watch event MODIFIED.
    Modified,
    /// Watch event DELETED.
    Deleted,
}

impl K8sEvent {
    /// The string stored in the `k8s_event` column.
    pub fn as_str(self) -> &'static str {
        match self {
            K8sEvent::Snapshot => "snapshot",
            K8sEvent::Added => "added",
            K8sEvent::Modified => "modified",
            K8sEvent::Deleted => "deleted",
        }
    }
    /// Parses the `k8s_event` column.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "snapshot" => Some(K8sEvent::Snapshot),
            "added" => Some(K8sEvent::Added),
            "modified" => Some(K8sEvent::Modified),
            "deleted" => Some(K8sEvent::Deleted),
            _ => None,
        }
    }
}

/// A `k8s_object` row: a Kubernetes object as seen at `ts_ns`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct K8sObject {
    /// When it was listed or the watch event arrived, ns since the Unix epoch.
    pub ts_ns: u64,
    /// `Pod`, `Service`, `EndpointSlice`, `Node`.
    pub kind: String,
    /// metadata.uid
    pub uid: String,
    /// metadata.namespace (empty for cluster-scoped objects).
    pub namespace: String,
    /// metadata.name
    pub name: String,
    /// What happened.
    pub event: K8sEvent,
    /// The object as JSON, `metadata.managedFields` removed.
    pub json: String,
}

/// A `stats` row: one counter's value at `ts_ns` (cumulative since the recording began).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    /// When the counter was read, ns since the Unix epoch.
    pub ts_ns: u64,
    /// CPU for per-CPU counters, `None` for totals.
    pub cpu: Option<u32>,
    /// Counter name, e.g. `events_seen`, `events_dropped_ringbuf_full`, `payload_truncated`.
    pub name: String,
    /// Cumulative value.
    pub value: u64,
}

/// One row of a capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// Bytes through a socket.
    SocketData(SocketData),
    /// A connection opened (connect/accept).
    SocketOpen(SocketEvent),
    /// A connection closed.
    SocketClose(SocketEvent),
    /// A Kubernetes object.
    K8sObject(K8sObject),
    /// A counter.
    Stats(Stat),
}

impl Record {
    /// The `record_type` column value.
    pub fn record_type(&self) -> RecordType {
        match self {
            Record::SocketData(_) => RecordType::SocketData,
            Record::SocketOpen(_) => RecordType::SocketOpen,
            Record::SocketClose(_) => RecordType::SocketClose,
            Record::K8sObject(_) => RecordType::K8sObject,
            Record::Stats(_) => RecordType::Stats,
        }
    }
    /// The socket metadata of a socket row (data, open, close); `None` for the others.
    pub fn socket_meta(&self) -> Option<&SocketMeta> {
        match self {
            Record::SocketData(d) => Some(&d.meta),
            Record::SocketOpen(e) | Record::SocketClose(e) => Some(&e.meta),
            Record::K8sObject(_) | Record::Stats(_) => None,
        }
    }
    /// [`Record::socket_meta`], mutable.
    pub fn socket_meta_mut(&mut self) -> Option<&mut SocketMeta> {
        match self {
            Record::SocketData(d) => Some(&mut d.meta),
            Record::SocketOpen(e) | Record::SocketClose(e) => Some(&mut e.meta),
            Record::K8sObject(_) | Record::Stats(_) => None,
        }
    }
    /// The row's timestamp, ns since the Unix epoch.
    pub fn ts_ns(&self) -> u64 {
        match self {
            Record::SocketData(d) => d.meta.ts_ns,
            Record::SocketOpen(e) | Record::SocketClose(e) => e.meta.ts_ns,
            Record::K8sObject(k) => k.ts_ns,
            Record::Stats(s) => s.ts_ns,
        }
    }
}

/// The `record_type` column's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RecordType {
    /// `socket_data`
    SocketData,
    /// `socket_open`
    SocketOpen,
    /// `socket_close`
    SocketClose,
    /// `k8s_object`
    K8sObject,
    /// `stats`
    Stats,
}

impl RecordType {
    /// Every record type, in column order (= declaration order: `t as usize` is its index).
    pub const ALL: [RecordType; 5] = [
        RecordType::SocketData,
        RecordType::SocketOpen,
        RecordType::SocketClose,
        RecordType::K8sObject,
        RecordType::Stats,
    ];
    /// The string stored in the `record_type` column.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordType::SocketData => "socket_data",
            RecordType::SocketOpen => "socket_open",
            RecordType::SocketClose => "socket_close",
            RecordType::K8sObject => "k8s_object",
            RecordType::Stats => "stats",
        }
    }
    /// Parses the `record_type` column.
    pub fn parse(s: &str) -> Option<Self> {
        RecordType::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// File-level key-value metadata of a capture (Parquet footer).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileMeta {
    /// Node (host) name where the capture was made.
    pub node: String,
    /// Kernel release (`uname -r`), empty for imported captures.
    pub kernel: String,
    /// What was targeted, human readable (`pod demo/frontend`, `cgroup ...`, `pcap x.pcap`).
    pub target: String,
    /// podtrace version that wrote the file.
    pub recorder_version: String,
    /// Offset added to the kernel's monotonic clock to get wall-clock ns.
    pub boot_time_offset_ns: i64,
    /// Free-form extra key-values (written as `podtrace.<key>`).
    pub extra: Vec<(String, String)>,
}

/// The wall-clock time now, in ns since the Unix epoch: the unit of every `ts_ns` (0 if
/// the clock is set before the epoch; saturates past the year 2554).
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The writer counts rows per type at `ALL[t as usize]`.
    #[test]
    fn all_is_in_declaration_order() {
        for (i, t) in RecordType::ALL.into_iter().enumerate() {
            assert_eq!(t as usize, i, "{t:?}");
        }
    }

    #[test]
    fn now_is_wall_clock_ns() {
        let a = now_ns();
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after the epoch")
            .as_secs();
        // Within a minute of the clock read in seconds, so ns and not another unit.
        assert!(
            a / 1_000_000_000 <= secs && secs - a / 1_000_000_000 < 60,
            "{a} vs {secs}"
        );
    }
}
