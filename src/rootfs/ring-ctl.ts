/**
 * The control array of a layer's tar ring (file-digest.ts), shared by the thread that reads the
 * tar into the ring and the two threads that use its bytes: the hash worker (the tar's digest)
 * and the stage worker (file contents, written from the ring without a copy). Int32 slots.
 */
export const WRITTEN = 0; // tar bytes written into the ring (mod 2^32)
export const HASHED = 1; // tar bytes hashed (mod 2^32)
export const DONE = 2; // 1: no more tar bytes; 2: stop now (to the hash worker)
export const SEQ = 3; // bumped by the reading thread at every change; the hash worker waits on it
export const GONE = 4; // set by the hash worker when it stops (done or failed): nobody hashes the ring
export const PROGRESS = 5; // bumped (and notified) by either worker whenever it frees ring space
export const STAGED = 6; // batches the stage worker has finished (in order)
export const STAGE_GONE = 7; // set by the stage worker once it failed: it reads the ring no more
export const CTL_SLOTS = 8;

/** Bumps PROGRESS and wakes the reading thread if it waits for ring space. */
export function progressed(ctl: Int32Array): void {
  Atomics.add(ctl, PROGRESS, 1);
  Atomics.notify(ctl, PROGRESS);
}
