#!/bin/sh
# podtrace recorder benchmark: runs the bench_recorder example (release) and, when the
# kernel allows it, reports the average run time of each eBPF program (kernel.bpf_stats).
# Needs root. Usage: tools/bench-recorder/run.sh [--quick]
set -eu
cd "$(dirname "$0")/../.."
cargo build --release -q -p podtrace-recorder --example bench_recorder
bin=target/release/examples/bench_recorder
if [ "${PODTRACE_BENCH_BPF_STATS:-1}" = 1 ] && sysctl -qw kernel.bpf_stats_enabled=1 2>/dev/null; then
    trap 'sysctl -qw kernel.bpf_stats_enabled=0' EXIT
    stats=$(mktemp)
    "$bin" "$@" &
    pid=$!
    # sample the programs' counters while the bench runs (each phase loads them anew)
    while kill -0 "$pid" 2>/dev/null; do
        bpftool prog show 2>/dev/null | awk '/pt_(sys|tp|sock)_(enter|exit|close|sendfile|send|recv|state|destroy)/ {print $1, $4, $9, $11}' >> "$stats" || true
        sleep 0.2
    done
    wait "$pid"
    echo "# eBPF program run time (kernel.bpf_stats adds ~20 ns per run), last sample per load:"
    sort -k1,1n -k3,3n "$stats" | awk '{last[$1]=$0} END {for (k in last) print last[k]}' | sort -n |
        awk '{ if ($4 > 0) printf "  prog %s %-13s runs %9d  avg %5.0f ns\n", $1, $2, $4, $3 / $4 }'
    rm -f "$stats"
else
    exec "$bin" "$@"
fi
