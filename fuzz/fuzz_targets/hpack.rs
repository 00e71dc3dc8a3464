//! Fuzz target: the tolerant HPACK decoder on a sequence of header blocks (the dynamic
//! table carries over between blocks, as on a connection).
//!
//! Input: `flags:u8` then blocks `len:u16le block:len`; flags bit 0 = decoder starts in
//! sync (saw the connection from its start), bit 1 = desync after the first block.
#![no_main]

use libfuzzer_sys::fuzz_target;
use podtrace_analyzer::http2::hpack::{Decoder, MAX_TABLE_SIZE};

fuzz_target!(|data: &[u8]| {
    let Some((&first, mut rest)) = data.split_first() else {
        return;
    };
    let mut d = Decoder::new(first & 1 != 0);
    let mut n = 0;
    while rest.len() >= 2 {
        let len = usize::from(u16::from_le_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        let block = &rest[2..2 + len];
        rest = &rest[2 + len..];
        let b = d.decode(block, 16 * 1024);
        let _ = b.get(":path");
        // The table never grows past its size bound.
        assert!(
            d.table_size() <= MAX_TABLE_SIZE,
            "HPACK table grew to {}",
            d.table_size()
        );
        n += 1;
        if n == 1 && first & 2 != 0 {
            d.desync();
        }
    }
});
