/**
 * The installed-package database: one JSON-lines text file, `DBDIR/installed`, rewritten whole
 * and atomically (write + fsync + rename) at each commit — apk's model. Packages sorted by id,
 * files sorted by path, fixed key order, no timestamps: the same install gives the same bytes.
 * Indexes (path → owners, family → package) are built in memory at load. docs/database.md says why.
 */
import { closeSync, fsyncSync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import path from 'node:path';
import { CpmError } from '../errors.js';
import { satisfiesDep } from '../package/match.js';
import { familyKey } from '../package/package.js';
import { cmp, type Decoded, decodeDb, encodeDb, isSealed, readDb } from './db-format.js';
import { faultPoint } from './fault.js';
import { RootPaths, UnsafePathError } from './fs-path.js';
import type { InstalledPackage } from './types.js';

export { dbDamageHint, fileCount } from './db-format.js';

export const DB_FILE = 'installed';
export const DEFAULT_DB_DIR = 'var/lib/cpm';

/**
 * The DB directory of a root: `dbDir` (absolute, or relative to the root) or the default. One
 * inside the root must be reached through real directories: a symlink swapped in for `var` (or
 * any part of the way) would take the DB, its lock and journal elsewhere, so it is refused.
 */
export function resolveDbDir(root: string, dbDir?: string): string {
  const dir = !dbDir
    ? path.join(root, DEFAULT_DB_DIR)
    : path.isAbsolute(dbDir)
      ? dbDir
      : path.join(root, dbDir);
  const rel = path.relative(root, dir);
  if (rel === '' || rel === '..' || rel.startsWith('../') || path.isAbsolute(rel)) return dir;
  try {
    new RootPaths(root).dir(rel);
  } catch (e) {
    if (!(e instanceof UnsafePathError)) throw e;
    throw new CpmError('E_UNSAFE_ENTRY', `refusing the database directory ${dir}: ${e.message}`, {
      context: { path: dir },
      hint: 'cpm does not follow symlinks to its database; restore the directory, or point --db-dir (database_path) at the real place',
    });
  }
  return dir;
}

export class InstalledDb {
  private pkgs = new Map<string, InstalledPackage>();
  private fam = new Map<string, string>();
  private own: Map<string, string[]> | null = null;

  constructor(packages: Iterable<InstalledPackage> = []) {
    for (const p of packages) this.add(p);
  }

  /** Notes about the file it was read from (an old format without trailer). */
  readonly notes: string[] = [];

  /**
   * Reads a DB file's bytes (or text). The package lines are checked and parsed here (with the
   * head and end line of format 3, the whole file's checksum of format 2); the file lines are
   * checked and parsed when first used, except in a format-1 DB, which has no checksum, and when
   * `eager`: there every line is checked and parsed now, so damage is found at load.
   */
  static parse(input: string | Buffer, file = DB_FILE, eager = false): InstalledDb {
    const buf = typeof input === 'string' ? Buffer.from(input, 'utf8') : input;
    return InstalledDb.of(decodeDb(buf, file, eager));
  }

  /**
   * The DB of `dbDir` (empty when there is none). Of a format-3 DB only the package lines and the
   * last line are read, the file lines when first used (db-format.ts). `eager`: every line is
   * read and parsed now, for the code that writes the root or the DB, which must find a damaged
   * line before it changes anything.
   */
  static load(dbDir: string, eager = false): InstalledDb {
    const decoded = readDb(`${dbDir}/${DB_FILE}`, eager);
    return decoded ? InstalledDb.of(decoded) : new InstalledDb();
  }

  private static of({ packages, notes }: Decoded): InstalledDb {
    const db = new InstalledDb(packages);
    db.notes.push(...notes);
    return db;
  }

  /** The DB file's text (tests, small DBs); transactions write encode()'s pieces. */
  serialize(): string {
    return Buffer.concat(this.encode()).toString('utf8');
  }

  /** The DB file's bytes (db-format.ts), in pieces of about 256 KiB: never one string of it. */
  encode(): Buffer[] {
    return encodeDb(this.list());
  }

  add(p: InstalledPackage): void {
    const fam = familyKey(p.spec);
    const old = this.fam.get(fam);
    if (old && old !== p.id) this.pkgs.delete(old);
    this.pkgs.set(p.id, p);
    this.fam.set(fam, p.id);
    this.own = null;
  }

  remove(id: string): void {
    const p = this.pkgs.get(id);
    if (!p) return;
    this.pkgs.delete(id);
    this.fam.delete(familyKey(p.spec));
    this.own = null;
  }

  get(id: string): InstalledPackage | undefined {
    return this.pkgs.get(id);
  }

  /** The installed package of a family ("cat/name"), or by exact id. */
  find(ref: string): InstalledPackage | undefined {
    const byId = this.pkgs.get(ref);
    if (byId) return byId;
    const id = this.fam.get(ref);
    return id ? this.pkgs.get(id) : undefined;
  }

  list(): InstalledPackage[] {
    return [...this.pkgs.values()].sort((a, b) => cmp(a.id, b.id));
  }

  /** A copy to change: its packages and file lists are its own (a list read and sealed, shared). */
  clone(): InstalledDb {
    return new InstalledDb(
      this.list().map((p) => ({ ...p, files: isSealed(p.files) ? p.files : p.files.slice() })),
    );
  }

  /** Packages owning a canonical root-relative path (several only for shared directories). */
  owners(path: string): string[] {
    if (!this.own) {
      this.own = new Map();
      for (const p of this.list())
        for (const f of p.files) {
          const l = this.own.get(f.path);
          if (l) l.push(p.id);
          else this.own.set(f.path, [p.id]);
        }
    }
    return this.own.get(path) ?? [];
  }

  /** Installed packages with a requirement `id` satisfies (package/match.ts decides). */
  reverseDeps(id: string): string[] {
    const target = this.pkgs.get(id);
    if (!target) return [];
    return this.list()
      .filter((p) => p.id !== id && p.spec.requires.some((r) => satisfiesDep(target.spec, r)))
      .map((p) => p.id);
  }
}

/** Writes `data` (a text, or pieces of bytes in order) to `file` via a temp file + fsync + rename. */
export function writeFileAtomic(file: string, data: string | readonly Uint8Array[]): void {
  const tmp = `${file}.tmp`;
  faultPoint();
  // a name left there (a finalizer writes under the root) is replaced, never written through: a
  // symlink planted as installed.tmp would have cpm overwrite its target, outside the root
  try {
    unlinkSync(tmp);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  const fd = openSync(tmp, 'wx', 0o644);
  try {
    for (const buf of typeof data === 'string' ? [Buffer.from(data)] : data) {
      let off = 0;
      while (off < buf.length) off += writeSync(fd, buf, off);
    }
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  faultPoint();
  renameSync(tmp, file);
}
