/**
 * What a build produces: a snapshot of the build root after the prelude, another after the steps,
 * and the difference — entries added or changed (type, content size, mode, owner, mtime, inode,
 * symlink target) — filtered by the spec's includes/excludes and laid out as a payload directory
 * (hard links into the build root, so nothing is copied). `unpack: true` takes the whole root,
 * `package_dir` one directory of it.
 */
import { promises as fsp, type BigIntStats } from 'node:fs';
import path from 'node:path';
import { CpmError } from '../errors.js';

export interface Entry {
  /** Path relative to the root, "/"-separated, no leading slash. */
  rel: string;
  kind: 'dir' | 'file' | 'symlink' | 'other';
  /** Compared between snapshots. */
  sig: string;
}

export type Snapshot = Map<string, Entry>;

function kindOf(st: BigIntStats): Entry['kind'] {
  if (st.isDirectory()) return 'dir';
  if (st.isFile()) return 'file';
  if (st.isSymbolicLink()) return 'symlink';
  return 'other';
}

/** Walks `root` (without following symlinks); `skip` holds relative paths not descended into. */
export async function snapshot(
  root: string,
  skip: ReadonlySet<string> = new Set(),
): Promise<Snapshot> {
  const out: Snapshot = new Map();
  const visit = async (rel: string): Promise<void> => {
    const dirents = await fsp.readdir(rel ? path.join(root, rel) : root, { withFileTypes: true });
    await Promise.all(
      dirents.map(async (d) => {
        const r = rel ? `${rel}/${d.name}` : d.name;
        const abs = path.join(root, r);
        const st = await fsp.lstat(abs, { bigint: true });
        const kind = kindOf(st);
        let sig = `${kind}:${st.mode}:${st.uid}:${st.gid}`;
        // A directory's mtime moves with every change inside it: only its own attributes count.
        if (kind === 'file') sig += `:${st.size}:${st.mtimeNs}:${st.ino}`;
        else if (kind === 'symlink') sig += `:${await fsp.readlink(abs)}`;
        else if (kind === 'other') sig += `:${st.rdev}:${st.ino}`;
        out.set(r, { rel: r, kind, sig });
        if (kind === 'dir' && !skip.has(r)) await visit(r);
      }),
    );
  };
  await visit('');
  return out;
}

/** Entries of `after` that are new or differ from `before` (deletions are not represented). */
export function diff(before: Snapshot, after: Snapshot): Entry[] {
  const out: Entry[] = [];
  for (const e of after.values()) {
    const b = before.get(e.rel);
    if (!b || b.sig !== e.sig) out.push(e);
  }
  return out.sort((a, b) => (a.rel < b.rel ? -1 : a.rel > b.rel ? 1 : 0));
}

/**
 * A Go (RE2) regular expression as a JavaScript one: the syntax luet trees use is common to both;
 * leading inline flags `(?i)`, `(?s)`, `(?m)` become JavaScript flags.
 */
export function goRegex(src: string, where: string): RegExp {
  let body = src;
  let flags = '';
  const m = /^\(\?([imsU]+)\)/.exec(body);
  if (m) {
    body = body.slice(m[0].length);
    flags = [...new Set(m[1]!.replace('U', ''))].join('');
  }
  try {
    return new RegExp(body, flags);
  } catch (e) {
    throw new CpmError(
      'E_TREE',
      `${where}: invalid regular expression ${JSON.stringify(src)}: ${(e as Error).message}`,
      {
        hint: 'includes/excludes are Go regular expressions matched against absolute paths',
      },
    );
  }
}

export interface PathFilter {
  includes: RegExp[];
  excludes: RegExp[];
}

export function compileFilter(includes: string[], excludes: string[], where: string): PathFilter {
  return {
    includes: includes.map((r) => goRegex(r, `${where} includes`)),
    excludes: excludes.map((r) => goRegex(r, `${where} excludes`)),
  };
}

/** luet's rule: kept when some include matches (or there are none) and no exclude matches. */
export function keeps(f: PathFilter, abs: string): boolean {
  if (f.includes.length > 0 && !f.includes.some((r) => r.test(abs))) return false;
  return !f.excludes.some((r) => r.test(abs));
}

export function isEmptyFilter(f: PathFilter): boolean {
  return f.includes.length === 0 && f.excludes.length === 0;
}

/**
 * Lays out `entries` (relative to `root`) under the empty directory `out`: files hard-linked,
 * symlinks recreated, directories made with the root's mode and owner. Parents that are not
 * entries themselves are made like their counterpart in the root, so the package carries them.
 * Device nodes, fifos and sockets are skipped (returned) — a package cannot own them portably.
 */
export async function layoutPayload(
  root: string,
  entries: readonly Entry[],
  out: string,
  /** Where an entry really is, when `root` is not a plain directory (an overlay's layers). */
  sourceOf: (rel: string) => Promise<string> = (rel) => Promise.resolve(path.join(root, rel)),
): Promise<string[]> {
  const skipped: string[] = [];
  const made = new Set<string>(['']);
  const owners = process.getuid?.() === 0;
  const mkdirLike = async (rel: string): Promise<void> => {
    if (made.has(rel)) return;
    await mkdirLike(path.posix.dirname(rel) === '.' ? '' : path.posix.dirname(rel));
    const st = await fsp.lstat(await sourceOf(rel));
    const dst = path.join(out, rel);
    await fsp.mkdir(dst);
    await fsp.chmod(dst, st.mode & 0o7777);
    if (owners) await fsp.lchown(dst, st.uid, st.gid);
    made.add(rel);
  };
  for (const e of entries) {
    const parent = path.posix.dirname(e.rel) === '.' ? '' : path.posix.dirname(e.rel);
    if (e.kind === 'dir') {
      await mkdirLike(e.rel);
      continue;
    }
    if (e.kind === 'other') {
      skipped.push(e.rel);
      continue;
    }
    await mkdirLike(parent);
    const src = await sourceOf(e.rel);
    const dst = path.join(out, e.rel);
    if (e.kind === 'symlink') {
      await fsp.symlink(await fsp.readlink(src), dst);
      if (owners) {
        const st = await fsp.lstat(src);
        await fsp.lchown(dst, st.uid, st.gid);
      }
    } else await fsp.link(src, dst);
  }
  return skipped;
}

/** Every entry under `dir` (the whole root for unpack, or package_dir), as if it were the root. */
export async function allEntries(dir: string): Promise<Entry[]> {
  const snap = await snapshot(dir);
  return [...snap.values()].sort((a, b) => (a.rel < b.rel ? -1 : a.rel > b.rel ? 1 : 0));
}
