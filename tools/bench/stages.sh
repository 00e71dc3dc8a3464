# shellcheck shell=bash
# Stages section of tools/bench/run.sh (sourced): analyzer/examples/bench_stages on the wrk
# capture ($work/wrk.parquet from the traffic section).
#  - spans/s of each stage (read, reassemble, parse, intake, link, build, enrich, graph,
#    evict, encode_otlp, encode_spans_json, total) on 1 core (taskset, 1 rayon thread) and on 2
#    cores (2 rayon threads), side by side;
#  - instructions per span of each stage: valgrind callgrind on the first
#    PODTRACE_BENCH_CG_RECORDS records (default 40000; everything on one thread, --inline),
#    inclusive cost of each stage's function (skip with `callgrind` in PODTRACE_BENCH_SKIP);
#  - each beside the same figure of the previous results file (PODTRACE_BENCH_PREVIOUS,
#    default bench/results.md, read before this run replaces it).
stages_bin="$(example_bin podtrace-analyzer bench_stages)"
stage_names="read reassemble parse intake link build enrich graph evict encode_otlp encode_spans_json total"

taskset -c 0 env RAYON_NUM_THREADS=1 "$stages_bin" "$work/wrk.parquet" >"$work/stages-1.txt"
RAYON_NUM_THREADS=2 "$stages_bin" "$work/wrk.parquet" >"$work/stages-2.txt"
note "bench_stages, 1 core: $(head -1 "$work/stages-1.txt")"
note "bench_stages, 2 cores: $(head -1 "$work/stages-2.txt")"
stage_rate() { sed -n "s/^stage=$2 s=[0-9.]* per_s=\([0-9]*\)$/\1/p" "$1"; }

declare -A stage_instr
if want callgrind && command -v valgrind >/dev/null; then
  cg_records="${PODTRACE_BENCH_CG_RECORDS:-40000}"
  # Run and annotated from / (absolute paths): started from the source tree, callgrind
  # resolves its relative source paths and splits a function's inclusive cost by file.
  # RUST_BACKTRACE unset: with it set, one run under valgrind paid ~436 M instructions for a
  # backtrace's symbolization (a panic hook firing under valgrind only), a third of the run.
  (cd / && env -u RUST_BACKTRACE valgrind --tool=callgrind --callgrind-out-file="$work/stages.cg" \
    "$stages_bin" "$work/wrk.parquet" --inline --limit "$cg_records" >"$work/stages-cg.txt" 2>/dev/null)
  cg_spans=$(sed -n 's/.* spans=\([0-9]*\) .*/\1/p' "$work/stages-cg.txt")
  (cd / && callgrind_annotate --inclusive=yes "$work/stages.cg" >"$work/stages-cg-annotate.txt" 2>/dev/null)
  # Inclusive instructions of each stage's function → instructions per span.
  while read -r st n; do stage_instr[$st]=$n; done < <(python3 - "$work/stages-cg-annotate.txt" "$cg_spans" <<'PY'
import re, sys
incl = {}
for line in open(sys.argv[1], errors="replace"):
    m = re.match(r"\s*([\d,]+) \([ \d.]+%\)\s+(.*)$", line)
    if not m:
        continue
    n, rest = int(m.group(1).replace(",", "")), m.group(2)
    if rest.startswith("PROGRAM TOTALS"):
        incl["total"] = n
        continue
    if not rest.endswith("]"):  # only a function's own entry, not its inlined callees' lines
        continue
    name = rest.split(":", 1)[-1].rsplit(" [", 1)[0]
    incl[name] = max(incl.get(name, 0), n)
def f(suffix):
    return sum(v for k, v in incl.items() if k.endswith(suffix))
spans = max(int(sys.argv[2] or 0), 1)
push, process, rest = f("Front::push"), f("Front::process"), f("Front::process_rest")
finish = f("Front::finish")
intake, link = f("Linker::on_event_extracted"), f("Linker::link_to")
build, enrich = f("span::linker::build_all"), f("Enricher::enrich")
emit, analyze = f("Tail::emit"), f("stage_analyze")
out = {
    "read": f("stage_read"),
    # Front::process counts its calls from Front::finish too (process_rest).
    "reassemble": push - (process - rest),
    "parse": process + finish - rest,
    "intake": intake,
    "link": link,
    "build": build,
    "enrich": enrich,
    "graph": emit - build - enrich,
    # The rest of the analysis: eviction, sorting of handed-out batches, hand-offs.
    "evict": analyze - push - finish - intake - link - emit,
    "encode_otlp": f("stage_encode_otlp"),
    "encode_spans_json": f("stage_encode_spans_json"),
    "total": incl.get("total", 0),
}
for k, v in out.items():
    print(k, round(max(v, 0) / spans))
PY
)
  note "callgrind (first $cg_records records, $cg_spans spans, one thread): instructions per span by stage: $(for st in $stage_names; do printf '%s %s, ' "$st" "${stage_instr[$st]:-?}"; done)"
fi

for st in $stage_names; do
  r1=$(stage_rate "$work/stages-1.txt" "$st")
  r2=$(stage_rate "$work/stages-2.txt" "$st")
  prev=$(prev_figure "stage $st: spans/s, 1 → 2 cores")
  row "stage $st: spans/s, 1 → 2 cores" "$r1 → $r2" "x$(ratio "$r2" "$r1")" "≥ x1.7; before: ${prev:-none}"
  if [ -n "${stage_instr[$st]:-}" ]; then
    prev=$(prev_figure "stage $st: instructions/span vs before")
    row "stage $st: instructions/span vs before" "${stage_instr[$st]} vs ${prev:-none}" "x$(ratio "${stage_instr[$st]}" "${prev:-0}")" "lower"
  fi
done
