#!/usr/bin/env bash
# The project's one test command (README: `make test`). Runs every test suite that exists:
# native unit and integration tests of every workspace member (including the real-mainnet
# vector tests, which read ../shared/vectors), the randomized decoder-robustness suite,
# the Node tests of the devnet tooling (tests/), and a wasm32 build of the protocol core.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

log=$(mktemp)
trap 'rm -f "$log"' EXIT

echo "== native tests (workspace)"
cargo test --workspace --locked 2>&1 | tee "$log"

echo "== node tests (contract artifact, devnet)"
node --test tests/ 2>&1 | tee -a "$log"

echo "== les builds for wasm32-unknown-unknown"
cargo build -p les --target wasm32-unknown-unknown --locked

echo "== docs build without warnings"
RUSTDOCFLAGS="-D warnings" cargo doc -p les --no-deps --locked

# One plain closing line with the totals over every cargo and node test run above.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     /^# pass / { p += $3 }
     /^# fail / { f += $3 }
     END { printf "all suites: %d passed, %d failed\n", p, f; exit (p == 0 || f > 0) }' "$log"
