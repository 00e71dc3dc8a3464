//! What the span builder takes from the analysis options: HTTP span names from routes
//! ([`crate::route`]) and, when asked, W3C baggage attributes ([`crate::baggage`]).
//!
//! Shared by the parallel span builders ([`crate::span::Linker`]); baggage members skipped
//! are counted in atomics and reported as `baggage/<reason>` under `ignored_headers`.

use std::sync::atomic::{AtomicU64, Ordering};

use podtrace_model::{KeyValue, SpanKind};

use crate::baggage;
use crate::protocol::Headers;
use crate::route::Routes;

/// Route and baggage settings of span building, with the baggage counters.
#[derive(Debug, Default)]
pub struct SpanDetails {
    routes: Routes,
    baggage: bool,
    malformed: AtomicU64,
    over_limit: AtomicU64,
    duplicate: AtomicU64,
}

impl SpanDetails {
    /// Settings: user routes (inference covers the rest) and whether baggage becomes
    /// attributes.
    pub fn new(routes: Routes, baggage_attributes: bool) -> Self {
        SpanDetails {
            routes,
            baggage: baggage_attributes,
            ..SpanDetails::default()
        }
    }

    /// The span name and route of an HTTP request: `{method} {route}` when the path has a
    /// route (a user route, else the inferred template), else `{method}`.
    pub fn http_name(&self, method: &str, path: &str) -> (String, Option<String>) {
        match self.routes.route(path) {
            Some(route) => (join_name(method, &route), Some(route)),
            None => (method.to_string(), None),
        }
    }

    /// The attribute that carries the route on a span of this kind (OpenTelemetry HTTP
    /// semantic conventions): `http.route` on SERVER spans, `url.template` on CLIENT spans.
    pub fn route_key(kind: SpanKind) -> &'static str {
        match kind {
            SpanKind::Server => "http.route",
            SpanKind::Client => "url.template",
        }
    }

    /// With `--baggage-attributes`: appends the request's `baggage` entries as
    /// `baggage.<key>` attributes (counting what was skipped); otherwise nothing.
    pub fn add_baggage(&self, headers: &Headers, attrs: &mut Vec<KeyValue>) {
        if !self.baggage {
            return;
        }
        let skipped = baggage::to_attributes(headers.values("baggage"), attrs);
        for (counter, n) in [
            (&self.malformed, skipped.malformed),
            (&self.over_limit, skipped.over_limit),
            (&self.duplicate, skipped.duplicate),
        ] {
            if n > 0 {
                counter.fetch_add(n, Ordering::Relaxed);
            }
        }
    }

    /// Baggage members skipped so far, as `(ignored_headers key, count)`, non-zero only.
    pub fn skipped(&self) -> Vec<(&'static str, u64)> {
        [
            ("baggage/malformed", &self.malformed),
            ("baggage/over-limit", &self.over_limit),
            ("baggage/duplicate", &self.duplicate),
        ]
        .into_iter()
        .map(|(k, c)| (k, c.load(Ordering::Relaxed)))
        .filter(|(_, n)| *n > 0)
        .collect()
    }
}

/// `{method} {route}` (a span's name), without the formatter.
fn join_name(method: &str, route: &str) -> String {
    let mut name = String::with_capacity(method.len() + 1 + route.len());
    name.push_str(method);
    name.push(' ');
    name.push_str(route);
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_user_routes_inference_or_method_alone() {
        let d = SpanDetails::new(Routes::parse(&["/files/{name}"]).expect("routes"), false);
        assert_eq!(
            d.http_name("GET", "/order/12"),
            (
                "GET /order/{id}".to_string(),
                Some("/order/{id}".to_string())
            )
        );
        assert_eq!(d.http_name("PUT", "/files/a").0, "PUT /files/{name}");
        assert_eq!(d.http_name("OPTIONS", "*"), ("OPTIONS".to_string(), None));
        assert_eq!(d.http_name("GET", ""), ("GET".to_string(), None));
        assert_eq!(SpanDetails::route_key(SpanKind::Server), "http.route");
        assert_eq!(SpanDetails::route_key(SpanKind::Client), "url.template");
    }

    #[test]
    fn baggage_only_when_asked_and_counted() {
        let headers: Headers = [
            ("Host", "x"),
            ("baggage", "user=ann,bad"),
            ("Baggage", "user=bob,n=%31"),
        ]
        .into_iter()
        .collect();
        let mut attrs = Vec::new();
        SpanDetails::default().add_baggage(&headers, &mut attrs);
        assert!(attrs.is_empty());
        let d = SpanDetails::new(Routes::new(), true);
        d.add_baggage(&headers, &mut attrs);
        let keys: Vec<(&str, &podtrace_model::AttrValue)> =
            attrs.iter().map(|kv| (&*kv.key, &kv.value)).collect();
        assert_eq!(
            keys,
            vec![("baggage.user", &"ann".into()), ("baggage.n", &"1".into()),]
        );
        assert_eq!(
            d.skipped(),
            vec![("baggage/malformed", 1), ("baggage/duplicate", 1)]
        );
    }
}
