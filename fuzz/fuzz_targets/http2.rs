//! Fuzz target: HTTP/2 frames, HPACK and stream tracking of one connection
//! ([`H2Connection`]) plus protocol detection and dispatch ([`ConnectionParser`]) on the
//! same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use podtrace_analyzer::http2::{H2Connection, Limits};
use podtrace_analyzer::internals::{self, ConnectionParser};
use podtrace_format::Direction;

fuzz_target!(|data: &[u8]| {
    let Some((&first, script)) = data.split_first() else {
        return;
    };
    let records = podtrace_fuzz::decode(script);
    let role = podtrace_fuzz::role(first);
    let preface = [Some(true), Some(false), None][usize::from((first >> 2) % 3)];
    let limits = if first & 0x80 != 0 {
        Limits {
            max_streams: 4,
            max_header_block: 512,
            max_header_list: 256,
            max_frame_keep: 512,
        }
    } else {
        Limits::default()
    };
    let egress = podtrace_fuzz::segments(&records, 0, Direction::Egress);
    let ingress = podtrace_fuzz::segments(&records, 0, Direction::Ingress);

    let mut c = H2Connection::new(role, preface, limits);
    podtrace_fuzz::feed_in_chunks(&egress, &ingress, |a, b, end| {
        let _ = c.feed(a, b, end);
    });

    let mut p = ConnectionParser::with_limits(
        role,
        internals::Limits {
            http2: limits,
            ..Default::default()
        },
    );
    let _ = p.feed(&egress, &ingress, false);
    let _ = p.feed(&[], &[], true);
    let _ = p.finish();
});
