//! Recording real HTTP/1 traffic of processes in a cgroup (needs root; skips otherwise).
//!
//! A Python HTTP/1.1 server and clients (curl, a keep-alive client, a 1 MiB POST, a raw
//! Python client using send/sendmsg/writev/write/sendfile) run inside a throw-away cgroup
//! v2 directory; podtrace records that cgroup. The tests compare the captured bytes with
//! what the peers really sent and received, check open/close rows and roles, that a
//! process outside the cgroup is absent, truncation at the snaplen, and that secrets in
//! Authorization / Set-Cookie never reach the capture.

use crate::ebpf_util as util;

use std::time::Duration;

use podtrace_format::model::{flags, Direction, Record, Role};
use podtrace_format::WriterOptions;
use podtrace_recorder::RecordConfig;
use util::*;

#[test]
fn http1_curl_roles_redaction_truncation_outsider() {
    let name = "http1_curl_roles_redaction_truncation_outsider";
    if !root_or_skip(name) || !tool_or_skip("curl", name) || !tool_or_skip("python3", name) {
        return;
    }
    let env = PeerEnv::acquire();
    let (dir, peer, port) = (&env.dir, env.peer.as_str(), env.port);
    let mut cg = TestCgroup::new("http1");
    env.serve_in(&mut cg);

    let out = dir.path().join("cap.parquet");
    let cfg = RecordConfig {
        cgroup_paths: vec![cg.path.clone()],
        redact_headers: vec!["X-Api-Key".into()],
        ..Default::default()
    };
    let rt = rt();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let rec = spawn_record_to_file(&rt, cfg, &out, WriterOptions::default(), async move {
        let _ = stop_rx.await;
    });

    let url = format!("http://127.0.0.1:{port}");
    let hdr = dir.path().join("hdr");
    let body = dir.path().join("body");
    cg.run(
        &[
            "curl",
            "-sS",
            "-D",
            hdr.to_str().expect("p"),
            "-o",
            body.to_str().expect("p"),
            "-H",
            "Authorization: Bearer TOPSECRET-123",
            "-H",
            "X-Api-Key: APIKEYSECRET",
            &format!("{url}/hello"),
        ],
        T,
    );
    // A process outside the cgroup talks to the same server.
    let outsider = std::process::Command::new("curl")
        .args(["-sS", "-o", "/dev/null", &format!("{url}/outside")])
        .spawn()
        .expect("outside curl");
    let outsider_pid = outsider.id();
    let outsider_status = outsider.wait_with_output().expect("outsider").status;
    assert!(outsider_status.success());
    // 1 MiB POST
    let big = dir.path().join("big.bin");
    let big_data: Vec<u8> = (0..(1u32 << 20))
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&big, &big_data).expect("write big");
    let post_resp = cg.run(
        &[
            "curl",
            "-sS",
            "-H",
            "Expect:",
            "-H",
            "Content-Type: application/octet-stream",
            "--data-binary",
            &format!("@{}", big.display()),
            &format!("{url}/upload"),
        ],
        T,
    );
    assert!(String::from_utf8_lossy(&post_resp).starts_with("got 1048576 "));
    // keep-alive client: 5 requests on one connection
    cg.run(&["python3", peer, "keepalive", &port.to_string(), "5"], T);
    std::thread::sleep(Duration::from_millis(100));
    stop_tx.send(()).expect("stop");
    let summary = rt.block_on(rec).expect("join").expect("record_to_file");
    assert!(summary.socket_events > 0);
    assert_eq!(summary.stats.dropped_ringbuf_full, 0);

    let rows = read_all(&out);
    let streams = streams(&rows);
    let opens = open_rows(&rows);
    let closes = close_rows(&rows);

    // --- secrets appear nowhere
    for r in &rows {
        if let Record::SocketData(d) = r {
            for secret in [&b"TOPSECRET"[..], b"SERVERSECRET42", b"APIKEYSECRET"] {
                assert!(
                    !contains(&d.payload, secret),
                    "secret {:?} captured",
                    String::from_utf8_lossy(secret)
                );
            }
        }
    }

    // --- the curl GET, client side
    let curl_get = opens
        .iter()
        .find(|e| {
            e.role == Role::Client
                && &*e.meta.comm == "curl"
                && streams
                    .get(&(e.meta.conn_id, Direction::Egress))
                    .is_some_and(|s| contains(&concat(s), b"GET /hello"))
        })
        .expect("curl GET client open row");
    assert_eq!(&*curl_get.syscall, "connect");
    assert_eq!(curl_get.meta.remote.expect("remote").port(), port);
    let c_out = concat(&streams[&(curl_get.meta.conn_id, Direction::Egress)]);
    let c_in = concat(&streams[&(curl_get.meta.conn_id, Direction::Ingress)]);
    let stars = "*".repeat("Bearer TOPSECRET-123".len());
    assert!(
        contains(&c_out, format!("Authorization: {stars}\r\n").as_bytes()),
        "{}",
        String::from_utf8_lossy(&c_out)
    );
    assert!(contains(&c_out, b"X-Api-Key: ************\r\n"));
    assert!(streams[&(curl_get.meta.conn_id, Direction::Egress)]
        .iter()
        .any(|d| d.flags & flags::REDACTED != 0));
    // every response byte curl got (headers + body) was captured, Set-Cookie redacted
    let mut expected = std::fs::read(&hdr).expect("hdr");
    expected.extend(std::fs::read(&body).expect("body"));
    let expected = String::from_utf8(expected)
        .expect("utf8")
        .replace("SERVERSECRET42", "**************");
    let expected = expected.replace("session=", "********");
    assert_eq!(String::from_utf8_lossy(&c_in), expected);
    // the server side of the same connection mirrors it
    let local = curl_get.meta.local.expect("local");
    let srv = opens
        .iter()
        .find(|e| e.role == Role::Server && e.meta.remote == Some(local))
        .expect("server open row for curl's connection");
    assert!(srv.syscall.starts_with("accept"));
    assert!(srv.meta.comm.starts_with("python"));
    assert_eq!(
        concat(&streams[&(srv.meta.conn_id, Direction::Ingress)]),
        c_out
    );
    assert_eq!(
        concat(&streams[&(srv.meta.conn_id, Direction::Egress)]),
        c_in
    );
    assert!(closes
        .iter()
        .any(|e| e.meta.conn_id == curl_get.meta.conn_id && e.role == Role::Client));
    assert!(closes
        .iter()
        .any(|e| e.meta.conn_id == srv.meta.conn_id && e.role == Role::Server));

    // --- the outsider is absent (its server side is recorded: the server is inside)
    assert!(rows.iter().all(|r| match r {
        Record::SocketData(d) => d.meta.pid != outsider_pid,
        Record::SocketOpen(e) | Record::SocketClose(e) => e.meta.pid != outsider_pid,
        _ => true,
    }));
    assert!(streams
        .iter()
        .any(|((_, dir), s)| *dir == Direction::Ingress && contains(&concat(s), b"GET /outside")));

    // --- the 1 MiB POST: totals exact, payload truncated at the snaplen
    let (post_key, post_rows) = streams
        .iter()
        .find(|((_, d), s)| {
            *d == Direction::Egress
                && &*s[0].meta.comm == "curl"
                && contains(&s[0].payload, b"POST /upload")
        })
        .expect("POST stream");
    let total: i64 = post_rows.iter().map(|d| d.ret).sum();
    let head_len = post_rows[0]
        .payload
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of headers")
        + 4;
    assert_eq!(
        total as usize,
        head_len + big_data.len(),
        "every byte of the POST accounted"
    );
    assert!(post_rows
        .iter()
        .any(|d| d.flags & flags::TRUNCATED != 0 && (d.payload.len() as i64) < d.ret));
    assert!(post_rows.iter().all(|d| d.payload.len() <= 16384));
    let resp = concat(&streams[&(post_key.0, Direction::Ingress)]);
    assert!(contains(&resp, &post_resp));
    assert!(summary.stats.payload_truncated > 0);

    // --- keep-alive: five requests on one client connection
    let ka = streams
        .iter()
        .find(|((_, d), s)| *d == Direction::Egress && contains(&concat(s), b"GET /ka0 "))
        .expect("keep-alive stream");
    let ka_out = concat(ka.1);
    for i in 0..5 {
        assert!(contains(&ka_out, format!("GET /ka{i} HTTP/1.1").as_bytes()));
    }
    assert_eq!(
        opens.iter().filter(|e| e.meta.conn_id == (ka.0).0).count(),
        1
    );

    // --- stats rows
    assert!(rows.iter().any(|r| matches!(r, Record::Stats(s) if s.name == "events_dropped_ringbuf_full" && s.cpu.is_none())));
    assert!(rows.iter().any(|r| matches!(r, Record::Stats(s) if s.name == "payload_truncated" && s.cpu.is_none() && s.value > 0)));
}

#[test]
fn python_syscall_variants_every_byte() {
    let name = "python_syscall_variants_every_byte";
    if !root_or_skip(name) || !tool_or_skip("python3", name) {
        return;
    }
    let env = PeerEnv::acquire();
    let (dir, peer, port) = (&env.dir, env.peer.clone(), env.port);
    let mut cg = TestCgroup::new("variants");
    env.serve_in(&mut cg);

    let wall = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_nanos() as u64
    };
    let t_start = wall();
    let cfg = RecordConfig {
        cgroup_paths: vec![cg.path.clone()],
        ..Default::default()
    };
    let outdir = dir.path().to_str().expect("p").to_string();
    let variants = cg.command(&["python3", &peer, "variants", &port.to_string(), &outdir]);
    let mmsg = cg.command(&["python3", &peer, "mmsg", &port.to_string(), &outdir]);
    let rec = record_while(&rt(), cfg, move |_| {
        run_bounded(variants, T);
        run_bounded(mmsg, T);
    });
    assert_eq!(rec.stats.dropped_ringbuf_full, 0);
    let rows = rec.rows;
    let t_end = wall();
    // boot-time stamps converted to wall clock land inside the recording window
    for r in &rows {
        let ts = r.ts_ns();
        assert!(
            ts >= t_start && ts <= t_end,
            "row time {ts} outside [{t_start}, {t_end}]"
        );
    }
    let streams = streams(&rows);
    for k in ["send", "sendmsg", "writev", "write", "sendfile", "mmsg"] {
        let sent = std::fs::read(dir.path().join(format!("{k}.sent"))).expect("sent");
        let got = std::fs::read(dir.path().join(format!("{k}.got"))).expect("got");
        // the server's Set-Cookie value is redacted at record time
        let got = String::from_utf8(got)
            .expect("utf8 response")
            .replace("session=SERVERSECRET42", &"*".repeat(22))
            .into_bytes();
        let marker = format!(" /{k} HTTP/1.1");
        let ((conn, _), out_rows) = streams
            .iter()
            .find(|((_, d), s)| {
                *d == Direction::Egress
                    && s[0].meta.comm.starts_with("python")
                    && contains(&s[0].payload, marker.as_bytes())
                    && s[0].meta.remote.is_some_and(|r| r.port() == port)
            })
            .unwrap_or_else(|| panic!("client stream of {k}"));
        let in_rows = &streams[&(*conn, Direction::Ingress)];
        let total_out: i64 = out_rows.iter().map(|d| d.ret).sum();
        assert_eq!(total_out as usize, sent.len(), "{k}: bytes sent");
        if k == "sendfile" {
            // the file part has no user buffer: counted, not captured
            let sf = out_rows
                .iter()
                .find(|d| &*d.syscall == "sendfile")
                .expect("sendfile row");
            assert_eq!(sf.ret, 3000);
            assert!(sf.payload.is_empty() && sf.flags & flags::TRUNCATED != 0);
            assert_eq!(concat(out_rows), sent[..sent.len() - 3000].to_vec());
        } else {
            assert_eq!(concat(out_rows), sent, "{k}: captured egress");
        }
        assert_eq!(concat(in_rows), got, "{k}: captured ingress");
        let expect_sys = match k {
            "send" => "sendto",
            "sendmsg" => "sendmsg",
            "writev" => "writev",
            "write" => "write",
            "mmsg" => "sendmmsg",
            _ => "sendfile",
        };
        assert!(
            out_rows.iter().any(|d| &*d.syscall == expect_sys),
            "{k}: syscall {expect_sys}"
        );
        let expect_in = match k {
            "send" => "recvfrom",
            "sendmsg" => "recvmsg",
            "writev" => "readv",
            "write" => "read",
            "mmsg" => "recvmmsg",
            _ => "recvfrom",
        };
        assert!(
            in_rows.iter().any(|d| &*d.syscall == expect_in),
            "{k}: syscall {expect_in}"
        );
    }
}

#[test]
fn secret_split_across_syscalls_is_redacted() {
    let name = "secret_split_across_syscalls_is_redacted";
    if !root_or_skip(name) || !tool_or_skip("python3", name) {
        return;
    }
    let env = PeerEnv::acquire();
    let (dir, peer, port) = (&env.dir, env.peer.clone(), env.port);
    let mut cg = TestCgroup::new("split");
    env.serve_in(&mut cg);
    let cfg = RecordConfig {
        cgroup_paths: vec![cg.path.clone()],
        ..Default::default()
    };
    let outdir = dir.path().to_str().expect("p").to_string();
    let cmd = cg.command(&["python3", &peer, "split", &port.to_string(), &outdir]);
    let rows = record_while(&rt(), cfg, move |_| run_bounded(cmd, T)).rows;
    let sent = std::fs::read(dir.path().join("split.sent")).expect("sent");
    let streams = streams(&rows);
    let ((_, _), out) = streams
        .iter()
        .find(|((_, d), s)| {
            *d == Direction::Egress
                && s[0].meta.remote.is_some_and(|r| r.port() == port)
                && contains(&s[0].payload, b"GET /split ")
        })
        .expect("client stream");
    assert_eq!(out.len(), 3, "one row per send()");
    let expected = String::from_utf8(sent).expect("utf8").replace(
        "Bearer SPLITSECRET-9",
        &"*".repeat("Bearer SPLITSECRET-9".len()),
    );
    assert_eq!(String::from_utf8(concat(out)).expect("utf8"), expected);
    assert!(out[1].flags & flags::REDACTED != 0 && out[2].flags & flags::REDACTED != 0);
    for r in &rows {
        if let Record::SocketData(d) = r {
            assert!(!contains(&d.payload, b"SPLIT") && !contains(&d.payload, b"SECRET-9"));
        }
    }
}
