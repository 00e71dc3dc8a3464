//! # podtrace-model — spans as the analyzer produces them
//!
//! The analyzer turns captures into [`Span`]s; every exporter (OTLP, Jaeger, Splunk HEC,
//! local files) encodes the same [`Span`]s for its wire format. This crate is only the data
//! model: no parsing, no I/O. Field meanings follow the OpenTelemetry trace data model, so
//! an OTLP encoder is a direct mapping.
//!
//! ```
//! use podtrace_model::{Span, SpanKind, TraceId, SpanId, Resource, Status};
//! let span = Span {
//!     trace_id: TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
//!     span_id: SpanId::from_hex("00f067aa0ba902b7").unwrap(),
//!     parent_span_id: None,
//!     trace_state: String::new(),
//!     flags: 1,
//!     name: "GET /".into(),
//!     kind: SpanKind::Server,
//!     start_time_unix_nano: 1,
//!     end_time_unix_nano: 2,
//!     attributes: vec![],
//!     status: Status::unset(),
//!     resource: Resource::new("frontend"),
//! };
//! assert_eq!(span.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
//! ```

#![warn(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)
)]

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Error for ids that are not lowercase hex of the right length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdParseError;

impl fmt::Display for IdParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a hex id of the expected length")
    }
}

impl std::error::Error for IdParseError {}

fn parse_hex<const N: usize>(s: &str) -> Result<[u8; N], IdParseError> {
    let b = s.as_bytes();
    if b.len() != 2 * N {
        return Err(IdParseError);
    }
    let mut out = [0u8; N];
    for (i, pair) in b.chunks_exact(2).enumerate() {
        let hi = hex_value(pair[0]).ok_or(IdParseError)?;
        let lo = hex_value(pair[1]).ok_or(IdParseError)?;
        out[i] = hi * 16 + lo;
    }
    Ok(out)
}

/// The value of a hex digit (either case): what `char::to_digit(16)` answers, from a
/// table (ids are parsed from every request's trace context headers).
fn hex_value(b: u8) -> Option<u8> {
    match HEX_VALUES[usize::from(b)] {
        0xff => None,
        v => Some(v),
    }
}

/// [`hex_value`] of every byte, 0xff for non-digits.
const HEX_VALUES: [u8; 256] = hex_table(true);

/// The value of every byte as a hex digit, 0xff for non-digits; uppercase digits count
/// only with `uppercase` (W3C ids are lowercase only).
pub const fn hex_table(uppercase: bool) -> [u8; 256] {
    let mut table = [0xffu8; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'a' as usize + i] = 10 + i as u8;
        if uppercase {
            table[b'A' as usize + i] = 10 + i as u8;
        }
        i += 1;
    }
    table
}

/// Room for the hex text of the longest id (a 16-byte trace id).
pub const HEX_ID_MAX: usize = 32;

/// Lowercase hex of `bytes` (at most 16) in `buf`: a table lookup per nibble instead of
/// one formatter call per byte (ids are written several times per span by every encoder).
fn hex_text<'a>(bytes: &[u8], buf: &'a mut [u8; HEX_ID_MAX]) -> &'a str {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let n = bytes.len().min(HEX_ID_MAX / 2);
    for (i, b) in bytes[..n].iter().enumerate() {
        buf[2 * i] = DIGITS[usize::from(b >> 4)];
        buf[2 * i + 1] = DIGITS[usize::from(b & 0x0f)];
    }
    // Only ASCII hex digits were written.
    std::str::from_utf8(&buf[..2 * n]).unwrap_or_default()
}

/// The two lowercase hex digits of every byte value.
const HEX_PAIRS: [[u8; 2]; 256] = {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut table = [[0u8; 2]; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = [DIGITS[b >> 4], DIGITS[b & 0x0f]];
        b += 1;
    }
    table
};

/// Appends the lowercase hex of `bytes` to `out`: written on the stack a byte's pair of
/// digits at a time, appended in one copy per `HEX_ID_MAX` digits.
fn push_hex(bytes: &[u8], out: &mut Vec<u8>) {
    for part in bytes.chunks(HEX_ID_MAX / 2) {
        let mut buf = [0u8; HEX_ID_MAX];
        for (pair, b) in buf.chunks_exact_mut(2).zip(part) {
            pair.copy_from_slice(&HEX_PAIRS[usize::from(*b)]);
        }
        out.extend_from_slice(&buf[..2 * part.len()]);
    }
}

fn write_hex(bytes: &[u8], f: &mut fmt::Formatter<'_>) -> fmt::Result {
    f.write_str(hex_text(bytes, &mut [0; HEX_ID_MAX]))
}

macro_rules! id_type {
    ($name:ident, $n:expr, $doc:expr) => {
        #[doc = $doc]
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
        pub struct $name(pub [u8; $n]);

        impl $name {
            /// Parses lowercase or uppercase hex of exactly the id's length.
            pub fn from_hex(s: &str) -> Result<Self, IdParseError> {
                parse_hex::<$n>(s).map($name)
            }
            /// True when every byte is zero (an invalid id in W3C and OTLP).
            pub fn is_zero(&self) -> bool {
                self.0.iter().all(|b| *b == 0)
            }
            /// The id's bytes, big-endian as on the wire.
            pub fn as_bytes(&self) -> &[u8; $n] {
                &self.0
            }
            /// The id as lowercase hex (its `Display` text), written into `buf`: no
            /// allocation, no formatter (encoders write ids per span).
            pub fn hex<'a>(&self, buf: &'a mut [u8; HEX_ID_MAX]) -> &'a str {
                hex_text(&self.0, buf)
            }
            /// Appends the id's lowercase hex to `out` (encoders writing bytes).
            pub fn push_hex(&self, out: &mut Vec<u8>) {
                push_hex(&self.0, out)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write_hex(&self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}(", stringify!($name))?;
                write_hex(&self.0, f)?;
                f.write_str(")")
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.hex(&mut [0; HEX_ID_MAX]))
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                $name::from_hex(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

id_type!(
    TraceId,
    16,
    "A 128-bit trace id (hex: 32 lowercase digits)."
);
id_type!(SpanId, 8, "A 64-bit span id (hex: 16 lowercase digits).");

impl TraceId {
    /// The low 56 bits as an integer, as OpenTelemetry's consistent probability sampling
    /// reads them.
    pub fn low56(&self) -> u64 {
        let mut v = [0u8; 8];
        v[1..].copy_from_slice(&self.0[9..16]);
        u64::from_be_bytes(v)
    }
    /// High and low 64-bit halves (high = first 8 bytes), as Jaeger Thrift splits them.
    pub fn halves(&self) -> (u64, u64) {
        let hi = u64::from_be_bytes(self.0[..8].try_into().expect("8 bytes"));
        let lo = u64::from_be_bytes(self.0[8..].try_into().expect("8 bytes"));
        (hi, lo)
    }
}

impl SpanId {
    /// The id as a big-endian integer (Jaeger Thrift's i64 bit pattern).
    pub fn as_u64(&self) -> u64 {
        u64::from_be_bytes(self.0)
    }
}

/// Which side of an exchange the span describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpanKind {
    /// The recorded process accepted the connection and answered the request.
    Server,
    /// The recorded process connected and sent the request.
    Client,
}

/// Span status code, as in OpenTelemetry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StatusCode {
    /// No error was observed.
    Unset,
    /// Explicitly OK (not set by podtrace today).
    Ok,
    /// The exchange failed (5xx on servers, 4xx/5xx on clients, gRPC status ≠ 0, reset).
    Error,
}

/// Span status: code plus a human-readable message for errors.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Status {
    /// The code.
    pub code: StatusCode,
    /// Why it is an error (empty otherwise).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

impl Status {
    /// No status set.
    pub fn unset() -> Self {
        Status {
            code: StatusCode::Unset,
            message: String::new(),
        }
    }
    /// An error with a message.
    pub fn error(message: impl Into<String>) -> Self {
        Status {
            code: StatusCode::Error,
            message: message.into(),
        }
    }
    /// True for [`StatusCode::Error`].
    pub fn is_error(&self) -> bool {
        self.code == StatusCode::Error
    }
}

/// A typed attribute value (the OTLP `AnyValue` subset podtrace emits).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AttrValue {
    /// A string.
    Str(String),
    /// A boolean.
    Bool(bool),
    /// A 64-bit integer.
    Int(i64),
    /// A float.
    Double(f64),
}

impl fmt::Display for AttrValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttrValue::Str(s) => f.write_str(s),
            AttrValue::Bool(b) => write!(f, "{b}"),
            AttrValue::Int(i) => write!(f, "{i}"),
            AttrValue::Double(d) => write!(f, "{d}"),
        }
    }
}

impl From<&str> for AttrValue {
    fn from(v: &str) -> Self {
        AttrValue::Str(v.to_string())
    }
}
impl From<String> for AttrValue {
    fn from(v: String) -> Self {
        AttrValue::Str(v)
    }
}
impl From<i64> for AttrValue {
    fn from(v: i64) -> Self {
        AttrValue::Int(v)
    }
}
impl From<bool> for AttrValue {
    fn from(v: bool) -> Self {
        AttrValue::Bool(v)
    }
}
impl From<f64> for AttrValue {
    fn from(v: f64) -> Self {
        AttrValue::Double(v)
    }
}

/// A span attribute: key (OpenTelemetry semantic convention name) and value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyValue {
    /// e.g. `http.request.method`. Borrowed when the key is a constant (the semantic
    /// convention names: no allocation per span to build, clone or free them), owned when
    /// it is made at run time (e.g. `baggage.<name>`, `k8s.pod.label.<name>`).
    pub key: Cow<'static, str>,
    /// The value.
    pub value: AttrValue,
}

impl KeyValue {
    /// Builds an attribute; a `&'static str` key is kept borrowed, a `String` key owned.
    pub fn new(key: impl Into<Cow<'static, str>>, value: impl Into<AttrValue>) -> Self {
        KeyValue {
            key: key.into(),
            value: value.into(),
        }
    }
}

/// The workload a span belongs to (OTLP resource / Jaeger process). String attributes
/// only, kept sorted by key so equal workloads compare equal and group together.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Resource {
    /// `service.name`
    pub service_name: String,
    /// Other resource attributes (`k8s.namespace.name`, `k8s.pod.name`, `k8s.node.name`,
    /// `k8s.pod.label.<k>`, ...), sorted by key.
    pub attributes: Vec<(String, String)>,
}

impl Resource {
    /// A resource with only a service name.
    pub fn new(service_name: impl Into<String>) -> Self {
        Resource {
            service_name: service_name.into(),
            attributes: Vec::new(),
        }
    }
    /// Adds an attribute, keeping the list sorted by key (a repeated key replaces).
    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.set(key, value);
        self
    }
    /// Sets an attribute, keeping the list sorted by key (a repeated key replaces).
    pub fn set(&mut self, key: impl Into<String>, value: impl Into<String>) {
        let key = key.into();
        let value = value.into();
        match self
            .attributes
            .binary_search_by(|(k, _)| k.as_str().cmp(&key))
        {
            Ok(i) => self.attributes[i].1 = value,
            Err(i) => self.attributes.insert(i, (key, value)),
        }
    }
    /// Looks an attribute up.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.attributes
            .binary_search_by(|(k, _)| k.as_str().cmp(key))
            .ok()
            .map(|i| self.attributes[i].1.as_str())
    }
}

/// One observed HTTP/gRPC exchange, from one side (the OpenTelemetry span model).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Span {
    /// Trace id: from the request's propagation headers, else derived deterministically.
    pub trace_id: TraceId,
    /// Span id: from the wire where present, else derived deterministically.
    pub span_id: SpanId,
    /// Parent span id, `None` for a root span.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_span_id: Option<SpanId>,
    /// W3C tracestate (empty when none).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub trace_state: String,
    /// W3C trace flags (bit 0 = sampled).
    pub flags: u32,
    /// `GET /path` style name (`{method} {route}`), or `pkg.Service/Method` for gRPC.
    pub name: String,
    /// Server or client side.
    pub kind: SpanKind,
    /// First request byte, ns since the Unix epoch.
    pub start_time_unix_nano: u64,
    /// Last response byte, ns since the Unix epoch.
    pub end_time_unix_nano: u64,
    /// Semantic-convention attributes (`http.request.method`, `url.path`, ...).
    pub attributes: Vec<KeyValue>,
    /// Error or not.
    pub status: Status,
    /// The workload (service, pod, namespace, node).
    pub resource: Resource,
}

impl Span {
    /// Duration in ns (0 if the clock went backwards).
    pub fn duration_ns(&self) -> u64 {
        self.end_time_unix_nano
            .saturating_sub(self.start_time_unix_nano)
    }
    /// Looks a span attribute up.
    pub fn attribute(&self, key: &str) -> Option<&AttrValue> {
        self.attributes
            .iter()
            .find(|kv| kv.key == key)
            .map(|kv| &kv.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The digit table answers as `char::to_digit(16)` for every byte.
    #[test]
    fn hex_values_are_to_digit() {
        for b in 0..=255u8 {
            let digit = (b as char).to_digit(16).map(|d| d as u8);
            assert_eq!(hex_value(b), digit, "{b}");
        }
    }

    #[test]
    fn ids_roundtrip_hex_and_serde() {
        let t = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
        assert_eq!(t.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        let j = serde_json::to_string(&t).unwrap();
        assert_eq!(j, "\"4bf92f3577b34da6a3ce929d0e0e4736\"");
        assert_eq!(serde_json::from_str::<TraceId>(&j).unwrap(), t);
        assert!(TraceId::from_hex("4bf9").is_err());
        assert!(SpanId::from_hex("zz f067aa0ba902b7").is_err());
        let (hi, lo) = t.halves();
        assert_eq!(hi, 0x4bf92f3577b34da6);
        assert_eq!(lo, 0xa3ce929d0e0e4736);
        assert_eq!(t.low56(), 0xce929d0e0e4736);
    }

    #[test]
    fn hex_is_the_per_byte_format_for_every_byte() {
        for b in 0..=255u8 {
            let t = TraceId([b; 16]);
            let s = SpanId([b, 0, 1, 0x0f, 0xf0, 0x7f, 0x80, b]);
            let per_byte =
                |bytes: &[u8]| bytes.iter().map(|x| format!("{x:02x}")).collect::<String>();
            assert_eq!(t.to_string(), per_byte(&t.0));
            assert_eq!(s.to_string(), per_byte(&s.0));
            assert_eq!(t.hex(&mut [0; HEX_ID_MAX]), per_byte(&t.0));
            let mut pushed = b"x".to_vec();
            s.push_hex(&mut pushed);
            assert_eq!(pushed, format!("x{}", per_byte(&s.0)).into_bytes());
            assert_eq!(format!("{s:?}"), format!("SpanId({})", per_byte(&s.0)));
            assert_eq!(
                serde_json::to_string(&s).unwrap(),
                format!("\"{}\"", per_byte(&s.0))
            );
        }
    }

    #[test]
    fn resource_attributes_stay_sorted() {
        let r = Resource::new("svc")
            .with("k8s.pod.name", "p")
            .with("k8s.namespace.name", "ns")
            .with("k8s.pod.name", "q");
        assert_eq!(
            r.attributes,
            vec![
                ("k8s.namespace.name".to_string(), "ns".to_string()),
                ("k8s.pod.name".to_string(), "q".to_string())
            ]
        );
        assert_eq!(r.get("k8s.pod.name"), Some("q"));
        assert_eq!(r.get("nope"), None);
    }
}
