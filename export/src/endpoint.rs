//! Endpoint rules: where each exporter POSTs, and how an endpoint is shown in messages.
//!
//! - OTLP: `{base}/v1/traces` unless the URL already ends with `/v1/traces`.
//! - Jaeger collector: the URL as given when it has a path, else `{base}/api/traces`.
//! - Splunk HEC: the URL as given when it has a path, else `{base}/services/collector`.
//!
//! [`redact`] prints scheme, host, port and path only, so user info and query strings
//! (where people sometimes put credentials) never reach an error message or a log.

use reqwest::Url;

use crate::ExportError;

fn check_http(url: &Url) -> Result<(), ExportError> {
    match url.scheme() {
        "http" | "https" if url.host().is_some() => Ok(()),
        _ => Err(ExportError::Config(format!(
            "endpoint {} is not an http(s) URL with a host",
            redact(url)
        ))),
    }
}

fn with_path(base: &Url, path: &str) -> Url {
    let mut url = base.clone();
    url.set_path(path);
    url
}

/// The OTLP/HTTP traces URL for a configured endpoint.
///
/// ```
/// # use podtrace_export::{endpoint::otlp_traces_url, Url};
/// let u = |s: &str| otlp_traces_url(&Url::parse(s).unwrap()).unwrap().to_string();
/// assert_eq!(u("http://collector:4318"), "http://collector:4318/v1/traces");
/// assert_eq!(u("http://collector:4318/otlp/"), "http://collector:4318/otlp/v1/traces");
/// assert_eq!(u("http://collector:4318/v1/traces"), "http://collector:4318/v1/traces");
/// ```
pub fn otlp_traces_url(base: &Url) -> Result<Url, ExportError> {
    check_http(base)?;
    let path = base.path().trim_end_matches('/');
    if path.ends_with("/v1/traces") {
        return Ok(base.clone());
    }
    Ok(with_path(base, &format!("{path}/v1/traces")))
}

/// The Jaeger collector URL: as given when it has a path, else `/api/traces`.
///
/// ```
/// # use podtrace_export::{endpoint::jaeger_url, Url};
/// let u = |s: &str| jaeger_url(&Url::parse(s).unwrap()).unwrap().to_string();
/// assert_eq!(u("http://jaeger:14268"), "http://jaeger:14268/api/traces");
/// assert_eq!(u("http://jaeger:14268/custom"), "http://jaeger:14268/custom");
/// ```
pub fn jaeger_url(base: &Url) -> Result<Url, ExportError> {
    default_path(base, "/api/traces")
}

/// The Splunk HEC URL: as given when it has a path, else `/services/collector`.
///
/// ```
/// # use podtrace_export::{endpoint::splunk_url, Url};
/// let u = |s: &str| splunk_url(&Url::parse(s).unwrap()).unwrap().to_string();
/// assert_eq!(u("https://splunk:8088"), "https://splunk:8088/services/collector");
/// assert_eq!(u("https://splunk:8088/services/collector/event"),
///            "https://splunk:8088/services/collector/event");
/// ```
pub fn splunk_url(base: &Url) -> Result<Url, ExportError> {
    default_path(base, "/services/collector")
}

fn default_path(base: &Url, path: &str) -> Result<Url, ExportError> {
    check_http(base)?;
    if base.path().is_empty() || base.path() == "/" {
        Ok(with_path(base, path))
    } else {
        Ok(base.clone())
    }
}

/// Parses an endpoint as a user writes it: a full URL, or `host:port` (then
/// `default_scheme` is used, e.g. `http` for OTLP/Jaeger, `https` for Splunk HEC).
///
/// ```
/// # use podtrace_export::endpoint::parse_endpoint;
/// assert_eq!(parse_endpoint("otel:4318", "http").unwrap().as_str(), "http://otel:4318/");
/// assert_eq!(parse_endpoint(" https://splunk:8088 ", "http").unwrap().as_str(), "https://splunk:8088/");
/// assert!(parse_endpoint("ftp://x", "http").is_err());
/// assert!(parse_endpoint("", "http").is_err());
/// ```
pub fn parse_endpoint(value: &str, default_scheme: &str) -> Result<Url, ExportError> {
    let value = value.trim();
    let text = if value.contains("://") {
        value.to_string()
    } else {
        format!("{default_scheme}://{value}")
    };
    let url = Url::parse(&text).map_err(|e| {
        // The value may hold credentials: show only what the URL parser says.
        ExportError::Config(format!("endpoint is not a valid URL: {e}"))
    })?;
    check_http(&url)?;
    Ok(url)
}

/// `scheme://host[:port]/path` without user info, query or fragment.
///
/// ```
/// # use podtrace_export::{endpoint::redact, Url};
/// let u = Url::parse("https://user:pw@splunk:8088/services/collector?token=abc").unwrap();
/// assert_eq!(redact(&u), "https://splunk:8088/services/collector");
/// ```
pub fn redact(url: &Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port() {
        Some(port) => format!("{}://{host}:{port}{}", url.scheme(), url.path()),
        None => format!("{}://{host}{}", url.scheme(), url.path()),
    }
}
