#!/usr/bin/env bash
# Copies the built npm package (pkg/, from scripts/build-pkg.sh) into the browser extension
# (www/extension/ulc/, not committed), so www/extension/ can be loaded unpacked.
set -euo pipefail
cd "$(dirname "$0")/.."
for f in index.js ulc.js ulc_bg.wasm; do
  [ -f "pkg/$f" ] || { echo "pkg/$f is missing: run scripts/build-pkg.sh first" >&2; exit 1; }
done
mkdir -p www/extension/ulc
cp pkg/index.js pkg/ulc.js pkg/ulc_bg.wasm www/extension/ulc/
echo "www/extension/ulc/: $(ls www/extension/ulc | tr '\n' ' ')"
