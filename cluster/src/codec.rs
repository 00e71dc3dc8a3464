//! `PodtraceCodec`: the `PhysicalExtensionCodec` that lets Ballista ship podtrace's plan
//! node (`ExchangeScanExec`) to executors. Registered in the scheduler, every executor
//! and the client (docs/scale-out.md). A podtrace node is encoded as a magic prefix and
//! its job as JSON (the job carries the podtrace version; an executor of another version
//! refuses it); its input, the capture group numbers, is a stock in-memory scan that
//! DataFusion's own serialization carries (restricted by the scheduler to the task's
//! groups). Every other node goes to Ballista's own codec (shuffle writer/reader,
//! unresolved shuffle), so Ballista's nodes keep working.

use std::sync::Arc;

use ballista_core::serde::BallistaPhysicalExtensionCodec;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};
use podtrace_analyzer::pipeline::parts::FrontJob;

use crate::plan::ExchangeScanExec;

/// The prefix of an encoded podtrace node.
const MAGIC: &[u8] = b"podtrace-plan/1:";

/// podtrace's nodes, then Ballista's (see the module doc).
#[derive(Debug, Default)]
pub struct PodtraceCodec {
    ballista: BallistaPhysicalExtensionCodec,
}

impl PodtraceCodec {
    /// The codec, shared by the scheduler, the executors and the client.
    pub fn shared() -> Arc<dyn PhysicalExtensionCodec> {
        Arc::new(PodtraceCodec::default())
    }
}

impl PhysicalExtensionCodec for PodtraceCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let Some(body) = buf.strip_prefix(MAGIC) else {
            return self.ballista.try_decode(buf, inputs, ctx, proto_converter);
        };
        let [input] = inputs else {
            return Err(DataFusionError::Internal(format!(
                "ExchangeScanExec takes one input (the capture group numbers), not {}",
                inputs.len()
            )));
        };
        let job: FrontJob = serde_json::from_slice(body).map_err(|e| {
            DataFusionError::Internal(format!("decoding a podtrace plan node: {e}"))
        })?;
        job.check_version()
            .map_err(|e| DataFusionError::Execution(e.to_string()))?;
        Ok(Arc::new(ExchangeScanExec::with_input(
            Arc::new(job),
            input.clone(),
        )?))
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        let Some(scan) = node.downcast_ref::<ExchangeScanExec>() else {
            return self.ballista.try_encode(node, buf, proto_converter);
        };
        buf.extend_from_slice(MAGIC);
        serde_json::to_writer(&mut *buf, scan.job())
            .map_err(|e| DataFusionError::Internal(format!("encoding a podtrace plan node: {e}")))
    }
}
