//! Decoding one row group: statistics pruning, projection, the cast to schema v1, row
//! filters, and batches → [`Record`]s.

use super::*;

/// Could row group `rg` hold rows `opts` wants? (From its statistics; `true` if unknown.)
pub(super) fn row_group_may_match(f: &CaptureFile, rg: usize, opts: &ReadOptions) -> bool {
    let meta = f.arrow.metadata().row_group(rg);
    if let Some((start, end)) = opts.time_range {
        if start >= end {
            return false;
        }
        if let Some((min, max)) = stats_bytes(meta, f.ts_leaf) {
            if let (Ok(min), Ok(max)) = (<[u8; 8]>::try_from(min), <[u8; 8]>::try_from(max)) {
                let (min, max) = (u64::from_le_bytes(min), u64::from_le_bytes(max));
                if max < start || min >= end {
                    return false;
                }
            }
        }
    }
    if let Some(types) = &opts.record_types {
        if let Some((min, max)) = stats_bytes(meta, f.rt_leaf) {
            let hit = types.iter().any(|t| {
                let s = t.as_str().as_bytes();
                min <= s && s <= max
            });
            if !hit {
                return false;
            }
        }
    }
    true
}

fn stats_bytes(rg: &RowGroupMetaData, leaf: usize) -> Option<(&[u8], &[u8])> {
    let stats = rg.column(leaf).statistics()?;
    Some((stats.min_bytes_opt()?, stats.max_bytes_opt()?))
}

/// Reads one row group: projected, cast to schema v1 if needed, filtered.
///
/// Columns that the row group's statistics show to be entirely null (the `k8s_*` columns of
/// a row group of socket rows, ...) are not decoded but made as null arrays: cheaper, and
/// the parquet reader is slow on all-null dictionary columns.
pub(super) fn decode_row_group(
    f: &CaptureFile,
    rg: usize,
    opts: &ReadOptions,
) -> Result<Vec<RecordBatch>> {
    let file = File::open(&f.path).map_err(|e| FormatError::io(&f.path, e))?;
    let target = read_schema(opts.payload);
    let arrow_schema = f.arrow.schema();
    let descr = f.arrow.parquet_schema();
    let rg_meta = f.arrow.metadata().row_group(rg);
    let rows = rg_meta.num_rows().max(0) as u64;
    let all_null = |root: usize| {
        let mut leaves = (0..descr.num_columns()).filter(|&l| descr.get_column_root_idx(l) == root);
        match (leaves.next(), leaves.next()) {
            (Some(leaf), None) => rg_meta
                .column(leaf)
                .statistics()
                .and_then(|s| s.null_count_opt())
                .is_some_and(|nulls| rows > 0 && nulls == rows),
            _ => false,
        }
    };
    let mut roots = Vec::with_capacity(target.fields().len());
    let mut null_columns = Vec::new();
    for field in target.fields() {
        match arrow_schema.index_of(field.name()) {
            Ok(root) if all_null(root) => null_columns.push(field.name().as_str()),
            Ok(root) => roots.push(root),
            Err(_) => {}
        }
    }
    let mask = ProjectionMask::roots(descr, roots);
    let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(file, f.arrow.clone())
        .with_row_groups(vec![rg])
        .with_projection(mask)
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(|e| FormatError::corrupt(&f.path, format!("row group {rg}: {e}")))?;
    let mut out = Vec::new();
    let exact = !f.needs_cast && null_columns.is_empty();
    for batch in reader {
        let batch =
            batch.map_err(|e| FormatError::corrupt(&f.path, format!("row group {rg}: {e}")))?;
        let batch = conform(&f.path, batch, &target, exact, &null_columns)?;
        let batch = filter_rows(batch, opts)
            .map_err(|e| FormatError::corrupt(&f.path, format!("row group {rg}: {e}")))?;
        if batch.num_rows() > 0 {
            out.push(batch);
        }
    }
    Ok(out)
}

/// Gives `batch` exactly the `target` schema (column order and types): when the batch is
/// not already `exact`, looks columns up by name, casts them, and makes `nulls` columns.
fn conform(
    path: &Path,
    batch: RecordBatch,
    target: &SchemaRef,
    exact: bool,
    nulls: &[&str],
) -> Result<RecordBatch> {
    let columns: Vec<ArrayRef> = if exact {
        batch.columns().to_vec()
    } else {
        let mut cols = Vec::with_capacity(target.fields().len());
        for field in target.fields() {
            let Some(c) = batch.column_by_name(field.name()) else {
                if nulls.contains(&field.name().as_str()) {
                    cols.push(arrow_array::new_null_array(
                        field.data_type(),
                        batch.num_rows(),
                    ));
                    continue;
                }
                return Err(FormatError::corrupt(
                    path,
                    format!("column {} not decoded", field.name()),
                ));
            };
            let c = if c.data_type() == field.data_type() {
                c.clone()
            } else {
                arrow::compute::cast(c, field.data_type()).map_err(|e| {
                    FormatError::WrongSchema {
                        path: path.to_path_buf(),
                        reason: format!("column {}: {e}", field.name()),
                    }
                })?
            };
            cols.push(c);
        }
        cols
    };
    RecordBatch::try_new(target.clone(), columns)
        .map_err(|e| FormatError::corrupt(path, format!("decoded batch: {e}")))
}

/// Drops the rows `opts` does not want.
fn filter_rows(
    batch: RecordBatch,
    opts: &ReadOptions,
) -> std::result::Result<RecordBatch, arrow_schema::ArrowError> {
    if opts.record_types.is_none() && opts.time_range.is_none() {
        return Ok(batch);
    }
    let n = batch.num_rows();
    let mut keep = vec![true; n];
    if opts.record_types.is_some() {
        let rt = batch
            .column(schema::idx::RECORD_TYPE)
            .as_dictionary::<Int32Type>();
        let values = rt.values().as_string::<i32>();
        let wanted: Vec<bool> = (0..values.len())
            .map(|i| RecordType::parse(values.value(i)).is_some_and(|t| opts.wants_type(t)))
            .collect();
        for (k, key) in keep.iter_mut().zip(rt.keys().values().iter()) {
            *k &= wanted.get(*key as usize).copied().unwrap_or(false);
        }
    }
    if let Some((start, end)) = opts.time_range {
        let ts = batch
            .column(schema::idx::TS_NS)
            .as_primitive::<UInt64Type>();
        for (k, t) in keep.iter_mut().zip(ts.values().iter()) {
            *k &= start <= *t && *t < end;
        }
    }
    if keep.iter().all(|k| *k) {
        return Ok(batch);
    }
    arrow::compute::filter_record_batch(&batch, &BooleanArray::from(keep))
}

/// A dictionary string column: keys and values, for per-row lookups without hashing.
struct Dict<'a> {
    keys: &'a arrow_array::PrimitiveArray<Int32Type>,
    values: &'a StringArray,
}

/// A [`Dict`]'s values as shared strings, made once per batch: a row's value is then one
/// reference count increment.
struct SharedDict<'a> {
    dict: Dict<'a>,
    shared: Vec<std::sync::Arc<str>>,
}

impl<'a> SharedDict<'a> {
    fn new(batch: &'a RecordBatch, name: &str) -> Result<SharedDict<'a>> {
        let dict = Dict::new(batch, name)?;
        let shared = dict.map(|v: &str| std::sync::Arc::from(v));
        Ok(SharedDict { dict, shared })
    }
    /// The value at row `i` ("" if null).
    #[inline]
    fn shared(&self, i: usize) -> std::sync::Arc<str> {
        match self.dict.get(i) {
            Some(k) => self.shared[k].clone(),
            None => std::sync::Arc::from(""),
        }
    }
}

impl<'a> Dict<'a> {
    fn new(batch: &'a RecordBatch, name: &str) -> Result<Dict<'a>> {
        let a: &DictionaryArray<Int32Type> = column(batch, name)?
            .as_dictionary_opt::<Int32Type>()
            .ok_or_else(|| type_error(name))?;
        let values = a
            .values()
            .as_string_opt::<i32>()
            .ok_or_else(|| type_error(name))?;
        Ok(Dict {
            keys: a.keys(),
            values,
        })
    }
    /// The value at row `i`, `None` if null or if the key is out of range.
    #[inline]
    fn get(&self, i: usize) -> Option<usize> {
        if self.keys.is_null(i) {
            return None;
        }
        let k = self.keys.value(i) as usize;
        (k < self.values.len()).then_some(k)
    }
    /// Maps each distinct value once.
    fn map<T>(&self, f: impl Fn(&str) -> T) -> Vec<T> {
        (0..self.values.len())
            .map(|i| f(self.values.value(i)))
            .collect()
    }
    #[inline]
    fn string(&self, i: usize) -> String {
        self.get(i)
            .map(|k| self.values.value(k).to_string())
            .unwrap_or_default()
    }
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef> {
    batch
        .column_by_name(name)
        .ok_or_else(|| FormatError::Batch(format!("no column {name}")))
}

fn type_error(name: &str) -> FormatError {
    FormatError::Batch(format!("column {name} has an unexpected type"))
}

macro_rules! prim {
    ($batch:expr, $name:expr, $t:ty) => {
        column($batch, $name)?
            .as_primitive_opt::<$t>()
            .ok_or_else(|| type_error($name))?
    };
}

/// Converts a batch of [`read_schema`] (with or without `payload`) to [`Record`]s. Nulls in
/// columns a record type needs read as zero / empty.
pub fn batch_to_records(batch: &RecordBatch) -> Result<Vec<Record>> {
    let mut out = Vec::new();
    append_records(batch, &mut out)?;
    Ok(out)
}

/// [`batch_to_records`] appending to `out` (a row group's batches go into one list sized
/// for all of them, instead of each batch's list being copied into it). After an error
/// `out` may hold some of the batch's records.
pub(super) fn append_records(batch: &RecordBatch, out: &mut Vec<Record>) -> Result<()> {
    let n = batch.num_rows();
    let rt = Dict::new(batch, col::RECORD_TYPE)?;
    let types: Vec<Option<RecordType>> = rt.map(RecordType::parse);
    let ts = prim!(batch, col::TS_NS, UInt64Type);
    let cpu = prim!(batch, col::CPU, UInt32Type);
    let pid = prim!(batch, col::PID, UInt32Type);
    let tid = prim!(batch, col::TID, UInt32Type);
    let comm = SharedDict::new(batch, col::COMM)?;
    let cgroup = prim!(batch, col::CGROUP_ID, UInt64Type);
    let conn = prim!(batch, col::CONN_ID, UInt64Type);
    let _family = prim!(batch, col::FAMILY, UInt8Type);
    let laddr = Dict::new(batch, col::LOCAL_ADDR)?;
    let lips: Vec<Option<IpAddr>> = laddr.map(|s| s.parse().ok());
    let lport = prim!(batch, col::LOCAL_PORT, UInt16Type);
    let raddr = Dict::new(batch, col::REMOTE_ADDR)?;
    let rips: Vec<Option<IpAddr>> = raddr.map(|s| s.parse().ok());
    let rport = prim!(batch, col::REMOTE_PORT, UInt16Type);
    let dir = Dict::new(batch, col::DIRECTION)?;
    let dirs: Vec<Option<Direction>> = dir.map(Direction::parse);
    let role = Dict::new(batch, col::ROLE)?;
    let roles: Vec<Option<Role>> = role.map(Role::parse);
    let syscall = SharedDict::new(batch, col::SYSCALL)?;
    let ret = prim!(batch, col::RET, Int64Type);
    let payload = match batch.column_by_name(col::PAYLOAD) {
        Some(p) => Some(
            p.as_binary_opt::<i32>()
                .ok_or_else(|| type_error(col::PAYLOAD))?,
        ),
        None => None,
    };
    let flags = prim!(batch, col::FLAGS, UInt32Type);
    let kind = Dict::new(batch, col::K8S_KIND)?;
    let uid = column(batch, col::K8S_UID)?
        .as_string_opt::<i32>()
        .ok_or_else(|| type_error(col::K8S_UID))?;
    let ns = Dict::new(batch, col::K8S_NAMESPACE)?;
    let name = column(batch, col::K8S_NAME)?
        .as_string_opt::<i32>()
        .ok_or_else(|| type_error(col::K8S_NAME))?;
    let event = Dict::new(batch, col::K8S_EVENT)?;
    let events: Vec<Option<K8sEvent>> = event.map(K8sEvent::parse);
    let json = column(batch, col::K8S_JSON)?
        .as_string_opt::<i32>()
        .ok_or_else(|| type_error(col::K8S_JSON))?;
    let stat_name = Dict::new(batch, col::STAT_NAME)?;
    let stat_value = prim!(batch, col::STAT_VALUE, UInt64Type);

    let ip = |d: &Dict, ips: &[Option<IpAddr>], port: &arrow_array::UInt16Array, i: usize| {
        d.get(i)
            .and_then(|k| ips[k])
            .map(|ip| SocketAddr::new(ip, port.value(i)))
    };
    let meta = |i: usize| SocketMeta {
        ts_ns: ts.value(i),
        cpu: cpu.value(i),
        pid: pid.value(i),
        tid: tid.value(i),
        comm: comm.shared(i),
        cgroup_id: cgroup.value(i),
        conn_id: conn.value(i),
        local: ip(&laddr, &lips, lport, i),
        remote: ip(&raddr, &rips, rport, i),
    };
    let text = |a: &StringArray, i: usize| {
        if a.is_valid(i) {
            a.value(i).to_string()
        } else {
            String::new()
        }
    };

    out.reserve(n);
    for i in 0..n {
        let Some(t) = rt.get(i).and_then(|k| types[k]) else {
            return Err(FormatError::Batch(format!(
                "row {i}: unknown record_type {:?}",
                rt.get(i).map(|k| rt.values.value(k))
            )));
        };
        let rec = match t {
            RecordType::SocketData => Record::SocketData(SocketData {
                meta: meta(i),
                direction: dir
                    .get(i)
                    .and_then(|k| dirs[k])
                    .ok_or_else(|| FormatError::Batch(format!("row {i}: bad direction")))?,
                syscall: syscall.shared(i),
                ret: ret.value(i),
                payload: match payload {
                    Some(p) if p.is_valid(i) => p.value(i).to_vec(),
                    _ => Vec::new(),
                },
                flags: flags.value(i),
            }),
            RecordType::SocketOpen | RecordType::SocketClose => {
                let e = SocketEvent {
                    meta: meta(i),
                    role: role.get(i).and_then(|k| roles[k]).unwrap_or(Role::Unknown),
                    syscall: syscall.shared(i),
                };
                if t == RecordType::SocketOpen {
                    Record::SocketOpen(e)
                } else {
                    Record::SocketClose(e)
                }
            }
            RecordType::K8sObject => Record::K8sObject(K8sObject {
                ts_ns: ts.value(i),
                kind: kind.string(i),
                uid: text(uid, i),
                namespace: ns.string(i),
                name: text(name, i),
                event: event
                    .get(i)
                    .and_then(|k| events[k])
                    .ok_or_else(|| FormatError::Batch(format!("row {i}: bad k8s_event")))?,
                json: text(json, i),
            }),
            RecordType::Stats => Record::Stats(Stat {
                ts_ns: ts.value(i),
                cpu: cpu.is_valid(i).then(|| cpu.value(i)),
                name: stat_name.string(i),
                value: stat_value.value(i),
            }),
        };
        out.push(rec);
    }
    Ok(())
}
