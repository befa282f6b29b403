/**
 * Reproducible layers: a directory → tar (sorted entries, fixed mtimes from SOURCE_DATE_EPOCH,
 * numeric owners 0:0 unless asked to keep them, no atime/ctime, no user/group names) →
 * gzip/zstd → blob store. Same directory content and options ⇒ same bytes ⇒ same digest.
 */
import { createReadStream, promises as fsp, type Stats } from 'node:fs';
import path from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { pack as tarPack, type Header, type Pack } from 'tar-stream';
import { CpmError } from '../errors.js';
import { createCompressor, type Compression } from '../util/compress.js';
import { human, plural, type ProgressTask, type Reporter } from '../util/progress.js';
import { interruptSignal, throwIfInterrupted } from '../util/signals.js';
import type { BlobStore } from './blobstore.js';
import { HashingStream } from './digest.js';
import { MEDIA } from './types.js';

type Headers = Partial<Header> & { name: string };

export type LayerCompression = 'gzip' | 'zstd';

export interface LayerOptions {
  compression?: LayerCompression;
  /** Compression level (gzip 1-9, default 6; zstd 1-19, default 3). */
  level?: number;
  /** mtime of every entry, seconds; default $SOURCE_DATE_EPOCH or 0. */
  sourceDateEpoch?: number;
  /** Keep the files' uid/gid instead of 0:0. */
  preserveOwners?: boolean;
  /**
   * Shows the work: a step for the walk, then a "pack" task over the bytes of the files read
   * (uncompressed: the total the walk found), named `label`.
   */
  reporter?: Reporter;
  label?: string;
  /**
   * Only the entries (relative paths, "/"-separated) this keeps, read straight from `dir`: a
   * filtered package needs no filtered copy. A directory that is not kept is not entered.
   */
  keep?: (rel: string) => boolean;
}

export interface LayerResult {
  /** Digest of the compressed blob (the layer descriptor's digest). */
  digest: string;
  /** Digest of the uncompressed tar (the config's rootfs.diff_ids entry). */
  diffId: string;
  size: number;
  mediaType: string;
}

export function layerMediaType(c: LayerCompression): string {
  return c === 'zstd' ? MEDIA.ociLayerZstd : MEDIA.ociLayerGzip;
}

/** SOURCE_DATE_EPOCH when set and valid, else 0. */
export function defaultSourceDateEpoch(env: NodeJS.ProcessEnv = process.env): number {
  const v = env.SOURCE_DATE_EPOCH;
  if (v === undefined || v === '') return 0;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) {
    throw new CpmError('E_USAGE', `SOURCE_DATE_EPOCH="${v}" is not a non-negative integer`);
  }
  return n;
}

/** Relative paths under `root`, depth-first, sorted by byte order at each level. */
async function walk(
  root: string,
  keep?: (rel: string) => boolean,
): Promise<Array<{ rel: string; st: Stats }>> {
  const out: Array<{ rel: string; st: Stats }> = [];
  const visit = async (rel: string): Promise<void> => {
    const names = (await fsp.readdir(path.join(root, rel))).sort((a, b) =>
      Buffer.compare(Buffer.from(a), Buffer.from(b)),
    );
    for (const n of names) {
      const r = rel ? `${rel}/${n}` : n;
      if (keep && !keep(r)) continue;
      const st = await fsp.lstat(path.join(root, r));
      out.push({ rel: r, st });
      if (st.isDirectory()) await visit(r);
    }
  };
  await visit('');
  return out;
}

function addEntry(p: Pack, h: Headers, body?: Readable): Promise<void> {
  return new Promise((resolve, reject) => {
    const e = p.entry(h, (err) => (err ? reject(err) : resolve()));
    // the pack destroyed under it (an interrupt aborts the pipeline) errors the entry too
    e.on('error', reject);
    if (body) body.on('error', reject).pipe(e);
  });
}

/** Writes the tar stream of `dir` into `p`, then finalizes it. */
async function packDir(dir: string, p: Pack, opts: LayerOptions): Promise<void> {
  const mtime = new Date((opts.sourceDateEpoch ?? defaultSourceDateEpoch()) * 1000);
  const seen = new Map<string, string>();
  let entries: Array<{ rel: string; st: Stats }>;
  const reporter = opts.reporter;
  const label = opts.label ?? dir;
  reporter?.step(`walk ${dir}`);
  try {
    entries = await walk(dir, opts.keep);
  } catch (e) {
    throw new CpmError('E_IO', `cannot read ${dir}: ${(e as Error).message}`, {
      context: { path: dir },
    });
  }
  let task: ProgressTask | undefined;
  if (reporter) {
    // what will be read: regular files, each inode once (hard links are stored as links)
    let files = 0;
    let bytes = 0;
    const inodes = new Set<string>();
    for (const { st } of entries)
      if (st.isFile() && !(st.nlink > 1 && inodes.has(`${st.dev}:${st.ino}`))) {
        if (st.nlink > 1) inodes.add(`${st.dev}:${st.ino}`);
        files++;
        bytes += st.size;
      }
    reporter.step(
      `${plural(entries.length, 'entry')}, ${plural(files, 'file')}, ${human(bytes)} to read`,
    );
    reporter.phase('pack', { total: bytes, items: 1, noun: 'layer' });
    task = reporter.task('pack', label, { total: bytes });
  }
  for (const { rel, st } of entries) {
    throwIfInterrupted();
    const h: Headers = {
      name: rel,
      mode: st.mode & 0o7777,
      uid: opts.preserveOwners ? st.uid : 0,
      gid: opts.preserveOwners ? st.gid : 0,
      mtime,
    };
    const abs = path.join(dir, rel);
    if (st.isDirectory()) {
      await addEntry(p, { ...h, name: `${rel}/`, type: 'directory' });
    } else if (st.isSymbolicLink()) {
      await addEntry(p, { ...h, type: 'symlink', linkname: await fsp.readlink(abs) });
    } else if (st.isFile()) {
      const key = `${st.dev}:${st.ino}`;
      const first = st.nlink > 1 ? seen.get(key) : undefined;
      if (first !== undefined) {
        await addEntry(p, { ...h, type: 'link', linkname: first });
        continue;
      }
      if (st.nlink > 1) seen.set(key, rel);
      // Sized to the file: a read stream allocates a whole highWaterMark buffer per read.
      const body = createReadStream(abs, {
        highWaterMark: Math.min(1 << 20, Math.max(st.size, 1)),
      });
      if (task) body.on('data', (c) => task.add(c.length));
      await addEntry(p, { ...h, type: 'file', size: st.size }, body);
    } else if (st.isCharacterDevice() || st.isBlockDevice()) {
      await addEntry(p, {
        ...h,
        type: st.isCharacterDevice() ? 'character-device' : 'block-device',
        devmajor: Math.floor(st.rdev / 256) & 0xfff,
        devminor: (st.rdev & 0xff) | ((st.rdev >> 12) & 0xfff00),
      });
    } else if (st.isFIFO()) {
      await addEntry(p, { ...h, type: 'fifo' });
    }
    // Sockets cannot live in a tar; skipped like tar(1) does.
  }
  p.finalize();
  task?.finish();
}

/** Builds a reproducible layer from `dir` into `store`. */
export async function buildLayer(
  dir: string,
  store: BlobStore,
  opts: LayerOptions = {},
): Promise<LayerResult> {
  const compression = opts.compression ?? 'gzip';
  const p = tarPack();
  const diff = new HashingStream();
  const compressed = new PassThrough({ highWaterMark: 1 << 20 });
  const packing = packDir(dir, p, opts).catch((e: unknown) => {
    p.destroy(e as Error);
    throw e;
  });
  const flowing = pipeline(
    p as AsyncIterable<Buffer>,
    diff,
    createCompressor(compression as Compression, opts.level),
    compressed,
    // an interrupt (watched by the caller) stops the compressor and the store's writer
    { signal: interruptSignal() },
  );
  const stored = store.put(compressed);
  // all three settle before an error is thrown: the store removes its partial blob first
  const settled = await Promise.allSettled([packing, flowing, stored]);
  const bad = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (bad) throw bad.reason;
  const blob = (settled[2] as PromiseFulfilledResult<Awaited<typeof stored>>).value;
  return {
    digest: blob.digest,
    diffId: diff.digest(),
    size: blob.size,
    mediaType: layerMediaType(compression),
  };
}
