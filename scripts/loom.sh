#!/usr/bin/env bash
# Loom model checking of flowtable's real code (see design/concurrency.md, "Loom models").
#
#   scripts/loom.sh
#
# 1. Lints the loom-only code (clippy under the loom cfg; normal clippy never sees it) and builds
#    loom-tests/ with RUSTFLAGS="--cfg flowtable_loom -C debug-assertions=on" (release, in its
#    own target dir, target/loom, so normal builds are not invalidated).
# 2. Runs every model (tests/loom_<backend>.rs): all must pass.
# 3. Runs every model with each injected bug on its `/// Mutants: a, b` line (selected at run time
#    through FLOWTABLE_LOOM_MUTANT, no rebuild): each must FAIL with a panic from the model. The
#    preemption bound is raised from 0 until the bug is caught (up to LOOM_MAX_PREEMPTIONS), which
#    records how many preemptions each bug needs.
# 4. Runs the `#[ignore]`d models, which pin open findings: each must still fail (once one passes,
#    its finding is fixed and its `#[ignore]` must go, so the script fails to say so).
# Prints a table of model x mutant -> caught, and the wall time.
#
# Environment: LOOM_MAX_PREEMPTIONS (default 3), any other LOOM_* variable loom reads.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)

export RUSTFLAGS="--cfg flowtable_loom -C debug-assertions=on"
export CARGO_TARGET_DIR=target/loom
export LOOM_MAX_PREEMPTIONS=${LOOM_MAX_PREEMPTIONS:-3}
export RUST_BACKTRACE=0
bound=$LOOM_MAX_PREEMPTIONS
log_dir=$CARGO_TARGET_DIR/loom-logs
mkdir -p "$log_dir"

# Mutants the library knows (flowtable::sync::loom_mutant::MUTANTS).
known=$(sed -n '/MUTANTS: /,/^];/p' src/sync/loom_mutant.rs | sed -n 's/^ *(\{0,1\}"\([a-z_0-9]*\)",.*/\1/p' | sort -u)
[ -n "$known" ] || { echo "loom.sh: no mutants found in src/sync/loom_mutant.rs" >&2; exit 1; }

echo "=== clippy of the loom-only code (cfg flowtable_loom, -D warnings)"
cargo clippy -q -p flowtable --lib -- -D warnings
cargo clippy -q -p flowtable-loom-tests --all-targets -- -D warnings

echo "=== build (loom cfg, release, $CARGO_TARGET_DIR)"
build_out=$(cargo test --release -p flowtable-loom-tests --no-run 2>&1) || { echo "$build_out"; exit 1; }
echo "$build_out" | tail -n 3

# tests/loom_<backend>.rs -> its test binary.
declare -A bin
while read -r src exe; do
  bin[$src]=$exe
done < <(echo "$build_out" | sed -n 's/^ *Executable \(tests\/loom_[a-z_]*\.rs\) (\(.*\))$/\1 \2/p')
[ ${#bin[@]} -gt 0 ] || { echo "loom.sh: no loom test binaries (tests/loom_*.rs) were built" >&2; exit 1; }

echo
echo "=== models (LOOM_MAX_PREEMPTIONS=$bound): all must pass"
for src in $(printf '%s\n' "${!bin[@]}" | sort); do
  "${bin[$src]}" --test-threads=1 2>&1 | grep -E '^model .*explored|^test result|panicked|FAILED' || true
  "${bin[$src]}" --test-threads=1 >/dev/null 2>&1 || {
    echo "loom.sh: a model failed in $src (rerun: ${bin[$src]} --test-threads=1)" >&2
    exit 1
  }
done

# Model list with mutants: "file model mutant" per line, from the `/// Mutants:` lines.
pairs=()
ignored=()
for src in $(printf '%s\n' "${!bin[@]}" | sort); do
  while read -r line; do pairs+=("$line"); done < <(awk -v f="$src" '
    /^\/\/\/ Mutants:/ { sub(/^\/\/\/ Mutants: */, ""); gsub(/,/, " "); m = $0; next }
    /^#\[ignore/ { ign = 1; next }
    /^fn [a-z_0-9]+\(\)/ { name = $2; sub(/\(.*/, "", name)
      if (ign) { print f, name, "-" } else if (m == "") { print f, name, "?" } else { n = split(m, a, " "); for (i = 1; i <= n; i++) print f, name, a[i] }
      m = ""; ign = 0 }
  ' "loom-tests/$src")
done

printf '\n=== mutants: each must make its model fail\n'
fmt='%-22s %-32s %-26s %-12s %s\n'
printf "$fmt" backend model mutant result "first failure"
status=0
used=" "
for p in "${pairs[@]}"; do
  read -r src model mutant <<<"$p"
  backend=${src#tests/loom_}; backend=${backend%.rs}
  if [ "$mutant" = "-" ]; then ignored+=("$src $model"); continue; fi
  if [ "$mutant" = "?" ]; then
    printf "$fmt" "$backend" "$model" "(none listed)" "NO MUTANT" "every model needs a /// Mutants: line"
    status=1; continue
  fi
  if ! grep -qx "$mutant" <<<"$known"; then
    printf "$fmt" "$backend" "$model" "$mutant" "UNKNOWN" "not in src/sync/loom_mutant.rs"
    status=1; continue
  fi
  used+="$mutant "
  result="NOT CAUGHT"; why="passed at every bound 0..$bound"
  for b in $(seq 0 "$bound"); do
    out="$log_dir/$backend.$model.$mutant.txt"
    # (In a subshell, so that the shell's report of an abort goes to the log too.)
    if (FLOWTABLE_LOOM_MUTANT=$mutant LOOM_MAX_PREEMPTIONS=$b \
        "${bin[$src]}" --exact "$model" --test-threads=1; r=$?; exit $r) >"$out" 2>&1; then
      continue
    fi
    # A panic anywhere (the model's assertion, a library debug check, loom's own checks; a panic
    # during the unwinding may abort the process) counts: the same model passes without the mutant.
    if grep -q "unknown loom mutant" "$out" || ! grep -q "panicked at" "$out"; then
      result="ERROR"; why="failed without a model panic, see $out"
    else
      result="caught@$b"
      why=$(grep -m1 -A1 "panicked at" "$out" | tail -n 1 | cut -c1-70)
    fi
    break
  done
  [ "${result%@*}" = caught ] || status=1
  printf "$fmt" "$backend" "$model" "$mutant" "$result" "$why"
done
for m in $known; do
  case "$used" in *" $m "*) ;; *) echo "note: mutant $m is not listed by any model" ;; esac
done

if [ ${#ignored[@]} -gt 0 ]; then
  printf '\n=== open findings (#[ignore]d models): each must still fail\n'
  for p in "${ignored[@]}"; do
    read -r src model <<<"$p"
    backend=${src#tests/loom_}; backend=${backend%.rs}
    out="$log_dir/$backend.$model.finding.txt"
    if "${bin[$src]}" --exact "$model" --ignored --test-threads=1 >"$out" 2>&1; then
      printf "$fmt" "$backend" "$model" "-" "PASSES" "finding fixed: remove its #[ignore] and its entry in design/concurrency.md"
      status=1
    else
      printf "$fmt" "$backend" "$model" "-" "open" "$(grep -m1 -A1 'panicked at' "$out" | tail -n 1 | cut -c1-70)"
    fi
  done
fi

printf '\n'
echo "loom.sh: wall time $(( $(date +%s) - start )) s (LOOM_MAX_PREEMPTIONS=$bound)"
if [ $status -ne 0 ]; then
  echo "loom.sh: FAILED (a mutant was not caught, or see above)"
fi
exit $status
