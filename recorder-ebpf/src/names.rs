//! Names of the programs, maps and globals in [`crate::PODTRACE_BPF_OBJECT`].

/// Per-syscall tracepoint program for `syscalls/sys_enter_<call>` of the calls with at
/// least three arguments (attached once per call).
pub const PROG_TP_ENTER: &str = "pt_tp_enter";
/// Tracepoint program for `syscalls/sys_enter_close` (one argument).
pub const PROG_TP_CLOSE: &str = "pt_tp_close";
/// Tracepoint program for `syscalls/sys_enter_sendfile64` (count is the fourth argument).
pub const PROG_TP_SENDFILE: &str = "pt_tp_sendfile";
/// Per-syscall tracepoint program for `syscalls/sys_exit_<call>` (attached once per call).
pub const PROG_TP_EXIT: &str = "pt_tp_exit";
/// Tracepoint category of the per-syscall tracepoints.
pub const TP_CATEGORY_SYSCALLS: &str = "syscalls";
/// The followed socket calls, by their tracepoint name (`sys_enter_<name>` and
/// `sys_exit_<name>`; close is handled at entry only).
pub const TP_SYSCALLS: [&str; 15] = [
    "read",
    "write",
    "close",
    "readv",
    "writev",
    "sendfile64",
    "connect",
    "accept",
    "sendto",
    "recvfrom",
    "sendmsg",
    "recvmsg",
    "accept4",
    "recvmmsg",
    "sendmmsg",
];
/// `tp_btf/sys_enter` program (fallback set).
pub const PROG_SYS_ENTER: &str = "pt_sys_enter";
/// `tp_btf/sys_exit` program (fallback set).
pub const PROG_SYS_EXIT: &str = "pt_sys_exit";
/// Tracepoint name the enter program attaches to.
pub const TP_SYS_ENTER: &str = "sys_enter";
/// Tracepoint name the exit program attaches to.
pub const TP_SYS_EXIT: &str = "sys_exit";
/// The socket tracepoint set (`--probes sockets`, the default where present): (program,
/// `tp_btf` tracepoint) pairs.
pub const SOCK_TPS: [(&str, &str); 4] = [
    ("pt_sock_send", "sock_send_length"),
    ("pt_sock_recv", "sock_recv_length"),
    ("pt_sock_state", "inet_sock_set_state"),
    ("pt_sock_destroy", "tcp_destroy_sock"),
];
/// Hash map `u64 cgroup id → u8`: the targeted cgroups.
pub const MAP_CGROUPS: &str = "pt_cgroups";
/// Array `u32 slot → u64`: the direct-mapped front of [`MAP_CGROUPS`] (slot = id & 4095;
/// 0 empty, the id itself, or `u64::MAX` for several ids: ask the hash map).
pub const MAP_CG_SLOTS: &str = "pt_cg_slots";
/// Number of slots of [`MAP_CG_SLOTS`].
pub const CG_SLOTS: u64 = 4096;
/// Ring buffer of events.
pub const MAP_EVENTS: &str = "pt_events";
/// Per-CPU `u64` counters, indexed by `event::CTR_*`.
pub const MAP_COUNTERS: &str = "pt_counters";
/// Per-CPU-slot scratch array (one entry per possible CPU).
pub const MAP_SCRATCH: &str = "pt_scratch";
/// In-flight syscall arguments per thread (task-local storage).
pub const MAP_TASK: &str = "pt_task";
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
/// [`crate::FLOOR_BPF_OBJECT`]: empty programs for `syscalls/sys_enter_write` and
/// `syscalls/sys_exit_write`.
pub const FLOOR_TP: [(&str, &str); 2] = [
    ("floor_tp_enter", "sys_enter_write"),
    ("floor_tp_exit", "sys_exit_write"),
];
/// [`crate::FLOOR_BPF_OBJECT`]: empty `tp_btf` programs for `sys_enter` and `sys_exit`.
pub const FLOOR_BTF: [(&str, &str); 2] = [
    ("floor_btf_enter", TP_SYS_ENTER),
    ("floor_btf_exit", TP_SYS_EXIT),
];
/// [`crate::FLOOR_BPF_OBJECT`]: empty `tp_btf` programs for `sock_send_length` and
/// `sock_recv_length` (the socket tracepoint set's data hooks).
pub const FLOOR_SOCK: [(&str, &str); 2] = [
    ("floor_sock_send", "sock_send_length"),
    ("floor_sock_recv", "sock_recv_length"),
];
/// [`crate::FLOOR_BPF_OBJECT`]: like [`FLOOR_SOCK`], running the cgroup filter's fast path.
pub const FLOOR_SOCK_CG: [(&str, &str); 2] = [
    ("floor_sock_cg_send", "sock_send_length"),
    ("floor_sock_cg_recv", "sock_recv_length"),
];
/// [`crate::FLOOR_BPF_OBJECT`]: like [`FLOOR_TP`], running the cgroup filter's fast path.
pub const FLOOR_TP_CG: [(&str, &str); 2] = [
    ("floor_tp_cg_enter", "sys_enter_write"),
    ("floor_tp_cg_exit", "sys_exit_write"),
];
/// [`crate::FLOOR_BPF_OBJECT`]: like [`FLOOR_BTF`], running the syscall-number test and the
/// cgroup filter's fast path.
pub const FLOOR_BTF_CG: [(&str, &str); 2] = [
    ("floor_btf_cg_enter", TP_SYS_ENTER),
    ("floor_btf_cg_exit", TP_SYS_EXIT),
];
