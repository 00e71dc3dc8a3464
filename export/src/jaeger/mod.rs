//! Jaeger encoder: spans → Thrift binary `jaeger.Batch` bodies for the collector's
//! `/api/traces` endpoint (`Content-Type: application/x-thrift`, success = 202).
//!
//! One `Batch` per workload (`Process`: service name + resource attributes as tags), so a
//! span batch with N workloads becomes N requests. Ids: `traceIdHigh`/`traceIdLow` are the
//! first/last 8 bytes of the trace id and `spanId`/`parentSpanId` the span ids, all as the
//! signed i64 with the same bits (0 = root); a parent also becomes a `CHILD_OF` reference.
//! Times are microseconds. Tags: `span.kind`, `http.method`, `http.status_code`,
//! `error=true` (+ `otel.status_code`/`otel.status_description`), `w3c.tracestate`, then
//! every span attribute with its type.
//!
//! The Thrift types in [`gen`] are generated from `export/thrift/jaeger.thrift` by
//! `tools/gen-jaeger-thrift.sh` (`thrift --gen rs`, thrift-compiler 0.17).

#[allow(clippy::all, clippy::unwrap_used, missing_docs, dead_code)]
#[rustfmt::skip]
pub mod gen;

use std::collections::BTreeMap;

use podtrace_model::{AttrValue, Resource, Span, SpanKind, StatusCode};
use thrift::protocol::{TBinaryOutputProtocol, TOutputProtocol, TSerializable};
use thrift::OrderedFloat;

use crate::delivery::{Encoder, Payload};
use crate::ExportError;

fn tag_str(key: &str, value: &str) -> gen::Tag {
    gen::Tag::new(
        key.to_string(),
        gen::TagType::STRING,
        value.to_string(),
        None,
        None,
        None,
        None,
    )
}

fn tag(key: &str, value: &AttrValue) -> gen::Tag {
    let key = key.to_string();
    match value {
        AttrValue::Str(s) => tag_str(&key, s),
        AttrValue::Bool(b) => gen::Tag::new(key, gen::TagType::BOOL, None, None, *b, None, None),
        AttrValue::Int(i) => gen::Tag::new(key, gen::TagType::LONG, None, None, None, *i, None),
        AttrValue::Double(d) => gen::Tag::new(
            key,
            gen::TagType::DOUBLE,
            None,
            OrderedFloat(*d),
            None,
            None,
            None,
        ),
    }
}

fn process(resource: &Resource) -> gen::Process {
    let tags = resource
        .attributes
        .iter()
        .map(|(k, v)| tag_str(k, v))
        .collect::<Vec<_>>();
    gen::Process::new(resource.service_name.clone(), tags)
}

fn first_attr<'a>(span: &'a Span, keys: &[&str]) -> Option<&'a AttrValue> {
    keys.iter().find_map(|k| span.attribute(k))
}

fn span_tags(span: &Span) -> Vec<gen::Tag> {
    let mut tags = Vec::with_capacity(span.attributes.len() + 6);
    let kind = match span.kind {
        SpanKind::Server => "server",
        SpanKind::Client => "client",
    };
    tags.push(tag_str("span.kind", kind));
    if let Some(method) = first_attr(span, &["http.request.method", "http.method"]) {
        tags.push(tag_str("http.method", &method.to_string()));
    }
    match first_attr(span, &["http.response.status_code", "http.status_code"]) {
        Some(AttrValue::Int(code)) => tags.push(tag("http.status_code", &AttrValue::Int(*code))),
        Some(other) => {
            if let Ok(code) = other.to_string().parse::<i64>() {
                tags.push(tag("http.status_code", &AttrValue::Int(code)));
            }
        }
        None => {}
    }
    match span.status.code {
        StatusCode::Error => {
            tags.push(tag("error", &AttrValue::Bool(true)));
            tags.push(tag_str("otel.status_code", "ERROR"));
            if !span.status.message.is_empty() {
                tags.push(tag_str("otel.status_description", &span.status.message));
            }
        }
        StatusCode::Ok => tags.push(tag_str("otel.status_code", "OK")),
        StatusCode::Unset => {}
    }
    if !span.trace_state.is_empty() {
        tags.push(tag_str("w3c.tracestate", &span.trace_state));
    }
    let derived = [
        "span.kind",
        "http.method",
        "http.status_code",
        "error",
        "otel.status_code",
        "otel.status_description",
        "w3c.tracestate",
    ];
    tags.extend(
        span.attributes
            .iter()
            .filter(|kv| !derived.contains(&&*kv.key))
            .map(|kv| tag(&kv.key, &kv.value)),
    );
    tags
}

/// The Jaeger Thrift span for a podtrace span.
pub fn encode_span(span: &Span) -> gen::Span {
    let (high, low) = span.trace_id.halves();
    let (high, low) = (high as i64, low as i64);
    let parent = span.parent_span_id.map(|p| p.as_u64() as i64).unwrap_or(0);
    let references = span
        .parent_span_id
        .map(|p| {
            vec![gen::SpanRef::new(
                gen::SpanRefType::CHILD_OF,
                low,
                high,
                p.as_u64() as i64,
            )]
        })
        .unwrap_or_default();
    gen::Span::new(
        low,
        high,
        span.span_id.as_u64() as i64,
        parent,
        span.name.clone(),
        references,
        (span.flags & 0xff) as i32,
        (span.start_time_unix_nano / 1_000) as i64,
        (span.duration_ns() / 1_000) as i64,
        span_tags(span),
        None,
    )
}

/// One `Batch` per workload, in the workloads' sort order, spans in input order.
pub fn encode_batches(spans: &[Span]) -> Vec<gen::Batch> {
    let mut groups: BTreeMap<&Resource, Vec<gen::Span>> = BTreeMap::new();
    for span in spans {
        groups
            .entry(&span.resource)
            .or_default()
            .push(encode_span(span));
    }
    groups
        .into_iter()
        .map(|(resource, spans)| gen::Batch::new(process(resource), spans))
        .collect()
}

/// A `Batch` as Thrift binary protocol bytes (strict, as the collector expects).
pub fn batch_bytes(batch: &gen::Batch) -> Result<Vec<u8>, ExportError> {
    let mut out: Vec<u8> = Vec::new();
    {
        let mut proto = TBinaryOutputProtocol::new(&mut out, true);
        batch
            .write_to_out_protocol(&mut proto)
            .and_then(|_| proto.flush())
            .map_err(|e| ExportError::Encode(format!("jaeger thrift: {e}")))?;
    }
    Ok(out)
}

/// Jaeger collector over HTTP: one Thrift-binary `Batch` per workload per span batch.
#[derive(Debug, Clone, Copy, Default)]
pub struct JaegerEncoder;

impl Encoder for JaegerEncoder {
    fn content_type(&self) -> &'static str {
        "application/x-thrift"
    }

    fn encode(&self, spans: &[Span]) -> Result<Vec<Payload>, ExportError> {
        encode_batches(spans)
            .iter()
            .map(|b| {
                Ok(Payload {
                    spans: b.spans.len(),
                    body: batch_bytes(b)?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use podtrace_model::{KeyValue, SpanId, Status, TraceId};
    use thrift::protocol::TBinaryInputProtocol;

    #[test]
    fn ids_split_and_roundtrip_through_thrift() {
        let span = Span {
            trace_id: TraceId::from_hex("f4bf92f3577b34da6a3ce929d0e0e473").unwrap(),
            span_id: SpanId::from_hex("80f067aa0ba902b7").unwrap(),
            parent_span_id: Some(SpanId::from_hex("0000000000000001").unwrap()),
            trace_state: String::new(),
            flags: 1,
            name: "GET /".into(),
            kind: SpanKind::Client,
            start_time_unix_nano: 1_700_000_000_123_456_789,
            end_time_unix_nano: 1_700_000_000_124_456_789,
            attributes: vec![
                KeyValue::new("http.request.method", "GET"),
                KeyValue::new("http.response.status_code", 500i64),
            ],
            status: Status::error("HTTP 500"),
            resource: Resource::new("web").with("k8s.pod.name", "web-1"),
        };
        let batches = encode_batches(std::slice::from_ref(&span));
        assert_eq!(batches.len(), 1);
        let bytes = batch_bytes(&batches[0]).unwrap();
        let mut input = TBinaryInputProtocol::new(&bytes[..], true);
        let back = gen::Batch::read_from_in_protocol(&mut input).unwrap();
        assert_eq!(back, batches[0]);
        let s = &back.spans[0];
        assert_eq!(s.trace_id_high as u64, 0xf4bf92f3577b34da);
        assert_eq!(s.trace_id_low as u64, 0x6a3ce929d0e0e473);
        assert_eq!(s.span_id as u64, 0x80f067aa0ba902b7);
        assert_eq!(s.parent_span_id, 1);
        assert_eq!(s.start_time, 1_700_000_000_123_456);
        assert_eq!(s.duration, 1_000);
        let tags = s.tags.as_ref().unwrap();
        let find = |k: &str| tags.iter().find(|t| t.key == k).unwrap();
        assert_eq!(find("span.kind").v_str.as_deref(), Some("client"));
        assert_eq!(find("http.method").v_str.as_deref(), Some("GET"));
        assert_eq!(find("http.status_code").v_long, Some(500));
        assert_eq!(find("error").v_bool, Some(true));
        assert_eq!(back.process.service_name, "web");
    }
}
