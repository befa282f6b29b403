/**
 * A root as a reproducible tar stream: entries in RootWalker order, numeric owners only (no
 * user/group names), clamped mtimes, no atime/ctime, hardlinks, device nodes, fifos and xattrs
 * as pax records. The same root and SOURCE_DATE_EPOCH always give the same bytes.
 */
import { closeSync, createWriteStream, openSync, promises as fsp, readSync } from 'node:fs';
import { once } from 'node:events';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { pack as tarPack, type Header, type Pack } from 'tar-stream';
import { CpmError } from '../errors.js';
import { createCompressor, type Compression } from '../util/compress.js';
import { RootWalker, type RootEntry, type WalkOptions } from './rootfs-walk.js';

export type RootfsTarOptions = WalkOptions;

export interface TarStats {
  entries: number;
  /** Uncompressed tar bytes. */
  bytes: number;
}

const USTAR_ID_MAX = 0o777777;

const TAR_TYPE: Record<RootEntry['type'], Header['type']> = {
  file: 'file',
  dir: 'directory',
  symlink: 'symlink',
  hardlink: 'link',
  char: 'character-device',
  block: 'block-device',
  fifo: 'fifo',
  socket: 'file', // never reached: the walker drops sockets
};

/** pax records for xattrs: SCHILY.xattr for UTF-8 values, LIBARCHIVE.xattr (unpadded base64, as libarchive writes it) otherwise. */
function xattrPax(xattrs: Record<string, Buffer>, pax: Record<string, string>): void {
  for (const name of Object.keys(xattrs).sort()) {
    const value = xattrs[name]!;
    const text = value.toString('utf8');
    if (Buffer.from(text, 'utf8').equals(value) && !text.includes('\0')) {
      pax[`SCHILY.xattr.${name}`] = text;
    } else {
      pax[`LIBARCHIVE.xattr.${encodeURIComponent(name)}`] = value
        .toString('base64')
        .replace(/=+$/, '');
    }
  }
}

/** What we hand to tar-stream's pack.entry (`pax` becomes a pax extended header). */
export type PaxHeaders = Partial<Header> & { name: string; pax?: Record<string, string> };

export function tarHeader(e: RootEntry): PaxHeaders {
  const pax: Record<string, string> = {};
  // ustar has 7 octal digits for ids; larger ones go to pax (the ustar field then reads 0).
  let uid = e.uid;
  let gid = e.gid;
  if (uid > USTAR_ID_MAX) {
    pax.uid = String(uid);
    uid = 0;
  }
  if (gid > USTAR_ID_MAX) {
    pax.gid = String(gid);
    gid = 0;
  }
  if (e.xattrs) xattrPax(e.xattrs, pax);
  const header: PaxHeaders = {
    name: e.type === 'dir' ? `${e.path}/` : e.path,
    type: TAR_TYPE[e.type],
    mode: e.mode,
    uid,
    gid,
    size: e.type === 'file' ? e.size : 0,
    mtime: new Date(e.mtime * 1000),
  };
  if (e.linkTarget !== undefined) header.linkname = e.linkTarget;
  if (e.devmajor !== undefined) header.devmajor = e.devmajor;
  if (e.devminor !== undefined) header.devminor = e.devminor;
  if (Object.keys(pax).length > 0) header.pax = pax;
  return header;
}

/** Files up to this size are read in one call and handed to tar-stream as one buffer. */
const SMALL_FILE = 1 << 20;
const CHUNK = 1 << 20;

function entryDone(pack: Pack, header: PaxHeaders, body?: Buffer): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const cb = (err?: Error | null): void => (err ? reject(err) : resolve());
    if (body) pack.entry(header, body, cb);
    else pack.entry(header, cb);
  });
}

function changedSize(e: RootEntry): CpmError {
  return new CpmError('E_IO', `${e.source} changed size while being archived`, {
    context: { path: e.source },
  });
}

/**
 * Appends one walk entry (and the contents of a regular file) to a tar-stream pack. Contents are
 * read with plain reads into buffers of the exact size (no fs.ReadStream: its 1 MiB buffer per
 * small file made the garbage collector the busiest part of packing a root).
 */
export async function writeTarEntry(pack: Pack, e: RootEntry): Promise<void> {
  const header = tarHeader(e);
  if (e.type !== 'file') return entryDone(pack, header);
  if (e.size <= SMALL_FILE) {
    // Sync, like the walk: small files are most of a root, and a thread-pool hop per
    // open/read/close dominated the time.
    const fd = openSync(e.source!, 'r');
    const buf = Buffer.allocUnsafe(e.size);
    let got = 0;
    try {
      while (got < e.size) {
        const n = readSync(fd, buf, got, e.size - got, got);
        if (n === 0) break;
        got += n;
      }
    } finally {
      closeSync(fd);
    }
    if (got !== e.size) throw changedSize(e);
    return entryDone(pack, header, buf);
  }
  const fh = await fsp.open(e.source!, 'r');
  try {
    const sink = pack.entry(header);
    const done = new Promise<void>((resolve, reject) => {
      sink.on('finish', resolve);
      sink.on('error', reject);
    });
    let written = 0;
    while (written < e.size) {
      const want = Math.min(CHUNK, e.size - written);
      const buf = Buffer.allocUnsafe(want);
      const { bytesRead } = await fh.read(buf, 0, want, written);
      if (bytesRead === 0) break;
      written += bytesRead;
      // Never more than the header's size, even if the file grew while we read it.
      if (!sink.write(bytesRead === want ? buf : buf.subarray(0, bytesRead))) {
        await once(sink, 'drain');
      }
    }
    if (written !== e.size) {
      sink.destroy();
      throw changedSize(e);
    }
    sink.end(undefined);
    await done;
  } finally {
    await fh.close();
  }
}

/** Coalesces tar-stream's many small chunks (512-byte headers) into ~1 MiB writes. */
function coalesce(src: AsyncIterable<Buffer>, stats: TarStats): Readable {
  async function* gen(): AsyncGenerator<Buffer> {
    let parts: Buffer[] = [];
    let size = 0;
    for await (const chunk of src) {
      stats.bytes += chunk.length;
      parts.push(chunk);
      size += chunk.length;
      if (size >= CHUNK) {
        yield parts.length === 1 ? parts[0]! : Buffer.concat(parts, size);
        parts = [];
        size = 0;
      }
    }
    if (size > 0) yield Buffer.concat(parts, size);
  }
  return Readable.from(gen(), { objectMode: false });
}

/**
 * Streams the root as an uncompressed tar. The stream errors (CpmError) if the walk fails.
 * `stats` is filled in by the time the stream ends.
 */
export function rootfsTarStream(
  root: string,
  opts: RootfsTarOptions = {},
  walker: RootWalker = new RootWalker(root, opts),
): { stream: Readable; stats: TarStats } {
  const pack = tarPack();
  const stats: TarStats = { entries: 0, bytes: 0 };
  const produce = async (): Promise<void> => {
    for await (const e of walker.entries()) {
      await writeTarEntry(pack, e);
      stats.entries++;
    }
    pack.finalize();
  };
  produce().catch((err: unknown) => pack.destroy(err as Error));
  // streamx → node stream, so callers can use node:stream/promises pipeline.
  const stream = coalesce(pack as unknown as AsyncIterable<Buffer>, stats);
  return { stream, stats };
}

/** `cpm image tar`: the root as a (compressed) tar file. */
export async function writeRootfsTar(
  root: string,
  outFile: string,
  opts: RootfsTarOptions & { compression?: Compression; level?: number } = {},
): Promise<TarStats> {
  const { stream, stats } = rootfsTarStream(root, opts);
  try {
    await pipeline(
      stream,
      createCompressor(opts.compression ?? 'none', opts.level),
      createWriteStream(outFile),
    );
  } catch (e) {
    if (e instanceof CpmError) throw e;
    throw new CpmError('E_IMAGE', `writing ${outFile} failed: ${(e as Error).message}`, {
      context: { path: outFile },
      cause: e,
    });
  }
  return stats;
}
