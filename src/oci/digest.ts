/** sha256 digests: validation and computing (the hash-while-streaming Transform: hashing-stream.ts). */
import { CpmError } from '../errors.js';
import { sha256Hex } from '../util/sha256.js';

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
  return 'sha256:' + sha256Hex(data);
}
