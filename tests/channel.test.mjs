// Tests of contracts/PaymentChannel.sol on a real anvil started here (research note §7.2,
// §8 items 23 and 24): the committed artifact, the committed EIP-712 cheque vector that the Rust
// cheque code is checked against, and every contract rule with real transactions. Rejections are
// mined as real reverted transactions (gas given, so no estimate stops them first) and the
// custom error is read back from anvil's call trace, so each test names the rule that fired.
// Balances are compared block by block with gas accounted, so payments are checked to the wei.
//
//   node --test tests/channel.test.mjs
//   WRITE_CHEQUE_VECTOR=1 node --test tests/channel.test.mjs   # rewrite contracts/test-vectors/cheque.json
//
// Without anvil the anvil tests skip with the reason; under CI=true they fail instead.

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { createServer } from 'node:net';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  createPublicClient,
  createWalletClient,
  decodeErrorResult,
  encodeAbiParameters,
  encodePacked,
  getAddress,
  getContractAddress,
  hashDomain,
  hashStruct,
  hashTypedData,
  http,
  keccak256,
  parseEther,
  parseEventLogs,
  parseSignature,
  recoverTypedDataAddress,
  toHex,
} from 'viem';
import { generatePrivateKey, mnemonicToAccount, privateKeyToAccount } from 'viem/accounts';
import { foundry } from 'viem/chains';
import { skipUnless } from './support/browser.mjs';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const ANVIL = join(ROOT, 'node_modules/.bin/anvil');
const ARTIFACT = JSON.parse(readFileSync(join(ROOT, 'contracts/artifacts/PaymentChannel.json'), 'utf8'));
const { abi: ABI } = ARTIFACT;
const VECTOR_PATH = join(ROOT, 'contracts/test-vectors/cheque.json');
const ANVIL_READY_MS = 20_000;

// anvil's well-known dev mnemonic and account #0's key (public knowledge, worthless off devnets).
const MNEMONIC = 'test test test test test test test test test test test junk';
const KEY0 = '0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80';
const CHAIN_ID = 31337;
const MIN_LIFETIME = 3600n;
const HOUR = 3600n;
/** secp256k1 group order. */
const N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;
/** Gas limit for every transaction, so a doomed one is mined (and reverts) instead of failing estimation. */
const GAS = 400_000n;
const ZERO = '0x0000000000000000000000000000000000000000';

const CHEQUE_TYPES = {
  Cheque: [
    { name: 'channelId', type: 'bytes32' },
    { name: 'payee', type: 'address' },
    { name: 'cumulativeAmount', type: 'uint256' },
  ],
};

// --- the cheque vector --------------------------------------------------------------------

/** The id `open` assigns: keccak256(abi.encode(chainid, contract, payer, payee, nonce)). */
function channelIdOf(chainId, contract, payer, payee, nonce) {
  return keccak256(encodeAbiParameters(
    [{ type: 'uint256' }, { type: 'address' }, { type: 'address' }, { type: 'address' }, { type: 'uint64' }],
    [BigInt(chainId), contract, payer, payee, BigInt(nonce)],
  ));
}

/**
 * The committed vector, rebuilt from its inputs: account #0 pays anvil account #1 through the
 * first channel it opens on the first contract account #0 deploys on a fresh anvil chain, so the
 * on-chain test below can open that very channel and redeem this very signature.
 */
async function buildChequeVector() {
  const signer = privateKeyToAccount(KEY0);
  const verifyingContract = getContractAddress({ from: signer.address, nonce: 0n });
  const payee = mnemonicToAccount(MNEMONIC, { addressIndex: 1 }).address;
  const domain = { name: 'LesPaymentChannel', version: '1', chainId: CHAIN_ID, verifyingContract };
  const message = {
    channelId: channelIdOf(CHAIN_ID, verifyingContract, signer.address, payee, 0),
    payee,
    cumulativeAmount: 1234567890123456789n,
  };
  const signature = await signer.signTypedData({ domain, types: CHEQUE_TYPES, primaryType: 'Cheque', message });
  return {
    description: 'EIP-712 cheque of contracts/PaymentChannel.sol, signed with anvil account #0 key '
      + `${KEY0} (RFC 6979 nonces, so deterministic); regenerated and checked by tests/channel.test.mjs`,
    privateKey: KEY0,
    domain,
    message: { ...message, cumulativeAmount: message.cumulativeAmount.toString() },
    domainSeparator: hashDomain({ domain, types: { EIP712Domain: eip712DomainFields() } }),
    typeHash: keccak256(toHex('Cheque(bytes32 channelId,address payee,uint256 cumulativeAmount)')),
    structHash: hashStruct({ data: message, primaryType: 'Cheque', types: CHEQUE_TYPES }),
    digest: hashTypedData({ domain, types: CHEQUE_TYPES, primaryType: 'Cheque', message }),
    signature,
    signer: signer.address,
  };
}

function eip712DomainFields() {
  return [
    { name: 'name', type: 'string' },
    { name: 'version', type: 'string' },
    { name: 'chainId', type: 'uint256' },
    { name: 'verifyingContract', type: 'address' },
  ];
}

/** The vector's hashes by hand (abi.encode + keccak256, as the contract does), not via viem's EIP-712 code. */
function handHashes(vector) {
  const domainSeparator = keccak256(encodeAbiParameters(
    [{ type: 'bytes32' }, { type: 'bytes32' }, { type: 'bytes32' }, { type: 'uint256' }, { type: 'address' }],
    [
      keccak256(toHex('EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)')),
      keccak256(toHex(vector.domain.name)),
      keccak256(toHex(vector.domain.version)),
      BigInt(vector.domain.chainId),
      vector.domain.verifyingContract,
    ],
  ));
  const structHash = keccak256(encodeAbiParameters(
    [{ type: 'bytes32' }, { type: 'bytes32' }, { type: 'address' }, { type: 'uint256' }],
    [vector.typeHash, vector.message.channelId, vector.message.payee, BigInt(vector.message.cumulativeAmount)],
  ));
  const digest = keccak256(encodePacked(['bytes2', 'bytes32', 'bytes32'], ['0x1901', domainSeparator, structHash]));
  return { domainSeparator, structHash, digest };
}

// --- anvil --------------------------------------------------------------------------------

function anvilMissing() {
  return existsSync(ANVIL) ? null : `${ANVIL} is missing (npm ci, or bash scripts/setup.sh)`;
}

function freePort() {
  return new Promise((ok, fail) => {
    const server = createServer();
    server.once('error', fail);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => ok(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
let anvilChild = null;
let chainPromise = null;
const gasUsed = {};

after(() => {
  if (Object.keys(gasUsed).length > 0) console.log(`# PaymentChannel gas used (receipts): ${JSON.stringify(gasUsed)}`);
  anvilChild?.kill('SIGKILL');
});

/** Starts anvil on a free port (retrying if someone takes the port first). */
async function startAnvil() {
  for (let attempt = 0; ; attempt++) {
    const port = await freePort();
    const child = spawn(ANVIL, ['--host', '127.0.0.1', '--port', String(port), '--chain-id', String(CHAIN_ID)], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    let exited = null;
    child.stderr.on('data', (d) => (stderr += d));
    child.once('exit', (code, signal) => (exited = { code, signal }));
    const url = `http://127.0.0.1:${port}`;
    const deadline = Date.now() + ANVIL_READY_MS;
    while (!exited) {
      try {
        const r = await fetch(url, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'eth_chainId', params: [] }),
        });
        if ((await r.json()).result) return { child, url };
      } catch {
        // not up yet
      }
      if (Date.now() > deadline) {
        child.kill('SIGKILL');
        assert.fail(`anvil did not answer on ${url} within ${ANVIL_READY_MS / 1000} s:\n${stderr}`);
      }
      await sleep(50);
    }
    if (attempt >= 3) assert.fail(`anvil exited (${JSON.stringify(exited)}):\n${stderr}`);
  }
}

/**
 * One anvil chain for the whole file, with two PaymentChannel deployments: `vectorChannel`,
 * account #0's first transaction (so it sits at the cheque vector's verifyingContract, and
 * account #0 sends nothing else but the vector test's open), and `channel`, used by the rest.
 * Tests take channel ids from the Opened events, so none depends on another's nonces.
 */
function devchain() {
  chainPromise ??= (async () => {
    const { child, url } = await startAnvil();
    anvilChild = child;
    const transport = http(url);
    const pub = createPublicClient({ chain: foundry, transport, pollingInterval: 50 });
    const accounts = Array.from({ length: 10 }, (_, i) => mnemonicToAccount(MNEMONIC, { addressIndex: i }));
    assert.deepEqual(accounts.map((a) => a.address.toLowerCase()), await pub.request({ method: 'eth_accounts' }),
      'the mnemonic yields anvil\'s dev accounts');
    const wallets = accounts.map((account) => createWalletClient({ chain: foundry, transport, account }));
    const deploy = async (wallet, minLifetime = MIN_LIFETIME) => {
      const hash = await wallet.deployContract({ abi: ABI, bytecode: ARTIFACT.bytecode, args: [minLifetime] });
      const receipt = await pub.waitForTransactionReceipt({ hash });
      assert.equal(receipt.status, 'success', 'PaymentChannel deploys');
      gasUsed.deploy = Number(receipt.gasUsed);
      return getAddress(receipt.contractAddress);
    };
    const vectorChannel = await deploy(wallets[0]);
    const channel = await deploy(wallets[9]);
    return { url, pub, accounts, wallets, vectorChannel, channel, deploy };
  })();
  return chainPromise;
}

/** The devchain, or null after skipping `t` (failing it under CI=true) when anvil is missing. */
async function chainOrSkip(t) {
  if (skipUnless(t, anvilMissing())) return null;
  return devchain();
}

// --- transactions and their outcome -------------------------------------------------------

/** Sends `functionName(args)` to `address` from `wallet` with a fixed gas limit; returns the receipt. */
async function send(c, wallet, functionName, args = [], { value = 0n, address = c.channel } = {}) {
  const hash = await wallet.writeContract({ address, abi: ABI, functionName, args, value, gas: GAS });
  return c.pub.waitForTransactionReceipt({ hash });
}

/** Like `send`, but the transaction must succeed. */
async function ok(c, wallet, functionName, args, opts) {
  const receipt = await send(c, wallet, functionName, args, opts);
  if (receipt.status !== 'success') {
    const { errorName, args: errArgs } = await revertOf(c, receipt);
    assert.fail(`${functionName} reverted with ${errorName}(${errArgs?.join(', ') ?? ''})`);
  }
  return receipt;
}

/** The custom error a mined, reverted transaction ended with (from anvil's call trace). */
async function revertOf(c, receipt) {
  const trace = await c.pub.request({ method: 'debug_traceTransaction', params: [receipt.transactionHash, { tracer: 'callTracer' }] });
  assert.ok(trace.output && trace.output !== '0x', `revert data in the trace of ${receipt.transactionHash}`);
  return decodeErrorResult({ abi: ABI, data: trace.output });
}

/** Sends the call, which must be mined and revert with `errorName` (and `errorArgs`, if given). */
async function reverts(c, wallet, functionName, args, errorName, errorArgs, opts) {
  const receipt = await send(c, wallet, functionName, args, opts);
  assert.equal(receipt.status, 'reverted', `${functionName} must revert with ${errorName}`);
  const decoded = await revertOf(c, receipt);
  assert.equal(decoded.errorName, errorName, `${functionName} reverted with the expected error`);
  if (errorArgs) assert.deepEqual(decoded.args ?? [], errorArgs);
  return decoded;
}

async function readChannel(c, id, address = c.channel) {
  const [payer, payee, deposit, paidOut, expiry, closed, signer] = await c.pub.readContract({ address, abi: ABI, functionName: 'channels', args: [id] });
  return { payer, payee, deposit, paidOut, expiry, closed, signer };
}

/** Balance change of `who` over the block that mined `receipt`. */
async function delta(c, who, receipt) {
  const [before, afterwards] = await Promise.all([
    c.pub.getBalance({ address: who, blockNumber: receipt.blockNumber - 1n }),
    c.pub.getBalance({ address: who, blockNumber: receipt.blockNumber }),
  ]);
  return afterwards - before;
}

const gasCost = (receipt) => receipt.gasUsed * receipt.effectiveGasPrice;

async function latestTimestamp(c) {
  return (await c.pub.getBlock()).timestamp;
}

/** Pins the next block's timestamp (anvil mines one block per transaction). */
async function nextBlockAt(c, timestamp) {
  await c.pub.request({ method: 'evm_setNextBlockTimestamp', params: [toHex(timestamp)] });
}

/**
 * Opens a channel whose cheques `signer` signs (by default the payer itself) and returns its id
 * (from the Opened event) and the receipt.
 */
async function openChannel(c, payer, payee, deposit, expiry, address = c.channel, signer = payer.account.address) {
  const receipt = await ok(c, payer, 'open', [payee.account.address, signer, expiry], { value: deposit, address });
  const [opened] = parseEventLogs({ abi: ABI, logs: receipt.logs, eventName: 'Opened' });
  return { id: opened.args.id, receipt, opened };
}

/** A cheque signed by `signer`, by default valid for `channel` under anvil's chain id. */
function signCheque(signer, id, payee, cumulative, { chainId = CHAIN_ID, verifyingContract } = {}) {
  return signer.signTypedData({
    domain: { name: 'LesPaymentChannel', version: '1', chainId, verifyingContract },
    types: CHEQUE_TYPES,
    primaryType: 'Cheque',
    message: { channelId: id, payee, cumulativeAmount: cumulative },
  });
}

/** A fresh channel from `wallets[payer]` to `wallets[payee]` with `deposit`, expiring in two hours. */
async function freshChannel(c, payer, payee, deposit) {
  const expiry = (await latestTimestamp(c)) + 2n * HOUR;
  const { id, receipt } = await openChannel(c, c.wallets[payer], c.wallets[payee], deposit, expiry);
  const payerAccount = c.accounts[payer];
  const payeeAddress = c.accounts[payee].address;
  const cheque = (cumulative, opts = {}) => signCheque(payerAccount, id, payeeAddress, cumulative, { verifyingContract: c.channel, ...opts });
  return { id, expiry, receipt, cheque, payer: payerAccount.address, payee: payeeAddress };
}

// --- tests --------------------------------------------------------------------------------

test('committed PaymentChannel artifact equals a fresh compile with the pinned solc', () => {
  const check = spawnSync(process.execPath, [join(ROOT, 'scripts/compile-contracts.mjs'), '--check'], { encoding: 'utf8' });
  assert.equal(check.status, 0, `compile-contracts --check failed:\n${check.stderr}`);
  assert.match(check.stdout, /PaymentChannel\.json matches a fresh compile/);
  assert.match(check.stdout, /DemoToken\.json matches a fresh compile/);
  const pinned = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).devDependencies.solc;
  assert.ok(ARTIFACT.solcVersion.startsWith(`${pinned}+`), `artifact built by solc ${pinned}`);
  // The interface of wire.md, by signature: a rename or a changed type shows up here.
  for (const fn of ['open(address,address,uint64)', 'topUp(bytes32)', 'extend(bytes32,uint64)', 'redeem(bytes32,uint256,bytes)',
    'close(bytes32,uint256,bytes)', 'reclaim(bytes32)', 'channels(bytes32)', 'nonces(address)',
    'chequeDigest(bytes32,address,uint256)', 'DOMAIN_SEPARATOR()', 'MIN_LIFETIME()', 'CHEQUE_TYPEHASH()']) {
    assert.ok(ARTIFACT.methodIdentifiers[fn], `function ${fn}`);
  }
  const channels = ABI.find((e) => e.type === 'function' && e.name === 'channels');
  assert.deepEqual(channels.outputs.map((o) => `${o.type} ${o.name}`),
    ['address payer', 'address payee', 'uint128 deposit', 'uint128 paidOut', 'uint64 expiry', 'bool closed', 'address signer']);
  const events = Object.fromEntries(ABI.filter((e) => e.type === 'event')
    .map((e) => [e.name, e.inputs.map((i) => `${i.type}${i.indexed ? ' indexed' : ''}`).join(',')]));
  assert.deepEqual(events, {
    Opened: 'bytes32 indexed,address indexed,address indexed,uint256,uint64,address',
    ToppedUp: 'bytes32 indexed,uint256',
    Extended: 'bytes32 indexed,uint64',
    Redeemed: 'bytes32 indexed,uint256',
    Closed: 'bytes32 indexed,uint256,uint256',
  });
  assert.ok(!ABI.some((e) => e.type === 'receive' || e.type === 'fallback'), 'ETH only enters through open and topUp');
});

test('cheque vector: regenerated from the fixed key, it equals the committed file', async () => {
  const vector = await buildChequeVector();
  if (process.env.WRITE_CHEQUE_VECTOR === '1') {
    mkdirSync(dirname(VECTOR_PATH), { recursive: true });
    writeFileSync(VECTOR_PATH, `${JSON.stringify(vector, null, 2)}\n`);
  }
  const committed = JSON.parse(readFileSync(VECTOR_PATH, 'utf8'));
  assert.deepEqual(committed, vector, 'run WRITE_CHEQUE_VECTOR=1 node --test tests/channel.test.mjs to rewrite it');

  // The vector is self-consistent by a second route: hashes by hand, the signature recovers to
  // the signer, and it has the form the contract demands (65 bytes, low s, v 27/28).
  assert.deepEqual(handHashes(committed), {
    domainSeparator: committed.domainSeparator,
    structHash: committed.structHash,
    digest: committed.digest,
  });
  assert.equal(committed.domain.chainId, CHAIN_ID);
  assert.equal(committed.signer, privateKeyToAccount(committed.privateKey).address);
  const recovered = await recoverTypedDataAddress({
    domain: committed.domain,
    types: CHEQUE_TYPES,
    primaryType: 'Cheque',
    message: { ...committed.message, cumulativeAmount: BigInt(committed.message.cumulativeAmount) },
    signature: committed.signature,
  });
  assert.equal(recovered, committed.signer);
  assert.match(committed.signature, /^0x[0-9a-f]{130}$/);
  const { s, v } = parseSignature(committed.signature);
  assert.ok(BigInt(s) <= N / 2n, 'low s');
  assert.ok(v === 27n || v === 28n, `v is 27 or 28 (${v})`);
  assert.match(committed.message.cumulativeAmount, /^[0-9]+$/, 'cumulativeAmount as a decimal string');
});

test('on-chain: the deployed contract agrees with the cheque vector and redeems its signature', async (t) => {
  const c = await chainOrSkip(t);
  if (!c) return;
  const vector = JSON.parse(readFileSync(VECTOR_PATH, 'utf8'));
  assert.equal(c.vectorChannel, getAddress(vector.domain.verifyingContract), 'account #0\'s first deployment');
  const read = (functionName, args = [], address = c.vectorChannel) => c.pub.readContract({ address, abi: ABI, functionName, args });
  const { channelId, payee, cumulativeAmount } = vector.message;
  assert.equal(await read('DOMAIN_SEPARATOR'), vector.domainSeparator);
  assert.equal(await read('CHEQUE_TYPEHASH'), vector.typeHash);
  assert.equal(await read('chequeDigest', [channelId, payee, BigInt(cumulativeAmount)]), vector.digest);

  // Any address: chequeDigest is the EIP-712 digest for the contract it is asked on.
  const other = { channelId: keccak256(toHex('another channel')), payee: c.accounts[7].address, cumulativeAmount: 10n ** 30n };
  assert.equal(
    await read('chequeDigest', [other.channelId, other.payee, other.cumulativeAmount], c.channel),
    hashTypedData({
      domain: { name: 'LesPaymentChannel', version: '1', chainId: CHAIN_ID, verifyingContract: c.channel },
      types: CHEQUE_TYPES,
      primaryType: 'Cheque',
      message: other,
    }),
  );
  assert.notEqual(await read('DOMAIN_SEPARATOR', [], c.channel), vector.domainSeparator, 'the domain binds the contract');

  // The vector's channel is account #0's first channel to account #1: open it and redeem the
  // committed signature, submitted by a third account.
  const expiry = (await latestTimestamp(c)) + 2n * HOUR;
  const { id } = await openChannel(c, c.wallets[0], c.wallets[1], parseEther('2'), expiry, c.vectorChannel);
  assert.equal(id, channelId);
  const receipt = await ok(c, c.wallets[2], 'redeem', [id, BigInt(cumulativeAmount), vector.signature], { address: c.vectorChannel });
  assert.equal(await delta(c, payee, receipt), BigInt(cumulativeAmount));
  assert.equal((await readChannel(c, id, c.vectorChannel)).paidOut, BigInt(cumulativeAmount));
});

test('open: id formula, Opened event, channel record, nonce increments', async (t) => {
  const c = await chainOrSkip(t);
  if (!c) return;
  const [payer, payee] = [c.wallets[1], c.wallets[2]];
  const nonceOf = () => c.pub.readContract({ address: c.channel, abi: ABI, functionName: 'nonces', args: [payer.account.address] });
  assert.equal(await nonceOf(), 0n);
  const ids = [];
  for (const [nonce, deposit] of [[0n, parseEther('1')], [1n, 12345n]]) {
    const expiry = (await latestTimestamp(c)) + 5n * HOUR;
    const before = await c.pub.getBalance({ address: c.channel });
    const { id, receipt, opened } = await openChannel(c, payer, payee, deposit, expiry);
    if (nonce === 0n) gasUsed.open = Number(receipt.gasUsed);
    else gasUsed.openAgain = Number(receipt.gasUsed);
    assert.equal(id, channelIdOf(CHAIN_ID, c.channel, payer.account.address, payee.account.address, nonce));
    const signer = payer.account.address;
    assert.deepEqual(opened.args, { id, payer: payer.account.address, payee: payee.account.address, deposit, expiry, signer });
    assert.deepEqual(await readChannel(c, id), {
      payer: payer.account.address, payee: payee.account.address, deposit, paidOut: 0n, expiry, closed: false, signer,
    });
    assert.equal(await nonceOf(), nonce + 1n);
    assert.equal(await c.pub.getBalance({ address: c.channel }), before + deposit, 'the deposit is held by the contract');
    ids.push(id);
  }
  assert.notEqual(ids[0], ids[1], 'same payer and payee, new id');
  // The id also binds chain and contract: the same payer/payee/nonce on the vector contract differ.
  assert.notEqual(ids[0], channelIdOf(CHAIN_ID, c.vectorChannel, payer.account.address, payee.account.address, 0));
  assert.equal((await readChannel(c, keccak256(toHex('never opened')))).payer, ZERO);
});

test('open rejects a zero deposit, a payee that is the sender or zero, a zero signer, and an expiry sooner than MIN_LIFETIME', async (t) => {
  const c = await chainOrSkip(t);
  if (!c) return;
  const payer = c.wallets[3];
  const me = payer.account.address;
  const payee = c.accounts[4].address;
  const far = (await latestTimestamp(c)) + 10n * HOUR;
  assert.equal(await c.pub.readContract({ address: c.channel, abi: ABI, functionName: 'MIN_LIFETIME' }), MIN_LIFETIME);
  await reverts(c, payer, 'open', [payee, me, far], 'ZeroDeposit', [], { value: 0n });
  await reverts(c, payer, 'open', [me, me, far], 'InvalidPayee', [me], { value: 1n });
  await reverts(c, payer, 'open', [ZERO, me, far], 'InvalidPayee', [ZERO], { value: 1n });
  // A zero signer would take ecrecover's failure value for a valid signature.
  await reverts(c, payer, 'open', [payee, ZERO, far], 'InvalidSigner', [ZERO], { value: 1n });

  // The boundary, with the block's timestamp pinned: now + MIN_LIFETIME - 1 fails, + MIN_LIFETIME opens.
  const now = (await latestTimestamp(c)) + 10n;
  await nextBlockAt(c, now);
  await reverts(c, payer, 'open', [payee, me, now + MIN_LIFETIME - 1n], 'ExpiryTooSoon', [now + MIN_LIFETIME - 1n, now + MIN_LIFETIME], { value: 1n });
  const nonceBefore = await c.pub.readContract({ address: c.channel, abi: ABI, functionName: 'nonces', args: [payer.account.address] });
  assert.equal(nonceBefore, 0n, 'failed opens consume no nonce');
  await nextBlockAt(c, now + 1n);
  const { id } = await openChannel(c, payer, c.wallets[4], 1n, now + 1n + MIN_LIFETIME);
  assert.equal((await readChannel(c, id)).expiry, now + 1n + MIN_LIFETIME);
});

test('topUp adds to the deposit of an open, unexpired channel only', async (t) => {
  const c = await chainOrSkip(t);
  if (!c) return;
  const ch = await freshChannel(c, 5, 6, parseEther('1'));
  const byPayer = await ok(c, c.wallets[5], 'topUp', [ch.id], { value: parseEther('0.5') });
  gasUsed.topUp = Number(byPayer.gasUsed);
  const [event] = parseEventLogs({ abi: ABI, logs: byPayer.logs, eventName: 'ToppedUp' });
  assert.deepEqual(event.args, { id: ch.id, deposit: parseEther('1.5') }, 'ToppedUp carries the new total');
  // Anyone may add money; it counts for the payer's channel.
  await ok(c, c.wallets[7], 'topUp', [ch.id], { value: 7n });
  assert.equal((await readChannel(c, ch.id)).deposit, parseEther('1.5') + 7n);
  await reverts(c, c.wallets[5], 'topUp', [ch.id], 'ZeroDeposit', [], { value: 0n });
  const unknown = keccak256(toHex('no such channel'));
  await reverts(c, c.wallets[5], 'topUp', [unknown], 'UnknownChannel', [unknown], { value: 1n });

  // At expiry a top-up is refused (the channel is the payer's to reclaim by then).
  await nextBlockAt(c, ch.expiry);
  await reverts(c, c.wallets[5], 'topUp', [ch.id], 'ChannelExpired', [ch.id, ch.expiry], { value: 1n });

  const closed = await freshChannel(c, 5, 6, 100n);
  await ok(c, c.wallets[6], 'close', [closed.id, 0n, '0x']);
  await reverts(c, c.wallets[5], 'topUp', [closed.id], 'ChannelClosed', [closed.id], { value: 1n });
  assert.equal((await readChannel(c, closed.id)).deposit, 100n);
});

test('extend: payer only, to a later expiry only', async (t) => {
  const c = await chainOrSkip(t);
  if (!c) return;
  const ch = await freshChannel(c, 8, 6, 1000n);
  await reverts(c, c.wallets[6], 'extend', [ch.id, ch.expiry + HOUR], 'NotPayer', [c.accounts[6].address]);
  await reverts(c, c.wallets[8], 'extend', [ch.id, ch.expiry], 'ExpiryNotLater', [ch.expiry, ch.expiry]);
  await reverts(c, c.wallets[8], 'extend', [ch.id, ch.expiry - 1n], 'ExpiryNotLater', [ch.expiry - 1n, ch.expiry]);
  const receipt = await ok(c, c.wallets[8], 'extend', [ch.id, ch.expiry + HOUR]);
  gasUsed.extend = Number(receipt.gasUsed);
  const [event] = parseEventLogs({ abi: ABI, logs: receipt.logs, eventName: 'Extended' });
  assert.deepEqual(event.args, { id: ch.id, expiry: ch.expiry + HOUR });
  assert.equal((await readChannel(c, ch.id)).expiry, ch.expiry + HOUR);
  await ok(c, c.wallets[6], 'close', [ch.id, 0n, '0x']);
  await reverts(c, c.wallets[8], 'extend', [ch.id, ch.expiry + 2n * HOUR], 'ChannelClosed', [ch.id]);
});

test('redeem: anyone submits, the payee gets exactly min(cheque, deposit) - paidOut; replays and lower cheques revert', async (t) => {
  const c = await chainOrSkip(t);
  if (!c) return;
  const deposit = parseEther('1');
  const ch = await freshChannel(c, 1, 2, deposit);
  const submitter = c.wallets[3];

  const redeemOk = async (cumulative, expectPaidOut) => {
    const paidBefore = (await readChannel(c, ch.id)).paidOut;
    const receipt = await ok(c, submitter, 'redeem', [ch.id, cumulative, await ch.cheque(cumulative)]);
    const [event] = parseEventLogs({ abi: ABI, logs: receipt.logs, eventName: 'Redeemed' });
    assert.deepEqual(event.args, { id: ch.id, paidOut: expectPaidOut }, 'Redeemed carries the total paid out');
    assert.equal((await readChannel(c, ch.id)).paidOut, expectPaidOut, 'paidOut == min(cheque, deposit)');
    // The payee sent nothing and receives the difference to the wei; the submitter only pays gas.
    assert.equal(await delta(c, ch.payee, receipt), expectPaidOut - paidBefore);
    assert.equal(await delta(c, submitter.account.address, receipt), -gasCost(receipt));
    assert.equal(await delta(c, c.channel, receipt), paidBefore - expectPaidOut);
    assert.equal(await delta(c, ch.payer, receipt), 0n);
    return receipt;
  };

  const first = await redeemOk(parseEther('0.3'), parseEther('0.3'));
  gasUsed.redeem = Number(first.gasUsed);
  const replay = await ch.cheque(parseEther('0.3'));
  await reverts(c, submitter, 'redeem', [ch.id, parseEther('0.3'), replay], 'NothingToRedeem', [parseEther('0.3'), parseEther('0.3')]);
  await reverts(c, submitter, 'redeem', [ch.id, parseEther('0.2'), await ch.cheque(parseEther('0.2'))], 'NothingToRedeem',
    [parseEther('0.2'), parseEther('0.3')]);
  const second = await redeemOk(parseEther('0.5'), parseEther('0.5'));
  gasUsed.redeemAgain = Number(second.gasUsed);
  // A cheque above the deposit pays out the deposit, no more.
  await redeemOk(parseEther('5'), deposit);
  await reverts(c, submitter, 'redeem', [ch.id, parseEther('6'), await ch.cheque(parseEther('6'))], 'NothingToRedeem', [deposit, deposit]);
  // The payee submitting its own cheque works too (and pays the gas itself).
  const own = await freshChannel(c, 1, 2, 1000n);
  const receipt = await ok(c, c.wallets[2], 'redeem', [own.id, 600n, await own.cheque(600n)]);
  assert.equal(await delta(c, own.payee, receipt), 600n - gasCost(receipt));
});

test('redeem rejects wrong signer, chain, contract, channel and payee, high s, bad v and bad length', async (t) => {
  const c = await chainOrSkip(t);
  if (!c) return;
  const ch = await freshChannel(c, 4, 5, parseEther('1'));
  const submitter = c.wallets[6];
  const amount = parseEther('0.1');
  const payer = ch.payer;
  const redeemWith = (sig, errorName, errorArgs) => reverts(c, submitter, 'redeem', [ch.id, amount, sig], errorName, errorArgs);

  const stranger = c.accounts[7];
  await redeemWith(await signCheque(stranger, ch.id, ch.payee, amount, { verifyingContract: c.channel }), 'WrongSigner',
    [stranger.address, payer]);
  // A valid signature of a different cheque recovers to some other key: never to the payer.
  const wrongs = {
    chain: await ch.cheque(amount, { chainId: 1 }),
    contract: await ch.cheque(amount, { verifyingContract: c.vectorChannel }),
    channel: await signCheque(c.accounts[4], keccak256(toHex('other channel')), ch.payee, amount, { verifyingContract: c.channel }),
    payee: await signCheque(c.accounts[4], ch.id, stranger.address, amount, { verifyingContract: c.channel }),
    amount: await ch.cheque(amount + 1n),
  };
  for (const [what, sig] of Object.entries(wrongs)) {
    const { args } = await redeemWith(sig, 'WrongSigner');
    assert.notEqual(args[0], payer, `wrong ${what}: recovered someone else`);
    assert.equal(args[1], payer);
  }

  const good = await ch.cheque(amount);
  const { r, s, v } = parseSignature(good);
  const rs = (sv, vv) => `${r}${toHex(sv, { size: 32 }).slice(2)}${vv.toString(16).padStart(2, '0')}`;
  // The malleable twin (n - s, other v) is a valid ECDSA signature by the payer: refused for its high s.
  const highS = N - BigInt(s);
  await redeemWith(rs(highS, v === 27n ? 28 : 27), 'InvalidSignatureS', [toHex(highS, { size: 32 })]);
  for (const badV of [0, 1, 29]) await redeemWith(rs(BigInt(s), badV), 'InvalidSignatureV', [badV]);
  await redeemWith(good.slice(0, -2), 'InvalidSignatureLength', [64n]);
  await redeemWith(`${good}00`, 'InvalidSignatureLength', [66n]);
  await redeemWith('0x', 'InvalidSignatureLength', [0n]);
  // r = 0 is no point on the curve: ecrecover yields address(0), which is refused as such.
  await redeemWith(`0x${'00'.repeat(32)}${toHex(1n, { size: 32 }).slice(2)}1b`, 'WrongSigner', [ZERO, payer]);

  // None of that changed anything: the genuine cheque still pays in full.
  assert.equal((await readChannel(c, ch.id)).paidOut, 0n);
  const receipt = await ok(c, submitter, 'redeem', [ch.id, amount, good]);
  assert.equal(await delta(c, ch.payee, receipt), amount);
});

test('close: payee only; pays the cheque, refunds the rest to the payer, and the record stays closed', async (t) => {
  const c = await chainOrSkip(t);
  if (!c) return;
  const deposit = parseEther('1');
  const ch = await freshChannel(c, 7, 8, deposit);
  await ok(c, c.wallets[3], 'redeem', [ch.id, parseEther('0.1'), await ch.cheque(parseEther('0.1'))]);
  const cheque = await ch.cheque(parseEther('0.4'));
  await reverts(c, c.wallets[7], 'close', [ch.id, parseEther('0.4'), cheque], 'NotPayee', [ch.payer]);
  await reverts(c, c.wallets[3], 'close', [ch.id, parseEther('0.4'), cheque], 'NotPayee', [c.accounts[3].address]);
  await reverts(c, c.wallets[8], 'close', [ch.id, parseEther('0.5'), cheque], 'WrongSigner');

  const receipt = await ok(c, c.wallets[8], 'close', [ch.id, parseEther('0.4'), cheque]);
  gasUsed.close = Number(receipt.gasUsed);
  const [event] = parseEventLogs({ abi: ABI, logs: receipt.logs, eventName: 'Closed' });
  assert.deepEqual(event.args, { id: ch.id, paidOut: parseEther('0.4'), refund: parseEther('0.6') });
  assert.equal(event.args.paidOut + event.args.refund, deposit, 'deposit == paidOut + refund');
  assert.equal(await delta(c, ch.payee, receipt), parseEther('0.3') - gasCost(receipt), 'the payee gets the rest of its cheque');
  assert.equal(await delta(c, ch.payer, receipt), parseEther('0.6'), 'the payer gets deposit - paidOut');
  assert.equal(await delta(c, c.channel, receipt), -parseEther('0.9'));
  assert.deepEqual(await readChannel(c, ch.id), {
    payer: ch.payer, payee: ch.payee, deposit, paidOut: parseEther('0.4'), expiry: ch.expiry, closed: true, signer: ch.payer,
  });

  // Closed for good: no call can move money again, and the id is never reissued.
  const later = await ch.cheque(parseEther('0.9'));
  await reverts(c, c.wallets[3], 'redeem', [ch.id, parseEther('0.9'), later], 'ChannelClosed', [ch.id]);
  await reverts(c, c.wallets[8], 'close', [ch.id, parseEther('0.9'), later], 'ChannelClosed', [ch.id]);
  await reverts(c, c.wallets[7], 'reclaim', [ch.id], 'ChannelClosed', [ch.id]);
  const reopened = await freshChannel(c, 7, 8, 1n);
  assert.notEqual(reopened.id, ch.id);

  // A payee with nothing more to claim closes without a cheque: everything goes back.
  const unused = await freshChannel(c, 7, 8, parseEther('0.25'));
  const released = await ok(c, c.wallets[8], 'close', [unused.id, 0n, '0x']);
  assert.equal(await delta(c, unused.payer, released), parseEther('0.25'));
  assert.equal(await delta(c, unused.payee, released), -gasCost(released));
});

test('reclaim: reverts before expiry; after it the payer alone gets deposit - paidOut and the payee nothing more', async (t) => {
  const c = await chainOrSkip(t);
  if (!c) return;
  const deposit = parseEther('2');
  const ch = await freshChannel(c, 2, 3, deposit);
  await ok(c, c.wallets[2], 'topUp', [ch.id], { value: parseEther('1') });
  await ok(c, c.wallets[4], 'redeem', [ch.id, parseEther('0.75'), await ch.cheque(parseEther('0.75'))]);
  await reverts(c, c.wallets[2], 'reclaim', [ch.id], 'ChannelNotExpired', [ch.id, ch.expiry]);
  await nextBlockAt(c, ch.expiry - 1n);
  await reverts(c, c.wallets[2], 'reclaim', [ch.id], 'ChannelNotExpired', [ch.id, ch.expiry]);

  // Past expiry, by moving anvil's clock: the payee's cheques are worthless now.
  const now = await latestTimestamp(c);
  await c.pub.request({ method: 'evm_increaseTime', params: [Number(ch.expiry - now + 60n)] });
  await c.pub.request({ method: 'evm_mine', params: [] });
  assert.ok((await latestTimestamp(c)) >= ch.expiry);
  const cheque = await ch.cheque(parseEther('2'));
  await reverts(c, c.wallets[4], 'redeem', [ch.id, parseEther('2'), cheque], 'ChannelExpired', [ch.id, ch.expiry]);
  await reverts(c, c.wallets[3], 'close', [ch.id, parseEther('2'), cheque], 'ChannelExpired', [ch.id, ch.expiry]);
  await reverts(c, c.wallets[3], 'reclaim', [ch.id], 'NotPayer', [ch.payee]);

  const receipt = await ok(c, c.wallets[2], 'reclaim', [ch.id]);
  gasUsed.reclaim = Number(receipt.gasUsed);
  const total = parseEther('3');
  const [event] = parseEventLogs({ abi: ABI, logs: receipt.logs, eventName: 'Closed' });
  assert.deepEqual(event.args, { id: ch.id, paidOut: parseEther('0.75'), refund: total - parseEther('0.75') });
  assert.equal(event.args.paidOut + event.args.refund, total, 'deposit == paidOut + refund');
  assert.equal(await delta(c, ch.payer, receipt), total - parseEther('0.75') - gasCost(receipt));
  assert.equal(await delta(c, ch.payee, receipt), 0n);
  assert.equal((await readChannel(c, ch.id)).closed, true);
  await reverts(c, c.wallets[2], 'reclaim', [ch.id], 'ChannelClosed', [ch.id]);
});

test('delegated signer: its cheques pay, the payer\'s do not; refunds, extend and reclaim stay the payer\'s', async (t) => {
  const c = await chainOrSkip(t);
  if (!c) return;
  // A session key as the client generates it: it signs cheques and is given gas money here
  // only to show that holding the signer key gives no control over the deposit.
  const session = privateKeyToAccount(generatePrivateKey());
  const sessionWallet = createWalletClient({ chain: foundry, transport: http(c.url), account: session });
  const funding = await c.wallets[7].sendTransaction({ to: session.address, value: parseEther('1') });
  await c.pub.waitForTransactionReceipt({ hash: funding });
  const payerWallet = c.wallets[3];
  const payer = c.accounts[3].address;
  const payee = c.accounts[5].address;
  const deposit = parseEther('1');
  const open = async () => {
    const expiry = (await latestTimestamp(c)) + 2n * HOUR;
    const { id, receipt, opened } = await openChannel(c, payerWallet, c.wallets[5], deposit, expiry, c.channel, session.address);
    assert.deepEqual(opened.args, { id, payer, payee, deposit, expiry, signer: session.address });
    assert.deepEqual(await readChannel(c, id), { payer, payee, deposit, paidOut: 0n, expiry, closed: false, signer: session.address });
    return { id, expiry, receipt };
  };
  const ch = await open();
  gasUsed.openDelegated = Number(ch.receipt.gasUsed);
  const bySession = (cumulative, id = ch.id) => signCheque(session, id, payee, cumulative, { verifyingContract: c.channel });
  const byPayer = (cumulative) => signCheque(c.accounts[3], ch.id, payee, cumulative, { verifyingContract: c.channel });

  // The payer's own signature is just another wrong signer now.
  const amount = parseEther('0.1');
  await reverts(c, c.wallets[6], 'redeem', [ch.id, amount, await byPayer(amount)], 'WrongSigner', [payer, session.address]);
  await reverts(c, c.wallets[5], 'close', [ch.id, amount, await byPayer(amount)], 'WrongSigner', [payer, session.address]);
  const redeemed = await ok(c, c.wallets[6], 'redeem', [ch.id, amount, await bySession(amount)]);
  gasUsed.redeemDelegated = Number(redeemed.gasUsed);
  assert.equal(await delta(c, payee, redeemed), amount);
  assert.equal(await delta(c, payer, redeemed), 0n);

  // The signer is not the payer: it can neither extend nor reclaim.
  await reverts(c, sessionWallet, 'extend', [ch.id, ch.expiry + HOUR], 'NotPayer', [session.address]);
  await reverts(c, sessionWallet, 'reclaim', [ch.id], 'NotPayer', [session.address]);
  const extended = await ok(c, payerWallet, 'extend', [ch.id, ch.expiry + HOUR]);
  assert.equal((await readChannel(c, ch.id)).expiry, ch.expiry + HOUR);
  assert.equal(extended.status, 'success');

  // close: the payee gets the rest of the signer's cheque, the refund goes to the payer.
  const closing = parseEther('0.4');
  const closed = await ok(c, c.wallets[5], 'close', [ch.id, closing, await bySession(closing)]);
  gasUsed.closeDelegated = Number(closed.gasUsed);
  assert.equal(await delta(c, payee, closed), closing - amount - gasCost(closed));
  assert.equal(await delta(c, payer, closed), deposit - closing, 'the refund goes to the payer');
  assert.equal(await delta(c, session.address, closed), 0n, 'nothing goes to the signer');

  // reclaim after expiry: only the payer may, and it gets deposit - paidOut.
  const second = await open();
  await ok(c, c.wallets[6], 'redeem', [second.id, amount, await bySession(amount, second.id)]);
  const now = await latestTimestamp(c);
  await c.pub.request({ method: 'evm_increaseTime', params: [Number(second.expiry - now + 60n)] });
  await c.pub.request({ method: 'evm_mine', params: [] });
  await reverts(c, sessionWallet, 'reclaim', [second.id], 'NotPayer', [session.address]);
  const reclaimed = await ok(c, payerWallet, 'reclaim', [second.id]);
  gasUsed.reclaimDelegated = Number(reclaimed.gasUsed);
  assert.equal(await delta(c, payer, reclaimed), deposit - amount - gasCost(reclaimed));
  assert.equal(await delta(c, session.address, reclaimed), 0n);
  assert.equal(await delta(c, payee, reclaimed), 0n);
});

test('a reentrant payee cannot call back into the contract while being paid', async (t) => {
  const c = await chainOrSkip(t);
  if (!c) return;
  // The adversary, a test double: a payee contract whose receive() redeems again.
  const source = `// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;
interface IPaymentChannel { function redeem(bytes32 id, uint256 cumulative, bytes calldata sig) external; }
contract ReentrantPayee {
    IPaymentChannel private immutable channel;
    bytes32 private id; uint256 private cumulative; bytes private sig;
    bytes public innerRevert; uint256 public received;
    constructor(address c) { channel = IPaymentChannel(c); }
    function arm(bytes32 i, uint256 cum, bytes calldata s) external { id = i; cumulative = cum; sig = s; }
    receive() external payable {
        received += msg.value;
        if (received == msg.value) {
            try channel.redeem(id, cumulative, sig) {} catch (bytes memory e) { innerRevert = e; }
        }
    }
}`;
  const solc = createRequire(import.meta.url)('solc');
  const out = JSON.parse(solc.compile(JSON.stringify({
    language: 'Solidity',
    sources: { 'ReentrantPayee.sol': { content: source } },
    settings: { evmVersion: 'cancun', outputSelection: { '*': { '*': ['abi', 'evm.bytecode.object'] } } },
  })));
  assert.deepEqual((out.errors ?? []).filter((e) => e.severity === 'error'), []);
  const attacker = out.contracts['ReentrantPayee.sol'].ReentrantPayee;
  const wallet = c.wallets[5];
  const hash = await wallet.deployContract({ abi: attacker.abi, bytecode: `0x${attacker.evm.bytecode.object}`, args: [c.channel] });
  const payee = (await c.pub.waitForTransactionReceipt({ hash })).contractAddress;

  const expiry = (await latestTimestamp(c)) + 2n * HOUR;
  const receipt = await ok(c, c.wallets[6], 'open', [payee, c.accounts[6].address, expiry], { value: parseEther('1') });
  const [{ args: { id } }] = parseEventLogs({ abi: ABI, logs: receipt.logs, eventName: 'Opened' });
  const cheque = (cum) => signCheque(c.accounts[6], id, payee, cum, { verifyingContract: c.channel });
  const armHash = await wallet.writeContract({
    address: payee, abi: attacker.abi, functionName: 'arm', args: [id, parseEther('0.9'), await cheque(parseEther('0.9'))],
  });
  await c.pub.waitForTransactionReceipt({ hash: armHash });

  const redeemed = await ok(c, c.wallets[4], 'redeem', [id, parseEther('0.3'), await cheque(parseEther('0.3'))]);
  assert.equal(await delta(c, payee, redeemed), parseEther('0.3'), 'only the outer payment arrived');
  assert.equal((await readChannel(c, id)).paidOut, parseEther('0.3'));
  const inner = await c.pub.readContract({ address: payee, abi: attacker.abi, functionName: 'innerRevert' });
  assert.equal(decodeErrorResult({ abi: ABI, data: inner }).errorName, 'Reentrancy', 'the nested redeem hit the guard');
});

test('value is conserved: the contract holds exactly sum(deposit - paidOut) of its open channels', async (t) => {
  const c = await chainOrSkip(t);
  if (!c) return;
  // Runs last: it sums over every channel the earlier tests opened, closed or left open.
  const logs = await c.pub.getContractEvents({ address: c.channel, abi: ABI, fromBlock: 0n });
  const opened = logs.filter((l) => l.eventName === 'Opened');
  assert.ok(opened.length >= 10, `channels to sum over (${opened.length})`);
  let held = 0n;
  let closedCount = 0;
  for (const { args: { id } } of opened) {
    const ch = await readChannel(c, id);
    const closedLogs = logs.filter((l) => l.eventName === 'Closed' && l.args.id === id);
    const redeemed = logs.filter((l) => l.eventName === 'Redeemed' && l.args.id === id).map((l) => l.args.paidOut);
    const topUps = logs.filter((l) => l.eventName === 'ToppedUp' && l.args.id === id).map((l) => l.args.deposit);
    assert.equal(ch.deposit, topUps.at(-1) ?? opened.find((l) => l.args.id === id).args.deposit, 'deposit per the events');
    if (ch.closed) {
      assert.equal(closedLogs.length, 1, 'closed once');
      assert.equal(closedLogs[0].args.paidOut, ch.paidOut);
      assert.equal(closedLogs[0].args.paidOut + closedLogs[0].args.refund, ch.deposit, 'deposit == paidOut + refund');
      closedCount++;
    } else {
      assert.equal(closedLogs.length, 0);
      assert.equal(ch.paidOut, redeemed.at(-1) ?? 0n, 'paidOut per the last Redeemed');
      held += ch.deposit - ch.paidOut;
    }
  }
  assert.ok(closedCount >= 4, `closed channels among them (${closedCount})`);
  assert.equal(await c.pub.getBalance({ address: c.channel }), held);
});
