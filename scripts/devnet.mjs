#!/usr/bin/env node
// The local devnet behind `make devnet`: one command that starts a complete playground for the
// ultra light client on 127.0.0.1 and stops all of it again on Ctrl-C.
//
//   anvil (a fresh dev chain, a block every DEVNET_BLOCK_TIME s)
//   + DemoToken (ERC-20, contracts/artifacts/DemoToken.json) deployed from dev account 0
//   + PaymentChannel (contracts/artifacts/PaymentChannel.json, the service model's payment
//     channels, minimum lifetime 10 min) deployed from dev account 0
//   + a trickle of transactions (an ETH and a token transfer per block time) so blocks carry
//     transactions, receipts and logs
//   + three lesd in front of anvil (own datadir and node key each, under <dir>/lesd-N)
//   + one les-bridge that allows exactly those three
//   + a static web server for www/ that also serves /devnet.json and the npm package (pkg/)
//     under /pkg/
//
// It writes <dir>/devnet.json (default dir: target/devnet), the page's one source of truth:
//   chainId, rpcUrl (anvil), wwwUrl, fraction (ULC trust threshold, %), genesisHash, blockTime,
//   token {address, name, symbol, decimals, totalSupply (decimal string), deployer,
//          deployBlock, artifact (path), abi (inline)},
//   paymentChannel {address, minLifetime (s), deployBlock, artifact (path)},
//   devAccounts [{address, privateKey}] (anvil's public test keys), bridgeUrl,
//   servers [{enode, bridgeUrl: ws://BRIDGE/HOST:PORT, tcp, log, payee (address paid by
//   channel cheques), admin (the les_ admin JSON-RPC URL)}], processes [{name, pid}].
// Then it prints the www URL and runs until SIGINT/SIGTERM, which stop the LES servers and the
// bridge, then anvil (exit 1 if one needed SIGKILL). Any child dying on its own stops the whole
// devnet with a message (exit 1). Child logs go to <dir>/<name>.log.
//
// Environment:
//   DEVNET_BLOCK_TIME=2      seconds between blocks (and between trickle transactions)
//   DEVNET_NO_BUILD=1        skip scripts/setup.sh and cargo build; use existing binaries
//   DEVNET_EXIT_AFTER=N      once ready, run N seconds, then stop cleanly (the tests use it)
//   DEVNET_DIR=DIR           output directory instead of target/devnet (the tests use a temp dir)
//   DEVNET_BIN_DIR=DIR       where lesd and les-bridge are (default <cargo target>/release)
//   DEVNET_WWW_PORT=N        fixed port for the web server (default: any free port)
//   DEVNET_SKIP_LES=1        debugging aid: run without lesd and les-bridge (anvil, token,
//                            trickle and web server only; devnet.json lists no servers)

import { spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { createServer as createNetServer } from 'node:net';
import { dirname, extname, isAbsolute, join, normalize, relative, resolve, sep } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { privateKeyToAddress } from 'viem/accounts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const HOST = '127.0.0.1';

/** How many LES servers the devnet runs and the ULC trust fraction the client should use. */
const LES_SERVER_COUNT = 3;
const ULC_FRACTION_PERCENT = 75;

/** The token: 1,000,000 DEMO with 18 decimals, all minted to dev account 0. */
const TOKEN_ARTIFACT = 'contracts/artifacts/DemoToken.json';
/** The payment-channel contract of the service model (docs/service-model.md). */
const CHANNEL_ARTIFACT = 'contracts/artifacts/PaymentChannel.json';
/** Its minimum channel lifetime on the devnet, in seconds (mainnet deployments use days). */
const CHANNEL_MIN_LIFETIME = 600n;
const TOKEN_SUPPLY = 1_000_000n * 10n ** 18n;

/** Per trickle tick: 0.01 ETH and 1..9 DEMO move between dev accounts. */
const TRICKLE_WEI = 10n ** 16n;
const TRICKLE_TOKEN_UNIT = 10n ** 18n;

const ANVIL_READY_MS = 20_000;
const LES_READY_MS = 60_000;
const RECEIPT_TIMEOUT_MS = 30_000;
const STOP_GRACE_MS = 5_000;

// --- configuration ------------------------------------------------------------------------

function envFlag(name) {
  const value = process.env[name];
  return value !== undefined && value !== '' && value !== '0';
}

function envNumber(name, fallback, { min, integer }) {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < min || (integer && !Number.isInteger(value))) {
    throw new DevnetError(`${name}=${raw} is not ${integer ? 'an integer' : 'a number'} >= ${min}`);
  }
  return value;
}

function readConfig() {
  const cargoTarget = process.env.CARGO_TARGET_DIR ? resolve(process.env.CARGO_TARGET_DIR) : join(ROOT, 'target');
  return {
    blockTime: envNumber('DEVNET_BLOCK_TIME', 2, { min: 1, integer: true }),
    noBuild: envFlag('DEVNET_NO_BUILD'),
    skipLes: envFlag('DEVNET_SKIP_LES'),
    exitAfter: envNumber('DEVNET_EXIT_AFTER', 0, { min: 0, integer: false }),
    wwwPort: envNumber('DEVNET_WWW_PORT', 0, { min: 0, integer: true }),
    dir: process.env.DEVNET_DIR ? resolve(process.env.DEVNET_DIR) : join(cargoTarget, 'devnet'),
    binDir: process.env.DEVNET_BIN_DIR ? resolve(process.env.DEVNET_BIN_DIR) : join(cargoTarget, 'release'),
  };
}

/** A failure the devnet explains in one message, without a stack trace. */
class DevnetError extends Error {}

function say(message) {
  process.stderr.write(`devnet: ${message}\n`);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// --- child processes ----------------------------------------------------------------------

/** Every child still running, in start order; shutdown stops them in reverse. */
const children = [];
let stopping = false;
let onUnexpectedExit = () => {};

/**
 * Starts a child in its own process group, so a terminal Ctrl-C reaches only this script,
 * which then stops the children in order (LES servers before the chain they read from).
 * stderr (and stdout unless `readStdout`) go to <dir>/<name>.log.
 */
function startChild(name, command, args, { dir, readStdout = false }) {
  const logPath = join(dir, `${name}.log`);
  const logFd = openSync(logPath, 'w');
  const child = spawn(command, args, {
    cwd: ROOT,
    detached: true,
    // Logs go to files, not a terminal: no colour escapes (tracing-subscriber honours NO_COLOR).
    env: { ...process.env, NO_COLOR: '1' },
    stdio: ['ignore', readStdout ? 'pipe' : logFd, logFd],
  });
  closeSync(logFd);
  const entry = { name, child, logPath, exit: null, killed: false };
  entry.exited = new Promise((resolveExit) => {
    child.once('exit', (code, signal) => {
      entry.exit = { code, signal };
      const index = children.indexOf(entry);
      if (index >= 0) children.splice(index, 1);
      resolveExit(entry.exit);
      if (!stopping) onUnexpectedExit(entry);
    });
  });
  entry.spawned = new Promise((resolveSpawn, rejectSpawn) => {
    child.once('spawn', resolveSpawn);
    child.once('error', (err) => rejectSpawn(new DevnetError(`cannot start ${name} (${command}): ${err.message}`)));
  });
  // Without this, a spawn error would also surface as an unhandled rejection.
  entry.spawned.catch(() => {});
  children.push(entry);
  return entry;
}

function describeExit({ code, signal }) {
  return signal ? `signal ${signal}` : `exit code ${code}`;
}

function logTail(path, lines = 15) {
  try {
    const text = readFileSync(path, 'utf8').trimEnd();
    if (!text) return '';
    return `\n--- last lines of ${path} ---\n${text.split('\n').slice(-lines).join('\n')}`;
  } catch {
    return '';
  }
}

/** Resolves with the first stdout line of `entry`; later stdout goes to its log file. */
function firstStdoutLine(entry, timeoutMs) {
  return new Promise((resolveLine, rejectLine) => {
    const lines = createInterface({ input: entry.child.stdout });
    let first = true;
    const timer = setTimeout(() => {
      rejectLine(new DevnetError(`${entry.name} printed nothing on stdout within ${timeoutMs / 1000} s${logTail(entry.logPath)}`));
    }, timeoutMs);
    lines.on('line', (line) => {
      if (first) {
        first = false;
        clearTimeout(timer);
        resolveLine(line.trim());
      } else {
        try {
          writeFileSync(entry.logPath, `${line}\n`, { flag: 'a' });
        } catch {
          // The log is a convenience; losing a line must not stop the devnet.
        }
      }
    });
    entry.exited.then((exit) => {
      clearTimeout(timer);
      if (first) {
        rejectLine(new DevnetError(`${entry.name} exited (${describeExit(exit)}) before it was ready${logTail(entry.logPath)}`));
      }
    });
    entry.spawned.catch(rejectLine);
  });
}

function signalGroup(entry, signal) {
  try {
    // Negative pid: the whole process group the child leads (detached), grandchildren too.
    process.kill(-entry.child.pid, signal);
  } catch {
    // Already gone.
  }
}

/** SIGTERM, then SIGKILL after a grace period; returns whether it stopped on SIGTERM. */
async function stopChild(entry) {
  if (entry.exit) return true;
  signalGroup(entry, 'SIGTERM');
  let timer;
  const graceful = await Promise.race([
    entry.exited.then(() => true),
    new Promise((r) => (timer = setTimeout(() => r(false), STOP_GRACE_MS))),
  ]);
  clearTimeout(timer);
  if (!graceful) {
    entry.killed = true;
    signalGroup(entry, 'SIGKILL');
    await entry.exited;
  }
  return graceful;
}

// Last resort if the script dies with children alive (an exception in a handler, say).
process.on('exit', () => {
  for (const entry of children) signalGroup(entry, 'SIGKILL');
});

// --- JSON-RPC -----------------------------------------------------------------------------

let rpcId = 0;

async function rpc(url, method, params = []) {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ jsonrpc: '2.0', id: ++rpcId, method, params }),
  });
  const body = await response.json();
  if (body.error) throw new DevnetError(`${method}: ${body.error.message} (code ${body.error.code})`);
  return body.result;
}

async function waitForRpc(url, anvil) {
  const deadline = Date.now() + ANVIL_READY_MS;
  for (;;) {
    if (anvil.exit) throw new DevnetError(`anvil exited (${describeExit(anvil.exit)}) before it was ready${logTail(anvil.logPath)}`);
    try {
      return Number(await rpc(url, 'eth_chainId'));
    } catch (err) {
      if (Date.now() > deadline) throw new DevnetError(`anvil did not answer on ${url} within ${ANVIL_READY_MS / 1000} s: ${err.message}`);
    }
    await sleep(100);
  }
}

async function waitForReceipt(url, hash) {
  const deadline = Date.now() + RECEIPT_TIMEOUT_MS;
  for (;;) {
    const receipt = await rpc(url, 'eth_getTransactionReceipt', [hash]);
    if (receipt) return receipt;
    if (Date.now() > deadline) throw new DevnetError(`transaction ${hash} was not mined within ${RECEIPT_TIMEOUT_MS / 1000} s`);
    await sleep(200);
  }
}

const hex = (n) => `0x${n.toString(16)}`;
const word = (n) => n.toString(16).padStart(64, '0');
const addressWord = (address) => address.toLowerCase().replace(/^0x/, '').padStart(64, '0');

// --- ports and the web server -------------------------------------------------------------

/**
 * Distinct free ports on 127.0.0.1 for children that need a port on their command line.
 * All listeners are held open until every port is chosen, so the ports differ; another
 * process could still take one before the child binds, which then fails loudly.
 */
async function freePorts(count) {
  const servers = [];
  try {
    for (let i = 0; i < count; i++) {
      const server = createNetServer();
      servers.push(server);
      await new Promise((ok, fail) => {
        server.once('error', fail);
        server.listen(0, HOST, ok);
      });
    }
    return servers.map((s) => s.address().port);
  } finally {
    await Promise.all(servers.map((s) => new Promise((ok) => s.close(ok))));
  }
}

const MIME_TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.wasm': 'application/wasm',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.txt': 'text/plain; charset=utf-8',
};

/**
 * Serves www/ read-only, the npm package (pkg/) under /pkg/, plus /devnet.json from memory;
 * never anything outside www/ and pkg/.
 */
function startWebServer(port, devnetJson) {
  const wwwRoot = join(ROOT, 'www');
  const pkgRoot = join(ROOT, 'pkg');
  const server = createHttpServer((req, res) => {
    const send = (status, type, body) => {
      res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
      res.end(req.method === 'HEAD' ? undefined : body);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, 'text/plain', 'method not allowed\n');
    let path;
    try {
      path = decodeURIComponent(new URL(req.url, 'http://devnet').pathname);
    } catch {
      return send(400, 'text/plain', 'bad path\n');
    }
    if (path === '/devnet.json') return send(200, MIME_TYPES['.json'], devnetJson());
    if (path.endsWith('/')) path += 'index.html';
    const isPkg = path === '/pkg' || path.startsWith('/pkg/');
    const root = isPkg ? pkgRoot : wwwRoot;
    const file = normalize(join(root, isPkg ? path.slice('/pkg'.length) : path));
    const inside = relative(root, file);
    if (inside.startsWith('..') || isAbsolute(inside) || inside.split(sep).includes('..')) {
      return send(404, 'text/plain', 'not found\n');
    }
    let body;
    try {
      body = readFileSync(file);
    } catch {
      return send(404, 'text/plain', 'not found\n');
    }
    return send(200, MIME_TYPES[extname(file)] ?? 'application/octet-stream', body);
  });
  return new Promise((ok, fail) => {
    server.once('error', (err) => fail(new DevnetError(`web server cannot listen on ${HOST}:${port}: ${err.message}`)));
    server.listen(port, HOST, () => ok(server));
  });
}

// --- the devnet ---------------------------------------------------------------------------

function build(config) {
  const run = (command, args) => {
    say(`${command} ${args.join(' ')}`);
    const result = spawnSync(command, args, { cwd: ROOT, stdio: ['ignore', 2, 2] });
    if (result.error) throw new DevnetError(`cannot run ${command}: ${result.error.message}`);
    if (result.status !== 0) throw new DevnetError(`${command} ${args.join(' ')} failed (${describeExit(result)})`);
  };
  run('bash', ['scripts/setup.sh']);
  if (!config.skipLes) run('cargo', ['build', '--release', '--locked', '-p', 'lesd', '-p', 'les-bridge']);
}

/**
 * Whether on-chain code is the artifact's runtime code. solc leaves immutables (set by the
 * constructor) as zero words in `deployedBytecode`, so only zero bytes may differ.
 */
function isDeployedCode(code, deployedBytecode) {
  if (code.length !== deployedBytecode.length) return false;
  for (let i = 2; i < code.length; i += 2) {
    const expected = deployedBytecode.slice(i, i + 2);
    if (code.slice(i, i + 2) !== expected && expected !== '00') return false;
  }
  return true;
}

/** Deploys a compiled artifact with ABI-encoded constructor words and checks the code landed. */
async function deployContract(rpcUrl, deployer, artifactPath, constructorWords) {
  const artifact = JSON.parse(readFileSync(join(ROOT, artifactPath), 'utf8'));
  const data = `${artifact.bytecode}${constructorWords.join('')}`;
  const hash = await rpc(rpcUrl, 'eth_sendTransaction', [{ from: deployer, data }]);
  const receipt = await waitForReceipt(rpcUrl, hash);
  if (receipt.status !== '0x1' || !receipt.contractAddress) {
    throw new DevnetError(`${artifact.contractName ?? artifactPath} deployment ${hash} failed (status ${receipt.status})`);
  }
  const code = await rpc(rpcUrl, 'eth_getCode', [receipt.contractAddress, 'latest']);
  if (!isDeployedCode(code, artifact.deployedBytecode)) {
    throw new DevnetError(`code at ${receipt.contractAddress} is not ${artifactPath}'s`);
  }
  return { artifact, address: receipt.contractAddress, block: Number(receipt.blockNumber), tx: hash };
}

/**
 * Every `intervalMs`: dev account 1+k/9 sends 0.01 ETH on to the next account, and account 0
 * sends 1..9 DEMO to account 1..9, so every block has plain transfers, contract calls and logs.
 * Failures are reported, not fatal: a dying anvil is caught by the child watcher instead.
 */
function startTrickle(rpcUrl, accounts, token, intervalMs) {
  const transferSelector = token.artifact.methodIdentifiers['transfer(address,uint256)'];
  let tick = 0;
  let running = true;
  let wake = () => {};
  const done = (async () => {
    while (running) {
      const k = tick++;
      const from = accounts[1 + (k % (accounts.length - 1))];
      const to = accounts[1 + ((k + 1) % (accounts.length - 1))];
      const tokenTo = accounts[1 + (k % (accounts.length - 1))];
      const amount = BigInt(1 + (k % 9)) * TRICKLE_TOKEN_UNIT;
      try {
        await rpc(rpcUrl, 'eth_sendTransaction', [{ from, to, value: hex(TRICKLE_WEI) }]);
        await rpc(rpcUrl, 'eth_sendTransaction', [
          { from: accounts[0], to: token.address, data: `0x${transferSelector}${addressWord(tokenTo)}${word(amount)}` },
        ]);
      } catch (err) {
        if (running) say(`trickle: ${err.message}`);
      }
      await new Promise((r) => {
        wake = r;
        setTimeout(r, intervalMs);
      });
    }
  })();
  return async () => {
    running = false;
    wake();
    await done;
  };
}

/** Pairs anvil's dev accounts with their keys from its --config-out file. */
function readDevAccounts(path, accounts) {
  let out;
  try {
    out = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new DevnetError(`cannot read anvil's account file ${path}: ${err.message}`);
  }
  const addresses = out.available_accounts ?? [];
  const keys = out.private_keys ?? [];
  if (addresses.length !== keys.length || addresses.join() !== accounts.join()) {
    throw new DevnetError(`${path} does not list the accounts eth_accounts returns`);
  }
  return addresses.map((address, i) => ({ address, privateKey: keys[i] }));
}

const ENODE_LINE = /^enode:\/\/[0-9a-f]{128}@([0-9.]+):(\d+)$/;

function lesBinaries(config) {
  const lesd = join(config.binDir, 'lesd');
  const bridge = join(config.binDir, 'les-bridge');
  for (const bin of [lesd, bridge]) {
    if (!existsSync(bin)) {
      throw new DevnetError(`${bin} does not exist: build it (cargo build --release -p lesd -p les-bridge), unset DEVNET_NO_BUILD, or set DEVNET_SKIP_LES=1`);
    }
  }
  return { lesd, bridge };
}

/**
 * The service-model flags of every devnet lesd: payments by channel cheque on the devnet's
 * PaymentChannel, margins that fit its 10-minute minimum lifetime, no confirmations to wait
 * for (anvil does not reorg), and 1 token per wei.
 */
function paymentArgs(channel, payeeKeyPath, adminPort) {
  return [
    '--channel-contract', channel.address,
    '--payee-key', payeeKeyPath,
    '--tokens-per-wei', '1/1',
    '--accept-margin-secs', '120',
    '--redeem-margin-secs', '60',
    '--confirmations', '0',
    '--admin', `${HOST}:${adminPort}`,
  ];
}

/** A fresh payee key for a lesd, funded for redemption gas by anvil (anvil_setBalance). */
async function fundedPayeeKey(rpcUrl, path) {
  const key = `0x${randomBytes(32).toString('hex')}`;
  writeFileSync(path, key.slice(2), { mode: 0o600 });
  const address = privateKeyToAddress(key);
  await rpc(rpcUrl, 'anvil_setBalance', [address, `0x${(10n ** 20n).toString(16)}`]);
  return address;
}

async function startLesServers(config, rpcUrl, channel) {
  const { lesd, bridge: bridgeBin } = lesBinaries(config);
  const ports = await freePorts(2 * LES_SERVER_COUNT + 1);
  const servers = [];
  const started = [];
  for (let i = 0; i < LES_SERVER_COUNT; i++) {
    const name = `lesd-${i + 1}`;
    const datadir = join(config.dir, name);
    mkdirSync(datadir, { recursive: true });
    const payeeKey = join(datadir, 'payee.key');
    const payee = await fundedPayeeKey(rpcUrl, payeeKey);
    const adminPort = ports[LES_SERVER_COUNT + 1 + i];
    const args = ['--upstream', rpcUrl, '--datadir', datadir, '--listen', `${HOST}:${ports[i]}`, ...paymentArgs(channel, payeeKey, adminPort)];
    const entry = startChild(name, lesd, args, { dir: config.dir, readStdout: true });
    const admin = `http://${HOST}:${adminPort}/`;
    started.push(firstStdoutLine(entry, LES_READY_MS).then((line) => ({ name, line, entry, payee, admin })));
  }
  // The servers start in parallel; each must print its enode before the bridge starts.
  for (const { name, line, entry, payee, admin } of await Promise.all(started)) {
    const match = ENODE_LINE.exec(line);
    if (!match) throw new DevnetError(`${name} printed "${line}" instead of an enode URL${logTail(entry.logPath)}`);
    servers.push({ name, enode: line, tcp: `${match[1]}:${match[2]}`, pid: entry.child.pid, log: entry.logPath, payee, admin });
  }
  const allow = servers.flatMap((s) => ['--allow', s.tcp]);
  const bridge = startChild('les-bridge', bridgeBin, ['--listen', `${HOST}:${ports[LES_SERVER_COUNT]}`, ...allow], {
    dir: config.dir,
    readStdout: true,
  });
  const bridgeLine = await firstStdoutLine(bridge, LES_READY_MS);
  if (!/^ws:\/\/[^/\s]+\/?$/.test(bridgeLine)) {
    throw new DevnetError(`les-bridge printed "${bridgeLine}" instead of ws://ADDR${logTail(bridge.logPath)}`);
  }
  const bridgeUrl = bridgeLine.replace(/\/$/, '');
  return {
    bridgeUrl,
    bridgePid: bridge.child.pid,
    servers: servers.map((s) => ({ ...s, bridgeUrl: `${bridgeUrl}/${s.tcp}` })),
  };
}

async function main() {
  let config;
  try {
    config = readConfig();
  } catch (err) {
    say(err.message);
    process.exitCode = 2;
    return;
  }
  let webServer = null;
  let stopTrickle = null;
  let exitTimer = null;

  const shutdown = async (code, reason) => {
    if (stopping) return;
    stopping = true;
    if (exitTimer) clearTimeout(exitTimer);
    say(`stopping (${reason})`);
    if (stopTrickle) await stopTrickle();
    if (webServer) {
      webServer.closeAllConnections?.();
      await new Promise((ok) => webServer.close(ok));
    }
    // LES servers and bridge first, the chain they read from last.
    const order = [...children].reverse();
    const les = order.filter((e) => e.name !== 'anvil');
    const rest = order.filter((e) => e.name === 'anvil');
    let clean = true;
    const report = [];
    for (const group of [les, rest]) {
      const results = await Promise.all(group.map(async (e) => ({ e, graceful: await stopChild(e) })));
      for (const { e, graceful } of results) {
        const ok = graceful && (e.exit.code === 0 || e.exit.signal === 'SIGTERM');
        clean &&= ok;
        report.push(`${e.name} ${graceful ? describeExit(e.exit) : 'killed after no response to SIGTERM'}`);
      }
    }
    if (report.length) say(`stopped: ${report.join(', ')}`);
    process.exitCode = code !== 0 ? code : clean ? 0 : 1;
    if (!clean) say('some child did not stop cleanly; see its log');
  };

  onUnexpectedExit = (entry) => {
    say(`${entry.name} exited unexpectedly (${describeExit(entry.exit)}): stopping the devnet${logTail(entry.logPath)}`);
    shutdown(1, `${entry.name} died`);
  };
  let signals = 0;
  for (const signal of ['SIGINT', 'SIGTERM']) {
    process.on(signal, () => {
      if (++signals > 1) {
        say(`second ${signal}: killing everything`);
        for (const entry of children) signalGroup(entry, 'SIGKILL');
        process.exit(130);
      }
      shutdown(0, signal);
    });
  }

  try {
    if (!config.noBuild) build(config);
    if (!config.skipLes) lesBinaries(config);
    // A fresh chain deserves fresh LES stores and logs. Only what a previous run wrote is
    // removed, so a mistaken DEVNET_DIR loses nothing else.
    mkdirSync(config.dir, { recursive: true });
    for (const name of ['devnet.json', 'anvil.json', 'anvil.log', 'les-bridge.log']) rmSync(join(config.dir, name), { force: true });
    for (let i = 1; i <= LES_SERVER_COUNT; i++) {
      rmSync(join(config.dir, `lesd-${i}`), { recursive: true, force: true });
      rmSync(join(config.dir, `lesd-${i}.log`), { force: true });
    }

    const [anvilPort] = await freePorts(1);
    const anvilConfigPath = join(config.dir, 'anvil.json');
    const rpcUrl = `http://${HOST}:${anvilPort}`;
    say(`starting anvil on ${rpcUrl} (block time ${config.blockTime} s)`);
    const anvil = startChild(
      'anvil',
      join(ROOT, 'node_modules/.bin/anvil'),
      ['--host', HOST, '--port', String(anvilPort), '--block-time', String(config.blockTime), '--config-out', anvilConfigPath],
      { dir: config.dir },
    );
    await anvil.spawned;
    const chainId = await waitForRpc(rpcUrl, anvil);
    const accounts = await rpc(rpcUrl, 'eth_accounts');
    if (accounts.length < 2) throw new DevnetError(`anvil offers ${accounts.length} dev accounts; the trickle needs 2`);
    const genesis = await rpc(rpcUrl, 'eth_getBlockByNumber', ['0x0', false]);
    const devAccounts = readDevAccounts(anvilConfigPath, accounts);

    say('deploying DemoToken');
    // Constructor(uint256 supply).
    const token = await deployContract(rpcUrl, accounts[0], TOKEN_ARTIFACT, [word(TOKEN_SUPPLY)]);
    say(`DemoToken at ${token.address} (block ${token.block})`);
    say('deploying PaymentChannel');
    // Constructor(uint64 minLifetime): short on the devnet so tests can reach expiry.
    const channel = await deployContract(rpcUrl, accounts[0], CHANNEL_ARTIFACT, [word(CHANNEL_MIN_LIFETIME)]);
    say(`PaymentChannel at ${channel.address} (block ${channel.block})`);
    if (stopping) return;
    stopTrickle = startTrickle(rpcUrl, accounts, token, config.blockTime * 1000);

    let les = { bridgeUrl: null, bridgePid: null, servers: [] };
    if (config.skipLes) {
      say('DEVNET_SKIP_LES is set: no lesd, no les-bridge');
    } else {
      say(`starting ${LES_SERVER_COUNT} lesd and les-bridge from ${config.binDir}`);
      les = await startLesServers(config, rpcUrl, channel);
    }
    if (stopping) return;

    let devnet = null;
    webServer = await startWebServer(config.wwwPort, () => `${JSON.stringify(devnet, null, 2)}\n`);
    if (stopping) {
      webServer.close();
      return;
    }
    const wwwUrl = `http://${HOST}:${webServer.address().port}/`;
    devnet = {
      chainId,
      rpcUrl,
      wwwUrl,
      fraction: ULC_FRACTION_PERCENT,
      genesisHash: genesis.hash,
      blockTime: config.blockTime,
      token: {
        address: token.address,
        name: 'Demo Token',
        symbol: 'DEMO',
        decimals: 18,
        totalSupply: TOKEN_SUPPLY.toString(),
        deployer: accounts[0],
        deployBlock: token.block,
        artifact: TOKEN_ARTIFACT,
        abi: token.artifact.abi,
      },
      paymentChannel: {
        address: channel.address,
        minLifetime: Number(CHANNEL_MIN_LIFETIME),
        deployBlock: channel.block,
        artifact: CHANNEL_ARTIFACT,
      },
      // anvil's well-known test keys (public knowledge; worthless off this devnet), so a page
      // can sign transactions and send them through LES.
      devAccounts,
      bridgeUrl: les.bridgeUrl,
      servers: les.servers.map(({ enode, bridgeUrl, tcp, log, payee, admin }) => ({ enode, bridgeUrl, tcp, log, payee, admin })),
      // For tests and for cleaning up by hand after `kill -9` of this script.
      processes: [
        { name: 'devnet', pid: process.pid },
        ...children.map((e) => ({ name: e.name, pid: e.child.pid })),
      ],
    };
    const devnetPath = join(config.dir, 'devnet.json');
    writeFileSync(devnetPath, `${JSON.stringify(devnet, null, 2)}\n`);

    const lines = [
      `devnet ready: chain ${chainId}, ${les.servers.length} LES servers; Ctrl-C stops it`,
      `  www          ${wwwUrl}`,
      `  rpc          ${rpcUrl}`,
      `  token        ${token.address}`,
      `  channels     ${channel.address}`,
      ...les.servers.map((s) => `  ${s.name.padEnd(12)} ${s.enode}`),
      ...(les.bridgeUrl ? [`  bridge       ${les.bridgeUrl}`] : []),
      `  devnet.json  ${devnetPath}`,
      `  logs         ${config.dir}/*.log`,
    ];
    process.stdout.write(`${lines.join('\n')}\n`);

    if (config.exitAfter > 0) {
      exitTimer = setTimeout(() => shutdown(0, `DEVNET_EXIT_AFTER=${config.exitAfter}`), config.exitAfter * 1000);
    }
  } catch (err) {
    if (stopping) return;
    say(err instanceof DevnetError ? err.message : err.stack);
    await shutdown(1, 'startup failed');
  }
}

main();
