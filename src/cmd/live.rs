//! Live mode, `podtrace -n NS POD [--tracing ...]`: the recorder's batches go through a
//! bounded channel straight into the analyzer's incremental pipeline (the same code `record`
//! and `analyze` use), and completed spans go to the exporters at least every second.
//!
//! The exporters run beside the recording loop ([`ExportFanout`]: one bounded queue and
//! task per exporter): the loop hands spans over and never waits for a backend, so a slow
//! or hanging endpoint cannot fill the recorder's channel and make the kernel drop socket
//! events. A full queue drops its oldest spans, counted per exporter in the final
//! `export:` lines (the same lines and exit-code rule as `analyze`).
//!
//! Without `--tracing` it prints one line per exchange as it completes, a `tcpdump`-like
//! view. With `--tracing` and no endpoint, spans are appended to
//! `<out>/traces.otlp.jsonl` (one OTLP/JSON request per line). Ctrl-C stops the probes,
//! drains the channel, flushes the exporters and prints the summary.

use std::time::Duration;

use podtrace_analyzer::{Analysis, Pipeline};
use podtrace_export::file::OtlpJsonLinesExporter;
use podtrace_export::{build_exporters, ExportFanout, FanoutOptions};
use podtrace_format::{now_ns, CaptureWriter, Record, WriterOptions};
use podtrace_model::{Span, SpanKind};
use podtrace_recorder::{file::file_meta, Recorder};

use crate::cli::LiveArgs;
use crate::cmd::output::{self, Outputs};
use crate::cmd::target::{self, recorder_error, shutdown_signal};
use crate::cmd::tracing_config;
use crate::error::{CliError, CmdResult};

/// How long after its request started an exchange waits for the other side's records (and
/// late links) before its span is emitted in live mode.
const LIVE_LINK_DELAY: Duration = Duration::from_secs(1);
/// Records can reach the pipeline this long after they happened (ring buffer drain and
/// batching); the wall-clock watermark stays this far behind "now".
const LIVE_LAG: Duration = Duration::from_millis(250);
/// How often completed spans are drained and exported.
const FLUSH_EVERY: Duration = Duration::from_millis(500);
/// After the recording stopped, how long the exporters may take to send what they hold
/// before the rest is counted as dropped (a hanging endpoint must not keep us running).
const EXPORT_GRACE: Duration = Duration::from_secs(5);

/// Runs live mode.
pub fn run(args: LiveArgs) -> CmdResult {
    let export = tracing_config::export_config(&args.tracing_args)?;
    let mut opts = tracing_config::analyze_options(&args.tracing_args)?;
    opts.link_delay_ns = LIVE_LINK_DELAY.as_nanos() as u64;
    tracing_config::span_options(&args.spans, &mut opts)?;
    if !args.tracing && export.has_endpoints() {
        return Err(CliError::Usage(
            "exporter endpoints are given but tracing is off: add --tracing (or PODTRACE_TRACING_ENABLED=true)"
                .into(),
        ));
    }
    let runtime = super::runtime()?;
    runtime.block_on(async {
        let shutdown = shutdown_signal()?;
        let mut target = target::resolve(args.pod.as_deref(), &args.target).await?;
        let mut exporters = build_exporters(&export).map_err(|e| CliError::Usage(e.to_string()))?;
        if args.tracing && exporters.is_empty() {
            std::fs::create_dir_all(&args.output.out)
                .map_err(|e| CliError::Runtime(e.into()))?;
            let path = args.output.out.join("traces.otlp.jsonl");
            let file = OtlpJsonLinesExporter::open(&path).map_err(|e| CliError::Runtime(e.into()))?;
            exporters.push(Box::new(file));
        }
        let fanout = ExportFanout::start(
            exporters,
            FanoutOptions::live(),
            &tokio::runtime::Handle::current(),
        );
        let mut overflow_warned = false;
        let mut save = match &args.save {
            Some(path) => Some(
                CaptureWriter::create(
                    path,
                    file_meta(&target.config, podtrace_recorder::clock::boot_time_offset_ns()),
                    WriterOptions::default(),
                )
                .map_err(|e| CliError::Runtime(e.into()))?,
            ),
            None => None,
        };
        let mut pipeline = Pipeline::new(&opts).map_err(|e| CliError::Usage(e.to_string()))?;
        let (handle, mut rx) = Recorder::start(target.config.clone()).map_err(recorder_error)?;
        eprintln!(
            "podtrace: live on {}{} (Ctrl-C to stop)",
            target.config.target_label,
            if args.tracing { ", tracing" } else { "" }
        );
        let mut k8s = target.k8s_rows.take();
        let mut flush = tokio::time::interval(FLUSH_EVERY);
        let deadline = target.config.limits.duration;
        let stop = async move {
            match deadline {
                Some(d) => tokio::select! { _ = shutdown => {}, _ = tokio::time::sleep(d) => {} },
                None => shutdown.await,
            }
        };
        tokio::pin!(stop);
        let mut events = 0u64;
        // Socket rows (data, open, close): what `--max-events` counts, as in `record`.
        let mut socket_events = 0u64;
        let mut emitted = 0u64;
        loop {
            tokio::select! {
                _ = &mut stop => break,
                batch = rx.recv() => match batch {
                    Some(batch) => {
                        events += batch.len() as u64;
                        socket_events += batch.iter().filter(|r| is_socket_event(r)).count() as u64;
                        take(&mut pipeline, save.as_mut(), &batch)?;
                        if target.config.limits.max_events.is_some_and(|m| socket_events >= m) {
                            break;
                        }
                    }
                    None => break,
                },
                rows = async { match k8s.as_mut() { Some(k) => k.recv().await, None => std::future::pending().await } } => match rows {
                    Some(rows) => take(&mut pipeline, save.as_mut(), &rows)?,
                    None => k8s = None,
                },
                _ = flush.tick() => {
                    if let Some(w) = save.as_mut() {
                        w.tick().map_err(|e| CliError::Runtime(e.into()))?;
                    }
                    pipeline.advance_to(now_ns().saturating_sub(LIVE_LAG.as_nanos() as u64));
                    let spans = pipeline.drain_completed();
                    emitted += spans.len() as u64;
                    deliver(args.tracing, &fanout, spans);
                    if !overflow_warned && fanout.overflowed().iter().any(|n| *n > 0) {
                        overflow_warned = true;
                        eprintln!("podtrace: an exporter is not keeping up: its queue is full, the oldest spans are dropped (counted in the summary)");
                    }
                }
            }
        }
        // Stop the probes while still reading the channel (the recorder flushes its last
        // batches into it while stopping: not reading would deadlock on a full channel),
        // then take whatever is left.
        let stopping = handle.stop();
        tokio::pin!(stopping);
        let mut open = true;
        let stats = loop {
            tokio::select! {
                stats = &mut stopping => break stats.map_err(recorder_error)?,
                batch = rx.recv(), if open => match batch {
                    Some(batch) => {
                        events += batch.len() as u64;
                        take(&mut pipeline, save.as_mut(), &batch)?;
                    }
                    None => open = false,
                },
            }
        };
        while let Ok(batch) = rx.try_recv() {
            events += batch.len() as u64;
            take(&mut pipeline, save.as_mut(), &batch)?;
        }
        target.stop().await;
        let mut analysis: Analysis = pipeline.finish();
        emitted += analysis.spans.len() as u64;
        deliver(args.tracing, &fanout, std::mem::take(&mut analysis.spans));
        let reports = fanout.finish(EXPORT_GRACE).await;
        if let Some(w) = save {
            let summary = w.finish().map_err(|e| CliError::Runtime(e.into()))?;
            eprintln!("podtrace: saved {} rows to {:?}", summary.rows, summary.files);
        }
        let written = if args.tracing {
            Outputs::new(&args.output).write_graph_and_summary(&analysis)?
        } else {
            Vec::new()
        };
        println!(
            "live: {events} rows from the recorder, {} dropped in the kernel; {emitted} spans",
            stats.total_dropped()
        );
        print!("{}", analysis.stats);
        for path in &written {
            println!("wrote {}", path.display());
        }
        for report in &reports {
            println!("export: {report}");
        }
        Ok(output::exit_code(
            &reports,
            args.tracing_args.allow_export_failures,
        ))
    })
}

/// A socket event (data, open, close): the rows `--max-events` counts, in live mode as in
/// `record` (stats and Kubernetes rows are not events).
fn is_socket_event(r: &Record) -> bool {
    matches!(
        r,
        Record::SocketData(_) | Record::SocketOpen(_) | Record::SocketClose(_)
    )
}

/// Feeds a batch to the analyzer and, with `--save`, to the capture file.
fn take(
    pipeline: &mut Pipeline,
    save: Option<&mut CaptureWriter>,
    batch: &[Record],
) -> Result<(), CliError> {
    if let Some(w) = save {
        w.write_all(batch)
            .map_err(|e| CliError::Runtime(e.into()))?;
    }
    pipeline.push(batch);
    Ok(())
}

/// Hands spans to the exporters (tracing on; never waits for them) or prints them as
/// exchange lines (tracing off).
fn deliver(tracing: bool, fanout: &ExportFanout, spans: Vec<Span>) {
    if spans.is_empty() {
        return;
    }
    if !tracing {
        for s in &spans {
            println!("{}", exchange_line(s));
        }
        return;
    }
    fanout.offer(spans);
}

/// One exchange as a line: time, client → server, method path, status, latency, trace id.
fn exchange_line(s: &Span) -> String {
    let attr = |k: &str| s.attribute(k).map(|v| v.to_string()).unwrap_or_default();
    let secs = s.start_time_unix_nano / 1_000_000_000;
    let (h, m, sec) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    let millis = (s.start_time_unix_nano / 1_000_000) % 1000;
    let (client, server) = match s.kind {
        SpanKind::Server => (attr("client.address"), s.resource.service_name.clone()),
        SpanKind::Client => (s.resource.service_name.clone(), {
            let peer = attr("peer.service");
            if peer.is_empty() {
                attr("server.address")
            } else {
                peer
            }
        }),
    };
    let status = s
        .attribute("http.response.status_code")
        .or_else(|| s.attribute("rpc.grpc.status_code"))
        .map(|v| v.to_string())
        .unwrap_or_else(|| "-".into());
    format!(
        "{h:02}:{m:02}:{sec:02}.{millis:03} {:<6} {client} → {server}  {}  {status}  {:.2} ms  trace {}",
        match s.kind {
            SpanKind::Server => "server",
            SpanKind::Client => "client",
        },
        s.name,
        s.duration_ns() as f64 / 1e6,
        s.trace_id
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use podtrace_model::{KeyValue, Resource, SpanId, Status, TraceId};

    /// The kernel drop counters the analysis reports (and live mode's summary with it) are
    /// counters the recorder writes, and every drop counter it writes is one of them.
    #[test]
    fn kernel_drop_counters_are_the_recorders() {
        use podtrace_format::counters::KERNEL_DROPS;
        use podtrace_recorder_ebpf::event::COUNTER_NAMES;
        for name in KERNEL_DROPS {
            assert!(COUNTER_NAMES.contains(&name), "{name}");
        }
        for name in COUNTER_NAMES.iter().filter(|n| n.contains("drop")) {
            assert!(KERNEL_DROPS.contains(name), "{name}");
        }
    }

    #[test]
    fn exchange_line_names_both_ends() {
        let span = Span {
            trace_id: TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            span_id: SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            parent_span_id: None,
            trace_state: String::new(),
            flags: 1,
            name: "GET /cart".into(),
            kind: SpanKind::Server,
            start_time_unix_nano: 3_723_004_000_000,
            end_time_unix_nano: 3_723_006_500_000,
            attributes: vec![
                KeyValue::new("client.address", "10.0.0.7"),
                KeyValue::new("http.response.status_code", 200i64),
            ],
            status: Status::unset(),
            resource: Resource::new("cart"),
        };
        assert_eq!(
            exchange_line(&span),
            "01:02:03.004 server 10.0.0.7 → cart  GET /cart  200  2.50 ms  trace 4bf92f3577b34da6a3ce929d0e0e4736"
        );
    }
}
