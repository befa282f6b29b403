/**
 * Digests of a layer that the thread parsing it does not compute itself: the sha256 of a blob file
 * that zstd reads directly (zstdFileReader), from the same open file, and the sha256 of the tar
 * that thread reads into a shared ring (TarRing). Both on one worker thread for a large layer, on
 * the calling thread for a small one (a worker costs more to start than hashing a few MB).
 */
import { createHash, type Hash } from 'node:crypto';
import { fstatSync } from 'node:fs';
import { startWorker, workerAvailable } from '../util/worker.js';
import { hashFd } from './hash-fd.js';
import { DONE, GONE, HASHED, SEQ, WRITTEN, type HashReply } from './hash-worker.js';

/** From this blob size on, the digests are computed on a worker thread. */
const WORKER_FROM = 8 << 20;
/** The tar ring: a power of two (the offsets wrap with a mask). */
const RING = 8 << 20;
/** The most one read may fill. */
const READ_MAX = 1 << 20;
/** Tar bytes published to the worker at a time. */
const WAKE_BYTES = 1 << 20;

export interface LayerDigests {
  /**
   * A promise when space() would have to wait for the worker: it gives the event loop turns while
   * it waits, so that a worker that died without a word (it never started) is seen.
   */
  ready(): Promise<void> | undefined;
  /** Where the caller reads the next decompressed bytes into (at most READ_MAX). */
  space(): Buffer;
  /** `n` bytes were read into the last space(): they are the tar's next bytes. */
  wrote(n: number): void;
  /** "sha256:…" of the blob (when asked for) and of the tar (when asked for), once all is read. */
  result(): Promise<{ blob: string | null; tar: string | null }>;
  /** Stops a hash still running (after a failed read); the caller may close the fd afterwards. */
  cancel(): Promise<void>;
}

/**
 * Digests of the blob file open at `fd` (when `blob`) and of the tar read through space()/wrote()
 * (when `tar`; otherwise space() is a plain reused buffer).
 */
export function layerDigests(fd: number, blob: boolean, tar: boolean): LayerDigests {
  const large = fstatSync(fd).size >= WORKER_FROM;
  if (!(blob || tar) || !large || !workerAvailable('hash-worker'))
    return inline(blob ? fd : -1, tar);
  const ctlBuf = new SharedArrayBuffer(20);
  const ctl = new Int32Array(ctlBuf);
  const ring = tar ? new SharedArrayBuffer(RING) : null;
  const bytes = ring ? Buffer.from(ring) : Buffer.allocUnsafe(READ_MAX);
  const worker = startWorker('hash-worker', { fd: blob ? fd : -1, ring, ctl: ctlBuf });
  const reply = new Promise<HashReply>((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
    worker.once('exit', (code) => reject(new Error(`the hashing thread exited (${code})`)));
  });
  // a cancelled hash is not awaited; a worker that exits or fails is not waited for any more
  let stopped = false;
  reply.then(
    () => void (stopped = true),
    () => void (stopped = true),
  );
  const signal = (done?: number): void => {
    if (done !== undefined) Atomics.store(ctl, DONE, done);
    Atomics.add(ctl, SEQ, 1);
    Atomics.notify(ctl, SEQ);
  };
  let written = 0;
  let told = 0;
  let ended = false;
  const tell = (): void => {
    told = written;
    Atomics.store(ctl, WRITTEN, written);
    signal();
  };
  const roomFor = (): number => Math.min(READ_MAX, RING - (written & (RING - 1)));
  const hasRoom = (): boolean => RING - ((written - Atomics.load(ctl, HASHED)) >>> 0) >= roomFor();
  // the worker failed (reading the blob) or exited: result() reports it; the read goes on unhashed
  const gone = (): boolean => stopped || Atomics.load(ctl, GONE) === 1;
  return {
    ready() {
      if (!ring || hasRoom() || gone()) return undefined;
      return (async () => {
        while (!hasRoom() && !gone()) {
          if (told !== written) tell();
          Atomics.wait(ctl, HASHED, Atomics.load(ctl, HASHED), 50);
          if (!hasRoom()) await new Promise((resolve) => setImmediate(resolve));
        }
      })();
    },
    space() {
      if (!ring) return bytes;
      const off = written & (RING - 1);
      const room = roomFor();
      // wait (rarely: hashing is several times faster than decompressing) until the worker has
      // passed the space this read will fill
      for (;;) {
        const hashed = Atomics.load(ctl, HASHED);
        if (RING - ((written - hashed) >>> 0) >= room) break;
        if (gone()) break;
        if (told !== written) tell();
        Atomics.wait(ctl, HASHED, hashed, 1000);
      }
      return bytes.subarray(off, off + room);
    },
    wrote(n) {
      if (!ring || n === 0) return;
      written = (written + n) | 0;
      // the worker is woken per WAKE_BYTES, not per read (a read from the FIFO is ≤ 64 KiB)
      if ((written - told) >>> 0 >= WAKE_BYTES) tell();
    },
    async result() {
      ended = true;
      if (ring) Atomics.store(ctl, WRITTEN, written);
      signal(1);
      const r = await reply;
      if ('error' in r) throw Object.assign(new Error(r.error.message), r.error);
      return {
        blob: r.blob === null ? null : `sha256:${r.blob}`,
        tar: r.tar === null ? null : `sha256:${r.tar}`,
      };
    },
    async cancel() {
      if (!ended) signal(2);
      ended = true;
      await worker.terminate();
    },
  };
}

/** Both digests on the calling thread: the tar as it is read, the blob at the end. */
function inline(fd: number, tar: boolean): LayerDigests {
  const buf = Buffer.allocUnsafe(READ_MAX);
  const h: Hash | null = tar ? createHash('sha256') : null;
  return {
    ready: () => undefined,
    space: () => buf,
    wrote: (n) => void h?.update(buf.subarray(0, n)),
    result: () =>
      Promise.resolve({
        blob: fd >= 0 ? `sha256:${hashFd(fd, buf).hex}` : null,
        tar: h ? `sha256:${h.digest('hex')}` : null,
      }),
    cancel: () => Promise.resolve(),
  };
}
