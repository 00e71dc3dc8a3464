//! Recording into a capture file: [`record_to_file`].
//!
//! A recording [`Session`] (probes, channel, Kubernetes rows, limits, signals, stopping)
//! whose rows all go into a [`CaptureSink`] (`podtrace_format::writer::CaptureWriter`).
//! It stops on the first of: the caller's shutdown future (SIGINT/SIGTERM), `--duration`,
//! `--max-events` (exactly N socket rows are kept), or `--max-size` (bytes on disk, checked
//! here at every progress tick, so it may be exceeded by up to one flush interval of data).
//! Progress is reported through a callback about four times a second.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use podtrace_format::model::{FileMeta, Record};
use podtrace_format::writer::{CaptureWriter, WriteSummary, WriterOptions};
use tokio::sync::mpsc;

use crate::clock::boot_time_offset_ns;
use crate::config::RecordConfig;
use crate::error::Result;
use crate::priority::WriterThread;
use crate::recorder::RecorderStats;
use crate::session::{Session, SessionEvent};

/// Why a recording ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The shutdown future completed (signal or caller).
    Shutdown,
    /// `limits.duration` elapsed.
    Duration,
    /// `limits.max_size` reached.
    MaxSize,
    /// `limits.max_events` reached.
    MaxEvents,
    /// The recorder ended on its own (error or channel closed).
    RecorderEnded,
}

/// A progress report.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Progress {
    /// Time since the recording started.
    pub elapsed: Duration,
    /// Socket rows (data/open/close) written so far.
    pub events: u64,
    /// Socket rows per second over the last report interval.
    pub events_per_sec: f64,
    /// Payload bytes written so far.
    pub payload_bytes: u64,
    /// Bytes of the capture on disk (flushed row groups).
    pub file_bytes: u64,
    /// Events lost so far (ring full, missed syscalls, malformed).
    pub dropped: u64,
    /// Which kernel hooks are attached ([`crate::RecorderHandle::probes_attached`]).
    pub probes: String,
}

/// What a finished recording produced.
#[derive(Debug, Clone)]
pub struct RecordSummary {
    /// What the writer wrote (files, rows, bytes).
    pub write: WriteSummary,
    /// Final counters.
    pub stats: RecorderStats,
    /// Socket rows written.
    pub socket_events: u64,
    /// Extra rows written (Kubernetes objects, ...).
    pub extra_rows: u64,
    /// Socket events left out after `limits.max_events` was reached.
    pub beyond_max_events: u64,
    /// Why it stopped.
    pub reason: StopReason,
    /// How long it ran.
    pub elapsed: Duration,
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// File metadata for a recording made on this host.
pub fn file_meta(cfg: &RecordConfig, offset_ns: i64) -> FileMeta {
    FileMeta {
        node: read_trimmed("/proc/sys/kernel/hostname"),
        kernel: read_trimmed("/proc/sys/kernel/osrelease"),
        target: cfg.describe_target(),
        recorder_version: env!("CARGO_PKG_VERSION").to_string(),
        boot_time_offset_ns: offset_ns,
        extra: vec![
            ("snaplen".into(), cfg.snaplen.to_string()),
            (
                "probes".into(),
                match cfg.probes {
                    crate::config::ProbeSet::Auto => {
                        "auto: tp_btf/sock_send_length+sock_recv_length+inet_sock_set_state+tcp_destroy_sock, \
                         else syscalls/sys_enter_*+sys_exit_*, else tp_btf/sys_enter+sys_exit"
                    }
                    crate::config::ProbeSet::Sockets => {
                        "tp_btf/sock_send_length+sock_recv_length+inet_sock_set_state+tcp_destroy_sock"
                    }
                    crate::config::ProbeSet::Tracepoints => "syscalls/sys_enter_*+sys_exit_*",
                    crate::config::ProbeSet::TpBtf => "tp_btf/sys_enter+sys_exit",
                    crate::config::ProbeSet::Kprobe => "kprobe/tcp_sendmsg+tcp_recvmsg",
                }
                .into(),
            ),
            ("redacted_headers".into(), redacted_list(cfg)),
        ],
    }
}

fn redacted_list(cfg: &RecordConfig) -> String {
    if cfg.no_redact {
        return "none".into();
    }
    let mut v: Vec<String> = crate::redact::DEFAULT_HEADERS
        .iter()
        .map(|s| s.to_string())
        .collect();
    v.extend(cfg.redact_headers.iter().map(|s| s.to_ascii_lowercase()));
    v.join(",")
}

/// A capture file written from a recording: rows in, its size on disk at each tick.
/// `record` writes every row of its session into one; live mode's `--save` does too.
pub struct CaptureSink {
    writer: CaptureWriter,
    /// Bytes of the files already rotated away.
    done: u64,
    /// The file being written.
    current: PathBuf,
}

impl CaptureSink {
    /// Creates the capture at `path` with this host's [`file_meta`] for `cfg`.
    pub fn create(cfg: &RecordConfig, path: &Path, opts: WriterOptions) -> Result<Self> {
        let writer = CaptureWriter::create(path, file_meta(cfg, boot_time_offset_ns()), opts)?;
        Ok(CaptureSink {
            current: writer.current_path(),
            writer,
            done: 0,
        })
    }

    /// Appends rows.
    pub fn write(&mut self, rows: &[Record]) -> Result<()> {
        Ok(self.writer.write_all(rows)?)
    }

    /// Flushes a row group if one is due; returns the bytes of the capture on disk
    /// (flushed row groups of every file written so far).
    pub fn tick(&mut self) -> Result<u64> {
        self.writer.tick()?;
        let cur = self.writer.current_path();
        if cur != self.current {
            self.done += file_len(&self.current);
            self.current = cur;
        }
        Ok(self.done + file_len(&self.current))
    }

    /// Finishes the capture (footer, sidecar removed).
    pub fn finish(self) -> Result<WriteSummary> {
        Ok(self.writer.finish()?)
    }
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// How often `record` reports progress and checks `--max-size`.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// Whether the calling code runs on the thread that blocks on a multi-thread runtime
/// (`Runtime::block_on`), not inside a task on a worker: only there may the capture writer
/// lower its own thread's priority ([`crate::priority`]). On a current-thread runtime the
/// ring consumer shares the thread, so it keeps normal priority.
fn writer_thread_here() -> bool {
    tokio::task::try_id().is_none()
        && tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
}

/// Records into `out_path` until shutdown or a limit; see the module documentation.
/// Awaited from the thread that blocks on a multi-thread runtime (as `podtrace record`
/// does), that thread writes the capture in the idle CPU class while it keeps up with the
/// recorder ([`crate::priority`]) and is back at normal priority when this returns.
pub async fn record_to_file<F, P>(
    cfg: RecordConfig,
    out_path: &Path,
    writer_opts: WriterOptions,
    extra: Option<mpsc::Receiver<Vec<Record>>>,
    shutdown: F,
    mut progress: P,
) -> Result<RecordSummary>
where
    F: Future<Output = ()>,
    P: FnMut(&Progress),
{
    cfg.validate()?;
    let max_size = cfg.limits.max_size;
    let mut sink = CaptureSink::create(&cfg, out_path, writer_opts)?;
    // Called from the thread that blocks on it (not a spawned task, which would put a
    // runtime worker — the ring consumer's — in the idle class): that thread is the writer.
    let writer = writer_thread_here().then(WriterThread::new);
    let mut session = Session::start_with(
        cfg,
        extra,
        shutdown,
        PROGRESS_EVERY,
        writer.as_ref().map(WriterThread::priority),
    )?;
    // the probes are loaded, the consumer and its guard run: from here on a stalled writer
    // is raised
    if let Some(w) = &writer {
        w.lower();
    }
    while let Some(event) = session.next().await? {
        match event {
            SessionEvent::Rows(rows) | SessionEvent::Extra(rows) => sink.write(&rows)?,
            SessionEvent::Tick(mut p) => {
                p.file_bytes = sink.tick()?;
                progress(&p);
                if max_size.is_some_and(|m| p.file_bytes >= m) {
                    session.stop(StopReason::MaxSize);
                }
            }
        }
        if let Some(w) = &writer {
            w.step(session.backlog() == 0);
        }
    }
    let end = session.finish();
    Ok(RecordSummary {
        write: sink.finish()?,
        stats: end.stats,
        socket_events: end.socket_events,
        extra_rows: end.extra_rows,
        beyond_max_events: end.beyond_max_events,
        reason: end.reason,
        elapsed: end.elapsed,
    })
}
