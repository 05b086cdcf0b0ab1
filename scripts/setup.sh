#!/usr/bin/env bash
# Installs what the build and the tests need, idempotently, on a bare machine of this
# project's kind (Debian + rustup). Warm runs cost well under a second.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  rustup target add wasm32-unknown-unknown
fi

# anvil and solc, pinned in package-lock.json; skipped when node_modules matches the lock.
# A symlinked node_modules (a git worktree sharing another checkout's) is left alone: `npm ci`
# would empty the directory it points to.
if [ ! -L node_modules ] && { [ ! -x node_modules/.bin/anvil ] ||
    [ package-lock.json -nt node_modules/.package-lock.json ]; }; then
  npm ci --no-audit --no-fund
fi
