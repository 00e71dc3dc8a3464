//! `ExchangeScanExec`: stage (a) of docs/scale-out.md as a DataFusion execution plan. One
//! partition per capture group (one node's captures, read from paths every executor
//! sees): the analyzer's front over the group's records, cut into the local run's
//! batches (`podtrace_analyzer::pipeline::parts::run_front`). Its output is one row per
//! front message: `group` (UInt32), `seq` (UInt64, the message's position in the group)
//! and `message` (LargeBinary: the serialized `FrontMessage`, JSON with a version tag).

use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;

use arrow_array::{LargeBinaryArray, RecordBatch, UInt32Array, UInt64Array};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
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
use podtrace_analyzer::merge_by_time;
use podtrace_analyzer::pipeline::parts::{run_front, FrontJob, FrontRunError};
use podtrace_format::{CaptureReader, FormatError, ReadOptions};

/// Front messages per output batch at most (a message is one batch of 8,192 records'
/// parse results: up to a few MB of JSON).
const MESSAGES_PER_BATCH: usize = 4;

/// The output schema: one row per front message.
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("group", DataType::UInt32, false),
        Field::new("seq", DataType::UInt64, false),
        Field::new("message", DataType::LargeBinary, false),
    ]))
}

/// Stage (a): the front of each capture group (see the module doc).
#[derive(Debug)]
pub struct ExchangeScanExec {
    job: Arc<FrontJob>,
    properties: Arc<PlanProperties>,
}

impl ExchangeScanExec {
    /// The plan of `job`: one partition per group.
    pub fn new(job: FrontJob) -> Self {
        let partitions = job.groups.len().max(1);
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema()),
            Partitioning::UnknownPartitioning(partitions),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        ExchangeScanExec {
            job: Arc::new(job),
            properties: Arc::new(properties),
        }
    }

    /// The job the plan runs.
    pub fn job(&self) -> &FrontJob {
        &self.job
    }
}

impl DisplayAs for ExchangeScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "ExchangeScanExec: groups={}, batches={}",
            self.job.groups.len(),
            self.job.watermarks.len()
        )
    }
}

impl ExecutionPlan for ExchangeScanExec {
    fn name(&self) -> &str {
        "ExchangeScanExec"
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
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.is_empty() {
            Ok(self)
        } else {
            Err(DataFusionError::Plan(
                "ExchangeScanExec is a leaf: it takes no children".into(),
            ))
        }
    }

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if partition >= self.job.groups.len() {
            return Err(DataFusionError::Execution(format!(
                "ExchangeScanExec has {} partitions, not {}",
                self.job.groups.len(),
                partition + 1
            )));
        }
        let mut builder = RecordBatchReceiverStreamBuilder::new(schema(), 2);
        let tx = builder.tx();
        let job = self.job.clone();
        builder.spawn_blocking(move || {
            let mut pending: Vec<Vec<u8>> = Vec::new();
            let mut seq = 0u64;
            let group = partition as u32;
            let flush = |pending: &mut Vec<Vec<u8>>, seq: &mut u64| -> Result<()> {
                if pending.is_empty() {
                    return Ok(());
                }
                let n = pending.len();
                let batch = RecordBatch::try_new(
                    schema(),
                    vec![
                        Arc::new(UInt32Array::from(vec![group; n])),
                        Arc::new(UInt64Array::from_iter_values(*seq..*seq + n as u64)),
                        Arc::new(LargeBinaryArray::from_iter_values(pending.iter())),
                    ],
                )?;
                *seq += n as u64;
                pending.clear();
                tx.blocking_send(Ok(batch)).map_err(|_| {
                    DataFusionError::Execution("the consumer of ExchangeScanExec went away".into())
                })
            };
            run_group(&job, partition, |bytes| {
                pending.push(bytes);
                if pending.len() >= MESSAGES_PER_BATCH {
                    flush(&mut pending, &mut seq)?;
                }
                Ok(())
            })?;
            flush(&mut pending, &mut seq)
        });
        Ok(builder.build())
    }
}

/// Runs group `g` of `job`: reads its captures (merged by time), runs the front, hands
/// each serialized message to `emit`. A capture that cannot be read, or that does not
/// match the plan, is an error naming the group's node.
pub fn run_group(
    job: &FrontJob,
    g: usize,
    mut emit: impl FnMut(Vec<u8>) -> Result<()>,
) -> Result<()> {
    job.check_version()
        .map_err(|e| DataFusionError::Execution(e.to_string()))?;
    let group = job
        .groups
        .get(g)
        .ok_or_else(|| DataFusionError::Execution(format!("no capture group {g}")))?;
    let err = |what: String| DataFusionError::Execution(format!("node {}: {what}", group.node));
    let reader = CaptureReader::open(&group.paths).map_err(|e| err(e.to_string()))?;
    let first_error: RefCell<Option<FormatError>> = RefCell::new(None);
    let per_file = reader.records_per_file(&ReadOptions::default(), &first_error);
    let started = std::time::Instant::now();
    let result = run_front(
        &job.options,
        &job.watermarks,
        &group.rows,
        merge_by_time(per_file),
        |m| {
            let bytes = m
                .to_bytes()
                .map_err(|e| DataFusionError::Execution(e.to_string()))?;
            emit(bytes)
        },
    );
    if let Some(e) = first_error.into_inner() {
        return Err(err(e.to_string()));
    }
    match result {
        Ok(counters) => {
            let secs = started.elapsed().as_secs_f64();
            tracing::info!(
                "node {}: {} records through the front in {secs:.2} s ({:.0} records/s)",
                group.node,
                counters.records(),
                counters.records() as f64 / secs.max(1e-9)
            );
            Ok(())
        }
        Err(FrontRunError::Emit(e)) => Err(e),
        Err(FrontRunError::Merge(e)) => Err(err(e.to_string())),
    }
}
