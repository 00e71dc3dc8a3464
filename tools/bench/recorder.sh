# shellcheck shell=bash
# Recorder section of tools/bench/run.sh (sourced). nginx-light runs in its own cgroup v2.
#  1. saturated: the same wrk load without, under `podtrace record --cgroup` on nginx's
#     cgroup, under `tcpdump -i lo -w` of the same port and under `tcpdump -w - | zstd -1`
#     (a compressed pcap, what a capture kept for hours needs), in alternating rounds:
#     throughput and p99 ratios of the best run of each, and the mean of the per-round
#     throughput ratios (each run against the same round's run without), podtrace's against
#     tcpdump's;
#  2. fixed rate: `bench_load` (recorder/examples/bench_load.rs: open loop, 32 keep-alive
#     connections, every latency kept) at 5 k and 10 k req/s (PODTRACE_BENCH_RATES) without,
#     with `podtrace record` and under `tcpdump -i lo -w`, in PODTRACE_BENCH_RATE_ROUNDS
#     (default 10) alternating rounds of PODTRACE_BENCH_RATE_SECONDS (default 3): p50/p99/p99.9
#     ratios of the latencies pooled per configuration, the recorder's CPU in millicores (its
#     threads' schedstat over the runs) and nginx's (the cgroup's cpu.stat, which includes
#     the eBPF programs run in nginx's syscalls);
#  3. bench_recorder --quick: ns per non-socket syscall (getppid), per untargeted write(2),
#     per captured event, events/s from two writers, for the three hook sets (sockets, the
#     default; tracepoints; tp_btf).
cg2_root=$(findmnt -t cgroup2 -n -o TARGET | head -n 1)
[ -n "$cg2_root" ] || { echo "bench: no cgroup2 mount" >&2; exit 1; }
cg="$cg2_root/podtrace-bench-$$"
mkdir "$cg"
CGROUPS+=("$cg")
nginx_stop
nginx_start "$work/nginx-cg" "$cg"

bpf_progs() { bpftool prog show 2>/dev/null | grep -cE 'pt_(sys_enter|tp_enter|sock_send)' || true; }

# record_start OUT: `podtrace record --cgroup $cg` in the background until its programs are
# attached; sets REC_PID.
record_start() {
  local before i
  before=$(bpf_progs)
  "$bin" record --cgroup "$cg" -o "$1.parquet" >"$1.out" 2>"$1.err" &
  REC_PID=$!
  PIDS+=("$REC_PID")
  for i in $(seq 200); do # programs loaded and attached (10 s at most)
    [ "$(bpf_progs)" -gt "$before" ] && break
    kill -0 "$REC_PID" 2>/dev/null || break
    sleep 0.05
  done
  sleep 0.5
}
record_stop() {
  kill -INT "$REC_PID" 2>/dev/null || true
  wait "$REC_PID" 2>/dev/null || true
}
# CPU time of a process's live threads in ns (schedstat: clock ticks are 10 ms, ~17 of them in
# a fixed-rate run of the recorder).
proc_cpu_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ s += $1 } END { printf "%.0f\n", s }'; }
cg_usec() { awk '$1 == "usage_usec" { print $2 }' "$cg/cpu.stat"; }
# millicores NS SECONDS: CPU nanoseconds over a wall-clock span.
millicores() { awk -v t="$1" -v s="$2" 'BEGIN { printf "%.0f", (s > 0 ? t / 1e6 / s : 0) }'; }
# tcpdump_off FILE: tcpdump_stop, and FILE (a comparison run's capture) removed.
tcpdump_off() {
  tcpdump_stop
  rm -f "$1" "$1.err"
}

# ---- 1. saturated: rounds of none / podtrace / tcpdump (PODTRACE_BENCH_SAT_ROUNDS, default
# 5), the best run of each configuration compared (a run that shared the cores with
# something else is slower, never faster; the best is the configuration's own cost)
sat_rounds="${PODTRACE_BENCH_SAT_ROUNDS:-5}"
for r in $(seq "$sat_rounds"); do
  wrk_run "$work/wrk-a$r.txt" "$NGINX_PORT"
  record_start "$work/rec-sat"
  t0=$(proc_cpu_ns "$REC_PID")
  wrk_run "$work/wrk-b$r.txt" "$NGINX_PORT"
  sat_cpu_ns=$(($(proc_cpu_ns "$REC_PID") - t0))
  record_stop
  tcpdump_start "$work/sat.pcap" "$NGINX_PORT" plain
  wrk_run "$work/wrk-c$r.txt" "$NGINX_PORT"
  tcpdump_off "$work/sat.pcap"
  tcpdump_start "$work/sat.pcap.zst" "$NGINX_PORT" zstd
  wrk_run "$work/wrk-d$r.txt" "$NGINX_PORT"
  tcpdump_off "$work/sat.pcap.zst"
done
# best CONFIG: the wrk file of the configuration's fastest round
best() {
  local f b="" bv=-1 v
  for f in "$work"/wrk-"$1"[0-9]*.txt; do
    v=$(wrk_rps "$f")
    if [ "${v:-0}" -gt "$bv" ]; then bv=$v; b=$f; fi
  done
  echo "$b"
}
all_rps() { local f o=""; for f in "$work"/wrk-"$1"[0-9]*.txt; do o="$o${o:+ / }$(wrk_rps "$f")"; done; echo "$o"; }
rps_a=$(wrk_rps "$(best a)")
p99_a=$(wrk_p99_us "$(best a)")
rps_b=$(wrk_rps "$(best b)")
p99_b=$(wrk_p99_us "$(best b)")
rps_c=$(wrk_rps "$(best c)")
p99_c=$(wrk_p99_us "$(best c)")
rps_d=$(wrk_rps "$(best d)")
# paired CONFIG: the mean over the rounds of CONFIG's throughput over the same round's run
# without (the runs of a round are seconds apart: a slower or faster stretch of the shared
# machine moves both), and the lowest and highest of those ratios
paired() {
  local r a x ratios=""
  for r in $(seq "$sat_rounds"); do
    a=$(wrk_rps "$work/wrk-a$r.txt") x=$(wrk_rps "$work/wrk-$1$r.txt")
    ratios="$ratios $(ratio "${x:-0}" "${a:-0}" 4)"
  done
  awk '{ for (i = 1; i <= NF; i++) { s += $i; if (i == 1 || $i < lo) lo = $i; if (i == 1 || $i > hi) hi = $i }
         printf "%.3f %.3f %.3f", s / NF, lo, hi }' <<<"$ratios"
}
# rounds in which podtrace's run was at least as fast as tcpdump's
rounds_ahead() {
  local r b c n=0
  for r in $(seq "$sat_rounds"); do
    b=$(wrk_rps "$work/wrk-b$r.txt") c=$(wrk_rps "$work/wrk-c$r.txt")
    [ "${b:-0}" -ge "${c:-1}" ] && n=$((n + 1))
  done
  echo "$n"
}
read -r mean_b lo_b hi_b < <(paired b)
read -r mean_c lo_c hi_c < <(paired c)
note "nginx saturated (wrk, $sat_rounds rounds, best of each): without $(all_rps a) req/s; podtrace record $(all_rps b); tcpdump -i lo -w $(all_rps c); tcpdump -w - | zstd -1 $(all_rps d) (last run: $TCPDUMP_DROPPED packets dropped by kernel); best-run p99 without $p99_a, podtrace $p99_b, tcpdump $p99_c µs"
note "nginx saturated, per-round ratios to the same round's run without: podtrace record mean x$mean_b (x$lo_b–x$hi_b), tcpdump -i lo -w mean x$mean_c (x$lo_c–x$hi_c); podtrace at least as fast as tcpdump in $(rounds_ahead) of $sat_rounds rounds"
note "podtrace record (saturated): $(grep -h 'probes attached' "$work/rec-sat.err" | sed 's/, recording.*//') — $(grep -h 'recorded' "$work/rec-sat.out" || tail -n 2 "$work/rec-sat.err")"
row "nginx saturated throughput: podtrace record / none" "$rps_b vs $rps_a req/s" "x$(ratio "$rps_b" "$rps_a")" "≥ tcpdump's ratio"
row "nginx saturated throughput: tcpdump -i lo -w / none" "$rps_c vs $rps_a req/s" "x$(ratio "$rps_c" "$rps_a")" "printed"
row "nginx saturated throughput, mean of per-round ratios: podtrace record" "x$mean_b (x$lo_b–x$hi_b)" "x$(ratio "$mean_b" "$mean_c" 3) of tcpdump's" "≥ tcpdump's"
row "nginx saturated throughput, mean of per-round ratios: tcpdump -i lo -w" "x$mean_c (x$lo_c–x$hi_c)" "" "printed"
row "nginx saturated throughput: tcpdump into zstd -1 (pcap.zst) / none" "$rps_d vs $rps_a req/s" "x$(ratio "$rps_d" "$rps_a")" "printed"
row "nginx saturated p99: podtrace record / none" "$p99_b vs $p99_a µs" "x$(ratio "$p99_b" "$p99_a")" "printed"
# The recorder's own CPU per event over the last saturated run (its threads' schedstat
# during wrk; the events of the whole recording: the few before and after wrk make it a
# slight under-estimate), and the capture writer alone on that capture (bench_write: Arrow
# columns, Parquet encoding, zstd; the part of the recorder's CPU that is the file format)
# and the HTTP/1 + HTTP/2 header redactor alone on its payloads (bench_redact: the biggest
# part of the ring consumer's CPU), and the ring consumer's user space on its events
# (bench_consume: decoding, redaction, rows allocated and freed on another thread).
sat_events=$(sed -n 's/^recorded \([0-9]*\) socket events.*/\1/p' "$work/rec-sat.out")
if [ -n "$sat_events" ] && [ "$sat_events" -gt 0 ]; then
  sat_ns=$(awk -v t="$sat_cpu_ns" -v e="$sat_events" 'BEGIN { printf "%.0f", t / e }')
  wb_out=$("$(example_bin podtrace-format bench_write)" "$work/rec-sat.parquet" 3 2>&1) || echo "bench: bench_write failed: $wb_out" >&2
  wb_ns=$(sed -n 's/.*ns_per_row=\([0-9]*\).*/\1/p' <<<"$wb_out")
  rd_out=$("$(example_bin podtrace-recorder bench_redact)" "$work/rec-sat.parquet" 3 2>&1) || echo "bench: bench_redact failed: $rd_out" >&2
  rd_ns=$(sed -n 's/.*ns_per_payload=\([0-9.]*\).*/\1/p' <<<"$rd_out")
  co_out=$("$(example_bin podtrace-recorder bench_consume)" "$work/rec-sat.parquet" 3 2>&1) || echo "bench: bench_consume failed: $co_out" >&2
  co_ns=$(sed -n 's/.*ns_per_event=\([0-9.]*\).*/\1/p' <<<"$co_out")
  note "saturated recording: $sat_events socket events, recorder CPU $((sat_cpu_ns / 1000000)) ms during wrk; bench_write on its capture: $wb_out; bench_redact on its payloads: $rd_out; bench_consume on its events: $co_out"
  row "saturated: recorder CPU per event (all threads)" "$sat_ns ns" "" "printed"
  row "saturated: of which the capture writer (bench_write, same capture)" "${wb_ns:-n/a} ns per row" "x$(ratio "${wb_ns:-0}" "$sat_ns")" "printed"
  row "saturated: of which the header redactor (bench_redact, same payloads)" "${rd_ns:-n/a} ns per payload" "x$(ratio "${rd_ns:-0}" "$sat_ns")" "printed"
  row "saturated: of which the ring consumer's user space (bench_consume, same events)" "${co_ns:-n/a} ns per event" "x$(ratio "${co_ns:-0}" "$sat_ns")" "printed"
fi

# ---- 2. fixed rate (bench_load: every latency kept, rounds pooled)
load=$(example_bin podtrace-recorder bench_load)
rate_secs="${PODTRACE_BENCH_RATE_SECONDS:-3}"
rate_rounds="${PODTRACE_BENCH_RATE_ROUNDS:-10}"
# load_run OUT RATE: one fixed-rate run (32 keep-alive connections), its latencies appended
# to OUT; prints bench_load's summary line.
load_run() { "$load" --port "$NGINX_PORT" --rate "$2" --seconds "$rate_secs" --conns 32 --out "$1"; }
# field NAME LINE: the value of NAME=VALUE in a bench_load line
field() { sed -n "s/.*\b$1=\([0-9.]*\).*/\1/p" <<<"$2"; }
# count_sends LINE: adds a run's late sends and errors to the totals (a failed run: an error)
count_sends() {
  local l e
  l=$(field late "$1") e=$(field errors "$1")
  late=$((late + ${l:-0})) errors=$((errors + ${e:-1}))
}
for q in ${PODTRACE_BENCH_RATES:-5000 10000}; do
  # rounds of (without, with, under tcpdump): latencies pooled per configuration, CPU over
  # all rounds, late sends (the generator behind its schedule) summed
  rec_ns=0 rec_secs=0 ng_with=0 ng_without=0 late=0 errors=0 rps_a="" rps_b=""
  for r in $(seq "$rate_rounds"); do
    ng0=$(cg_usec)
    s0=$(date +%s.%N)
    line=$(load_run "$work/lat-$q-a-$((r % 2)).bin" "$q")
    s1=$(date +%s.%N)
    ng1=$(cg_usec)
    rps_a="$rps_a${rps_a:+ / }$(field rps "$line")"
    count_sends "$line"
    ng_without=$(awk -v a="$ng_without" -v u=$((ng1 - ng0)) -v s0="$s0" -v s1="$s1" 'BEGIN { print a + u / 1000 / (s1 - s0) }')
    record_start "$work/rec-$q-$r"
    ng2=$(cg_usec)
    t0=$(proc_cpu_ns "$REC_PID")
    s0=$(date +%s.%N)
    line=$(load_run "$work/lat-$q-b.bin" "$q")
    s1=$(date +%s.%N)
    t1=$(proc_cpu_ns "$REC_PID")
    ng3=$(cg_usec)
    record_stop
    rps_b="$rps_b${rps_b:+ / }$(field rps "$line")"
    count_sends "$line"
    rec_ns=$((rec_ns + t1 - t0))
    rec_secs=$(awk -v a="$rec_secs" -v s0="$s0" -v s1="$s1" 'BEGIN { print a + s1 - s0 }')
    ng_with=$(awk -v a="$ng_with" -v u=$((ng3 - ng2)) -v s0="$s0" -v s1="$s1" 'BEGIN { print a + u / 1000 / (s1 - s0) }')
    # what a user could run instead, at the same rate
    tcpdump_start "$work/rate.pcap" "$NGINX_PORT" plain
    line=$(load_run "$work/lat-$q-c.bin" "$q")
    tcpdump_off "$work/rate.pcap"
    count_sends "$line"
  done
  pool_a=$("$load" --pool "$work"/lat-$q-a-*.bin) pool_b=$("$load" --pool "$work/lat-$q-b.bin") pool_c=$("$load" --pool "$work/lat-$q-c.bin")
  p50_a=$(field p50_us "$pool_a") p99_a=$(field p99_us "$pool_a") p999_a=$(field p999_us "$pool_a")
  p50_b=$(field p50_us "$pool_b") p99_b=$(field p99_us "$pool_b") p999_b=$(field p999_us "$pool_b")
  p99_c=$(field p99_us "$pool_c")
  # the instrument's own noise: the rounds without the recorder, odd against even
  aa_odd=$(field p99_us "$("$load" --pool "$work/lat-$q-a-1.bin")")
  aa_even=$(field p99_us "$("$load" --pool "$work/lat-$q-a-0.bin")")
  rec_mc=$(millicores "$rec_ns" "$rec_secs")
  ngx_with=$(awk -v a="$ng_with" -v n="$rate_rounds" 'BEGIN { printf "%.0f", a / n }')
  ngx_without=$(awk -v a="$ng_without" -v n="$rate_rounds" 'BEGIN { printf "%.0f", a / n }')
  note "nginx at $q req/s (bench_load, 32 conns, $rate_rounds rounds of ${rate_secs}s without / with podtrace record / under tcpdump -i lo -w, latencies pooled per configuration): without $pool_a ($rps_a req/s); with $pool_b ($rps_b req/s); under tcpdump $pool_c; late sends $late, errors $errors; recorder CPU $rec_mc millicores; nginx CPU $ngx_with vs $ngx_without millicores (cgroup cpu.stat)"
  note "podtrace record at $q req/s, last round: $(grep -h 'recorded' "$work/rec-$q-$rate_rounds.out" || tail -n 2 "$work/rec-$q-$rate_rounds.err")"
  row "$q req/s: recorder CPU (millicores)" "$rec_mc" "" "≤ 100 at 10 k"
  row "$q req/s: nginx CPU with / without recorder" "$ngx_with vs $ngx_without millicores" "x$(ratio "$ngx_with" "$ngx_without")" "printed"
  row "$q req/s: p50 with / without recorder (pooled)" "$p50_b vs $p50_a µs" "x$(ratio "$p50_b" "$p50_a")" "printed"
  row "$q req/s: p99 with / without recorder (pooled)" "$p99_b vs $p99_a µs" "x$(ratio "$p99_b" "$p99_a")" "≤ x1.05 at 10 k"
  row "$q req/s: p99.9 with / without recorder (pooled)" "$p999_b vs $p999_a µs" "x$(ratio "$p999_b" "$p999_a")" "printed"
  row "$q req/s: p99 without, even / odd rounds (the instrument's noise)" "$aa_even vs $aa_odd µs" "x$(ratio "$aa_even" "$aa_odd")" "printed"
  row "$q req/s: p99 under tcpdump -i lo -w / without (pooled)" "$p99_c vs $p99_a µs" "x$(ratio "$p99_c" "$p99_a")" "printed"
done
nginx_stop

# ---- 3. microbenchmarks
"$(example_bin podtrace-recorder bench_recorder)" --quick >"$work/bench_recorder.txt" 2>&1 || {
  cat "$work/bench_recorder.txt" >&2
  echo "bench: bench_recorder failed" >&2
}
while read -r line; do note "bench_recorder: $line"; done < <(grep -v '^#' "$work/bench_recorder.txt")
# micro LABEL SET: "after vs before ns" and the ratio of a bench_recorder line (the
# untargeted lines name the set "podtrace SET", beside their floors)
micro() {
  sed -n "s/^$1 \[\(podtrace \)\{0,1\}$2\]: *\([0-9.]*\) ns -> *\([0-9.]*\) ns *(+ *\([-0-9.]*\) ns.*x\([0-9.]*\)).*/\4 \3 \2 \5/p" "$work/bench_recorder.txt" | head -n 1
}
for spec in "unfollowed getppid(2)|non-socket syscall (getppid)|≤ +50 ns" \
  "untargeted write(2) socket|untargeted write(2) to a socket|≤ +100 ns" \
  "untargeted write(2) \/dev\/null|untargeted write(2) to /dev/null|≤ +100 ns" \
  "captured   64 B write|captured 64 B event|≤ +1000 ns" \
  "captured 4096 B write|captured 4 KiB event|printed"; do
  IFS='|' read -r pat label goal <<<"$spec"
  for set in sockets tracepoints tp_btf; do
    read -r add with base x < <(micro "$pat" "$set") || true
    [ -n "${add:-}" ] && row "$label [$set]" "+$add ns ($with vs $base ns)" "x$x" "$goal"
  done
done
for sinks in "" ", batched sinks"; do
  for set in sockets tracepoints tp_btf; do
    peak=$(sed -n "s/^two 64 B writers$sinks \[$set\]: *\([0-9]*\) -> *\([0-9]*\) events\/s.*dropped \([0-9]*\) events.*/\2 vs \1 (dropped \3)/p" "$work/bench_recorder.txt")
    row "events/s recorded, two 64 B writers$sinks [$set] vs unrecorded" "${peak:-n/a}" "" "≥ 1 M, no drops"
  done
done
