# shellcheck shell=bash
# Recorder section of tools/bench/run.sh (sourced): nginx-light in its own cgroup v2, the
# same wrk load without, with, and again without `podtrace record --cgroup` on it
# (baseline = mean of the two runs without); then bench_recorder --quick for the cost per
# untargeted syscall and the events/s the recorder sustains.
cg2_root=$(findmnt -t cgroup2 -n -o TARGET | head -n 1)
[ -n "$cg2_root" ] || { echo "bench: no cgroup2 mount" >&2; exit 1; }
cg="$cg2_root/podtrace-bench-$$"
mkdir "$cg"
CGROUPS+=("$cg")
nginx_stop
nginx_start "$work/nginx-cg" "$cg"
wrk_run "$work/wrk-a1.txt" "$NGINX_PORT"

bpf_progs() { bpftool prog show 2>/dev/null | grep -c 'pt_sys_enter' || true; }
before=$(bpf_progs)
"$bin" record --cgroup "$cg" -o "$work/rec.parquet" >"$work/record.out" 2>"$work/record.err" &
rec_pid=$!
PIDS+=("$rec_pid")
for _ in $(seq 200); do # programs loaded and attached (10 s at most)
  [ "$(bpf_progs)" -gt "$before" ] && break
  kill -0 "$rec_pid" 2>/dev/null || break
  sleep 0.05
done
sleep 0.5
wrk_run "$work/wrk-b.txt" "$NGINX_PORT"
kill -INT "$rec_pid" 2>/dev/null || true
wait "$rec_pid" 2>/dev/null || true
wrk_run "$work/wrk-a2.txt" "$NGINX_PORT"
nginx_stop

rps_a=$(awk -v a="$(wrk_rps "$work/wrk-a1.txt")" -v b="$(wrk_rps "$work/wrk-a2.txt")" 'BEGIN { printf "%.0f", (a + b) / 2 }')
p99_a=$(awk -v a="$(wrk_p99_us "$work/wrk-a1.txt")" -v b="$(wrk_p99_us "$work/wrk-a2.txt")" 'BEGIN { printf "%.0f", (a + b) / 2 }')
rps_b=$(wrk_rps "$work/wrk-b.txt")
p99_b=$(wrk_p99_us "$work/wrk-b.txt")
note "nginx without recorder: $(wrk_rps "$work/wrk-a1.txt") / $(wrk_rps "$work/wrk-a2.txt") req/s, p99 $(wrk_p99_us "$work/wrk-a1.txt") / $(wrk_p99_us "$work/wrk-a2.txt") µs; with: $rps_b req/s, p99 $p99_b µs"
note "podtrace record: $(grep -h 'recorded' "$work/record.out" || tail -n 2 "$work/record.err")"
row "nginx throughput with / without recorder" "$rps_b vs $rps_a req/s" "x$(ratio "$rps_b" "$rps_a")" "printed"
row "nginx p99 latency with / without recorder" "$p99_b vs $p99_a µs" "x$(ratio "$p99_b" "$p99_a")" "printed"

"$(example_bin podtrace-recorder bench_recorder)" --quick >"$work/bench_recorder.txt" 2>&1 || {
  cat "$work/bench_recorder.txt" >&2
  echo "bench: bench_recorder failed" >&2
}
while read -r line; do note "bench_recorder: $line"; done < <(grep -v '^#' "$work/bench_recorder.txt")
untargeted=$(sed -n 's/^untargeted write(2): *\([0-9.]*\) ns -> *\([0-9.]*\) ns.*/\2 vs \1 ns/p' "$work/bench_recorder.txt")
untargeted_x=$(sed -n 's/^untargeted write(2):.*x\([0-9.]*\)).*/\1/p' "$work/bench_recorder.txt")
peak=$(sed -n 's/^two 64 B writers: *\([0-9]*\) -> *\([0-9]*\) events\/s.*/\2 vs \1/p' "$work/bench_recorder.txt")
row "untargeted write(2) with / without recorder" "${untargeted:-n/a}" "x${untargeted_x:-n/a}" "printed"
row "max events/s recorded (two writers) vs unrecorded" "${peak:-n/a}" "" "printed"
