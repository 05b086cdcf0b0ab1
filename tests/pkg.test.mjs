// Smoke test of the built npm package (pkg/, from scripts/build-pkg.sh) in headless Chromium
// through Playwright: a page imports pkg/index.js as a dapp would, creates the provider for a
// running devnet and uses it (chain ID, a verified head, EIP-1193 errors and events,
// EIP-6963 announcement).
//
// Needs pkg/ built, a devnet (its devnet.json in ULC_DEVNET_JSON, or a directory holding it
// in ULC_DEVNET_DIR; scripts/test.sh provides both) and /usr/bin/chromium. Without them the
// test skips with the reason, and fails under CI=true.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { servePkg } from '../scripts/serve-pkg.mjs';
import { CHROMIUM, CHROMIUM_ARGS, devnetJson, missing, providerConfig, skipUnless } from './support/browser.mjs';




const serve = () => servePkg({ title: 'ulc pkg test' });

test('the npm package works in Chromium as an EIP-1193 provider for the devnet', { timeout: 120_000 }, async (t) => {
  if (skipUnless(t, missing())) return;
  const devnet = JSON.parse(devnetJson());
  const config = providerConfig(devnet);
  const { chromium } = await import('playwright-core');
  const server = await serve();
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  t.after(async () => {
    await browser.close();
    server.close();
  });
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (error) => errors.push(error.message));
  await page.goto(`http://127.0.0.1:${server.address().port}/`);

  const result = await page.evaluate(async (config) => {
    const { createProvider, announceEip6963, ProviderRpcError } = await import('/pkg/index.js');
    const out = {};
    // A bad configuration rejects with the Rust side's message, not a crash.
    try {
      await createProvider({ ...config, servers: [{ enode: 'enode://00@127.0.0.1:1', bridge: 'ws://127.0.0.1:1/x:1' }] });
      out.badConfig = 'resolved';
    } catch (error) {
      out.badConfig = error.message;
    }
    const provider = await createProvider(config);
    out.frozen = Object.isFrozen(provider);
    const connected = new Promise((ok) => provider.once('connect', ok));
    out.chainId = await provider.request({ method: 'eth_chainId' });
    try {
      await provider.request({ method: 'eth_noSuchMethod', params: [] });
      out.unknown = 'resolved';
    } catch (error) {
      out.unknown = { code: error.code, message: error.message, isError: error instanceof Error, isRpc: error instanceof ProviderRpcError };
    }
    try {
      await provider.request('eth_chainId');
      out.notObject = 'resolved';
    } catch (error) {
      out.notObject = error.code;
    }
    // Listeners: multiple, removed by the same function, `once` removable by its original.
    let calls = 0;
    const count = () => calls++;
    provider.on('chainChanged', count).on('chainChanged', count);
    provider.removeListener('chainChanged', count);
    out.listenersAfterRemove = provider.listenerCount('chainChanged');
    provider.once('chainChanged', count).off('chainChanged', count).off('chainChanged', count);
    out.listenersAfterOff = provider.listenerCount('chainChanged');

    const timeout = new Promise((_, fail) => setTimeout(() => fail(new Error('no connect event within 60 s')), 60_000));
    out.connect = await Promise.race([connected, timeout]);
    out.blockNumber = await provider.request({ method: 'eth_blockNumber' });

    // EIP-6963: announced at once and again on request, with a frozen detail.
    const seen = [];
    window.addEventListener('eip6963:announceProvider', (event) => seen.push(event.detail));
    const stop = announceEip6963(provider);
    window.dispatchEvent(new Event('eip6963:requestProvider'));
    stop();
    window.dispatchEvent(new Event('eip6963:requestProvider'));
    out.eip6963 = {
      count: seen.length,
      sameProvider: seen.every((d) => d.provider === provider),
      frozen: seen.every((d) => Object.isFrozen(d) && Object.isFrozen(d.info)),
      info: seen[0]?.info,
      stableUuid: new Set(seen.map((d) => d.info.uuid)).size === 1,
    };
    out.metrics = await provider.metrics();
    provider.close();
    return out;
  }, config);

  assert.match(result.badConfig, /^server 0: /);
  assert.equal(result.frozen, true);
  assert.equal(result.chainId, `0x${devnet.chainId.toString(16)}`);
  assert.deepEqual({ ...result.unknown, message: undefined }, { code: 4200, message: undefined, isError: true, isRpc: true });
  assert.equal(result.notObject, -32600);
  assert.equal(result.listenersAfterRemove, 1);
  assert.equal(result.listenersAfterOff, 0);
  assert.deepEqual(result.connect, { chainId: result.chainId });
  assert.ok(Number(result.blockNumber) > 0, `blockNumber ${result.blockNumber}`);
  assert.equal(result.eip6963.count, 2);
  assert.equal(result.eip6963.sameProvider, true);
  assert.equal(result.eip6963.frozen, true);
  assert.equal(result.eip6963.stableUuid, true);
  assert.equal(result.eip6963.info.name, 'ULC light client');
  assert.equal(result.eip6963.info.rdns, 'org.ulc.client');
  assert.match(result.eip6963.info.uuid, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  assert.match(result.eip6963.info.icon, /^data:image\/svg\+xml,/);
  assert.match(decodeURIComponent(result.eip6963.info.icon), /width="96" height="96"/);
  assert.ok(result.metrics.environment.wasmMemoryBytes > 0);
  assert.deepEqual(errors, [], 'no uncaught page errors');
});

test('IndexedDB keeps the verified head across a page reload', { timeout: 120_000 }, async (t) => {
  if (skipUnless(t, missing())) return;
  const devnet = JSON.parse(devnetJson());
  const config = providerConfig(devnet, 'indexeddb');
  const { chromium } = await import('playwright-core');
  const server = await serve();
  // A fresh profile: an empty IndexedDB before the first load.
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  t.after(async () => {
    await browser.close();
    server.close();
  });
  const page = await (await browser.newContext()).newPage();
  await page.goto(`http://127.0.0.1:${server.address().port}/`);
  const status = (config, waitForHead) => page.evaluate(async ({ config, waitForHead }) => {
    const { createProvider } = await import('/pkg/index.js');
    const provider = await createProvider(config);
    // Before any server could have answered: what the store gave at start.
    const atStart = await provider.request({ method: 'ulc_status' });
    const blockNumber = waitForHead ? await provider.request({ method: 'eth_blockNumber' }) : null;
    const after = await provider.request({ method: 'ulc_status' });
    provider.close();
    return { atStart, blockNumber, after };
  }, { config, waitForHead });

  const first = await status(config, true);
  assert.equal(first.atStart.head ?? null, null, 'a brand-new install has no head');
  assert.ok(Number(first.blockNumber) > 0);
  const stored = Number(first.after.head.number);

  await page.reload();
  const second = await status(config, false);
  assert.ok(second.atStart.head, `the head is back at once after the reload: ${JSON.stringify(second.atStart)}`);
  assert.equal(second.atStart.head.stale, true, 'restored, not yet confirmed by a fresh quorum');
  assert.ok(Number(second.atStart.head.number) >= stored, 'at least the head that was stored');
  const anvil = await fetch(devnet.rpcUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'eth_getBlockByNumber', params: [second.atStart.head.number, false] }),
  }).then((r) => r.json());
  assert.equal(second.atStart.head.hash, anvil.result.hash, 'the restored head is the chain\'s block');
});
