// Tests of the devnet tooling (node --test tests/): the committed contract artifact, and real
// runs of scripts/devnet.mjs against real anvil, lesd and les-bridge on 127.0.0.1. Each run
// uses its own temp directory and free ports, so it neither disturbs nor is disturbed by a
// `make devnet` running beside it.

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { request } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const DEVNET = join(ROOT, 'scripts/devnet.mjs');
const ARTIFACT = JSON.parse(readFileSync(join(ROOT, 'contracts/artifacts/DemoToken.json'), 'utf8'));
const READY_TIMEOUT_MS = 120_000;
const STOP_TIMEOUT_MS = 30_000;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// --- helpers ------------------------------------------------------------------------------

async function rpc(url, method, params = []) {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }),
  });
  const body = await response.json();
  if (body.error) throw new Error(`${method}: ${body.error.message}`);
  return body.result;
}

function call(rpcUrl, to, signature, args = '', artifact = ARTIFACT) {
  const selector = artifact.methodIdentifiers[signature];
  assert.ok(selector, `artifact has no selector for ${signature}`);
  return rpc(rpcUrl, 'eth_call', [{ to, data: `0x${selector}${args}` }, 'latest']);
}

function isAlive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return err.code === 'EPERM';
  }
}

/** Resolves true when something accepts a TCP connection on host:port. */
function accepts(host, port) {
  return new Promise((ok) => {
    const socket = connect({ host, port });
    socket.once('connect', () => {
      socket.destroy();
      ok(true);
    });
    socket.once('error', () => ok(false));
  });
}

/**
 * Opens a WebSocket by hand (Node 20 has no WebSocket client without a flag), checks the
 * RFC 6455 accept key on a 101, and listens `waitMs` for a close frame. Resolves with the
 * HTTP status and the close code the server sent (null if none arrived in time).
 * The bridge refuses by completing the handshake and closing with a code (so a browser can
 * read the reason), hence a refusal shows up as 101 + close code, not as an HTTP error.
 */
function websocketProbe(url, waitMs) {
  const { hostname, port, pathname } = new URL(url);
  const key = randomBytes(16).toString('base64');
  const expectedAccept = createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
  return new Promise((ok, fail) => {
    const req = request({
      host: hostname,
      port,
      path: pathname,
      headers: {
        Connection: 'Upgrade',
        Upgrade: 'websocket',
        'Sec-WebSocket-Key': key,
        'Sec-WebSocket-Version': '13',
      },
    });
    req.setTimeout(10_000, () => req.destroy(new Error(`no handshake answer from ${url}`)));
    req.once('upgrade', (res, socket, head) => {
      if (res.headers['sec-websocket-accept'] !== expectedAccept) {
        socket.destroy();
        fail(new Error(`${url}: wrong Sec-WebSocket-Accept ${res.headers['sec-websocket-accept']}`));
        return;
      }
      let buffered = head;
      const finish = (closeCode) => {
        clearTimeout(timer);
        socket.destroy();
        ok({ status: res.statusCode, closeCode });
      };
      const timer = setTimeout(() => finish(null), waitMs);
      const inspect = () => {
        // Server frames are unmasked; a close frame is 0x88, a short length, a u16 code.
        if (buffered.length >= 4 && (buffered[0] & 0x0f) === 0x8) finish(buffered.readUInt16BE(2));
        else if (buffered.length >= 2 && (buffered[0] & 0x0f) !== 0x8) finish(null);
      };
      socket.on('data', (chunk) => {
        buffered = Buffer.concat([buffered, chunk]);
        inspect();
      });
      socket.on('end', () => finish(null));
      socket.on('error', () => finish(null));
      inspect();
    });
    req.once('response', (res) => {
      res.resume();
      ok({ status: res.statusCode, closeCode: null });
    });
    req.once('error', fail);
    req.end();
  });
}

/** Every devnet started by a test; killed (with its children) if a test fails midway. */
const started = [];
after(() => {
  for (const run of started) {
    if (run.exit) continue;
    try {
      run.child.kill('SIGKILL');
    } catch {
      // gone
    }
    for (const { pid } of run.devnet?.processes ?? []) {
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
  }
  for (const run of started) rmSync(run.dir, { recursive: true, force: true });
});

/** Starts scripts/devnet.mjs in a temp dir and resolves once it printed "devnet ready". */
async function startDevnet(env) {
  const dir = mkdtempSync(join(tmpdir(), 'devnet-test-'));
  const child = spawn(process.execPath, [DEVNET], {
    cwd: ROOT,
    env: { ...process.env, DEVNET_NO_BUILD: '1', DEVNET_DIR: dir, DEVNET_BLOCK_TIME: '1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const run = { child, dir, stdout: '', stderr: '', exit: null, devnet: null };
  started.push(run);
  child.stdout.on('data', (d) => (run.stdout += d));
  child.stderr.on('data', (d) => (run.stderr += d));
  run.exited = new Promise((ok) => child.once('exit', (code, signal) => ok((run.exit = { code, signal }))));
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (!run.stdout.includes('devnet ready')) {
    if (run.exit) assert.fail(`devnet exited (${JSON.stringify(run.exit)}) before it was ready:\n${run.stderr}`);
    if (Date.now() > deadline) assert.fail(`devnet not ready after ${READY_TIMEOUT_MS / 1000} s:\n${run.stderr}`);
    await sleep(100);
  }
  run.devnet = JSON.parse(readFileSync(join(dir, 'devnet.json'), 'utf8'));
  return run;
}

async function waitForExit(run) {
  let timer;
  const exit = await Promise.race([run.exited, new Promise((r) => (timer = setTimeout(() => r(null), STOP_TIMEOUT_MS)))]);
  clearTimeout(timer);
  assert.ok(exit, `devnet still running ${STOP_TIMEOUT_MS / 1000} s after it was told to stop:\n${run.stderr}`);
  return exit;
}

/** After the devnet exited: none of its processes lives and anvil's port is closed. */
async function assertEverythingStopped(run) {
  const children = run.devnet.processes.filter((p) => p.name !== 'devnet');
  assert.ok(children.some((p) => p.name === 'anvil'), 'devnet.json lists the anvil process');
  for (const { name, pid } of children) assert.equal(isAlive(pid), false, `${name} (pid ${pid}) still alive`);
  const rpcPort = Number(new URL(run.devnet.rpcUrl).port);
  assert.equal(await accepts('127.0.0.1', rpcPort), false, 'anvil port still open');
}

/** Chain, token and trickle: what every devnet run provides, LES servers or not. */
async function assertChainAndToken(devnet) {
  assert.equal(Number(await rpc(devnet.rpcUrl, 'eth_chainId')), devnet.chainId);
  const genesis = await rpc(devnet.rpcUrl, 'eth_getBlockByNumber', ['0x0', false]);
  assert.equal(genesis.hash, devnet.genesisHash);
  assert.equal(devnet.fraction, 75);

  const supply = BigInt(await call(devnet.rpcUrl, devnet.token.address, 'totalSupply()'));
  assert.equal(supply, 10n ** 24n, 'totalSupply is the deployed 1,000,000 DEMO');
  assert.equal(supply.toString(), devnet.token.totalSupply);
  assert.deepEqual(devnet.token.abi, ARTIFACT.abi);
  assert.deepEqual(devnet.devAccounts.map((a) => a.address), await rpc(devnet.rpcUrl, 'eth_accounts'));
  assert.equal(devnet.devAccounts[0].address, devnet.token.deployer);
  assert.ok(devnet.devAccounts.every((a) => /^0x[0-9a-f]{64}$/.test(a.privateKey)), 'dev keys listed');

  // The payment-channel contract of the service model, with the devnet's short minimum lifetime.
  const channelArtifact = JSON.parse(readFileSync(join(ROOT, devnet.paymentChannel.artifact), 'utf8'));
  const channelCode = await rpc(devnet.rpcUrl, 'eth_getCode', [devnet.paymentChannel.address, 'latest']);
  assert.equal(channelCode.length, channelArtifact.deployedBytecode.length, 'PaymentChannel runtime code deployed');
  assert.equal(BigInt(await call(devnet.rpcUrl, devnet.paymentChannel.address, 'MIN_LIFETIME()', '', channelArtifact)), BigInt(devnet.paymentChannel.minLifetime));

  // Blocks advance and the trickle puts transfers with Transfer logs into them.
  const first = Number(await rpc(devnet.rpcUrl, 'eth_blockNumber'));
  let latest = first;
  const deadline = Date.now() + 15_000;
  let tokenTransfers = 0;
  let plainTransfers = 0;
  let scanned = devnet.token.deployBlock;
  while ((latest < first + 2 || tokenTransfers === 0 || plainTransfers === 0) && Date.now() < deadline) {
    await sleep(500);
    latest = Number(await rpc(devnet.rpcUrl, 'eth_blockNumber'));
    for (; scanned < latest; scanned++) {
      const block = await rpc(devnet.rpcUrl, 'eth_getBlockByNumber', [`0x${(scanned + 1).toString(16)}`, true]);
      for (const tx of block.transactions) {
        if (tx.to === devnet.token.address) {
          const receipt = await rpc(devnet.rpcUrl, 'eth_getTransactionReceipt', [tx.hash]);
          assert.equal(receipt.status, '0x1', `token transfer ${tx.hash} succeeded`);
          assert.equal(receipt.logs.length, 1, 'one Transfer log');
          tokenTransfers++;
        } else if (BigInt(tx.value) > 0n) {
          plainTransfers++;
        }
      }
    }
  }
  assert.ok(latest >= first + 2, `blocks advance (${first} -> ${latest})`);
  assert.ok(tokenTransfers > 0, 'blocks contain token transfers');
  assert.ok(plainTransfers > 0, 'blocks contain ETH transfers');
}

/**
 * The lesd and les-bridge binaries for the full run: under CI built here (debug, fast after
 * `cargo test`), otherwise the newest existing pair, or null.
 */
function lesBinaries() {
  const target = process.env.CARGO_TARGET_DIR ? resolve(process.env.CARGO_TARGET_DIR) : join(ROOT, 'target');
  if (process.env.CI === 'true') {
    const build = spawnSync('cargo', ['build', '--locked', '-p', 'lesd', '-p', 'les-bridge'], { cwd: ROOT, encoding: 'utf8' });
    if (build.status !== 0) return { error: `cargo build -p lesd -p les-bridge failed:\n${build.stderr}` };
    const dir = join(target, 'debug');
    const missing = ['lesd', 'les-bridge'].filter((bin) => !existsSync(join(dir, bin)));
    return missing.length > 0 ? { error: `cargo build produced no ${missing.join(', ')} in ${dir}` } : { dir };
  }
  const pairs = ['release', 'debug']
    .map((profile) => join(target, profile))
    .filter((dir) => existsSync(join(dir, 'lesd')) && existsSync(join(dir, 'les-bridge')))
    .map((dir) => ({ dir, mtime: Math.min(statSync(join(dir, 'lesd')).mtimeMs, statSync(join(dir, 'les-bridge')).mtimeMs) }))
    .sort((a, b) => b.mtime - a.mtime);
  return pairs.length > 0 ? { dir: pairs[0].dir } : { error: `no lesd and les-bridge binaries in ${target}/{release,debug}` };
}

// --- tests --------------------------------------------------------------------------------

test('committed DemoToken artifact equals a fresh compile with the pinned solc', () => {
  const check = spawnSync(process.execPath, [join(ROOT, 'scripts/compile-contracts.mjs'), '--check'], { encoding: 'utf8' });
  assert.equal(check.status, 0, `compile-contracts --check failed:\n${check.stderr}`);
  const pinned = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).devDependencies.solc;
  assert.ok(ARTIFACT.solcVersion.startsWith(`${pinned}+`), `artifact built by solc ${pinned}`);
  const source = readFileSync(join(ROOT, 'contracts/DemoToken.sol'), 'utf8');
  assert.match(source, new RegExp(`pragma solidity ${pinned.replaceAll('.', '\\.')};`), 'pragma pinned to the solc version');
  for (const fn of ['name()', 'symbol()', 'decimals()', 'totalSupply()', 'balanceOf(address)', 'transfer(address,uint256)',
    'approve(address,uint256)', 'allowance(address,address)', 'transferFrom(address,address,uint256)']) {
    assert.ok(ARTIFACT.methodIdentifiers[fn], `ERC-20 function ${fn}`);
  }
  const events = ARTIFACT.abi.filter((e) => e.type === 'event').map((e) => e.name).sort();
  assert.deepEqual(events, ['Approval', 'Transfer']);
});

test('devnet without LES servers: chain, token, trickle, web server; SIGINT stops it', async () => {
  const run = await startDevnet({ DEVNET_SKIP_LES: '1' });
  const { devnet } = run;
  assert.deepEqual(devnet.servers, []);
  await assertChainAndToken(devnet);

  const served = await fetch(new URL('/devnet.json', devnet.wwwUrl));
  assert.equal(served.status, 200);
  assert.deepEqual(await served.json(), devnet);
  const page = await fetch(devnet.wwwUrl);
  assert.equal(page.status, 200);
  assert.match(await page.text(), /devnet\.json/);
  assert.equal((await fetch(new URL('/no-such-file', devnet.wwwUrl))).status, 404);

  run.child.kill('SIGINT');
  const exit = await waitForExit(run);
  assert.deepEqual(exit, { code: 0, signal: null }, run.stderr);
  assert.match(run.stderr, /stopped: anvil/);
  await assertEverythingStopped(run);
});

test('devnet stops with a message when a child dies', async () => {
  const run = await startDevnet({ DEVNET_SKIP_LES: '1' });
  const anvil = run.devnet.processes.find((p) => p.name === 'anvil');
  process.kill(anvil.pid, 'SIGKILL');
  const exit = await waitForExit(run);
  assert.equal(exit.code, 1, run.stderr);
  assert.match(run.stderr, /anvil exited unexpectedly \(signal SIGKILL\)/);
  await assertEverythingStopped(run);
});

test('full devnet: three lesd behind one les-bridge, then a clean stop', async (t) => {
  const bins = lesBinaries();
  if (bins.error) {
    if (process.env.CI === 'true') assert.fail(`the full devnet needs lesd and les-bridge: ${bins.error}`);
    t.skip(`${bins.error}; build them with cargo build -p lesd -p les-bridge`);
    return;
  }
  const exitAfter = 20;
  const run = await startDevnet({ DEVNET_BIN_DIR: bins.dir, DEVNET_EXIT_AFTER: String(exitAfter) });
  const readyAt = Date.now();
  const { devnet } = run;

  assert.equal(devnet.servers.length, 3);
  const enodes = new Set();
  for (const server of devnet.servers) {
    const match = /^enode:\/\/([0-9a-f]{128})@127\.0\.0\.1:(\d+)$/.exec(server.enode);
    assert.ok(match, `enode line parses: ${server.enode}`);
    enodes.add(match[1]);
    assert.equal(server.bridgeUrl, `${devnet.bridgeUrl}/127.0.0.1:${match[2]}`);
    assert.equal(await accepts('127.0.0.1', Number(match[2])), true, `lesd listens on ${match[2]}`);
  }
  assert.equal(enodes.size, 3, 'three distinct node keys');

  // Each allowed target: the bridge upgrades and keeps the relay open (lesd, as the RLPx
  // responder, waits for our auth message, so nothing arrives and nothing closes).
  for (const server of devnet.servers) {
    assert.deepEqual(await websocketProbe(server.bridgeUrl, 1000), { status: 101, closeCode: null }, server.bridgeUrl);
  }
  // "Exactly those three": any other target is refused with close code 1008 (policy).
  const refused = await websocketProbe(`${devnet.bridgeUrl}/127.0.0.1:1`, 5000);
  assert.ok(refused.status !== 101 || refused.closeCode === 1008, `target not allowed refused: ${JSON.stringify(refused)}`);

  await assertChainAndToken(devnet);
  assert.ok(Date.now() - readyAt < exitAfter * 1000, 'checks ran while the devnet was up');

  const exit = await waitForExit(run);
  assert.deepEqual(exit, { code: 0, signal: null }, run.stderr);
  assert.match(run.stderr, /stopped: .*lesd-1 exit code 0/);
  await assertEverythingStopped(run);
  for (const server of devnet.servers) {
    const port = Number(server.enode.split(':').pop());
    assert.equal(await accepts('127.0.0.1', port), false, `lesd port ${port} closed`);
  }
  assert.equal(await accepts('127.0.0.1', Number(new URL(devnet.bridgeUrl).port)), false, 'bridge port closed');
});
