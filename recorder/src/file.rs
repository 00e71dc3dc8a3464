//! Recording into a capture file: [`record_to_file`].
//!
//! Starts a [`Recorder`], writes its batches (and optional extra rows, e.g. Kubernetes
//! objects from the snapshotter) through `podtrace_format::writer::CaptureWriter`, and
//! stops on the first of: the caller's shutdown future (SIGINT/SIGTERM), `--duration`,
//! `--max-size` (bytes on disk, checked every progress tick, so it may be exceeded by up to
//! one flush interval of data), `--max-events` (socket rows). Progress is reported through
//! a callback about four times a second.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use podtrace_format::model::{FileMeta, Record};
use podtrace_format::writer::{CaptureWriter, WriteSummary, WriterOptions};
use tokio::sync::mpsc;

use crate::clock::boot_time_offset_ns;
use crate::config::RecordConfig;
use crate::error::Result;
use crate::recorder::{Recorder, RecorderStats};

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
                    crate::config::ProbeSet::Syscalls => {
                        "syscalls/sys_enter_*+sys_exit_* (tp_btf/sys_enter+sys_exit if missing)"
                    }
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

struct SizeTracker {
    done: u64,
    current: PathBuf,
}

impl SizeTracker {
    fn bytes(&mut self, w: &CaptureWriter) -> u64 {
        let cur = w.current_path();
        if cur != self.current {
            self.done += std::fs::metadata(&self.current)
                .map(|m| m.len())
                .unwrap_or(0);
            self.current = cur;
        }
        self.done
            + std::fs::metadata(&self.current)
                .map(|m| m.len())
                .unwrap_or(0)
    }
}

/// Records into `out_path` until shutdown or a limit; see the module documentation.
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
    let limits = cfg.limits.clone();
    let meta = file_meta(&cfg, boot_time_offset_ns());
    let mut writer = CaptureWriter::create(out_path, meta, writer_opts)?;
    let (handle, mut rx) = Recorder::start(cfg)?;
    let started = Instant::now();
    let mut extra = extra;
    let mut size = SizeTracker {
        done: 0,
        current: writer.current_path(),
    };
    let mut socket_events = 0u64;
    let mut extra_rows = 0u64;
    let mut payload_bytes = 0u64;
    let mut last = (Instant::now(), 0u64);
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let deadline = limits.duration.map(|d| tokio::time::Instant::now() + d);
    let sleep =
        tokio::time::sleep_until(deadline.unwrap_or_else(|| {
            tokio::time::Instant::now() + Duration::from_secs(100 * 365 * 86400)
        }));
    tokio::pin!(sleep);
    tokio::pin!(shutdown);

    let reason = loop {
        tokio::select! {
            _ = &mut shutdown => break StopReason::Shutdown,
            _ = &mut sleep, if deadline.is_some() => break StopReason::Duration,
            batch = rx.recv() => match batch {
                Some(b) => {
                    for r in &b {
                        match r {
                            Record::SocketData(d) => {
                                socket_events += 1;
                                payload_bytes += d.payload.len() as u64;
                            }
                            Record::SocketOpen(_) | Record::SocketClose(_) => socket_events += 1,
                            _ => {}
                        }
                        writer.write(r)?;
                    }
                    if limits.max_events.is_some_and(|m| socket_events >= m) {
                        break StopReason::MaxEvents;
                    }
                }
                None => break StopReason::RecorderEnded,
            },
            batch = async { match extra.as_mut() { Some(x) => x.recv().await, None => std::future::pending().await } } => match batch {
                Some(b) => {
                    extra_rows += b.len() as u64;
                    writer.write_all(&b)?;
                }
                None => extra = None,
            },
            _ = tick.tick() => {
                writer.tick()?;
                let file_bytes = size.bytes(&writer);
                let stats = handle.stats()?;
                let now = Instant::now();
                let dt = now.duration_since(last.0).as_secs_f64();
                let rate = if dt > 0.0 { (socket_events - last.1) as f64 / dt } else { 0.0 };
                last = (now, socket_events);
                progress(&Progress {
                    elapsed: started.elapsed(),
                    events: socket_events,
                    events_per_sec: rate,
                    payload_bytes,
                    file_bytes,
                    dropped: stats.total_dropped(),
                    probes: handle.probes_attached().to_string(),
                });
                if limits.max_size.is_some_and(|m| file_bytes >= m) {
                    break StopReason::MaxSize;
                }
            }
        }
    };

    // Stop the recorder while still reading its channel, so its final batch (remaining
    // events + final stats) gets written.
    let stop = handle.stop();
    tokio::pin!(stop);
    let stats = loop {
        tokio::select! {
            res = &mut stop => break res?,
            batch = rx.recv() => if let Some(b) = batch {
                for r in &b {
                    if matches!(r, Record::SocketData(_) | Record::SocketOpen(_) | Record::SocketClose(_)) {
                        socket_events += 1;
                    }
                }
                writer.write_all(&b)?;
            },
        }
    };
    while let Some(b) = rx.recv().await {
        for r in &b {
            if matches!(
                r,
                Record::SocketData(_) | Record::SocketOpen(_) | Record::SocketClose(_)
            ) {
                socket_events += 1;
            }
        }
        writer.write_all(&b)?;
    }
    if let Some(x) = extra.as_mut() {
        while let Ok(b) = x.try_recv() {
            extra_rows += b.len() as u64;
            writer.write_all(&b)?;
        }
    }
    let write = writer.finish()?;
    Ok(RecordSummary {
        write,
        stats,
        socket_events,
        extra_rows,
        reason,
        elapsed: started.elapsed(),
    })
}
