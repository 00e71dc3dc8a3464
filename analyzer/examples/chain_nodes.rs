//! Multi-node captures for `analyze --cluster` measurements (docs/scale-out.md): the chain
//! fixture imported (both sockets of every connection, with its Kubernetes objects),
//! repeated COPIES times 1.3 s apart with fresh connection ids, written as one capture per
//! node (the socket's local address is the node) into DIR.
//!
//!     cargo run --release -p podtrace-analyzer --example chain_nodes -- DIR COPIES

use std::path::{Path, PathBuf};

use podtrace_format::nodes::{repeat, split_by_local_ip, Closes};
use podtrace_format::{CaptureReader, CaptureWriter, FileMeta, ReadOptions, WriterOptions};
use podtrace_import::{import, ImportOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(dir), Some(copies)) = (args.next(), args.next()) else {
        return Err("usage: chain_nodes DIR COPIES".into());
    };
    let dir = PathBuf::from(dir);
    let copies: u64 = copies.parse()?;
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/chain");
    std::fs::create_dir_all(&dir)?;
    let all = dir.join("chain-all.parquet.tmp");
    let opts = ImportOptions {
        k8s_objects: Some(fixtures.join("k8s-objects.json")),
        node: "node-0".into(),
        ..ImportOptions::default()
    };
    import(&fixtures.join("chain.pcap"), &all, &opts)?;
    let base = CaptureReader::open(&[&all])?
        .records(&ReadOptions::default())
        .collect::<Result<Vec<_>, _>>()?;
    std::fs::remove_file(&all)?;
    let records = repeat(&base, copies, 1_300_000_000, Closes::All);
    let per_node = split_by_local_ip(&records);
    for (i, recs) in per_node.iter().enumerate() {
        let meta = FileMeta {
            node: format!("node-{i}"),
            ..FileMeta::default()
        };
        let path = dir.join(format!("node-{i}.parquet"));
        let mut w = CaptureWriter::create(&path, meta, WriterOptions::default())?;
        w.write_all(recs)?;
        w.finish()?;
        println!("{}: {} records", path.display(), recs.len());
    }
    Ok(())
}
