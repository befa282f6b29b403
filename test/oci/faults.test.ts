/** Retries, resume and verification, with a fault-injecting proxy in front of a real registry. */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { BlobStore } from '../../src/oci/blobstore.js';
import { sha256 } from '../../src/oci/digest.js';
import { RegistryEndpoint } from '../../src/oci/endpoint.js';
import { pullImage, pushImage } from '../../src/oci/image.js';
import { buildPackageImage, type PackageImage } from '../../src/oci/package-image.js';
import { parseRegistryRef } from '../../src/oci/reference.js';
import { RegistryClient, isRetryableNetError } from '../../src/oci/registry.js';
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy.js';
import { makeSpec, pseudoRandom, tempDir, writeTree } from '../support/layers.js';
import { startRegistry, type RegistryInstance } from '../support/registry.js';

let reg: RegistryInstance;
let proxy: FaultProxy;
let dir: string;
let src: BlobStore;
let img: PackageImage;
let client: RegistryClient;
let n = 0;
const log: string[] = [];
const BLOB = /\/blobs\/sha256:/;

beforeAll(async () => {
  reg = await startRegistry();
  proxy = await startFaultProxy(reg.url);
  dir = await tempDir();
  src = new BlobStore(path.join(dir, 'src'));
  const payload = await writeTree(path.join(dir, 'payload'), {
    'blob.bin': pseudoRandom(400_000, 11),
  });
  img = await buildPackageImage(makeSpec('test/faulty@1'), payload, { store: src });
  const direct = new RegistryClient(reg.host, { credentials: null });
  await pushImage(
    src,
    img.descriptor,
    new RegistryEndpoint(direct, parseRegistryRef(`${reg.host}/test/faulty:1`)),
  );
  await direct.close();
  client = new RegistryClient(proxy.host, {
    credentials: null,
    retries: 3,
    retryBaseMs: 10,
    log: (l) => log.push(l),
  });
});
afterAll(async () => {
  await client?.close();
  await proxy?.stop();
  await reg?.stop();
  await fsp.rm(dir, { recursive: true, force: true });
});
beforeEach(() => {
  proxy.reset();
  log.length = 0;
});

const freshStore = (): BlobStore => new BlobStore(path.join(dir, `s${n++}`));
const blobFiles = async (s: BlobStore): Promise<string[]> =>
  fsp.readdir(path.join(s.root, 'blobs', 'sha256')).catch(() => []);
const layerGets = (): string[] =>
  proxy.requests
    .filter((r) => r.method === 'GET' && r.path.includes(img.layer.digest))
    .map((r) => r.range ?? 'full');

describe('fault injection', () => {
  it('resumes a blob with Range after a connection reset mid-body', async () => {
    proxy.add({
      method: 'GET',
      path: new RegExp(img.layer.digest),
      fault: { kind: 'reset', afterBytes: 100_000 },
    });
    const s = freshStore();
    await client.fetchBlob('test/faulty', img.layer, s);
    expect(sha256(await s.read(img.layer.digest))).toBe(img.layer.digest);
    const gets = layerGets();
    expect(gets[0]).toBe('full');
    expect(gets[1]).toMatch(/^bytes=\d+-$/);
    expect(Number(/=(\d+)-/.exec(gets[1]!)![1])).toBeGreaterThan(0);
  });

  it('resumes after a truncated body (clean close before Content-Length)', async () => {
    proxy.add({
      method: 'GET',
      path: new RegExp(img.layer.digest),
      fault: { kind: 'truncate', afterBytes: 150_000 },
      times: 2,
    });
    const s = freshStore();
    await client.fetchBlob('test/faulty', img.layer, s);
    expect(sha256(await s.read(img.layer.digest))).toBe(img.layer.digest);
    expect(layerGets().length).toBe(3);
  });

  it('restarts from zero when the registry ignores Range', async () => {
    proxy.add({
      method: 'GET',
      path: new RegExp(img.layer.digest),
      fault: { kind: 'reset', afterBytes: 50_000 },
    });
    proxy.add({
      method: 'GET',
      path: new RegExp(img.layer.digest),
      fault: { kind: 'ignore-range' },
    });
    const s = freshStore();
    await client.fetchBlob('test/faulty', img.layer, s);
    expect(sha256(await s.read(img.layer.digest))).toBe(img.layer.digest);
    expect(log.some((l) => l.includes('ignored Range'))).toBe(true);
  });

  it('retries 500 and 429 bursts (honouring Retry-After) on manifests and blobs', async () => {
    proxy.add({ path: /\/manifests\//, fault: { kind: 'status', status: 500 }, times: 2 });
    proxy.add({ path: BLOB, fault: { kind: 'status', status: 429, retryAfter: '0' }, times: 2 });
    proxy.add({ path: BLOB, fault: { kind: 'status', status: 503 }, times: 1 });
    const s = freshStore();
    const t0 = Date.now();
    const pulled = await pullImage(
      new RegistryEndpoint(client, parseRegistryRef(`${proxy.host}/test/faulty:1`)),
      s,
      { concurrency: 1 },
    );
    expect(pulled.manifestDescriptor.digest).toBe(img.descriptor.digest);
    expect(proxy.requests.filter((r) => r.fault === 'status').length).toBe(5);
    expect(Date.now() - t0).toBeLessThan(5000);
  });

  it('gives up after the retry budget with E_REGISTRY and keeps nothing', async () => {
    proxy.add({ path: BLOB, fault: { kind: 'status', status: 502 }, times: Infinity });
    const s = freshStore();
    await expect(client.fetchBlob('test/faulty', img.layer, s)).rejects.toMatchObject({
      code: 'E_REGISTRY',
      context: { status: 502 },
    });
    expect(await blobFiles(s)).toEqual([]);
  });

  it('a corrupted byte is E_DIGEST naming the digest, and nothing corrupt is kept', async () => {
    proxy.add({
      method: 'GET',
      path: new RegExp(img.layer.digest),
      fault: { kind: 'corrupt', atByte: 12_345 },
    });
    const s = freshStore();
    const err = await client.fetchBlob('test/faulty', img.layer, s).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'E_DIGEST', context: { digest: img.layer.digest } });
    expect((err as Error).message).toContain(img.layer.digest);
    expect(await blobFiles(s)).toEqual([]);
    // The next attempt (no fault) succeeds: the store was not poisoned.
    await client.fetchBlob('test/faulty', img.layer, s);
    expect(sha256(await s.read(img.layer.digest))).toBe(img.layer.digest);
  });

  it('a wrong size in the manifest is E_DIGEST', async () => {
    const s = freshStore();
    await expect(
      client.fetchBlob('test/faulty', { digest: img.layer.digest, size: img.layer.size - 1 }, s),
    ).rejects.toMatchObject({
      code: 'E_DIGEST',
    });
    expect(await blobFiles(s)).toEqual([]);
  });

  it('push restarts an upload that failed with 500 or a reset', async () => {
    const target = new RegistryEndpoint(client, parseRegistryRef(`${proxy.host}/test/pushed:1`));
    proxy.add({
      method: 'PUT',
      path: /\/blobs\/uploads\//,
      fault: { kind: 'status', status: 500 },
    });
    proxy.add({
      method: 'POST',
      path: /\/blobs\/uploads\//,
      fault: { kind: 'reset', afterBytes: 0 },
    });
    await pushImage(src, img.descriptor, target, { concurrency: 1 });
    expect(proxy.requests.filter((r) => r.fault).length).toBe(2);
    const pulled = await pullImage(target, freshStore());
    expect(pulled.manifestDescriptor.digest).toBe(img.descriptor.digest);
  });

  it('connection refused is E_NETWORK after retries', async () => {
    const dead = new RegistryClient('127.0.0.1:1', {
      credentials: null,
      retries: 1,
      retryBaseMs: 1,
    });
    await expect(dead.getManifest('x/y', 'latest')).rejects.toMatchObject({ code: 'E_NETWORK' });
    await dead.close();
  });
  it('a host name that does not resolve is not retried; no answer yet (EAI_AGAIN) is', () => {
    const err = (code: string): Error =>
      Object.assign(new Error(`getaddrinfo ${code} x`), { code });
    expect(isRetryableNetError(err('ENOTFOUND'))).toBe(false);
    expect(isRetryableNetError(err('EAI_AGAIN'))).toBe(true);
    expect(isRetryableNetError(err('ECONNREFUSED'))).toBe(true);
    expect(isRetryableNetError(err('ERR_TLS_CERT_ALTNAME_INVALID'))).toBe(false);
    expect(isRetryableNetError(new Error('no code'))).toBe(false);
  });
});
