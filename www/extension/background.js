// The extension's service worker: runs the ULC client (ulc/index.js, copied from pkg/ by
// scripts/build-extension.sh) with the configuration in chrome.storage.local and answers the
// pages' EIP-1193 requests, which relay.js forwards over a chrome.runtime port per page.
// A page's port first gets the wrap setting (config.js), and again whenever it changes.
// Events (connect, disconnect, chainChanged) go back to every connected port; `message`
// (eth_subscription) only to the page that made the subscription.
//
// The package works in a service worker: it only needs WebSocket, IndexedDB, performance and
// fetch of its wasm (no window). The client's WebSocket traffic (a head announcement per
// block) keeps the worker alive; if Chromium stops it anyway, the next page request starts
// it again and the IndexedDB store resumes the verified head at once.

import { createProvider } from './ulc/index.js';
import { CONFIG_KEY, WRAP_KEY, loadConfig, loadWrap } from './config.js';

const EVENTS = ['connect', 'disconnect', 'chainChanged', 'message'];
const ports = new Set();
/** subscription id -> the port (page) that made it: its `message` events go there only. */
const subscriptions = new Map();
/** Promise of the running provider for the current configuration (null: none configured). */
let current = null;

function broadcast(event, payload) {
  const owner = event === 'message' ? subscriptions.get(payload?.data?.subscription) : undefined;
  if (event === 'message' && !owner) return;
  for (const port of owner ? [owner] : ports) {
    try {
      port.postMessage({ type: 'event', event, payload: serializeEvent(payload) });
    } catch {
      ports.delete(port);
    }
  }
}

function serializeEvent(payload) {
  if (payload instanceof Error) return { code: payload.code, message: payload.message, data: payload.data };
  return payload;
}

async function start() {
  const config = await loadConfig();
  if (!config) return null;
  const provider = await createProvider({ ...config, storage: config.storage ?? 'indexeddb' });
  for (const event of EVENTS) provider.on(event, (payload) => broadcast(event, payload));
  return provider;
}

function provider() {
  if (!current) {
    current = start().catch((error) => {
      current = null;
      throw error;
    });
  }
  return current;
}

async function restart() {
  const old = current;
  current = null;
  if (old) {
    try {
      (await old)?.close();
    } catch {
      // a client that never started has nothing to close
    }
  }
  return provider();
}

/** Tells `targets` (ports) the wrap setting; inpage.js announces wraps only while it is on. */
async function sendSettings(targets) {
  const wrap = await loadWrap();
  for (const port of targets) {
    try {
      port.postMessage({ type: 'settings', wrap });
    } catch {
      ports.delete(port);
    }
  }
}

chrome.storage.onChanged.addListener((changes, area) => {
  if (area !== 'local') return;
  if (CONFIG_KEY in changes) restart().catch(() => {});
  if (WRAP_KEY in changes) sendSettings(ports).catch(() => {});
});

async function answer({ method, params }) {
  let p;
  try {
    p = await provider();
  } catch (error) {
    return { error: { code: 4900, message: `the light client did not start: ${error.message}` } };
  }
  if (!p) return { error: { code: 4900, message: 'the ULC extension has no servers configured (see its options page)' } };
  try {
    return { result: await p.request(params === undefined ? { method } : { method, params }) };
  } catch (error) {
    return { error: { code: error.code ?? -32603, message: error.message, data: error.data } };
  }
}

chrome.runtime.onConnect.addListener((port) => {
  if (port.name !== 'ulc-page') return;
  ports.add(port);
  port.onDisconnect.addListener(() => {
    ports.delete(port);
    // The page went away: end its subscriptions in the client.
    for (const [id, owner] of subscriptions) {
      if (owner !== port) continue;
      subscriptions.delete(id);
      answer({ method: 'eth_unsubscribe', params: [id] }).catch(() => {});
    }
  });
  // The settings go first, so a page knows whether to wrap its wallet before any answer.
  const settled = sendSettings([port]).catch(() => {});
  port.onMessage.addListener(async (msg) => {
    if (msg?.type !== 'request') return;
    const reply = await answer(msg);
    await settled;
    if (msg.method === 'eth_subscribe' && typeof reply.result === 'string') subscriptions.set(reply.result, port);
    if (msg.method === 'eth_unsubscribe' && reply.result === true) subscriptions.delete(msg.params?.[0]);
    try {
      port.postMessage({ type: 'reply', id: msg.id, ...reply });
    } catch {
      // the page went away
    }
  });
  // Start the client as soon as a page wants one, so `connect` can fire early.
  provider().catch(() => {});
});

// Options page and tests: status of the running client.
chrome.runtime.onMessage.addListener((msg, _sender, sendResponse) => {
  if (msg?.type === 'ulc-status') {
    answer({ method: 'ulc_status' }).then(sendResponse);
    return true;
  }
  return false;
});

provider().catch(() => {});
