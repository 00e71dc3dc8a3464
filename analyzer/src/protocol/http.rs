//! What HTTP/1.x and HTTP/2 share: the HTTP facts of a request and a response (the
//! protocol-specific part of their exchanges), gRPC call names, the request header names
//! kept, and target splitting.

/// Request header names (lowercase) kept on a request: trace context, W3C baggage (read
/// only with `--baggage-attributes`), host, agent.
pub const KEPT_HEADERS: [&str; 14] = [
    "traceparent",
    "tracestate",
    "b3",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
    "x-request-id",
    "x-span-id",
    "uber-trace-id",
    "baggage",
    "host",
    "user-agent",
];

/// Longest header name [`is_one_of`] lowercases on the stack (longer names take the
/// case-insensitive comparison with each candidate).
const NAME_ON_STACK: usize = 32;

/// Whether `name` is one of `lowercase` (lowercase names, e.g. [`KEPT_HEADERS`]) with
/// ASCII case ignored — `lowercase.iter().any(|k| name.eq_ignore_ascii_case(k))`, with the
/// name lowercased once instead of once per candidate of its length (a request's fields
/// are matched against every kept name).
pub fn is_one_of(name: &str, lowercase: &[&str]) -> bool {
    // Most names have no candidate of their length: nothing to lowercase.
    if !lowercase.iter().any(|k| k.len() == name.len()) {
        return false;
    }
    let mut buf = [0u8; NAME_ON_STACK];
    let Some(lower) = buf.get_mut(..name.len()) else {
        return lowercase.iter().any(|k| name.eq_ignore_ascii_case(k));
    };
    for (l, b) in lower.iter_mut().zip(name.as_bytes()) {
        *l = b.to_ascii_lowercase();
    }
    let lower: &[u8] = lower;
    lowercase.iter().any(|k| k.as_bytes() == lower)
}

/// The HTTP part of a request.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HttpRequest {
    /// Method token.
    pub method: String,
    /// Request target as sent.
    pub target: String,
    /// Path part of the target (absolute-form targets reduced to their path).
    pub path: String,
    /// Query string without `?`, if any.
    pub query: Option<String>,
    /// HTTP minor version (HTTP/1.x; 0 for HTTP/2).
    pub version: u8,
    /// HTTP/2 stream facts (`None` for HTTP/1).
    pub h2: Option<Box<H2Request>>,
}

/// The HTTP part of a response.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HttpResponse {
    /// Status code (0: none seen, e.g. a reset HTTP/2 stream).
    pub status: u16,
    /// HTTP minor version (HTTP/1.x; 0 for HTTP/2).
    pub version: u8,
    /// HTTP/2 stream facts: gRPC status, reset (`None` for HTTP/1).
    pub h2: Option<H2Response>,
}

/// A gRPC call's name, from the `:path` `/package.Service/Method`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GrpcCall {
    /// `package.Service`.
    pub service: String,
    /// `Method`.
    pub method: String,
}

impl GrpcCall {
    /// Splits a gRPC path; a path without the two parts gives the whole path as the
    /// service and an empty method.
    pub fn from_path(path: &str) -> Self {
        let p = path.strip_prefix('/').unwrap_or(path);
        match p.split_once('/') {
            Some((s, m)) => GrpcCall {
                service: s.to_string(),
                method: m.to_string(),
            },
            None => GrpcCall {
                service: p.to_string(),
                method: String::new(),
            },
        }
    }
}

/// HTTP/2 facts of a request.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct H2Request {
    /// The stream id.
    pub stream_id: u32,
    /// Set for gRPC requests.
    pub grpc: Option<GrpcCall>,
    /// Some header fields could not be decoded (capture joined late, lost bytes).
    pub partial_headers: bool,
}

/// HTTP/2 facts of a response.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct H2Response {
    /// `grpc-status` from the trailers (or a trailers-only response).
    pub grpc_status: Option<i64>,
    /// `grpc-message`, percent-decoded.
    pub grpc_message: Option<String>,
    /// The stream ended with RST_STREAM and this error code.
    pub reset: Option<u32>,
}

/// Splits a request target into path and query (absolute-form and authority-form reduced).
pub fn split_target(target: &str) -> (String, Option<String>) {
    let without_scheme = target
        .strip_prefix("http://")
        .or_else(|| target.strip_prefix("https://"));
    let rest = match without_scheme {
        Some(r) => match r.find('/') {
            Some(i) => &r[i..],
            None => "/",
        },
        None => target,
    };
    // The path ends at the first '?' or '#', the query (after a '?') at the next '#'.
    // Both are ASCII: the first such byte is the first such character (each byte looked
    // at once, instead of a `char` search for each).
    let Some(i) = rest.bytes().position(|b| b == b'?' || b == b'#') else {
        return (rest.to_string(), None);
    };
    if rest.as_bytes()[i] == b'#' {
        return (rest[..i].to_string(), None);
    }
    let query = &rest[i + 1..];
    let query = match query.bytes().position(|b| b == b'#') {
        Some(j) => &query[..j],
        None => query,
    };
    (rest[..i].to_string(), Some(query.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kept names are lowercase ([`is_one_of`] compares them with the lowercased name),
    /// and it answers as the case-insensitive comparison with each.
    #[test]
    fn kept_names_match_case_insensitively() {
        for k in KEPT_HEADERS {
            assert_eq!(k, k.to_ascii_lowercase());
        }
        let long = "x-a-header-name-longer-than-thirty-two-bytes";
        let names = [
            "traceparent",
            "TraceParent",
            "HOST",
            "Host",
            "x-b3-TraceId",
            "x-b3-traceid2",
            "x-b3-sampled",
            "content-length",
            "",
            "b",
            long,
        ];
        for set in [&KEPT_HEADERS[..], &[long], &[]] {
            for n in names {
                assert_eq!(
                    is_one_of(n, set),
                    set.iter().any(|k| n.eq_ignore_ascii_case(k)),
                    "{n}"
                );
            }
        }
        assert!(is_one_of(&long.to_ascii_uppercase(), &[long]));
    }

    #[test]
    fn target_splitting() {
        assert_eq!(
            split_target("/a/b?x=1&y"),
            ("/a/b".into(), Some("x=1&y".into()))
        );
        assert_eq!(
            split_target("http://h:8080/p?q"),
            ("/p".into(), Some("q".into()))
        );
        assert_eq!(split_target("http://h"), ("/".into(), None));
        assert_eq!(split_target("*"), ("*".into(), None));
    }

    #[test]
    fn grpc_paths() {
        assert_eq!(
            GrpcCall::from_path("/pkg.Svc/Do"),
            GrpcCall {
                service: "pkg.Svc".into(),
                method: "Do".into()
            }
        );
        assert_eq!(GrpcCall::from_path("/odd").method, "");
    }
}
