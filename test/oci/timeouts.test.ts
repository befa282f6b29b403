/**
 * Bounded waits and a self-healing blob cache, against a real registry behind the fault proxy:
 * a stalled body and a registry that accepts and never answers end in E_NETWORK within the retry
 * budget; a partial download is kept and resumed with Range by the next client (the next run); a
 * blob shorter than its descriptor is reported with its digest and sizes, not as a bare HTTP 416.
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { BlobStore } from '../../src/oci/blobstore.js';
import { sha256 } from '../../src/oci/digest.js';
import { RegistryEndpoint } from '../../src/oci/endpoint.js';
import { pushImage } from '../../src/oci/image.js';
import { buildPackageImage, type PackageImage } from '../../src/oci/package-image.js';
import { parseRegistryRef } from '../../src/oci/reference.js';
import { RegistryClient, type RegistryOptions } from '../../src/oci/registry.js';
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy.js';
import { makeSpec, pseudoRandom, tempDir, writeTree } from '../support/layers.js';
import { startRegistry, type RegistryInstance } from '../support/registry.js';

let reg: RegistryInstance;
let proxy: FaultProxy;
let dir: string;
let img: PackageImage;
let n = 0;
const clients: RegistryClient[] = [];

beforeAll(async () => {
  reg = await startRegistry();
  proxy = await startFaultProxy(reg.url);
  dir = await tempDir();
  const src = new BlobStore(path.join(dir, 'src'));
  const payload = await writeTree(path.join(dir, 'payload'), {
    'blob.bin': pseudoRandom(600_000, 5),
  });
  img = await buildPackageImage(makeSpec('test/slow@1'), payload, { store: src });
  const direct = new RegistryClient(reg.host, { credentials: null });
  await pushImage(
    src,
    img.descriptor,
    new RegistryEndpoint(direct, parseRegistryRef(`${reg.host}/test/slow:1`)),
  );
  await direct.close();
});
afterAll(async () => {
  for (const c of clients) await c.close();
  await proxy?.stop();
  await reg?.stop();
  await fsp.rm(dir, { recursive: true, force: true });
});
beforeEach(() => proxy.reset());

function client(opts: RegistryOptions = {}): RegistryClient {
  const c = new RegistryClient(proxy.host, { credentials: null, retryBaseMs: 10, ...opts });
  clients.push(c);
  return c;
}
const freshStore = (): BlobStore => new BlobStore(path.join(dir, `s${n++}`));
const layerGets = (): string[] =>
  proxy.requests
    .filter((r) => r.method === 'GET' && r.path.includes(img.layer.digest))
    .map((r) => r.range ?? 'full');

describe('timeouts and retry budget', () => {
  it('a body that stalls ends in E_NETWORK (idle timeout) within the retry budget', async () => {
    proxy.add({
      path: new RegExp(img.layer.digest),
      fault: { kind: 'stall', afterBytes: 50_000 },
      times: Infinity,
    });
    const c = client({ idleTimeoutMs: 300, retryBudgetMs: 1500 });
    const t0 = Date.now();
    const err = await c.fetchBlob('test/slow', img.layer, freshStore()).catch((e: unknown) => e);
    const took = Date.now() - t0;
    expect(err).toMatchObject({ code: 'E_NETWORK' });
    expect((err as Error).message).toMatch(/no data for 0\.3 s \(idle timeout\)/);
    expect((err as { hint: string }).hint).toMatch(/CPM_IDLE_TIMEOUT/);
    expect(took).toBeLessThan(1500 + 300 + 1000);
    expect(layerGets().length).toBeGreaterThan(1); // it did retry, resuming
  });

  it('a registry that accepts and never answers is given up on within the budget', async () => {
    proxy.add({ path: /\/manifests\//, fault: { kind: 'hang' }, times: Infinity });
    const c = client({ idleTimeoutMs: 250, retryBudgetMs: 1000 });
    const t0 = Date.now();
    const err = await c.getManifest('test/slow', '1').catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'E_NETWORK' });
    expect((err as Error).message).toMatch(/idle timeout/);
    expect(Date.now() - t0).toBeLessThan(1000 + 250 + 1000);
  });

  it('CPM_IDLE_TIMEOUT and CPM_RETRY_BUDGET set the defaults', async () => {
    proxy.add({ path: /\/manifests\//, fault: { kind: 'hang' }, times: Infinity });
    process.env.CPM_IDLE_TIMEOUT = '0.2';
    process.env.CPM_RETRY_BUDGET = '0.5';
    try {
      const c = client();
      const t0 = Date.now();
      await expect(c.getManifest('test/slow', '1')).rejects.toMatchObject({ code: 'E_NETWORK' });
      expect(Date.now() - t0).toBeLessThan(2000);
    } finally {
      delete process.env.CPM_IDLE_TIMEOUT;
      delete process.env.CPM_RETRY_BUDGET;
    }
  });
});

describe('partial downloads', () => {
  it('are kept when a run fails and resumed with Range by the next one', async () => {
    const s = freshStore();
    proxy.add({
      path: new RegExp(img.layer.digest),
      fault: { kind: 'reset', afterBytes: 200_000 },
    });
    const first = client({ retries: 0 });
    await expect(first.fetchBlob('test/slow', img.layer, s)).rejects.toMatchObject({
      code: 'E_NETWORK',
    });
    const partial = s.partialPath(img.layer.digest);
    const kept = (await fsp.stat(partial)).size;
    expect(kept).toBeGreaterThan(0);
    expect(kept).toBeLessThan(img.layer.size);
    proxy.reset();
    await client().fetchBlob('test/slow', img.layer, s); // "the next run"
    expect(layerGets()).toEqual([`bytes=${kept}-`]);
    expect(sha256(await s.read(img.layer.digest))).toBe(img.layer.digest);
    await expect(fsp.stat(partial)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('a corrupt partial is dropped and the blob fetched once from zero', async () => {
    const s = freshStore();
    await fsp.mkdir(path.dirname(s.partialPath(img.layer.digest)), { recursive: true });
    await fsp.writeFile(s.partialPath(img.layer.digest), pseudoRandom(1000, 99));
    await client().fetchBlob('test/slow', img.layer, s);
    expect(sha256(await s.read(img.layer.digest))).toBe(img.layer.digest);
    expect(layerGets()).toEqual(['bytes=1000-', 'full']);
  });

  it('a blob shorter than its descriptor is named with its digest and sizes, not HTTP 416', async () => {
    const s = freshStore();
    const err = await client({ retries: 1 })
      .fetchBlob('test/slow', { digest: img.layer.digest, size: img.layer.size + 100 }, s)
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'E_DIGEST', context: { digest: img.layer.digest } });
    expect((err as Error).message).toMatch(/shorter than its descriptor/);
    expect((err as Error).message).toContain(String(img.layer.size + 100));
    expect((err as Error).message).not.toMatch(/HTTP 416/);
  });
});
