//! Resolves the `--tracing-*` flags (shared by `analyze` and live mode) into the analyzer's
//! and the exporters' configurations, checking what clap cannot check alone.

use podtrace_analyzer::{AnalyzeOptions, SamplerMode};
use podtrace_export::{ExportConfig, Secret};

use crate::cli::{DbQueryTextArg, SamplerArg, SpanArgs, TracingArgs};
use crate::error::CliError;

/// The exporters' configuration; errors are usage errors (exit 2).
pub fn export_config(t: &TracingArgs) -> Result<ExportConfig, CliError> {
    let token = t
        .tracing_splunk_token
        .as_deref()
        .filter(|tok| !tok.trim().is_empty());
    if t.tracing_splunk_endpoint.is_some() && token.is_none() {
        return Err(CliError::Usage(
            "--tracing-splunk-endpoint needs --tracing-splunk-token (or PODTRACE_TRACING_SPLUNK_TOKEN)"
                .into(),
        ));
    }
    if t.tracing_splunk_endpoint.is_none()
        && (t.tracing_splunk_insecure || t.tracing_splunk_ca.is_some())
    {
        return Err(CliError::Usage(
            "--tracing-splunk-insecure / --tracing-splunk-ca need --tracing-splunk-endpoint".into(),
        ));
    }
    let mut config = ExportConfig::from_endpoints(
        t.tracing_otlp_endpoint.as_deref(),
        t.tracing_jaeger_endpoint.as_deref(),
        t.tracing_splunk_endpoint.as_deref(),
        token.map(Secret::new),
    )
    .map_err(|e| CliError::Usage(e.to_string()))?;
    if let Some(splunk) = config.splunk.as_mut() {
        splunk.insecure = t.tracing_splunk_insecure;
        splunk.ca_file = t.tracing_splunk_ca.clone();
    }
    Ok(config)
}

/// Sets the span options (routes from `--route` and `--routes-file`, baggage) on `opts`.
/// A routes file that cannot be read or has a bad line is an input error (exit 2).
pub fn span_options(s: &SpanArgs, opts: &mut AnalyzeOptions) -> Result<(), CliError> {
    opts.routes = s.routes.clone();
    for path in &s.routes_files {
        let text = std::fs::read_to_string(path)
            .map_err(|e| CliError::Input(anyhow::anyhow!("routes file {}: {e}", path.display())))?;
        let routes = podtrace_analyzer::route::parse_routes_file(&text)
            .map_err(|e| CliError::Input(anyhow::anyhow!("routes file {}: {e}", path.display())))?;
        opts.routes.extend(routes);
    }
    opts.baggage_attributes = s.baggage_attributes;
    opts.db_query_text = match s.db_query_text {
        DbQueryTextArg::Sanitized => podtrace_analyzer::QueryText::Sanitized,
        DbQueryTextArg::Raw => podtrace_analyzer::QueryText::Raw,
        DbQueryTextArg::Off => podtrace_analyzer::QueryText::Off,
    };
    Ok(())
}

/// The analyzer's options (sampling).
pub fn analyze_options(t: &TracingArgs) -> Result<AnalyzeOptions, CliError> {
    Ok(AnalyzeOptions {
        sample_rate: t.tracing_sample_rate,
        sampler_mode: match t.tracing_sampler {
            SamplerArg::Ratio => SamplerMode::TraceIdRatio,
            SamplerArg::Parent => SamplerMode::ParentBased,
        },
        ..AnalyzeOptions::default()
    })
}
