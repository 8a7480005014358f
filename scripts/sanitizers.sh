#!/usr/bin/env bash
# Runs the compact backend's concurrent stress tests (and the conformance and overload suites) under
# AddressSanitizer and ThreadSanitizer, on stable Rust through RUSTC_BOOTSTRAP.
#
#   scripts/sanitizers.sh            # both
#   scripts/sanitizers.sh asan       # one
#   FLOWTABLE_STRESS_SCALE=1 scripts/sanitizers.sh tsan
#
# TSan rebuilds the standard library instrumented (-Zbuild-std, needs the rust-src component).
# Each sanitizer builds into its own target directory so the two never invalidate each other.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=x86_64-unknown-linux-gnu
export RUSTC_BOOTSTRAP=1
export FLOWTABLE_STRESS_SCALE="${FLOWTABLE_STRESS_SCALE:-0.25}"
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-2}"
TESTS=(--test compact_stress --test conformance --test overload --test allocs)
FEATURES=(--no-default-features --features compact)
which="${1:-all}"

if [[ "$which" == all || "$which" == asan ]]; then
    echo "== AddressSanitizer"
    CARGO_TARGET_DIR=target/asan RUSTFLAGS="-Zsanitizer=address" RUSTDOCFLAGS="-Zsanitizer=address" \
        ASAN_OPTIONS="detect_leaks=1:detect_stack_use_after_return=1" \
        cargo test --target "$TARGET" "${FEATURES[@]}" "${TESTS[@]}"
fi

if [[ "$which" == all || "$which" == tsan ]]; then
    echo "== ThreadSanitizer"
    rustup component list --installed 2>/dev/null | grep -q '^rust-src' || rustup component add rust-src
    CARGO_TARGET_DIR=target/tsan RUSTFLAGS="-Zsanitizer=thread" RUSTDOCFLAGS="-Zsanitizer=thread" \
        TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1" \
        cargo test -Zbuild-std --target "$TARGET" "${FEATURES[@]}" --test compact_stress --test conformance --test overload
fi
echo "sanitizers: clean"
