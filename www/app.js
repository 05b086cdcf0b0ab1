// The demo dapp: a ULC provider from the npm package, configured from /devnet.json, and a
// page that shows what it verifies. Every failure is shown on the page (#errors or the
// panel's own error line), never only in the console.

import { createProvider } from '/pkg/index.js';
import { addressOf, bytesToHex, hexToBytes, keccak256, signTransaction } from './devsigner.js';

const $ = (id) => document.getElementById(id);
const POLL_STATUS_MS = 1000;
const POLL_METRICS_MS = 2000;
const CHART_POINTS = 90;
const RECEIPT_TIMEOUT_MS = 90_000;

// --- errors ---------------------------------------------------------------------------------

const message = (error) => (error && error.code !== undefined ? `${error.message} (code ${error.code})` : String(error?.message ?? error));

/** Appends a page-wide error line (kept to the last 5). */
function showError(context, error) {
  const box = $('errors');
  const line = document.createElement('div');
  line.textContent = `${new Date().toLocaleTimeString()} ${context}: ${message(error)}`;
  box.append(line);
  while (box.childElementCount > 5) box.firstElementChild.remove();
}
window.addEventListener('error', (event) => showError('uncaught error', event.error ?? event.message));
window.addEventListener('unhandledrejection', (event) => showError('unhandled rejection', event.reason));

// --- formatting -----------------------------------------------------------------------------

const short = (hex, n = 6) => (hex && hex.length > 2 * n + 4 ? `${hex.slice(0, n + 2)}…${hex.slice(-n)}` : hex);

/** An integer amount with `decimals` as an exact decimal string (trailing zeros dropped). */
function units(value, decimals) {
  const v = BigInt(value);
  const base = 10n ** BigInt(decimals);
  const frac = (v % base).toString().padStart(decimals, '0').replace(/0+$/, '');
  return `${(v / base).toLocaleString('en-US')}${frac ? `.${frac}` : ''}`;
}

function parseUnits(text, decimals) {
  const m = /^\s*(\d+)(?:\.(\d*))?\s*$/.exec(text);
  if (!m || (m[2] ?? '').length > decimals) throw new Error(`not an amount: ${text}`);
  return BigInt(m[1]) * 10n ** BigInt(decimals) + BigInt((m[2] ?? '').padEnd(decimals, '0') || '0');
}

function bytes(n) {
  if (n === null || n === undefined) return '–';
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(2)} MiB`;
}

const ms = (v) => (v === null || v === undefined ? '–' : `${v < 10 ? v.toFixed(2) : v.toFixed(0)} ms`);

function age(msValue) {
  if (msValue < 0) return 'in the future';
  const s = msValue / 1000;
  return s < 120 ? `${s.toFixed(1)} s` : `${Math.floor(s / 60)} min ${Math.floor(s % 60)} s`;
}

function setText(id, text) {
  $(id).textContent = text;
}

function pill(el, text, kind) {
  el.textContent = text;
  el.className = `pill ${kind}`;
}

// --- ABI, by hand ---------------------------------------------------------------------------

const selector = (signature) => bytesToHex(keccak256(new TextEncoder().encode(signature)).slice(0, 4));
const addressWord = (address) => {
  if (!/^0x[0-9a-fA-F]{40}$/.test(address)) throw new Error(`not an address: ${address}`);
  return address.slice(2).toLowerCase().padStart(64, '0');
};
const decodeUint = (hex) => BigInt(hex === '0x' ? 0 : hex);
function decodeString(hex) {
  const data = hexToBytes(hex);
  const word = (i) => Number(BigInt(bytesToHex(data.slice(i, i + 32))));
  const offset = word(0);
  const length = word(offset);
  return new TextDecoder().decode(data.slice(offset + 32, offset + 32 + length));
}

// --- the provider ---------------------------------------------------------------------------

let devnet;
let provider;
/** Trusted servers from devnet.json with the node id computed from their enode. */
let servers = [];
let quorumK = 0;
let headTimestampMs = null;
let lastStatus = null;
let lastMetrics = null;

/** Smallest k with floor(100 k / n) >= fraction: the ULC rule (les/src/ulc.rs, as geth). */
function quorumSize(n, fraction) {
  for (let k = 1; k <= n; k++) if (Math.floor((100 * k) / n) >= fraction) return k;
  return n;
}

function nodeIdOf(enode) {
  const m = /^enode:\/\/([0-9a-fA-F]{128})@/.exec(enode);
  if (!m) throw new Error(`not an enode URL: ${enode}`);
  return bytesToHex(keccak256(hexToBytes(m[1])));
}

const request = (method, params) => provider.request(params === undefined ? { method } : { method, params });

async function start() {
  const response = await fetch('/devnet.json', { cache: 'no-store' });
  if (!response.ok) throw new Error(`/devnet.json: HTTP ${response.status}`);
  devnet = await response.json();
  if (!devnet.servers?.length) throw new Error('devnet.json lists no LES servers (DEVNET_SKIP_LES?)');
  servers = devnet.servers.map((s) => ({ enode: s.enode, bridgeUrl: s.bridgeUrl, nodeId: nodeIdOf(s.enode) }));
  quorumK = quorumSize(servers.length, devnet.fraction);
  setText('quorum', `${devnet.fraction} % of ${servers.length} trusted servers = ${quorumK} of ${servers.length}`);
  $('quorum').dataset.k = String(quorumK);
  setText('chain', `${devnet.chainId} (genesis ${short(devnet.genesisHash, 8)})`);
  setupForms();
  renderServers(null);

  provider = await createProvider({
    chainId: devnet.chainId,
    genesisHash: devnet.genesisHash,
    servers: devnet.servers.map((s) => ({ enode: s.enode, bridge: s.bridgeUrl })),
    fraction: devnet.fraction,
  });
  provider.on('connect', ({ chainId }) => setText('subtitle', `connected to chain ${Number(chainId)}: every answer below is verified in this page`));
  provider.on('disconnect', (error) => showError('provider disconnected', error));

  loop(pollStatus, POLL_STATUS_MS, 'ulc_status');
  loop(pollMetrics, POLL_METRICS_MS, 'ulc_metrics');
  setInterval(tickAge, 200);
}

/** Runs `fn` every `interval` ms (never overlapping); failures are shown, not fatal. */
function loop(fn, interval, name) {
  let lastError = null;
  const run = async () => {
    try {
      await fn();
      lastError = null;
    } catch (error) {
      // Once per distinct error, not every poll.
      if (message(error) !== lastError) showError(name, error);
      lastError = message(error);
    }
    setTimeout(run, interval);
  };
  run();
}

// --- head and servers -----------------------------------------------------------------------

async function pollStatus() {
  const status = await request('ulc_status');
  lastStatus = status;
  const head = status.head;
  const signers = new Set((head?.signers ?? []).map((s) => s.toLowerCase()));
  const signedByTrusted = servers.filter((s) => signers.has(s.nodeId)).length;
  if (head) {
    const number = Number(head.number);
    setText('head-number', `#${number}`);
    $('head-number').dataset.number = String(number);
    setText('head-hash', head.hash);
    headTimestampMs = Number(head.timestamp) * 1000;
    const quorum = signedByTrusted >= quorumK;
    if (head.stale) pill($('head-stale'), 'stale: restored, awaiting a fresh quorum', 'warn');
    else pill($('head-stale'), quorum ? 'fresh: quorum-signed' : 'fresh', quorum ? 'ok' : 'warn');
  }
  setText('signer-count', String(signedByTrusted));
  $('signer-count').dataset.count = String(signedByTrusted);
  if (status.connected) pill($('conn'), `connected · ${status.connectedServers} of ${servers.length} servers`, 'ok');
  else pill($('conn'), head ? `not connected · showing stored head` : `connecting to ${servers.length} servers…`, 'warn');
  renderServers(lastMetrics);
  tickAge();
  return status;
}

function tickAge() {
  if (headTimestampMs === null) return;
  const a = Date.now() - headTimestampMs;
  setText('head-age', age(a));
  $('head-age').className = a > 3 * 1000 * (devnet.blockTime ?? 12) ? 'error' : '';
}

/** The servers table: devnet.json's list, joined with ulc_metrics' per-server records. */
function renderServers(metrics) {
  const signers = new Set((lastStatus?.head?.signers ?? []).map((s) => s.toLowerCase()));
  const records = new Map((metrics?.servers ?? []).map((r) => [String(r.nodeId).toLowerCase(), r]));
  const rows = servers.map((server, i) => {
    const record = records.get(server.nodeId);
    const cells = [
      String(i),
      short(server.nodeId, 4),
      server.bridgeUrl,
      record ? (record.connected ? '● connected' : '○ not connected') : '–',
      signers.has(server.nodeId) ? '✓ signed' : '–',
      bytes(record?.bytesIn),
      bytes(record?.bytesOut),
      ms(record?.latencyMs),
    ];
    const tr = document.createElement('tr');
    tr.dataset.nodeId = server.nodeId;
    cells.forEach((text, c) => {
      const td = document.createElement('td');
      td.textContent = text;
      if (c === 1) td.title = server.nodeId;
      if (c === 3 && record) td.style.color = record.connected ? 'var(--ok)' : 'var(--bad)';
      if (c === 4 && signers.has(server.nodeId)) td.style.color = 'var(--ok)';
      tr.append(td);
    });
    return tr;
  });
  $('servers').replaceChildren(...rows);
}

// --- metrics and the chart ------------------------------------------------------------------

const samples = [];
let lastBytesIn = null;

async function pollMetrics() {
  const metrics = await request('ulc_metrics');
  lastMetrics = metrics;
  const bytesIn = metrics.bytesIn ?? 0;
  samples.push({
    t: Date.now(),
    bytesIn: lastBytesIn === null ? 0 : Math.max(0, bytesIn - lastBytesIn),
    p50: metrics.requests?.p50Ms ?? null,
    p99: metrics.requests?.p99Ms ?? null,
  });
  lastBytesIn = bytesIn;
  while (samples.length > CHART_POINTS) samples.shift();
  renderServers(metrics);
  renderChart();
  renderFigures(metrics);
  setText('metrics-json', JSON.stringify(metrics, null, 2));
}

function renderFigures(m) {
  const env = m.environment ?? {};
  const figures = [
    ['heads accepted', m.headsAccepted],
    ['verification failures', m.verificationFailures],
    ['disagreements', m.disagreements],
    ['requests', m.requests?.count],
    ['request p50', ms(m.requests?.p50Ms)],
    ['request p99', ms(m.requests?.p99Ms)],
    ['bytes in / out', `${bytes(m.bytesIn)} / ${bytes(m.bytesOut)}`],
    ['wasm memory', bytes(env.wasmMemoryBytes)],
    [`storage (${env.storage ?? '?'})`, env.storageUsageBytes === null || env.storageUsageBytes === undefined ? 'n/a' : bytes(env.storageUsageBytes)],
    ['CPU in client', env.cpuMs === undefined ? '–' : `${Math.round(env.cpuMs)} ms`],
    ['uptime', m.uptimeMs === undefined ? '–' : age(m.uptimeMs)],
  ];
  $('figures').replaceChildren(...figures.map(([label, value]) => {
    const div = document.createElement('div');
    div.className = 'figure';
    const b = document.createElement('b');
    b.textContent = value ?? '–';
    const span = document.createElement('span');
    span.textContent = label;
    div.append(b, span);
    div.dataset.figure = label;
    return div;
  }));
}

const SVG = 'http://www.w3.org/2000/svg';
function el(name, attrs, text) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

/** Bars: bytes in per interval (left axis); lines: latency p50/p99 (right axis). */
function renderChart() {
  const W = 900, H = 180, L = 56, R = 56, T = 10, B = 22;
  const w = W - L - R, h = H - T - B;
  const maxBytes = Math.max(1024, ...samples.map((s) => s.bytesIn));
  const maxMs = Math.max(1, ...samples.flatMap((s) => [s.p50 ?? 0, s.p99 ?? 0]));
  const step = w / CHART_POINTS;
  const x = (i) => L + (CHART_POINTS - samples.length + i) * step;
  const nodes = [el('rect', { x: L, y: T, width: w, height: h, fill: '#f9fafb', stroke: '#e5e7eb' })];
  for (const f of [0, 0.5, 1]) {
    const y = T + h - f * h;
    nodes.push(el('line', { x1: L, x2: L + w, y1: y, y2: y, stroke: '#e5e7eb' }));
    nodes.push(el('text', { x: L - 4, y: y + 4, 'text-anchor': 'end', 'font-size': 10, fill: '#2563eb' }, bytes(Math.round(f * maxBytes))));
    nodes.push(el('text', { x: L + w + 4, y: y + 4, 'font-size': 10, fill: '#047857' }, ms(f * maxMs)));
  }
  samples.forEach((s, i) => {
    const bh = (s.bytesIn / maxBytes) * h;
    nodes.push(el('rect', { x: x(i) + 1, y: T + h - bh, width: Math.max(1, step - 2), height: bh, fill: '#93c5fd' }));
  });
  for (const [key, color] of [['p50', '#047857'], ['p99', '#b45309']]) {
    const points = samples.map((s, i) => (s[key] === null ? null : `${x(i) + step / 2},${T + h - (s[key] / maxMs) * h}`)).filter(Boolean);
    if (points.length) nodes.push(el('polyline', { points: points.join(' '), fill: 'none', stroke: color, 'stroke-width': 2 }));
  }
  nodes.push(el('text', { x: L, y: H - 6, 'font-size': 10, fill: '#6b7280' }, `${Math.round((CHART_POINTS * POLL_METRICS_MS) / 1000)} s ago`));
  nodes.push(el('text', { x: L + w, y: H - 6, 'font-size': 10, fill: '#6b7280', 'text-anchor': 'end' }, 'now'));
  $('chart').replaceChildren(...nodes);
}

// --- forms ----------------------------------------------------------------------------------

/** Runs a form's action with its button disabled; errors go to the panel's error line. */
function action(formId, buttonId, errorId, fn) {
  $(formId).addEventListener('submit', async (event) => {
    event.preventDefault();
    const button = $(buttonId);
    button.disabled = true;
    setText(errorId, '');
    try {
      await fn();
    } catch (error) {
      setText(errorId, message(error));
    } finally {
      button.disabled = false;
    }
  });
}

/** The verified head's number as a block tag, so that the answers of one panel agree. */
async function headTag() {
  return request('eth_blockNumber');
}

function setupForms() {
  const accounts = devnet.devAccounts ?? [];
  $('lookup-address').value = accounts[0]?.address ?? '';
  $('token-holder').value = accounts[0]?.address ?? '';
  $('token-address').textContent = devnet.token?.address ?? 'no token in devnet.json';
  setText('token-label', `${devnet.token?.name ?? 'token'} (${devnet.token?.symbol ?? '?'})`);
  for (const [id, pick] of [['send-from', accounts.length - 1], ['send-to', 0]]) {
    $(id).replaceChildren(...accounts.map((a, i) => {
      const option = document.createElement('option');
      option.value = String(i);
      option.textContent = `#${i} ${short(a.address, 4)}`;
      option.selected = i === pick;
      return option;
    }));
  }

  action('lookup-form', 'lookup-button', 'lookup-error', async () => {
    const address = $('lookup-address').value.trim();
    addressWord(address);
    const started = performance.now();
    const tag = await headTag();
    const [balance, nonce, code] = await Promise.all([
      request('eth_getBalance', [address, tag]),
      request('eth_getTransactionCount', [address, tag]),
      request('eth_getCode', [address, tag]),
    ]);
    setText('lookup-block', `#${Number(tag)}`);
    $('lookup-block').dataset.block = tag;
    setText('lookup-balance', `${units(balance, 18)} ETH`);
    $('lookup-balance').dataset.wei = BigInt(balance).toString();
    setText('lookup-nonce', String(Number(nonce)));
    setText('lookup-code', code === '0x' ? '0 bytes (no contract)' : `${(code.length - 2) / 2} bytes`);
    setText('lookup-took', `${(performance.now() - started).toFixed(1)} ms`);
  });

  action('token-form', 'token-button', 'token-error', async () => {
    const token = devnet.token?.address;
    if (!token) throw new Error('devnet.json has no token');
    const holder = $('token-holder').value.trim();
    const tag = await headTag();
    const call = (data) => request('eth_call', [{ to: token, data }, tag]);
    const [name, symbol, decimals, supply, balance] = await Promise.all([
      call(selector('name()')),
      call(selector('symbol()')),
      call(selector('decimals()')),
      call(selector('totalSupply()')),
      call(`${selector('balanceOf(address)')}${addressWord(holder)}`),
    ]);
    const d = Number(decodeUint(decimals));
    setText('token-block', `#${Number(tag)}`);
    $('token-block').dataset.block = tag;
    setText('token-name', decodeString(name));
    setText('token-symbol', decodeString(symbol));
    setText('token-decimals', String(d));
    setText('token-supply', `${units(decodeUint(supply), d)} ${decodeString(symbol)}`);
    $('token-supply').dataset.raw = decodeUint(supply).toString();
    setText('token-balance', `${units(decodeUint(balance), d)} ${decodeString(symbol)}`);
    $('token-balance').dataset.raw = decodeUint(balance).toString();
  });

  action('send-form', 'send-button', 'send-error', sendTransaction);
}

// --- sending --------------------------------------------------------------------------------

const sleep = (t) => new Promise((r) => setTimeout(r, t));

async function sendTransaction() {
  const accounts = devnet.devAccounts ?? [];
  const from = accounts[Number($('send-from').value)];
  const to = accounts[Number($('send-to').value)];
  if (!from || !to) throw new Error('devnet.json lists no dev accounts');
  if (addressOf(from.privateKey).toLowerCase() !== from.address.toLowerCase()) {
    throw new Error(`the key in devnet.json does not belong to ${from.address}`);
  }
  const value = parseUnits($('send-value').value, 18);
  for (const id of ['send-hash', 'receipt-block', 'receipt-status', 'receipt-gas']) setText(id, '–');
  delete $('receipt-status').dataset.status;

  // The devnet's trickle also sends from the dev accounts; a nonce it took in a block the
  // verified head does not show yet is refused: read the nonce again and retry.
  let sent = null;
  for (let attempt = 1; !sent; attempt++) {
    setText('send-state', `preparing (nonce, fees, gas from the verified head)${attempt > 1 ? `, attempt ${attempt}` : ''}`);
    const [nonce, tip, block, gas] = await Promise.all([
      request('eth_getTransactionCount', [from.address, 'latest']),
      request('eth_maxPriorityFeePerGas'),
      request('eth_getBlockByNumber', ['latest', false]),
      request('eth_estimateGas', [{ from: from.address, to: to.address, value: `0x${value.toString(16)}` }]),
    ]);
    const tx = {
      chainId: devnet.chainId,
      nonce,
      maxPriorityFeePerGas: tip,
      maxFeePerGas: 2n * BigInt(block.baseFeePerGas ?? 0) + BigInt(tip),
      gas,
      to: to.address,
      value,
    };
    const { raw, hash } = signTransaction(tx, from.privateKey);
    setText('send-state', `signed (nonce ${Number(nonce)}), sending with eth_sendRawTransaction`);
    try {
      const answered = await request('eth_sendRawTransaction', [raw]);
      if (answered.toLowerCase() !== hash.toLowerCase()) throw new Error(`the provider answered hash ${answered}, expected ${hash}`);
      sent = hash;
    } catch (error) {
      if (attempt >= 4 || !/nonce|underpriced|already known/i.test(message(error))) throw error;
      setText('send-state', `refused (${message(error)}); retrying after a block`);
      await sleep(1000 * (devnet.blockTime ?? 2));
    }
  }
  setText('send-hash', sent);
  $('send-hash').dataset.hash = sent;

  const started = Date.now();
  for (;;) {
    const receipt = await request('eth_getTransactionReceipt', [sent]);
    if (receipt) {
      const ok = receipt.status === '0x1';
      setText('send-state', `receipt verified after ${((Date.now() - started) / 1000).toFixed(1)} s`);
      setText('receipt-block', `#${Number(receipt.blockNumber)} ${short(receipt.blockHash, 6)}`);
      setText('receipt-status', ok ? '0x1 success' : `${receipt.status} failed`);
      $('receipt-status').dataset.status = receipt.status;
      $('receipt-status').style.color = ok ? 'var(--ok)' : 'var(--bad)';
      setText('receipt-gas', String(Number(receipt.gasUsed)));
      return;
    }
    if (Date.now() - started > RECEIPT_TIMEOUT_MS) throw new Error(`no receipt for ${sent} within ${RECEIPT_TIMEOUT_MS / 1000} s`);
    setText('send-state', `sent; waiting for its receipt in a verified block (${((Date.now() - started) / 1000).toFixed(0)} s)`);
    await sleep(1000);
  }
}

start().catch((error) => {
  showError('start', error);
  pill($('conn'), 'failed to start', 'bad');
});
