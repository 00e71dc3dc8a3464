//! Deterministic test rows: `record(i)` is a pure function of `i`, so a test can write a
//! million rows and compare them on read without keeping them in memory.
#![allow(dead_code)]

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use podtrace_format::*;

/// splitmix64: a good 64-bit mix of `x`.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

const BASE_TS: u64 = 1_790_000_000_000_000_000;

fn addr(r: u64, v6: bool) -> Option<SocketAddr> {
    if r.is_multiple_of(17) {
        return None;
    }
    let port = (r >> 8) as u16;
    if v6 {
        let seg = (r >> 24) as u16 % 8;
        Some(SocketAddr::new(
            Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, seg).into(),
            port,
        ))
    } else {
        Some(SocketAddr::new(
            Ipv4Addr::new(10, 0, (r >> 24) as u8 % 4, (r >> 32) as u8 % 16).into(),
            port,
        ))
    }
}

fn meta(i: u64, r: u64) -> SocketMeta {
    let v6 = r.is_multiple_of(5);
    SocketMeta {
        ts_ns: BASE_TS + i * 1_000,
        cpu: (r % 4) as u32,
        pid: 1000 + (r >> 4) as u32 % 8,
        tid: 2000 + (r >> 6) as u32 % 32,
        comm: ["nginx", "python3", "", "envoy", "a-sixteen-byte-c"][(r >> 9) as usize % 5].into(),
        cgroup_id: 5000 + (r >> 12) % 3,
        conn_id: mix(r >> 20) % 500,
        local: addr(mix(r ^ 1), v6),
        remote: addr(mix(r ^ 2), v6),
    }
}

fn payload(i: u64, r: u64) -> Vec<u8> {
    let len = match r % 100 {
        0..=9 => 0,
        10 => 16 * 1024,
        11..=60 => (r >> 16) as usize % 200,
        _ => (r >> 16) as usize % 2000,
    };
    let text = format!("GET /item/{i} HTTP/1.1\r\nHost: shop\r\nX-Request-ID: {r:x}\r\n\r\n");
    let mut out = Vec::with_capacity(len);
    let mut x = r;
    while out.len() < len {
        if x.is_multiple_of(3) {
            out.extend_from_slice(text.as_bytes());
        } else {
            out.extend_from_slice(&x.to_le_bytes());
        }
        x = mix(x);
    }
    out.truncate(len);
    out
}

/// Row `i` of the test capture: every record type, IPv4/IPv6, missing addresses, empty and
/// 16 KiB payloads, per-CPU and total counters.
pub fn record(i: u64) -> Record {
    let r = mix(i);
    match (r >> 40) % 20 {
        0..=13 => Record::SocketData(SocketData {
            meta: meta(i, r),
            direction: if r & 1 == 0 {
                Direction::Egress
            } else {
                Direction::Ingress
            },
            syscall: ["write", "sendto", "read", "recvfrom", "pcap"][(r >> 3) as usize % 5].into(),
            ret: (r >> 16) as i64 % 70_000 - 10,
            payload: payload(i, r),
            flags: (r >> 50) as u32 & 0x1f,
        }),
        14 => Record::SocketOpen(SocketEvent {
            meta: meta(i, r),
            role: [Role::Client, Role::Server, Role::Unknown][(r >> 5) as usize % 3],
            syscall: ["connect", "accept4", "pcap"][(r >> 7) as usize % 3].into(),
        }),
        15 => Record::SocketClose(SocketEvent {
            meta: meta(i, r),
            role: [Role::Client, Role::Server, Role::Unknown][(r >> 5) as usize % 3],
            syscall: "close".into(),
        }),
        16 | 17 => {
            let kind = ["Pod", "Service", "EndpointSlice", "Node"][(r >> 3) as usize % 4];
            let ns = if kind == "Node" {
                ""
            } else {
                ["demo", "kube-system"][(r >> 6) as usize % 2]
            };
            let name = format!("{}-{}", kind.to_lowercase(), r % 50);
            Record::K8sObject(K8sObject {
                ts_ns: BASE_TS + i * 1_000,
                kind: kind.into(),
                uid: format!("uid-{}", r % 50),
                namespace: ns.into(),
                name: name.clone(),
                event: [
                    K8sEvent::Snapshot,
                    K8sEvent::Added,
                    K8sEvent::Modified,
                    K8sEvent::Deleted,
                ][(r >> 8) as usize % 4],
                json: format!(
                    r#"{{"kind":"{kind}","metadata":{{"name":"{name}","namespace":"{ns}"}}}}"#
                ),
            })
        }
        _ => Record::Stats(Stat {
            ts_ns: BASE_TS + i * 1_000,
            cpu: if r.is_multiple_of(3) {
                None
            } else {
                Some((r >> 4) as u32 % 4)
            },
            name: [
                "events_seen",
                "events_dropped_ringbuf_full",
                "payload_truncated",
            ][(r >> 9) as usize % 3]
                .into(),
            value: i,
        }),
    }
}

/// A typical file metadata.
pub fn file_meta() -> FileMeta {
    FileMeta {
        node: "node-a".into(),
        kernel: "6.8.0-test".into(),
        target: "pod demo/frontend".into(),
        recorder_version: "0.1.0".into(),
        boot_time_offset_ns: 1_700_000_000_000_000_000,
        extra: vec![("snaplen".into(), "16384".into())],
    }
}

/// Writes rows `0..n` in batches of `batch`, returning the summary.
pub fn write_capture(path: &std::path::Path, n: u64, opts: WriterOptions) -> WriteSummary {
    let mut w = CaptureWriter::create(path, file_meta(), opts).expect("create");
    let mut buf = Vec::with_capacity(4096);
    for i in 0..n {
        buf.push(record(i));
        if buf.len() == 4096 {
            w.write_all(&buf).expect("write_all");
            buf.clear();
        }
    }
    w.write_all(&buf).expect("write_all");
    w.finish().expect("finish")
}

/// Asserts that `records` are exactly rows `0..n`, in order.
pub fn assert_rows(records: impl Iterator<Item = Result<Record>>, n: u64) {
    let mut i = 0u64;
    for r in records {
        let r = r.expect("read");
        assert!(i < n, "more than {n} rows");
        let want = record(i);
        if r != want {
            panic!("row {i} differs:\n got  {r:?}\n want {want:?}");
        }
        i += 1;
    }
    assert_eq!(i, n, "row count");
}

/// Parquet writer properties that claim podtrace schema `version` in the file metadata
/// (for files written by hand, outside the podtrace writer).
pub fn schema_version_props(version: &str) -> parquet::file::properties::WriterProperties {
    parquet::file::properties::WriterProperties::builder()
        .set_key_value_metadata(Some(vec![parquet::file::metadata::KeyValue::new(
            "podtrace.schema_version".to_string(),
            version.to_string(),
        )]))
        .build()
}
