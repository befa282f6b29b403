/**
 * Worker half of fileDigest (file-digest.ts): the sha256 of an open file, read with positional
 * reads into one reused buffer (the descriptor's offset, which zstd may be reading from, is not
 * moved). One reply: the digest and the bytes hashed, or the read error.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { hashFd } from './hash-fd.js';

export interface HashJob {
  fd: number;
}
export type HashReply =
  { hex: string; bytes: number } | { error: { message: string; code?: string; syscall?: string } };

const port = parentPort;
if (port) {
  const { fd } = workerData as HashJob;
  let reply: HashReply;
  try {
    reply = hashFd(fd, Buffer.allocUnsafe(1 << 20));
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    reply = { error: { message: String(err.message), code: err.code, syscall: err.syscall } };
  }
  port.postMessage(reply);
}
