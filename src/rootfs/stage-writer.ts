/**
 * Writes staged files and symlinks on a worker thread, and hashes the files there. Creating a
 * file is mostly kernel work (open/write/chown/chmod/utimes/close); done on the main thread it
 * stalls tar parsing and the decompressor. File contents are never copied: the worker reads them
 * in place from the layer's tar ring (file-digest.ts), which the main thread reads zstd's output
 * into; the main thread only queues ranges of it. The writer is the ring's holder: space is not
 * reused before the worker has written what is in it (STAGED counts the batches done). A file up
 * to SMALL_FILE is one job once its body is in the ring; a larger one is opened, its body queued
 * in pieces as it passes through the ring, and ended. Callers flush() before touching a staged
 * path again.
 */
import type { Worker } from 'node:worker_threads';
import { CpmError, type ErrorContext } from '../errors.js';
import { fsError } from '../util/fs-errors.js';
import { startWorker } from '../util/worker.js';
import type { RingHolder, TarRing } from './file-digest.js';
import { STAGED, STAGE_GONE } from './ring-ctl.js';
import type { Batch, Job, Reply, StageData } from './stage-worker.js';

/** Files up to this size are queued whole once their body is in the ring; larger ones in pieces. */
export const SMALL_FILE = 1 << 20;
/** Ring bytes and jobs per batch: the worker frees ring space a batch at a time. */
const BATCH_BYTES = 1 << 20;
const BATCH_JOBS = 256;
/** Body bytes of a large file per data job. */
const PIECE = 1 << 20;

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

export class StageWriter implements RingHolder {
  private readonly worker: Worker;
  private readonly ctl: Int32Array;
  private readonly size: number;
  private batch: Job[] = [];
  private batchDone: Array<((hash: string) => void) | null> = [];
  private batchBytes = 0;
  /** Stream position of the first ring byte the queued batch uses, or -1. */
  private batchFrom = -1;
  private scheduled = false;
  private nextId = 0;
  /** Per batch sent and not known done (by id - firstFrom): its first ring position, or -1. */
  private froms: number[] = [];
  private firstFrom = 0;
  private readonly pending = new Map<number, Array<((h: string) => void) | null>>();
  private error: CpmError | null = null;
  private waiters: Array<() => void> = [];
  private closing = false;
  /** The thread is gone: it reads the ring no more. */
  private dead = false;
  /** A body being read that is not queued yet: its first stream position, or -1. */
  private keep = -1;
  /** The large file open: the stream position and length of its body bytes not queued yet. */
  private pieceAt = -1;
  private pieceLen = 0;

  /**
   * `beforeSend` runs before each batch goes to the worker (fresh-root mode: the batch's paths are
   * appended to the journal); when it throws, the writer fails with that error. `where`: the
   * package and layer digest the files come from, named in the writer's errors.
   */
  constructor(
    private readonly ring: TarRing,
    private readonly plainOwner = false,
    private readonly beforeSend?: () => void,
    private readonly where: ErrorContext = {},
  ) {
    this.ctl = new Int32Array(ring.ctl);
    this.size = ring.sab.byteLength;
    const data: StageData = { ring: ring.sab, ctl: ring.ctl };
    this.worker = startWorker('stage-worker', data);
    this.worker.on('message', (r: Reply) => this.onReply(r));
    this.worker.on('error', (e) => {
      this.dead = true;
      this.fail(new CpmError('E_IO', `stage writer${this.of()}: ${e.message}`, { context: where }));
    });
    this.worker.on('exit', (code) => {
      this.dead = true;
      if (!this.closing)
        this.fail(
          new CpmError('E_IO', `the stage writer thread${this.of()} exited (${code})`, {
            context: where,
          }),
        );
    });
    ring.hold(this);
  }

  /** The first error of the worker, if any (thrown by the calls that queue work). */
  check(): void {
    if (this.error) throw this.error;
  }

  /**
   * The body of a file starting at stream position `at` is being read into the ring: its bytes
   * are kept there until file() queues it.
   */
  hold(at: number): void {
    this.keep = at;
  }

  /** Queues a file whose body is the ring's stream bytes [at, at+n); `onHash` gets its sha256. */
  file(p: string, at: number, n: number, meta: StageMeta, onHash: (sha256: string) => void): void {
    this.check();
    const calls = metaCalls(meta, this.plainOwner);
    this.keep = -1;
    this.push(
      {
        k: 'f',
        p,
        c: calls.chmod,
        o: at % this.size,
        n,
        m: meta.mode,
        u: meta.uid,
        g: meta.gid,
        t: meta.mtime,
        own: calls.chown,
      },
      onHash,
      at,
      n,
    );
  }

  /** Opens a file whose body (from stream position `at`) follows through piece() and end(). */
  open(p: string, at: number, meta: StageMeta): void {
    this.check();
    const calls = metaCalls(meta, this.plainOwner);
    this.push(
      {
        k: 'o',
        p,
        c: calls.chmod,
        m: meta.mode,
        u: meta.uid,
        g: meta.gid,
        t: meta.mtime,
        own: calls.chown,
      },
      null,
      -1,
      0,
    );
    this.pieceAt = at;
    this.pieceLen = 0;
    this.keep = at;
  }

  /** The next `n` bytes of the open file's body are in the ring. */
  piece(n: number): void {
    this.pieceLen += n;
    if (this.pieceLen >= PIECE) this.queuePiece();
  }

  /** The open file's body is complete; `onHash` gets its sha256. */
  end(onHash: (sha256: string) => void): void {
    this.check();
    this.queuePiece();
    this.pieceAt = -1;
    this.keep = -1;
    this.push({ k: 'e' }, onHash, -1, 0);
  }

  private queuePiece(): void {
    if (this.pieceLen === 0) return;
    const at = this.pieceAt;
    const n = this.pieceLen;
    this.pieceAt += n;
    this.pieceLen = 0;
    this.keep = this.pieceAt;
    this.push({ k: 'd', o: at % this.size, n }, null, at, n);
  }

  symlink(p: string, target: string, meta: StageMeta): void {
    this.check();
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
      null,
      -1,
      0,
    );
  }

  /** Creates a directory (mode 0700: its metadata is set at the end, as for one made directly). */
  mkdir(p: string): void {
    this.check();
    this.push({ k: 'm', p }, null, -1, 0);
  }

  /** RingHolder: the earliest stream position whose ring byte is still needed, or -1. */
  floor(): number {
    if (this.dead || Atomics.load(this.ctl, STAGE_GONE) === 1) return -1;
    const done = Atomics.load(this.ctl, STAGED);
    while (this.firstFrom < done && this.froms.length > 0) {
      this.froms.shift();
      this.firstFrom++;
    }
    for (const f of this.froms) if (f >= 0) return f;
    // failed here (a journal write before a batch): the thread still writes the batches it has,
    // but nothing more is sent
    if (this.error) return -1;
    if (this.batchFrom >= 0) return this.batchFrom;
    return this.keep;
  }

  /** RingHolder: what is queued goes to the worker (the ring waits for space). */
  post(): void {
    if (this.pieceAt >= 0) this.queuePiece();
    this.send();
  }

  /** Everything queued is on disk (or the first error is thrown). */
  async flush(): Promise<void> {
    if (this.pieceAt >= 0) this.queuePiece();
    this.send();
    while (this.pending.size > 0 && !this.error) await this.wait();
    if (this.error) throw this.error;
  }

  async close(): Promise<void> {
    this.closing = true;
    this.ring.hold(null);
    await this.worker.terminate();
  }

  private push(job: Job, done: ((h: string) => void) | null, at: number, bytes: number): void {
    this.batch.push(job);
    this.batchDone.push(done);
    if (at >= 0 && this.batchFrom < 0) this.batchFrom = at;
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
      const mapped = fsError(e, {
        doing: 'writing the journal',
        where: 'root',
        context: this.where,
      });
      this.fail(
        mapped instanceof CpmError
          ? mapped
          : new CpmError('E_IO', `writing the journal: ${(e as Error).message}`, {
              context: this.where,
              cause: e,
            }),
      );
      return;
    }
    const id = this.nextId++;
    this.pending.set(id, this.batchDone);
    if (this.froms.length === 0) this.firstFrom = id;
    this.froms.push(this.batchFrom);
    const batch: Batch = { id, jobs: this.batch };
    this.worker.postMessage(batch);
    this.batch = [];
    this.batchDone = [];
    this.batchBytes = 0;
    this.batchFrom = -1;
  }

  private onReply(r: Reply): void {
    const done = this.pending.get(r.id);
    if (!done) return;
    this.pending.delete(r.id);
    for (let i = 0; i < r.hashes.length; i++) done[i]?.(r.hashes[i]!);
    if (this.pending.size === 0) this.send();
    if (r.error) {
      // the worker's error, rebuilt so it maps like any other system error (ENOSPC, EROFS, …)
      const { message, ...props } = r.error;
      const mapped = fsError(Object.assign(new Error(message), props), {
        doing: `writing a file${this.of()} at`,
        where: 'root',
        context: this.where,
      });
      this.fail(
        mapped instanceof CpmError
          ? mapped
          : new CpmError('E_IO', `writing a file${this.of()} at ${r.error.path}: ${message}`, {
              context: { ...this.where, path: r.error.path, code: r.error.code },
            }),
      );
    }
    this.wake();
  }

  /** " of PACKAGE (layer DIGEST)" when the writer was told, for its messages. */
  private of(): string {
    const { package: pkg, digest } = this.where;
    if (!pkg) return '';
    return digest ? ` of ${pkg} (layer ${digest})` : ` of ${pkg}`;
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
