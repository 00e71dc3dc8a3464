//! # podtrace-format — the capture file
//!
//! A capture is a zstd-compressed Parquet file (schema v1) holding everything a recording
//! saw: socket data, connection boundaries, Kubernetes objects and counters, one table with
//! a `record_type` column. This crate owns the schema, the streaming writer and the reader.
//! It does not know how rows are produced (recorder, pcap import) or used (analyzer).
//!
//! The full column reference is `docs/capture-format.md`.

pub mod model;

pub use model::*;

/// The schema version this crate writes and reads (`podtrace.schema_version`).
pub const SCHEMA_VERSION: u32 = 1;
