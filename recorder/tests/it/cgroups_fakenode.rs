//! Pod → cgroup mapping on a real cgroup v2 tree built by the fake kubelet (tools/fakenode).
//!
//! fakenode starts real processes inside kubelet-shaped cgroup directories (systemd and
//! cgroupfs drivers) and reports the pod to the test API server; podtrace must resolve the
//! pod through the API, find the same directories with `pod_cgroups`, agree with the
//! kernel about where the processes are (`cgroup_of_pid`), and use inode numbers as cgroup
//! ids. Needs root (cgroup writes) and python3; skips loudly without them.

use crate::k8s_support;

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_support::{child_line, have, is_root, repo, stop_child, ApiServer};
use podtrace_recorder::cgroups::{cgroup_id, descendants, Cgroup2};
use podtrace_recorder::k8s::{this_node_name, Cluster, K8sError};

/// A fakenode CLI process running one pod.
struct FakePod {
    child: Child,
    info: serde_json::Value,
}

impl FakePod {
    fn start(global: &[&str], pod: &[&str]) -> FakePod {
        let mut child = Command::new("python3")
            .arg(repo().join("tools/fakenode/fakenode.py"))
            .args(global)
            .arg("pod")
            .args(pod)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start fakenode.py");
        let (line, _) = child_line(
            &mut child,
            Duration::from_secs(20),
            "fakenode did not start the pod",
            |l| l.starts_with('{'),
        );
        FakePod {
            child,
            info: serde_json::from_str(&line).expect("fakenode json"),
        }
    }

    fn str(&self, key: &str) -> String {
        self.info[key]
            .as_str()
            .unwrap_or_else(|| panic!("{key} in {}", self.info))
            .to_string()
    }

    fn container(&self, name: &str) -> (String, PathBuf, u32) {
        let id = self.info["container_ids"][name]
            .as_str()
            .expect("container id")
            .to_string();
        let dir = PathBuf::from(self.info["cgroup_dirs"][name].as_str().expect("cgroup dir"));
        let pid = u32::try_from(self.info["pids"][name].as_u64().expect("pid")).expect("pid fits");
        (id, dir, pid)
    }
}

impl Drop for FakePod {
    fn drop(&mut self) {
        stop_child(&mut self.child);
    }
}

fn wait_gone(path: &std::path::Path) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if !path.exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn prerequisites() -> Option<Cgroup2> {
    if !is_root() || !have("python3", &["--version"]) {
        return None;
    }
    match Cgroup2::detect() {
        Ok(cg) => Some(cg),
        Err(e) => {
            eprintln!("!!! SKIPPING: {e} !!!");
            None
        }
    }
}

#[tokio::test]
async fn systemd_layout_pod_resolves_through_the_api_to_its_cgroups() {
    let Some(cg) = prerequisites() else { return };
    if !have("openssl", &["version"]) {
        return;
    }
    let api =
        ApiServer::start(&serde_json::json!({"apiVersion": "v1", "kind": "List", "items": []}));
    let node = this_node_name().expect("node name");
    let kubeconfig = api.kubeconfig.to_str().expect("utf8").to_string();
    let pod = FakePod::start(
        &[
            "--kubeconfig",
            &kubeconfig,
            "--node-name",
            &node,
            "--driver",
            "systemd",
        ],
        &[
            "-n",
            "demo",
            "--name",
            "web",
            "-l",
            "app=web",
            "--ip",
            "127.0.1.9",
            "--container",
            "web=sleep 60",
            "--container",
            "side=sleep 60",
            "--expose",
            "web:80:8080:10.96.0.10",
        ],
    );
    let uid = pod.str("uid");
    let pod_dir = PathBuf::from(pod.str("pod_dir"));
    let (web_id, web_dir, web_pid) = pod.container("web");
    let (side_id, side_dir, side_pid) = pod.container("side");
    assert!(
        pod_dir.ends_with(format!(
            "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice",
            uid.replace('-', "_")
        )),
        "{}",
        pod_dir.display()
    );
    assert_eq!(
        web_dir,
        pod_dir.join(format!("cri-containerd-{web_id}.scope"))
    );

    // the API view: podtrace resolves the pod to the same uid and container ids
    let mut ids = vec![web_id.clone(), side_id.clone()];
    match Cluster::from_kubeconfig(&api.kubeconfig, None).await {
        Ok(c) => {
            let t = c
                .resolve_pod("demo", "web")
                .await
                .expect("pod resolves on this node");
            assert_eq!(t.uid, uid);
            assert_eq!(t.node, node);
            assert_eq!(t.ip, Some("127.0.1.9".parse().expect("ip")));
            let mut got = t.container_ids.clone();
            got.sort();
            ids.sort();
            assert_eq!(got, ids);
            assert_eq!(t.cgroup_dirs(&cg).expect("dirs"), {
                let mut v = vec![pod_dir.clone(), web_dir.clone(), side_dir.clone()];
                v[1..].sort();
                v
            });
        }
        Err(K8sError::Client(msg)) => eprintln!("!!! SKIPPING the API part: {msg} !!!"),
        Err(e) => panic!("connect: {e}"),
    }

    // fakenode published the pod's Service and EndpointSlice
    let r = api.kubectl(&["get", "svc,endpointslices", "-n", "demo"]);
    assert!(r.ok, "{}", r.stderr);
    assert!(
        r.stdout.contains("service/web")
            && r.stdout.contains("10.96.0.10")
            && r.stdout.contains("80/TCP"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("127.0.1.9") && r.stdout.contains("8080"),
        "{}",
        r.stdout
    );

    // the cgroup view
    let dirs = cg
        .pod_cgroups(&uid, &[format!("containerd://{web_id}")])
        .expect("pod_cgroups");
    assert_eq!(dirs, vec![pod_dir.clone(), web_dir.clone()]);
    for (dir, pid) in [(&web_dir, web_pid), (&side_dir, side_pid)] {
        let id = cgroup_id(dir).expect("cgroup id");
        assert_eq!(
            id,
            std::fs::metadata(dir).expect("stat").ino(),
            "cgroup id = inode"
        );
        let of_pid = cg.cgroup_of_pid(pid).expect("cgroup of pid");
        assert_eq!(
            &of_pid, dir,
            "the kernel puts the process where fakenode said"
        );
        assert_eq!(cgroup_id(&of_pid).expect("id"), id);
    }
    let all = descendants(&pod_dir).expect("descendants");
    assert!(all.contains(&web_dir) && all.contains(&side_dir), "{all:?}");

    // teardown: processes, API object and directories go away
    drop(pod);
    assert!(
        wait_gone(&pod_dir),
        "fakenode removed {}",
        pod_dir.display()
    );
    assert!(!is_alive(web_pid), "container process {web_pid} stopped");
    let r = api.kubectl(&["get", "svc,endpointslices,pods", "-n", "demo"]);
    assert!(
        r.ok && !r.stdout.contains("web"),
        "cleaned up: {} {}",
        r.stdout,
        r.stderr
    );
    if let Ok(c) = Cluster::from_kubeconfig(&api.kubeconfig, None).await {
        let e = c.resolve_pod("demo", "web").await.expect_err("deleted");
        assert!(matches!(e, K8sError::PodNotFound { .. }), "{e}");
    }
}

/// Zombies of a reaped process vanish; a live one still has a state other than Z.
fn is_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

#[test]
fn cgroupfs_layout_guaranteed_pod_is_found() {
    let Some(cg) = prerequisites() else { return };
    let pod = FakePod::start(
        &["--no-api", "--driver", "cgroupfs"],
        &[
            "-n",
            "demo",
            "--name",
            "db",
            "--qos",
            "guaranteed",
            "--",
            "sleep",
            "60",
        ],
    );
    let uid = pod.str("uid");
    let (id, dir, pid) = pod.container("db");
    assert_eq!(dir, cg.mount.join(format!("kubepods/pod{uid}/{id}")));
    let dirs = cg.pod_cgroups(&uid, &[id.as_str()]).expect("pod_cgroups");
    assert_eq!(
        dirs,
        vec![cg.mount.join(format!("kubepods/pod{uid}")), dir.clone()]
    );
    assert_eq!(cg.cgroup_of_pid(pid).expect("cgroup of pid"), dir);
    assert_eq!(
        cgroup_id(&dir).expect("id"),
        std::fs::metadata(&dir).expect("stat").ino()
    );
    drop(pod);
    assert!(wait_gone(&dir), "fakenode removed {}", dir.display());
}

#[test]
fn own_process_cgroup_on_the_real_tree() {
    let Some(cg) = prerequisites() else { return };
    let dir = cg.cgroup_of_pid(std::process::id()).expect("own cgroup");
    assert!(dir.starts_with(&cg.mount), "{}", dir.display());
    assert!(
        dir.join("cgroup.procs").exists(),
        "a cgroup directory: {}",
        dir.display()
    );
    assert_eq!(
        cgroup_id(&dir).expect("id"),
        std::fs::metadata(&dir).expect("stat").ino()
    );
    let e = cg
        .pod_cgroups("00000000-0000-0000-0000-00000000dead", &[] as &[&str])
        .expect_err("no such pod");
    assert!(
        e.to_string()
            .contains("00000000_0000_0000_0000_00000000dead"),
        "{e}"
    );
}

/// demo_cluster.py: API server + three pods with traffic; podtrace resolves a pod of it and
/// finds its process where the kernel says it is; the pods really talk (W3C context on the wire).
#[tokio::test]
async fn demo_cluster_topology_is_resolvable_and_serves_traffic() {
    let Some(cg) = prerequisites() else { return };
    if !have("openssl", &["version"]) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    // own addresses (127.0.3.x) so a running `make demo` on 127.0.1.x does not collide
    let app = ["{python}", "{tools}/fakenode/demo_app.py"];
    let spec = serde_json::json!({"namespace": "shop", "pods": [
        {"name": "db-0", "labels": {"app": "db"}, "ip": "127.0.3.11",
         "containers": [{"name": "db", "argv": [app[0], app[1], "--listen", "127.0.3.11:8080", "--name", "db"]}],
         "expose": {"service": "db", "port": 8080, "cluster_ip": "10.96.3.11"}},
        {"name": "web-0", "labels": {"app": "web"}, "ip": "127.0.3.10",
         "containers": [{"name": "web", "argv": [app[0], app[1], "--listen", "127.0.3.10:8080", "--name", "web",
                                                 "--upstream", "http://127.0.3.11:8080/q"]}]},
    ]});
    let spec_file = dir.path().join("spec.json");
    std::fs::write(&spec_file, spec.to_string()).expect("write spec");
    let mut child = Command::new("python3")
        .arg(repo().join("tools/fakenode/demo_cluster.py"))
        .arg("--dir")
        .arg(dir.path().join("api"))
        .arg("--spec")
        .arg(&spec_file)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("demo_cluster.py");
    let (line, _rx) = child_line(
        &mut child,
        Duration::from_secs(30),
        "demo cluster did not start",
        |l| l.starts_with('{'),
    );
    let info: serde_json::Value = serde_json::from_str(&line).expect("json");
    let kubeconfig = PathBuf::from(info["kubeconfig"].as_str().expect("kubeconfig"));
    let web_pid =
        u32::try_from(info["pods"]["web-0"]["pids"]["web"].as_u64().expect("pid")).expect("fits");

    let outcome = async {
        let c = match Cluster::from_kubeconfig(&kubeconfig, info["node"].as_str()).await {
            Ok(c) => Some(c),
            Err(K8sError::Client(msg)) => {
                eprintln!("!!! SKIPPING the API part: {msg} !!!");
                None
            }
            Err(e) => return Err(format!("connect: {e}")),
        };
        if let Some(c) = c {
            let t = c
                .resolve_pod("shop", "web-0")
                .await
                .map_err(|e| e.to_string())?;
            let dirs = t.cgroup_dirs(&cg).map_err(|e| e.to_string())?;
            let of_pid = cg.cgroup_of_pid(web_pid).map_err(|e| e.to_string())?;
            if !dirs.contains(&of_pid) {
                return Err(format!("{} not in {dirs:?}", of_pid.display()));
            }
        }
        // a request through web-0 reaches db-0
        let body = http_get("127.0.3.10:8080", "/")?;
        if !body.contains("\"service\": \"web\"") || !body.contains("\"upstream\": 200") {
            return Err(format!("unexpected answer {body}"));
        }
        Ok(())
    }
    .await;
    stop_child(&mut child);
    outcome.expect("demo cluster");
    assert!(
        !PathBuf::from(
            info["pods"]["web-0"]["cgroup_dirs"]["web"]
                .as_str()
                .expect("dir")
        )
        .exists(),
        "torn down"
    );
}

/// A plain HTTP/1.1 GET over a socket, retried while the server starts.
fn http_get(addr: &str, path: &str) -> Result<String, String> {
    use std::io::{Read, Write};
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let attempt = (|| -> std::io::Result<String> {
            let mut s = std::net::TcpStream::connect(addr)?;
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            write!(
                s,
                "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
            )?;
            let mut out = String::new();
            s.read_to_string(&mut out)?;
            Ok(out)
        })();
        match attempt {
            Ok(out) => return Ok(out),
            Err(e) if Instant::now() >= deadline => return Err(format!("GET {addr}{path}: {e}")),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}
