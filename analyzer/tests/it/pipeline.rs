//! Pipeline behaviour on records as the eBPF recorder writes them (real HTTP bytes, one
//! row per syscall), and on captures split across files.

use std::net::SocketAddr;
use std::path::Path;

use podtrace_analyzer::{
    analyze, analyze_into, merge_by_time, spans_to_json, AnalyzeOptions, Pipeline, SamplerMode,
};
use podtrace_format::{
    flags, CaptureReader, Direction, ReadOptions, Record, SocketData, SocketMeta,
};
use podtrace_import::{import, ImportOptions, View};
use podtrace_model::{AttrValue, SpanKind};

struct Sock {
    conn_id: u64,
    pid: u32,
    comm: &'static str,
    local: SocketAddr,
    remote: SocketAddr,
}

impl Sock {
    fn new(conn_id: u64, pid: u32, comm: &'static str, local: &str, remote: &str) -> Self {
        Sock {
            conn_id,
            pid,
            comm,
            local: local.parse().expect("local"),
            remote: remote.parse().expect("remote"),
        }
    }
    fn row(&self, ts: u64, dir: Direction, bytes: &[u8], ret: usize, fl: u32) -> Record {
        Record::SocketData(SocketData {
            meta: SocketMeta {
                ts_ns: ts,
                cpu: 0,
                pid: self.pid,
                tid: self.pid,
                comm: self.comm.into(),
                cgroup_id: 42,
                conn_id: self.conn_id,
                local: Some(self.local),
                remote: Some(self.remote),
            },
            direction: dir,
            syscall: if dir == Direction::Egress {
                "write"
            } else {
                "read"
            }
            .into(),
            ret: ret as i64,
            payload: bytes.to_vec(),
            flags: fl,
        })
    }
    fn send(&self, ts: u64, bytes: &[u8]) -> Record {
        self.row(ts, Direction::Egress, bytes, bytes.len(), 0)
    }
    fn recv(&self, ts: u64, bytes: &[u8]) -> Record {
        self.row(ts, Direction::Ingress, bytes, bytes.len(), 0)
    }
}

const MS: u64 = 1_000_000;

#[test]
fn uninstrumented_hops_link_with_clock_skew_and_no_socket_open_rows() {
    // curl (not recorded) → frontend (pid 100) → backend (pid 200). No propagation headers,
    // no socket_open rows (roles inferred), and the backend's read returns before the
    // frontend's write does, as happens with syscall-exit timestamps.
    let fe_in = Sock::new(1, 100, "frontend", "10.0.0.1:80", "10.0.0.9:50000");
    let fe_out = Sock::new(2, 100, "frontend", "10.0.0.1:41000", "10.0.0.2:8080");
    let be_in = Sock::new(3, 200, "backend", "10.0.0.2:8080", "10.0.0.1:41000");
    let req = b"GET /api/items?limit=5 HTTP/1.1\r\nHost: frontend\r\nUser-Agent: curl/8.0\r\n\r\n";
    let sub = b"GET /items HTTP/1.1\r\nHost: backend:8080\r\n\r\n";
    let sub_resp = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n[1,2]";
    let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    let records = vec![
        fe_in.recv(10 * MS, req),
        be_in.recv(11 * MS, sub),
        fe_out.send(11 * MS + 5_000, sub),
        be_in.send(12 * MS, sub_resp),
        fe_out.recv(12 * MS + 3_000, sub_resp),
        fe_in.send(13 * MS, resp),
    ];
    let a = analyze(records.into_iter(), &AnalyzeOptions::default()).expect("analyze");
    assert_eq!(a.spans.len(), 3, "{}", a.stats);
    assert_eq!(a.stats.traces, 1);
    assert_eq!(a.stats.orphans, 0);
    let get = |kind, svc: &str| {
        a.spans
            .iter()
            .find(|s| s.kind == kind && s.resource.service_name == svc)
            .unwrap_or_else(|| panic!("{svc}"))
    };
    let root = get(SpanKind::Server, "frontend");
    let call = get(SpanKind::Client, "frontend");
    let back = get(SpanKind::Server, "backend");
    assert_eq!(root.parent_span_id, None);
    assert_eq!(call.parent_span_id, Some(root.span_id));
    assert_eq!(back.parent_span_id, Some(call.span_id));
    assert_eq!(root.name, "GET /api/items");
    assert_eq!(
        (root.start_time_unix_nano, root.end_time_unix_nano),
        (10 * MS, 13 * MS)
    );
    assert_eq!(
        root.attribute("url.query"),
        Some(&AttrValue::Str("limit=5".into()))
    );
    assert_eq!(
        call.attribute("server.address"),
        Some(&AttrValue::Str("backend".into()))
    );
    assert_eq!(call.attribute("server.port"), Some(&AttrValue::Int(8080)));
    assert_eq!(
        back.attribute("http.response.body.size"),
        Some(&AttrValue::Int(5))
    );
    let dot = a.graph.to_dot();
    assert!(dot.contains("\"10.0.0.9\" -> \"frontend\""), "{dot}");
    assert!(dot.contains("\"frontend\" -> \"backend\""), "{dot}");
}

#[test]
fn snaplen_truncated_bodies_keep_the_stream_in_sync() {
    let s = Sock::new(7, 300, "files", "10.0.0.5:80", "10.0.0.9:51000");
    let mut first = b"HTTP/1.1 200 OK\r\nContent-Length: 40000\r\n\r\n".to_vec();
    let head_len = first.len();
    first.extend(std::iter::repeat_n(b'x', 16384 - head_len));
    let records = vec![
        s.recv(
            MS,
            b"GET /big HTTP/1.1\r\nHost: files\r\n\r\nGET /small HTTP/1.1\r\nHost: files\r\n\r\n",
        ),
        // Two 20000-byte writes, each captured up to the 16 KiB snaplen.
        s.row(2 * MS, Direction::Egress, &first, 20000, flags::TRUNCATED),
        s.row(
            3 * MS,
            Direction::Egress,
            &[b'x'; 16384],
            20000 + head_len,
            flags::TRUNCATED,
        ),
        s.send(
            4 * MS,
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
        ),
    ];
    let a = analyze(records.into_iter(), &AnalyzeOptions::default()).expect("analyze");
    assert!(a.stats.parse_errors.is_empty(), "{}", a.stats);
    assert_eq!(a.spans.len(), 2);
    assert_eq!(
        a.spans[0].attribute("http.response.body.size"),
        Some(&AttrValue::Int(40000))
    );
    assert_eq!(a.spans[0].end_time_unix_nano, 3 * MS);
    assert_eq!(
        a.spans[1].attribute("http.response.status_code"),
        Some(&AttrValue::Int(404))
    );
    assert!(
        !a.spans[1].status.is_error(),
        "404 on a server span is not an error"
    );
}

#[test]
fn parent_based_sampling_honours_unsampled_context() {
    let s = Sock::new(9, 400, "svc", "10.0.0.6:80", "10.0.0.9:52000");
    let records = vec![
        s.recv(MS, b"GET /a HTTP/1.1\r\ntraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00\r\n\r\n"),
        s.send(2 * MS, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
        s.recv(3 * MS, b"GET /b HTTP/1.1\r\nX-B3-TraceId: 80f198ee56343ba864fe8b2a57d3eff7\r\nX-B3-SpanId: e457b5a2e4d86bd1\r\nX-B3-Sampled: 1\r\ntraceparent: 00-BAD\r\n\r\n"),
        s.send(4 * MS, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
    ];
    let ratio = analyze(records.clone().into_iter(), &AnalyzeOptions::default()).expect("analyze");
    assert_eq!(ratio.spans.len(), 2);
    assert_eq!(ratio.spans[0].flags, 0);
    assert_eq!(ratio.stats.ignored_headers.get("w3c/invalid"), Some(&1));
    let opts = AnalyzeOptions {
        sampler_mode: SamplerMode::ParentBased,
        ..AnalyzeOptions::default()
    };
    let pb = analyze(records.into_iter(), &opts).expect("analyze");
    assert_eq!(pb.spans.len(), 1);
    assert_eq!(pb.spans[0].name, "GET /b");
    assert_eq!(pb.stats.sampled_out, 1);
    assert!(
        pb.stats
            .to_string()
            .contains("spans                2 (1 sampled out)"),
        "{}",
        pb.stats
    );
}

#[test]
fn idle_state_is_evicted_and_counted() {
    let a = Sock::new(1, 500, "a", "10.0.0.7:80", "10.0.0.9:53000");
    let b = Sock::new(2, 600, "b", "10.0.0.8:80", "10.0.0.9:53001");
    let opts = AnalyzeOptions {
        window_ns: 1_000 * MS,
        ..AnalyzeOptions::default()
    };
    let mut p = Pipeline::new(&opts).expect("pipeline");
    p.push(&[a.recv(0, b"GET /never-answered HTTP/1.1\r\n\r\n")]);
    p.push(&[
        b.recv(10_000 * MS, b"GET /x HTTP/1.1\r\n\r\n"),
        b.send(10_001 * MS, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
    ]);
    assert!(
        p.drain_completed().is_empty(),
        "b's request is inside the window"
    );
    let done = p.finish();
    assert_eq!(done.spans.len(), 1);
    assert_eq!(done.stats.evictions.connections, 1);
    assert_eq!(done.stats.unmatched_requests, 1);
    assert!(Pipeline::new(&AnalyzeOptions {
        window_ns: 0,
        ..opts.clone()
    })
    .is_err());
    assert!(analyze(
        std::iter::empty(),
        &AnalyzeOptions {
            sample_rate: 2.0,
            ..opts
        }
    )
    .is_err());
}

fn read(path: &Path) -> Vec<Record> {
    CaptureReader::open(&[path])
        .expect("open")
        .records(&ReadOptions::default())
        .collect::<Result<Vec<_>, _>>()
        .expect("read")
}

#[test]
fn traces_are_grouped_across_captures() {
    // The chain imported as two captures, one with the client sockets (the "callers'
    // nodes") and one with the server sockets, gives the same spans as one capture of both.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/chain");
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut captures = Vec::new();
    for (name, view) in [
        ("both", View::Both),
        ("client", View::Client),
        ("server", View::Server),
    ] {
        let out = tmp.path().join(format!("{name}.parquet"));
        let opts = ImportOptions {
            view,
            k8s_objects: Some(dir.join("k8s-objects.json")),
            ..ImportOptions::default()
        };
        import(&dir.join("chain.pcap"), &out, &opts).expect("import");
        captures.push(read(&out));
    }
    let both = analyze(captures[0].clone().into_iter(), &AnalyzeOptions::default()).expect("both");
    let merged = analyze(
        merge_by_time(vec![
            captures[1].clone().into_iter(),
            captures[2].clone().into_iter(),
        ]),
        &AnalyzeOptions::default(),
    )
    .expect("merged");
    assert_eq!(
        spans_to_json(&both.spans).expect("json"),
        spans_to_json(&merged.spans).expect("json")
    );
    assert_eq!(merged.stats.orphans, 0);
    assert_eq!(merged.stats.traces, 9);
    // One capture after the other (not merged) still works within the time window.
    let sequential = analyze(
        captures[1].clone().into_iter().chain(captures[2].clone()),
        &AnalyzeOptions::default(),
    )
    .expect("sequential");
    assert_eq!(
        spans_to_json(&both.spans).expect("json"),
        spans_to_json(&sequential.spans).expect("json")
    );
}

#[test]
fn spans_stream_out_after_the_link_delay_not_the_window() {
    // Live mode: with the default 120 s window, a span comes out once the newest record is
    // the link delay (2 s) past its start.
    let s = Sock::new(11, 700, "svc", "10.0.0.3:80", "10.0.0.9:54000");
    let other = Sock::new(12, 701, "other", "10.0.0.4:80", "10.0.0.9:54001");
    let mut p = Pipeline::new(&AnalyzeOptions::default()).expect("pipeline");
    p.push(&[
        s.recv(1_000 * MS, b"GET /live HTTP/1.1\r\n\r\n"),
        s.send(1_010 * MS, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
    ]);
    assert!(p.drain_completed().is_empty());
    p.push(&[other.recv(2_500 * MS, b"GET /x HTTP/1.1\r\n\r\n")]);
    assert!(
        p.drain_completed().is_empty(),
        "1.5 s later: still within the link delay"
    );
    p.push(&[other.recv(3_100 * MS, b"GET /y HTTP/1.1\r\n\r\n")]);
    let out = p.drain_completed();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].name, "GET /live");
}

/// The recorder's capture-loss counters (kernel drops and bytes read or written that no event carried;
/// totals, latest reading) become `recorder_drops`; per-CPU rows and other counters do not.
#[test]
fn kernel_drop_counters_are_reported() {
    use podtrace_format::{counters, Stat};
    let stat = |ts_ns: u64, cpu: Option<u32>, name: &str, value: u64| {
        Record::Stats(Stat {
            ts_ns,
            cpu,
            name: name.into(),
            value,
        })
    };
    let mut p = Pipeline::new(&AnalyzeOptions::default()).expect("pipeline");
    p.push(&[
        stat(1, None, counters::EVENTS_DROPPED_RINGBUF_FULL, 3),
        stat(1, Some(0), counters::EVENTS_DROPPED_RINGBUF_FULL, 2),
        stat(1, None, counters::BYTES_DROPPED, 700),
        stat(1, None, "events_seen", 90),
        stat(2, None, counters::EVENTS_DROPPED_RINGBUF_FULL, 5),
        stat(2, Some(1), counters::EVENTS_DROPPED_SCRATCH_BUSY, 9),
        stat(2, None, counters::BYTES_READ_UNCAPTURED, 49),
        stat(2, None, counters::BYTES_WRITTEN_UNCAPTURED, 12),
        stat(2, None, "connections_checked", 4),
    ]);
    let drops: Vec<(String, u64)> = p.stats().recorder_drops.into_iter().collect();
    assert_eq!(
        drops,
        [
            (counters::BYTES_DROPPED.to_string(), 700),
            (counters::BYTES_READ_UNCAPTURED.to_string(), 49),
            (counters::BYTES_WRITTEN_UNCAPTURED.to_string(), 12),
            (counters::EVENTS_DROPPED_RINGBUF_FULL.to_string(), 5),
        ]
    );
}

/// Spans batch by batch (as JSON), the graph and the stats of `analyze_into` over
/// `records` on a rayon pool of `threads` threads.
fn analyze_on(
    threads: usize,
    records: &[Record],
    opts: &AnalyzeOptions,
) -> (Vec<String>, String, String) {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("pool");
    pool.install(|| {
        let mut batches = Vec::new();
        let analysis = analyze_into(
            Pipeline::new(opts).expect("pipeline"),
            records.iter().cloned(),
            |spans| -> Result<(), std::convert::Infallible> {
                batches.push(spans_to_json(&spans).expect("json"));
                Ok(())
            },
        )
        .unwrap_or_else(|never| match never {});
        (
            batches,
            analysis.graph.to_dot(),
            format!("{:?}", analysis.stats),
        )
    })
}

#[test]
fn the_split_pipeline_gives_what_one_thread_gives() {
    // Many batches of records (8,192 each), calls between two services, idle connections
    // and unanswered requests evicted on the way: the same span batches, graph and stats
    // with the back on its own thread (2 and 4 threads) as all on one.
    let mut records = Vec::new();
    for i in 0..6_000u64 {
        let t = i * 5 * MS;
        let port = 40_000 + (i % 500) as u16;
        let front_in = Sock::new(
            10_000 + i,
            100,
            "frontend",
            "10.0.0.1:80",
            &format!("10.0.0.9:{port}"),
        );
        let front_out = Sock::new(
            20_000 + i,
            100,
            "frontend",
            &format!("10.0.0.1:{port}"),
            "10.0.0.2:8080",
        );
        let back_in = Sock::new(
            30_000 + i,
            200,
            "backend",
            "10.0.0.2:8080",
            &format!("10.0.0.1:{port}"),
        );
        records.push(front_in.recv(
            t,
            format!("GET /api/{i} HTTP/1.1\r\nHost: f\r\n\r\n").as_bytes(),
        ));
        records.push(front_out.send(t + MS, b"GET /items HTTP/1.1\r\nHost: b\r\n\r\n"));
        records.push(back_in.recv(t + MS, b"GET /items HTTP/1.1\r\nHost: b\r\n\r\n"));
        if i % 97 != 0 {
            // Every 97th call goes unanswered.
            let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
            records.push(back_in.send(t + 2 * MS, ok));
            records.push(front_out.recv(t + 2 * MS, ok));
            records.push(front_in.send(t + 3 * MS, ok));
        }
    }
    let opts = AnalyzeOptions {
        window_ns: 2_000 * MS,
        link_delay_ns: 100 * MS,
        ..AnalyzeOptions::default()
    };
    let one = analyze_on(1, &records, &opts);
    assert!(one.0.len() > 3, "{} batches", one.0.len());
    assert!(
        one.2.contains("evictions: Evictions { connections: "),
        "{}",
        one.2
    );
    assert!(
        !one.2.contains("evictions: Evictions { connections: 0,"),
        "{}",
        one.2
    );
    for threads in [2, 4] {
        let split = analyze_on(threads, &records, &opts);
        assert_eq!(split.0.len(), one.0.len(), "{threads} threads: batches");
        assert!(split.0 == one.0, "{threads} threads: span batches differ");
        assert_eq!(split.1, one.1, "{threads} threads: graph");
        assert_eq!(split.2, one.2, "{threads} threads: stats");
    }
}
