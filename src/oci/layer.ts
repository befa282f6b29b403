/**
 * Reproducible layers: a directory → tar (sorted entries, fixed mtimes from SOURCE_DATE_EPOCH,
 * numeric owners 0:0 unless asked to keep them, no atime/ctime, no user/group names) →
 * gzip/zstd → blob store. Same directory content and options ⇒ same bytes ⇒ same digest.
 */
import { lstatSync, readdirSync, readlinkSync } from 'node:fs';
import path from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { CpmError } from '../errors.js';
import { tarChunks, USTAR_ID_MAX, type TarBody, type TarHeader } from '../util/tar-encode.js';
import { createCompressor, type Compression } from '../util/compress.js';
import { human, plural, type ProgressTask, type Reporter } from '../util/progress.js';
import { interruptSignal, throwIfInterrupted } from '../util/signals.js';
import type { BlobStore } from './blobstore.js';
import { HashingStream } from './hashing-stream.js';
import { MEDIA } from './types.js';

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

/** One entry of a layer: its tar header, and for a regular file where its content is. */
interface LayerEntry extends TarBody {
  header: TarHeader;
}

/**
 * The entries of `dir` as the layer holds them: depth-first, sorted by byte order at each level,
 * every mtime `mtime`, owners 0:0 unless kept, hard links to the first name of their inode.
 * Synchronous: a root is tens of thousands of entries, and a thread-pool round trip per readdir,
 * lstat and readlink cost more than the calls.
 */
function layerEntries(dir: string, mtime: number, opts: LayerOptions): LayerEntry[] {
  const out: LayerEntry[] = [];
  const first = new Map<string, string>();
  const keep = opts.keep;
  const visit = (rel: string): void => {
    const names = readdirSync(rel ? path.join(dir, rel) : dir).sort((a, b) =>
      Buffer.compare(Buffer.from(a), Buffer.from(b)),
    );
    for (const n of names) {
      const r = rel ? `${rel}/${n}` : n;
      if (keep && !keep(r)) continue;
      const abs = path.join(dir, r);
      const st = lstatSync(abs);
      const h: TarHeader = {
        name: r,
        type: 'file',
        mode: st.mode & 0o7777,
        uid: 0,
        gid: 0,
        size: 0,
        mtime,
      };
      if (opts.preserveOwners) owners(h, st.uid, st.gid);
      const e: LayerEntry = { header: h, type: 'file', size: 0 };
      if (st.isDirectory()) {
        h.name = `${r}/`;
        h.type = e.type = 'directory';
        out.push(e);
        visit(r);
        continue;
      }
      if (st.isSymbolicLink()) {
        h.type = e.type = 'symlink';
        h.linkname = readlinkSync(abs);
      } else if (st.isFile()) {
        const key = st.nlink > 1 ? `${st.dev}:${st.ino}` : undefined;
        const target = key === undefined ? undefined : first.get(key);
        if (target !== undefined) {
          h.type = e.type = 'link';
          h.linkname = target;
        } else {
          if (key !== undefined) first.set(key, r);
          h.size = e.size = st.size;
          e.source = abs;
        }
      } else if (st.isCharacterDevice() || st.isBlockDevice()) {
        h.type = e.type = st.isCharacterDevice() ? 'character-device' : 'block-device';
        h.devmajor = Math.floor(st.rdev / 256) & 0xfff;
        h.devminor = (st.rdev & 0xff) | ((st.rdev >> 12) & 0xfff00);
      } else if (st.isFIFO()) {
        h.type = e.type = 'fifo';
      } else {
        continue; // sockets cannot live in a tar; skipped like tar(1) does
      }
      out.push(e);
    }
  };
  visit('');
  return out;
}

/** Kept owners; ids too large for ustar go into pax records (the ustar field then reads 0). */
function owners(h: TarHeader, uid: number, gid: number): void {
  if (uid > USTAR_ID_MAX) (h.pax ??= {}).uid = String(uid);
  else h.uid = uid;
  if (gid > USTAR_ID_MAX) (h.pax ??= {}).gid = String(gid);
  else h.gid = gid;
}

/** The layer's entries, with the walk's failures as E_IO naming the path. */
function walkLayer(dir: string, opts: LayerOptions): LayerEntry[] {
  const mtime = opts.sourceDateEpoch ?? defaultSourceDateEpoch();
  const reporter = opts.reporter;
  reporter?.step(`walk ${dir}`);
  try {
    return layerEntries(dir, mtime, opts);
  } catch (e) {
    if (e instanceof CpmError) throw e;
    const at = (e as NodeJS.ErrnoException).path ?? dir;
    throw new CpmError('E_IO', `cannot read ${at}: ${(e as Error).message}`, {
      context: { path: at },
    });
  }
}

/** The tar chunks of `entries`, counting file bytes into the reporter and stopping on an interrupt. */
async function* layerTar(
  entries: LayerEntry[],
  opts: LayerOptions,
  dir: string,
): AsyncGenerator<Buffer> {
  const reporter = opts.reporter;
  let task: ProgressTask | undefined;
  if (reporter) {
    let files = 0;
    let bytes = 0;
    for (const e of entries)
      if (e.type === 'file') {
        files++;
        bytes += e.size;
      }
    reporter.step(
      `${plural(entries.length, 'entry')}, ${plural(files, 'file')}, ${human(bytes)} to read`,
    );
    reporter.phase('pack', { total: bytes, items: 1, noun: 'layer' });
    task = reporter.task('pack', opts.label ?? dir, { total: bytes });
  }
  // counted per MiB, not per file: the rate meter reads the clock at each call
  let unreported = 0;
  const onEntry = (e: LayerEntry): void => {
    throwIfInterrupted();
    if (task && e.size > 0 && (unreported += e.size) >= 1 << 20) {
      task.add(unreported);
      unreported = 0;
    }
  };
  try {
    yield* tarChunks(entries, (e) => e.header, onEntry);
  } catch (e) {
    if (e instanceof CpmError) throw e;
    const at = (e as NodeJS.ErrnoException).path ?? dir;
    throw new CpmError('E_IO', `cannot read ${at}: ${(e as Error).message}`, {
      context: { path: at },
    });
  }
  if (unreported > 0) task?.add(unreported);
  task?.finish();
}

/** Builds a reproducible layer from `dir` into `store`. */
export async function buildLayer(
  dir: string,
  store: BlobStore,
  opts: LayerOptions = {},
): Promise<LayerResult> {
  const compression = opts.compression ?? 'gzip';
  const entries = walkLayer(dir, opts);
  const diff = new HashingStream();
  const compressed = new PassThrough({ highWaterMark: 1 << 20 });
  const flowing = pipeline(
    Readable.from(layerTar(entries, opts, dir), { objectMode: false }),
    diff,
    createCompressor(compression as Compression, opts.level),
    compressed,
    // an interrupt (watched by the caller) stops the compressor and the store's writer
    { signal: interruptSignal() },
  );
  const stored = store.put(compressed);
  // both settle before an error is thrown: the store removes its partial blob first
  const settled = await Promise.allSettled([flowing, stored]);
  const bad = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (bad) throw bad.reason;
  const blob = (settled[1] as PromiseFulfilledResult<Awaited<typeof stored>>).value;
  return {
    digest: blob.digest,
    diffId: diff.digest(),
    size: blob.size,
    mediaType: layerMediaType(compression),
  };
}
