/**
 * The sha256 of a layer blob that cpm does not read itself (zstd reads the file descriptor, see
 * zstdFileReader): computed from the same open file with positional reads, on a worker thread for
 * a large blob (off the thread that parses the tar), on the calling thread for a small one (a
 * worker costs more to start than hashing a few MB).
 */
import { fstatSync } from 'node:fs';
import { startWorker, workerAvailable } from '../util/worker.js';
import { hashFd } from './hash-fd.js';
import type { HashReply } from './hash-worker.js';

/** Below this many bytes the blob is hashed on the calling thread when the result is asked for. */
const WORKER_FROM = 8 << 20;

export interface FileDigest {
  /** "sha256:…" of the file's bytes from offset 0 to its end. */
  result(): Promise<string>;
  /** Stops a hash still running (after a failed read); the caller may close the fd afterwards. */
  cancel(): Promise<void>;
}

export function fileDigest(fd: number): FileDigest {
  if (fstatSync(fd).size < WORKER_FROM || !workerAvailable('hash-worker')) {
    return {
      result: () => Promise.resolve(`sha256:${hashFd(fd, Buffer.allocUnsafe(1 << 20)).hex}`),
      cancel: () => Promise.resolve(),
    };
  }
  const worker = startWorker('hash-worker', { fd });
  const reply = new Promise<string>((resolve, reject) => {
    worker.once('message', (r: HashReply) => {
      if ('hex' in r) resolve(`sha256:${r.hex}`);
      else reject(Object.assign(new Error(r.error.message), r.error));
    });
    worker.once('error', reject);
    worker.once('exit', (code) => reject(new Error(`the hashing thread exited (${code})`)));
  });
  reply.catch(() => undefined); // a cancelled hash is not awaited
  return {
    result: () => reply,
    cancel: async () => void (await worker.terminate()),
  };
}
