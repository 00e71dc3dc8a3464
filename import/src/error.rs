//! Errors of `podtrace import`. Every variant about a file names the file, so that the CLI
//! can print the error as is.

use std::path::PathBuf;

/// What went wrong importing a packet capture.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The operating system refused to open or read a file.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The input does not start with a pcap or pcapng magic number.
    #[error("{}: not a pcap or pcapng file ({reason})", path.display())]
    NotPcap {
        /// The file.
        path: PathBuf,
        /// What was found instead.
        reason: String,
    },
    /// The input ends in the middle of a packet or block (the capturing tool was killed or
    /// the file was cut).
    #[error("{}: truncated capture: the file ends inside a packet record after {packets} complete packets", path.display())]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Complete packets read before the cut.
        packets: u64,
    },
    /// The pcap/pcapng structure is invalid.
    #[error("{}: invalid capture after {packets} packets: {source}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// Complete packets read before the error.
        packets: u64,
        /// The parser's error.
        #[source]
        source: pcap_file::PcapError,
    },
    /// The capture's link-layer type is not one the importer decodes.
    #[error("{}: link-layer type {linktype} is not supported (supported: Ethernet, Linux cooked SLL/SLL2, raw IP, BSD loopback)", path.display())]
    UnsupportedLinkType {
        /// The file.
        path: PathBuf,
        /// The link type as pcap names it (e.g. `IEEE802_11`).
        linktype: String,
    },
    /// The `--k8s-objects` file could not be read or parsed.
    #[error("{}: Kubernetes objects: {reason}", path.display())]
    K8sObjects {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Writing the capture failed.
    #[error(transparent)]
    Format(#[from] podtrace_format::FormatError),
}
