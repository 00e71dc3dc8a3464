//! Splunk HTTP Event Collector encoder: spans → concatenated JSON events.
//!
//! Each span becomes `{"time": <epoch seconds with ms>, "host", "source": "podtrace",
//! "sourcetype", ["index"], "event": {trace_id, span_id, parent_span_id, name, kind, service,
//! pod, namespace, start_time (RFC 3339, ns), duration_ms, status, status_message,
//! trace_state, flags, attributes}}`; events are written back to back (no array), as HEC
//! expects. The token travels in `Authorization: Splunk <token>` (a sensitive header) and
//! is held in a [`Secret`] everywhere else.
//!
//! Answers are judged with HEC's codes: 0 success; 9 (or HTTP 503) busy → retry; 1-4 or
//! HTTP 401/403 → a token problem named as such; 5/6/12/13 → the data was refused.

use std::path::PathBuf;

use podtrace_model::{AttrValue, Span, SpanKind, StatusCode as ModelCode};
use reqwest::{StatusCode, Url};
use serde::{Deserialize, Serialize};

use crate::delivery::{body_snippet, is_retryable_status, Encoder, Payload, Verdict};
use crate::{ExportError, Secret};

/// The default `sourcetype` of podtrace events.
pub const DEFAULT_SOURCETYPE: &str = "podtrace:span";

/// Splunk HEC settings.
#[derive(Debug, Clone, PartialEq)]
pub struct SplunkConfig {
    /// HEC base URL (`https://splunk:8088`) or full collector URL.
    pub url: Url,
    /// The HEC token.
    pub token: Secret,
    /// Skip TLS certificate verification.
    pub insecure: bool,
    /// Extra CA certificates (PEM) to trust.
    pub ca_file: Option<PathBuf>,
    /// Target index (the token's default when `None`).
    pub index: Option<String>,
    /// Event `sourcetype`.
    pub sourcetype: String,
    /// Event `host`; default: the span's `k8s.node.name`, else its service name.
    pub host: Option<String>,
}

impl SplunkConfig {
    /// Settings with the defaults: verification on, no CA file, default index and host,
    /// sourcetype `podtrace:span`.
    pub fn new(url: Url, token: impl Into<Secret>) -> Self {
        SplunkConfig {
            url,
            token: token.into(),
            insecure: false,
            ca_file: None,
            index: None,
            sourcetype: DEFAULT_SOURCETYPE.to_string(),
            host: None,
        }
    }
}

#[derive(Serialize)]
struct HecEvent<'a> {
    time: f64,
    host: &'a str,
    source: &'static str,
    sourcetype: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    index: Option<&'a str>,
    event: SpanEvent<'a>,
}

#[derive(Serialize)]
struct SpanEvent<'a> {
    trace_id: String,
    span_id: String,
    parent_span_id: Option<String>,
    name: &'a str,
    kind: &'static str,
    service: &'a str,
    pod: Option<&'a str>,
    namespace: Option<&'a str>,
    start_time: String,
    start_time_unix_nano: u64,
    duration_ms: f64,
    status: &'static str,
    #[serde(skip_serializing_if = "str::is_empty")]
    status_message: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    trace_state: &'a str,
    flags: u32,
    attributes: serde_json::Map<String, serde_json::Value>,
}

fn json_value(v: &AttrValue) -> serde_json::Value {
    match v {
        AttrValue::Str(s) => serde_json::Value::String(s.clone()),
        AttrValue::Bool(b) => serde_json::Value::Bool(*b),
        AttrValue::Int(i) => serde_json::Value::from(*i),
        AttrValue::Double(d) => serde_json::Value::from(*d),
    }
}

/// RFC 3339 UTC with nanoseconds, e.g. `2023-11-14T22:13:20.123456789Z`.
pub fn rfc3339_nanos(unix_nano: u64) -> String {
    // Any u64 of ns (until 2554) is inside jiff's range; the fallback is never taken.
    jiff::Timestamp::from_nanosecond(i128::from(unix_nano))
        .map(|t| format!("{t:.9}"))
        .unwrap_or_default()
}

/// Splunk HEC events, concatenated.
#[derive(Debug, Clone)]
pub struct SplunkEncoder {
    sourcetype: String,
    index: Option<String>,
    host: Option<String>,
    /// Only to scrub it from error bodies a server echoes back.
    token: Secret,
}

impl SplunkEncoder {
    /// Encoder for the event fields of `config` (the token is only used to keep it out of
    /// error messages).
    pub fn new(config: &SplunkConfig) -> Self {
        SplunkEncoder {
            sourcetype: config.sourcetype.clone(),
            index: config.index.clone().filter(|i| !i.is_empty()),
            host: config.host.clone(),
            token: config.token.clone(),
        }
    }

    /// Appends the HEC event of one span to `out`.
    pub fn write_event(&self, span: &Span, out: &mut Vec<u8>) -> Result<(), ExportError> {
        let resource = &span.resource;
        let host = self
            .host
            .as_deref()
            .or_else(|| resource.get("k8s.node.name"))
            .unwrap_or(&resource.service_name);
        let event = HecEvent {
            time: (span.start_time_unix_nano / 1_000_000) as f64 / 1_000.0,
            host,
            source: "podtrace",
            sourcetype: &self.sourcetype,
            index: self.index.as_deref(),
            event: SpanEvent {
                trace_id: span.trace_id.to_string(),
                span_id: span.span_id.to_string(),
                parent_span_id: span.parent_span_id.map(|p| p.to_string()),
                name: &span.name,
                kind: match span.kind {
                    SpanKind::Server => "server",
                    SpanKind::Client => "client",
                },
                service: &resource.service_name,
                pod: resource.get("k8s.pod.name"),
                namespace: resource.get("k8s.namespace.name"),
                start_time: rfc3339_nanos(span.start_time_unix_nano),
                start_time_unix_nano: span.start_time_unix_nano,
                duration_ms: span.duration_ns() as f64 / 1e6,
                status: match span.status.code {
                    ModelCode::Unset => "unset",
                    ModelCode::Ok => "ok",
                    ModelCode::Error => "error",
                },
                status_message: &span.status.message,
                trace_state: &span.trace_state,
                flags: span.flags,
                attributes: span
                    .attributes
                    .iter()
                    .map(|kv| (kv.key.to_string(), json_value(&kv.value)))
                    .collect(),
            },
        };
        serde_json::to_writer(&mut *out, &event)
            .map_err(|e| ExportError::Encode(format!("HEC event: {e}")))
    }
}

impl Encoder for SplunkEncoder {
    fn content_type(&self) -> &'static str {
        "application/json"
    }

    fn encode(&self, spans: &[Span]) -> Result<Vec<Payload>, ExportError> {
        let mut body = Vec::with_capacity(spans.len() * 512);
        for span in spans {
            self.write_event(span, &mut body)?;
            body.push(b'\n');
        }
        Ok(vec![Payload {
            body,
            spans: spans.len(),
        }])
    }

    fn judge(&self, endpoint: &str, status: StatusCode, body: &[u8]) -> Verdict {
        // A server may echo the Authorization header back: never let it into a message.
        let token = self.token.expose().as_bytes();
        if !token.is_empty() && body.windows(token.len()).any(|w| w == token) {
            let scrubbed = String::from_utf8_lossy(body).replace(self.token.expose(), "<redacted>");
            return judge_hec(endpoint, status, scrubbed.as_bytes());
        }
        judge_hec(endpoint, status, body)
    }
}

/// HEC's JSON answer.
#[derive(Debug, Deserialize)]
struct HecAnswer {
    #[serde(default)]
    text: String,
    #[serde(default)]
    code: Option<i64>,
}

/// What an HEC error code means for the operator.
pub fn hec_code_meaning(code: i64) -> &'static str {
    match code {
        0 => "success",
        1 => "the token is disabled",
        2 => "the token is missing (no Authorization header was accepted)",
        3 => "the Authorization header is malformed",
        4 => "the token is invalid (unknown to this HEC)",
        5 => "the request had no data",
        6 => "the data format is invalid",
        7 => "the index is incorrect",
        8 => "internal server error",
        9 => "the server is busy",
        10 => "the data channel is missing",
        11 => "the data channel is invalid",
        12 => "the event field is required",
        13 => "the event field cannot be blank",
        14 => "acknowledgement is disabled",
        _ => "unknown HEC code",
    }
}

fn judge_hec(endpoint: &str, status: StatusCode, body: &[u8]) -> Verdict {
    let answer: Option<HecAnswer> = serde_json::from_slice(body).ok();
    let code = answer.as_ref().and_then(|a| a.code);
    let text = answer
        .as_ref()
        .map(|a| a.text.clone())
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| body_snippet(body));
    let explained = match code {
        Some(c) => format!("HEC code {c} \"{text}\": {}", hec_code_meaning(c)),
        None => text.clone(),
    };
    if status.is_success() && code.unwrap_or(0) == 0 {
        return Verdict::Accepted { rejected_spans: 0 };
    }
    if code == Some(9) || is_retryable_status(status) {
        return Verdict::Retry(format!("HTTP {status}, {explained}"));
    }
    let token_problem = matches!(code, Some(1..=4))
        || status == StatusCode::UNAUTHORIZED
        || status == StatusCode::FORBIDDEN;
    if token_problem {
        return Verdict::Fail(ExportError::Auth {
            endpoint: endpoint.to_string(),
            status: status.as_u16(),
            message: format!("Splunk HEC token problem: {explained}"),
        });
    }
    Verdict::Fail(ExportError::Rejected {
        endpoint: endpoint.to_string(),
        status: status.as_u16(),
        message: explained,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use podtrace_model::{KeyValue, Resource, SpanId, Status, TraceId};

    #[test]
    fn rfc3339_matches_known_instants() {
        assert_eq!(rfc3339_nanos(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            rfc3339_nanos(1_700_000_000_123_456_789),
            "2023-11-14T22:13:20.123456789Z"
        );
        assert_eq!(
            rfc3339_nanos(951_782_400_000_000_000),
            "2000-02-29T00:00:00.000000000Z"
        );
    }

    #[test]
    fn events_are_concatenated_objects() {
        let span = Span {
            trace_id: TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            span_id: SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            parent_span_id: None,
            trace_state: String::new(),
            flags: 1,
            name: "GET /".into(),
            kind: SpanKind::Server,
            start_time_unix_nano: 1_700_000_000_123_456_789,
            end_time_unix_nano: 1_700_000_000_125_956_789,
            attributes: vec![KeyValue::new("http.response.status_code", 200i64)],
            status: Status::unset(),
            resource: Resource::new("web")
                .with("k8s.pod.name", "web-1")
                .with("k8s.namespace.name", "shop"),
        };
        let cfg = SplunkConfig {
            index: Some("traces".into()),
            ..SplunkConfig::new(Url::parse("http://h:8088").unwrap(), "t")
        };
        let payload = SplunkEncoder::new(&cfg)
            .encode(&[span.clone(), span])
            .unwrap();
        let events: Vec<serde_json::Value> = serde_json::Deserializer::from_slice(&payload[0].body)
            .into_iter()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(events.len(), 2);
        let e = &events[0];
        assert_eq!(e["time"], 1_700_000_000.123);
        assert_eq!(e["sourcetype"], "podtrace:span");
        assert_eq!(e["index"], "traces");
        assert_eq!(e["host"], "web");
        assert_eq!(e["event"]["pod"], "web-1");
        assert_eq!(e["event"]["namespace"], "shop");
        assert_eq!(e["event"]["duration_ms"], 2.5);
        assert_eq!(e["event"]["parent_span_id"], serde_json::Value::Null);
        assert_eq!(e["event"]["attributes"]["http.response.status_code"], 200);
    }

    #[test]
    fn hec_codes_map_to_distinct_errors() {
        let j = |s: u16, b: &str| judge_hec("e", StatusCode::from_u16(s).unwrap(), b.as_bytes());
        assert!(matches!(
            j(200, r#"{"text":"Success","code":0}"#),
            Verdict::Accepted { .. }
        ));
        assert!(matches!(
            j(503, r#"{"text":"Server is busy","code":9}"#),
            Verdict::Retry(_)
        ));
        match j(403, r#"{"text":"Invalid token","code":4}"#) {
            Verdict::Fail(ExportError::Auth { message, .. }) => {
                assert!(message.contains("token is invalid"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        match j(401, r#"{"text":"Token is required","code":2}"#) {
            Verdict::Fail(ExportError::Auth { message, .. }) => {
                assert!(message.contains("token is missing"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            j(400, r#"{"text":"Invalid data format","code":6}"#),
            Verdict::Fail(ExportError::Rejected { .. })
        ));
    }
}
