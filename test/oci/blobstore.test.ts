import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CpmError } from '../../src/errors.js';
import { BlobStore } from '../../src/oci/blobstore.js';
import { sha256 } from '../../src/oci/digest.js';
import { pseudoRandom, tempDir } from '../support/layers.js';

let dir: string;
let store: BlobStore;
beforeAll(async () => {
  dir = await tempDir();
  store = new BlobStore(dir);
});
afterAll(() => fsp.rm(dir, { recursive: true, force: true }));

const files = async (): Promise<string[]> =>
  fsp.readdir(path.join(dir, 'blobs', 'sha256')).catch(() => []);

describe('BlobStore', () => {
  it('stores content-addressed blobs at blobs/sha256/<hex> and reads them back', async () => {
    const data = pseudoRandom(300_000, 7);
    const ref = await store.put(Readable.from([data.subarray(0, 1000), data.subarray(1000)]));
    expect(ref).toEqual({ digest: sha256(data), size: data.length });
    expect(store.path(ref.digest)).toBe(path.join(dir, 'blobs', 'sha256', sha256(data).slice(7)));
    expect(await store.has(ref.digest)).toBe(true);
    expect((await store.read(ref.digest)).equals(data)).toBe(true);
  });

  it('verifies the expected digest and keeps nothing on mismatch', async () => {
    const before = await files();
    const wrong = sha256('something else');
    const err = await store.putBytes('payload', { digest: wrong }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CpmError);
    expect((err as CpmError).code).toBe('E_DIGEST');
    expect((err as CpmError).context.digest).toBe(wrong);
    expect(await store.has(wrong)).toBe(false);
    expect(await files()).toEqual(before);
  });

  it('rejects a stream longer or shorter than the expected size without leaving temp files', async () => {
    const data = Buffer.from('0123456789');
    const before = await files();
    for (const size of [5, 20]) {
      const err = await store
        .putBytes(data, { digest: sha256(data), size })
        .catch((e: unknown) => e);
      expect((err as CpmError).code).toBe('E_DIGEST');
    }
    expect(await files()).toEqual(before);
  });

  it('cleans up when the source stream fails mid-way', async () => {
    const before = await files();
    const src = new Readable({
      read() {
        this.push(Buffer.alloc(1000, 1));
        this.destroy(new Error('source broke'));
      },
    });
    await expect(store.put(src)).rejects.toThrow('source broke');
    expect(await files()).toEqual(before);
  });

  it('streams many small chunks through the batching sink in order, and stops at the size limit', async () => {
    const data = pseudoRandom(3_000_000, 11);
    const chunks: Buffer[] = [];
    for (let off = 0, i = 0; off < data.length; i++) {
      const n = 1 + ((i * 7919) % 40_000);
      chunks.push(data.subarray(off, off + n));
      off += n;
    }
    expect(chunks.length).toBeGreaterThan(100);
    const ref = await store.put(Readable.from(chunks), { digest: sha256(data), size: data.length });
    expect((await store.read(ref.digest)).equals(data)).toBe(true);

    // A stream longer than expected fails in the sink, after its earlier writes settled.
    const before = await files();
    const w = await store.writer({ size: 1_000_000 });
    const err = await new Promise<unknown>((resolve) => {
      const sink = w.sink();
      sink.on('error', resolve);
      Readable.from(chunks).pipe(sink);
    });
    expect((err as CpmError).code).toBe('E_DIGEST');
    await w.settle();
    expect(w.received).toBeLessThanOrEqual(1_000_000);
    const tmp = (await files()).filter((f) => f.startsWith('.tmp-'));
    expect(tmp).toHaveLength(1);
    expect((await fsp.stat(path.join(dir, 'blobs', 'sha256', tmp[0]!))).size).toBe(w.received);
    await w.abort();
    expect(await files()).toEqual(before);
  });

  it('writer supports restart (a registry that ignored Range)', async () => {
    const data = Buffer.from('hello world');
    const w = await store.writer({ digest: sha256(data), size: data.length });
    await w.write(Buffer.from('garbage'));
    await w.restart();
    await w.write(data);
    expect(await w.commit()).toEqual({ digest: sha256(data), size: data.length });
  });

  it('open() of a missing blob is E_NOT_FOUND; invalid digests are refused', async () => {
    await expect(store.open(sha256('missing'))).rejects.toMatchObject({ code: 'E_NOT_FOUND' });
    expect(() => store.path('sha256:xyz')).toThrow(CpmError);
  });

  it('importFrom links or copies a blob from another store', async () => {
    const other = new BlobStore(path.join(dir, 'other'));
    const ref = await store.putBytes('shared content');
    await other.importFrom(store, ref);
    expect((await other.read(ref.digest)).toString()).toBe('shared content');
  });
});
