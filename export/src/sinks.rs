//! Where spans go while an analysis (offline or live) is still running: [`SpanSinks`], the
//! one span fan-out of `analyze` and live mode.
//!
//! The producer (the analyzer's batch callback in `analyze`, the live loop's flush tick)
//! hands each batch of completed spans to [`SpanSinks::send`]. A writer thread takes it and
//!
//! 1. appends it to every local file ([`SpanFile`]: `traces.otlp.json`, `spans.json`, the
//!    spans Parquet table), the files side by side on scoped threads, the JSON files'
//!    1,024-span chunks encoded on the rayon pool and written in order;
//! 2. shows it to the observer ([`SpanObserver`], the report's bounded trace collector),
//!    on a scoped thread beside the files;
//! 3. offers it to the exporters ([`ExportFanout`]: one bounded lane and task per exporter;
//!    blocking lanes for `analyze`, drop-oldest lanes for live mode, the one give-up rule
//!    of [`crate::delivery::GiveUp`]).
//!
//! Nothing keeps every span: memory is bounded by the producer's window, the batches in
//! flight to the writer ([`SinkOptions::queue_batches`]) and the exporters' lanes.
//! [`SpanSinks::finish`] finishes the files, lets the exporters drain within
//! [`SinkOptions::grace`] and returns a [`SinkOutput`]: the files written, one
//! [`ExporterReport`] per exporter (the same `export:` lines for `analyze` and live mode,
//! [`SinkOutput::export_lines`]) and the one exit rule ([`exports_succeeded`]).
//! [`SpanSinks::abandon`] stops without finishing: unfinished files are removed.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use podtrace_model::Span;

use crate::chunked::ChunkBuffers;
use crate::file::{OtlpJsonWriter, StagedFile};
use crate::spans_parquet::SpansParquetWriter;
use crate::{ExportError, ExportFanout, Exporter, ExporterReport, FanoutOptions};

/// A local file fed batch by batch, completed (renamed into place) at the end; dropped
/// unfinished, it leaves nothing behind.
pub trait SpanFile: Send {
    /// Appends a batch.
    fn write(&mut self, spans: &[Span]) -> Result<(), ExportError>;
    /// Completes the file; returns its path.
    fn finish(self: Box<Self>) -> Result<PathBuf, ExportError>;
}

impl SpanFile for OtlpJsonWriter {
    fn write(&mut self, spans: &[Span]) -> Result<(), ExportError> {
        OtlpJsonWriter::write(self, spans)
    }

    fn finish(self: Box<Self>) -> Result<PathBuf, ExportError> {
        let path = self.path().to_path_buf();
        OtlpJsonWriter::finish(*self)?;
        Ok(path)
    }
}

impl SpanFile for SpansParquetWriter {
    fn write(&mut self, spans: &[Span]) -> Result<(), ExportError> {
        SpansParquetWriter::write(self, spans)
    }

    fn finish(self: Box<Self>) -> Result<PathBuf, ExportError> {
        Ok(SpansParquetWriter::finish(*self)?.path)
    }
}

/// The local files of an analysis in `dir`, in this order: `spans.json`
/// ([`crate::SPANS_JSON_FILE`], with `spans_json`), `traces.otlp.json`
/// ([`crate::DEFAULT_OTLP_JSON_FILE`]) and, with `spans_parquet`, the spans table
/// ([`crate::spans_parquet::spans_parquet_path`]: a directory gets `spans.parquet`).
pub fn local_files(
    dir: &std::path::Path,
    spans_json: bool,
    spans_parquet: Option<&std::path::Path>,
) -> Result<Vec<Box<dyn SpanFile>>, ExportError> {
    let mut files: Vec<Box<dyn SpanFile>> = Vec::with_capacity(3);
    if spans_json {
        files.push(Box::new(SpansJsonWriter::create(
            dir.join(crate::SPANS_JSON_FILE),
        )?));
    }
    files.push(Box::new(OtlpJsonWriter::create(
        dir.join(crate::DEFAULT_OTLP_JSON_FILE),
    )?));
    if let Some(arg) = spans_parquet {
        files.push(Box::new(SpansParquetWriter::create(
            crate::spans_parquet::spans_parquet_path(arg),
        )?));
    }
    Ok(files)
}

/// Sees every batch besides the files (the report's trace collector); `()` sees nothing.
pub trait SpanObserver: Send + 'static {
    /// Looks at a batch.
    fn observe(&mut self, spans: &[Span]);

    /// Called once on a thread of its own after the last batch, while the writer finishes
    /// the files (their commits) and the exporters drain: work the observer has to do at
    /// the end anyway runs beside them instead of after. Does nothing by default.
    fn end(&mut self) {}
}

impl SpanObserver for () {
    fn observe(&mut self, _spans: &[Span]) {}
}

/// Settings of [`SpanSinks`].
#[derive(Debug, Clone)]
pub struct SinkOptions {
    /// Batches in flight between the producer and the writer thread ([`SpanSinks::send`]
    /// waits while they are all taken).
    pub queue_batches: usize,
    /// The exporters' lanes (size, overflow policy).
    pub fanout: FanoutOptions,
    /// After the last batch, how long the exporters may take to send what they hold; what
    /// is left then is counted as dropped.
    pub grace: Duration,
    /// Where the exporters' tasks run; `None`: the writer thread builds a runtime of its
    /// own when there are exporters.
    pub runtime: Option<tokio::runtime::Handle>,
}

impl SinkOptions {
    /// `analyze`: blocking lanes (slow down, lose nothing); each request is bounded by its
    /// timeout and retries and a dead endpoint is given up on, so the 600 s grace only caps
    /// a pathological case.
    pub fn offline() -> Self {
        SinkOptions {
            queue_batches: 4,
            fanout: FanoutOptions::offline(),
            grace: Duration::from_secs(600),
            runtime: None,
        }
    }

    /// Live mode: drop-oldest lanes (a backend never holds the recorder back), a 5 s grace
    /// at the end (a hanging endpoint must not keep the process running), the exporters on
    /// `runtime`.
    pub fn live(runtime: tokio::runtime::Handle) -> Self {
        SinkOptions {
            queue_batches: 4,
            fanout: FanoutOptions::live(),
            grace: Duration::from_secs(5),
            runtime: Some(runtime),
        }
    }
}

/// What the sinks produced once every batch is through.
#[derive(Debug)]
pub struct SinkOutput<O> {
    /// Spans handed to the sinks.
    pub spans: u64,
    /// Files completed, in the order given to [`SpanSinks::start`].
    pub written: Vec<PathBuf>,
    /// One report per exporter, in the order given.
    pub reports: Vec<ExporterReport>,
    /// The observer, with everything it saw.
    pub observer: O,
}

impl<O> SinkOutput<O> {
    /// The per-exporter summary lines, the same in `analyze` and live mode:
    /// `export: otlp → http://…: 120/120 spans sent, …`.
    pub fn export_lines(&self) -> Vec<String> {
        export_lines(&self.reports)
    }
}

/// One summary line per exporter report, the same in `analyze` and live mode:
/// `export: otlp → http://…: 120/120 spans sent, …`.
pub fn export_lines(reports: &[ExporterReport]) -> Vec<String> {
    reports.iter().map(|r| format!("export: {r}")).collect()
}

/// The one summary rule for exit codes: the run succeeded when every exporter delivered
/// everything it was handed (or failures are allowed, `--allow-export-failures`).
pub fn exports_succeeded(reports: &[ExporterReport], allow_failures: bool) -> bool {
    allow_failures || reports.iter().all(ExporterReport::is_ok)
}

/// Why the sinks failed.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// A file could not be written, or an exporter could not be set up.
    #[error(transparent)]
    Export(#[from] ExportError),
    /// The writer thread could not be started, or its runtime not built.
    #[error("starting the span writer: {0}")]
    Start(std::io::Error),
    /// A writer panicked (a bug).
    #[error("the {0} panicked")]
    Panicked(&'static str),
    /// [`SpanSinks::abandon`] was called.
    #[error("the analysis was abandoned")]
    Abandoned,
}

/// The writer thread stopped early (a file could not be written); [`SpanSinks::finish`]
/// says why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SinkStopped;

/// The running sinks (see the module documentation).
pub struct SpanSinks<O> {
    tx: SyncSender<Vec<Span>>,
    writer: JoinHandle<Result<SinkOutput<O>, SinkError>>,
    abandoned: Arc<AtomicBool>,
    overflowed: Arc<AtomicU64>,
}

impl<O: SpanObserver> SpanSinks<O> {
    /// Starts the writer thread feeding `files`, `observer` and `exporters`.
    pub fn start(
        files: Vec<Box<dyn SpanFile>>,
        observer: O,
        exporters: Vec<Box<dyn Exporter>>,
        options: SinkOptions,
    ) -> Result<Self, SinkError> {
        // The exporters' runtime: the caller's, or one of our own (kept by the thread).
        let (own_runtime, runtime) = match (&options.runtime, exporters.is_empty()) {
            (_, true) => (None, None),
            (Some(handle), false) => (None, Some(handle.clone())),
            (None, false) => {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("podtrace-export")
                    .enable_all()
                    .build()
                    .map_err(SinkError::Start)?;
                let handle = rt.handle().clone();
                (Some(rt), Some(handle))
            }
        };
        let (tx, rx) = sync_channel::<Vec<Span>>(options.queue_batches.max(1));
        let abandoned = Arc::new(AtomicBool::new(false));
        let overflowed = Arc::new(AtomicU64::new(0));
        let (stop, overflow_count) = (Arc::clone(&abandoned), Arc::clone(&overflowed));
        let writer = std::thread::Builder::new()
            .name("podtrace-sinks".into())
            .spawn(move || {
                let mut files = files;
                let mut observer = observer;
                let fanout = runtime
                    .as_ref()
                    .map(|rt| ExportFanout::start(exporters, options.fanout, rt));
                let mut spans = 0u64;
                std::thread::scope(|s| {
                    let mut writers = BatchWriters::start(s, &mut files, &mut observer)?;
                    let looped = rx.iter().try_for_each(|batch| {
                        let batch = writers.write(batch)?;
                        spans += batch.len() as u64;
                        if let Some(fanout) = &fanout {
                            fanout.offer(batch);
                            overflow_count
                                .store(fanout.overflowed().iter().sum(), Ordering::Relaxed);
                        }
                        Ok(())
                    });
                    // joined whatever happened: a helper that panicked is reported, not
                    // re-raised by the scope
                    let stopped = writers.stop();
                    looped.and(stopped)
                })?;
                if stop.load(Ordering::SeqCst) {
                    // Dropping the files removes their temporary files.
                    return Err(SinkError::Abandoned);
                }
                let (reports, written) = std::thread::scope(|s| {
                    let ending = s.spawn(|| observer.end());
                    let reports = match (fanout, &runtime) {
                        (Some(fanout), Some(rt)) => rt.block_on(fanout.finish(options.grace)),
                        _ => Vec::new(),
                    };
                    let written = files
                        .into_iter()
                        .map(|f| f.finish())
                        .collect::<Result<Vec<_>, _>>();
                    let ended = ending
                        .join()
                        .map_err(|_| SinkError::Panicked("span observer"));
                    written
                        .map_err(SinkError::from)
                        .and_then(|w| ended.map(|()| (reports, w)))
                })?;
                drop(own_runtime);
                Ok(SinkOutput {
                    spans,
                    written,
                    reports,
                    observer,
                })
            })
            .map_err(SinkError::Start)?;
        Ok(SpanSinks {
            tx,
            writer,
            abandoned,
            overflowed,
        })
    }

    /// Hands a batch to the writer (waits while every slot of the queue is taken).
    pub fn send(&self, spans: Vec<Span>) -> Result<(), SinkStopped> {
        if spans.is_empty() {
            return Ok(());
        }
        self.tx.send(spans).map_err(|_| SinkStopped)
    }

    /// Spans the exporters' lanes dropped so far because they were full (summed over the
    /// exporters; live mode warns once it is not zero).
    pub fn overflowed(&self) -> u64 {
        self.overflowed.load(Ordering::Relaxed)
    }

    /// Stops without finishing the files (the analysis failed): no half output is left
    /// where a complete one is expected.
    pub fn abandon(self) {
        self.abandoned.store(true, Ordering::SeqCst);
        drop(self.tx);
        let _ = self.writer.join();
    }

    /// Waits until every batch is written and exported (blocking: from async code, call it
    /// inside `tokio::task::block_in_place`); the writer's error if it failed.
    pub fn finish(self) -> Result<SinkOutput<O>, SinkError> {
        drop(self.tx);
        self.writer
            .join()
            .map_err(|_| SinkError::Panicked("span writer thread"))?
    }
}

/// Writes each batch to every file and shows it to the observer, side by side: the first
/// file on the writer thread, the other files and the observer on helper threads started
/// once for the whole run (one each, scoped to the writer's loop). A thread started per
/// batch instead (two per batch with `spans.json`: over a thousand on the bench capture)
/// paid its stack's mapping and unmapping — a TLB shootdown on every other core — and a
/// fresh allocator heap, abandoned at its exit with the observer's allocations in it.
enum BatchWriters<'scope, 'env, O> {
    /// No file (live mode): the observer looks at each batch on the writer thread.
    Inline(&'env mut O),
    /// The first file written on the writer thread; the helpers, the observer's first,
    /// then the files after the first in order.
    Split {
        first: &'env mut Box<dyn SpanFile>,
        helpers: Vec<Helper<'scope>>,
    },
}

/// One helper thread: batches in, one result per batch out.
struct Helper<'scope> {
    /// What it is, for [`SinkError::Panicked`].
    what: &'static str,
    input: SyncSender<Arc<Vec<Span>>>,
    output: std::sync::mpsc::Receiver<Result<(), SinkError>>,
    handle: std::thread::ScopedJoinHandle<'scope, ()>,
}

impl<'scope, 'env: 'scope, O: SpanObserver> BatchWriters<'scope, 'env, O> {
    /// Starts the helpers on `scope`.
    fn start(
        scope: &'scope std::thread::Scope<'scope, 'env>,
        files: &'env mut [Box<dyn SpanFile>],
        observer: &'env mut O,
    ) -> Result<Self, SinkError> {
        let Some((first, rest)) = files.split_first_mut() else {
            return Ok(BatchWriters::Inline(observer));
        };
        let mut helpers = Vec::with_capacity(1 + rest.len());
        helpers.push(Helper::start(scope, "span observer", move |b| {
            observer.observe(b);
            Ok(())
        })?);
        for file in rest {
            helpers.push(Helper::start(scope, "span file writer", move |b| {
                file.write(b).map_err(SinkError::from)
            })?);
        }
        Ok(BatchWriters::Split { first, helpers })
    }

    /// Writes and shows one batch; hands it back for the exporters. On failure, the first
    /// error in the order: first file, observer, other files.
    fn write(&mut self, batch: Vec<Span>) -> Result<Vec<Span>, SinkError> {
        let (first, helpers) = match self {
            BatchWriters::Inline(observer) => {
                observer.observe(&batch);
                return Ok(batch);
            }
            BatchWriters::Split { first, helpers } => (first, helpers),
        };
        let shared = Arc::new(batch);
        let handed: Vec<bool> = helpers
            .iter()
            .map(|helper| helper.input.send(Arc::clone(&shared)).is_ok())
            .collect();
        let mut result = first.write(&shared).map_err(SinkError::from);
        for (helper, handed) in helpers.iter().zip(handed) {
            // A helper that is gone (it panicked) took no batch and sends no result.
            let done = match handed.then(|| helper.output.recv()) {
                Some(Ok(done)) => done,
                _ => Err(SinkError::Panicked(helper.what)),
            };
            if result.is_ok() {
                result = done;
            }
        }
        result?;
        // Every helper dropped its handle on the batch before answering.
        Ok(Arc::try_unwrap(shared).unwrap_or_else(|shared| shared.as_ref().clone()))
    }

    /// Stops the helpers (their threads end with their input) and joins them.
    fn stop(self) -> Result<(), SinkError> {
        let BatchWriters::Split { helpers, .. } = self else {
            return Ok(());
        };
        let mut result = Ok(());
        for helper in helpers {
            let Helper {
                what,
                input,
                output,
                handle,
            } = helper;
            drop(input);
            drop(output);
            if handle.join().is_err() && result.is_ok() {
                result = Err(SinkError::Panicked(what));
            }
        }
        result
    }
}

impl<'scope> Helper<'scope> {
    /// A thread on `scope` running `job` on every batch it is sent, answering each.
    fn start<'env, F>(
        scope: &'scope std::thread::Scope<'scope, 'env>,
        what: &'static str,
        mut job: F,
    ) -> Result<Self, SinkError>
    where
        F: FnMut(&[Span]) -> Result<(), SinkError> + Send + 'scope,
    {
        let (input, batches) = sync_channel::<Arc<Vec<Span>>>(1);
        let (answer, output) = sync_channel::<Result<(), SinkError>>(1);
        let handle = std::thread::Builder::new()
            .name("podtrace-sinks".into())
            .spawn_scoped(scope, move || {
                for batch in batches {
                    let done = job(&batch);
                    drop(batch);
                    if answer.send(done).is_err() {
                        break;
                    }
                }
            })
            .map_err(SinkError::Start)?;
        Ok(Helper {
            what,
            input,
            output,
            handle,
        })
    }
}

/// `spans.json`: a JSON array of [`Span`]s, one span per line, written batch by batch as a
/// [`StagedFile`] (renamed into place at the end, removed when dropped unfinished).
pub struct SpansJsonWriter {
    file: StagedFile,
    first: bool,
    /// The batch's text, encoded in chunks in parallel (buffers reused across batches).
    bufs: ChunkBuffers,
}

/// Spans per chunk of `spans.json` encoded by one task.
const SPANS_JSON_CHUNK: usize = 1024;

impl SpansJsonWriter {
    /// Starts the file (under a temporary name until [`SpanFile::finish`]).
    pub fn create(path: PathBuf) -> Result<Self, ExportError> {
        let file = StagedFile::create(&path).map_err(|source| ExportError::Io {
            path: path.clone(),
            source,
        })?;
        Ok(SpansJsonWriter {
            file,
            first: true,
            bufs: ChunkBuffers::default(),
        })
    }

    fn io_error(&self, source: std::io::Error) -> ExportError {
        ExportError::Io {
            path: self.file.path().to_path_buf(),
            source,
        }
    }
}

impl SpanFile for SpansJsonWriter {
    /// Appends the spans, one compact JSON object per line (the bytes of
    /// `serde_json::to_writer`, written by [`crate::file::write_span_json`]).
    fn write(&mut self, spans: &[Span]) -> Result<(), ExportError> {
        let opening = self.first;
        let written = self.bufs.write(
            self.file.writer(),
            spans,
            SPANS_JSON_CHUNK,
            opening,
            |buf, opens, chunk| {
                for (i, span) in chunk.iter().enumerate() {
                    let lead: &[u8] = if opens && i == 0 { b"[\n" } else { b",\n" };
                    buf.extend_from_slice(lead);
                    crate::file::write_span_json(buf, span);
                }
            },
        );
        if !spans.is_empty() {
            self.first = false;
        }
        written.map_err(|e| self.io_error(e))
    }

    fn finish(mut self: Box<Self>) -> Result<PathBuf, ExportError> {
        let path = self.file.path().to_path_buf();
        let end: &[u8] = if self.first { b"[]\n" } else { b"\n]\n" };
        let done = self.file.writer().write_all(end);
        let this = *self;
        done.and_then(|()| this.file.commit())
            .map_err(|source| ExportError::Io { path, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use podtrace_model::{KeyValue, Resource, SpanId, SpanKind, Status, TraceId};

    fn span(n: u8) -> Span {
        Span {
            trace_id: TraceId([n; 16]),
            span_id: SpanId([n; 8]),
            parent_span_id: Some(SpanId([n + 1; 8])),
            trace_state: String::new(),
            flags: 1,
            name: format!("GET /{n}\n\"x\""),
            kind: SpanKind::Client,
            start_time_unix_nano: u64::from(n),
            end_time_unix_nano: u64::from(n) + 5,
            attributes: vec![KeyValue::new("http.response.status_code", 200i64)],
            status: Status::unset(),
            resource: Resource::new("web"),
        }
    }

    #[test]
    fn spans_json_streamed_is_one_array_one_span_per_line() {
        let dir = tempfile::tempdir().unwrap();
        for (i, batches) in [
            vec![],
            vec![vec![span(1)]],
            vec![vec![span(1), span(2)], vec![], vec![span(3)]],
        ]
        .into_iter()
        .enumerate()
        {
            let path = dir.path().join(format!("spans-{i}.json"));
            let mut w = Box::new(SpansJsonWriter::create(path.clone()).unwrap());
            for b in &batches {
                w.write(b).unwrap();
            }
            assert!(!path.exists());
            assert_eq!(w.finish().unwrap(), path);
            let all: Vec<Span> = batches.concat();
            let text = std::fs::read_to_string(&path).unwrap();
            let back: Vec<Span> = serde_json::from_str(&text).unwrap();
            assert_eq!(back, all);
            let lines = if all.is_empty() { 1 } else { all.len() + 2 };
            assert_eq!(text.lines().count(), lines, "one span per line");
            assert!(text.ends_with("]\n"));
        }
        let w = SpansJsonWriter::create(dir.path().join("other.json")).unwrap();
        drop(w);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            3,
            "no temp left"
        );
    }

    /// Counts what it saw.
    #[derive(Default)]
    struct Count(u64);

    impl SpanObserver for Count {
        fn observe(&mut self, spans: &[Span]) {
            self.0 += spans.len() as u64;
        }
    }

    /// Every batch reaches every file, the observer and every exporter, in order; the
    /// output lists the files and one report per exporter.
    #[test]
    fn every_batch_reaches_files_observer_and_exporters() {
        let dir = tempfile::tempdir().unwrap();
        let files: Vec<Box<dyn SpanFile>> = vec![
            Box::new(SpansJsonWriter::create(dir.path().join("spans.json")).unwrap()),
            Box::new(OtlpJsonWriter::create(dir.path().join("traces.otlp.json")).unwrap()),
        ];
        let lines = dir.path().join("export.jsonl");
        let exporters: Vec<Box<dyn Exporter>> = vec![Box::new(
            crate::OtlpJsonLinesExporter::open(&lines).unwrap(),
        )];
        let sinks =
            SpanSinks::start(files, Count::default(), exporters, SinkOptions::offline()).unwrap();
        for b in 0..5u8 {
            sinks.send(vec![span(2 * b), span(2 * b + 1)]).unwrap();
        }
        sinks.send(Vec::new()).unwrap();
        let out = sinks.finish().unwrap();
        assert_eq!(out.spans, 10);
        assert_eq!(out.observer.0, 10);
        assert_eq!(out.written.len(), 2);
        assert_eq!(out.reports.len(), 1);
        assert_eq!(
            out.reports[0].accounting.spans_sent, 10,
            "{}",
            out.reports[0]
        );
        assert!(exports_succeeded(&out.reports, false));
        assert_eq!(out.export_lines().len(), 1);
        assert!(out.export_lines()[0].starts_with("export: "));
        let back: Vec<Span> =
            serde_json::from_str(&std::fs::read_to_string(&out.written[0]).unwrap()).unwrap();
        assert_eq!(back.len(), 10);
        assert_eq!(std::fs::read_to_string(&lines).unwrap().lines().count(), 5);
    }

    /// A file that fails on its `n`-th batch (a full disk).
    struct FailsAt {
        n: usize,
        seen: usize,
    }

    impl SpanFile for FailsAt {
        fn write(&mut self, _spans: &[Span]) -> Result<(), ExportError> {
            self.seen += 1;
            if self.seen == self.n {
                return Err(ExportError::Io {
                    path: "full.json".into(),
                    source: std::io::Error::other("no space left on device"),
                });
            }
            Ok(())
        }
        fn finish(self: Box<Self>) -> Result<PathBuf, ExportError> {
            Ok("full.json".into())
        }
    }

    /// An observer that panics on its `n`-th batch (a bug).
    struct PanicsAt(usize);

    impl SpanObserver for PanicsAt {
        fn observe(&mut self, _spans: &[Span]) {
            self.0 -= 1;
            assert!(self.0 > 0, "observer bug");
        }
    }

    /// A file or the observer failing on a helper thread stops the run with its error
    /// (the writer neither hangs nor finishes the files as if complete), whichever batch
    /// it fails on; the first file's temporary file is removed.
    #[test]
    fn a_helper_failure_stops_the_run_with_its_error() {
        for n in 1..=3 {
            let dir = tempfile::tempdir().unwrap();
            let files: Vec<Box<dyn SpanFile>> = vec![
                Box::new(SpansJsonWriter::create(dir.path().join("spans.json")).unwrap()),
                Box::new(FailsAt { n, seen: 0 }),
            ];
            let sinks =
                SpanSinks::start(files, Count::default(), Vec::new(), SinkOptions::offline())
                    .unwrap();
            for b in 0..5u8 {
                if sinks.send(vec![span(b)]).is_err() {
                    break; // the writer stopped: its error comes from finish
                }
            }
            let Err(err) = sinks.finish() else {
                panic!("the run succeeded")
            };
            assert!(err.to_string().contains("no space left"), "{err}");
            assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

            let dir = tempfile::tempdir().unwrap();
            let files: Vec<Box<dyn SpanFile>> = vec![Box::new(
                SpansJsonWriter::create(dir.path().join("spans.json")).unwrap(),
            )];
            let sinks =
                SpanSinks::start(files, PanicsAt(n), Vec::new(), SinkOptions::offline()).unwrap();
            for b in 0..5u8 {
                if sinks.send(vec![span(b)]).is_err() {
                    break;
                }
            }
            let Err(err) = sinks.finish() else {
                panic!("the run succeeded")
            };
            assert!(matches!(err, SinkError::Panicked("span observer")), "{err}");
            assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        }
    }

    /// Abandoned sinks leave no file behind.
    #[test]
    fn abandon_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let files: Vec<Box<dyn SpanFile>> = vec![Box::new(
            SpansJsonWriter::create(dir.path().join("spans.json")).unwrap(),
        )];
        let sinks = SpanSinks::start(files, (), Vec::new(), SinkOptions::offline()).unwrap();
        sinks.send(vec![span(1)]).unwrap();
        sinks.abandon();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    /// An exporter whose calls never return (an endpoint that accepts and never answers).
    struct Hanging;

    impl Exporter for Hanging {
        fn name(&self) -> &str {
            "hanging"
        }
        fn endpoint(&self) -> String {
            "test://hanging".into()
        }
        fn export<'a>(
            &'a self,
            _spans: &'a [Span],
        ) -> crate::BoxFuture<'a, Result<(), ExportError>> {
            Box::pin(std::future::pending())
        }
        fn flush(&self) -> crate::BoxFuture<'_, Result<(), ExportError>> {
            Box::pin(std::future::pending())
        }
        fn accounting(&self) -> crate::Accounting {
            crate::Accounting::default()
        }
    }

    /// Live settings: a hanging exporter never makes `send` wait; its full lane drops the
    /// oldest spans (counted, visible while running), and `finish` returns after the grace
    /// with every span of that exporter counted as dropped.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn live_sinks_never_wait_for_a_hanging_exporter() {
        let options = SinkOptions {
            fanout: FanoutOptions {
                queue_spans: 100,
                overflow: crate::Overflow::DropOldest,
            },
            grace: Duration::from_millis(300),
            ..SinkOptions::live(tokio::runtime::Handle::current())
        };
        let sinks = SpanSinks::start(Vec::new(), (), vec![Box::new(Hanging)], options).unwrap();
        let started = std::time::Instant::now();
        for b in 0..200u8 {
            sinks.send(vec![span(b), span(b)]).unwrap();
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "send waited for the backend"
        );
        assert!(
            wait_for(|| sinks.overflowed() > 0),
            "the full lane's drops are visible while running"
        );
        let finished = std::time::Instant::now();
        let out = tokio::task::block_in_place(|| sinks.finish()).unwrap();
        assert!(
            finished.elapsed() < Duration::from_secs(5),
            "the grace bounds the end"
        );
        let r = &out.reports[0];
        assert_eq!(out.spans, 400);
        assert_eq!(r.spans, 400);
        assert_eq!(r.accounting.spans_sent, 0);
        assert_eq!(r.accounting.dropped_spans, 400, "{r}");
        assert!(!exports_succeeded(&out.reports, false));
    }

    /// Polls `f` for up to 5 s.
    fn wait_for(mut f: impl FnMut() -> bool) -> bool {
        let until = std::time::Instant::now() + Duration::from_secs(5);
        while std::time::Instant::now() < until {
            if f() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    #[test]
    fn failures_fail_the_run_unless_allowed() {
        let mut report = ExporterReport {
            exporter: "otlp".into(),
            endpoint: "http://x".into(),
            spans: 3,
            accounting: crate::Accounting::default(),
            elapsed_ms: 1,
            error: None,
        };
        assert!(exports_succeeded(std::slice::from_ref(&report), false));
        report.error = Some("down".into());
        assert!(!exports_succeeded(std::slice::from_ref(&report), false));
        assert!(exports_succeeded(&[report], true));
        assert!(exports_succeeded(&[], false));
    }
}
