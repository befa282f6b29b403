/**
 * The installer DB as a metadata overlay for the image writers (meta.ts). Only packages installed
 * without root (`rootless` in the DB) contribute: there the disk could not take the owners, modes
 * and device nodes, so the DB is the truth. After a root install the disk is the truth, including
 * changes an administrator made since.
 */
import path from 'node:path';
// db.js only: the installer (transaction.js) costs ~0.1 s to load and cpm image needs none of it.
import { InstalledDb, resolveDbDir } from '../rootfs/db.js';
import { refuseUnfinished } from '../rootfs/journal.js';
import type { FileRecord } from '../rootfs/types.js';
import {
  makeDev,
  tableOverlay,
  type EntryMeta,
  type EntryType,
  type MetadataOverlay,
} from './meta.js';

const TYPE: Record<FileRecord['type'], EntryType> = {
  f: 'file',
  d: 'dir',
  l: 'symlink',
  c: 'char',
  b: 'block',
  p: 'fifo',
};

export function entryMetaOf(f: FileRecord): EntryMeta {
  const m: EntryMeta = { type: TYPE[f.type], uid: f.uid, gid: f.gid, mode: f.mode & 0o7777 };
  if (f.rdev) m.rdev = makeDev(f.rdev[0], f.rdev[1]);
  if (f.target !== undefined) m.linkTarget = f.target;
  if (f.xattrs && Object.keys(f.xattrs).length > 0) {
    m.xattrs = Object.fromEntries(
      Object.entries(f.xattrs).map(([k, v]) => [k, Buffer.from(v, 'utf8')]),
    );
  }
  return m;
}

export interface DbOverlay {
  overlay: MetadataOverlay;
  /** Recorded non-regular entries (devices, fifos, symlinks, dirs), which may be missing on disk. */
  overlayPaths: string[];
  /** Number of packages that contributed (installed rootless). */
  packages: number;
}

/** The overlay of the rootless packages in `db`. */
export function dbOverlay(db: InstalledDb): DbOverlay {
  const records = new Map<string, EntryMeta>();
  let packages = 0;
  for (const p of db.list()) {
    if (!p.rootless) continue;
    packages++;
    for (const f of p.files) records.set(f.path, entryMetaOf(f));
  }
  const overlayPaths: string[] = [];
  for (const [rel, m] of records) {
    if (m.type === 'file') continue;
    overlayPaths.push(rel);
  }
  // Ancestors of recorded paths that neither the DB nor the disk has become plain directories.
  const ancestors = new Set<string>();
  for (const p of overlayPaths) {
    for (let i = p.indexOf('/'); i > 0; i = p.indexOf('/', i + 1)) ancestors.add(p.slice(0, i));
  }
  // A table, so the image writers can hand it to their worker thread.
  const overlay = tableOverlay({ records, defaultDirs: ancestors });
  return { overlay, overlayPaths, packages };
}

/** The DB of `root` (dbDir as in the installer: default ROOT/var/lib/cpm). */
export function loadRootDb(root: string, dbDir?: string): { db: InstalledDb; dbDir: string } {
  const dir = resolveDbDir(path.resolve(root), dbDir);
  // a killed transaction's stage, lock or journal must never end up in an image
  refuseUnfinished(path.resolve(root), dir, 'cpm image');
  return { db: InstalledDb.load(dir, true), dbDir: dir };
}
