//! What to record and within which limits: [`RecordConfig`].

use std::path::PathBuf;
use std::time::Duration;

/// Limits that end a recording on their own (`None`: no limit).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    /// Stop after this long (`--duration`).
    pub duration: Option<Duration>,
    /// Stop once the capture holds this many bytes (`--max-size`).
    pub max_size: Option<u64>,
    /// Stop after this many socket events (`--max-events`).
    pub max_events: Option<u64>,
}

/// Which kernel hooks capture the traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProbeSet {
    /// The first set this kernel has (default, `--probes auto`): [`ProbeSet::Sockets`],
    /// else [`ProbeSet::Tracepoints`], else [`ProbeSet::TpBtf`] (chosen automatically; the
    /// "probes attached" line names the set and why a preferred one was not used).
    #[default]
    Auto,
    /// The socket tracepoints only (`--probes sockets`; kernel 6.3+): `tp_btf` on
    /// `sock:sock_send_length`, `sock:sock_recv_length`, `sock:inet_sock_set_state` and
    /// `tcp:tcp_destroy_sock`. No
    /// syscall hook: other syscalls run no podtrace program and stay on the kernel's fast
    /// path; the bytes are read from the buffers the syscall passed. An error where they
    /// are missing.
    Sockets,
    /// The per-syscall tracepoints only (`--probes tracepoints`): `syscalls/sys_enter_<call>`
    /// and `sys_exit_<call>` of the socket calls; an error where they are missing.
    Tracepoints,
    /// `tp_btf/sys_enter` + `sys_exit` on every syscall, the socket calls picked by number
    /// (`--probes tp-btf`; the last fallback of [`ProbeSet::Auto`]).
    TpBtf,
    /// Kprobes on `tcp_sendmsg`/`tcp_recvmsg`/`tcp_connect`/`inet_csk_accept`/`tcp_close`
    /// (needs `CONFIG_KPROBES`; sees TCP only, also bytes moved by kernel-internal callers).
    Kprobe,
}

/// Configuration of a recording.
///
/// ```
/// use podtrace_recorder::RecordConfig;
/// let mut cfg = RecordConfig::default();
/// cfg.pids.push(std::process::id());
/// cfg.snaplen = 4096;
/// assert!(cfg.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordConfig {
    /// cgroup v2 ids to record (e.g. resolved from a pod by the caller).
    pub cgroup_ids: Vec<u64>,
    /// cgroup v2 directories to record, each with every cgroup below it (rescanned).
    pub cgroup_paths: Vec<PathBuf>,
    /// Processes whose cgroup is recorded (read from `/proc/PID/cgroup`).
    pub pids: Vec<u32>,
    /// Payload bytes kept per event (1 ..= 16384, default 16384).
    pub snaplen: u32,
    /// Header names redacted in HTTP/1 payloads in addition to the built-in ones
    /// (Authorization, Proxy-Authorization, Cookie, Set-Cookie).
    pub redact_headers: Vec<String>,
    /// Turn all redaction off (not recommended).
    pub no_redact: bool,
    /// Limits.
    pub limits: Limits,
    /// Probe set.
    pub probes: ProbeSet,
    /// TLS plaintext: uprobes on the OpenSSL 3 copies of the targeted processes
    /// ([`crate::tls`]; default on). Needs the syscall probe sets (not `Kprobe`).
    pub tls: bool,
    /// Where the TLS uprobes are attached: once per OpenSSL file for every process that
    /// maps it (default) or per targeted process ([`crate::tls::TlsAttach`]).
    pub tls_attach: crate::tls::TlsAttach,
    /// Ring buffer size in bytes (power of two, default 32 MiB: ~8000 4 KiB events, ~100 ms
    /// of a busy pod, to ride out consumer stalls on loaded nodes).
    pub ring_bytes: u32,
    /// Records per batch sent to the channel (at most).
    pub batch_records: usize,
    /// Capacity of the batch channel.
    pub channel_batches: usize,
    /// How often cgroup directories are rescanned for new descendants.
    pub rescan_interval: Duration,
    /// How often `stats` rows are produced.
    pub stats_interval: Duration,
    /// How often the ring buffer is drained even without a wakeup.
    pub drain_interval: Duration,
    /// Human-readable description of the target (written to the file metadata).
    pub target_label: String,
}

impl Default for RecordConfig {
    fn default() -> Self {
        RecordConfig {
            cgroup_ids: Vec::new(),
            cgroup_paths: Vec::new(),
            pids: Vec::new(),
            snaplen: podtrace_recorder_ebpf::event::MAX_SNAPLEN,
            redact_headers: Vec::new(),
            no_redact: false,
            limits: Limits::default(),
            probes: ProbeSet::Auto,
            tls: true,
            tls_attach: crate::tls::TlsAttach::File,
            ring_bytes: 32 << 20,
            batch_records: 4096,
            channel_batches: 64,
            rescan_interval: Duration::from_millis(250),
            stats_interval: Duration::from_secs(1),
            drain_interval: Duration::from_millis(10),
            target_label: String::new(),
        }
    }
}

impl RecordConfig {
    /// Checks values and that there is a target.
    pub fn validate(&self) -> crate::Result<()> {
        use crate::RecorderError::Config;
        if self.cgroup_ids.is_empty() && self.cgroup_paths.is_empty() && self.pids.is_empty() {
            return Err(crate::RecorderError::NoTarget);
        }
        let max = podtrace_recorder_ebpf::event::MAX_SNAPLEN;
        if self.snaplen == 0 || self.snaplen > max {
            return Err(Config(format!(
                "snaplen {} outside 1..={max}",
                self.snaplen
            )));
        }
        if !self.ring_bytes.is_power_of_two() || self.ring_bytes < 4096 {
            return Err(Config(format!(
                "ring buffer size {} must be a power of two >= 4096",
                self.ring_bytes
            )));
        }
        if self.batch_records == 0 || self.channel_batches == 0 {
            return Err(Config("batch and channel sizes must be > 0".into()));
        }
        for d in [
            self.rescan_interval,
            self.stats_interval,
            self.drain_interval,
        ] {
            if d.is_zero() {
                return Err(Config("intervals must be > 0".into()));
            }
        }
        Ok(())
    }

    /// The target description for file metadata (`target_label`, or built from the targets).
    pub fn describe_target(&self) -> String {
        if !self.target_label.is_empty() {
            return self.target_label.clone();
        }
        let mut parts = Vec::new();
        parts.extend(
            self.cgroup_paths
                .iter()
                .map(|p| format!("cgroup {}", p.display())),
        );
        parts.extend(self.cgroup_ids.iter().map(|i| format!("cgroup-id {i}")));
        parts.extend(self.pids.iter().map(|p| format!("pid {p}")));
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_needs_a_target_and_sane_values() {
        assert!(matches!(
            RecordConfig::default().validate(),
            Err(crate::RecorderError::NoTarget)
        ));
        let mut c = RecordConfig {
            cgroup_ids: vec![1],
            ..Default::default()
        };
        assert!(c.validate().is_ok());
        c.snaplen = 0;
        assert!(c.validate().is_err());
        c.snaplen = 100_000;
        assert!(c.validate().is_err());
        c.snaplen = 64;
        c.ring_bytes = 5000;
        assert!(c.validate().is_err());
    }

    #[test]
    fn target_description() {
        let c = RecordConfig {
            pids: vec![7],
            cgroup_ids: vec![3],
            ..Default::default()
        };
        assert_eq!(c.describe_target(), "cgroup-id 3, pid 7");
    }
}
