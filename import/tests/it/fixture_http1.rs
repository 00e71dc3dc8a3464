//! The checked-in sample `fixtures/pcap/http1-curl.pcap` (real curl ↔ python traffic,
//! re-recorded by `tools/record-pcap-http1.sh`) imports to exactly the HTTP exchanges the
//! script made; with tshark installed, every socket also matches "Follow TCP stream".

use crate::common;

use std::path::PathBuf;

use common::*;
use podtrace_format::{flags, Record, Role};
use podtrace_import::{import, ImportOptions, View};

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/pcap/http1-curl.pcap")
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn fixture_imports_to_the_recorded_exchanges() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cap.parquet");
    let summary = import(&fixture(), &out, &ImportOptions::default()).expect("import");
    assert_eq!((summary.flows, summary.flows_closed), (2, 2), "{summary}");
    assert_eq!(
        (summary.gaps, summary.retransmits, summary.out_of_order),
        (0, 0, 0)
    );
    assert_eq!(summary.other_packets + summary.malformed_packets, 0);

    // The summary is what `podtrace import --json` prints.
    let json = serde_json::to_value(&summary).unwrap();
    assert_eq!(json["flows"], 2);
    assert_eq!(
        json["client_to_server"]["bytes"],
        summary.client_to_server.bytes
    );
    assert!(summary.to_string().contains("connections    2 (2 closed"));

    let (meta, rows) = read_capture(&out);
    assert_eq!(meta.target, "pcap http1-curl.pcap");
    assert_sorted(&rows);
    let socks = sockets(&rows);
    assert_eq!(socks.len(), 4);
    let clients: Vec<&Socket> = socks
        .values()
        .filter(|s| s.role == Some(Role::Client))
        .collect();
    assert_eq!(clients.len(), 2);
    let keep_alive = clients
        .iter()
        .find(|s| contains(&s.egress, b"GET /hello HTTP/1.1\r\n"))
        .expect("the keep-alive connection");
    let sent = &keep_alive.egress;
    assert!(contains(
        sent,
        b"traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n"
    ));
    assert!(contains(sent, b"X-Request-ID: fixture-1\r\n"));
    assert!(contains(sent, b"POST /echo HTTP/1.1\r\n"));
    assert!(contains(sent, b"X-Test-Id: 42\r\n"));
    assert!(contains(sent, &[b'p'; 1000]));
    assert!(contains(sent, b"GET /status/404 HTTP/1.1\r\n"));
    let got = &keep_alive.ingress;
    assert!(contains(got, b"hello from /hello\n"));
    assert!(contains(got, b"\"length\": 1000"));
    assert!(contains(got, b"HTTP/1.1 404 Not Found\r\n"));
    let other = clients
        .iter()
        .find(|s| s.local != keep_alive.local)
        .unwrap();
    assert!(other.egress.starts_with(b"GET /size/2000 HTTP/1.1\r\n"));
    let pattern: Vec<u8> = b"0123456789abcdef"
        .iter()
        .copied()
        .cycle()
        .take(2000)
        .collect();
    assert!(other.ingress.ends_with(&pattern));

    // Each client socket mirrors its server socket.
    for c in &clients {
        let server = socket_between(&socks, Role::Server, c.remote.unwrap(), c.local.unwrap());
        assert_eq!(server.ingress, c.egress);
        assert_eq!(server.egress, c.ingress);
    }
    assert!(rows.iter().all(|r| match r {
        Record::SocketData(d) => d.flags == flags::IMPORTED,
        _ => true,
    }));

    if !have("tshark") {
        eprintln!("SKIPPED the tshark comparison of the fixture: tshark is not installed");
        return;
    }
    for f in tshark_follow_all(&fixture()) {
        let (n0, n1) = (f.node0.unwrap(), f.node1.unwrap());
        let client = socket_between(&socks, Role::Client, n0, n1);
        assert!(client.egress == f.from0 && client.ingress == f.from1);
    }
}

#[test]
fn fixture_views_write_one_side_each() {
    let dir = tempfile::tempdir().unwrap();
    let mut ids = Vec::new();
    for (view, role) in [(View::Client, Role::Client), (View::Server, Role::Server)] {
        let out = dir.path().join(format!("{view:?}.parquet"));
        let opts = ImportOptions {
            view,
            ..ImportOptions::default()
        };
        let summary = import(&fixture(), &out, &opts).unwrap();
        let (meta, rows) = read_capture(&out);
        assert_eq!(summary.rows_written, rows.len() as u64);
        assert!(
            meta.extra
                .iter()
                .any(|(k, v)| k == "import.view" && v == &format!("{view:?}").to_lowercase()),
            "{meta:?}"
        );
        let socks = sockets(&rows);
        assert_eq!(socks.len(), 2);
        assert!(socks
            .values()
            .all(|s| s.role == Some(role) && s.opens == 1 && s.closes == 1));
        ids.extend(socks.keys().copied());
    }
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(
        ids.len(),
        4,
        "client and server sockets have different conn_ids"
    );
}
