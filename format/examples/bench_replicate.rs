//! Makes a larger capture out of a real one for the scaling benchmarks (`make bench-data`):
//! the input's rows are written `N` times, copy `k` shifted in time by `k` × (the input's
//! time span + a gap, `BENCH_REPLICATE_GAP_S`, default 130 s: longer than the analyzer's
//! default 120 s window, so memory bounded by the window shows as flat peak RSS), with connection ids made unique per copy and the trace ids in
//! `traceparent` / `X-B3-TraceId` headers rewritten (first 4 hex digits = copy number) so
//! every copy is new traffic to the analyzer, not a repeat of the same traces.
//!
//! ```text
//! cargo run --release -p podtrace-format --example bench_replicate -- IN OUT N
//! ```
//! Prints the rows, payload bytes and file size written. The input is read once per copy
//! (memory stays bounded by the reader's window, not by the input size).

use std::process::ExitCode;

use podtrace_format::{
    CaptureReader, CaptureWriter, FileMeta, ReadOptions, Record, SocketMeta, WriterOptions,
};

/// Header prefixes whose following 4 bytes (hex of the trace id) are rewritten per copy.
const TRACE_ID_PREFIXES: [&[u8]; 4] = [
    b"traceparent: 00-",
    b"Traceparent: 00-",
    b"X-B3-TraceId: ",
    b"x-b3-traceid: ",
];

/// Overwrites the first 4 hex digits after each trace-id header prefix with `tag`.
fn retag_trace_ids(payload: &mut [u8], tag: &[u8; 4]) {
    for prefix in TRACE_ID_PREFIXES {
        let mut from = 0;
        while let Some(pos) = find(&payload[from..], prefix) {
            let at = from + pos + prefix.len();
            if at + 4 <= payload.len() && payload[at..at + 4].iter().all(u8::is_ascii_hexdigit) {
                payload[at..at + 4].copy_from_slice(tag);
            }
            from = at;
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn shift(meta: &mut SocketMeta, dt: u64, copy: u64) {
    meta.ts_ns += dt;
    meta.conn_id = meta.conn_id.rotate_left(8) ^ copy.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    if let Some(remote) = meta.remote.as_mut() {
        // a distinct client port per copy keeps flows apart in address-keyed views too
        remote.set_port(remote.port().wrapping_add(copy as u16 * 7919));
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output, n] = args.as_slice() else {
        return Err("usage: bench_replicate IN OUT N".into());
    };
    let copies: u64 = n
        .parse()
        .map_err(|_| format!("N must be a number, got {n}"))?;
    let reader = CaptureReader::open(&[input])?;
    let (mut lo, mut hi) = (u64::MAX, 0u64);
    for r in reader.records(&ReadOptions::without_payload()) {
        let ts = r?.ts_ns();
        lo = lo.min(ts);
        hi = hi.max(ts);
    }
    if lo > hi {
        return Err(format!("{input} has no rows").into());
    }
    let gap_s: u64 = match std::env::var("BENCH_REPLICATE_GAP_S") {
        Ok(v) => v
            .parse()
            .map_err(|_| format!("BENCH_REPLICATE_GAP_S must be whole seconds, got {v}"))?,
        Err(_) => 130,
    };
    let period = hi - lo + gap_s * 1_000_000_000;
    let meta = FileMeta {
        node: "bench".into(),
        target: format!("{copies} copies of {input}"),
        recorder_version: env!("CARGO_PKG_VERSION").into(),
        ..FileMeta::default()
    };
    let mut writer = CaptureWriter::create(output, meta, WriterOptions::default())?;
    let mut payload_bytes = 0u64;
    for copy in 0..copies {
        let dt = copy * period;
        let tag: [u8; 4] = format!("{:04x}", copy % 0x1_0000)
            .into_bytes()
            .try_into()
            .map_err(|_| "tag")?;
        for r in reader.records(&ReadOptions::default()) {
            let mut r = r?;
            match &mut r {
                Record::SocketData(d) => {
                    shift(&mut d.meta, dt, copy);
                    if copy > 0 {
                        retag_trace_ids(&mut d.payload, &tag);
                    }
                    payload_bytes += d.payload.len() as u64;
                }
                Record::SocketOpen(e) | Record::SocketClose(e) => shift(&mut e.meta, dt, copy),
                Record::K8sObject(o) => o.ts_ns += dt,
                Record::Stats(s) => s.ts_ns += dt,
            }
            writer.write(&r)?;
        }
    }
    let summary = writer.finish()?;
    println!(
        "{output}: {} rows, {payload_bytes} payload bytes, {} bytes",
        summary.rows, summary.bytes
    );
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench_replicate: {e}");
            ExitCode::FAILURE
        }
    }
}
