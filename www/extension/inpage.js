// MAIN-world content script (document_start): the page's EIP-1193 providers. request() goes
// over window.postMessage to relay.js (ISOLATED world), which forwards it to the extension's
// service worker, where the ULC client runs; events come back the same way.
//
// Two kinds of provider:
// - the client itself (read-only), always announced with EIP-6963 (again on every
//   eip6963:requestProvider), and window.ethereum while no wallet claims that;
// - where the page has a wallet (announced with EIP-6963, or a legacy window.ethereum), a
//   wrap of it, announced as its own EIP-6963 provider: account, signing and wallet_*
//   methods go to the wallet (WALLET_METHODS), every read to the client, verified. Announced
//   only while the options page's "wrap" setting is on (default), which the service worker
//   sends here as a `settings` message.

(() => {
  const TO_EXT = 'ulc-inpage';
  const FROM_EXT = 'ulc-relay';
  const ICON = 'data:image/svg+xml,%3Csvg%20xmlns%3D%22http%3A%2F%2Fwww.w3.org%2F2000%2Fsvg%22%20width%3D%2296%22%20height%3D%2296%22%20viewBox%3D%220%200%2096%2096%22%3E%3Crect%20width%3D%2296%22%20height%3D%2296%22%20rx%3D%2220%22%20fill%3D%22%231f2937%22%2F%3E%3Cpath%20d%3D%22M48%2014%2074%2048%2048%2082%2022%2048Z%22%20fill%3D%22none%22%20stroke%3D%22%2360a5fa%22%20stroke-width%3D%226%22%20stroke-linejoin%3D%22round%22%2F%3E%3Cpath%20d%3D%22M48%2030%2062%2048%2048%2066%2034%2048Z%22%20fill%3D%22%2360a5fa%22%2F%3E%3C%2Fsvg%3E';
  /** Our own EIP-6963 rdns; a wrap's is `${RDNS}.wrap.<the wallet's rdns>` (dapps key wallets by rdns). */
  const RDNS = 'org.ulc.client';

  // Which requests of a wrapped provider go to the wallet, and which of those must find the
  // wallet on the client's chain. The wallet alone holds the user's keys and knows which
  // accounts the user chose to share, so account, signing and wallet_* (chain switching,
  // permissions, assets, batched calls) methods can only be its; everything else is a read
  // and goes to the light client, because the wallet's reads come unverified from its RPC
  // provider. A signature or transaction made on another chain than the one the verified
  // reads are of is refused (4901): the user would sign against state they were not shown.
  // eth_sendRawTransaction stays with the client (it checks the chain ID and sends to several
  // servers), and so does the receipt of a transaction the wallet sent: read, so verified.
  const WALLET_METHODS = new Map([
    ['eth_requestAccounts', { sameChain: false }],
    ['eth_accounts', { sameChain: false }],
    ['eth_coinbase', { sameChain: false }],
    ['eth_sendTransaction', { sameChain: true }],
    ['eth_signTransaction', { sameChain: true }],
    ['eth_sign', { sameChain: true }],
    ['personal_sign', { sameChain: true }],
    ['eth_signTypedData', { sameChain: true }],
    ['eth_signTypedData_v3', { sameChain: true }],
    ['eth_signTypedData_v4', { sameChain: true }],
    ['wallet_sendCalls', { sameChain: true }],
  ]);
  /** Every other wallet_* method (wallet_switchEthereumChain must work on a mismatch). */
  const WALLET_PREFIX = { prefix: 'wallet_', sameChain: false };

  /** Where a wrapped provider sends `method`: null for the client, else the wallet route. */
  function walletRoute(method) {
    return WALLET_METHODS.get(method) ?? (method.startsWith(WALLET_PREFIX.prefix) ? WALLET_PREFIX : null);
  }

  class ProviderRpcError extends Error {
    constructor(code, message, data) {
      super(message);
      this.name = 'ProviderRpcError';
      this.code = code;
      if (data !== undefined) this.data = data;
    }
  }

  /** An EIP-1193 event emitter whose methods return `self()` (the provider they belong to). */
  function emitter(self) {
    const listeners = new Map();
    const addListener = (event, listener) => {
      if (typeof listener !== 'function') throw new TypeError('listener must be a function');
      const list = listeners.get(event);
      if (list) list.push(listener);
      else listeners.set(event, [listener]);
      return self();
    };
    const removeListener = (event, listener) => {
      const list = listeners.get(event);
      if (!list) return self();
      for (let i = list.length - 1; i >= 0; i--) {
        if (list[i] === listener || list[i].listener === listener) {
          list.splice(i, 1);
          break;
        }
      }
      if (list.length === 0) listeners.delete(event);
      return self();
    };
    const once = (event, listener) => {
      const wrapper = function (...args) {
        removeListener(event, wrapper);
        return listener.apply(this, args);
      };
      wrapper.listener = listener;
      return addListener(event, wrapper);
    };
    const emit = (event, ...args) => {
      const list = listeners.get(event);
      if (!list) return false;
      for (const listener of [...list]) {
        try {
          listener.apply(self(), args);
        } catch (error) {
          queueMicrotask(() => {
            throw error;
          });
        }
      }
      return true;
    };
    const api = {
      on: addListener,
      addListener,
      once,
      removeListener,
      off: removeListener,
      removeAllListeners(event) {
        if (event === undefined) listeners.clear();
        else listeners.delete(event);
        return self();
      },
      listenerCount(event) {
        return listeners.get(event)?.length ?? 0;
      },
    };
    return { emit, api };
  }

  const pending = new Map();
  let nextId = 1;
  /** Emitters of the client's events: the client's own provider and every wrap. */
  const clientEvents = new Set();

  /** The client's request(): validated, JSON-cloned, sent to the service worker. */
  const clientRequest = (args) => {
    if (args === null || typeof args !== 'object' || Array.isArray(args)) {
      return Promise.reject(new ProviderRpcError(-32600, 'request expects an object {method, params?}'));
    }
    const { method, params } = args;
    if (typeof method !== 'string' || method.length === 0) {
      return Promise.reject(new ProviderRpcError(-32600, 'request expects a method name'));
    }
    if (params !== undefined && params !== null && typeof params !== 'object') {
      return Promise.reject(new ProviderRpcError(-32602, 'params must be an array or an object'));
    }
    let plain;
    try {
      // Structured clone would carry what JSON cannot; the client speaks JSON.
      plain = params === undefined ? undefined : JSON.parse(JSON.stringify(params));
    } catch (error) {
      return Promise.reject(new ProviderRpcError(-32602, `params cannot be sent as JSON: ${error.message}`));
    }
    const id = nextId++;
    return new Promise((ok, fail) => {
      pending.set(id, { ok, fail });
      window.postMessage({ target: TO_EXT, id, method, params: plain }, window.location.origin);
    });
  };

  let provider;
  const own = emitter(() => provider);
  clientEvents.add(own);
  provider = Object.freeze({ isUlc: true, request: clientRequest, ...own.api });

  // --- wrapping the page's wallet -------------------------------------------------------------

  /** wallet provider -> its EIP-6963 info, for every wallet seen (wrapped or not yet). */
  const wallets = new Map();
  /** wallet provider -> its wrap's frozen EIP-6963 detail (one wrap per wallet object). */
  const wraps = new Map();
  /** The wrap setting from the service worker: null until it arrives. */
  let wrapOn = null;

  const isOurs = (candidate) => candidate === provider || [...wraps.values()].some((d) => d.provider === candidate);

  async function sameChain(wallet) {
    const [walletChain, clientChain] = await Promise.all([
      wallet.request({ method: 'eth_chainId' }),
      clientRequest({ method: 'eth_chainId' }),
    ]);
    let same;
    try {
      same = BigInt(walletChain) === BigInt(clientChain);
    } catch {
      same = false;
    }
    if (!same) {
      throw new ProviderRpcError(4901,
        `the wallet is on chain ${walletChain}, the verified reads are of chain ${clientChain}: switch the wallet to ${clientChain} (wallet_switchEthereumChain) or the extension's chain (its options page)`,
        { walletChainId: walletChain, clientChainId: clientChain });
    }
  }

  function wrap(wallet, walletInfo) {
    let wrapped;
    const events = emitter(() => wrapped);
    clientEvents.add(events);
    // Accounts are the wallet's; everything else the client says (chain, connection, heads).
    if (typeof wallet.on === 'function') {
      try {
        wallet.on('accountsChanged', (accounts) => events.emit('accountsChanged', accounts));
      } catch {
        // a wallet without events: accounts are still read through eth_accounts
      }
    }
    const request = async (args) => {
      const method = args?.method;
      const route = typeof method === 'string' ? walletRoute(method) : null;
      if (!route) return clientRequest(args);
      if (route.sameChain) await sameChain(wallet);
      return wallet.request(args);
    };
    wrapped = Object.freeze({ isUlc: true, isUlcWrap: true, request, ...events.api });
    const name = walletInfo?.name ? String(walletInfo.name) : 'wallet';
    const walletRdns = walletInfo?.rdns ? String(walletInfo.rdns) : 'injected';
    const detail = Object.freeze({
      info: Object.freeze({ uuid: newUuid(), name: `ULC (verified reads) + ${name}`, icon: ICON, rdns: `${RDNS}.wrap.${walletRdns}` }),
      provider: wrapped,
    });
    wraps.set(wallet, detail);
    return detail;
  }

  /** A legacy window.ethereum's name, from the flags wallets set. */
  function legacyInfo(wallet) {
    if (wallet.isMetaMask) return { name: 'MetaMask', rdns: 'injected.metamask' };
    if (wallet.isCoinbaseWallet) return { name: 'Coinbase Wallet', rdns: 'injected.coinbase' };
    return { name: 'window.ethereum', rdns: 'injected' };
  }

  const announceDetail = (detail) => window.dispatchEvent(new CustomEvent('eip6963:announceProvider', { detail }));

  /** A wallet found (announced, or as window.ethereum): remembered; wrapped and announced once while wrapping is on. */
  function found(wallet, info) {
    if (!wallet || typeof wallet.request !== 'function' || isOurs(wallet)) return;
    if (!wallets.has(wallet)) wallets.set(wallet, info);
    if (wrapOn && !wraps.has(wallet)) announceDetail(wrap(wallet, wallets.get(wallet)));
  }

  window.addEventListener('eip6963:announceProvider', (event) => {
    const detail = event.detail;
    if (!detail || String(detail.info?.rdns ?? '').startsWith(RDNS)) return;
    found(detail.provider, detail.info);
  });

  /** A legacy window.ethereum that did not announce itself (checked after announcements had their turn). */
  function foundOnWindow() {
    const onWindow = window.ethereum;
    if (onWindow && onWindow !== provider && !wallets.has(onWindow)) found(onWindow, legacyInfo(onWindow));
  }

  let discovering = false;
  /** Asks the page's wallets to announce themselves, then looks at window.ethereum. */
  function discover() {
    discovering = true;
    try {
      window.dispatchEvent(new Event('eip6963:requestProvider'));
    } finally {
      discovering = false;
    }
    // EIP-6963 announcements arrive synchronously in dispatchEvent: a window.ethereum that
    // announced itself is known by then, under its own name.
    foundOnWindow();
  }

  // window.ethereum: ours while no wallet sets one; a wallet's assignment (document_start
  // wallets may run after us) wins, so the wallet is never broken by us, and is wrapped.
  if (window.ethereum === undefined) {
    let assigned;
    try {
      Object.defineProperty(window, 'ethereum', {
        configurable: true,
        enumerable: true,
        get: () => assigned ?? provider,
        set: (value) => {
          assigned = value;
          // The wallet's own EIP-6963 announcement usually follows in the same script.
          setTimeout(discover, 0);
        },
      });
    } catch {
      // another script made it non-configurable in between; EIP-6963 still finds us
    }
  }

  // --- messages from the extension ------------------------------------------------------------

  window.addEventListener('message', (event) => {
    if (event.source !== window || event.data?.target !== FROM_EXT) return;
    const msg = event.data;
    if (msg.type === 'reply') {
      const entry = pending.get(msg.id);
      if (!entry) return;
      pending.delete(msg.id);
      if (msg.error) entry.fail(new ProviderRpcError(msg.error.code, msg.error.message, msg.error.data));
      else entry.ok(msg.result);
    } else if (msg.type === 'event') {
      const args = msg.event === 'disconnect'
        ? [new ProviderRpcError(msg.payload?.code ?? 4900, msg.payload?.message ?? 'disconnected')]
        : [msg.payload];
      for (const events of clientEvents) events.emit(msg.event, ...args);
    } else if (msg.type === 'settings') {
      const was = wrapOn;
      wrapOn = msg.wrap === true;
      if (!wrapOn || was) return;
      for (const [wallet, info] of wallets) {
        announceDetail(wraps.get(wallet) ?? wrap(wallet, info));
      }
      discover();
    }
  });

  // --- EIP-6963 announcement of our providers -------------------------------------------------

  function newUuid() {
    return crypto.randomUUID?.() ?? '10000000-1000-4000-8000-100000000000'.replace(/[018]/g, (c) =>
      (Number(c) ^ (crypto.getRandomValues(new Uint8Array(1))[0] & (15 >> (Number(c) / 4)))).toString(16));
  }

  const detail = Object.freeze({
    info: Object.freeze({ uuid: newUuid(), name: 'ULC light client', icon: ICON, rdns: RDNS }),
    provider,
  });
  window.addEventListener('eip6963:requestProvider', () => {
    // Our own discovery request is for the wallets; the dapp's gets every provider of ours.
    if (discovering) return;
    announceDetail(detail);
    if (!wrapOn) return;
    for (const wrapped of wraps.values()) announceDetail(wrapped);
    // A wallet's announcement may come later in this same dispatch, under its own name.
    setTimeout(foundOnWindow, 0);
  });
  announceDetail(detail);
})();
