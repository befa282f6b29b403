/**
 * Walks an assembled root in a stable order (depth first, names sorted bytewise) and yields one
 * record per entry with everything an image needs: numeric owners, permission bits, clamped
 * mtimes, hardlinks (by dev+ino), device numbers and xattrs. The metadata overlay wins over the
 * disk for owners and modes, and supplies special files an unprivileged install only recorded.
 */
import { lstatSync, readdirSync, readlinkSync, type Stats } from 'node:fs';
import path from 'node:path';
import { CpmError } from '../errors.js';
import { compileExcludes } from './exclude.js';
import { splitDev, type EntryMeta, type EntryType, type MetadataOverlay } from './meta.js';
import { readXattrs, type XattrMap } from './xattrs.js';

export interface RootEntry {
  /** Root-relative, '/'-separated, no leading slash. */
  path: string;
  type: EntryType | 'hardlink';
  /** Permission bits (0o7777). */
  mode: number;
  uid: number;
  gid: number;
  /** Seconds since the epoch, clamped to SOURCE_DATE_EPOCH when given. */
  mtime: number;
  /** Content size for regular files, 0 otherwise. */
  size: number;
  /** Symlink target, or for 'hardlink' the path of the first entry with that inode. */
  linkTarget?: string;
  devmajor?: number;
  devminor?: number;
  xattrs?: Record<string, Buffer>;
  /** Absolute path on disk to read contents from (regular files only). */
  source?: string;
}

export interface WalkOptions {
  overlay?: MetadataOverlay;
  /**
   * Paths the overlay knows that may be missing on disk (device nodes, fifos, symlinks or empty
   * dirs that an unprivileged install only recorded). Missing ancestors must be listed too.
   */
  overlayPaths?: Iterable<string>;
  /** Anchored globs, see exclude.ts. */
  excludes?: readonly string[];
  /** Clamp every mtime to this (seconds). */
  sourceDateEpoch?: number;
  /** Give every entry (and the root) this mtime instead (seconds); wins over the clamp. */
  fixedMtime?: number;
  /** Read xattrs from disk with getfattr (default true). */
  xattrs?: boolean;
  onWarning?: (message: string) => void;
  /**
   * The disk owner that stands for root: entries the overlay does not describe and that this
   * uid (gid) owns are written as 0 (0), as a user namespace maps them. Default: the running
   * user when not root (a rootless install, and cpm's DB, belong to that user on disk); false
   * keeps the disk owners.
   */
  rootlessOwner?: { uid: number; gid: number } | false;
}

/** The running user when it is not root (see WalkOptions.rootlessOwner). */
function defaultRootlessOwner(): { uid: number; gid: number } | false {
  const uid = process.getuid?.();
  const gid = process.getgid?.();
  return uid !== undefined && gid !== undefined && uid !== 0 ? { uid, gid } : false;
}

/** The root directory's own attributes (used as squashfs root inode / tar2sqfs defaults). */
export interface RootInfo {
  uid: number;
  gid: number;
  mode: number;
  mtime: number;
}

const TYPE_OF_STATS: [(s: Stats) => boolean, EntryType][] = [
  [(s) => s.isFile(), 'file'],
  [(s) => s.isDirectory(), 'dir'],
  [(s) => s.isSymbolicLink(), 'symlink'],
  [(s) => s.isCharacterDevice(), 'char'],
  [(s) => s.isBlockDevice(), 'block'],
  [(s) => s.isFIFO(), 'fifo'],
  [(s) => s.isSocket(), 'socket'],
];

function typeOf(s: Stats): EntryType {
  for (const [test, t] of TYPE_OF_STATS) if (test(s)) return t;
  return 'file';
}

const SPECIAL = new Set<EntryType>(['char', 'block', 'fifo']);

/** Bytewise comparison, so the order does not depend on the locale. */
function byteCompare(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/**
 * Names sorted by their UTF-8 bytes. UTF-16 code unit order (the default sort) is the same
 * order unless a name has a surrogate pair (astral characters), so only then compare bytes.
 */
function sortBytewise(names: string[]): string[] {
  return names.some((n) => /[\ud800-\udfff]/.test(n)) ? names.sort(byteCompare) : names.sort();
}

function normalizeRel(p: string): string {
  return p.replace(/^\/+/, '').replace(/\/+$/, '').replace(/\/+/g, '/');
}

export class RootWalker {
  readonly root: string;
  private readonly opts: WalkOptions;
  private readonly excluded: (rel: string) => boolean;
  /** Children the overlay adds per directory (rel dir → names). */
  private readonly overlayChildren = new Map<string, Set<string>>();
  private readonly seenInodes = new Map<string, string>();
  private xattrMap: XattrMap | undefined;
  /** Paths dropped by excludes (top-most only): the mksquashfs backend needs them. */
  readonly excludedPaths: string[] = [];

  private readonly asRoot: { uid: number; gid: number } | false;

  constructor(root: string, opts: WalkOptions = {}) {
    this.root = path.resolve(root);
    this.opts = opts;
    this.asRoot = opts.rootlessOwner ?? defaultRootlessOwner();
    this.excluded = compileExcludes(opts.excludes ?? []);
    for (const raw of opts.overlayPaths ?? []) {
      const rel = normalizeRel(raw);
      if (rel === '') continue;
      const parts = rel.split('/');
      for (let i = 0; i < parts.length; i++) {
        const parent = parts.slice(0, i).join('/');
        let set = this.overlayChildren.get(parent);
        if (!set) this.overlayChildren.set(parent, (set = new Set()));
        set.add(parts[i]!);
      }
    }
  }

  private uidOf(st: Stats): number {
    return this.asRoot && st.uid === this.asRoot.uid ? 0 : st.uid;
  }

  private gidOf(st: Stats): number {
    return this.asRoot && st.gid === this.asRoot.gid ? 0 : st.gid;
  }

  private clamp(mtime: number): number {
    if (this.opts.fixedMtime !== undefined) return this.opts.fixedMtime;
    const t = Math.max(0, Math.floor(mtime));
    const sde = this.opts.sourceDateEpoch;
    return sde !== undefined && t > sde ? sde : t;
  }

  /** Attributes of the root directory itself (overlay "" wins over disk). */
  async rootInfo(): Promise<RootInfo> {
    const st = this.lstat(this.root);
    if (!st?.isDirectory()) {
      throw new CpmError('E_IMAGE', `root ${this.root} is not a directory`, {
        context: { path: this.root },
      });
    }
    const meta = this.opts.overlay?.('');
    return {
      uid: meta?.uid ?? this.uidOf(st),
      gid: meta?.gid ?? this.gidOf(st),
      mode: (meta?.mode ?? st.mode) & 0o7777,
      mtime: this.clamp(st.mtimeMs / 1000),
    };
  }

  // Sync calls on purpose: one thread-pool round trip per entry made the walk wait ~5 s on a
  // 25k-entry root; lstat/readdir/readlink of a local tree are short.
  private lstat(abs: string): Stats | undefined {
    try {
      return lstatSync(abs);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new CpmError('E_IO', `cannot stat ${abs}: ${(e as Error).message}`, {
        context: { path: abs },
        cause: e,
      });
    }
  }

  /**
   * Whether a tool that reads the directory itself (mksquashfs) stores this root as the walk
   * would, checked without building entries: counts what entries() would yield and returns the
   * first entry that is excluded, a socket, only in the overlay, of another type, mode or owner
   * in the overlay than on disk (an unprivileged install), or whose xattrs differ.
   */
  async diskCheck(): Promise<{ entries: number; inexact?: string }> {
    // what the running user owns is written as root: the disk's owners are not the image's
    if (this.asRoot) return { entries: 0, inexact: `owners of uid ${this.asRoot.uid} become 0` };
    if (this.opts.xattrs !== false) this.xattrMap = await readXattrs(this.root);
    const overlay = this.opts.overlay;
    let entries = 0;
    const stack = [''];
    while (stack.length > 0) {
      const relDir = stack.pop()!;
      const dirents = readdirSync(relDir === '' ? this.root : path.join(this.root, relDir), {
        withFileTypes: true,
      });
      const extra = this.overlayChildren.get(relDir);
      if (extra) {
        const have = new Set(dirents.map((d) => d.name));
        for (const n of extra) {
          if (!have.has(n)) {
            const rel = relDir === '' ? n : `${relDir}/${n}`;
            return { entries, inexact: `${rel} is only in the records, not on disk` };
          }
        }
      }
      for (const d of dirents) {
        const rel = relDir === '' ? d.name : `${relDir}/${d.name}`;
        if (this.excluded(rel)) return { entries, inexact: `${rel} is excluded` };
        if (d.isSocket()) return { entries, inexact: `${rel} is a socket` };
        entries++;
        const meta = overlay?.(rel);
        if (meta) {
          const st = this.lstat(path.join(this.root, rel));
          if (
            !st ||
            meta.type !== typeOf(st) ||
            (meta.mode & 0o7777) !== (st.mode & 0o7777) ||
            meta.uid !== st.uid ||
            meta.gid !== st.gid
          ) {
            return {
              entries,
              inexact: `${rel} differs on disk from its record (owner, mode or type)`,
            };
          }
        }
        const disk = this.xattrMap?.get(rel);
        if (disk || meta?.xattrs) {
          const why = xattrsInexact({ ...disk, ...meta?.xattrs }, disk);
          if (why) return { entries, inexact: `${rel} ${why}` };
        }
        if (d.isDirectory()) stack.push(rel);
      }
    }
    return { entries };
  }

  /** Yields every entry below the root (not the root itself), parents before children. */
  async *entries(): AsyncGenerator<RootEntry> {
    if (this.opts.xattrs !== false) {
      this.xattrMap = await readXattrs(this.root);
      if (!this.xattrMap) {
        this.opts.onWarning?.('getfattr not found (package "attr"): xattrs on disk are not copied');
      }
    }
    const rootSt = this.lstat(this.root);
    if (!rootSt?.isDirectory()) {
      throw new CpmError('E_IMAGE', `root ${this.root} is not a directory`, {
        context: { path: this.root },
      });
    }
    yield* this.walkSync();
  }

  /**
   * The walk itself, synchronous and with an explicit stack: nested async generators cost a
   * promise round trip per level for every entry, more than the lstat.
   */
  private *walkSync(): Generator<RootEntry> {
    // Each frame: a directory's sorted child names and the next index.
    const stack: { relDir: string; names: string[]; i: number }[] = [
      { relDir: '', names: this.childNames(''), i: 0 },
    ];
    while (stack.length > 0) {
      const top = stack[stack.length - 1]!;
      if (top.i === top.names.length) {
        stack.pop();
        continue;
      }
      const name = top.names[top.i++]!;
      const rel = top.relDir === '' ? name : `${top.relDir}/${name}`;
      if (this.excluded(rel)) {
        this.excludedPaths.push(rel);
        continue;
      }
      const entry = this.entryFor(rel);
      if (!entry) continue;
      yield entry;
      if (entry.type === 'dir') stack.push({ relDir: rel, names: this.childNames(rel), i: 0 });
    }
  }

  /** A directory's children on disk plus those only the overlay has, sorted bytewise. */
  private childNames(relDir: string): string[] {
    const absDir = relDir === '' ? this.root : path.join(this.root, relDir);
    let names: string[] = [];
    try {
      names = readdirSync(absDir);
    } catch (e) {
      // A directory only the overlay knows has no listing on disk.
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') {
        throw new CpmError('E_IO', `cannot read directory ${absDir}: ${(e as Error).message}`, {
          context: { path: absDir },
          cause: e,
        });
      }
    }
    const extra = this.overlayChildren.get(relDir);
    if (extra) names = [...new Set([...names, ...extra])];
    return sortBytewise(names);
  }

  private entryFor(rel: string): RootEntry | undefined {
    const abs = path.join(this.root, rel);
    const st = this.lstat(abs);
    const meta = this.opts.overlay?.(rel);
    if (!st) {
      if (!meta) {
        throw new CpmError('E_IMAGE', `${rel} is listed by the overlay but has no record`, {
          context: { path: rel },
        });
      }
      return this.fromOverlayOnly(rel, meta);
    }
    let type = typeOf(st);
    // An unprivileged install leaves an empty placeholder where it could not mknod.
    if (meta && SPECIAL.has(meta.type) && type === 'file' && st.size === 0) type = meta.type;
    if (type === 'socket') {
      this.opts.onWarning?.(`skipping socket ${rel}: sockets cannot be stored in an image`);
      return undefined;
    }
    const entry: RootEntry = {
      path: rel,
      type,
      mode: (meta?.mode ?? st.mode) & 0o7777,
      uid: meta?.uid ?? this.uidOf(st),
      gid: meta?.gid ?? this.gidOf(st),
      mtime: this.clamp(st.mtimeMs / 1000),
      size: 0,
    };
    const xattrs = { ...this.xattrMap?.get(rel), ...meta?.xattrs };
    if (Object.keys(xattrs).length > 0) entry.xattrs = xattrs;
    switch (type) {
      case 'file': {
        if (st.nlink > 1) {
          const key = `${st.dev}:${st.ino}`;
          const first = this.seenInodes.get(key);
          if (first !== undefined) {
            entry.type = 'hardlink';
            entry.linkTarget = first;
            delete entry.xattrs;
            return entry;
          }
          this.seenInodes.set(key, rel);
        }
        entry.size = st.size;
        entry.source = abs;
        break;
      }
      case 'symlink':
        entry.linkTarget = readlinkSync(abs);
        break;
      case 'char':
      case 'block': {
        const rdev = st.isCharacterDevice() || st.isBlockDevice() ? st.rdev : meta?.rdev;
        if (rdev === undefined) {
          throw new CpmError('E_IMAGE', `device node ${rel} has no device number`, {
            context: { path: rel },
          });
        }
        Object.assign(entry, toDevFields(rdev));
        break;
      }
      default:
        break;
    }
    return entry;
  }

  private fromOverlayOnly(rel: string, meta: EntryMeta): RootEntry | undefined {
    const entry: RootEntry = {
      path: rel,
      type: meta.type,
      mode: meta.mode & 0o7777,
      uid: meta.uid,
      gid: meta.gid,
      mtime: this.clamp(this.opts.sourceDateEpoch ?? 0),
      size: 0,
    };
    if (meta.xattrs && Object.keys(meta.xattrs).length > 0) entry.xattrs = { ...meta.xattrs };
    switch (meta.type) {
      case 'char':
      case 'block':
        if (meta.rdev === undefined) {
          throw new CpmError('E_IMAGE', `device node ${rel} has no device number in the overlay`, {
            context: { path: rel },
          });
        }
        Object.assign(entry, toDevFields(meta.rdev));
        return entry;
      case 'symlink':
        if (meta.linkTarget === undefined) {
          throw new CpmError('E_IMAGE', `symlink ${rel} has no target in the overlay`, {
            context: { path: rel },
          });
        }
        entry.linkTarget = meta.linkTarget;
        return entry;
      case 'dir':
      case 'fifo':
        return entry;
      case 'socket':
        this.opts.onWarning?.(`skipping socket ${rel}: sockets cannot be stored in an image`);
        return undefined;
      case 'file':
        throw new CpmError(
          'E_IMAGE',
          `${rel} is a regular file in the overlay but missing on disk`,
          {
            context: { path: path.join(this.root, rel) },
            hint: 'the root is incomplete; reinstall the package that owns it or run cpm verify',
          },
        );
    }
  }
}

/** Namespaces squashfs stores, and so a tool reading the directory keeps (mksquashfs). */
const SQUASHFS_XATTR = /^(user|trusted|security)\./;

/** Why the entry's xattrs are not what a tool reading the disk would store, if they are not. */
function xattrsInexact(
  want: Record<string, Buffer>,
  disk: Record<string, Buffer> | undefined,
): string | undefined {
  const names = Object.keys(want);
  for (const n of names) {
    if (!SQUASHFS_XATTR.test(n)) return `has an xattr outside user/trusted/security (${n})`;
    if (!disk?.[n]?.equals(want[n]!)) return `has an xattr the disk does not (${n})`;
  }
  return undefined;
}

function toDevFields(rdev: number): { devmajor: number; devminor: number } {
  const { major, minor } = splitDev(rdev);
  return { devmajor: major, devminor: minor };
}
