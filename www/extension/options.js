// The options page: edits the configuration in chrome.storage.local (config.js); the service
// worker restarts the client whenever it changes. The wrap checkbox is saved at once (it
// does not restart the client).

import { loadConfig, loadWrap, saveConfig, saveWrap } from './config.js';

const $ = (id) => document.getElementById(id);

function parseServers(text) {
  return text.split('\n').map((line) => line.trim()).filter(Boolean).map((line, i) => {
    const [enode, bridge, ...rest] = line.split(/\s+/);
    if (!enode.startsWith('enode://') || rest.length > 0) throw new Error(`line ${i + 1}: expected "enode://… ws://bridge/host:port"`);
    return bridge ? { enode, bridge } : { enode };
  });
}

$('wrap').addEventListener('change', () => {
  saveWrap($('wrap').checked).catch((error) => {
    $('status').textContent = error.message;
  });
});

async function show() {
  $('wrap').checked = await loadWrap();
  const config = await loadConfig();
  if (!config) return;
  $('servers').value = config.servers.map((s) => [s.enode, s.bridge].filter(Boolean).join(' ')).join('\n');
  $('chainId').value = String(config.chainId);
  $('genesisHash').value = config.genesisHash ?? '';
  $('fraction').value = config.fraction ?? '';
}

async function status() {
  const reply = await chrome.runtime.sendMessage({ type: 'ulc-status' });
  $('status').textContent = reply.error ? reply.error.message : JSON.stringify(reply.result, null, 2);
}

$('form').addEventListener('submit', async (event) => {
  event.preventDefault();
  try {
    const chainText = $('chainId').value.trim();
    const chainId = Number(chainText.startsWith('0x') ? BigInt(chainText) : chainText);
    if (!Number.isSafeInteger(chainId) || chainId < 0) throw new Error(`chain ID ${chainText} is not a number`);
    const config = { chainId, servers: parseServers($('servers').value) };
    if (config.servers.length === 0) throw new Error('at least one server is needed');
    const genesisHash = $('genesisHash').value.trim();
    if (genesisHash) config.genesisHash = genesisHash;
    const fraction = $('fraction').value.trim();
    if (fraction) config.fraction = Number(fraction);
    await saveConfig(config);
    $('status').textContent = 'saved; the client restarts';
    setTimeout(() => status().catch(() => {}), 1000);
  } catch (error) {
    $('status').textContent = error.message;
  }
});

show().then(status).catch((error) => {
  $('status').textContent = error.message;
});
