#!/usr/bin/env bash
# Installs what the build and the tests need, idempotently, on a bare machine of this
# project's kind (Debian + rustup). Warm runs cost well under a second.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  rustup target add wasm32-unknown-unknown
fi

# Debian's Chromium and ChromeDriver for the browser tests (wasm-bindgen-test, Playwright).
# Never Debian's binaryen: its wasm-opt 108 miscompiles wasm-bindgen output; wasm-opt comes
# from npm below (shared/research/toolchain.md §1).
if [ ! -x /usr/bin/chromedriver ]; then
  as_root=()
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
      as_root=(sudo)
    else
      echo "setup: chromium and chromium-driver are missing, and installing them needs root or sudo" >&2
      exit 1
    fi
  fi
  "${as_root[@]}" apt-get update
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium chromium-driver
fi

# wasm-bindgen-cli (wasm-bindgen, wasm-bindgen-test-runner) at exactly the wasm-bindgen
# version in Cargo.lock: the CLI and the crate must match. Not --locked: the CLI's own lock
# pins a webpki-roots the registry here does not serve (toolchain.md §2). About 3-5 min once.
wbg=$(sed -n '/^name = "wasm-bindgen"$/{n;s/^version = "\(.*\)"/\1/p}' Cargo.lock)
if [ -n "$wbg" ] && { [ "$(wasm-bindgen --version 2>/dev/null)" != "wasm-bindgen $wbg" ] ||
    ! command -v wasm-bindgen-test-runner >/dev/null 2>&1; }; then
  cargo install wasm-bindgen-cli --version "$wbg"
fi

# anvil, solc, binaryen (wasm-opt) and playwright-core, pinned in package-lock.json; skipped
# when node_modules matches the lock. A symlinked node_modules (a git worktree sharing
# another checkout's) is left alone: `npm ci` would empty the directory it points to.
if [ ! -L node_modules ] && { [ ! -x node_modules/.bin/anvil ] || [ ! -x node_modules/.bin/wasm-opt ] ||
    [ package-lock.json -nt node_modules/.package-lock.json ]; }; then
  npm ci --no-audit --no-fund
fi
