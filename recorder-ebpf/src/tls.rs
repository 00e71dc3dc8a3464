//! Rust mirror of the constants of `bpf/tls.bpf.h`: the TLS plaintext programs (uprobes on
//! OpenSSL 3's `SSL_write`, `SSL_write_ex`, `SSL_read`, `SSL_read_ex`).
//!
//! Their events are ordinary data events ([`crate::event::PtEvent`]) of the socket the SSL
//! object uses, with [`FLAG_TLS_PLAINTEXT`] set and a `syscall` of `NR_SSL_*`.

/// `flags`: the payload is TLS plaintext read at the library's API (not socket bytes).
pub const FLAG_TLS_PLAINTEXT: u32 = 128;

/// `syscall` of a plaintext event from `SSL_write`.
pub const NR_SSL_WRITE: u32 = 2000;
/// `syscall` of a plaintext event from `SSL_write_ex`.
pub const NR_SSL_WRITE_EX: u32 = 2001;
/// `syscall` of a plaintext event from `SSL_read`.
pub const NR_SSL_READ: u32 = 2002;
/// `syscall` of a plaintext event from `SSL_read_ex`.
pub const NR_SSL_READ_EX: u32 = 2003;

/// The function name of an `NR_SSL_*` number.
pub fn call_name(nr: u32) -> Option<&'static str> {
    Some(match nr {
        NR_SSL_WRITE => "SSL_write",
        NR_SSL_WRITE_EX => "SSL_write_ex",
        NR_SSL_READ => "SSL_read",
        NR_SSL_READ_EX => "SSL_read_ex",
        _ => return None,
    })
}

/// Entry programs (`uprobe`) by the symbol they attach to.
pub const ENTRY_PROGRAMS: [(&str, &str); 4] = [
    ("pt_tls_write", "SSL_write"),
    ("pt_tls_write_ex", "SSL_write_ex"),
    ("pt_tls_read", "SSL_read"),
    ("pt_tls_read_ex", "SSL_read_ex"),
];
/// The return program (`uretprobe`), attached to every symbol of [`ENTRY_PROGRAMS`].
pub const RETURN_PROGRAM: &str = "pt_tls_ret";
/// Per-CPU `u64` counters of the TLS programs, indexed by `CTR_*` below.
pub const MAP_COUNTERS: &str = "pt_tls_counters";

/// Counter index: targeted SSL_* calls seen at entry.
pub const CTR_CALLS: u32 = 0;
/// Counter index: plaintext events written to the ring buffer.
pub const CTR_EVENTS: u32 = 1;
/// Counter index: calls that moved data but whose socket could not be found (dropped).
pub const CTR_UNBOUND: u32 = 2;
/// Counter index: SSL_* entries while the thread was inside another SSL_* call.
pub const CTR_NESTED: u32 = 3;
/// Counter index: calls missed because no per-thread storage could be had.
pub const CTR_STATE_FULL: u32 = 4;
/// Counter index: bindings made by the call's own socket I/O.
pub const CTR_BY_SYSCALL: u32 = 5;
/// Counter index: bindings taken from the SSL pointer's cache.
pub const CTR_BY_CACHE: u32 = 6;
/// Counter index: bindings to the thread's last socket (memory BIO, buffered data).
pub const CTR_BY_THREAD: u32 = 7;
/// Counter index: cached bindings whose fd no longer names the socket (dropped).
pub const CTR_STALE: u32 = 8;
/// Counter index: plaintext events lost because the CPU's scratch slot was busy.
pub const CTR_LOST: u32 = 9;
/// Number of TLS counters.
pub const CTR_MAX: u32 = 10;

/// Name of each TLS counter as written in `stats` rows, by index.
pub const COUNTER_NAMES: [&str; CTR_MAX as usize] = [
    "tls_calls",
    "tls_events",
    "tls_unbound_dropped",
    "tls_nested_calls",
    "tls_calls_missed_state_full",
    "tls_bound_by_syscall",
    "tls_bound_by_cache",
    "tls_bound_by_thread",
    "tls_stale_bindings",
    "tls_events_dropped_scratch_busy",
];

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = include_str!("../bpf/tls.bpf.h");

    fn define(name: &str) -> u32 {
        let line = HEADER
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(name))
            .unwrap_or_else(|| panic!("#define {name} missing"));
        line.split_whitespace()
            .nth(2)
            .expect("value")
            .parse()
            .expect("number")
    }

    #[test]
    fn constants_match_the_c_header() {
        assert_eq!(define("PT_FLAG_TLS_PLAINTEXT"), FLAG_TLS_PLAINTEXT);
        assert_eq!(define("PT_TLS_NR_SSL_WRITE"), NR_SSL_WRITE);
        assert_eq!(define("PT_TLS_NR_SSL_WRITE_EX"), NR_SSL_WRITE_EX);
        assert_eq!(define("PT_TLS_NR_SSL_READ"), NR_SSL_READ);
        assert_eq!(define("PT_TLS_NR_SSL_READ_EX"), NR_SSL_READ_EX);
        assert_eq!(define("PT_TLS_CTR_MAX"), CTR_MAX);
        assert_eq!(define("PT_TLS_CTR_UNBOUND"), CTR_UNBOUND);
        assert_eq!(define("PT_TLS_CTR_LOST"), CTR_LOST);
        for (prog, _) in ENTRY_PROGRAMS {
            assert!(HEADER.contains(&format!("BPF_KPROBE({prog},")), "{prog}");
        }
        assert!(HEADER.contains(&format!("BPF_KRETPROBE({RETURN_PROGRAM},")));
        assert!(HEADER.contains(&format!("}} {MAP_COUNTERS} SEC")));
        assert_eq!(call_name(NR_SSL_READ_EX), Some("SSL_read_ex"));
        assert_eq!(call_name(1), None);
    }
}
