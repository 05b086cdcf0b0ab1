// The browser extension (www/extension/, with the package copied in by
// scripts/build-extension.sh) in headless Chromium through Playwright: the extension is
// loaded unpacked, configured for the devnet through chrome.storage.local (from its service
// worker, as the options page would), and a plain page on 127.0.0.1 finds the injected
// provider through EIP-6963 and reads the chain through it (chain ID, a head, a balance that
// matches anvil's at the same block).
//
// Needs pkg/ built and copied (www/extension/ulc/), a devnet (ULC_DEVNET_JSON or
// ULC_DEVNET_DIR; scripts/test.sh provides it) and /usr/bin/chromium. Without them the test
// skips with the reason, and fails under CI=true.

import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { servePkg } from '../scripts/serve-pkg.mjs';
import { CHROMIUM, CHROMIUM_ARGS, devnetJson, missing, skipUnless } from './support/browser.mjs';

const EXTENSION = join(resolve(dirname(fileURLToPath(import.meta.url)), '..'), 'www', 'extension');

function why() {
  const base = missing();
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

test('the extension injects an EIP-6963 provider backed by the light client', { timeout: 150_000 }, async (t) => {
  if (skipUnless(t, why())) return;
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
  await worker.evaluate((config) => chrome.storage.local.set({ ulcConfig: config }), {
    chainId: devnet.chainId,
    genesisHash: devnet.genesisHash,
    servers: devnet.servers.map((s) => ({ enode: s.enode, bridge: s.bridgeUrl })),
    fraction: devnet.fraction,
    storage: 'memory',
  });

  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (error) => errors.push(error.message));
  await page.goto(`http://127.0.0.1:${server.address().port}/`);

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
  const extensionId = new URL(worker.url()).host;
  const options = await context.newPage();
  const optionErrors = [];
  options.on('pageerror', (error) => optionErrors.push(error.message));
  await options.goto(`chrome-extension://${extensionId}/options.html`);
  await options.waitForFunction(() => document.getElementById('status').textContent.includes('"head"'), null, { timeout: 15_000 });
  assert.equal(await options.inputValue('#chainId'), String(devnet.chainId));
  assert.equal((await options.inputValue('#servers')).split('\n').length, devnet.servers.length);
  assert.deepEqual(optionErrors, [], 'no uncaught options page errors');
});
