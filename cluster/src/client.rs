//! The client side of `podtrace analyze --cluster`: submits the front job
//! ([`ExchangeScanExec`]) to the scheduler as a physical plan, and writes the job's rows
//! as frames (`podtrace_analyzer::pipeline::parts::write_frame`) for the `podtrace`
//! process that merges them, ending with the end-of-job frame — only after every group's
//! messages arrived complete and in order.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use arrow_array::{Array, LargeBinaryArray, UInt32Array, UInt64Array};
use arrow_schema::DataType;
use ballista_core::execution_plans::execute_physical_plan;
use ballista_core::extension::SessionConfigExt;
use datafusion::prelude::SessionConfig;
use datafusion_proto::protobuf::PhysicalPlanNode;
use futures::StreamExt;
use podtrace_analyzer::pipeline::parts::{write_frame, FrontJob, END_OF_JOB};

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
    let mut stream = execute_physical_plan::<PhysicalPlanNode>(
        format!("http://{scheduler}"),
        &config,
        plan,
        codec.as_ref(),
        session_id,
        session_config,
    )
    .await
    .map_err(|e| anyhow::anyhow!("the cluster job failed: {e}"))?;
    // Ballista hands the rows out by its output partitions, which need not be the
    // groups (its planner may repartition a stage's output), and may hand a row out more
    // than once (a fetch retried). Per group: the next message to write, the ones that
    // came early (by seq), and a hash of each written one to recognise a repeat.
    let mut next: Vec<u64> = vec![0; groups];
    let mut early: Vec<std::collections::BTreeMap<u64, Vec<u8>>> =
        vec![std::collections::BTreeMap::new(); groups];
    let mut written: Vec<Vec<u64>> = vec![Vec::new(); groups];
    let mut repeated = 0u64;
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
        let message = column(2, &DataType::LargeBinary)?;
        let (Some(group), Some(seq), Some(message)) = (
            group.as_any().downcast_ref::<UInt32Array>(),
            seq.as_any().downcast_ref::<UInt64Array>(),
            message.as_any().downcast_ref::<LargeBinaryArray>(),
        ) else {
            anyhow::bail!("the cluster job returned rows of another schema");
        };
        for row in 0..batch.num_rows() {
            let g = group.value(row) as usize;
            if g >= groups {
                anyhow::bail!("the cluster job returned group {g}");
            }
            let n = seq.value(row);
            let bytes = message.value(row);
            if n < next[g] {
                let same = usize::try_from(n)
                    .ok()
                    .and_then(|i| written[g].get(i))
                    .is_some_and(|h| *h == fnv1a64(bytes));
                if !same {
                    anyhow::bail!(
                        "the cluster job returned message {n} of group {g} twice, different"
                    );
                }
                repeated += 1;
                continue;
            }
            if let Some(prev) = early[g].get(&n) {
                if prev.as_slice() != bytes {
                    anyhow::bail!(
                        "the cluster job returned message {n} of group {g} twice, different"
                    );
                }
                repeated += 1;
                continue;
            }
            early[g].insert(n, bytes.to_vec());
            while let Some(bytes) = early[g].remove(&next[g]) {
                write_frame(out, g as u32, &bytes)?;
                written[g].push(fnv1a64(&bytes));
                next[g] += 1;
            }
        }
    }
    if let Some(g) = early.iter().position(|e| !e.is_empty()) {
        anyhow::bail!(
            "the cluster job's messages of group {g} have a gap after message {}",
            next[g]
        );
    }
    if repeated > 0 {
        tracing::info!("{repeated} message(s) delivered twice by the cluster were skipped");
    }
    write_frame(out, END_OF_JOB, &[])?;
    out.flush()?;
    Ok(())
}

/// FNV-1a, 64 bit: tells a repeated message from a different one.
fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}
