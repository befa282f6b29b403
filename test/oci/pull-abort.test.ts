/**
 * A pull whose blob the registry cannot serve stops its other downloads at once: a real registry
 * holds an image of two layers, the small one's blob deleted (HTTP 404, answered after a delay)
 * while the big one is downloading and stalls (a slow link). The pull fails within seconds with
 * E_NOT_FOUND instead of waiting for the stalled sibling's idle timeout, and the sibling's partial
 * file is removed from the store.
 */
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BlobStore, type BlobRef } from '../../src/oci/blobstore.js';
import { RegistryEndpoint } from '../../src/oci/endpoint.js';
import { pullImage } from '../../src/oci/image.js';
import { parseRegistryRef } from '../../src/oci/reference.js';
import { RegistryClient } from '../../src/oci/registry.js';
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy.js';
import { tempDir } from '../support/layers.js';
import { startRegistry, type RegistryInstance } from '../support/registry.js';

const REPO = 'test/two-layers';
const LAYER = 'application/vnd.oci.image.layer.v1.tar';
let reg: RegistryInstance;
let proxy: FaultProxy;
let dir: string;
let big: BlobRef;
let small: BlobRef;

beforeAll(async () => {
  reg = await startRegistry();
  proxy = await startFaultProxy(reg.url);
  dir = await tempDir('cpm-pull-abort-');
  const src = new BlobStore(path.join(dir, 'src'));
  big = await src.putBytes(randomBytes(16 << 20));
  small = await src.putBytes(randomBytes(1000));
  const config = await src.putBytes(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      rootfs: { type: 'layers', diff_ids: [] },
    }),
  );
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
      layers: [
        { mediaType: LAYER, ...big },
        { mediaType: LAYER, ...small },
      ],
    }),
  );
  const c = new RegistryClient(reg.host, { credentials: null });
  for (const b of [config, big, small]) await c.pushBlob(REPO, b, src);
  await c.putManifest(REPO, '1', manifest, 'application/vnd.oci.image.manifest.v1+json');
  await c.close();
  const del = await fetch(`${reg.url}/v2/${REPO}/blobs/${small.digest}`, { method: 'DELETE' });
  expect(del.status).toBe(202);
}, 60_000);
afterAll(async () => {
  await proxy?.stop();
  await reg?.stop();
  if (dir) await fsp.rm(dir, { recursive: true, force: true });
});

describe('pull with a blob the registry cannot serve', () => {
  it('fails at once, without waiting for a stalled sibling, and leaves no partial', async () => {
    proxy.add({ path: new RegExp(big.digest), fault: { kind: 'stall', afterBytes: 1 << 20 } });
    proxy.add({ path: new RegExp(small.digest), fault: { kind: 'delay', ms: 700 } });
    const client = new RegistryClient(proxy.host, {
      credentials: null,
      idleTimeoutMs: 20_000,
      retryBudgetMs: 40_000,
    });
    const store = new BlobStore(path.join(dir, 'dst'));
    const t0 = Date.now();
    try {
      const err = await pullImage(
        new RegistryEndpoint(client, parseRegistryRef(`${proxy.host}/${REPO}:1`)),
        store,
      ).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: 'E_NOT_FOUND' });
      expect((err as Error).message).toContain(small.digest);
    } finally {
      await client.close();
    }
    expect(Date.now() - t0).toBeLessThan(10_000);
    // the sibling was downloading when the 404 came
    expect(proxy.requests.some((r) => r.fault === 'stall')).toBe(true);
    const left = await fsp.readdir(path.join(dir, 'dst', 'blobs', 'sha256'));
    expect(left.filter((f) => f.startsWith('.'))).toEqual([]);
    expect(left).not.toContain(big.digest.slice(7));
  }, 60_000);
});
