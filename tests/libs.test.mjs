// End-to-end test of the npm package with the libraries dapps use: viem 2 and ethers 6 run in
// headless Chromium against our EIP-1193 provider (pkg/index.js, `createProvider`) for a
// running devnet, and every answer is compared with the same library call made against anvil
// directly (viem's `http` transport, ethers' `JsonRpcProvider`; anvil allows CORS), at the same
// block where the answer depends on it (the provider's head number is read first and passed as
// the block tag to both). Reads, gas estimates, a token transfer signed locally and sent with
// eth_sendRawTransaction, its receipt, block watching and Transfer event watching.
//
// The libraries are bundled for the page at test time by esbuild (pinned devDependencies, no
// network) and served at /libs.js through Playwright's request routing; pkg/ is served by
// scripts/serve-pkg.mjs.
//
// Needs pkg/ built, a devnet (its devnet.json in ULC_DEVNET_JSON, or a directory holding it in
// ULC_DEVNET_DIR; scripts/test.sh provides both), /usr/bin/chromium, and the npm devDependencies
// (playwright-core, esbuild, viem, ethers). Without them the test skips with the reason, and
// fails under CI=true.
//
// The devnet's trickle (scripts/devnet.mjs) sends from dev accounts 1..9 through anvil's own
// signer, and the provider answers `pending` nonces from the verified head (docs/verification.md),
// so a locally signed transaction can collide with a trickle transaction still in anvil's pool
// or mined after the verified head: such a send is retried (a few times, after a pause).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { servePkg } from '../scripts/serve-pkg.mjs';
import { CHROMIUM, CHROMIUM_ARGS, devnetJson, missing, providerConfig, skipUnless, bundleForBrowser } from './support/browser.mjs';


/** What the page imports from /libs.js: exactly the library entry points the test uses. */
const LIBS_ENTRY = `
export { createPublicClient, createWalletClient, custom, http, defineChain, encodeFunctionData } from 'viem';
export { privateKeyToAccount } from 'viem/accounts';
export { BrowserProvider, JsonRpcProvider, Contract, Wallet } from 'ethers';
`;



/** JSON-RPC straight to anvil, from Node. */
async function anvilRpc(rpcUrl, method, params) {
  const reply = await fetch(rpcUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }),
  }).then((r) => r.json());
  if (reply.error) throw new Error(`anvil ${method}: ${JSON.stringify(reply.error)}`);
  return reply.result;
}

/**
 * The length of a block's RLP encoding (what `size` means), rebuilt from anvil's header fields
 * and raw transactions; the header must hash to the block hash. anvil's own `size` is one byte
 * short on this devnet's (Prague) blocks, so `size` is checked against this instead.
 */
async function blockRlpSize(rpcUrl, number) {
  const { encodeRlp, decodeRlp, keccak256, getBytes, toQuantity } = await import('ethers');
  const b = await anvilRpc(rpcUrl, 'eth_getBlockByNumber', [toQuantity(number), false]);
  // An RLP integer: minimal big-endian bytes, zero as the empty string.
  const q = (x) => {
    const hex = BigInt(x).toString(16);
    return BigInt(x) === 0n ? '0x' : `0x${hex.length % 2 ? '0' : ''}${hex}`;
  };
  const header = [b.parentHash, b.sha3Uncles, b.miner, b.stateRoot, b.transactionsRoot, b.receiptsRoot, b.logsBloom,
    q(b.difficulty), q(b.number), q(b.gasLimit), q(b.gasUsed), q(b.timestamp), b.extraData, b.mixHash, b.nonce];
  for (const [key, kind] of [['baseFeePerGas', 'q'], ['withdrawalsRoot', 'd'], ['blobGasUsed', 'q'], ['excessBlobGas', 'q'],
    ['parentBeaconBlockRoot', 'd'], ['requestsHash', 'd']]) {
    if (b[key] === undefined) break;
    header.push(kind === 'q' ? q(b[key]) : b[key]);
  }
  if (keccak256(encodeRlp(header)) !== b.hash) throw new Error(`block ${number}: rebuilt header does not hash to ${b.hash}`);
  const txs = [];
  for (const hash of b.transactions) {
    const raw = await anvilRpc(rpcUrl, 'eth_getRawTransactionByHash', [hash]);
    txs.push(getBytes(raw)[0] >= 0xc0 ? decodeRlp(raw) : raw); // legacy: a list; typed: a byte string
  }
  const body = [header, txs, [], ...(b.withdrawals ? [b.withdrawals.map((w) => [q(w.index), q(w.validatorIndex), w.address, q(w.amount)])] : [])];
  return getBytes(encodeRlp(body)).length;
}

/**
 * Where the provider deliberately differs from anvil (docs/verification.md), left out of the
 * equality checks and asserted on their own:
 * - blocks: no `totalDifficulty` (unverifiable; post-merge geth omits it too), `size` checked
 *   against the real RLP length (above);
 * - receipts: no `blobGasPrice` off mainnet (the chain's blob schedule is unknown), and no
 *   `blockTimestamp` (anvil adds it to receipts; the provider has it on logs and transactions).
 */
const without = (object, keys) => Object.fromEntries(Object.entries(object).filter(([k]) => !keys.includes(k)));
const BLOCK_DIFFS = ['totalDifficulty', 'size'];
const RECEIPT_DIFFS = ['blobGasPrice', 'blockTimestamp'];
const big = (s) => BigInt(String(s).replace(/n$/, ''));
/** geth's estimate: at least the gas needed, at most 1.5 % above (its binary search's stop). */
function assertEstimate(ours, exact, what) {
  assert.ok(big(ours) >= big(exact) && big(ours) * 1000n <= big(exact) * 1016n, `${what}: ${ours} not within [${exact}, +1.5 %]`);
}

// --- what runs in the page ------------------------------------------------------------------
// Each step is one page.evaluate; the functions below are serialized into the page, so they
// use only their arguments and globals set up by `pageSetup`.

/** Creates the provider (wrapped so every failed request is recorded), loads the libraries. */
async function pageSetup({ config, devnet }) {
  const libs = await import('/libs.js');
  const { createProvider } = await import('/pkg/index.js');
  const raw = await createProvider(config);
  const failures = [];
  const counts = {};
  // The log-filter traffic, for the report when an event is not seen.
  const filterTrace = [];
  const traced = new Set(['eth_newFilter', 'eth_getFilterChanges', 'eth_getLogs', 'eth_uninstallFilter']);
  // A transparent EIP-1193 wrapper: the libraries see exactly the provider's answers; failed
  // requests are kept (method, params, code, message, data) for the report.
  const provider = {
    async request(args) {
      counts[args.method] = (counts[args.method] ?? 0) + 1;
      try {
        const result = await raw.request(args);
        if (traced.has(args.method) && !(args.method === 'eth_getFilterChanges' && Array.isArray(result) && !result.length)) {
          filterTrace.push({ method: args.method, params: args.params, result: Array.isArray(result) ? result.map((l) => `${l.blockNumber}/${l.transactionHash}/${l.topics?.[1]}`) : result });
          if (filterTrace.length > 200) filterTrace.shift();
        }
        return result;
      } catch (error) {
        failures.push({ method: args.method, params: args.params, code: error.code, message: error.message, data: error.data });
        throw error;
      }
    },
    on: (...a) => (raw.on(...a), provider),
    removeListener: (...a) => (raw.removeListener(...a), provider),
  };
  const plain = (value) => JSON.parse(JSON.stringify(value, (_, v) => (typeof v === 'bigint' ? `${v}n` : v)));
  const sleep = (ms) => new Promise((ok) => setTimeout(ok, ms));
  const within = (promise, ms, what) => Promise.race([promise, sleep(ms).then(() => { throw new Error(`${what}: nothing within ${ms / 1000} s`); })]);
  /** The provider's head number, read twice around `f` so `f` ran at that head. */
  const atStableHead = async (f) => {
    for (let i = 0; ; i++) {
      const before = BigInt(await raw.request({ method: 'eth_blockNumber' }));
      const value = await f(before);
      const after = BigInt(await raw.request({ method: 'eth_blockNumber' }));
      if (before === after || i === 5) return { head: before, value, stable: before === after };
    }
  };
  /** Sends with the library; retried if it collided with a devnet trickle transaction's nonce. */
  const sendRetrying = async (send) => {
    const attempts = [];
    for (let i = 0; ; i++) {
      try {
        const result = await send();
        return { result, attempts };
      } catch (error) {
        const text = `${error.shortMessage ?? ''} ${error.message} ${error.details ?? ''}`;
        attempts.push(text.slice(0, 600));
        if (i >= 5 || !/nonce|underpriced|already known|replacement/i.test(text)) throw error;
        await sleep(2500);
      }
    }
  };
  // The connection first: every step below needs a verified head.
  await within(new Promise((ok) => {
    raw.once('connect', ok);
    raw.request({ method: 'ulc_status' }).then((s) => s.connected && ok());
  }), 90_000, 'connect');
  window.t = { libs, raw, provider, failures, counts, filterTrace, devnet, plain, sleep, within, atStableHead, sendRetrying };
  return true;
}

async function pageViemReads() {
  const { libs, provider, devnet, plain, atStableHead } = window.t;
  const chain = libs.defineChain({
    id: devnet.chainId,
    name: 'ulc devnet',
    nativeCurrency: { name: 'Ether', symbol: 'ETH', decimals: 18 },
    rpcUrls: { default: { http: [devnet.rpcUrl] } },
  });
  const client = libs.createPublicClient({ chain, transport: libs.custom(provider), pollingInterval: 500 });
  const anvil = libs.createPublicClient({ chain, transport: libs.http(devnet.rpcUrl), pollingInterval: 500 });
  Object.assign(window.t, { chain, viem: client, viemAnvil: anvil });
  const { token, devAccounts } = devnet;
  const acct0 = devAccounts[0].address;
  const acct1 = devAccounts[1].address;
  const blockNumber = await client.getBlockNumber({ cacheTime: 0 });
  const anvilBlockNumber = await anvil.getBlockNumber({ cacheTime: 0 });
  const at = { blockNumber };
  const ours = await client.getBlock(at);
  const theirs = await anvil.getBlock(at);
  const read = async (c) => ({
    balance: await c.getBalance({ address: acct0, ...at }),
    tokenBalance: await c.readContract({ address: token.address, abi: token.abi, functionName: 'balanceOf', args: [acct0], ...at }),
    totalSupply: await c.readContract({ address: token.address, abi: token.abi, functionName: 'totalSupply', ...at }),
    symbol: await c.readContract({ address: token.address, abi: token.abi, functionName: 'symbol', ...at }),
    estimateTransfer: await c.estimateGas({
      account: acct1,
      to: token.address,
      data: libs.encodeFunctionData({ abi: token.abi, functionName: 'transfer', args: [acct0, 1n] }),
      ...at,
    }),
    estimateEth: await c.estimateGas({ account: acct1, to: acct0, value: 1n, ...at }),
  });
  // A read without a block number is at the provider's head: compare at that head.
  const latestBalance = await atStableHead(async () => client.readContract({ address: token.address, abi: token.abi, functionName: 'balanceOf', args: [acct1] }));
  const anvilLatestBalance = await anvil.readContract({ address: token.address, abi: token.abi, functionName: 'balanceOf', args: [acct1], blockNumber: latestBalance.head });
  return plain({
    blockNumber, anvilBlockNumber, block: ours, anvilBlock: theirs,
    ours: await read(client), anvil: await read(anvil),
    latestBalance, anvilLatestBalance,
  });
}

async function pageViemSend() {
  const { libs, provider, devnet, chain, viem, viemAnvil, plain, within, sendRetrying } = window.t;
  const { token, devAccounts } = devnet;
  const account = libs.privateKeyToAccount(devAccounts[1].privateKey);
  const wallet = libs.createWalletClient({ account, chain, transport: libs.custom(provider) });
  // The sender needs some DEMO: the trickle hands dev account 1 a few every 9 blocks.
  const balanceOf = () => viem.readContract({ address: token.address, abi: token.abi, functionName: 'balanceOf', args: [account.address] });
  for (let i = 0; (await balanceOf()) === 0n; i++) {
    if (i > 60) throw new Error(`${account.address} has no DEMO to send`);
    await new Promise((ok) => setTimeout(ok, 1000));
  }
  const seenLogs = [];
  const unwatch = viem.watchContractEvent({
    address: token.address,
    abi: token.abi,
    eventName: 'Transfer',
    args: { from: account.address },
    pollingInterval: 500,
    onLogs: (logs) => seenLogs.push(...logs),
    onError: (error) => seenLogs.push({ error: error.message }),
  });
  // Let the watcher install its filter before the transfer can be mined.
  await new Promise((ok) => setTimeout(ok, 1500));
  const to = devAccounts[0].address;
  const { result: hash, attempts } = await sendRetrying(() => wallet.writeContract({
    address: token.address, abi: token.abi, functionName: 'transfer', args: [to, 1n],
  }));
  const receipt = await viem.waitForTransactionReceipt({ hash, pollingInterval: 500, timeout: 120_000 });
  const anvilReceipt = await viemAnvil.getTransactionReceipt({ hash });
  const transaction = await viem.getTransaction({ hash });
  const anvilTransaction = await viemAnvil.getTransaction({ hash });
  const seen = await within((async () => {
    for (;;) {
      const log = seenLogs.find((l) => l.error || l.transactionHash === hash);
      if (log) return log;
      await new Promise((ok) => setTimeout(ok, 200));
    }
  })(), 60_000, 'watchContractEvent');
  unwatch();
  return plain({ from: account.address, hash, attempts, receipt, anvilReceipt, transaction, anvilTransaction, seen, anvilLog: anvilReceipt.logs[0] });
}

async function pageViemWatchBlocks() {
  const { viem, viemAnvil, plain, within } = window.t;
  const start = await viem.getBlockNumber({ cacheTime: 0 });
  const blocks = [];
  const errors = [];
  const unwatch = viem.watchBlocks({ pollingInterval: 500, onBlock: (b) => blocks.push(b), onError: (e) => errors.push(e.message) });
  const block = await within((async () => {
    for (;;) {
      const b = blocks.find((x) => x.number > start);
      if (b) return b;
      if (errors.length) throw new Error(`watchBlocks: ${errors[0]}`);
      await new Promise((ok) => setTimeout(ok, 200));
    }
  })(), 60_000, 'watchBlocks');
  unwatch();
  const anvilBlock = await viemAnvil.getBlock({ blockNumber: block.number });
  return plain({ start, block, anvilBlock, errors });
}

async function pageEthersReads() {
  const { libs, provider, devnet, plain, atStableHead } = window.t;
  const { token, devAccounts } = devnet;
  const network = { chainId: devnet.chainId, name: 'ulc-devnet' };
  const ours = new libs.BrowserProvider(provider, network, { pollingInterval: 500 });
  const anvil = new libs.JsonRpcProvider(devnet.rpcUrl, network, { staticNetwork: true, batchMaxCount: 1, pollingInterval: 500 });
  Object.assign(window.t, { ethers: ours, ethersAnvil: anvil });
  const acct0 = devAccounts[0].address;
  const acct2 = devAccounts[2].address;
  const network0 = await ours.getNetwork();
  const blockNumber = await ours.getBlockNumber();
  const anvilBlockNumber = await anvil.getBlockNumber();
  const read = async (p) => {
    const contract = new libs.Contract(token.address, token.abi, p);
    const block = await p.getBlock(blockNumber);
    return {
      block: block.toJSON(),
      balance: await p.getBalance(acct0, blockNumber),
      nonce: await p.getTransactionCount(acct0, blockNumber),
      code: await p.getCode(token.address, blockNumber),
      tokenBalance: await contract.balanceOf(acct0, { blockTag: blockNumber }),
      totalSupply: await contract.totalSupply({ blockTag: blockNumber }),
      name: await contract.name({ blockTag: blockNumber }),
    };
  };
  // ethers sends eth_estimateGas without a block tag: at the provider's head, which is then
  // given to anvil explicitly (raw JSON-RPC, as ethers has no block tag for it).
  const contract = new libs.Contract(token.address, token.abi, ours);
  const estimate = await atStableHead(() => contract.transfer.estimateGas(acct0, 1n, { from: acct2 }));
  const data = contract.interface.encodeFunctionData('transfer', [acct0, 1n]);
  const anvilEstimate = await anvil.send('eth_estimateGas', [{ from: acct2.toLowerCase(), to: token.address, data }, `0x${estimate.head.toString(16)}`]);
  return plain({
    chainId: network0.chainId, blockNumber, anvilBlockNumber,
    ours: await read(ours), anvil: await read(anvil),
    estimate, anvilEstimate: BigInt(anvilEstimate),
  });
}

async function pageEthersSend() {
  const { libs, devnet, ethers, ethersAnvil, plain, within, sendRetrying } = window.t;
  const { token, devAccounts } = devnet;
  const wallet = new libs.Wallet(devAccounts[2].privateKey, ethers);
  const contract = new libs.Contract(token.address, token.abi, wallet);
  for (let i = 0; (await contract.balanceOf(wallet.address)) === 0n; i++) {
    if (i > 60) throw new Error(`${wallet.address} has no DEMO to send`);
    await new Promise((ok) => setTimeout(ok, 1000));
  }
  const events = [];
  // By event name: with a topic filter (`contract.filters.Transfer(from)`) ethers 6.17 passes
  // the listener only the payload, not the decoded arguments.
  const filter = 'Transfer';
  const listener = (from, to, value, event) => {
    try {
      events.push({ from, to, value, log: event.log.toJSON() });
    } catch (error) {
      events.push({ error: `${error.message}; payload keys ${Object.keys(event ?? {})}`, log: {} });
    }
  };
  await contract.on(filter, listener);
  await new Promise((ok) => setTimeout(ok, 1500));
  const to = devAccounts[0].address;
  const { result: tx, attempts } = await sendRetrying(() => contract.transfer(to, 1n));
  const receipt = await within(tx.wait(), 120_000, 'tx.wait()');
  const anvilReceipt = await ethersAnvil.getTransactionReceipt(tx.hash);
  const transaction = await ethers.getTransaction(tx.hash);
  const anvilTransaction = await ethersAnvil.getTransaction(tx.hash);
  const seen = await within((async () => {
    for (;;) {
      const event = events.find((e) => e.error || e.log.transactionHash === tx.hash);
      if (event?.error) throw new Error(`contract.on listener: ${event.error}`);
      if (event) return event;
      await new Promise((ok) => setTimeout(ok, 200));
    }
  })(), 60_000, "contract.on('Transfer')");
  await contract.off(filter, listener);
  // The same log as ethers formats an eth_getLogs answer from anvil (receipt logs lack `removed`).
  const anvilLogs = await ethersAnvil.getLogs({ blockHash: receipt.blockHash, address: token.address });
  return plain({
    from: wallet.address, hash: tx.hash, attempts,
    receipt: receipt.toJSON(), anvilReceipt: anvilReceipt.toJSON(),
    transaction: transaction.toJSON(), anvilTransaction: anvilTransaction.toJSON(),
    seen, anvilLog: anvilLogs.find((l) => l.transactionHash === tx.hash)?.toJSON(),
  });
}

// --- the test ---------------------------------------------------------------------------------

test('viem and ethers v6 on the provider agree with anvil in Chromium', { timeout: 600_000 }, async (t) => {
  if (skipUnless(t, missing(['playwright-core', 'esbuild', 'viem', 'ethers']))) return;
  const devnet = JSON.parse(devnetJson());
  const config = providerConfig(devnet);
  const pageDevnet = { chainId: devnet.chainId, rpcUrl: devnet.rpcUrl, token: { address: devnet.token.address, abi: devnet.token.abi }, devAccounts: devnet.devAccounts.slice(0, 3) };
  const libsJs = await bundleForBrowser(LIBS_ENTRY);
  const { chromium } = await import('playwright-core');
  const server = await servePkg({ title: 'ulc libs test' });
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  t.after(async () => {
    await browser.close();
    server.close();
  });
  const page = await browser.newPage();
  const pageErrors = [];
  page.on('pageerror', (error) => pageErrors.push(error.message));
  // ethers reports a failed subscriber poll only on the console ("@TODO", error).
  const consoleLines = [];
  page.on('console', (message) => consoleLines.push(`${message.type()}: ${message.text()}`.slice(0, 2000)));
  await page.route('**/libs.js', (route) => route.fulfill({ status: 200, contentType: 'text/javascript', body: libsJs }));
  await page.goto(`http://127.0.0.1:${server.address().port}/`);
  await page.evaluate(pageSetup, { config, devnet: pageDevnet });

  /** Runs a page step; on failure, adds the provider's failed requests to the error. */
  const step = async (fn) => {
    try {
      return await page.evaluate(fn);
    } catch (error) {
      const { failures, filterTrace } = await page.evaluate(() => ({ failures: window.t.failures, filterTrace: window.t.filterTrace })).catch(() => ({}));
      error.message += `\nprovider requests that failed so far: ${JSON.stringify(failures, null, 1)}`;
      error.message += `\nlog-filter requests (non-empty answers): ${JSON.stringify(filterTrace, null, 1)}`;
      error.message += `\npage console: ${JSON.stringify(consoleLines.slice(-20), null, 1)}`;
      throw error;
    }
  };
  const log = (what, value) => t.diagnostic(`${what}: ${JSON.stringify(value)}`);

  await t.test('viem: getBlockNumber, getBlock, getBalance, readContract, estimateGas', async () => {
    const r = await step(pageViemReads);
    const head = BigInt(r.blockNumber.slice(0, -1));
    assert.ok(head > 0n && head <= BigInt(r.anvilBlockNumber.slice(0, -1)) + 1n, `head ${r.blockNumber} vs anvil ${r.anvilBlockNumber}`);
    assert.deepEqual(without(r.block, BLOCK_DIFFS), without(r.anvilBlock, BLOCK_DIFFS), `getBlock(${r.blockNumber})`);
    assert.equal(r.block.totalDifficulty, null);
    assert.equal(Number(big(r.block.size)), await blockRlpSize(devnet.rpcUrl, big(r.blockNumber)), 'block size = RLP length');
    const estimates = ['estimateTransfer', 'estimateEth'];
    assert.deepEqual(without(r.ours, estimates), without(r.anvil, estimates), `reads at block ${r.blockNumber}`);
    assertEstimate(r.ours.estimateTransfer, r.anvil.estimateTransfer, 'estimateGas(token transfer)');
    assert.equal(r.ours.estimateEth, r.anvil.estimateEth, 'estimateGas(ETH transfer)');
    assert.equal(r.ours.totalSupply, `${devnet.token.totalSupply}n`);
    assert.equal(r.latestBalance.stable, true, 'the head stood still around a latest read');
    assert.equal(r.latestBalance.value, r.anvilLatestBalance, `balanceOf at latest = at head ${r.latestBalance.head}`);
    log('viem estimateGas (transfer, eth)', [r.ours.estimateTransfer, r.ours.estimateEth]);
  });

  await t.test('viem: a locally signed token transfer, its receipt, watchContractEvent', async () => {
    const r = await step(pageViemSend);
    if (r.attempts.length) log('viem send retried after', r.attempts);
    assert.equal(r.receipt.status, 'success');
    assert.deepEqual(without(r.receipt, RECEIPT_DIFFS), without(r.anvilReceipt, RECEIPT_DIFFS), 'waitForTransactionReceipt = anvil receipt');
    if (r.receipt.blockTimestamp === undefined && r.anvilReceipt.blockTimestamp !== undefined) log('receipt lacks blockTimestamp (anvil has it)', r.anvilReceipt.blockTimestamp);
    assert.deepEqual(r.transaction, r.anvilTransaction, 'getTransaction = anvil');
    assert.equal(r.seen.error, undefined, `watchContractEvent error: ${r.seen.error}`);
    assert.deepEqual(without(r.seen, ['args', 'eventName']), r.anvilLog, 'the watched Transfer log = anvil receipt log');
    assert.equal(r.seen.eventName, 'Transfer');
    assert.equal(r.seen.args.from.toLowerCase(), r.from.toLowerCase());
    assert.equal(r.seen.args.value, '1n');
  });

  await t.test('viem: watchBlocks sees a new block', async () => {
    const r = await step(pageViemWatchBlocks);
    assert.deepEqual(r.errors, []);
    assert.ok(BigInt(r.block.number.slice(0, -1)) > BigInt(r.start.slice(0, -1)));
    assert.deepEqual(without(r.block, BLOCK_DIFFS), without(r.anvilBlock, BLOCK_DIFFS), `watched block ${r.block.number}`);
    assert.equal(Number(big(r.block.size)), await blockRlpSize(devnet.rpcUrl, big(r.block.number)), 'block size = RLP length');
  });

  await t.test('ethers: BrowserProvider reads, Contract reads, estimateGas', async () => {
    const r = await step(pageEthersReads);
    assert.equal(r.chainId, `${devnet.chainId}n`);
    assert.ok(r.blockNumber > 0 && r.blockNumber <= r.anvilBlockNumber + 1, `head ${r.blockNumber} vs anvil ${r.anvilBlockNumber}`);
    assert.deepEqual(r.ours, r.anvil, `reads at block ${r.blockNumber}`);
    assert.equal(r.estimate.stable, true, 'the head stood still around estimateGas');
    assertEstimate(r.estimate.value, r.anvilEstimate, `estimateGas at head ${r.estimate.head}`);
  });

  await t.test("ethers: Wallet sends a token transfer, tx.wait(), contract.on('Transfer')", async () => {
    const r = await step(pageEthersSend);
    if (r.attempts.length) log('ethers send retried after', r.attempts);
    assert.equal(r.receipt.status, 1);
    assert.deepEqual(without(r.receipt, RECEIPT_DIFFS), without(r.anvilReceipt, RECEIPT_DIFFS), 'tx.wait() receipt = anvil receipt');
    assert.deepEqual(r.transaction, r.anvilTransaction, 'getTransaction = anvil');
    assert.equal(r.seen.from.toLowerCase(), r.from.toLowerCase());
    assert.equal(r.seen.value, '1n');
    assert.deepEqual(r.seen.log, r.anvilLog, 'the Transfer event log = anvil receipt log');
  });

  const counts = await page.evaluate(() => window.t.counts);
  const failures = await page.evaluate(() => window.t.failures);
  log('provider requests by method', counts);
  log('provider requests that failed', failures);
  // The only failures a library may see: eth_fillTransaction (-32601, viem then stops asking) and
  // a send refused for a nonce taken by the devnet's trickle (-32003, retried).
  const unexpected = failures.filter((f) => !(f.method === 'eth_fillTransaction' && f.code === -32601)
    && !(f.method === 'eth_sendRawTransaction' && /nonce|underpriced|already known|replacement/i.test(f.message)));
  assert.deepEqual(unexpected, [], 'no other provider request failed');
  assert.deepEqual(pageErrors, [], 'no uncaught page errors');
  await page.evaluate(() => window.t.raw.close());
});
