/**
 * The build hash of a package: everything its result depends on — the rendered build spec, the
 * package definition, the build context (the package directory's files: names, modes, bytes,
 * symlink targets), the digest of its base image and of images it copies from, the build hashes
 * of the packages it is built on or copies from, and cpm's build and package format versions.
 * Equal hashes ⇒ the build would give the same package, so it is not built again.
 */
import { createHash } from 'node:crypto';
import { createReadStream, promises as fsp } from 'node:fs';
import path from 'node:path';
import { FORMAT_VERSION } from '../oci/package-image.js';
import { canonicalJson } from '../repo/repo-index.js';

/** Bumped when cpm builds the same inputs differently (sandbox, delta rules, layout). */
export const BUILD_FORMAT_VERSION = 1;

async function fileDigest(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(file)) h.update(chunk as Buffer);
  return h.digest('hex');
}

const contextCache = new Map<string, Promise<string>>();

/** sha256 over the build context directory (sorted walk, symlinks not followed). */
export function contextDigest(dir: string): Promise<string> {
  let p = contextCache.get(dir);
  if (!p) {
    p = walkDigest(dir);
    contextCache.set(dir, p);
  }
  return p;
}

/** Forgets cached context digests (tests change files between builds in one process). */
export function clearContextCache(): void {
  contextCache.clear();
}

async function walkDigest(dir: string): Promise<string> {
  const lines: string[] = [];
  const visit = async (rel: string): Promise<void> => {
    const names = (await fsp.readdir(path.join(dir, rel))).sort();
    for (const n of names) {
      const r = rel ? `${rel}/${n}` : n;
      const abs = path.join(dir, r);
      const st = await fsp.lstat(abs);
      if (st.isDirectory()) {
        lines.push(`d ${r}`);
        await visit(r);
      } else if (st.isSymbolicLink()) lines.push(`l ${r} ${await fsp.readlink(abs)}`);
      else if (st.isFile())
        lines.push(`f ${r} ${(st.mode & 0o111) !== 0 ? 'x' : '-'} ${await fileDigest(abs)}`);
    }
  };
  await visit('');
  return createHash('sha256').update(lines.join('\n')).digest('hex');
}

export interface HashInputs {
  /** The package metadata as it goes into the index (canonical JSON is taken). */
  meta: unknown;
  /** The rendered build.yaml text. */
  renderedSpec: string;
  context: string;
  /** Base and copy-from images: reference → digest. */
  images: Record<string, string>;
  /** Build hashes of the packages built on or copied from, in chain order. */
  deps: string[];
  /** Values that change the output but are not in the spec (network on/off is not one). */
  extra?: Record<string, unknown>;
}

export function buildHash(i: HashInputs): string {
  const doc = {
    build: BUILD_FORMAT_VERSION,
    format: FORMAT_VERSION,
    meta: i.meta,
    spec: i.renderedSpec,
    context: i.context,
    images: i.images,
    deps: i.deps,
    extra: i.extra ?? {},
  };
  return `sha256:${createHash('sha256').update(canonicalJson(doc)).digest('hex')}`;
}
