//! What a capture holds, at a glance (`podtrace inspect`): files, nodes, time range, rows per
//! record type, connections, pods, payload bytes, truncation and drop counters.
//!
//! Computed column-wise from the batches, without the payload column (its size comes from
//! `cap_len`), so inspecting a large capture reads a small part of it.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type, UInt32Type, UInt64Type};
use arrow_array::{Array, RecordBatch};
use serde::Serialize;

use crate::error::{FormatError, Result};
use crate::model::{flags, RecordType};
use crate::reader::{CaptureReader, ReadOptions};
use crate::schema::col;

/// Summary of a capture (serializable as JSON for `podtrace inspect --json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct InspectSummary {
    /// Newest schema version among the files.
    pub schema_version: u32,
    /// Per file.
    pub files: Vec<InspectFile>,
    /// Distinct node names.
    pub nodes: Vec<String>,
    /// Smallest `ts_ns` of any row.
    pub start_ns: Option<u64>,
    /// Largest `ts_ns` of any row.
    pub end_ns: Option<u64>,
    /// All rows.
    pub rows: u64,
    /// Rows per record type (every type listed, zero included).
    pub rows_by_type: BTreeMap<String, u64>,
    /// Distinct connections (`conn_id` per node) in socket rows.
    pub connections: u64,
    /// Pods seen in `k8s_object` rows, `namespace/name`.
    pub pods: Vec<String>,
    /// Namespaces of those pods.
    pub namespaces: Vec<String>,
    /// Payload bytes captured (sum of `cap_len`).
    pub payload_bytes: u64,
    /// Bytes the syscalls moved (sum of positive `ret` of `socket_data` rows).
    pub syscall_bytes: u64,
    /// `socket_data` rows whose payload was cut at the snaplen.
    pub truncated_rows: u64,
    /// Drop counters: latest value of each `stats` counter whose name starts with
    /// `events_dropped` or contains `drop`, summed over CPUs (and nodes).
    pub drops: BTreeMap<String, u64>,
}

/// One file of an [`InspectSummary`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct InspectFile {
    /// Path as opened.
    pub path: String,
    /// Node that recorded it.
    pub node: String,
    /// Rows.
    pub rows: u64,
    /// Row groups.
    pub row_groups: usize,
    /// Size in bytes.
    pub bytes: u64,
    /// Read through its sidecar footer (writer killed or still running).
    pub recovered: bool,
}

/// Is `name` a drop counter (something the capture lacks)?
pub fn is_drop_counter(name: &str) -> bool {
    name.starts_with("events_dropped")
        || name.contains("drop")
        || crate::model::counters::CAPTURE_LOSSES.contains(&name)
}

/// Summarises a capture, reading every file without its payload column.
pub fn inspect(reader: &CaptureReader) -> Result<InspectSummary> {
    let mut acc = Acc::default();
    let mut sum = InspectSummary::default();
    for (fi, file) in reader.files().iter().enumerate() {
        sum.schema_version = sum.schema_version.max(file.schema_version);
        sum.files.push(InspectFile {
            path: file.path.display().to_string(),
            node: file.meta.node.clone(),
            rows: file.rows,
            row_groups: file.row_groups,
            bytes: file.bytes,
            recovered: file.recovered,
        });
        let node = acc.node_index(&file.meta.node);
        let one = reader.subset(fi..fi + 1);
        for batch in one.batches(&ReadOptions::without_payload()) {
            acc.add(&batch?, node)?;
        }
    }
    sum.nodes = acc.nodes.clone();
    sum.start_ns = (acc.min_ts <= acc.max_ts).then_some(acc.min_ts);
    sum.end_ns = (acc.min_ts <= acc.max_ts).then_some(acc.max_ts);
    sum.rows = acc.by_type.iter().sum();
    sum.rows_by_type = RecordType::ALL
        .iter()
        .map(|t| (t.as_str().to_string(), acc.by_type[*t as usize]))
        .collect();
    sum.connections = acc.conns.len() as u64;
    sum.namespaces = acc
        .pods
        .iter()
        .map(|(ns, _)| ns.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    sum.pods = acc.pods.iter().map(|(ns, n)| format!("{ns}/{n}")).collect();
    sum.payload_bytes = acc.payload_bytes;
    sum.syscall_bytes = acc.syscall_bytes;
    sum.truncated_rows = acc.truncated;
    // Per (node, name): the per-CPU counters summed, or the total when there are none.
    let mut per_node: BTreeMap<(usize, &str), (u64, Option<u64>)> = BTreeMap::new();
    for ((node, name, cpu), (_, value)) in &acc.drops {
        let e = per_node.entry((*node, name.as_str())).or_default();
        match cpu {
            Some(_) => e.0 += value,
            None => e.1 = Some(*value),
        }
    }
    let has_cpu: HashSet<(usize, &str)> = acc
        .drops
        .keys()
        .filter(|(_, _, cpu)| cpu.is_some())
        .map(|(node, name, _)| (*node, name.as_str()))
        .collect();
    for ((node, name), (cpu_sum, total)) in per_node {
        let v = if has_cpu.contains(&(node, name)) {
            cpu_sum
        } else {
            total.unwrap_or(0)
        };
        *sum.drops.entry(name.to_string()).or_default() += v;
    }
    Ok(sum)
}

#[derive(Default)]
struct Acc {
    nodes: Vec<String>,
    min_ts: u64,
    max_ts: u64,
    by_type: [u64; 5],
    conns: HashSet<(usize, u64)>,
    pods: BTreeSet<(String, String)>,
    payload_bytes: u64,
    syscall_bytes: u64,
    truncated: u64,
    /// (node, counter, cpu) → (ts, value) of the latest reading.
    drops: HashMap<(usize, String, Option<u32>), (u64, u64)>,
}

impl Acc {
    fn node_index(&mut self, node: &str) -> usize {
        if self.nodes.is_empty() {
            self.min_ts = u64::MAX;
        }
        match self.nodes.iter().position(|n| n == node) {
            Some(i) => i,
            None => {
                self.nodes.push(node.to_string());
                self.nodes.len() - 1
            }
        }
    }

    fn add(&mut self, b: &RecordBatch, node: usize) -> Result<()> {
        let bad = |c: &str| FormatError::Batch(format!("column {c} missing or mistyped"));
        let get = |c: &'static str| b.column_by_name(c).ok_or_else(|| bad(c));
        let rt = get(col::RECORD_TYPE)?
            .as_dictionary_opt::<Int32Type>()
            .ok_or_else(|| bad(col::RECORD_TYPE))?;
        let rt_values = rt.values().as_string::<i32>();
        let types: Vec<Option<RecordType>> = (0..rt_values.len())
            .map(|i| RecordType::parse(rt_values.value(i)))
            .collect();
        let ts = get(col::TS_NS)?.as_primitive::<UInt64Type>();
        let conn = get(col::CONN_ID)?.as_primitive::<UInt64Type>();
        let ret = get(col::RET)?.as_primitive::<Int64Type>();
        let cap_len = get(col::CAP_LEN)?.as_primitive::<UInt32Type>();
        let flag = get(col::FLAGS)?.as_primitive::<UInt32Type>();
        let cpu = get(col::CPU)?.as_primitive::<UInt32Type>();
        let kind = get(col::K8S_KIND)?.as_dictionary::<Int32Type>();
        let kind_values = kind.values().as_string::<i32>();
        let ns = get(col::K8S_NAMESPACE)?.as_dictionary::<Int32Type>();
        let ns_values = ns.values().as_string::<i32>();
        let name = get(col::K8S_NAME)?.as_string::<i32>();
        let stat = get(col::STAT_NAME)?.as_dictionary::<Int32Type>();
        let stat_values = stat.values().as_string::<i32>();
        let value = get(col::STAT_VALUE)?.as_primitive::<UInt64Type>();
        let dict = |keys: &arrow_array::Int32Array, values: &Arc<dyn Array>, i: usize| {
            (keys.is_valid(i) && (keys.value(i) as usize) < values.len())
                .then(|| keys.value(i) as usize)
        };

        for i in 0..b.num_rows() {
            let Some(t) = dict(rt.keys(), rt.values(), i).and_then(|k| types[k]) else {
                continue;
            };
            self.by_type[t as usize] += 1;
            let t_ns = ts.value(i);
            self.min_ts = self.min_ts.min(t_ns);
            self.max_ts = self.max_ts.max(t_ns);
            match t {
                RecordType::SocketData => {
                    if conn.is_valid(i) {
                        self.conns.insert((node, conn.value(i)));
                    }
                    if cap_len.is_valid(i) {
                        self.payload_bytes =
                            self.payload_bytes.saturating_add(cap_len.value(i) as u64);
                    }
                    if ret.is_valid(i) && ret.value(i) > 0 {
                        // a hostile file's ret values may sum past u64: saturate, not wrap
                        self.syscall_bytes = self.syscall_bytes.saturating_add(ret.value(i) as u64);
                    }
                    if flag.is_valid(i) && flag.value(i) & flags::TRUNCATED != 0 {
                        self.truncated += 1;
                    }
                }
                RecordType::SocketOpen | RecordType::SocketClose => {
                    if conn.is_valid(i) {
                        self.conns.insert((node, conn.value(i)));
                    }
                }
                RecordType::K8sObject => {
                    let is_pod = dict(kind.keys(), kind.values(), i)
                        .is_some_and(|k| kind_values.value(k) == "Pod");
                    if is_pod && name.is_valid(i) {
                        let n = dict(ns.keys(), ns.values(), i)
                            .map(|k| ns_values.value(k))
                            .unwrap_or("");
                        self.pods.insert((n.to_string(), name.value(i).to_string()));
                    }
                }
                RecordType::Stats => {
                    let Some(k) = dict(stat.keys(), stat.values(), i) else {
                        continue;
                    };
                    let counter = stat_values.value(k);
                    if !is_drop_counter(counter) {
                        continue;
                    }
                    let c = cpu.is_valid(i).then(|| cpu.value(i));
                    let v = value.value(i);
                    let e = self
                        .drops
                        .entry((node, counter.to_string(), c))
                        .or_insert((t_ns, v));
                    if t_ns >= e.0 {
                        *e = (t_ns, v);
                    }
                }
            }
        }
        Ok(())
    }
}

/// `2026-11-26T06:07:08.123456789Z` from ns since the epoch.
pub fn format_ts(ns: u64) -> String {
    let secs = ns / 1_000_000_000;
    let (days, sod) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:09}Z",
        sod / 3600,
        sod / 60 % 60,
        sod % 60,
        ns % 1_000_000_000
    )
}

impl fmt::Display for InspectSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "capture: {} file(s), schema v{}, node(s): {}",
            self.files.len(),
            self.schema_version,
            if self.nodes.is_empty() {
                "-".to_string()
            } else {
                self.nodes.join(", ")
            }
        )?;
        match (self.start_ns, self.end_ns) {
            (Some(s), Some(e)) => writeln!(
                f,
                "time:  {} .. {} ({:.3} s)",
                format_ts(s),
                format_ts(e),
                (e - s) as f64 / 1e9
            )?,
            _ => writeln!(f, "time:  - (no rows)")?,
        }
        writeln!(f, "rows:  {}", self.rows)?;
        for (t, n) in &self.rows_by_type {
            writeln!(f, "  {t:<13} {n}")?;
        }
        writeln!(f, "connections: {}", self.connections)?;
        writeln!(f, "pods ({}): {}", self.pods.len(), list(&self.pods))?;
        writeln!(f, "namespaces: {}", list(&self.namespaces))?;
        writeln!(
            f,
            "payload: {} bytes captured of {} bytes transferred; {} truncated row(s)",
            self.payload_bytes, self.syscall_bytes, self.truncated_rows
        )?;
        if self.drops.is_empty() {
            writeln!(f, "drops: none recorded")?;
        } else {
            let d: Vec<String> = self.drops.iter().map(|(k, v)| format!("{k}={v}")).collect();
            writeln!(f, "drops: {}", d.join(", "))?;
        }
        writeln!(f, "files:")?;
        for file in &self.files {
            writeln!(
                f,
                "  {}  node={} rows={} row_groups={} bytes={}{}",
                file.path,
                file.node,
                file.rows,
                file.row_groups,
                file.bytes,
                if file.recovered {
                    "  (recovered from sidecar footer)"
                } else {
                    ""
                }
            )?;
        }
        Ok(())
    }
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "-".to_string()
    } else {
        items.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_format_as_utc() {
        assert_eq!(format_ts(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            format_ts(1_700_000_000_123_456_789),
            "2023-11-14T22:13:20.123456789Z"
        );
        assert_eq!(
            format_ts(951_782_400_000_000_000),
            "2000-02-29T00:00:00.000000000Z"
        );
    }

    #[test]
    fn drop_counter_names() {
        assert!(is_drop_counter("events_dropped_ringbuf_full"));
        assert!(is_drop_counter("payload_drops"));
        assert!(!is_drop_counter("events_seen"));
    }
}
