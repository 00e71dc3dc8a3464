//! Writes a synthetic capture (the rows the format tests use) for trying queries:
//! `cargo run -p podtrace-format --example sample_capture -- /tmp/cap.parquet [rows]`.

#[path = "../tests/it/common/mod.rs"]
mod common;

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().unwrap_or_else(|| "cap.parquet".to_string());
    let rows = args.next().and_then(|n| n.parse().ok()).unwrap_or(100_000);
    let s = common::write_capture(
        std::path::Path::new(&path),
        rows,
        podtrace_format::WriterOptions::default(),
    );
    println!("{path}: {} rows, {} bytes", s.rows, s.bytes);
}
