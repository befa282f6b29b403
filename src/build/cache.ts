/**
 * The local build cache under `<cache_dir>/build/`: results by build hash (the package image,
 * its blobs in the shared blob store), and the inputs of each package's last build, so a rebuild
 * can say what changed.
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import type { BlobStore } from '../oci/blobstore.js';
import type { IndexImage } from '../repo/repo-index.js';

/** The parts of a build hash, compared with the last build's to explain a rebuild. */
export interface HashParts {
  hash: string;
  meta: string;
  spec: string;
  context: string;
  images: Record<string, string>;
  deps: Record<string, string>;
  /** Digest of the local files `retrieve:` names (absent without retrieves). */
  retrieve?: string;
}

const hex = (h: string): string => h.replace(/^sha256:/, '');

function safeName(id: string): string {
  return id.replace(/[^A-Za-z0-9._+-]/g, '_');
}

export class BuildCache {
  constructor(
    readonly dir: string,
    readonly store: BlobStore,
  ) {}

  private resultFile(hash: string): string {
    return path.join(this.dir, 'build', 'results', `${hex(hash)}.json`);
  }

  /** The cached image for `hash`, when it and all its blobs are still there. */
  async result(hash: string): Promise<IndexImage | undefined> {
    let img: IndexImage;
    try {
      img = JSON.parse(await fsp.readFile(this.resultFile(hash), 'utf8')) as IndexImage;
    } catch {
      return undefined;
    }
    if ((await this.store.size(img.manifestDigest)) !== img.manifestSize) return undefined;
    for (const l of img.layers) if ((await this.store.size(l.digest)) !== l.size) return undefined;
    return img;
  }

  /** Records `img` (blobs read from `from`) as the result of `hash`. */
  async putResult(hash: string, img: IndexImage, from: BlobStore): Promise<void> {
    const manifest = JSON.parse((await from.read(img.manifestDigest)).toString()) as {
      config: { digest: string; size: number };
    };
    const blobs = [{ digest: img.manifestDigest, size: img.manifestSize }, manifest.config];
    for (const b of [...blobs, ...img.layers]) await this.store.importFrom(from, b);
    const f = this.resultFile(hash);
    await fsp.mkdir(path.dirname(f), { recursive: true });
    await fsp.writeFile(`${f}.tmp`, JSON.stringify(img));
    await fsp.rename(`${f}.tmp`, f);
  }

  /** Copies a cached result's blobs into `to` (the target's store). */
  async exportResult(img: IndexImage, to: BlobStore): Promise<void> {
    const manifest = JSON.parse((await this.store.read(img.manifestDigest)).toString()) as {
      config: { digest: string; size: number };
    };
    const blobs = [{ digest: img.manifestDigest, size: img.manifestSize }, manifest.config];
    for (const b of [...blobs, ...img.layers]) await to.importFrom(this.store, b);
  }

  private partsFile(id: string): string {
    return path.join(this.dir, 'build', 'inputs', `${safeName(id)}.json`);
  }

  async lastParts(id: string): Promise<HashParts | undefined> {
    try {
      return JSON.parse(await fsp.readFile(this.partsFile(id), 'utf8')) as HashParts;
    } catch {
      return undefined;
    }
  }

  async putParts(id: string, parts: HashParts): Promise<void> {
    const f = this.partsFile(id);
    await fsp.mkdir(path.dirname(f), { recursive: true });
    await fsp.writeFile(f, JSON.stringify(parts));
  }
}

/** Why `now` differs from `last`, in words ("build context changed", "base image changed"). */
export function explainChange(last: HashParts | undefined, now: HashParts): string {
  if (!last) return 'not built before';
  if (last.hash === now.hash) return 'same inputs as the last build';
  const why: string[] = [];
  if (last.spec !== now.spec) why.push('build spec changed');
  if (last.meta !== now.meta) why.push('definition changed');
  if (last.context !== now.context) why.push('build context changed');
  if ((last.retrieve ?? '') !== (now.retrieve ?? '')) why.push('retrieved files changed');
  for (const [ref, d] of Object.entries(now.images))
    if (last.images[ref] !== d) why.push(`image ${ref} changed`);
  for (const [id, h] of Object.entries(now.deps))
    if (last.deps[id] !== h) why.push(`build dependency ${id} changed`);
  if (Object.keys(last.deps).some((id) => !(id in now.deps)))
    why.push('build dependencies changed');
  return why.length > 0 ? why.join(', ') : 'cpm build format changed';
}
