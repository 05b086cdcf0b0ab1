#!/usr/bin/env bash
# Builds the npm package into pkg/: the `ulc` crate for wasm32 (size-optimized profile
# `wasm-release`), wasm-bindgen's `--target web` glue (ulc.js, loadable straight from a page
# or through a bundler), wasm-opt -Oz from npm binaryen 132 (never Debian's binaryen 108: it
# miscompiles wasm-bindgen's output, see shared/research/toolchain.md §1), the hand-written
# wrapper from crate/js/, and package.json. Prints the sizes a page downloads.
#
# Environment: BUILD_PKG_NO_SETUP=1 skips scripts/setup.sh (test.sh has run it already).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "${BUILD_PKG_NO_SETUP:-}" = 1 ] || bash scripts/setup.sh

target_dir=${CARGO_TARGET_DIR:-target}
out=pkg

cargo build -p ulc --lib --target wasm32-unknown-unknown --profile wasm-release --locked
wasm="$target_dir/wasm32-unknown-unknown/wasm-release/ulc.wasm"

# pkg/README.md is committed; everything else in pkg/ is generated and replaced.
mkdir -p "$out"
find "$out" -mindepth 1 -maxdepth 1 ! -name README.md -exec rm -rf {} +

wasm-bindgen --target web --out-dir "$out" --out-name ulc "$wasm"
node_modules/.bin/wasm-opt -Oz "$out/ulc_bg.wasm" -o "$out/ulc_bg.wasm"
cp crate/js/* "$out/"

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' crate/Cargo.toml | head -n 1)
raw_wasm_bytes=$(wc -c < "$wasm")
OUT="$out" VERSION="$version" RAW_WASM_BYTES="$raw_wasm_bytes" node --input-type=module <<'EOF'
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { brotliCompressSync, constants, gzipSync } from 'node:zlib';

const out = process.env.OUT;
const files = ['index.js', 'index.d.ts', 'ulc.js', 'ulc.d.ts', 'ulc_bg.wasm', 'ulc_bg.wasm.d.ts', 'README.md'];
const pkg = {
  name: 'ulc-light-client',
  version: process.env.VERSION,
  description:
    'Ethereum Ultra Light Client for the browser: an EIP-1193 provider that verifies every answer against a head signed by a quorum of trusted LES servers',
  license: 'MIT OR Apache-2.0',
  type: 'module',
  main: 'index.js',
  module: 'index.js',
  types: 'index.d.ts',
  exports: {
    '.': { types: './index.d.ts', default: './index.js' },
    './ulc_bg.wasm': './ulc_bg.wasm',
    './package.json': './package.json',
  },
  files,
  sideEffects: false,
  keywords: ['ethereum', 'light-client', 'eip-1193', 'eip-6963', 'les', 'wasm'],
};
writeFileSync(join(out, 'package.json'), `${JSON.stringify(pkg, null, 2)}\n`);

// What a page downloads, as served: raw, gzip -9 and brotli (quality 11).
const sizes = (bytes) => ({
  raw: bytes.length,
  gzip: gzipSync(bytes, { level: 9 }).length,
  brotli: brotliCompressSync(bytes, { params: { [constants.BROTLI_PARAM_QUALITY]: 11 } }).length,
});
const rows = ['ulc_bg.wasm', 'ulc.js', 'index.js'].map((name) => [name, sizes(readFileSync(join(out, name)))]);
const total = rows.reduce((t, [, s]) => ({ raw: t.raw + s.raw, gzip: t.gzip + s.gzip, brotli: t.brotli + s.brotli }), { raw: 0, gzip: 0, brotli: 0 });
const fmt = (n) => n.toLocaleString('en-US').padStart(11);
console.log(`pkg/ ${pkg.name}@${pkg.version} (cargo output ulc.wasm: ${Number(process.env.RAW_WASM_BYTES).toLocaleString('en-US')} B before wasm-bindgen and wasm-opt)`);
console.log(`${'file'.padEnd(14)}${'raw'.padStart(11)}${'gzip -9'.padStart(11)}${'brotli'.padStart(11)}`);
for (const [name, s] of [...rows, ['total', total]]) console.log(`${name.padEnd(14)}${fmt(s.raw)}${fmt(s.gzip)}${fmt(s.brotli)}`);
for (const name of files) readFileSync(join(out, name)); // every listed file exists
EOF
