//! Fuzz target: trace-context extraction (W3C traceparent/tracestate, B3 single and
//! multi, Splunk) from arbitrary header lines `name:value\n...`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use podtrace_analyzer::internals::extract;

fuzz_target!(|data: &[u8]| {
    let pairs = podtrace_fuzz::header_pairs(data);
    let ex = extract(pairs.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    if let Some(ctx) = ex.context {
        // Whatever wins must be a valid context: non-zero ids.
        let dbg = format!("{ctx:?}");
        assert!(!dbg.is_empty());
    }
});
