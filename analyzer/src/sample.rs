//! Trace sampling: one decision per trace id, identical on every node and in every run.
//!
//! The trace-id ratio rule is OpenTelemetry's consistent probability sampling: a trace is
//! kept when the low 56 bits of its id (big-endian) are below `rate × 2^56`. Rate 0.0 keeps
//! nothing, 1.0 keeps everything. [`SamplerMode::ParentBased`] additionally drops spans whose
//! propagated context said "not sampled" (W3C flag bit 0 clear, `X-B3-Sampled: 0`, ...).

use podtrace_model::{Span, TraceId};
use serde::Serialize;

/// How the sampling decision is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum SamplerMode {
    /// Only the trace-id ratio decides.
    #[default]
    TraceIdRatio,
    /// A context that said "not sampled" drops the span; otherwise the ratio decides.
    ParentBased,
}

/// A configured sampler.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampler {
    rate: f64,
    mode: SamplerMode,
}

/// The sample rate was outside 0.0–1.0 (or NaN).
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[error("sample rate {0} is outside 0.0..=1.0")]
pub struct InvalidRate(pub f64);

impl Sampler {
    /// A sampler keeping `rate` of the traces (0.0 none, 1.0 all).
    pub fn new(rate: f64, mode: SamplerMode) -> Result<Self, InvalidRate> {
        if !(0.0..=1.0).contains(&rate) {
            return Err(InvalidRate(rate));
        }
        Ok(Sampler { rate, mode })
    }

    /// The trace-id ratio decision alone.
    pub fn keeps_trace(&self, trace_id: &TraceId) -> bool {
        if self.rate >= 1.0 {
            return true;
        }
        if self.rate <= 0.0 {
            return false;
        }
        // rate × 2^56 is exact in f64 for every rate with at most 53 significant bits.
        let threshold = (self.rate * (1u64 << 56) as f64) as u64;
        trace_id.low56() < threshold
    }

    /// The decision for one span: ratio on its trace id, plus the parent's decision
    /// (the span's W3C flags) in [`SamplerMode::ParentBased`].
    pub fn keeps(&self, span: &Span) -> bool {
        if self.mode == SamplerMode::ParentBased && span.flags & 1 == 0 {
            return false;
        }
        self.keeps_trace(&span.trace_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vector_sampling_cases() {
        let v = crate::context::tests::vectors();
        let cases = v["sampling"]["cases"].as_array().expect("sampling cases");
        assert!(!cases.is_empty());
        for case in cases {
            let id = TraceId::from_hex(case["trace_id"].as_str().expect("id")).expect("hex");
            let rate = case["rate"].as_f64().expect("rate");
            let want = case["sampled"].as_bool().expect("sampled");
            let s = Sampler::new(rate, SamplerMode::TraceIdRatio).expect("rate");
            assert_eq!(s.keeps_trace(&id), want, "{case}");
        }
    }

    #[test]
    fn rate_bounds() {
        assert!(Sampler::new(1.5, SamplerMode::TraceIdRatio).is_err());
        assert!(Sampler::new(-0.1, SamplerMode::TraceIdRatio).is_err());
        assert!(Sampler::new(f64::NAN, SamplerMode::TraceIdRatio).is_err());
        let all = Sampler::new(1.0, SamplerMode::TraceIdRatio).expect("1.0");
        let none = Sampler::new(0.0, SamplerMode::TraceIdRatio).expect("0.0");
        let max = TraceId([0xff; 16]);
        assert!(all.keeps_trace(&max));
        assert!(!none.keeps_trace(&TraceId([0; 16])));
    }

    #[test]
    fn parent_based_drops_unsampled_context() {
        let mut span = podtrace_model::Span {
            trace_id: TraceId([1; 16]),
            span_id: podtrace_model::SpanId([2; 8]),
            parent_span_id: None,
            trace_state: String::new(),
            flags: 0,
            name: "GET /".into(),
            kind: podtrace_model::SpanKind::Server,
            start_time_unix_nano: 1,
            end_time_unix_nano: 2,
            attributes: vec![],
            status: podtrace_model::Status::unset(),
            resource: podtrace_model::Resource::new("svc"),
        };
        let pb = Sampler::new(1.0, SamplerMode::ParentBased).expect("rate");
        let ratio = Sampler::new(1.0, SamplerMode::TraceIdRatio).expect("rate");
        assert!(!pb.keeps(&span));
        assert!(ratio.keeps(&span));
        span.flags = 1;
        assert!(pb.keeps(&span));
    }
}
