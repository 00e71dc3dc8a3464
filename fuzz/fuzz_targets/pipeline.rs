//! Fuzz target: the whole analyzer (reassembly, HTTP/1 + HTTP/2, exchanges, contexts,
//! spans, enrichment from arbitrary Kubernetes JSON, sampling, graph) on arbitrary records,
//! with a window small enough for eviction to happen.
#![no_main]

use libfuzzer_sys::fuzz_target;
use podtrace_analyzer::{analyze, AnalyzeOptions};

fuzz_target!(|data: &[u8]| {
    let Some((&first, script)) = data.split_first() else {
        return;
    };
    let records = podtrace_fuzz::decode(script);
    let opts = AnalyzeOptions {
        window_ns: if first & 1 != 0 {
            1_000_000
        } else {
            AnalyzeOptions::default().window_ns
        },
        sample_rate: if first & 2 != 0 { 0.5 } else { 1.0 },
        ..AnalyzeOptions::default()
    };
    let Ok(a) = analyze(records.into_iter(), &opts) else {
        return;
    };
    let _ = a.graph.to_dot();
    let _ = podtrace_analyzer::spans_to_json(&a.spans);
});
