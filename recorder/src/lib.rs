//! # podtrace-recorder — eBPF socket capture of pods into capture files
//!
//! Loads the programs of `podtrace-recorder-ebpf`, targets cgroups (a pod's, a pid's, a
//! directory tree), reads the ring buffer and turns kernel events into capture rows
//! (`podtrace_format::Record`) on a channel ([`Recorder::start`]). One recording
//! [`Session`] (limits, signals, ticks, Kubernetes rows, stopping while draining) drives it
//! for both `record` ([`record_to_file`]: session and capture writer) and live mode
//! (session and the analyzer). It needs root (CAP_BPF +
//! CAP_PERFMON) and kernel BTF; it never prints or exits — errors are [`RecorderError`].
//!
//! Modules, in data-flow order: [`config`] (what to record) → [`targets`] (cgroup filter)
//! → [`probes`] (load/attach) → [`recorder`] (ring buffer consumer) → [`convert`] (event →
//! row, with [`redact`]) → [`session`] (one recording: limits, signals, ticks, stop) →
//! [`file`](mod@file) (capture writer, `--max-size`, progress). [`cgroups`] and
//! [`k8s`] resolve targets and Kubernetes metadata.
//!
//! ```no_run
//! # async fn demo() -> Result<(), podtrace_recorder::RecorderError> {
//! use podtrace_recorder::{RecordConfig, Recorder};
//! let cfg = RecordConfig { pids: vec![1234], ..Default::default() };
//! let (handle, mut rx) = Recorder::start(cfg)?;
//! if let Some(batch) = rx.recv().await {
//!     println!("{} rows", batch.len());
//! }
//! let stats = handle.stop().await?;
//! println!("dropped {}", stats.total_dropped());
//! # Ok(()) }
//! ```

#![warn(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)
)]

pub mod cgroups;
pub mod clock;
pub mod config;
pub mod consumer_priority;
pub mod convert;
pub mod error;
pub mod file;
pub mod k8s;
pub mod priority;
pub mod probes;
pub mod recorder;
pub mod redact;
pub mod session;
pub mod targets;
pub mod tls;

pub use config::{Limits, ProbeSet, RecordConfig};
pub use error::{RecorderError, Result};
pub use file::{record_to_file, Progress, RecordSummary, StopReason};
pub use recorder::{Recorder, RecorderHandle, RecorderStats};
pub use session::{Session, SessionEvent, SessionSummary};
