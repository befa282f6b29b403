/** The registry client against a real distribution registry (anonymous). */
import { promises as fsp } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BlobStore } from '../../src/oci/blobstore.js';
import { sha256 } from '../../src/oci/digest.js';
import { RegistryEndpoint } from '../../src/oci/endpoint.js';
import { pullImage, pushImage } from '../../src/oci/image.js';
import { buildPackageImage, readPackageMetadata } from '../../src/oci/package-image.js';
import { parseRegistryRef } from '../../src/oci/reference.js';
import { RegistryClient } from '../../src/oci/registry.js';
import { MEDIA, type ImageIndex, type ImageManifest } from '../../src/oci/types.js';
import { makeSpec, pseudoRandom, tempDir, writeTree } from '../support/layers.js';
import { startRegistry, type RegistryInstance } from '../support/registry.js';

let reg: RegistryInstance;
let dir: string;
let store: BlobStore;
let client: RegistryClient;
const log: string[] = [];

beforeAll(async () => {
  reg = await startRegistry();
  dir = await tempDir();
  store = new BlobStore(path.join(dir, 'cache'));
  client = new RegistryClient(reg.host, { credentials: null, log: (l) => log.push(l) });
});
afterAll(async () => {
  await client?.close();
  await reg?.stop();
  await fsp.rm(dir, { recursive: true, force: true });
});

const endpoint = (ref: string, chunkSize?: number): RegistryEndpoint =>
  new RegistryEndpoint(client, parseRegistryRef(`${reg.host}/${ref}`), chunkSize);

async function packageImage(id: string, files: Record<string, string | Buffer>) {
  const payload = await writeTree(await fsp.mkdtemp(path.join(dir, 'p-')), files);
  return buildPackageImage(
    makeSpec(id, { requires: ['system/base@>=1.0'], description: 'demo' }),
    payload,
    { store },
  );
}

describe('registry client (anonymous)', () => {
  it('pushes a package image and pulls it back into a fresh store, verified', async () => {
    const img = await packageImage('apps/hello@1.2.3', {
      'usr/bin/hello': pseudoRandom(200_000, 3),
    });
    const digest = await pushImage(store, img.descriptor, endpoint('apps/hello:1.2.3'));
    expect(digest).toBe(img.descriptor.digest);

    const fresh = new BlobStore(path.join(dir, 'fresh'));
    const pulled = await pullImage(endpoint('apps/hello:1.2.3'), fresh);
    expect(pulled.manifestDescriptor.digest).toBe(img.descriptor.digest);
    expect(await fresh.has(img.layer.digest)).toBe(true);
    expect(sha256(await fresh.read(img.layer.digest))).toBe(img.layer.digest);
    const meta = readPackageMetadata(pulled.config, pulled.manifest);
    expect(meta).toMatchObject({
      category: 'apps',
      name: 'hello',
      version: '1.2.3',
      description: 'demo',
    });
    expect(meta!.requires.map((d) => `${d.category}/${d.name} ${d.version}`)).toEqual([
      'system/base >=1.0',
    ]);

    // Pull by digest, and a second pull never refetches stored blobs.
    log.length = 0;
    await pullImage(endpoint(`apps/hello@${img.descriptor.digest}`), fresh);
    expect(log.filter((l) => l.startsWith('GET /v2/apps/hello/blobs/'))).toEqual([]);
  });

  it('skips blobs the registry has (HEAD) and mounts across repositories', async () => {
    const img = await packageImage('apps/mounted@1', { 'data.bin': pseudoRandom(50_000, 9) });
    const results: string[] = [];
    await pushImage(store, img.descriptor, endpoint('src/one:v1'), {
      onBlob: (_b, r) => results.push(r),
    });
    expect(results.sort()).toEqual(['uploaded', 'uploaded']);
    results.length = 0;
    await pushImage(store, img.descriptor, endpoint('src/one:v2'), {
      onBlob: (_b, r) => results.push(r),
    });
    expect(results).toEqual(['exists', 'exists']);
    results.length = 0;
    await pushImage(store, img.descriptor, endpoint('dst/two:v1'), {
      mountFrom: 'src/one',
      onBlob: (_b, r) => results.push(r),
    });
    expect(results).toEqual(['mounted', 'mounted']);
    expect(await client.hasBlob('dst/two', img.layer.digest)).toBe(img.layer.size);
  });

  it('uploads in chunks (PATCH) when asked', async () => {
    const img = await packageImage('apps/chunky@1', { 'big.bin': pseudoRandom(300_000, 5) });
    log.length = 0;
    await pushImage(store, img.descriptor, endpoint('apps/chunky:1', 64 * 1024));
    const patches = log.filter((l) => l.startsWith('PATCH '));
    expect(patches.length).toBeGreaterThanOrEqual(Math.ceil(img.layer.size / (64 * 1024)));
    const fresh = new BlobStore(path.join(dir, 'chunky'));
    await client.fetchBlob('apps/chunky', img.layer, fresh);
    expect(sha256(await fresh.read(img.layer.digest))).toBe(img.layer.digest);
  });

  it('puts manifests by digest and lists tags with Link pagination', async () => {
    const img = await packageImage('apps/tags@1', { a: 'a' });
    for (const t of ['1.0', '1.0-1', '1.1', '2.0', 'latest'])
      await pushImage(store, img.descriptor, endpoint(`apps/tags:${t}`));
    await pushImage(store, img.descriptor, endpoint('apps/bydigest'), { tag: null });
    const byDigest = await client.getManifest('apps/bydigest', img.descriptor.digest);
    expect(byDigest.digest).toBe(img.descriptor.digest);
    expect((await client.listTags('apps/tags', 2)).sort()).toEqual([
      '1.0',
      '1.0-1',
      '1.1',
      '2.0',
      'latest',
    ]);
    expect(await client.listTags('does/not-exist')).toEqual([]);
  });

  it('follows Link rel="next" pages (distribution 2.8 does not paginate, so a tiny fake does)', async () => {
    const all = ['a', 'b', 'c', 'd', 'e'];
    const seen: string[] = [];
    const server = http.createServer((req, res) => {
      const u = new URL(req.url!, 'http://x');
      seen.push(u.search);
      const n = Number(u.searchParams.get('n'));
      const last = u.searchParams.get('last');
      const start = last ? all.indexOf(last) + 1 : 0;
      const page = all.slice(start, start + n);
      const h: Record<string, string> = { 'content-type': 'application/json' };
      if (start + n < all.length)
        h.link = `</v2/r/tags/list?n=${n}&last=${page[page.length - 1]}>; rel="next"`;
      res.writeHead(200, h).end(JSON.stringify({ name: 'r', tags: page }));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const c = new RegistryClient(`127.0.0.1:${(server.address() as AddressInfo).port}`, {
      credentials: null,
    });
    try {
      expect(await c.listTags('r', 2)).toEqual(all);
      expect(seen).toEqual(['?n=2', '?n=2&last=b', '?n=2&last=d']);
    } finally {
      await c.close();
      server.close();
    }
  });

  it('selects the platform from an image index (default host, override) and reads Docker schema2', async () => {
    const amd = await packageImage('multi/app@1', { 'arch.txt': 'amd64' });
    const arm = await packageImage('multi/app@1', { 'arch.txt': 'arm64' });
    const target = endpoint('multi/app:1');
    for (const i of [amd, arm]) await pushImage(store, i.descriptor, target, { tag: null });
    const index: ImageIndex = {
      schemaVersion: 2,
      mediaType: MEDIA.ociIndex,
      manifests: [
        { ...amd.descriptor, platform: { os: 'linux', architecture: 'amd64' } },
        { ...arm.descriptor, platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
      ],
    };
    const bytes = Buffer.from(JSON.stringify(index));
    await client.putManifest('multi/app', '1', bytes, MEDIA.ociIndex);
    const host = process.arch === 'arm64' ? arm : amd;
    const other = process.arch === 'arm64' ? amd : arm;
    const s = new BlobStore(path.join(dir, 'multi'));
    const def = await pullImage(endpoint('multi/app:1'), s);
    expect(def.root.digest).toBe(sha256(bytes));
    expect(def.manifestDescriptor.digest).toBe(host.descriptor.digest);
    const plat =
      other === arm
        ? { os: 'linux', architecture: 'arm64' }
        : { os: 'linux', architecture: 'amd64' };
    const over = await pullImage(endpoint('multi/app:1'), s, { platform: plat });
    expect(over.manifestDescriptor.digest).toBe(other.descriptor.digest);
    await expect(
      pullImage(endpoint('multi/app:1'), s, { platform: { os: 'linux', architecture: 's390x' } }),
    ).rejects.toMatchObject({
      code: 'E_NOT_FOUND',
      hint: expect.stringContaining('linux/arm64/v8'),
    });

    // Docker schema2 manifest with Docker media types.
    const docker: ImageManifest = {
      schemaVersion: 2,
      mediaType: MEDIA.dockerManifest,
      config: { ...amd.manifest.config, mediaType: MEDIA.dockerConfig },
      layers: amd.manifest.layers.map((l) => ({ ...l, mediaType: MEDIA.dockerLayerGzip })),
    };
    await client.putManifest(
      'multi/app',
      'docker',
      Buffer.from(JSON.stringify(docker)),
      MEDIA.dockerManifest,
    );
    const d = await pullImage(
      endpoint('multi/app:docker'),
      new BlobStore(path.join(dir, 'docker')),
    );
    expect(d.manifestDescriptor.mediaType).toBe(MEDIA.dockerManifest);
    expect(d.manifest.layers[0]!.digest).toBe(amd.layer.digest);
  });

  it('reports a missing tag as E_NOT_FOUND with the registry error code', async () => {
    await expect(client.getManifest('apps/hello', 'nope')).rejects.toMatchObject({
      code: 'E_NOT_FOUND',
      message: expect.stringContaining('MANIFEST_UNKNOWN'),
    });
  });
});
