//! Stress: a client in the targeted cgroup blasts small writes while the consumer of the
//! batch channel is deliberately slow and the ring buffer small, so the kernel may have
//! to drop events. Whatever was dropped must show up in the counters (and `stats` rows)
//! such that captured bytes + dropped bytes = bytes sent, exactly. Needs root.

use crate::ebpf_util as util;

use std::time::Duration;

use podtrace_format::model::{flags, Direction, Record};
use podtrace_recorder::RecordConfig;
use util::*;

#[test]
fn drops_are_accounted_exactly() {
    let name = "drops_are_accounted_exactly";
    if !root_or_skip(name) || !tool_or_skip("python3", name) {
        return;
    }
    let env = PeerEnv::acquire();
    let (peer, port) = (env.peer.clone(), env.port);
    // The sink runs outside the cgroup: only the client's sends are recorded.
    let sink = env.listen_outside("sink");
    let cg = TestCgroup::new("stress");

    let cfg = RecordConfig {
        cgroup_paths: vec![cg.path.clone()],
        ring_bytes: 64 * 1024,
        batch_records: 256,
        channel_batches: 1,
        stats_interval: Duration::from_millis(100),
        ..Default::default()
    };
    let cmd = cg.command(&["python3", &peer, "blast", &port.to_string(), "100000", "64"]);
    // a slow consumer: backpressure reaches the ring buffer
    let rec = record_while_throttled(&rt(), cfg, Duration::from_millis(2), move |_| {
        run_bounded(cmd, Duration::from_secs(60))
    });
    let total_sent: i64 = String::from_utf8_lossy(&rec.work)
        .trim()
        .parse()
        .expect("total printed");
    let (rows, stats) = (rec.rows, rec.stats);
    drop(sink);

    let captured: i64 = streams(&rows)
        .iter()
        .filter(|((_, d), s)| {
            *d == Direction::Egress && s[0].meta.remote.is_some_and(|r| r.port() == port)
        })
        .flat_map(|(_, s)| s.iter().map(|d| d.ret))
        .sum();
    eprintln!(
        "stress: sent {total_sent} B, captured {captured} B, dropped {} B in {} events (per CPU {:?})",
        stats.bytes_dropped, stats.dropped_ringbuf_full, stats.dropped_per_cpu
    );
    assert_eq!(total_sent, 100_000 * 64);
    assert_eq!(
        captured + stats.bytes_dropped as i64,
        total_sent,
        "sent = captured + dropped"
    );
    assert_eq!(stats.args_full, 0);
    assert_eq!(stats.events_malformed, 0);
    assert_eq!(
        stats.dropped_per_cpu.iter().sum::<u64>(),
        stats.dropped_ringbuf_full
    );
    // every stream that lost data says so on its next captured row
    if stats.dropped_ringbuf_full > 0 {
        let gaps = rows
            .iter()
            .filter(|r| matches!(r, Record::SocketData(d) if d.flags & flags::GAP_BEFORE != 0))
            .count();
        assert!(gaps > 0, "drops happened but no row is flagged GAP_BEFORE");
    }
    // the final stats rows carry the same totals
    let last = |n: &str| {
        rows.iter()
            .rev()
            .find_map(|r| match r {
                Record::Stats(s) if s.name == n && s.cpu.is_none() => Some(s.value),
                _ => None,
            })
            .expect("stats row")
    };
    assert_eq!(
        last("events_dropped_ringbuf_full"),
        stats.dropped_ringbuf_full
    );
    assert_eq!(last("bytes_dropped"), stats.bytes_dropped);
}
