//! Imports a pcap/pcapng file and prints the summary and one line per row: a quick look
//! at what `podtrace import` makes of a capture, without the CLI.
//!
//! `cargo run -p podtrace-import --example import_pcap -- IN.pcap OUT.parquet [client|server|both] [--rows]`
//!
//! Without `--rows` only the summary is printed.

use podtrace_format::{CaptureReader, ReadOptions, Record};
use podtrace_import::{import, ImportOptions, View};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args: Vec<String> = std::env::args().collect();
    let print_rows = args.iter().any(|a| a == "--rows");
    args.retain(|a| a != "--rows");
    if args.len() < 3 {
        return Err("usage: import_pcap IN.pcap OUT.parquet [client|server|both]".into());
    }
    let view = match args.get(3) {
        Some(v) => View::parse(v).ok_or("view must be client, server or both")?,
        None => View::Both,
    };
    let opts = ImportOptions {
        view,
        ..ImportOptions::default()
    };
    let summary = import(args[1].as_ref(), args[2].as_ref(), &opts)?;
    println!("{summary}");
    if !print_rows {
        return Ok(());
    }
    let reader = CaptureReader::open(&[&args[2]])?;
    for r in reader.records(&ReadOptions::default()) {
        match r? {
            Record::SocketData(d) => println!(
                "{} data  {:016x} {:?} {} {:?} bytes flags {:#x}",
                d.meta.ts_ns,
                d.meta.conn_id,
                d.meta.local,
                d.direction.as_str(),
                d.payload.len(),
                d.flags
            ),
            Record::SocketOpen(e) | Record::SocketClose(e) => println!(
                "{} event {:016x} {:?} -> {:?} {}",
                e.meta.ts_ns,
                e.meta.conn_id,
                e.meta.local,
                e.meta.remote,
                e.role.as_str()
            ),
            other => println!("{} {}", other.ts_ns(), other.record_type().as_str()),
        }
    }
    Ok(())
}
