//! Fuzz target: the stream reassembler on arbitrary rows (any order, any connection),
//! checking that it hands out exactly the captured bytes it was given (but the TLS
//! ciphertext it skips, counted) and forgets closed and idle connections.
#![no_main]

use libfuzzer_sys::fuzz_target;
use podtrace_analyzer::internals::{Reassembler, Segment};
use podtrace_format::Record;

fuzz_target!(|data: &[u8]| {
    let records = podtrace_fuzz::decode(data);
    let mut r = Reassembler::new();
    let mut given = 0u64;
    let mut taken = 0u64;
    let count = |segs: &[Segment]| -> u64 {
        segs.iter()
            .map(|s| match s {
                Segment::Data { bytes, .. } => bytes.len() as u64,
                _ => 0,
            })
            .sum()
    };
    for (i, rec) in records.iter().enumerate() {
        match rec {
            Record::SocketData(d) => {
                given += (d.payload.len() as u64).min(d.ret.max(0) as u64);
                r.push_data(d);
            }
            Record::SocketOpen(e) => r.push_open(e),
            Record::SocketClose(e) => r.push_close(e),
            Record::K8sObject(_) => {
                let _ = r.evict_idle(rec.ts_ns());
            }
            Record::Stats(_) => {}
        }
        if i % 3 == 2 {
            for d in r.take_ready() {
                taken += count(&d.egress) + count(&d.ingress);
            }
        }
        assert!(r.len() as u64 <= podtrace_fuzz::CONNS * 2);
    }
    for d in r.take_ready() {
        taken += count(&d.egress) + count(&d.ingress);
    }
    // bytes in = bytes handed out + TLS ciphertext skipped on purpose (counted)
    assert_eq!(
        given,
        taken + r.tls_ciphertext_skipped_bytes(),
        "reassembler lost or invented bytes"
    );
});
