//! Multi-node captures whose front messages are large, for the client memory
//! measurements of `analyze --cluster` (docs/scale-out.md, "Fetching the results"):
//! PAIRS pairs of nodes (a client on 10.0.1.p, a server on 10.0.2.p:8080, both sockets of
//! every connection recorded), each pair EXCHANGES HTTP/1.1 exchanges INTERVAL_MS apart
//! (default 1) over 16
//! keep-alive connections, every request carrying HEADER_BYTES of pseudo-random
//! `x-request-id` values (kept in the front's messages, absent from the outputs; they do
//! not compress). All pairs run at the same time, so every node has rows in every batch.
//! One capture per node in DIR.
//!
//!     cargo run -p podtrace-analyzer --example header_nodes -- DIR PAIRS EXCHANGES HEADER_BYTES [INTERVAL_MS]

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use podtrace_format::{
    CaptureWriter, Direction, FileMeta, Record, Role, SocketData, SocketEvent, SocketMeta,
    WriterOptions,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (dir, pairs, exchanges, header_bytes, interval_ms) = match args.as_slice() {
        [d, p, e, h] => (d, p, e, h, "1"),
        [d, p, e, h, i] => (d, p, e, h, i.as_str()),
        _ => {
            return Err("usage: header_nodes DIR PAIRS EXCHANGES HEADER_BYTES [INTERVAL_MS]".into())
        }
    };
    let interval_ns: u64 = interval_ms.parse::<u64>()? * 1_000_000;
    let dir = PathBuf::from(dir);
    let pairs: u8 = pairs.parse()?;
    let exchanges: u64 = exchanges.parse()?;
    let header_bytes: usize = header_bytes.parse()?;
    std::fs::create_dir_all(&dir)?;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut text = |n: usize| -> String {
        (0..n)
            .map(|_| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                ALPHABET[(rng >> 58) as usize] as char
            })
            .collect()
    };
    let connections = 16u64;
    let t0 = 1_700_000_000_000_000_000u64;
    let response = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
    for p in 0..pairs {
        let client_ip: IpAddr = [10, 0, 1, p].into();
        let server = SocketAddr::from(([10, 0, 2, p], 8080));
        let id = u64::from(p) * 1_000_000;
        let meta = |ts_ns: u64, conn: u64, server_side: bool| {
            let client = SocketAddr::new(client_ip, 40_000 + conn as u16);
            SocketMeta {
                ts_ns,
                cpu: 0,
                pid: if server_side { 200 } else { 100 },
                tid: if server_side { 200 } else { 100 },
                comm: Arc::from(if server_side { "server" } else { "client" }),
                cgroup_id: if server_side { 2 } else { 1 },
                conn_id: id + if server_side { 20_000 } else { 10_000 } + conn,
                local: Some(if server_side { server } else { client }),
                remote: Some(if server_side { client } else { server }),
            }
        };
        let data = |meta: SocketMeta, direction: Direction, payload: &[u8]| {
            Record::SocketData(SocketData {
                meta,
                direction,
                syscall: Arc::from(if direction == Direction::Egress {
                    "write"
                } else {
                    "read"
                }),
                ret: payload.len() as i64,
                payload: payload.to_vec(),
                flags: 0,
            })
        };
        let event = |meta: SocketMeta, role: Role, syscall: &str| {
            let e = SocketEvent {
                meta,
                role,
                syscall: Arc::from(syscall),
            };
            if syscall == "close" {
                Record::SocketClose(e)
            } else {
                Record::SocketOpen(e)
            }
        };
        let mut client_side = Vec::new();
        let mut server_side = Vec::new();
        let offset = u64::from(p) * 1_000; // the pairs interleave, 1 µs apart
        for c in 0..connections {
            client_side.push(event(
                meta(t0 + offset + c * 1_000, c, false),
                Role::Client,
                "connect",
            ));
            server_side.push(event(
                meta(t0 + offset + c * 1_000 + 100, c, true),
                Role::Server,
                "accept4",
            ));
        }
        let start = t0 + 1_000_000 + offset;
        for i in 0..exchanges {
            let c = i % connections;
            let t = start + i * interval_ns;
            let mut request = format!("GET /items/{i} HTTP/1.1\r\nhost: server:8080\r\n");
            let mut left = header_bytes;
            while left > 0 {
                let n = left.min(6_000);
                request.push_str(&format!("x-request-id: {}\r\n", text(n)));
                left -= n;
            }
            request.push_str("\r\n");
            client_side.push(data(
                meta(t, c, false),
                Direction::Egress,
                request.as_bytes(),
            ));
            server_side.push(data(
                meta(t + 50_000, c, true),
                Direction::Ingress,
                request.as_bytes(),
            ));
            server_side.push(data(
                meta(t + 200_000, c, true),
                Direction::Egress,
                response,
            ));
            client_side.push(data(
                meta(t + 250_000, c, false),
                Direction::Ingress,
                response,
            ));
        }
        let end = start + exchanges * interval_ns;
        for c in 0..connections {
            client_side.push(event(
                meta(end + c * 1_000, c, false),
                Role::Client,
                "close",
            ));
            server_side.push(event(
                meta(end + c * 1_000 + 100, c, true),
                Role::Server,
                "close",
            ));
        }
        for (side, mut recs) in [("client", client_side), ("server", server_side)] {
            recs.sort_by_key(|r| r.ts_ns());
            let node = format!("{side}-{p}");
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
