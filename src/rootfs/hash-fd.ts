/** sha256 of an open file by positional reads (its offset is left where it is). */
import { createHash } from 'node:crypto';
import { readSync } from 'node:fs';

export function hashFd(fd: number, buf: Buffer): { hex: string; bytes: number } {
  const h = createHash('sha256');
  let pos = 0;
  for (;;) {
    const n = readSync(fd, buf, 0, buf.length, pos);
    if (n === 0) break;
    h.update(n === buf.length ? buf : buf.subarray(0, n));
    pos += n;
  }
  return { hex: h.digest('hex'), bytes: pos };
}
