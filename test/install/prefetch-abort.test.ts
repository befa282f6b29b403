/**
 * One layer the registry cannot serve ends the download phase at once: a real `cpm install` of
 * two packages from a real registry, where the small package's layer blob was deleted (HTTP 404,
 * answered after a delay) while the big package's layer is downloading (its body stalls, as on a
 * slow link). The install fails within seconds — not after the sibling's idle timeout — with the
 * error naming the package and the layer digest; the sibling's download was abandoned (no partial
 * file left in the cache); the root and its DB are as they were.
 */
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
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

const run = (args: string[], env: Record<string, string> = {}) =>
  spawnCpm(args, { ...process.env, CPM_CONFIG: cfg, ...env }).done;

/** The layer digest of the package image whose repository name contains `name`. */
async function layerOf(name: string): Promise<{ repo: string; digest: string }> {
  const cat = (await (await fetch(`${reg.url}/v2/_catalog`)).json()) as { repositories: string[] };
  const repo = cat.repositories.find((r) => r.endsWith(`/${name}`) || r.includes(`-${name}`));
  if (!repo) throw new Error(`no image for ${name} in ${cat.repositories.join(' ')}`);
  const tags = (await (await fetch(`${reg.url}/v2/${repo}/tags/list`)).json()) as {
    tags: string[];
  };
  const m = (await (
    await fetch(`${reg.url}/v2/${repo}/manifests/${tags.tags[0]}`, {
      headers: { accept: 'application/vnd.oci.image.manifest.v1+json' },
    })
  ).json()) as { layers: Array<{ digest: string }> };
  return { repo, digest: m.layers[0]!.digest };
}

/** Every file and directory below `root` with its size: what "unchanged" compares. */
function listing(root: string, rel = ''): string[] {
  const out: string[] = [];
  for (const e of readdirSync(path.join(root, rel), { withFileTypes: true })) {
    const p = path.join(rel, e.name);
    if (e.isDirectory()) out.push(`${p}/`, ...listing(root, p));
    else out.push(`${p} ${readFileSync(path.join(root, p)).length}`);
  }
  return out.sort();
}

beforeAll(async () => {
  dir = tmpDir('cpm-prefetch-abort-');
  cfg = path.join(dir, 'cpm.yaml');
  writeFileSync(cfg, `cache_dir: ${dir}/cache\nrepos_confdir: []\n`);
  ({ reg, proxy } = await pushTestPackages(dir, [
    { name: 'base', blob: Buffer.from('base\n') },
    { name: 'big', blob: pseudoRandom(8 << 20, 11) },
    { name: 'small', blob: Buffer.from('small\n') },
  ]));
}, 120_000);
afterAll(async () => {
  await proxy?.stop();
  await reg?.stop();
});

describe('a layer download that fails', () => {
  it('stops the other downloads at once, names package and layer, and changes nothing', async () => {
    const root = path.join(dir, 'root');
    const repo = `oci://${proxy.host}/cpm`;
    const first = await run(['install', 'test/base', '--repo', repo, '--root', root, '-q']);
    expect(first.code, first.err).toBe(0);
    const db = readFileSync(path.join(root, 'var/lib/cpm/installed'));
    const before = listing(root);

    const small = await layerOf('small');
    const big = await layerOf('big');
    const del = await fetch(`${reg.url}/v2/${small.repo}/blobs/${small.digest}`, {
      method: 'DELETE',
    });
    expect(del.status).toBe(202);
    proxy.reset();
    // the big layer streams 1 MB and then nothing (the connection stays open); the 404 of the
    // small one arrives after that has begun
    proxy.add({ path: new RegExp(big.digest), fault: { kind: 'stall', afterBytes: 1 << 20 } });
    proxy.add({ path: new RegExp(small.digest), fault: { kind: 'delay', ms: 1500 } });

    const t0 = Date.now();
    // without the abort the stalled sibling would hold the install for 20 s or more
    const { code, err } = await run(
      ['install', 'test/big', 'test/small', '--repo', repo, '--root', root, '-q'],
      { CPM_IDLE_TIMEOUT: '20', CPM_RETRY_BUDGET: '40' },
    );
    const took = Date.now() - t0;

    expect(code, err).toBe(5); // E_NOT_FOUND
    expect(err).toContain(`downloading layer ${small.digest} of test/small`);
    expect(err).toMatch(/HTTP 404/);
    expect(err).not.toMatch(/internal error|\n\s+at /);
    // the sibling was downloading when the failure came, and was not waited for
    expect(proxy.requests.some((r) => r.fault === 'stall' && r.path.includes(big.digest))).toBe(
      true,
    );
    expect(took).toBeLessThan(15_000);
    const cached = readdirSync(path.join(dir, 'cache/blobs/sha256'));
    expect(cached.filter((f) => f.startsWith('.partial-'))).toEqual([]);
    expect(cached).not.toContain(big.digest.slice(7));
    expect(readFileSync(path.join(root, 'var/lib/cpm/installed')).equals(db)).toBe(true);
    expect(listing(root)).toEqual(before);
  }, 90_000);
});
