#!/usr/bin/env bash
# Loom model checking of flowtable's real code (see design/concurrency.md, "Loom models").
#
#   scripts/loom.sh
#
# Everything is built with RUSTFLAGS="--cfg flowtable_loom -C debug-assertions=on", in release mode,
# in its own target dir (target/loom) so that normal builds are not invalidated.
#
# 1. Lints the loom-only code (clippy under the loom cfg; normal clippy never sees it).
# 2. Builds the models: the public-API models of loom-tests/tests/loom_<backend>.rs, and the
#    private-state models inside the library (`#[cfg(all(test, flowtable_loom))]` tests, e.g.
#    src/sync/loom_rc.rs, src/compact/tests/loom_*.rs), which are the only unit tests of a loom build.
# 3. Runs every model: all must pass.
# 4. Runs every model with each injected bug on its `/// Mutants: a, b` doc line (selected at run time
#    through FLOWTABLE_LOOM_MUTANT, no rebuild): each must FAIL with a panic. The preemption bound is
#    raised from 0 until the bug is caught (up to LOOM_MAX_PREEMPTIONS), which records how many
#    preemptions each bug needs.
# 5. Runs the `#[ignore]`d models, which pin open findings: each must still fail (once one passes,
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
export LOOM_LOCATION=${LOOM_LOCATION:-1} # failures name the source location of each operation
export RUST_BACKTRACE=0
unset FLOWTABLE_LOOM_MUTANT
bound=$LOOM_MAX_PREEMPTIONS
log_dir=$CARGO_TARGET_DIR/loom-logs
mkdir -p "$log_dir"

# Mutants the library knows (flowtable::sync::loom_mutant::MUTANTS).
known=$(sed -n '/MUTANTS: /,/^];/p' src/sync/loom_mutant.rs | sed -n 's/^ *(\{0,1\}"\([a-z_0-9]*\)",.*/\1/p' | sort -u)
[ -n "$known" ] || { echo "loom.sh: no mutants found in src/sync/loom_mutant.rs" >&2; exit 1; }

echo "=== clippy of the loom-only code (cfg flowtable_loom, -D warnings)"
cargo clippy -q -p flowtable --lib --features compact -- -D warnings
cargo clippy -q -p flowtable-loom-tests --all-targets -- -D warnings

echo "=== build (loom cfg, release, $CARGO_TARGET_DIR)"
# Test binary of each model source: loom-tests/tests/loom_<x>.rs -> its binary; src/... -> the
# library's unit-test binary.
declare -A bin
build() {
  local out
  out=$(cargo test --release "$@" --no-run 2>&1) || { echo "$out"; exit 1; }
  echo "$out" | grep -E '^ *(Finished|Executable)' || true
  exe_of=$(echo "$out" | sed -n 's/^ *Executable \(.*\) (\(.*\))$/\1|\2/p')
}
build -p flowtable-loom-tests
while IFS='|' read -r src exe; do
  case "$src" in tests/loom_*.rs) bin["loom-tests/$src"]=$exe ;; esac
done <<<"$exe_of"
build -p flowtable --lib --features compact
lib_exe=$(sed -n 's/^unittests src\/lib.rs|//p' <<<"$exe_of")
[ -n "$lib_exe" ] || { echo "loom.sh: the library's unit-test binary was not built" >&2; exit 1; }
while read -r f; do
  bin[$f]=$lib_exe
done < <(grep -rlE 'cfg\(all\(test, flowtable_loom\)\)|^#!\[cfg\(flowtable_loom\)\]' src --include='*.rs' | xargs -r grep -l '#\[test\]' | sort)

echo
echo "=== models (LOOM_MAX_PREEMPTIONS=$bound): all must pass"
for exe in $(printf '%s\n' "${bin[@]}" | sort -u); do
  out="$log_dir/models.$(basename "$exe").txt"
  if ("$exe" --test-threads=1 --nocapture; r=$?; exit $r) >"$out" 2>&1; then
    grep -E '^model .*explored|^test result' "$out" || true
  else
    grep -E '^test .*FAILED|panicked at' -A1 "$out" || true
    echo "loom.sh: a model failed (log $out; rerun: $exe --test-threads=1)" >&2
    exit 1
  fi
done

# "source model mutant" per line, from the `/// Mutants:` doc lines; mutant "-" for an ignored
# model (an open finding), "?" for a model that lists none.
pairs=()
for src in $(printf '%s\n' "${!bin[@]}" | sort); do
  while read -r line; do pairs+=("$line"); done < <(awk -v f="$src" '
    /^[ \t]*\/\/\/ Mutants:/ { sub(/^[ \t]*\/\/\/ Mutants: */, ""); gsub(/,/, " "); m = $0; next }
    /^[ \t]*#\[ignore/ { ign = 1; next }
    /^[ \t]*fn [a-z_0-9]+\(\)/ { name = $0; sub(/^[ \t]*fn /, "", name); sub(/\(.*/, "", name)
      if (ign) { print f, name, "-" } else if (m == "") { print f, name, "?" } else { n = split(m, a, " "); for (i = 1; i <= n; i++) print f, name, a[i] }
      m = ""; ign = 0; next }
    /^[ \t]*(pub |pub\(crate\) )?(fn|struct|impl|mod) / { m = ""; ign = 0 }
  ' "$src")
done

# The full test name of `model` in `exe` (module path included); extra arguments go to `--list`.
full_name() {
  local names
  local exe=$1 model=$2
  shift 2
  names=$("$exe" --list "$@" 2>/dev/null | sed -n 's/: test$//p' | grep -E "(^|::)$model\$" || true)
  [ "$(grep -c . <<<"$names")" = 1 ] || { echo "loom.sh: test '$model' is not unique or not found in $exe" >&2; exit 1; }
  echo "$names"
}

first_message() { # the first panic's message (the first non-empty line after its location)
  awk '/panicked at/ { p = 1; next } p && NF { print; exit }' "$1" | cut -c1-70
}

short() { # the source's label in the table
  case "$1" in loom-tests/tests/loom_*) s=${1#loom-tests/tests/loom_}; echo "${s%.rs}" ;; *) echo "${1#src/}" ;; esac
}

printf '\n=== mutants: each must make its model fail\n'
row() { printf '%-22s %-32s %-26s %-12s %s\n' "$@"; }
row backend/file model mutant result "first failure"
status=0
used=" "
findings=()
for p in "${pairs[@]}"; do
  read -r src model mutant <<<"$p"
  label=$(short "$src")
  if [ "$mutant" = "-" ]; then findings+=("$src $model"); continue; fi
  if [ "$mutant" = "?" ]; then
    row "$label" "$model" "(none listed)" "NO MUTANT" "every model needs a /// Mutants: line"
    status=1; continue
  fi
  if ! grep -qx "$mutant" <<<"$known"; then
    row "$label" "$model" "$mutant" "UNKNOWN" "not in src/sync/loom_mutant.rs"
    status=1; continue
  fi
  used+="$mutant "
  exe=${bin[$src]}
  name=$(full_name "$exe" "$model")
  result="NOT CAUGHT"; why="passed at every bound 0..$bound"
  for b in $(seq 0 "$bound"); do
    out="$log_dir/$(tr '/' '_' <<<"$label.$model.$mutant").txt"
    # (In a subshell, so that the shell's report of an abort goes to the log too.)
    if (FLOWTABLE_LOOM_MUTANT=$mutant LOOM_MAX_PREEMPTIONS=$b "$exe" --exact "$name" --test-threads=1; r=$?; exit $r) \
        >"$out" 2>&1; then
      continue
    fi
    # A panic anywhere (the model's assertion, a library debug check, loom's own checks; a panic
    # during the unwinding may abort the process) counts: the same model passes without the mutant.
    if grep -q "unknown loom mutant" "$out" || ! grep -q "panicked at" "$out"; then
      result="ERROR"; why="failed without a panic, see $out"
    else
      result="caught@$b"
      why=$(first_message "$out")
    fi
    break
  done
  [ "${result%@*}" = caught ] || status=1
  row "$label" "$model" "$mutant" "$result" "$why"
done
for m in $known; do
  case "$used" in *" $m "*) ;; *) echo "note: mutant $m is not listed by any model" ;; esac
done

if [ ${#findings[@]} -gt 0 ]; then
  printf '\n=== open findings (#[ignore]d models): each must still fail\n'
  for p in "${findings[@]}"; do
    read -r src model <<<"$p"
    label=$(short "$src")
    exe=${bin[$src]}
    name=$(full_name "$exe" "$model" --ignored)
    out="$log_dir/finding.$model.txt"
    if ("$exe" --exact "$name" --ignored --test-threads=1; r=$?; exit $r) >"$out" 2>&1; then
      row "$label" "$model" "-" "PASSES" "finding fixed: remove its #[ignore] and its entry in design/concurrency.md"
      status=1
    else
      row "$label" "$model" "-" "open" "$(first_message "$out")"
    fi
  done
fi

printf '\n'
echo "loom.sh: wall time $(($(date +%s) - start)) s (LOOM_MAX_PREEMPTIONS=$bound)"
if [ $status -ne 0 ]; then
  echo "loom.sh: FAILED (a mutant was not caught, or see above)"
fi
exit $status
