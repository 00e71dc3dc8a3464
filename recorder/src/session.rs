//! One recording session, shared by `record` and live mode: [`Session`].
//!
//! A session starts the [`Recorder`] (probes, channel), merges in the rows of an optional
//! second source (Kubernetes objects from the snapshotter), counts what passes, ticks at a
//! fixed period, and ends on the first of: the caller's shutdown future (SIGINT/SIGTERM,
//! see [`shutdown_signals`]), `limits.duration`, `limits.max_events` (socket events), the
//! recorder ending on its own, or the caller's [`Session::stop`] (e.g. `--max-size`, which
//! only the capture writer can measure). Stopping keeps reading the recorder's channel
//! while the probes detach, so the final batch (remaining events and final counters) is
//! handed out too.
//!
//! The caller pulls [`SessionEvent`]s with [`Session::next`] until it returns `None`, and
//! decides what rows become: `record` writes them to a capture file
//! ([`record_to_file`](crate::record_to_file)); live mode feeds the analyzer (and, with
//! `--save`, a [`CaptureSink`](crate::file::CaptureSink) as well).
//!
//! `--max-events N` keeps exactly the first N socket events (data, open, close rows) of
//! the recording, whoever consumes them; socket events that arrive after the Nth (a batch
//! in flight, the final drain) are left out and counted
//! ([`SessionSummary::beyond_max_events`]). Stats and Kubernetes rows are never cut.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use podtrace_format::model::Record;
use tokio::sync::mpsc;

use crate::config::{Limits, RecordConfig};
use crate::error::Result;
use crate::file::{Progress, StopReason};
use crate::priority::WriterPriority;
use crate::recorder::{Recorder, RecorderHandle, RecorderStats};

/// What [`Session::next`] hands out.
#[derive(Debug)]
pub enum SessionEvent {
    /// Rows from the recorder (socket events and `stats` rows), in order.
    Rows(Vec<Record>),
    /// Rows from the second source (Kubernetes objects).
    Extra(Vec<Record>),
    /// The periodic tick, with the session's progress (`file_bytes` is 0: only a capture
    /// writer knows it).
    Tick(Progress),
}

/// The counters of a finished session.
#[derive(Debug, Clone)]
pub struct SessionSummary {
    /// The recorder's final counters.
    pub stats: RecorderStats,
    /// Rows handed out from the recorder (socket events and stats rows).
    pub rows: u64,
    /// Socket events (data, open, close rows) handed out.
    pub socket_events: u64,
    /// Payload bytes of the socket data rows handed out.
    pub payload_bytes: u64,
    /// Rows handed out from the second source.
    pub extra_rows: u64,
    /// Socket events left out because `limits.max_events` was reached.
    pub beyond_max_events: u64,
    /// Why the session stopped.
    pub reason: StopReason,
    /// How long it ran.
    pub elapsed: Duration,
}

type StopFuture = Pin<Box<dyn Future<Output = Result<RecorderStats>> + Send>>;

/// Where a session is in its life.
enum Phase {
    /// Recording.
    Running(RecorderHandle),
    /// The probes are detaching; the channel is still read.
    Stopping(StopFuture),
    /// The recorder has stopped; what is left in the channels is handed out.
    Stopped(RecorderStats),
    /// Everything was handed out.
    Done(RecorderStats),
}

/// What passed through a session so far, and the `max_events` cut.
#[derive(Debug, Clone, Default)]
struct Counts {
    max_events: Option<u64>,
    rows: u64,
    socket_events: u64,
    payload_bytes: u64,
    extra_rows: u64,
    beyond_max_events: u64,
}

impl Counts {
    /// Counts a batch of the recorder, leaving out socket events beyond `max_events`.
    fn take(&mut self, mut batch: Vec<Record>) -> Vec<Record> {
        let room = self
            .max_events
            .map_or(u64::MAX, |m| m.saturating_sub(self.socket_events));
        let events = batch.iter().filter(|r| is_socket_event(r)).count() as u64;
        if events > room {
            let mut kept = 0u64;
            batch.retain(|r| {
                if !is_socket_event(r) {
                    return true;
                }
                kept += 1;
                kept <= room
            });
            self.beyond_max_events += events - room;
        }
        for r in &batch {
            match r {
                Record::SocketData(d) => {
                    self.socket_events += 1;
                    self.payload_bytes += d.payload.len() as u64;
                }
                Record::SocketOpen(_) | Record::SocketClose(_) => self.socket_events += 1,
                _ => {}
            }
        }
        self.rows += batch.len() as u64;
        batch
    }

    /// Whether `max_events` socket events have been handed out.
    fn limit_reached(&self) -> bool {
        self.max_events.is_some_and(|m| self.socket_events >= m)
    }
}

/// A running recording session (see the module documentation).
pub struct Session<F> {
    phase: Phase,
    rx: mpsc::Receiver<Vec<Record>>,
    rx_open: bool,
    extra: Option<mpsc::Receiver<Vec<Record>>>,
    shutdown: Pin<Box<F>>,
    deadline: Pin<Box<tokio::time::Sleep>>,
    has_deadline: bool,
    tick: tokio::time::Interval,
    probes: String,
    reason: Option<StopReason>,
    started: Instant,
    last: (Instant, u64),
    counts: Counts,
}

/// Whether a row is a socket event (data, open, close): what `--max-events` counts.
pub fn is_socket_event(r: &Record) -> bool {
    matches!(
        r,
        Record::SocketData(_) | Record::SocketOpen(_) | Record::SocketClose(_)
    )
}

/// A batch that is not empty, as an event.
fn rows(batch: Vec<Record>) -> Option<SessionEvent> {
    (!batch.is_empty()).then_some(SessionEvent::Rows(batch))
}

impl<F: Future<Output = ()>> Session<F> {
    /// Starts the recorder for `cfg` (must be called inside a tokio runtime). `extra` is a
    /// second source of rows (Kubernetes objects); `shutdown` ends the session when it
    /// completes; a [`SessionEvent::Tick`] comes every `tick`.
    pub fn start(
        cfg: RecordConfig,
        extra: Option<mpsc::Receiver<Vec<Record>>>,
        shutdown: F,
        tick: Duration,
    ) -> Result<Self> {
        Self::start_with(cfg, extra, shutdown, tick, None)
    }

    /// [`Session::start`] with the capture writer's priority for the recorder's consumer
    /// to raise when the writer falls behind ([`Recorder::start_with`]).
    pub fn start_with(
        cfg: RecordConfig,
        extra: Option<mpsc::Receiver<Vec<Record>>>,
        shutdown: F,
        tick: Duration,
        writer: Option<Arc<WriterPriority>>,
    ) -> Result<Self> {
        cfg.validate()?;
        let Limits {
            duration,
            max_events,
            ..
        } = cfg.limits;
        let (handle, rx) = Recorder::start_with(cfg, writer)?;
        let now = tokio::time::Instant::now();
        // Without a duration limit the deadline is never polled (`has_deadline`).
        let deadline = now + duration.unwrap_or(Duration::from_secs(86_400));
        let mut tick = tokio::time::interval_at(now + tick, tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Ok(Session {
            probes: handle.probes_attached().to_string(),
            phase: Phase::Running(handle),
            rx,
            rx_open: true,
            extra,
            shutdown: Box::pin(shutdown),
            deadline: Box::pin(tokio::time::sleep_until(deadline)),
            has_deadline: duration.is_some(),
            tick,
            reason: None,
            started: Instant::now(),
            last: (Instant::now(), 0),
            counts: Counts {
                max_events,
                ..Counts::default()
            },
        })
    }

    /// Batches of the recorder waiting in the channel (0: the reader has caught up).
    pub fn backlog(&self) -> usize {
        self.rx.len()
    }

    /// Which kernel hooks are attached ([`RecorderHandle::probes_attached`]).
    pub fn probes_attached(&self) -> &str {
        &self.probes
    }

    /// Begins stopping for `reason` (ignored once the session is stopping). Keep calling
    /// [`Session::next`] until it returns `None`: the final rows still come.
    pub fn stop(&mut self, reason: StopReason) {
        let phase = std::mem::replace(&mut self.phase, Phase::Done(RecorderStats::default()));
        self.phase = match phase {
            Phase::Running(handle) => {
                self.reason = Some(reason);
                Phase::Stopping(Box::pin(handle.stop()))
            }
            other => other,
        };
    }

    /// The next event; `Ok(None)` once the session has stopped and every row was handed
    /// out. An error of the recorder (while running or stopping) ends the session.
    pub async fn next(&mut self) -> Result<Option<SessionEvent>> {
        loop {
            match &mut self.phase {
                Phase::Running(_) => {
                    tokio::select! {
                        _ = &mut self.shutdown => self.stop(StopReason::Shutdown),
                        _ = &mut self.deadline, if self.has_deadline => self.stop(StopReason::Duration),
                        batch = self.rx.recv() => match batch {
                            Some(batch) => {
                                let batch = self.counts.take(batch);
                                if self.counts.limit_reached() {
                                    self.stop(StopReason::MaxEvents);
                                }
                                if let Some(event) = rows(batch) {
                                    return Ok(Some(event));
                                }
                            }
                            None => {
                                self.rx_open = false;
                                self.stop(StopReason::RecorderEnded);
                            }
                        },
                        batch = async {
                            match self.extra.as_mut() {
                                Some(x) => x.recv().await,
                                None => std::future::pending().await,
                            }
                        } => match batch {
                            Some(batch) => {
                                self.counts.extra_rows += batch.len() as u64;
                                return Ok(Some(SessionEvent::Extra(batch)));
                            }
                            None => self.extra = None,
                        },
                        _ = self.tick.tick() => {
                            if let Phase::Running(handle) = &self.phase {
                                let dropped = handle.stats()?.total_dropped();
                                return Ok(Some(SessionEvent::Tick(self.progress(dropped))));
                            }
                        }
                    }
                }
                Phase::Stopping(stopping) => {
                    // The recorder flushes its last batches while stopping: not reading
                    // the channel would deadlock on a full channel.
                    tokio::select! {
                        stats = stopping => self.phase = Phase::Stopped(stats?),
                        batch = self.rx.recv(), if self.rx_open => match batch {
                            Some(batch) => {
                                if let Some(event) = rows(self.counts.take(batch)) {
                                    return Ok(Some(event));
                                }
                            }
                            None => self.rx_open = false,
                        },
                    }
                }
                Phase::Stopped(stats) => {
                    if self.rx_open {
                        match self.rx.recv().await {
                            Some(batch) => {
                                if let Some(event) = rows(self.counts.take(batch)) {
                                    return Ok(Some(event));
                                }
                            }
                            None => self.rx_open = false,
                        }
                        continue;
                    }
                    if let Some(x) = self.extra.as_mut() {
                        if let Ok(batch) = x.try_recv() {
                            self.counts.extra_rows += batch.len() as u64;
                            return Ok(Some(SessionEvent::Extra(batch)));
                        }
                        self.extra = None;
                    }
                    let stats = stats.clone();
                    self.phase = Phase::Done(stats);
                }
                Phase::Done(_) => return Ok(None),
            }
        }
    }

    /// The counters once [`Session::next`] returned `None` (before that, the recorder's
    /// counters are not final and are reported as zero).
    pub fn finish(self) -> SessionSummary {
        let stats = match self.phase {
            Phase::Done(stats) | Phase::Stopped(stats) => stats,
            Phase::Running(_) | Phase::Stopping(_) => RecorderStats::default(),
        };
        let c = self.counts;
        SessionSummary {
            stats,
            rows: c.rows,
            socket_events: c.socket_events,
            payload_bytes: c.payload_bytes,
            extra_rows: c.extra_rows,
            beyond_max_events: c.beyond_max_events,
            reason: self.reason.unwrap_or(StopReason::RecorderEnded),
            elapsed: self.started.elapsed(),
        }
    }

    fn progress(&mut self, dropped: u64) -> Progress {
        let now = Instant::now();
        let events = self.counts.socket_events;
        let dt = now.duration_since(self.last.0).as_secs_f64();
        let rate = if dt > 0.0 {
            (events - self.last.1) as f64 / dt
        } else {
            0.0
        };
        self.last = (now, events);
        Progress {
            elapsed: self.started.elapsed(),
            events,
            events_per_sec: rate,
            payload_bytes: self.counts.payload_bytes,
            file_bytes: 0,
            dropped,
            probes: self.probes.clone(),
        }
    }
}

/// Installs the SIGINT/SIGTERM handlers now (so a signal during start-up — resolving pods,
/// loading probes — no longer kills the process) and returns a future that completes on
/// the first of them: the usual `shutdown` of a [`Session`]. Must be called inside a tokio
/// runtime.
pub fn shutdown_signals() -> std::io::Result<impl Future<Output = ()> + Send> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use podtrace_format::model::{Direction, Role, SocketData, SocketEvent, SocketMeta, Stat};

    fn meta() -> SocketMeta {
        SocketMeta {
            ts_ns: 1,
            cpu: 0,
            pid: 1,
            tid: 1,
            comm: "t".into(),
            cgroup_id: 1,
            conn_id: 1,
            local: None,
            remote: None,
        }
    }

    fn data(n: usize) -> Record {
        Record::SocketData(SocketData {
            meta: meta(),
            direction: Direction::Egress,
            syscall: "write".into(),
            ret: n as i64,
            payload: vec![0; n],
            flags: 0,
        })
    }

    fn open() -> Record {
        Record::SocketOpen(SocketEvent {
            meta: meta(),
            role: Role::Client,
            syscall: "connect".into(),
        })
    }

    fn stat() -> Record {
        Record::Stats(Stat {
            ts_ns: 0,
            cpu: None,
            name: "events_seen".into(),
            value: 1,
        })
    }

    #[test]
    fn counts_socket_events_rows_and_payload() {
        let mut c = Counts::default();
        let out = c.take(vec![open(), data(3), stat(), data(5)]);
        assert_eq!(out.len(), 4);
        assert_eq!(
            (
                c.rows,
                c.socket_events,
                c.payload_bytes,
                c.beyond_max_events
            ),
            (4, 3, 8, 0)
        );
        assert!(!c.limit_reached());
    }

    /// `max_events` keeps exactly the first N socket events, however the batches fall, and
    /// never cuts stats rows; what is left out is counted.
    #[test]
    fn max_events_keeps_exactly_n_socket_events() {
        for split in 1..=7 {
            let mut c = Counts {
                max_events: Some(4),
                ..Counts::default()
            };
            let all: Vec<Record> = (0..7).flat_map(|i| [data(i + 1), stat()]).collect();
            let mut kept = Vec::new();
            for chunk in all.chunks(split) {
                kept.extend(c.take(chunk.to_vec()));
            }
            let socket = kept.iter().filter(|r| is_socket_event(r)).count();
            assert_eq!(socket, 4, "batches of {split}");
            assert_eq!(
                kept.iter()
                    .filter(|r| matches!(r, Record::Stats(_)))
                    .count(),
                7
            );
            assert_eq!(c.socket_events, 4);
            assert_eq!(c.beyond_max_events, 3);
            assert_eq!(c.payload_bytes, 1 + 2 + 3 + 4, "the first four in order");
            assert!(c.limit_reached());
        }
    }

    #[test]
    fn stats_and_k8s_rows_are_not_socket_events() {
        assert!(is_socket_event(&data(1)));
        assert!(is_socket_event(&open()));
        assert!(!is_socket_event(&stat()));
    }
}
