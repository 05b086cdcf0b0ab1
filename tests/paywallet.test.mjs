// Paying through a wallet (EIP-1193) with a delegated cheque signer, seen from a browser: one
// dedicated lesd on the devnet's anvil accepting cheques on the devnet's PaymentChannel, one
// les-bridge for it, and a headless Chromium page loading the npm package (pkg/) as a dapp
// would, configured with `payment: {wallet, policy}`. The wallet stands in for MetaMask: a
// minimal EIP-1193 object built in the page from ethers v6 with a funded anvil account,
// sending straight to anvil's RPC. The test checks:
//   - the client asks the wallet for its account and for exactly one transaction (the
//     `open`), and never for a signature: cheques are signed by the client's session key;
//   - ulc_openChannel opens the channel and the page reaches the paid class at the target
//     capacity (its ulc_serviceStatus and lesd's les_clientInfo agree);
//   - on anvil, the channel's payer is the wallet's account and its signer is another address
//     (the session key the status reports);
//   - a configuration with both a key and a wallet is refused with the reason.
//
// Needs pkg/ built, a devnet (ULC_DEVNET_JSON or ULC_DEVNET_DIR, as scripts/test.sh gives),
// target/release/lesd and les-bridge, and /usr/bin/chromium; without them the test skips with
// the reason, and fails under CI=true.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { servePkg } from '../scripts/serve-pkg.mjs';
import { freePort, rpc, startChild, until } from './support/children.mjs';
import { CHROMIUM, CHROMIUM_ARGS, devnetJson, missing, skipUnless, bundleForBrowser } from './support/browser.mjs';

const ROOT = resolve(fileURLToPath(import.meta.url), '../..');
const LESD = join(ROOT, 'target/release/lesd');
const BRIDGE = join(ROOT, 'target/release/les-bridge');
const CHANNEL_ABI = JSON.parse(readFileSync(join(ROOT, 'contracts/artifacts/PaymentChannel.json'), 'utf8')).abi;

const MIN_CAPACITY = 16_000;
const TOTAL_CAPACITY = 6 * MIN_CAPACITY;
/** What the wallet's client buys: more than a free client gets. */
const TARGET_CAPACITY = 3 * MIN_CAPACITY;
/** 0.1 ether. */
const DEPOSIT = '0x16345785d8a0000';

/** What the page imports from /libs.js: ethers, to build its stand-in wallet. */
const LIBS_ENTRY = "export { JsonRpcProvider, Wallet } from 'ethers';\n";

test('a wallet funds the channel, a session key signs its cheques, and the client is served in the paid class', { timeout: 300_000 }, async (t) => {
  const why = missing() ?? [LESD, BRIDGE].filter((bin) => !existsSync(bin)).map((bin) => `${bin} is not built (cargo build --release -p lesd -p les-bridge)`)[0];
  if (skipUnless(t, why ?? null)) return;
  const devnet = JSON.parse(devnetJson());
  const { chromium } = await import('playwright-core');
  const { Interface, Wallet } = await import('ethers');

  // The dedicated server.
  const dir = mkdtempSync(join(tmpdir(), 'ulc-paywallet-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'payee.key'), randomBytes(32).toString('hex'), { mode: 0o600 });
  const [lesPort, adminPort] = [await freePort(), await freePort()];
  const admin = `http://127.0.0.1:${adminPort}/`;
  const { line: enode } = await startChild(t, LESD, [
    '--upstream', devnet.rpcUrl, '--datadir', join(dir, 'lesd'), '--listen', `127.0.0.1:${lesPort}`,
    '--poll-interval-ms', '200', '--total-capacity', String(TOTAL_CAPACITY), '--min-capacity', String(MIN_CAPACITY),
    '--channel-contract', devnet.paymentChannel.address, '--payee-key', join(dir, 'payee.key'), '--tokens-per-wei', '1/1',
    '--accept-margin-secs', '120', '--redeem-margin-secs', '60', '--confirmations', '0', '--admin', `127.0.0.1:${adminPort}`,
  ]);
  assert.match(enode, /^enode:\/\/[0-9a-f]{128}@127\.0\.0\.1:\d+$/);
  const { line: bridgeLine } = await startChild(t, BRIDGE, ['--listen', '127.0.0.1:0', '--allow', `127.0.0.1:${lesPort}`]);
  const bridge = `${bridgeLine.replace(/\/$/, '')}/127.0.0.1:${lesPort}`;

  // The wallet's account: a fresh key, funded on anvil (so no other devnet sender shares its nonces).
  const walletKey = `0x${randomBytes(32).toString('hex')}`;
  const walletAddress = new Wallet(walletKey).address;
  await rpc(devnet.rpcUrl, 'anvil_setBalance', [walletAddress, '0x56bc75e2d63100000']);

  const config = {
    chainId: devnet.chainId,
    genesisHash: devnet.genesisHash,
    servers: [{ enode, bridge }],
    fraction: 100,
    storage: 'memory',
  };
  const policy = { budgetWei: DEPOSIT, targetCapacity: TARGET_CAPACITY, lowBalanceSecs: 60, topUpSecs: 600 };

  const libsJs = await bundleForBrowser(LIBS_ENTRY);
  const server = await servePkg({ title: 'ulc paywallet test' });
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  t.after(async () => {
    await browser.close();
    server.close();
  });
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (error) => errors.push(error.message));
  await page.route('**/libs.js', (route) => route.fulfill({ status: 200, contentType: 'text/javascript', body: libsJs }));
  await page.goto(`http://127.0.0.1:${server.address().port}/`);

  const refused = await page.evaluate(async ([c, key, rpcUrl, chainId, pol]) => {
    const { JsonRpcProvider, Wallet } = await import('/libs.js');
    const { createProvider } = await import('/pkg/index.js');
    // The stand-in for MetaMask: EIP-1193 request() over an ethers Wallet on anvil. It
    // records every method it is asked, and knows nothing but accounts, chain and sending.
    const signer = new Wallet(key, new JsonRpcProvider(rpcUrl, chainId, { staticNetwork: true }));
    const asked = [];
    const wallet = {
      async request({ method, params }) {
        asked.push(method);
        switch (method) {
          case 'eth_requestAccounts':
          case 'eth_accounts':
            return [signer.address];
          case 'eth_chainId':
            return `0x${chainId.toString(16)}`;
          case 'eth_sendTransaction': {
            const [tx] = params;
            if (tx.from.toLowerCase() !== signer.address.toLowerCase()) {
              throw Object.assign(new Error(`unknown account ${tx.from}`), { code: 4100 });
            }
            const sent = await signer.sendTransaction({ to: tx.to, value: BigInt(tx.value), data: tx.data, gasLimit: BigInt(tx.gas) });
            return sent.hash;
          }
          default:
            throw Object.assign(new Error(`${method} is not supported`), { code: 4200 });
        }
      },
    };
    window.walletAsked = asked;
    const both = await createProvider({ ...c, payment: { key: `0x${'11'.repeat(32)}`, wallet } }).then(() => 'resolved', (e) => e.message);
    const provider = await createProvider({ ...c, payment: { wallet, policy: pol } });
    window.ulcProvider = provider;
    await provider.request({ method: 'eth_blockNumber' });
    return both;
  }, [config, walletKey, devnet.rpcUrl, devnet.chainId, policy]);
  assert.match(refused, /key and wallet are mutually exclusive/);

  const request = (method, params = []) =>
    page.evaluate(([m, p]) => window.ulcProvider.request({ method: m, params: p }), [method, params]);
  const status = await until('price list with the channel receiver', async () => {
    const s = await request('ulc_serviceStatus');
    return { ok: s.servers[0]?.prices?.channel, value: s };
  });
  assert.equal(status.payments, true);
  assert.equal(status.payer, null, 'the wallet is not asked before a channel is opened');
  await until('the client sees the wallet\'s funds', async () => {
    const balance = await request('eth_getBalance', [walletAddress, 'latest']).catch((e) => e.message);
    return { ok: balance === '0x56bc75e2d63100000', value: balance };
  });

  const serverNode = status.servers[0].nodeId;
  const opened = await request('ulc_openChannel', [{ server: serverNode, depositWei: DEPOSIT, lifetimeSecs: 3600 }]);
  assert.equal(BigInt(opened.depositWei), BigInt(DEPOSIT));
  const asked = await page.evaluate(() => [...window.walletAsked]);
  assert.deepEqual(asked, ['eth_requestAccounts', 'eth_chainId', 'eth_sendTransaction'], 'one transaction, no signatures');

  // On anvil: the wallet's account paid, another key signs.
  const channelAbi = new Interface(CHANNEL_ABI);
  const data = channelAbi.encodeFunctionData('channels', [opened.channelId]);
  const raw = await rpc(devnet.rpcUrl, 'eth_call', [{ to: devnet.paymentChannel.address, data }, 'latest']);
  const onChain = channelAbi.decodeFunctionResult('channels', raw);
  assert.equal(onChain.payer, walletAddress, 'the payer is the wallet\'s account');
  assert.equal(onChain.signer.toLowerCase(), opened.signer.toLowerCase(), 'the signer is the client\'s session key');
  assert.notEqual(onChain.signer, onChain.payer);
  assert.equal(onChain.deposit, BigInt(DEPOSIT));
  const receipt = await rpc(devnet.rpcUrl, 'eth_getTransactionReceipt', [opened.transactionHash]);
  assert.equal(receipt.from.toLowerCase(), walletAddress.toLowerCase());

  // Paid service under the configured policy, and lesd agrees.
  const paid = await until('the client in the paid class at the target', async () => {
    const e = (await request('ulc_serviceStatus')).servers[0];
    return { ok: e.class === 'paid' && Number(e.capacity) === TARGET_CAPACITY && e.channel?.acceptedWei !== '0x0', value: e };
  });
  assert.equal(paid.channel.pending, false);
  assert.equal(paid.channel.signer, opened.signer);
  const after = await request('ulc_serviceStatus');
  assert.equal(after.payer.toLowerCase(), walletAddress.toLowerCase());
  assert.deepEqual(after.openings, [], 'the opening record became the channel');
  await until('lesd serving the client in the paid class', async () => {
    const now = Object.values(await rpc(admin, 'les_clientInfo', [[]])).filter((c) => c.isConnected);
    return { ok: now.length === 1 && now[0].priorityClass === 'paid' && Number(now[0].capacity) === TARGET_CAPACITY, value: now };
  });
  assert.deepEqual(await page.evaluate(() => [...window.walletAsked]), asked, 'paying asked the wallet nothing more');
  assert.deepEqual(errors, []);
});
