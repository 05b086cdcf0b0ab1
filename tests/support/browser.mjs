// What the browser tests (tests/*.test.mjs that drive Chromium) share: where Chromium is and
// how it is started here, the devnet they run against, the provider configuration a dapp
// would derive from it, npm packages bundled for a page, and the one rule for a test that cannot run: skip with the reason,
// or fail under CI=true. Not a test file itself (node --test picks *.test.mjs).

import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PKG } from '../../scripts/serve-pkg.mjs';

/** The repository (esbuild resolves npm packages from its node_modules). */
const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

export const CHROMIUM = '/usr/bin/chromium';
/** Root needs --no-sandbox; the rest keeps Chromium off this machine's closed network. */
export const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--no-first-run'];

/** devnet.json as text: from ULC_DEVNET_JSON, or the directory in ULC_DEVNET_DIR (test.sh). */
export function devnetJson() {
  if (process.env.ULC_DEVNET_JSON) return process.env.ULC_DEVNET_JSON;
  const dir = process.env.ULC_DEVNET_DIR;
  if (dir && existsSync(join(dir, 'devnet.json'))) return readFileSync(join(dir, 'devnet.json'), 'utf8');
  return null;
}

/** Why a browser test of the package cannot run here (also checking `packages`), or null. */
export function missing(packages = ['playwright-core']) {
  if (!existsSync(join(PKG, 'ulc_bg.wasm')) || !existsSync(join(PKG, 'index.js'))) return 'pkg/ is not built (bash scripts/build-pkg.sh)';
  if (!devnetJson()) return 'no devnet: set ULC_DEVNET_JSON or ULC_DEVNET_DIR (scripts/test.sh does)';
  if (!existsSync(CHROMIUM)) return `${CHROMIUM} is missing (bash scripts/setup.sh installs it)`;
  for (const name of packages) {
    try {
      import.meta.resolve(name);
    } catch {
      return `${name} is not installed (npm ci)`;
    }
  }
  return null;
}

/** Skips `t` with `why` (returns true), or fails it under CI=true; false if nothing is missing. */
export function skipUnless(t, why) {
  if (!why) return false;
  if (process.env.CI === 'true') assert.fail(why);
  t.skip(why);
  return true;
}

/** The createProvider configuration for the devnet, as a dapp builds it from devnet.json. */
export function providerConfig(devnet, storage = 'memory') {
  return {
    chainId: devnet.chainId,
    genesisHash: devnet.genesisHash,
    servers: devnet.servers.map((s) => ({ enode: s.enode, bridge: s.bridgeUrl })),
    fraction: devnet.fraction,
    storage,
  };
}

/** `entry` (ES module source importing npm packages) bundled by esbuild into one browser ES module, in memory. */
export async function bundleForBrowser(entry) {
  const esbuild = await import('esbuild');
  const out = await esbuild.build({
    stdin: { contents: entry, resolveDir: REPO_ROOT, sourcefile: 'entry.mjs' },
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    write: false,
    logLevel: 'error',
  });
  return out.outputFiles[0].text;
}
