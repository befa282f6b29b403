/**
 * Images that must be refused (OCI image spec, containerd behaviour): made by umoci from a real
 * tar, then one field of the config or manifest changed and the blobs re-hashed, as an
 * inconsistent producer would push them. A refusal leaves the root as it was.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { beforeAll, describe, expect, it } from 'vitest';
import { imageInstallStep } from '../../src/install/image-ref.js';
import { installPackages } from '../../src/rootfs/index.js';
import { writeTree } from '../support/layers.js';
import { tarOf, umociImage } from './base-images.js';
import { failure, tmpDir } from './helpers.js';

let work: string;
let layout: string;

interface Json {
  [k: string]: unknown;
}

const blobPath = (digest: string): string => path.join(layout, 'blobs', digest.replace(':', '/'));
const readJson = (digest: string): Json =>
  JSON.parse(readFileSync(blobPath(digest), 'utf8')) as Json;
function putJson(v: unknown): { digest: string; size: number } {
  const bytes = Buffer.from(JSON.stringify(v));
  const digest = 'sha256:' + createHash('sha256').update(bytes).digest('hex');
  writeFileSync(blobPath(digest), bytes);
  return { digest, size: bytes.length };
}

type Desc = {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
};

/** Copies `layout:from` to `layout:to` after editing its manifest and config JSON. */
function variant(
  to: string,
  edit: (m: { manifest: Json & { config: Desc; layers: Desc[] }; config: Json }) => void,
  editDesc: (d: Desc) => void = () => undefined,
): string {
  const indexFile = path.join(layout, 'index.json');
  const index = JSON.parse(readFileSync(indexFile, 'utf8')) as { manifests: Desc[] };
  const src = index.manifests.find(
    (d) => d.annotations?.['org.opencontainers.image.ref.name'] === 'good',
  )!;
  const manifest = readJson(src.digest) as Json & { config: Desc; layers: Desc[] };
  const config = readJson(manifest.config.digest);
  edit({ manifest, config });
  const c = putJson(config);
  manifest.config = { ...manifest.config, ...c };
  const m = putJson(manifest);
  const desc: Desc = {
    mediaType: src.mediaType,
    ...m,
    annotations: { 'org.opencontainers.image.ref.name': to },
  };
  editDesc(desc);
  index.manifests.push(desc);
  writeFileSync(indexFile, JSON.stringify(index));
  return `oci:${layout}:${to}`;
}

beforeAll(async () => {
  work = tmpDir('cpm-imgrefuse-');
  layout = path.join(work, 'layout');
  const tree = path.join(work, 'tree');
  await writeTree(tree, { 'etc/hello': 'hello\n', 'usr/bin/tool': 'tool\n' });
  umociImage(layout, 'good', [tarOf(tree, `${tree}.tar`)]);
});

async function refusedImage(ref: string, code: string, match: RegExp): Promise<void> {
  const root = tmpDir();
  const err = await failure(
    imageInstallStep(ref, { cacheDir: path.join(work, 'cache') }).then((s) =>
      installPackages(root, [s]),
    ),
  );
  expect(err.code).toBe(code);
  expect(err.message).toMatch(match);
  expect(existsSync(path.join(root, 'etc/hello'))).toBe(false);
}

describe('image consistency', () => {
  it('installs the unedited image', async () => {
    const root = tmpDir();
    const s = await imageInstallStep(`oci:${layout}:good`, { cacheDir: path.join(work, 'cache') });
    expect(s.layers[0]!.diffId).toMatch(/^sha256:/);
    await installPackages(root, [s]);
    expect(readFileSync(path.join(root, 'etc/hello'), 'utf8')).toBe('hello\n');
  });

  it("refuses a layer whose uncompressed digest differs from the config's rootfs.diff_ids", async () => {
    const wrong = 'sha256:' + '1'.repeat(64);
    const ref = variant('bad-diffid', ({ config }) => {
      (config.rootfs as { diff_ids: string[] }).diff_ids[0] = wrong;
    });
    await refusedImage(
      ref,
      'E_DIGEST',
      new RegExp(`decompresses to sha256:[0-9a-f]{64}, but .*diff_ids says ${wrong}`),
    );
  });

  it('names the blob digest when a stored layer was damaged but still reads as a tar', async () => {
    // an uncompressed copy of the good layer: its blob digest is its diff_id
    let tarDigest = '';
    const ref = variant('damaged-blob', ({ manifest }) => {
      const layer = manifest.layers[0]!;
      const tarBytes = gunzipSync(readFileSync(blobPath(layer.digest)));
      tarDigest = 'sha256:' + createHash('sha256').update(tarBytes).digest('hex');
      const at = tarBytes.indexOf('hello\n');
      expect(at).toBeGreaterThan(0);
      tarBytes[at] = 'j'.charCodeAt(0); // same length: headers and checksums still hold
      writeFileSync(blobPath(tarDigest), tarBytes);
      manifest.layers[0] = {
        mediaType: 'application/vnd.oci.image.layer.v1.tar',
        digest: tarDigest,
        size: tarBytes.length,
      };
    });
    await refusedImage(
      ref,
      'E_DIGEST',
      new RegExp(`has digest sha256:[0-9a-f]{64}, expected ${tarDigest}`),
    );
  });

  it('refuses a config with fewer diff_ids than layers', async () => {
    const ref = variant('few-diffids', ({ config }) => {
      (config.rootfs as { diff_ids: string[] }).diff_ids = [];
    });
    await refusedImage(ref, 'E_IMAGE', /lists 0 rootfs\.diff_ids for 1 layers/);
  });

  it('refuses a layer with a media type that is no layer type, naming it', async () => {
    const ref = variant('odd-layer-type', ({ manifest }) => {
      manifest.layers[0]!.mediaType = 'application/vnd.example.layer.v1.tar+lz4';
    });
    await refusedImage(
      ref,
      'E_IMAGE',
      /media type "application\/vnd\.example\.layer\.v1\.tar\+lz4"/,
    );
  });

  it('refuses a manifest whose bytes differ in size from its index.json descriptor', async () => {
    const ref = variant(
      'bad-size',
      () => undefined,
      (d) => {
        d.size += 1;
      },
    );
    await refusedImage(ref, 'E_IMAGE', /is \d+ bytes, but index\.json says \d+/);
  });

  it('refuses a platform manifest whose bytes differ in size from the image index entry', async () => {
    const plain = variant('plain', () => undefined);
    const index = JSON.parse(readFileSync(path.join(layout, 'index.json'), 'utf8')) as {
      manifests: Desc[];
    };
    const man = index.manifests.find(
      (d) => d.annotations?.['org.opencontainers.image.ref.name'] === 'plain',
    )!;
    const cfg = readJson((readJson(man.digest) as { config: Desc }).config.digest) as {
      architecture: string;
      os: string;
    };
    const imageIndex = putJson({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [
        {
          mediaType: man.mediaType,
          digest: man.digest,
          size: man.size - 1,
          platform: { architecture: cfg.architecture, os: cfg.os },
        },
      ],
    });
    index.manifests.push({
      mediaType: 'application/vnd.oci.image.index.v1+json',
      ...imageIndex,
      annotations: { 'org.opencontainers.image.ref.name': 'multi' },
    });
    writeFileSync(path.join(layout, 'index.json'), JSON.stringify(index));
    expect(plain).toContain(':plain');
    await refusedImage(`oci:${layout}:multi`, 'E_IMAGE', /but the index says/);
  });
});
