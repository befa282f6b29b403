/** The tar header of a root walk entry: the image writers' side of util/tar-encode.ts. */
import { USTAR_ID_MAX, type TarHeader } from '../util/tar-encode.js';
import type { RootEntry } from './rootfs-walk.js';

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
  // ids over 6 octal digits (what the encoder writes) go to pax (the ustar field then reads 0).
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
