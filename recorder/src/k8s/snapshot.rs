//! The metadata snapshotter: list then watch Pods, Services and EndpointSlices into
//! `k8s_object` rows, and follow the targeted pods' containers.
//!
//! Rows follow the objects' lives as the recorder saw them:
//! - the first full list of each kind → [`K8sEvent::Snapshot`] rows (one batch per kind);
//! - watch events → [`K8sEvent::Added`], [`K8sEvent::Modified`], [`K8sEvent::Deleted`];
//! - after a watch had to re-list (connection lost for too long, `410 Gone`), the new list
//!   is compared with what was known: new objects are `Added`, changed ones `Modified`,
//!   missing ones `Deleted` — so the capture never silently misses a deletion.
//!
//! `ts_ns` is the wall clock when the row was produced; `json` is the object with
//! `metadata.managedFields` removed. Rows go out as `Vec<Record>` batches on a tokio mpsc
//! channel; the snapshotter stops when the shutdown future completes or the receiver is
//! dropped. Watch errors are logged and retried with backoff (kube-runtime's watcher).

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

use futures::stream::{self, BoxStream, StreamExt};
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, Resource};
use podtrace_format::{K8sEvent, K8sObject, Record};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::mpsc;

use super::targets::{PodSelector, TargetSpec, TargetTracker, TargetUpdate};
use super::K8sError;
use podtrace_format::now_ns;

/// What the snapshotter lists and watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotConfig {
    /// Only this namespace (`None`: the whole cluster, so remote addresses can be named).
    pub namespace: Option<String>,
    /// Record Pods.
    pub pods: bool,
    /// Record Services.
    pub services: bool,
    /// Record EndpointSlices (discovery.k8s.io/v1).
    pub endpoint_slices: bool,
    /// Record Nodes (cluster-scoped: needs cluster-wide list/watch rights; off by default).
    pub nodes: bool,
    /// With `namespace: None`: a kind the credentials may not list cluster-wide (RBAC 403)
    /// is recorded in this namespace only (typically the target's), instead of not at all.
    pub fallback_namespace: Option<String>,
    /// Get the initial state as a streaming list (watch with `sendInitialEvents`, the
    /// WatchList feature of Kubernetes ≥ 1.32) instead of paged lists: less API server memory
    /// on big clusters; off by default because older servers do not support it.
    pub streaming_lists: bool,
    /// Most rows per batch sent on the channel while listing.
    pub max_batch: usize,
}

impl Default for SnapshotConfig {
    fn default() -> Self {
        Self {
            namespace: None,
            pods: true,
            services: true,
            endpoint_slices: true,
            nodes: false,
            fallback_namespace: None,
            streaming_lists: false,
            max_batch: 1000,
        }
    }
}

/// Counts of what a snapshotter run produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotStats {
    /// `snapshot` rows.
    pub snapshot: u64,
    /// `added` rows.
    pub added: u64,
    /// `modified` rows.
    pub modified: u64,
    /// `deleted` rows.
    pub deleted: u64,
    /// Watch errors (each was retried).
    pub watch_errors: u64,
    /// Target updates sent.
    pub target_updates: u64,
    /// Kinds recorded only in [`SnapshotConfig::fallback_namespace`] (cluster-wide was forbidden).
    pub narrowed_kinds: Vec<String>,
    /// Kinds not recorded at all (cluster-scoped and forbidden).
    pub skipped_kinds: Vec<String>,
}

/// An object reduced to what a row needs.
#[derive(Debug, Clone)]
struct Obj {
    uid: String,
    namespace: String,
    name: String,
    resource_version: String,
    json: String,
}

impl Obj {
    fn from_resource<K: Serialize>(kind: &str, k: &K) -> Option<Self> {
        let mut value = match serde_json::to_value(k) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(kind, error = %e, "cannot encode object");
                return None;
            }
        };
        let meta = value.get_mut("metadata").and_then(|m| m.as_object_mut())?;
        meta.remove("managedFields");
        let field = |m: &serde_json::Map<String, serde_json::Value>, k: &str| {
            m.get(k)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string()
        };
        let (uid, namespace, name, resource_version) = (
            field(meta, "uid"),
            field(meta, "namespace"),
            field(meta, "name"),
            field(meta, "resourceVersion"),
        );
        Some(Obj {
            uid,
            namespace,
            name,
            resource_version,
            json: value.to_string(),
        })
    }

    fn row(&self, kind: &str, event: K8sEvent) -> Record {
        Record::K8sObject(K8sObject {
            ts_ns: now_ns(),
            kind: kind.to_string(),
            uid: self.uid.clone(),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            event,
            json: self.json.clone(),
        })
    }

    /// Identity within a kind: the UID, or namespace/name for objects without one.
    fn key(&self) -> String {
        if self.uid.is_empty() {
            format!("{}/{}", self.namespace, self.name)
        } else {
            self.uid.clone()
        }
    }
}

/// Per-kind view of the cluster: what is known, to classify events and re-lists.
#[derive(Debug, Default)]
struct KindState {
    known: HashMap<String, Obj>,
    listed_once: bool,
    seen_in_list: HashSet<String>,
    buffer: Vec<Record>,
}

impl KindState {
    fn on_event(&mut self, kind: &str, ev: Event<Obj>, stats: &mut SnapshotStats) -> Vec<Record> {
        let mut out = Vec::new();
        match ev {
            Event::Init => self.seen_in_list.clear(),
            Event::InitApply(obj) => {
                let key = obj.key();
                self.seen_in_list.insert(key.clone());
                let event = if !self.listed_once {
                    Some(K8sEvent::Snapshot)
                } else {
                    match self.known.get(&key) {
                        None => Some(K8sEvent::Added),
                        Some(old) if old.resource_version != obj.resource_version => {
                            Some(K8sEvent::Modified)
                        }
                        Some(_) => None,
                    }
                };
                if let Some(e) = event {
                    count(stats, e);
                    self.buffer.push(obj.row(kind, e));
                }
                self.known.insert(key, obj);
            }
            Event::InitDone => {
                if self.listed_once {
                    let gone: Vec<String> = self
                        .known
                        .keys()
                        .filter(|k| !self.seen_in_list.contains(*k))
                        .cloned()
                        .collect();
                    for key in gone {
                        if let Some(obj) = self.known.remove(&key) {
                            count(stats, K8sEvent::Deleted);
                            self.buffer.push(obj.row(kind, K8sEvent::Deleted));
                        }
                    }
                }
                self.listed_once = true;
                self.seen_in_list.clear();
                out = std::mem::take(&mut self.buffer);
            }
            Event::Apply(obj) => {
                let e = match self.known.get(&obj.key()) {
                    None => Some(K8sEvent::Added),
                    // a re-delivered event (same version) is not a change
                    Some(old)
                        if old.resource_version == obj.resource_version
                            && !obj.resource_version.is_empty() =>
                    {
                        None
                    }
                    Some(_) => Some(K8sEvent::Modified),
                };
                if let Some(e) = e {
                    count(stats, e);
                    out.push(obj.row(kind, e));
                }
                self.known.insert(obj.key(), obj);
            }
            Event::Delete(obj) => {
                count(stats, K8sEvent::Deleted);
                out.push(obj.row(kind, K8sEvent::Deleted));
                self.known.remove(&obj.key());
            }
        }
        out
    }
}

fn count(stats: &mut SnapshotStats, e: K8sEvent) {
    match e {
        K8sEvent::Snapshot => stats.snapshot += 1,
        K8sEvent::Added => stats.added += 1,
        K8sEvent::Modified => stats.modified += 1,
        K8sEvent::Deleted => stats.deleted += 1,
    }
}

/// One item of the merged watch streams.
enum Item {
    /// A metadata event of kind index `usize`.
    Meta(usize, Result<Event<Obj>, watcher::Error>),
    /// An event of the targeted pods' watch.
    Target(Box<Result<Event<Pod>, watcher::Error>>),
}

struct Follow {
    spec: TargetSpec,
    tracker: TargetTracker,
    tx: mpsc::Sender<TargetUpdate>,
}

/// Lists and watches cluster metadata into `k8s_object` rows; optionally follows targets.
pub struct Snapshotter {
    client: Client,
    config: SnapshotConfig,
    follow: Option<Follow>,
}

impl Debug for Snapshotter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshotter")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn meta_stream<K>(api: Api<K>, wc: watcher::Config, index: usize) -> BoxStream<'static, Item>
where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Serialize
        + Debug
        + Send
        + Sync
        + 'static,
{
    let kind = K::kind(&()).to_string();
    watcher(api, wc)
        .default_backoff()
        .filter_map(move |r| {
            let item = match r {
                Ok(ev) => map_event(ev, |k| Obj::from_resource(&kind, &k)).map(Ok),
                Err(e) => Some(Err(e)),
            };
            futures::future::ready(item.map(|i| Item::Meta(index, i)))
        })
        .boxed()
}

/// Maps an event's object; `None` when the object cannot be encoded (it is skipped).
fn map_event<A, B>(ev: Event<A>, f: impl Fn(A) -> Option<B>) -> Option<Event<B>> {
    Some(match ev {
        Event::Apply(a) => Event::Apply(f(a)?),
        Event::Delete(a) => Event::Delete(f(a)?),
        Event::Init => Event::Init,
        Event::InitApply(a) => Event::InitApply(f(a)?),
        Event::InitDone => Event::InitDone,
    })
}

impl Snapshotter {
    /// A snapshotter using `client`.
    pub fn new(client: Client, config: SnapshotConfig) -> Self {
        Self {
            client,
            config,
            follow: None,
        }
    }

    /// Also watch the pods of `spec` and send [`TargetUpdate`]s for their new cgroup
    /// directories on the tracker's node to `tx` (see [`TargetTracker`]).
    pub fn follow_targets(
        mut self,
        spec: TargetSpec,
        tracker: TargetTracker,
        tx: mpsc::Sender<TargetUpdate>,
    ) -> Self {
        self.follow = Some(Follow { spec, tracker, tx });
        self
    }

    /// Runs until `shutdown` completes or `records` is closed; returns what was produced.
    ///
    /// Watch failures never end the run: they are counted in [`SnapshotStats::watch_errors`],
    /// logged, and retried with backoff.
    pub async fn run(
        self,
        records: mpsc::Sender<Vec<Record>>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<SnapshotStats, K8sError> {
        let Snapshotter {
            client,
            config,
            mut follow,
        } = self;
        let mut kinds: Vec<&'static str> = Vec::new();
        let mut streams: Vec<BoxStream<'static, Item>> = Vec::new();
        let mut stats = SnapshotStats::default();
        let wc = if config.streaming_lists {
            watcher::Config::default().streaming_lists()
        } else {
            watcher::Config::default()
        };
        if config.pods {
            let api = scoped_api::<Pod>(&client, &config, &mut stats).await;
            streams.push(meta_stream(api, wc.clone(), kinds.len()));
            kinds.push("Pod");
        }
        if config.services {
            let api = scoped_api::<Service>(&client, &config, &mut stats).await;
            streams.push(meta_stream(api, wc.clone(), kinds.len()));
            kinds.push("Service");
        }
        if config.endpoint_slices {
            let api = scoped_api::<EndpointSlice>(&client, &config, &mut stats).await;
            streams.push(meta_stream(api, wc.clone(), kinds.len()));
            kinds.push("EndpointSlice");
        }
        if config.nodes {
            let api: Api<Node> = Api::all(client.clone());
            if forbidden(&api).await {
                tracing::warn!(
                    "listing Nodes is forbidden for these credentials; not recording them"
                );
                stats.skipped_kinds.push("Node".into());
            } else {
                streams.push(meta_stream(api, wc.clone(), kinds.len()));
                kinds.push("Node");
            }
        }
        if let Some(f) = &follow {
            let pods: Api<Pod> = Api::namespaced(client.clone(), &f.spec.namespace);
            let wc = match &f.spec.pods {
                PodSelector::Name(n) => {
                    watcher::Config::default().fields(&format!("metadata.name={n}"))
                }
                PodSelector::Labels(l) => watcher::Config::default().labels(l),
            };
            streams.push(
                watcher(pods, wc)
                    .default_backoff()
                    .map(|r| Item::Target(Box::new(r)))
                    .boxed(),
            );
        }
        let mut states: Vec<KindState> = kinds.iter().map(|_| KindState::default()).collect();
        let mut merged = stream::select_all(streams);
        tokio::pin!(shutdown);
        let mut retry = tokio::time::interval(Duration::from_millis(200));
        retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let max_batch = config.max_batch.max(1);

        loop {
            let pending = follow.as_ref().is_some_and(|f| f.tracker.has_pending());
            let item = tokio::select! {
                _ = &mut shutdown => break,
                _ = retry.tick(), if pending => {
                    if let Some(f) = follow.as_mut() {
                        let ups = f.tracker.retry_pending();
                        if !send_updates(f, ups, &mut stats).await {
                            follow = None;
                        }
                    }
                    continue;
                }
                item = merged.next() => item,
            };
            let Some(item) = item else { break };
            match item {
                Item::Meta(i, Ok(ev)) => {
                    let (kind, state) = (kinds[i], &mut states[i]);
                    let mut rows = state.on_event(kind, ev, &mut stats);
                    if rows.is_empty() && state.buffer.len() >= max_batch {
                        rows = std::mem::take(&mut state.buffer);
                    }
                    if !rows.is_empty() && records.send(rows).await.is_err() {
                        return Ok(stats);
                    }
                }
                Item::Meta(i, Err(e)) => {
                    stats.watch_errors += 1;
                    tracing::warn!(kind = kinds[i], error = %e, "watch failed; retrying");
                }
                Item::Target(r) => match *r {
                    Ok(ev) => {
                        if let Some(f) = follow.as_mut() {
                            let ups = match ev {
                                Event::Apply(p) | Event::InitApply(p) => f.tracker.apply(&p),
                                Event::Delete(p) => f.tracker.delete(&p),
                                Event::Init | Event::InitDone => Vec::new(),
                            };
                            if !send_updates(f, ups, &mut stats).await {
                                follow = None;
                            }
                        }
                    }
                    Err(e) => {
                        stats.watch_errors += 1;
                        tracing::warn!(error = %e, "watch of targeted pods failed; retrying");
                    }
                },
            }
        }
        let rest: Vec<Record> = states
            .iter_mut()
            .flat_map(|s| std::mem::take(&mut s.buffer))
            .collect();
        if !rest.is_empty() {
            let _ = records.send(rest).await;
        }
        Ok(stats)
    }
}

/// Sends target updates; false when the receiver is gone (stop following).
async fn send_updates(f: &mut Follow, ups: Vec<TargetUpdate>, stats: &mut SnapshotStats) -> bool {
    for u in ups {
        if f.tx.send(u).await.is_err() {
            return false;
        }
        stats.target_updates += 1;
    }
    true
}

/// The API of a namespaced kind in the configured scope, narrowed to the fallback namespace
/// when a cluster-wide list is forbidden.
async fn scoped_api<K>(
    client: &Client,
    config: &SnapshotConfig,
    stats: &mut SnapshotStats,
) -> Api<K>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug,
{
    match (&config.namespace, &config.fallback_namespace) {
        (Some(ns), _) => Api::namespaced(client.clone(), ns),
        (None, Some(fallback)) => {
            let all: Api<K> = Api::all(client.clone());
            if forbidden(&all).await {
                let kind = K::kind(&()).to_string();
                tracing::warn!(kind, namespace = %fallback, "cluster-wide list forbidden; recording this namespace only");
                stats.narrowed_kinds.push(kind);
                Api::namespaced(client.clone(), fallback)
            } else {
                all
            }
        }
        (None, None) => Api::all(client.clone()),
    }
}

/// How long the RBAC probe of a kind may take (an unreachable server is left to the watcher).
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether listing through `api` is refused with 403 (RBAC). Other failures are left to the
/// watcher, which retries them.
async fn forbidden<K>(api: &Api<K>) -> bool
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    let params = kube::api::ListParams::default().limit(1);
    let probe = api.list_metadata(&params);
    matches!(
        tokio::time::timeout(PROBE_TIMEOUT, probe).await,
        Ok(Err(kube::Error::Api(status))) if status.code == 403
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(uid: &str, rv: &str) -> Obj {
        Obj {
            uid: uid.into(),
            namespace: "d".into(),
            name: format!("n-{uid}"),
            resource_version: rv.into(),
            json: "{}".into(),
        }
    }

    fn events(rows: &[Record]) -> Vec<(String, K8sEvent)> {
        rows.iter()
            .filter_map(|r| match r {
                Record::K8sObject(k) => Some((k.uid.clone(), k.event)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn first_list_is_snapshot_then_watch_events() {
        let mut s = KindState::default();
        let mut st = SnapshotStats::default();
        assert!(s.on_event("Pod", Event::Init, &mut st).is_empty());
        assert!(s
            .on_event("Pod", Event::InitApply(obj("a", "1")), &mut st)
            .is_empty());
        assert!(s
            .on_event("Pod", Event::InitApply(obj("b", "2")), &mut st)
            .is_empty());
        let rows = s.on_event("Pod", Event::InitDone, &mut st);
        assert_eq!(
            events(&rows),
            vec![
                ("a".into(), K8sEvent::Snapshot),
                ("b".into(), K8sEvent::Snapshot)
            ]
        );
        let rows = s.on_event("Pod", Event::Apply(obj("c", "3")), &mut st);
        assert_eq!(events(&rows), vec![("c".into(), K8sEvent::Added)]);
        let rows = s.on_event("Pod", Event::Apply(obj("a", "4")), &mut st);
        assert_eq!(events(&rows), vec![("a".into(), K8sEvent::Modified)]);
        assert!(
            s.on_event("Pod", Event::Apply(obj("a", "4")), &mut st)
                .is_empty(),
            "same version again"
        );
        let rows = s.on_event("Pod", Event::Delete(obj("b", "5")), &mut st);
        assert_eq!(events(&rows), vec![("b".into(), K8sEvent::Deleted)]);
        assert_eq!(
            st,
            SnapshotStats {
                snapshot: 2,
                added: 1,
                modified: 1,
                deleted: 1,
                ..Default::default()
            }
        );
    }

    #[test]
    fn relist_reports_only_the_differences() {
        let mut s = KindState::default();
        let mut st = SnapshotStats::default();
        for ev in [
            Event::Init,
            Event::InitApply(obj("a", "1")),
            Event::InitApply(obj("b", "2")),
        ] {
            s.on_event("Pod", ev, &mut st);
        }
        s.on_event("Pod", Event::InitDone, &mut st);
        // re-list after a lost watch: a unchanged, b changed, c new, (b's sibling) gone
        s.on_event("Pod", Event::Init, &mut st);
        s.on_event("Pod", Event::InitApply(obj("b", "7")), &mut st);
        s.on_event("Pod", Event::InitApply(obj("c", "8")), &mut st);
        let rows = s.on_event("Pod", Event::InitDone, &mut st);
        assert_eq!(
            events(&rows),
            vec![
                ("b".into(), K8sEvent::Modified),
                ("c".into(), K8sEvent::Added),
                ("a".into(), K8sEvent::Deleted)
            ]
        );
    }

    #[test]
    fn managed_fields_are_stripped() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "d", "uid": "u1", "resourceVersion": "9",
                         "managedFields": [{"manager": "kubectl", "operation": "Apply"}]}
        }))
        .expect("pod");
        let o = Obj::from_resource("Pod", &pod).expect("obj");
        assert_eq!(
            (o.uid.as_str(), o.namespace.as_str(), o.name.as_str()),
            ("u1", "d", "p")
        );
        assert_eq!(o.resource_version, "9");
        assert!(!o.json.contains("managedFields"), "{}", o.json);
        let v: serde_json::Value = serde_json::from_str(&o.json).expect("json");
        assert_eq!(v["kind"], "Pod");
    }
}
