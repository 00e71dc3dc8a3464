//! Where the spans of `podtrace analyze` go while the analysis is still running.
//!
//! The analyzer hands out spans batch by batch as traces complete; a writer thread takes
//! each batch and appends it to `traces.otlp.json` and `spans.json`, offers it to the
//! report's bounded trace collector, and passes it on to the network exporters
//! ([`ExportFanout`], the same fan-out live mode uses, here in its blocking mode: one lane
//! and task per exporter). Nothing keeps every span: memory stays bounded by the analyzer's window
//! and the channels between the stages, which are bounded too — a slow disk or endpoint
//! slows the analysis down instead of letting spans pile up. The writer thread also lets
//! the second core serialise while the first one analyses.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::Context;
use podtrace_export::{
    build_exporters, spans_parquet, ExportConfig, ExportFanout, ExporterReport, FanoutOptions,
    OtlpJsonWriter, StagedFile, DEFAULT_OTLP_JSON_FILE,
};
use podtrace_model::Span;
use podtrace_report::collect::{Collected, CollectorLimits, TraceCollector};

use crate::error::CliError;

/// Batches in flight between the analysis and the writer (each batch is a few thousand
/// spans; the exporters' lanes are bounded by [`FanoutOptions::offline`]).
const QUEUE: usize = 4;
/// How long the exporters may take, after the last batch, to send what they hold. Each
/// request is bounded by its timeout and retries, and an endpoint that is down is given
/// up on, so this only caps a pathological case.
const EXPORT_GRACE: std::time::Duration = std::time::Duration::from_secs(600);

/// What the sinks produced once every batch is through.
pub struct SinkOutput {
    /// Spans handed to the sinks (the sampled spans of the analysis).
    pub spans: u64,
    /// Files written (`traces.otlp.json`, `spans.json`, the spans Parquet table if asked).
    pub written: Vec<PathBuf>,
    /// One report per configured network exporter.
    pub reports: Vec<ExporterReport>,
    /// The traces the report shows, and totals over every span.
    pub traces: Collected,
}

/// The running sinks (see the module doc).
pub struct SpanSinks {
    tx: SyncSender<Vec<Span>>,
    writer: JoinHandle<Result<SinkOutput, CliError>>,
    abandoned: Arc<AtomicBool>,
}

/// The writer thread stopped early; [`SpanSinks::finish`] says why.
#[derive(Debug)]
pub struct SinkStopped;

impl SpanSinks {
    /// Creates the output files in `dir`, builds the exporters of `export` (a bad setting
    /// is a usage error, before anything is read) and starts the writer thread. With
    /// `spans_parquet` (`--spans-parquet FILE|DIR`) the spans also go to a Parquet table.
    pub fn start(
        dir: &Path,
        export: &ExportConfig,
        spans_parquet: Option<&Path>,
    ) -> Result<Self, CliError> {
        let exporters = if export.has_endpoints() {
            build_exporters(export).map_err(|e| CliError::Usage(e.to_string()))?
        } else {
            Vec::new()
        };
        let otlp = OtlpJsonWriter::create(dir.join(DEFAULT_OTLP_JSON_FILE))
            .map_err(|e| CliError::Runtime(e.into()))?;
        let spans_json = SpansJsonWriter::create(dir.join("spans.json"))?;
        let table = spans_parquet.map(create_spans_parquet).transpose()?;
        let runtime = if exporters.is_empty() {
            None
        } else {
            Some(super::runtime()?)
        };
        let (tx, rx) = sync_channel::<Vec<Span>>(QUEUE);
        let abandoned = Arc::new(AtomicBool::new(false));
        let stop = Arc::clone(&abandoned);
        let writer = std::thread::Builder::new()
            .name("podtrace-sinks".into())
            .spawn(move || {
                let mut otlp = otlp;
                let mut spans_json = spans_json;
                let mut table = table;
                let mut traces = TraceCollector::new(CollectorLimits::default());
                let export = runtime.map(|rt| {
                    let fanout =
                        ExportFanout::start(exporters, FanoutOptions::offline(), rt.handle());
                    (rt, fanout)
                });
                let mut spans = 0u64;
                for batch in rx {
                    // The two files are encoded side by side (the analysis leaves part of
                    // a core idle); each writer owns its file.
                    let otlp_written = std::thread::scope(|s| {
                        let otlp_job = s.spawn(|| otlp.write(&batch));
                        let spans_written =
                            spans_json.write(&batch).and_then(|()| match &mut table {
                                Some(t) => t.write(&batch).map_err(|e| CliError::Runtime(e.into())),
                                None => Ok(()),
                            });
                        traces.add(&batch);
                        spans_written.map(|()| otlp_job.join())
                    })?;
                    otlp_written
                        .map_err(|_| {
                            CliError::Runtime(anyhow::anyhow!("the OTLP/JSON writer panicked"))
                        })?
                        .map_err(|e| CliError::Runtime(e.into()))?;
                    spans += batch.len() as u64;
                    if let Some((_, fanout)) = &export {
                        fanout.offer(batch);
                    }
                }
                if stop.load(Ordering::SeqCst) {
                    // Dropping the writers removes their temporary files.
                    return Err(CliError::Runtime(anyhow::anyhow!("analysis abandoned")));
                }
                let reports = match export {
                    Some((rt, fanout)) => rt.block_on(fanout.finish(EXPORT_GRACE)),
                    None => Vec::new(),
                };
                let mut written = vec![spans_json.finish()?, finish_otlp(otlp)?];
                if let Some(t) = table {
                    let summary = t.finish().map_err(|e| CliError::Runtime(e.into()))?;
                    written.push(summary.path);
                }
                Ok(SinkOutput {
                    spans,
                    written,
                    reports,
                    traces: traces.finish(),
                })
            })
            .map_err(|e| {
                CliError::Runtime(anyhow::Error::new(e).context("starting the writer thread"))
            })?;
        Ok(SpanSinks {
            tx,
            writer,
            abandoned,
        })
    }

    /// Hands a batch to the writer (waits while the queue is full).
    pub fn send(&self, spans: Vec<Span>) -> Result<(), SinkStopped> {
        self.tx.send(spans).map_err(|_| SinkStopped)
    }

    /// Stops without finishing the files (the analysis failed): no half output is left
    /// where a complete one is expected.
    pub fn abandon(self) {
        self.abandoned.store(true, Ordering::SeqCst);
        drop(self.tx);
        let _ = self.writer.join();
    }

    /// Waits until every batch is written and exported; the writer's error if it failed.
    pub fn finish(self) -> Result<SinkOutput, CliError> {
        drop(self.tx);
        self.writer
            .join()
            .map_err(|_| CliError::Runtime(anyhow::anyhow!("the writer thread panicked")))?
    }
}

/// Opens the spans table of `--spans-parquet ARG` (a directory argument ending in `/` is
/// created).
fn create_spans_parquet(arg: &Path) -> Result<spans_parquet::SpansParquetWriter, CliError> {
    if arg.as_os_str().to_string_lossy().ends_with('/') {
        std::fs::create_dir_all(arg)
            .with_context(|| format!("creating {}", arg.display()))
            .map_err(CliError::Runtime)?;
    }
    spans_parquet::SpansParquetWriter::create(spans_parquet::spans_parquet_path(arg))
        .map_err(|e| CliError::Runtime(e.into()))
}

fn finish_otlp(otlp: OtlpJsonWriter) -> Result<PathBuf, CliError> {
    let path = otlp.path().to_path_buf();
    otlp.finish().map_err(|e| CliError::Runtime(e.into()))?;
    Ok(path)
}

/// `spans.json`: a JSON array of [`Span`]s, one span per line, written batch by batch as a
/// [`StagedFile`] (renamed into place at the end, removed when dropped unfinished).
struct SpansJsonWriter {
    file: StagedFile,
    first: bool,
}

impl SpansJsonWriter {
    fn create(path: PathBuf) -> Result<Self, CliError> {
        let file = StagedFile::create(&path)
            .with_context(|| format!("creating {}", path.display()))
            .map_err(CliError::Runtime)?;
        Ok(SpansJsonWriter { file, first: true })
    }

    /// Appends the spans, one compact JSON object per line.
    fn write(&mut self, spans: &[Span]) -> Result<(), CliError> {
        let out = self.file.writer();
        let mut write = || -> anyhow::Result<()> {
            for span in spans {
                let lead: &[u8] = if std::mem::replace(&mut self.first, false) {
                    b"[\n"
                } else {
                    b",\n"
                };
                out.write_all(lead)?;
                serde_json::to_writer(&mut *out, span)?;
            }
            Ok(())
        };
        let written = write();
        written
            .with_context(|| format!("writing {}", self.file.path().display()))
            .map_err(CliError::Runtime)
    }

    fn finish(mut self) -> Result<PathBuf, CliError> {
        let path = self.file.path().to_path_buf();
        let end: &[u8] = if self.first { b"[]\n" } else { b"\n]\n" };
        let done = self.file.writer().write_all(end);
        done.and_then(|()| self.file.commit())
            .with_context(|| format!("writing {}", path.display()))
            .map_err(CliError::Runtime)
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
            let mut w = SpansJsonWriter::create(path.clone()).unwrap();
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
}
