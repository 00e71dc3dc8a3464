//! Fuzz target: the capture reader (`CaptureReader` + `inspect`) on mutated Parquet files.
//!
//! The corpus is seeded with real captures (`tools/fuzz.sh` imports the fixture pcaps), so
//! mutations hit the footer, page headers, zstd pages and the podtrace metadata. Every
//! outcome is fine except a panic, an abort or unbounded memory.
#![no_main]

use std::io::Write;

use libfuzzer_sys::fuzz_target;
use podtrace_format::{inspect, CaptureReader, ReadOptions};

fuzz_target!(|data: &[u8]| {
    thread_local! {
        static PATH: std::path::PathBuf = std::env::temp_dir()
            .join(format!("podtrace-fuzz-{}.parquet", std::process::id()));
    }
    let path = PATH.with(|p| p.clone());
    let Ok(mut f) = std::fs::File::create(&path) else {
        return;
    };
    if f.write_all(data).is_err() {
        return;
    }
    drop(f);
    if let Ok(reader) = CaptureReader::open(&[&path]) {
        let _ = inspect(&reader);
        for opts in [ReadOptions::default(), ReadOptions::without_payload()] {
            for r in reader.records(&opts) {
                if r.is_err() {
                    break;
                }
            }
        }
    }
    let _ = std::fs::remove_file(&path);
});
