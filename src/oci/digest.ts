/** sha256 digests: validation, computing, and the hash-while-streaming Transform. */
import { createHash, type Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { CpmError } from '../errors.js';

const DIGEST_RE = /^sha256:[a-f0-9]{64}$/;

export function isDigest(s: string): boolean {
  return DIGEST_RE.test(s);
}

/** Throws E_DIGEST unless `s` is a sha256 digest (the only algorithm cpm stores). */
export function assertDigest(s: string, what = 'digest'): string {
  if (!DIGEST_RE.test(s)) {
    throw new CpmError('E_DIGEST', `invalid ${what} "${s}" (expected sha256:<64 hex>)`, {
      context: { digest: s },
    });
  }
  return s;
}

export function hexOf(digest: string): string {
  return assertDigest(digest).slice('sha256:'.length);
}

export function sha256(data: Buffer | string): string {
  return 'sha256:' + createHash('sha256').update(data).digest('hex');
}

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
