//! Live mode, `podtrace -n NS POD [--tracing ...]`: a recording session
//! ([`podtrace_recorder::Session`], the same one `record` runs: probes, channel, Kubernetes
//! rows, limits, signals, stopping while draining) feeds the analyzer's incremental pipeline
//! (the same code `analyze` uses), and completed spans go to the exporters at least every
//! second. With `--save` the session's rows also go to a capture file, as in `record`.
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
use podtrace_export::{build_exporters, SinkOptions, SpanSinks};
use podtrace_format::{now_ns, WriterOptions};
use podtrace_model::{Span, SpanKind};
use podtrace_recorder::file::CaptureSink;
use podtrace_recorder::{Session, SessionEvent};

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
        // The span fan-out `analyze` uses too, here with drop-oldest lanes and a short
        // grace at the end (SinkOptions::live): no local span files, no report collector.
        let sinks = SpanSinks::start(
            Vec::new(),
            (),
            exporters,
            SinkOptions::live(tokio::runtime::Handle::current()),
        )
        .map_err(|e| CliError::Runtime(e.into()))?;
        let mut overflow_warned = false;
        let mut save = match &args.save {
            Some(path) => Some(
                CaptureSink::create(&target.config, path, WriterOptions::default())
                    .map_err(recorder_error)?,
            ),
            None => None,
        };
        let mut pipeline = Pipeline::new(&opts).map_err(|e| CliError::Usage(e.to_string()))?;
        let mut session = Session::start(
            target.config.clone(),
            target.k8s_rows.take(),
            shutdown,
            FLUSH_EVERY,
        )
        .map_err(recorder_error)?;
        eprintln!(
            "podtrace: live on {}{} (Ctrl-C to stop)",
            target.config.target_label,
            if args.tracing { ", tracing" } else { "" }
        );
        let mut emitted = 0u64;
        while let Some(event) = session.next().await.map_err(recorder_error)? {
            match event {
                SessionEvent::Rows(rows) | SessionEvent::Extra(rows) => {
                    if let Some(w) = save.as_mut() {
                        w.write(&rows).map_err(recorder_error)?;
                    }
                    pipeline.push(&rows);
                }
                SessionEvent::Tick(_) => {
                    if let Some(w) = save.as_mut() {
                        w.tick().map_err(recorder_error)?;
                    }
                    pipeline.advance_to(now_ns().saturating_sub(LIVE_LAG.as_nanos() as u64));
                    let spans = pipeline.drain_completed();
                    emitted += spans.len() as u64;
                    deliver(args.tracing, &sinks, spans);
                    if !overflow_warned && sinks.overflowed() > 0 {
                        overflow_warned = true;
                        eprintln!("podtrace: an exporter is not keeping up: its queue is full, the oldest spans are dropped (counted in the summary)");
                    }
                }
            }
        }
        let recorded = session.finish();
        target.stop().await;
        let mut analysis: Analysis = pipeline.finish();
        emitted += analysis.spans.len() as u64;
        deliver(args.tracing, &sinks, std::mem::take(&mut analysis.spans));
        // The writer thread waits for the exporters (at most the grace): off the runtime's
        // worker, whose tasks the exporters need.
        let reports = tokio::task::block_in_place(|| sinks.finish())
            .map_err(|e| CliError::Runtime(e.into()))?
            .reports;
        if let Some(w) = save {
            let summary = w.finish().map_err(recorder_error)?;
            eprintln!("podtrace: saved {} rows to {:?}", summary.rows, summary.files);
        }
        let written = if args.tracing {
            Outputs::new(&args.output).write_graph_and_summary(&analysis)?
        } else {
            Vec::new()
        };
        println!(
            "live: {} rows from the recorder, {} dropped in the kernel; {emitted} spans",
            recorded.rows,
            recorded.stats.total_dropped()
        );
        if recorded.beyond_max_events > 0 {
            eprintln!(
                "podtrace: --max-events reached: {} later socket events left out",
                recorded.beyond_max_events
            );
        }
        print!("{}", analysis.stats);
        for path in &written {
            println!("wrote {}", path.display());
        }
        output::print_export_lines(&reports);
        Ok(output::exit_code(
            &reports,
            args.tracing_args.allow_export_failures,
        ))
    })
}

/// Hands spans to the exporters (tracing on; never waits for them) or prints them as
/// exchange lines (tracing off).
fn deliver(tracing: bool, sinks: &SpanSinks<()>, spans: Vec<Span>) {
    if spans.is_empty() {
        return;
    }
    if !tracing {
        for s in &spans {
            println!("{}", exchange_line(s));
        }
        return;
    }
    // The writer only ever hands batches to drop-oldest lanes: it cannot stop early.
    let _ = sinks.send(spans);
}

/// One exchange as a line: time, client → server, method path, status, latency, trace id.
fn exchange_line(s: &Span) -> String {
    let attr = |k: &str| s.attribute(k).map(|v| v.to_string()).unwrap_or_default();
    // UTC time of day to the millisecond; span times (u64 ns) are always in jiff's range.
    let at = jiff::Timestamp::from_nanosecond(i128::from(s.start_time_unix_nano))
        .map(|t| t.strftime("%H:%M:%S%.3f").to_string())
        .unwrap_or_default();
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
        "{at} {:<6} {client} → {server}  {}  {status}  {:.2} ms  trace {}",
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
        // The next day, 5 ms after midnight UTC: the time of day wraps, milliseconds padded.
        let next_day = Span {
            start_time_unix_nano: 86_400_005_000_000,
            end_time_unix_nano: 86_400_007_500_000,
            ..span
        };
        assert!(exchange_line(&next_day).starts_with("00:00:00.005 server "));
    }
}
