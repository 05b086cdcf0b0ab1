// The browser extension (www/extension/, with the package copied in by
// scripts/build-extension.sh) in headless Chromium through Playwright: the extension is
// loaded unpacked and configured for the devnet through chrome.storage.local (from its service
// worker, as the options page would). Then:
// - a plain page finds the injected provider through EIP-6963 and reads the chain through it
//   (chain ID, a head, a balance that matches anvil's at the same block);
// - a page with a wallet of its own (the test's page script: a devnet key, www/devsigner.js,
//   anvil as its RPC) gets the wrap of that wallet: reads answered by the client and equal to
//   anvil's, the wallet not asked; accounts and eth_sendTransaction the wallet's; the
//   receipt read verified through the wrap; signing refused on a chain mismatch; ethers v6
//   sending and waiting through the wrap; the options page switches wrapping off and on; a
//   legacy window.ethereum-only wallet is wrapped too;
// - the service worker stopped through the DevTools protocol: the next page request starts it
//   again and the head is back from IndexedDB (the time to the first answer is printed).
//
// Needs pkg/ built and copied (www/extension/ulc/), a devnet (ULC_DEVNET_JSON or
// ULC_DEVNET_DIR; scripts/test.sh provides it), /usr/bin/chromium, and for the wrap esbuild
// and ethers. Without them a test skips with the reason, and fails under CI=true.
// ULC_EXT_SCREENSHOT=FILE saves a screenshot of the wrap test's page.

import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createServer } from 'node:http';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { servePkg } from '../scripts/serve-pkg.mjs';
import { CHROMIUM, CHROMIUM_ARGS, devnetJson, missing, providerConfig, skipUnless, bundleForBrowser } from './support/browser.mjs';

const EXTENSION = join(resolve(dirname(fileURLToPath(import.meta.url)), '..'), 'www', 'extension');

function why(packages) {
  const base = missing(packages);
  if (base) return base;
  for (const f of ['index.js', 'ulc.js', 'ulc_bg.wasm']) {
    if (!existsSync(join(EXTENSION, 'ulc', f))) return `www/extension/ulc/${f} is missing (bash scripts/build-extension.sh)`;
  }
  return null;
}

async function anvil(url, method, params) {
  const reply = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }),
  }).then((r) => r.json());
  if (reply.error) throw new Error(`${method}: ${reply.error.message}`);
  return reply.result;
}

/**
 * Chromium with the extension loaded (a fresh profile), the test page server, and the
 * extension configured for the devnet with `storage`. Closed after `t`.
 */
async function launch(t, storage = 'memory') {
  const devnet = JSON.parse(devnetJson());
  const { chromium } = await import('playwright-core');
  const server = await servePkg({ title: 'ulc extension test' });
  const userDataDir = mkdtempSync(join(tmpdir(), 'ulc-ext-'));
  // Extensions load only in the new headless mode.
  const args = [...CHROMIUM_ARGS.filter((a) => a !== '--headless'), '--headless=new',
    `--disable-extensions-except=${EXTENSION}`, `--load-extension=${EXTENSION}`];
  const context = await chromium.launchPersistentContext(userDataDir, { executablePath: CHROMIUM, headless: false, args });
  t.after(async () => {
    await context.close();
    server.close();
    rmSync(userDataDir, { recursive: true, force: true });
  });
  const worker = context.serviceWorkers()[0] ?? await context.waitForEvent('serviceworker', { timeout: 30_000 });
  assert.match(worker.url(), /^chrome-extension:\/\/[a-p]{32}\/background\.js$/);
  await worker.evaluate((config) => chrome.storage.local.set({ ulcConfig: config }), providerConfig(devnet, storage));
  return { devnet, context, worker, origin: `http://127.0.0.1:${server.address().port}`, extensionId: new URL(worker.url()).host };
}

test('the extension injects an EIP-6963 provider backed by the light client', { timeout: 150_000 }, async (t) => {
  if (skipUnless(t, why())) return;
  const { devnet, context, origin, extensionId } = await launch(t);

  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (error) => errors.push(error.message));
  await page.goto(`${origin}/`);

  const result = await page.evaluate(async (address) => {
    const seen = [];
    window.addEventListener('eip6963:announceProvider', (event) => seen.push(event.detail));
    window.dispatchEvent(new Event('eip6963:requestProvider'));
    const ours = seen.filter((d) => d.info.rdns === 'org.ulc.client');
    const detail = ours[0];
    if (!detail) return { announcements: seen.length };
    const { provider } = detail;
    const out = {
      announcements: ours.length,
      frozen: Object.isFrozen(detail) && Object.isFrozen(detail.info),
      info: detail.info,
      isWindowEthereum: window.ethereum === provider,
    };
    out.chainId = await provider.request({ method: 'eth_chainId' });
    // The first head needs a quorum of the servers; wait for one.
    const deadline = Date.now() + 90_000;
    for (;;) {
      try {
        out.blockNumber = await provider.request({ method: 'eth_blockNumber' });
        if (Number(out.blockNumber) > 0) break;
      } catch (error) {
        out.lastError = { code: error.code, message: error.message };
      }
      if (Date.now() > deadline) return out;
      await new Promise((ok) => setTimeout(ok, 500));
    }
    out.balance = await provider.request({ method: 'eth_getBalance', params: [address, out.blockNumber] });
    // A subscription: its notifications come back as `message` events through the relay.
    const id = await provider.request({ method: 'eth_subscribe', params: ['newHeads'] });
    const message = await Promise.race([
      new Promise((ok) => provider.on('message', (m) => m.data?.subscription === id && ok(m))),
      new Promise((ok) => setTimeout(() => ok(null), 30_000)),
    ]);
    out.subscription = { id, type: message?.type, number: message?.data?.result?.number };
    out.unsubscribed = await provider.request({ method: 'eth_unsubscribe', params: [id] });
    try {
      await provider.request({ method: 'eth_noSuchMethod', params: [] });
      out.unknown = 'resolved';
    } catch (error) {
      out.unknown = { code: error.code, isError: error instanceof Error };
    }
    return out;
  }, devnet.devAccounts[0].address);

  assert.equal(result.announcements, 1, `one ULC announcement (${JSON.stringify(result)})`);
  assert.equal(result.frozen, true);
  assert.equal(result.info.name, 'ULC light client');
  assert.match(result.info.uuid, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  assert.match(result.info.icon, /^data:image\/svg\+xml,/);
  assert.equal(result.isWindowEthereum, true, 'window.ethereum where the page had none');
  assert.equal(result.chainId, `0x${devnet.chainId.toString(16)}`);
  assert.ok(Number(result.blockNumber) > 0, `a verified head: ${JSON.stringify(result)}`);
  assert.equal(result.balance, await anvil(devnet.rpcUrl, 'eth_getBalance', [devnet.devAccounts[0].address, result.blockNumber]));
  assert.equal(result.subscription.type, 'eth_subscription', `a newHeads notification: ${JSON.stringify(result.subscription)}`);
  assert.ok(Number(result.subscription.number) > 0);
  assert.equal(result.unsubscribed, true);
  assert.deepEqual(result.unknown, { code: 4200, isError: true });
  assert.deepEqual(errors, [], 'no uncaught page errors');

  // The options page shows the stored configuration and the running client's status.
  const options = await context.newPage();
  const optionErrors = [];
  options.on('pageerror', (error) => optionErrors.push(error.message));
  await options.goto(`chrome-extension://${extensionId}/options.html`);
  await options.waitForFunction(() => document.getElementById('status').textContent.includes('"head"'), null, { timeout: 15_000 });
  assert.equal(await options.inputValue('#chainId'), String(devnet.chainId));
  assert.equal(await options.isChecked('#wrap'), true, 'wallet wrapping is on by default');
  assert.equal((await options.inputValue('#servers')).split('\n').length, devnet.servers.length);
  assert.deepEqual(optionErrors, [], 'no uncaught options page errors');
});

/** The dev account the page's wallet holds; the devnet's trickle sends from it only every 9th tick. */
const WALLET_ACCOUNT = 5;

/**
 * A page with a wallet of its own (the test's page script, standing in for a wallet
 * extension): it holds a devnet key, signs with www/devsigner.js, sends to anvil (its own
 * RPC, as a wallet's), announces itself with EIP-6963 as "Fake Wallet" and sets
 * window.ethereum (a legacy one only the latter), and records every method it is asked. The page also keeps a table of the
 * requests the test makes through the wrap and who answered each, for the screenshot.
 */
function walletPage(devnet, { eip6963 = true } = {}) {
  const json = JSON.stringify({ devnet, account: WALLET_ACCOUNT, eip6963 }).replace(/</g, '\\u003c');
  return `<!doctype html><html><head><meta charset="utf-8"><title>ULC wallet wrap</title>
<style>
  body { font: 14px system-ui, sans-serif; margin: 1.5rem; }
  table { border-collapse: collapse; margin-top: 1rem; }
  td, th { border: 1px solid #ccc; padding: 4px 8px; text-align: left; font: 12px ui-monospace, monospace; }
  td.wallet { background: #fde68a; } td.ulc { background: #bbf7d0; } td.refused { background: #fecaca; }
</style></head><body>
<h1>A page with a wallet</h1>
<p>Providers announced (EIP-6963): <span id="providers">none yet</span></p>
<table><thead><tr><th>request through the wrap</th><th>answered by</th><th>answer</th><th>the wallet was asked</th></tr></thead><tbody id="log"></tbody></table>
<script type="application/json" id="setup">${json}</script>
<script type="module">
import { addressOf, signTransaction } from '/devsigner.js';
const { devnet, account: index, eip6963 } = JSON.parse(document.getElementById('setup').textContent);
const account = devnet.devAccounts[index];
if (addressOf(account.privateKey) !== account.address.toLowerCase()) throw new Error('the devnet key does not match its address');
const address = account.address.toLowerCase();
let chainId = '0x' + devnet.chainId.toString(16);
const received = [];
const sentRaw = [];
const listeners = new Map();
const emit = (event, value) => (listeners.get(event) ?? []).forEach((f) => f(value));
const sleep = (ms) => new Promise((ok) => setTimeout(ok, ms));
async function anvil(method, params = []) {
  const reply = await fetch(devnet.rpcUrl, { method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }) }).then((r) => r.json());
  if (reply.error) throw Object.assign(new Error(reply.error.message), { code: reply.error.code });
  return reply.result;
}
async function send(tx) {
  if (String(tx.from).toLowerCase() !== address) throw Object.assign(new Error('not my account'), { code: 4100 });
  // The devnet's trickle may take a nonce in between: ask again, as a wallet would.
  for (let attempt = 1; ; attempt++) {
    const [nonce, tip, block] = await Promise.all([anvil('eth_getTransactionCount', [address, 'pending']),
      anvil('eth_maxPriorityFeePerGas'), anvil('eth_getBlockByNumber', ['latest', false])]);
    const gas = tx.gas ?? await anvil('eth_estimateGas', [{ from: address, to: tx.to, value: tx.value ?? '0x0', data: tx.data ?? '0x' }]);
    const { raw, hash } = signTransaction({ chainId: BigInt(chainId), nonce, maxPriorityFeePerGas: tip,
      maxFeePerGas: 2n * BigInt(block.baseFeePerGas) + BigInt(tip), gas, to: tx.to, value: tx.value ?? 0n, data: tx.data ?? '0x' }, account.privateKey);
    received.push('eth_sendRawTransaction (to anvil)');
    try {
      const answered = await anvil('eth_sendRawTransaction', [raw]);
      if (answered !== hash) throw new Error('anvil answered hash ' + answered + ', expected ' + hash);
      sentRaw.push(hash);
      return hash;
    } catch (error) {
      if (attempt >= 4 || !/nonce|underpriced|already known/i.test(error.message)) throw error;
      await sleep(1000);
    }
  }
}
const wallet = {
  isFakeWallet: true,
  async request({ method, params = [] }) {
    received.push(method);
    switch (method) {
      case 'eth_chainId': return chainId;
      case 'eth_accounts': case 'eth_requestAccounts': return [address];
      case 'wallet_switchEthereumChain': chainId = params[0].chainId; emit('chainChanged', chainId); return null;
      case 'eth_sendTransaction': return send(params[0]);
      default: throw Object.assign(new Error('the fake wallet does not do ' + method), { code: 4200 });
    }
  },
  on(event, listener) { listeners.set(event, [...(listeners.get(event) ?? []), listener]); return wallet; },
  removeListener(event, listener) { listeners.set(event, (listeners.get(event) ?? []).filter((f) => f !== listener)); return wallet; },
};
const info = Object.freeze({ uuid: crypto.randomUUID(), name: 'Fake Wallet', rdns: 'test.fake-wallet',
  icon: 'data:image/svg+xml,%3Csvg%20xmlns%3D%22http%3A%2F%2Fwww.w3.org%2F2000%2Fsvg%22%2F%3E' });
const announced = new Map();
window.addEventListener('eip6963:announceProvider', (event) => {
  announced.set(event.detail.info.uuid, event.detail);
  document.getElementById('providers').textContent = [...announced.values()].map((d) => d.info.name).join(' · ');
});
window.ethereum = wallet;
const announce = () => window.dispatchEvent(new CustomEvent('eip6963:announceProvider', { detail: Object.freeze({ info, provider: wallet }) }));
// A legacy wallet (eip6963: false) only sets window.ethereum.
if (eip6963) {
  window.addEventListener('eip6963:requestProvider', announce);
  announce();
}

/** A request through \`provider\`, logged with who answered it (the wallet, if it was asked for the method itself). */
async function through(provider, method, params) {
  const before = received.length;
  const row = document.createElement('tr');
  const cells = [method, '', '', ''].map((text) => Object.assign(document.createElement('td'), { textContent: text }));
  row.append(...cells);
  document.getElementById('log').append(row);
  try {
    const result = await provider.request(params === undefined ? { method } : { method, params });
    const asked = received.slice(before);
    cells[1].textContent = asked.includes(method) ? 'wallet' : 'ULC client (verified)';
    cells[1].className = asked.includes(method) ? 'wallet' : 'ulc';
    cells[2].textContent = JSON.stringify(result)?.slice(0, 90) ?? 'undefined';
    cells[3].textContent = asked.join(', ') || '–';
    return result;
  } catch (error) {
    cells[1].textContent = 'refused ' + error.code;
    cells[1].className = 'refused';
    cells[2].textContent = error.message.slice(0, 90);
    cells[3].textContent = received.slice(before).join(', ') || '–';
    throw error;
  }
}
window.fake = { wallet, info, address, received, sentRaw, emit, announced, through };
</script></body></html>`;
}

test('the extension wraps the page\'s wallet: signing in the wallet, every read verified by the client', { timeout: 180_000 }, async (t) => {
  if (skipUnless(t, why(['playwright-core', 'esbuild', 'ethers']))) return;
  const { devnet, context, extensionId } = await launch(t);
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (error) => errors.push(error.message));
  // Served from a real loopback server, not a Playwright route: Chromium treats a routed
  // document as public and would block its wallet's requests to anvil (local network access).
  const files = {
    '/wallet': { type: 'text/html', body: walletPage(devnet) },
    '/legacy-wallet': { type: 'text/html', body: walletPage(devnet, { eip6963: false }) },
    '/devsigner.js': { type: 'text/javascript', body: readFileSync(join(EXTENSION, '..', 'devsigner.js'), 'utf8') },
    '/ethers.js': { type: 'text/javascript', body: await bundleForBrowser("export { BrowserProvider } from 'ethers';") },
  };
  const walletServer = createServer((req, res) => {
    const file = files[new URL(req.url, 'http://x').pathname];
    res.writeHead(file ? 200 : 404, file ? { 'content-type': file.type } : {});
    res.end(file?.body);
  });
  await new Promise((ok) => walletServer.listen(0, '127.0.0.1', ok));
  t.after(() => walletServer.close());
  const walletOrigin = `http://127.0.0.1:${walletServer.address().port}`;
  await page.goto(`${walletOrigin}/wallet`);
  const isWrap = (info) => info.rdns.startsWith('org.ulc.client.wrap.');
  await page.waitForFunction(() => [...(window.fake?.announced.values() ?? [])].some((d) => d.info.rdns.startsWith('org.ulc.client.wrap.')), null, { timeout: 30_000 });

  const result = await page.evaluate(async () => {
    const { through, received, sentRaw, address, emit, wallet } = window.fake;
    const seen = [];
    const collect = (event) => seen.push(event.detail);
    window.addEventListener('eip6963:announceProvider', collect);
    window.dispatchEvent(new Event('eip6963:requestProvider'));
    window.removeEventListener('eip6963:announceProvider', collect);
    const out = {
      announced: seen.map((d) => d.info),
      windowEthereumIsWallet: window.ethereum === wallet,
    };
    const wrapped = seen.find((d) => d.info.rdns.startsWith('org.ulc.client.wrap.'));
    if (!wrapped) return out;
    const p = wrapped.provider;
    out.frozen = Object.isFrozen(wrapped) && Object.isFrozen(wrapped.info) && Object.isFrozen(p);
    // The first head needs a quorum of the servers.
    const deadline = Date.now() + 90_000;
    for (;;) {
      try {
        if (Number(await p.request({ method: 'eth_blockNumber' })) > 0) break;
      } catch (error) {
        out.lastError = { code: error.code, message: error.message };
      }
      if (Date.now() > deadline) return out;
      await new Promise((ok) => setTimeout(ok, 500));
    }

    // Reads: the client's, verified; the wallet is not asked.
    let before = received.length;
    out.chainId = await through(p, 'eth_chainId');
    out.blockNumber = await through(p, 'eth_blockNumber');
    out.balance = await through(p, 'eth_getBalance', [address, out.blockNumber]);
    out.block = await through(p, 'eth_getBlockByNumber', [out.blockNumber, false]);
    out.walletAskedForReads = received.slice(before);

    // Accounts and sending: the wallet's.
    before = received.length;
    out.accounts = await through(p, 'eth_accounts');
    const accountsChanged = [];
    p.on('accountsChanged', (accounts) => accountsChanged.push(accounts));
    emit('accountsChanged', [address]);
    out.accountsChanged = accountsChanged;
    out.hash = await through(p, 'eth_sendTransaction', [{ from: address, to: '0x000000000000000000000000000000000000dEaD', value: '0x2386f26fc10000' }]);
    out.walletAskedToSend = received.slice(before);
    out.sentRaw = [...sentRaw];

    // Its receipt: a read, so the client's (verified), polled until a verified block has it.
    before = received.length;
    const started = Date.now();
    for (;;) {
      out.receipt = await p.request({ method: 'eth_getTransactionReceipt', params: [out.hash] });
      if (out.receipt) break;
      if (Date.now() - started > 60_000) break;
      await new Promise((ok) => setTimeout(ok, 500));
    }
    await through(p, 'eth_getTransactionReceipt', [out.hash]);
    out.walletAskedForReceipt = received.slice(before);

    // Client events reach the wrap: a newHeads subscription through it.
    const id = await p.request({ method: 'eth_subscribe', params: ['newHeads'] });
    const message = await Promise.race([
      new Promise((ok) => p.on('message', (m) => m.data?.subscription === id && ok(m))),
      new Promise((ok) => setTimeout(() => ok(null), 30_000)),
    ]);
    out.newHead = message?.data?.result?.number ?? null;
    await p.request({ method: 'eth_unsubscribe', params: [id] });

    // The wallet on another chain: signing is refused before the wallet is asked to sign;
    // chain switching (wallet_*) still goes to the wallet.
    before = received.length;
    await through(p, 'wallet_switchEthereumChain', [{ chainId: '0x1' }]);
    out.mismatch = {};
    for (const [method, params] of [['eth_sendTransaction', [{ from: address, to: address, value: '0x1' }]], ['personal_sign', ['0x68656c6c6f', address]]]) {
      try {
        await through(p, method, params);
        out.mismatch[method] = 'resolved';
      } catch (error) {
        out.mismatch[method] = { code: error.code, message: error.message, data: error.data };
      }
    }
    out.mismatchBalance = await through(p, 'eth_getBalance', [address, out.blockNumber]);
    await through(p, 'wallet_switchEthereumChain', [{ chainId: out.chainId }]);
    out.walletAskedOnMismatch = received.slice(before);

    // A dapp library on the wrap: ethers v6's signer is the wallet's, its reads the client's.
    const { BrowserProvider } = await import('/ethers.js');
    const ethers = new BrowserProvider(p);
    before = received.length;
    const signer = await ethers.getSigner();
    const sent = await signer.sendTransaction({ to: '0x000000000000000000000000000000000000dEaD', value: 1n });
    const mined = await sent.wait(1, 60_000);
    out.ethers = {
      signer: signer.address.toLowerCase(), hash: sent.hash, receiptHash: mined.hash, status: mined.status,
      blockHash: mined.blockHash, walletAsked: received.slice(before),
    };
    return out;
  });

  const account = devnet.devAccounts[WALLET_ACCOUNT].address.toLowerCase();
  const names = result.announced.map((i) => i.name);
  assert.equal(result.announced.filter(isWrap).length, 1, `one wrap of the one wallet (window.ethereum and EIP-6963): ${names}`);
  const wrapInfo = result.announced.find(isWrap);
  assert.equal(wrapInfo.name, 'ULC (verified reads) + Fake Wallet');
  assert.equal(wrapInfo.rdns, 'org.ulc.client.wrap.test.fake-wallet');
  assert.match(wrapInfo.uuid, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  assert.ok(names.includes('ULC light client') && names.includes('Fake Wallet'), `the client and the wallet are announced too: ${names}`);
  assert.equal(new Set(result.announced.map((i) => i.uuid)).size, result.announced.length, 'distinct uuids');
  assert.equal(result.windowEthereumIsWallet, true, 'the wallet keeps window.ethereum');
  assert.equal(result.frozen, true);

  assert.equal(result.chainId, `0x${devnet.chainId.toString(16)}`);
  assert.ok(Number(result.blockNumber) > 0, JSON.stringify(result));
  assert.ok(Number(result.blockNumber) <= Number(await anvil(devnet.rpcUrl, 'eth_blockNumber', [])), 'a head anvil has');
  assert.equal(result.block.hash, (await anvil(devnet.rpcUrl, 'eth_getBlockByNumber', [result.blockNumber, false])).hash);
  assert.equal(result.balance, await anvil(devnet.rpcUrl, 'eth_getBalance', [account, result.blockNumber]));
  assert.deepEqual(result.walletAskedForReads, [], 'no read reached the wallet');

  assert.deepEqual(result.accounts, [account]);
  assert.deepEqual(result.accountsChanged, [[account]], 'the wallet\'s accountsChanged is forwarded');
  assert.deepEqual(result.walletAskedToSend.filter((m) => !m.startsWith('eth_sendRawTransaction')),
    ['eth_accounts', 'eth_chainId', 'eth_sendTransaction'], 'accounts and sending went to the wallet (the chain checked first)');
  assert.deepEqual(result.sentRaw, [result.hash], 'the wallet signed and sent it itself');
  assert.ok(result.receipt, `a verified receipt for ${result.hash}`);
  assert.deepEqual(result.walletAskedForReceipt, [], 'the receipt came from the client');
  const anvilReceipt = await anvil(devnet.rpcUrl, 'eth_getTransactionReceipt', [result.hash]);
  for (const field of ['transactionHash', 'blockHash', 'blockNumber', 'transactionIndex', 'from', 'to', 'status', 'gasUsed',
    'cumulativeGasUsed', 'effectiveGasPrice', 'logs', 'logsBloom', 'type', 'contractAddress']) {
    assert.ok(field in anvilReceipt, `anvil's receipt has ${field}`);
    assert.deepEqual(result.receipt[field], anvilReceipt[field], `receipt.${field} equals anvil's`);
  }
  assert.equal(result.receipt.status, '0x1');
  assert.ok(Number(result.newHead) > 0, 'a newHeads notification through the wrap');

  for (const method of ['eth_sendTransaction', 'personal_sign']) {
    const refused = result.mismatch[method];
    assert.equal(refused.code, 4901, `${method} on a mismatched chain: ${JSON.stringify(refused)}`);
    assert.match(refused.message, /wallet is on chain 0x1/);
    assert.deepEqual(refused.data, { walletChainId: '0x1', clientChainId: result.chainId });
  }
  assert.equal(result.mismatchBalance, result.balance, 'reads go on during a mismatch');
  assert.deepEqual(result.walletAskedOnMismatch, ['wallet_switchEthereumChain', 'eth_chainId', 'eth_chainId', 'wallet_switchEthereumChain'],
    'on a mismatch the wallet is asked its chain, never to sign');
  assert.equal(result.ethers.signer, account, 'ethers\' signer is the wallet\'s account');
  assert.equal(result.ethers.receiptHash, result.ethers.hash);
  assert.equal(result.ethers.status, 1);
  assert.equal(result.ethers.blockHash, (await anvil(devnet.rpcUrl, 'eth_getTransactionReceipt', [result.ethers.hash])).blockHash);
  assert.deepEqual([...new Set(result.ethers.walletAsked.filter((m) => !m.startsWith('eth_sendRawTransaction')))].sort(),
    ['eth_accounts', 'eth_chainId', 'eth_sendTransaction'], `ethers' reads went to the client: ${result.ethers.walletAsked}`);
  assert.deepEqual(errors, [], 'no uncaught page errors');
  if (process.env.ULC_EXT_SCREENSHOT) await page.screenshot({ path: process.env.ULC_EXT_SCREENSHOT, fullPage: true });

  // Switched off in the options page: a page loaded then gets no wrap; switched on again, the
  // open page gets it at once.
  const options = await context.newPage();
  await options.goto(`chrome-extension://${extensionId}/options.html`);
  await options.waitForFunction(() => document.getElementById('wrap').checked);
  await options.uncheck('#wrap');
  await page.reload();
  const off = await page.evaluate(async () => {
    // The service worker sends the setting before its first answer on a page's port.
    await window.ethereum.request({ method: 'eth_accounts' });
    const ulc = await new Promise((ok) => {
      const listener = (event) => event.detail.info.rdns === 'org.ulc.client' && ok(event.detail.provider);
      window.addEventListener('eip6963:announceProvider', listener);
      window.dispatchEvent(new Event('eip6963:requestProvider'));
    });
    await ulc.request({ method: 'eth_chainId' });
    const seen = [];
    const collect = (event) => seen.push(event.detail.info.rdns);
    window.addEventListener('eip6963:announceProvider', collect);
    window.dispatchEvent(new Event('eip6963:requestProvider'));
    await new Promise((ok) => setTimeout(ok, 100));
    return seen;
  });
  assert.deepEqual(off.sort(), ['org.ulc.client', 'test.fake-wallet'], 'no wrap while switched off');
  await options.check('#wrap');
  await page.waitForFunction(() => [...window.fake.announced.values()].some((d) => d.info.rdns.startsWith('org.ulc.client.wrap.')), null, { timeout: 15_000 });

  // A legacy wallet, only window.ethereum: wrapped under that name.
  await page.goto(`${walletOrigin}/legacy-wallet`);
  await page.waitForFunction(() => [...(window.fake?.announced.values() ?? [])].some((d) => d.info.rdns.startsWith('org.ulc.client.wrap.')), null, { timeout: 30_000 });
  const legacy = await page.evaluate(async () => {
    const { announced, received, wallet, through } = window.fake;
    const wraps = [...announced.values()].filter((d) => d.info.rdns.startsWith('org.ulc.client.wrap.'));
    const p = wraps[0].provider;
    const accounts = await through(p, 'eth_accounts');
    const chainId = await through(p, 'eth_chainId');
    return { infos: wraps.map((d) => d.info), accounts, chainId, received: [...received], windowEthereumIsWallet: window.ethereum === wallet };
  });
  assert.deepEqual(legacy.infos.map((i) => [i.name, i.rdns]), [['ULC (verified reads) + window.ethereum', 'org.ulc.client.wrap.injected']]);
  assert.deepEqual(legacy.accounts, [account]);
  assert.equal(legacy.chainId, `0x${devnet.chainId.toString(16)}`);
  assert.deepEqual(legacy.received, ['eth_accounts'], 'the legacy wallet was asked for its accounts only');
  assert.equal(legacy.windowEthereumIsWallet, true);
});

test('the client survives its MV3 service worker being stopped while idle', { timeout: 180_000 }, async (t) => {
  if (skipUnless(t, why())) return;
  const { devnet, context, worker, origin } = await launch(t, 'indexeddb');
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (error) => errors.push(error.message));
  await page.goto(`${origin}/`);
  const before = await page.evaluate(async () => {
    const deadline = Date.now() + 90_000;
    for (;;) {
      try {
        const number = await window.ethereum.request({ method: 'eth_blockNumber' });
        // The client persists a head before it answers with it: this one is in IndexedDB.
        if (Number(number) > 0) return number;
      } catch (error) {
        if (Date.now() > deadline) throw error;
      }
      await new Promise((ok) => setTimeout(ok, 500));
    }
  });

  // Stop it as Chromium does an idle worker, through the DevTools protocol's ServiceWorker
  // domain, whose version updates also show it stopped and running again.
  const cdp = await context.newCDPSession(page);
  const statuses = [];
  const waiters = [];
  cdp.on('ServiceWorker.workerVersionUpdated', ({ versions }) => {
    for (const v of versions) {
      if (v.scriptURL !== worker.url()) continue;
      statuses.push(v.runningStatus);
      for (const w of [...waiters]) if (w.status === v.runningStatus) w.ok();
    }
  });
  const reaches = (status) => new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`the worker did not reach "${status}" (${statuses})`)), 30_000);
    waiters.push({ status, ok: () => { clearTimeout(timer); ok(); } });
  });
  await cdp.send('ServiceWorker.enable');
  const stopped = reaches('stopped');
  await cdp.send('ServiceWorker.stopAllWorkers');
  await stopped;
  const running = reaches('running');

  const after = await page.evaluate(async (address) => {
    const p = window.ethereum;
    const t0 = performance.now();
    // The page's port died with the worker: this request reopens it and starts the worker.
    const status = await p.request({ method: 'ulc_status' });
    const t1 = performance.now();
    const blockNumber = await p.request({ method: 'eth_blockNumber' });
    const balance = await p.request({ method: 'eth_getBalance', params: [address, blockNumber] });
    const t2 = performance.now();
    return { status, blockNumber, balance, firstAnswerMs: t1 - t0, firstVerifiedMs: t2 - t0 };
  }, devnet.devAccounts[0].address);
  await running;
  const since = statuses.slice(statuses.lastIndexOf('stopped'));
  assert.ok(since.includes('starting') && since.at(-1) === 'running', `stopped, then started again by the request: ${statuses}`);

  // The head was back from IndexedDB at the first answer (not yet reconfirmed by a quorum).
  assert.ok(after.status.head, `a head at the first answer: ${JSON.stringify(after.status)}`);
  assert.equal(after.status.head.stale, true, 'restored from IndexedDB (warm start)');
  assert.ok(Number(after.status.head.number) >= Number(before), `at least the head before the stop (${Number(before)})`);
  assert.equal(after.status.head.hash, (await anvil(devnet.rpcUrl, 'eth_getBlockByNumber', [after.status.head.number, false])).hash);
  // A verified read after the restart.
  assert.ok(Number(after.blockNumber) >= Number(after.status.head.number));
  assert.equal(after.balance, await anvil(devnet.rpcUrl, 'eth_getBalance', [devnet.devAccounts[0].address, after.blockNumber]));
  assert.deepEqual(errors, [], 'no uncaught page errors');
  // Informational, not asserted (timing belongs in benchmarks).
  t.diagnostic(`after the worker stopped: first answer (ulc_status, restored head #${Number(after.status.head.number)}) in ${after.firstAnswerMs.toFixed(0)} ms, first verified read (eth_getBalance at #${Number(after.blockNumber)}) in ${after.firstVerifiedMs.toFixed(0)} ms`);
});
