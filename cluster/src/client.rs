//! The client side of `podtrace analyze --cluster`: submits the front job
//! ([`ExchangeScanExec`]) to the scheduler as a physical plan ([`submit_job`]), fetches
//! every node's result partition concurrently, in step order ([`write_messages`]), and
//! writes the job's rows as frames (`podtrace_analyzer::pipeline::parts::write_frame`)
//! for the `podtrace` process that merges them, ending with the end-of-job frame — only
//! after every group's messages arrived complete and in order.

use std::io::Write;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use arrow_array::{Array, LargeBinaryArray, RecordBatch, UInt32Array, UInt64Array};
use arrow_schema::DataType;
use ballista_core::client::BallistaClient;
use ballista_core::error::BallistaError;
use ballista_core::extension::{BallistaConfigGrpcEndpoint, SessionConfigExt};
use ballista_core::serde::protobuf::execute_query_params::Query;
use ballista_core::serde::protobuf::get_job_status_result::FlightProxy;
use ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient;
use ballista_core::serde::protobuf::{
    job_status, ExecuteQueryParams, GetJobStatusResult, KeyValuePair, PartitionLocation,
    SuccessfulJob,
};
use ballista_core::utils::{create_grpc_client_endpoint, GrpcClientConfig};
use ballista_core::{version, BALLISTA_VERSION};
use datafusion::error::DataFusionError;
use datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream};
use datafusion::prelude::SessionConfig;
use datafusion_proto::physical_plan::{AsExecutionPlan, PhysicalExtensionCodec};
use datafusion_proto::protobuf::PhysicalPlanNode;
use futures::{Stream, StreamExt, TryStreamExt};
use podtrace_analyzer::pipeline::parts::{write_frame, FrontJob, END_OF_JOB};
use prost::Message;

use crate::chunks::{Chunk, Reassembler};
use crate::codec::PodtraceCodec;
use crate::plan::ExchangeScanExec;

/// How long the scheduler may take to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// HTTP/2 flow-control window of each result partition's fetch (its connection's and its
/// stream's): what a partition the client is not reading may have in flight. Ballista's
/// own fetch leaves hyper's defaults (5 MiB per connection, 2 MiB per stream), which
/// with every partition open at once would be up to 2 MiB per node held in the client.
pub const FETCH_WINDOW_BYTES: u32 = 256 << 10;

/// One result partition of a job: its record batches, fetched lazily (nothing is
/// requested before the first poll, and an unpolled partition is held back by gRPC flow
/// control).
pub type Partition = Pin<Box<dyn Stream<Item = datafusion::error::Result<RecordBatch>> + Send>>;

/// Runs `job` on the cluster behind `scheduler` and writes its messages to `out`.
pub async fn run_front_job(
    scheduler: SocketAddr,
    job: FrontJob,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(scheduler)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => anyhow::bail!("scheduler df://{scheduler} unreachable: {e}"),
        Err(_) => anyhow::bail!(
            "scheduler df://{scheduler} unreachable: no answer within {}s",
            CONNECT_TIMEOUT.as_secs()
        ),
    }
    let groups = job.groups.len();
    let batches = u32::try_from(job.watermarks.len()).unwrap_or(u32::MAX);
    let codec = PodtraceCodec::shared();
    let session_config =
        SessionConfig::new_with_ballista().with_ballista_physical_extension_codec(codec.clone());
    let session_id = format!(
        "podtrace-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    );
    let plan = Arc::new(
        ExchangeScanExec::new(job).map_err(|e| anyhow::anyhow!("planning the cluster job: {e}"))?,
    );
    let partitions = submit_job(
        format!("http://{scheduler}"),
        plan,
        codec.as_ref(),
        session_id,
        session_config,
    )
    .await?;
    write_messages(partitions, groups, batches, out).await
}

/// Submits `plan` to the scheduler at `scheduler_url` and waits for the job to end, as
/// Ballista 55's `execute_physical_plan` does in its default (push) mode — the same
/// calls: `SchedulerGrpc::execute_query_push` with the client's version header, the job
/// status stream, and per result partition `BallistaClient::fetch_partition_proxied` —
/// but hands back each of the job's result partitions as a stream of its own, where
/// Ballista's chains them one after another (`distributed_query.rs`, private
/// `execute_query_push` / `fetch_partition`).
pub async fn submit_job(
    scheduler_url: String,
    plan: Arc<dyn ExecutionPlan>,
    codec: &dyn PhysicalExtensionCodec,
    session_id: String,
    session_config: SessionConfig,
) -> anyhow::Result<Vec<Partition>> {
    let failed = |e: String| anyhow::anyhow!("the cluster job failed: {e}");
    let config = session_config.ballista_config();
    let mut buf = Vec::new();
    PhysicalPlanNode::try_from_physical_plan(plan, codec)
        .map_err(|e| failed(format!("failed to serialize physical plan: {e}")))?
        .encode(&mut buf)
        .map_err(|e| failed(format!("failed to encode physical plan: {e}")))?;
    let settings = session_config
        .options()
        .entries()
        .into_iter()
        .map(|e| KeyValuePair {
            key: e.key,
            value: e.value,
        })
        .collect();
    let query = ExecuteQueryParams {
        query: Some(Query::PhysicalPlan(buf)),
        settings,
        operation_id: format!("{session_id}-front"),
        session_id,
    };
    let max_message_size = config.grpc_client_max_message_size();
    let grpc_config = GrpcClientConfig::from(&config);
    let customize = session_config.ballista_override_create_grpc_client_endpoint();
    let mut endpoint = create_grpc_client_endpoint(scheduler_url.clone(), Some(&grpc_config))
        .map_err(|e| failed(format!("{e:?}")))?;
    if let Some(c) = &customize {
        endpoint = c
            .configure_endpoint(endpoint)
            .map_err(|e| failed(format!("{e:?}")))?;
    }
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| failed(format!("{e:?}")))?;
    let mut scheduler = SchedulerGrpcClient::with_interceptor(
        channel,
        session_config.ballista_grpc_interceptor().as_ref().clone(),
    )
    .max_encoding_message_size(max_message_size)
    .max_decoding_message_size(max_message_size);
    let mut request = tonic::Request::new(query);
    version::insert_version_header(request.metadata_mut());
    let response = scheduler
        .execute_query_push(request)
        .await
        .map_err(|e| failed(format!("{e:?}")))?;
    version::check_compatibility(
        Some(BALLISTA_VERSION),
        version::version_from_metadata(response.metadata()),
    )
    .map_err(failed)?;
    let mut statuses = response.into_inner();
    loop {
        let GetJobStatusResult {
            status,
            flight_proxy,
        } = statuses
            .message()
            .await
            .map_err(|e| failed(e.to_string()))?
            .ok_or_else(|| failed("Stream closed without job completing".into()))?;
        let job_id = status
            .as_ref()
            .map(|s| s.job_id.clone())
            .unwrap_or_default();
        match status.and_then(|s| s.status) {
            None | Some(job_status::Status::Queued(_)) | Some(job_status::Status::Running(_)) => {}
            Some(job_status::Status::Failed(e)) => {
                return Err(failed(format!("Job {job_id} failed: {}", e.error)))
            }
            Some(job_status::Status::Successful(SuccessfulJob {
                partition_location, ..
            })) => {
                tracing::info!(
                    "job {job_id}: {} result partition(s), fetched concurrently",
                    partition_location.len()
                );
                let fetch = Fetch {
                    max_message_size,
                    scheduler_url,
                    flight_proxy,
                    customize,
                    use_tls: config.use_tls(),
                    io_retries_times: grpc_config.io_retries_times,
                    io_retry_wait_time_ms: grpc_config.io_retry_wait_time_ms,
                };
                return Ok(partition_location
                    .into_iter()
                    .map(|location| {
                        let f = fetch.clone().partition(location);
                        Box::pin(futures::stream::once(f).try_flatten()) as Partition
                    })
                    .collect());
            }
        }
    }
}

/// What fetching a result partition needs (Ballista's `fetch_partition`'s arguments).
#[derive(Clone)]
struct Fetch {
    max_message_size: usize,
    scheduler_url: String,
    flight_proxy: Option<FlightProxy>,
    customize: Option<Arc<BallistaConfigGrpcEndpoint>>,
    use_tls: bool,
    io_retries_times: u8,
    io_retry_wait_time_ms: u64,
}

impl Fetch {
    /// The record batches of `location`, from the executor that holds it (or the flight
    /// proxy the scheduler named), over a connection of its own: a partition's HTTP/2
    /// flow control then holds back only that partition.
    async fn partition(
        self,
        location: PartitionLocation,
    ) -> datafusion::error::Result<SendableRecordBatchStream> {
        let layout = location.layout();
        let executor = location.executor_meta.ok_or_else(|| {
            DataFusionError::Internal("Received empty executor metadata".to_owned())
        })?;
        let partition_id = location
            .partition_id
            .ok_or_else(|| DataFusionError::Internal("Received empty partition id".to_owned()))?;
        let host_port = |address: &str| -> datafusion::error::Result<(String, u16)> {
            let address = address.split_once("://").map_or(address, |(_, a)| a);
            address
                .rsplit_once(':')
                .and_then(|(h, p)| Some((h.to_owned(), p.trim_end_matches('/').parse().ok()?)))
                .ok_or_else(|| {
                    DataFusionError::Execution(format!("Cannot parse host:port in {address:?}"))
                })
        };
        let (host, port) = match &self.flight_proxy {
            Some(FlightProxy::External(address)) => host_port(address)?,
            Some(FlightProxy::Local(true)) => host_port(&self.scheduler_url)?,
            Some(FlightProxy::Local(false)) | None => (executor.host.clone(), executor.port as u16),
        };
        let mut client = BallistaClient::try_new(
            &host,
            port,
            self.max_message_size,
            self.use_tls,
            self.customize,
            self.io_retries_times,
            self.io_retry_wait_time_ms,
            FETCH_WINDOW_BYTES,
            FETCH_WINDOW_BYTES,
        )
        .await
        .map_err(|e| DataFusionError::Execution(format!("{e:?}")))?;
        client
            .fetch_partition_proxied(
                &executor.id,
                &partition_id.into(),
                location.file_id,
                layout,
                &executor.host,
                executor.port as u16,
                true,
            )
            .await
            .map_err(BallistaError::into_datafusion)
    }
}

/// Writes the messages of a job of `groups` groups and `batches` batches, put back
/// together from the chunk rows of `partitions` ([`crate::plan::schema`]), as frames to
/// `out`, each group's in order, and ends with the end-of-job frame — only when every
/// message arrived whole. A missing, damaged or contradictory chunk is an error, and
/// then no end frame is written (`podtrace` refuses the output).
///
/// The partitions are read concurrently, in step order: each time, the next record batch
/// of the partition whose last one was of the lowest batch (step) — the group furthest
/// behind — so that `podtrace`'s merger, which needs step k of every group before it
/// runs step k, holds about one step per group instead of every group's whole output
/// but the last one's. A partition not read meanwhile is held back by gRPC flow control.
pub async fn write_messages(
    partitions: Vec<Partition>,
    groups: usize,
    batches: u32,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    // Ballista hands the rows out by its output partitions, which need not be the
    // groups (its planner may repartition a stage's output), and may hand a row out more
    // than once (a fetch retried): the reassembler puts each group's messages back
    // together and in order, and refuses anything missing, damaged or contradictory.
    let mut messages = Reassembler::new(groups);
    // Per group the batch of its last message written (None: none yet), for the log.
    let mut written: Vec<Option<u32>> = vec![None; groups];
    let mut lead = 0u32;
    let mut sources: Vec<(Option<Partition>, Option<u32>)> =
        partitions.into_iter().map(|p| (Some(p), None)).collect();
    // The partition furthest behind (not read yet counts as furthest; ties: the first).
    while let Some(i) = (0..sources.len())
        .filter(|&i| sources[i].0.is_some())
        .min_by_key(|&i| (sources[i].1.map_or(0, |b| u64::from(b) + 1), i))
    {
        let Some(source) = sources[i].0.as_mut() else {
            break;
        };
        let Some(batch) = source.next().await else {
            sources[i].0 = None;
            continue;
        };
        let batch = batch.map_err(|e| anyhow::anyhow!("the cluster job failed: {e}"))?;
        let mut write = |g: u32, step: u32, bytes: &[u8]| -> anyhow::Result<()> {
            write_frame(out, g, bytes)?;
            if let Some(w) = written.get_mut(g as usize) {
                *w = Some(step);
            }
            // How far this group is ahead of the slowest group still sending.
            let slowest = written
                .iter()
                .filter(|w| w.is_none_or(|b| b + 1 < batches))
                .map(|w| w.map_or(0, |b| b + 1))
                .min()
                .unwrap_or(step + 1);
            lead = lead.max((step + 1).saturating_sub(slowest));
            Ok(())
        };
        if let Some(step) = push_rows(&batch, &mut messages, &mut write)? {
            sources[i].1 = Some(step);
        }
    }
    let done = messages.finish()?;
    if done.repeated > 0 {
        tracing::info!(
            "{} chunk(s) delivered twice by the cluster were skipped",
            done.repeated
        );
    }
    tracing::info!(
        "{} front messages; the largest {} bytes in {} chunk(s); a group ran at most {lead} \
         step(s) ahead of the slowest",
        done.messages,
        done.largest.0,
        done.largest.1
    );
    write_frame(out, END_OF_JOB, &[])?;
    out.flush()?;
    Ok(())
}

/// Pushes the chunk rows of `batch` into `messages`; `write` gets every message they
/// complete (group, batch of the row that completed it, bytes). The batch (step) of the
/// last row, if any.
fn push_rows(
    batch: &RecordBatch,
    messages: &mut Reassembler,
    write: &mut impl FnMut(u32, u32, &[u8]) -> anyhow::Result<()>,
) -> anyhow::Result<Option<u32>> {
    // Ballista's shuffle may hand the columns back in an equivalent type (views).
    let column = |i: usize, t: &DataType| {
        if batch.num_columns() <= i {
            anyhow::bail!("the cluster job returned rows of another schema");
        }
        arrow::compute::cast(batch.column(i), t)
            .map_err(|e| anyhow::anyhow!("the cluster job returned rows of another schema: {e}"))
    };
    let group = column(0, &DataType::UInt32)?;
    let seq = column(1, &DataType::UInt64)?;
    let part = column(2, &DataType::UInt32)?;
    let parts = column(3, &DataType::UInt32)?;
    let hash = column(4, &DataType::UInt64)?;
    let chunk = column(5, &DataType::LargeBinary)?;
    let step = column(6, &DataType::UInt32)?;
    let (Some(group), Some(seq), Some(part), Some(parts), Some(hash), Some(chunk), Some(step)) = (
        group.as_any().downcast_ref::<UInt32Array>(),
        seq.as_any().downcast_ref::<UInt64Array>(),
        part.as_any().downcast_ref::<UInt32Array>(),
        parts.as_any().downcast_ref::<UInt32Array>(),
        hash.as_any().downcast_ref::<UInt64Array>(),
        chunk.as_any().downcast_ref::<LargeBinaryArray>(),
        step.as_any().downcast_ref::<UInt32Array>(),
    ) else {
        anyhow::bail!("the cluster job returned rows of another schema");
    };
    for row in 0..batch.num_rows() {
        let s = step.value(row);
        messages.push(
            Chunk {
                group: group.value(row),
                seq: seq.value(row),
                part: part.value(row),
                parts: parts.value(row),
                hash: hash.value(row),
                bytes: chunk.value(row),
            },
            |g, bytes| write(g, s, bytes),
        )?;
    }
    Ok(batch.num_rows().checked_sub(1).map(|r| step.value(r)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunks::{split, BATCH_BYTES, CHUNK_BYTES};
    use crate::plan::ChunkBatcher;
    use podtrace_analyzer::pipeline::parts::read_frame;

    /// Messages of group 0 and 1: one over 3 chunks, the others small.
    fn messages() -> Vec<(u32, Vec<u8>)> {
        let big: Vec<u8> = (0..(2 * CHUNK_BYTES + 17))
            .map(|i| (i % 251) as u8)
            .collect();
        vec![
            (0, b"first".to_vec()),
            (1, b"other group".to_vec()),
            (0, big),
            (0, b"last".to_vec()),
        ]
    }

    /// The chunk rows of `messages` as record batches of at most BATCH_BYTES, without
    /// the chunks `drop` (group, seq, part) and with `reverse` the batches backwards.
    fn batches(
        messages: &[(u32, Vec<u8>)],
        drop: Option<(u32, u64, u32)>,
        reverse: bool,
    ) -> Vec<datafusion::error::Result<RecordBatch>> {
        let mut seqs = [0u64; 2];
        let mut batcher = ChunkBatcher::new(BATCH_BYTES);
        let mut out = Vec::new();
        for (g, m) in messages {
            let seq = seqs[*g as usize];
            seqs[*g as usize] += 1;
            for c in split(*g, seq, m, CHUNK_BYTES).expect("split") {
                if Some((c.group, c.seq, c.part)) == drop {
                    continue;
                }
                // The step: the message's seq in its group.
                out.extend(batcher.push(seq as u32, c).expect("push"));
            }
        }
        out.extend(batcher.finish().expect("finish"));
        for b in &out {
            let bytes = b
                .column(5)
                .as_any()
                .downcast_ref::<LargeBinaryArray>()
                .expect("chunk column")
                .value_data()
                .len();
            assert!(bytes <= BATCH_BYTES, "a batch of {bytes} chunk bytes");
        }
        if reverse {
            out.reverse();
        }
        out.into_iter().map(Ok).collect()
    }

    fn frames(mut bytes: &[u8]) -> Vec<(u32, Vec<u8>)> {
        let mut out = Vec::new();
        while let Some(f) = read_frame(&mut bytes).expect("frame") {
            out.push(f);
        }
        out
    }

    fn run(batches: Vec<datafusion::error::Result<RecordBatch>>) -> (anyhow::Result<()>, Vec<u8>) {
        run_partitions(vec![batches])
    }

    /// `write_messages` over one partition per element of `partitions`.
    fn run_partitions(
        partitions: Vec<Vec<datafusion::error::Result<RecordBatch>>>,
    ) -> (anyhow::Result<()>, Vec<u8>) {
        let mut out = Vec::new();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let partitions = partitions
            .into_iter()
            .map(|p| Box::pin(futures::stream::iter(p)) as Partition)
            .collect();
        let r = runtime.block_on(write_messages(partitions, 2, 100, &mut out));
        (r, out)
    }

    #[test]
    fn partitions_are_read_in_step_order() {
        // One partition per group, each message of its own step (its seq); group 1 has
        // more messages. Read one after another, group 0's would all come first.
        let of = |g: u32, n: usize| -> Vec<(u32, Vec<u8>)> {
            (0..n)
                .map(|i| (g, format!("g{g} m{i}").into_bytes()))
                .collect()
        };
        let (r, out) = run_partitions(vec![
            batches(&of(0, 4), None, false),
            batches(&of(1, 6), None, false),
        ]);
        r.expect("complete");
        let got: Vec<String> = frames(&out)
            .into_iter()
            .map(|(g, m)| {
                if g == END_OF_JOB {
                    "end".to_owned()
                } else {
                    String::from_utf8(m).expect("utf8")
                }
            })
            .collect();
        assert_eq!(
            got,
            [
                "g0 m0", "g1 m0", "g0 m1", "g1 m1", "g0 m2", "g1 m2", "g0 m3", "g1 m3", "g1 m4",
                "g1 m5", "end"
            ]
        );
    }

    #[test]
    fn chunk_rows_become_the_messages_in_order_then_the_end_frame() {
        for reverse in [false, true] {
            let (r, out) = run(batches(&messages(), None, reverse));
            r.expect("complete");
            let want = messages();
            // Per group in order; the groups interleave as the batches arrive.
            let mut got = frames(&out);
            assert_eq!(got.pop(), Some((END_OF_JOB, Vec::new())), "no end frame");
            for g in [0, 1] {
                let of = |v: &[(u32, Vec<u8>)]| {
                    v.iter()
                        .filter(|(x, _)| *x == g)
                        .cloned()
                        .collect::<Vec<_>>()
                };
                assert_eq!(of(&got), of(&want), "group {g}, reverse {reverse}");
            }
            assert_eq!(got.len(), want.len());
        }
    }

    #[test]
    fn a_missing_chunk_fails_the_job_without_an_end_frame() {
        for reverse in [false, true] {
            // The middle chunk of the big message (group 0, seq 1).
            let (r, out) = run(batches(&messages(), Some((0, 1, 1)), reverse));
            let e = r.expect_err("incomplete").to_string();
            assert!(
                e.contains("message 1 of group 0 is incomplete: chunk(s) 1 of 3 missing"),
                "{e}"
            );
            let got = frames(&out);
            assert!(
                got.iter().all(|(g, _)| *g != END_OF_JOB),
                "an end frame after a missing chunk"
            );
            // Of group 0 only the message before the incomplete one was handed on.
            let group0: Vec<&[u8]> = got
                .iter()
                .filter(|(g, _)| *g == 0)
                .map(|(_, m)| m.as_slice())
                .collect();
            assert_eq!(group0, vec![b"first".as_slice()]);
        }
    }
}
