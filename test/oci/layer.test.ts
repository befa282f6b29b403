import { execFileSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BlobStore } from '../../src/oci/blobstore.js';
import { sha256 } from '../../src/oci/digest.js';
import { buildLayer } from '../../src/oci/layer.js';
import { MEDIA } from '../../src/oci/types.js';
import { createDecompressor } from '../../src/util/compress.js';
import { readLayer, tempDir, writeTree } from '../support/layers.js';
import { Readable } from 'node:stream';

let dir: string;
let payload: string;
let store: BlobStore;

beforeAll(async () => {
  dir = await tempDir();
  store = new BlobStore(path.join(dir, 'cache'));
  payload = await writeTree(path.join(dir, 'payload'), {
    'usr/bin/tool': { content: '#!/bin/sh\necho hi\n', mode: 0o755 },
    'etc/app.conf': 'key=value\n',
    'etc/zz/deep/file': 'deep',
    'usr/bin/tool-link': { symlink: 'tool' },
    'usr/bin/tool-hard': { hardlink: 'usr/bin/tool' },
    'var/empty': { dir: true, mode: 0o700 },
    'usr/share/doc/a-very-long-directory-name-that-needs-more-than-one-hundred-bytes/and-a-long-file-name.txt':
      'x',
  });
});
afterAll(() => fsp.rm(dir, { recursive: true, force: true }));

describe('buildLayer', () => {
  it('writes sorted entries with fixed mtimes, owners 0:0 and no names or atime/ctime', async () => {
    const layer = await buildLayer(payload, store, {
      compression: 'gzip',
      sourceDateEpoch: 1_700_000_000,
    });
    expect(layer.mediaType).toBe(MEDIA.ociLayerGzip);
    const blob = await store.read(layer.digest);
    expect(sha256(blob)).toBe(layer.digest);
    expect(blob.length).toBe(layer.size);
    const entries = await readLayer(blob);
    const names = entries.map((e) => e.name);
    expect(names).toEqual([
      'etc/',
      'etc/app.conf',
      'etc/zz/',
      'etc/zz/deep/',
      'etc/zz/deep/file',
      'usr/',
      'usr/bin/',
      'usr/bin/tool',
      'usr/bin/tool-hard',
      'usr/bin/tool-link',
      'usr/share/',
      'usr/share/doc/',
      'usr/share/doc/a-very-long-directory-name-that-needs-more-than-one-hundred-bytes/',
      'usr/share/doc/a-very-long-directory-name-that-needs-more-than-one-hundred-bytes/and-a-long-file-name.txt',
      'var/',
      'var/empty/',
    ]);
    for (const e of entries) {
      expect(e.mtime).toBe(1_700_000_000);
      expect([e.uid, e.gid, e.uname, e.gname]).toEqual([0, 0, '', '']);
      expect(e.pax?.atime).toBeUndefined();
      expect(e.pax?.ctime).toBeUndefined();
    }
    const byName = new Map(entries.map((e) => [e.name, e]));
    expect(byName.get('usr/bin/tool')!.mode).toBe(0o755);
    expect(byName.get('var/empty/')!.mode).toBe(0o700);
    expect(byName.get('usr/bin/tool-link')).toMatchObject({ type: 'symlink', linkname: 'tool' });
    expect(byName.get('usr/bin/tool-hard')).toMatchObject({
      type: 'link',
      linkname: 'usr/bin/tool',
    });
    expect(byName.get('etc/app.conf')!.content!.toString()).toBe('key=value\n');
  });

  it('diffId is the digest of the uncompressed tar', async () => {
    const layer = await buildLayer(payload, store, { compression: 'zstd' });
    expect(layer.mediaType).toBe(MEDIA.ociLayerZstd);
    const chunks: Buffer[] = [];
    const d = Readable.from([await store.read(layer.digest)]).pipe(createDecompressor('zstd'));
    for await (const c of d) chunks.push(c as Buffer);
    expect(sha256(Buffer.concat(chunks))).toBe(layer.diffId);
  });

  it.each(['gzip', 'zstd'] as const)(
    'is reproducible with %s: same content → same digest, later mtimes ignored',
    async (compression) => {
      const a = await buildLayer(payload, store, { compression });
      const copy = path.join(dir, `copy-${compression}`);
      execFileSync('cp', ['-a', payload, copy]); // -a keeps the hard link
      // Different timestamps on disk must not matter.
      await fsp.utimes(path.join(copy, 'etc/app.conf'), new Date(), new Date(2001, 1, 1));
      const b = await buildLayer(copy, store, { compression });
      expect(b.digest).toBe(a.digest);
      expect(b.diffId).toBe(a.diffId);
      const c = await buildLayer(payload, store, { compression, sourceDateEpoch: 42 });
      expect(c.digest).not.toBe(a.digest);
    },
  );

  it('honours SOURCE_DATE_EPOCH from the environment', async () => {
    const old = process.env.SOURCE_DATE_EPOCH;
    process.env.SOURCE_DATE_EPOCH = '86400';
    try {
      const layer = await buildLayer(payload, store);
      const entries = await readLayer(await store.read(layer.digest));
      expect(new Set(entries.map((e) => e.mtime))).toEqual(new Set([86400]));
    } finally {
      if (old === undefined) delete process.env.SOURCE_DATE_EPOCH;
      else process.env.SOURCE_DATE_EPOCH = old;
    }
  });

  it('keeps a mode of 0 as 0 (tar-stream wrote 0644/0755 for it)', async () => {
    const tree = await writeTree(path.join(dir, 'mode0'), {
      'locked/secret': { content: 's', mode: 0o000 },
    });
    await fsp.chmod(path.join(tree, 'locked'), 0o000);
    try {
      const layer = await buildLayer(tree, store, { compression: 'zstd' });
      const entries = await readLayer(await store.read(layer.digest));
      expect(entries.map((e) => [e.name, e.mode])).toEqual([
        ['locked/', 0],
        ['locked/secret', 0],
      ]);
    } finally {
      await fsp.chmod(path.join(tree, 'locked'), 0o755);
    }
  });

  it('names the file that went away between the walk and the read, and stores nothing', async () => {
    const tree = await writeTree(path.join(dir, 'vanish'), { a: 'first', b: 'second' });
    const before = await fsp.readdir(path.join(dir, 'cache'), { recursive: true });
    // keep() runs during the walk: removing "a" while "b" is walked makes a's read fail
    const keep = (rel: string): boolean => {
      if (rel === 'b') execFileSync('rm', [path.join(tree, 'a')]);
      return true;
    };
    const err = await buildLayer(tree, store, { compression: 'zstd', keep }).catch((e) => e);
    expect(err).toMatchObject({ code: 'E_IO', context: { path: path.join(tree, 'a') } });
    expect(String(err.message)).toContain(path.join(tree, 'a'));
    expect(await fsp.readdir(path.join(dir, 'cache'), { recursive: true })).toEqual(before);
  });

  it('refuses a file that shrank between the walk and the read', async () => {
    const tree = await writeTree(path.join(dir, 'shrink'), { a: 'x'.repeat(5000), b: 'second' });
    const keep = (rel: string): boolean => {
      if (rel === 'b') execFileSync('truncate', ['-s', '10', path.join(tree, 'a')]);
      return true;
    };
    const err = await buildLayer(tree, store, { compression: 'gzip', keep }).catch((e) => e);
    expect(err).toMatchObject({ code: 'E_IO', context: { path: path.join(tree, 'a') } });
    expect(String(err.message)).toMatch(/changed size/);
  });

  it('does not follow a file swapped for a symlink between the walk and the read', async () => {
    const secret = path.join(dir, 'secret-outside');
    await fsp.writeFile(secret, 'not for the layer');
    const tree = await writeTree(path.join(dir, 'swapped'), { a: 'first', b: 'second' });
    const keep = (rel: string): boolean => {
      if (rel === 'b') {
        execFileSync('rm', [path.join(tree, 'a')]);
        execFileSync('ln', ['-s', secret, path.join(tree, 'a')]);
      }
      return true;
    };
    const err = await buildLayer(tree, store, { compression: 'gzip', keep }).catch((e) => e);
    expect(err).toMatchObject({ code: 'E_IO', context: { path: path.join(tree, 'a') } });
  });
});
