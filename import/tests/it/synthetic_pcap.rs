//! Reassembly on synthetic captures built packet by packet (etherparse builder, pcap-file
//! writer): retransmits, out-of-order delivery, a lost segment, RST, a connection seen
//! without its handshake, IPv6, pcapng. Each test asserts the exact byte streams, flags and
//! connection boundaries every socket got.

use crate::common;

use common::*;
use podtrace_format::{flags, Direction, Record, Role};
use podtrace_import::{import, ImportOptions, ImportSummary, View};

const REQUEST: &[u8] = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";

fn run(conv: &Conv, view: View) -> (ImportSummary, Vec<Record>) {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("in.pcap");
    write_pcap(&pcap, &conv.frames);
    let out = dir.path().join("cap.parquet");
    let opts = ImportOptions {
        view,
        ..ImportOptions::default()
    };
    let summary = import(&pcap, &out, &opts).expect("import");
    let (meta, rows) = read_capture(&out);
    assert_eq!(meta.target, "pcap in.pcap");
    assert_eq!(meta.node, "pcap");
    assert_eq!(meta.recorder_version, env!("CARGO_PKG_VERSION"));
    assert_sorted(&rows);
    assert_eq!(summary.rows_written, rows.len() as u64);
    (summary, rows)
}

fn every_data_flag(rows: &[Record]) -> Vec<u32> {
    rows.iter()
        .filter_map(|r| match r {
            Record::SocketData(d) => Some(d.flags),
            _ => None,
        })
        .collect()
}

#[test]
fn clean_exchange_both_views() {
    let mut c = Conv::new("10.0.0.1:40000", "10.0.0.2:8080", 100, 9000);
    c.handshake();
    c.send(true, REQUEST);
    c.ack(false);
    c.send(false, RESPONSE);
    c.ack(true);
    c.close();
    let (summary, rows) = run(&c, View::Both);
    assert_eq!(
        (
            summary.flows,
            summary.flows_closed,
            summary.flows_mid_stream
        ),
        (1, 1, 0)
    );
    assert_eq!(summary.client_to_server.bytes, REQUEST.len() as u64);
    assert_eq!(summary.server_to_client.bytes, RESPONSE.len() as u64);
    assert_eq!(
        (summary.retransmits, summary.out_of_order, summary.gaps),
        (0, 0, 0)
    );
    let socks = sockets(&rows);
    assert_eq!(socks.len(), 2);
    let client = socket_of(&socks, Role::Client, c.client);
    let server = socket_of(&socks, Role::Server, c.server);
    assert_eq!(client.remote, Some(c.server));
    assert_eq!(server.remote, Some(c.client));
    assert_eq!(client.egress, REQUEST);
    assert_eq!(client.ingress, RESPONSE);
    assert_eq!(server.ingress, REQUEST);
    assert_eq!(server.egress, RESPONSE);
    for s in [client, server] {
        assert_eq!((s.opens, s.closes), (1, 1));
        assert!(s
            .events
            .iter()
            .all(|e| &*e.syscall == "pcap" && &*e.meta.comm == "pcap"));
        assert!(s
            .events
            .iter()
            .all(|e| e.meta.pid == 0 && e.meta.cgroup_id == 0));
        for d in &s.data_rows {
            assert_eq!(&*d.syscall, "pcap");
            assert_eq!(d.ret, d.payload.len() as i64);
        }
    }
    assert!(every_data_flag(&rows).iter().all(|f| *f == flags::IMPORTED));
    // The request row carries the request packet's time (4th frame).
    let first_data = client.data_rows.first().unwrap();
    assert_eq!(first_data.meta.ts_ns, c.frames[3].0);
    assert_eq!(first_data.direction, Direction::Egress);
    // Open first, close last, on both sockets.
    assert!(matches!(rows.first(), Some(Record::SocketOpen(_))));
    assert!(matches!(rows.last(), Some(Record::SocketClose(_))));

    let (_, client_rows) = run(&c, View::Client);
    let only = sockets(&client_rows);
    assert_eq!(only.len(), 1);
    let s = socket_of(&only, Role::Client, c.client);
    assert_eq!(
        (s.egress.as_slice(), s.ingress.as_slice()),
        (REQUEST, RESPONSE)
    );
    assert_eq!(s.role, Some(Role::Client));
    let (_, server_rows) = run(&c, View::Server);
    let only = sockets(&server_rows);
    assert_eq!(only.len(), 1);
    let s = socket_of(&only, Role::Server, c.server);
    assert_eq!(
        (s.egress.as_slice(), s.ingress.as_slice()),
        (RESPONSE, REQUEST)
    );
    // Same connection, same ids in every view.
    let both_ids: Vec<u64> = socks.keys().copied().collect();
    assert!(sockets(&client_rows).keys().all(|k| both_ids.contains(k)));
    assert!(sockets(&server_rows).keys().all(|k| both_ids.contains(k)));
}

#[test]
fn retransmitted_segment_is_dropped() {
    let mut c = Conv::new("10.0.0.1:40001", "10.0.0.2:8080", 5, 77);
    c.handshake();
    let part1 = c.segment(true, &REQUEST[..10]);
    c.push(part1.clone());
    c.send(true, &REQUEST[10..]);
    c.push(part1); // retransmit of an old segment
    c.ack(false);
    c.send(false, RESPONSE);
    c.send(false, b""); // empty segment (pure ACK duplicate)
    c.close();
    let (summary, rows) = run(&c, View::Both);
    assert_eq!(summary.retransmits, 1);
    assert_eq!(summary.client_to_server.retransmits, 1);
    let socks = sockets(&rows);
    assert_eq!(socket_of(&socks, Role::Client, c.client).egress, REQUEST);
    assert_eq!(socket_of(&socks, Role::Server, c.server).ingress, REQUEST);
    assert_eq!(socket_of(&socks, Role::Server, c.server).egress, RESPONSE);
    assert!(every_data_flag(&rows).iter().all(|f| *f == flags::IMPORTED));
}

#[test]
fn overlapping_retransmit_keeps_only_new_bytes() {
    let mut c = Conv::new("10.0.0.1:40002", "10.0.0.2:8080", 1, 1);
    c.handshake();
    let start = c.cseq;
    c.send(true, &REQUEST[..10]);
    // A resegmented retransmit covering old bytes 5..10 and new bytes 10..20.
    let frame = tcp_frame(
        c.client,
        c.server,
        start + 5,
        Flags {
            ack: Some(c.sseq),
            ..Flags::default()
        },
        &REQUEST[5..20],
    );
    c.push(frame);
    c.cseq = start + 20;
    c.send(true, &REQUEST[20..]);
    c.close();
    let (summary, rows) = run(&c, View::Client);
    assert_eq!(summary.retransmits, 1);
    let socks = sockets(&rows);
    assert_eq!(socket_of(&socks, Role::Client, c.client).egress, REQUEST);
}

#[test]
fn out_of_order_segments_are_delivered_in_order() {
    let mut c = Conv::new("10.0.0.1:40003", "10.0.0.2:8080", 1000, 2000);
    c.handshake();
    let a = c.segment(true, &REQUEST[..8]);
    let b = c.segment(true, &REQUEST[8..16]);
    let d = c.segment(true, &REQUEST[16..]);
    c.push(b);
    c.push(d);
    c.push(a);
    let filled_at = c.ts;
    c.ack(false);
    c.send(false, RESPONSE);
    c.close();
    let (summary, rows) = run(&c, View::Server);
    assert_eq!(summary.out_of_order, 2);
    assert_eq!((summary.gaps, summary.retransmits), (0, 0));
    let socks = sockets(&rows);
    let server = socket_of(&socks, Role::Server, c.server);
    assert_eq!(server.ingress, REQUEST);
    // Readable at once when the hole filled: one row at the filling packet's time.
    let ingress: Vec<_> = server
        .data_rows
        .iter()
        .filter(|d| d.direction == Direction::Ingress)
        .collect();
    assert_eq!(ingress.len(), 1);
    assert_eq!(ingress[0].meta.ts_ns, filled_at);
    assert!(every_data_flag(&rows).iter().all(|f| *f == flags::IMPORTED));
}

#[test]
fn lost_segment_is_a_flagged_gap() {
    let mut c = Conv::new("10.0.0.1:40004", "10.0.0.2:8080", 1, 1);
    c.handshake();
    c.send(true, b"first-");
    let _lost = c.segment(true, b"LOST-");
    c.send(true, b"third");
    c.ack(false); // the server acknowledges all of it: the capture missed a segment
    c.send(false, RESPONSE);
    c.close();
    let (summary, rows) = run(&c, View::Both);
    assert_eq!(summary.gaps, 1);
    assert_eq!(summary.client_to_server.gap_bytes, 5);
    let socks = sockets(&rows);
    for (s, dir) in [
        (socket_of(&socks, Role::Client, c.client), Direction::Egress),
        (
            socket_of(&socks, Role::Server, c.server),
            Direction::Ingress,
        ),
    ] {
        let rows: Vec<_> = s.data_rows.iter().filter(|d| d.direction == dir).collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].payload, b"first-");
        assert_eq!(rows[0].flags, flags::IMPORTED);
        assert_eq!(rows[1].payload, b"third");
        assert_eq!(rows[1].flags, flags::IMPORTED | flags::GAP_BEFORE);
    }
    assert_eq!(socket_of(&socks, Role::Client, c.client).ingress, RESPONSE);
}

#[test]
fn lost_segment_before_fin_without_ack_is_flagged_at_the_end() {
    let mut c = Conv::new("10.0.0.1:40005", "10.0.0.2:8080", 1, 1);
    c.handshake();
    c.send(true, b"aaaa");
    let _lost = c.segment(true, b"bbbb");
    c.send(true, b"cccc");
    c.fin(true);
    let (summary, rows) = run(&c, View::Client);
    assert_eq!(summary.gaps, 1);
    let socks = sockets(&rows);
    let client = socket_of(&socks, Role::Client, c.client);
    assert_eq!(client.egress, b"aaaacccc");
    assert_eq!(
        client.data_rows[1].flags,
        flags::IMPORTED | flags::GAP_BEFORE
    );
    // Only one FIN: the connection is still open at the end of the capture.
    assert_eq!(client.closes, 0);
}

#[test]
fn rst_closes_both_sockets() {
    let mut c = Conv::new("10.0.0.1:40006", "10.0.0.2:8080", 1, 1);
    c.handshake();
    c.send(true, REQUEST);
    c.send(false, &RESPONSE[..10]);
    c.rst(false);
    let rst_ts = c.ts;
    c.ack(true); // after the reset: ignored
    let (summary, rows) = run(&c, View::Both);
    assert_eq!((summary.flows_reset, summary.flows_closed), (1, 0));
    assert_eq!(summary.ignored_packets, 1);
    let socks = sockets(&rows);
    let client = socket_of(&socks, Role::Client, c.client);
    let server = socket_of(&socks, Role::Server, c.server);
    assert_eq!(client.ingress, &RESPONSE[..10]);
    for s in [client, server] {
        assert_eq!((s.opens, s.closes), (1, 1));
        let close = s.events.iter().find(|e| e.meta.ts_ns == rst_ts);
        assert!(close.is_some(), "close at the RST's time");
    }
}

#[test]
fn flow_without_syn_starts_at_first_data_with_port_roles() {
    let mut c = Conv::new("10.0.0.1:45678", "10.0.0.2:8080", 500_000, 7_000_000);
    c.handshake();
    c.send(true, b"old request that happened before the capture");
    c.send(false, b"old response");
    let skip = c.frames.len();
    // The capture starts here, with the server's side first.
    c.send(false, b"tail of a response|");
    c.send(true, REQUEST);
    c.send(false, RESPONSE);
    c.close();
    let mut cut = Conv::new("10.0.0.1:45678", "10.0.0.2:8080", 0, 0);
    cut.frames = c.frames[skip..].to_vec();
    let (summary, rows) = run(&cut, View::Both);
    assert_eq!(
        (
            summary.flows,
            summary.flows_mid_stream,
            summary.flows_closed
        ),
        (1, 1, 1)
    );
    let socks = sockets(&rows);
    let client = socket_of(&socks, Role::Client, c.client);
    let server = socket_of(&socks, Role::Server, c.server);
    assert_eq!(client.egress, REQUEST);
    let mut expected = b"tail of a response|".to_vec();
    expected.extend_from_slice(RESPONSE);
    assert_eq!(client.ingress, expected);
    assert_eq!(server.egress, expected);
    assert_eq!(summary.gaps, 0);
    // Well-known port: the server even if it spoke first.
    let mut web = Conv::new("10.0.0.1:1500", "10.0.0.2:443", 1, 1);
    web.send(false, b"x");
    web.send(true, b"y");
    let (_, rows) = run(&web, View::Both);
    let socks = sockets(&rows);
    assert_eq!(socket_of(&socks, Role::Server, web.server).egress, b"x");
}

#[test]
fn ipv6_connection() {
    let mut c = Conv::new("[fd00::1]:40007", "[fd00::2]:8080", 10, 20);
    c.handshake();
    c.send(true, REQUEST);
    c.send(false, RESPONSE);
    c.close();
    let (summary, rows) = run(&c, View::Both);
    assert_eq!((summary.flows, summary.flows_closed), (1, 1));
    let socks = sockets(&rows);
    let client = socket_of(&socks, Role::Client, c.client);
    assert_eq!(client.remote, Some(c.server));
    assert_eq!(client.egress, REQUEST);
    assert_eq!(client.ingress, RESPONSE);
    assert_eq!(socket_of(&socks, Role::Server, c.server).ingress, REQUEST);
}

#[test]
fn sequence_numbers_wrap_around() {
    let mut c = Conv::new(
        "10.0.0.1:40008",
        "10.0.0.2:8080",
        u32::MAX - 10,
        u32::MAX - 3,
    );
    c.handshake();
    c.send(true, REQUEST);
    c.send(false, RESPONSE);
    c.close();
    let (summary, rows) = run(&c, View::Both);
    assert_eq!(
        (summary.gaps, summary.retransmits, summary.flows_closed),
        (0, 0, 1)
    );
    let socks = sockets(&rows);
    assert_eq!(socket_of(&socks, Role::Client, c.client).egress, REQUEST);
    assert_eq!(socket_of(&socks, Role::Client, c.client).ingress, RESPONSE);
}

#[test]
fn large_payload_is_split_at_16_kib() {
    let body: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
    let mut c = Conv::new("10.0.0.1:40009", "10.0.0.2:8080", 1, 1);
    c.handshake();
    c.send(true, &body);
    c.close();
    let (_, rows) = run(&c, View::Client);
    let socks = sockets(&rows);
    let client = socket_of(&socks, Role::Client, c.client);
    assert_eq!(client.egress, body);
    let sizes: Vec<usize> = client.data_rows.iter().map(|d| d.payload.len()).collect();
    assert_eq!(sizes, vec![16384, 16384, 40_000 - 32768]);
}

#[test]
fn port_reuse_starts_a_new_connection() {
    let mut c = Conv::new("10.0.0.1:40010", "10.0.0.2:8080", 1, 1);
    c.handshake();
    c.send(true, b"one");
    c.close();
    c.ack(false); // trailing packet of the closed connection: ignored
    c.cseq = 50_000;
    c.sseq = 90_000;
    c.handshake();
    c.send(true, b"two");
    c.close();
    let (summary, rows) = run(&c, View::Client);
    assert_eq!((summary.flows, summary.flows_closed), (2, 2));
    let socks = sockets(&rows);
    let egress: Vec<&[u8]> = socks.values().map(|s| s.egress.as_slice()).collect();
    assert_eq!(socks.len(), 2);
    assert!(egress.contains(&b"one".as_slice()) && egress.contains(&b"two".as_slice()));
}

#[test]
fn pcapng_input_gives_the_same_rows() {
    let mut c = Conv::new("10.0.0.1:40011", "10.0.0.2:8080", 1, 1);
    c.handshake();
    c.send(true, REQUEST);
    c.send(false, RESPONSE);
    c.close();
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("a.pcap");
    let pcapng = dir.path().join("a.pcapng");
    write_pcap(&pcap, &c.frames);
    write_pcapng(&pcapng, &c.frames);
    let (o1, o2) = (dir.path().join("1.parquet"), dir.path().join("2.parquet"));
    let s1 = import(&pcap, &o1, &ImportOptions::default()).unwrap();
    let s2 = import(&pcapng, &o2, &ImportOptions::default()).unwrap();
    assert_eq!(s1, s2);
    assert_eq!(read_capture(&o1).1, read_capture(&o2).1);
    assert_eq!(s1.first_ts_ns, Some(c.frames[0].0));
}

#[test]
fn packet_cut_by_the_snaplen_becomes_a_gap() {
    use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
    let mut c = Conv::new("10.0.0.1:40012", "10.0.0.2:8080", 1, 1);
    c.handshake();
    c.send(true, b"head-");
    c.send(true, &[b'x'; 1000]); // captured with a 200-byte snaplen below
    c.send(true, b"-tail");
    c.ack(false);
    c.close();
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("snap.pcap");
    let header = PcapHeader {
        snaplen: 200,
        ts_resolution: pcap_file::TsResolution::NanoSecond,
        ..PcapHeader::default()
    };
    let mut w = PcapWriter::with_header(std::fs::File::create(&pcap).unwrap(), header).unwrap();
    for (ts, data) in &c.frames {
        let cap = data.len().min(200);
        let ts = std::time::Duration::from_nanos(*ts);
        w.write_packet(&PcapPacket::new(ts, data.len() as u32, &data[..cap]))
            .unwrap();
    }
    drop(w);
    let out = dir.path().join("cap.parquet");
    let summary = import(&pcap, &out, &ImportOptions::default()).unwrap();
    assert_eq!(summary.truncated_packets, 1);
    assert_eq!(
        (summary.gaps, summary.client_to_server.gap_bytes),
        (1, 1000)
    );
    let (_, rows) = read_capture(&out);
    let socks = sockets(&rows);
    let client = socket_of(&socks, Role::Client, c.client);
    assert_eq!(client.egress, b"head--tail");
    assert_eq!(
        client.data_rows[1].flags,
        flags::IMPORTED | flags::GAP_BEFORE
    );
}

#[test]
fn empty_capture_gives_an_empty_file() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("empty.pcap");
    write_pcap(&pcap, &[]);
    let out = dir.path().join("cap.parquet");
    let summary = import(&pcap, &out, &ImportOptions::default()).unwrap();
    assert_eq!(
        (summary.packets, summary.flows, summary.rows_written),
        (0, 0, 0)
    );
    assert_eq!(summary.first_ts_ns, None);
    assert!(read_capture(&out).1.is_empty());
}

#[test]
fn non_tcp_packets_are_counted_and_skipped() {
    use etherparse::PacketBuilder;
    let mut c = Conv::new("10.0.0.1:40013", "10.0.0.2:8080", 1, 1);
    let mut udp = Vec::new();
    PacketBuilder::ethernet2([1; 6], [2; 6])
        .ipv4([10, 0, 0, 1], [10, 0, 0, 3], 64)
        .udp(5353, 53)
        .write(&mut udp, b"dns?")
        .unwrap();
    c.push(udp);
    c.handshake();
    c.send(true, b"ping");
    c.close();
    let (summary, rows) = run(&c, View::Client);
    assert_eq!(
        (summary.packets, summary.other_packets, summary.tcp_packets),
        (8, 1, 7)
    );
    let socks = sockets(&rows);
    assert_eq!(socket_of(&socks, Role::Client, c.client).egress, b"ping");
}

#[test]
fn syn_ack_without_syn_still_names_the_client() {
    // Client port 9000 < server port 40000: only the SYN-ACK can tell who the server is.
    let mut c = Conv::new("10.0.0.1:9000", "10.0.0.2:40000", 1, 1);
    c.handshake();
    c.send(true, REQUEST);
    c.send(false, RESPONSE);
    c.close();
    let mut cut = Conv::new("10.0.0.1:9000", "10.0.0.2:40000", 0, 0);
    cut.frames = c.frames[1..].to_vec();
    let (summary, rows) = run(&cut, View::Both);
    assert_eq!(
        (summary.flows, summary.flows_mid_stream, summary.gaps),
        (1, 0, 0)
    );
    let socks = sockets(&rows);
    assert_eq!(socket_of(&socks, Role::Client, c.client).egress, REQUEST);
    assert_eq!(socket_of(&socks, Role::Server, c.server).egress, RESPONSE);
}

#[test]
fn unsorted_capture_is_written_sorted_and_deterministic() {
    let mut a = Conv::new("10.0.0.1:40014", "10.0.0.2:8080", 1, 1);
    a.handshake();
    a.send(true, REQUEST);
    a.send(false, RESPONSE);
    a.close();
    let mut b = Conv::new("10.0.0.5:40015", "10.0.0.2:8080", 1, 1);
    b.ts += STEP_NS / 2;
    b.handshake();
    b.send(true, b"other request");
    b.close();
    // Interleave the two connections with slightly unsorted timestamps, as a merge of two
    // captures of different clocks would.
    let mut frames: Vec<(u64, Vec<u8>)> = a.frames.iter().chain(b.frames.iter()).cloned().collect();
    frames.sort_by_key(|(ts, _)| *ts);
    frames.swap(3, 4);
    frames.swap(8, 9);
    let mut merged = Conv::new("10.0.0.1:1", "10.0.0.2:2", 0, 0);
    merged.frames = frames;
    let (s1, r1) = run(&merged, View::Both);
    let (s2, r2) = run(&merged, View::Both);
    assert_eq!(s1, s2);
    assert_eq!(r1, r2);
    assert_eq!((s1.flows, s1.flows_closed, s1.late_rows), (2, 2, 0));
    let socks = sockets(&r1);
    assert_eq!(socket_of(&socks, Role::Client, a.client).egress, REQUEST);
    assert_eq!(
        socket_of(&socks, Role::Client, b.client).egress,
        b"other request"
    );
}

#[test]
fn syn_after_a_mid_stream_guess_starts_a_new_connection_with_real_roles() {
    // Seen mid-stream, 7000 ↔ 9000 are guessed with the lower port as the server...
    let mut old = Conv::new("10.0.0.1:9000", "10.0.0.2:7000", 1, 1);
    old.send(true, b"old");
    // ...then 7000 connects to 9000: the SYN names the real client.
    let mut new = Conv::new("10.0.0.2:7000", "10.0.0.1:9000", 500, 900);
    new.ts = old.ts;
    new.handshake();
    new.send(true, b"new");
    new.close();
    let mut all = Conv::new("10.0.0.1:1", "10.0.0.2:2", 0, 0);
    all.frames = old
        .frames
        .iter()
        .chain(new.frames.iter())
        .cloned()
        .collect();
    let (summary, rows) = run(&all, View::Client);
    assert_eq!((summary.flows, summary.flows_mid_stream), (2, 1));
    let socks = sockets(&rows);
    assert_eq!(socket_of(&socks, Role::Client, new.client).egress, b"new");
    assert_eq!(socket_of(&socks, Role::Client, old.client).egress, b"old");
}

#[test]
fn half_close_keeps_sockets_open_until_both_fins() {
    let mut c = Conv::new("10.0.0.1:40016", "10.0.0.2:8080", 1, 1);
    c.handshake();
    c.send(true, REQUEST);
    c.send(false, RESPONSE);
    c.fin(false); // the server closes first (HTTP/1.0 style)...
    c.send(true, b"late"); // ...and still receives what the client sends
    c.fin(true);
    let last_fin = c.ts;
    c.ack(false);
    let (summary, rows) = run(&c, View::Both);
    assert_eq!(summary.flows_closed, 1);
    let socks = sockets(&rows);
    let server = socket_of(&socks, Role::Server, c.server);
    let mut expected = REQUEST.to_vec();
    expected.extend_from_slice(b"late");
    assert_eq!(server.ingress, expected);
    for s in socks.values() {
        let close = s.events.iter().find(|e| e.meta.ts_ns == last_fin);
        assert!(close.is_some() && s.closes == 1, "closed at the second FIN");
        let last_data = s.data_rows.last().unwrap().meta.ts_ns;
        assert!(last_data <= last_fin);
    }
    // No row of a socket comes after its close.
    let close_pos = rows
        .iter()
        .position(|r| matches!(r, Record::SocketClose(_)))
        .unwrap();
    assert!(rows[close_pos..]
        .iter()
        .all(|r| matches!(r, Record::SocketClose(_))));
}
