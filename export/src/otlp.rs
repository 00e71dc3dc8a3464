//! OTLP encoder: spans → `ExportTraceServiceRequest` (protobuf over HTTP, or OTLP/JSON).
//!
//! One `ResourceSpans` per distinct workload ([`podtrace_model::Resource`]: `service.name` and
//! its attributes), in the resource's sort order; one `ScopeSpans` with scope `podtrace` and
//! this crate's version; spans in input order within their workload. Ids are the raw bytes,
//! a root span has an empty `parent_span_id`, times are ns since the epoch, attributes keep
//! their type, status carries code and message (absent when unset).
//!
//! [`to_json`] renders the OTLP/JSON encoding (the protobuf JSON mapping with lowerCamelCase
//! keys, enums as integers, 64-bit integers as strings, and — the OTLP exception — trace and
//! span ids as hex strings instead of base64).

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource as OtlpResource;
use opentelemetry_proto::tonic::trace::v1::{
    span::SpanKind as OtlpKind, status::StatusCode as OtlpCode, ResourceSpans, ScopeSpans,
    Span as OtlpSpan, Status as OtlpStatus,
};
use podtrace_model::{AttrValue, Resource, Span, SpanKind, StatusCode as ModelCode};
use prost::Message;
use reqwest::StatusCode;

use crate::delivery::{default_judge, Encoder, Payload, Verdict};
use crate::ExportError;

/// The instrumentation scope name on every exported span.
pub const SCOPE_NAME: &str = "podtrace";

/// Builds the request for `spans`.
pub fn encode(spans: &[Span]) -> ExportTraceServiceRequest {
    let mut groups: BTreeMap<&Resource, Vec<&Span>> = BTreeMap::new();
    for span in spans {
        groups.entry(&span.resource).or_default().push(span);
    }
    let resource_spans = groups
        .into_iter()
        .map(|(resource, spans)| ResourceSpans {
            resource: Some(encode_resource(resource)),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: SCOPE_NAME.to_string(),
                    version: env!("CARGO_PKG_VERSION").to_string(),
                    ..Default::default()
                }),
                spans: spans.into_iter().map(encode_span).collect(),
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        })
        .collect();
    ExportTraceServiceRequest { resource_spans }
}

/// The OTLP/JSON text of a request.
pub fn to_json(request: &ExportTraceServiceRequest) -> String {
    // Serializing these generated types cannot fail: no maps with non-string keys, and
    // non-finite doubles (which JSON cannot hold) are written as null by serde_json.
    serde_json::to_string(request).unwrap_or_else(|_| String::from("{}"))
}

/// Reads an OTLP/JSON request (for tests and tools).
pub fn from_json(text: &str) -> Result<ExportTraceServiceRequest, ExportError> {
    serde_json::from_str(text).map_err(|e| ExportError::Encode(format!("OTLP/JSON: {e}")))
}

fn string_value(s: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::StringValue(s.to_string())),
    })
}

fn encode_resource(resource: &Resource) -> OtlpResource {
    let mut attributes = Vec::with_capacity(resource.attributes.len() + 1);
    attributes.push(KeyValue {
        key: "service.name".to_string(),
        value: string_value(&resource.service_name),
        ..Default::default()
    });
    attributes.extend(
        resource
            .attributes
            .iter()
            .filter(|(k, _)| k != "service.name")
            .map(|(k, v)| KeyValue {
                key: k.clone(),
                value: string_value(v),
                ..Default::default()
            }),
    );
    OtlpResource {
        attributes,
        ..Default::default()
    }
}

/// The OTLP value of an attribute.
pub fn any_value(value: &AttrValue) -> AnyValue {
    let v = match value {
        AttrValue::Str(s) => any_value::Value::StringValue(s.clone()),
        AttrValue::Bool(b) => any_value::Value::BoolValue(*b),
        AttrValue::Int(i) => any_value::Value::IntValue(*i),
        AttrValue::Double(d) => any_value::Value::DoubleValue(*d),
    };
    AnyValue { value: Some(v) }
}

fn encode_span(span: &Span) -> OtlpSpan {
    let kind = match span.kind {
        SpanKind::Server => OtlpKind::Server,
        SpanKind::Client => OtlpKind::Client,
    };
    let status = match span.status.code {
        ModelCode::Unset if span.status.message.is_empty() => None,
        code => Some(OtlpStatus {
            message: span.status.message.clone(),
            code: match code {
                ModelCode::Unset => OtlpCode::Unset,
                ModelCode::Ok => OtlpCode::Ok,
                ModelCode::Error => OtlpCode::Error,
            } as i32,
        }),
    };
    OtlpSpan {
        trace_id: span.trace_id.as_bytes().to_vec(),
        span_id: span.span_id.as_bytes().to_vec(),
        trace_state: span.trace_state.clone(),
        parent_span_id: span
            .parent_span_id
            .map(|p| p.as_bytes().to_vec())
            .unwrap_or_default(),
        flags: span.flags,
        name: span.name.clone(),
        kind: kind as i32,
        start_time_unix_nano: span.start_time_unix_nano,
        end_time_unix_nano: span.end_time_unix_nano,
        attributes: span
            .attributes
            .iter()
            .map(|kv| KeyValue {
                key: kv.key.to_string(),
                value: Some(any_value(&kv.value)),
                ..Default::default()
            })
            .collect(),
        status,
        ..Default::default()
    }
}

/// OTLP/HTTP protobuf: `application/x-protobuf` bodies, partial success counted.
#[derive(Debug, Clone, Copy, Default)]
pub struct OtlpEncoder;

impl Encoder for OtlpEncoder {
    fn content_type(&self) -> &'static str {
        "application/x-protobuf"
    }

    fn encode(&self, spans: &[Span]) -> Result<Vec<Payload>, ExportError> {
        Ok(vec![Payload {
            body: encode(spans).encode_to_vec(),
            spans: spans.len(),
        }])
    }

    fn judge(&self, endpoint: &str, status: StatusCode, body: &[u8]) -> Verdict {
        if status.is_success() {
            // An empty or undecodable 200 body still means "accepted".
            let rejected = ExportTraceServiceResponse::decode(body)
                .ok()
                .and_then(|r| r.partial_success)
                .map(|p| {
                    if p.rejected_spans > 0 {
                        tracing::warn!(
                            endpoint,
                            rejected = p.rejected_spans,
                            message = %p.error_message,
                            "OTLP receiver rejected part of a batch"
                        );
                    }
                    p.rejected_spans.max(0) as u64
                })
                .unwrap_or(0);
            return Verdict::Accepted {
                rejected_spans: rejected,
            };
        }
        default_judge(endpoint, status, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use podtrace_model::{KeyValue as Kv, SpanId, Status, TraceId};

    fn span(service: &str, id: &str, parent: Option<&str>) -> Span {
        Span {
            trace_id: TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            span_id: SpanId::from_hex(id).unwrap(),
            parent_span_id: parent.map(|p| SpanId::from_hex(p).unwrap()),
            trace_state: "congo=t61rcWkgMzE".into(),
            flags: 1,
            name: "GET /x".into(),
            kind: SpanKind::Server,
            start_time_unix_nano: 1_700_000_000_123_456_789,
            end_time_unix_nano: 1_700_000_000_223_456_789,
            attributes: vec![
                Kv::new("http.request.method", "GET"),
                Kv::new("http.response.status_code", 503i64),
                Kv::new("ok", false),
                Kv::new("ratio", 0.5),
            ],
            status: Status::error("HTTP 503"),
            resource: Resource::new(service).with("k8s.pod.name", format!("{service}-0")),
        }
    }

    #[test]
    fn groups_by_resource_in_stable_order() {
        let spans = vec![
            span("b", "00f067aa0ba902b7", None),
            span("a", "00f067aa0ba902b8", Some("00f067aa0ba902b7")),
            span("b", "00f067aa0ba902b9", Some("00f067aa0ba902b8")),
        ];
        let req = encode(&spans);
        assert_eq!(req.resource_spans.len(), 2);
        let services: Vec<_> = req
            .resource_spans
            .iter()
            .map(|rs| rs.resource.as_ref().unwrap().attributes[0].value.clone())
            .collect();
        assert_eq!(services, vec![string_value("a"), string_value("b")]);
        let b = &req.resource_spans[1].scope_spans[0];
        assert_eq!(b.scope.as_ref().unwrap().name, "podtrace");
        assert_eq!(b.spans.len(), 2);
        assert_eq!(
            b.spans[0].span_id,
            vec![0, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]
        );
        assert!(b.spans[0].parent_span_id.is_empty());
        assert_eq!(b.spans[1].parent_span_id.len(), 8);
        assert_eq!(b.spans[0].kind, OtlpKind::Server as i32);
        assert_eq!(
            b.spans[0].status.as_ref().unwrap().code,
            OtlpCode::Error as i32
        );
        assert_eq!(encode(&spans), req, "encoding is deterministic");
    }

    #[test]
    fn json_uses_the_otlp_mapping_and_roundtrips() {
        let req = encode(&[span("a", "00f067aa0ba902b7", None)]);
        let json = to_json(&req);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        let s = &v["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
        assert_eq!(s["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(s["spanId"], "00f067aa0ba902b7");
        assert_eq!(s["kind"], 2);
        assert_eq!(s["startTimeUnixNano"], "1700000000123456789");
        assert_eq!(s["status"]["code"], 2);
        assert_eq!(s["attributes"][1]["value"]["intValue"], "503");
        assert_eq!(from_json(&json).unwrap(), req);
    }
}
