#!/usr/bin/env node
// Browser benchmark of the npm package (pkg/, from scripts/build-pkg.sh): the light client in
// real headless Chromium (Playwright, /usr/bin/chromium) against a devnet (anvil + 3 lesd +
// les-bridge). The browser counterpart of crate/benches/client_bench.rs. A benchmark, not a
// test: it asserts no figure. Prints a table and writes the figures as JSON.
//
//   1. cold start: a brand-new profile (own --user-data-dir, empty IndexedDB) → createProvider
//      ({storage: 'indexeddb'}) → first successful eth_blockNumber (a ULC quorum head), split
//      into wasm load + init, createProvider (opening the store) and first verified head;
//   2. warm start: the same profile reloaded (IndexedDB holds the head) → first ulc_status
//      answer (stale head), first eth_blockNumber answer, ulc_status reporting stale: false;
//   3. per-method latency in the page (BENCH_REQUESTS each, default 30), among them eth_call
//      (DemoToken.balanceOf) cold — each call at a block whose state is not cached yet — and
//      warm — the same block again — and eth_getLogs (the token's logs over 10 blocks);
//   4. idle: connected to 3 servers, ulc_metrics before and after BENCH_IDLE_SECS: bytes in/out
//      and client CPU ms extrapolated to an hour; wasm memory, JS heap and storage use at a
//      brand-new install and after the idle period;
//   5. pkg/ulc_bg.wasm raw, gzip -9 and brotli sizes (scripts/bench-report.mjs's measure).
// Start figures are the median, min and max of BENCH_RUNS runs (a fresh profile each).
//
// It starts its own devnet (scripts/devnet.mjs with DEVNET_NO_BUILD=1 in a temp dir; needs
// `cargo build --release -p lesd -p les-bridge` and `bash scripts/build-pkg.sh` run before),
// or uses a running one whose directory (holding devnet.json) is in ULC_DEVNET_DIR. Whatever
// it started it stops on exit, on errors and on SIGINT/SIGTERM.
//
// Environment:
//   BENCH_RUNS=5            cold/warm start runs (each in a brand-new browser profile);
//                           BENCH_REPEAT is used when BENCH_RUNS is not set
//   BENCH_REQUESTS=30       requests per method
//   BENCH_IDLE_SECS=60      idle period
//   BENCH_JSON=PATH         where the JSON goes (default target/bench/browser.json)
//   ULC_DEVNET_DIR=DIR      use this running devnet instead of starting one
//   DEVNET_BLOCK_TIME=2     passed on to the devnet this script starts

import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, openSync, closeSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { compressedSizes, stats } from './bench-report.mjs';
import { PKG, servePkg } from './serve-pkg.mjs';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--no-first-run',
  // performance.memory with real figures (otherwise quantized), and gc() for a settled heap.
  '--enable-precise-memory-info', '--js-flags=--expose-gc'];

const DEVNET_READY_MS = 120_000;
const DEVNET_STOP_MS = 20_000;
/** Upper bound for any one phase in the page (a head, a warm start, a request series). */
const PHASE_TIMEOUT_MS = 120_000;

class BenchError extends Error {}

function envInt(name, fallback, min) {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min) throw new BenchError(`${name}=${raw} is not an integer >= ${min}`);
  return value;
}

function say(message) {
  process.stderr.write(`bench-browser: ${message}\n`);
}

const sleep = (ms) => new Promise((ok) => setTimeout(ok, ms));

// --- cleanup --------------------------------------------------------------------------------

/** What to undo on exit, newest first. */
const cleanups = [];
let cleaning = null;
function cleanup() {
  cleaning ??= (async () => {
    while (cleanups.length) {
      const undo = cleanups.pop();
      try {
        await undo();
      } catch (error) {
        say(`cleanup: ${error.message}`);
      }
    }
  })();
  return cleaning;
}

let signalled = 0;
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, async () => {
    if (++signalled > 1) {
      say(`second ${signal}: exiting now`);
      process.exit(130);
    }
    say(`${signal}: stopping`);
    await cleanup();
    process.exit(130);
  });
}

// --- preconditions --------------------------------------------------------------------------

function cargoTarget() {
  return process.env.CARGO_TARGET_DIR ? resolve(process.env.CARGO_TARGET_DIR) : join(ROOT, 'target');
}

function checkPreconditions(ownDevnet) {
  const problems = [];
  if (!existsSync(join(PKG, 'ulc_bg.wasm')) || !existsSync(join(PKG, 'index.js')) || !existsSync(join(PKG, 'ulc.js'))) {
    problems.push('pkg/ is not built (pkg/ulc_bg.wasm, pkg/index.js): run `bash scripts/build-pkg.sh`');
  }
  if (ownDevnet) {
    const bin = join(cargoTarget(), 'release');
    const missing = ['lesd', 'les-bridge'].filter((name) => !existsSync(join(bin, name)));
    if (missing.length) {
      problems.push(`${missing.join(' and ')} missing in ${bin}: run \`cargo build --release -p lesd -p les-bridge\` (or set ULC_DEVNET_DIR to a running devnet)`);
    }
    if (!existsSync(join(ROOT, 'node_modules/.bin/anvil'))) problems.push('anvil is missing (node_modules/.bin/anvil): run `bash scripts/setup.sh`');
  }
  const devnetDir = process.env.ULC_DEVNET_DIR;
  if (devnetDir && !existsSync(join(resolve(devnetDir), 'devnet.json'))) problems.push(`ULC_DEVNET_DIR=${devnetDir} holds no devnet.json (is the devnet running?)`);
  if (!existsSync(CHROMIUM)) problems.push(`${CHROMIUM} is missing (bash scripts/setup.sh installs it)`);
  try {
    import.meta.resolve('playwright-core');
  } catch {
    problems.push('playwright-core is not installed (npm ci)');
  }
  if (problems.length) throw new BenchError(`cannot run:\n  - ${problems.join('\n  - ')}`);
}

// --- devnet ---------------------------------------------------------------------------------

/** Set once this script's devnet is ready: keeps its directory (logs) if the bench fails. */
let keepDevnetOnFailure = () => {};

async function startDevnet() {
  const dir = mkdtempSync(join(os.tmpdir(), 'ulc-bench-devnet-'));
  const logPath = join(dir, 'devnet.out');
  const logFd = openSync(logPath, 'w');
  say(`starting a devnet in ${dir} (log: ${logPath})`);
  // Its own process group: a terminal Ctrl-C reaches this script only, which then stops the
  // devnet with SIGTERM (the devnet stops its lesd, bridge and anvil in order).
  const child = spawn(process.execPath, [join(ROOT, 'scripts/devnet.mjs')], {
    cwd: ROOT,
    detached: true,
    env: { ...process.env, DEVNET_DIR: dir, DEVNET_NO_BUILD: '1' },
    stdio: ['ignore', logFd, logFd],
  });
  closeSync(logFd);
  let exited = null;
  const exit = new Promise((ok) => child.once('exit', (code, signal) => ok((exited = { code, signal }))));
  let keepDir = false;
  cleanups.push(async () => {
    if (!exited) {
      say('stopping the devnet');
      child.kill('SIGTERM');
      const first = await Promise.race([exit, sleep(DEVNET_STOP_MS)]);
      if (!first) {
        // A second signal makes devnet.mjs SIGKILL its children.
        child.kill('SIGTERM');
        if (!(await Promise.race([exit, sleep(5_000)]))) {
          try {
            process.kill(-child.pid, 'SIGKILL');
          } catch {}
        }
      }
      if (exited && exited.code !== 0) {
        keepDir = true;
        say(`the devnet did not stop cleanly (${exited.signal ?? `exit ${exited.code}`}); its logs are in ${dir}`);
      }
    }
    if (!keepDir) rmSync(dir, { recursive: true, force: true });
  });
  const jsonPath = join(dir, 'devnet.json');
  const deadline = Date.now() + DEVNET_READY_MS;
  while (!existsSync(jsonPath)) {
    if (exited) {
      keepDir = true;
      throw new BenchError(`the devnet exited (${exited.signal ?? `exit ${exited.code}`}) before it was ready; last lines of ${logPath}:\n${tail(logPath)}`);
    }
    if (Date.now() > deadline) {
      keepDir = true;
      throw new BenchError(`the devnet was not ready within ${DEVNET_READY_MS / 1000} s; see ${logPath}:\n${tail(logPath)}`);
    }
    await sleep(200);
  }
  await sleep(100); // written in one call, but let the write settle
  keepDevnetOnFailure = () => {
    keepDir = true;
    say(`the devnet's logs stay in ${dir}`);
  };
  return { dir, devnet: JSON.parse(readFileSync(jsonPath, 'utf8')), own: true };
}

function tail(path, lines = 15) {
  try {
    return readFileSync(path, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

function existingDevnet(dir) {
  const path = join(resolve(dir), 'devnet.json');
  if (!existsSync(path)) throw new BenchError(`ULC_DEVNET_DIR=${dir} holds no devnet.json`);
  return { dir, devnet: JSON.parse(readFileSync(path, 'utf8')), own: false };
}

async function anvilRpc(url, method, params = []) {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }),
  });
  const reply = await response.json();
  if (reply.error) throw new BenchError(`anvil ${method}: ${reply.error.message}`);
  return reply.result;
}

/** A recent trickle transaction: the newest block (from anvil) that carries one. */
async function recentTransaction(rpcUrl) {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    let block = await anvilRpc(rpcUrl, 'eth_getBlockByNumber', ['latest', true]);
    for (let i = 0; i < 20 && block; i++) {
      if (block.transactions.length > 0) {
        return { hash: block.transactions[0].hash, blockNumber: Number(block.number) };
      }
      if (Number(block.number) === 0) break;
      block = await anvilRpc(rpcUrl, 'eth_getBlockByNumber', [`0x${(Number(block.number) - 1).toString(16)}`, true]);
    }
    await sleep(1_000);
  }
  throw new BenchError('no block with transactions among the newest 20 within 30 s (is the trickle running?)');
}

// --- static server for pkg/ -----------------------------------------------------------------

/**
 * The page is cross-origin isolated (COOP + COEP), which gives performance.now() 5 µs
 * resolution instead of 100 µs; WebSockets to the bridge are not affected by COEP.
 */
const ISOLATION = { 'cross-origin-opener-policy': 'same-origin', 'cross-origin-embedder-policy': 'require-corp' };
const serve = () => servePkg({ title: 'ulc browser bench', headers: ISOLATION });

// --- browser --------------------------------------------------------------------------------

/** A brand-new profile: its own --user-data-dir, so an empty IndexedDB and HTTP cache. */
async function freshProfile(chromium) {
  if (signalled) throw new BenchError('stopping');
  const userDataDir = mkdtempSync(join(os.tmpdir(), 'ulc-bench-profile-'));
  const launching = chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    args: CHROMIUM_ARGS,
    headless: true,
    // Our own SIGINT/SIGTERM handler closes the browser with everything else.
    handleSIGINT: false,
    handleSIGTERM: false,
  });
  // Registered before the launch completes, so a signal during the launch still closes it.
  // Once only: a signal's cleanup and the run's own `finally` may both call it.
  let closing = null;
  const undo = () =>
    (closing ??= (async () => {
      const context = await launching.catch(() => null);
      await context?.close().catch(() => {});
      rmSync(userDataDir, { recursive: true, force: true, maxRetries: 3 });
    })());
  cleanups.push(undo);
  const context = await launching;
  const page = context.pages()[0] ?? (await context.newPage());
  const errors = [];
  page.on('pageerror', (error) => errors.push(error.message));
  return {
    context,
    page,
    errors,
    async close() {
      const i = cleanups.indexOf(undo);
      if (i >= 0) cleanups.splice(i, 1);
      await undo();
    },
  };
}

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, fail) => {
    timer = setTimeout(() => fail(new BenchError(`${what}: no answer within ${ms / 1000} s`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// Page-side code. Each runs inside the page via page.evaluate; `window.__ulc` holds the provider.

/** Loads the wasm, creates the provider and times each step up to the first answer wanted. */
async function pageStart({ config, kind, timeoutMs }) {
  const now = () => performance.now();
  const t0 = now();
  const { default: init } = await import('/pkg/ulc.js');
  const { createProvider } = await import('/pkg/index.js');
  const tImported = now();
  // index.js's createProvider calls this same init with the same URL; it is a no-op then.
  await init({ module_or_path: new URL('/pkg/ulc_bg.wasm', location.href) });
  const tWasm = now();
  const wasmEntry = performance.getEntriesByType('resource').find((e) => e.name.endsWith('/ulc_bg.wasm'));
  const provider = await createProvider(config);
  window.__ulc = provider;
  const tCreated = now();
  const out = {
    crossOriginIsolated: window.crossOriginIsolated,
    importMs: tImported - t0,
    wasmLoadInitMs: tWasm - t0,
    wasmFetchMs: wasmEntry ? wasmEntry.responseEnd - wasmEntry.startTime : null,
    wasmTransferBytes: wasmEntry ? wasmEntry.transferSize : null,
    createProviderMs: tCreated - tWasm,
  };
  const deadline = tCreated + timeoutMs;
  const untilOk = async (method) => {
    let attempts = 0;
    let lastError = null;
    while (now() < deadline) {
      attempts++;
      try {
        const result = await provider.request({ method });
        return { at: now(), result, attempts, lastError };
      } catch (error) {
        lastError = `${error.code}: ${error.message}`;
        await new Promise((ok) => setTimeout(ok, 20));
      }
    }
    throw new Error(`${method}: no success within ${timeoutMs / 1000} s (last error ${lastError})`);
  };

  if (kind === 'cold') {
    const metricsAtStart = await provider.metrics();
    out.headBeforeStart = metricsAtStart.head;
    const first = await untilOk('eth_blockNumber');
    out.firstHeadMs = first.at - tCreated;
    out.totalMs = first.at - t0;
    out.blockNumber = first.result;
    out.blockNumberAttempts = first.attempts;
    return out;
  }

  // Warm: the restored head is in the client at once (metrics do not wait for a server).
  const metricsAtStart = await provider.metrics();
  out.restoredHead = metricsAtStart.head;
  const statusPromise = untilOk('ulc_status');
  const numberPromise = untilOk('eth_blockNumber');
  const [status, number] = await Promise.all([statusPromise, numberPromise]);
  out.firstStatusMs = status.at - tCreated;
  out.firstStatus = status.result.head ? { number: status.result.head.number, stale: status.result.head.stale } : status.result;
  out.firstBlockNumberMs = number.at - tCreated;
  out.firstBlockNumber = number.result;
  let fresh = status.result.head && status.result.head.stale === false ? status : null;
  while (!fresh && now() < deadline) {
    await new Promise((ok) => setTimeout(ok, 5));
    const s = await untilOk('ulc_status');
    if (s.result.head && s.result.head.stale === false) fresh = s;
  }
  if (!fresh) throw new Error(`ulc_status still stale after ${timeoutMs / 1000} s`);
  out.freshHeadMs = fresh.at - tCreated;
  out.freshHead = fresh.result.head.number;
  out.totalToFreshMs = fresh.at - t0;
  return out;
}

/** A snapshot of memory, storage, traffic and CPU (the heap read as is, and after gc()). */
async function pageSnapshot() {
  const provider = window.__ulc;
  const used = performance.memory.usedJSHeapSize;
  if (typeof gc === 'function') gc();
  const metrics = await provider.request({ method: 'ulc_metrics' });
  return {
    at: performance.now(),
    jsHeapUsedBytes: used,
    jsHeapUsedAfterGcBytes: performance.memory.usedJSHeapSize,
    jsHeapTotalBytes: performance.memory.totalJSHeapSize,
    bytesIn: metrics.bytesIn,
    bytesOut: metrics.bytesOut,
    messagesIn: metrics.messagesIn,
    messagesOut: metrics.messagesOut,
    headsAccepted: metrics.headsAccepted,
    head: metrics.head,
    connected: metrics.servers.filter((s) => s.connected).length,
    servers: metrics.servers.length,
    environment: metrics.environment,
  };
}

async function pageWaitConnected({ count, timeoutMs }) {
  const provider = window.__ulc;
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    const metrics = await provider.metrics();
    const connected = metrics.servers.filter((s) => s.connected).length;
    if (connected >= count) return connected;
    await new Promise((ok) => setTimeout(ok, 100));
  }
  const metrics = await provider.metrics();
  return metrics.servers.filter((s) => s.connected).length;
}

/** `n` sequential requests of one method; per-call ms, and what went wrong if anything. */
async function pageLatency({ method, params, n, paramsList }) {
  const provider = window.__ulc;
  const samples = [];
  const errors = [];
  let nulls = 0;
  let summary = null;
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    try {
      const result = await provider.request({ method, params: paramsList ? paramsList[i % paramsList.length] : params });
      samples.push(performance.now() - t);
      if (result === null) nulls++;
      else if (summary === null) {
        summary = typeof result === 'string' ? result.slice(0, 66) : Array.isArray(result) ? `${result.length} entries` : Array.isArray(result?.transactions) ? `block ${result.number}, ${result.transactions.length} txs` : result?.status ? `status ${result.status}, block ${result.blockNumber}` : typeof result;
      }
    } catch (error) {
      samples.push(performance.now() - t);
      errors.push(`${error.code}: ${error.message}`);
    }
  }
  return { samples, errors, nulls, summary };
}

// --- statistics and output ------------------------------------------------------------------

const fmtMs = (v) => (v === null || v === undefined ? '—' : v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2));
const fmtInt = (v) => (v === null || v === undefined ? '—' : Math.round(v).toLocaleString('en-US'));
const fmtKiB = (v) => (v === null || v === undefined ? '—' : `${(v / 1024).toLocaleString('en-US', { maximumFractionDigits: 1 })} KiB`);
const fmtMiB = (v) => (v === null || v === undefined ? '—' : `${(v / 1024 / 1024).toFixed(2)} MiB`);

function table(title, header, rows) {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
  const line = (cells) => cells.map((c, i) => (i === 0 ? String(c).padEnd(widths[i]) : String(c).padStart(widths[i]))).join('  ');
  console.log(`\n${title}`);
  console.log(line(header));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const row of rows) console.log(line(row));
}

function msRow(name, s, extra = '') {
  return s ? [name, fmtMs(s.median), fmtMs(s.min), fmtMs(s.max), s.n, extra] : [name, '—', '—', '—', 0, extra];
}

// --- the benchmark --------------------------------------------------------------------------

function wasmSizes() {
  const sizes = {};
  for (const name of ['ulc_bg.wasm', 'ulc.js', 'index.js']) sizes[name] = compressedSizes(readFileSync(join(PKG, name)), name);
  return sizes;
}

function machine() {
  const cpus = os.cpus();
  return {
    cpu: cpus[0]?.model ?? 'unknown',
    cores: cpus.length,
    totalMemoryBytes: os.totalmem(),
    loadAverage: os.loadavg(),
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
  };
}

async function main() {
  const runs = envInt('BENCH_RUNS', envInt('BENCH_REPEAT', 5, 1), 1);
  const requests = envInt('BENCH_REQUESTS', 30, 1);
  const idleSecs = envInt('BENCH_IDLE_SECS', 60, 1);
  const jsonPath = resolve(ROOT, process.env.BENCH_JSON || 'target/bench/browser.json');
  const useDir = process.env.ULC_DEVNET_DIR;
  checkPreconditions(!useDir);

  const started = new Date();
  const host = machine();
  console.log('ulc browser bench (headless Chromium, npm package pkg/, devnet on 127.0.0.1)');
  console.log(`date     ${started.toISOString()}`);
  console.log(`machine  ${host.cpu}, ${host.cores} cores, ${(host.totalMemoryBytes / 2 ** 30).toFixed(1)} GiB RAM, ${host.os}, node ${host.node}`);
  console.log(`load     ${host.loadAverage.map((l) => l.toFixed(2)).join(' ')} (1/5/15 min) at start`);

  const sizes = wasmSizes();
  const { chromium } = await import('playwright-core');

  const net = useDir ? existingDevnet(useDir) : await startDevnet();
  const { devnet } = net;
  if (!devnet.servers?.length) throw new BenchError('the devnet lists no LES servers');
  const config = {
    chainId: devnet.chainId,
    genesisHash: devnet.genesisHash,
    servers: devnet.servers.map((s) => ({ enode: s.enode, bridge: s.bridgeUrl })),
    fraction: devnet.fraction,
    storage: 'indexeddb',
  };
  const server = await serve();
  cleanups.push(() => new Promise((ok) => { server.closeAllConnections?.(); server.close(ok); }));
  const origin = `http://127.0.0.1:${server.address().port}/`;
  const browserVersion = await (async () => {
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, handleSIGINT: false, handleSIGTERM: false });
    const v = browser.version();
    await browser.close();
    return v;
  })();
  console.log(`browser  Chromium ${browserVersion} (${CHROMIUM})`);
  console.log(`devnet   ${net.own ? 'started here' : `ULC_DEVNET_DIR=${net.dir}`}: chain ${devnet.chainId}, ${devnet.servers.length} lesd behind les-bridge, a block every ${devnet.blockTime} s, fraction ${devnet.fraction} %`);
  console.log(`runs     ${runs} cold/warm starts (fresh profile each), ${requests} requests per method, idle ${idleSecs} s`);

  // 1 + 2: cold and warm starts, each run in a brand-new profile.
  const coldRuns = [];
  const warmRuns = [];
  const pageErrors = [];
  for (let run = 1; run <= runs; run++) {
    const profile = await freshProfile(chromium);
    try {
      await profile.page.goto(origin);
      const cold = await withTimeout(profile.page.evaluate(pageStart, { config, kind: 'cold', timeoutMs: PHASE_TIMEOUT_MS }), PHASE_TIMEOUT_MS + 10_000, `cold start ${run}`);
      coldRuns.push(cold);
      // Let the head reach IndexedDB (it is written before `connect`) and the servers settle.
      await sleep(500);
      await profile.page.evaluate(() => window.__ulc.close());
      await profile.page.reload();
      const warm = await withTimeout(profile.page.evaluate(pageStart, { config, kind: 'warm', timeoutMs: PHASE_TIMEOUT_MS }), PHASE_TIMEOUT_MS + 10_000, `warm start ${run}`);
      warmRuns.push(warm);
      say(`run ${run}/${runs}: cold ${fmtMs(cold.totalMs)} ms (wasm ${fmtMs(cold.wasmLoadInitMs)}, head ${fmtMs(cold.firstHeadMs)}), warm: status ${fmtMs(warm.firstStatusMs)} ms (stale ${warm.firstStatus?.stale}), fresh ${fmtMs(warm.freshHeadMs)} ms`);
      await profile.page.evaluate(() => window.__ulc.close());
    } finally {
      pageErrors.push(...profile.errors);
      await profile.close();
    }
  }

  // 4 then 3: a brand-new install, idle with 3 servers, then per-method latency.
  const profile = await freshProfile(chromium);
  let install;
  let idleEnd;
  const windows = [];
  let connectedAtIdle;
  const latency = [];
  let receiptTx = null;
  try {
    await profile.page.goto(origin);
    install = await withTimeout(profile.page.evaluate(pageStart, { config, kind: 'cold', timeoutMs: PHASE_TIMEOUT_MS }), PHASE_TIMEOUT_MS + 10_000, 'install start');
    connectedAtIdle = await profile.page.evaluate(pageWaitConnected, { count: devnet.servers.length, timeoutMs: 30_000 });
    if (connectedAtIdle < devnet.servers.length) say(`only ${connectedAtIdle} of ${devnet.servers.length} servers connected before the idle period`);
    const snapshots = [await profile.page.evaluate(pageSnapshot)];
    say(`idle for ${idleSecs} s with ${connectedAtIdle} servers connected`);
    // The period in BENCH_RUNS windows, so the rate also has a median, min and max.
    const slices = Math.max(1, Math.min(runs, idleSecs));
    const t0 = Date.now();
    for (let i = 1; i <= slices; i++) {
      const due = t0 + (idleSecs * 1000 * i) / slices;
      await sleep(Math.max(0, due - Date.now()));
      snapshots.push(await profile.page.evaluate(pageSnapshot));
    }
    for (let i = 1; i < snapshots.length; i++) {
      const [a, b] = [snapshots[i - 1], snapshots[i]];
      const hours = (b.at - a.at) / 3_600_000;
      windows.push({
        secs: (b.at - a.at) / 1000,
        bytesInPerHour: (b.bytesIn - a.bytesIn) / hours,
        bytesOutPerHour: (b.bytesOut - a.bytesOut) / hours,
        cpuMsPerHour: (b.environment.cpuMs - a.environment.cpuMs) / hours,
      });
    }
    const start = snapshots[0];
    idleEnd = snapshots[snapshots.length - 1];
    install.snapshot = start;

    const token = devnet.token?.address;
    const account = devnet.devAccounts?.[0]?.address;
    receiptTx = await recentTransaction(devnet.rpcUrl);
    const calls = [
      ['eth_chainId', []],
      ['eth_blockNumber', []],
      ['eth_getBalance', [account, 'latest']],
      ['eth_getBlockByNumber', ['latest', false]],
      ['eth_getBlockByNumber (full txs)', ['latest', true]],
      ['eth_getCode', [token, 'latest']],
      ['eth_getStorageAt', [token, '0x0', 'latest']],
      ['eth_getTransactionReceipt', [receiptTx.hash]],
    ];
    // eth_call and eth_getLogs at fixed blocks below the client's head: "latest" would move
    // to a new block (whose state is fetched anew) with every head.
    const head = Number(await profile.page.evaluate(() => window.__ulc.request({ method: 'eth_blockNumber' })));
    const hex = (n) => `0x${n.toString(16)}`;
    const balanceOf = { to: token, data: `0x70a08231${account.slice(2).toLowerCase().padStart(64, '0')}` };
    const oldest = Math.max(devnet.token?.deployBlock ?? 1, 1);
    const coldBlocks = Array.from({ length: Math.min(requests, 10, head - oldest) }, (_, i) => head - 1 - i);
    if (coldBlocks.length) {
      calls.push(
        ['eth_call (cold)', null, coldBlocks.map((b) => [balanceOf, hex(b)])],
        ['eth_call (warm)', [balanceOf, hex(coldBlocks[0])]],
      );
    } else {
      say(`eth_call skipped: the head ${head} is not above the token's deploy block ${oldest}`);
    }
    calls.push(['eth_getLogs', [{ address: token, fromBlock: hex(Math.max(0, head - 10)), toBlock: hex(head - 1) }]]);
    for (const [name, params, paramsList] of calls) {
      const method = name.split(' ')[0];
      const n = paramsList ? paramsList.length : requests;
      const result = await withTimeout(profile.page.evaluate(pageLatency, { method, params, paramsList, n }), PHASE_TIMEOUT_MS * 3, name);
      latency.push({ name, method, params: params ?? paramsList, ...result, stats: stats(result.samples), first: result.samples[0] });
      if (result.errors.length) say(`${name}: ${result.errors.length} of ${n} failed, e.g. ${result.errors[0]}`);
    }
  } finally {
    pageErrors.push(...profile.errors);
    await profile.close();
  }

  // --- report -------------------------------------------------------------------------------
  const cold = {
    wasmLoadInitMs: stats(coldRuns.map((r) => r.wasmLoadInitMs)),
    wasmFetchMs: stats(coldRuns.map((r) => r.wasmFetchMs)),
    createProviderMs: stats(coldRuns.map((r) => r.createProviderMs)),
    firstHeadMs: stats(coldRuns.map((r) => r.firstHeadMs)),
    totalMs: stats(coldRuns.map((r) => r.totalMs)),
  };
  const warm = {
    wasmLoadInitMs: stats(warmRuns.map((r) => r.wasmLoadInitMs)),
    createProviderMs: stats(warmRuns.map((r) => r.createProviderMs)),
    firstStatusMs: stats(warmRuns.map((r) => r.firstStatusMs)),
    firstBlockNumberMs: stats(warmRuns.map((r) => r.firstBlockNumberMs)),
    freshHeadMs: stats(warmRuns.map((r) => r.freshHeadMs)),
    totalToFreshMs: stats(warmRuns.map((r) => r.totalToFreshMs)),
  };
  const restored = warmRuns.filter((r) => r.restoredHead).length;
  const isolated = coldRuns.every((r) => r.crossOriginIsolated);
  const firstStale = warmRuns.filter((r) => r.firstStatus?.stale === true).length;

  const HDR = ['', 'median ms', 'min ms', 'max ms', 'n', ''];
  table(`1. cold start: brand-new profile → createProvider({storage: 'indexeddb'}) → first eth_blockNumber (quorum head)`, HDR, [
    msRow('wasm load + init (import JS, fetch, compile, instantiate)', cold.wasmLoadInitMs),
    msRow('  of which ulc_bg.wasm fetch (resource timing)', cold.wasmFetchMs),
    msRow('createProvider (opens IndexedDB, starts dialling)', cold.createProviderMs),
    msRow('time to first verified head (from createProvider)', cold.firstHeadMs),
    msRow('total: import to first eth_blockNumber', cold.totalMs),
  ]);
  table('2. warm start: same profile reloaded (IndexedDB holds the head); times from createProvider resolved', HDR, [
    msRow('wasm load + init', warm.wasmLoadInitMs),
    msRow('createProvider (opens IndexedDB, restores the head)', warm.createProviderMs),
    msRow('first ulc_status answer', warm.firstStatusMs, `stale in ${firstStale}/${warmRuns.length}`),
    msRow('first eth_blockNumber answer', warm.firstBlockNumberMs),
    msRow('ulc_status reports stale: false', warm.freshHeadMs),
    msRow('total: import to stale: false', warm.totalToFreshMs),
  ]);
  console.log(`restored head visible in ulc_metrics right after createProvider: ${restored}/${warmRuns.length} runs`);
  console.log(`page timer: performance.now(), ${isolated ? 'cross-origin isolated (5 µs resolution)' : 'NOT cross-origin isolated (100 µs resolution)'}`);

  table(`3. per-method latency in the page (${requests} sequential requests each, one client, 3 servers)`,
    ['method', 'median ms', 'min ms', 'max ms', 'n', 'first ms', 'note'],
    latency.map((l) => {
      const note = [l.errors.length ? `${l.errors.length} failed: ${l.errors[0]}` : '', l.nulls ? `${l.nulls} null` : '', !l.errors.length && !l.nulls ? l.summary ?? '' : ''].filter(Boolean).join('; ');
      return [l.name, fmtMs(l.stats?.median), fmtMs(l.stats?.min), fmtMs(l.stats?.max), l.stats?.n ?? 0, fmtMs(l.first), note];
    }));
  console.log(`receipt of ${receiptTx?.hash} (block ${receiptTx?.blockNumber}, taken from anvil); eth_call = DemoToken.balanceOf, cold: each call at another block (the code cached after the first), warm: one block again; eth_getLogs: the token's logs over 10 blocks`);

  const s0 = install.snapshot;
  const whole = {
    secs: (idleEnd.at - s0.at) / 1000,
    bytesIn: idleEnd.bytesIn - s0.bytesIn,
    bytesOut: idleEnd.bytesOut - s0.bytesOut,
    cpuMs: idleEnd.environment.cpuMs - s0.environment.cpuMs,
    headsAccepted: idleEnd.headsAccepted - s0.headsAccepted,
  };
  const perHour = (v) => (v * 3600) / whole.secs;
  const winIn = stats(windows.map((w) => w.bytesInPerHour));
  const winOut = stats(windows.map((w) => w.bytesOutPerHour));
  const winCpu = stats(windows.map((w) => w.cpuMsPerHour));
  table(`4. idle, ${connectedAtIdle} of ${devnet.servers.length} servers connected, a block every ${devnet.blockTime} s: per hour, EXTRAPOLATED from ${whole.secs.toFixed(1)} s (window figures: ${windows.length} windows of ~${(whole.secs / windows.length).toFixed(0)} s)`,
    ['', `measured in ${whole.secs.toFixed(0)} s`, 'per hour', 'window median/h', 'window min/h', 'window max/h'], [
      ['bytes in', fmtInt(whole.bytesIn), fmtKiB(perHour(whole.bytesIn)), fmtKiB(winIn?.median), fmtKiB(winIn?.min), fmtKiB(winIn?.max)],
      ['bytes out', fmtInt(whole.bytesOut), fmtKiB(perHour(whole.bytesOut)), fmtKiB(winOut?.median), fmtKiB(winOut?.min), fmtKiB(winOut?.max)],
      ['client CPU (environment.cpuMs)', `${fmtMs(whole.cpuMs)} ms`, `${fmtInt(perHour(whole.cpuMs))} ms`, `${fmtInt(winCpu?.median)} ms`, `${fmtInt(winCpu?.min)} ms`, `${fmtInt(winCpu?.max)} ms`],
      ['heads accepted', fmtInt(whole.headsAccepted), fmtInt(perHour(whole.headsAccepted)), '', '', ''],
    ]);
  table('   memory and storage', ['', 'brand-new install (first head)', `after ${whole.secs.toFixed(0)} s idle`], [
    ['wasm memory (environment.wasmMemoryBytes)', fmtMiB(s0.environment.wasmMemoryBytes), fmtMiB(idleEnd.environment.wasmMemoryBytes)],
    ['JS heap used (performance.memory)', fmtMiB(s0.jsHeapUsedBytes), fmtMiB(idleEnd.jsHeapUsedBytes)],
    ['JS heap used after gc()', fmtMiB(s0.jsHeapUsedAfterGcBytes), fmtMiB(idleEnd.jsHeapUsedAfterGcBytes)],
    ['origin storage use (environment.storageUsageBytes)', fmtKiB(s0.environment.storageUsageBytes), fmtKiB(idleEnd.environment.storageUsageBytes)],
    ['client CPU so far (environment.cpuMs)', `${fmtMs(s0.environment.cpuMs)} ms`, `${fmtMs(idleEnd.environment.cpuMs)} ms`],
    ['bytes in / out so far', `${fmtInt(s0.bytesIn)} / ${fmtInt(s0.bytesOut)}`, `${fmtInt(idleEnd.bytesIn)} / ${fmtInt(idleEnd.bytesOut)}`],
  ]);

  table('5. package sizes', ['file', 'raw', 'gzip -9', 'brotli (q11)'], Object.entries(sizes).map(([name, s]) => [name, fmtKiB(s.raw), fmtKiB(s.gzip9), fmtKiB(s.brotli)]));

  const endLoad = os.loadavg();
  console.log(`\nload average at the end: ${endLoad.map((l) => l.toFixed(2)).join(' ')} (1/5/15 min) on ${host.cores} cores`);
  if (pageErrors.length) console.log(`uncaught page errors: ${pageErrors.length}, e.g. ${pageErrors[0]}`);

  const out = {
    date: started.toISOString(),
    machine: { ...host, loadAverageEnd: endLoad },
    browser: `Chromium ${browserVersion}`,
    settings: { crossOriginIsolated: isolated, runs, requests, idleSecs, blockTime: devnet.blockTime, servers: devnet.servers.length, fraction: devnet.fraction, devnet: net.own ? 'started by the bench' : net.dir },
    coldStart: { ...cold, runs: coldRuns },
    warmStart: { ...warm, restoredHeadRuns: restored, firstStatusStaleRuns: firstStale, runs: warmRuns },
    latency: latency.map(({ name, method, params, samples, errors, nulls, stats: s, first }) => ({ name, method, params, ...s, firstMs: first, errors, nulls, samplesMs: samples })),
    receiptTransaction: receiptTx,
    idle: {
      extrapolatedFromSecs: whole.secs,
      connectedServers: connectedAtIdle,
      measured: whole,
      perHour: { bytesIn: perHour(whole.bytesIn), bytesOut: perHour(whole.bytesOut), cpuMs: perHour(whole.cpuMs) },
      windows,
      windowStatsPerHour: { bytesIn: winIn, bytesOut: winOut, cpuMs: winCpu },
      atInstall: s0,
      afterIdle: idleEnd,
    },
    sizes,
    pageErrors,
  };
  mkdirSync(dirname(jsonPath), { recursive: true });
  writeFileSync(jsonPath, `${JSON.stringify(out, null, 2)}\n`);
  console.log(`JSON written to ${jsonPath}`);
}

let failed = false;
try {
  await main();
} catch (error) {
  failed = true;
  // After SIGINT/SIGTERM the run fails because its browser is gone: not worth a message.
  if (!signalled) {
    say(error instanceof BenchError ? error.message : error.stack ?? String(error));
    keepDevnetOnFailure();
  }
}
await cleanup();
process.exit(failed ? 1 : 0);
