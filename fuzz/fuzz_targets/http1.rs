//! Fuzz target: the HTTP/1 connection parser over both directions of one connection.
//!
//! The input is a script (`podtrace_fuzz::decode`); connection 0's segments are fed in
//! several calls (split at every 7th segment) so the incremental paths are exercised.
#![no_main]

use libfuzzer_sys::fuzz_target;
use podtrace_analyzer::http1::{ConnectionParser, Limits};
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
            max_head_bytes: 256,
            max_headers: 4,
            max_garbage_bytes: 512,
        }
    } else {
        Limits::default()
    };
    let mut p = ConnectionParser::new(role, limits);
    let egress = podtrace_fuzz::segments(&records, 0, Direction::Egress);
    let ingress = podtrace_fuzz::segments(&records, 0, Direction::Ingress);
    let mut e = egress.chunks(7);
    let mut i = ingress.chunks(7);
    loop {
        let (a, b) = (e.next(), i.next());
        if a.is_none() && b.is_none() {
            break;
        }
        let _ = p.feed(a.unwrap_or(&[]), b.unwrap_or(&[]), false);
    }
    let _ = p.feed(&[], &[], first & 0x40 != 0);
    let _ = p.finish();
});
