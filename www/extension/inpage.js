// MAIN-world content script (document_start): the page's EIP-1193 provider. request() goes
// over window.postMessage to relay.js (ISOLATED world), which forwards it to the extension's
// service worker, where the ULC client runs; events come back the same way. The provider is
// window.ethereum only where no other wallet set one, and is always announced with EIP-6963
// (again on every eip6963:requestProvider).

(() => {
  const TO_EXT = 'ulc-inpage';
  const FROM_EXT = 'ulc-relay';
  const ICON = 'data:image/svg+xml,%3Csvg%20xmlns%3D%22http%3A%2F%2Fwww.w3.org%2F2000%2Fsvg%22%20width%3D%2296%22%20height%3D%2296%22%20viewBox%3D%220%200%2096%2096%22%3E%3Crect%20width%3D%2296%22%20height%3D%2296%22%20rx%3D%2220%22%20fill%3D%22%231f2937%22%2F%3E%3Cpath%20d%3D%22M48%2014%2074%2048%2048%2082%2022%2048Z%22%20fill%3D%22none%22%20stroke%3D%22%2360a5fa%22%20stroke-width%3D%226%22%20stroke-linejoin%3D%22round%22%2F%3E%3Cpath%20d%3D%22M48%2030%2062%2048%2048%2066%2034%2048Z%22%20fill%3D%22%2360a5fa%22%2F%3E%3C%2Fsvg%3E';

  class ProviderRpcError extends Error {
    constructor(code, message, data) {
      super(message);
      this.name = 'ProviderRpcError';
      this.code = code;
      if (data !== undefined) this.data = data;
    }
  }

  const pending = new Map();
  let nextId = 1;
  const listeners = new Map();
  let provider;

  const emit = (event, ...args) => {
    const list = listeners.get(event);
    if (!list) return false;
    for (const listener of [...list]) {
      try {
        listener.apply(provider, args);
      } catch (error) {
        queueMicrotask(() => {
          throw error;
        });
      }
    }
    return true;
  };

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
      if (msg.event === 'disconnect') emit('disconnect', new ProviderRpcError(msg.payload?.code ?? 4900, msg.payload?.message ?? 'disconnected'));
      else emit(msg.event, msg.payload);
    }
  });

  const request = (args) => {
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

  const addListener = (event, listener) => {
    if (typeof listener !== 'function') throw new TypeError('listener must be a function');
    const list = listeners.get(event);
    if (list) list.push(listener);
    else listeners.set(event, [listener]);
    return provider;
  };
  const removeListener = (event, listener) => {
    const list = listeners.get(event);
    if (!list) return provider;
    for (let i = list.length - 1; i >= 0; i--) {
      if (list[i] === listener || list[i].listener === listener) {
        list.splice(i, 1);
        break;
      }
    }
    if (list.length === 0) listeners.delete(event);
    return provider;
  };
  const once = (event, listener) => {
    const wrapper = function (...args) {
      removeListener(event, wrapper);
      return listener.apply(this, args);
    };
    wrapper.listener = listener;
    return addListener(event, wrapper);
  };

  provider = Object.freeze({
    isUlc: true,
    request,
    on: addListener,
    addListener,
    once,
    removeListener,
    off: removeListener,
    removeAllListeners(event) {
      if (event === undefined) listeners.clear();
      else listeners.delete(event);
      return provider;
    },
    listenerCount(event) {
      return listeners.get(event)?.length ?? 0;
    },
  });

  if (window.ethereum === undefined) {
    try {
      Object.defineProperty(window, 'ethereum', { value: provider, configurable: true, writable: false });
    } catch {
      // another script made it non-configurable in between; EIP-6963 still finds us
    }
  }

  const uuid = crypto.randomUUID?.() ?? '00000000-0000-4000-8000-000000000000'.replace(/0/g, () => (Math.random() * 16 | 0).toString(16));
  const detail = Object.freeze({
    info: Object.freeze({ uuid, name: 'ULC light client', icon: ICON, rdns: 'org.ulc.client' }),
    provider,
  });
  const announce = () => window.dispatchEvent(new CustomEvent('eip6963:announceProvider', { detail }));
  window.addEventListener('eip6963:requestProvider', announce);
  announce();
})();
