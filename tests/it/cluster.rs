//! `podtrace analyze --cluster` on a loopback Ballista cluster started here: one scheduler
//! and two executors (`podtrace cluster ...`, i.e. `podtrace-cluster`, which `make test`
//! builds next to `podtrace` before the tests; `cargo test` alone does not build another
//! package's binary) as separate processes on 127.0.0.1. The chain fixture split per node
//! (one capture per node), and a long generated multi-node set (the chain repeated:
//! context-less hops crossing nodes, many batches and evictions; over 100,000 records,
//! above the size at which large jobs failed while Ballista's tasks shared shuffle files —
//! docs/scale-out.md, "Large jobs failed: the cause (fixed)"), give byte-identical
//! traces.otlp.json, spans.json, graph.dot and spans.parquet to the local `analyze`, with
//! exactly one shuffle file per node written by the executors; so does a job whose front
//! messages are over 16 MiB (Ballista's gRPC message limit: they cross as chunks,
//! docs/scale-out.md, "Message sizes and gRPC limits"). An executor killed mid-job:
//! the job completes identically or fails with a clear error and exit 1, never a partial
//! result. A scheduler nobody listens on: a clear error, exit 1, no outputs. The client
//! fetches the nodes' results concurrently, in step order (no node more than one step
//! ahead of the slowest; docs/scale-out.md, "Fetching the results").

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use podtrace_format::nodes::{repeat, split_by_local_ip, Closes, HeaderTraffic};
use podtrace_format::{CaptureReader, CaptureWriter, FileMeta, ReadOptions, Record, WriterOptions};

use crate::support::{podtrace, podtrace_bin, repo, wait_port, Lines, Proc};

/// Longest a cluster analysis may take here.
const JOB_LIMIT: Duration = Duration::from_secs(180);

/// The files compared byte for byte (`spans.parquet`: `--spans-parquet OUT/`).
const COMPARED: [&str; 4] = [
    "traces.otlp.json",
    "spans.json",
    "graph.dot",
    "spans.parquet",
];

fn cluster_bin() -> PathBuf {
    let bin = podtrace_bin().with_file_name("podtrace-cluster");
    assert!(
        bin.is_file(),
        "{} is missing: the cluster tests need it beside podtrace \
         (cargo test --workspace / make test builds it; or cargo build -p podtrace-cluster)",
        bin.display()
    );
    bin
}

/// Two consecutive free loopback ports (an executor's Flight and gRPC services).
fn free_port_pair() -> u16 {
    for _ in 0..200 {
        let Ok(a) = TcpListener::bind("127.0.0.1:0") else {
            continue;
        };
        let Ok(port) = a.local_addr().map(|x| x.port()) else {
            continue;
        };
        if port < u16::MAX && TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
    panic!("no two consecutive free ports");
}

/// A loopback cluster: its processes are stopped when it is dropped.
struct Cluster {
    scheduler_port: u16,
    executors: Vec<Option<Proc>>,
    logs: Vec<Lines>,
    _scheduler: Proc,
    work: tempfile::TempDir,
}

impl Cluster {
    fn start(executors: usize) -> Cluster {
        cluster_bin();
        let work = tempfile::tempdir().expect("tempdir");
        let scheduler_port = free_port_pair();
        let mut logs = Vec::new();
        let mut scheduler = spawn(
            &[
                "cluster",
                "scheduler",
                "--bind",
                &format!("127.0.0.1:{scheduler_port}"),
                "--executor-timeout-seconds",
                "4",
            ],
            &mut logs,
        );
        assert!(
            wait_port(scheduler_port, Duration::from_secs(30)),
            "the scheduler did not listen: {:?} {:?}",
            scheduler.wait_timeout(Duration::ZERO),
            logs[0].all()
        );
        let mut procs = Vec::new();
        for i in 0..executors {
            let port = free_port_pair();
            let dir = work.path().join(format!("executor-{i}"));
            std::fs::create_dir_all(&dir).expect("work dir");
            let p = spawn(
                &[
                    "cluster",
                    "executor",
                    "--scheduler",
                    &format!("127.0.0.1:{scheduler_port}"),
                    "--bind",
                    &format!("127.0.0.1:{port}"),
                    "--work-dir",
                    dir.to_str().expect("utf-8 path"),
                    "--cores",
                    "1",
                    "--heartbeat-seconds",
                    "1",
                ],
                &mut logs,
            );
            assert!(
                wait_port(port, Duration::from_secs(30)),
                "executor {i} did not listen: {:?}",
                logs.last().map(|l| l.all())
            );
            procs.push(Some(p));
        }
        // Registration is the executor's first call to the scheduler after it listens.
        std::thread::sleep(Duration::from_millis(1500));
        Cluster {
            scheduler_port,
            executors: procs,
            logs,
            _scheduler: scheduler,
            work,
        }
    }

    fn url(&self) -> String {
        format!("df://127.0.0.1:{}", self.scheduler_port)
    }

    fn kill_executor(&mut self, i: usize) {
        if let Some(mut p) = self.executors[i].take() {
            p.signal("KILL");
            p.wait_timeout(Duration::from_secs(10));
        }
    }

    /// The shuffle files of each job the executors ran so far, by job id (and the
    /// executors' other directories, DataFusion's spill directories, without files).
    fn shuffle_files(&self) -> std::collections::BTreeMap<String, Vec<PathBuf>> {
        let mut jobs: std::collections::BTreeMap<String, Vec<PathBuf>> = Default::default();
        for executor in read_dir(self.work.path()) {
            for job in read_dir(&executor) {
                let id = job.file_name().map(|n| n.to_string_lossy().into_owned());
                let files = jobs.entry(id.unwrap_or_default()).or_default();
                for stage in read_dir(&job) {
                    for partition in read_dir(&stage) {
                        files.extend(read_dir(&partition));
                    }
                }
            }
        }
        jobs
    }

    fn logs(&self) -> String {
        self.logs
            .iter()
            .flat_map(|l| l.all())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// The entries of directory `dir` (none when it is not one), sorted.
fn read_dir(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    out.sort();
    out
}

fn spawn(args: &[&str], logs: &mut Vec<Lines>) -> Proc {
    let mut child = podtrace();
    child
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut p = Proc::new(
        child.spawn().expect("start podtrace cluster"),
        "TERM",
        Duration::from_secs(5),
    );
    logs.push(Lines::collect(p.stderr().expect("stderr"), "cluster"));
    p
}

/// The chain fixture imported (both sockets of every connection), as records.
fn chain_records(tmp: &Path) -> Vec<Record> {
    let cap = tmp.join("chain-all.parquet");
    let o = podtrace()
        .arg("import")
        .arg(repo().join("fixtures/chain/chain.pcap"))
        .arg("-o")
        .arg(&cap)
        .arg("--k8s-objects")
        .arg(repo().join("fixtures/chain/k8s-objects.json"))
        .output()
        .expect("run podtrace import");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    CaptureReader::open(&[&cap])
        .expect("open")
        .records(&ReadOptions::default())
        .collect::<Result<Vec<_>, _>>()
        .expect("read")
}

/// Writes `records` as one capture per node (the socket's local address is the node;
/// Kubernetes objects go with the first node): the paths, in node order.
fn split_per_node(records: &[Record], dir: &Path) -> Vec<PathBuf> {
    let per_node = split_by_local_ip(records);
    std::fs::create_dir_all(dir).expect("dir");
    let mut paths = Vec::new();
    for (i, recs) in per_node.iter().enumerate() {
        let path = dir.join(format!("node-{i}.parquet"));
        let meta = FileMeta {
            node: format!("node-{i}"),
            ..FileMeta::default()
        };
        let mut w = CaptureWriter::create(&path, meta, WriterOptions::default()).expect("create");
        w.write_all(recs).expect("write");
        w.finish().expect("finish");
        paths.push(path);
    }
    paths
}

struct Run {
    ok: bool,
    code: Option<i32>,
    stderr: String,
    secs: f64,
}

/// `podtrace analyze CAPTURES --out OUT [--cluster URL]`, bounded in time.
fn analyze(captures: &[PathBuf], out: &Path, cluster: Option<&str>) -> Run {
    analyze_with(captures, out, cluster, &[])
}

/// [`analyze`] with more environment variables.
fn analyze_with(
    captures: &[PathBuf],
    out: &Path,
    cluster: Option<&str>,
    env: &[(&str, &str)],
) -> Run {
    let mut cmd = podtrace();
    cmd.envs(env.iter().copied());
    cmd.arg("analyze")
        .args(captures)
        .arg("--out")
        .arg(out)
        .arg("--spans-parquet")
        .arg(format!("{}/", out.display()));
    if let Some(url) = cluster {
        cmd.arg("--cluster").arg(url);
    }
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    let started = Instant::now();
    let mut p = Proc::new(cmd.spawn().expect("run podtrace"), "KILL", Duration::ZERO);
    let err = Lines::collect(p.stderr().expect("stderr"), "analyze");
    let status = p.wait_timeout(JOB_LIMIT);
    let secs = started.elapsed().as_secs_f64();
    let status = status.unwrap_or_else(|| panic!("analyze ran over {JOB_LIMIT:?}"));
    // The collector thread ends with the pipe.
    std::thread::sleep(Duration::from_millis(50));
    Run {
        ok: status.success(),
        code: status.code(),
        stderr: err.all().join("\n"),
        secs,
    }
}

/// `captures` analysed locally and on `cluster` (the client's log at info), into
/// `dir`/local and `dir`/cluster: both succeed, their files are byte-identical.
fn local_and_on(cluster: &Cluster, captures: &[PathBuf], dir: &Path) -> (Run, Run) {
    let local_out = dir.join("local");
    let local = analyze(captures, &local_out, None);
    assert!(local.ok, "local analyze: {}", local.stderr);
    let cluster_out = dir.join("cluster");
    let remote = analyze_with(
        captures,
        &cluster_out,
        Some(&cluster.url()),
        &[("PODTRACE_LOG", "podtrace_cluster=info")],
    );
    assert!(
        remote.ok,
        "analyze --cluster: {}\ncluster logs:\n{}",
        remote.stderr,
        cluster.logs()
    );
    assert_identical(&local_out, &cluster_out);
    (local, remote)
}

fn assert_identical(local: &Path, cluster: &Path) {
    for name in COMPARED {
        let a = std::fs::read(local.join(name)).unwrap_or_else(|e| panic!("local {name}: {e}"));
        let b = std::fs::read(cluster.join(name)).unwrap_or_else(|e| panic!("cluster {name}: {e}"));
        assert!(!a.is_empty(), "{name} is empty");
        assert!(
            a == b,
            "{name} differs between the local and the cluster run"
        );
    }
}

fn rows(paths: &[PathBuf]) -> u64 {
    CaptureReader::open(paths).expect("open").num_rows()
}

#[test]
fn cluster_analysis_is_byte_identical_to_local() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = chain_records(tmp.path());
    let chain = split_per_node(&base, &tmp.path().join("chain"));
    assert!(chain.len() >= 4, "{} nodes", chain.len());
    // 400 copies: about 107,000 records in 14 batches (the failures began between
    // 32,052 and 81,012 records).
    let long = split_per_node(
        &repeat(&base, 400, 1_300_000_000, Closes::EvenCopies),
        &tmp.path().join("long"),
    );
    assert!(rows(&long) >= 100_000, "{} rows", rows(&long));
    let cluster = Cluster::start(2);

    for (name, captures) in [("chain", &chain), ("long", &long)] {
        let before = cluster.shuffle_files();
        let (local, remote) = local_and_on(&cluster, captures, &tmp.path().join(name));
        // One task per node, each writing its node's messages to one file of its own:
        // a task that ran other nodes' groups too wrote several, two of them to one path.
        let after = cluster.shuffle_files();
        let jobs: Vec<_> = after
            .iter()
            .filter(|(id, files)| !before.contains_key(*id) && !files.is_empty())
            .collect();
        assert_eq!(jobs.len(), 1, "jobs run for {name}: {jobs:?}");
        assert_eq!(
            jobs[0].1.len(),
            captures.len(),
            "shuffle files of the {name} job (one node per capture): {:?}",
            jobs[0].1
        );
        eprintln!(
            "cluster test {name}: {} rows in {} captures: local {:.2} s, cluster {:.2} s",
            rows(captures),
            captures.len(),
            local.secs,
            remote.secs
        );
    }
}

/// The client fetches the job's result partitions (one per node) concurrently, in step
/// order — the group furthest behind first — instead of one node's whole output after
/// the other's: `podtrace`'s merger then holds about one step per node, not every node's
/// results but the last one's (docs/scale-out.md, "Fetching the results").
#[test]
fn the_nodes_results_are_fetched_concurrently_in_step_order() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = chain_records(tmp.path());
    let captures = split_per_node(
        &repeat(&base, 400, 1_300_000_000, Closes::EvenCopies),
        &tmp.path().join("caps"),
    );
    let (_, remote) = local_and_on(&Cluster::start(2), &captures, tmp.path());
    let logged = |after: &str| -> u64 {
        remote
            .stderr
            .lines()
            .find_map(|l| {
                l.split(after)
                    .nth(1)?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            })
            .unwrap_or_else(|| panic!("no \"{after}\" logged: {}", remote.stderr))
    };
    // One result partition per node, all read by the client.
    let partitions = remote
        .stderr
        .lines()
        .find_map(|l| {
            let (head, _) = l.split_once(" result partition(s), fetched concurrently")?;
            head.rsplit(' ').next()?.parse::<usize>().ok()
        })
        .unwrap_or_else(|| panic!("no result partitions logged: {}", remote.stderr));
    assert_eq!(partitions, captures.len());
    // Read one node after the other, the first node's messages of all 14 batches would
    // be handed on before the second node's first: 13 steps ahead. In step order, no
    // node gets more than one step ahead of the slowest.
    let lead = logged("a group ran at most ");
    assert!(
        lead <= 1,
        "a node's messages ran {lead} steps ahead of the slowest node's"
    );
    eprintln!(
        "cluster test step order: {} rows in {} captures: at most {lead} step(s) ahead; cluster {:.2} s",
        rows(&captures),
        captures.len(),
        remote.secs
    );
}

#[test]
fn an_executor_killed_mid_job_completes_or_fails_cleanly() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = chain_records(tmp.path());
    let captures = split_per_node(
        &repeat(&base, 400, 1_300_000_000, Closes::EvenCopies),
        &tmp.path().join("caps"),
    );
    let local_out = tmp.path().join("local");
    assert!(analyze(&captures, &local_out, None).ok);

    let mut cluster = Cluster::start(2);
    let out = tmp.path().join("cluster");
    let mut cmd = podtrace();
    cmd.arg("analyze")
        .args(&captures)
        .arg("--out")
        .arg(&out)
        .arg("--spans-parquet")
        .arg(format!("{}/", out.display()))
        .arg("--cluster")
        .arg(cluster.url())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut p = Proc::new(cmd.spawn().expect("run podtrace"), "KILL", Duration::ZERO);
    let err = Lines::collect(p.stderr().expect("stderr"), "analyze");
    // The plan scan takes a moment; then the job runs on both executors.
    std::thread::sleep(Duration::from_millis(1200));
    cluster.kill_executor(1);
    let status = p
        .wait_timeout(JOB_LIMIT)
        .unwrap_or_else(|| panic!("analyze --cluster ran over {JOB_LIMIT:?}"));
    std::thread::sleep(Duration::from_millis(50));
    let stderr = err.all().join("\n");
    if status.success() {
        assert_identical(&local_out, &out);
    } else {
        assert_eq!(status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("cluster job"), "{stderr}");
        for name in COMPARED {
            assert!(
                !out.join(name).exists(),
                "{name} written by a failed job: {stderr}"
            );
        }
    }
}

#[test]
fn an_unreachable_scheduler_is_a_clear_error() {
    let tmp = tempfile::tempdir().expect("tempdir");
    cluster_bin();
    let base = chain_records(tmp.path());
    let captures = split_per_node(&base, &tmp.path().join("caps"));
    // A port nothing listens on.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let out = tmp.path().join("out");
    let r = analyze(&captures, &out, Some(&format!("df://127.0.0.1:{port}")));
    assert!(!r.ok);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(r.stderr.contains("unreachable"), "{}", r.stderr);
    for name in COMPARED {
        assert!(!out.join(name).exists(), "{name} written: {}", r.stderr);
    }
    // Not an address: a usage error before anything is read.
    let r = analyze(&captures, &out, Some("http://127.0.0.1:1"));
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(r.stderr.contains("df://HOST:PORT"), "{}", r.stderr);
}

#[test]
fn a_front_message_over_16_mib_is_byte_identical_to_local() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // 2,100 exchanges: the first batch of 8,192 records holds 2,048 requests of each
    // node, 12,000 header bytes each: a front message of over 24 MB per node.
    let captures = split_per_node(
        &HeaderTraffic {
            pair: 1,
            connections: 16,
            exchanges: 2_100,
            header_bytes: 12_000,
            start_ns: 1_700_000_000_000_000_000,
            interval_ns: 1_000_000,
        }
        .records(),
        &tmp.path().join("big"),
    );
    assert_eq!(captures.len(), 2);
    let (local, remote) = local_and_on(&Cluster::start(2), &captures, tmp.path());
    // The client's account of the job: the largest message, and in how many chunks.
    let (bytes, chunks) = remote
        .stderr
        .lines()
        .find_map(|l| {
            let rest = l.split("the largest ").nth(1)?;
            let mut words = rest.split_whitespace();
            let bytes: u64 = words.next()?.parse().ok()?;
            let chunks: u64 = words.nth(2)?.parse().ok()?;
            Some((bytes, chunks))
        })
        .unwrap_or_else(|| panic!("no message sizes logged: {}", remote.stderr));
    assert!(bytes > 16 << 20, "the largest front message: {bytes} bytes");
    assert!(
        chunks >= bytes / (1 << 20),
        "{bytes} bytes in {chunks} chunks"
    );
    eprintln!(
        "cluster test big messages: the largest {bytes} bytes in {chunks} chunks; {} rows: local {:.2} s, cluster {:.2} s",
        rows(&captures),
        local.secs,
        remote.secs
    );
}
