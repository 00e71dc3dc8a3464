//! # podtrace-export — spans out: OTLP, Jaeger, Splunk HEC and local files
//!
//! The analyzer's [`podtrace_model::Span`]s leave podtrace here. Three thin encoders turn
//! spans into request bodies ([`otlp`]: OTLP/HTTP protobuf, [`jaeger`]: Thrift-binary
//! `jaeger.Batch` for the collector's `/api/traces`, [`splunk`]: HEC JSON events); all three
//! go through ONE shared HTTP layer ([`delivery`]: batching, timeouts, bounded retries with
//! backoff + jitter honouring `Retry-After`, gzip, TLS settings, accounting, secret-safe
//! messages). [`file`](mod@file) writes the OTLP/JSON request to a local file (all at once, or
//! streamed batch by batch), [`spans_parquet`] the spans as a Parquet table (one row per
//! span, for DuckDB/DataFusion/Spark); [`fanout`] sends batches to every exporter while an analysis
//! or live mode is still running (one bounded lane and task per exporter, the give-up rule,
//! blocking for `analyze`, drop-oldest for live mode); [`sinks`] is the one span fan-out of
//! `analyze` and live mode: local files, an observer (the report's collector) and the
//! exporters fed from one writer thread, with one summary and exit rule.
//!
//! Not here: deciding which spans to export (sampling is the analyzer's), printing or exit
//! codes (the CLI's).
//!
//! ```no_run
//! # async fn demo(spans: Vec<podtrace_model::Span>) -> Result<(), podtrace_export::ExportError> {
//! use podtrace_export::{build_exporters, export_all, ExportConfig, Url};
//! let config = ExportConfig {
//!     otlp: Some(Url::parse("http://otel-collector:4318").unwrap()),
//!     ..ExportConfig::default()
//! };
//! let exporters = build_exporters(&config)?;
//! for report in export_all(&exporters, &spans).await {
//!     println!("{report}");
//! }
//! # Ok(()) }
//! ```

#![warn(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)
)]

mod chunked;
pub mod delivery;
pub mod endpoint;
mod error;
pub mod fanout;
pub mod file;
pub mod jaeger;
pub mod otlp;
pub mod otlp_json;
mod report;
mod secret;
pub mod sinks;
pub mod spans_parquet;
pub mod splunk;

use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

use podtrace_model::Span;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};

pub use delivery::{Accounting, DeliveryConfig, GiveUp, HttpDelivery, HttpExporter, TlsConfig};
pub use error::ExportError;
pub use fanout::{ExportFanout, FanoutOptions, Overflow};
pub use file::{
    write_otlp_json, OtlpJsonLinesExporter, OtlpJsonWriter, StagedFile, DEFAULT_OTLP_JSON_FILE,
    SPANS_JSON_FILE,
};
pub use report::ExporterReport;
pub use reqwest::Url;
pub use secret::Secret;
pub use sinks::{
    exports_succeeded, local_files, SinkError, SinkOptions, SinkOutput, SpanFile, SpanObserver,
    SpanSinks, SpansJsonWriter,
};
pub use splunk::SplunkConfig;

/// A boxed, sendable future (what [`Exporter`] methods return, so exporters can be
/// `Box<dyn Exporter>`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A destination for spans. Exporters are reusable: live mode calls [`Exporter::export`]
/// again and again with small batches.
pub trait Exporter: Send + Sync {
    /// Short name (`otlp`, `jaeger`, `splunk`).
    fn name(&self) -> &str;
    /// Where the spans go, redacted for display.
    fn endpoint(&self) -> String;
    /// Sends `spans` (in batches); returns the first error. What was sent, retried and
    /// dropped is in [`Exporter::accounting`].
    fn export<'a>(&'a self, spans: &'a [Span]) -> BoxFuture<'a, Result<(), ExportError>>;
    /// Sends anything still buffered.
    fn flush(&self) -> BoxFuture<'_, Result<(), ExportError>>;
    /// Cumulative counters since the exporter was built.
    fn accounting(&self) -> Accounting;
    /// Whether the endpoint was given up on ([`delivery::GiveUp`], the one give-up rule):
    /// the fan-out then stops calling this exporter and counts later spans as dropped.
    fn given_up(&self) -> bool {
        false
    }
}

/// Everything the exporters need to know.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExportConfig {
    /// OTLP/HTTP endpoint (base URL or full `/v1/traces` URL).
    pub otlp: Option<Url>,
    /// Jaeger collector endpoint (base URL or full path).
    pub jaeger: Option<Url>,
    /// Splunk HEC settings (its own TLS switches and token).
    pub splunk: Option<SplunkConfig>,
    /// How every exporter sends: batch size, timeout, retries and backoff, concurrency,
    /// gzip, TLS (Splunk replaces the TLS part with its own switches).
    pub delivery: DeliveryConfig,
}

impl ExportConfig {
    /// True when at least one network exporter is configured.
    pub fn has_endpoints(&self) -> bool {
        self.otlp.is_some() || self.jaeger.is_some() || self.splunk.is_some()
    }

    /// Settings from endpoint strings as users give them (`host:port` or URLs; OTLP and
    /// Jaeger default to `http`, Splunk HEC to `https`), the rest at defaults. A Splunk
    /// endpoint needs a non-empty token.
    ///
    /// ```
    /// use podtrace_export::{ExportConfig, Secret};
    /// let c = ExportConfig::from_endpoints(Some("otel:4318"), None, None, None).unwrap();
    /// assert_eq!(c.otlp.unwrap().as_str(), "http://otel:4318/");
    /// assert!(ExportConfig::from_endpoints(None, None, Some("splunk:8088"), None).is_err());
    /// let c = ExportConfig::from_endpoints(None, None, Some("splunk:8088"), Some(Secret::new("t"))).unwrap();
    /// assert_eq!(c.splunk.unwrap().url.as_str(), "https://splunk:8088/");
    /// ```
    pub fn from_endpoints(
        otlp: Option<&str>,
        jaeger: Option<&str>,
        splunk: Option<&str>,
        splunk_token: Option<Secret>,
    ) -> Result<Self, ExportError> {
        let parse = |v: Option<&str>, scheme: &str, what: &str| {
            v.map(|v| {
                endpoint::parse_endpoint(v, scheme).map_err(|e| match e {
                    ExportError::Config(m) => ExportError::Config(format!("{what}: {m}")),
                    other => other,
                })
            })
            .transpose()
        };
        let splunk = match parse(splunk, "https", "Splunk HEC endpoint")? {
            None => None,
            Some(url) => match splunk_token.filter(|t| !t.is_empty()) {
                Some(token) => Some(SplunkConfig::new(url, token)),
                None => {
                    return Err(ExportError::Config(
                        "a Splunk HEC endpoint needs a token".into(),
                    ))
                }
            },
        };
        Ok(ExportConfig {
            otlp: parse(otlp, "http", "OTLP endpoint")?,
            jaeger: parse(jaeger, "http", "Jaeger endpoint")?,
            splunk,
            ..ExportConfig::default()
        })
    }
}

/// The OTLP/HTTP exporter for `endpoint`.
pub fn otlp_exporter(
    endpoint: &Url,
    delivery: &DeliveryConfig,
) -> Result<HttpExporter<otlp::OtlpEncoder>, ExportError> {
    let url = endpoint::otlp_traces_url(endpoint)?;
    http_exporter("otlp", otlp::OtlpEncoder, url, HeaderMap::new(), delivery)
}

/// The Jaeger collector exporter for `endpoint` (bodies are never gzipped).
pub fn jaeger_exporter(
    endpoint: &Url,
    delivery: &DeliveryConfig,
) -> Result<HttpExporter<jaeger::JaegerEncoder>, ExportError> {
    let url = endpoint::jaeger_url(endpoint)?;
    // The collector's /api/traces handler reads the body as is (no Content-Encoding
    // support), so Jaeger bodies are never gzipped, whatever the shared setting says.
    let delivery = &DeliveryConfig {
        gzip: false,
        ..delivery.clone()
    };
    http_exporter(
        "jaeger",
        jaeger::JaegerEncoder,
        url,
        HeaderMap::new(),
        delivery,
    )
}

/// The Splunk HEC exporter. `delivery.tls` is replaced by the Splunk config's own switches.
pub fn splunk_exporter(
    config: &SplunkConfig,
    delivery: &DeliveryConfig,
) -> Result<HttpExporter<splunk::SplunkEncoder>, ExportError> {
    let url = endpoint::splunk_url(&config.url)?;
    let mut auth =
        HeaderValue::from_str(&format!("Splunk {}", config.token.expose())).map_err(|_| {
            ExportError::Config(
                "the Splunk token holds characters not allowed in an HTTP header".into(),
            )
        })?;
    auth.set_sensitive(true);
    let mut headers = HeaderMap::new();
    headers.insert(AUTHORIZATION, auth);
    let delivery = DeliveryConfig {
        tls: TlsConfig {
            insecure: config.insecure,
            ca_file: config.ca_file.clone(),
        },
        ..delivery.clone()
    };
    let encoder = splunk::SplunkEncoder::new(config);
    http_exporter("splunk", encoder, url, headers, &delivery)
}

/// An exporter named `name` posting what `encoder` makes to `url` with `headers`.
fn http_exporter<E: delivery::Encoder>(
    name: &'static str,
    encoder: E,
    url: Url,
    headers: HeaderMap,
    delivery: &DeliveryConfig,
) -> Result<HttpExporter<E>, ExportError> {
    let http = HttpDelivery::new(url, encoder.content_type(), headers, delivery)?;
    Ok(HttpExporter::new(name, encoder, http))
}

/// Every exporter `config` asks for, in the order OTLP, Jaeger, Splunk.
pub fn build_exporters(config: &ExportConfig) -> Result<Vec<Box<dyn Exporter>>, ExportError> {
    let delivery = &config.delivery;
    let mut out: Vec<Box<dyn Exporter>> = Vec::new();
    if let Some(url) = &config.otlp {
        out.push(Box::new(otlp_exporter(url, delivery)?));
    }
    if let Some(url) = &config.jaeger {
        out.push(Box::new(jaeger_exporter(url, delivery)?));
    }
    if let Some(splunk) = &config.splunk {
        out.push(Box::new(splunk_exporter(splunk, delivery)?));
    }
    Ok(out)
}

/// Exports `spans` to every exporter concurrently and reports on each. One exporter failing
/// or hanging (up to its timeout and retries) neither fails nor delays the work of the
/// others; the call returns when all are done. Reports are in `exporters` order.
pub async fn export_all(exporters: &[Box<dyn Exporter>], spans: &[Span]) -> Vec<ExporterReport> {
    let runs = exporters.iter().map(|exporter| async move {
        let before = exporter.accounting();
        let started = Instant::now();
        let mut result = exporter.export(spans).await;
        if result.is_ok() {
            result = exporter.flush().await;
        }
        ExporterReport::new(
            exporter.as_ref(),
            spans.len(),
            exporter.accounting().since(&before),
            started.elapsed(),
            result.err(),
        )
    });
    join_all(runs.collect()).await
}

/// Polls all futures on the current task until every one is done; outputs in input order.
pub(crate) async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *output = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}
