/**
 * Content keys for incremental `repo create`: a sha256 over everything that decides a package
 * image's bytes (metadata, finalize, pack options, and every payload entry's path, type, mode,
 * size, link target and content hash). Equal key → the image from the last run is reused
 * without re-packing or re-pushing. Hashing a payload is much cheaper than compressing it.
 */
import { createHash } from 'node:crypto';
import { createReadStream, promises as fsp } from 'node:fs';
import path from 'node:path';
import { CpmError } from '../errors.js';
import { canonicalJson } from './repo-index.js';

/** Bump when the image format or packing changes so old images are rebuilt. */
export const CONTENT_KEY_VERSION = 1;

export interface PayloadDigest {
  digest: string;
  /** Newest mtime seen (seconds), a candidate for the index timestamp. */
  newestMtime: number;
  files: number;
}

async function fileHash(p: string, size: number): Promise<string> {
  const h = createHash('sha256');
  // A read stream allocates a full highWaterMark buffer per read: size it to the file, or a
  // tree of small files churns through 1 MiB buffers (most of the time went to GC).
  const highWaterMark = Math.min(1 << 20, Math.max(size, 1));
  for await (const c of createReadStream(p, { highWaterMark })) h.update(c as Buffer);
  return h.digest('hex');
}

/**
 * Digest of a payload directory's tree, in the byte order buildLayer packs it; `keep` as
 * buildLayer's (only those entries, a directory not kept is not entered).
 */
export async function payloadDigest(
  dir: string,
  keep?: (rel: string) => boolean,
): Promise<PayloadDigest> {
  const h = createHash('sha256');
  let newest = 0;
  let files = 0;
  const visit = async (rel: string): Promise<void> => {
    const abs = path.join(dir, rel);
    let names: string[];
    try {
      names = await fsp.readdir(abs);
    } catch (e) {
      throw new CpmError('E_IO', `cannot read payload ${abs}: ${(e as Error).message}`, {
        context: { path: abs },
      });
    }
    names.sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
    for (const n of names) {
      const r = rel ? `${rel}/${n}` : n;
      if (keep && !keep(r)) continue;
      const st = await fsp.lstat(path.join(dir, r));
      newest = Math.max(newest, Math.floor(st.mtimeMs / 1000));
      const mode = (st.mode & 0o7777).toString(8);
      if (st.isDirectory()) {
        h.update(`d ${mode} ${r}\0`);
        await visit(r);
      } else if (st.isSymbolicLink()) {
        h.update(`l ${mode} ${r} ${await fsp.readlink(path.join(dir, r))}\0`);
      } else if (st.isFile()) {
        files++;
        h.update(`f ${mode} ${st.size} ${r} ${await fileHash(path.join(dir, r), st.size)}\0`);
      } else {
        h.update(`o ${mode} ${st.rdev} ${r}\0`);
      }
    }
  };
  await visit('');
  return { digest: `sha256:${h.digest('hex')}`, newestMtime: newest, files };
}

/** The key itself: canonical JSON of all inputs, hashed. */
export function contentKey(inputs: Record<string, unknown>): string {
  return `sha256:${createHash('sha256')
    .update(canonicalJson({ v: CONTENT_KEY_VERSION, ...inputs }))
    .digest('hex')}`;
}
