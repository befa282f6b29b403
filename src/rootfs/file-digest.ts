/**
 * The tar ring of a layer being read, and the digests of the layer that the thread parsing it
 * does not compute itself. The decompressed tar is read into one shared ring (a SharedArrayBuffer)
 * that other threads use in place: the hash worker computes the tar's sha256 (the diff_id) from
 * it, and the stage worker writes file contents from it (stage-writer.ts), so no byte of the tar
 * is copied after the read. The blob's sha256 is computed from the same open file that zstd reads
 * (zstdFileReader). Both digests on one worker thread for a large layer, on the calling thread
 * for a small one or a streamed one (a worker costs more to start than hashing a few MB).
 *
 * Space in the ring is reused only once every user of it is past: the hash worker (HASHED) and
 * whoever holds it (RingHolder: the stage writer, for files not written yet).
 */
import { createHash, type Hash } from 'node:crypto';
import { fstatSync } from 'node:fs';
import { startWorker, workerAvailable } from '../util/worker.js';
import { hashFd } from './hash-fd.js';
import type { HashReply } from './hash-worker.js';
import { CTL_SLOTS, DONE, GONE, HASHED, PROGRESS, SEQ, WRITTEN } from './ring-ctl.js';

/** From this blob size on, the digests are computed on a worker thread. */
const WORKER_FROM = 8 << 20;
/** The tar ring: a power of two (offsets wrap with a mask; 2^32 is a multiple of it). */
export const RING = 8 << 20;
/** The most one read may fill. */
const READ_MAX = 1 << 20;
/** Tar bytes published to the worker at a time. */
const WAKE_BYTES = 1 << 20;

/** A user of ring bytes other than the hash: the earliest stream position it still needs. */
export interface RingHolder {
  /** Stream position of the earliest ring byte still needed, or -1 when none is. */
  floor(): number;
  /** Hands what it has queued to its thread, which then frees space (called before waiting). */
  post(): void;
}

/** What the layer's sink sees of the ring: the buffers to give its own worker, and hold(). */
export interface TarRing {
  readonly sab: SharedArrayBuffer;
  /** The control array (ring-ctl.ts). */
  readonly ctl: SharedArrayBuffer;
  /** Registers (or, with null, drops) the holder consulted before space is reused. */
  hold(h: RingHolder | null): void;
}

export interface LayerDigests {
  readonly ring: TarRing;
  /**
   * A promise when space() would have to wait for a worker: it gives the event loop turns while
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

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/**
 * ready() of a ring: undefined when there is room now, else a promise of it. `nudge` first tells
 * whoever could free space what there is; the wait is short and gives the event loop a turn, so a
 * thread's failure (an 'exit' or 'error' event) is seen while waiting.
 */
function roomOrWait(
  ctl: Int32Array,
  hasRoom: () => boolean,
  nudge: () => void,
): Promise<void> | undefined {
  if (hasRoom()) return undefined;
  return (async () => {
    while (!hasRoom()) {
      nudge();
      const p = Atomics.load(ctl, PROGRESS);
      if (hasRoom()) break;
      Atomics.wait(ctl, PROGRESS, p, 50);
      if (!hasRoom()) await turn();
    }
  })();
}

/**
 * The ring, with the digests of the blob file open at `fd` (when `blob`; -1: no file) and of the
 * tar written through space()/wrote() (when `tar`).
 */
export function layerDigests(fd: number, blob: boolean, tar: boolean): LayerDigests {
  const large = fd >= 0 && (blob || tar) && fstatSync(fd).size >= WORKER_FROM;
  const ctlBuf = new SharedArrayBuffer(4 * CTL_SLOTS);
  const ctl = new Int32Array(ctlBuf);
  const sab = new SharedArrayBuffer(RING);
  const bytes = Buffer.from(sab);
  let holder: RingHolder | null = null;
  const ring: TarRing = { sab, ctl: ctlBuf, hold: (h) => void (holder = h) };
  /** Tar bytes written (a double: exact far beyond 2^32). */
  let pos = 0;
  const roomFor = (): number => Math.min(READ_MAX, RING - (pos % RING));
  /** Bytes before `pos` the holder still needs. */
  const held = (): number => {
    const f = holder ? holder.floor() : -1;
    return f < 0 ? 0 : pos - f;
  };

  const useWorker = large && workerAvailable('hash-worker');
  const inlineTar: Hash | null = tar && !useWorker ? createHash('sha256') : null;
  if (!useWorker) {
    const buf = Buffer.allocUnsafe(fd >= 0 && blob ? READ_MAX : 0);
    const hasRoom = (): boolean => RING - held() >= roomFor();
    return {
      ring,
      ready: () => roomOrWait(ctl, hasRoom, () => holder?.post()),
      space() {
        const off = pos % RING;
        return bytes.subarray(off, off + roomFor());
      },
      wrote(n) {
        if (n === 0) return;
        const off = pos % RING;
        inlineTar?.update(bytes.subarray(off, off + n));
        pos += n;
      },
      result: () =>
        Promise.resolve({
          blob: fd >= 0 && blob ? `sha256:${hashFd(fd, buf).hex}` : null,
          tar: inlineTar ? `sha256:${inlineTar.digest('hex')}` : null,
        }),
      cancel: () => Promise.resolve(),
    };
  }

  const worker = startWorker('hash-worker', {
    fd: blob ? fd : -1,
    ring: tar ? sab : null,
    ctl: ctlBuf,
  });
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
  let told = 0;
  let ended = false;
  const tell = (): void => {
    told = pos;
    Atomics.store(ctl, WRITTEN, (pos % 2 ** 32) | 0);
    signal();
  };
  // the worker failed (reading the blob) or exited: result() reports it; the read goes on unhashed
  const gone = (): boolean => stopped || Atomics.load(ctl, GONE) === 1;
  const unhashed = (): number =>
    !tar || gone() ? 0 : (((pos % 2 ** 32) | 0) - Atomics.load(ctl, HASHED)) >>> 0;
  const hasRoom = (): boolean => RING - Math.max(unhashed(), held()) >= roomFor();
  /** Before waiting: everyone who could free space has been told what there is. */
  const nudge = (): void => {
    if (told !== pos) tell();
    holder?.post();
  };
  return {
    ring,
    ready: () => roomOrWait(ctl, hasRoom, nudge),
    space() {
      // wait (rarely: hashing is several times faster than decompressing) until the workers have
      // passed the space this read will fill; a holder is waited for by ready() (its thread's
      // failure may need a turn of the event loop to be seen)
      while (RING - unhashed() < roomFor()) {
        nudge();
        const p = Atomics.load(ctl, PROGRESS);
        if (RING - unhashed() >= roomFor()) break;
        Atomics.wait(ctl, PROGRESS, p, 1000);
      }
      const off = pos % RING;
      return bytes.subarray(off, off + roomFor());
    },
    wrote(n) {
      if (n === 0) return;
      pos += n;
      // the worker is woken per WAKE_BYTES, not per read (a read from the FIFO is ≤ 64 KiB)
      if (tar && pos - told >= WAKE_BYTES) tell();
    },
    async result() {
      ended = true;
      if (tar) Atomics.store(ctl, WRITTEN, (pos % 2 ** 32) | 0);
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
