//! Writes seed corpora for every fuzz target from real captures.
//!
//! Usage: `seed_corpora CORPUS_DIR CAPTURE.parquet...` (`tools/fuzz.sh` imports the fixture
//! pcaps first). For each capture it writes, under `CORPUS_DIR/<target>/`:
//! the capture itself (capture_reader), its rows as a script (reassembler, pipeline), each
//! connection's rows as a one-connection script (http1, http2, redis, postgres, mysql), the HTTP/2 header blocks
//! found in its bytes (hpack) and its request heads as header lines (trace_context).
//!
//! An example of the analyzer, not of the fuzz crate, so that `make test`'s
//! `cargo test --workspace` builds it with the rest (the fuzz crate is a workspace of its
//! own, whose build would compile Arrow and Parquet again); the fuzz crate's script
//! encoding is compiled in by path.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use podtrace_format::{CaptureReader, Direction, ReadOptions, Record};

/// The fuzz targets' input encoding (the fuzz crate's library), of which this needs `encode`.
#[allow(dead_code)]
#[path = "../../fuzz/src/lib.rs"]
mod podtrace_fuzz;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((dir, captures)) = args.split_first() else {
        eprintln!("usage: seed_corpora CORPUS_DIR CAPTURE.parquet...");
        std::process::exit(2);
    };
    let dir = PathBuf::from(dir);
    let mut n = 0usize;
    for cap in captures {
        match seed_from(&dir, Path::new(cap)) {
            Ok(k) => n += k,
            Err(e) => {
                eprintln!("seed_corpora: {cap}: {e}");
                std::process::exit(1);
            }
        }
    }
    println!("seed_corpora: {n} seeds in {}", dir.display());
}

/// Writes `data` as `dir/target/name` (creating the directory); returns 1.
fn put(dir: &Path, target: &str, name: &str, data: &[u8]) -> std::io::Result<usize> {
    let d = dir.join(target);
    std::fs::create_dir_all(&d)?;
    std::fs::write(d.join(name), data)?;
    Ok(1)
}

fn seed_from(dir: &Path, cap: &Path) -> Result<usize, Box<dyn std::error::Error>> {
    let stem = cap
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "capture".into());
    let mut n = put(dir, "capture_reader", &stem, &std::fs::read(cap)?)?;
    let reader = CaptureReader::open(&[cap])?;
    let records: Vec<Record> = reader
        .records(&ReadOptions::default())
        .collect::<Result<_, _>>()?;
    let script = podtrace_fuzz::encode(&records);
    // The pipeline target's first byte is its options byte.
    n += put(dir, "reassembler", &stem, &script)?;
    n += put(
        dir,
        "pipeline",
        &stem,
        &[[0u8].as_slice(), &script].concat(),
    )?;
    n += put(
        dir,
        "pipeline",
        &format!("{stem}-small-window"),
        &[[1u8].as_slice(), &script].concat(),
    )?;

    let mut by_conn: BTreeMap<u64, Vec<Record>> = BTreeMap::new();
    for r in &records {
        let id = match r {
            Record::SocketData(d) => d.meta.conn_id,
            Record::SocketOpen(e) | Record::SocketClose(e) => e.meta.conn_id,
            _ => continue,
        };
        by_conn.entry(id).or_default().push(r.clone());
    }
    for (i, (_, recs)) in by_conn.iter().enumerate().take(16) {
        let s = podtrace_fuzz::encode(recs);
        let name = format!("{stem}-conn{i}");
        let head: Vec<u8> = recs
            .iter()
            .filter_map(|r| match r {
                Record::SocketData(d) => Some(d.payload.as_slice()),
                _ => None,
            })
            .flatten()
            .copied()
            .take(64)
            .collect();
        let h2 = head.starts_with(b"PRI * HTTP/2.0") || head.windows(9).any(|w| w[3] == 4);
        // Role byte 0 = client; the http2 target's bits 2-3 pick the preface direction.
        n += put(dir, "http1", &name, &[[0u8].as_slice(), &s].concat())?;
        // The recorder's redaction, on every connection (option byte 1: x-api-key too).
        n += put(dir, "redact", &name, &[[1u8].as_slice(), &s].concat())?;
        // Any connection's bytes exercise the Redis parser's error paths (and detection).
        n += put(dir, "redis", &name, &[[0x40u8].as_slice(), &s].concat())?;
        // And the PostgreSQL parser's (client socket, capture from the startup).
        n += put(dir, "postgres", &name, &[[0x60u8].as_slice(), &s].concat())?;
        // And the MySQL parser's (client socket, capture from the greeting).
        n += put(dir, "mysql", &name, &[[0x60u8].as_slice(), &s].concat())?;
        if h2 {
            n += put(dir, "http2", &name, &[[0u8].as_slice(), &s].concat())?;
            n += put(
                dir,
                "http2",
                &format!("{name}-late"),
                &[[8u8].as_slice(), &s].concat(),
            )?;
        }
        for (j, b) in header_blocks(recs).iter().enumerate().take(8) {
            n += put(dir, "hpack", &format!("{name}-{j}"), b)?;
        }
        for (j, h) in request_heads(recs).iter().enumerate().take(8) {
            n += put(dir, "trace_context", &format!("{name}-{j}"), h.as_bytes())?;
        }
    }
    Ok(n)
}

/// The HEADERS frame payloads (without padding/priority handling) of a connection's
/// HTTP/2 byte streams, each as an hpack-target input with one block (synced decoder).
fn header_blocks(recs: &[Record]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for dir in [Direction::Egress, Direction::Ingress] {
        let bytes: Vec<u8> = recs
            .iter()
            .filter_map(|r| match r {
                Record::SocketData(d) if d.direction == dir => Some(d.payload.as_slice()),
                _ => None,
            })
            .flatten()
            .copied()
            .collect();
        let mut pos = if bytes.starts_with(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n") {
            24
        } else {
            0
        };
        let mut seed = vec![1u8];
        while pos + 9 <= bytes.len() {
            let len = (usize::from(bytes[pos]) << 16)
                | (usize::from(bytes[pos + 1]) << 8)
                | usize::from(bytes[pos + 2]);
            let ty = bytes[pos + 3];
            let end = (pos + 9 + len).min(bytes.len());
            if ty == 1 && len <= usize::from(u16::MAX) {
                let block = &bytes[pos + 9..end];
                seed.extend((block.len() as u16).to_le_bytes());
                seed.extend(block);
            }
            pos += 9 + len;
        }
        if seed.len() > 1 {
            out.push(seed);
        }
    }
    out
}

/// The header sections of HTTP/1 requests in a connection's bytes.
fn request_heads(recs: &[Record]) -> Vec<String> {
    let mut out = Vec::new();
    for r in recs {
        if let Record::SocketData(d) = r {
            let text = String::from_utf8_lossy(&d.payload);
            if let Some((head, _)) = text.split_once("\r\n\r\n") {
                if let Some((_, headers)) = head.split_once("\r\n") {
                    out.push(headers.replace("\r\n", "\n"));
                }
            }
        }
    }
    out
}
