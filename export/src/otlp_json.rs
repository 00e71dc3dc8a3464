//! OTLP/JSON written straight from [`Span`]s, for large local files.
//!
//! [`crate::otlp::encode`] + `serde_json` first builds the protobuf structs (a copy of every
//! string) and then serialises them: right for a request body, but it was a third of
//! `podtrace analyze`'s time on big captures. This writer produces the same OTLP/JSON
//! document — one `ResourceSpans` per workload, scope `podtrace`, the protobuf JSON mapping
//! with lowerCamelCase keys, enums as integers, 64-bit integers as strings, ids as hex — in
//! one pass over the spans, leaving out fields that hold their default value (the JSON
//! mapping allows it; every OTLP reader, `serde` of `opentelemetry-proto` included, fills
//! them in). Tests check that it reads back into exactly what [`crate::otlp::encode`] builds.

use std::collections::BTreeMap;
use std::io::Write;

use podtrace_model::{AttrValue, Resource, Span, SpanKind, StatusCode};

use crate::otlp::SCOPE_NAME;

/// Appends the `ResourceSpans` objects of `spans` (one per workload, in the resource's sort
/// order, spans in input order), each preceded by a comma unless `*first`, which is then
/// cleared. The caller writes the enclosing `{"resourceSpans":[` … `]}`.
pub fn write_resource_spans(out: &mut Vec<u8>, spans: &[Span], first: &mut bool) {
    for (resource, spans) in by_resource(spans) {
        if !std::mem::replace(first, false) {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"resource\":{\"attributes\":[");
        write_string_attr(out, "service.name", &resource.service_name);
        for (k, v) in resource
            .attributes
            .iter()
            .filter(|(k, _)| k != "service.name")
        {
            out.push(b',');
            write_string_attr(out, k, v);
        }
        out.extend_from_slice(b"]},\"scopeSpans\":[{\"scope\":{\"name\":");
        write_str(out, SCOPE_NAME);
        out.extend_from_slice(b",\"version\":");
        write_str(out, env!("CARGO_PKG_VERSION"));
        out.extend_from_slice(b"},\"spans\":[");
        for (i, span) in spans.into_iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_span(out, span);
        }
        out.extend_from_slice(b"]}]}");
    }
}

/// Groups compared one by one before the sorted index is searched: a batch has few
/// workloads, and a comparison of unequal names mostly stops at their lengths.
const FEW_RESOURCES: usize = 8;

/// `spans` grouped by resource, in the resource's sort order, spans in input order. The
/// first groups are found by equality (cheaper than the index's ordered comparisons on
/// every span); the index of all groups serves the others.
fn by_resource(spans: &[Span]) -> Vec<(&Resource, Vec<&Span>)> {
    let mut groups: Vec<(&Resource, Vec<&Span>)> = Vec::new();
    let mut index: BTreeMap<&Resource, usize> = BTreeMap::new();
    for span in spans {
        let resource = &span.resource;
        let found = groups
            .iter()
            .take(FEW_RESOURCES)
            .position(|(r, _)| *r == resource);
        let slot = match found {
            Some(i) => i,
            None => *index.entry(resource).or_insert_with(|| {
                groups.push((resource, Vec::new()));
                groups.len() - 1
            }),
        };
        groups[slot].1.push(span);
    }
    // Resources are unique among groups: the order is the index's.
    groups.sort_unstable_by(|a, b| a.0.cmp(b.0));
    groups
}

/// One whole `ExportTraceServiceRequest` of `spans` as OTLP/JSON (no newline).
pub fn request(spans: &[Span]) -> Vec<u8> {
    let mut out = b"{\"resourceSpans\":[".to_vec();
    write_resource_spans(&mut out, spans, &mut true);
    out.extend_from_slice(b"]}");
    out
}

fn write_span(out: &mut Vec<u8>, s: &Span) {
    out.extend_from_slice(b"{\"traceId\":\"");
    s.trace_id.push_hex(out);
    out.extend_from_slice(b"\",\"spanId\":\"");
    s.span_id.push_hex(out);
    out.push(b'"');
    if !s.trace_state.is_empty() {
        out.extend_from_slice(b",\"traceState\":");
        write_str(out, &s.trace_state);
    }
    if let Some(p) = s.parent_span_id {
        out.extend_from_slice(b",\"parentSpanId\":\"");
        p.push_hex(out);
        out.push(b'"');
    }
    if s.flags != 0 {
        out.extend_from_slice(b",\"flags\":");
        write_u64(out, u64::from(s.flags));
    }
    out.extend_from_slice(b",\"name\":");
    write_str(out, &s.name);
    // SPAN_KIND_SERVER = 2, SPAN_KIND_CLIENT = 3.
    out.extend_from_slice(match s.kind {
        SpanKind::Server => b",\"kind\":2,\"startTimeUnixNano\":\"",
        SpanKind::Client => b",\"kind\":3,\"startTimeUnixNano\":\"",
    });
    write_u64(out, s.start_time_unix_nano);
    out.extend_from_slice(b"\",\"endTimeUnixNano\":\"");
    write_u64(out, s.end_time_unix_nano);
    out.push(b'"');
    if !s.attributes.is_empty() {
        out.extend_from_slice(b",\"attributes\":[");
        for (i, kv) in s.attributes.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_attr(out, &kv.key, &kv.value);
        }
        out.push(b']');
    }
    // STATUS_CODE_UNSET = 0, OK = 1, ERROR = 2; no status object when unset and silent.
    let code = match s.status.code {
        StatusCode::Unset => 0,
        StatusCode::Ok => 1,
        StatusCode::Error => 2,
    };
    if code != 0 || !s.status.message.is_empty() {
        out.extend_from_slice(b",\"status\":{");
        if !s.status.message.is_empty() {
            out.extend_from_slice(b"\"message\":");
            write_str(out, &s.status.message);
            if code != 0 {
                out.push(b',');
            }
        }
        if code != 0 {
            out.extend_from_slice(b"\"code\":");
            write_u64(out, code);
        }
        out.push(b'}');
    }
    out.push(b'}');
}

fn write_string_attr(out: &mut Vec<u8>, key: &str, value: &str) {
    out.extend_from_slice(b"{\"key\":");
    write_str(out, key);
    out.extend_from_slice(b",\"value\":{\"stringValue\":");
    write_str(out, value);
    out.extend_from_slice(b"}}");
}

fn write_attr(out: &mut Vec<u8>, key: &str, value: &AttrValue) {
    match value {
        AttrValue::Str(s) => write_string_attr(out, key, s),
        other => {
            out.extend_from_slice(b"{\"key\":");
            write_str(out, key);
            out.extend_from_slice(b",\"value\":{");
            let _ = match other {
                AttrValue::Bool(b) => write!(out, "\"boolValue\":{b}"),
                AttrValue::Int(i) => {
                    out.extend_from_slice(b"\"intValue\":\"");
                    if *i < 0 {
                        out.push(b'-');
                    }
                    write_u64(out, i.unsigned_abs());
                    out.push(b'"');
                    Ok(())
                }
                // JSON has no NaN or infinities: null, as serde_json writes them.
                AttrValue::Double(d) if d.is_finite() => write!(out, "\"doubleValue\":{d:?}"),
                AttrValue::Double(_) => write!(out, "\"doubleValue\":null"),
                AttrValue::Str(_) => Ok(()),
            };
            out.extend_from_slice(b"}}");
        }
    }
}

/// Two decimal digits of every number below 100.
const DIGIT_PAIRS: &[u8; 200] = b"\
0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// The decimal digits of `n` (what `write!(out, "{n}")` writes, without the formatter),
/// two digits per step.
pub(crate) fn write_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    while n >= 100 {
        let pair = usize::try_from(n % 100).unwrap_or(0) * 2;
        n /= 100;
        i -= 2;
        digits[i..i + 2].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
    }
    if n >= 10 {
        let pair = usize::try_from(n).unwrap_or(0) * 2;
        i -= 2;
        digits[i..i + 2].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
    } else {
        i -= 1;
        digits[i] = b'0' + n as u8;
    }
    out.extend_from_slice(&digits[i..]);
}

/// True when one of the 8 bytes of `w` is a control character (below 0x20), `"` or a backslash:
/// each test is exact for "any byte" (a borrow only crosses from a byte that matched).
fn word_needs_escape(w: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero_byte = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let control = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
    (control | zero_byte(w ^ (ONES * u64::from(b'"'))) | zero_byte(w ^ (ONES * u64::from(b'\\'))))
        != 0
}

/// Whether JSON must escape `b` (a control character, `"` or a backslash).
fn byte_needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// The 8 bytes of `w` as one little-endian word.
fn word_at(w: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(w);
    u64::from_le_bytes(word)
}

/// A JSON string literal: quotes, backslashes and control characters escaped. Text with
/// nothing to escape (nearly all: names, keys, paths, addresses) is checked and copied in
/// the same pass ([`write_plain`]); only other text is looked at byte by byte, out of line.
pub(crate) fn write_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    if !write_plain(out, bytes) {
        write_escaped(out, bytes);
    }
}

/// Appends `bytes` quoted when none needs escaping (else leaves `out` as it was and
/// answers `false`). Checked and copied 8 bytes at a time, the last partial group as the
/// word overlapping the one before; text shorter than a word byte by byte. No copy of
/// unknown length is made: most strings are short, and such a copy is a `memcpy` call.
fn write_plain(out: &mut Vec<u8>, bytes: &[u8]) -> bool {
    let start = out.len();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    if bytes.len() < 8 {
        for &b in bytes {
            if byte_needs_escape(b) {
                out.truncate(start);
                return false;
            }
            out.push(b);
        }
    } else {
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            let word = word_at(w);
            if word_needs_escape(word) {
                out.truncate(start);
                return false;
            }
            out.extend_from_slice(&word.to_le_bytes());
        }
        let rest = words.remainder().len();
        if rest > 0 {
            // The last 8 bytes: the `8 - rest` already written are written again.
            let last = word_at(&bytes[bytes.len() - 8..]);
            if word_needs_escape(last) {
                out.truncate(start);
                return false;
            }
            out.truncate(out.len() - (8 - rest));
            out.extend_from_slice(&last.to_le_bytes());
        }
    }
    out.push(b'"');
    true
}

/// [`write_str`] of text holding a byte to escape.
#[cold]
#[inline(never)]
fn write_escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otlp;
    use podtrace_model::{KeyValue, SpanId, Status, TraceId};

    fn request_json(spans: &[Span]) -> String {
        String::from_utf8(request(spans)).unwrap()
    }

    fn spans() -> Vec<Span> {
        let mut a = Span {
            trace_id: TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            span_id: SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            parent_span_id: None,
            trace_state: String::new(),
            flags: 1,
            name: "GET /".into(),
            kind: SpanKind::Server,
            start_time_unix_nano: 1_795_685_989_843_701_000,
            end_time_unix_nano: 1_795_685_989_844_274_000,
            attributes: vec![
                KeyValue::new("http.response.status_code", 200i64),
                KeyValue::new("neg", -7i64),
                KeyValue::new("ok", true),
                KeyValue::new("ratio", 0.25f64),
                KeyValue::new("tiny", 1e-300f64),
                KeyValue::new("url.path", "/a\"b\\c\n\t\u{1}é\u{7f}"),
            ],
            status: Status::unset(),
            resource: Resource::new("web"),
        };
        a.resource
            .attributes
            .push(("k8s.pod.name".into(), "web-\"0\"".into()));
        let mut b = a.clone();
        b.span_id = SpanId::from_hex("00f067aa0ba902b8").unwrap();
        b.parent_span_id = Some(a.span_id);
        b.kind = SpanKind::Client;
        b.trace_state = "vendor=x,y=\"z\"".into();
        b.flags = 0;
        b.status = Status::error("HTTP 500");
        b.attributes.clear();
        b.resource = Resource::new("db");
        let mut c = a.clone();
        c.span_id = SpanId::from_hex("00f067aa0ba902b9").unwrap();
        c.status.code = StatusCode::Ok;
        let mut d = c.clone();
        d.span_id = SpanId::from_hex("00f067aa0ba902ba").unwrap();
        d.status = Status {
            code: StatusCode::Unset,
            message: "note".into(),
        };
        vec![a, b, c, d]
    }

    #[test]
    fn strings_and_numbers_are_written_as_serde_json_writes_them() {
        let mut texts: Vec<String> = [
            "",
            "plain",
            "exactly8",
            "http.request.method",
            "/a\"b\\c\n\t\u{1}é\u{7f}",
            "0123456789abcdef\u{1f}",
            "héllo wörld, ünïcode → fine",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        // Every escaped byte at every position of a 20-byte string (word boundaries).
        for special in [
            '"', '\\', '\n', '\r', '\t', '\u{8}', '\u{c}', '\u{0}', '\u{1f}',
        ] {
            for at in 0..20 {
                let mut t: String = "abcdefghijklmnopqrst".into();
                t.replace_range(at..=at, &special.to_string());
                texts.push(t);
            }
        }
        // Every length up to 3 words, an escaped byte at every position or none.
        for len in 1..=24 {
            let plain: String = "abcdefghijklmnopqrstuvwxyz"[..len].into();
            for at in 0..len {
                for special in ['"', '\\', '\n', '\u{0}', '\u{1f}'] {
                    let mut t = plain.clone();
                    t.replace_range(at..=at, &special.to_string());
                    texts.push(t);
                }
            }
            texts.push(plain);
        }
        for t in &texts {
            let mut out = Vec::new();
            write_str(&mut out, t);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                serde_json::to_string(t).unwrap()
            );
            // After other text: the text before is kept, on either path.
            let mut out = b"[1,".to_vec();
            write_str(&mut out, t);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                format!("[1,{}", serde_json::to_string(t).unwrap())
            );
        }
        for n in [
            0u64,
            7,
            10,
            99,
            100,
            65535,
            1_795_685_989_843_701_000,
            u64::MAX,
        ] {
            let mut out = Vec::new();
            write_u64(&mut out, n);
            assert_eq!(String::from_utf8(out).unwrap(), n.to_string());
        }
        for i in [0i64, -1, 42, i64::MIN, i64::MAX] {
            let mut out = Vec::new();
            write_attr(&mut out, "k", &AttrValue::Int(i));
            let want = format!("{{\"key\":\"k\",\"value\":{{\"intValue\":\"{i}\"}}}}");
            assert_eq!(String::from_utf8(out).unwrap(), want);
        }
    }

    #[test]
    fn reads_back_as_the_encoded_request() {
        let spans = spans();
        let text = request_json(&spans);
        let back = otlp::from_json(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(back, otlp::encode(&spans));
        // Valid JSON for a generic parser too, with the strings intact.
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let path = &v["resourceSpans"][1]["scopeSpans"][0]["spans"][0]["attributes"][5];
        assert_eq!(path["value"]["stringValue"], "/a\"b\\c\n\t\u{1}é\u{7f}");
    }

    #[test]
    fn empty_batches_write_nothing_and_commas_join_batches() {
        let mut out = Vec::new();
        let mut first = true;
        write_resource_spans(&mut out, &[], &mut first);
        assert!(out.is_empty() && first);
        let spans = spans();
        write_resource_spans(&mut out, &spans[..1], &mut first);
        write_resource_spans(&mut out, &spans[1..], &mut first);
        let text = format!(
            "{{\"resourceSpans\":[{}]}}",
            String::from_utf8(out).unwrap()
        );
        let back = otlp::from_json(&text).unwrap();
        let mut expected = otlp::encode(&spans[..1]);
        expected
            .resource_spans
            .extend(otlp::encode(&spans[1..]).resource_spans);
        assert_eq!(back, expected);
    }
}
