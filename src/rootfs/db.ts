/**
 * The installed-package database: one JSON-lines text file, `DBDIR/installed`, rewritten whole
 * and atomically (write + fsync + rename) at each commit — apk's model. Packages sorted by id,
 * files sorted by path, fixed key order, no timestamps: the same install gives the same bytes.
 * Indexes (path → owners, family → package) are built in memory at load. docs/database.md says why.
 */
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import path from 'node:path';
import { CpmError } from '../errors.js';
import { sortedDeep, specFromJson, specToJson } from '../package/codec.js';
import { finalizeFromJson } from '../package/finalize.js';
import { satisfiesDep } from '../package/match.js';
import { familyKey } from '../package/package.js';
import { faultPoint } from './fault.js';
import type { FileRecord, InstalledPackage } from './types.js';

export const DB_FILE = 'installed';
export const DEFAULT_DB_DIR = 'var/lib/cpm';

/** The DB directory of a root: `dbDir` (absolute, or relative to the root) or the default. */
export function resolveDbDir(root: string, dbDir?: string): string {
  if (!dbDir) return path.join(root, DEFAULT_DB_DIR);
  return path.isAbsolute(dbDir) ? dbDir : path.join(root, dbDir);
}
const HEADER = '{"cpm-db":1}';

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function fileOut(f: FileRecord): string {
  const o: Record<string, unknown> = { p: f.path, t: f.type, m: f.mode, u: f.uid, g: f.gid };
  if (f.size !== undefined) o.s = f.size;
  if (f.sha256 !== undefined) o.h = f.sha256;
  if (f.target !== undefined) o.l = f.target;
  if (f.rdev) o.r = f.rdev;
  if (f.config) o.c = 1;
  if (f.xattrs) o.x = sortedDeep(f.xattrs);
  if (f.skipped) o.k = f.skipped;
  return JSON.stringify(o);
}

function fileIn(o: Record<string, unknown>): FileRecord {
  const f: FileRecord = {
    path: o.p as string,
    type: o.t as FileRecord['type'],
    mode: o.m as number,
    uid: o.u as number,
    gid: o.g as number,
  };
  if (o.s !== undefined) f.size = o.s as number;
  if (o.h !== undefined) f.sha256 = o.h as string;
  if (o.l !== undefined) f.target = o.l as string;
  if (o.r !== undefined) f.rdev = o.r as [number, number];
  if (o.c) f.config = true;
  if (o.x) f.xattrs = o.x as Record<string, string>;
  if (o.k) f.skipped = o.k as string;
  return f;
}

export class InstalledDb {
  private pkgs = new Map<string, InstalledPackage>();
  private fam = new Map<string, string>();
  private own: Map<string, string[]> | null = null;

  constructor(packages: Iterable<InstalledPackage> = []) {
    for (const p of packages) this.add(p);
  }

  static parse(text: string, file = DB_FILE): InstalledDb {
    const db = new InstalledDb();
    const lines = text.split('\n');
    if (lines[0] !== HEADER)
      throw new CpmError('E_DB', `${file}:1: not a cpm database (bad header)`, {
        context: { file, line: 1 },
      });
    let cur: InstalledPackage | null = null;
    for (let i = 1; i < lines.length; i++) {
      const line = lines[i]!;
      if (line === '') continue;
      let o: Record<string, unknown>;
      try {
        o = JSON.parse(line) as Record<string, unknown>;
      } catch (e) {
        throw new CpmError('E_DB', `${file}:${i + 1}: ${(e as Error).message}`, {
          context: { file, line: i + 1 },
        });
      }
      if (typeof o.package === 'string') {
        const at = { file, line: i + 1 };
        cur = {
          id: o.package,
          spec: specFromJson(
            o.spec,
            (m) =>
              new CpmError('E_DB', `${file}:${i + 1}: package ${o.package}: ${m}`, { context: at }),
          ),
          origin: String(o.origin ?? ''),
          imageDigest: String(o.imageDigest ?? ''),
          reason: o.reason === 'dependency' ? 'dependency' : 'explicit',
          layers: (o.layers as string[]) ?? [],
          files: [],
        };
        if (o.base) cur.base = true;
        if (o.rootless) cur.rootless = true;
        const fin = finalizeFromJson(o.finalize);
        if (fin) cur.finalize = fin;
        db.add(cur);
      } else if (cur && typeof o.p === 'string') {
        cur.files.push(fileIn(o));
      } else {
        throw new CpmError('E_DB', `${file}:${i + 1}: unexpected record`, {
          context: { file, line: i + 1 },
        });
      }
    }
    return db;
  }

  static load(dbDir: string): InstalledDb {
    const file = `${dbDir}/${DB_FILE}`;
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return new InstalledDb();
      throw new CpmError('E_DB', `cannot read ${file}: ${(e as Error).message}`, {
        context: { file },
      });
    }
    return InstalledDb.parse(text, file);
  }

  serialize(): string {
    const out: string[] = [HEADER];
    for (const p of this.list()) {
      const o: Record<string, unknown> = {
        package: p.id,
        spec: specToJson(p.spec, 'db'),
        origin: p.origin,
        imageDigest: p.imageDigest,
        reason: p.reason,
        layers: p.layers,
      };
      if (p.base) o.base = true;
      if (p.rootless) o.rootless = true;
      if (p.finalize) o.finalize = sortedDeep(p.finalize);
      out.push(JSON.stringify(o));
      const files = p.files.slice().sort((a, b) => cmp(a.path, b.path));
      for (const f of files) out.push(fileOut(f));
    }
    return out.join('\n') + '\n';
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

  clone(): InstalledDb {
    return new InstalledDb(this.list().map((p) => ({ ...p, files: p.files.slice() })));
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

/** Writes `text` to `file` via a temp file + fsync + rename. */
export function writeFileAtomic(file: string, text: string): void {
  const tmp = `${file}.tmp`;
  faultPoint();
  const fd = openSync(tmp, 'w', 0o644);
  try {
    const buf = Buffer.from(text);
    let off = 0;
    while (off < buf.length) off += writeSync(fd, buf, off);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  faultPoint();
  renameSync(tmp, file);
}
