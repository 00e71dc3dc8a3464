//! Fuzz target: the recorder's record-time redaction (HTTP/1 and HTTP/2/HPACK) on a
//! script of capture-like rows (see `podtrace_fuzz`): any segmentation, truncation, gaps,
//! closes and connection interleaving. It never panics and never changes a payload's
//! length. The redactor's sources are compiled in directly (the recorder crate itself
//! pulls in eBPF and Kubernetes dependencies that do not belong in a fuzz build).
//!
//! Input: `options:u8` then a script; options bit 0 adds `x-api-key` to the names, bit 1
//! treats truncated rows as unknown losses (else their missing byte count is used).
#![no_main]

#[path = "../../recorder/src/redact/mod.rs"]
#[allow(dead_code, missing_docs)]
mod redact;

use libfuzzer_sys::fuzz_target;
use podtrace_format::{flags, Direction, Record};

fuzz_target!(|data: &[u8]| {
    let Some((&opts, script)) = data.split_first() else {
        return;
    };
    let extra: &[&str] = if opts & 1 != 0 { &["x-api-key"] } else { &[] };
    let mut r = redact::Redactor::new(extra);
    for rec in podtrace_fuzz::decode(script) {
        match rec {
            Record::SocketData(d) => {
                let dir = u8::from(d.direction == Direction::Ingress);
                if d.flags & flags::GAP_BEFORE != 0 {
                    r.reset(d.meta.conn_id, dir);
                }
                let mut p = d.payload.clone();
                // as the converter: the payload is a prefix, `ret - len` bytes are missing;
                // options bit 1: an unknown loss instead
                let missing = u64::try_from(d.ret - d.payload.len() as i64).unwrap_or(0);
                let missing = if opts & 2 != 0 && missing > 0 {
                    None
                } else {
                    Some(missing)
                };
                let changed = r.redact_cut(d.meta.conn_id, dir, &mut p, missing);
                assert_eq!(p.len(), d.payload.len(), "redaction changed a length");
                assert_eq!(changed, p != d.payload, "changed flag wrong");
            }
            Record::SocketClose(e) => r.forget(e.meta.conn_id),
            _ => {}
        }
    }
});
