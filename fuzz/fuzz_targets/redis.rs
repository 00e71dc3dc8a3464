//! Fuzz target: the Redis (RESP2/RESP3) parser of one connection ([`Redis`]) plus protocol
//! detection and dispatch ([`ConnectionParser`]) on the same bytes.
//!
//! The input is a script (`podtrace_fuzz::decode`); connection 0's segments are fed in
//! several calls (split at every 5th segment) so the incremental paths are exercised.
#![no_main]

use libfuzzer_sys::fuzz_target;
use podtrace_analyzer::internals::redis::{Limits, Redis};
use podtrace_analyzer::internals::{self, ConnectionParser, Protocol};
use podtrace_format::{Direction, Role};

fuzz_target!(|data: &[u8]| {
    let Some((&first, script)) = data.split_first() else {
        return;
    };
    let records = podtrace_fuzz::decode(script);
    let role = [Role::Client, Role::Server, Role::Unknown][usize::from(first % 3)];
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
    for (a, b) in egress.chunks(5).zip(ingress.chunks(5)) {
        let _ = r.feed(a, b, false);
    }
    let _ = r.feed(&egress, &ingress, true);

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
