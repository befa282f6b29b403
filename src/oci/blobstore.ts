/**
 * The content-addressed blob store shared by pull, push, pack and install:
 * `<root>/blobs/sha256/<hex>` — the same shape as an OCI image layout, so a layout directory is
 * a blob store too. Blobs are written to a temp file in the same directory (`.tmp-*`, ignored
 * by readers), sha256 and size are checked while streaming, then fsync + rename: a blob that is
 * in the store is always complete and correct.
 */
import { createHash, randomBytes, type Hash } from 'node:crypto';
import { promises as fsp, type ReadStream } from 'node:fs';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { CpmError } from '../errors.js';
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

  /** A read stream of a stored blob; E_NOT_FOUND when absent. */
  async open(digest: string): Promise<ReadStream> {
    const p = this.path(digest);
    const fh = await fsp.open(p, 'r').catch((e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') {
        throw new CpmError('E_NOT_FOUND', `blob ${digest} is not in the store ${this.root}`, {
          context: { digest, path: p },
        });
      }
      throw e;
    });
    // The stream owns the handle and closes it exactly once.
    return fh.createReadStream({ highWaterMark: 1 << 20 });
  }

  async read(digest: string): Promise<Buffer> {
    const s = await this.open(digest);
    const chunks: Buffer[] = [];
    for await (const c of s) chunks.push(c as Buffer);
    return Buffer.concat(chunks);
  }

  /** Starts an incremental write (used by resumable downloads). Call commit() or abort(). */
  async writer(expected: Expected = {}): Promise<BlobWriter> {
    if (expected.digest !== undefined) assertDigest(expected.digest);
    await fsp.mkdir(this.dir, { recursive: true });
    const tmp = path.join(this.dir, `.tmp-${process.pid}-${randomBytes(6).toString('hex')}`);
    const fh = await fsp.open(tmp, 'w', 0o644);
    return new BlobWriter(this, tmp, fh, expected);
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
      for await (const chunk of src) await w.write(chunk as Buffer);
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

  /** Removes a blob (no error when absent). */
  async delete(digest: string): Promise<void> {
    await fsp.rm(this.path(digest), { force: true });
  }
}

/** One blob being written: bytes are hashed as they arrive; commit() verifies and publishes. */
export class BlobWriter {
  private hash: Hash = createHash('sha256');
  private done = false;
  /** Bytes written so far (the offset to resume from). */
  received = 0;

  constructor(
    private readonly store: BlobStore,
    private readonly tmp: string,
    private readonly fh: fsp.FileHandle,
    readonly expected: Expected,
  ) {}

  async write(chunk: Buffer): Promise<void> {
    const limit = this.expected.size;
    if (limit !== undefined && this.received + chunk.length > limit) {
      throw this.mismatch(`more than the expected ${limit} bytes`);
    }
    this.hash.update(chunk);
    this.received += chunk.length;
    // Explicit positions: after restart() the file offset would otherwise stay past the end.
    let off = 0;
    const base = this.received - chunk.length;
    while (off < chunk.length) {
      const { bytesWritten } = await this.fh.write(chunk, off, chunk.length - off, base + off);
      off += bytesWritten;
    }
  }

  /** Discards everything written so far (a server ignored our Range request). */
  async restart(): Promise<void> {
    await this.fh.truncate(0);
    this.received = 0;
    this.hash = createHash('sha256'); // a Hash cannot be rewound
  }

  async commit(): Promise<BlobRef> {
    const digest = 'sha256:' + this.hash.digest('hex');
    const { size: want, digest: wantDigest } = this.expected;
    try {
      if (want !== undefined && this.received !== want) {
        throw this.mismatch(`got ${this.received} bytes, expected ${want}`);
      }
      if (wantDigest !== undefined && digest !== wantDigest) {
        throw this.mismatch(`content hashes to ${digest}`);
      }
      await this.fh.sync();
      await this.fh.close();
      this.done = true;
      await fsp.rename(this.tmp, this.store.path(digest));
      return { digest, size: this.received };
    } catch (e) {
      await this.abort();
      throw e;
    }
  }

  async abort(): Promise<void> {
    if (!this.done) {
      this.done = true;
      await this.fh.close().catch(() => undefined);
    }
    await fsp.rm(this.tmp, { force: true });
  }

  private mismatch(detail: string): CpmError {
    const d = this.expected.digest ?? '(unknown digest)';
    return new CpmError('E_DIGEST', `blob ${d} failed verification: ${detail}`, {
      hint: 'the registry or the network returned corrupt data; nothing was kept, retry the command',
      context: { digest: d, expectedSize: this.expected.size, received: this.received },
    });
  }
}
