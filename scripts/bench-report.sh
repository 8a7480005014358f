#!/usr/bin/env bash
# Runs flowbench at the given table sizes, saves the raw lines, and regenerates the chart and the
# tables of design/benchmarks.md from them.
#
#   scripts/bench-report.sh [SIZE ...]          default: 100000 1000000
#
# Environment: REPS (default 5), THREADS (the second thread count for get/get_batch/mixed,
# default 2; 0 to skip), PEERS (default 1; 0 to skip the peer crates), CASES (a flowbench
# --cases list; default all), OUT (default design/bench-results), REPORT (the Markdown file whose
# generated section is rewritten; default design/benchmarks.md, empty to skip).
#
# Time: at 10^4 and 10^5 flows with the peers, about 6 minutes on 2 cores. At 10^7 the peers take
# far longer than the backends (moka's sweep over iter() dominates its `mixed` and teardown
# cases); use PEERS=0, or CASES, for a first large run.
#
# Writes design/bench-results/flowbench-<size>.txt (stdout of flowbench: one measurement per line),
# flowbench-<size>.log (its stderr), machine.txt (where and when), chart.svg and tables.md, and
# the generated section of design/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."

sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(100000 1000000)
reps=${REPS:-5}
threads=${THREADS:-2}
peers=()
[ "${PEERS:-1}" = 0 ] || peers=(--peers)
cases=()
[ -z "${CASES:-}" ] || cases=(--cases "$CASES")
out=${OUT:-design/bench-results}
report=${REPORT-design/benchmarks.md}
mkdir -p "$out"

cargo build --release --all-features --example flowbench --example bench_chart
bench=target/release/examples/flowbench

# Before machine.txt is rewritten (rewriting it would make the tree look dirty).
git_state="$(git rev-parse --short HEAD)$(git diff --quiet || echo ' (dirty)')"
{
    echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "git: $git_state"
    echo "command: scripts/bench-report.sh ${sizes[*]} (REPS=$reps THREADS=$threads PEERS=${PEERS:-1})"
    echo "rustc: $(rustc -V)"
    echo "kernel: $(uname -sr)"
    echo "nproc: $(nproc)"
    echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "memory: $(free -g | awk '/^Mem:/ {print $2 " GiB"}')"
    echo
    lscpu
} > "$out/machine.txt"

for n in "${sizes[@]}"; do
    echo "== flowbench --flows $n" >&2
    "$bench" --flows "$n" --reps "$reps" "${peers[@]}" "${cases[@]}" > "$out/flowbench-$n.txt" 2> "$out/flowbench-$n.log"
    # The thread-scaled cases, limited to CASES when it is set.
    tcases=get,get_batch,mixed,mixed_scaling
    if [ -n "${CASES:-}" ]; then
        tcases=$(tr ',' '\n' <<< "$CASES" | grep -xE 'get|get_batch|mixed|mixed_scaling' | paste -sd, - || true)
    fi
    if [ "$threads" != 0 ] && [ "$threads" != 1 ] && [ -n "$tcases" ]; then
        "$bench" --flows "$n" --reps "$reps" --threads "$threads" "${peers[@]}" --cases "$tcases" \
            >> "$out/flowbench-$n.txt" 2>> "$out/flowbench-$n.log"
    fi
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$out/machine.txt"

if [ -n "$report" ]; then
    target/release/examples/bench_chart "$out" --md "$report"
else
    target/release/examples/bench_chart "$out"
fi
