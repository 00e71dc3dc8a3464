//! Reading link-layer frames from pcap and pcapng files.
//!
//! The file format is detected from its magic number, the files are parsed by the
//! `pcap-file` crate and every frame is handed to a callback with its wall-clock timestamp
//! in nanoseconds and the link-layer type of its interface. pcapng interface timestamp
//! resolutions (`if_tsresol`, default microseconds) and offsets (`if_tsoffset`) are applied
//! here, because `pcap-file` 2.0 returns the raw timestamp units.

use std::fs::File;
use std::io::{BufReader, ErrorKind, Read};
use std::path::{Path, PathBuf};

use pcap_file::pcap::PcapReader;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::pcapng::{Block, PcapNgReader};
use pcap_file::{DataLink, PcapError, TsResolution};

use crate::error::ImportError;

/// One captured frame.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    /// Capture time, ns since the Unix epoch.
    pub ts_ns: u64,
    /// Link-layer type of the interface the frame was captured on.
    pub linktype: DataLink,
    /// The captured bytes (at most the snaplen).
    pub data: &'a [u8],
    /// Length of the frame on the wire.
    pub orig_len: u32,
}

/// The container format of a packet capture file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// libpcap format (microsecond or nanosecond timestamps, either byte order).
    Pcap,
    /// pcapng (Wireshark's default).
    PcapNg,
}

/// Detects the file kind from the first four bytes.
pub fn sniff(path: &Path) -> Result<FileKind, ImportError> {
    let io = |source| ImportError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(io)?;
    let mut magic = [0u8; 4];
    let mut got = 0;
    while got < magic.len() {
        let n = file.read(&mut magic[got..]).map_err(io)?;
        if n == 0 {
            break;
        }
        got += n;
    }
    if got < magic.len() {
        return Err(ImportError::NotPcap {
            path: path.to_path_buf(),
            reason: format!("only {got} bytes long"),
        });
    }
    match magic {
        [0xa1, 0xb2, 0xc3, 0xd4]
        | [0xd4, 0xc3, 0xb2, 0xa1]
        | [0xa1, 0xb2, 0x3c, 0x4d]
        | [0x4d, 0x3c, 0xb2, 0xa1] => Ok(FileKind::Pcap),
        [0x0a, 0x0d, 0x0d, 0x0a] => Ok(FileKind::PcapNg),
        other => Err(ImportError::NotPcap {
            path: path.to_path_buf(),
            reason: format!(
                "starts with {:02x} {:02x} {:02x} {:02x}",
                other[0], other[1], other[2], other[3]
            ),
        }),
    }
}

/// Reads every frame of `path` in file order and calls `on_frame` for each. Returns the
/// number of frames read. Stops at the first error of `on_frame`.
pub fn for_each_frame<F>(path: &Path, mut on_frame: F) -> Result<u64, ImportError>
where
    F: FnMut(Frame<'_>) -> Result<(), ImportError>,
{
    let kind = sniff(path)?;
    let file = File::open(path).map_err(|source| ImportError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let reader = BufReader::new(file);
    match kind {
        FileKind::Pcap => read_pcap(path, reader, &mut on_frame),
        FileKind::PcapNg => read_pcapng(path, reader, &mut on_frame),
    }
}

/// Maps a `pcap-file` error to ours: a cut file is [`ImportError::Truncated`].
fn pcap_error(path: &Path, packets: u64, err: PcapError) -> ImportError {
    match err {
        PcapError::IncompleteBuffer => truncated(path, packets),
        PcapError::IoError(e) if e.kind() == ErrorKind::UnexpectedEof => truncated(path, packets),
        PcapError::IoError(source) => ImportError::Io {
            path: path.to_path_buf(),
            source,
        },
        other => ImportError::Malformed {
            path: path.to_path_buf(),
            packets,
            source: other,
        },
    }
}

fn truncated(path: &Path, packets: u64) -> ImportError {
    ImportError::Truncated {
        path: PathBuf::from(path),
        packets,
    }
}

fn read_pcap<R: Read, F>(path: &Path, reader: R, on_frame: &mut F) -> Result<u64, ImportError>
where
    F: FnMut(Frame<'_>) -> Result<(), ImportError>,
{
    let mut reader = PcapReader::new(reader).map_err(|e| pcap_error(path, 0, e))?;
    let header = reader.header();
    let frac_ns: u64 = match header.ts_resolution {
        TsResolution::MicroSecond => 1_000,
        TsResolution::NanoSecond => 1,
    };
    let mut packets = 0u64;
    // Raw records: pcap-file's checked packets reject `orig_len > snaplen`, which is what
    // every packet cut by tcpdump's `-s` looks like.
    while let Some(packet) = reader.next_raw_packet() {
        let packet = packet.map_err(|e| pcap_error(path, packets, e))?;
        let ts_ns = u64::from(packet.ts_sec)
            .saturating_mul(1_000_000_000)
            .saturating_add(u64::from(packet.ts_frac).saturating_mul(frac_ns));
        on_frame(Frame {
            ts_ns,
            linktype: header.datalink,
            data: &packet.data,
            orig_len: packet.orig_len.max(packet.incl_len),
        })?;
        packets += 1;
    }
    Ok(packets)
}

/// What the importer needs to know about a pcapng interface.
#[derive(Debug, Clone, Copy)]
struct Interface {
    linktype: DataLink,
    /// `if_tsresol`: MSB clear = 10^-n s, MSB set = 2^-n s (default 6: microseconds).
    tsresol: u8,
    /// `if_tsoffset`, seconds added to every timestamp.
    tsoffset: u64,
}

impl Interface {
    /// Converts a raw pcapng timestamp (in this interface's units) to ns since the epoch.
    fn ts_ns(&self, raw: u64) -> u64 {
        let raw = u128::from(raw);
        let exp = u32::from(self.tsresol & 0x7f);
        let ns = if self.tsresol & 0x80 == 0 {
            if exp <= 9 {
                raw * 10u128.pow(9 - exp)
            } else {
                raw / 10u128.checked_pow(exp - 9).unwrap_or(u128::MAX)
            }
        } else {
            // Binary fractions: raw / 2^exp seconds.
            let shift = exp.min(127);
            (raw * 1_000_000_000) >> shift
        };
        let ns = ns.saturating_add(u128::from(self.tsoffset) * 1_000_000_000);
        u64::try_from(ns).unwrap_or(u64::MAX)
    }
}

fn read_pcapng<R: Read, F>(path: &Path, reader: R, on_frame: &mut F) -> Result<u64, ImportError>
where
    F: FnMut(Frame<'_>) -> Result<(), ImportError>,
{
    let mut reader = PcapNgReader::new(reader).map_err(|e| pcap_error(path, 0, e))?;
    let mut interfaces: Vec<Interface> = Vec::new();
    let mut packets = 0u64;
    let mut last_ts = 0u64;
    let unknown_interface = |id: u32, packets: u64| ImportError::Malformed {
        path: path.to_path_buf(),
        packets,
        source: PcapError::InvalidInterfaceId(id),
    };
    while let Some(block) = reader.next_block() {
        let block = block.map_err(|e| pcap_error(path, packets, e))?;
        match block {
            Block::SectionHeader(_) => interfaces.clear(),
            Block::InterfaceDescription(idb) => {
                let mut iface = Interface {
                    linktype: idb.linktype,
                    tsresol: 6,
                    tsoffset: 0,
                };
                for opt in &idb.options {
                    match opt {
                        InterfaceDescriptionOption::IfTsResol(r) => iface.tsresol = *r,
                        InterfaceDescriptionOption::IfTsOffset(o) => iface.tsoffset = *o,
                        _ => {}
                    }
                }
                interfaces.push(iface);
            }
            Block::EnhancedPacket(epb) => {
                let iface = interfaces
                    .get(epb.interface_id as usize)
                    .ok_or_else(|| unknown_interface(epb.interface_id, packets))?;
                // pcap-file 2.0 stores the raw timestamp units as nanoseconds.
                let raw = u64::try_from(epb.timestamp.as_nanos()).unwrap_or(u64::MAX);
                last_ts = iface.ts_ns(raw);
                on_frame(Frame {
                    ts_ns: last_ts,
                    linktype: iface.linktype,
                    data: &epb.data,
                    orig_len: epb.original_len,
                })?;
                packets += 1;
            }
            Block::Packet(pb) => {
                let id = u32::from(pb.interface_id);
                let iface = interfaces
                    .get(id as usize)
                    .ok_or_else(|| unknown_interface(id, packets))?;
                last_ts = iface.ts_ns(pb.timestamp);
                on_frame(Frame {
                    ts_ns: last_ts,
                    linktype: iface.linktype,
                    data: &pb.data,
                    orig_len: pb.original_len,
                })?;
                packets += 1;
            }
            Block::SimplePacket(spb) => {
                // Simple packets have no timestamp: they take the previous packet's.
                let iface = interfaces
                    .first()
                    .ok_or_else(|| unknown_interface(0, packets))?;
                let len = spb.data.len().min(spb.original_len as usize);
                on_frame(Frame {
                    ts_ns: last_ts,
                    linktype: iface.linktype,
                    data: &spb.data[..len],
                    orig_len: spb.original_len,
                })?;
                packets += 1;
            }
            _ => {}
        }
    }
    Ok(packets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tsresol_units() {
        let micro = Interface {
            linktype: DataLink::ETHERNET,
            tsresol: 6,
            tsoffset: 0,
        };
        assert_eq!(
            micro.ts_ns(1_700_000_000_123_456),
            1_700_000_000_123_456_000
        );
        let nano = Interface {
            tsresol: 9,
            ..micro
        };
        assert_eq!(nano.ts_ns(42), 42);
        let binary = Interface {
            tsresol: 0x80 | 10,
            ..micro
        };
        assert_eq!(binary.ts_ns(1024), 1_000_000_000);
        let offset = Interface {
            tsoffset: 2,
            ..micro
        };
        assert_eq!(offset.ts_ns(1), 2_000_001_000);
    }
}
