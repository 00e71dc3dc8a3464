//! `podtrace-cluster`: `scheduler`, `executor` (Ballista with podtrace's codec) and
//! `front` (the cluster side of `podtrace analyze --cluster`, which `podtrace` runs).
//! `podtrace cluster ...` runs this binary (found next to `podtrace`, else on `PATH`).

use std::io::Read;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use podtrace_analyzer::pipeline::parts::{read_frame, FrontJob};
use podtrace_cluster::{client, serve};

#[derive(Debug, Parser)]
#[command(
    name = "podtrace-cluster",
    version,
    about = "podtrace's analysis on an Apache DataFusion Ballista cluster"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// A Ballista scheduler that knows podtrace's plan nodes.
    Scheduler {
        /// Address to listen on, HOST:PORT.
        #[arg(long, default_value = "127.0.0.1:50050")]
        bind: String,
        /// An executor silent for this long is lost; its tasks run again elsewhere.
        #[arg(long, default_value_t = 180)]
        executor_timeout_seconds: u64,
        /// Attempts of one task before the job fails.
        #[arg(long, default_value_t = 4)]
        task_max_failures: usize,
    },
    /// A Ballista executor that runs podtrace's plan nodes.
    Executor {
        /// The scheduler, HOST:PORT (or df://HOST:PORT).
        #[arg(long)]
        scheduler: String,
        /// Address of the executor's Flight service, HOST:PORT; gRPC uses PORT+1.
        #[arg(long, default_value = "127.0.0.1:50051")]
        bind: String,
        /// Host name or address the scheduler and clients reach this executor by
        /// (default: the --bind address; set it when binding 0.0.0.0).
        #[arg(long)]
        external_host: Option<String>,
        /// Directory for shuffle files (default: a temporary directory).
        #[arg(long)]
        work_dir: Option<PathBuf>,
        /// Tasks at once (default: every core).
        #[arg(long, default_value_t = 0)]
        cores: usize,
        /// Seconds between heartbeats to the scheduler.
        #[arg(long, default_value_t = 60)]
        heartbeat_seconds: u64,
    },
    /// Runs a front job (one frame on stdin, from `podtrace analyze --cluster`) on the
    /// cluster; its messages go to stdout as frames. Stops when stdin ends.
    Front {
        /// The scheduler, HOST:PORT (or df://HOST:PORT).
        #[arg(long)]
        scheduler: String,
    },
}

fn resolve(addr: &str) -> anyhow::Result<SocketAddr> {
    let bare = addr.strip_prefix("df://").unwrap_or(addr);
    bare.to_socket_addrs()
        .map_err(|e| anyhow::anyhow!("{addr}: not a HOST:PORT address ({e})"))?
        .next()
        .ok_or_else(|| anyhow::anyhow!("{addr}: no address"))
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    match cli.command {
        Command::Scheduler {
            bind,
            executor_timeout_seconds,
            task_max_failures,
        } => runtime.block_on(serve::scheduler(serve::SchedulerOptions {
            bind: resolve(&bind)?,
            executor_timeout_seconds,
            task_max_failures,
        })),
        Command::Executor {
            scheduler,
            bind,
            external_host,
            work_dir,
            cores,
            heartbeat_seconds,
        } => runtime.block_on(serve::executor(serve::ExecutorOptions {
            scheduler: resolve(&scheduler)?,
            bind: resolve(&bind)?,
            external_host,
            work_dir,
            cores,
            heartbeat_seconds,
        })),
        Command::Front { scheduler } => {
            let scheduler = resolve(&scheduler)?;
            let mut stdin = std::io::stdin().lock();
            let (_, text) =
                read_frame(&mut stdin)?.ok_or_else(|| anyhow::anyhow!("no front job on stdin"))?;
            let job: FrontJob = serde_json::from_slice(&text)
                .map_err(|e| anyhow::anyhow!("reading the front job on stdin: {e}"))?;
            job.check_version()?;
            // `podtrace` keeps stdin open while it reads the results: its end means
            // podtrace is gone, and so is the reason to run the job.
            drop(stdin);
            std::thread::spawn(|| {
                let mut rest = Vec::new();
                let _ = std::io::stdin().read_to_end(&mut rest);
                #[allow(clippy::print_stderr)]
                {
                    eprintln!("podtrace-cluster: stdin closed: podtrace went away; stopping");
                }
                std::process::exit(1);
            });
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            runtime.block_on(client::run_front_job(scheduler, job, &mut out))
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("PODTRACE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("podtrace-cluster: error: {e:#}");
            }
            ExitCode::FAILURE
        }
    }
}
