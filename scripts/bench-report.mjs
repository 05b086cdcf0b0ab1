#!/usr/bin/env node
// `make bench`: every benchmark of the project in one run, and one report of their figures in
// bench/report.md (for people) and bench/report.json (everything, for tools). It measures
// nothing itself except package sizes: it builds and runs the existing benchmarks and collects
// what they emit —
//   - les/benches/les_core.rs, bridge/benches/relay.rs (criterion, CRITERION_HOME =
//     target/bench/criterion/<piece>: medians from **/new/estimates.json, min and max of the
//     per-iteration times in sample.json; relay also prints `BENCH_JSON {...}` with its
//     round-trip percentiles);
//   - server/benches/lesd_bench.rs (`BENCH_JSON` line; run BENCH_REPEAT times);
//   - crate/benches/client_bench.rs (the client natively over TCP; `BENCH_JSON` line);
//   - scripts/bench-browser.mjs (the npm package in headless Chromium on a devnet; its JSON);
// plus the size of pkg/ulc_bg.wasm (raw, gzip -9, brotli q11) beside the .wasm of the npm
// packages @a16z/helios and @corpus-core/colibri-stateless, fetched with `npm pack` into a
// temporary directory in the same run (never installed; if the registry cannot be reached
// the report says so). Every figure is a median with min and max over repeated runs or
// samples, and the report names the machine, its load and the tool versions.
//
// A piece that fails is reported as failed (with its log) and the others still run.
//
// Environment:
//   BENCH_REPEAT=5          repetitions: cold/warm starts (browser and native), lesd_bench
//                           runs, relay percentile rounds
//   BENCH_REQUESTS=30       requests per method (browser and native)
//   BENCH_IDLE_SECS=300     browser idle period; the per-hour figures are extrapolated from
//                           it unless it is 3600 or more (the report says which)
//   BENCH_NATIVE_IDLE_SECS  native client idle period (default: BENCH_IDLE_SECS, at most 60)
//   BENCH_QUICK=1           short criterion runs (10 samples, 1 s each): for trials
//   BENCH_ONLY=a,b          run only these pieces: sizes, les_core, pool, cheque, relay, lesd, client, browser
//   BENCH_OUT=bench         where report.md and report.json go
//   HELIOS_VERSION=0.11.1, COLIBRI_VERSION=latest   the npm packages compared
//   LESD_BENCH_CLIENTS, LESD_BENCH_FANOUT, LESD_BENCH_SECONDS, LESD_BENCH_QUEUE_FREE,
//   LESD_BENCH_QUEUE_BURST   passed on to lesd_bench
// Logs of every piece: target/bench/logs/. `--render` (make bench-report) only rewrites
// report.md from report.json.

import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, createWriteStream } from 'node:fs';
import os from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { brotliCompressSync, constants as zlibConstants, gzipSync } from 'node:zlib';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

// --- shared with scripts/bench-browser.mjs --------------------------------------------------

/** Raw, gzip -9 and brotli (quality 11) sizes of one file's bytes. */
export function compressedSizes(bytes, name = '') {
  return {
    raw: bytes.length,
    gzip9: gzipSync(bytes, { level: 9 }).length,
    brotli: brotliCompressSync(bytes, {
      params: {
        [zlibConstants.BROTLI_PARAM_QUALITY]: zlibConstants.BROTLI_MAX_QUALITY,
        [zlibConstants.BROTLI_PARAM_MODE]: name.endsWith('.wasm') ? zlibConstants.BROTLI_MODE_GENERIC : zlibConstants.BROTLI_MODE_TEXT,
        [zlibConstants.BROTLI_PARAM_SIZE_HINT]: bytes.length,
      },
    }).length,
  };
}

/** Median, min, max and count of the finite numbers in `values`; null if there are none. */
export function stats(values) {
  const sorted = values.filter((v) => typeof v === 'number' && Number.isFinite(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return null;
  const mid = sorted.length >> 1;
  const median = sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  return { median, min: sorted[0], max: sorted[sorted.length - 1], n: sorted.length };
}

// --- helpers --------------------------------------------------------------------------------

class ReportError extends Error {}

const say = (message) => process.stderr.write(`bench-report: ${message}\n`);

function envInt(name, fallback, min) {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min) throw new ReportError(`${name}=${raw} is not an integer >= ${min}`);
  return value;
}

function quiet(command, args, options = {}) {
  try {
    return execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 30_000, ...options }).trim();
  } catch (error) {
    return null;
  }
}

const TARGET = process.env.CARGO_TARGET_DIR ? resolve(process.env.CARGO_TARGET_DIR) : join(ROOT, 'target');
const LOGS = join(TARGET, 'bench', 'logs');

/** Set by SIGINT/SIGTERM: the running piece is stopped and no further piece starts. */
let interrupted = false;

/** Runs a command with its output in a log file (and stderr progress); resolves to {code, out}. */
function run(name, command, args, { cwd = ROOT, env = {} } = {}) {
  if (interrupted) throw new ReportError('interrupted');
  mkdirSync(LOGS, { recursive: true });
  const logPath = join(LOGS, `${name}.log`);
  const log = createWriteStream(logPath);
  say(`${name}: ${command} ${args.join(' ')}  (log: ${relative(ROOT, logPath)})`);
  return new Promise((ok) => {
    const child = spawn(command, args, { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (chunk) => {
      out += chunk;
      log.write(chunk);
    });
    child.stderr.on('data', (chunk) => log.write(chunk));
    const stop = () => {
      interrupted = true;
      child.kill('SIGTERM');
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    child.on('error', (error) => {
      log.end();
      ok({ code: -1, out, error: error.message, log: logPath });
    });
    child.on('close', (code, signal) => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      log.end();
      ok({ code: code ?? -1, signal, out, log: logPath });
    });
  });
}

function tail(path, lines = 12) {
  try {
    return readFileSync(path, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/** The `BENCH_JSON {...}` lines of a bench's stdout. */
function benchJson(out) {
  return out
    .split('\n')
    .filter((line) => line.startsWith('BENCH_JSON '))
    .map((line) => JSON.parse(line.slice('BENCH_JSON '.length)));
}

/** Per numeric leaf, the stats of its values across `runs` (objects of the same shape). */
function statsOfRuns(runs) {
  if (runs.length === 0) return null;
  const first = runs[0];
  if (typeof first === 'number') return stats(runs);
  if (first === null || typeof first !== 'object' || Array.isArray(first)) return first;
  return Object.fromEntries(Object.keys(first).map((key) => [key, statsOfRuns(runs.map((r) => r?.[key]))]));
}

// --- machine --------------------------------------------------------------------------------

function machine() {
  const cpus = os.cpus();
  const osRelease = (() => {
    try {
      return /^PRETTY_NAME="?([^"\n]*)"?/m.exec(readFileSync('/etc/os-release', 'utf8'))?.[1] ?? null;
    } catch {
      return null;
    }
  })();
  const status = quiet('git', ['status', '--porcelain'], { cwd: ROOT });
  return {
    cpu: cpus[0]?.model ?? 'unknown',
    cores: cpus.length,
    totalMemoryBytes: os.totalmem(),
    os: `${osRelease ?? os.type()} (${os.type()} ${os.release()} ${os.arch()})`,
    loadAverageStart: os.loadavg(),
    rustc: quiet('rustc', ['-V']),
    cargo: quiet('cargo', ['-V']),
    node: process.version,
    npm: quiet('npm', ['-v']),
    chromium: quiet('/usr/bin/chromium', ['--version']),
    gitCommit: quiet('git', ['rev-parse', 'HEAD'], { cwd: ROOT }),
    gitDirtyFiles: status === null ? null : status.split('\n').filter(Boolean).length,
  };
}

// --- sizes ----------------------------------------------------------------------------------

function walk(dir, found = []) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) walk(path, found);
    else found.push(path);
  }
  return found;
}

/** `npm pack` of one package into a temp dir; the sizes of each .wasm it ships. */
async function npmWasm(spec) {
  const dir = mkdtempSync(join(os.tmpdir(), 'ulc-bench-npm-'));
  try {
    const packed = await run(`npm-pack-${spec.replace(/[^a-z0-9.]+/gi, '_')}`, 'npm', ['pack', '--json', '--pack-destination', dir, spec], { cwd: dir });
    if (packed.code !== 0) {
      // npm's own summary: the first `npm error` line that is not a stack frame, e.g. the FetchError.
      const lines = readFileSync(packed.log, 'utf8').split('\n').filter((l) => l.startsWith('npm error ') && !/^npm error\s+at /.test(l));
      const reason = lines.find((l) => /FetchError|E404|ENOTFOUND|ECONNREFUSED|ETIMEDOUT|EAI_AGAIN/.test(l)) ?? lines[0] ?? `exit ${packed.code}`;
      return { spec, error: `npm pack failed (registry unreachable?): ${reason.replace(/^npm error\s*/, '')}`, log: relative(ROOT, packed.log) };
    }
    const [info] = JSON.parse(packed.out);
    const tarball = join(dir, info.filename);
    execFileSync('tar', ['-xzf', tarball, '-C', dir]);
    const files = walk(join(dir, 'package')).filter((p) => p.endsWith('.wasm'));
    return {
      spec,
      name: info.name,
      version: info.version,
      tarballBytes: statSync(tarball).size,
      unpackedBytes: info.unpackedSize,
      wasm: files.map((path) => ({ file: relative(join(dir, 'package'), path), ...compressedSizes(readFileSync(path), path) })),
    };
  } catch (error) {
    return { spec, error: error.message };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function sizes() {
  const ours = join(ROOT, 'pkg', 'ulc_bg.wasm');
  const out = { ulc: null, others: [] };
  if (existsSync(ours)) {
    out.ulc = { file: 'pkg/ulc_bg.wasm', builtAt: statSync(ours).mtime.toISOString(), ...compressedSizes(readFileSync(ours), ours) };
  } else {
    out.ulc = { error: 'pkg/ulc_bg.wasm is missing (bash scripts/build-pkg.sh)' };
  }
  for (const spec of [`@a16z/helios@${process.env.HELIOS_VERSION || '0.11.1'}`, `@corpus-core/colibri-stateless@${process.env.COLIBRI_VERSION || 'latest'}`]) {
    out.others.push(await npmWasm(spec));
  }
  return out;
}

// --- cargo benches --------------------------------------------------------------------------

const BENCHES = [
  { piece: 'les_core', pkg: 'les', bench: 'les_core', dir: 'les' },
  { piece: 'pool', pkg: 'les', bench: 'pool', dir: 'les' },
  { piece: 'cheque', pkg: 'les', bench: 'cheque', dir: 'les' },
  { piece: 'relay', pkg: 'les-bridge', bench: 'relay', dir: 'bridge' },
  { piece: 'lesd', pkg: 'lesd', bench: 'lesd_bench', dir: 'server' },
  { piece: 'client', pkg: 'ulc', bench: 'client_bench', dir: 'crate' },
];

/** Pieces reported as criterion tables only, with their report headings. */
const CRITERION_ONLY = ['les_core', 'pool', 'cheque'];
const CRITERION_HEADINGS = {
  les_core: 'Protocol core (les/benches/les_core.rs)',
  pool: 'Service model: client pool admission and capacity queries, 10,000 clients (les/benches/pool.rs)',
  cheque: 'Service model: cheque verification (les/benches/cheque.rs)',
};

/** Builds the wanted bench executables once (so nothing rebuilds between repetitions). */
async function buildBenches(wanted) {
  const args = ['bench', '--no-run', '--message-format=json-render-diagnostics'];
  for (const b of wanted) args.push('-p', b.pkg, '--bench', b.bench);
  const built = await run('build-benches', 'cargo', args);
  const exes = {};
  for (const line of built.out.split('\n')) {
    if (!line.startsWith('{')) continue;
    const message = JSON.parse(line);
    if (message.reason === 'compiler-artifact' && message.executable && message.target?.kind?.includes('bench')) {
      exes[message.target.name] = message.executable;
    }
  }
  return { code: built.code, log: built.log, exes };
}

/** Every criterion result in `base` written since `since` (ms): median from estimates, min/max from samples. */
function criterionResults(base, since) {
  if (!existsSync(base)) return [];
  const results = [];
  for (const path of walk(base)) {
    if (!path.endsWith(join('new', 'benchmark.json')) || statSync(path).mtimeMs < since) continue;
    const dir = dirname(path);
    try {
      const benchmark = JSON.parse(readFileSync(path, 'utf8'));
      const estimates = JSON.parse(readFileSync(join(dir, 'estimates.json'), 'utf8'));
      const sample = JSON.parse(readFileSync(join(dir, 'sample.json'), 'utf8'));
      const perIter = sample.times.map((t, i) => t / sample.iters[i]);
      const s = stats(perIter);
      const bytes = benchmark.throughput?.Bytes ?? benchmark.throughput?.BytesDecimal ?? null;
      const elements = benchmark.throughput?.Elements ?? null;
      results.push({
        id: benchmark.full_id,
        medianNs: estimates.median.point_estimate,
        minNs: s?.min,
        maxNs: s?.max,
        samples: s?.n,
        bytesPerIter: bytes,
        elementsPerIter: elements,
      });
    } catch (error) {
      results.push({ id: relative(base, dir), error: error.message });
    }
  }
  return results.sort((a, b) => a.id.localeCompare(b.id));
}

const QUICK_CRITERION = ['--warm-up-time', '0.3', '--measurement-time', '1', '--sample-size', '10'];

/**
 * One criterion bench, with its own CRITERION_HOME (target/bench/criterion/<piece>), so the
 * results read back are this bench's alone, whatever other criterion runs share target/.
 */
async function runCriterion(b, exe, quick, env = {}) {
  const since = Date.now() - 1000;
  const home = join(TARGET, 'bench', 'criterion', b.piece);
  const args = ['--bench', ...(quick ? QUICK_CRITERION : [])];
  const result = await run(b.piece, exe, args, { cwd: join(ROOT, b.dir), env: { CRITERION_HOME: home, ...env } });
  return { ...result, criterion: criterionResults(home, since), json: benchJson(result.out) };
}

// --- the run --------------------------------------------------------------------------------

async function main() {
  const repeat = envInt('BENCH_REPEAT', 5, 1);
  const requests = envInt('BENCH_REQUESTS', 30, 1);
  const idleSecs = envInt('BENCH_IDLE_SECS', 300, 1);
  const nativeIdleSecs = envInt('BENCH_NATIVE_IDLE_SECS', Math.min(idleSecs, 60), 1);
  const quick = process.env.BENCH_QUICK === '1';
  const only = process.env.BENCH_ONLY ? new Set(process.env.BENCH_ONLY.split(',').map((s) => s.trim())) : null;
  const want = (piece) => !only || only.has(piece);
  const outDir = resolve(ROOT, process.env.BENCH_OUT || 'bench');

  const started = new Date();
  const host = machine();
  say(`${host.cpu}, ${host.cores} cores, load ${host.loadAverageStart.map((l) => l.toFixed(2)).join(' ')}; repeat ${repeat}, ${requests} requests, idle ${idleSecs} s${quick ? ', quick criterion' : ''}`);
  const report = {
    date: started.toISOString(),
    machine: host,
    settings: { repeat, requests, idleSecs, nativeIdleSecs, quickCriterion: quick, only: only ? [...only] : null, idleExtrapolated: idleSecs < 3600, lesdClients: envInt('LESD_BENCH_CLIENTS', 2000, 1), lesdFanout: envInt('LESD_BENCH_FANOUT', 1000, 1) },
    pieces: {},
  };
  const piece = (name, value) => {
    report.pieces[name] = value;
    if (value.error) say(`${name}: FAILED: ${value.error}`);
  };
  const failed = (result, what) => ({ error: `${what} exited ${result.signal ?? result.code}${result.error ? `: ${result.error}` : ''}`, log: relative(ROOT, result.log), logTail: tail(result.log) });

  if (want('sizes')) piece('sizes', await sizes());

  const cargoWanted = BENCHES.filter((b) => want(b.piece));
  let exes = {};
  if (cargoWanted.length) {
    // Release lesd and les-bridge for the browser's devnet (an up-to-date build costs nothing).
    const needBins = want('browser');
    const built = await buildBenches(cargoWanted);
    exes = built.exes;
    if (built.code !== 0) say(`building the benches failed (log ${relative(ROOT, built.log)}); the ones built still run`);
    if (needBins) {
      const bins = await run('build-release', 'cargo', ['build', '--release', '-p', 'lesd', '-p', 'les-bridge']);
      if (bins.code !== 0) say(`cargo build --release -p lesd -p les-bridge failed (log ${relative(ROOT, bins.log)})`);
    }
    for (const b of cargoWanted) {
      if (!exes[b.bench]) piece(b.piece, { error: `the bench ${b.bench} did not build`, log: relative(ROOT, built.log), logTail: tail(built.log) });
    }
  }

  // The criterion-only pieces: the protocol core, the service model's client pool and cheques.
  for (const name of CRITERION_ONLY) {
    const spec = BENCHES.find((b) => b.piece === name);
    if (!exes[spec.bench] || !want(name)) continue;
    const r = await runCriterion(spec, exes[spec.bench], quick);
    piece(name, r.code === 0 ? { criterion: r.criterion, log: relative(ROOT, r.log) } : { ...failed(r, name), criterion: r.criterion });
  }

  if (exes.relay && want('relay')) {
    const r = await runCriterion(BENCHES.find((b) => b.piece === 'relay'), exes.relay, quick, { RELAY_BENCH_ROUNDS: String(repeat) });
    const [p] = r.json;
    if (r.code === 0 && p) {
      const added = (a, b) => a.map((v, i) => v - b[i]);
      piece('relay', {
        roundTrip: {
          pingBytes: p.pingBytes,
          samplesPerRound: p.samples,
          rounds: p.directP50Us.length,
          directP50Us: stats(p.directP50Us),
          directP99Us: stats(p.directP99Us),
          bridgeP50Us: stats(p.bridgeP50Us),
          bridgeP99Us: stats(p.bridgeP99Us),
          addedP50Us: stats(added(p.bridgeP50Us, p.directP50Us)),
          addedP99Us: stats(added(p.bridgeP99Us, p.directP99Us)),
        },
        criterion: r.criterion,
        log: relative(ROOT, r.log),
      });
    } else {
      piece('relay', { ...failed(r, 'relay'), criterion: r.criterion });
    }
  }

  if (exes.lesd_bench && want('lesd')) {
    const runs = [];
    let failure = null;
    for (let i = 1; i <= repeat && !failure; i++) {
      const r = await run(`lesd-${i}`, exes.lesd_bench, [], { cwd: join(ROOT, 'server') });
      const [json] = benchJson(r.out);
      if (r.code === 0 && json) runs.push(json);
      else failure = failed(r, `lesd_bench run ${i}`);
    }
    piece('lesd', { ...(failure ?? {}), runs: runs.length, stats: statsOfRuns(runs), perRun: runs });
  }

  if (exes.client_bench && want('client')) {
    const r = await run('client', exes.client_bench, [], {
      cwd: join(ROOT, 'crate'),
      env: { ULC_BENCH_STARTS: String(repeat), ULC_BENCH_REQUESTS: String(requests), ULC_BENCH_IDLE_SECS: String(nativeIdleSecs) },
    });
    const [json] = benchJson(r.out);
    piece('client', r.code === 0 && json ? { ...json, log: relative(ROOT, r.log) } : failed(r, 'client_bench'));
  }

  if (want('browser')) {
    const jsonPath = join(TARGET, 'bench', 'browser.json');
    rmSync(jsonPath, { force: true });
    const r = await run('browser', process.execPath, [join(ROOT, 'scripts/bench-browser.mjs')], {
      env: { BENCH_RUNS: String(repeat), BENCH_REQUESTS: String(requests), BENCH_IDLE_SECS: String(idleSecs), BENCH_JSON: jsonPath },
    });
    piece('browser', r.code === 0 && existsSync(jsonPath) ? { ...JSON.parse(readFileSync(jsonPath, 'utf8')), log: relative(ROOT, r.log) } : failed(r, 'bench-browser.mjs'));
  }

  const ended = new Date();
  report.machine.loadAverageEnd = os.loadavg();
  report.durationSecs = (ended - started) / 1000;
  mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, 'report.json'), `${JSON.stringify(report, null, 2)}\n`);
  writeFileSync(join(outDir, 'report.md'), markdown(report));
  say(`wrote ${relative(ROOT, join(outDir, 'report.md'))} and report.json in ${(report.durationSecs / 60).toFixed(1)} min`);
  return Object.values(report.pieces).some((p) => p.error) ? 1 : 0;
}

// --- markdown -------------------------------------------------------------------------------

const dash = '—';
const num = (v, digits = 0) => (v === null || v === undefined || !Number.isFinite(v) ? dash : v.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits }));
const ms = (v) => (v === null || v === undefined ? dash : v >= 100 ? num(v, 0) : v >= 10 ? num(v, 1) : v >= 0.1 ? num(v, 2) : v >= 0.01 ? num(v, 3) : num(v, 4));
const kib = (v) => (v === null || v === undefined ? dash : `${num(v / 1024, 1)} KiB`);
const mib = (v) => (v === null || v === undefined ? dash : `${num(v / 2 ** 20, 2)} MiB`);
const bytes = (v) => (v === null || v === undefined ? dash : `${num(v)} B`);
/** "median (min–max)" of a stats object, each value through `f`. */
const mmm = (s, f = ms) => (!s ? dash : s.n > 1 ? `${f(s.median)} (${f(s.min)}–${f(s.max)})` : f(s.median));
const nsTime = (ns) => (ns === null || ns === undefined ? dash : ns >= 1e9 ? `${num(ns / 1e9, 2)} s` : ns >= 1e6 ? `${num(ns / 1e6, 2)} ms` : ns >= 1e3 ? `${num(ns / 1e3, 2)} µs` : `${num(ns, 0)} ns`);

function table(header, rows) {
  const cells = (r) => `| ${r.map((c) => String(c ?? dash).replaceAll('|', '\\|')).join(' | ')} |`;
  return [cells(header), cells(header.map(() => '---')), ...rows.map(cells)].join('\n');
}

function failedSection(p) {
  return `**Failed:** ${p.error}. Log: \`${p.log}\`; its last lines:\n\n\`\`\`\n${p.logTail}\n\`\`\`\n`;
}

function markdown(r) {
  const m = r.machine;
  const s = r.settings;
  const load = (l) => (l ? l.map((v) => v.toFixed(2)).join(' / ') : dash);
  const trial = s.idleExtrapolated || s.quickCriterion || s.repeat < 5;
  const out = [];
  out.push('# ulc benchmark report');
  out.push('');
  out.push(`Written by \`make bench\` (scripts/bench-report.mjs) on ${r.date}, in ${num(r.durationSecs / 60, 1)} min.`);
  if (trial) {
    out.push('');
    out.push(`**A short run**${s.repeat < 5 ? ` (${s.repeat} repetitions)` : ''}${s.quickCriterion ? ', criterion in quick mode (10 samples, 1 s)' : ''}${s.idleExtrapolated ? `, idle figures **extrapolated** to an hour from ${s.idleSecs} s` : ''}. Read the figures as orders of magnitude; \`BENCH_IDLE_SECS=3600 make bench\` measures a full hour.`);
  }
  if (s.only) out.push(`\nOnly these pieces ran: ${s.only.join(', ')}.`);
  out.push('');
  out.push('Each figure is the median with (min–max) over the repetitions or samples named with it.');
  out.push('');
  out.push('## Machine');
  out.push('');
  out.push(table(['', ''], [
    ['CPU', `${m.cpu}, ${m.cores} cores`],
    ['RAM', `${num(m.totalMemoryBytes / 2 ** 30, 1)} GiB`],
    ['OS', m.os],
    ['load average (1/5/15 min)', `${load(m.loadAverageStart)} at the start, ${load(m.loadAverageEnd)} at the end`],
    ['rustc', m.rustc],
    ['node / npm', `${m.node} / ${m.npm ?? dash}`],
    ['Chromium', m.chromium ?? r.pieces.browser?.browser ?? dash],
    ['git commit', `${m.gitCommit ?? dash}${m.gitDirtyFiles ? ` + ${m.gitDirtyFiles} uncommitted files` : ''}`],
  ]));
  out.push('');

  out.push(summary(r));
  out.push('');

  // Sizes
  const z = r.pieces.sizes;
  if (z) {
    out.push('## Package size: the wasm module');
    out.push('');
    const rows = [];
    if (z.ulc?.error) rows.push(['ulc (pkg/)', z.ulc.error, '', '', '']);
    else if (z.ulc) rows.push([`**ulc** (this commit's pkg/, built ${z.ulc.builtAt})`, 'ulc_bg.wasm', bytes(z.ulc.raw), bytes(z.ulc.gzip9), bytes(z.ulc.brotli)]);
    for (const o of z.others) {
      if (o.error) rows.push([o.spec, `not measured: ${o.error.split('\n')[0]}`, '', '', '']);
      else if (!o.wasm.length) rows.push([`${o.name} ${o.version}`, 'ships no .wasm file', '', '', '']);
      else for (const w of o.wasm) rows.push([`${o.name} ${o.version}`, w.file, bytes(w.raw), bytes(w.gzip9), bytes(w.brotli)]);
    }
    out.push(table(['package', 'file', 'raw', 'gzip -9', 'brotli q11'], rows));
    out.push('');
    out.push('The other packages are fetched with `npm pack` in the same run (never installed); their tarballs: ' +
      z.others.map((o) => (o.error ? `${o.spec} unreachable` : `${o.name} ${o.version} ${bytes(o.tarballBytes)} packed, ${bytes(o.unpackedBytes)} unpacked`)).join('; ') + '.');
    out.push('');
  }

  // Browser
  const b = r.pieces.browser;
  if (b) {
    out.push('## The npm package in headless Chromium (scripts/bench-browser.mjs)');
    out.push('');
    if (b.error) out.push(failedSection(b));
    else {
      const set = b.settings;
      out.push(`${b.browser}, a devnet on 127.0.0.1 (anvil with a block every ${set.blockTime} s, ${set.servers} lesd behind les-bridge, fraction ${set.fraction} %), ${set.runs} cold/warm runs each in a brand-new profile, ${set.requests} requests per method.`);
      out.push('');
      const c = b.coldStart;
      const w = b.warmStart;
      out.push(table(['start', `median (min–max) of ${set.runs}, ms`], [
        ['cold (brand-new install, empty IndexedDB): import → first verified head', mmm(c.totalMs)],
        ['  of which wasm load + init', mmm(c.wasmLoadInitMs)],
        ['  of which createProvider → first verified head', mmm(c.firstHeadMs)],
        ['warm (IndexedDB holds the head): import → fresh verified head (stale: false)', mmm(w.totalToFreshMs)],
        ['  createProvider → first answer (restored head, stale)', mmm(w.firstStatusMs)],
        ['  createProvider → fresh verified head', mmm(w.freshHeadMs)],
      ]));
      out.push('');
      out.push(table(['method', `median (min–max), ms`, 'n', 'first call, ms', 'note'], b.latency.map((l) => [
        l.name, l.median === undefined ? dash : mmm(l), l.n ?? 0, ms(l.firstMs), [l.errors?.length ? `${l.errors.length} failed: ${l.errors[0]}` : '', l.nulls ? `${l.nulls} null` : ''].filter(Boolean).join('; '),
      ])));
      out.push('');
      out.push('eth_call is DemoToken.balanceOf: cold = each call at another block whose state is not cached yet (the code is cached after the first), warm = the same block again. eth_getLogs: the token\'s logs over 10 blocks; the devnet\'s trickle puts a token transfer in every block, so each call fetches and verifies 10 blocks\' receipts and bodies (20 requests); the client is a free client, and repeated calls can be paced by the servers\' flow control (docs/service-model.md), which the first-call column shows apart.');
      out.push('');
      const i = b.idle;
      const ph = i.perHour;
      const diskGrowth = (i.afterIdle.environment?.storageUsageBytes ?? NaN) - (i.atInstall.environment?.storageUsageBytes ?? NaN);
      const ws = i.windowStatsPerHour;
      out.push(`### Idle: ${i.connectedServers} servers connected, ${num(i.extrapolatedFromSecs, 0)} s measured${s.idleExtrapolated ? ', **per hour extrapolated**' : ''}`);
      out.push('');
      out.push(table(['', `measured in ${num(i.extrapolatedFromSecs, 0)} s`, 'per hour', `window median (min–max) per hour, ${i.windows.length} windows`], [
        ['network bytes in', bytes(i.measured.bytesIn), kib(ph.bytesIn), mmm(ws.bytesIn, kib)],
        ['network bytes out', bytes(i.measured.bytesOut), kib(ph.bytesOut), mmm(ws.bytesOut, kib)],
        ['client CPU time', `${ms(i.measured.cpuMs)} ms`, `${num(ph.cpuMs / 1000, 1)} s`, mmm(ws.cpuMs, (v) => `${num(v / 1000, 1)} s`)],
        ['heads accepted', num(i.measured.headsAccepted), num((i.measured.headsAccepted * 3600) / i.extrapolatedFromSecs), ''],
        ['disk: origin storage growth (navigator.storage.estimate; coarse)', kib(diskGrowth), kib((diskGrowth * 3600) / i.extrapolatedFromSecs), ''],
      ]));
      out.push('');
      const a = i.atInstall;
      const e = i.afterIdle;
      out.push(table(['', 'brand-new install (first head)', `after ${num(i.extrapolatedFromSecs, 0)} s idle`], [
        ['wasm memory', mib(a.environment?.wasmMemoryBytes), mib(e.environment?.wasmMemoryBytes)],
        ['JS heap used (after gc())', mib(a.jsHeapUsedAfterGcBytes), mib(e.jsHeapUsedAfterGcBytes)],
        ['disk: origin storage (navigator.storage.estimate)', kib(a.environment?.storageUsageBytes), kib(e.environment?.storageUsageBytes)],
        ['client CPU time so far', `${ms(a.environment?.cpuMs)} ms`, `${ms(e.environment?.cpuMs)} ms`],
        ['network bytes in / out so far', `${bytes(a.bytesIn)} / ${bytes(a.bytesOut)}`, `${bytes(e.bytesIn)} / ${bytes(e.bytesOut)}`],
      ]));
      out.push('');
      if (b.pageErrors?.length) out.push(`Uncaught page errors: ${b.pageErrors.length}, e.g. ${b.pageErrors[0]}\n`);
    }
  }

  // Native client
  const n = r.pieces.client;
  if (n) {
    out.push('## The client natively over TCP (crate/benches/client_bench.rs)');
    out.push('');
    if (n.error) out.push(failedSection(n));
    else {
      out.push(`anvil (2 s blocks) and 3 lesd on 127.0.0.1, fraction 75 %; ${n.settings.starts} starts, ${n.settings.requests} requests per method.`);
      out.push('');
      out.push(table(['figure', 'median (min–max), ms', 'n'], [
        ['cold start (empty store) → first quorum head', mmm(n.coldStartMs), n.coldStartMs?.n],
        ['warm start (restored store) → fresh quorum head', mmm(n.warmStartMs), n.warmStartMs?.n],
        ...Object.entries(n.latencyMs).sort(([a], [b]) => methodRank(a) - methodRank(b)).map(([name, v]) => [name, mmm(v), v.n]),
      ]));
      out.push('');
      out.push(`eth_call (cold) here is a fresh provider each time (empty caches, ${num(n.ethCallCold?.proofRequestsPerCall, 1)} proof requests in ${num(n.ethCallCold?.roundsPerCall, 1)} rounds per call). Idle ${n.idle.secs} s with 3 servers: in ${bytes(n.idle.bytesIn)}, out ${bytes(n.idle.bytesOut)}; per hour (extrapolated) in ${kib(n.idle.bytesInPerHour)}, out ${kib(n.idle.bytesOutPerHour)}.`);
      out.push('');
    }
  }

  // lesd
  const l = r.pieces.lesd;
  if (l) {
    out.push('## lesd (server/benches/lesd_bench.rs)');
    out.push('');
    if (l.error) out.push(failedSection(l));
    if (l.stats) {
      const st = l.stats;
      out.push(`The release lesd in a child process against a real anvil; ${l.runs} runs, median (min–max).`);
      out.push('');
      out.push(table(['figure', 'result'], [
        [`concurrent idle clients held (of ${num(st.idle.clients?.median)})`, mmm(st.idle.held, num)],
        ['  connected in', mmm(st.idle.connectSecs, (v) => `${num(v, 2)} s`)],
        ['memory per idle client (lesd VmRSS delta)', mmm(st.idle.kibPerClient, (v) => `${num(v, 1)} KiB`)],
        ['  lesd VmRSS before → after', `${mmm(st.idle.rssBeforeKiB, (v) => `${num(v / 1024, 1)} MiB`)} → ${mmm(st.idle.rssAfterKiB, (v) => `${num(v / 1024, 1)} MiB`)}`],
        [`header requests/s from the canonical window (4 clients, 16 in flight, ${num(st.headerRequests.secs?.median)} s)`, mmm(st.headerRequests.perSec, num)],
        [`announcement fan-out to ${num(st.fanout.clients?.median)} clients: first after the block`, mmm(st.fanout.firstMs, (v) => `${num(v, 1)} ms`)],
        ['  all received within (of the first)', mmm(st.fanout.spreadMs, (v) => `${num(v, 1)} ms`)],
        ['  clients that received it', mmm(st.fanout.received, num)],
        ...(st.queue ? [
          [`serving queue under contention: 1 paying + ${num(st.queue.freeClients?.median)} free clients, ${num(st.queue.sentPaid?.median)} + ${num(st.queue.sentFree?.median)} account proofs at once (payer last), default slots: paid response median`, mmm(st.queue.paidMedianMs, (v) => `${num(v, 1)} ms`)],
          ['  free response median', mmm(st.queue.freeMedianMs, (v) => `${num(v, 1)} ms`)],
          ['  free ÷ paid', mmm(st.queue.freeOverPaid, (v) => `${num(v, 2)}×`)],
          ['  mean wait in lesd\'s serving queue, paid / free', `${mmm(st.queue.paidQueueMs, (v) => `${num(v, 2)} ms`)} / ${mmm(st.queue.freeQueueMs, (v) => `${num(v, 2)} ms`)}`],
        ] : []),
      ]));
      out.push('');
    }
  }

  // bridge
  const br = r.pieces.relay;
  if (br) {
    out.push('## les-bridge (bridge/benches/relay.rs)');
    out.push('');
    if (br.error) out.push(failedSection(br));
    else {
      const rt = br.roundTrip;
      const us = (v) => `${num(v, 1)} µs`;
      out.push(`Everything in one process on 127.0.0.1; round trips of ${rt.pingBytes} bytes, ${rt.rounds} rounds of ${num(rt.samplesPerRound)} samples (median (min–max) over rounds).`);
      out.push('');
      out.push(table(['round trip', 'p50', 'p99'], [
        ['direct TCP', mmm(rt.directP50Us, us), mmm(rt.directP99Us, us)],
        ['through the bridge', mmm(rt.bridgeP50Us, us), mmm(rt.bridgeP99Us, us)],
        ['**added by the bridge**', mmm(rt.addedP50Us, us), mmm(rt.addedP99Us, us)],
      ]));
      out.push('');
      out.push(criterionTable(br.criterion));
      out.push('');
    }
  }

  for (const name of CRITERION_ONLY) {
    const lc = r.pieces[name];
    if (!lc) continue;
    out.push(`## ${CRITERION_HEADINGS[name]}`);
    out.push('');
    if (lc.error) out.push(failedSection(lc));
    out.push(criterionTable(lc.criterion ?? []));
    out.push('');
  }

  out.push('## Reproduce');
  out.push('');
  out.push('```');
  out.push('make bench                                   # every piece; writes bench/report.md and bench/report.json');
  out.push('BENCH_REPEAT=3 BENCH_IDLE_SECS=60 BENCH_QUICK=1 make bench   # a short trial');
  out.push('BENCH_IDLE_SECS=3600 make bench              # a full idle hour, nothing extrapolated');
  out.push('```');
  out.push('');
  out.push(`This run: BENCH_REPEAT=${s.repeat} BENCH_REQUESTS=${s.requests} BENCH_IDLE_SECS=${s.idleSecs}${s.quickCriterion ? ' BENCH_QUICK=1' : ''}${s.only ? ` BENCH_ONLY=${s.only.join(',')}` : ''}. Logs of each piece: target/bench/logs/.`);
  out.push('');
  return out.join('\n');
}

/** The headline figures (README's performance section shows the same table). */
function summary(r) {
  const rows = [];
  const p = r.pieces;
  const brotli = (w) => (w ? `${num(w.brotli / 1024, 0)} KiB` : dash);
  if (p.sizes) {
    const others = p.sizes.others.map((o) => (o.error ? `${o.spec}: not reachable` : `${o.name.split('/').pop()} ${o.version} ${o.wasm.map(brotli).join(' + ') || 'no .wasm'}`)).join(', ');
    rows.push(['wasm, brotli', `${p.sizes.ulc?.error ? dash : brotli(p.sizes.ulc)} (${others})`]);
  }
  const b = p.browser;
  if (b && !b.error) {
    const lat = (name) => b.latency.find((l) => l.name === name);
    rows.push(['browser cold start (brand-new install) → verified head', `${mmm(b.coldStart.totalMs)} ms`]);
    rows.push(['browser warm start → fresh verified head', `${mmm(b.warmStart.totalToFreshMs)} ms`]);
    rows.push(['browser eth_getBalance / eth_call cold / warm', ['eth_getBalance', 'eth_call (cold)', 'eth_call (warm)'].map((n) => ms(lat(n)?.median)).join(' / ') + ' ms']);
    const i = b.idle;
    rows.push([`browser idle, per hour${r.settings.idleExtrapolated ? ` (extrapolated from ${num(i.extrapolatedFromSecs, 0)} s)` : ''}`, `in ${kib(i.perHour.bytesIn)}, out ${kib(i.perHour.bytesOut)}, CPU ${num(i.perHour.cpuMs / 1000, 1)} s`]);
    rows.push(['browser memory (wasm + JS heap), install → after idle', `${mib((i.atInstall.environment?.wasmMemoryBytes ?? 0) + i.atInstall.jsHeapUsedAfterGcBytes)} → ${mib((i.afterIdle.environment?.wasmMemoryBytes ?? 0) + i.afterIdle.jsHeapUsedAfterGcBytes)}`]);
    rows.push(['browser disk (origin storage), install → after idle', `${kib(i.atInstall.environment?.storageUsageBytes)} → ${kib(i.afterIdle.environment?.storageUsageBytes)}`]);
  }
  const l = p.lesd?.stats;
  if (l) {
    rows.push(['lesd idle clients held, memory per client', `${num(l.idle.held?.median)} of ${num(l.idle.clients?.median)}, ${num(l.idle.kibPerClient?.median, 1)} KiB`]);
    rows.push(['lesd header requests/s; fan-out spread to all clients', `${num(l.headerRequests.perSec?.median)}/s; ${num(l.fanout.spreadMs?.median, 1)} ms for ${num(l.fanout.received?.median)}`]);
    if (l.queue) rows.push(['lesd busy: paying vs free response median (serving queue)', `${num(l.queue.paidMedianMs?.median, 1)} vs ${num(l.queue.freeMedianMs?.median, 1)} ms (${num(l.queue.freeOverPaid?.median, 2)}×)`]);
  }
  const rt = p.relay?.roundTrip;
  if (rt) {
    const tput = (id) => {
      const c = p.relay.criterion.find((x) => x.id === id);
      return c?.bytesPerIter ? `${num(c.bytesPerIter / (c.medianNs / 1e9) / 1e6, 0)} MB/s` : dash;
    };
    rows.push(['les-bridge added latency p50 / p99; throughput up / down', `${num(rt.addedP50Us?.median, 1)} / ${num(rt.addedP99Us?.median, 1)} µs; ${tput('throughput_64KiB_messages/upload/bridge')} / ${tput('throughput_64KiB_messages/download/bridge')}`]);
  }
  return `## Summary\n\n${table(['figure', 'median (min–max)'], rows)}`;
}

const METHOD_ORDER = ['eth_chainId', 'eth_blockNumber', 'eth_getBalance', 'eth_getBlockByNumber', 'eth_getBlockByNumber (full txs)', 'eth_getCode', 'eth_getStorageAt', 'eth_getTransactionReceipt', 'eth_call (cold)', 'eth_call (warm)', 'eth_getLogs'];
const methodRank = (name) => (METHOD_ORDER.includes(name) ? METHOD_ORDER.indexOf(name) : METHOD_ORDER.length);

function criterionTable(results) {
  if (!results.length) return '(no criterion results)';
  return table(['criterion benchmark', 'median', 'min–max per iteration', 'throughput at the median', 'samples'], results.map((c) => {
    if (c.error) return [c.id, c.error, '', '', ''];
    const tput = c.bytesPerIter ? `${num(c.bytesPerIter / (c.medianNs / 1e9) / 1e6, 0)} MB/s` : c.elementsPerIter ? `${num(c.elementsPerIter / (c.medianNs / 1e9), 0)} /s` : `${num(1e9 / c.medianNs, 0)} /s`;
    return [c.id, nsTime(c.medianNs), `${nsTime(c.minNs)}–${nsTime(c.maxNs)}`, tput, c.samples];
  }));
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  try {
    if (process.argv.includes('--render')) {
      const outDir = resolve(ROOT, process.env.BENCH_OUT || 'bench');
      writeFileSync(join(outDir, 'report.md'), markdown(JSON.parse(readFileSync(join(outDir, 'report.json'), 'utf8'))));
      say(`rewrote ${relative(ROOT, join(outDir, 'report.md'))} from report.json`);
    } else {
      process.exitCode = await main();
    }
    if (interrupted) process.exitCode = 130;
  } catch (error) {
    say(error instanceof ReportError ? error.message : error.stack ?? String(error));
    process.exitCode = 2;
  }
}
