//! The span fan-out: one queue and one sending task per exporter, fed from one place.
//!
//! [`ExportFanout::offer`] hands a batch to every exporter's lane and returns at once (or,
//! with [`Overflow::Block`], when there is room): the caller — live mode's recording loop,
//! `analyze`'s writer thread — never waits for a network round trip. Each lane has its own
//! task, so a slow or hanging endpoint (timeouts × retries) delays only its own lane; the
//! others keep sending.
//!
//! Every lane is bounded in spans. What happens when a lane is full is the
//! [`Overflow`] policy: live mode drops the **oldest** queued batches (fresh spans are
//! worth more, and the recorder must never be back-pressured by a backend: that would turn
//! a backend problem into lost socket events in the kernel), counted per exporter as
//! dropped spans; `analyze` blocks (an offline analysis may slow down, it must not lose
//! spans). The give-up rule is the delivery layer's ([`crate::delivery::GiveUp`], kept per
//! exporter across calls): an exporter that has given up on its endpoint gets no more
//! calls; the spans of later batches are counted as dropped at once.
//!
//! [`ExportFanout::finish`] closes the lanes, lets them drain and flush within a grace
//! period, then stops what is still running and counts whatever it still held as dropped:
//! a hanging endpoint cannot keep the process from exiting.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use podtrace_model::Span;
use tokio::sync::Notify;

use crate::{Accounting, ExportError, Exporter, ExporterReport};

/// What [`ExportFanout::offer`] does when an exporter's lane is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// Wait until the lane has room (offline analysis: slow down, lose nothing).
    Block,
    /// Drop the oldest queued batches, counted as dropped spans (live mode: never hold the
    /// recorder back).
    DropOldest,
}

/// Settings of a fan-out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FanoutOptions {
    /// Spans queued per exporter at most (a single larger batch is still taken whole).
    pub queue_spans: usize,
    /// What happens when a lane is full.
    pub overflow: Overflow,
}

impl FanoutOptions {
    /// Live mode: 65,536 spans per exporter (about a minute of a busy pod), oldest dropped.
    pub fn live() -> Self {
        FanoutOptions {
            queue_spans: 65_536,
            overflow: Overflow::DropOldest,
        }
    }

    /// Offline analysis: a few batches per exporter, the producer waits.
    pub fn offline() -> Self {
        FanoutOptions {
            queue_spans: 16_384,
            overflow: Overflow::Block,
        }
    }
}

/// One exporter's queue and what happened to it (shared by the producer and its task).
#[derive(Debug, Default)]
struct LaneState {
    batches: VecDeque<Arc<Vec<Span>>>,
    /// Spans in `batches`.
    queued: usize,
    /// Spans of the batch being sent.
    in_flight: usize,
    /// No more batches will come.
    closed: bool,
    /// The task is done (drained and flushed, or stopped).
    done: bool,
    /// Spans offered to this exporter.
    handed: usize,
    /// Spans dropped because the lane was full.
    overflowed: u64,
    /// The endpoint is given up on: later batches are counted, not sent.
    down: bool,
    /// Spans of batches not sent because the endpoint was given up on.
    skipped: u64,
    /// The first error.
    error: Option<ExportError>,
}

#[derive(Debug, Default)]
struct Lane {
    state: Mutex<LaneState>,
    /// Wakes the lane's task (a batch came, or the lane closed).
    ready: Notify,
    /// Wakes a blocked producer (a batch left the queue).
    room: Condvar,
}

impl Lane {
    fn lock(&self) -> MutexGuard<'_, LaneState> {
        // A panicking holder cannot leave the counters half-updated in a way that matters
        // more than losing them: keep going with what is there.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The running fan-out (see the module doc).
pub struct ExportFanout {
    exporters: Vec<Arc<dyn Exporter>>,
    lanes: Vec<Arc<Lane>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    before: Vec<Accounting>,
    options: FanoutOptions,
    started: Instant,
}

impl ExportFanout {
    /// Starts one sending task per exporter on `runtime`.
    pub fn start(
        exporters: Vec<Box<dyn Exporter>>,
        options: FanoutOptions,
        runtime: &tokio::runtime::Handle,
    ) -> Self {
        let exporters: Vec<Arc<dyn Exporter>> = exporters.into_iter().map(Arc::from).collect();
        let before = exporters.iter().map(|e| e.accounting()).collect();
        let lanes: Vec<Arc<Lane>> = exporters.iter().map(|_| Arc::default()).collect();
        let tasks = exporters
            .iter()
            .zip(&lanes)
            .map(|(e, lane)| runtime.spawn(run_lane(Arc::clone(e), Arc::clone(lane))))
            .collect();
        ExportFanout {
            exporters,
            lanes,
            tasks,
            before,
            options,
            started: Instant::now(),
        }
    }

    /// True when there is no exporter (offering is then a no-op).
    pub fn is_empty(&self) -> bool {
        self.exporters.is_empty()
    }

    /// Hands `spans` to every exporter's lane. With [`Overflow::DropOldest`] this never
    /// waits; with [`Overflow::Block`] it waits (blocking the thread: call it from a plain
    /// thread, not from an async task) until every lane has room.
    pub fn offer(&self, spans: Vec<Span>) {
        if spans.is_empty() || self.lanes.is_empty() {
            return;
        }
        let n = spans.len();
        let batch = Arc::new(spans);
        for lane in &self.lanes {
            let mut st = lane.lock();
            st.handed += n;
            match self.options.overflow {
                Overflow::DropOldest => {
                    st.batches.push_back(Arc::clone(&batch));
                    st.queued += n;
                    while st.queued > self.options.queue_spans && st.batches.len() > 1 {
                        if let Some(old) = st.batches.pop_front() {
                            st.queued -= old.len();
                            st.overflowed += old.len() as u64;
                        }
                    }
                }
                Overflow::Block => {
                    while !st.done
                        && !st.batches.is_empty()
                        && st.queued + n > self.options.queue_spans
                    {
                        st = lane.room.wait(st).unwrap_or_else(|p| p.into_inner());
                    }
                    if st.done {
                        // The task ended early (it cannot: it runs until closed); count.
                        st.overflowed += n as u64;
                    } else {
                        st.batches.push_back(Arc::clone(&batch));
                        st.queued += n;
                    }
                }
            }
            drop(st);
            lane.ready.notify_one();
        }
    }

    /// Spans dropped so far because lanes were full, per exporter (in `exporters` order).
    pub fn overflowed(&self) -> Vec<u64> {
        self.lanes.iter().map(|l| l.lock().overflowed).collect()
    }

    /// Closes the lanes, waits up to `grace` for them to send what they hold and flush,
    /// stops the ones still running and reports on each exporter (in the order given to
    /// [`ExportFanout::start`]). Spans still queued or being sent when a lane is stopped
    /// count as dropped.
    pub async fn finish(self, grace: Duration) -> Vec<ExporterReport> {
        for lane in &self.lanes {
            lane.lock().closed = true;
            lane.ready.notify_one();
        }
        let deadline = tokio::time::Instant::now() + grace;
        for task in self.tasks {
            let abort = task.abort_handle();
            if tokio::time::timeout_at(deadline, task).await.is_err() {
                abort.abort();
            }
        }
        self.exporters
            .iter()
            .zip(&self.lanes)
            .zip(&self.before)
            .map(|((exporter, lane), before)| {
                let st = lane.lock();
                let mut accounting = exporter.accounting().since(before);
                accounting.dropped_spans += st.overflowed + st.skipped;
                let mut error = st.error.as_ref().map(|e| e.to_string());
                if !st.done {
                    // Stopped while sending or with batches left: they are lost.
                    let lost = st.queued + st.in_flight;
                    accounting.dropped_spans += lost as u64;
                    error.get_or_insert_with(|| {
                        format!(
                            "still sending after the {} ms shutdown grace: {lost} spans left unsent",
                            grace.as_millis()
                        )
                    });
                }
                if st.overflowed > 0 {
                    error.get_or_insert_with(|| {
                        format!(
                            "{} spans dropped: the export queue ({} spans) was full",
                            st.overflowed, self.options.queue_spans
                        )
                    });
                }
                let mut report = ExporterReport::new(
                    exporter.as_ref(),
                    st.handed,
                    accounting,
                    self.started.elapsed(),
                    None,
                );
                report.error = error;
                report
            })
            .collect()
    }
}

/// What a lane's task does next.
enum Next {
    /// Send this batch.
    Send(Arc<Vec<Span>>),
    /// Nothing queued yet.
    Wait,
    /// A batch was counted, not sent (the endpoint is given up on).
    Skipped,
    /// Closed and drained.
    End,
}

/// What the lane's task does next (decided under the lock, done outside it).
fn take_next(lane: &Lane) -> Next {
    let mut st = lane.lock();
    let next = match st.batches.pop_front() {
        Some(b) => {
            st.queued -= b.len();
            if st.down {
                st.skipped += b.len() as u64;
                Next::Skipped
            } else {
                st.in_flight = b.len();
                Next::Send(b)
            }
        }
        None if st.closed => Next::End,
        None => Next::Wait,
    };
    drop(st);
    lane.room.notify_all();
    next
}

/// One exporter's task: sends the lane's batches in order until the lane is closed and
/// empty, then flushes.
async fn run_lane(exporter: Arc<dyn Exporter>, lane: Arc<Lane>) {
    loop {
        let next = take_next(&lane);
        let batch = match next {
            Next::Send(b) => b,
            Next::Skipped => continue,
            Next::Wait => {
                lane.ready.notified().await;
                continue;
            }
            Next::End => break,
        };
        let result = exporter.export(&batch).await;
        let mut st = lane.lock();
        st.in_flight = 0;
        if let Err(e) = result {
            st.error.get_or_insert(e);
        }
        // The one give-up rule is the exporter's own (`Exporter::given_up`).
        st.down |= exporter.given_up();
    }
    let down = lane.lock().down;
    if !down {
        if let Err(e) = exporter.flush().await {
            lane.lock().error.get_or_insert(e);
        }
    }
    let mut st = lane.lock();
    st.done = true;
    lane.room.notify_all();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::file::OtlpJsonLinesExporter;
    use crate::{BoxFuture, ExportConfig, Url};
    use podtrace_model::{Resource, SpanId, SpanKind, Status, TraceId};

    fn span(n: u64) -> Span {
        Span {
            trace_id: TraceId([7; 16]),
            span_id: SpanId((n + 1).to_be_bytes()),
            parent_span_id: None,
            trace_state: String::new(),
            flags: 1,
            name: "GET /".into(),
            kind: SpanKind::Server,
            start_time_unix_nano: n,
            end_time_unix_nano: n + 1,
            attributes: vec![],
            status: Status::unset(),
            resource: Resource::new("web"),
        }
    }

    fn batch(b: u64, n: u64) -> Vec<Span> {
        (b * n..b * n + n).map(span).collect()
    }

    /// An exporter whose calls never return (an endpoint that accepts and never answers,
    /// with no timeout), counting what it was handed.
    struct Hanging;

    impl Exporter for Hanging {
        fn name(&self) -> &str {
            "hanging"
        }
        fn endpoint(&self) -> String {
            "test://hanging".into()
        }
        fn export<'a>(&'a self, _spans: &'a [Span]) -> BoxFuture<'a, Result<(), ExportError>> {
            Box::pin(std::future::pending())
        }
        fn flush(&self) -> BoxFuture<'_, Result<(), ExportError>> {
            Box::pin(std::future::pending())
        }
        fn accounting(&self) -> Accounting {
            Accounting::default()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_hanging_exporter_neither_blocks_the_producer_nor_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl");
        let exporters: Vec<Box<dyn Exporter>> = vec![
            Box::new(Hanging),
            Box::new(OtlpJsonLinesExporter::open(&path).unwrap()),
        ];
        let options = FanoutOptions {
            queue_spans: 1000,
            overflow: Overflow::DropOldest,
        };
        let fanout = ExportFanout::start(exporters, options, &tokio::runtime::Handle::current());
        let offered = Instant::now();
        for b in 0..50 {
            fanout.offer(batch(b, 10));
        }
        assert!(
            offered.elapsed() < Duration::from_secs(1),
            "offer never waits for a backend"
        );
        let reports = fanout.finish(Duration::from_millis(500)).await;
        let (hanging, file) = (&reports[0], &reports[1]);
        assert!(file.is_ok(), "{file}");
        assert_eq!((file.spans, file.accounting.spans_sent), (500, 500));
        // The hanging lane: one batch stuck in flight, the rest queued; stopped after the
        // grace period, every span is accounted for as dropped.
        assert_eq!(hanging.spans, 500);
        assert_eq!(hanging.accounting.spans_sent, 0);
        assert_eq!(hanging.accounting.dropped_spans, 500, "{hanging}");
        assert!(!hanging.is_ok());
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 50, "one request per batch, in order");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn drop_oldest_keeps_the_newest_batches() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl");
        let file = OtlpJsonLinesExporter::open(&path).unwrap();
        let options = FanoutOptions {
            queue_spans: 30,
            overflow: Overflow::DropOldest,
        };
        // The lane's task cannot run before the producer is done: a current-thread
        // runtime that is not polled while offering.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let fanout = ExportFanout::start(vec![Box::new(file)], options, rt.handle());
        for b in 0..10 {
            fanout.offer(batch(b, 10));
        }
        assert_eq!(fanout.overflowed(), vec![70]);
        let reports =
            std::thread::spawn(move || rt.block_on(fanout.finish(Duration::from_secs(5))))
                .join()
                .unwrap();
        let r = &reports[0];
        assert_eq!((r.spans, r.accounting.spans_sent), (100, 30));
        assert_eq!(r.accounting.dropped_spans, 70);
        assert!(!r.is_ok() && r.error.as_deref().unwrap_or("").contains("queue"));
        let text = std::fs::read_to_string(&path).unwrap();
        let firsts: Vec<u64> = text
            .lines()
            .map(|l| {
                crate::otlp::from_json(l).unwrap().resource_spans[0].scope_spans[0].spans[0]
                    .start_time_unix_nano
            })
            .collect();
        assert_eq!(firsts, vec![70, 80, 90], "the newest three batches");
    }

    #[test]
    fn block_waits_for_room_and_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl");
        let file = OtlpJsonLinesExporter::open(&path).unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let options = FanoutOptions {
            queue_spans: 20,
            overflow: Overflow::Block,
        };
        let fanout = ExportFanout::start(vec![Box::new(file)], options, rt.handle());
        for b in 0..100 {
            fanout.offer(batch(b, 10));
        }
        let reports = rt.block_on(fanout.finish(Duration::from_secs(10)));
        let r = &reports[0];
        assert!(r.is_ok(), "{r}");
        assert_eq!((r.spans, r.accounting.spans_sent), (1000, 1000));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dead_endpoint_is_given_up_and_every_span_counted() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = ExportConfig {
            otlp: Some(Url::parse(&format!("http://127.0.0.1:{port}")).unwrap()),
            ..ExportConfig::default()
        };
        let exporters = crate::build_exporters(&config).unwrap();
        let fanout = ExportFanout::start(
            exporters,
            FanoutOptions::live(),
            &tokio::runtime::Handle::current(),
        );
        for b in 0..5 {
            fanout.offer(batch(b, 100));
        }
        let reports = fanout.finish(Duration::from_secs(30)).await;
        let r = &reports[0];
        assert_eq!(r.spans, 500);
        assert_eq!(r.accounting.spans_sent, 0);
        assert_eq!(r.accounting.dropped_spans, 500, "{r}");
        assert!(
            r.accounting.requests <= 1 + u64::from(ExportConfig::default().delivery.max_retries),
            "later batches were not sent: {r}"
        );
    }
}
