/**
 * Worker half of the StageWriter (stage-writer.ts): creates the staged files and symlinks the main
 * thread queued, file contents read from the shared ring, and hashes the files the main thread did
 * not. One reply per batch, in order; the first failure ends the batch.
 */
import { createHash } from 'node:crypto';
import {
  closeSync,
  fchmodSync,
  fchownSync,
  futimesSync,
  lchownSync,
  lutimesSync,
  openSync,
  symlinkSync,
  writeSync,
} from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';

export interface FileJob {
  k: 'f';
  p: string;
  /** fchmod needed: open(2) cannot give the mode (umask, setuid/setgid/sticky). */
  c: boolean;
  /** Hash it here (the caller has not). */
  h: boolean;
  /** Offset and length in the ring. */
  o: number;
  n: number;
  m: number;
  u: number;
  g: number;
  t: number;
  own: boolean;
}
export interface LinkJob {
  k: 'l';
  p: string;
  l: string;
  u: number;
  g: number;
  t: number;
  own: boolean;
}
export type Job = FileJob | LinkJob;

/** Main thread → worker. workerData is the ring (a SharedArrayBuffer). */
export interface Batch {
  id: number;
  jobs: Job[];
}
/** Worker → main thread: one hash per job done ('' for links and files the caller hashed). */
export interface Reply {
  id: number;
  hashes: string[];
  error: { message: string; code?: string; syscall?: string; path: string } | null;
}

function run(ring: SharedArrayBuffer, batch: Batch): Reply {
  const hashes: string[] = [];
  for (const j of batch.jobs) {
    try {
      if (j.k === 'f') {
        const b = new Uint8Array(ring, j.o, j.n);
        const fd = openSync(j.p, 'wx', j.c ? 0o600 : j.m);
        try {
          let off = 0;
          while (off < b.length) off += writeSync(fd, b, off);
          if (j.own) fchownSync(fd, j.u, j.g);
          if (j.c) fchmodSync(fd, j.m); // after chown, which clears setuid/setgid
          futimesSync(fd, j.t, j.t);
        } finally {
          closeSync(fd);
        }
        hashes.push(j.h ? createHash('sha256').update(b).digest('hex') : '');
      } else {
        symlinkSync(j.l, j.p);
        if (j.own) lchownSync(j.p, j.u, j.g);
        lutimesSync(j.p, j.t, j.t);
        hashes.push('');
      }
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      return {
        id: batch.id,
        hashes,
        error: { message: String(err.message), code: err.code, syscall: err.syscall, path: j.p },
      };
    }
  }
  return { id: batch.id, hashes, error: null };
}

const port = parentPort;
if (port) {
  const ring = workerData as SharedArrayBuffer;
  port.on('message', (batch: Batch) => port.postMessage(run(ring, batch)));
}
