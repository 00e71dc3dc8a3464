//! Fuzz target: the MySQL/MariaDB parser of one connection ([`Mysql`]) plus protocol
//! detection and dispatch ([`ConnectionParser`]) on the same bytes.
//!
//! The input is a script (`podtrace_fuzz::decode`); connection 0's segments are fed in
//! several calls (five segments per direction at a time) so the incremental paths (packets
//! split across segments, replies waiting for their command) are exercised.
#![no_main]

use libfuzzer_sys::fuzz_target;
use podtrace_analyzer::internals::mysql::{Limits, Mysql};
use podtrace_analyzer::internals::{self, ConnectionParser, Protocol, QueryText};
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
            max_query: 16,
            max_reply: 12,
            max_statements: 2,
            max_pending: 3,
        }
    } else {
        Limits::default()
    };
    let text = [QueryText::Sanitized, QueryText::Raw, QueryText::Off][usize::from(first >> 3 & 1)];
    let egress = podtrace_fuzz::segments(&records, 0, Direction::Egress);
    let ingress = podtrace_fuzz::segments(&records, 0, Direction::Ingress);

    // Bit 6: the socket sends the commands; bit 5: the capture starts at the greeting.
    let mut p = Mysql::new(first & 0x40 != 0, first & 0x20 != 0, limits).with_query_text(text);
    podtrace_fuzz::feed_in_chunks(&egress, &ingress, |a, b, end| {
        let _ = p.feed(a, b, end);
    });

    let mut c = ConnectionParser::with_limits(
        role,
        internals::Limits {
            mysql: limits,
            ..Default::default()
        },
    );
    let _ = c.feed(&egress, &ingress, false);
    let _ = c.finish();
});
