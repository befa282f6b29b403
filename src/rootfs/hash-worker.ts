/**
 * Worker half of file-digest.ts: sha256 of a layer's blob file and of its decompressed tar, off
 * the thread that parses the tar. The blob is read with positional reads into one reused buffer
 * (the descriptor's offset, which zstd reads from, is not moved). The tar arrives through a
 * shared byte ring the main thread reads zstd's output into: it publishes how many bytes it wrote,
 * this thread hashes them and publishes how many it hashed, and the main thread reuses that space.
 * Ring bytes come first; a 1 MiB piece of the blob is hashed whenever the ring is empty. One
 * reply at the end: both digests, or the error.
 */
import { createHash } from 'node:crypto';
import { readSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';

import { DONE, GONE, HASHED, SEQ, WRITTEN, progressed } from './ring-ctl.js';

export interface HashJob {
  /** The blob file, or -1. */
  fd: number;
  /** The tar ring (a power of two in size), or null when only the blob is hashed. */
  ring: SharedArrayBuffer | null;
  ctl: SharedArrayBuffer;
}
export type HashReply =
  | { blob: string | null; tar: string | null; blobBytes: number }
  | { error: { message: string; code?: string; syscall?: string } };

function run({ fd, ring, ctl: ctlBuf }: HashJob): HashReply {
  const ctl = new Int32Array(ctlBuf);
  const blob = fd >= 0 ? createHash('sha256') : null;
  const tar = ring ? createHash('sha256') : null;
  const bytes = ring ? Buffer.from(ring) : Buffer.alloc(0);
  const mask = bytes.length - 1;
  const piece = Buffer.allocUnsafe(fd >= 0 ? 1 << 20 : 0);
  let blobPos = 0;
  let blobDone = fd < 0;
  let hashed = 0;
  for (;;) {
    const seq = Atomics.load(ctl, SEQ);
    if (Atomics.load(ctl, DONE) === 2) return { blob: null, tar: null, blobBytes: 0 };
    const written = Atomics.load(ctl, WRITTEN);
    if (tar && written !== hashed) {
      const off = hashed & mask;
      const n = Math.min((written - hashed) >>> 0, bytes.length - off);
      tar.update(bytes.subarray(off, off + n));
      hashed = (hashed + n) | 0;
      Atomics.store(ctl, HASHED, hashed);
      progressed(ctl);
      continue;
    }
    if (!blobDone) {
      const n = readSync(fd, piece, 0, piece.length, blobPos);
      if (n === 0) blobDone = true;
      else {
        blob!.update(n === piece.length ? piece : piece.subarray(0, n));
        blobPos += n;
      }
      continue;
    }
    if (!tar) break;
    // the last bytes were published before DONE: read WRITTEN again after seeing it
    if (Atomics.load(ctl, DONE) === 1) {
      if (Atomics.load(ctl, WRITTEN) === hashed) break;
      continue;
    }
    Atomics.wait(ctl, SEQ, seq);
  }
  return {
    blob: blob ? blob.digest('hex') : null,
    tar: tar ? tar.digest('hex') : null,
    blobBytes: blobPos,
  };
}

const port = parentPort;
if (port) {
  const job = workerData as HashJob;
  let reply: HashReply;
  try {
    reply = run(job);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    reply = { error: { message: String(err.message), code: err.code, syscall: err.syscall } };
  } finally {
    // a main thread waiting for ring space must not wait for this thread any more
    const ctl = new Int32Array(job.ctl);
    Atomics.store(ctl, GONE, 1);
    progressed(ctl);
  }
  port.postMessage(reply);
}
