//! Names of the programs, maps and globals in [`crate::PODTRACE_BPF_OBJECT`].

/// `tp_btf/sys_enter` program.
pub const PROG_SYS_ENTER: &str = "pt_sys_enter";
/// `tp_btf/sys_exit` program.
pub const PROG_SYS_EXIT: &str = "pt_sys_exit";
/// Tracepoint name the enter program attaches to.
pub const TP_SYS_ENTER: &str = "sys_enter";
/// Tracepoint name the exit program attaches to.
pub const TP_SYS_EXIT: &str = "sys_exit";
/// Hash map `u64 cgroup id → u8`: the targeted cgroups.
pub const MAP_CGROUPS: &str = "pt_cgroups";
/// Ring buffer of events.
pub const MAP_EVENTS: &str = "pt_events";
/// Per-CPU `u64` counters, indexed by `event::CTR_*`.
pub const MAP_COUNTERS: &str = "pt_counters";
/// Per-CPU-slot scratch array (one entry per possible CPU).
pub const MAP_SCRATCH: &str = "pt_scratch";
/// In-flight syscall arguments per thread.
pub const MAP_ARGS: &str = "pt_args";
/// `const volatile u32` global: payload bytes copied per event (≤ `event::MAX_SNAPLEN`).
pub const GLOBAL_SNAPLEN: &str = "pt_snaplen";
/// LRU hash of (sock | direction) keys of streams that lost a data event.
pub const MAP_GAPS: &str = "pt_gaps";
/// `--probes kprobe` set: (program name, kernel function, is a return probe).
pub const KPROBES: [(&str, &str, bool); 7] = [
    ("pt_kp_sendmsg", "tcp_sendmsg", false),
    ("pt_krp_sendmsg", "tcp_sendmsg", true),
    ("pt_kp_recvmsg", "tcp_recvmsg", false),
    ("pt_krp_recvmsg", "tcp_recvmsg", true),
    ("pt_kp_connect", "tcp_connect", false),
    ("pt_krp_accept", "inet_csk_accept", true),
    ("pt_kp_close", "tcp_close", false),
];
