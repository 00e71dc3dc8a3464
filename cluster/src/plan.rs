//! `ExchangeScanExec`: stage (a) of docs/scale-out.md as a DataFusion execution plan. One
//! partition per capture group (one node's captures, read from paths every executor
//! sees): the analyzer's front over the group's records, cut into the local run's
//! batches (`podtrace_analyzer::pipeline::parts::run_front`). Its output is each
//! serialized `FrontMessage` (JSON with a version tag) cut into chunks of at most
//! [`CHUNK_BYTES`] ([`crate::chunks`]), one row per chunk: `group` (UInt32), `seq`
//! (UInt64, the message's position in the group), `part` and `parts` (UInt32, the chunk's
//! position and the message's chunk count), `hash` (UInt64, of the whole message) and
//! `chunk` (LargeBinary), in record batches of at most [`BATCH_BYTES`] of chunks — so no
//! row, batch or Flight message grows with the message (docs/scale-out.md, "Message
//! sizes and gRPC limits").
//!
//! Which groups a partition runs is *data*, not the partition's index: the node's input
//! is a stock in-memory scan ([`groups_source`]) with one partition per group holding
//! one row, the group's number. Ballista's scheduler cuts every stage plan down to the
//! partitions of one task before it ships it (`restrict_plan_to_partitions` in
//! ballista-scheduler 55 `state/task_builder.rs`), but only through leaves it knows
//! (`DataSourceExec` over files or memory, its shuffle readers, …): a leaf of its own
//! kind is left whole, so each task would run *every* group, and the passthrough shuffle
//! writer would send two of them to the same file (docs/scale-out.md, "Large jobs
//! failed: the cause (fixed)"). With the in-memory scan as the leaf, the restriction
//! keeps the task's groups and this node, above it, runs exactly those.

use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;

use arrow_array::{Array, LargeBinaryArray, RecordBatch, UInt32Array, UInt64Array};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchReceiverStreamBuilder;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    SendableRecordBatchStream,
};
use futures::StreamExt;
use podtrace_analyzer::merge_by_time;
use podtrace_analyzer::pipeline::parts::{run_front, FrontJob, FrontRunError};
use podtrace_format::{CaptureReader, FormatError, ReadOptions};
use tokio::sync::mpsc::Sender;

use crate::chunks::{split, Chunk, BATCH_BYTES, CHUNK_BYTES};

/// The output schema: one row per chunk of a front message ([`crate::chunks::Chunk`]).
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("group", DataType::UInt32, false),
        Field::new("seq", DataType::UInt64, false),
        Field::new("part", DataType::UInt32, false),
        Field::new("parts", DataType::UInt32, false),
        Field::new("hash", DataType::UInt64, false),
        Field::new("chunk", DataType::LargeBinary, false),
        // The batch (step) of the message: the order in which the client reads the
        // job's partitions (`crate::client`), not checked — the merger checks the order.
        Field::new("batch", DataType::UInt32, false),
    ]))
}

/// The rows of `chunks`, of messages of batches `batches` (one per chunk), as a record
/// batch of [`schema`].
pub fn chunk_batch(chunks: &[Chunk<'_>], batches: &[u32]) -> Result<RecordBatch> {
    if chunks.len() != batches.len() {
        return Err(DataFusionError::Internal(format!(
            "{} chunks with {} batch numbers",
            chunks.len(),
            batches.len()
        )));
    }
    Ok(RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(UInt32Array::from_iter_values(
                chunks.iter().map(|c| c.group),
            )),
            Arc::new(UInt64Array::from_iter_values(chunks.iter().map(|c| c.seq))),
            Arc::new(UInt32Array::from_iter_values(chunks.iter().map(|c| c.part))),
            Arc::new(UInt32Array::from_iter_values(
                chunks.iter().map(|c| c.parts),
            )),
            Arc::new(UInt64Array::from_iter_values(chunks.iter().map(|c| c.hash))),
            Arc::new(LargeBinaryArray::from_iter_values(
                chunks.iter().map(|c| c.bytes),
            )),
            Arc::new(UInt32Array::from_iter_values(batches.iter().copied())),
        ],
    )?)
}

/// The schema of [`groups_source`]: one row per group, its number.
pub fn groups_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(
        "group",
        DataType::UInt32,
        false,
    )]))
}

/// The input of an [`ExchangeScanExec`] of `groups` groups: a stock in-memory scan
/// (`DataSourceExec` over `MemorySourceConfig`, which Ballista knows how to restrict to a
/// task's partitions and ships as data) with partition `g` holding one row, `g`.
pub fn groups_source(groups: usize) -> Result<Arc<dyn ExecutionPlan>> {
    let partitions = (0..groups)
        .map(|g| {
            let g = u32::try_from(g).map_err(|_| {
                DataFusionError::Plan(format!("{groups} capture groups are too many"))
            })?;
            Ok(vec![RecordBatch::try_new(
                groups_schema(),
                vec![Arc::new(UInt32Array::from(vec![g]))],
            )?])
        })
        .collect::<Result<Vec<_>>>()?;
    let source: Arc<dyn ExecutionPlan> =
        MemorySourceConfig::try_new_exec(&partitions, groups_schema(), None)?;
    Ok(source)
}

/// Stage (a): the front of each capture group (see the module doc).
#[derive(Debug)]
pub struct ExchangeScanExec {
    job: Arc<FrontJob>,
    /// The group numbers, one partition per group this plan runs ([`groups_source`],
    /// possibly restricted to a task's partitions).
    input: Arc<dyn ExecutionPlan>,
    properties: Arc<PlanProperties>,
}

impl ExchangeScanExec {
    /// The plan of `job`: one partition per group.
    pub fn new(job: FrontJob) -> Result<Self> {
        let input = groups_source(job.groups.len())?;
        Self::with_input(Arc::new(job), input)
    }

    /// The plan of `job` over `input` (group numbers, as [`groups_source`]): one
    /// partition per input partition.
    pub fn with_input(job: Arc<FrontJob>, input: Arc<dyn ExecutionPlan>) -> Result<Self> {
        if input.schema().fields() != groups_schema().fields() {
            return Err(DataFusionError::Plan(format!(
                "ExchangeScanExec's input must be the capture group numbers, not {}",
                input.schema()
            )));
        }
        let partitions = input.properties().output_partitioning().partition_count();
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema()),
            Partitioning::UnknownPartitioning(partitions),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Ok(ExchangeScanExec {
            job,
            input,
            properties: Arc::new(properties),
        })
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
        vec![&self.input]
    }

    /// Partition `k` runs the groups of input partition `k`: repartitioning the input
    /// would only move work around, never help.
    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        match (children.pop(), children.is_empty()) {
            (Some(input), true) => Ok(Arc::new(ExchangeScanExec::with_input(
                self.job.clone(),
                input,
            )?)),
            _ => Err(DataFusionError::Plan(
                "ExchangeScanExec takes one input: the capture group numbers".into(),
            )),
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let mut input = self.input.execute(partition, context)?;
        let mut builder = RecordBatchReceiverStreamBuilder::new(schema(), 2);
        let tx = builder.tx();
        let job = self.job.clone();
        builder.spawn(async move {
            let mut groups = Vec::new();
            while let Some(batch) = input.next().await {
                let batch = batch?;
                let numbers = batch
                    .column(0)
                    .as_any()
                    .downcast_ref::<UInt32Array>()
                    .ok_or_else(|| {
                        DataFusionError::Execution(
                            "ExchangeScanExec's input is not the capture group numbers".into(),
                        )
                    })?;
                for g in numbers.iter() {
                    let g = g.ok_or_else(|| {
                        DataFusionError::Execution("a capture group number is null".into())
                    })?;
                    if g as usize >= job.groups.len() {
                        return Err(DataFusionError::Execution(format!(
                            "ExchangeScanExec has {} capture groups, not {}",
                            job.groups.len(),
                            g + 1
                        )));
                    }
                    groups.push(g);
                }
            }
            for g in groups {
                let job = job.clone();
                let tx = tx.clone();
                tokio::task::spawn_blocking(move || send_group(&job, g, &tx))
                    .await
                    .map_err(|e| {
                        DataFusionError::Execution(format!("the front of group {g} panicked: {e}"))
                    })??;
            }
            Ok(())
        });
        Ok(builder.build())
    }
}

/// Runs group `group` of `job` ([`run_group`]) and sends its messages to `tx`, cut into
/// chunks of at most [`CHUNK_BYTES`], in record batches of at most [`BATCH_BYTES`] of
/// chunks (one chunk, if larger). Each batch owns its buffers.
fn send_group(job: &FrontJob, group: u32, tx: &Sender<Result<RecordBatch>>) -> Result<()> {
    let send = |batch: RecordBatch| {
        tx.blocking_send(Ok(batch)).map_err(|_| {
            DataFusionError::Execution("the consumer of ExchangeScanExec went away".into())
        })
    };
    let mut batcher = ChunkBatcher::new(BATCH_BYTES);
    let mut seq = 0u64;
    run_group(job, group as usize, |step, bytes| {
        let chunks = split(group, seq, &bytes, CHUNK_BYTES)
            .map_err(|e| DataFusionError::Execution(e.to_string()))?;
        seq += 1;
        for c in chunks {
            if let Some(batch) = batcher.push(step, c)? {
                send(batch)?;
            }
        }
        Ok(())
    })?;
    match batcher.finish()? {
        Some(batch) => send(batch),
        None => Ok(()),
    }
}

/// Gathers chunks into record batches of at most `max_bytes` of chunk bytes (a chunk
/// larger than that alone), each of one step (batch) only; the batches own their
/// buffers.
#[derive(Debug)]
pub struct ChunkBatcher {
    max_bytes: usize,
    rows: Vec<(u32, u64, u32, u32, u64, Vec<u8>)>,
    batches: Vec<u32>,
    bytes: usize,
}

impl ChunkBatcher {
    /// Batches of at most `max_bytes` of chunk bytes.
    pub fn new(max_bytes: usize) -> Self {
        ChunkBatcher {
            max_bytes,
            rows: Vec::new(),
            batches: Vec::new(),
            bytes: 0,
        }
    }

    /// Adds `chunk`, of a message of batch (step) `step`; the record batch before it
    /// when it does not fit with it.
    pub fn push(&mut self, step: u32, chunk: Chunk<'_>) -> Result<Option<RecordBatch>> {
        // A record batch holds the chunks of one step only: the client reads the job's
        // partitions step by step (`crate::client::write_messages`).
        let other_step = self.batches.last().is_some_and(|b| *b != step);
        let full = if !self.rows.is_empty()
            && (other_step || self.bytes + chunk.bytes.len() > self.max_bytes)
        {
            self.finish()?
        } else {
            None
        };
        self.bytes += chunk.bytes.len();
        self.rows.push((
            chunk.group,
            chunk.seq,
            chunk.part,
            chunk.parts,
            chunk.hash,
            chunk.bytes.to_vec(),
        ));
        self.batches.push(step);
        Ok(full)
    }

    /// The batch of the chunks added since the last one, if any.
    pub fn finish(&mut self) -> Result<Option<RecordBatch>> {
        if self.rows.is_empty() {
            return Ok(None);
        }
        let chunks: Vec<Chunk<'_>> = self
            .rows
            .iter()
            .map(|(group, seq, part, parts, hash, bytes)| Chunk {
                group: *group,
                seq: *seq,
                part: *part,
                parts: *parts,
                hash: *hash,
                bytes,
            })
            .collect();
        let batch = chunk_batch(&chunks, &self.batches)?;
        self.rows.clear();
        self.batches.clear();
        self.bytes = 0;
        Ok(Some(batch))
    }
}

/// Runs group `g` of `job`: reads its captures (merged by time), runs the front, hands
/// each serialized message to `emit` with its batch. A capture that cannot be read, or
/// that does not match the plan, is an error naming the group's node.
pub fn run_group(
    job: &FrontJob,
    g: usize,
    mut emit: impl FnMut(u32, Vec<u8>) -> Result<()>,
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
            emit(m.batch(), bytes)
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
