/**
 * The hash-while-streaming Transform, apart from digest.ts so that what only checks a digest loads
 * neither node:stream nor node:crypto (src/util/lazy-builtins.ts).
 */
import { createHash, type Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';

/** Passes bytes through unchanged while hashing and counting them. */
export class HashingStream extends Transform {
  private readonly hash: Hash = createHash('sha256');
  bytes = 0;

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.hash.update(chunk);
    this.bytes += chunk.length;
    cb(null, chunk);
  }

  /** Valid once the stream has finished. */
  digest(): string {
    return 'sha256:' + this.hash.digest('hex');
  }
}
