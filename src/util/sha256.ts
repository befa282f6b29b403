/**
 * sha256 of a buffer or string held in memory. While nothing in the process has loaded node:crypto,
 * inputs are hashed by the WebAssembly function of sha256-wasm.ts, up to BUDGET bytes in all: a
 * command that only checks a few small sums (a no-op install: the DB's head, a repository index)
 * then never loads node:crypto and the stream modules it brings. Past that, and once node:crypto is
 * loaded, node:crypto hashes, several times faster: a command that hashes much pays its load once.
 */
import { nodeCrypto, nodeCryptoLoaded } from './lazy-builtins.js';
import { sha256HexWasm } from './sha256-wasm.js';

/** ≈ 5 ms of hashing in WebAssembly here, about half of what loading node:crypto costs. */
const BUDGET = 1024 * 1024;
let left = BUDGET;

export function sha256Hex(data: Uint8Array | string): string {
  if (!nodeCryptoLoaded()) {
    const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    if (bytes.length <= left) {
      const hex = sha256HexWasm(bytes);
      if (hex !== null) {
        left -= bytes.length;
        return hex;
      }
    }
  }
  return nodeCrypto().createHash('sha256').update(data).digest('hex');
}
