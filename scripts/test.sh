#!/usr/bin/env bash
# The project's one test command (README: `make test`). Runs every test suite that exists:
# native unit and integration tests of every workspace member (including the real-mainnet
# vector tests, which read ../shared/vectors), the randomized decoder-robustness suite, a
# wasm32 build of the protocol core, the browser client's wasm tests in headless Chromium
# against a devnet started here, the npm package build, and the Node tests (tests/: devnet
# tooling, and the package in Chromium through Playwright against the same devnet).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

log=$(mktemp)
devnet_dir=$(mktemp -d)
devnet_pid=
cleanup() {
  # SIGTERM lets the devnet stop its lesd, bridge and anvil; it exits within a few seconds.
  if [ -n "$devnet_pid" ] && kill -0 "$devnet_pid" 2>/dev/null; then
    kill -TERM "$devnet_pid" 2>/dev/null || true
    wait "$devnet_pid" 2>/dev/null || true
  fi
  rm -rf "$log" "$devnet_dir"
}
trap cleanup EXIT

echo "== native tests (workspace)"
cargo test --workspace --locked 2>&1 | tee "$log"

echo "== les builds for wasm32-unknown-unknown"
cargo build -p les --target wasm32-unknown-unknown --locked

echo "== docs build without warnings"
RUSTDOCFLAGS="-D warnings" cargo doc -p les -p ulc --no-deps --locked

echo "== devnet for the browser tests (release lesd and les-bridge)"
cargo build --release -p lesd -p les-bridge --locked
DEVNET_DIR="$devnet_dir" DEVNET_NO_BUILD=1 node scripts/devnet.mjs >"$devnet_dir/devnet.out" 2>&1 &
devnet_pid=$!
for _ in $(seq 1 240); do
  [ -s "$devnet_dir/devnet.json" ] && break
  if ! kill -0 "$devnet_pid" 2>/dev/null; then
    cat "$devnet_dir/devnet.out" >&2
    echo "the devnet exited before it was ready" >&2
    exit 1
  fi
  sleep 0.5
done
if [ ! -s "$devnet_dir/devnet.json" ]; then
  cat "$devnet_dir/devnet.out" >&2
  echo "the devnet was not ready within 120 s" >&2
  exit 1
fi

echo "== wasm tests in headless Chromium (crate/tests/web*.rs)"
# The devnet reaches the tests at compile time (option_env!); the runner's timeout covers a
# whole test binary, and the devnet tests wait for a ULC quorum.
ULC_DEVNET_JSON="$(cat "$devnet_dir/devnet.json")" CHROMEDRIVER=/usr/bin/chromedriver WASM_BINDGEN_TEST_TIMEOUT=180 \
  cargo test -p ulc --target wasm32-unknown-unknown --locked --test web --test web_devnet 2>&1 | tee -a "$log"

echo "== npm package (scripts/build-pkg.sh)"
BUILD_PKG_NO_SETUP=1 bash scripts/build-pkg.sh
bash scripts/build-extension.sh

echo "== node tests (contract artifact, devnet, npm package in Chromium)"
ULC_DEVNET_DIR="$devnet_dir" node --test tests/ 2>&1 | tee -a "$log"

# One plain closing line with the totals over every cargo and node test run above.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     /^# pass / { p += $3 }
     /^# fail / { f += $3 }
     END { printf "all suites: %d passed, %d failed\n", p, f; exit (p == 0 || f > 0) }' "$log"
