/**
 * Writes small staged files and symlinks on a worker thread. Creating a file is mostly kernel work
 * (open/write/chown/chmod/utimes/close, hundreds of µs each on a busy disk); done on the main
 * thread it stalls tar parsing and the decompressor pipe. File contents go through one fixed
 * SharedArrayBuffer ring (no allocation per file, bounded memory): the main thread reserves space,
 * copies the entry in and queues a job; the worker creates the file, hashes it (unless the caller
 * did: see behind()) and releases the
 * space in order. Callers flush() before touching a staged path again.
 */
import type { Worker } from 'node:worker_threads';
import { CpmError } from '../errors.js';
import { fsError } from '../util/fs-errors.js';
import { startWorker } from '../util/worker.js';
import type { Batch, Job, Reply } from './stage-worker.js';

/** Files up to this size go through the ring and the worker; larger ones stream. */
export const SMALL_FILE = 1 << 20;
const RING = 8 << 20;
const BATCH_BYTES = 1 << 20;
const BATCH_JOBS = 256;

export interface StageMeta {
  uid: number;
  gid: number;
  mode: number;
  mtime: number;
}

const isRoot = process.getuid?.() === 0;
// read once; the stage is private (0700), so files may get their final mode at open(2)
const UMASK = process.umask();

/**
 * Which metadata calls a new staged file needs. `plainOwner`: new files in the stage are owned
 * 0:0 already (root, gid 0, no setgid directory above), so a 0:0 entry needs no fchown.
 */
export function metaCalls(
  meta: StageMeta,
  plainOwner: boolean,
): { chown: boolean; chmod: boolean } {
  return {
    chown: isRoot && !(plainOwner && meta.uid === 0 && meta.gid === 0),
    chmod: (meta.mode & 0o7000) !== 0 || (meta.mode & UMASK) !== 0,
  };
}

export class StageWriter {
  private readonly worker: Worker;
  private readonly ring = new SharedArrayBuffer(RING);
  /** Next free offset, and the oldest offset still in use (FIFO). */
  private head = 0;
  private used = 0;
  private batch: Job[] = [];
  private batchDone: Array<(hash: string) => void> = [];
  private batchBytes = 0;
  private scheduled = false;
  private nextId = 0;
  private readonly pending = new Map<number, { done: Array<(h: string) => void>; bytes: number }>();
  private error: CpmError | null = null;
  private waiters: Array<() => void> = [];

  /**
   * `beforeSend` runs before each batch goes to the worker (fresh-root mode: the batch's paths are
   * appended to the journal); when it throws, the writer fails with that error.
   */
  constructor(
    private readonly plainOwner = false,
    private readonly beforeSend?: () => void,
  ) {
    this.worker = startWorker('stage-worker', this.ring);
    this.worker.on('message', (r: Reply) => this.onReply(r));
    this.worker.on('error', (e) => this.fail(new CpmError('E_IO', `stage writer: ${e.message}`)));
  }

  /**
   * Space for `size` bytes (≤ SMALL_FILE) in the ring, waiting for the worker when it is full.
   * Returns a view to copy the file into; pass it to file().
   */
  async reserve(size: number): Promise<Uint8Array> {
    for (;;) {
      const view = this.tryReserve(size);
      if (view) return view;
      this.send();
      await this.wait();
    }
  }

  /** reserve() without waiting: null when the ring is too full now. */
  tryReserve(size: number): Uint8Array | null {
    if (this.error) throw this.error;
    // contiguous space: at the head, or from 0 when the tail end is too short (that gap is
    // accounted as used until the worker passes it)
    const atEnd = RING - this.head;
    const need = size <= atEnd ? size : atEnd + size;
    if (this.used + need <= RING) {
      if (size > atEnd) {
        this.used += atEnd;
        this.batchBytes += atEnd; // released with this batch
        this.head = 0;
      }
      const view = new Uint8Array(this.ring, this.head, size);
      this.head = (this.head + size) % RING;
      this.used += size;
      return view;
    }
    if (this.pending.size === 0 && this.batch.length === 0) {
      // nothing in flight: space held by an abandoned reservation is free again
      this.head = 0;
      this.used = 0;
      return this.tryReserve(size);
    }
    return null;
  }

  /**
   * The worker is the slower side (over half the ring waits for it): the caller should hash files
   * itself rather than wait idle, and pass the hash to file().
   */
  behind(): boolean {
    return this.used > RING / 2;
  }

  /**
   * Queues a file whose contents are in `view` (from reserve()). `onHash` gets its sha256: `sha256`
   * when the caller hashed it, else the worker's.
   */
  file(
    p: string,
    view: Uint8Array,
    meta: StageMeta,
    onHash: (sha256: string) => void,
    sha256?: string,
  ): void {
    const calls = metaCalls(meta, this.plainOwner);
    this.push(
      {
        k: 'f',
        p,
        c: calls.chmod,
        h: sha256 === undefined,
        o: view.byteOffset,
        n: view.byteLength,
        m: meta.mode,
        u: meta.uid,
        g: meta.gid,
        t: meta.mtime,
        own: calls.chown,
      },
      sha256 === undefined ? onHash : () => onHash(sha256),
      view.byteLength,
    );
  }

  symlink(p: string, target: string, meta: StageMeta): void {
    this.push(
      {
        k: 'l',
        p,
        l: target,
        u: meta.uid,
        g: meta.gid,
        t: meta.mtime,
        own: metaCalls(meta, this.plainOwner).chown,
      },
      () => undefined,
      0,
    );
  }

  /** Everything queued is on disk (or the first error is thrown). */
  async flush(): Promise<void> {
    this.send();
    while (this.pending.size > 0 && !this.error) await this.wait();
    if (this.error) throw this.error;
  }

  async close(): Promise<void> {
    await this.worker.terminate();
  }

  private push(job: Job, done: (h: string) => void, bytes: number): void {
    this.batch.push(job);
    this.batchDone.push(done);
    this.batchBytes += bytes;
    if (this.batch.length >= BATCH_JOBS || this.batchBytes >= BATCH_BYTES) this.send();
    else if (!this.scheduled && this.pending.size === 0) {
      // the worker is idle: send soon. While it is busy, jobs gather until it replies (fewer,
      // larger messages: each one wakes a thread on a 2-core box)
      this.scheduled = true;
      setImmediate(() => this.send());
    }
  }

  private send(): void {
    this.scheduled = false;
    if (this.batch.length === 0 || this.error) return;
    try {
      this.beforeSend?.();
    } catch (e) {
      const mapped = fsError(e, { doing: 'writing the journal', where: 'root' });
      this.fail(
        mapped instanceof CpmError
          ? mapped
          : new CpmError('E_IO', `writing the journal: ${(e as Error).message}`, { cause: e }),
      );
      return;
    }
    const id = this.nextId++;
    this.pending.set(id, { done: this.batchDone, bytes: this.batchBytes });
    const batch: Batch = { id, jobs: this.batch };
    this.worker.postMessage(batch);
    this.batch = [];
    this.batchDone = [];
    this.batchBytes = 0;
  }

  private onReply(r: Reply): void {
    const p = this.pending.get(r.id);
    if (!p) return;
    this.pending.delete(r.id);
    this.used -= p.bytes; // batches complete in order, so their ring space is the oldest
    r.hashes.forEach((h, i) => p.done[i]!(h));
    if (this.pending.size === 0) this.send();
    if (r.error) {
      // the worker's error, rebuilt so it maps like any other system error (ENOSPC, EROFS, …)
      const { message, ...props } = r.error;
      const mapped = fsError(Object.assign(new Error(message), props), {
        doing: 'writing staged file',
        where: 'root',
      });
      this.fail(
        mapped instanceof CpmError
          ? mapped
          : new CpmError('E_IO', `writing ${r.error.path}: ${message}`, {
              context: { path: r.error.path, code: r.error.code },
            }),
      );
    }
    this.wake();
  }

  private fail(e: CpmError): void {
    this.error ??= e;
    this.wake();
  }

  private wait(): Promise<void> {
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
}
