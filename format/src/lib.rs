//! # podtrace-format — the capture file
//!
//! A capture is a zstd-compressed Parquet file (schema v1) holding everything a recording
//! saw: socket data, connection boundaries, Kubernetes objects and counters, one table with
//! a `record_type` column. This crate owns the schema, the streaming writer and the reader.
//! It does not know how rows are produced (recorder, pcap import) or used (analyzer).
//!
//! - [`schema`]: the Arrow schema v1, column names ([`col`]), metadata keys ([`meta_key`]).
//! - [`writer`]: [`CaptureWriter`], row groups by rows / bytes / time, rotation, and a
//!   sidecar footer log ([`sidecar`]) so that a SIGKILLed writer leaves a readable file
//!   ([`repair`] makes it a complete Parquet file).
//! - [`reader`]: [`CaptureReader`] over files, directories and globs, row groups decoded in
//!   parallel, payload projection and record-type / time filters.
//! - [`inspect`]: the summary `podtrace inspect` prints.
//! - [`k8s`]: Kubernetes objects from `kubectl get ... -o json` output.
//!
//! ```
//! use podtrace_format::*;
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("cap.parquet");
//! let mut w = CaptureWriter::create(&path, FileMeta::default(), WriterOptions::default()).unwrap();
//! w.write(&Record::Stats(Stat { ts_ns: 5, cpu: Some(0), name: "events_seen".into(), value: 1 })).unwrap();
//! w.finish().unwrap();
//!
//! let capture = CaptureReader::open(&[&path]).unwrap();
//! for record in capture.records(&ReadOptions::default()) {
//!     assert_eq!(record.unwrap().ts_ns(), 5);
//! }
//! ```
//!
//! The full column reference is `docs/capture-format.md`.

#![warn(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)
)]

pub mod error;
pub mod inspect;
pub mod k8s;
pub mod model;
pub mod nodes;
pub mod reader;
pub mod schema;
pub mod sidecar;
pub mod writer;

pub use error::{FormatError, Result};
pub use inspect::{inspect, InspectFile, InspectSummary};
pub use model::*;
pub use reader::{
    batch_to_records, read_schema, Batches, CaptureFile, CaptureReader, ReadOptions, Records,
};
pub use schema::{col, meta_key, schema};
pub use sidecar::{repair, sidecar_path, Repaired};
pub use writer::{segment_path, CaptureWriter, WriteSummary, WriterOptions};

/// The schema version this crate writes and reads (`podtrace.schema_version`).
pub const SCHEMA_VERSION: u32 = 1;
