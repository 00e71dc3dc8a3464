#!/usr/bin/env bash
# shellcheck shell=bash
# TLS section of tools/bench/run.sh (sourced; also runs alone: `tools/bench/tls.sh`).
# Cost per OpenSSL call with the TLS uprobes: tools/bench/tls_bench.c (one process, a TLS
# client and server thread on loopback, 64 B SSL_write/SSL_read ping-pong, ns per SSL call)
# in its own cgroup v2, run side by side (interleaved, best of PODTRACE_BENCH_TLS_RUNS):
#   none      no recorder;
#   tls off   `podtrace record --cgroup --tls off` (socket capture of the ciphertext only);
#   tls on    `podtrace record --cgroup` (plus the uprobes: plaintext rows);
#   bystander the bench in another, untargeted cgroup while `podtrace record` hooks the same
#             libssl.so.3 in a process of the targeted one: with --tls-attach file (the
#             default: the uprobes fire in every process mapping the file, the cgroup filter
#             drops them) and with --tls-attach process (the bystander has no breakpoint).
# Rows: tls on vs none (what a TLS call costs with podtrace), tls on vs tls off (what the
# uprobes add to the socket capture), bystander vs none (what an untargeted process pays).
if [ -z "${root:-}" ]; then # standalone
  set -euo pipefail
  root="$(cd "$(dirname "$0")/../.." && pwd)"
  bin="${PODTRACE_BIN:-$root/target/release/podtrace}"
  skip=" "
  work="$(mktemp -d /tmp/podtrace-bench-tls.XXXXXX)"
  # shellcheck source=tools/bench/lib.sh
  . "$root/tools/bench/lib.sh"
  trap 'bench_cleanup; print_table 0' EXIT
fi
tls_rounds="${PODTRACE_BENCH_TLS_ROUNDS:-20000}"
tls_runs="${PODTRACE_BENCH_TLS_RUNS:-3}"
cc -O2 -o "$work/tls_bench" "$root/tools/bench/tls_bench.c" -lssl -lcrypto -lpthread
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost \
  -keyout "$work/tls-key.pem" -out "$work/tls-cert.pem" 2>/dev/null
tls_cg2=$(findmnt -t cgroup2 -n -o TARGET | head -n 1)
tls_cg="$tls_cg2/podtrace-bench-tls-$$"
tls_cg_other="$tls_cg2/podtrace-bench-tls-other-$$"
mkdir "$tls_cg" "$tls_cg_other"
CGROUPS+=("$tls_cg" "$tls_cg_other")

# With --tls-attach process the recorder attaches the uprobes per targeted process, at its
# first scan after the process appears (<= 40 ms). So that a hooked run is hooked from its
# first call (in either mode), the bench
# starts as a Python process that maps libssl.so.3, waits (bounded: 5 s) until the first
# byte of each of SSL_write/SSL_write_ex/SSL_read/SSL_read_ex in its own memory is a
# breakpoint (0xCC) plus 0.2 s for the return probes, then execs tls_bench (the per-process
# probes stay with the process across exec). Without a recorder hooking it, it execs at
# once (TLS_GATE=0).
tls_gate='
import ctypes, os, sys, time, ssl
if os.environ.get("TLS_GATE") == "1":
    lib = ctypes.CDLL("libssl.so.3")
    addrs = [ctypes.cast(getattr(lib, s), ctypes.c_void_p).value
             for s in ("SSL_write", "SSL_write_ex", "SSL_read", "SSL_read_ex")]
    t0 = time.time()
    with open("/proc/self/mem", "rb", buffering=0) as m:
        def hooked():
            return all((m.seek(a), m.read(1))[1] == b"\xcc" for a in addrs)
        while not hooked():
            if time.time() - t0 > 5:
                sys.exit("tls gate: uprobes not seen in 5 s")
            time.sleep(0.01)
    time.sleep(0.2)
os.execv(sys.argv[1], sys.argv[1:])
'
# tls_once [CGROUP [GATE]]: "wall cpu" ns per SSL call of one run inside the cgroup (default:
# the targeted one; GATE=1: wait until hooked)
tls_once() {
  TLS_GATE="${2:-0}" sh -c 'echo $$ > "$1/cgroup.procs" && shift && exec "$@"' sh "${1:-$tls_cg}" \
    python3 -c "$tls_gate" "$work/tls_bench" "$work/tls-cert.pem" "$work/tls-key.pem" "$tls_rounds" |
    awk '/^ns_per_call/ { w = $2 } /^cpu_ns_per_call/ { c = $2 } END { print w, c }'
}
# tls_recorded CGROUP GATE FLAG...: one run in CGROUP under `podtrace record --cgroup $tls_cg`
# (started when its probes are attached)
tls_recorded() {
  local run_cg="$1" gate="$2"
  shift 2
  local out="$work/tls-rec-$RANDOM" i v
  "$bin" record --cgroup "$tls_cg" -o "$out.parquet" "$@" >"$out.out" 2>"$out.err" &
  local rec=$!
  PIDS+=("$rec")
  for i in $(seq 200); do
    grep -q "probes attached" "$out.err" 2>/dev/null && break
    kill -0 "$rec" 2>/dev/null || break
    sleep 0.05
  done
  v=$(tls_once "$run_cg" "$gate")
  kill -INT "$rec" 2>/dev/null || true
  wait "$rec" 2>/dev/null || true
  grep -o "TLS[^)]*" "$out.err" | head -n 1 >"$work/tls-attached.txt" || true
  echo "$v"
}
# a process holding libssl.so.3 in the targeted cgroup, so the recorders find OpenSSL at
# start (their "TLS uprobes on ..." text) and hook it as the bystander's neighbour
sh -c 'echo $$ > "$1/cgroup.procs" && exec python3 -c "import ssl, time; time.sleep(3600)"' sh "$tls_cg" &
PIDS+=("$!")
sleep 0.5
# best wall and best CPU figure of the runs (column 1, 2)
min() { awk -v c="$1" '{ v = $c; if (m == "" || v < m) m = v } END { print m }'; }
: >"$work/tls-none" && : >"$work/tls-off" && : >"$work/tls-on" && : >"$work/tls-by" && : >"$work/tls-byp"
for _ in $(seq "$tls_runs"); do
  tls_once >>"$work/tls-none"
  tls_recorded "$tls_cg" 0 --tls off >>"$work/tls-off"
  tls_recorded "$tls_cg" 1 --tls on >>"$work/tls-on"
  tls_recorded "$tls_cg_other" 0 --tls on --tls-attach file >>"$work/tls-by"
  tls_recorded "$tls_cg_other" 0 --tls on --tls-attach process >>"$work/tls-byp"
done
for k in none off on by byp; do
  printf -v "tls_$k" '%s' "$(min 1 <"$work/tls-$k")"
  printf -v "tls_cpu_$k" '%s' "$(min 2 <"$work/tls-$k")"
done
note "tls_bench ($tls_rounds round trips of 64 B, 4 SSL calls each, best of $tls_runs; wall / process CPU ns per call): none $tls_none / $tls_cpu_none, --tls off $tls_off / $tls_cpu_off, --tls on $tls_on / $tls_cpu_on, untargeted process beside a recorder hooking its libssl $tls_by / $tls_cpu_by (--tls-attach file), $tls_byp / $tls_cpu_byp (--tls-attach process); $(cat "$work/tls-attached.txt")"
row "CPU ns per SSL_write/SSL_read: tls on vs no recorder" "$tls_cpu_on vs $tls_cpu_none" "x$(ratio "$tls_cpu_on" "$tls_cpu_none")" "printed"
row "CPU ns per SSL_write/SSL_read: tls on vs tls off" "$tls_cpu_on vs $tls_cpu_off" "x$(ratio "$tls_cpu_on" "$tls_cpu_off")" "printed"
row "CPU ns per SSL call, untargeted: hooked vs none [--tls-attach file]" "$tls_cpu_by vs $tls_cpu_none" "x$(ratio "$tls_cpu_by" "$tls_cpu_none")" "printed"
row "CPU ns per SSL call, untargeted: hooked vs none [--tls-attach process]" "$tls_cpu_byp vs $tls_cpu_none" "x$(ratio "$tls_cpu_byp" "$tls_cpu_none")" "≈ x1"
row "wall ns per SSL call (64 B ping-pong): tls on vs none" "$tls_on vs $tls_none" "x$(ratio "$tls_on" "$tls_none")" "printed"
