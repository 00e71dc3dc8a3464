//! The one HTTP delivery layer every exporter uses.
//!
//! Exporters are thin [`Encoder`]s (spans → request bodies + a verdict on the receiver's
//! answer); everything about getting bytes to a receiver lives here, once:
//!
//! - **batching**: [`HttpExporter::send`] cuts the spans into batches of
//!   [`DeliveryConfig::batch_size`] and sends one or more requests per batch, up to
//!   [`DeliveryConfig::concurrency`] at a time;
//! - **timeouts**: per request ([`DeliveryConfig::timeout`]); a timed-out request is not
//!   retried (the receiver may have taken it, a retry could duplicate spans);
//! - **retries**: bounded ([`DeliveryConfig::max_retries`]), exponential backoff with jitter,
//!   on what the encoder's [`Encoder::judge`] calls retryable (429, 502, 503, 504, HEC code 9)
//!   and on connection errors, honouring `Retry-After` (seconds or HTTP date) when the
//!   receiver sends it;
//! - **gzip** request bodies (`Content-Encoding: gzip`) when asked;
//! - **TLS**: certificate verification on by default, an extra CA file, an explicit insecure
//!   switch;
//! - **accounting** per exporter ([`Accounting`]): spans sent, requests, retried requests,
//!   failed requests, dropped spans;
//! - **secrets**: headers such as `Authorization` are marked sensitive and the endpoint is
//!   shown redacted ([`crate::endpoint::redact`]) in every log line and error.
//!
//! Not here: what the bodies contain (see `otlp`, `jaeger`, `splunk`).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use podtrace_model::Span;
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use serde::Serialize;

use crate::endpoint::redact;
use crate::{BoxFuture, ExportError, Exporter};

/// TLS settings for https endpoints.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsConfig {
    /// Accept any certificate (no verification). Off by default; only for tests and
    /// self-signed receivers you trust by other means.
    pub insecure: bool,
    /// A PEM file with extra CA certificates to trust (added to the system roots).
    pub ca_file: Option<PathBuf>,
}

/// Settings of the shared delivery layer.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryConfig {
    /// Spans per batch (each batch becomes one request, or one per workload for Jaeger).
    pub batch_size: usize,
    /// Per-request timeout (connect + send + answer).
    pub timeout: Duration,
    /// Retries after the first attempt for retryable failures (0 = no retry).
    pub max_retries: u32,
    /// Backoff before the first retry; doubles each retry, with jitter.
    pub initial_backoff: Duration,
    /// Upper bound of the computed backoff.
    pub max_backoff: Duration,
    /// Upper bound applied to a receiver's `Retry-After`.
    pub max_retry_after: Duration,
    /// Requests in flight at once per exporter (1 = one batch after the other).
    pub concurrency: usize,
    /// Compress request bodies with gzip.
    pub gzip: bool,
    /// TLS verification settings.
    pub tls: TlsConfig,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            batch_size: 512,
            timeout: Duration::from_secs(10),
            max_retries: 3,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
            max_retry_after: Duration::from_secs(30),
            concurrency: 2,
            gzip: false,
            tls: TlsConfig::default(),
        }
    }
}

/// One request body and the number of spans it carries.
#[derive(Debug, Clone)]
pub struct Payload {
    /// Uncompressed body.
    pub body: Vec<u8>,
    /// Spans inside (for accounting).
    pub spans: usize,
}

/// What the receiver's answer means, decided by the encoder that knows the protocol.
#[derive(Debug)]
pub enum Verdict {
    /// Taken. `rejected_spans` is what the receiver said it dropped (OTLP partial success).
    Accepted {
        /// Spans the receiver reported as rejected.
        rejected_spans: u64,
    },
    /// A transient failure worth retrying (the text says why).
    Retry(String),
    /// A permanent failure.
    Fail(ExportError),
}

/// A wire format: spans → request bodies, and the meaning of the receiver's answers.
pub trait Encoder: Send + Sync {
    /// The `Content-Type` of the bodies.
    fn content_type(&self) -> &'static str;
    /// Encodes one batch into one or more request bodies.
    fn encode(&self, spans: &[Span]) -> Result<Vec<Payload>, ExportError>;
    /// Judges an answer. The default follows the common HTTP rules: 2xx accepted; 429, 502,
    /// 503, 504 retried; 401/403 credential problems; anything else rejected.
    fn judge(&self, endpoint: &str, status: StatusCode, body: &[u8]) -> Verdict {
        default_judge(endpoint, status, body)
    }
}

/// The common HTTP verdict (see [`Encoder::judge`]).
pub fn default_judge(endpoint: &str, status: StatusCode, body: &[u8]) -> Verdict {
    if status.is_success() {
        return Verdict::Accepted { rejected_spans: 0 };
    }
    if is_retryable_status(status) {
        return Verdict::Retry(format!("HTTP {status}"));
    }
    let message = body_snippet(body);
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        return Verdict::Fail(ExportError::Auth {
            endpoint: endpoint.to_string(),
            status: status.as_u16(),
            message,
        });
    }
    Verdict::Fail(ExportError::Rejected {
        endpoint: endpoint.to_string(),
        status: status.as_u16(),
        message,
    })
}

/// 429, 502, 503 and 504: the statuses every exporter retries.
pub fn is_retryable_status(status: StatusCode) -> bool {
    matches!(status.as_u16(), 429 | 502 | 503 | 504)
}

/// A short printable excerpt of a response body for error messages.
pub fn body_snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect();
    let clean = clean.trim();
    if clean.is_empty() {
        "(empty body)".to_string()
    } else {
        clean.to_string()
    }
}

/// Counters of one exporter (cumulative over its life; [`crate::ExporterReport`] shows the
/// difference over one `export` call).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Accounting {
    /// Spans the receiver accepted.
    pub spans_sent: u64,
    /// HTTP requests made (first attempts and retries).
    pub requests: u64,
    /// Requests that were re-sent after a retryable failure.
    pub retried_requests: u64,
    /// Requests that failed for good (after retries, or not retryable).
    pub failed_requests: u64,
    /// Spans that did not reach the receiver (failed requests, batches skipped after the
    /// endpoint went down, spans the receiver reported as rejected).
    pub dropped_spans: u64,
}

impl Accounting {
    /// `self - earlier`, field by field (saturating).
    pub fn since(&self, earlier: &Accounting) -> Accounting {
        Accounting {
            spans_sent: self.spans_sent.saturating_sub(earlier.spans_sent),
            requests: self.requests.saturating_sub(earlier.requests),
            retried_requests: self
                .retried_requests
                .saturating_sub(earlier.retried_requests),
            failed_requests: self.failed_requests.saturating_sub(earlier.failed_requests),
            dropped_spans: self.dropped_spans.saturating_sub(earlier.dropped_spans),
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    spans_sent: AtomicU64,
    requests: AtomicU64,
    retried_requests: AtomicU64,
    failed_requests: AtomicU64,
    dropped_spans: AtomicU64,
}

impl Counters {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
    fn snapshot(&self) -> Accounting {
        Accounting {
            spans_sent: self.spans_sent.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
            retried_requests: self.retried_requests.load(Ordering::Relaxed),
            failed_requests: self.failed_requests.load(Ordering::Relaxed),
            dropped_spans: self.dropped_spans.load(Ordering::Relaxed),
        }
    }
}

/// An HTTP client bound to one endpoint, with retries and accounting.
#[derive(Debug)]
pub struct HttpDelivery {
    client: reqwest::Client,
    url: Url,
    shown: String,
    headers: HeaderMap,
    config: DeliveryConfig,
    counters: Counters,
}

impl HttpDelivery {
    /// Builds the client. `headers` are sent with every request; mark credentials with
    /// `HeaderValue::set_sensitive(true)`.
    pub fn new(
        url: Url,
        content_type: &'static str,
        mut headers: HeaderMap,
        config: &DeliveryConfig,
    ) -> Result<Self, ExportError> {
        if config.batch_size == 0 {
            return Err(ExportError::Config("batch size must be at least 1".into()));
        }
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        if config.gzip {
            headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        let client = build_client(&config.tls, config.timeout)?;
        Ok(HttpDelivery {
            client,
            shown: redact(&url),
            url,
            headers,
            config: config.clone(),
            counters: Counters::default(),
        })
    }

    /// The endpoint as shown in messages (redacted).
    pub fn endpoint(&self) -> &str {
        &self.shown
    }

    /// The delivery settings.
    pub fn config(&self) -> &DeliveryConfig {
        &self.config
    }

    /// Cumulative counters.
    pub fn accounting(&self) -> Accounting {
        self.counters.snapshot()
    }

    /// Counts spans that were never sent (batches skipped, bodies that failed to encode).
    pub fn count_dropped(&self, spans: usize) {
        Counters::add(&self.counters.dropped_spans, spans as u64);
    }

    /// Sends one payload, retrying as the encoder's verdict and the config allow.
    pub async fn deliver(
        &self,
        payload: Payload,
        encoder: &dyn Encoder,
    ) -> Result<(), ExportError> {
        let spans = payload.spans as u64;
        let body = if self.config.gzip {
            gzip(&payload.body).map_err(|e| {
                self.count_dropped(payload.spans);
                ExportError::Encode(format!("gzip: {e}"))
            })?
        } else {
            payload.body
        };
        let body = bytes_of(body);
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            Counters::add(&self.counters.requests, 1);
            let started = Instant::now();
            let sent = self
                .client
                .post(self.url.clone())
                .headers(self.headers.clone())
                .body(body.clone())
                .send()
                .await;
            let (retry_reason, retry_after, connect_failure) = match sent {
                Ok(response) => {
                    let status = response.status();
                    let retry_after = parse_retry_after(response.headers());
                    let answer = match response.bytes().await {
                        Ok(b) => b,
                        Err(e) => {
                            return Err(self.fail(spans, self.transport_error(e, attempt)));
                        }
                    };
                    match encoder.judge(&self.shown, status, &answer) {
                        Verdict::Accepted { rejected_spans } => {
                            let rejected = rejected_spans.min(spans);
                            Counters::add(&self.counters.spans_sent, spans - rejected);
                            Counters::add(&self.counters.dropped_spans, rejected);
                            tracing::debug!(
                                endpoint = %self.shown,
                                spans,
                                rejected,
                                elapsed_ms = started.elapsed().as_millis() as u64,
                                "batch delivered"
                            );
                            return Ok(());
                        }
                        Verdict::Fail(err) => return Err(self.fail(spans, err)),
                        Verdict::Retry(reason) => (reason, retry_after, false),
                    }
                }
                Err(e) if is_tls(&e) => {
                    let err = ExportError::Tls {
                        endpoint: self.shown.clone(),
                        detail: error_chain(&e),
                    };
                    return Err(self.fail(spans, err));
                }
                Err(e) if e.is_connect() || is_reset(&e) => (error_chain(&e), None, e.is_connect()),
                Err(e) => return Err(self.fail(spans, self.transport_error(e, attempt))),
            };
            if attempt > self.config.max_retries {
                let err = if connect_failure {
                    ExportError::Connect {
                        endpoint: self.shown.clone(),
                        attempts: attempt,
                        detail: retry_reason,
                    }
                } else {
                    ExportError::RetriesExhausted {
                        endpoint: self.shown.clone(),
                        attempts: attempt,
                        last: retry_reason,
                    }
                };
                return Err(self.fail(spans, err));
            }
            let wait = match retry_after {
                Some(after) => after.min(self.config.max_retry_after),
                None => backoff(&self.config, attempt),
            };
            tracing::warn!(
                endpoint = %self.shown,
                attempt,
                reason = %retry_reason,
                wait_ms = wait.as_millis() as u64,
                "retrying export request"
            );
            Counters::add(&self.counters.retried_requests, 1);
            tokio::time::sleep(wait).await;
        }
    }

    fn fail(&self, spans: u64, err: ExportError) -> ExportError {
        Counters::add(&self.counters.failed_requests, 1);
        Counters::add(&self.counters.dropped_spans, spans);
        tracing::warn!(endpoint = %self.shown, spans, error = %err, "export request failed");
        err
    }

    fn transport_error(&self, e: reqwest::Error, attempt: u32) -> ExportError {
        if e.is_timeout() {
            ExportError::Timeout {
                endpoint: self.shown.clone(),
                timeout: self.config.timeout,
            }
        } else if e.is_connect() {
            ExportError::Connect {
                endpoint: self.shown.clone(),
                attempts: attempt,
                detail: error_chain(&e),
            }
        } else {
            ExportError::Http {
                endpoint: self.shown.clone(),
                detail: error_chain(&e),
            }
        }
    }
}

fn bytes_of(body: Vec<u8>) -> bytes::Bytes {
    bytes::Bytes::from(body)
}

fn build_client(tls: &TlsConfig, timeout: Duration) -> Result<reqwest::Client, ExportError> {
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("podtrace/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = &tls.ca_file {
        let pem = std::fs::read(path).map_err(|e| {
            ExportError::Config(format!("cannot read CA file {}: {e}", path.display()))
        })?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            ExportError::Config(format!(
                "CA file {} holds no usable PEM certificate: {}",
                path.display(),
                error_chain(&e)
            ))
        })?;
        if certs.is_empty() {
            return Err(ExportError::Config(format!(
                "CA file {} holds no certificate",
                path.display()
            )));
        }
        builder = builder.tls_certs_merge(certs);
    }
    if tls.insecure {
        builder = builder.danger_accept_invalid_certs(true);
    }
    builder
        .build()
        .map_err(|e| ExportError::Config(format!("HTTP client: {}", error_chain(&e))))
}

/// A reqwest error and its causes, without the URL (which could carry user info).
fn error_chain(e: &reqwest::Error) -> String {
    let mut out = String::new();
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    let first = if e.is_connect() {
        "connection failed"
    } else if e.is_timeout() {
        "timed out"
    } else if e.is_request() {
        "request failed"
    } else if e.is_body() || e.is_decode() {
        "bad response body"
    } else {
        "HTTP client error"
    };
    out.push_str(first);
    while let Some(s) = source {
        let text = s.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// A certificate or handshake failure (rustls reports them inside the connect error).
fn is_tls(e: &reqwest::Error) -> bool {
    let chain = error_chain(e).to_ascii_lowercase();
    e.is_connect()
        && (chain.contains("certificate")
            || chain.contains("handshake")
            || chain.contains("tls")
            || chain.contains("unknownissuer"))
}

fn is_reset(e: &reqwest::Error) -> bool {
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            if matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
            ) {
                return true;
            }
        }
        source = s.source();
    }
    false
}

/// `Retry-After` as a wait: delay-seconds, or an IMF-fixdate HTTP date
/// (`Sun, 06 Nov 1994 08:49:37 GMT`) measured from now (a date in the past = no wait).
fn parse_retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = parse_http_date(value)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs();
    Some(Duration::from_secs(at.saturating_sub(now)))
}

/// Seconds since the epoch of an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`): RFC 2822's
/// syntax (jiff's parser; the weekday is not checked) with `GMT` as the only zone.
fn parse_http_date(value: &str) -> Option<u64> {
    static PARSER: jiff::fmt::rfc2822::DateTimeParser =
        jiff::fmt::rfc2822::DateTimeParser::new().relaxed_weekday(true);
    if !value.ends_with(" GMT") {
        return None;
    }
    let at = PARSER.parse_timestamp(value).ok()?;
    u64::try_from(at.as_second()).ok()
}

/// Exponential backoff with jitter: `initial × 2^(attempt-1)`, capped, then a random
/// point in its upper half (so concurrent exporters do not retry in lockstep).
pub fn backoff(config: &DeliveryConfig, attempt: u32) -> Duration {
    let exp = attempt.saturating_sub(1).min(20);
    let base = config
        .initial_backoff
        .saturating_mul(1u32 << exp)
        .min(config.max_backoff);
    let half = base / 2;
    let nanos = half.as_nanos() as u64;
    let jitter = if nanos == 0 { 0 } else { random_u64() % nanos };
    half + Duration::from_nanos(jitter)
}

fn random_u64() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

fn gzip(body: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4 + 64),
        flate2::Compression::fast(),
    );
    enc.write_all(body)?;
    enc.finish()
}

/// An exporter made of an [`Encoder`] and the shared [`HttpDelivery`].
#[derive(Debug)]
pub struct HttpExporter<E> {
    name: &'static str,
    encoder: E,
    delivery: HttpDelivery,
    /// The endpoint's give-up state, across calls.
    give_up: std::sync::Mutex<GiveUp>,
}

impl<E: Encoder> HttpExporter<E> {
    /// Puts an encoder in front of a delivery.
    pub fn new(name: &'static str, encoder: E, delivery: HttpDelivery) -> Self {
        HttpExporter {
            name,
            encoder,
            delivery,
            give_up: std::sync::Mutex::default(),
        }
    }

    /// The encoder.
    pub fn encoder(&self) -> &E {
        &self.encoder
    }

    /// Sends `spans` in batches, up to [`DeliveryConfig::concurrency`] requests at a time.
    /// A batch the receiver rejects, or whose retries run out, is counted and the next one is
    /// tried; when the endpoint itself is down (refused, timeout, TLS, bad token, or retries
    /// exhausted for [`GIVE_UP_AFTER_EXHAUSTED_WINDOWS`] request windows in a row, counted
    /// across calls: [`GiveUp`]) the remaining batches are counted as dropped at once and
    /// that error is returned; otherwise the first error is.
    pub async fn send(&self, spans: &[Span]) -> Result<(), ExportError> {
        let batch_size = self.delivery.config.batch_size.max(1);
        let concurrency = self.delivery.config.concurrency.max(1);
        let mut first_error: Option<ExportError> = None;
        let mut batches = spans.chunks(batch_size);
        let mut pending: Vec<Payload> = Vec::new();
        // Spans neither handed to `deliver` nor already counted as dropped.
        let mut unsent = spans.len();
        loop {
            while pending.len() < concurrency {
                let Some(batch) = batches.next() else { break };
                match self.encoder.encode(batch) {
                    Ok(payloads) => pending.extend(payloads),
                    Err(e) => {
                        self.delivery.count_dropped(batch.len());
                        unsent -= batch.len();
                        first_error.get_or_insert(e);
                    }
                }
            }
            if pending.is_empty() {
                break;
            }
            let window: Vec<Payload> = pending.drain(..pending.len().min(concurrency)).collect();
            unsent -= window.iter().map(|p| p.spans).sum::<usize>();
            let sends = window
                .into_iter()
                .map(|p| self.delivery.deliver(p, &self.encoder))
                .collect();
            let mut down: Option<ExportError> = None;
            let mut exhausted: Option<ExportError> = None;
            let mut any_ok = false;
            for result in crate::join_all(sends).await {
                match result {
                    Err(e @ ExportError::RetriesExhausted { .. }) => {
                        exhausted.get_or_insert(e);
                    }
                    Err(e) if e.is_endpoint_down() => {
                        down.get_or_insert(e);
                    }
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                    Ok(()) => any_ok = true,
                }
            }
            let give_up = self
                .give_up
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .round(any_ok, down.is_some(), exhausted.is_some());
            if let Some(e) = exhausted {
                if give_up {
                    down.get_or_insert(e);
                } else {
                    first_error.get_or_insert(e);
                }
            }
            if let Some(e) = down {
                self.delivery.count_dropped(unsent);
                return Err(e);
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Request windows in a row whose retries all ran out before an exporter stops sending the
/// rest of a call's spans to that endpoint (they are counted as dropped).
pub const GIVE_UP_AFTER_EXHAUSTED_WINDOWS: u32 = 3;

/// The one give-up rule for an endpoint, kept per exporter across calls: the delivery layer
/// applies it to every window of requests, and the fan-out ([`crate::fanout`]) stops
/// calling an exporter that has given up ([`Exporter::given_up`]), counting the spans of
/// later batches as dropped at once.
///
/// - An endpoint that is down (refused, unreachable, TLS, bad token, no answer in time) is
///   given up on at once.
/// - A flaky one (retries exhausted now and then) keeps getting batches; only one whose
///   retries run out for [`GIVE_UP_AFTER_EXHAUSTED_WINDOWS`] windows in a row, with nothing
///   delivered in between, is given up on.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GiveUp {
    exhausted_in_a_row: u32,
    given_up: bool,
}

impl GiveUp {
    /// Takes one window's outcome: whether any request of it succeeded, whether one failed
    /// because the endpoint is down, whether one ran out of retries. Returns whether the
    /// endpoint is (now or already) given up on.
    pub fn round(&mut self, delivered: bool, down: bool, exhausted: bool) -> bool {
        if delivered {
            self.exhausted_in_a_row = 0;
        }
        if exhausted && !delivered {
            self.exhausted_in_a_row += 1;
        }
        if down || self.exhausted_in_a_row >= GIVE_UP_AFTER_EXHAUSTED_WINDOWS {
            self.given_up = true;
        }
        self.given_up
    }

    /// Whether the endpoint was given up on.
    pub fn given_up(&self) -> bool {
        self.given_up
    }
}

impl<E: Encoder> Exporter for HttpExporter<E> {
    fn name(&self) -> &str {
        self.name
    }

    fn endpoint(&self) -> String {
        self.delivery.endpoint().to_string()
    }

    fn export<'a>(&'a self, spans: &'a [Span]) -> BoxFuture<'a, Result<(), ExportError>> {
        Box::pin(self.send(spans))
    }

    fn flush(&self) -> BoxFuture<'_, Result<(), ExportError>> {
        // Every export call sends all its spans before it returns: nothing is buffered.
        Box::pin(async { Ok(()) })
    }

    fn accounting(&self) -> Accounting {
        self.delivery.accounting()
    }

    fn given_up(&self) -> bool {
        self.give_up
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .given_up()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn give_up_at_once_when_down_after_three_exhausted_windows_when_flaky() {
        let mut g = GiveUp::default();
        assert!(!g.round(true, false, false));
        // flaky: exhausted windows with deliveries in between never give up
        for _ in 0..10 {
            assert!(!g.round(false, false, true));
            assert!(!g.round(true, false, true));
        }
        assert!(!g.round(false, false, true));
        assert!(!g.round(false, false, true));
        assert!(
            g.round(false, false, true),
            "third exhausted window in a row"
        );
        assert!(g.round(true, false, false), "sticky");
        let mut g = GiveUp::default();
        assert!(g.round(false, true, false), "down: at once");
        assert!(g.given_up());
    }

    #[test]
    fn backoff_grows_caps_and_jitters() {
        let cfg = DeliveryConfig {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
            ..DeliveryConfig::default()
        };
        for _ in 0..50 {
            let b1 = backoff(&cfg, 1);
            assert!(b1 >= Duration::from_millis(50) && b1 <= Duration::from_millis(100));
            let b3 = backoff(&cfg, 3);
            assert!(b3 >= Duration::from_millis(200) && b3 <= Duration::from_millis(400));
            let b10 = backoff(&cfg, 10);
            assert!(b10 >= Duration::from_millis(500) && b10 <= Duration::from_millis(1000));
        }
        let distinct: std::collections::HashSet<_> = (0..20).map(|_| backoff(&cfg, 4)).collect();
        assert!(distinct.len() > 1, "no jitter");
    }

    #[test]
    fn retry_after_seconds_are_read() {
        let mut h = HeaderMap::new();
        assert_eq!(parse_retry_after(&h), None);
        h.insert(RETRY_AFTER, HeaderValue::from_static(" 3 "));
        assert_eq!(parse_retry_after(&h), Some(Duration::from_secs(3)));
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(parse_retry_after(&h), Some(Duration::ZERO), "past date");
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(
            parse_http_date("Thu, 29 Feb 2024 00:00:00 GMT"),
            Some(1_709_164_800)
        );
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 PST"), None);
        assert_eq!(parse_http_date("soon"), None);
        assert_eq!(parse_http_date("Sun, 32 Nov 1994 08:49:37 GMT"), None);
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 24:49:37 GMT"), None);
        let later = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 100;
        let text = crate::splunk::rfc3339_nanos(later * 1_000_000_000);
        // Build the IMF-fixdate of `later` from its RFC 3339 form.
        let (date, time) = text.split_once('T').unwrap();
        let d: Vec<&str> = date.split('-').collect();
        let month = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ][d[1].parse::<usize>().unwrap() - 1];
        let imf = format!("Mon, {} {month} {} {} GMT", d[2], d[0], &time[..8]);
        h.insert(RETRY_AFTER, HeaderValue::from_str(&imf).unwrap());
        let wait = parse_retry_after(&h).unwrap();
        assert!(
            wait > Duration::from_secs(95) && wait <= Duration::from_secs(100),
            "{wait:?}"
        );
    }

    #[test]
    fn default_verdicts() {
        let v = |s: u16| default_judge("e", StatusCode::from_u16(s).unwrap(), b"nope");
        assert!(matches!(v(200), Verdict::Accepted { .. }));
        assert!(matches!(v(202), Verdict::Accepted { .. }));
        for s in [429, 502, 503, 504] {
            assert!(matches!(v(s), Verdict::Retry(_)), "{s}");
        }
        assert!(matches!(v(401), Verdict::Fail(ExportError::Auth { .. })));
        assert!(matches!(v(403), Verdict::Fail(ExportError::Auth { .. })));
        assert!(matches!(
            v(400),
            Verdict::Fail(ExportError::Rejected { .. })
        ));
        assert!(matches!(
            v(500),
            Verdict::Fail(ExportError::Rejected { .. })
        ));
    }

    #[test]
    fn gzip_roundtrips() {
        use std::io::Read;
        let z = gzip(b"hello hello hello").unwrap();
        let mut out = String::new();
        flate2::read::GzDecoder::new(&z[..])
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, "hello hello hello");
    }
}
