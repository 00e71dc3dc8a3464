//! Trace context extraction from request headers (W3C, B3, Splunk, Jaeger).
//!
//! Implements the rules of `CONTRACTS.md`: families are tried in precedence order
//! W3C `traceparent`/`tracestate`, then B3 (single `b3` header, then multi `X-B3-*`), then
//! Splunk (`X-Request-ID` + `X-Span-ID`), then Jaeger (`uber-trace-id`). The first valid
//! family wins; an invalid header of a
//! higher family does not hide a valid lower one, and every rejected header is reported as
//! `(family, reason)` so the analyzer can count why a context was ignored. Header names are
//! matched case-insensitively (HTTP/1). Pure functions, no state.

use std::fmt;

use podtrace_model::{SpanId, TraceId};
use serde::Serialize;

use crate::protocol::Headers;

/// A propagation header family.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// W3C Trace Context (`traceparent`, `tracestate`).
    W3c,
    /// Zipkin B3, single (`b3`) or multi (`X-B3-*`) header.
    B3,
    /// Splunk style (`X-Request-ID`, `X-Span-ID`).
    Splunk,
    /// Jaeger's native `uber-trace-id` (`{trace}:{span}:{parent}:{flags}`).
    Jaeger,
}

impl Family {
    /// The family's name as used in attributes, stats and the vectors file.
    pub fn as_str(self) -> &'static str {
        match self {
            Family::W3c => "w3c",
            Family::B3 => "b3",
            Family::Splunk => "splunk",
            Family::Jaeger => "jaeger",
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a propagation header was ignored.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize,
)]
pub enum IgnoreReason {
    /// Malformed value (wrong length, bad hex, all-zero id, forbidden version, ...).
    Invalid,
    /// A B3 header that carries only a sampling decision, no ids (`b3: 0`).
    NoIds,
    /// The header appeared more than once with different values.
    Duplicate,
    /// `tracestate` was malformed; the `traceparent` itself was kept.
    InvalidTracestate,
}

impl IgnoreReason {
    /// Short kebab-case name (as in the vectors file).
    pub fn as_str(self) -> &'static str {
        match self {
            IgnoreReason::Invalid => "invalid",
            IgnoreReason::NoIds => "no-ids",
            IgnoreReason::Duplicate => "duplicate",
            IgnoreReason::InvalidTracestate => "invalid-tracestate",
        }
    }
}

impl fmt::Display for IgnoreReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A valid trace context found on a request.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TraceContext {
    /// Which family it came from.
    pub family: Family,
    /// The trace id.
    pub trace_id: TraceId,
    /// The span id of the caller (the span that sent the request), when the header has one.
    pub parent_id: Option<SpanId>,
    /// The sampling decision, when the header states one.
    pub sampled: Option<bool>,
    /// W3C `tracestate` (empty when absent or not W3C).
    pub trace_state: String,
}

/// Result of [`extract`]: the winning context (if any) plus every header ignored on the way.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Extraction {
    /// The context that won, `None` when no family produced a valid one.
    pub context: Option<TraceContext>,
    /// Headers that were present but ignored, in evaluation order.
    pub ignored: Vec<(Family, IgnoreReason)>,
}

/// Extracts the trace context from request headers `(name, value)` as seen on the wire.
pub fn extract<'a, I>(headers: I) -> Extraction
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    extract_fields(&headers.into_iter().collect())
}

/// [`extract`] of a request's [`Headers`], read in place.
pub(crate) fn extract_fields(headers: &Headers) -> Extraction {
    let mut out = Extraction::default();
    let families: [FamilyParser; 4] = [w3c, b3, splunk, jaeger];
    let lookup = Lookup(headers);
    for family in families {
        if let Some(ctx) = family(&lookup, &mut out.ignored) {
            out.context = Some(ctx);
            break;
        }
    }
    out
}

/// One family's extractor: the context, or `None` after noting why its headers were ignored.
type FamilyParser = fn(&Lookup<'_>, &mut Vec<(Family, IgnoreReason)>) -> Option<TraceContext>;

/// Case-insensitive header lookup over the request's header list.
struct Lookup<'h>(&'h Headers);

/// A value without its optional whitespace (spaces and tabs) at either end: what
/// `trim_matches([' ', '\t'])` answers, byte by byte (both are ASCII, so the cuts are
/// character boundaries).
fn trim_ows(v: &str) -> &str {
    let ows = |b: &u8| *b == b' ' || *b == b'\t';
    let bytes = v.as_bytes();
    let start = bytes.iter().position(|b| !ows(b)).unwrap_or(bytes.len());
    let end = bytes.iter().rposition(|b| !ows(b)).map_or(start, |i| i + 1);
    &v[start..end]
}

impl Lookup<'_> {
    /// The values of the header `name`, in order, trimmed of optional whitespace.
    fn values<'s, 'n>(&'s self, name: &'n str) -> impl Iterator<Item = &'s str> + use<'s, 'n> {
        self.0.values(name).map(trim_ows)
    }
    /// All values of a header, trimmed of optional whitespace.
    fn all(&self, name: &str) -> Vec<&str> {
        self.values(name).collect()
    }
    /// The single value of a header: `Ok(None)` when absent, `Err` when repeated with
    /// different values.
    fn one(&self, name: &str) -> Result<Option<&str>, IgnoreReason> {
        let mut values = self.values(name);
        let Some(first) = values.next() else {
            return Ok(None);
        };
        if values.all(|v| v == first) {
            Ok(Some(first))
        } else {
            Err(IgnoreReason::Duplicate)
        }
    }
}

/// The value of a lowercase hex digit, 0xff for any other byte.
const LOWER_HEX: [u8; 256] = podtrace_model::hex_table(false);

/// Exactly `2 * N` lowercase hex digits as `N` bytes (big-endian); `None` for any other
/// length or byte. One pass: the lowercase check and the decoding of an id's digits.
fn lower_hex_bytes<const N: usize>(s: &str) -> Option<[u8; N]> {
    let b = s.as_bytes();
    if b.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    // Digits decode to 0..=15, anything else to 0xff: one check of all of them at the
    // end (ids are nearly always valid) instead of a branch per pair.
    let mut seen = 0u8;
    for (o, pair) in out.iter_mut().zip(b.chunks_exact(2)) {
        let (hi, lo) = (
            LOWER_HEX[usize::from(pair[0])],
            LOWER_HEX[usize::from(pair[1])],
        );
        seen |= hi | lo;
        *o = hi << 4 | lo;
    }
    (seen & 0xf0 == 0).then_some(out)
}

/// Parses 32 or 16 lowercase hex digits into a non-zero trace id (16-digit ids
/// left-padded).
fn trace_id_lower(s: &str) -> Option<TraceId> {
    let id = match s.len() {
        32 => TraceId(lower_hex_bytes::<16>(s)?),
        16 => {
            let low = lower_hex_bytes::<8>(s)?;
            let mut bytes = [0u8; 16];
            bytes[8..].copy_from_slice(&low);
            TraceId(bytes)
        }
        _ => return None,
    };
    (!id.is_zero()).then_some(id)
}

fn span_id_lower(s: &str) -> Option<SpanId> {
    let id = SpanId(lower_hex_bytes::<8>(s)?);
    (!id.is_zero()).then_some(id)
}

fn w3c(h: &Lookup<'_>, ignored: &mut Vec<(Family, IgnoreReason)>) -> Option<TraceContext> {
    let value = match h.one("traceparent") {
        Ok(Some(v)) => v,
        Ok(None) => return None,
        Err(reason) => {
            ignored.push((Family::W3c, reason));
            return None;
        }
    };
    let Some((trace_id, parent_id, flags)) = parse_traceparent(value) else {
        ignored.push((Family::W3c, IgnoreReason::Invalid));
        return None;
    };
    let trace_state = match h.all("tracestate").as_slice() {
        [] => String::new(),
        values => {
            // Several tracestate headers are one list, joined with commas (RFC 9110 §5.3).
            let joined = values.join(",");
            if valid_tracestate(&joined) {
                joined
            } else {
                ignored.push((Family::W3c, IgnoreReason::InvalidTracestate));
                String::new()
            }
        }
    };
    Some(TraceContext {
        family: Family::W3c,
        trace_id,
        parent_id: Some(parent_id),
        sampled: Some(flags & 1 == 1),
        trace_state,
    })
}

/// Parses a `traceparent` value: `(trace id, parent id, flags)`.
fn parse_traceparent(v: &str) -> Option<(TraceId, SpanId, u8)> {
    if v.len() < 55 || !v.is_ascii() {
        return None;
    }
    let version = &v[0..2];
    if lower_hex_bytes::<1>(version).is_none() || version == "ff" {
        return None;
    }
    if version == "00" && v.len() != 55 {
        return None;
    }
    if v.len() > 55 && v.as_bytes()[55] != b'-' {
        return None;
    }
    let b = v.as_bytes();
    if b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
        return None;
    }
    let trace_id = TraceId(lower_hex_bytes(&v[3..35])?);
    let parent_id = SpanId(lower_hex_bytes(&v[36..52])?);
    let [flags] = lower_hex_bytes(&v[53..55])?;
    if trace_id.is_zero() || parent_id.is_zero() {
        return None;
    }
    Some((trace_id, parent_id, flags))
}

/// W3C tracestate: at most 32 comma-separated `key=value` members (empty members allowed).
fn valid_tracestate(v: &str) -> bool {
    let members: Vec<&str> = v
        .split(',')
        .map(|m| m.trim_matches([' ', '\t']))
        .filter(|m| !m.is_empty())
        .collect();
    if members.len() > 32 {
        return false;
    }
    members.iter().all(|m| {
        let Some((key, value)) = m.split_once('=') else {
            return false;
        };
        let key_ok = !key.is_empty()
            && key.len() <= 256
            && key.bytes().all(|c| {
                c.is_ascii_lowercase()
                    || c.is_ascii_digit()
                    || matches!(c, b'_' | b'-' | b'*' | b'/' | b'@')
            });
        let value_ok = !value.is_empty()
            && value.len() <= 256
            && value
                .bytes()
                .all(|c| (0x20..=0x7e).contains(&c) && c != b',' && c != b'=');
        key_ok && value_ok
    })
}

fn b3(h: &Lookup<'_>, ignored: &mut Vec<(Family, IgnoreReason)>) -> Option<TraceContext> {
    match h.one("b3") {
        Ok(Some(v)) => match parse_b3_single(v) {
            Ok(ctx) => return Some(ctx),
            Err(reason) => ignored.push((Family::B3, reason)),
        },
        Ok(None) => {}
        Err(reason) => ignored.push((Family::B3, reason)),
    }
    match b3_multi(h) {
        Ok(ctx) => ctx,
        Err(reason) => {
            ignored.push((Family::B3, reason));
            None
        }
    }
}

fn parse_b3_sampled(s: &str) -> Option<bool> {
    match s {
        "1" | "true" | "d" => Some(true),
        "0" | "false" => Some(false),
        _ => None,
    }
}

/// `b3: {traceid}-{spanid}[-{sampling}[-{parentspanid}]]` or a bare sampling state.
fn parse_b3_single(v: &str) -> Result<TraceContext, IgnoreReason> {
    let parts: Vec<&str> = v.split('-').collect();
    if parts.len() == 1 {
        return if parse_b3_sampled(parts[0]).is_some() {
            Err(IgnoreReason::NoIds)
        } else {
            Err(IgnoreReason::Invalid)
        };
    }
    if parts.len() > 4 {
        return Err(IgnoreReason::Invalid);
    }
    let trace_id = trace_id_lower(parts[0]).ok_or(IgnoreReason::Invalid)?;
    let span_id = span_id_lower(parts[1]).ok_or(IgnoreReason::Invalid)?;
    let sampled = match parts.get(2) {
        Some(s) => Some(parse_b3_sampled(s).ok_or(IgnoreReason::Invalid)?),
        None => None,
    };
    if let Some(p) = parts.get(3) {
        span_id_lower(p).ok_or(IgnoreReason::Invalid)?;
    }
    Ok(TraceContext {
        family: Family::B3,
        trace_id,
        parent_id: Some(span_id),
        sampled,
        trace_state: String::new(),
    })
}

/// `X-B3-TraceId`, `X-B3-SpanId`, optional `X-B3-ParentSpanId`, `X-B3-Sampled`, `X-B3-Flags`.
fn b3_multi(h: &Lookup<'_>) -> Result<Option<TraceContext>, IgnoreReason> {
    let trace = h.one("x-b3-traceid")?;
    let span = h.one("x-b3-spanid")?;
    let sampled = h.one("x-b3-sampled")?;
    let flags = h.one("x-b3-flags")?;
    let parent = h.one("x-b3-parentspanid")?;
    let (trace, span) = match (trace, span) {
        (None, None) => {
            return if sampled.is_some() || flags.is_some() || parent.is_some() {
                Err(IgnoreReason::NoIds)
            } else {
                Ok(None)
            };
        }
        (Some(t), Some(s)) => (t, s),
        _ => return Err(IgnoreReason::Invalid),
    };
    let trace_id = trace_id_lower(trace).ok_or(IgnoreReason::Invalid)?;
    let span_id = span_id_lower(span).ok_or(IgnoreReason::Invalid)?;
    if let Some(p) = parent {
        span_id_lower(p).ok_or(IgnoreReason::Invalid)?;
    }
    let mut sampled = match sampled {
        Some(s) => Some(parse_b3_sampled(s).ok_or(IgnoreReason::Invalid)?),
        None => None,
    };
    if flags == Some("1") {
        sampled = Some(true);
    }
    Ok(Some(TraceContext {
        family: Family::B3,
        trace_id,
        parent_id: Some(span_id),
        sampled,
        trace_state: String::new(),
    }))
}

fn splunk(h: &Lookup<'_>, ignored: &mut Vec<(Family, IgnoreReason)>) -> Option<TraceContext> {
    let request_id = match h.one("x-request-id") {
        Ok(Some(v)) => v,
        Ok(None) => return None,
        Err(reason) => {
            ignored.push((Family::Splunk, reason));
            return None;
        }
    };
    let digits: String = request_id
        .chars()
        .filter(|c| *c != '-')
        .collect::<String>()
        .to_ascii_lowercase();
    let Some(trace_id) = trace_id_lower(&digits) else {
        ignored.push((Family::Splunk, IgnoreReason::Invalid));
        return None;
    };
    let parent_id = match h.one("x-span-id") {
        Ok(Some(v)) => match span_id_lower(&v.to_ascii_lowercase()) {
            Some(id) => Some(id),
            None => {
                ignored.push((Family::Splunk, IgnoreReason::Invalid));
                return None;
            }
        },
        Ok(None) => None,
        Err(reason) => {
            ignored.push((Family::Splunk, reason));
            return None;
        }
    };
    Some(TraceContext {
        family: Family::Splunk,
        trace_id,
        parent_id,
        sampled: None,
        trace_state: String::new(),
    })
}

/// `uber-trace-id: {trace-id}:{span-id}:{parent-span-id}:{flags}` (Jaeger's native format),
/// also URL-encoded (`%3A` for `:`, as some Jaeger clients send it over HTTP).
fn jaeger(h: &Lookup<'_>, ignored: &mut Vec<(Family, IgnoreReason)>) -> Option<TraceContext> {
    let value = match h.one("uber-trace-id") {
        Ok(Some(v)) => v,
        Ok(None) => return None,
        Err(reason) => {
            ignored.push((Family::Jaeger, reason));
            return None;
        }
    };
    match parse_uber_trace_id(value) {
        Some(ctx) => Some(ctx),
        None => {
            ignored.push((Family::Jaeger, IgnoreReason::Invalid));
            None
        }
    }
}

/// Parses an `uber-trace-id` value. Ids are 1–32 (trace) and 1–16 (span, parent) hex
/// digits of either case, left-padded with zeros as Jaeger does (a 64-bit trace id becomes
/// `0000000000000000{id}`); trace and span id must not be zero, the deprecated parent id
/// may be (it is checked, not used); flags are one or two hex digits, bit 0 = sampled,
/// bit 1 = debug (which implies sampled).
fn parse_uber_trace_id(raw: &str) -> Option<TraceContext> {
    let decoded;
    let value = if raw.contains('%') {
        decoded = percent_decode(raw)?;
        decoded.as_str()
    } else {
        raw
    };
    let parts: Vec<&str> = value.split(':').collect();
    let [trace, span, parent, flags] = parts.as_slice() else {
        return None;
    };
    let hex = |s: &str, max: usize| {
        (!s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| s.to_ascii_lowercase())
    };
    let trace = hex(trace, 32)?;
    let trace_id = TraceId::from_hex(&format!("{trace:0>32}")).ok()?;
    let span = hex(span, 16)?;
    let span_id = SpanId::from_hex(&format!("{span:0>16}")).ok()?;
    hex(parent, 16)?;
    let flags = u8::from_str_radix(&hex(flags, 2)?, 16).ok()?;
    if trace_id.is_zero() || span_id.is_zero() {
        return None;
    }
    Some(TraceContext {
        family: Family::Jaeger,
        trace_id,
        parent_id: Some(span_id),
        sampled: Some(flags & 0b11 != 0),
        trace_state: String::new(),
    })
}

/// Decodes `%XX` escapes (RFC 3986); `None` for a malformed escape or a result that is not
/// UTF-8.
pub(crate) fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hi = (*b.get(i + 1)? as char).to_digit(16)?;
            let lo = (*b.get(i + 2)? as char).to_digit(16)?;
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn ex(h: &[(&str, &str)]) -> Extraction {
        extract(h.iter().copied())
    }

    fn family_from(s: &str) -> Family {
        match s {
            "w3c" => Family::W3c,
            "b3" => Family::B3,
            "splunk" => Family::Splunk,
            "jaeger" => Family::Jaeger,
            other => panic!("unknown family {other}"),
        }
    }

    /// Loads the shared vectors file, or the copy checked into `tests/data` in a clean clone.
    pub(crate) fn vectors() -> serde_json::Value {
        let shared = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/vectors/trace_context.json"
        );
        let copy = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/trace_context.json");
        let text = std::fs::read_to_string(shared)
            .or_else(|_| std::fs::read_to_string(copy))
            .expect("trace_context.json (shared or tests/data copy)");
        serde_json::from_str(&text).expect("vectors are JSON")
    }

    #[test]
    fn every_vector_case() {
        let v = vectors();
        let cases = v["cases"].as_array().expect("cases");
        assert!(cases.len() >= 20);
        check_cases(cases);
    }

    /// podtrace's own vectors (`tests/data/context_extra.json`, same schema as the shared
    /// file): Jaeger `uber-trace-id` and its place in the precedence order.
    #[test]
    fn every_extra_vector_case() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/context_extra.json");
        let text = std::fs::read_to_string(path).expect("context_extra.json");
        let v: serde_json::Value = serde_json::from_str(&text).expect("vectors are JSON");
        let cases = v["cases"].as_array().expect("cases");
        assert!(cases.len() >= 15);
        check_cases(cases);
    }

    /// Checks each case's extraction against its `expect`.
    fn check_cases(cases: &[serde_json::Value]) {
        for case in cases {
            let name = case["name"].as_str().expect("name");
            let headers: Vec<(String, String)> = case["headers"]
                .as_array()
                .expect("headers")
                .iter()
                .map(|p| {
                    (
                        p[0].as_str().expect("h").to_string(),
                        p[1].as_str().expect("v").to_string(),
                    )
                })
                .collect();
            let got = extract(headers.iter().map(|(a, b)| (a.as_str(), b.as_str())));
            let expect = &case["expect"];
            match expect["family"].as_str() {
                None => assert!(got.context.is_none(), "{name}: {got:?}"),
                Some(fam) => {
                    let ctx = got
                        .context
                        .as_ref()
                        .unwrap_or_else(|| panic!("{name}: none"));
                    assert_eq!(ctx.family, family_from(fam), "{name}");
                    assert_eq!(
                        ctx.trace_id.to_string(),
                        expect["trace_id"].as_str().expect("trace_id"),
                        "{name}"
                    );
                    assert_eq!(
                        ctx.parent_id.map(|p| p.to_string()).as_deref(),
                        expect["parent_id"].as_str(),
                        "{name}"
                    );
                    assert_eq!(ctx.sampled, expect["sampled"].as_bool(), "{name}");
                    assert_eq!(
                        ctx.trace_state,
                        expect["tracestate"].as_str().unwrap_or(""),
                        "{name}"
                    );
                }
            }
            let want_ignored: Vec<(Family, String)> = expect["ignored"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|p| {
                            (
                                family_from(p[0].as_str().expect("f")),
                                p[1].as_str().expect("r").to_string(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            let got_ignored: Vec<(Family, String)> = got
                .ignored
                .iter()
                .map(|(f, r)| (*f, r.as_str().to_string()))
                .collect();
            assert_eq!(got_ignored, want_ignored, "{name}");
        }
    }

    #[test]
    fn invalid_b3_does_not_hide_splunk() {
        let got = ex(&[
            ("b3", "not-valid"),
            ("X-Request-ID", "4bf92f35-77b3-4da6-a3ce-929d0e0e4736"),
        ]);
        let ctx = got.context.expect("splunk");
        assert_eq!(ctx.family, Family::Splunk);
        assert_eq!(ctx.parent_id, None);
        assert_eq!(got.ignored, vec![(Family::B3, IgnoreReason::Invalid)]);
    }

    #[test]
    fn duplicate_traceparent_is_ignored() {
        let got = ex(&[
            (
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
            (
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00",
            ),
        ]);
        assert!(got.context.is_none());
        assert_eq!(got.ignored, vec![(Family::W3c, IgnoreReason::Duplicate)]);
    }

    #[test]
    fn bad_tracestate_keeps_traceparent() {
        let got = ex(&[
            (
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
            ("tracestate", "no equals sign"),
        ]);
        let ctx = got.context.expect("w3c");
        assert_eq!(ctx.trace_state, "");
        assert_eq!(
            got.ignored,
            vec![(Family::W3c, IgnoreReason::InvalidTracestate)]
        );
        let many: Vec<String> = (0..33).map(|i| format!("k{i}=v")).collect();
        let many = many.join(",");
        let got = ex(&[
            (
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
            ("tracestate", &many),
        ]);
        assert_eq!(got.context.expect("w3c").trace_state, "");
    }

    #[test]
    fn b3_single_deny_and_bad_ids() {
        assert_eq!(
            ex(&[("b3", "d")]).ignored,
            vec![(Family::B3, IgnoreReason::NoIds)]
        );
        assert_eq!(
            ex(&[("b3", "80f198ee56343ba864fe8b2a57d3eff7-XYZ")]).ignored,
            vec![(Family::B3, IgnoreReason::Invalid)]
        );
        let got = ex(&[("b3", "64fe8b2a57d3eff7-e457b5a2e4d86bd1-d")]);
        let ctx = got.context.expect("b3");
        assert_eq!(ctx.trace_id.to_string(), "000000000000000064fe8b2a57d3eff7");
        assert_eq!(ctx.sampled, Some(true));
    }

    #[test]
    fn b3_multi_missing_span_id_is_invalid() {
        let got = ex(&[("X-B3-TraceId", "80f198ee56343ba864fe8b2a57d3eff7")]);
        assert!(got.context.is_none());
        assert_eq!(got.ignored, vec![(Family::B3, IgnoreReason::Invalid)]);
        let got = ex(&[("X-B3-Sampled", "0")]);
        assert_eq!(got.ignored, vec![(Family::B3, IgnoreReason::NoIds)]);
    }

    #[test]
    fn traceparent_whitespace_is_trimmed() {
        let got = ex(&[(
            "traceparent",
            " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 ",
        )]);
        assert_eq!(got.context.expect("w3c").family, Family::W3c);
    }
}
