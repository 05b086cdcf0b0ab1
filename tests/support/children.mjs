// Node-side helpers of the tests that start their own lesd and les-bridge beside the devnet
// (tests/service.test.mjs, tests/paywallet.test.mjs): free ports, JSON-RPC calls, child
// processes that print one line when ready, and polling until a condition holds.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { createInterface } from 'node:readline';

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export async function freePort() {
  const server = createServer();
  await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
  const { port } = server.address();
  await new Promise((ok) => server.close(ok));
  return port;
}

/** One JSON-RPC call over HTTP; its result, or an Error carrying the error object. */
export async function rpc(url, method, params = []) {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }),
  });
  const body = await response.json();
  if (body.error) throw new Error(`${method}: ${JSON.stringify(body.error)}`);
  return body.result;
}

/** Starts `bin` (stopped after test `t`) and resolves with its first stdout line (what lesd and les-bridge print when ready). */
export function startChild(t, bin, args) {
  const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (chunk) => {
    stderr = (stderr + chunk).slice(-4000);
  });
  t.after(() => child.kill('SIGTERM'));
  return new Promise((ok, fail) => {
    const lines = createInterface({ input: child.stdout });
    lines.once('line', (line) => ok({ child, line: line.trim() }));
    child.once('exit', (code) => fail(new Error(`${bin} exited (${code}) before it was ready: ${stderr}`)));
    setTimeout(() => fail(new Error(`${bin} printed nothing within 30 s: ${stderr}`)), 30_000);
  });
}

/** Polls `probe` (→ {ok, value}) every 250 ms until ok, then its value; fails after `ms` with the last value seen. */
export async function until(what, probe, ms = 60_000) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    last = await probe();
    if (last.ok) return last.value;
    if (Date.now() > deadline) assert.fail(`${what}: last seen ${JSON.stringify(last.value)}`);
    await new Promise((ok) => setTimeout(ok, 250));
  }
}
