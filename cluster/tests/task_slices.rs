//! Why `analyze --cluster` failed on large jobs, and why it no longer does
//! (docs/scale-out.md, "Large jobs failed: the cause (fixed)").
//!
//! Ballista 55's scheduler cuts each stage plan down to one task's partitions before it
//! ships it (`restrict_plan_to_partitions`, ballista-scheduler `state/task_builder.rs`),
//! but only through leaves it knows. A leaf of another kind keeps all its partitions, so
//! the task runs every one of them, and the passthrough `ShuffleWriterExec` names their
//! files by the task's slice (`slice.get(local).unwrap_or(local)`): two of them get the
//! same `data-{task}.arrow`, written at once by two drains. The first test reproduces
//! that with a trivial leaf; the second checks that `ExchangeScanExec`, whose leaf is a
//! stock in-memory scan of its group numbers, is cut to exactly the task's groups, ships
//! through the codec, and writes one file per group holding that group's rows only.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::ipc::reader::StreamReader;
use arrow_array::{Array, BinaryArray, RecordBatch, StringArray, UInt32Array, UInt64Array};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use ballista_core::execution_plans::ShuffleWriterExec;
use ballista_core::JobId;
use ballista_scheduler::state::task_builder::restrict_plan_to_partitions;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchReceiverStreamBuilder;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    SendableRecordBatchStream,
};
use datafusion_proto::physical_plan::AsExecutionPlan;
use datafusion_proto::protobuf::PhysicalPlanNode;
use futures::TryStreamExt;
use podtrace_analyzer::pipeline::parts::{FrontGroup, FrontJob, FrontOptions};
use podtrace_analyzer::AnalyzeOptions;
use podtrace_cluster::codec::PodtraceCodec;
use podtrace_cluster::plan::ExchangeScanExec;
use podtrace_format::{CaptureWriter, FileMeta, WriterOptions};

/// A leaf of its own kind (as `ExchangeScanExec` was): partition `p` is `rows` batches
/// of one row (`part` = p, `i`, `payload`: `size + p * 4099` bytes of `i + p * 64`).
#[derive(Debug)]
struct OwnLeaf {
    rows: usize,
    size: usize,
    properties: Arc<PlanProperties>,
}

impl OwnLeaf {
    fn new(partitions: usize, rows: usize, size: usize) -> Self {
        OwnLeaf {
            rows,
            size,
            properties: Arc::new(PlanProperties::new(
                EquivalenceProperties::new(Self::schema()),
                Partitioning::UnknownPartitioning(partitions),
                EmissionType::Incremental,
                Boundedness::Bounded,
            )),
        }
    }

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("part", DataType::UInt32, false),
            Field::new("i", DataType::UInt64, false),
            Field::new("payload", DataType::Binary, false),
        ]))
    }
}

impl DisplayAs for OwnLeaf {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "OwnLeaf")
    }
}

impl ExecutionPlan for OwnLeaf {
    fn name(&self) -> &str {
        "OwnLeaf"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let mut builder = RecordBatchReceiverStreamBuilder::new(Self::schema(), 1);
        let tx = builder.tx();
        let (rows, size) = (self.rows, self.size + partition * 4099);
        builder.spawn(async move {
            for i in 0..rows {
                let byte = (i + partition * 64) as u8;
                let batch = RecordBatch::try_new(
                    Self::schema(),
                    vec![
                        Arc::new(UInt32Array::from(vec![partition as u32])),
                        Arc::new(UInt64Array::from(vec![i as u64])),
                        Arc::new(BinaryArray::from_iter_values([vec![byte; size]])),
                    ],
                )?;
                if tx.send(Ok(batch)).await.is_err() {
                    break;
                }
                // Let the other partition's drain write in between.
                tokio::task::yield_now().await;
            }
            Ok(())
        });
        Ok(builder.build())
    }
}

/// Runs every output partition of `writer` at once (as the executor does) and returns
/// the files its summaries name, one per summary row.
async fn write_all(writer: Arc<ShuffleWriterExec>) -> Result<Vec<(u32, PathBuf)>> {
    let ctx = Arc::new(TaskContext::default());
    let n = writer.properties().output_partitioning().partition_count();
    let streams = (0..n)
        .map(|k| writer.execute(k, ctx.clone()))
        .collect::<Result<Vec<_>>>()?;
    let batches = futures::future::try_join_all(
        streams
            .into_iter()
            .map(|s| s.try_collect::<Vec<RecordBatch>>()),
    )
    .await?;
    let mut files = Vec::new();
    for batch in batches.iter().flatten() {
        let part = column::<UInt32Array>(batch, 0)?;
        let path = column::<StringArray>(batch, 1)?;
        for row in 0..batch.num_rows() {
            files.push((part.value(row), PathBuf::from(path.value(row))));
        }
    }
    files.sort();
    Ok(files)
}

fn column<T: Array + 'static>(batch: &RecordBatch, i: usize) -> Result<&T> {
    batch
        .column(i)
        .as_any()
        .downcast_ref::<T>()
        .ok_or_else(|| DataFusionError::Internal(format!("column {i}: another type")))
}

/// The record batches of a shuffle file (Arrow IPC stream).
fn read_ipc(path: &Path) -> std::result::Result<Vec<RecordBatch>, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let reader =
        StreamReader::try_new(std::io::BufReader::new(file), None).map_err(|e| e.to_string())?;
    reader
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())
}

fn partitions(plan: &Arc<dyn ExecutionPlan>) -> usize {
    plan.properties().output_partitioning().partition_count()
}

/// Upstream behaviour (Ballista 55.0), the cause of the failures: a task of a stage
/// whose leaf Ballista does not know runs every partition, and its shuffle writer
/// sends two of them to one file. If this test fails, Ballista changed here: check
/// whether `ExchangeScanExec`'s in-memory group source is still needed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ballista_runs_a_whole_unknown_leaf_in_every_task_and_two_partitions_share_a_file() {
    let leaf: Arc<dyn ExecutionPlan> = Arc::new(OwnLeaf::new(2, 8, 256 * 1024));
    // The task of partition 1 of a two-partition stage.
    let restricted = restrict_plan_to_partitions(leaf, &[1]).expect("restrict");
    assert_eq!(
        partitions(&restricted),
        2,
        "Ballista now restricts a leaf of its own kind to the task's partitions"
    );
    let work = tempfile::tempdir().expect("tempdir");
    let writer = ShuffleWriterExec::try_new(
        JobId::new("own-leaf"),
        1,
        restricted,
        work.path().to_string_lossy().into_owned(),
    )
    .expect("writer")
    .with_task_id(1)
    .with_global_output_partition_ids(vec![1]);
    let files = write_all(Arc::new(writer)).await.expect("shuffle write");
    // Local partition 0 is named by the slice (global 1), local partition 1 falls back
    // to its local index (1): one path for both.
    let want = work.path().join("own-leaf/1/1/data-1.arrow");
    assert_eq!(files, vec![(1, want.clone()), (1, want.clone())]);
    // Two writers truncated and wrote the same file, each from offset 0: it holds at
    // most one partition's worth of rows (8 of the 16), or does not decode at all.
    match read_ipc(&want) {
        Ok(batches) => {
            let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
            assert!(rows < 16, "both partitions' rows in one file: {rows}");
            eprintln!("the shared shuffle file decodes to {rows} of the 16 rows written");
        }
        Err(e) => eprintln!("the shared shuffle file does not decode: {e}"),
    }
}

/// Empty captures, one per group, and a job over them (one batch, no rows): each
/// group's front emits exactly one message, its final one.
fn job(dir: &Path, groups: usize) -> FrontJob {
    let groups = (0..groups)
        .map(|g| {
            let path = dir.join(format!("node-{g}.parquet"));
            let meta = FileMeta {
                node: format!("node-{g}"),
                ..FileMeta::default()
            };
            let w = CaptureWriter::create(&path, meta, WriterOptions::default()).expect("create");
            w.finish().expect("finish");
            FrontGroup {
                node: format!("node-{g}"),
                paths: vec![path],
                rows: vec![],
            }
        })
        .collect();
    FrontJob::new(
        FrontOptions::of(&AnalyzeOptions::default()),
        vec![0],
        groups,
    )
}

/// The fix: `ExchangeScanExec` restricted to a task's slice has exactly the slice's
/// partitions, survives the scheduler → executor encoding, and the task's shuffle
/// writer writes one file per group in the slice, holding that group's rows only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_runs_exactly_its_groups_each_into_its_own_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let plan: Arc<dyn ExecutionPlan> =
        Arc::new(ExchangeScanExec::new(job(tmp.path(), 5)).expect("plan"));
    assert_eq!(partitions(&plan), 5);
    let codec = PodtraceCodec::shared();
    for (task, slice) in [
        (3usize, vec![3usize]),
        (0, vec![0]),
        (7, vec![1, 4]),
        (9, vec![0, 1, 2, 3, 4]),
    ] {
        // What the scheduler does for the task, then the executor.
        let restricted = restrict_plan_to_partitions(plan.clone(), &slice).expect("restrict");
        assert_eq!(partitions(&restricted), slice.len(), "slice {slice:?}");
        let mut bytes = Vec::new();
        PhysicalPlanNode::try_from_physical_plan(restricted, codec.as_ref())
            .and_then(|node| node.try_encode(&mut bytes))
            .expect("encode");
        let shipped = PhysicalPlanNode::try_decode(&bytes)
            .and_then(|node| node.try_into_physical_plan(&TaskContext::default(), codec.as_ref()))
            .expect("decode");
        assert!(shipped.is::<ExchangeScanExec>());
        assert_eq!(partitions(&shipped), slice.len(), "slice {slice:?} shipped");

        let work = tmp.path().join(format!("work-{task}"));
        let writer = ShuffleWriterExec::try_new(
            JobId::new("front"),
            1,
            shipped,
            work.to_string_lossy().into_owned(),
        )
        .expect("writer")
        .with_task_id(task)
        .with_global_output_partition_ids(slice.clone());
        let files = write_all(Arc::new(writer)).await.expect("shuffle write");
        let want: Vec<(u32, PathBuf)> = slice
            .iter()
            .map(|&g| {
                (
                    g as u32,
                    work.join(format!("front/1/{g}/data-{task}.arrow")),
                )
            })
            .collect();
        assert_eq!(files, want, "slice {slice:?}");
        for (g, path) in &files {
            let batches = read_ipc(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let mut got = Vec::new();
            for b in &batches {
                let group = column::<UInt32Array>(b, 0).expect("group");
                let seq = column::<UInt64Array>(b, 1).expect("seq");
                for row in 0..b.num_rows() {
                    got.push((group.value(row), seq.value(row)));
                }
            }
            assert_eq!(got, vec![(*g, 0)], "{}", path.display());
        }
    }
}
