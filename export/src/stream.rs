//! Streaming export: span batches handed over while an analysis is still running.
//!
//! `podtrace analyze` does not hold every span of a large capture: the analyzer hands out
//! batches as traces complete, and [`export_stream`] sends each batch to every exporter
//! concurrently, then the next one. The channel feeding it is bounded, so a slow endpoint
//! slows the analysis down instead of letting spans pile up in memory.
//!
//! An exporter whose endpoint is down (refused, timed out, TLS, bad token, retries run
//! out) for a whole call — nothing of that batch delivered — is given up on: the spans of
//! the later batches are counted as dropped at once instead of waiting for timeouts batch
//! after batch. A flaky endpoint that still accepts part of a batch keeps getting the next
//! ones. Reports are per exporter over the whole stream, like [`crate::export_all`]'s.

use std::time::Instant;

use podtrace_model::Span;
use tokio::sync::mpsc::Receiver;

use crate::{join_all, Accounting, ExportError, Exporter, ExporterReport};

/// What happened to one exporter over the stream so far.
#[derive(Debug, Default)]
struct Run {
    /// Spans handed to the stream for this exporter.
    handed: usize,
    /// The first error.
    error: Option<ExportError>,
    /// The endpoint is given up on: later batches are counted, not sent.
    down: bool,
    /// Spans of batches not sent because the endpoint was given up on.
    skipped: u64,
}

impl Run {
    /// Sends one batch (or counts it when the endpoint is given up on).
    async fn send(&mut self, exporter: &dyn Exporter, spans: &[Span]) {
        self.handed += spans.len();
        if self.down {
            self.skipped += spans.len() as u64;
            return;
        }
        let before = exporter.accounting();
        if let Err(e) = exporter.export(spans).await {
            let delivered = exporter.accounting().since(&before).spans_sent;
            if e.is_endpoint_down() && delivered == 0 {
                self.down = true;
            }
            self.error.get_or_insert(e);
        }
    }
}

/// Sends every batch received on `batches` to every exporter (concurrently per batch, in
/// order), flushes at the end of the stream, and reports on each exporter (in `exporters`
/// order). Returns when the sending side of the channel is closed and all is sent.
pub async fn export_stream(
    exporters: &[Box<dyn Exporter>],
    mut batches: Receiver<Vec<Span>>,
) -> Vec<ExporterReport> {
    let started = Instant::now();
    let before: Vec<Accounting> = exporters.iter().map(|e| e.accounting()).collect();
    let mut runs: Vec<Run> = exporters.iter().map(|_| Run::default()).collect();
    while let Some(batch) = batches.recv().await {
        if batch.is_empty() {
            continue;
        }
        let sends = exporters
            .iter()
            .zip(runs.iter_mut())
            .map(|(exporter, run)| run.send(exporter.as_ref(), &batch))
            .collect();
        join_all(sends).await;
    }
    let flushes = exporters
        .iter()
        .zip(runs.iter_mut())
        .filter(|(_, run)| !run.down)
        .map(|(exporter, run)| async move {
            if let Err(e) = exporter.flush().await {
                run.error.get_or_insert(e);
            }
        })
        .collect();
    join_all(flushes).await;
    exporters
        .iter()
        .zip(runs)
        .zip(before)
        .map(|((exporter, run), before)| {
            let mut accounting = exporter.accounting().since(&before);
            accounting.dropped_spans += run.skipped;
            ExporterReport::new(
                exporter.as_ref(),
                run.handed,
                accounting,
                started.elapsed(),
                run.error,
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::file::OtlpJsonLinesExporter;
    use crate::{otlp, ExportConfig, Url};
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

    #[tokio::test]
    async fn every_batch_reaches_every_exporter_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let paths = [dir.path().join("a.jsonl"), dir.path().join("b.jsonl")];
        let exporters: Vec<Box<dyn Exporter>> = paths
            .iter()
            .map(|p| Box::new(OtlpJsonLinesExporter::open(p).unwrap()) as Box<dyn Exporter>)
            .collect();
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        let producer = tokio::spawn(async move {
            for b in 0..10u64 {
                let batch: Vec<Span> = (b * 3..b * 3 + 3).map(span).collect();
                tx.send(batch).await.unwrap();
            }
            tx.send(Vec::new()).await.unwrap();
        });
        let reports = export_stream(&exporters, rx).await;
        producer.await.unwrap();
        for (path, report) in paths.iter().zip(&reports) {
            assert!(report.is_ok(), "{report}");
            assert_eq!((report.spans, report.accounting.spans_sent), (30, 30));
            let text = std::fs::read_to_string(path).unwrap();
            let starts: Vec<u64> = text
                .lines()
                .flat_map(|l| {
                    otlp::from_json(l).unwrap().resource_spans[0].scope_spans[0]
                        .spans
                        .iter()
                        .map(|s| s.start_time_unix_nano)
                        .collect::<Vec<_>>()
                })
                .collect();
            assert_eq!(starts, (0..30).collect::<Vec<u64>>());
        }
    }

    #[tokio::test]
    async fn a_dead_endpoint_is_given_up_after_one_batch_and_every_span_counted() {
        // A port nothing listens on: connection refused, at once.
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
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        for b in 0..5u64 {
            tx.send((b * 100..b * 100 + 100).map(span).collect())
                .await
                .unwrap();
        }
        drop(tx);
        let reports = export_stream(&exporters, rx).await;
        let r = &reports[0];
        assert!(!r.is_ok());
        assert_eq!(r.spans, 500);
        assert_eq!(r.accounting.spans_sent, 0);
        assert_eq!(r.accounting.dropped_spans, 500, "{r}");
        assert!(r.accounting.requests >= 1);
        assert!(
            r.accounting.requests <= 1 + u64::from(ExportConfig::default().max_retries),
            "later batches were not sent: {r}"
        );
        assert!(
            r.error.as_deref().unwrap_or("").contains("127.0.0.1"),
            "{r}"
        );
    }
}
