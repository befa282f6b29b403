/**
 * Read-only views of a root: installed list, files of a package, owner of a path, and verify
 * (luet's oscheck, with digests): missing, modified (sha256 / symlink target / type), mode or
 * owner differing from the DB, and foreign files (in a directory a package owns, owned by none).
 */
import { createHash } from 'node:crypto';
import { createReadStream, lstatSync, readdirSync, readlinkSync } from 'node:fs';
import path from 'node:path';
import { CpmError } from '../errors.js';
import { InstalledDb } from '../rootfs/db.js';
import { DiskView, UnsafePathError, resolveUserPath, typeOfMode } from '../rootfs/fs-path.js';
import { STAGE_DIR, resolveDbDir } from '../rootfs/transaction.js';
import type { FileRecord, InstalledPackage } from '../rootfs/types.js';

export interface RootRef {
  root: string;
  dbDir?: string;
}

export function loadDb(ref: RootRef): InstalledDb {
  return InstalledDb.load(resolveDbDir(path.resolve(ref.root), ref.dbDir));
}

export function listInstalled(ref: RootRef): InstalledPackage[] {
  return loadDb(ref).list();
}

function must(db: InstalledDb, pkg: string): InstalledPackage {
  const p = db.find(pkg);
  if (!p)
    throw new CpmError('E_NOT_FOUND', `${pkg} is not installed`, { context: { package: pkg } });
  return p;
}

export function filesOf(ref: RootRef, pkg: string): FileRecord[] {
  return must(loadDb(ref), pkg)
    .files.slice()
    .sort((a, b) => (a.path < b.path ? -1 : 1));
}

/** Owners of a path given as the user sees it (symlinked parents like /bin → usr/bin resolved). */
export function ownersOf(ref: RootRef, p: string): { path: string; owners: string[] } {
  const root = path.resolve(ref.root);
  let rel: string;
  try {
    rel = resolveUserPath(new DiskView(root), p, false);
  } catch (e) {
    if (e instanceof UnsafePathError)
      throw new CpmError('E_USAGE', `${p}: ${e.message}`, { context: { path: p } });
    throw e;
  }
  return { path: '/' + rel, owners: loadDb(ref).owners(rel) };
}

export type ProblemKind = 'missing' | 'modified' | 'type' | 'mode' | 'owner' | 'foreign';

export interface VerifyProblem {
  package: string;
  path: string;
  kind: ProblemKind;
  expected?: string;
  actual?: string;
}

export interface VerifyReport {
  checked: number;
  problems: VerifyProblem[];
  /** Config files that differ from what the package shipped: expected, not a problem. */
  changedConfig: Array<{ package: string; path: string }>;
  /** Whether foreign files were looked for, and if not, why. */
  foreign: { checked: boolean; reason?: string };
  /** Notes about the DB itself (an old format whose truncation cannot be detected). */
  notes: string[];
}

function sha256Of(file: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const h = createHash('sha256');
    createReadStream(file)
      .on('data', (c) => h.update(c))
      .on('error', reject)
      .on('end', () => resolve(h.digest('hex')));
  });
}

export interface VerifyOptions {
  /**
   * Look for foreign files: true, false, or 'auto' (default) — only in a root cpm manages whole,
   * since over an unmanaged base (a distribution image cpm did not unpack) every file the
   * distribution put into a shared directory like /usr/lib/systemd/system would count.
   */
  foreign?: boolean | 'auto';
}

/** Mount points and scratch dirs a container runtime or bwrap creates in any root. */
const RUNTIME_DIRS = new Set(['dev', 'proc', 'sys', 'run', 'tmp', 'mnt', 'media']);

/**
 * A root is managed whole when cpm unpacked its base, or when every top-level entry belongs to an
 * installed package (packages installed into an empty directory). Otherwise names an example of an
 * entry nobody owns.
 */
function unmanagedEntry(root: string, dbDir: string, db: InstalledDb): string | undefined {
  if (db.list().some((p) => p.base)) return undefined;
  const dbTop = path.relative(root, dbDir).split(path.sep)[0];
  let names: string[];
  try {
    names = readdirSync(root).sort();
  } catch {
    return undefined;
  }
  return names.find(
    (n) => n !== STAGE_DIR && n !== dbTop && !RUNTIME_DIRS.has(n) && db.owners(n).length === 0,
  );
}

/** Entries of owned directories that no package owns (cpm's own files excepted). */
function foreignFiles(
  root: string,
  dbDir: string,
  db: InstalledDb,
  pkgs: InstalledPackage[],
): VerifyProblem[] {
  const out: VerifyProblem[] = [];
  const dbRel = path.relative(root, dbDir).split(path.sep).join('/');
  const ours = (rel: string): boolean =>
    rel === STAGE_DIR ||
    rel === dbRel ||
    dbRel.startsWith(rel + '/') ||
    rel.endsWith('.cpmnew') ||
    rel.endsWith('.cpmsave');
  for (const p of pkgs) {
    for (const f of p.files) {
      if (f.type !== 'd' || f.skipped) continue;
      let names: string[];
      try {
        names = readdirSync(`${root}/${f.path}`);
      } catch {
        continue; // missing or not a directory: reported as such
      }
      for (const n of names.sort()) {
        const rel = f.path === '' ? n : `${f.path}/${n}`;
        if (db.owners(rel).length > 0 || ours(rel)) continue;
        out.push({ package: p.id, path: '/' + rel, kind: 'foreign' });
      }
    }
  }
  // a directory shared by several packages is listed once
  const seen = new Set<string>();
  return out.filter((x) => !seen.has(x.path) && seen.add(x.path));
}

export async function verify(
  ref: RootRef,
  pkg?: string,
  opts: VerifyOptions = {},
): Promise<VerifyReport> {
  const root = path.resolve(ref.root);
  const db = loadDb(ref);
  const pkgs = pkg ? [must(db, pkg)] : db.list();
  const isRoot = process.getuid?.() === 0;
  const report: VerifyReport = {
    checked: 0,
    problems: [],
    changedConfig: [],
    foreign: { checked: false },
    notes: [...db.notes],
  };
  for (const p of pkgs) {
    for (const f of p.files) {
      if (f.skipped) continue;
      report.checked++;
      const abs = `${root}/${f.path}`;
      const add = (kind: ProblemKind, expected?: string, actual?: string): void => {
        report.problems.push({ package: p.id, path: '/' + f.path, kind, expected, actual });
      };
      let st;
      try {
        st = lstatSync(abs);
      } catch {
        add('missing');
        continue;
      }
      const t = typeOfMode(st.mode);
      if (t !== f.type) {
        add('type', f.type, t);
        continue;
      }
      if (f.type === 'f') {
        const sha = st.size === f.size ? await sha256Of(abs) : '';
        if (sha !== f.sha256) {
          if (f.config) report.changedConfig.push({ package: p.id, path: '/' + f.path });
          else add('modified', `sha256:${f.sha256}`, sha ? `sha256:${sha}` : `size ${st.size}`);
          continue;
        }
      } else if (f.type === 'l') {
        const target = readlinkSync(abs);
        if (target !== f.target) add('modified', f.target, target);
        continue;
      } else if ((f.type === 'c' || f.type === 'b') && f.rdev) {
        const major = Math.floor(st.rdev / 256) & 0xfff;
        const minor = (st.rdev & 0xff) | ((st.rdev >> 12) & 0xfff00);
        if (major !== f.rdev[0] || minor !== f.rdev[1])
          add('modified', `${f.rdev[0]}:${f.rdev[1]}`, `${major}:${minor}`);
      }
      if ((st.mode & 0o7777) !== f.mode)
        add('mode', (f.mode & 0o7777).toString(8), (st.mode & 0o7777).toString(8));
      if (isRoot && !p.rootless && (st.uid !== f.uid || st.gid !== f.gid))
        add('owner', `${f.uid}:${f.gid}`, `${st.uid}:${st.gid}`);
    }
  }
  const dbDir = resolveDbDir(root, ref.dbDir);
  const mode = opts.foreign ?? 'auto';
  const stray = mode === 'auto' ? unmanagedEntry(root, dbDir, db) : undefined;
  if (mode === true || (mode === 'auto' && stray === undefined)) {
    report.problems.push(...foreignFiles(root, dbDir, db, pkgs));
    report.foreign = { checked: true };
  } else {
    report.foreign = {
      checked: false,
      reason:
        mode === false
          ? 'not asked for'
          : `the root has files no package owns (e.g. /${stray}): its base is not managed by cpm`,
    };
  }
  return report;
}
