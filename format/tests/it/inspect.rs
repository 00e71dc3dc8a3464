//! `inspect`: the summary of a capture, computed without the payload column.

use crate::common;

use std::net::SocketAddr;

use common::*;
use podtrace_format::*;

fn data(ts: u64, conn: u64, payload: &[u8], ret: i64, flags: u32) -> Record {
    let a: SocketAddr = "10.0.0.1:80".parse().unwrap();
    Record::SocketData(SocketData {
        meta: SocketMeta {
            ts_ns: ts,
            cpu: 0,
            pid: 1,
            tid: 1,
            comm: "web".into(),
            cgroup_id: 9,
            conn_id: conn,
            local: Some(a),
            remote: None,
        },
        direction: Direction::Ingress,
        syscall: "read".into(),
        ret,
        payload: payload.to_vec(),
        flags,
    })
}

fn stat(ts: u64, cpu: Option<u32>, name: &str, value: u64) -> Record {
    Record::Stats(Stat {
        ts_ns: ts,
        cpu,
        name: name.into(),
        value,
    })
}

fn pod(ts: u64, ns: &str, name: &str) -> Record {
    Record::K8sObject(K8sObject {
        ts_ns: ts,
        kind: "Pod".into(),
        uid: format!("{ns}-{name}"),
        namespace: ns.into(),
        name: name.into(),
        event: K8sEvent::Snapshot,
        json: "{}".into(),
    })
}

#[test]
fn summary_of_two_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.parquet");
    let b = dir.path().join("b.parquet");
    let mut w = CaptureWriter::create(&a, file_meta(), WriterOptions::default()).unwrap();
    w.write_all(&[
        pod(1_000, "demo", "web-1"),
        pod(1_000, "demo", "web-1"), // seen twice, counted once
        pod(1_000, "shop", "cart-0"),
        Record::K8sObject(K8sObject {
            ts_ns: 1_000,
            kind: "Service".into(),
            uid: "s".into(),
            namespace: "other".into(),
            name: "svc".into(),
            event: K8sEvent::Added,
            json: "{}".into(),
        }),
        data(2_000, 7, b"GET / HTTP/1.1\r\n", 16, 0),
        data(3_000, 7, b"HTTP/1.1 200", 5_000, flags::TRUNCATED),
        data(4_000, 8, b"", -11, 0),
        // per-CPU drop counter, two readings each: latest wins, summed over CPUs
        stat(1_500, Some(0), "events_dropped_ringbuf_full", 3),
        stat(9_000, Some(0), "events_dropped_ringbuf_full", 5),
        stat(9_000, Some(1), "events_dropped_ringbuf_full", 2),
        stat(8_000, Some(1), "events_dropped_ringbuf_full", 1),
        // a total counter
        stat(9_000, None, "payload_drops", 4),
        stat(9_000, None, "events_seen", 100),
    ])
    .unwrap();
    w.finish().unwrap();

    let mut meta_b = file_meta();
    meta_b.node = "node-b".into();
    let mut w = CaptureWriter::create(&b, meta_b, WriterOptions::default()).unwrap();
    w.write_all(&[
        data(500, 7, b"x", 1, 0), // conn 7 on another node is another connection
        stat(10_000, None, "events_dropped_ringbuf_full", 10),
    ])
    .unwrap();
    w.finish().unwrap();

    let reader = CaptureReader::open(&[&a, &b]).unwrap();
    let s = inspect(&reader).unwrap();
    assert_eq!(s.schema_version, 1);
    assert_eq!(s.nodes, ["node-a", "node-b"]);
    assert_eq!(s.files.len(), 2);
    assert_eq!(s.files[0].rows, 13);
    assert_eq!((s.start_ns, s.end_ns), (Some(500), Some(10_000)));
    assert_eq!(s.rows, 15);
    assert_eq!(s.rows_by_type["socket_data"], 4);
    assert_eq!(s.rows_by_type["k8s_object"], 4);
    assert_eq!(s.rows_by_type["stats"], 7);
    assert_eq!(s.rows_by_type["socket_open"], 0);
    assert_eq!(s.connections, 3);
    assert_eq!(s.pods, ["demo/web-1", "shop/cart-0"]);
    assert_eq!(s.namespaces, ["demo", "shop"]);
    assert_eq!(s.payload_bytes, 16 + 12 + 1);
    assert_eq!(s.syscall_bytes, 16 + 5_000 + 1);
    assert_eq!(s.truncated_rows, 1);
    assert_eq!(s.drops.len(), 2);
    assert_eq!(s.drops["events_dropped_ringbuf_full"], 5 + 2 + 10);
    assert_eq!(s.drops["payload_drops"], 4);

    let text = s.to_string();
    assert!(text.contains("node-a, node-b"), "{text}");
    assert!(text.contains("events_dropped_ringbuf_full=17"), "{text}");
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["connections"], 3);
}

#[test]
fn summary_of_a_large_capture_matches_the_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cap.parquet");
    let n = 30_000;
    let summary = write_capture(&path, n, WriterOptions::default().row_group_rows(4_000));
    let s = inspect(&CaptureReader::open(&[&path]).unwrap()).unwrap();
    assert_eq!(s.rows, n);
    for t in RecordType::ALL {
        assert_eq!(s.rows_by_type[t.as_str()], summary.rows_of(t));
    }
    let mut payload = 0;
    let mut truncated = 0;
    for i in 0..n {
        if let Record::SocketData(d) = record(i) {
            payload += d.payload.len() as u64;
            truncated += u64::from(d.flags & flags::TRUNCATED != 0);
        }
    }
    assert_eq!(s.payload_bytes, payload);
    assert_eq!(s.truncated_rows, truncated);
    assert_eq!(
        (s.start_ns, s.end_ns),
        (Some(record(0).ts_ns()), Some(record(n - 1).ts_ns()))
    );
}
