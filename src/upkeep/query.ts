/**
 * Read-only views of a root: installed list, files of a package, owner of a path, and verify
 * (luet's oscheck, with digests): missing, modified (sha256 / symlink target / type), mode or
 * owner differing from the DB, and foreign files (in a directory a package owns, owned by none).
 */
import {
  createReadStream,
  lstatSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  statSync,
} from 'node:fs';
import path from 'node:path';
import { CpmError } from '../errors.js';
import { InstalledDb, resolveDbDir } from '../rootfs/db.js';
import { DiskView, UnsafePathError, resolveUserPath, typeOfMode } from '../rootfs/fs-path.js';
import { STAGE_DIR, refuseUnfinished } from '../rootfs/journal.js';
import type { FileRecord, InstalledPackage } from '../rootfs/types.js';
import { nodeCrypto } from '../util/lazy-builtins.js';

export { fileCount } from '../rootfs/db.js';

export interface RootRef {
  root: string;
  dbDir?: string;
}

/**
 * A root given by the user must be a directory; for the read-only views it must exist too — a
 * typo in `verify --root` must not pass as "0 problems". Install creates a missing root.
 */
export function checkRoot(root: string, mustExist: boolean): void {
  let st;
  try {
    st = statSync(root);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' && !mustExist) return;
    throw new CpmError(
      code === 'ENOENT' ? 'E_NOT_FOUND' : 'E_USAGE',
      code === 'ENOENT'
        ? `root ${root} does not exist`
        : `root ${root} cannot be used: ${(e as Error).message}`,
      {
        context: { path: root },
        hint: code === 'ENOENT' ? 'check --root (or system.rootfs in cpm.yaml)' : undefined,
      },
    );
  }
  if (!st.isDirectory())
    throw new CpmError('E_USAGE', `root ${root} is not a directory`, {
      context: { path: root },
      hint: '--root takes the directory the packages are installed into',
    });
}

export function loadDb(ref: RootRef): InstalledDb {
  const root = path.resolve(ref.root);
  checkRoot(root, true);
  return InstalledDb.load(resolveDbDir(root, ref.dbDir));
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
  return packageFiles(ref, pkg).files;
}

/** The installed id a name (or id) means, and its file records sorted by path. */
export function packageFiles(ref: RootRef, pkg: string): { id: string; files: FileRecord[] } {
  const p = must(loadDb(ref), pkg);
  return { id: p.id, files: p.files.slice().sort((a, b) => (a.path < b.path ? -1 : 1)) };
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
    const h = nodeCrypto().createHash('sha256');
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
  /**
   * Absolute paths that are cpm's own (its config dir, cache, the binary running): never foreign.
   * Only those inside the root matter.
   */
  own?: string[];
  /** Runtime mount points (absolute); default: {@link processMounts}. */
  mounts?: string[];
}

/** Filesystems the kernel or a container runtime makes up: nothing on them is a package's. */
const VIRTUAL_FS = new Set([
  'proc',
  'sysfs',
  'devtmpfs',
  'devpts',
  'tmpfs',
  'mqueue',
  'cgroup',
  'cgroup2',
  'securityfs',
  'debugfs',
  'tracefs',
  'pstore',
  'bpf',
  'configfs',
  'fusectl',
  'hugetlbfs',
  'autofs',
  'binfmt_misc',
  'efivarfs',
]);

/**
 * Runtime mount points of this process (/proc/self/mountinfo): virtual filesystems and files
 * bind-mounted over files (docker's /etc/hosts, /etc/resolv.conf). A real disk mounted in the
 * root (an ESP on /boot) is not one: its files are checked.
 */
export function processMounts(): string[] {
  let text: string;
  try {
    text = readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return [];
  }
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const f = line.split(' ');
    const dash = f.indexOf('-');
    if (f.length < 5 || dash < 0) continue;
    const point = f[4]!.replace(/\\([0-7]{3})/g, (_, o: string) =>
      String.fromCharCode(parseInt(o, 8)),
    );
    let file = false;
    try {
      file = !lstatSync(point).isDirectory();
    } catch {
      continue;
    }
    if (VIRTUAL_FS.has(f[dash + 1] ?? '') || file) out.push(point);
  }
  return out;
}

/** On a live system (root "/") these are the kernel's and the runtime's, whatever is mounted. */
const LIVE_RUNTIME_DIRS = ['/proc', '/dev', '/sys', '/run', '/tmp'];

/**
 * Root-relative paths verify leaves alone: filesystems mounted inside the root (a live system's
 * /proc, /dev, /sys, /run, docker's /etc/hosts binds — not what packages put there) and, for
 * foreign files, cpm's own config, cache and binary.
 */
function skippedPaths(root: string, abs: string[]): string[] {
  const out: string[] = [];
  for (const a of abs) {
    const rel = path.relative(root, path.resolve(a)).split(path.sep).join('/');
    if (rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel)) out.push(rel);
  }
  return out;
}

function under(rel: string, set: Set<string>): boolean {
  if (set.size === 0) return false;
  for (let p = rel; ;) {
    if (set.has(p)) return true;
    const i = p.lastIndexOf('/');
    if (i < 0) return false;
    p = p.slice(0, i);
  }
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
  skip: Set<string>,
): VerifyProblem[] {
  const out: VerifyProblem[] = [];
  const dbRel = path.relative(root, dbDir).split(path.sep).join('/');
  const ours = (rel: string): boolean =>
    under(rel, skip) ||
    [...skip].some((s) => s.startsWith(rel + '/')) ||
    rel === STAGE_DIR ||
    rel === dbRel ||
    dbRel.startsWith(rel + '/') ||
    rel.endsWith('.cpmnew') ||
    rel.endsWith('.cpmsave');
  for (const p of pkgs) {
    for (const f of p.files) {
      if (f.type !== 'd' || f.skipped || under(f.path, skip)) continue;
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
  // before recover, a half-done transaction would show as hundreds of missing or changed files
  refuseUnfinished(root, resolveDbDir(root, ref.dbDir), 'cpm verify');
  const pkgs = pkg ? [must(db, pkg)] : db.list();
  const isRoot = process.getuid?.() === 0;
  const mounted = new Set(
    skippedPaths(root, [
      ...(opts.mounts ?? processMounts()),
      ...(root === '/' ? LIVE_RUNTIME_DIRS : []),
    ]),
  );
  const report: VerifyReport = {
    checked: 0,
    problems: [],
    changedConfig: [],
    foreign: { checked: false },
    notes: [...db.notes],
  };
  for (const p of pkgs) {
    for (const f of p.files) {
      if (f.skipped || f.generated) continue; // generated: the finalizer's output, owned only
      if (under(f.path, mounted)) continue; // another filesystem is mounted over it
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
    const skip = new Set([...mounted, ...skippedPaths(root, opts.own ?? [])]);
    report.problems.push(...foreignFiles(root, dbDir, db, pkgs, skip));
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
