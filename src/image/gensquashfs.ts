/**
 * The gensquashfs backend (squashfs-tools-ng ≥ 1.0): cpm writes a pack file ("description") from
 * its walk and gensquashfs reads the file contents from the root itself, so no file byte passes
 * through Node and no tar is encoded or parsed.
 *
 * What a pack file cannot say (squashfs-tools-ng 1.2, checked against its source):
 *  - per-entry mtimes: every entry gets the `-d mtime=` default, so the image is exact only when
 *    every walked mtime is that one value (`fixedMtime`, or a root whose times are all equal);
 *  - xattrs: `-x`/`-A` apply only when packing a directory without a pack file;
 *  - names with a newline or carriage return (the format is line based), and symlink targets
 *    that start with whitespace (the rest of the line after the blanks is the target).
 * describePack reports the first such entry; the caller then uses another backend.
 */
import type { RootEntry, RootInfo } from './rootfs-walk.js';

/** A path in the image, quoted as gensquashfs reads it: only `"` and `\` are escaped. */
export function packPath(rel: string): string {
  return `"/${rel.replace(/["\\]/g, (c) => `\\${c}`)}"`;
}

const LINE_BREAK = /[\n\r]/;

/** Why the entry cannot be described exactly, or undefined when it can. */
export function packBlocker(e: RootEntry, mtime: number): string | undefined {
  if (LINE_BREAK.test(e.path)) return `${JSON.stringify(e.path)} has a line break in its name`;
  if (e.xattrs && Object.keys(e.xattrs).length > 0) return `${e.path} has xattrs`;
  if (e.type !== 'hardlink' && e.mtime !== mtime) {
    return `${e.path} has its own mtime (${e.mtime}, the image time is ${mtime})`;
  }
  if (e.type === 'symlink') {
    const t = e.linkTarget ?? '';
    if (t === '' || LINE_BREAK.test(t) || /^\s/.test(t)) {
      return `symlink ${e.path} has a target a pack file cannot hold`;
    }
  }
  return undefined;
}

/** One pack-file line for an entry (call packBlocker first). */
export function packLine(e: RootEntry): string {
  const name = packPath(e.path);
  const attrs = `${e.mode.toString(8).padStart(4, '0')} ${e.uid} ${e.gid}`;
  switch (e.type) {
    case 'dir':
      return `dir ${name} ${attrs}`;
    case 'file':
      // No location: gensquashfs reads the image path below --pack-dir.
      return `file ${name} ${attrs}`;
    case 'symlink':
      return `slink ${name} ${attrs} ${e.linkTarget!}`;
    case 'hardlink':
      // The target is the rest of the line, unquoted; the leading "/" keeps blanks in front.
      return `link ${name} 0 0 0 /${e.linkTarget!}`;
    case 'char':
      return `nod ${name} ${attrs} c ${e.devmajor!} ${e.devminor!}`;
    case 'block':
      return `nod ${name} ${attrs} b ${e.devmajor!} ${e.devminor!}`;
    case 'fifo':
      return `pipe ${name} ${attrs}`;
    case 'socket':
      // The walker drops sockets; a pack file could hold one, but images never carry them.
      return `sock ${name} ${attrs}`;
  }
}

export type PackResult =
  { ok: true; entries: number } | { ok: false; reason: string; entries: number };

/** Pack-file text is handed on in pieces of about this many characters. */
const FLUSH = 1 << 16;

/**
 * Writes the pack file for a walk through `write`, in pieces as the walk goes (so gensquashfs
 * can parse while we walk), or stops at the first reason it cannot be exact. The root inode
 * comes from `-d` (uid, gid, mode, mtime), which is also the mtime of every other entry.
 */
export async function describePack(
  entries: AsyncIterable<RootEntry>,
  info: RootInfo,
  write: (text: string) => Promise<void>,
  /** Called once when the walk has passed `at` entries without a blocker. */
  passed?: { at: number; then: () => void },
): Promise<PackResult> {
  let buf = '';
  let n = 0;
  for await (const e of entries) {
    if (n++ === passed?.at) passed.then();
    const why = packBlocker(e, info.mtime);
    if (why) return { ok: false, reason: why, entries: n };
    buf += packLine(e) + '\n';
    if (buf.length >= FLUSH) {
      await write(buf);
      buf = '';
    }
  }
  if (buf !== '') await write(buf);
  return { ok: true, entries: n };
}

/** gensquashfs's `-d`: root owner, mode (read by strtol base 0: decimal here) and mtime. */
export function packDefaults(info: RootInfo): string {
  return `uid=${info.uid},gid=${info.gid},mode=${info.mode},mtime=${info.mtime}`;
}
