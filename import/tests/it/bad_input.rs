//! Inputs that are not usable packet captures give a clear error naming the file, never a
//! panic, and leave no output file behind.

use crate::common;

use common::*;
use podtrace_import::{import, ImportError, ImportOptions};

fn conversation() -> Conv {
    let mut c = Conv::new("10.0.0.1:40000", "10.0.0.2:8080", 1, 1);
    c.handshake();
    c.send(true, &[b'q'; 3000]);
    c.send(false, &[b'r'; 3000]);
    c.close();
    c
}

#[test]
fn not_a_pcap() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("notes.txt");
    std::fs::write(&input, "this is not a packet capture\n").unwrap();
    let out = dir.path().join("cap.parquet");
    let err = import(&input, &out, &ImportOptions::default()).unwrap_err();
    assert!(matches!(err, ImportError::NotPcap { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("notes.txt") && msg.contains("not a pcap"),
        "{msg}"
    );
    assert!(!out.exists());

    let empty = dir.path().join("empty.pcap");
    std::fs::write(&empty, b"").unwrap();
    let err = import(&empty, &out, &ImportOptions::default()).unwrap_err();
    assert!(matches!(err, ImportError::NotPcap { .. }), "{err:?}");

    let missing = dir.path().join("missing.pcap");
    let err = import(&missing, &out, &ImportOptions::default()).unwrap_err();
    assert!(matches!(err, ImportError::Io { .. }), "{err:?}");
    assert!(!out.exists());
}

#[test]
fn truncated_pcap_and_pcapng() {
    let c = conversation();
    let dir = tempfile::tempdir().unwrap();
    for (name, writer) in [
        (
            "cut.pcap",
            write_pcap as fn(&std::path::Path, &[(u64, Vec<u8>)]),
        ),
        ("cut.pcapng", write_pcapng),
    ] {
        let full = dir.path().join(format!("full-{name}"));
        writer(&full, &c.frames);
        let bytes = std::fs::read(&full).unwrap();
        // Cut in the middle of the 3000-byte data packet (frame 4).
        let input = dir.path().join(name);
        std::fs::write(&input, &bytes[..bytes.len() - 3500]).unwrap();
        let out = dir.path().join("cap.parquet");
        let err = import(&input, &out, &ImportOptions::default()).unwrap_err();
        let complete = match &err {
            ImportError::Truncated { packets, .. } => *packets,
            other => panic!("{name}: expected Truncated, got {other:?}"),
        };
        assert_eq!(complete, 3, "{err}");
        assert!(err.to_string().contains(name), "{err}");
        assert!(!out.exists(), "partial output removed");
        // Asked to, the importer keeps what comes before the cut.
        let opts = ImportOptions {
            allow_truncated: true,
            ..ImportOptions::default()
        };
        let summary = import(&input, &out, &opts).expect("import up to the cut");
        assert!(summary.input_truncated);
        assert!(summary.to_string().contains("truncated"));
        assert_eq!((summary.packets, summary.flows), (complete, 1));
        let (_, rows) = read_capture(&out);
        // The handshake made it, the data packet was cut: two open sockets, no data.
        let socks = sockets(&rows);
        assert_eq!(socks.len(), 2);
        assert!(socks
            .values()
            .all(|s| s.opens == 1 && s.data_rows.is_empty()));
        std::fs::remove_file(&out).unwrap();
        // Only the global header.
        std::fs::write(&input, &bytes[..10]).unwrap();
        let err = import(&input, &out, &ImportOptions::default()).unwrap_err();
        assert!(
            matches!(err, ImportError::Truncated { packets: 0, .. }),
            "{name}: {err:?}"
        );
    }
}

#[test]
fn garbage_after_a_valid_header_is_an_error_not_a_panic() {
    let c = conversation();
    let dir = tempfile::tempdir().unwrap();
    let full = dir.path().join("full.pcapng");
    write_pcapng(&full, &c.frames);
    let bytes = std::fs::read(&full).unwrap();
    let out = dir.path().join("cap.parquet");
    // Flip bytes all over the file after the magic: every outcome must be Ok or Err.
    for pos in (4..bytes.len()).step_by(29) {
        let mut broken = bytes.clone();
        broken[pos] ^= 0xff;
        let input = dir.path().join("broken.pcapng");
        std::fs::write(&input, &broken).unwrap();
        let _ = import(&input, &out, &ImportOptions::default());
    }
    let pcap = dir.path().join("full.pcap");
    write_pcap(&pcap, &c.frames);
    let bytes = std::fs::read(&pcap).unwrap();
    for pos in (4..bytes.len()).step_by(23) {
        let mut broken = bytes.clone();
        broken[pos] ^= 0xa5;
        let input = dir.path().join("broken.pcap");
        std::fs::write(&input, &broken).unwrap();
        let _ = import(&input, &out, &ImportOptions::default());
    }
}

#[test]
fn unsupported_link_type() {
    use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
    use pcap_file::DataLink;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("wifi.pcap");
    let header = PcapHeader {
        datalink: DataLink::IEEE802_11,
        ..PcapHeader::default()
    };
    let mut w = PcapWriter::with_header(std::fs::File::create(&input).unwrap(), header).unwrap();
    w.write_packet(&PcapPacket::new(
        std::time::Duration::from_secs(1),
        4,
        &[0, 1, 2, 3],
    ))
    .unwrap();
    drop(w);
    let out = dir.path().join("cap.parquet");
    let err = import(&input, &out, &ImportOptions::default()).unwrap_err();
    assert!(
        matches!(err, ImportError::UnsupportedLinkType { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("IEEE802_11"), "{err}");
}
