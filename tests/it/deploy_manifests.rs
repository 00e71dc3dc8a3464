//! The deploy/ manifests: `kubectl apply --dry-run=client -f deploy/` must accept them, and
//! every object kubectl produced must be a valid Kubernetes object of its kind — decoded
//! into the k8s-openapi type and re-encoded without losing a field (a misspelled or
//! misplaced field would vanish). Also checks what the DaemonSet needs to work: the
//! capabilities, hostPID, the host mounts, the RBAC verbs on pods, services and
//! endpointslices, and that its service account is the one bound.
//!
//! kubectl's client dry-run still asks a server which kinds exist (discovery); the preinstalled
//! test API server (tools/k8s-apiserver) serves only the kinds the recorder reads, so this test
//! runs a small discovery endpoint of its own on 127.0.0.1 (legacy discovery documents for
//! core/v1, apps/v1 and rbac.authorization.k8s.io/v1). Without an OpenAPI document kubectl
//! cannot validate schemas (`--validate=false`); the typed round trip below does that instead.
//!
//! No Docker daemon is assumed: the Dockerfile is checked for what must stay in sync with
//! the workspace (every member copied, the eBPF toolchain, two stages, the captures dir).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, Namespace, PersistentVolumeClaim, PodSpec, Service, ServiceAccount,
};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

fn resource(name: &str, kind: &str, namespaced: bool) -> Value {
    json!({"name": name, "singularName": kind.to_lowercase(), "namespaced": namespaced, "kind": kind,
           "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]})
}

/// The discovery documents kubectl asks for, by path.
fn discovery(path: &str) -> Option<Value> {
    let group = |name: &str| {
        json!({"name": name, "versions": [{"groupVersion": format!("{name}/v1"), "version": "v1"}],
               "preferredVersion": {"groupVersion": format!("{name}/v1"), "version": "v1"}})
    };
    let list = |gv: &str, resources: Vec<Value>| json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources});
    Some(match path {
        "/api" => json!({"kind": "APIVersions", "versions": ["v1"],
                         "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}),
        "/apis" => json!({"kind": "APIGroupList", "apiVersion": "v1",
                          "groups": [group("apps"), group("batch"), group("rbac.authorization.k8s.io")]}),
        "/api/v1" => list(
            "v1",
            vec![
                resource("namespaces", "Namespace", false),
                resource("serviceaccounts", "ServiceAccount", true),
                resource("configmaps", "ConfigMap", true),
                resource("pods", "Pod", true),
                resource("services", "Service", true),
                resource("persistentvolumeclaims", "PersistentVolumeClaim", true),
            ],
        ),
        "/apis/apps/v1" => list(
            "apps/v1",
            vec![
                resource("daemonsets", "DaemonSet", true),
                resource("deployments", "Deployment", true),
            ],
        ),
        "/apis/batch/v1" => list("batch/v1", vec![resource("jobs", "Job", true)]),
        "/apis/rbac.authorization.k8s.io/v1" => list(
            "rbac.authorization.k8s.io/v1",
            vec![
                resource("clusterroles", "ClusterRole", false),
                resource("clusterrolebindings", "ClusterRoleBinding", false),
            ],
        ),
        "/version" => json!({"major": "1", "minor": "34", "gitVersion": "v1.34.0"}),
        _ => return None,
    })
}

/// Serves discovery documents on 127.0.0.1 until the test process exits; returns the URL.
fn start_discovery_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                let mut reader = BufReader::new(match stream.try_clone() {
                    Ok(s) => s,
                    Err(_) => return,
                });
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    return;
                }
                loop {
                    let mut h = String::new();
                    match reader.read_line(&mut h) {
                        Ok(0) | Err(_) => break,
                        Ok(_) if h.trim().is_empty() => break,
                        Ok(_) => {}
                    }
                }
                let path = line.split_whitespace().nth(1).unwrap_or("/");
                let path = path.split('?').next().unwrap_or(path);
                let (status, body) = match discovery(path) {
                    Some(v) => ("200 OK", v.to_string()),
                    None => (
                        "404 Not Found",
                        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                                      "reason": "NotFound", "code": 404})
                        .to_string(),
                    ),
                };
                let mut s = stream;
                let _ = write!(
                    s,
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    format!("http://{addr}")
}

/// Where `written` and `decoded` first differ (a JSON path), if they do.
fn first_diff(written: &Value, decoded: &Value, path: String) -> Option<String> {
    match (written, decoded) {
        (Value::Object(a), Value::Object(b)) => a
            .iter()
            .find_map(|(k, va)| match b.get(k) {
                None => Some(format!("{path}.{k} is not a field of the type")),
                Some(vb) => first_diff(va, vb, format!("{path}.{k}")),
            })
            .or_else(|| {
                b.keys()
                    .find(|k| !a.contains_key(*k))
                    .map(|k| format!("{path}.{k} appeared"))
            }),
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => a
            .iter()
            .zip(b)
            .enumerate()
            .find_map(|(i, (x, y))| first_diff(x, y, format!("{path}[{i}]"))),
        (a, b) if a == b => None,
        (a, b) => Some(format!("{path}: {a} became {b}")),
    }
}

/// Decodes `v` as `T` and re-encodes it: no field may be lost or changed.
fn round_trip<T: DeserializeOwned + Serialize>(v: &Value) -> T {
    let typed: T = serde_json::from_value(v.clone()).unwrap_or_else(|e| {
        panic!(
            "{} is not a valid {}: {e}",
            v["metadata"]["name"], v["kind"]
        )
    });
    let mut back = serde_json::to_value(&typed).expect("encode");
    // k8s-openapi writes apiVersion/kind itself; compare the rest.
    if let (Some(b), Some(o)) = (back.as_object_mut(), v.as_object()) {
        b.insert("apiVersion".into(), o["apiVersion"].clone());
        b.insert("kind".into(), o["kind"].clone());
    }
    if let Some(diff) = first_diff(v, &back, String::new()) {
        panic!(
            "{} {}: {diff} (misspelled or misplaced field?)",
            v["kind"], v["metadata"]["name"]
        );
    }
    typed
}

/// Whether the preinstalled kubectl is there (a loud skip otherwise).
fn kubectl_available() -> bool {
    let ok = Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_ok();
    if !ok {
        eprintln!("SKIPPING deploy manifest test: `kubectl` is not installed");
    }
    ok
}

/// `kubectl apply --dry-run=client -o json -f DIR` against the discovery stand-in; the objects.
fn kubectl_dry_run(dir: &Path) -> Vec<Value> {
    let server = start_discovery_server();
    let tmp = tempfile::tempdir().expect("tempdir");
    let kubeconfig = tmp.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n",
    )
    .expect("kubeconfig");
    let out = Command::new("timeout")
        .arg("60")
        .arg("kubectl")
        .env("KUBECONFIG", &kubeconfig)
        .env("HOME", tmp.path())
        .args([
            "apply",
            "--dry-run=client",
            "--validate=false",
            "-o",
            "json",
            "--server",
            &server,
        ])
        .arg("--cache-dir")
        .arg(tmp.path().join("cache"))
        .arg("-f")
        .arg(dir)
        .output()
        .expect("run kubectl");
    assert!(
        out.status.success(),
        "kubectl apply --dry-run=client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("kubectl -o json");
    match v["kind"].as_str() {
        Some("List") => v["items"].as_array().cloned().unwrap_or_default(),
        _ => vec![v],
    }
}

#[test]
fn the_node_recorder_daemonset_records_every_pod_into_per_node_captures() {
    if !kubectl_available() {
        return;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/node-recorder");
    let items = kubectl_dry_run(&dir);
    assert_eq!(items.len(), 1, "one DaemonSet");
    let ds: DaemonSet = round_trip(&items[0]);
    let spec = ds.spec.template.spec.expect("pod spec");
    assert_eq!(spec.host_pid, Some(true));
    assert_eq!(spec.service_account_name.as_deref(), Some("podtrace"));
    let c = &spec.containers[0];
    let args = c.args.clone().unwrap_or_default();
    for want in ["record", "--node-local", "--rotate=1h"] {
        assert!(args.iter().any(|a| a == want), "args {args:?} lack {want}");
    }
    assert!(args
        .iter()
        .any(|a| a.starts_with("--output=/var/lib/podtrace/")));
    let caps = c
        .security_context
        .as_ref()
        .and_then(|s| s.capabilities.as_ref())
        .and_then(|c| c.add.clone())
        .unwrap_or_default();
    for cap in ["BPF", "PERFMON"] {
        assert!(caps.iter().any(|c| c == cap), "missing capability {cap}");
    }
    let mounts: Vec<String> = c
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| m.mount_path.clone())
        .collect();
    for m in ["/sys/fs/cgroup", "/sys/kernel/btf", "/var/lib/podtrace"] {
        assert!(mounts.iter().any(|x| x == m), "missing mount {m}");
    }
}

/// The volume a pod spec mounts at `path`: its claim name, when it is a claim.
fn claim_at(spec: &PodSpec, c: &Container, path: &str) -> Option<String> {
    let mount = c
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.mount_path == path)?;
    spec.volumes
        .iter()
        .flatten()
        .find(|v| v.name == mount.name)?
        .persistent_volume_claim
        .as_ref()
        .map(|p| p.claim_name.clone())
}

#[test]
fn the_cluster_manifests_run_scheduler_executors_and_the_analysis_on_one_shared_volume() {
    if !kubectl_available() {
        return;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/cluster");
    let items = kubectl_dry_run(&dir);
    let kinds: Vec<&str> = items.iter().filter_map(|i| i["kind"].as_str()).collect();
    assert_eq!(
        kinds,
        [
            "PersistentVolumeClaim",
            "DaemonSet",
            "Deployment",
            "Service",
            "Deployment",
            "Job"
        ]
    );
    let claim: PersistentVolumeClaim = round_trip(&items[0]);
    let claim_name = claim.metadata.name.clone().expect("claim name");
    let modes = claim.spec.and_then(|s| s.access_modes).unwrap_or_default();
    assert!(modes.iter().any(|m| m == "ReadWriteMany"), "{modes:?}");

    let recorder: DaemonSet = round_trip(&items[1]);
    let spec = recorder.spec.template.spec.expect("recorder pod");
    let c = &spec.containers[0];
    let args = c.args.clone().unwrap_or_default();
    assert!(
        args.iter().any(|a| a == "--output=/captures/$(NODE_NAME)/"),
        "{args:?}"
    );
    assert_eq!(
        claim_at(&spec, c, "/captures").as_deref(),
        Some(claim_name.as_str())
    );

    let scheduler: Deployment = round_trip(&items[2]);
    let spec = scheduler.spec.template.spec.expect("scheduler pod");
    let args = spec.containers[0].args.clone().unwrap_or_default();
    assert_eq!(args[..2], ["cluster", "scheduler"]);
    assert!(args.iter().any(|a| a == "--bind=0.0.0.0:50050"), "{args:?}");
    let service: Service = round_trip(&items[3]);
    let ports = service.spec.and_then(|s| s.ports).unwrap_or_default();
    assert_eq!(ports[0].port, 50050);
    let service_name = service.metadata.name.expect("service name");

    let executors: Deployment = round_trip(&items[4]);
    let spec = executors.spec.template.spec.expect("executor pod");
    let c = &spec.containers[0];
    let args = c.args.clone().unwrap_or_default();
    assert_eq!(args[..2], ["cluster", "executor"]);
    assert!(
        args.iter()
            .any(|a| *a == format!("--scheduler={service_name}:50050")),
        "{args:?}"
    );
    assert!(
        args.iter().any(|a| a == "--external-host=$(POD_IP)"),
        "{args:?}"
    );
    assert_eq!(
        claim_at(&spec, c, "/captures").as_deref(),
        Some(claim_name.as_str())
    );

    let job: Job = round_trip(&items[5]);
    let spec = job.spec.and_then(|s| s.template.spec).expect("job pod");
    let c = &spec.containers[0];
    let args = c.args.clone().unwrap_or_default();
    assert_eq!(args[0], "analyze");
    assert!(
        args.iter()
            .any(|a| *a == format!("--cluster=df://{service_name}:50050")),
        "{args:?}"
    );
    assert_eq!(
        claim_at(&spec, c, "/captures").as_deref(),
        Some(claim_name.as_str())
    );
}

#[test]
fn kubectl_accepts_the_manifests_and_they_are_valid_objects() {
    if !kubectl_available() {
        return;
    }
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let items = kubectl_dry_run(&deploy);
    let kinds: Vec<&str> = items.iter().filter_map(|i| i["kind"].as_str()).collect();
    assert_eq!(
        kinds,
        [
            "Namespace",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "ConfigMap",
            "DaemonSet"
        ]
    );

    let mut ds = None;
    let mut role = None;
    let mut binding = None;
    let mut config = None;
    for item in &items {
        match item["kind"].as_str() {
            Some("Namespace") => drop(round_trip::<Namespace>(item)),
            Some("ServiceAccount") => drop(round_trip::<ServiceAccount>(item)),
            Some("ConfigMap") => config = Some(round_trip::<ConfigMap>(item)),
            Some("ClusterRole") => role = Some(round_trip::<ClusterRole>(item)),
            Some("ClusterRoleBinding") => binding = Some(round_trip::<ClusterRoleBinding>(item)),
            Some("DaemonSet") => ds = Some(round_trip::<DaemonSet>(item)),
            other => panic!("unexpected kind {other:?}"),
        }
    }
    let (ds, role, binding, config) = (
        ds.expect("DaemonSet"),
        role.expect("ClusterRole"),
        binding.expect("ClusterRoleBinding"),
        config.expect("ConfigMap"),
    );

    // RBAC: read pods, services, endpointslices; bound to the DaemonSet's service account.
    let rules = role.rules.unwrap_or_default();
    for (group, res) in [
        ("", "pods"),
        ("", "services"),
        ("discovery.k8s.io", "endpointslices"),
    ] {
        let rule = rules
            .iter()
            .find(|r| {
                r.api_groups
                    .as_deref()
                    .unwrap_or_default()
                    .iter()
                    .any(|g| g == group)
                    && r.resources
                        .as_deref()
                        .unwrap_or_default()
                        .iter()
                        .any(|x| x == res)
            })
            .unwrap_or_else(|| panic!("no rule for {group}/{res}"));
        for verb in ["get", "list", "watch"] {
            assert!(rule.verbs.iter().any(|v| v == verb), "{res}: {verb}");
        }
        assert!(!rule
            .verbs
            .iter()
            .any(|v| v == "create" || v == "delete" || v == "*"));
    }
    let spec = ds.spec.template.spec.expect("pod spec");
    let sa = spec
        .service_account_name
        .clone()
        .expect("serviceAccountName");
    assert_eq!(
        binding.role_ref.name,
        role.metadata.name.clone().unwrap_or_default()
    );
    assert!(binding
        .subjects
        .unwrap_or_default()
        .iter()
        .any(|s| s.kind == "ServiceAccount"
            && s.name == sa
            && s.namespace.as_deref() == Some("podtrace")));

    // The recorder's needs.
    assert_eq!(spec.host_pid, Some(true));
    let c = &spec.containers[0];
    let caps = c
        .security_context
        .as_ref()
        .and_then(|s| s.capabilities.as_ref())
        .and_then(|c| c.add.clone())
        .unwrap_or_default();
    for cap in ["BPF", "PERFMON", "SYS_RESOURCE"] {
        assert!(caps.iter().any(|c| c == cap), "capability {cap}");
    }
    let mounts = c.volume_mounts.clone().unwrap_or_default();
    let volumes = spec.volumes.unwrap_or_default();
    for path in ["/sys/fs/cgroup", "/sys/kernel/btf", "/var/lib/podtrace"] {
        let m = mounts
            .iter()
            .find(|m| m.mount_path == path)
            .unwrap_or_else(|| panic!("no mount at {path}"));
        let vol = volumes.iter().find(|v| v.name == m.name).expect("volume");
        let host = vol
            .host_path
            .as_ref()
            .unwrap_or_else(|| panic!("{path} is not a hostPath"));
        assert_eq!(host.path, path);
    }
    // Every ConfigMap key the DaemonSet reads exists.
    let data = config.data.unwrap_or_default();
    for env in c.env.clone().unwrap_or_default() {
        if let Some(key) = env
            .value_from
            .and_then(|f| f.config_map_key_ref)
            .map(|r| r.key)
        {
            assert!(data.contains_key(&key), "ConfigMap has no key {key}");
        }
    }
}

/// The quoted strings of the root manifest's `members = [...]` line.
fn workspace_members(root_manifest: &str) -> Vec<String> {
    let line = root_manifest
        .lines()
        .find(|l| l.trim_start().starts_with("members"))
        .expect("members line in Cargo.toml");
    line.split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

#[test]
fn dockerfile_builds_every_workspace_member_in_two_stages() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf();
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("Cargo.toml");
    let docker = std::fs::read_to_string(root.join("deploy/Dockerfile")).expect("Dockerfile");
    let members = workspace_members(&manifest);
    assert!(members.len() >= 5, "{members:?}");
    // cargo needs every member's manifest (and the root package's src/) in the context.
    for dir in members.iter().map(String::as_str).chain(["src"]) {
        assert!(
            docker
                .lines()
                .any(|l| l.trim() == format!("COPY {dir} {dir}")),
            "deploy/Dockerfile does not copy workspace member {dir}"
        );
    }
    let stages: Vec<&str> = docker.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(stages.len(), 2, "{stages:?}");
    assert!(stages[0].contains(" AS builder") && stages[1].contains("debian:bookworm-slim"));
    for tool in ["clang", "bpftool", "libbpf-dev"] {
        assert!(docker.contains(tool), "builder lacks {tool}");
    }
    assert!(docker.contains("COPY --from=builder /usr/local/bin/podtrace"));
    assert!(docker.contains("--locked --bin podtrace"));
    // The image's working directory is where the DaemonSet mounts the captures.
    let ds = std::fs::read_to_string(root.join("deploy/30-daemonset.yaml")).expect("daemonset");
    assert!(
        docker.contains("WORKDIR /var/lib/podtrace") && ds.contains("mountPath: /var/lib/podtrace")
    );
    // The build context filter keeps the target dir and venv out.
    let ignore =
        std::fs::read_to_string(root.join("deploy/Dockerfile.dockerignore")).expect("dockerignore");
    for entry in ["target", ".venv", ".git"] {
        assert!(
            ignore.lines().any(|l| l.trim() == entry),
            "{entry} not ignored"
        );
    }
}
