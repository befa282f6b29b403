/**
 * A root as a reproducible tar stream: entries in RootWalker order, numeric owners only (no
 * user/group names), clamped mtimes, no atime/ctime, hardlinks, device nodes, fifos and xattrs
 * as pax records. The same root and SOURCE_DATE_EPOCH always give the same bytes.
 */
import { createReadStream, createWriteStream } from 'node:fs';
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

/** Appends one walk entry (and the contents of a regular file) to a tar-stream pack. */
export async function writeTarEntry(pack: Pack, e: RootEntry): Promise<void> {
  const header = tarHeader(e);
  if (e.type !== 'file') {
    await new Promise<void>((resolve, reject) =>
      pack.entry(header, (err) => (err ? reject(err) : resolve())),
    );
    return;
  }
  const sink = pack.entry(header);
  const done = new Promise<void>((resolve, reject) => {
    sink.on('finish', resolve);
    sink.on('error', reject);
  });
  let written = 0;
  for await (const chunk of createReadStream(e.source!, { highWaterMark: 1 << 20 })) {
    const buf = chunk as Buffer;
    // Never write past the size in the header if the file grew while we read it.
    const part = written + buf.length > e.size ? buf.subarray(0, e.size - written) : buf;
    written += part.length;
    if (part.length > 0 && !sink.write(part)) await once(sink, 'drain');
    if (written >= e.size) break;
  }
  if (written !== e.size) {
    sink.destroy();
    throw new CpmError('E_IO', `${e.source} changed size while being archived`, {
      context: { path: e.source },
    });
  }
  sink.end(undefined);
  await done;
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
  const stream = Readable.from(pack as unknown as AsyncIterable<Buffer>, { objectMode: false });
  stream.on('data', (d: Buffer) => (stats.bytes += d.length));
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
