#!/usr/bin/env bash
# Turns the console output of the criterion benches into a Markdown table: one row per benchmark
# and size, one column per table (backend or peer), each cell the median throughput and its ratio
# to the dashmap backend's.
#
#   cargo bench --all-features --bench bench -- --warm-up-time 1 --measurement-time 3 --noplot > run.txt
#   scripts/criterion-table.sh run.txt [--md design/benchmarks.md]
#
# With --md FILE, the text between `<!-- BEGIN CRITERION TABLE -->` and `<!-- END CRITERION TABLE -->`
# in FILE is replaced by the table (so the report's figures come from the saved output, nothing is
# typed by hand); without it the table goes to stdout.
set -euo pipefail

[ $# -ge 1 ] || { echo "usage: $0 CRITERION_OUTPUT [--md FILE]" >&2; exit 2; }
input=$1
md=""
if [ "${2:-}" = "--md" ]; then
    md=${3:?--md needs a file}
fi
[ -r "$input" ] || { echo "$0: cannot read $input" >&2; exit 1; }

table=$(awk '
    # A benchmark name starts a line (alone, or followed by its time), e.g. get_hit/compact/1000.
    /^[a-z_0-9]+\/[^ ]+/ && $1 !~ /^(Found|Benchmarking)/ { name = $1 }
    /thrpt:/ {
        # A second thrpt line is the change against a saved baseline (percentages): skipped.
        if (name == "") next
        # thrpt:  [low unit median unit high unit]: the median and its unit.
        line = $0
        sub(/.*\[/, "", line); sub(/\].*/, "", line)
        split(line, f, " ")
        v = f[3]; u = f[4]
        if (u ~ /^Gelem/) v *= 1000; else if (u ~ /^Kelem/) v /= 1000; else if (u ~ /^elem/) v /= 1e6
        n = split(name, p, "/")
        table = p[2]
        key = p[1]
        for (i = 3; i <= n; i++) key = key "/" p[i]
        if (!(key in seen)) { seen[key] = 1; keys[++nk] = key }
        if (!(table in tseen)) { tseen[table] = 1; tables[++nt] = table }
        val[key, table] = v
        name = ""
    }
    END {
        if (nk == 0) { print "no throughput lines found" > "/dev/stderr"; exit 1 }
        printf "| benchmark (Melem/s) |"
        for (t = 1; t <= nt; t++) printf " %s |", tables[t]
        printf "\n|---|"
        for (t = 1; t <= nt; t++) printf "---:|"
        printf "\n"
        for (k = 1; k <= nk; k++) {
            key = keys[k]
            base = ((key, "dashmap") in val) ? val[key, "dashmap"] : 0
            printf "| %s |", key
            for (t = 1; t <= nt; t++) {
                if (!((key, tables[t]) in val)) { printf " – |"; continue }
                v = val[key, tables[t]]
                if (base > 0 && tables[t] != "dashmap") printf " %.3g (%.2f×) |", v, v / base
                else printf " %.3g |", v
            }
            printf "\n"
        }
    }
' "$input")

if [ -z "$md" ]; then
    printf '%s\n' "$table"
    exit 0
fi
begin='<!-- BEGIN CRITERION TABLE -->'
end='<!-- END CRITERION TABLE -->'
grep -qF "$begin" "$md" && grep -qF "$end" "$md" || { echo "$0: $md has no $begin ... $end section" >&2; exit 1; }
tmp=$(mktemp)
awk -v begin="$begin" -v end="$end" -v tablefile=<(printf '%s\n' "$table") '
    $0 == begin { print; while ((getline l < tablefile) > 0) print l; skip = 1; next }
    $0 == end { skip = 0 }
    !skip { print }
' "$md" > "$tmp"
mv "$tmp" "$md"
