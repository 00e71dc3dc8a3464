//! Arrow schema v1 of the capture table, its column names and the file metadata keys.
//!
//! A capture is one table with one row per [`crate::Record`]; the `record_type` column says
//! which columns are meaningful. Columns that do not apply to a record type are null.
//! The full reference (types, meanings per record type) is `docs/capture-format.md`.
//!
//! Low-cardinality text columns are Arrow dictionaries (`Dictionary(Int32, Utf8)`), so that a
//! reader gets each distinct value once per batch (the record decoder parses an address once
//! per distinct value, not once per row). In the Parquet file every column except `ts_ns`,
//! `payload` and `k8s_json` is also dictionary-encoded; a Parquet reader that does not know
//! the Arrow schema (DuckDB, Spark) sees plain strings.

use std::sync::{Arc, OnceLock};

use arrow_schema::{DataType, Field, Schema, SchemaRef};

use crate::model::FileMeta;

/// Column names of schema v1, in column order.
pub mod col {
    /// `socket_data`, `socket_open`, `socket_close`, `k8s_object`, `stats`.
    pub const RECORD_TYPE: &str = "record_type";
    /// Wall-clock ns since the Unix epoch.
    pub const TS_NS: &str = "ts_ns";
    /// CPU the event was seen on (per-CPU counters too).
    pub const CPU: &str = "cpu";
    /// Process id (tgid), root pid namespace.
    pub const PID: &str = "pid";
    /// Thread id, root pid namespace.
    pub const TID: &str = "tid";
    /// Process name.
    pub const COMM: &str = "comm";
    /// cgroup v2 id of the process.
    pub const CGROUP_ID: &str = "cgroup_id";
    /// Connection key, stable for the socket's lifetime.
    pub const CONN_ID: &str = "conn_id";
    /// Address family: 2 (AF_INET) or 10 (AF_INET6).
    pub const FAMILY: &str = "family";
    /// Local IP address, textual.
    pub const LOCAL_ADDR: &str = "local_addr";
    /// Local port.
    pub const LOCAL_PORT: &str = "local_port";
    /// Remote IP address, textual.
    pub const REMOTE_ADDR: &str = "remote_addr";
    /// Remote port.
    pub const REMOTE_PORT: &str = "remote_port";
    /// `egress` / `ingress`.
    pub const DIRECTION: &str = "direction";
    /// `client` / `server` / `unknown`.
    pub const ROLE: &str = "role";
    /// Syscall name.
    pub const SYSCALL: &str = "syscall";
    /// Bytes the syscall returned.
    pub const RET: &str = "ret";
    /// Captured payload length.
    pub const CAP_LEN: &str = "cap_len";
    /// Captured bytes.
    pub const PAYLOAD: &str = "payload";
    /// [`crate::flags`] bits.
    pub const FLAGS: &str = "flags";
    /// Kubernetes kind (`Pod`, `Service`, ...).
    pub const K8S_KIND: &str = "k8s_kind";
    /// metadata.uid
    pub const K8S_UID: &str = "k8s_uid";
    /// metadata.namespace
    pub const K8S_NAMESPACE: &str = "k8s_namespace";
    /// metadata.name
    pub const K8S_NAME: &str = "k8s_name";
    /// `snapshot` / `added` / `modified` / `deleted`.
    pub const K8S_EVENT: &str = "k8s_event";
    /// The object as JSON.
    pub const K8S_JSON: &str = "k8s_json";
    /// Counter name.
    pub const STAT_NAME: &str = "stat_name";
    /// Counter value.
    pub const STAT_VALUE: &str = "stat_value";

    /// Every column of schema v1, in order.
    pub const ALL: [&str; 28] = [
        RECORD_TYPE,
        TS_NS,
        CPU,
        PID,
        TID,
        COMM,
        CGROUP_ID,
        CONN_ID,
        FAMILY,
        LOCAL_ADDR,
        LOCAL_PORT,
        REMOTE_ADDR,
        REMOTE_PORT,
        DIRECTION,
        ROLE,
        SYSCALL,
        RET,
        CAP_LEN,
        PAYLOAD,
        FLAGS,
        K8S_KIND,
        K8S_UID,
        K8S_NAMESPACE,
        K8S_NAME,
        K8S_EVENT,
        K8S_JSON,
        STAT_NAME,
        STAT_VALUE,
    ];
}

/// Column indexes in [`schema()`]: each column's position in [`col::ALL`], found at compile
/// time (a name not in it does not compile).
pub(crate) mod idx {
    use super::col;

    /// The position of column `name` in [`col::ALL`].
    const fn of(name: &str) -> usize {
        let mut i = 0;
        while i < col::ALL.len() {
            if same(col::ALL[i].as_bytes(), name.as_bytes()) {
                return i;
            }
            i += 1;
        }
        panic!("not a column of col::ALL")
    }

    /// `a == b` (slice equality is not `const`).
    const fn same(a: &[u8], b: &[u8]) -> bool {
        if a.len() != b.len() {
            return false;
        }
        let mut i = 0;
        while i < a.len() {
            if a[i] != b[i] {
                return false;
            }
            i += 1;
        }
        true
    }

    pub const RECORD_TYPE: usize = of(col::RECORD_TYPE);
    pub const TS_NS: usize = of(col::TS_NS);
    pub const CPU: usize = of(col::CPU);
    pub const PID: usize = of(col::PID);
    pub const TID: usize = of(col::TID);
    pub const COMM: usize = of(col::COMM);
    pub const CGROUP_ID: usize = of(col::CGROUP_ID);
    pub const CONN_ID: usize = of(col::CONN_ID);
    pub const FAMILY: usize = of(col::FAMILY);
    pub const LOCAL_ADDR: usize = of(col::LOCAL_ADDR);
    pub const LOCAL_PORT: usize = of(col::LOCAL_PORT);
    pub const REMOTE_ADDR: usize = of(col::REMOTE_ADDR);
    pub const REMOTE_PORT: usize = of(col::REMOTE_PORT);
    pub const DIRECTION: usize = of(col::DIRECTION);
    pub const ROLE: usize = of(col::ROLE);
    pub const SYSCALL: usize = of(col::SYSCALL);
    pub const RET: usize = of(col::RET);
    pub const CAP_LEN: usize = of(col::CAP_LEN);
    pub const PAYLOAD: usize = of(col::PAYLOAD);
    pub const FLAGS: usize = of(col::FLAGS);
    pub const K8S_KIND: usize = of(col::K8S_KIND);
    pub const K8S_UID: usize = of(col::K8S_UID);
    pub const K8S_NAMESPACE: usize = of(col::K8S_NAMESPACE);
    pub const K8S_NAME: usize = of(col::K8S_NAME);
    pub const K8S_EVENT: usize = of(col::K8S_EVENT);
    pub const K8S_JSON: usize = of(col::K8S_JSON);
    pub const STAT_NAME: usize = of(col::STAT_NAME);
    pub const STAT_VALUE: usize = of(col::STAT_VALUE);
}

/// File key-value metadata keys (Parquet footer).
pub mod meta_key {
    /// Schema version of the file, `"1"`. Its presence marks a podtrace capture.
    pub const SCHEMA_VERSION: &str = "podtrace.schema_version";
    /// Node (host) name.
    pub const NODE: &str = "podtrace.node";
    /// Kernel release.
    pub const KERNEL: &str = "podtrace.kernel";
    /// Target description.
    pub const TARGET: &str = "podtrace.target";
    /// podtrace version that wrote the file.
    pub const RECORDER_VERSION: &str = "podtrace.recorder_version";
    /// Offset from the kernel's monotonic clock to wall-clock ns (signed decimal).
    pub const BOOT_TIME_OFFSET_NS: &str = "podtrace.boot_time_offset_ns";
    /// Smallest `ts_ns` in the file (decimal), when the file has rows.
    pub const START_NS: &str = "podtrace.start_ns";
    /// Largest `ts_ns` in the file (decimal), when the file has rows.
    pub const END_NS: &str = "podtrace.end_ns";
    /// Prefix of every podtrace key; [`crate::FileMeta::extra`] keys are written after it.
    pub const PREFIX: &str = "podtrace.";
}

/// The dictionary type used for low-cardinality text columns.
pub fn dict_utf8() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
}

/// The Arrow schema v1 of a capture (shared, built once).
pub fn schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            use DataType::*;
            let d = dict_utf8;
            Arc::new(Schema::new(vec![
                Field::new(col::RECORD_TYPE, d(), false),
                Field::new(col::TS_NS, UInt64, false),
                Field::new(col::CPU, UInt32, true),
                Field::new(col::PID, UInt32, true),
                Field::new(col::TID, UInt32, true),
                Field::new(col::COMM, d(), true),
                Field::new(col::CGROUP_ID, UInt64, true),
                Field::new(col::CONN_ID, UInt64, true),
                Field::new(col::FAMILY, UInt8, true),
                Field::new(col::LOCAL_ADDR, d(), true),
                Field::new(col::LOCAL_PORT, UInt16, true),
                Field::new(col::REMOTE_ADDR, d(), true),
                Field::new(col::REMOTE_PORT, UInt16, true),
                Field::new(col::DIRECTION, d(), true),
                Field::new(col::ROLE, d(), true),
                Field::new(col::SYSCALL, d(), true),
                Field::new(col::RET, Int64, true),
                Field::new(col::CAP_LEN, UInt32, true),
                Field::new(col::PAYLOAD, Binary, true),
                Field::new(col::FLAGS, UInt32, true),
                Field::new(col::K8S_KIND, d(), true),
                Field::new(col::K8S_UID, Utf8, true),
                Field::new(col::K8S_NAMESPACE, d(), true),
                Field::new(col::K8S_NAME, Utf8, true),
                Field::new(col::K8S_EVENT, d(), true),
                Field::new(col::K8S_JSON, Utf8, true),
                Field::new(col::STAT_NAME, d(), true),
                Field::new(col::STAT_VALUE, UInt64, true),
            ]))
        })
        .clone()
}

/// Key-value metadata for a file: the standard keys, then `extra` as `podtrace.<key>`.
pub fn file_meta_to_kv(meta: &FileMeta) -> Vec<(String, String)> {
    let mut kv = vec![
        (
            meta_key::SCHEMA_VERSION.to_string(),
            crate::SCHEMA_VERSION.to_string(),
        ),
        (meta_key::NODE.to_string(), meta.node.clone()),
        (meta_key::KERNEL.to_string(), meta.kernel.clone()),
        (meta_key::TARGET.to_string(), meta.target.clone()),
        (
            meta_key::RECORDER_VERSION.to_string(),
            meta.recorder_version.clone(),
        ),
        (
            meta_key::BOOT_TIME_OFFSET_NS.to_string(),
            meta.boot_time_offset_ns.to_string(),
        ),
    ];
    for (k, v) in &meta.extra {
        let key = if k.starts_with(meta_key::PREFIX) {
            k.clone()
        } else {
            format!("{}{k}", meta_key::PREFIX)
        };
        kv.push((key, v.clone()));
    }
    kv
}

/// Rebuilds [`FileMeta`] from key-value metadata (the inverse of [`file_meta_to_kv`]):
/// unknown `podtrace.*` keys go to `extra` without the prefix; the schema version and
/// start/end keys, and keys of other writers (`ARROW:schema`), are not part of it.
pub fn file_meta_from_kv<'a>(kv: impl IntoIterator<Item = (&'a str, &'a str)>) -> FileMeta {
    let mut meta = FileMeta::default();
    for (k, v) in kv {
        match k {
            meta_key::NODE => meta.node = v.to_string(),
            meta_key::KERNEL => meta.kernel = v.to_string(),
            meta_key::TARGET => meta.target = v.to_string(),
            meta_key::RECORDER_VERSION => meta.recorder_version = v.to_string(),
            meta_key::BOOT_TIME_OFFSET_NS => meta.boot_time_offset_ns = v.parse().unwrap_or(0),
            meta_key::SCHEMA_VERSION | meta_key::START_NS | meta_key::END_NS => {}
            _ => {
                if let Some(rest) = k.strip_prefix(meta_key::PREFIX) {
                    meta.extra.push((rest.to_string(), v.to_string()));
                }
            }
        }
    }
    meta
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_constants_match_schema_order() {
        let s = schema();
        let names: Vec<&str> = s.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, col::ALL);
        for (i, name) in [
            (idx::RECORD_TYPE, col::RECORD_TYPE),
            (idx::TS_NS, col::TS_NS),
            (idx::CPU, col::CPU),
            (idx::PID, col::PID),
            (idx::TID, col::TID),
            (idx::COMM, col::COMM),
            (idx::CGROUP_ID, col::CGROUP_ID),
            (idx::CONN_ID, col::CONN_ID),
            (idx::FAMILY, col::FAMILY),
            (idx::LOCAL_ADDR, col::LOCAL_ADDR),
            (idx::LOCAL_PORT, col::LOCAL_PORT),
            (idx::REMOTE_ADDR, col::REMOTE_ADDR),
            (idx::REMOTE_PORT, col::REMOTE_PORT),
            (idx::DIRECTION, col::DIRECTION),
            (idx::ROLE, col::ROLE),
            (idx::SYSCALL, col::SYSCALL),
            (idx::RET, col::RET),
            (idx::CAP_LEN, col::CAP_LEN),
            (idx::PAYLOAD, col::PAYLOAD),
            (idx::FLAGS, col::FLAGS),
            (idx::K8S_KIND, col::K8S_KIND),
            (idx::K8S_UID, col::K8S_UID),
            (idx::K8S_NAMESPACE, col::K8S_NAMESPACE),
            (idx::K8S_NAME, col::K8S_NAME),
            (idx::K8S_EVENT, col::K8S_EVENT),
            (idx::K8S_JSON, col::K8S_JSON),
            (idx::STAT_NAME, col::STAT_NAME),
            (idx::STAT_VALUE, col::STAT_VALUE),
        ] {
            assert_eq!(s.field(i).name(), name);
        }
    }

    #[test]
    fn file_meta_kv_roundtrip() {
        let meta = FileMeta {
            node: "n1".into(),
            kernel: "6.8.0".into(),
            target: "pod demo/frontend".into(),
            recorder_version: "0.1.0".into(),
            boot_time_offset_ns: -42,
            extra: vec![("snaplen".into(), "4096".into())],
        };
        let kv = file_meta_to_kv(&meta);
        assert!(kv.contains(&("podtrace.snaplen".into(), "4096".into())));
        let back = file_meta_from_kv(kv.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        assert_eq!(back, meta);
    }
}
