#!/usr/bin/env bash
# A short fuzz run: the differential test (random operation sequences against the model of the
# contract, on every backend and both expiry modes) with many more cases than the normal suite,
# in release mode. FLOWTABLE_FUZZ_CASES overrides the count (default 100000 per property).
set -euo pipefail
cd "$(dirname "$0")/.."
cases=${FLOWTABLE_FUZZ_CASES:-100000}
echo "differential fuzz: $cases cases per property and backend"
FLOWTABLE_FUZZ_CASES=$cases cargo test --release -p flowtable --all-features --test differential
