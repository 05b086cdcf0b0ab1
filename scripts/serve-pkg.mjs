// A static server for the npm package in browser tests and benchmarks: pkg/ under /pkg/ and an
// empty page at /, on 127.0.0.1 (a secure context, so IndexedDB and crypto.randomUUID work).
// Nothing outside pkg/ is ever served.

import { existsSync, readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { dirname, extname, join, normalize, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

export const PKG = join(resolve(dirname(fileURLToPath(import.meta.url)), '..'), 'pkg');

const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.wasm': 'application/wasm', '.json': 'application/json', '.ts': 'text/plain' };

/** Starts the server on a free port; `headers` go on every response. Resolves to the server. */
export function servePkg({ title = 'ulc', headers = {} } = {}) {
  const server = createServer((req, res) => {
    for (const [name, value] of Object.entries(headers)) res.setHeader(name, value);
    const path = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    if (path === '/') {
      res.writeHead(200, { 'content-type': 'text/html' });
      return res.end(`<!doctype html><title>${title}</title>`);
    }
    const file = normalize(join(PKG, path.replace(/^\/pkg\//, '/')));
    const inside = relative(PKG, file);
    if (!path.startsWith('/pkg/') || inside.startsWith('..') || inside.split(sep).includes('..') || !existsSync(file)) {
      res.writeHead(404);
      return res.end();
    }
    res.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream' });
    res.end(readFileSync(file));
  });
  return new Promise((ok) => server.listen(0, '127.0.0.1', () => ok(server)));
}
