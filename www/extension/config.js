// The extension's configuration in chrome.storage.local under the key "ulcConfig":
// {chainId, genesisHash?, servers: [{enode, bridge}], fraction?}, and whether pages' wallets
// are wrapped under "ulcWrap" (a key of its own: changing it must not restart the client).
// Shared by the service worker (which starts the client from it and tells the pages the wrap
// setting) and the options page (which edits both).

export const CONFIG_KEY = 'ulcConfig';

/** The stored configuration, or null when none is set (or it lacks servers). */
export async function loadConfig() {
  const { [CONFIG_KEY]: config } = await chrome.storage.local.get(CONFIG_KEY);
  if (!config || !Array.isArray(config.servers) || config.servers.length === 0) return null;
  return config;
}

export function saveConfig(config) {
  return chrome.storage.local.set({ [CONFIG_KEY]: config });
}

export const WRAP_KEY = 'ulcWrap';

/** Whether a page's wallet is wrapped (inpage.js): on unless switched off. */
export async function loadWrap() {
  const { [WRAP_KEY]: wrap } = await chrome.storage.local.get(WRAP_KEY);
  return wrap !== false;
}

export function saveWrap(wrap) {
  return chrome.storage.local.set({ [WRAP_KEY]: wrap === true });
}
