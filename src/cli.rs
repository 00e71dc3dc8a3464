//! Command-line definitions: every flag of podtrace in one place (clap derive).
//!
//! Each tracing flag has an environment variable of the same name (`--tracing-otlp-endpoint`
//! ↔ `PODTRACE_TRACING_OTLP_ENDPOINT`); a flag given on the command line beats its variable.
//! Raw flags are turned into the libraries' configurations by [`crate::cmd::tracing_config`]
//! (analyzer, exporters) and [`crate::cmd::target`] (recorder) before any work starts, so
//! validation errors come out before probes load or files are read.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

const AFTER_HELP: &str = "\
Examples:
  podtrace record -n shop frontend-7d9c -o cap.parquet      record a pod's socket traffic
  podtrace analyze cap.parquet --out out/                   spans, traces and graph, locally
  podtrace analyze cap.parquet --tracing-otlp-endpoint http://otel-collector:4318
  podtrace -n shop frontend-7d9c --tracing                  live: record + analyze + export
  podtrace inspect cap.parquet                              what a capture holds
  podtrace import traffic.pcap -o cap.parquet               a tcpdump/Wireshark capture as input

Every --tracing-* flag also reads the environment variable of the same name
(PODTRACE_TRACING_OTLP_ENDPOINT, ...). Exit codes: 0 success, 1 export or runtime failure,
2 bad usage, bad input file or missing privileges.";

/// Distributed traces for Kubernetes pods without touching their code.
#[derive(Debug, Parser)]
#[command(
    name = "podtrace",
    version,
    about,
    after_help = AFTER_HELP,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct Cli {
    /// More logging (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Option<Command>,

    /// Live mode (no subcommand): record the pod and analyze as traffic flows.
    #[command(flatten)]
    pub live: LiveArgs,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Record a pod's socket traffic and Kubernetes metadata into a capture file (root).
    #[command(after_help = "Examples:
  podtrace record -n shop frontend-7d9c -o cap.parquet --duration 60s
  podtrace record --cgroup /sys/fs/cgroup/system.slice/nginx.service -o cap.parquet
  podtrace record --pid 4242 --k8s-objects objects.json -o cap.parquet
  podtrace record --node-local -o /var/lib/podtrace/ --rotate 1h    every pod of this node")]
    Record(RecordArgs),
    /// Replay captures into spans, traces and a request-flow graph; export them.
    #[command(after_help = "Examples:
  podtrace analyze cap.parquet                                  writes ./podtrace-out/
  podtrace analyze node-a.parquet node-b.parquet --graph-svg flow.svg
  podtrace analyze 'captures/*.parquet' --tracing-jaeger-endpoint http://jaeger:14268
  podtrace analyze cap.parquet --k8s-objects objects.json --route '/order/{id}'
  PODTRACE_TRACING_SAMPLE_RATE=0.1 podtrace analyze cap.parquet --tracing-otlp-endpoint http://otel:4318")]
    Analyze(AnalyzeArgs),
    /// Summarise captures: time range, rows per type, connections, pods, drops.
    #[command(after_help = "Examples:
  podtrace inspect cap.parquet
  podtrace inspect --json captures/")]
    Inspect(InspectArgs),
    /// Turn a pcap/pcapng packet capture into a podtrace capture.
    #[command(after_help = "Examples:
  tcpdump -i lo -w traffic.pcap port 8080 && podtrace import traffic.pcap -o cap.parquet
  podtrace import traffic.pcapng -o cap.parquet --view server --k8s-objects objects.json")]
    Import(ImportArgs),
    /// Run a Ballista scheduler or executor for `analyze --cluster` (runs `podtrace-cluster`).
    #[command(
        after_help = "Examples:
  podtrace cluster scheduler --bind 0.0.0.0:50050
  podtrace cluster executor --scheduler scheduler:50050 --bind 0.0.0.0:50051
  podtrace analyze --cluster df://scheduler:50050 /captures/",
        disable_help_flag = true
    )]
    Cluster {
        /// `scheduler ...` or `executor ...` (see `podtrace cluster --help`).
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "ARGS"
        )]
        args: Vec<String>,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(after_help = "Examples:
  podtrace completions bash > /etc/bash_completion.d/podtrace
  podtrace completions zsh > \"${fpath[1]}/_podtrace\"")]
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// What to record: a pod (Kubernetes), cgroups or processes.
#[derive(Debug, Clone, Args, Default)]
pub struct TargetArgs {
    /// Namespace of the pod to record.
    #[arg(short = 'n', long = "namespace", value_name = "NS")]
    pub namespace: Option<String>,
    /// Label selector: record every matching pod of the namespace on this node.
    #[arg(short = 'l', long = "selector", value_name = "KEY=VALUE")]
    pub selector: Option<String>,
    /// Record every pod on this node (the kubelet's whole `kubepods` cgroup tree), with the
    /// cluster's metadata: what a DaemonSet runs.
    #[arg(long)]
    pub node_local: bool,
    /// Record the cgroup of this process (repeatable).
    #[arg(long = "pid", value_name = "PID")]
    pub pids: Vec<u32>,
    /// Record processes in this cgroup v2 directory and every cgroup below it (repeatable).
    #[arg(long = "cgroup", value_name = "PATH")]
    pub cgroups: Vec<PathBuf>,
    /// Describe pods from this file (`kubectl get pods,services,endpointslices -A -o json`)
    /// instead of asking an API server.
    #[arg(long = "k8s-objects", value_name = "FILE")]
    pub k8s_objects: Option<PathBuf>,
    /// kubeconfig to use (default: KUBECONFIG, ~/.kube/config, or in-cluster).
    #[arg(long, value_name = "FILE", env = "KUBECONFIG", hide_env = true)]
    pub kubeconfig: Option<PathBuf>,
    /// This node's name as Kubernetes knows it (default: the host name).
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
    /// Snapshot only the target namespace's objects (default: the whole cluster).
    #[arg(long)]
    pub k8s_namespace_only: bool,
    /// Kernel hooks: `auto` (the first this kernel has of: `sockets`, `tracepoints`,
    /// `tp-btf`), `sockets` (the socket tracepoints sock_send_length, sock_recv_length and
    /// inet_sock_set_state, tcp_destroy_sock: no syscall hook, kernel 6.3+), `tracepoints` (the per-syscall
    /// tracepoints of the socket calls), `tp-btf` (sys_enter/sys_exit on every syscall) or
    /// `kprobe` (tcp_sendmsg/tcp_recvmsg..., needs CONFIG_KPROBES). The "probes attached"
    /// line names what is used.
    #[arg(
        long,
        value_enum,
        env = "PODTRACE_PROBES",
        default_value_t = ProbesArg::Auto,
        value_name = "auto|sockets|tracepoints|tp-btf|kprobe"
    )]
    pub probes: ProbesArg,
    /// TLS plaintext through uprobes on the OpenSSL 3 libraries (libssl.so.3, binaries
    /// exporting SSL_write such as Node.js) of the targeted processes: `on` or `off`.
    #[arg(long, value_enum, env = "PODTRACE_TLS", default_value_t = OnOff::On, value_name = "on|off")]
    pub tls: OnOff,
    /// Where the TLS uprobes go: `file` (once per OpenSSL file, for every process that
    /// maps it: a targeted process is covered from its first call; other processes mapping
    /// the same file take the uprobe trap and are filtered out) or `process` (per targeted
    /// process: untargeted processes pay nothing; a process is hooked within ~40 ms of
    /// appearing, its calls before that are not captured).
    #[arg(
        long,
        value_enum,
        env = "PODTRACE_TLS_ATTACH",
        default_value_t = TlsAttachArg::File,
        value_name = "file|process"
    )]
    pub tls_attach: TlsAttachArg,
    /// Bytes of payload kept per syscall.
    #[arg(long, default_value_t = 16384, value_name = "BYTES")]
    pub snaplen: u32,
    /// Redact this header's value too (Authorization, Proxy-Authorization, Cookie and
    /// Set-Cookie always are). Repeatable.
    #[arg(long = "redact-header", value_name = "NAME")]
    pub redact_headers: Vec<String>,
    /// Store header values as sent: no redaction of Authorization, Cookie, ... in HTTP/1
    /// or HTTP/2 (not recommended: for comparing against a redacted recording).
    #[arg(long = "no-redact")]
    pub no_redact: bool,
    /// Stop after this long (e.g. 30s, 5m, 1h).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Option<std::time::Duration>,
    /// Stop after this many events.
    #[arg(long, value_name = "N")]
    pub max_events: Option<u64>,
}

/// A switch given as `on` or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum OnOff {
    /// Enabled.
    #[default]
    On,
    /// Disabled.
    Off,
}

/// `--tls-attach` choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum TlsAttachArg {
    /// Once per OpenSSL file, for every process that maps it.
    #[default]
    File,
    /// Per targeted process.
    Process,
}

/// Probe set choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum ProbesArg {
    /// The socket tracepoints, else the per-syscall tracepoints, else tp_btf
    /// sys_enter/sys_exit: the first this kernel has.
    #[default]
    Auto,
    /// The socket tracepoints (sock_send_length, sock_recv_length, inet_sock_set_state, tcp_destroy_sock):
    /// no syscall hook at all.
    #[value(alias = "sock")]
    Sockets,
    /// The per-syscall tracepoints `syscalls/sys_enter_<call>`/`sys_exit_<call>` only.
    Tracepoints,
    /// `tp_btf/sys_enter` + `sys_exit` (every syscall, the socket calls picked by number).
    TpBtf,
    /// Kprobes on the TCP functions.
    Kprobe,
}

/// `podtrace record`.
#[derive(Debug, Args)]
pub struct RecordArgs {
    /// Pod name (with -n).
    #[arg(value_name = "POD")]
    pub pod: Option<String>,
    #[command(flatten)]
    pub target: TargetArgs,
    /// Capture file to write; a directory (existing, or ending in `/`) gets
    /// `<node>-<UTC time>.parquet` inside it, as per-node captures want.
    #[arg(short, long, value_name = "FILE|DIR")]
    pub output: PathBuf,
    /// Start a new numbered segment file this often (e.g. 1h), so long recordings are
    /// analyzable while they run and old segments can be shipped or deleted.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub rotate: Option<std::time::Duration>,
    /// Stop when the capture reaches this size (e.g. 500M, 2G).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_size: Option<u64>,
    /// zstd level of the capture (1 fastest .. 22 smallest): compression is a large part
    /// of the recorder's own CPU.
    #[arg(long, env = "PODTRACE_ZSTD_LEVEL", value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(i32).range(1..=22))]
    pub zstd_level: i32,
}

/// Exporter and sampling flags (shared by `analyze` and live mode).
#[derive(Debug, Clone, Args, Default)]
pub struct TracingArgs {
    /// Send spans to this OTLP/HTTP endpoint (base URL, e.g. http://otel-collector:4318).
    #[arg(long, env = "PODTRACE_TRACING_OTLP_ENDPOINT", value_name = "URL", value_parser = parse_url)]
    pub tracing_otlp_endpoint: Option<String>,
    /// Send spans to this Jaeger collector (e.g. http://jaeger:14268/api/traces).
    #[arg(long, env = "PODTRACE_TRACING_JAEGER_ENDPOINT", value_name = "URL", value_parser = parse_url)]
    pub tracing_jaeger_endpoint: Option<String>,
    /// Send spans to this Splunk HTTP Event Collector (e.g. https://splunk:8088).
    #[arg(long, env = "PODTRACE_TRACING_SPLUNK_ENDPOINT", value_name = "URL", value_parser = parse_url)]
    pub tracing_splunk_endpoint: Option<String>,
    /// HEC token for --tracing-splunk-endpoint (never logged).
    #[arg(
        long,
        env = "PODTRACE_TRACING_SPLUNK_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub tracing_splunk_token: Option<String>,
    /// Do not verify the Splunk endpoint's TLS certificate.
    #[arg(long)]
    pub tracing_splunk_insecure: bool,
    /// Trust this CA (PEM) for the Splunk endpoint.
    #[arg(long, value_name = "FILE")]
    pub tracing_splunk_ca: Option<PathBuf>,
    /// Fraction of traces to keep, 0.0–1.0 (consistent per trace id across nodes and runs).
    #[arg(long, env = "PODTRACE_TRACING_SAMPLE_RATE", default_value_t = 1.0, value_name = "R",
          value_parser = parse_rate, allow_hyphen_values = true)]
    pub tracing_sample_rate: f64,
    /// `ratio`: trace-id ratio only; `parent`: also drop traces an upstream marked unsampled.
    #[arg(long, value_enum, default_value_t = SamplerArg::Ratio)]
    pub tracing_sampler: SamplerArg,
    /// Exit 0 even when an exporter failed (the summary still reports it).
    #[arg(long)]
    pub allow_export_failures: bool,
}

/// Sampler choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum SamplerArg {
    /// Trace-id ratio.
    #[default]
    Ratio,
    /// Parent-based, then trace-id ratio.
    Parent,
}

/// How much of a database statement spans keep in `db.query.text`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum DbQueryTextArg {
    /// Literals replaced by `?` (Redis: the command and its keys, values as `?`).
    #[default]
    Sanitized,
    /// As sent (each argument cut at a bounded prefix; credentials still hidden). Values can
    /// be personal data.
    Raw,
    /// No `db.query.text` at all.
    Off,
}

/// What spans carry (shared by `analyze` and live mode): route templates for names and
/// `http.route`, baggage attributes, database statement text.
#[derive(Debug, Clone, Args, Default)]
pub struct SpanArgs {
    /// A route template such as `/order/{id}` (repeatable): matching paths get it as their
    /// route (span name `GET /order/{id}`, `http.route`) instead of the inferred one.
    /// `{name}` matches one path segment; the most specific matching route wins.
    #[arg(long = "route", value_name = "TEMPLATE", value_parser = parse_route)]
    pub routes: Vec<String>,
    /// Route templates from a file, one per line (`#` starts a comment); repeatable.
    #[arg(long = "routes-file", value_name = "FILE")]
    pub routes_files: Vec<PathBuf>,
    /// Record W3C `baggage` entries as `baggage.<key>` span attributes (baggage can carry
    /// user data: off by default).
    #[arg(long, env = "PODTRACE_BAGGAGE_ATTRIBUTES", value_name = "BOOL", num_args = 0..=1,
          default_missing_value = "true", default_value_t = false, action = clap::ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub baggage_attributes: bool,
    /// How much of a database statement spans keep as `db.query.text`.
    #[arg(long, env = "PODTRACE_DB_QUERY_TEXT", value_enum, value_name = "MODE",
          default_value_t = DbQueryTextArg::Sanitized)]
    pub db_query_text: DbQueryTextArg,
}

/// Local output flags (shared by `analyze` and live mode).
#[derive(Debug, Clone, Args)]
pub struct OutputArgs {
    /// Directory for local outputs (traces.otlp.json, spans.json, graph.dot, report.html).
    #[arg(long = "out", value_name = "DIR", default_value = "podtrace-out")]
    pub out: PathBuf,
    /// Also write the request-flow graph as DOT here.
    #[arg(long, value_name = "FILE")]
    pub graph_dot: Option<PathBuf>,
    /// Render the request-flow graph as SVG here (needs Graphviz `dot`).
    #[arg(long, value_name = "FILE")]
    pub graph_svg: Option<PathBuf>,
    /// Also write the HTML report here (it is always written to the output directory).
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `podtrace analyze`.
#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    /// Capture files, directories or globs (several nodes' captures merge into whole traces).
    #[arg(value_name = "CAPTURE", required = true)]
    pub inputs: Vec<String>,
    #[command(flatten)]
    pub tracing: TracingArgs,
    #[command(flatten)]
    pub spans: SpanArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    /// Skip capture files that cannot be read (they are reported) instead of failing.
    #[arg(long)]
    pub skip_bad_files: bool,
    /// Kubernetes objects for captures recorded without them (repeatable): output of
    /// `kubectl get pods,services,endpointslices -A -o json`. The capture's own objects win
    /// where both describe the same thing.
    #[arg(long = "k8s-objects", value_name = "FILE")]
    pub k8s_objects: Vec<PathBuf>,
    /// Capture time the analyzer keeps state for: exchanges are linked within it, older
    /// state is evicted (counted). Memory is bounded by the traffic inside one window;
    /// exchanges longer than it lose their links.
    #[arg(long, value_name = "SECONDS", default_value_t = 120,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub window: u64,
    /// Also write the spans as a table: one row per span, zstd Parquet (for DuckDB,
    /// DataFusion, Spark). A directory (existing, or ending in `/`) gets `spans.parquet`.
    #[arg(long, value_name = "FILE|DIR")]
    pub spans_parquet: Option<PathBuf>,
    /// Write `spans.json` into the output directory (podtrace's own span dump, about 1 KB
    /// a span): `--spans-json false` leaves it out of large runs (a `spans.json` of an
    /// earlier run in the directory is removed, so that the directory holds one run).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true",
          default_value_t = true, action = clap::ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub spans_json: bool,
    /// Run the per-node part of the analysis (reassembly, parsing, pairing) on an Apache
    /// DataFusion Ballista cluster (`podtrace cluster scheduler` / `executor`); the
    /// captures' paths must be the same on every executor (a shared volume). The outputs
    /// are the same as without it. Needs `podtrace-cluster` next to `podtrace`.
    #[arg(long, value_name = "df://HOST:PORT")]
    pub cluster: Option<String>,
}

/// `podtrace inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Capture files, directories or globs.
    #[arg(value_name = "CAPTURE", required = true)]
    pub inputs: Vec<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Which sockets an imported flow is written as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ViewArg {
    /// The connecting side only.
    Client,
    /// The accepting side only.
    Server,
    /// Both sides, as if every process had been recorded.
    Both,
}

/// `podtrace import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// pcap or pcapng file.
    #[arg(value_name = "PCAP")]
    pub input: PathBuf,
    /// Capture file to write.
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    /// Which side's sockets to write.
    #[arg(long, value_enum, default_value_t = ViewArg::Both)]
    pub view: ViewArg,
    /// Add k8s_object rows from `kubectl get pods,services,endpointslices -A -o json` output.
    #[arg(long = "k8s-objects", value_name = "FILE")]
    pub k8s_objects: Option<PathBuf>,
    /// Node name written into the capture's metadata.
    #[arg(long, value_name = "NAME", default_value = "pcap")]
    pub node: String,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Live mode: `podtrace -n NS POD --tracing [...]`.
#[derive(Debug, Args)]
pub struct LiveArgs {
    /// Pod name (with -n).
    #[arg(value_name = "POD")]
    pub pod: Option<String>,
    /// Build spans and export them (without it, live mode prints exchanges as they happen).
    #[arg(long, env = "PODTRACE_TRACING_ENABLED", value_name = "BOOL", num_args = 0..=1,
          default_missing_value = "true", default_value_t = false, action = clap::ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub tracing: bool,
    /// Also write the capture here (re-analyze later with other settings).
    #[arg(long, value_name = "FILE")]
    pub save: Option<PathBuf>,
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub tracing_args: TracingArgs,
    #[command(flatten)]
    pub spans: SpanArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

fn parse_rate(s: &str) -> Result<f64, String> {
    let r: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number (expected 0.0 to 1.0)"))?;
    if !(0.0..=1.0).contains(&r) || r.is_nan() {
        return Err(format!("{s} is outside 0.0 to 1.0"));
    }
    Ok(r)
}

fn parse_route(s: &str) -> Result<String, String> {
    podtrace_analyzer::route::Routes::parse(&[s]).map_err(|e| e.reason)?;
    Ok(s.trim().to_string())
}

fn parse_url(s: &str) -> Result<String, String> {
    let u = url::Url::parse(s).map_err(|e| format!("`{s}` is not a valid URL: {e}"))?;
    match u.scheme() {
        "http" | "https" => {}
        other => return Err(format!("`{s}`: scheme {other} is not http or https")),
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err(format!("`{s}` has no host"));
    }
    Ok(s.to_string())
}

/// Parses `90`, `90s`, `5m`, `2h`, `500ms`.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (e.g. 30s, 5m, 1h)"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("`{s}`: unknown unit `{unit}` (ms, s, m, h)")),
    };
    if !secs.is_finite() || secs <= 0.0 {
        return Err(format!("`{s}` must be positive"));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

/// Parses `1000`, `10K`, `500M`, `2G` (binary multiples).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a size (e.g. 500M, 2G)"))?;
    let mult: u64 = match unit
        .to_ascii_uppercase()
        .trim_end_matches("IB")
        .trim_end_matches('B')
    {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        _ => return Err(format!("`{s}`: unknown unit `{unit}` (K, M, G)")),
    };
    n.checked_mul(mult)
        .filter(|v| *v > 0)
        .ok_or_else(|| format!("`{s}` is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn probe_sets_parse_for_record_and_live() {
        use clap::Parser;
        let record = |probes: &str| {
            let cli = Cli::try_parse_from([
                "podtrace", "record", "--cgroup", "/x", "-o", "f", "--probes", probes,
            ])
            .map_err(|e| e.kind())?;
            match cli.command {
                Some(Command::Record(r)) => Ok(r.target.probes),
                other => panic!("not record: {other:?}"),
            }
        };
        assert_eq!(record("auto"), Ok(ProbesArg::Auto));
        assert_eq!(record("sockets"), Ok(ProbesArg::Sockets));
        let attach = |v: &str| match Cli::try_parse_from([
            "podtrace",
            "record",
            "--cgroup",
            "/x",
            "-o",
            "f",
            "--tls-attach",
            v,
        ]) {
            Ok(cli) => match cli.command {
                Some(Command::Record(r)) => Ok(r.target.tls_attach),
                _ => panic!("not record"),
            },
            Err(e) => Err(e.kind()),
        };
        assert_eq!(attach("file"), Ok(TlsAttachArg::File));
        assert_eq!(attach("process"), Ok(TlsAttachArg::Process));
        assert_eq!(attach("pid"), Err(clap::error::ErrorKind::InvalidValue));
        assert_eq!(record("sock"), Ok(ProbesArg::Sockets));
        assert_eq!(
            record("syscalls"),
            Err(clap::error::ErrorKind::InvalidValue)
        );
        assert_eq!(record("tracepoints"), Ok(ProbesArg::Tracepoints));
        assert_eq!(record("tp-btf"), Ok(ProbesArg::TpBtf));
        assert_eq!(record("kprobe"), Ok(ProbesArg::Kprobe));
        assert_eq!(record("fentry"), Err(clap::error::ErrorKind::InvalidValue));
        let live = Cli::try_parse_from(["podtrace", "--cgroup", "/x", "--probes", "tp-btf"])
            .expect("live mode parses");
        assert_eq!(live.live.target.probes, ProbesArg::TpBtf);
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("0.5"), Ok(0.5));
        assert_eq!(parse_rate("0"), Ok(0.0));
        assert_eq!(parse_rate("1.0"), Ok(1.0));
        assert!(parse_rate("1.5").is_err());
        assert!(parse_rate("-0.1").is_err());
        assert!(parse_rate("NaN").is_err());
        assert!(parse_rate("half").is_err());
    }

    #[test]
    fn urls() {
        assert!(parse_url("http://otel:4318").is_ok());
        assert!(parse_url("https://splunk:8088/services/collector").is_ok());
        assert!(parse_url("otel:4318").is_err());
        assert!(parse_url("ftp://x").is_err());
        assert!(parse_url("not a url").is_err());
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(
            parse_duration("30s"),
            Ok(std::time::Duration::from_secs(30))
        );
        assert_eq!(
            parse_duration("5m"),
            Ok(std::time::Duration::from_secs(300))
        );
        assert_eq!(
            parse_duration("250ms"),
            Ok(std::time::Duration::from_millis(250))
        );
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("0").is_err());
        assert_eq!(parse_size("500M"), Ok(500 << 20));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("12Q").is_err());
    }
}
