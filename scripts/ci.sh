#!/usr/bin/env bash
# The one command that runs everything CI runs (the README's test command; .ci/run calls it).
#
#   scripts/ci.sh            # everything
#   scripts/ci.sh quick      # fmt, clippy, docs, tests of the first backend configuration only
#
# Stages: format check, clippy with -D warnings, rustdoc with -D warnings, the test suites for each
# backend configuration (unit, conformance, differential, doc tests, pipeline equivalence with
# tshark's reference), the loom models, the sanitizer runs and a short fuzz run, as each exists.
# Installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-full}
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

step() { printf '\n=== %s (%s)\n' "$1" "$(date -u +%H:%M:%S)"; }
have_feature() { grep -qE "^$1 = " Cargo.toml; }

step "toolchain"
cargo --version
rustc --version

step "format"
cargo fmt --all -- --check

step "clippy (all targets, all features, -D warnings)"
cargo clippy --workspace --all-targets --all-features -- -D warnings

# Backend configurations: each backend alone, then all features together.
configs=("--no-default-features --features dashmap")
if have_feature compact; then configs+=("--no-default-features --features compact"); fi
configs+=("--all-features")

step "docs (each backend configuration, -D warnings: no broken or private links)"
for cfg in "${configs[@]}"; do
  # shellcheck disable=SC2086
  RUSTDOCFLAGS="-D warnings" cargo doc --no-deps -p flowtable $cfg
done
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --workspace --all-features

for cfg in "${configs[@]}"; do
  step "tests: flowtable $cfg"
  # shellcheck disable=SC2086
  cargo test -p flowtable $cfg
  [ "$mode" = quick ] && break
done

if [ "$mode" = quick ]; then
  echo "quick run: done"
  exit 0
fi

if [ -d pipeline ]; then
  step "tests: pipeline on the dashmap backend (tshark equivalence on every capture in ../shared/traces, bad input)"
  cargo test --release -p flowtable-pipeline
  if grep -q '^compact = ' pipeline/Cargo.toml; then
    step "tests: pipeline on the compact backend"
    cargo test --release -p flowtable-pipeline --no-default-features --features compact
  fi
  step "the main job: the pipeline on the bundled capture (the README's first command)"
  cargo run --release -p flowtable-pipeline -- --output /dev/null

  # The committed reference of the bundled capture must be tshark's own dissection: regenerate it.
  step "reference check: flows-from-tshark on data/demo.pcapng"
  traces=${FLOWTABLE_TRACES:-../shared/traces}
  if ! command -v tshark >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tshark >/dev/null) \
      || echo "could not install tshark"
  fi
  if command -v tshark >/dev/null 2>&1 && [ -x "$traces/flows-from-tshark" ]; then
    "$traces/flows-from-tshark" data/demo.pcapng | diff -u data/demo.pcapng.flows.csv -
    echo "data/demo.pcapng.flows.csv is tshark's dissection"
  else
    echo "skipped: tshark or $traces/flows-from-tshark not available"
  fi
fi

if [ -d loom-tests ]; then
  step "loom models"
  bash scripts/loom.sh
fi

if [ -x scripts/sanitizers.sh ]; then
  step "sanitizers"
  bash scripts/sanitizers.sh
fi

if [ -x scripts/fuzz.sh ]; then
  step "fuzz (short)"
  bash scripts/fuzz.sh
fi

step "all stages passed"
