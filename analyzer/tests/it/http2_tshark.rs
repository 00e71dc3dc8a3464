//! Independent oracle for the HTTP/2 stage: tshark's HTTP/2 dissector.
//!
//! For every HTTP/2 fixture pcap, the HEADERS blocks podtrace decodes (client sockets of the
//! imported capture, frame parser + HPACK of `podtrace_analyzer::http2`) are compared,
//! per connection, direction and stream, with what `tshark -d tcp.port==PORT,http2 -Y
//! 'http2.type==1' -T json --no-duplicate-keys` prints. On complete captures they must be
//! equal field for field; on the late-join capture (cut mid-connection) podtrace must
//! decode at least every field tshark decodes (tshark prints `<unknown>` for the others),
//! in particular every trace context header. Skips loudly when tshark is missing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use podtrace_analyzer::http2::frame::PREFACE;
use podtrace_analyzer::http2::{H2Connection, HeaderBlock, Limits};
use podtrace_analyzer::internals::{Reassembler, Segment};
use podtrace_format::{CaptureReader, ReadOptions, Record, Role};
use podtrace_import::{import, ImportOptions, View};
use serde_json::Value;

/// (client port, request direction, stream id) → blocks in order.
type Blocks = BTreeMap<(u16, bool, u32), Vec<Block>>;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Block {
    fields: Vec<(String, String)>,
    unknown: usize,
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

fn have_tshark() -> bool {
    let ok = Command::new("tshark")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("SKIPPED: tshark is not installed (apt-get install tshark)");
    }
    ok
}

/// A JSON value that is one object or (with --no-duplicate-keys) an array of them.
fn each(v: Option<&Value>) -> Vec<&Value> {
    match v {
        Some(Value::Array(a)) => a.iter().collect(),
        Some(v) => vec![v],
        None => vec![],
    }
}

fn tshark_blocks(pcap: &Path, port: u16) -> Blocks {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(pcap)
        .args(["-d", &format!("tcp.port=={port},http2")])
        .args(["-Y", "http2.type==1", "-T", "json", "--no-duplicate-keys"])
        .stderr(std::process::Stdio::null())
        .output()
        .expect("run tshark");
    assert!(out.status.success(), "tshark failed");
    let packets: Value = serde_json::from_slice(&out.stdout).expect("tshark json");
    let mut blocks = Blocks::new();
    for p in packets.as_array().expect("packet array") {
        let layers = &p["_source"]["layers"];
        let tcp = &layers["tcp"];
        let src: u16 = tcp["tcp.srcport"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .expect("srcport");
        let dst: u16 = tcp["tcp.dstport"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .expect("dstport");
        let request = dst == port;
        let client_port = if request { src } else { dst };
        for h2 in each(layers.get("http2")) {
            for frame in each(h2.get("http2.stream")) {
                if frame.get("http2.type").and_then(Value::as_str) != Some("1") {
                    continue;
                }
                let stream: u32 = frame["http2.streamid"]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .expect("stream id");
                let mut b = Block {
                    fields: Vec::new(),
                    unknown: 0,
                };
                for f in each(frame.get("http2.header")) {
                    let name = f["http2.header.name"].as_str().unwrap_or("").to_string();
                    let value = f["http2.header.value"].as_str().unwrap_or("").to_string();
                    if name == "<unknown>" {
                        b.unknown += 1;
                    } else {
                        b.fields.push((name, value));
                    }
                }
                blocks
                    .entry((client_port, request, stream))
                    .or_default()
                    .push(b);
            }
        }
    }
    blocks
}

/// The blocks of the sockets whose peer is the server port (the real client sockets,
/// whatever role the importer guessed for a connection without its SYN).
fn podtrace_blocks(pcap: &Path, server_port: u16) -> Blocks {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cap = tmp.path().join("cap.parquet");
    let opts = ImportOptions {
        view: View::Both,
        ..ImportOptions::default()
    };
    import(pcap, &cap, &opts).expect("import");
    let records: Vec<Record> = CaptureReader::open(&[&cap])
        .expect("open")
        .records(&ReadOptions::default())
        .collect::<Result<_, _>>()
        .expect("read");
    let mut r = Reassembler::new();
    for rec in &records {
        match rec {
            Record::SocketData(d) => r.push_data(d),
            Record::SocketOpen(e) => r.push_open(e),
            Record::SocketClose(e) => r.push_close(e),
            _ => {}
        }
    }
    let mut blocks = Blocks::new();
    for delta in r.take_ready() {
        if delta.info.key.remote.map(|a| a.port()) != Some(server_port) {
            continue;
        }
        let first: &[u8] = match delta.egress.first() {
            Some(Segment::Data { bytes, .. }) => bytes,
            _ => &[],
        };
        let mut c = if first.starts_with(b"GET ") && contains(first, b"Upgrade: h2c") {
            // An h2c upgrade (HTTP/1.1 request, 101, then HTTP/2): tshark's forced HTTP/2
            // dissector cannot follow the HTTP/1.1 prelude, so these are compared apart.
            H2Connection::new_upgrade(Role::Client, true, Limits::default())
        } else {
            H2Connection::new(
                Role::Client,
                first.starts_with(PREFACE).then_some(true),
                Limits::default(),
            )
        };
        let upgrade = !first.starts_with(PREFACE) && contains(first, b"Upgrade: h2c");
        c.record_blocks(true);
        let _ = c.feed(&delta.egress, &delta.ingress, true);
        let port = delta.info.key.local.expect("local address").port();
        for HeaderBlock {
            egress,
            stream,
            fields,
            unknown,
        } in c.take_blocks()
        {
            // Upgrade connections are keyed with port 0 (compared separately).
            let port = if upgrade { 0 } else { port };
            blocks
                .entry((port, egress, stream))
                .or_default()
                .push(Block { fields, unknown });
        }
    }
    blocks
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn is_context(name: &str) -> bool {
    ["traceparent", "tracestate", "b3"].contains(&name) || name.starts_with("x-b3-")
}

#[test]
fn decoded_headers_equal_tshark_on_complete_captures() {
    if !have_tshark() {
        return;
    }
    for (dir, pcap, port) in [
        ("grpc-demo", "grpc.pcap", 50051),
        ("h2-curl", "h2c.pcap", 18443),
    ] {
        let path = fixtures().join(dir).join(pcap);
        let mut ours = podtrace_blocks(&path, port);
        let theirs = tshark_blocks(&path, port);
        assert!(!theirs.is_empty(), "{pcap}: tshark saw no HEADERS");
        // The h2c upgrade's answer (stream 1, HTTP/2 after the 101) is decoded by podtrace;
        // tshark shows nothing for that connection.
        let upgraded = ours.remove(&(0, false, 1));
        if pcap == "h2c.pcap" {
            let b = upgraded.expect("h2c upgrade response decoded");
            assert_eq!(b[0].fields.first(), Some(&(":status".into(), "200".into())));
        }
        assert_eq!(
            ours.keys().collect::<Vec<_>>(),
            theirs.keys().collect::<Vec<_>>(),
            "{pcap}: streams differ"
        );
        for (k, t) in &theirs {
            assert_eq!(&ours[k], t, "{pcap}: stream {k:?}");
            assert!(t.iter().all(|b| b.unknown == 0));
        }
    }
}

#[test]
fn late_join_decodes_at_least_what_tshark_decodes() {
    if !have_tshark() {
        return;
    }
    let path = fixtures().join("grpc-demo/grpc-late.pcap");
    let ours = podtrace_blocks(&path, 50051);
    let theirs = tshark_blocks(&path, 50051);
    let mut contexts = 0;
    let mut partial = 0;
    let mut partial_streams = std::collections::BTreeSet::new();
    for (k, t) in &theirs {
        let o = ours
            .get(k)
            .unwrap_or_else(|| panic!("stream {k:?} not decoded"));
        assert_eq!(o.len(), t.len(), "{k:?}");
        for (ob, tb) in o.iter().zip(t) {
            let mut rest = ob.fields.iter();
            for f in &tb.fields {
                assert!(
                    rest.any(|g| g == f),
                    "{k:?}: tshark decoded {f:?}, podtrace {:?}",
                    ob.fields
                );
                contexts += usize::from(is_context(&f.0));
            }
            assert!(ob.unknown <= tb.unknown, "{k:?}: {ob:?} vs {tb:?}");
            partial += usize::from(ob.unknown > 0);
            if ob.unknown > 0 {
                partial_streams.insert(k.2);
            }
        }
    }
    // Every RPC after the cut referred to entries added before it (`:path`, ...): the
    // 8 streams are the ones the pipeline counts as `h2_partial_headers` per socket.
    assert_eq!(partial_streams.len(), 8, "{partial_streams:?}");
    // 8 RPCs after the cut, each with one trace context header (B3 multi: three).
    assert_eq!(contexts, 7 + 3, "trace context fields tshark recovered");
    assert!(partial > 0, "the cut should leave unknown indexed fields");
}
