//! The client side of `podtrace analyze --cluster`: submits the front job
//! ([`ExchangeScanExec`]) to the scheduler as a physical plan, and writes the job's rows
//! as frames (`podtrace_analyzer::pipeline::parts::write_frame`) for the `podtrace`
//! process that merges them, ending with the end-of-job frame — only after every group's
//! messages arrived complete and in order.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use arrow_array::{Array, LargeBinaryArray, RecordBatch, UInt32Array, UInt64Array};
use arrow_schema::DataType;
use ballista_core::execution_plans::execute_physical_plan;
use ballista_core::extension::SessionConfigExt;
use datafusion::prelude::SessionConfig;
use datafusion_proto::protobuf::PhysicalPlanNode;
use futures::{Stream, StreamExt};
use podtrace_analyzer::pipeline::parts::{write_frame, FrontJob, END_OF_JOB};

use crate::chunks::{Chunk, Reassembler};
use crate::codec::PodtraceCodec;
use crate::plan::ExchangeScanExec;

/// How long the scheduler may take to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

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
    let codec = PodtraceCodec::shared();
    let session_config =
        SessionConfig::new_with_ballista().with_ballista_physical_extension_codec(codec.clone());
    let config = session_config.ballista_config();
    let session_id = format!(
        "podtrace-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    );
    let plan = std::sync::Arc::new(
        ExchangeScanExec::new(job).map_err(|e| anyhow::anyhow!("planning the cluster job: {e}"))?,
    );
    let stream = execute_physical_plan::<PhysicalPlanNode>(
        format!("http://{scheduler}"),
        &config,
        plan,
        codec.as_ref(),
        session_id,
        session_config,
    )
    .await
    .map_err(|e| anyhow::anyhow!("the cluster job failed: {e}"))?;
    write_messages(stream, groups, out).await
}

/// Writes the messages of a job of `groups` groups, put back together from the chunk
/// rows of `stream` ([`crate::plan::schema`]), as frames to `out`, each group's in
/// order, and ends with the end-of-job frame — only when every message arrived whole.
/// A missing, damaged or contradictory chunk is an error, and then no end frame is
/// written (`podtrace` refuses the output).
pub async fn write_messages(
    mut stream: impl Stream<Item = datafusion::error::Result<RecordBatch>> + Unpin,
    groups: usize,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    // Ballista hands the rows out by its output partitions, which need not be the
    // groups (its planner may repartition a stage's output), and may hand a row out more
    // than once (a fetch retried): the reassembler puts each group's messages back
    // together and in order, and refuses anything missing, damaged or contradictory.
    let mut messages = Reassembler::new(groups);
    let mut write = |g: u32, bytes: &[u8]| -> anyhow::Result<()> {
        write_frame(out, g, bytes)?;
        Ok(())
    };
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(|e| anyhow::anyhow!("the cluster job failed: {e}"))?;
        // Ballista's shuffle may hand the columns back in an equivalent type (views).
        let column = |i: usize, t: &DataType| {
            if batch.num_columns() <= i {
                anyhow::bail!("the cluster job returned rows of another schema");
            }
            arrow::compute::cast(batch.column(i), t).map_err(|e| {
                anyhow::anyhow!("the cluster job returned rows of another schema: {e}")
            })
        };
        let group = column(0, &DataType::UInt32)?;
        let seq = column(1, &DataType::UInt64)?;
        let part = column(2, &DataType::UInt32)?;
        let parts = column(3, &DataType::UInt32)?;
        let hash = column(4, &DataType::UInt64)?;
        let chunk = column(5, &DataType::LargeBinary)?;
        let (Some(group), Some(seq), Some(part), Some(parts), Some(hash), Some(chunk)) = (
            group.as_any().downcast_ref::<UInt32Array>(),
            seq.as_any().downcast_ref::<UInt64Array>(),
            part.as_any().downcast_ref::<UInt32Array>(),
            parts.as_any().downcast_ref::<UInt32Array>(),
            hash.as_any().downcast_ref::<UInt64Array>(),
            chunk.as_any().downcast_ref::<LargeBinaryArray>(),
        ) else {
            anyhow::bail!("the cluster job returned rows of another schema");
        };
        for row in 0..batch.num_rows() {
            messages.push(
                Chunk {
                    group: group.value(row),
                    seq: seq.value(row),
                    part: part.value(row),
                    parts: parts.value(row),
                    hash: hash.value(row),
                    bytes: chunk.value(row),
                },
                &mut write,
            )?;
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
        "{} front messages; the largest {} bytes in {} chunk(s)",
        done.messages,
        done.largest.0,
        done.largest.1
    );
    write_frame(out, END_OF_JOB, &[])?;
    out.flush()?;
    Ok(())
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
                out.extend(batcher.push(c).expect("push"));
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
        let mut out = Vec::new();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let r = runtime.block_on(write_messages(futures::stream::iter(batches), 2, &mut out));
        (r, out)
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
