//! The running recorder: probes + ring-buffer consumer + batches on a channel.
//!
//! [`Recorder::start`] loads and attaches the programs, fills the cgroup filter and spawns
//! one tokio task that
//! - drains the ring buffer when its fd becomes readable (tokio `AsyncFd`) and on a short
//!   timer (the programs mostly skip wakeups to save CPU),
//! - converts events into rows ([`crate::convert`]), including redaction,
//! - adds `stats` rows (kernel counters per CPU and totals) every `stats_interval`,
//! - rescans `--cgroup` directories for new descendants every `rescan_interval`,
//! - sends `Vec<Record>` batches on a bounded channel. When the consumer of that channel
//!   is slow the ring buffer fills and the kernel counts drops: nothing is lost silently.
//!
//! Live mode and file recording ([`crate::file::record_to_file`]) share it.

use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use aya::maps::{MapData, PerCpuArray, RingBuf};
use podtrace_format::model::{Record, Stat};
use podtrace_recorder_ebpf::event::{self as ev, COUNTER_NAMES};
use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::clock::{boot_time_offset_ns, wall_now_ns};
use crate::config::RecordConfig;
use crate::consumer_priority::{Guard, RingLevel};
use crate::convert::{ConvertCounters, Converter};
use crate::error::{RecorderError, Result};
use crate::priority::WriterPriority;
use crate::probes::{read_counters, Probes};
use crate::redact::Redactor;
use crate::targets::{Filter, Targets};

/// Counters of a recording: kernel side (summed over CPUs) and user side.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecorderStats {
    /// Events written to the ring buffer by the kernel.
    pub events_seen: u64,
    /// Events lost because the ring buffer was full.
    pub dropped_ringbuf_full: u64,
    /// Data events whose payload is shorter than the call's byte count (any reason).
    pub payload_truncated: u64,
    /// ... of which cut at the snaplen.
    pub truncated_snaplen: u64,
    /// ... of which cut by a failed copy of user memory.
    pub truncated_read_error: u64,
    /// ... of which had their bytes outside user memory (sendfile).
    pub truncated_not_user_memory: u64,
    /// ... of which had more iovecs/messages than the kernel's UIO_MAXIOV.
    pub truncated_iov_limit: u64,
    /// ... of which reported more bytes than their buffers hold (MSG_TRUNC).
    pub truncated_beyond_buffers: u64,
    /// Failed copies of user memory.
    pub read_errors: u64,
    /// Payload bytes put in the ring buffer.
    pub bytes_captured: u64,
    /// Syscall bytes of data events lost to a full ring buffer.
    pub bytes_dropped: u64,
    /// Syscalls missed because the in-flight table was full.
    pub args_full: u64,
    /// Targeted socket-candidate syscalls seen.
    pub syscalls_targeted: u64,
    /// Events lost because the CPU's scratch slot was busy (program preempted).
    pub dropped_scratch_busy: u64,
    /// Ring-buffer drops per CPU.
    pub dropped_per_cpu: Vec<u64>,
    /// Events decoded by user space.
    pub events_decoded: u64,
    /// Events user space could not decode.
    pub events_malformed: u64,
    /// Data rows with redacted headers.
    pub payloads_redacted: u64,
    /// TCP connections recorded from open to close whose bytes read (and, where the kernel
    /// side saw the open, written) were checked against the kernel's count at the close
    /// (socket tracepoint set).
    pub connections_checked: u64,
    /// Of those, the connections whose bytes written were checked too (all but those whose
    /// entry in the programs' table gave way).
    pub connections_write_checked: u64,
    /// Bytes the applications of those connections read, by the kernel's count, that no
    /// event carried: reads the probes did not see (0 on a faithful recording).
    pub bytes_read_uncaptured: u64,
    /// Bytes the applications of those connections wrote, by the kernel's count, that no
    /// event carried: writes the probes did not see (0 on a faithful recording).
    pub bytes_written_uncaptured: u64,
    /// Socket states user space dropped after 10 minutes without an event (UDP sockets,
    /// whose sockets have no close event, and closes not seen): the memory bound of a long
    /// recording. A socket used again later gets a new connection id.
    pub sockets_expired: u64,
    /// HTTP/2 redaction: values rewritten, blocks blanked, losses of sync, payloads not
    /// checked (see [`crate::redact::Counters`]).
    pub h2_redaction: crate::redact::Counters,
    /// Rows sent on the channel (stats rows included).
    pub records_sent: u64,
}

impl RecorderStats {
    /// Every event lost for any reason (ring full, scratch busy, missed syscalls, malformed).
    pub fn total_dropped(&self) -> u64 {
        self.dropped_ringbuf_full
            + self.dropped_scratch_busy
            + self.args_full
            + self.events_malformed
    }
}

/// User-side counters: the converter's and the redaction's, as published by the consumer
/// at each batch (one snapshot, read together), and the rows sent.
#[derive(Debug, Default)]
struct UserCounters {
    published: Mutex<(ConvertCounters, crate::redact::Counters)>,
    sent: AtomicU64,
}

struct Shared {
    filter: Mutex<Filter>,
    /// Paths of the files the TLS uprobes are attached to.
    tls_files: Mutex<Vec<String>>,
    counters: Mutex<PerCpuArray<MapData, u64>>,
    user: UserCounters,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding these locks leaves plain data behind: keep going.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    fn stats(&self) -> Result<RecorderStats> {
        let (t, per_cpu) = read_counters(&lock(&self.counters))?;
        let at = |i: u32| t.get(i as usize).copied().unwrap_or(0);
        let (c, h2) = *lock(&self.user.published);
        Ok(RecorderStats {
            events_seen: at(ev::CTR_EVENTS),
            dropped_ringbuf_full: at(ev::CTR_RINGBUF_FULL),
            payload_truncated: at(ev::CTR_TRUNCATED),
            truncated_snaplen: at(ev::CTR_TRUNC_SNAPLEN),
            truncated_read_error: at(ev::CTR_TRUNC_READ_ERROR),
            truncated_not_user_memory: at(ev::CTR_TRUNC_NOT_USER),
            truncated_iov_limit: at(ev::CTR_TRUNC_IOV_LIMIT),
            truncated_beyond_buffers: at(ev::CTR_TRUNC_BEYOND),
            read_errors: at(ev::CTR_READ_ERRORS),
            bytes_captured: at(ev::CTR_BYTES_CAPTURED),
            bytes_dropped: at(ev::CTR_BYTES_DROPPED),
            args_full: at(ev::CTR_ARGS_FULL),
            syscalls_targeted: at(ev::CTR_SYSCALLS),
            dropped_scratch_busy: at(ev::CTR_SCRATCH_BUSY),
            dropped_per_cpu: per_cpu
                .get(ev::CTR_RINGBUF_FULL as usize)
                .cloned()
                .unwrap_or_default(),
            events_decoded: c.decoded,
            events_malformed: c.malformed,
            payloads_redacted: c.redacted,
            connections_checked: c.connections_checked,
            connections_write_checked: c.connections_write_checked,
            bytes_read_uncaptured: c.bytes_read_uncaptured,
            bytes_written_uncaptured: c.bytes_written_uncaptured,
            sockets_expired: c.sockets_expired,
            h2_redaction: h2,
            records_sent: self.user.sent.load(Ordering::Relaxed),
        })
    }

    /// `stats` rows: every kernel counter per CPU and in total, plus user-side counters.
    fn stat_rows(&self, out: &mut Vec<Record>) -> Result<()> {
        let ts_ns = wall_now_ns();
        let (totals, per_cpu) = read_counters(&lock(&self.counters))?;
        for (i, name) in COUNTER_NAMES.iter().enumerate() {
            for (cpu, v) in per_cpu.get(i).into_iter().flatten().enumerate() {
                out.push(Record::Stats(Stat {
                    ts_ns,
                    cpu: Some(cpu as u32),
                    name: name.to_string(),
                    value: *v,
                }));
            }
            out.push(Record::Stats(Stat {
                ts_ns,
                cpu: None,
                name: name.to_string(),
                value: totals.get(i).copied().unwrap_or(0),
            }));
        }
        let (c, h) = *lock(&self.user.published);
        for (name, value) in [
            ("events_decoded", c.decoded),
            ("events_malformed", c.malformed),
            ("payloads_redacted", c.redacted),
            ("connections_checked", c.connections_checked),
            ("connections_write_checked", c.connections_write_checked),
            (
                podtrace_format::counters::BYTES_READ_UNCAPTURED,
                c.bytes_read_uncaptured,
            ),
            (
                podtrace_format::counters::BYTES_WRITTEN_UNCAPTURED,
                c.bytes_written_uncaptured,
            ),
            ("sockets_expired", c.sockets_expired),
            ("h2_values_redacted", h.h2_values_redacted),
            ("h2_blocks_blanked", h.h2_blocks_blanked),
            ("h2_unknown_names_redacted", h.h2_unknown_names_redacted),
            ("h2_redaction_sync_lost", h.h2_sync_lost),
            ("h2_payloads_unchecked", h.h2_payloads_unchecked),
        ] {
            out.push(Record::Stats(Stat {
                ts_ns,
                cpu: None,
                name: name.to_string(),
                value,
            }));
        }
        Ok(())
    }
}

/// Entry point: see the module documentation.
pub struct Recorder;

/// Controls a running recorder.
pub struct RecorderHandle {
    shared: Arc<Shared>,
    stop_tx: watch::Sender<bool>,
    task: Option<JoinHandle<Result<()>>>,
    offset_ns: i64,
    attached: String,
}

impl Recorder {
    /// Loads, attaches, fills the filter and starts consuming; returns the handle and the
    /// receiving end of the batch channel. Must be called inside a tokio runtime.
    ///
    /// The channel closes after [`RecorderHandle::stop`] (or on a fatal error, which
    /// `stop` then returns). Dropping the receiver stops the recorder too.
    pub fn start(cfg: RecordConfig) -> Result<(RecorderHandle, mpsc::Receiver<Vec<Record>>)> {
        Self::start_with(cfg, None)
    }

    /// [`Recorder::start`] whose consumer raises the capture writer's CPU priority
    /// ([`WriterPriority::raise`]) whenever the channel is half full, and runs in the idle
    /// class itself under a guard thread ([`crate::consumer_priority`]).
    pub fn start_with(
        cfg: RecordConfig,
        writer: Option<Arc<WriterPriority>>,
    ) -> Result<(RecorderHandle, mpsc::Receiver<Vec<Record>>)> {
        cfg.validate()?;
        let rt = tokio::runtime::Handle::try_current()
            .map_err(|e| RecorderError::Runtime(e.to_string()))?;
        let targets = Targets::resolve(&cfg)?;
        let Probes {
            mut ebpf,
            cgroups,
            cg_slots,
            counters,
            ring,
            mut attached,
        } = Probes::load(cfg.snaplen, cfg.ring_bytes, cfg.probes)?;
        let mut filter = Filter::new(cgroups, cg_slots, targets);
        filter.rescan()?;
        let tls = crate::tls::start_hook(&cfg, &mut ebpf, &filter.ids(), &mut attached);
        let tls_files = tls
            .as_ref()
            .map(|t| t.hooked().iter().map(|h| h.path.clone()).collect())
            .unwrap_or_default();
        let shared = Arc::new(Shared {
            filter: Mutex::new(filter),
            tls_files: Mutex::new(tls_files),
            counters: Mutex::new(counters),
            user: UserCounters::default(),
        });
        // the consumer in the idle class under a guard, where the writer is in it too
        let guard = writer.as_ref().and_then(|w| {
            let level = RingLevel::map(ring.as_fd())
                .map_err(|e| tracing::debug!("ring consumer stays at normal CPU priority: {e}"))
                .ok()?;
            Guard::start(level, u64::from(cfg.ring_bytes), w.clone())
        });
        let ring = {
            let _guard = rt.enter();
            // SAFETY: the ring buffer's map fd is owned by `ring`, which the AsyncFd owns
            // for its whole lifetime; `as_raw_fd` always returns that same fd.
            unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
                .map_err(|e| RecorderError::Runtime(e.to_string()))?
        };
        let offset_ns = boot_time_offset_ns();
        let redactor = (!cfg.no_redact).then(|| Redactor::new(&cfg.redact_headers));
        let conv = Converter::new(offset_ns, redactor);
        let (tx, rx) = mpsc::channel(cfg.channel_batches);
        let (stop_tx, stop_rx) = watch::channel(false);
        let consumer = Consumer {
            cfg,
            shared: shared.clone(),
            conv,
            tx,
            ring,
            batch: Vec::new(),
            tls,
            writer,
            guard,
        };
        let task = rt.spawn(consumer.run(ebpf, stop_rx));
        Ok((
            RecorderHandle {
                shared,
                stop_tx,
                task: Some(task),
                offset_ns,
                attached,
            },
            rx,
        ))
    }
}

impl RecorderHandle {
    /// Adds a cgroup id to the filter (e.g. a new container of the targeted pod).
    pub fn add_cgroup(&self, id: u64) -> Result<()> {
        lock(&self.shared.filter).add(id)
    }

    /// Adds a cgroup directory and everything below it (rescanned periodically), e.g. the
    /// directory of a new container (`k8s::targets::TargetUpdate::Add`).
    pub fn add_cgroup_path(&self, dir: &std::path::Path) -> Result<usize> {
        lock(&self.shared.filter).add_root(dir)
    }

    /// Removes a cgroup id from the filter.
    pub fn remove_cgroup(&self, id: u64) {
        lock(&self.shared.filter).remove(id)
    }

    /// The cgroup ids being recorded.
    pub fn cgroups(&self) -> Vec<u64> {
        lock(&self.shared.filter).ids().into_iter().collect()
    }

    /// Current counters.
    pub fn stats(&self) -> Result<RecorderStats> {
        self.shared.stats()
    }

    /// Which kernel hooks are attached, e.g. `syscall tracepoints (29 events)` or
    /// `tp_btf sys_enter/sys_exit (fallback: <why>)`.
    pub fn probes_attached(&self) -> &str {
        &self.attached
    }

    /// The files (OpenSSL copies) the TLS uprobes are attached to so far, as the process
    /// they were found in names them (`--tls on`; grows as targeted processes start).
    pub fn tls_libraries(&self) -> Vec<String> {
        lock(&self.shared.tls_files).clone()
    }

    /// CLOCK_REALTIME − CLOCK_BOOTTIME used to timestamp rows.
    pub fn boot_time_offset_ns(&self) -> i64 {
        self.offset_ns
    }

    /// Whether the consumer task has ended (stop, error, or receiver dropped).
    pub fn is_finished(&self) -> bool {
        self.task.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Detaches the probes, drains what is left, sends the final batch (with final stats),
    /// closes the channel and returns the final counters. The receiver must keep being
    /// read until it closes, or this waits for channel space.
    pub async fn stop(mut self) -> Result<RecorderStats> {
        let _ = self.stop_tx.send(true);
        if let Some(task) = self.task.take() {
            match task.await {
                Ok(r) => r?,
                Err(e) => return Err(RecorderError::Runtime(format!("recorder task: {e}"))),
            }
        }
        self.shared.stats()
    }
}

impl Drop for RecorderHandle {
    fn drop(&mut self) {
        let _ = self.stop_tx.send(true);
    }
}

struct Consumer {
    cfg: RecordConfig,
    shared: Arc<Shared>,
    conv: Converter,
    tx: mpsc::Sender<Vec<Record>>,
    ring: AsyncFd<RingBuf<MapData>>,
    batch: Vec<Record>,
    /// TLS uprobes (`--tls on`), rescanned with the cgroups.
    tls: Option<crate::tls::TlsHooks>,
    /// The capture writer's priority, raised when the channel is half full.
    writer: Option<Arc<WriterPriority>>,
    /// The consumer's own priority (idle class while the ring keeps up), with the writer's.
    guard: Option<Guard>,
}

/// The capacity of the consumer's next batch after one of `last` rows, batches holding at
/// most `max`: room for as many rows as the last one had (a power of two from 256 up to
/// `max`). At a steady rate a batch then fills without growing: one that started at 256
/// rows and grew to 4,096 had copied 3,840 rows on the way, 6 % of the consumer's
/// instructions per event at nginx saturation (`examples/bench_consume`).
pub fn batch_capacity(last: usize, max: usize) -> usize {
    last.next_power_of_two().clamp(256, max.max(256))
}

/// Moves up to `max` rows' worth of events from the ring into `out`; true if `max` was hit.
fn drain_some(
    rb: &mut RingBuf<MapData>,
    conv: &mut Converter,
    out: &mut Vec<Record>,
    max: usize,
) -> bool {
    while out.len() < max {
        match rb.next() {
            Some(item) => conv.convert(&item, out),
            None => return false,
        }
    }
    true
}

impl Consumer {
    fn publish_counters(&self) {
        *lock(&self.shared.user.published) = (self.conv.counters, self.conv.redaction_counters());
    }

    /// Sends the current batch; false when the receiver is gone.
    async fn flush(&mut self) -> bool {
        if self.batch.is_empty() {
            return true;
        }
        self.publish_counters();
        let next = Vec::with_capacity(batch_capacity(self.batch.len(), self.cfg.batch_records));
        let batch = std::mem::replace(&mut self.batch, next);
        let n = batch.len() as u64;
        if let Some(w) = &self.writer {
            // the writer falls behind (or gets no CPU in the idle class): normal priority
            if self.tx.capacity() <= self.tx.max_capacity() / 2 {
                w.raise();
            }
        }
        if self.tx.send(batch).await.is_err() {
            return false;
        }
        self.shared.user.sent.fetch_add(n, Ordering::Relaxed);
        true
    }

    /// Drains the ring completely (sending full batches on the way); false when the
    /// receiver is gone.
    async fn drain_all(&mut self) -> bool {
        loop {
            let max = self.cfg.batch_records;
            let full = drain_some(self.ring.get_mut(), &mut self.conv, &mut self.batch, max);
            if !full {
                if let Some(g) = &self.guard {
                    g.priority().drained();
                }
                return true;
            }
            if !self.flush().await {
                return false;
            }
        }
    }

    async fn run(mut self, mut ebpf: aya::Ebpf, mut stop_rx: watch::Receiver<bool>) -> Result<()> {
        let mut drain = tokio::time::interval(self.cfg.drain_interval);
        let mut stats = tokio::time::interval(self.cfg.stats_interval);
        let mut rescan = tokio::time::interval(self.cfg.rescan_interval);
        // new targeted processes are looked for often when the TLS uprobes go per process
        let tls_every = self
            .tls
            .as_ref()
            .map_or(crate::tls::FILE_SCAN_INTERVAL, |t| t.scan_interval());
        let mut tls_scan = tokio::time::interval(tls_every);
        for t in [&mut drain, &mut stats, &mut rescan, &mut tls_scan] {
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        }
        let mut result = Ok(());
        loop {
            let alive = tokio::select! {
                _ = stop_rx.changed() => break,
                ready = self.ring.readable_mut() => match ready {
                    Ok(mut guard) => {
                        guard.clear_ready();
                        drop(guard);
                        self.drain_all().await
                    }
                    Err(e) => {
                        result = Err(RecorderError::Io { what: "ring buffer poll".into(), source: e });
                        break;
                    }
                },
                _ = drain.tick() => self.drain_all().await,
                _ = stats.tick() => {
                    if let Err(e) = self.shared.stat_rows(&mut self.batch) {
                        result = Err(e);
                        break;
                    }
                    if let Some(t) = &self.tls {
                        t.stat_rows(&mut self.batch);
                    }
                    true
                }
                _ = rescan.tick() => {
                    if let Err(e) = lock(&self.shared.filter).rescan() {
                        tracing::warn!("cgroup rescan failed: {e}");
                    }
                    if let Some(w) = &self.writer {
                        w.raise_if_stalled();
                    }
                    true
                }
                _ = tls_scan.tick(), if self.tls.is_some() => {
                    if let Some(t) = self.tls.as_mut() {
                        let ids = lock(&self.shared.filter).ids();
                        for h in t.rescan(&mut ebpf, &ids) {
                            lock(&self.shared.tls_files).push(h.path);
                        }
                    }
                    true
                }
            };
            if !alive || !self.flush().await {
                // The receiver is gone: nobody wants more rows.
                drop(ebpf);
                self.publish_counters();
                return Ok(());
            }
        }
        // One instant ends the recording for every syscall (see `Filter::stop_all`): from
        // here on the programs emit nothing (enter and exit both check the filter first);
        // the few that passed it just before finish writing within microseconds.
        lock(&self.shared.filter).stop_all();
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        // Detaching takes long (~50 ms per per-syscall tracepoint: the kernel waits for
        // running programs), and nothing depends on it any more: it happens on its own
        // thread while the ring is drained and the caller finishes (if the thread cannot
        // be started, the closure is dropped here and detaches at once).
        let _ = std::thread::Builder::new()
            .name("podtrace-detach".into())
            .spawn(move || drop(ebpf));
        if self.drain_all().await {
            if let Err(e) = self.shared.stat_rows(&mut self.batch) {
                tracing::warn!("final stats: {e}");
            }
            if let Some(t) = &self.tls {
                t.stat_rows(&mut self.batch);
            }
            self.flush().await;
        }
        self.publish_counters();
        result
    }
}

#[cfg(test)]
mod tests {
    use super::batch_capacity;

    #[test]
    fn a_batch_has_room_for_as_many_rows_as_the_last_one() {
        assert_eq!(batch_capacity(0, 4096), 256);
        assert_eq!(batch_capacity(3, 4096), 256);
        assert_eq!(batch_capacity(300, 4096), 512);
        assert_eq!(batch_capacity(4096, 4096), 4096);
        assert_eq!(batch_capacity(9000, 4096), 4096);
        assert_eq!(batch_capacity(10, 16), 256, "never below 256");
    }
}
