#!/usr/bin/env bash
# Installs what the build and the tests need, idempotently, on a bare machine of this
# project's kind (Debian + rustup). Warm runs cost well under a second.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  rustup target add wasm32-unknown-unknown
fi

# anvil and solc, pinned in package-lock.json; `npm ci` is a no-op when node_modules matches.
if [ ! -x node_modules/.bin/anvil ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
