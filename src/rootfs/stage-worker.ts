/**
 * Worker half of the StageWriter (stage-writer.ts): creates the files, symlinks and (fresh-root
 * mode) directories the main thread queued and hashes the files, their contents read in place from the layer's tar ring
 * (file-digest.ts). A file is one job when its body is in the ring at once, or an open job, data
 * jobs and an end job when it is larger (its body passes through the ring in pieces). One reply
 * per batch, in order; after each batch STAGED counts it (the reader may reuse its ring space);
 * the first failure ends the batch and every later one, and sets STAGE_GONE.
 */
import crypto, { createHash, type Hash } from 'node:crypto';
import {
  closeSync,
  fchmodSync,
  fchownSync,
  futimesSync,
  lchownSync,
  lutimesSync,
  mkdirSync,
  openSync,
  symlinkSync,
  writeSync,
} from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { STAGED, STAGE_GONE, progressed } from './ring-ctl.js';

/** Metadata of a file: fchmod needed (open(2) cannot give the mode: umask, setuid/…), owner. */
interface FileMeta {
  p: string;
  c: boolean;
  m: number;
  u: number;
  g: number;
  t: number;
  own: boolean;
}
/** A whole file whose body is the ring's bytes [o, o+n) (wrapping at the end). */
export interface FileJob extends FileMeta {
  k: 'f';
  o: number;
  n: number;
}
/** Opens a file whose body follows in data jobs. */
export interface OpenJob extends FileMeta {
  k: 'o';
}
/** The next piece of the open file's body: ring bytes [o, o+n). */
export interface DataJob {
  k: 'd';
  o: number;
  n: number;
}
/** The open file's body is complete: metadata, close, its hash. */
export interface EndJob {
  k: 'e';
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
/** A directory (fresh-root mode), 0700 until the transaction sets its metadata at the end. */
export interface DirJob {
  k: 'm';
  p: string;
}
export type Job = FileJob | OpenJob | DataJob | EndJob | LinkJob | DirJob;

/** workerData: the tar ring and its control array (ring-ctl.ts). */
export interface StageData {
  ring: SharedArrayBuffer;
  ctl: SharedArrayBuffer;
}
/** Main thread → worker. */
export interface Batch {
  id: number;
  jobs: Job[];
}
/** Worker → main thread: one hash per job done (files and end jobs; '' for the others). */
export interface Reply {
  id: number;
  hashes: string[];
  error: { message: string; code?: string; syscall?: string; path: string } | null;
}

/** One-shot sha256 where this Node has it (no Hash object per small file). */
const oneShot = (crypto as { hash?: (alg: string, data: Uint8Array, enc: 'hex') => string }).hash;

class Stage {
  private readonly bytes: Buffer;
  private readonly ctl: Int32Array;
  /** The open file of data jobs. */
  private fd = -1;
  private meta: FileMeta | null = null;
  private hash: Hash | null = null;
  private failed: Reply['error'] = null;

  constructor(d: StageData) {
    this.bytes = Buffer.from(d.ring);
    this.ctl = new Int32Array(d.ctl);
  }

  /** Writes ring bytes [o, o+n) to fd (two pieces when they wrap) and hashes them. */
  private put(fd: number, o: number, n: number, h: Hash | null): string {
    const size = this.bytes.length;
    const first = Math.min(n, size - o);
    const a = this.bytes.subarray(o, o + first);
    writeAll(fd, a);
    if (first === n) {
      if (h) h.update(a);
      else
        return oneShot ? oneShot('sha256', a, 'hex') : createHash('sha256').update(a).digest('hex');
      return '';
    }
    const b = this.bytes.subarray(0, n - first);
    writeAll(fd, b);
    if (h) h.update(a).update(b);
    else return createHash('sha256').update(a).update(b).digest('hex');
    return '';
  }

  run(batch: Batch): Reply {
    if (this.failed) return { id: batch.id, hashes: [], error: this.failed };
    const hashes: string[] = [];
    let path = '';
    try {
      for (const j of batch.jobs) {
        switch (j.k) {
          case 'f': {
            path = j.p;
            const fd = openSync(j.p, 'wx', j.c ? 0o600 : j.m);
            try {
              hashes.push(this.put(fd, j.o, j.n, null));
              finish(fd, j);
            } finally {
              closeSync(fd);
            }
            break;
          }
          case 'o':
            path = j.p;
            this.fd = openSync(j.p, 'wx', j.c ? 0o600 : j.m);
            this.meta = j;
            this.hash = createHash('sha256');
            hashes.push('');
            break;
          case 'd':
            path = this.meta!.p;
            this.put(this.fd, j.o, j.n, this.hash);
            hashes.push('');
            break;
          case 'e': {
            path = this.meta!.p;
            const fd = this.fd;
            this.fd = -1;
            try {
              finish(fd, this.meta!);
            } finally {
              closeSync(fd);
            }
            hashes.push(this.hash!.digest('hex'));
            this.hash = null;
            this.meta = null;
            break;
          }
          case 'm':
            path = j.p;
            mkdirSync(j.p, 0o700);
            hashes.push('');
            break;
          case 'l':
            path = j.p;
            symlinkSync(j.l, j.p);
            if (j.own) lchownSync(j.p, j.u, j.g);
            lutimesSync(j.p, j.t, j.t);
            hashes.push('');
            break;
        }
      }
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      if (this.fd >= 0) {
        try {
          closeSync(this.fd);
        } catch {
          // closed already
        }
        this.fd = -1;
      }
      this.failed = { message: String(err.message), code: err.code, syscall: err.syscall, path };
      // the reader must not wait for ring space this thread will never free
      Atomics.store(this.ctl, STAGE_GONE, 1);
      progressed(this.ctl);
      return { id: batch.id, hashes, error: this.failed };
    }
    Atomics.store(this.ctl, STAGED, batch.id + 1);
    progressed(this.ctl);
    return { id: batch.id, hashes, error: null };
  }
}

function writeAll(fd: number, b: Uint8Array): void {
  let off = 0;
  while (off < b.length) off += writeSync(fd, b, off);
}

/** Owner, mode and times of a file just written. */
function finish(fd: number, j: FileMeta): void {
  if (j.own) fchownSync(fd, j.u, j.g);
  if (j.c) fchmodSync(fd, j.m); // after chown, which clears setuid/setgid
  futimesSync(fd, j.t, j.t);
}

const port = parentPort;
if (port) {
  const stage = new Stage(workerData as StageData);
  port.on('message', (batch: Batch) => port.postMessage(stage.run(batch)));
}
