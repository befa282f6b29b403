/**
 * A root as a reproducible tar stream: entries in RootWalker order, numeric owners only (no
 * user/group names), clamped mtimes, no atime/ctime, hardlinks, device nodes, fifos and xattrs
 * as pax records. The same root and SOURCE_DATE_EPOCH always give the same bytes.
 */
import { createWriteStream } from 'node:fs';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { CpmError } from '../errors.js';
import { createCompressor, type Compression } from '../util/compress.js';
import { RootWalker, type RootEntry, type WalkOptions } from './rootfs-walk.js';
import { tarChunks, type TarHeader } from './tar-encode.js';

export type RootfsTarOptions = WalkOptions;

export interface TarStats {
  entries: number;
  /** Uncompressed tar bytes. */
  bytes: number;
}

const USTAR_ID_MAX = 0o777777;

const TAR_TYPE: Record<RootEntry['type'], TarHeader['type']> = {
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

export function tarHeader(e: RootEntry): TarHeader {
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
  const header: TarHeader = {
    name: e.type === 'dir' ? `${e.path}/` : e.path,
    type: TAR_TYPE[e.type],
    mode: e.mode,
    uid,
    gid,
    size: e.type === 'file' ? e.size : 0,
    mtime: e.mtime,
  };
  if (e.linkTarget !== undefined) header.linkname = e.linkTarget;
  if (e.devmajor !== undefined) header.devmajor = e.devmajor;
  if (e.devminor !== undefined) header.devminor = e.devminor;
  if (Object.keys(pax).length > 0) header.pax = pax;
  return header;
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
  const stats: TarStats = { entries: 0, bytes: 0 };
  async function* counted(): AsyncGenerator<Buffer> {
    for await (const chunk of tarChunks(walker.entries(), tarHeader, () => stats.entries++)) {
      stats.bytes += chunk.length;
      yield chunk;
    }
  }
  return { stream: Readable.from(counted(), { objectMode: false }), stats };
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
