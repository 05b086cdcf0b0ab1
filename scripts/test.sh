#!/usr/bin/env bash
# The project's one test command (README: `make test`). Runs every test suite that exists:
# native unit and integration tests of every workspace member (including the real-mainnet
# vector tests, which read ../shared/vectors), the randomized decoder-robustness suite, and
# a wasm32 build of the protocol core.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

echo "== native tests (workspace)"
cargo test --workspace --locked

echo "== les builds for wasm32-unknown-unknown"
cargo build -p les --target wasm32-unknown-unknown --locked

echo "== docs build without warnings"
RUSTDOCFLAGS="-D warnings" cargo doc -p les --no-deps --locked
