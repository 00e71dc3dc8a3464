//! Kubernetes enrichment: which workload a span belongs to, and which one it talked to.
//!
//! Built from the capture's `k8s_object` rows (Pod, Service, EndpointSlice). Lookups are
//! by time: the latest version of an object at or before the span's start (the earliest
//! one when the span predates every version); deleted pods still resolve, so captures can
//! be analysed after the cluster moved on. The local socket's IP finds the pod
//! (`status.podIP`/`podIPs`, which works for imported captures too), whose service name is
//! the Service selecting it, else its owning workload, else its `app` label, else its name.
//! The peer IP resolves to a pod, a Service ClusterIP or an EndpointSlice endpoint address;
//! Without Kubernetes metadata, a peer that is a recorded server socket is named after
//! that process; external peers keep their address. Processes outside any pod are named
//! by `comm`.
//!
//! Objects given at analysis time (`podtrace analyze --k8s-objects`, see
//! [`Enricher::add_fallback`]) form a second layer, consulted only where the capture's own
//! rows do not answer: an address the capture resolves (to a pod, a ClusterIP or an
//! endpoint) keeps the capture's answer; a pod the file names is taken in the capture's
//! version when the capture has that pod (same uid); a pod's service is the capture's
//! Service selecting it when there is one, else the file's (Services the capture has are
//! not taken from the file).

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use podtrace_format::{K8sEvent, K8sObject};
use podtrace_model::{KeyValue, Resource, SpanKind};
use serde_json::Value;

use crate::span::ObservedSpan;

/// A pod version, reduced to what enrichment uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodInfo {
    /// metadata.uid
    pub uid: String,
    /// metadata.namespace
    pub namespace: String,
    /// metadata.name
    pub name: String,
    /// spec.nodeName
    pub node: String,
    /// metadata.labels
    pub labels: BTreeMap<String, String>,
    /// Name of the owning workload (Deployment from a ReplicaSet, StatefulSet, ...).
    pub owner: Option<String>,
    /// status.podIP and status.podIPs.
    pub ips: Vec<IpAddr>,
}

/// A Service version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceInfo {
    /// metadata.namespace
    pub namespace: String,
    /// metadata.name
    pub name: String,
    /// spec.selector (empty: selects nothing).
    pub selector: BTreeMap<String, String>,
    /// spec.clusterIP / clusterIPs.
    pub cluster_ips: Vec<IpAddr>,
}

/// What an address resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// Service name (or workload name for pods no Service selects).
    pub service: String,
    /// Namespace.
    pub namespace: String,
    /// Pod name, when the address is a pod's.
    pub pod: Option<String>,
}

/// Versions of one thing over time, ascending by time (input order for equal times).
type Versions<T> = Vec<(u64, T)>;

fn at<T>(versions: &Versions<T>, ts: u64) -> Option<&T> {
    let i = versions.partition_point(|(t, _)| *t <= ts);
    if i == 0 {
        versions.first().map(|(_, v)| v)
    } else {
        Some(&versions[i - 1].1)
    }
}

fn insert<T>(versions: &mut Versions<T>, ts: u64, v: T) {
    let i = versions.partition_point(|(t, _)| *t <= ts);
    versions.insert(i, (ts, v));
}

/// Kubernetes objects over time, indexed for span enrichment.
#[derive(Debug, Default)]
pub struct Enricher {
    pods: HashMap<String, Versions<Arc<PodInfo>>>,
    pod_by_ip: HashMap<IpAddr, Versions<String>>,
    services: BTreeMap<(String, String), Versions<Arc<ServiceInfo>>>,
    service_by_ip: HashMap<IpAddr, Versions<(String, String)>>,
    endpoint_by_ip: HashMap<IpAddr, Versions<(String, String)>>,
    objects: u64,
    bad_objects: u64,
    /// Server sockets' local addresses seen in the captures → the recorded process's name.
    listeners: HashMap<SocketAddr, String>,
    /// Objects given at analysis time: consulted where the capture's own do not answer.
    fallback: Option<Box<Enricher>>,
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    cur.as_str().unwrap_or("")
}

fn string_map(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

fn ips(values: impl IntoIterator<Item = Option<String>>) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = values
        .into_iter()
        .flatten()
        .filter_map(|s| s.parse().ok())
        .collect();
    out.sort();
    out.dedup();
    out
}

fn parse_pod(obj: &K8sObject, v: &Value) -> PodInfo {
    let labels = string_map(&v["metadata"]["labels"]);
    let owner = v["metadata"]["ownerReferences"]
        .as_array()
        .and_then(|refs| {
            refs.iter()
                .find(|r| r["controller"].as_bool() == Some(true))
                .or(refs.first())
        })
        .and_then(|r| {
            let name = r["name"].as_str()?;
            match (r["kind"].as_str(), labels.get("pod-template-hash")) {
                (Some("ReplicaSet"), Some(hash)) => Some(
                    name.strip_suffix(&format!("-{hash}"))
                        .unwrap_or(name)
                        .to_string(),
                ),
                _ => Some(name.to_string()),
            }
        });
    let mut addrs = vec![v["status"]["podIP"].as_str().map(str::to_string)];
    if let Some(list) = v["status"]["podIPs"].as_array() {
        addrs.extend(list.iter().map(|p| p["ip"].as_str().map(str::to_string)));
    }
    PodInfo {
        uid: if obj.uid.is_empty() {
            str_at(v, &["metadata", "uid"]).to_string()
        } else {
            obj.uid.clone()
        },
        namespace: obj.namespace.clone(),
        name: obj.name.clone(),
        node: str_at(v, &["spec", "nodeName"]).to_string(),
        labels,
        owner,
        ips: ips(addrs),
    }
}

fn parse_service(obj: &K8sObject, v: &Value) -> ServiceInfo {
    let mut addrs = vec![v["spec"]["clusterIP"].as_str().map(str::to_string)];
    if let Some(list) = v["spec"]["clusterIPs"].as_array() {
        addrs.extend(list.iter().map(|p| p.as_str().map(str::to_string)));
    }
    ServiceInfo {
        namespace: obj.namespace.clone(),
        name: obj.name.clone(),
        selector: string_map(&v["spec"]["selector"]),
        cluster_ips: ips(addrs),
    }
}

impl Enricher {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// `(objects indexed, objects whose JSON could not be read)`, with those given at
    /// analysis time.
    pub fn counts(&self) -> (u64, u64) {
        let (fo, fb) = self.fallback.as_ref().map_or((0, 0), |f| f.counts());
        (self.objects + fo, self.bad_objects + fb)
    }

    /// Indexes objects given at analysis time (`--k8s-objects`; stamped with any time: a
    /// file describes the cluster as a whole). They only answer what the capture's own
    /// objects do not (see the module doc).
    pub fn add_fallback(&mut self, objects: &[K8sObject]) {
        let fallback = self.fallback.get_or_insert_with(Box::default);
        for o in objects {
            fallback.add(o);
        }
    }

    /// Indexes one `k8s_object` row. Unknown kinds are ignored; unreadable JSON is counted.
    pub fn add(&mut self, obj: &K8sObject) {
        let Ok(v) = serde_json::from_str::<Value>(&obj.json) else {
            self.bad_objects += 1;
            return;
        };
        self.objects += 1;
        let ts = obj.ts_ns;
        match obj.kind.as_str() {
            "Pod" => {
                let pod = parse_pod(obj, &v);
                // hostNetwork pods share the node's IP: the address cannot name them.
                let host_network = v["spec"]["hostNetwork"].as_bool() == Some(true);
                for ip in pod.ips.iter().filter(|_| !host_network) {
                    let list = self.pod_by_ip.entry(*ip).or_default();
                    if list.last().map(|(_, u)| u) != Some(&pod.uid) {
                        insert(list, ts, pod.uid.clone());
                    }
                }
                let uid = pod.uid.clone();
                insert(self.pods.entry(uid).or_default(), ts, Arc::new(pod));
            }
            "Service" => {
                let svc = parse_service(obj, &v);
                let key = (svc.namespace.clone(), svc.name.clone());
                if obj.event != K8sEvent::Deleted {
                    for ip in &svc.cluster_ips {
                        insert(self.service_by_ip.entry(*ip).or_default(), ts, key.clone());
                    }
                }
                insert(self.services.entry(key).or_default(), ts, Arc::new(svc));
            }
            "EndpointSlice" => {
                let service = v["metadata"]["labels"]["kubernetes.io/service-name"]
                    .as_str()
                    .unwrap_or("");
                if service.is_empty() || obj.event == K8sEvent::Deleted {
                    return;
                }
                let key = (obj.namespace.clone(), service.to_string());
                for ep in v["endpoints"].as_array().into_iter().flatten() {
                    for a in ep["addresses"].as_array().into_iter().flatten() {
                        if let Some(ip) = a.as_str().and_then(|s| s.parse::<IpAddr>().ok()) {
                            insert(self.endpoint_by_ip.entry(ip).or_default(), ts, key.clone());
                        }
                    }
                }
            }
            _ => {}
        }
    }

    /// Notes a recorded server socket: a peer connecting to `addr` talks to `name` (used
    /// when Kubernetes metadata does not name the peer).
    pub fn note_listener(&mut self, addr: SocketAddr, name: String) {
        self.listeners.entry(addr).or_insert(name);
    }

    /// The pod that had `ip` at `ts` (the capture's objects, else those given at analysis
    /// time; a pod known to both in the capture's version).
    pub fn pod_at(&self, ip: IpAddr, ts: u64) -> Option<Arc<PodInfo>> {
        if let Some(pod) = self.own_pod_at(ip, ts) {
            return Some(pod);
        }
        let pod = self.fallback.as_ref()?.own_pod_at(ip, ts)?;
        match self.pods.get(&pod.uid).and_then(|v| at(v, ts)) {
            Some(known) => Some(known.clone()),
            None => Some(pod),
        }
    }

    fn own_pod_at(&self, ip: IpAddr, ts: u64) -> Option<Arc<PodInfo>> {
        let uid = at(self.pod_by_ip.get(&ip)?, ts)?;
        at(self.pods.get(uid)?, ts).cloned()
    }

    /// The (alphabetically first) Service of the pod's namespace in this layer whose
    /// selector matches its labels, leaving out Services `skip` has.
    fn selecting_service(
        &self,
        pod: &PodInfo,
        ts: u64,
        skip: Option<&Enricher>,
    ) -> Option<&ServiceInfo> {
        self.services
            .range((pod.namespace.clone(), String::new())..)
            .take_while(|((ns, _), _)| *ns == pod.namespace)
            .filter(|(key, _)| skip.is_none_or(|s| !s.services.contains_key(*key)))
            .filter_map(|(_, versions)| at(versions, ts))
            .find(|svc| {
                !svc.selector.is_empty()
                    && svc
                        .selector
                        .iter()
                        .all(|(k, v)| pod.labels.get(k) == Some(v))
            })
            .map(|svc| &**svc)
    }

    /// The service name of a pod: the (alphabetically first) Service of its namespace whose
    /// selector matches its labels (the capture's, else one given at analysis time), else
    /// its workload, else its `app` label, else its name.
    pub fn service_of(&self, pod: &PodInfo, ts: u64) -> String {
        let selected = self.selecting_service(pod, ts, None).or_else(|| {
            self.fallback
                .as_ref()?
                .selecting_service(pod, ts, Some(self))
        });
        if let Some(svc) = selected {
            return svc.name.clone();
        }
        pod.owner
            .clone()
            .or_else(|| pod.labels.get("app.kubernetes.io/name").cloned())
            .or_else(|| pod.labels.get("app").cloned())
            .unwrap_or_else(|| pod.name.clone())
    }

    /// The resource of a pod at `ts`.
    pub fn pod_resource(&self, pod: &PodInfo, ts: u64) -> Resource {
        let mut r = Resource::new(self.service_of(pod, ts))
            .with("k8s.namespace.name", pod.namespace.as_str())
            .with("k8s.pod.name", pod.name.as_str());
        if !pod.uid.is_empty() {
            r.set("k8s.pod.uid", pod.uid.as_str());
        }
        if !pod.node.is_empty() {
            r.set("k8s.node.name", pod.node.as_str());
        }
        for (k, v) in &pod.labels {
            r.set(format!("k8s.pod.label.{k}"), v.as_str());
        }
        r
    }

    /// What a peer address was at `ts`: a pod, a Service ClusterIP, or an endpoint (as
    /// the capture's objects say, else as those given at analysis time say).
    pub fn peer_at(&self, ip: IpAddr, ts: u64) -> Option<PeerInfo> {
        self.own_peer_at(ip, ts, self).or_else(|| {
            let fallback = self.fallback.as_ref()?;
            fallback.own_peer_at(ip, ts, self)
        })
    }

    /// This layer's answer for a peer address; pods are named by `names` (the top layer,
    /// which merges Services of both).
    fn own_peer_at(&self, ip: IpAddr, ts: u64, names: &Enricher) -> Option<PeerInfo> {
        if let Some(pod) = self.own_pod_at(ip, ts) {
            // A pod the capture also has: the capture's version.
            let pod = match names.pods.get(&pod.uid).and_then(|v| at(v, ts)) {
                Some(known) => known.clone(),
                None => pod,
            };
            return Some(PeerInfo {
                service: names.service_of(&pod, ts),
                namespace: pod.namespace.clone(),
                pod: Some(pod.name.clone()),
            });
        }
        let (ns, name) = self
            .service_by_ip
            .get(&ip)
            .and_then(|v| at(v, ts))
            .or_else(|| self.endpoint_by_ip.get(&ip).and_then(|v| at(v, ts)))?;
        Some(PeerInfo {
            service: name.clone(),
            namespace: ns.clone(),
            pod: None,
        })
    }

    /// Sets the span's resource (its workload) and peer attributes (`peer.service`,
    /// `podtrace.peer.pod`, `podtrace.peer.namespace`). Without a known pod the resource
    /// stays as built: the process default
    /// ([`default_service_name`](crate::span::default_service_name), see
    /// [`ObservedSpan::span`]), not computed a second time.
    pub fn enrich(&self, s: &mut ObservedSpan) {
        let ts = s.span.start_time_unix_nano;
        if let Some(pod) = s.conn.key.local.and_then(|l| self.pod_at(l.ip(), ts)) {
            s.span.resource = self.pod_resource(&pod, ts);
        }
        let remote = s.conn.key.remote;
        let peer = remote.and_then(|r| self.peer_at(r.ip(), ts));
        if peer.is_none() && s.span.kind == SpanKind::Client {
            if let Some(name) = remote.and_then(|r| self.listeners.get(&r)) {
                s.span
                    .attributes
                    .push(KeyValue::new("peer.service", name.as_str()));
            }
        }
        if let Some(peer) = peer {
            s.span
                .attributes
                .push(KeyValue::new("peer.service", peer.service));
            if let Some(pod) = peer.pod {
                s.span
                    .attributes
                    .push(KeyValue::new("podtrace.peer.pod", pod));
            }
            s.span
                .attributes
                .push(KeyValue::new("podtrace.peer.namespace", peer.namespace));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(ts: u64, kind: &str, ns: &str, name: &str, event: K8sEvent, json: Value) -> K8sObject {
        K8sObject {
            ts_ns: ts,
            kind: kind.into(),
            uid: json["metadata"]["uid"].as_str().unwrap_or("").into(),
            namespace: ns.into(),
            name: name.into(),
            event,
            json: json.to_string(),
        }
    }

    fn pod(uid: &str, name: &str, ip: &str, labels: Value, owner: Option<(&str, &str)>) -> Value {
        let mut v = serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "shop", "uid": uid, "labels": labels},
            "spec": {"nodeName": "node-1"},
            "status": {"podIP": ip, "podIPs": [{"ip": ip}]}
        });
        if let Some((kind, oname)) = owner {
            v["metadata"]["ownerReferences"] =
                serde_json::json!([{"kind": kind, "name": oname, "controller": true}]);
        }
        v
    }

    #[test]
    fn service_selector_owner_and_label_fallbacks() {
        let mut e = Enricher::new();
        e.add(&obj(
            1,
            "Pod",
            "shop",
            "front-7d9f-abc",
            K8sEvent::Snapshot,
            pod(
                "u1",
                "front-7d9f-abc",
                "10.0.0.1",
                serde_json::json!({"app": "front", "pod-template-hash": "7d9f"}),
                Some(("ReplicaSet", "front-7d9f")),
            ),
        ));
        let p = e.pod_at("10.0.0.1".parse().expect("ip"), 5).expect("pod");
        assert_eq!(
            e.service_of(&p, 5),
            "front",
            "owner deployment from replicaset"
        );
        e.add(&obj(
            2,
            "Service",
            "shop",
            "frontend",
            K8sEvent::Snapshot,
            serde_json::json!({"metadata": {"name": "frontend"},
                "spec": {"selector": {"app": "front"}, "clusterIP": "10.96.0.10"}}),
        ));
        assert_eq!(e.service_of(&p, 5), "frontend");
        let r = e.pod_resource(&p, 5);
        assert_eq!(r.get("k8s.pod.name"), Some("front-7d9f-abc"));
        assert_eq!(r.get("k8s.node.name"), Some("node-1"));
        assert_eq!(r.get("k8s.pod.uid"), Some("u1"));
        assert_eq!(r.get("k8s.pod.label.app"), Some("front"));
        let peer = e
            .peer_at("10.96.0.10".parse().expect("ip"), 5)
            .expect("svc");
        assert_eq!((peer.service.as_str(), peer.pod), ("frontend", None));
    }

    #[test]
    fn objects_given_at_analysis_time_fill_in_and_lose_to_the_capture() {
        let snap = |kind: &str, name: &str, json: Value| {
            obj(0, kind, "shop", name, K8sEvent::Snapshot, json)
        };
        let svc = |name: &str, app: &str, ip: &str| {
            serde_json::json!({"metadata": {"name": name},
                "spec": {"selector": {"app": app}, "clusterIP": ip}})
        };
        let mut e = Enricher::new();
        // The capture knows the frontend pod (capture version: label app=front, v1) and
        // its Service; the file (taken later) knows them too, differently, plus a backend
        // pod, a Service `aaa` also selecting app=front, and a pod at the frontend's IP.
        e.add(&obj(
            5,
            "Pod",
            "shop",
            "front-1",
            K8sEvent::Snapshot,
            pod(
                "u-front",
                "front-1",
                "10.0.0.1",
                serde_json::json!({"app": "front", "v": "1"}),
                None,
            ),
        ));
        e.add(&obj(
            5,
            "Service",
            "shop",
            "frontend",
            K8sEvent::Snapshot,
            svc("frontend", "front", "10.96.0.1"),
        ));
        e.add_fallback(&[
            snap(
                "Pod",
                "front-1",
                pod(
                    "u-front",
                    "front-1",
                    "10.0.0.1",
                    serde_json::json!({"app": "front", "v": "2"}),
                    None,
                ),
            ),
            snap(
                "Pod",
                "impostor",
                pod("u-imp", "impostor", "10.0.0.1", serde_json::json!({}), None),
            ),
            snap(
                "Pod",
                "back-1",
                pod(
                    "u-back",
                    "back-1",
                    "10.0.0.2",
                    serde_json::json!({"app": "back"}),
                    None,
                ),
            ),
            snap("Service", "backend", svc("backend", "back", "10.96.0.2")),
            snap(
                "Service",
                "frontend",
                svc("frontend", "nobody", "10.96.0.9"),
            ),
            snap("Service", "aaa", svc("aaa", "front", "10.96.0.3")),
        ]);
        assert_eq!(e.counts(), (8, 0));
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        // The capture's pod (and version) at its IP; its Service wins over the file's `aaa`.
        let front = e.pod_at(ip("10.0.0.1"), 10).expect("front");
        assert_eq!(front.name, "front-1");
        assert_eq!(front.labels.get("v").map(String::as_str), Some("1"));
        assert_eq!(e.service_of(&front, 10), "frontend");
        // The file fills in what the capture lacks.
        let back = e.pod_at(ip("10.0.0.2"), 10).expect("back");
        assert_eq!(e.service_of(&back, 10), "backend");
        let peer = e.peer_at(ip("10.0.0.2"), 10).expect("peer");
        assert_eq!(
            (peer.service.as_str(), peer.pod.as_deref()),
            ("backend", Some("back-1"))
        );
        assert_eq!(
            e.peer_at(ip("10.96.0.2"), 10).expect("clusterIP").service,
            "backend"
        );
        // The capture's ClusterIP keeps the capture's Service; the file's other IP for the
        // same Service key is not used, being the capture's object.
        assert_eq!(
            e.peer_at(ip("10.96.0.1"), 10).expect("svc").service,
            "frontend"
        );
        assert_eq!(
            e.peer_at(ip("10.96.0.9"), 10).map(|p| p.service),
            Some("frontend".to_string()),
            "an address only the file knows"
        );
        // The file's version of the capture's Service (selector app=nobody) is not used
        // for selection: the frontend pod still has its Service.
        assert_eq!(e.service_of(&front, 10), "frontend");
        assert!(e.peer_at(ip("10.9.9.9"), 10).is_none());
    }

    #[test]
    fn versions_by_time_and_deleted_pods_resolve() {
        let mut e = Enricher::new();
        let ip = "10.0.0.7";
        e.add(&obj(
            10,
            "Pod",
            "shop",
            "old",
            K8sEvent::Added,
            pod("u-old", "old", ip, serde_json::json!({"app": "old"}), None),
        ));
        e.add(&obj(
            20,
            "Pod",
            "shop",
            "old",
            K8sEvent::Deleted,
            pod("u-old", "old", ip, serde_json::json!({"app": "old"}), None),
        ));
        e.add(&obj(
            30,
            "Pod",
            "shop",
            "new",
            K8sEvent::Added,
            pod("u-new", "new", ip, serde_json::json!({"app": "new"}), None),
        ));
        let at = |ts| {
            e.pod_at(ip.parse().expect("ip"), ts)
                .expect("pod")
                .name
                .clone()
        };
        assert_eq!(at(5), "old", "before any version: earliest");
        assert_eq!(at(25), "old", "deleted still resolves");
        assert_eq!(at(35), "new");
        e.add(&obj(
            1,
            "EndpointSlice",
            "shop",
            "api-x",
            K8sEvent::Snapshot,
            serde_json::json!({"metadata": {"labels": {"kubernetes.io/service-name": "api"}},
                "endpoints": [{"addresses": ["10.0.0.99"]}]}),
        ));
        let peer = e
            .peer_at("10.0.0.99".parse().expect("ip"), 2)
            .expect("endpoint");
        assert_eq!(peer.service, "api");
        e.add(&K8sObject {
            json: "{not json".into(),
            ..obj(1, "Pod", "a", "b", K8sEvent::Added, Value::Null)
        });
        let mut host = pod("u-h", "agent", "192.168.1.5", serde_json::json!({}), None);
        host["spec"]["hostNetwork"] = serde_json::json!(true);
        e.add(&obj(
            1,
            "Pod",
            "kube-system",
            "agent",
            K8sEvent::Snapshot,
            host,
        ));
        assert!(e.pod_at("192.168.1.5".parse().expect("ip"), 2).is_none());
        assert_eq!(e.counts().1, 1);
    }
}
