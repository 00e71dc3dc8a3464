//! Errors of the recorder: what went wrong and what the operator can do about it.

use std::path::PathBuf;

/// Everything that can stop a recording.
#[derive(Debug, thiserror::Error)]
pub enum RecorderError {
    /// The process may not load eBPF programs.
    #[error(
        "insufficient privileges to load eBPF programs: run as root or grant CAP_BPF + CAP_PERFMON \
         (or CAP_SYS_ADMIN on kernels before 5.8){detail}"
    )]
    Privileges {
        /// Extra context (the kernel's answer), may be empty.
        detail: String,
    },
    /// The kernel exposes no BTF, needed for tp_btf programs and CO-RE.
    #[error(
        "kernel BTF not available ({0}): podtrace needs a kernel built with CONFIG_DEBUG_INFO_BTF=y \
         (/sys/kernel/btf/vmlinux)"
    )]
    MissingBtf(String),
    /// cgroup discovery failed (no cgroup v2 mount, unreadable /proc/PID/cgroup, ...).
    #[error(transparent)]
    Cgroup(#[from] crate::cgroups::CgroupError),
    /// A `--cgroup PATH` target is not a cgroup v2 directory.
    #[error("{path}: not a cgroup v2 directory below the cgroup2 mount {mount}")]
    NotACgroup {
        /// The target given.
        path: PathBuf,
        /// The cgroup2 mount found.
        mount: PathBuf,
    },
    /// Nothing to record.
    #[error("no target: give at least one cgroup id, cgroup path or pid")]
    NoTarget,
    /// Invalid configuration value.
    #[error("invalid recorder configuration: {0}")]
    Config(String),
    /// The eBPF object could not be loaded (verifier, map creation, ...).
    #[error("loading the eBPF programs failed: {0}")]
    Load(String),
    /// A program could not be attached.
    #[error("attaching {program} failed: {detail}")]
    Attach {
        /// Program name.
        program: &'static str,
        /// What the kernel said.
        detail: String,
    },
    /// The requested probe set cannot work on this kernel.
    #[error("{0}")]
    Unsupported(String),
    /// An eBPF map operation failed.
    #[error("eBPF map {map}: {detail}")]
    Map {
        /// Map name.
        map: &'static str,
        /// What failed.
        detail: String,
    },
    /// Writing the capture failed.
    #[error(transparent)]
    Format(#[from] podtrace_format::error::FormatError),
    /// Other I/O.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// No tokio runtime with I/O enabled is running.
    #[error("the recorder must be started inside a tokio runtime with I/O enabled: {0}")]
    Runtime(String),
}

/// Result with [`RecorderError`].
pub type Result<T, E = RecorderError> = std::result::Result<T, E>;
