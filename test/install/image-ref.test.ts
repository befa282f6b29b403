/**
 * Installing an image reference as a package: registry images made by umoci and pushed by skopeo
 * (no cpm metadata: identity from the reference), cpm package images in an OCI layout (identity
 * from the metadata), indexes with platform selection, the cache, and corrupt blobs.
 */
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CpmError } from '../../src/errors.js';
import { imageInstallStep, looksLikeImageRef } from '../../src/install/image-ref.js';
import { installPackages } from '../../src/rootfs/index.js';
import { listInstalled, verify } from '../../src/upkeep/query.js';
import { BlobStore } from '../../src/oci/blobstore.js';
import { OciLayout } from '../../src/oci/layout.js';
import { packTo } from '../../src/oci/actions.js';
import { hostPlatform } from '../../src/oci/platform.js';
import { MEDIA, type ImageIndex } from '../../src/oci/types.js';
import { startRegistry, type RegistryInstance } from '../support/registry.js';
import { makeSpec, writeTree } from '../support/layers.js';
import { skopeoPush, smallBaseLayers, umociImage } from './base-images.js';
import { failure, layerFromFiles, step, tmpDir } from './helpers.js';

let reg: RegistryInstance;
let work: string;
let cacheDir: string;
let layout: string;

beforeAll(async () => {
  reg = await startRegistry();
  work = tmpDir('cpm-imgref-');
  cacheDir = path.join(work, 'cache');
  const { lower, upper } = await smallBaseLayers(work);
  layout = path.join(work, 'layout');
  umociImage(layout, 'small', [lower, upper]);
  umociImage(layout, '1.2', [lower]);
  skopeoPush(`${layout}:small`, `${reg.host}/tools/small:small`);
  skopeoPush(`${layout}:1.2`, `${reg.host}/tools/small:1.2`);
});
afterAll(async () => {
  await reg?.stop();
});

describe('looksLikeImageRef', () => {
  it.each([
    ['oci:/srv/layout:1.0', true],
    ['oci:layout', true],
    ['docker://quay.io/foo/bar:1', true],
    ['127.0.0.1:5000/base:bookworm', true],
    ['localhost/base', true],
    ['ghcr.io/org/img@sha256:' + 'a'.repeat(64), true],
    ['system/cos-setup', false],
    ['system/cos-setup@1.0', false],
    ['system/cos-setup@>=1.0', false],
    ['cos-setup', false],
    ['a@1.2/b', false],
  ])('%s → %s', (arg, want) => {
    expect(looksLikeImageRef(arg)).toBe(want);
  });
});

describe('imageInstallStep', () => {
  it('registry image without cpm metadata: identity from the reference, layers in order, whiteouts applied', async () => {
    const step = await imageInstallStep(`${reg.host}/tools/small:small`, { cacheDir });
    expect(step.spec.category).toBe('images');
    expect(step.spec.name).toBe('small');
    expect(step.spec.version).toBe('0+small'); // "small" is not a version
    expect(step.origin).toBe(`${reg.host}/tools/small:small`);
    expect(step.imageDigest).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(step.layers).toHaveLength(2);
    expect(step.base).toBeUndefined();

    const root = tmpDir();
    await installPackages(root, [step]);
    expect(readFileSync(path.join(root, 'etc/hostname'), 'utf8')).toBe('upper\n');
    expect(existsSync(path.join(root, 'etc/motd'))).toBe(false); // .wh.motd
    expect(existsSync(path.join(root, 'usr/share/doc/base/copyright'))).toBe(false); // opaque
    expect(readFileSync(path.join(root, 'usr/share/doc/base/README'), 'utf8')).toBe('new docs\n');
    expect(lstatSync(path.join(root, 'bin')).isSymbolicLink()).toBe(true);
    expect(statSync(path.join(root, 'tmp')).mode & 0o7777).toBe(0o1777);
    const [pkg] = listInstalled({ root });
    expect(pkg?.id).toBe('images/small@0+small');
    expect(pkg?.origin).toBe(step.origin);
    expect(pkg?.files.some((f) => f.path.includes('.wh.'))).toBe(false);
    expect((await verify({ root })).problems).toEqual([]);
  });

  it('a tag that is a version is the version; blobs already cached are not fetched again', async () => {
    const ref = `${reg.host}/tools/small:1.2`;
    const a = await imageInstallStep(ref, { cacheDir });
    expect(a.spec.version).toBe('1.2');
    const store = new BlobStore(cacheDir);
    const layerDigest = a.layers[0]!.digest;
    const ino = statSync(store.path(layerDigest)).ino;
    const b = await imageInstallStep(ref, { cacheDir });
    expect(b.imageDigest).toBe(a.imageDigest);
    expect(statSync(store.path(layerDigest)).ino).toBe(ino);
  });

  it('a digest reference gets a version from the digest', async () => {
    const byTag = await imageInstallStep(`${reg.host}/tools/small:small`, { cacheDir });
    const step = await imageInstallStep(`${reg.host}/tools/small@${byTag.imageDigest}`, {
      cacheDir,
    });
    expect(step.imageDigest).toBe(byTag.imageDigest);
    expect(step.spec.version).toBe(`0+sha256.${byTag.imageDigest.slice(7, 19)}`);
  });

  it('--id style override of the identity', async () => {
    const step = await imageInstallStep(`${reg.host}/tools/small:small`, {
      cacheDir,
      id: 'bases/tiny@12.1',
    });
    expect([step.spec.category, step.spec.name, step.spec.version]).toEqual([
      'bases',
      'tiny',
      '12.1',
    ]);
    const err = await failure(
      imageInstallStep(`${reg.host}/tools/small:small`, { cacheDir, id: 'tiny' }),
    );
    expect(err.code).toBe('E_USAGE');
  });

  it('cpm package image in an OCI layout: identity and finalizers from its metadata, read in place', async () => {
    const payload = await writeTree(path.join(work, 'payload'), {
      'usr/bin/hello': { content: '#!/bin/sh\necho hello\n', mode: 0o755 },
    });
    const pkgLayout = path.join(work, 'pkg-layout');
    await packTo(makeSpec('apps/hello@1.0'), payload, `oci:${pkgLayout}:v1`, {
      cacheDir: path.join(work, 'pack-cache'),
      finalize: { install: ['true'] },
    });
    const emptyCache = path.join(work, 'cache-layout');
    const step = await imageInstallStep(`oci:${pkgLayout}:v1`, { cacheDir: emptyCache });
    expect(`${step.spec.category}/${step.spec.name}@${step.spec.version}`).toBe('apps/hello@1.0');
    expect(step.finalize).toEqual({ install: ['true'] });
    expect(step.origin).toBe(`oci:${pkgLayout}:v1`);
    expect(existsSync(emptyCache)).toBe(false); // layout blobs are read where they are
    const root = tmpDir();
    await installPackages(root, [step], { noFinalizers: true });
    expect(readFileSync(path.join(root, 'usr/bin/hello'), 'utf8')).toContain('echo hello');
  });

  it('an index picks the host platform; another platform is refused with the choices', async () => {
    const lay = await OciLayout.open(layout);
    const small = await lay.resolve('small');
    const host = hostPlatform();
    const other = { os: 'linux', architecture: host.architecture === 'amd64' ? 'arm64' : 'amd64' };
    const idx: ImageIndex = {
      schemaVersion: 2,
      mediaType: MEDIA.ociIndex,
      manifests: [
        { ...small, annotations: undefined, platform: host },
        {
          mediaType: MEDIA.ociManifest,
          digest: 'sha256:' + '0'.repeat(64),
          size: 10,
          platform: { os: 'windows', architecture: 'amd64' },
        },
      ],
    };
    const bytes = Buffer.from(JSON.stringify(idx));
    const d = await lay.blobs.putBytes(bytes);
    await lay.tag({ mediaType: MEDIA.ociIndex, ...d }, 'multi');
    const step = await imageInstallStep(`oci:${layout}:multi`, { cacheDir });
    expect(step.imageDigest).toBe(small.digest);
    expect(step.spec.name).toBe('layout');
    expect(step.spec.version).toBe('0+multi');
    const err = await failure(
      imageInstallStep(`oci:${layout}:multi`, { cacheDir, platform: other }),
    );
    expect(err.code).toBe('E_NOT_FOUND');
    expect(err.hint).toContain('windows/amd64');
  });

  it('a large layer (small files written by the stage worker) installs with the right hashes, modes and links', async () => {
    const files: Record<string, string> = {};
    const modes: Record<string, number> = {};
    for (let i = 0; i < 320; i++) {
      files[`usr/share/many/d${i % 17}/f${i}`] = `content ${i}\n`.repeat(i % 5);
      if (i % 50 === 0) modes[`usr/share/many/d${i % 17}/f${i}`] = 0o4755;
      if (i % 10 === 0) files[`usr/share/many/links/l${i}`] = `->../d${i % 17}/f${i}`;
    }
    const lower = layerFromFiles(files, 'zstd', modes);
    // an upper layer replaces one file, whites out another and a whole directory
    const upper = layerFromFiles({
      'usr/share/many/d1/f1': 'replaced\n',
      'usr/share/many/d2/.wh.f2': '',
      'usr/share/many/d3/.wh..wh..opq': '',
    });
    const root = tmpDir();
    await installPackages(root, [step('apps/many@1', [lower, upper])]);
    expect(readFileSync(path.join(root, 'usr/share/many/d1/f1'), 'utf8')).toBe('replaced\n');
    expect(existsSync(path.join(root, 'usr/share/many/d2/f2'))).toBe(false);
    expect(existsSync(path.join(root, 'usr/share/many/d3/f3'))).toBe(false);
    expect(readFileSync(path.join(root, 'usr/share/many/links/l10'), 'utf8')).toBe(
      'content 10\n'.repeat(0),
    );
    expect(statSync(path.join(root, 'usr/share/many/d0/f0')).mode & 0o7777).toBe(0o4755);
    const [pkg] = listInstalled({ root });
    const f7 = pkg!.files.find((f) => f.path === 'usr/share/many/d7/f7');
    expect(f7?.sha256).toBe(createHash('sha256').update('content 7\n'.repeat(2)).digest('hex'));
    expect(
      pkg!.files.filter((f) => f.type === 'f').every((f) => /^[0-9a-f]{64}$/.test(f.sha256!)),
    ).toBe(true);
    expect((await verify({ root })).problems).toEqual([]);
  });

  it('a corrupt layer blob is refused by digest and leaves the root untouched', async () => {
    const step = await imageInstallStep(`${reg.host}/tools/small:1.2`, {
      cacheDir: path.join(work, 'cache-corrupt'),
    });
    const blob = new BlobStore(path.join(work, 'cache-corrupt')).path(step.layers[0]!.digest);
    const buf = readFileSync(blob);
    buf[buf.length - 20] = (buf[buf.length - 20]! + 1) & 0xff;
    writeFileSync(blob, buf);
    const root = tmpDir();
    const err = await failure(installPackages(root, [step]));
    expect(err).toBeInstanceOf(CpmError);
    expect(['E_DIGEST', 'E_IO', 'E_UNSAFE_ENTRY']).toContain(err.code);
    expect(err.message).toContain(step.layers[0]!.digest);
    expect(listInstalled({ root })).toEqual([]);
    expect(existsSync(path.join(root, 'etc'))).toBe(false);
  });
});

describe('installedImage (the no-op check before a pull)', () => {
  it('finds the package installed from the same reference at the digest it points at now', async () => {
    const { installedImage } = await import('../../src/install/image-ref.js');
    const { InstalledDb } = await import('../../src/rootfs/db.js');
    const root = tmpDir();
    const dbOf = () => InstalledDb.load(path.join(root, 'var/lib/cpm'));
    const byTag = `${reg.host}/tools/small:small`;
    const step = await imageInstallStep(byTag, { cacheDir });
    await installPackages(root, [step]);
    expect((await installedImage(byTag, dbOf()))?.id).toBe('images/small@0+small');
    // another reference to the same manifest is another package (its version comes from it)
    expect(await installedImage(`${reg.host}/tools/small@${step.imageDigest}`, dbOf())).toBe(
      undefined,
    );
    // the tag moves: not current any more, the caller pulls
    skopeoPush(`${layout}:1.2`, `${reg.host}/tools/small:small`);
    try {
      expect(await installedImage(byTag, dbOf())).toBe(undefined);
    } finally {
      skopeoPush(`${layout}:small`, `${reg.host}/tools/small:small`);
    }
    // a digest reference installed as such is answered from the DB alone (no registry needed)
    const byDigest = `127.0.0.1:1/tools/small@${step.imageDigest}`;
    const root2 = tmpDir();
    await installPackages(root2, [{ ...step, origin: byDigest }]);
    const db2 = InstalledDb.load(path.join(root2, 'var/lib/cpm'));
    expect((await installedImage(byDigest, db2))?.imageDigest).toBe(step.imageDigest);
  });
});
