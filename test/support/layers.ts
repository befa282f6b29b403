/**
 * Helpers for tests that build or inspect layers: temp dirs, payload trees, PackageSpec
 * fixtures, and reading a layer blob back as a list of tar entries.
 */
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { extract } from 'tar-stream';
import { createSpec, type PackageSpec } from '../../src/package/package.js';
import { parseSelector } from '../../src/package/version.js';
import { createDecompressor, sniffCompression } from '../../src/util/compress.js';

export async function tempDir(prefix = 'cpm-test-'): Promise<string> {
  return fsp.mkdtemp(path.join(os.tmpdir(), prefix));
}

export type TreeEntry =
  | string
  | Buffer
  | { content: string | Buffer; mode?: number }
  | { symlink: string }
  | { hardlink: string }
  | { dir: true; mode?: number };

/** Creates files under `root`: { 'etc/motd': 'hi', 'bin/sh': { symlink: 'busybox' } }. */
export async function writeTree(root: string, tree: Record<string, TreeEntry>): Promise<string> {
  for (const [rel, e] of Object.entries(tree)) {
    const abs = path.join(root, rel);
    await fsp.mkdir(path.dirname(abs), { recursive: true });
    if (typeof e === 'string' || Buffer.isBuffer(e)) await fsp.writeFile(abs, e);
    else if ('symlink' in e) await fsp.symlink(e.symlink, abs);
    else if ('hardlink' in e) await fsp.link(path.join(root, e.hardlink), abs);
    else if ('dir' in e) {
      await fsp.mkdir(abs, { recursive: true });
      if (e.mode !== undefined) await fsp.chmod(abs, e.mode);
    } else {
      await fsp.writeFile(abs, e.content);
      if (e.mode !== undefined) await fsp.chmod(abs, e.mode);
    }
  }
  return root;
}

/** Deterministic pseudo-random bytes (xorshift), so blobs are incompressible but reproducible. */
export function pseudoRandom(size: number, seed = 1): Buffer {
  const b = Buffer.alloc(size);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}

/** A PackageSpec with sensible defaults; deps as "cat/name" or "cat/name@>=1". */
export function makeSpec(
  id: string,
  extra: Partial<Omit<PackageSpec, 'requires' | 'conflicts' | 'provides'>> & {
    requires?: string[];
    conflicts?: string[];
    provides?: string[];
  } = {},
): PackageSpec {
  const dep = (s: string): PackageSpec['requires'][number] => {
    const [fam, version = ''] = s.split('@') as [string, string?];
    const i = fam.lastIndexOf('/');
    return {
      category: i >= 0 ? fam.slice(0, i) : '',
      name: fam.slice(i + 1),
      version,
      selector: parseSelector(version),
    };
  };
  const [fam, version = '1.0.0'] = id.split('@') as [string, string?];
  const i = fam.lastIndexOf('/');
  const { requires, conflicts, provides, ...rest } = extra;
  return createSpec({
    category: i >= 0 ? fam.slice(0, i) : '',
    name: fam.slice(i + 1),
    version,
    requires: (requires ?? []).map(dep),
    conflicts: (conflicts ?? []).map(dep),
    provides: (provides ?? []).map(dep),
    ...rest,
  });
}

export interface LayerEntry {
  name: string;
  type: string;
  mode: number;
  uid: number;
  gid: number;
  mtime: number;
  size: number;
  linkname?: string;
  uname?: string;
  gname?: string;
  content?: Buffer;
  pax?: Record<string, string> | null;
}

/** Decompresses (gzip/zstd sniffed) and lists a layer blob's tar entries with file contents. */
export async function readLayer(blob: Buffer): Promise<LayerEntry[]> {
  const comp = sniffCompression(blob.subarray(0, 4));
  const ex = extract();
  const out: LayerEntry[] = [];
  const done = (async () => {
    for await (const entry of ex) {
      const h = entry.header;
      const chunks: Buffer[] = [];
      for await (const c of entry) chunks.push(c as Buffer);
      const e: LayerEntry = {
        name: h.name,
        type: h.type,
        mode: h.mode,
        uid: h.uid,
        gid: h.gid,
        mtime: h.mtime.getTime() / 1000,
        size: h.size,
        uname: h.uname,
        gname: h.gname,
        pax: (h.pax as Record<string, string> | null | undefined) ?? null,
      };
      if (h.linkname) e.linkname = h.linkname;
      if (h.type === 'file') e.content = Buffer.concat(chunks);
      out.push(e);
    }
  })();
  Readable.from([blob])
    .pipe(createDecompressor(comp))
    .pipe(ex as unknown as NodeJS.WritableStream);
  await done;
  return out;
}
