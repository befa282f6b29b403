/**
 * The content-addressed blob store shared by pull, push, pack and install:
 * `<root>/blobs/sha256/<hex>` — the same shape as an OCI image layout, so a layout directory is
 * a blob store too. Blobs are written to a temp file in the same directory (`.tmp-*`, ignored
 * by readers), sha256 and size are checked while streaming, then fsync + rename: a blob that is
 * in the store is always complete and correct.
 */
import { createHash, randomBytes, type Hash } from 'node:crypto';
import { constants, createReadStream, promises as fsp, type ReadStream } from 'node:fs';
import path from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { CpmError } from '../errors.js';
import { fsError } from '../util/fs-errors.js';
import { assertDigest, hexOf } from './digest.js';

export interface BlobRef {
  digest: string;
  size: number;
}

/** Expected identity of a blob being written; either part may be unknown. */
export interface Expected {
  digest?: string;
  size?: number;
}

export class BlobStore {
  readonly root: string;
  private readonly dir: string;

  /** `root` is a cache dir or an OCI layout dir; blobs go to `<root>/blobs/sha256/`. */
  constructor(root: string) {
    this.root = path.resolve(root);
    this.dir = path.join(this.root, 'blobs', 'sha256');
  }

  path(digest: string): string {
    return path.join(this.dir, hexOf(digest));
  }

  /** Size of the stored blob, or undefined when absent. */
  async size(digest: string): Promise<number | undefined> {
    try {
      return (await fsp.stat(this.path(digest))).size;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
  }

  async has(digest: string): Promise<boolean> {
    return (await this.size(digest)) !== undefined;
  }

  private notFound(digest: string, e: NodeJS.ErrnoException): Error {
    if (e.code !== 'ENOENT') return e;
    return new CpmError('E_NOT_FOUND', `blob ${digest} is not in the store ${this.root}`, {
      context: { digest, path: this.path(digest) },
    });
  }

  /** A read stream of a stored blob; E_NOT_FOUND when absent. */
  async open(digest: string): Promise<ReadStream> {
    const fh = await fsp.open(this.path(digest), 'r').catch((e: NodeJS.ErrnoException) => {
      throw this.notFound(digest, e);
    });
    // Each read allocates a whole highWaterMark buffer: no 1 MiB buffers for small blobs.
    const { size } = await fh.stat().catch(async (e: unknown) => {
      await fh.close();
      throw e;
    });
    // The stream owns the handle and closes it exactly once.
    return fh.createReadStream({ highWaterMark: Math.min(1 << 20, Math.max(size, 1)) });
  }

  /** A whole blob in memory (manifests, configs, indexes). */
  async read(digest: string): Promise<Buffer> {
    return fsp.readFile(this.path(digest)).catch((e: NodeJS.ErrnoException) => {
      throw this.notFound(digest, e);
    });
  }

  /** Where the partial download of `digest` is kept between runs (removed by cpm cleanup). */
  partialPath(digest: string): string {
    return path.join(this.dir, `.partial-${hexOf(digest)}`);
  }

  /**
   * A writer continuing the partial download of `expected.digest` (from zero with `fresh`, or
   * when there is none). Its abort() keeps the partial for the next run; a failed verification
   * at commit() removes it.
   */
  async partialWriter(
    expected: { digest: string; size: number },
    fresh = false,
  ): Promise<BlobWriter> {
    assertDigest(expected.digest);
    const p = this.partialPath(expected.digest);
    try {
      await fsp.mkdir(this.dir, { recursive: true });
      if (fresh) await fsp.rm(p, { force: true });
      const fh = await fsp.open(p, constants.O_RDWR | constants.O_CREAT, 0o644);
      let { size } = await fh.stat();
      if (size > expected.size) {
        await fh.truncate(0);
        size = 0;
      }
      // the hash continues over the bytes already there
      const hash = createHash('sha256');
      if (size > 0)
        for await (const c of createReadStream(p, { start: 0, end: size - 1 }))
          hash.update(c as Buffer);
      return new BlobWriter(this, p, fh, expected, { partial: true, hash, received: size });
    } catch (e) {
      throw this.localError(e, expected.digest);
    }
  }

  /** Starts an incremental write (used by resumable downloads). Call commit() or abort(). */
  async writer(expected: Expected = {}): Promise<BlobWriter> {
    if (expected.digest !== undefined) assertDigest(expected.digest);
    const tmp = path.join(this.dir, `.tmp-${process.pid}-${randomBytes(6).toString('hex')}`);
    try {
      await fsp.mkdir(this.dir, { recursive: true });
      const fh = await fsp.open(tmp, 'w', 0o644);
      return new BlobWriter(this, tmp, fh, expected);
    } catch (e) {
      throw this.localError(e, expected.digest);
    }
  }

  /** Streams `src` into the store, verifying `expected`; returns the blob's digest and size. */
  async put(
    src: Readable | AsyncIterable<Buffer> | Iterable<Buffer>,
    expected: Expected = {},
  ): Promise<BlobRef> {
    if (expected.digest) {
      const have = await this.size(expected.digest);
      if (have !== undefined && (expected.size === undefined || have === expected.size)) {
        // Already present: the caller's stream is not consumed.
        if ('destroy' in src && typeof src.destroy === 'function') src.destroy();
        return { digest: expected.digest, size: have };
      }
    }
    const w = await this.writer(expected);
    try {
      if (src instanceof Readable) {
        // Flowing mode + writev: no per-chunk await, no re-concatenation of buffered chunks.
        await pipeline(src, w.sink());
      } else {
        for await (const chunk of src) await w.write(chunk as Buffer);
      }
      return await w.commit();
    } catch (e) {
      await w.abort();
      throw e;
    }
  }

  async putBytes(data: Buffer | string, expected: Expected = {}): Promise<BlobRef> {
    const buf = typeof data === 'string' ? Buffer.from(data) : data;
    return this.put([buf], expected);
  }

  /**
   * Makes a blob of another store available here: hard link when both are on one filesystem,
   * otherwise a verified copy.
   */
  async importFrom(other: BlobStore, blob: BlobRef): Promise<void> {
    if (other.root === this.root || (await this.size(blob.digest)) === blob.size) return;
    await fsp.mkdir(this.dir, { recursive: true });
    try {
      await fsp.link(other.path(blob.digest), this.path(blob.digest));
      return;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EEXIST') return;
      if (code !== 'EXDEV' && code !== 'EPERM' && code !== 'EMLINK') throw e;
    }
    await this.put(await other.open(blob.digest), blob);
  }

  /** A local error writing the cache, named as such (never a network or registry problem). */
  localError(e: unknown, digest?: string): unknown {
    return fsError(e, {
      doing: `caching blob${digest ? ` ${digest}` : ''} in`,
      path: this.root,
      where: 'cache',
      ...(digest ? { context: { digest } } : {}),
    });
  }

  /** Removes a blob (no error when absent). */
  async delete(digest: string): Promise<void> {
    await fsp.rm(this.path(digest), { force: true });
  }
}

/** One blob being written: bytes are hashed as they arrive; commit() verifies and publishes. */
export class BlobWriter {
  private hash: Hash;
  private done = false;
  /** The write in flight (writes are serialized; sink() batches while one is pending). */
  private pending: Promise<void> = Promise.resolve();
  /** Bytes handed to write() so far (the offset to resume from once settle() resolved). */
  received: number;
  /** A partial download kept across runs: abort() leaves it in place. */
  private readonly partial: boolean;

  constructor(
    private readonly store: BlobStore,
    private readonly tmp: string,
    private readonly fh: fsp.FileHandle,
    readonly expected: Expected,
    resume: { partial: boolean; hash: Hash; received: number } = {
      partial: false,
      hash: createHash('sha256'),
      received: 0,
    },
  ) {
    this.partial = resume.partial;
    this.hash = resume.hash;
    this.received = resume.received;
  }

  async write(chunk: Buffer): Promise<void> {
    await this.writeMany([chunk]);
  }

  /** Appends `chunks` in order: hashed now, written with one positioned writev. */
  async writeMany(chunks: Buffer[]): Promise<void> {
    let n = 0;
    for (const c of chunks) n += c.length;
    const limit = this.expected.size;
    if (limit !== undefined && this.received + n > limit) {
      throw this.mismatch(`more than the expected ${limit} bytes`);
    }
    for (const c of chunks) this.hash.update(c);
    // Explicit positions: after restart() the file offset would otherwise stay past the end.
    const base = this.received;
    this.received += n;
    const run = this.pending
      .then(() => writeAllAt(this.fh, chunks, base))
      .catch((e: unknown) => {
        throw this.store.localError(e, this.expected.digest);
      });
    this.pending = run.catch(() => undefined);
    await run;
  }

  /** Resolves when no write is in flight (call before reading `received` after an error). */
  async settle(): Promise<void> {
    await this.pending;
  }

  /**
   * A Writable feeding this writer. While one writev is on disk the next chunks queue up (up to
   * 4 MiB), so network or compression keep running and disk writes come in large batches.
   */
  sink(): Writable {
    return new Writable({
      highWaterMark: 4 << 20,
      writev: (chunks, cb) => {
        this.writeMany(chunks.map((c) => c.chunk as Buffer)).then(() => cb(), cb);
      },
      write: (chunk: Buffer, _enc, cb) => {
        this.writeMany([chunk]).then(() => cb(), cb);
      },
    });
  }

  /** Discards everything written so far (a server ignored our Range request). */
  async restart(): Promise<void> {
    await this.settle();
    await this.fh.truncate(0);
    this.received = 0;
    this.hash = createHash('sha256'); // a Hash cannot be rewound
  }

  async commit(): Promise<BlobRef> {
    await this.settle();
    const digest = 'sha256:' + this.hash.digest('hex');
    const { size: want, digest: wantDigest } = this.expected;
    try {
      if (want !== undefined && this.received !== want) {
        throw this.mismatch(`got ${this.received} bytes, expected ${want}`);
      }
      if (wantDigest !== undefined && digest !== wantDigest) {
        throw this.mismatch(`content hashes to ${digest}`);
      }
      try {
        await this.fh.sync();
        await this.fh.close();
        this.done = true;
        await fsp.rename(this.tmp, this.store.path(digest));
      } catch (e) {
        throw this.store.localError(e, digest);
      }
      return { digest, size: this.received };
    } catch (e) {
      await this.abort(true);
      throw e;
    }
  }

  /** Stops writing; the file is removed, except a partial download (unless `discard`). */
  async abort(discard = !this.partial): Promise<void> {
    await this.settle();
    if (!this.done) {
      this.done = true;
      await this.fh.close().catch(() => undefined);
    }
    if (discard || this.received === 0) await fsp.rm(this.tmp, { force: true });
  }

  private mismatch(detail: string): CpmError {
    const d = this.expected.digest ?? '(unknown digest)';
    return new CpmError('E_DIGEST', `blob ${d} failed verification: ${detail}`, {
      hint: 'the registry or the network returned corrupt data; nothing was kept, retry the command',
      context: { digest: d, expectedSize: this.expected.size, received: this.received },
    });
  }
}

/** writev until every byte of `chunks` is on file at `pos` (writev may write less than asked). */
async function writeAllAt(fh: fsp.FileHandle, chunks: Buffer[], pos: number): Promise<void> {
  const bufs = chunks.filter((c) => c.length > 0);
  while (bufs.length > 0) {
    const { bytesWritten } = await fh.writev(bufs, pos);
    pos += bytesWritten;
    let left = bytesWritten;
    while (bufs.length > 0 && left >= bufs[0]!.length) left -= bufs.shift()!.length;
    if (left > 0) bufs[0] = bufs[0]!.subarray(left);
  }
}
