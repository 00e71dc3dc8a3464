//! Kubernetes: pod resolution, metadata snapshots (list + watch) as `k8s_object` rows.
//!
//! The recorder talks to the API server for three things:
//!
//! 1. **Targeting** — `podtrace record -n NS POD` becomes a [`PodTarget`] (UID, node, IP,
//!    container ids, labels) through [`Cluster::resolve_pod`] or, for a label selector,
//!    [`Cluster::resolve_selector`]. Only Running pods on *this* node can be recorded here;
//!    anything else is a clear [`K8sError`]. [`PodTarget::cgroup_dirs`] then maps the pod to
//!    its cgroup v2 directories with [`crate::cgroups`].
//! 2. **Metadata** — the [`snapshot::Snapshotter`] lists then watches Pods, Services and
//!    EndpointSlices (cluster-wide or one namespace) and emits them as
//!    [`podtrace_format::K8sObject`] rows, so the analyzer can name the pods and services
//!    behind addresses even after they are gone.
//! 3. **Following the target** — the same snapshotter, given a [`targets::TargetSpec`], watches
//!    the targeted pods and sends [`targets::TargetUpdate::Add`] with the cgroup directories
//!    of containers that (re)start, so the recorder adds them to its filter.
//!
//! The client comes from a kubeconfig (`KUBECONFIG`, `~/.kube/config`) or the in-cluster
//! service account ([`Cluster::connect`]), or from an explicit kubeconfig file
//! ([`Cluster::from_kubeconfig`]). This module never prints: it returns errors and logs
//! through `tracing`.
//!
//! How `podtrace record -n NS POD` wires it (the recorder owns the eBPF filter map):
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use podtrace_recorder::cgroups::{cgroup_id, Cgroup2};
//! use podtrace_recorder::k8s::{Cluster, SnapshotConfig, Snapshotter, TargetSpec, TargetTracker, TargetUpdate};
//! use tokio::sync::mpsc;
//!
//! let cluster = Cluster::connect(None).await?; // --node overrides; default $NODE_NAME or hostname
//! let spec = TargetSpec::pod("demo", "frontend-5d9c"); // or TargetSpec::selector("demo", "app=web")
//! let cgroup = Cgroup2::detect()?;
//! let mut dirs = Vec::new();
//! for pod in cluster.resolve(&spec).await? {
//!     dirs.extend(pod.cgroup_dirs(&cgroup)?); // clear errors: not found / not Running / other node
//! }
//! for d in &dirs {
//!     let _id: u64 = cgroup_id(d)?; // → insert into the eBPF cgroup filter map
//! }
//! let mut tracker = TargetTracker::new(cluster.node(), cgroup);
//! tracker.mark_known(dirs);
//! let (rows_tx, mut rows_rx) = mpsc::channel(64); // Vec<Record> batches of k8s_object rows
//! let (targets_tx, mut targets_rx) = mpsc::channel(64);
//! let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
//! // whole cluster, or only the target's namespace where RBAC forbids cluster-wide reads
//! let config = SnapshotConfig { fallback_namespace: Some(spec.namespace.clone()), ..Default::default() };
//! let snap = Snapshotter::new(cluster.client().clone(), config).follow_targets(spec, tracker, targets_tx);
//! let task = tokio::spawn(snap.run(rows_tx, async { let _ = stop_rx.await; }));
//! // recorder loop: rows_rx.recv() → capture writer; targets_rx.recv() →
//! //   TargetUpdate::Add(dir) → cgroup_id(&dir) into the filter map
//! # let _ = (&mut rows_rx, &mut targets_rx);
//! let _ = stop_tx.send(()); // on SIGINT/SIGTERM/--duration
//! let stats = task.await??; // SnapshotStats: rows per event type, watch errors, target updates
//! # let _ = stats; Ok(()) }
//! ```

pub mod snapshot;
pub mod targets;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use crate::cgroups::{bare_container_id, Cgroup2, CgroupError};

pub use snapshot::{SnapshotConfig, SnapshotStats, Snapshotter};
pub use targets::{PodSelector, TargetSpec, TargetTracker, TargetUpdate};

/// Errors of Kubernetes targeting and snapshots.
#[derive(Debug, thiserror::Error)]
pub enum K8sError {
    /// Neither a kubeconfig nor an in-cluster service account could be loaded.
    #[error("no Kubernetes configuration: {0}")]
    Config(String),
    /// The kube client could not be built (TLS setup).
    #[error("cannot create the Kubernetes client: {0}")]
    Client(String),
    /// An API request failed.
    #[error("{what}: {source}")]
    Api {
        /// The request, e.g. `get pod demo/web`.
        what: String,
        /// The client's error.
        source: Box<kube::Error>,
    },
    /// The pod does not exist.
    #[error("pod {namespace}/{name} not found")]
    PodNotFound {
        /// Namespace asked for.
        namespace: String,
        /// Name asked for.
        name: String,
    },
    /// The pod exists but is not running.
    #[error("pod {namespace}/{name} is not Running (phase {phase}): nothing to record yet")]
    PodNotRunning {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// `status.phase` (`Pending`, `Succeeded`, `Failed`, `Unknown`).
        phase: String,
    },
    /// The pod is not scheduled to any node yet.
    #[error("pod {namespace}/{name} is not scheduled to a node yet")]
    PodNotScheduled {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// The pod runs on another node: the recorder must run there.
    #[error(
        "pod {namespace}/{name} runs on node {pod_node}, not on this node {this_node}: run podtrace on \
         {pod_node} (or pass --node if this host's node name differs from its hostname)"
    )]
    WrongNode {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// The pod's `spec.nodeName`.
        pod_node: String,
        /// This node's name.
        this_node: String,
    },
    /// A label selector matched no Running pod on this node.
    #[error("no Running pod on node {this_node} matches {selector:?} in namespace {namespace}{}",
            if others.is_empty() { String::new() } else { format!(" (matching elsewhere: {})", others.join(", ")) })]
    NoPodsMatch {
        /// Namespace.
        namespace: String,
        /// The label selector.
        selector: String,
        /// This node's name.
        this_node: String,
        /// Pods that matched but are elsewhere or not running: `name (node N, phase P)`.
        others: Vec<String>,
    },
    /// An object lacks a field the recorder needs (e.g. `metadata.uid`).
    #[error("pod {0}: {1}")]
    InvalidPod(String, String),
    /// This host's name could not be read.
    #[error("cannot read this host's name: {0}")]
    Hostname(std::io::Error),
    /// Mapping a pod to cgroups failed.
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
}

/// A pod the recorder can target: what it needs to find the pod's cgroups and traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodTarget {
    /// metadata.namespace
    pub namespace: String,
    /// metadata.name
    pub name: String,
    /// metadata.uid (names its cgroup directory).
    pub uid: String,
    /// spec.nodeName
    pub node: String,
    /// status.podIP, when assigned.
    pub ip: Option<IpAddr>,
    /// Bare container ids (no `containerd://`) of the pod's init, app and ephemeral
    /// containers that have been created, in status order.
    pub container_ids: Vec<String>,
    /// metadata.labels
    pub labels: BTreeMap<String, String>,
}

impl PodTarget {
    /// Reads a Pod object (any phase, any node).
    pub fn from_pod(pod: &Pod) -> Result<Self, K8sError> {
        let meta = &pod.metadata;
        let namespace = meta.namespace.clone().unwrap_or_default();
        let name = meta.name.clone().unwrap_or_default();
        let id = format!("{namespace}/{name}");
        let uid = meta
            .uid
            .clone()
            .filter(|u| !u.is_empty())
            .ok_or_else(|| K8sError::InvalidPod(id.clone(), "no metadata.uid".into()))?;
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default();
        let status = pod.status.as_ref();
        let ip = match status
            .and_then(|s| s.pod_ip.as_deref())
            .filter(|s| !s.is_empty())
        {
            Some(s) => Some(s.parse().map_err(|_| {
                K8sError::InvalidPod(id.clone(), format!("bad status.podIP {s:?}"))
            })?),
            None => None,
        };
        Ok(PodTarget {
            namespace,
            name,
            uid,
            node,
            ip,
            container_ids: pod_container_ids(pod),
            labels: meta.labels.clone().unwrap_or_default(),
        })
    }

    /// The pod's cgroup v2 directories on this node (see [`Cgroup2::pod_cgroups`]).
    pub fn cgroup_dirs(&self, cgroup: &Cgroup2) -> Result<Vec<PathBuf>, CgroupError> {
        cgroup.pod_cgroups(&self.uid, &self.container_ids)
    }
}

/// Bare ids of every created container of a pod (init, app, ephemeral), without duplicates.
pub fn pod_container_ids(pod: &Pod) -> Vec<String> {
    let Some(status) = pod.status.as_ref() else {
        return Vec::new();
    };
    let lists = [
        status.init_container_statuses.as_deref(),
        status.container_statuses.as_deref(),
        status.ephemeral_container_statuses.as_deref(),
    ];
    let mut out: Vec<String> = Vec::new();
    for cs in lists.into_iter().flatten().flatten() {
        let Some(id) = cs.container_id.as_deref().filter(|s| !s.is_empty()) else {
            continue;
        };
        match bare_container_id(id) {
            Ok(bare) if !out.iter().any(|o| o == bare) => out.push(bare.to_string()),
            Ok(_) => {}
            Err(_) => tracing::warn!(container = %cs.name, id, "ignoring malformed containerID"),
        }
    }
    out
}

/// This node's name: `$NODE_NAME` when set (the usual downward-API variable of a
/// DaemonSet), else the hostname lowercased, which is what the kubelet registers by default.
pub fn this_node_name() -> Result<String, K8sError> {
    if let Some(n) = std::env::var("NODE_NAME")
        .ok()
        .filter(|n| !n.trim().is_empty())
    {
        return Ok(n.trim().to_string());
    }
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname").map_err(K8sError::Hostname)?;
    Ok(raw.trim().to_ascii_lowercase())
}

/// A connection to the cluster plus the name of the node this recorder runs on.
#[derive(Clone)]
pub struct Cluster {
    client: Client,
    node: String,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Connects with the inferred configuration: `KUBECONFIG` / `~/.kube/config`, else the
    /// in-cluster service account. `node` overrides this node's name (default: hostname).
    pub async fn connect(node: Option<&str>) -> Result<Self, K8sError> {
        let config = Config::infer()
            .await
            .map_err(|e| K8sError::Config(e.to_string()))?;
        Self::from_config(config, node)
    }

    /// Connects with the current context of the kubeconfig file at `path`.
    pub async fn from_kubeconfig(path: &Path, node: Option<&str>) -> Result<Self, K8sError> {
        let kubeconfig = Kubeconfig::read_from(path)
            .map_err(|e| K8sError::Config(format!("reading kubeconfig {}: {e}", path.display())))?;
        let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .map_err(|e| K8sError::Config(format!("kubeconfig {}: {e}", path.display())))?;
        Self::from_config(config, node)
    }

    /// Builds the client from a kube [`Config`].
    pub fn from_config(config: Config, node: Option<&str>) -> Result<Self, K8sError> {
        // rustls panics when the build has no crypto provider compiled in; turn that into an error.
        let built =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Client::try_from(config)));
        let client = match built {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => return Err(K8sError::Client(e.to_string())),
            Err(panic) => {
                let msg = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "panic".into())
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ");
                return Err(K8sError::Client(format!(
                    "TLS setup failed ({msg}); build kube with a rustls crypto provider feature (aws-lc-rs or ring)"
                )));
            }
        };
        Self::from_client(client, node)
    }

    /// Uses an existing client. `node` overrides this node's name (default: hostname).
    pub fn from_client(client: Client, node: Option<&str>) -> Result<Self, K8sError> {
        let node = match node {
            Some(n) => n.to_string(),
            None => this_node_name()?,
        };
        Ok(Self { client, node })
    }

    /// The kube client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The name of the node this recorder runs on.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Finds pod `namespace/name` and checks it can be recorded here: it exists, is
    /// Running, and is scheduled to this node.
    pub async fn resolve_pod(&self, namespace: &str, name: &str) -> Result<PodTarget, K8sError> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let pod = api
            .get_opt(name)
            .await
            .map_err(|e| K8sError::Api {
                what: format!("get pod {namespace}/{name}"),
                source: Box::new(e),
            })?
            .ok_or_else(|| K8sError::PodNotFound {
                namespace: namespace.into(),
                name: name.into(),
            })?;
        self.check_recordable(&pod)
    }

    /// Every Running pod on this node in `namespace` matching `label_selector`
    /// (Kubernetes selector syntax, e.g. `app=web,tier!=db`), sorted by name. None is an
    /// error ([`K8sError::NoPodsMatch`]) that lists the matching pods found elsewhere.
    pub async fn resolve_selector(
        &self,
        namespace: &str,
        label_selector: &str,
    ) -> Result<Vec<PodTarget>, K8sError> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let list = api
            .list(&ListParams::default().labels(label_selector))
            .await
            .map_err(|e| K8sError::Api {
                what: format!("list pods in {namespace} with selector {label_selector:?}"),
                source: Box::new(e),
            })?;
        let mut targets = Vec::new();
        let mut others = Vec::new();
        for pod in &list.items {
            match self.check_recordable(pod) {
                Ok(t) => targets.push(t),
                Err(K8sError::InvalidPod(id, why)) => return Err(K8sError::InvalidPod(id, why)),
                Err(_) => others.push(describe_elsewhere(pod)),
            }
        }
        if targets.is_empty() {
            return Err(K8sError::NoPodsMatch {
                namespace: namespace.into(),
                selector: label_selector.into(),
                this_node: self.node.clone(),
                others,
            });
        }
        targets.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(targets)
    }

    /// Resolves a [`TargetSpec`]: one pod by name ([`Self::resolve_pod`]) or every pod
    /// matching a selector ([`Self::resolve_selector`]).
    pub async fn resolve(&self, spec: &TargetSpec) -> Result<Vec<PodTarget>, K8sError> {
        match &spec.pods {
            targets::PodSelector::Name(n) => Ok(vec![self.resolve_pod(&spec.namespace, n).await?]),
            targets::PodSelector::Labels(l) => self.resolve_selector(&spec.namespace, l).await,
        }
    }

    fn check_recordable(&self, pod: &Pod) -> Result<PodTarget, K8sError> {
        let target = PodTarget::from_pod(pod)?;
        let phase = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_else(|| "Unknown".into());
        if target.node.is_empty() {
            return Err(K8sError::PodNotScheduled {
                namespace: target.namespace,
                name: target.name,
            });
        }
        if !target.node.eq_ignore_ascii_case(&self.node) {
            return Err(K8sError::WrongNode {
                namespace: target.namespace,
                name: target.name,
                pod_node: target.node,
                this_node: self.node.clone(),
            });
        }
        if phase != "Running" {
            return Err(K8sError::PodNotRunning {
                namespace: target.namespace,
                name: target.name,
                phase,
            });
        }
        Ok(target)
    }
}

fn describe_elsewhere(pod: &Pod) -> String {
    let name = pod.metadata.name.as_deref().unwrap_or("?");
    let node = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("<none>");
    let phase = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Unknown");
    format!("{name} (node {node}, phase {phase})")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(json: serde_json::Value) -> Pod {
        serde_json::from_value(json).expect("pod json")
    }

    #[test]
    fn pod_target_from_pod() {
        let p = pod(serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "namespace": "demo", "uid": "u-1", "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "a"}, {"name": "b"}]},
            "status": {"phase": "Running", "podIP": "127.0.1.5",
                "initContainerStatuses": [{"name": "i", "ready": false, "restartCount": 0, "image": "", "imageID": "",
                                           "containerID": "containerd://0123456789ab"}],
                "containerStatuses": [
                    {"name": "a", "ready": true, "restartCount": 0, "image": "", "imageID": "",
                     "containerID": "containerd://abcdef012345"},
                    {"name": "b", "ready": false, "restartCount": 0, "image": "", "imageID": ""},
                    {"name": "c", "ready": false, "restartCount": 0, "image": "", "imageID": "",
                     "containerID": "containerd://../../bad"}]}
        }));
        let t = PodTarget::from_pod(&p).expect("target");
        assert_eq!(t.uid, "u-1");
        assert_eq!(t.node, "n1");
        assert_eq!(t.ip, Some("127.0.1.5".parse().expect("ip")));
        assert_eq!(t.container_ids, vec!["0123456789ab", "abcdef012345"]);
        assert_eq!(t.labels.get("app").map(String::as_str), Some("web"));
    }

    #[test]
    fn pod_without_uid_or_with_bad_ip_is_an_error() {
        let p = pod(serde_json::json!({"metadata": {"name": "x", "namespace": "d"}}));
        assert!(matches!(
            PodTarget::from_pod(&p),
            Err(K8sError::InvalidPod(..))
        ));
        let p = pod(
            serde_json::json!({"metadata": {"name": "x", "namespace": "d", "uid": "u"},
                                        "status": {"podIP": "not-an-ip"}}),
        );
        let err = PodTarget::from_pod(&p).expect_err("bad ip").to_string();
        assert!(err.contains("not-an-ip"), "{err}");
    }

    #[test]
    fn node_name_is_lowercase_hostname() {
        let n = this_node_name().expect("hostname");
        assert!(!n.is_empty());
        if std::env::var_os("NODE_NAME").is_none() {
            assert_eq!(n, n.to_ascii_lowercase());
        }
    }
}
