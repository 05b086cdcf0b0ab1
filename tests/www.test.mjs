// End-to-end test of the demo dapp (www/, served by scripts/devnet.mjs with the npm package
// under /pkg/) in headless Chromium through Playwright: the page reaches a quorum-signed head,
// and what it shows (a balance, a token's totalSupply, a sent transaction's receipt) equals
// what anvil answers directly. Saves a screenshot to target/www-demo.png.
//
// Needs pkg/ built, a running devnet (a directory holding its devnet.json in ULC_DEVNET_DIR,
// or the JSON itself in ULC_DEVNET_JSON; scripts/test.sh provides both) and /usr/bin/chromium.
// Without them the test skips with the reason, and fails under CI=true.

import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { CHROMIUM, CHROMIUM_ARGS, devnetJson, missing, skipUnless } from './support/browser.mjs';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const SCREENSHOT = join(ROOT, 'target', 'www-demo.png');


/** Why the test cannot run here, or null: the package's needs, and a devnet with a web server. */
function whyNot() {
  const why = missing();
  if (why) return why;
  const devnet = JSON.parse(devnetJson());
  return devnet.wwwUrl && devnet.servers?.length ? null : 'the devnet has no web server or no LES servers';
}

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

test('the demo dapp reaches a quorum head and shows what anvil answers', { timeout: 240_000 }, async (t) => {
  if (skipUnless(t, whyNot())) return;
  const devnet = JSON.parse(devnetJson());
  const { chromium } = await import('playwright-core');
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  t.after(() => browser.close());
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  const pageErrors = [];
  page.on('pageerror', (error) => pageErrors.push(error.message));
  page.on('console', (msg) => {
    if (msg.type() === 'error') pageErrors.push(`console: ${msg.text()}`);
  });
  page.on('response', (response) => {
    if (response.status() >= 400) pageErrors.push(`HTTP ${response.status()} ${response.url()}`);
  });
  await page.goto(devnet.wwwUrl);
  const byId = (id) => page.locator(`#${id}`);
  const errorsShown = () => byId('errors').textContent();

  // A quorum head: a number > 0, signed by at least the quorum of trusted servers.
  await page.waitForFunction(() => {
    const number = Number(document.getElementById('head-number').dataset.number ?? 0);
    const signers = Number(document.getElementById('signer-count').dataset.count ?? 0);
    const k = Number(document.getElementById('quorum').dataset.k ?? Infinity);
    return number > 0 && signers >= k;
  }, null, { timeout: 90_000 }).catch(async (error) => {
    throw new Error(`no quorum head shown: ${error.message}; page errors: ${await errorsShown()}`);
  });
  const head = Number(await byId('head-number').getAttribute('data-number'));
  const shownHash = await byId('head-hash').textContent();
  const anvilBlock = await rpc(devnet.rpcUrl, 'eth_getBlockByNumber', [`0x${head.toString(16)}`, false]);
  assert.equal(shownHash, anvilBlock.hash, 'the head shown is the chain\'s block');
  const k = Number(await byId('quorum').getAttribute('data-k'));
  assert.equal(await page.locator('#servers tr', { hasText: '✓ signed' }).count() >= k, true, 'the servers table marks the signers');

  // Address lookup of dev account 0 at the block the page names.
  const account0 = devnet.devAccounts[0].address;
  await byId('lookup-address').fill(account0);
  await byId('lookup-button').click();
  await page.waitForFunction(() => document.getElementById('lookup-balance').dataset.wei !== undefined
    || document.getElementById('lookup-error').textContent !== '', null, { timeout: 60_000 });
  assert.equal(await byId('lookup-error').textContent(), '', 'lookup failed on the page');
  const lookupBlock = await byId('lookup-block').getAttribute('data-block');
  const wei = await byId('lookup-balance').getAttribute('data-wei');
  assert.equal(BigInt(wei), BigInt(await rpc(devnet.rpcUrl, 'eth_getBalance', [account0, lookupBlock])), 'balance');
  assert.match(await byId('lookup-balance').textContent(), / ETH$/);
  const nonce = Number(await rpc(devnet.rpcUrl, 'eth_getTransactionCount', [account0, lookupBlock]));
  assert.equal(await byId('lookup-nonce').textContent(), String(nonce), 'nonce');
  assert.match(await byId('lookup-code').textContent(), /^0 bytes/, 'an EOA has no code');

  // The token: totalSupply (and balanceOf) by eth_call, compared with anvil's eth_call.
  await byId('token-holder').fill(account0);
  await byId('token-button').click();
  await page.waitForFunction(() => document.getElementById('token-supply').dataset.raw !== undefined
    || document.getElementById('token-error').textContent !== '', null, { timeout: 60_000 });
  assert.equal(await byId('token-error').textContent(), '', 'token read failed on the page');
  const tokenBlock = await byId('token-block').getAttribute('data-block');
  const anvilSupply = await rpc(devnet.rpcUrl, 'eth_call', [{ to: devnet.token.address, data: '0x18160ddd' }, tokenBlock]);
  assert.equal(BigInt(await byId('token-supply').getAttribute('data-raw')), BigInt(anvilSupply), 'totalSupply');
  assert.equal(BigInt(anvilSupply), BigInt(devnet.token.totalSupply));
  const balanceData = `0x70a08231${account0.slice(2).toLowerCase().padStart(64, '0')}`;
  const anvilBalance = await rpc(devnet.rpcUrl, 'eth_call', [{ to: devnet.token.address, data: balanceData }, tokenBlock]);
  assert.equal(BigInt(await byId('token-balance').getAttribute('data-raw')), BigInt(anvilBalance), 'balanceOf');
  assert.equal(await byId('token-name').textContent(), devnet.token.name);
  assert.equal(await byId('token-symbol').textContent(), devnet.token.symbol);

  // A transaction signed in the page, sent through the provider; its receipt shown.
  await byId('send-button').click();
  await page.waitForFunction(() => document.getElementById('receipt-status').dataset.status !== undefined
    || document.getElementById('send-error').textContent !== '', null, { timeout: 120_000 });
  assert.equal(await byId('send-error').textContent(), '', 'sending failed on the page');
  assert.equal(await byId('receipt-status').getAttribute('data-status'), '0x1');
  const hash = await byId('send-hash').getAttribute('data-hash');
  const receipt = await rpc(devnet.rpcUrl, 'eth_getTransactionReceipt', [hash]);
  assert.ok(receipt, 'anvil knows the transaction');
  assert.equal(receipt.status, '0x1');
  assert.equal((await byId('receipt-block').textContent()).split(' ')[0], `#${Number(receipt.blockNumber)}`);
  assert.equal(await byId('receipt-gas').textContent(), String(Number(receipt.gasUsed)));
  const tx = await rpc(devnet.rpcUrl, 'eth_getTransactionByHash', [hash]);
  assert.equal(tx.from.toLowerCase(), devnet.devAccounts.at(-1).address.toLowerCase(), 'sent from the chosen dev account');

  // The metrics panel and chart have data.
  await page.waitForFunction(() => document.querySelectorAll('#chart rect').length > 3, null, { timeout: 10_000 });
  const metrics = JSON.parse(await byId('metrics-json').textContent());
  assert.ok(metrics.headsAccepted > 0, 'heads accepted');
  assert.ok(metrics.environment.wasmMemoryBytes > 0);

  mkdirSync(dirname(SCREENSHOT), { recursive: true });
  await page.screenshot({ path: SCREENSHOT, fullPage: true });
  assert.equal(await errorsShown(), '', 'the page shows no errors');
  assert.deepEqual(pageErrors, [], 'no uncaught page errors');
});
