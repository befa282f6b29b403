/**
 * The one path resolver: every path cpm touches under a root goes through it. It walks component
 * by component, looks each one up with lstat (or in the transaction's in-memory overlay), and
 * resolves symlinks itself with chroot semantics — absolute targets restart at the root, never at
 * the host's "/". Relative targets that climb above the root are refused: on the host they would
 * point outside it. Nothing here ever asks the kernel to follow a symlink.
 */
import { lstatSync, readlinkSync, type Stats } from 'node:fs';
import type { FileType } from './types.js';

export class UnsafePathError extends Error {}

export interface NodeInfo {
  type: FileType;
  /** Symlink target. */
  target?: string;
}

/** What exists at a canonical root-relative path ("" is the root itself). */
export interface PathView {
  lookup(rel: string): NodeInfo | null;
}

const MAX_LINKS = 40;

export function typeOfMode(mode: number): FileType {
  switch (mode & 0o170000) {
    case 0o040000:
      return 'd';
    case 0o120000:
      return 'l';
    case 0o020000:
      return 'c';
    case 0o060000:
      return 'b';
    case 0o010000:
      return 'p';
    default:
      return 'f';
  }
}

/** The real filesystem under `root`, with a lookup cache the caller may invalidate. */
export class DiskView implements PathView {
  private cache = new Map<string, NodeInfo | null>();
  constructor(readonly root: string) {}

  lookup(rel: string): NodeInfo | null {
    const hit = this.cache.get(rel);
    if (hit !== undefined) return hit;
    let info: NodeInfo | null = null;
    // Nothing exists below a parent that is absent or not a directory: saves one lstat per entry
    // of every new directory (a fresh root has no other kind), and never lstats through a link.
    const slash = rel.lastIndexOf('/');
    if (slash > 0) {
      const parent = this.lookup(rel.slice(0, slash));
      if (parent === null || parent.type !== 'd') {
        this.cache.set(rel, null);
        return null;
      }
    }
    const abs = rel === '' ? this.root : `${this.root}/${rel}`;
    try {
      const st = lstatSync(abs);
      const type = typeOfMode(st.mode);
      info = type === 'l' ? { type, target: readlinkSync(abs) } : { type };
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ENOTDIR') throw e;
    }
    this.cache.set(rel, info);
    return info;
  }

  forget(rel: string): void {
    this.cache.delete(rel);
  }
}

/**
 * Splits an archive entry name into components. Absolute names and ".." components are refused
 * outright; "./" prefixes and empty components are dropped.
 */
export function entryComponents(name: string): string[] {
  if (name.startsWith('/')) throw new UnsafePathError('absolute path');
  if (name.includes('\0')) throw new UnsafePathError('NUL byte in name');
  const out: string[] = [];
  for (const c of name.split('/')) {
    if (c === '' || c === '.') continue;
    if (c === '..') throw new UnsafePathError('".." component');
    out.push(c);
  }
  return out;
}

/**
 * Resolves components to a canonical root-relative path (no symlinks in any parent component).
 * `followLast` also resolves the final component when it is a symlink. Throws UnsafePathError when
 * a relative symlink climbs above the root, on loops, and when a parent is not a directory.
 */
export function resolveInRoot(view: PathView, comps: string[], followLast: boolean): string {
  // Walked as given while no symlink is met (nearly always): each prefix is a slice of the joined
  // name, and the result the joined name itself, a flat string (a concatenated one is a tree that
  // every later hash, comparison and serialisation of the path walks again).
  const full = comps.join('/');
  let end = 0;
  for (let i = 0; i < comps.length; i++) {
    const c = comps[i]!;
    if (c === '' || c === '.' || c === '..') return resolveSlow(view, comps, followLast);
    end += (i === 0 ? 0 : 1) + c.length;
    const rel = end === full.length ? full : full.slice(0, end);
    const node = view.lookup(rel);
    const last = i === comps.length - 1;
    if (node && node.type === 'l' && (!last || followLast))
      return resolveSlow(view, comps, followLast);
    if (node && !last && node.type !== 'd') throw new UnsafePathError(`/${rel} is not a directory`);
  }
  return full;
}

/** resolveInRoot() once a symlink is on the way (or a component is "", "." or ".."). */
function resolveSlow(view: PathView, comps: string[], followLast: boolean): string {
  // The path so far is kept as one string plus the offset where each component starts, so a
  // component costs one concatenation (this runs for every entry of every layer).
  let cur = '';
  const starts: number[] = [];
  // Components still to walk, in reverse: pop() takes the next one.
  const queue = comps.slice().reverse();
  let links = 0;
  // Components that came from a relative symlink target may contain "..".
  while (queue.length > 0) {
    const c = queue.pop()!;
    if (c === '' || c === '.') continue;
    if (c === '..') {
      if (starts.length === 0) throw new UnsafePathError('symlink points above the root');
      const at = starts.pop()!;
      cur = cur.slice(0, at === 0 ? 0 : at - 1);
      continue;
    }
    const rel = starts.length === 0 ? c : `${cur}/${c}`;
    const last = queue.length === 0;
    const node = view.lookup(rel);
    if (node && node.type === 'l' && (!last || followLast)) {
      if (++links > MAX_LINKS) throw new UnsafePathError(`too many levels of symlinks at /${rel}`);
      const target = node.target ?? '';
      let tcomps = target.split('/').filter((t) => t !== '' && t !== '.');
      if (target.startsWith('/')) {
        // chroot semantics: restart at the root, where ".." stays at the root
        cur = '';
        starts.length = 0;
        tcomps = clampAbsolute(tcomps);
      }
      for (let i = tcomps.length - 1; i >= 0; i--) queue.push(tcomps[i]!);
      continue;
    }
    if (node && !last && node.type !== 'd') throw new UnsafePathError(`/${rel} is not a directory`);
    starts.push(starts.length === 0 ? 0 : cur.length + 1);
    cur = rel;
  }
  return cur;
}

function clampAbsolute(comps: string[]): string[] {
  const out: string[] = [];
  let depth = 0;
  for (const c of comps) {
    if (c === '..') {
      if (depth === 0) continue;
      depth--;
    } else depth++;
    out.push(c);
  }
  return out;
}

/** Resolves a user-given path ("/usr/bin/sh" or "usr/bin/sh") inside the root, lexically safe. */
export function resolveUserPath(view: PathView, p: string, followLast = false): string {
  const comps: string[] = [];
  for (const c of p.split('/')) {
    if (c === '' || c === '.') continue;
    if (c === '..') comps.pop();
    else comps.push(c);
  }
  return resolveInRoot(view, comps, followLast);
}

/**
 * Absolute paths for canonical root-relative paths (no symlink in any parent, as planned and as
 * journalled), checked on disk at the moment of use: every parent must be a real directory now,
 * not a symlink swapped in since. The syscall that follows then cannot leave the root through a
 * parent. Parents once seen as directories are remembered (cpm's own operations only add
 * directories or remove empty ones); a race with another writer inside the root is out of scope.
 */
export class RootPaths {
  private dirs = new Set<string>(['']);
  /** The root without a trailing slash ("" for "/"), so ROOT/rel is always `${base}/${rel}`. */
  private readonly base: string;
  constructor(readonly root: string) {
    this.base = root.replace(/\/+$/, '');
  }

  /** ROOT/rel after checking its parents; throws UnsafePathError naming the offending component. */
  abs(rel: string): string {
    const c = canonical(rel);
    if (c === '') throw new UnsafePathError('empty path');
    this.checkParents(c, false);
    return `${this.base}/${c}`;
  }

  /** abs() that also requires `rel` itself to be absent or a real directory (not a symlink). */
  dir(rel: string): string {
    const c = canonical(rel);
    this.checkParents(c, true);
    return c === '' ? this.root : `${this.base}/${c}`;
  }

  /**
   * dir() for a directory that must be there: its lstat, taken once, says it is a real directory
   * right now (chmod and utimes follow a symlink). Absent: the ENOENT of lstat.
   */
  realDir(rel: string): { p: string; st: Stats } {
    const c = canonical(rel);
    this.checkParents(c, false);
    const p = c === '' ? this.root : `${this.base}/${c}`;
    const st = lstatSync(p);
    if (st.isSymbolicLink())
      throw new UnsafePathError(`/${c} is a symlink (to ${readlinkSync(p)})`);
    if (!st.isDirectory()) throw new UnsafePathError(`/${c} is not a directory`);
    if (c !== '') this.dirs.add(c);
    return { p, st };
  }

  /** lstat of `rel` as a canonical path: null when absent or when a parent is not a directory. */
  lstat(rel: string): Stats | null {
    const c = canonical(rel);
    for (let i = c.indexOf('/'); i >= 0; i = c.indexOf('/', i + 1)) {
      const p = c.slice(0, i);
      if (this.dirs.has(p)) continue;
      const st = lstatOrNull(`${this.base}/${p}`);
      if (!st || !st.isDirectory()) return null;
      this.dirs.add(p);
    }
    return lstatOrNull(`${this.base}/${c}`);
  }

  /** Checks each parent of canonical `c` (and `c` itself when `self`), shortest first. */
  private checkParents(c: string, self: boolean): void {
    if (c === '') return;
    for (let i = c.indexOf('/'); ; i = c.indexOf('/', i + 1)) {
      if (i < 0 && !self) return;
      const p = i < 0 ? c : c.slice(0, i);
      if (!this.dirs.has(p)) {
        const st = lstatOrNull(`${this.base}/${p}`);
        if (!st) return; // absent: nothing below it exists, the syscall fails with ENOENT
        if (st.isSymbolicLink())
          throw new UnsafePathError(`/${p} is a symlink (to ${readlinkSync(`${this.base}/${p}`)})`);
        if (!st.isDirectory()) throw new UnsafePathError(`/${p} is not a directory`);
        this.dirs.add(p);
      }
      if (i < 0) return;
    }
  }
}

/** Anything but a canonical relative path: absolute, "//", a trailing "/", "." or "..", NUL. */
const NOT_CANONICAL = /^\/|\/\/|\/$|(?:^|\/)\.\.?(?:\/|$)|\0/;

/**
 * `rel` as entryComponents() would rebuild it (throwing as it does). Journal and plan paths are
 * already canonical: those are checked by one regex instead of being split and joined.
 */
function canonical(rel: string): string {
  return NOT_CANONICAL.test(rel) ? entryComponents(rel).join('/') : rel;
}

function lstatOrNull(p: string): Stats | null {
  try {
    return lstatSync(p, { throwIfNoEntry: false }) ?? null;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return null;
    throw e;
  }
}
