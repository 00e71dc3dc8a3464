//! Multi-node captures whose front messages are large, for the client memory
//! measurements of `analyze --cluster` (docs/scale-out.md, "Fetching the results"):
//! PAIRS pairs of nodes (a client on 10.0.1.p, a server on 10.0.2.p:8080, both sockets of
//! every connection recorded), each pair EXCHANGES HTTP/1.1 exchanges INTERVAL_MS apart
//! (default 1) over 16
//! keep-alive connections, every request carrying HEADER_BYTES of pseudo-random
//! `x-request-id` values (`podtrace_format::nodes::HeaderTraffic`). All pairs run at the
//! same time, so every node has rows in every batch. One capture per node in DIR.
//!
//!     cargo run -p podtrace-analyzer --example header_nodes -- DIR PAIRS EXCHANGES HEADER_BYTES [INTERVAL_MS]

use std::path::PathBuf;

use podtrace_format::nodes::{split_by_local_ip, HeaderTraffic};
use podtrace_format::{CaptureWriter, FileMeta, WriterOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (dir, pairs, exchanges, header_bytes, interval_ms) = match args.as_slice() {
        [d, p, e, h] => (d, p, e, h, "1"),
        [d, p, e, h, i] => (d, p, e, h, i.as_str()),
        _ => {
            return Err("usage: header_nodes DIR PAIRS EXCHANGES HEADER_BYTES [INTERVAL_MS]".into())
        }
    };
    let dir = PathBuf::from(dir);
    let pairs: u8 = pairs.parse()?;
    std::fs::create_dir_all(&dir)?;
    for pair in 0..pairs {
        let traffic = HeaderTraffic {
            pair,
            connections: 16,
            exchanges: exchanges.parse()?,
            header_bytes: header_bytes.parse()?,
            start_ns: 1_700_000_000_000_000_000,
            interval_ns: interval_ms.parse::<u64>()? * 1_000_000,
        };
        // the pair's client node first, then its server node (split by local address)
        for (side, recs) in ["client", "server"]
            .into_iter()
            .zip(split_by_local_ip(&traffic.records()))
        {
            let node = format!("{side}-{pair}");
            let path = dir.join(format!("{node}.parquet"));
            let meta = FileMeta {
                node,
                ..FileMeta::default()
            };
            let mut w = CaptureWriter::create(&path, meta, WriterOptions::default())?;
            w.write_all(&recs)?;
            w.finish()?;
            println!("{}: {} records", path.display(), recs.len());
        }
    }
    Ok(())
}
