//! Turns the targeting flags (`-n NS POD`, `-n NS -l SEL`, `--pid`, `--cgroup`,
//! `--k8s-objects`) into a recorder configuration plus, for pods, a source of `k8s_object`
//! rows (the API server's list + watch, or the objects of a file).
//!
//! A pod is recorded through its pod-level cgroup directory: the recorder covers every cgroup
//! below a directory and rescans it, so containers that start or restart later are recorded
//! without further lookups.

use std::path::PathBuf;

use anyhow::Context;
use podtrace_format::{K8sObject, Record};
use podtrace_recorder::cgroups::Cgroup2;
use podtrace_recorder::k8s::{Cluster, PodSelector, SnapshotConfig, Snapshotter, TargetSpec};
use podtrace_recorder::{Limits, ProbeSet, RecordConfig, RecorderError};
use tokio::sync::{mpsc, oneshot};

use crate::cli::{ProbesArg, TargetArgs};
use crate::error::CliError;

/// A resolved target: what to record and where its Kubernetes rows come from.
pub struct Target {
    /// The recorder's configuration.
    pub config: RecordConfig,
    /// `k8s_object` row batches (snapshot, then watch events), if pods are targeted.
    pub k8s_rows: Option<mpsc::Receiver<Vec<Record>>>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Target {
    /// Stops the Kubernetes watch (if any) and waits for it.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

/// Resolves the flags. `pod` is the positional POD argument.
pub async fn resolve(pod: Option<&str>, t: &TargetArgs) -> Result<Target, CliError> {
    let spec = pod_spec(pod, t)?;
    if spec.is_none() && t.pids.is_empty() && t.cgroups.is_empty() && !t.node_local {
        return Err(CliError::Usage(
            "nothing to record: give -n NAMESPACE POD, -n NAMESPACE -l KEY=VALUE, --node-local, --pid PID or --cgroup PATH"
                .into(),
        ));
    }
    if t.node_local && spec.is_some() {
        return Err(CliError::Usage(
            "--node-local records every pod of the node: drop -n/-l".into(),
        ));
    }
    let mut config = RecordConfig {
        cgroup_paths: t.cgroups.clone(),
        pids: t.pids.clone(),
        snaplen: t.snaplen,
        probes: match t.probes {
            ProbesArg::Auto => ProbeSet::Auto,
            ProbesArg::Sockets => ProbeSet::Sockets,
            ProbesArg::Tracepoints => ProbeSet::Tracepoints,
            ProbesArg::TpBtf => ProbeSet::TpBtf,
            ProbesArg::Kprobe => ProbeSet::Kprobe,
        },
        tls: t.tls == crate::cli::OnOff::On,
        tls_attach: match t.tls_attach {
            crate::cli::TlsAttachArg::File => podtrace_recorder::tls::TlsAttach::File,
            crate::cli::TlsAttachArg::Process => podtrace_recorder::tls::TlsAttach::Process,
        },
        redact_headers: t.redact_headers.clone(),
        no_redact: t.no_redact,
        limits: Limits {
            duration: t.duration,
            max_events: t.max_events,
            ..Limits::default()
        },
        ..RecordConfig::default()
    };
    let mut labels = Vec::new();
    labels.extend(t.cgroups.iter().map(|c| format!("cgroup {}", c.display())));
    labels.extend(t.pids.iter().map(|p| format!("pid {p}")));
    let mut target = Target {
        config: RecordConfig::default(),
        k8s_rows: None,
        stop: None,
        task: None,
    };
    if let Some(spec) = spec {
        labels.push(describe(&spec));
        let dirs = match &t.k8s_objects {
            Some(file) => from_objects_file(file, &spec, &mut target)?,
            None => from_api_server(&spec, t, &mut target).await?,
        };
        config.cgroup_paths.extend(dirs);
    } else if t.node_local {
        let dirs = kubepods_dirs()?;
        labels.push(format!("every pod on this node ({})", join_paths(&dirs)));
        config.cgroup_paths.extend(dirs);
        match &t.k8s_objects {
            Some(file) => target.k8s_rows = Some(send_once(read_objects(file)?)),
            None => watch_cluster(t, None, &mut target).await?,
        }
    } else if let Some(file) = &t.k8s_objects {
        // No pod targeted, but the objects still describe the cluster for the analyzer.
        let objects = read_objects(file)?;
        target.k8s_rows = Some(send_once(objects));
    }
    config.target_label = labels.join(", ");
    target.config = config;
    Ok(target)
}

fn pod_spec(pod: Option<&str>, t: &TargetArgs) -> Result<Option<TargetSpec>, CliError> {
    match (&t.namespace, pod, &t.selector) {
        (None, Some(pod), _) => Err(CliError::Usage(format!(
            "pod {pod}: give its namespace with -n NAMESPACE"
        ))),
        (None, None, Some(_)) => Err(CliError::Usage("-l SELECTOR needs -n NAMESPACE".into())),
        (Some(_), Some(_), Some(_)) => Err(CliError::Usage(
            "give either a POD name or -l SELECTOR, not both".into(),
        )),
        (Some(ns), Some(pod), None) => Ok(Some(TargetSpec::pod(ns.clone(), pod))),
        (Some(ns), None, Some(sel)) => Ok(Some(TargetSpec::selector(ns.clone(), sel.clone()))),
        (Some(ns), None, None) => Err(CliError::Usage(format!(
            "-n {ns}: name the POD to record (or -l SELECTOR)"
        ))),
        (None, None, None) => Ok(None),
    }
}

fn describe(spec: &TargetSpec) -> String {
    match &spec.pods {
        PodSelector::Name(name) => format!("pod {}/{name}", spec.namespace),
        PodSelector::Labels(sel) => format!("pods -n {} -l {sel}", spec.namespace),
    }
}

/// Whether a pod of `namespace`/`name` with `labels` is targeted by `spec` (selectors of
/// `key=value` terms, comma separated, as `kubectl -l` takes them for equality).
fn spec_matches(
    spec: &TargetSpec,
    namespace: &str,
    name: &str,
    labels: &std::collections::BTreeMap<String, String>,
) -> bool {
    if spec.namespace != namespace {
        return false;
    }
    match &spec.pods {
        PodSelector::Name(n) => n == name,
        PodSelector::Labels(sel) => {
            sel.split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .all(|term| match term.split_once("!=") {
                    Some((k, v)) => labels.get(k.trim()).map(String::as_str) != Some(v.trim()),
                    None => match term.split_once('=') {
                        Some((k, v)) => {
                            labels.get(k.trim()).map(String::as_str)
                                == Some(v.trim_start_matches('=').trim())
                        }
                        None => labels.contains_key(term),
                    },
                })
        }
    }
}

/// Pods of the API server: resolve, map to cgroups, and start list + watch of metadata.
async fn from_api_server(
    spec: &TargetSpec,
    t: &TargetArgs,
    target: &mut Target,
) -> Result<Vec<PathBuf>, CliError> {
    let cluster = connect(t).await?;
    let pods = cluster
        .resolve(spec)
        .await
        .map_err(|e| CliError::Environment(e.into()))?;
    let cgroup = Cgroup2::detect().map_err(|e| CliError::Environment(e.into()))?;
    let mut dirs = Vec::new();
    for pod in &pods {
        let pod_dirs = pod
            .cgroup_dirs(&cgroup)
            .map_err(|e| CliError::Environment(e.into()))?;
        // The first directory is the pod's own: it covers every container below it.
        dirs.extend(pod_dirs.into_iter().take(1));
    }
    start_snapshots(&cluster, t, Some(&spec.namespace), target);
    Ok(dirs)
}

/// Connects to the API server (kubeconfig or in-cluster).
async fn connect(t: &TargetArgs) -> Result<Cluster, CliError> {
    let node = t.node.as_deref();
    match &t.kubeconfig {
        Some(path) => Cluster::from_kubeconfig(path, node).await,
        None => Cluster::connect(node).await,
    }
    .map_err(|e| CliError::Environment(e.into()))
}

/// Lists and watches the cluster's metadata without a target pod (`--node-local`).
async fn watch_cluster(
    t: &TargetArgs,
    namespace: Option<&str>,
    target: &mut Target,
) -> Result<(), CliError> {
    let cluster = connect(t).await?;
    start_snapshots(&cluster, t, namespace, target);
    Ok(())
}

/// Starts list + watch of Pods, Services and EndpointSlices into `target.k8s_rows`.
fn start_snapshots(
    cluster: &Cluster,
    t: &TargetArgs,
    namespace: Option<&str>,
    target: &mut Target,
) {
    let config = SnapshotConfig {
        namespace: namespace
            .filter(|_| t.k8s_namespace_only)
            .map(str::to_string),
        fallback_namespace: namespace.map(str::to_string),
        ..SnapshotConfig::default()
    };
    let (rows_tx, rows_rx) = mpsc::channel(64);
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let snapshotter = Snapshotter::new(cluster.client().clone(), config);
    let task = tokio::spawn(async move {
        let result = snapshotter
            .run(rows_tx, async {
                let _ = stop_rx.await;
            })
            .await;
        match result {
            Ok(stats) => tracing::info!("kubernetes snapshots: {stats:?}"),
            Err(e) => tracing::warn!("kubernetes snapshots stopped: {e}"),
        }
    });
    target.k8s_rows = Some(rows_rx);
    target.stop = Some(stop_tx);
    target.task = Some(task);
}

/// The kubelet's pod cgroup trees on this node (systemd and cgroupfs drivers).
fn kubepods_dirs() -> Result<Vec<PathBuf>, CliError> {
    let cgroup = Cgroup2::detect().map_err(|e| CliError::Environment(e.into()))?;
    let dirs: Vec<PathBuf> = ["kubepods.slice", "kubepods"]
        .iter()
        .map(|d| cgroup.mount.join(d))
        .filter(|d| d.is_dir())
        .collect();
    if dirs.is_empty() {
        return Err(CliError::Environment(anyhow::anyhow!(
            "--node-local: no kubepods.slice or kubepods cgroup under {}: is this a Kubernetes node (and is the host's /sys/fs/cgroup mounted)?",
            cgroup.mount.display()
        )));
    }
    Ok(dirs)
}

fn join_paths(dirs: &[PathBuf]) -> String {
    dirs.iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Pods described by a `kubectl get ... -o json` file (no API server).
fn from_objects_file(
    file: &std::path::Path,
    spec: &TargetSpec,
    target: &mut Target,
) -> Result<Vec<PathBuf>, CliError> {
    let objects = read_objects(file)?;
    let cgroup = Cgroup2::detect().map_err(|e| CliError::Environment(e.into()))?;
    let mut dirs = Vec::new();
    for obj in objects.iter().filter(|o| o.kind == "Pod") {
        let pod: serde_json::Value = serde_json::from_str(&obj.json)
            .with_context(|| format!("{}: pod {}/{}", file.display(), obj.namespace, obj.name))
            .map_err(CliError::Input)?;
        if !spec_matches(spec, &obj.namespace, &obj.name, &labels_of(&pod)) {
            continue;
        }
        let ids = container_ids(&pod);
        let pod_dirs = cgroup
            .pod_cgroups(&obj.uid, &ids)
            .map_err(|e| CliError::Environment(e.into()))?;
        dirs.extend(pod_dirs.into_iter().take(1));
    }
    if dirs.is_empty() {
        return Err(CliError::Input(anyhow::anyhow!(
            "{}: no pod matches {}",
            file.display(),
            describe(spec)
        )));
    }
    target.k8s_rows = Some(send_once(objects));
    Ok(dirs)
}

fn read_objects(file: &std::path::Path) -> Result<Vec<K8sObject>, CliError> {
    let json = std::fs::read_to_string(file)
        .with_context(|| format!("reading {}", file.display()))
        .map_err(CliError::Input)?;
    podtrace_format::k8s::objects_from_list(&json, podtrace_format::now_ns())
        .with_context(|| format!("{}", file.display()))
        .map_err(CliError::Input)
}

fn send_once(objects: Vec<K8sObject>) -> mpsc::Receiver<Vec<Record>> {
    let (tx, rx) = mpsc::channel(1);
    let rows = objects.into_iter().map(Record::K8sObject).collect();
    // Capacity 1 and a fresh channel: this cannot fail.
    let _ = tx.try_send(rows);
    rx
}

fn labels_of(pod: &serde_json::Value) -> std::collections::BTreeMap<String, String> {
    pod.pointer("/metadata/labels")
        .and_then(|l| l.as_object())
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

fn container_ids(pod: &serde_json::Value) -> Vec<String> {
    ["/status/containerStatuses", "/status/initContainerStatuses"]
        .iter()
        .filter_map(|p| pod.pointer(p).and_then(|v| v.as_array()))
        .flatten()
        .filter_map(|c| c.get("containerID").and_then(|v| v.as_str()))
        .map(str::to_string)
        .collect()
}

/// Maps a recorder error to the exit-code class: the environment (privileges, BTF,
/// cgroups, no target) is exit 2, the rest is a runtime failure.
pub fn recorder_error(e: RecorderError) -> CliError {
    match e {
        RecorderError::Privileges { .. }
        | RecorderError::MissingBtf(_)
        | RecorderError::Cgroup(_)
        | RecorderError::NotACgroup { .. }
        | RecorderError::Unsupported(_) => CliError::Environment(e.into()),
        RecorderError::NoTarget | RecorderError::Config(_) => CliError::Usage(e.to_string()),
        other => CliError::Runtime(other.into()),
    }
}

/// Installs the SIGINT/SIGTERM handlers now (so a signal during start-up — resolving pods,
/// loading probes — no longer kills the process) and returns a future that completes on the
/// first of them ([`podtrace_recorder::session::shutdown_signals`]). Must be called inside
/// the runtime.
pub fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>, CliError> {
    podtrace_recorder::session::shutdown_signals().map_err(|e| CliError::Runtime(e.into()))
}
