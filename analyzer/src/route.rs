//! Routes: low-cardinality templates of request paths (`/order/{id}` for `/order/1`).
//!
//! A span named after its raw path (`GET /order/1`, `GET /order/2`, ...) gets one name per
//! id, which blows up every tracing backend's span-name index. Following the OpenTelemetry
//! HTTP semantic conventions, podtrace names HTTP spans `{method} {route}` when it knows a
//! route and `{method}` otherwise, and records the template as `http.route` (SERVER spans)
//! or `url.template` (CLIENT spans); `url.path` keeps the raw path.
//!
//! **User routes** (`--route '/order/{id}'`, `--routes-file`) win over inference. A route
//! is a path template: `/`-separated segments, each a literal or a `{name}` placeholder
//! that matches exactly one non-empty segment. A path matches a route when both have the
//! same number of segments and every segment matches (literals exactly, case-sensitive; one
//! trailing `/` on either side is ignored). When several routes match, the most specific
//! wins: the one with more literal segments (`/order/list` beats `/order/{id}` and
//! `/{kind}/list` for `/order/list`), then the one whose first literal comes earlier
//! (`/a/{x}/{y}` beats `/{x}/b/{y}` for `/a/b/c`), then the one given first.
//!
//! **Inference** (paths no user route matches) replaces, segment by segment:
//! - a segment of digits only (`42`) → `{id}`;
//! - digits with the separators `.` `-` `_` `:` `,` (`2024-01-15`, `1.2.3`) → `{id}`;
//! - a UUID, 8-4-4-4-12 hex digits of either case → `{id}`;
//! - hex digits only, at least 8 of them, with at least one decimal digit (`5f0c1a2b`,
//!   a SHA) → `{id}`;
//! - a long random-looking token: at least 16 characters of the base64/base64url alphabet
//!   (letters, digits, `-` `_` `=` `+` `~` `.`) where some word (the parts between `-` `_`
//!   `.` `~`) mixes letters and digits (`aGVsbG8gd29ybGQ9`, `sess_8f7Xk2LpQ9zR4tY`) →
//!   `{id}`. Slugs of plain words and numbers (`release-notes-2024`) stay.
//!
//! Everything else stays literal (`/api/v2/orders`). Percent-encoded bytes count as
//! themselves (`%` is not in the token alphabet, so such segments stay). Paths that do not
//! start with `/` (`*`, an authority) have no route.

use std::fmt;

/// The placeholder inference puts in place of an id-like segment.
pub const ID: &str = "{id}";

/// Longest route template accepted from the user, in bytes.
pub const MAX_ROUTE_LEN: usize = 2048;

/// A user route that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("route `{route}`: {reason}")]
pub struct RouteError {
    /// The route as given.
    pub route: String,
    /// Why it was refused.
    pub reason: String,
}

/// One segment of a user route.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Literal(String),
    Param,
}

/// A parsed user route.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Template {
    /// The route as given (without a trailing `/` unless it is `/`): what spans show.
    text: String,
    segs: Vec<Seg>,
    /// Per segment: literal (true) or placeholder; compared for specificity.
    literal_mask: Vec<bool>,
    literals: usize,
}

impl Template {
    fn parse(route: &str) -> Result<Self, RouteError> {
        let err = |reason: &str| RouteError {
            route: route.to_string(),
            reason: reason.to_string(),
        };
        let r = route.trim();
        if r.is_empty() {
            return Err(err("empty"));
        }
        if r.len() > MAX_ROUTE_LEN {
            return Err(err(&format!("longer than {MAX_ROUTE_LEN} bytes")));
        }
        if !r.starts_with('/') {
            return Err(err("must start with `/`"));
        }
        if let Some(c) = r
            .chars()
            .find(|c| c.is_whitespace() || c.is_control() || matches!(c, '?' | '#'))
        {
            return Err(err(&format!(
                "{c:?} is not allowed (a route is a path: no query, fragment or spaces)"
            )));
        }
        let mut segs = Vec::new();
        for s in segments(r) {
            if s.contains(['{', '}']) {
                let valid_name = s
                    .strip_prefix('{')
                    .and_then(|s| s.strip_suffix('}'))
                    .is_some_and(|n| {
                        !n.is_empty()
                            && n.bytes().all(|b| {
                                b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')
                            })
                    });
                if !valid_name {
                    return Err(err(&format!(
                        "segment `{s}`: a placeholder is a whole segment `{{name}}` \
                         (name of letters, digits, `_`, `-`, `.`)"
                    )));
                }
                segs.push(Seg::Param);
            } else {
                segs.push(Seg::Literal(s.to_string()));
            }
        }
        let literal_mask: Vec<bool> = segs.iter().map(|s| matches!(s, Seg::Literal(_))).collect();
        let literals = literal_mask.iter().filter(|l| **l).count();
        let text = if r.len() > 1 {
            r.strip_suffix('/').unwrap_or(r).to_string()
        } else {
            r.to_string()
        };
        Ok(Template {
            text,
            segs,
            literal_mask,
            literals,
        })
    }

    fn matches(&self, path_segs: &[&str]) -> bool {
        self.segs.len() == path_segs.len()
            && self.segs.iter().zip(path_segs).all(|(t, p)| match t {
                Seg::Literal(l) => l == p,
                Seg::Param => !p.is_empty(),
            })
    }

    /// True when `self` is more specific than `other` (see the module doc).
    fn beats(&self, other: &Template) -> bool {
        match self.literals.cmp(&other.literals) {
            std::cmp::Ordering::Greater => true,
            std::cmp::Ordering::Less => false,
            // Literal earlier (true > false) at the first position where they differ.
            std::cmp::Ordering::Equal => self.literal_mask > other.literal_mask,
        }
    }
}

/// The segments of a path after its leading `/`, one trailing `/` ignored (`/` has one
/// empty segment).
fn segments(path: &str) -> impl Iterator<Item = &str> {
    let body = &path[1..];
    body.strip_suffix('/').unwrap_or(body).split('/')
}

/// The user's routes, indexed by segment count.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routes {
    /// `by_len[n]`: templates of `n` segments, in the order given.
    by_len: Vec<Vec<Template>>,
    count: usize,
}

impl Routes {
    /// No user routes: inference only.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses user route templates (duplicates are kept once).
    pub fn parse<S: AsRef<str>>(routes: &[S]) -> Result<Self, RouteError> {
        let mut out = Routes::default();
        for r in routes {
            let t = Template::parse(r.as_ref())?;
            let n = t.segs.len();
            if out.by_len.len() <= n {
                out.by_len.resize(n + 1, Vec::new());
            }
            if !out.by_len[n].iter().any(|o| o.text == t.text) {
                out.by_len[n].push(t);
                out.count += 1;
            }
        }
        Ok(out)
    }

    /// Number of distinct user routes.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when there are no user routes.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The most specific user route matching `path` (query already removed).
    pub fn user_route(&self, path: &str) -> Option<&str> {
        if self.count == 0 || !path.starts_with('/') {
            return None;
        }
        let segs: Vec<&str> = segments(path).collect();
        let mut best: Option<&Template> = None;
        for t in self.by_len.get(segs.len())? {
            if t.matches(&segs) && best.is_none_or(|b| t.beats(b)) {
                best = Some(t);
            }
        }
        best.map(|t| t.text.as_str())
    }

    /// The route of `path`: the best user route, else the inferred one; `None` when the
    /// path does not start with `/`.
    pub fn route(&self, path: &str) -> Option<String> {
        if let Some(r) = self.user_route(path) {
            return Some(r.to_string());
        }
        infer(path)
    }
}

/// The inferred route template of `path` (query already removed); `None` when the path
/// does not start with `/`. See the module doc for the rules.
pub fn infer(path: &str) -> Option<String> {
    let rest = path.strip_prefix('/')?;
    // Room for every segment replaced by the placeholder: the text never grows.
    let segments = rest.bytes().filter(|b| *b == b'/').count() + 1;
    let mut out = String::with_capacity(path.len() + segments * ID.len());
    for seg in segments_of(rest) {
        out.push('/');
        out.push_str(if is_id(seg) { ID } else { seg });
    }
    Some(out)
}

/// `path.split('/')`, found byte by byte: path segments are short, and the char
/// searcher's setup cost more than the scan.
fn segments_of(path: &str) -> impl Iterator<Item = &str> {
    let mut start = 0;
    let ends = path
        .bytes()
        .enumerate()
        .filter(|(_, b)| *b == b'/')
        .map(|(i, _)| i)
        .chain(std::iter::once(path.len()));
    ends.map(move |end| {
        // `start` and `end` are at '/' bytes or the ends: char boundaries.
        let seg = path.get(start..end).unwrap_or_default();
        start = end + 1;
        seg
    })
}

/// Whether inference replaces `seg` with a placeholder.
pub fn is_id(seg: &str) -> bool {
    let b = seg.as_bytes();
    if b.is_empty() {
        return false;
    }
    let digits = b.iter().filter(|c| c.is_ascii_digit()).count();
    // Digits, or digits with separators (dates, versions, decimal numbers).
    if digits > 0
        && b.iter()
            .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'-' | b'_' | b':' | b','))
    {
        return true;
    }
    if is_uuid(b) {
        return true;
    }
    if b.len() >= 8 && digits > 0 && b.iter().all(u8::is_ascii_hexdigit) {
        return true;
    }
    b.len() >= 16
        && b.iter().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'=' | b'+' | b'~' | b'.')
        })
        && seg.split(['-', '_', '.', '~']).any(|w| {
            w.bytes().any(|c| c.is_ascii_digit()) && w.bytes().any(|c| c.is_ascii_alphabetic())
        })
}

fn is_uuid(b: &[u8]) -> bool {
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// Parses a routes file: one route per line; blank lines and `#` comments (whole lines or
/// the rest of a line: `#` cannot be part of a path) are skipped. Errors name the line.
pub fn parse_routes_file(text: &str) -> Result<Vec<String>, RoutesFileError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        Template::parse(line).map_err(|e| RoutesFileError {
            line: i + 1,
            error: e,
        })?;
        out.push(line.to_string());
    }
    Ok(out)
}

/// A bad line of a routes file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct RoutesFileError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with the route on it.
    pub error: RouteError,
}

impl fmt::Display for RoutesFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_split_on_slashes() {
        for p in [
            "",
            "a",
            "a/b",
            "/",
            "//",
            "a//b/",
            "é/ü/x",
            "api/v1/users/12",
        ] {
            let mine: Vec<&str> = segments_of(p).collect();
            let split: Vec<&str> = p.split('/').collect();
            assert_eq!(mine, split, "{p}");
        }
    }

    fn inf(p: &str) -> String {
        infer(p).expect("route")
    }

    #[test]
    fn numeric_and_separated_numeric_segments() {
        assert_eq!(inf("/order/1"), "/order/{id}");
        assert_eq!(inf("/order/1234567890123"), "/order/{id}");
        assert_eq!(inf("/users/42/orders/7"), "/users/{id}/orders/{id}");
        assert_eq!(inf("/reports/2024-01-15"), "/reports/{id}");
        assert_eq!(inf("/download/1.2.3/app.tar"), "/download/{id}/app.tar");
        assert_eq!(inf("/at/12:30"), "/at/{id}");
        // Separators alone are not ids.
        assert_eq!(inf("/a/-/b/./c/_"), "/a/-/b/./c/_");
    }

    #[test]
    fn uuid_segments_either_case() {
        assert_eq!(
            inf("/carts/4bf92f35-77b3-4da6-a3ce-929d0e0e4736/items"),
            "/carts/{id}/items"
        );
        assert_eq!(
            inf("/carts/4BF92F35-77B3-4DA6-A3CE-929D0E0E4736"),
            "/carts/{id}"
        );
        // Wrong grouping: not a UUID; still random-looking (long, letters and digits mixed).
        assert_eq!(inf("/x/4bf92f3577b3-4da6-a3ce-929d0e0e4736"), "/x/{id}");
        // Dashes in UUID places but a non-hex letter in a short word: kept.
        assert_eq!(inf("/x/abcdefgh-ijkl"), "/x/abcdefgh-ijkl");
    }

    #[test]
    fn hex_segments_need_eight_digits_and_a_decimal_digit() {
        assert_eq!(inf("/commit/5f0c1a2b"), "/commit/{id}");
        assert_eq!(
            inf("/objects/4bf92f3577b34da6a3ce929d0e0e4736"),
            "/objects/{id}"
        );
        assert_eq!(inf("/blob/DEADBEEF01"), "/blob/{id}");
        // Seven hex digits: too short for the hex rule (and no other rule applies).
        assert_eq!(inf("/commit/5f0c1a2"), "/commit/5f0c1a2");
        // Words that happen to be hex letters only stay.
        assert_eq!(inf("/api/facade"), "/api/facade");
        assert_eq!(inf("/api/deadbeef"), "/api/deadbeef");
    }

    #[test]
    fn long_random_tokens_but_not_slugs() {
        assert_eq!(inf("/s/aGVsbG8gd29ybGQ9"), "/s/{id}");
        assert_eq!(inf("/session/sess_8f7Xk2LpQ9zR4tY"), "/session/{id}");
        assert_eq!(inf("/t/eyJhbGciOiJIUzI1NiJ9"), "/t/{id}");
        assert_eq!(inf("/p/iphone15-pro-max-256gb"), "/p/{id}");
        // Slugs of words and numbers stay; so do long words.
        assert_eq!(inf("/blog/release-notes-2024"), "/blog/release-notes-2024");
        assert_eq!(
            inf("/docs/getting-started-with-podtrace"),
            "/docs/getting-started-with-podtrace"
        );
        assert_eq!(inf("/internationalization"), "/internationalization");
        // Mixed but short: stays (v2, h2c, x86).
        assert_eq!(inf("/api/v2/x86"), "/api/v2/x86");
        // Characters outside the token alphabet: stays.
        assert_eq!(inf("/q/abc%20def1234567890"), "/q/abc%20def1234567890");
    }

    #[test]
    fn shapes_of_paths() {
        assert_eq!(inf("/"), "/");
        assert_eq!(inf("/order/1/"), "/order/{id}/");
        assert_eq!(inf("//1"), "//{id}");
        assert_eq!(inf("/static/app.js"), "/static/app.js");
        assert_eq!(infer("*"), None);
        assert_eq!(infer("example.com:443"), None);
        assert_eq!(infer(""), None);
    }

    #[test]
    fn user_routes_win_and_the_most_specific_one_is_taken() {
        let r = Routes::parse(&[
            "/order/{id}",
            "/order/list",
            "/{kind}/list",
            "/users/{user}/orders/{order}",
            "/files/{name}",
        ])
        .expect("routes");
        assert_eq!(r.len(), 5);
        assert_eq!(r.route("/order/1").as_deref(), Some("/order/{id}"));
        assert_eq!(r.route("/order/list").as_deref(), Some("/order/list"));
        assert_eq!(r.route("/cart/list").as_deref(), Some("/{kind}/list"));
        assert_eq!(
            r.route("/users/ann/orders/x").as_deref(),
            Some("/users/{user}/orders/{order}")
        );
        // A user route names segments inference would keep.
        assert_eq!(r.route("/files/readme").as_deref(), Some("/files/{name}"));
        // Trailing slash ignored for matching.
        assert_eq!(r.route("/order/7/").as_deref(), Some("/order/{id}"));
        // No match (segment count, empty segment): inference.
        assert_eq!(
            r.route("/order/1/items").as_deref(),
            Some("/order/{id}/items")
        );
        assert_eq!(r.route("/files/").as_deref(), Some("/files/"));
        assert_eq!(r.route("*"), None);
        // Case-sensitive literals.
        assert_eq!(r.route("/Order/list").as_deref(), Some("/{kind}/list"));
    }

    #[test]
    fn equal_specificity_earlier_literal_then_first_given() {
        let r = Routes::parse(&["/{a}/x/{b}", "/a/{x}/{b}", "/a/{y}/{c}"]).expect("routes");
        assert_eq!(r.route("/a/x/1").as_deref(), Some("/a/{x}/{b}"));
        let r = Routes::parse(&["/a/{y}/{c}", "/a/{x}/{b}"]).expect("routes");
        assert_eq!(r.route("/a/q/1").as_deref(), Some("/a/{y}/{c}"));
        // Root route.
        let r = Routes::parse(&["/", "/{p}"]).expect("routes");
        assert_eq!(r.route("/").as_deref(), Some("/"));
        assert_eq!(r.route("/x").as_deref(), Some("/{p}"));
        // Duplicates (also up to a trailing slash) count once.
        let r = Routes::parse(&["/a/{id}", "/a/{id}/"]).expect("routes");
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn bad_user_routes_are_refused_with_a_reason() {
        for (bad, why) in [
            ("", "empty"),
            ("order/{id}", "start with `/`"),
            ("/order/{id}?x=1", "not allowed"),
            ("/order/{ id}", "not allowed"),
            ("/order/id{id}", "whole segment"),
            ("/order/{}", "whole segment"),
            ("/order/{id", "whole segment"),
            ("/order/{a/b}", "whole segment"),
        ] {
            let e = Routes::parse(&[bad]).expect_err(bad);
            assert!(e.to_string().contains(why), "{bad}: {e}");
        }
        let long = format!("/{}", "a".repeat(MAX_ROUTE_LEN));
        assert!(Routes::parse(&[long]).is_err());
    }

    #[test]
    fn routes_file_lines_and_comments() {
        let text = "# routes of the shop\n/order/{id}\n\n  /cart/{cart}/items  # items\n";
        assert_eq!(
            parse_routes_file(text).expect("file"),
            vec!["/order/{id}", "/cart/{cart}/items"]
        );
        let e = parse_routes_file("/ok\nnot-a-route\n").expect_err("bad line");
        assert_eq!(e.line, 2);
        assert!(
            e.to_string().starts_with("line 2: route `not-a-route`"),
            "{e}"
        );
    }
}
