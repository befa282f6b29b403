import { spawn } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
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

describe('BlobStore.ingest (the lock of one download among processes)', () => {
  const blob = { digest: sha256('ingest me'), size: 9 };
  const sleeps: number[] = [];
  const opts = (stallMs = 60_000) => ({
    stallMs,
    pollMs: 20,
    sleep: async (ms: number) => {
      sleeps.push(ms);
      await new Promise((r) => setTimeout(r, ms));
    },
  });
  /** An owner tag of this boot and pid namespace for `pid`, as a writer would name itself. */
  async function tagOf(s: BlobStore, pid: number): Promise<string> {
    const turn = await s.ingest(blob, opts());
    if (turn === 'present' || !turn.owner) throw new Error('expected the lock');
    await turn.release();
    return turn.owner.replace(/-\d+-([0-9a-f]+)$/, `-${pid}-$1`);
  }

  it('takes the lock, releases only its own, and answers present once the blob is stored', async () => {
    const s = new BlobStore(await tempDir());
    const turn = await s.ingest(blob, opts());
    expect(turn).not.toBe('present');
    const lock = s.ingestPath(blob.digest);
    expect(await fsp.readlink(lock)).toBe((turn as { owner: string }).owner);
    await (turn as { release(): Promise<void> }).release();
    await expect(fsp.lstat(lock)).rejects.toThrow(/ENOENT/);
    await s.putBytes('ingest me');
    expect(await s.ingest(blob, opts())).toBe('present');
  });

  it('waits for a live holder whose file does not change only stallMs, then goes on without the lock', async () => {
    const s = new BlobStore(await tempDir());
    const sleeper = spawn('sleep', ['30'], { stdio: 'ignore' });
    try {
      const owner = await tagOf(s, sleeper.pid!);
      await fsp.symlink(owner, s.ingestPath(blob.digest));
      const waits: Array<[string, number | undefined]> = [];
      sleeps.length = 0;
      const t0 = Date.now();
      const turn = await s.ingest(blob, {
        ...opts(300),
        onWait: (o, pid) => waits.push([o, pid]),
      });
      expect(Date.now() - t0).toBeGreaterThanOrEqual(300);
      expect(waits).toEqual([[owner, sleeper.pid]]);
      expect(sleeps.length).toBeGreaterThan(3);
      // no lock of its own, and the live holder's lock stays
      expect(turn).not.toBe('present');
      expect((turn as { owner?: string }).owner).toBeUndefined();
      expect(await fsp.readlink(s.ingestPath(blob.digest))).toBe(owner);
    } finally {
      sleeper.kill('SIGKILL');
    }
  });

  it('breaks the lock of a dead holder at once and takes it', async () => {
    const s = new BlobStore(await tempDir());
    const dead = spawn('true');
    await new Promise((r) => dead.on('exit', r));
    const owner = await tagOf(s, dead.pid!);
    await fsp.symlink(owner, s.ingestPath(blob.digest));
    sleeps.length = 0;
    const turn = await s.ingest(blob, opts());
    expect(sleeps).toEqual([]);
    const mine = (turn as { owner: string }).owner;
    expect(mine).not.toBe(owner);
    expect(await fsp.readlink(s.ingestPath(blob.digest))).toBe(mine);
    expect((await storeFiles(s)).filter((f) => f.includes('.gone-'))).toEqual([]);
  });

  it('goes on without the lock where the cache cannot hold a symlink (vfat: EPERM)', async () => {
    const s = new BlobStore(await tempDir());
    const spy = vi
      .spyOn(fsp, 'symlink')
      .mockRejectedValue(
        Object.assign(new Error('EPERM: operation not permitted, symlink'), { code: 'EPERM' }),
      );
    try {
      sleeps.length = 0;
      const turn = await s.ingest(blob, opts());
      expect(spy).toHaveBeenCalled();
      expect(sleeps).toEqual([]);
      expect(turn).not.toBe('present');
      expect((turn as { owner?: string }).owner).toBeUndefined();
    } finally {
      spy.mockRestore();
    }
  });

  it('never follows a lock name that points elsewhere, nor waits on something else at that name', async () => {
    const s = new BlobStore(await tempDir());
    const outside = path.join(await tempDir(), 'victim');
    await fsp.writeFile(outside, 'keep');
    const lock = s.ingestPath(blob.digest);
    await fsp.mkdir(path.dirname(lock), { recursive: true });
    await fsp.symlink(outside, lock);
    sleeps.length = 0;
    const turn = await s.ingest(blob, opts());
    expect(sleeps).toEqual([]);
    expect((turn as { owner?: string }).owner).toBeUndefined();
    expect(await fsp.readlink(lock)).toBe(outside);
    expect(await fsp.readFile(outside, 'utf8')).toBe('keep');
    await fsp.rm(lock);
    await fsp.mkdir(lock);
    expect(((await s.ingest(blob, opts())) as { owner?: string }).owner).toBeUndefined();
    expect(sleeps).toEqual([]);
  });
});

const storeFiles = async (s: BlobStore): Promise<string[]> =>
  fsp.readdir(path.join(s.root, 'blobs', 'sha256')).catch(() => []);
