//! Thin wrappers of Ballista's scheduler and executor processes with [`PodtraceCodec`]
//! registered (a stock Ballista executor does not know podtrace's plan node). Everything
//! else is Ballista's configuration and behaviour.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use ballista_executor::executor_process::{start_executor_process, ExecutorProcessConfig};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::start_server;

use crate::codec::PodtraceCodec;

/// Scheduler settings podtrace exposes.
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    /// Address to listen on (gRPC).
    pub bind: SocketAddr,
    /// An executor silent for this long is lost: its tasks run again elsewhere.
    pub executor_timeout_seconds: u64,
    /// Attempts of one task before the job fails.
    pub task_max_failures: usize,
}

/// Runs a Ballista scheduler with podtrace's codec until it fails.
pub async fn scheduler(opts: SchedulerOptions) -> anyhow::Result<()> {
    let config = SchedulerConfig {
        bind_host: opts.bind.ip().to_string(),
        bind_port: opts.bind.port(),
        external_host: opts.bind.ip().to_string(),
        executor_timeout_seconds: opts.executor_timeout_seconds,
        expire_dead_executor_interval_seconds: opts.executor_timeout_seconds.clamp(1, 15),
        task_max_failures: opts.task_max_failures,
        override_physical_codec: Some(PodtraceCodec::shared()),
        ..SchedulerConfig::default()
    };
    let cluster = BallistaCluster::new_from_config(&config)
        .await
        .map_err(|e| anyhow::anyhow!("starting the scheduler: {e}"))?;
    start_server(cluster, opts.bind, Arc::new(config))
        .await
        .map_err(|e| anyhow::anyhow!("scheduler on {}: {e}", opts.bind))
}

/// Executor settings podtrace exposes.
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    /// The scheduler.
    pub scheduler: SocketAddr,
    /// Address of the executor's Arrow Flight service (its results); the gRPC service
    /// listens on the next port.
    pub bind: SocketAddr,
    /// The host name or address others reach this executor by (default: the bind
    /// address; in Kubernetes the pod IP, as `0.0.0.0` is not reachable).
    pub external_host: Option<String>,
    /// Directory for shuffle files (default: a temporary one).
    pub work_dir: Option<PathBuf>,
    /// Tasks run at once (0: every core).
    pub cores: usize,
    /// Seconds between heartbeats to the scheduler.
    pub heartbeat_seconds: u64,
}

/// Runs a Ballista executor with podtrace's codec until it fails or is stopped.
pub async fn executor(opts: ExecutorOptions) -> anyhow::Result<()> {
    let grpc_port = opts.bind.port().checked_add(1).ok_or_else(|| {
        anyhow::anyhow!("--bind port {} leaves no port for gRPC", opts.bind.port())
    })?;
    let mut config = ExecutorProcessConfig {
        bind_host: opts.bind.ip().to_string(),
        external_host: Some(
            opts.external_host
                .clone()
                .unwrap_or_else(|| opts.bind.ip().to_string()),
        ),
        port: opts.bind.port(),
        grpc_port,
        scheduler_host: opts.scheduler.ip().to_string(),
        scheduler_port: opts.scheduler.port(),
        scheduler_connect_timeout_seconds: 10,
        work_dir: opts
            .work_dir
            .as_ref()
            .map(|d| d.to_string_lossy().into_owned()),
        executor_heartbeat_interval_seconds: opts.heartbeat_seconds,
        override_physical_codec: Some(PodtraceCodec::shared()),
        ..ExecutorProcessConfig::default()
    };
    if opts.cores > 0 {
        config.vcores = opts.cores;
    }
    start_executor_process(Arc::new(config))
        .await
        .map_err(|e| anyhow::anyhow!("executor on {}: {e}", opts.bind))
}
