//! Fuzz target: the Redis (RESP2/RESP3) parser of one connection ([`Redis`]) plus protocol
//! detection and dispatch ([`ConnectionParser`]) on the same bytes.
//!
//! The input is a script (`podtrace_fuzz::decode`); connection 0's segments are fed in
//! several calls (five segments per direction at a time, `podtrace_fuzz::feed_in_chunks`) so
//! the incremental paths are exercised.
#![no_main]

use libfuzzer_sys::fuzz_target;
use podtrace_analyzer::internals::redis::{Limits, Redis};
use podtrace_analyzer::internals::{self, ConnectionParser, Protocol};
use podtrace_format::Direction;

fuzz_target!(|data: &[u8]| {
    let Some((&first, script)) = data.split_first() else {
        return;
    };
    let records = podtrace_fuzz::decode(script);
    let role = podtrace_fuzz::role(first);
    // Small limits reach the bounds quickly; default ones are what production uses.
    let limits = if first & 0x80 != 0 {
        Limits {
            max_line: 32,
            max_keep: 8,
            max_args: 3,
            max_depth: 3,
        }
    } else {
        Limits::default()
    };
    let egress = podtrace_fuzz::segments(&records, 0, Direction::Egress);
    let ingress = podtrace_fuzz::segments(&records, 0, Direction::Ingress);

    let mut r = Redis::new(first & 0x40 != 0, limits);
    podtrace_fuzz::feed_in_chunks(&egress, &ingress, |a, b, end| {
        let _ = r.feed(a, b, end);
    });

    let mut p = ConnectionParser::with_limits(
        role,
        internals::Limits {
            redis: limits,
            ..Default::default()
        },
    );
    let _ = p.feed(&egress, &ingress, false);
    let _ = p.finish();
});
