//! Following targeted pods: new containers → new cgroup directories for the recorder.
//!
//! A pod's set of cgroups changes while it is recorded: a crashed container restarts with a
//! new container id (and a new cgroup), an ephemeral debug container joins, and with a
//! label selector whole new pods appear. [`TargetTracker`] turns Pod watch events for the
//! targeted pods into [`TargetUpdate`]s: each cgroup directory is announced once, as soon
//! as it exists on this node (the kubelet may report a container id a moment before its
//! directory is there, so missing ones are retried for [`PENDING_TIMEOUT`]).
//!
//! The watch itself runs in [`crate::k8s::snapshot::Snapshotter`]; this module holds the
//! pure bookkeeping so it can be tested without a cluster.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;

use super::{pod_container_ids, PodTarget};
use crate::cgroups::{Cgroup2, CgroupError};

/// How long a reported container id may lack its cgroup directory before it is given up.
pub const PENDING_TIMEOUT: Duration = Duration::from_secs(10);

/// Which pods to follow (one namespace, by name or by label selector).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetSpec {
    /// The pods' namespace.
    pub namespace: String,
    /// Which pods in it.
    pub pods: PodSelector,
}

/// How the targeted pods are chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodSelector {
    /// One pod by name.
    Name(String),
    /// Every pod matching a label selector (`app=web,tier!=db`).
    Labels(String),
}

impl TargetSpec {
    /// One pod by name.
    pub fn pod(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            pods: PodSelector::Name(name.into()),
        }
    }
    /// Pods matching a label selector.
    pub fn selector(namespace: impl Into<String>, selector: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            pods: PodSelector::Labels(selector.into()),
        }
    }
}

/// A change of the recorder's target set.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TargetUpdate {
    /// Record processes in this cgroup directory too (add its cgroup id to the filter).
    Add(PathBuf),
    /// A targeted pod was deleted; its cgroups are going away.
    PodGone {
        /// namespace/name
        pod: String,
        /// metadata.uid
        uid: String,
    },
}

#[derive(Debug, Default)]
struct Followed {
    id: String,
    /// Container ids whose directories were announced.
    done: BTreeSet<String>,
    /// Container ids still waiting for their directory, and since when.
    pending: BTreeMap<String, Instant>,
}

/// Bookkeeping of followed pods on this node: what was announced, what is pending.
#[derive(Debug)]
pub struct TargetTracker {
    node: String,
    cgroup: Cgroup2,
    announced: BTreeSet<PathBuf>,
    pods: HashMap<String, Followed>,
}

impl TargetTracker {
    /// A tracker for pods on `node`, locating cgroups in `cgroup`.
    pub fn new(node: impl Into<String>, cgroup: Cgroup2) -> Self {
        Self {
            node: node.into(),
            cgroup,
            announced: BTreeSet::new(),
            pods: HashMap::new(),
        }
    }

    /// Marks directories as already known to the recorder (e.g. from the initial
    /// [`PodTarget::cgroup_dirs`]) so they are not announced again.
    pub fn mark_known(&mut self, dirs: impl IntoIterator<Item = PathBuf>) {
        self.announced.extend(dirs);
    }

    /// A pod was added, modified or listed: returns the new directories to record.
    pub fn apply(&mut self, pod: &Pod) -> Vec<TargetUpdate> {
        let Ok(t) = PodTarget::from_pod(pod) else {
            return Vec::new();
        };
        if !t.node.eq_ignore_ascii_case(&self.node) {
            return Vec::new();
        }
        let entry = self.pods.entry(t.uid.clone()).or_default();
        entry.id = format!("{}/{}", t.namespace, t.name);
        let now = Instant::now();
        for id in pod_container_ids(pod) {
            if !entry.done.contains(&id) {
                entry.pending.entry(id).or_insert(now);
            }
        }
        self.resolve_pending(&t.uid)
    }

    /// A pod was deleted.
    pub fn delete(&mut self, pod: &Pod) -> Vec<TargetUpdate> {
        let (Some(uid), Some(ns), Some(name)) = (
            pod.metadata.uid.as_ref(),
            pod.metadata.namespace.as_ref(),
            pod.metadata.name.as_ref(),
        ) else {
            return Vec::new();
        };
        match self.pods.remove(uid) {
            Some(_) => vec![TargetUpdate::PodGone {
                pod: format!("{ns}/{name}"),
                uid: uid.clone(),
            }],
            None => Vec::new(),
        }
    }

    /// Whether some container ids still wait for their directory.
    pub fn has_pending(&self) -> bool {
        self.pods.values().any(|p| !p.pending.is_empty())
    }

    /// Retries every pending container id (call periodically while [`Self::has_pending`]).
    pub fn retry_pending(&mut self) -> Vec<TargetUpdate> {
        let uids: Vec<String> = self
            .pods
            .iter()
            .filter(|(_, p)| !p.pending.is_empty())
            .map(|(u, _)| u.clone())
            .collect();
        uids.iter().flat_map(|u| self.resolve_pending(u)).collect()
    }

    fn resolve_pending(&mut self, uid: &str) -> Vec<TargetUpdate> {
        let Some(entry) = self.pods.get_mut(uid) else {
            return Vec::new();
        };
        if entry.pending.is_empty() {
            return Vec::new();
        }
        let dirs = match self.cgroup.pod_cgroup_dirs(uid) {
            Ok(d) => Some(d),
            Err(CgroupError::PodNotFound { .. }) => None,
            Err(e) => {
                tracing::warn!(pod = %entry.id, error = %e, "cannot read the pod's cgroups");
                None
            }
        };
        let mut out = Vec::new();
        if let Some(dirs) = &dirs {
            if self.announced.insert(dirs.pod_dir.clone()) {
                out.push(TargetUpdate::Add(dirs.pod_dir.clone()));
            }
        }
        let now = Instant::now();
        let pending = std::mem::take(&mut entry.pending);
        for (id, since) in pending {
            match dirs.as_ref().and_then(|d| d.containers.get(&id)) {
                Some(paths) => {
                    for p in paths {
                        if self.announced.insert(p.clone()) {
                            out.push(TargetUpdate::Add(p.clone()));
                        }
                    }
                    entry.done.insert(id);
                }
                None if now.duration_since(since) < PENDING_TIMEOUT => {
                    entry.pending.insert(id, since);
                }
                None => {
                    tracing::warn!(pod = %entry.id, container = %id, "container's cgroup never appeared on this node");
                    entry.done.insert(id);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "1b4e28ba-2fa1-11d2-883f-0016d3cca427";
    const C1: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const C2: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn pod(node: &str, ids: &[&str]) -> Pod {
        let statuses: Vec<_> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                serde_json::json!({"name": format!("c{i}"), "ready": true, "restartCount": 0, "image": "",
                                   "imageID": "", "containerID": format!("containerd://{id}")})
            })
            .collect();
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "demo", "uid": UID},
            "spec": {"nodeName": node, "containers": []},
            "status": {"phase": "Running", "containerStatuses": statuses}
        }))
        .expect("pod")
    }

    #[test]
    fn announces_each_new_container_once_and_waits_for_late_directories() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let pod_dir = tmp.path().join(format!(
            "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice",
            UID.replace('-', "_")
        ));
        let c1 = pod_dir.join(format!("cri-containerd-{C1}.scope"));
        std::fs::create_dir_all(&c1).expect("mkdir");
        let mut t = TargetTracker::new("node-a", Cgroup2::at(tmp.path()));

        // other node: ignored
        assert!(t.apply(&pod("node-b", &[C1])).is_empty());
        let ups = t.apply(&pod("node-a", &[C1]));
        assert_eq!(
            ups,
            vec![
                TargetUpdate::Add(pod_dir.clone()),
                TargetUpdate::Add(c1.clone())
            ]
        );
        assert!(t.apply(&pod("node-a", &[C1])).is_empty(), "no repeats");

        // a restarted container whose directory appears a moment later
        assert!(t.apply(&pod("node-a", &[C1, C2])).is_empty());
        assert!(t.has_pending());
        let c2 = pod_dir.join(format!("cri-containerd-{C2}.scope"));
        std::fs::create_dir_all(&c2).expect("mkdir");
        assert_eq!(t.retry_pending(), vec![TargetUpdate::Add(c2)]);
        assert!(!t.has_pending());

        let gone = t.delete(&pod("node-a", &[C1, C2]));
        assert_eq!(
            gone,
            vec![TargetUpdate::PodGone {
                pod: "demo/web".into(),
                uid: UID.into()
            }]
        );
    }

    #[test]
    fn known_directories_are_not_announced_again() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let pod_dir = tmp.path().join(format!("kubepods/pod{UID}"));
        let c1 = pod_dir.join(C1);
        std::fs::create_dir_all(&c1).expect("mkdir");
        let mut t = TargetTracker::new("node-a", Cgroup2::at(tmp.path()));
        t.mark_known([pod_dir.clone(), c1.clone()]);
        assert!(t.apply(&pod("node-a", &[C1])).is_empty());
    }
}
