/**
 * Real signals to a real `node bin/cpm.js install` whose layer download stalls behind the fault
 * proxy (a registry that sent part of a blob and went silent): SIGINT ends it within a second with
 * exit 130, SIGTERM with 143, each with an "interrupted …; the root is unchanged" line. The root
 * has no DB, no stage, no files of the package; the partial download stays in the cache and the
 * next run resumes it with a Range request.
 */
import { existsSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnCpm } from '../support/cli.js';
import type { FaultProxy } from '../support/fault-proxy.js';
import { pseudoRandom } from '../support/layers.js';
import { pushTestPackages } from '../support/pushed-tree.js';
import type { RegistryInstance } from '../support/registry.js';
import { tmpDir } from './helpers.js';

let dir: string;
let cfg: string;
let reg: RegistryInstance;
let proxy: FaultProxy;

beforeAll(async () => {
  dir = tmpDir('cpm-signals-');
  cfg = path.join(dir, 'cpm.yaml');
  writeFileSync(cfg, `cache_dir: ${dir}/cache\nrepos_confdir: []\n`);
  ({ reg, proxy } = await pushTestPackages(dir, [{ name: 'big', blob: pseudoRandom(2 << 20, 3) }]));
}, 120_000);
afterAll(async () => {
  await proxy?.stop();
  await reg?.stop();
});

/** The big layer's GET (the largest blob the proxy saw requested). */
const blobGets = (): string[] =>
  proxy.requests
    .filter((r) => r.method === 'GET' && r.path.includes('/blobs/'))
    .map((r) => r.range ?? 'full');

/** `cpm install test/big` through the proxy into `root`, as a child. */
const install = (root: string, ...more: string[]) =>
  spawnCpm(['install', 'test/big', '--repo', `oci://${proxy.host}/cpm`, '--root', root, ...more], {
    ...process.env,
    CPM_CONFIG: cfg,
  });

async function interruptStalled(
  sig: 'SIGINT' | 'SIGTERM',
  root: string,
): Promise<{ code: number | null; err: string; afterSignalMs: number }> {
  proxy.reset();
  // every blob stalls after 64 KiB: index blobs are small and pass whole, the layer stalls
  proxy.add({
    path: /\/blobs\/sha256:/,
    fault: { kind: 'stall', afterBytes: 64 << 10 },
    times: Infinity,
  });
  const { child, done } = install(root, '-q');
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  // wait for the stall: the layer's GET seen, then a moment of silence
  const t0 = Date.now();
  while (!proxy.requests.some((r) => r.fault === 'stall' && r.path.includes('/blobs/'))) {
    if (Date.now() - t0 > 30_000) throw new Error(`no blob download started: ${err}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  await new Promise((r) => setTimeout(r, 1500));
  const sent = Date.now();
  child.kill(sig);
  const r = await done;
  return { code: r.code, err: r.err, afterSignalMs: Date.now() - sent };
}

describe('signals during a stalled download (CLI)', () => {
  it.each([
    ['SIGINT', 130],
    ['SIGTERM', 143],
  ] as const)(
    '%s ends it within a second with exit %d and the root unchanged',
    async (sig, exit) => {
      const root = path.join(dir, `root-${sig}`);
      const r = await interruptStalled(sig, root);
      expect(r.code, r.err).toBe(exit);
      expect(r.afterSignalMs).toBeLessThan(1000);
      expect(r.err).toContain(`interrupted by ${sig}; the root is unchanged`);
      expect(r.err).not.toMatch(/internal error|\n\s+at /);
      expect(existsSync(path.join(root, 'var/lib/cpm/installed'))).toBe(false);
      expect(existsSync(path.join(root, '.cpm-tx'))).toBe(false);
      expect(existsSync(path.join(root, 'usr/share/big'))).toBe(false);
      const blobs = readdirSync(path.join(dir, 'cache/blobs/sha256'));
      expect(blobs.some((f) => f.startsWith('.partial-'))).toBe(true);
    },
  );

  it('the next run resumes the partial download with Range and installs', async () => {
    proxy.reset();
    const root = path.join(dir, 'root-resume');
    const r = await install(root, '-q').done;
    expect(r.code, r.err).toBe(0);
    expect(blobGets().some((g) => /^bytes=\d+-$/.test(g))).toBe(true);
    expect(existsSync(path.join(root, 'usr/share/big/blob'))).toBe(true);
    const blobs = readdirSync(path.join(dir, 'cache/blobs/sha256'));
    expect(blobs.filter((f) => f.startsWith('.partial-'))).toEqual([]);
  });

  it('a corrupt cached layer is evicted and fetched again once, and the install succeeds', async () => {
    const blobsDir = path.join(dir, 'cache/blobs/sha256');
    const layer = readdirSync(blobsDir)
      .filter((f) => !f.startsWith('.'))
      .map((f) => path.join(blobsDir, f))
      .sort((a, b) => statSync(b).size - statSync(a).size)[0]!;
    const bytes = readFileSync(layer);
    bytes[1000] = bytes[1000]! ^ 0xff;
    writeFileSync(layer, bytes);
    proxy.reset();
    const root = path.join(dir, 'root-heal');
    const r = await install(root).done;
    expect(r.code, r.err).toBe(0);
    expect(r.err).toMatch(/dropping the cached copy and fetching again/);
    expect(blobGets()).toContain('full');
    expect(existsSync(path.join(root, 'usr/share/big/blob'))).toBe(true);
    expect(readFileSync(layer).equals(bytes)).toBe(false);
  });
});
