// The extension's configuration in chrome.storage.local under the key "ulcConfig":
// {chainId, genesisHash?, servers: [{enode, bridge}], fraction?}. Shared by the service
// worker (which starts the client from it) and the options page (which edits it).

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
