// A deliberately tiny, dependency-free transaction signer for the devnet demo ONLY: keccak256,
// secp256k1 signing with BigInt arithmetic, RLP, and EIP-1559 transactions. It is neither
// constant-time nor audited; use it with anvil's public test keys and nothing else. A real
// dapp signs in the user's wallet (the ULC provider is read-only: it sends signed
// transactions with eth_sendRawTransaction and never holds keys).

// --- keccak256 (Keccak-f[1600] on BigInt lanes; the original padding 0x01, not SHA-3's) ----

const MASK64 = (1n << 64n) - 1n;
const ROTL = [];
const PI = [];
const IOTA = [];
for (let round = 0, r = 1n, x = 1, y = 0; round < 24; round++) {
  [x, y] = [y, (2 * x + 3 * y) % 5];
  PI.push(x + 5 * y);
  ROTL.push(BigInt((((round + 1) * (round + 2)) / 2) % 64));
  let t = 0n;
  for (let j = 0; j < 7; j++) {
    r = ((r << 1n) ^ ((r >> 7n) * 0x71n)) % 256n;
    if (r & 2n) t ^= 1n << ((1n << BigInt(j)) - 1n);
  }
  IOTA.push(t);
}
const rotl = (v, n) => (n === 0n ? v : ((v << n) | (v >> (64n - n))) & MASK64);

function keccakF(a) {
  const c = new Array(5);
  for (let round = 0; round < 24; round++) {
    for (let x = 0; x < 5; x++) c[x] = a[x] ^ a[x + 5] ^ a[x + 10] ^ a[x + 15] ^ a[x + 20];
    for (let x = 0; x < 5; x++) {
      const d = c[(x + 4) % 5] ^ rotl(c[(x + 1) % 5], 1n);
      for (let y = 0; y < 25; y += 5) a[x + y] ^= d;
    }
    let current = a[1];
    for (let t = 0; t < 24; t++) {
      const next = a[PI[t]];
      a[PI[t]] = rotl(current, ROTL[t]);
      current = next;
    }
    for (let y = 0; y < 25; y += 5) {
      const row = a.slice(y, y + 5);
      for (let x = 0; x < 5; x++) a[y + x] = row[x] ^ ((row[(x + 1) % 5] ^ MASK64) & row[(x + 2) % 5]);
    }
    a[0] ^= IOTA[round];
  }
}

/** keccak256 of bytes (Uint8Array) as a Uint8Array(32). */
export function keccak256(bytes) {
  const rate = 136;
  const padded = new Uint8Array(Math.floor(bytes.length / rate) * rate + rate);
  padded.set(bytes);
  padded[bytes.length] ^= 0x01;
  padded[padded.length - 1] ^= 0x80;
  const a = new Array(25).fill(0n);
  for (let off = 0; off < padded.length; off += rate) {
    for (let i = 0; i < rate / 8; i++) {
      let lane = 0n;
      for (let b = 7; b >= 0; b--) lane = (lane << 8n) | BigInt(padded[off + i * 8 + b]);
      a[i] ^= lane;
    }
    keccakF(a);
  }
  const out = new Uint8Array(32);
  for (let i = 0; i < 4; i++) for (let b = 0; b < 8; b++) out[i * 8 + b] = Number((a[i] >> BigInt(8 * b)) & 0xffn);
  return out;
}

// --- bytes ----------------------------------------------------------------------------------

export function hexToBytes(hex) {
  const h = hex.replace(/^0x/, '');
  if (h.length % 2 || /[^0-9a-f]/i.test(h)) throw new Error(`not hex bytes: ${hex}`);
  return Uint8Array.from(h.match(/../g) ?? [], (b) => parseInt(b, 16));
}
export const bytesToHex = (bytes) => `0x${[...bytes].map((b) => b.toString(16).padStart(2, '0')).join('')}`;
const bytesToBig = (bytes) => (bytes.length ? BigInt(bytesToHex(bytes)) : 0n);
function bigToBytes(n, length) {
  let h = n.toString(16);
  if (h.length % 2) h = `0${h}`;
  if (n === 0n) h = '';
  const bytes = hexToBytes(h);
  if (length === undefined) return bytes;
  const out = new Uint8Array(length);
  out.set(bytes, length - bytes.length);
  return out;
}

// --- secp256k1 (affine coordinates, BigInt) -------------------------------------------------

const P = 2n ** 256n - 2n ** 32n - 977n;
const N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;
const G = [
  0x79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798n,
  0x483ada7726a3c4655da4fbfc0e1108a8fd17b448a68554199c47d08ffb10d4b8n,
];
const mod = (a, m) => ((a % m) + m) % m;
function inverse(a, m) {
  let [r0, r1, s0, s1] = [mod(a, m), m, 1n, 0n];
  while (r1 !== 0n) {
    const q = r0 / r1;
    [r0, r1] = [r1, r0 - q * r1];
    [s0, s1] = [s1, s0 - q * s1];
  }
  if (r0 !== 1n) throw new Error('not invertible');
  return mod(s0, m);
}
function add(p1, p2) {
  if (p1 === null) return p2;
  if (p2 === null) return p1;
  const [x1, y1] = p1;
  const [x2, y2] = p2;
  let l;
  if (x1 === x2) {
    if (mod(y1 + y2, P) === 0n) return null;
    l = mod(3n * x1 * x1 * inverse(2n * y1, P), P);
  } else {
    l = mod((y2 - y1) * inverse(x2 - x1, P), P);
  }
  const x3 = mod(l * l - x1 - x2, P);
  return [x3, mod(l * (x1 - x3) - y1, P)];
}
function multiply(k, point = G) {
  let result = null;
  for (let addend = point; k > 0n; k >>= 1n, addend = add(addend, addend)) {
    if (k & 1n) result = add(result, addend);
  }
  return result;
}

/** The address of a private key: keccak256(x || y)[12..]. */
export function addressOf(privateKeyHex) {
  const [x, y] = multiply(BigInt(privateKeyHex));
  const pub = new Uint8Array(64);
  pub.set(bigToBytes(x, 32));
  pub.set(bigToBytes(y, 32), 32);
  return bytesToHex(keccak256(pub).slice(12));
}

/** Signs a 32-byte digest: {r, s, yParity}, low-s, with a fresh random nonce. */
function sign(digest, privateKeyHex) {
  const d = BigInt(privateKeyHex);
  const z = bytesToBig(digest);
  for (;;) {
    const k = mod(bytesToBig(crypto.getRandomValues(new Uint8Array(32))), N);
    if (k === 0n) continue;
    const [rx, ry] = multiply(k);
    const r = mod(rx, N);
    if (r === 0n) continue;
    let s = mod(inverse(k, N) * (z + r * d), N);
    if (s === 0n) continue;
    let yParity = Number(ry & 1n);
    if (s > N / 2n) {
      s = N - s;
      yParity ^= 1;
    }
    return { r, s, yParity };
  }
}

// --- RLP and EIP-1559 transactions ----------------------------------------------------------

function concat(parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}
function rlpLength(length, short) {
  if (length < 56) return Uint8Array.of(short + length);
  const len = bigToBytes(BigInt(length));
  return concat([Uint8Array.of(short + 55 + len.length), len]);
}
/** RLP of a value: Uint8Array (bytes), bigint (minimal big-endian integer) or an array. */
export function rlp(value) {
  if (Array.isArray(value)) {
    const body = concat(value.map(rlp));
    return concat([rlpLength(body.length, 0xc0), body]);
  }
  const bytes = typeof value === 'bigint' ? bigToBytes(value) : value;
  if (bytes.length === 1 && bytes[0] < 0x80) return bytes;
  return concat([rlpLength(bytes.length, 0x80), bytes]);
}

/**
 * Signs an EIP-1559 transaction {chainId, nonce, maxPriorityFeePerGas, maxFeePerGas, gas, to,
 * value, data} (numbers as bigint, to/data hex) and returns {raw, hash} as hex.
 */
export function signTransaction(tx, privateKeyHex) {
  const fields = [
    BigInt(tx.chainId),
    BigInt(tx.nonce),
    BigInt(tx.maxPriorityFeePerGas),
    BigInt(tx.maxFeePerGas),
    BigInt(tx.gas),
    hexToBytes(tx.to),
    BigInt(tx.value ?? 0n),
    hexToBytes(tx.data ?? '0x'),
    [],
  ];
  const digest = keccak256(concat([Uint8Array.of(2), rlp(fields)]));
  const { r, s, yParity } = sign(digest, privateKeyHex);
  const raw = concat([Uint8Array.of(2), rlp([...fields, BigInt(yParity), r, s])]);
  return { raw: bytesToHex(raw), hash: bytesToHex(keccak256(raw)) };
}
