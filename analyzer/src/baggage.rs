//! W3C Baggage (`baggage` request header) as span attributes, only when asked
//! (`--baggage-attributes`): baggage is application data and may carry user data.
//!
//! `baggage: key1=value1;prop, key2 = value2` (W3C Baggage): comma-separated members,
//! each `key=value` with optional `;`-separated properties (dropped). Several `baggage`
//! headers are one list. A member becomes the attribute `baggage.<key>` with the
//! percent-decoded value. Bounds: [`MAX_BYTES`] of header text and [`MAX_ENTRIES`] members
//! per request (the W3C limits a propagator must at least carry); members beyond them are
//! skipped and counted as `over-limit`. Members that are not `key=value` with a token key
//! and a percent-decodable UTF-8 value are skipped and counted as `malformed`; a key seen
//! again is skipped and counted as `duplicate` (the first one is kept).

use podtrace_model::KeyValue;

/// Baggage header bytes read per request (W3C Baggage: 8192).
pub const MAX_BYTES: usize = 8192;
/// Baggage members turned into attributes per request (W3C Baggage: 64 at least).
pub const MAX_ENTRIES: usize = 64;
/// Attribute key prefix.
pub const PREFIX: &str = "baggage.";

/// Why baggage members were skipped, per request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Skipped {
    /// Not `key=value`, a key that is not a token, a bad percent escape or non-UTF-8 value.
    pub malformed: u64,
    /// Beyond [`MAX_BYTES`] or [`MAX_ENTRIES`].
    pub over_limit: u64,
    /// A key that appeared before.
    pub duplicate: u64,
}

/// RFC 9110 token characters.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        })
}

/// Appends `baggage.<key>` attributes for the `baggage` header values `values` (in wire
/// order) to `attrs`; returns what was skipped.
pub fn to_attributes<'a>(
    values: impl IntoIterator<Item = &'a str>,
    attrs: &mut Vec<KeyValue>,
) -> Skipped {
    let mut skipped = Skipped::default();
    let mut keys: Vec<String> = Vec::new();
    let mut budget = MAX_BYTES;
    for value in values {
        for member in value.split(',') {
            let member = member.trim_matches([' ', '\t']);
            if member.is_empty() {
                continue;
            }
            if member.len() > budget || keys.len() >= MAX_ENTRIES {
                budget = 0;
                skipped.over_limit += 1;
                continue;
            }
            budget -= member.len();
            let kv = member.split(';').next().unwrap_or("");
            let Some((key, raw)) = kv.split_once('=') else {
                skipped.malformed += 1;
                continue;
            };
            let key = key.trim_matches([' ', '\t']);
            let raw = raw.trim_matches([' ', '\t']);
            let decoded = crate::context::percent_decode(raw);
            let (true, Some(decoded)) = (is_token(key), decoded) else {
                skipped.malformed += 1;
                continue;
            };
            if keys.iter().any(|k| k == key) {
                skipped.duplicate += 1;
                continue;
            }
            keys.push(key.to_string());
            attrs.push(KeyValue::new(format!("{PREFIX}{key}"), decoded));
        }
    }
    skipped
}

#[cfg(test)]
mod tests {
    use super::*;
    use podtrace_model::AttrValue;

    fn attrs(values: &[&str]) -> (Vec<(String, String)>, Skipped) {
        let mut out = Vec::new();
        let skipped = to_attributes(values.iter().copied(), &mut out);
        let pairs = out
            .into_iter()
            .map(|kv| match kv.value {
                AttrValue::Str(s) => (kv.key.into_owned(), s),
                other => panic!("{other:?}"),
            })
            .collect();
        (pairs, skipped)
    }

    fn kv(k: &str, v: &str) -> (String, String) {
        (k.to_string(), v.to_string())
    }

    #[test]
    fn members_values_properties_and_several_headers() {
        let (got, skipped) = attrs(&[
            "userId=alice, serverNode = DF%2028 ;prop1;p2=x,isProduction=false",
            "tenant=acme%2Cinc",
        ]);
        assert_eq!(
            got,
            vec![
                kv("baggage.userId", "alice"),
                kv("baggage.serverNode", "DF 28"),
                kv("baggage.isProduction", "false"),
                kv("baggage.tenant", "acme,inc"),
            ]
        );
        assert_eq!(skipped, Skipped::default());
        // Empty values are values; empty members are nothing.
        let (got, skipped) = attrs(&["a=,,b=1"]);
        assert_eq!(got, vec![kv("baggage.a", ""), kv("baggage.b", "1")]);
        assert_eq!(skipped, Skipped::default());
    }

    #[test]
    fn malformed_members_are_skipped_and_counted() {
        let (got, skipped) = attrs(&["novalue, =x, bad key=1, k=%zz, u=%ff, ok=1"]);
        assert_eq!(got, vec![kv("baggage.ok", "1")]);
        assert_eq!(skipped.malformed, 5);
        let (got, skipped) = attrs(&["a=1,a=2"]);
        assert_eq!(got, vec![kv("baggage.a", "1")]);
        assert_eq!(skipped.duplicate, 1);
    }

    #[test]
    fn bounds_on_entries_and_bytes() {
        let many: Vec<String> = (0..MAX_ENTRIES + 6).map(|i| format!("k{i}=v")).collect();
        let many = many.join(",");
        let (got, skipped) = attrs(&[&many]);
        assert_eq!(got.len(), MAX_ENTRIES);
        assert_eq!(skipped.over_limit, 6);
        let big = format!("a={},b=1,c=2", "x".repeat(MAX_BYTES));
        let (got, skipped) = attrs(&[&big]);
        assert!(got.is_empty(), "nothing after the byte budget is read");
        assert_eq!(skipped.over_limit, 3);
        let fits = format!("a={},b=1", "x".repeat(100));
        let (got, _) = attrs(&[&fits]);
        assert_eq!(got.len(), 2);
    }
}
