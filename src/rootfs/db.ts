/**
 * The installed-package database: one JSON-lines text file, `DBDIR/installed`, rewritten whole
 * and atomically (write + fsync + rename) at each commit — apk's model. Packages sorted by id,
 * files sorted by path, fixed key order, no timestamps: the same install gives the same bytes.
 * Indexes (path → owners, family → package) are built in memory at load. docs/database.md says why.
 */
import { createHash } from 'node:crypto';
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import path from 'node:path';
import { CpmError } from '../errors.js';
import { sortedDeep, specFromJson, specToJson } from '../package/codec.js';
import { finalizeFromJson } from '../package/finalize.js';
import { satisfiesDep } from '../package/match.js';
import { familyKey } from '../package/package.js';
import { fsError } from '../util/fs-errors.js';
import { faultPoint } from './fault.js';
import { RootPaths, UnsafePathError } from './fs-path.js';
import type { FileRecord, InstalledPackage } from './types.js';

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
/** Format 2 ends with a trailer line; format 1 (no trailer) is still read. */
const HEADER = '{"cpm-db":2}';
const HEADER_V1 = '{"cpm-db":1}';
const TRAILER_KEY = 'cpm-db-end';

/** How a damaged DB is left behind: the same advice wherever it is found. */
export function dbDamageHint(file: string): string {
  return (
    `if a transaction was cut short, run \`cpm recover --root ROOT\` first; otherwise move the ` +
    `file aside (mv ${file} ${file}.damaged) and run \`cpm reclaim --root ROOT\` (with --repo or ` +
    `--tree), which records again every package whose files are all on disk (docs/database.md)`
  );
}

function damaged(file: string, line: number | undefined, what: string): CpmError {
  return new CpmError('E_DB', `${file}${line ? `:${line}` : ''}: damaged database: ${what}`, {
    hint: dbDamageHint(file),
    context: { file, ...(line ? { line } : {}) },
  });
}

const NL = 0x0a;
/** How every package line starts (the writer's fixed key order); file lines start otherwise. */
const PACKAGE_PREFIX = Buffer.from('{"package":');

/** Lines in `buf` (as split('\n') counts them, the empty string after a last newline dropped). */
function lineCount(buf: Buffer): number {
  let n = 1;
  for (let i = buf.indexOf(NL); i >= 0; i = buf.indexOf(NL, i + 1)) n++;
  return buf[buf.length - 1] === NL ? n - 1 : n;
}

/**
 * Checks the whole-file integrity of a DB's bytes: complete last line, trailer with the counts and
 * the sha256 of everything before it. Returns where the record lines are (after the header, before
 * the trailer), the counts the trailer promises and, for a format-1 DB (no trailer), a note.
 */
function checkIntegrity(
  buf: Buffer,
  file: string,
): { start: number; end: number; want?: { packages: number; files: number }; note?: string } {
  if (buf.length === 0) throw damaged(file, undefined, 'the file is empty (truncated to 0 bytes)');
  const first = buf.indexOf(NL);
  const header = buf.toString('utf8', 0, first < 0 ? buf.length : first);
  if (header !== HEADER && header !== HEADER_V1)
    throw damaged(
      file,
      1,
      /^\{"cpm-db":\d+\}$/.test(header)
        ? `format ${header} is newer than this cpm reads`
        : 'not a cpm database (bad header)',
    );
  if (buf[buf.length - 1] !== NL)
    throw damaged(
      file,
      lineCount(buf),
      'truncated in the middle of a line (the last line is incomplete)',
    );
  if (header === HEADER_V1)
    return {
      start: first + 1,
      end: buf.length,
      note: `${file} was written by an older cpm (format 1, no trailer): truncation cannot be detected until the next transaction rewrites it`,
    };
  const lastStart = buf.length < 2 ? 0 : buf.lastIndexOf(NL, buf.length - 2) + 1;
  const last = buf.toString('utf8', lastStart, buf.length - 1);
  let trailer: { packages?: unknown; files?: unknown; sha256?: unknown } | undefined;
  if (last.startsWith(`{"${TRAILER_KEY}":`)) {
    try {
      trailer = (JSON.parse(last) as Record<string, typeof trailer>)[TRAILER_KEY];
    } catch {
      trailer = undefined;
    }
  }
  if (!trailer) {
    const n = lineCount(buf);
    throw damaged(file, n, `truncated: it ends after line ${n} without its end-of-database line`);
  }
  // the bytes themselves: hashing a decoded string would encode it back to UTF-8 first
  if (createHash('sha256').update(buf.subarray(0, lastStart)).digest('hex') !== trailer.sha256)
    throw damaged(file, lineCount(buf), 'its contents do not match the checksum in its last line');
  return {
    start: first + 1,
    end: lastStart,
    want: { packages: Number(trailer.packages), files: Number(trailer.files) },
  };
}

/** The file records of lines [start, end) of `buf`, the first being line `line` of `file`. */
function parseFiles(
  buf: Buffer,
  start: number,
  end: number,
  line: number,
  file: string,
): FileRecord[] {
  const files: FileRecord[] = [];
  const lines = buf.toString('utf8', start, end).split('\n');
  for (let i = 0; i < lines.length; i++) {
    const text = lines[i]!;
    if (text === '') continue;
    const at = line + i;
    let o: Record<string, unknown>;
    try {
      o = JSON.parse(text) as Record<string, unknown>;
    } catch (e) {
      throw damaged(file, at, `line ${at} is not a record (${(e as Error).message})`);
    }
    if (o === null || typeof o !== 'object') throw damaged(file, at, `line ${at} is not a record`);
    if (typeof o.p !== 'string') throw damaged(file, at, `line ${at} is an unexpected record`);
    files.push(fileIn(o));
  }
  return files;
}

/** Packages whose file lines are not parsed yet → how many there are. */
const unparsed = new WeakMap<InstalledPackage, number>();

/** How many files `p` owns, without parsing its file lines when they have not been (`cpm list`). */
export function fileCount(p: InstalledPackage): number {
  return unparsed.get(p) ?? p.files.length;
}

/**
 * Gives `p` its files as they are first asked for: a command that reads only which packages are
 * installed (a no-op install, `cpm list`) decodes and parses none of a root's tens of thousands of
 * file lines (hundreds of ms of a 3.5 MB DB). The bytes were checked whole by their checksum.
 */
function lazyFiles(
  p: InstalledPackage,
  buf: Buffer,
  start: number,
  end: number,
  line: number,
  count: number,
  file: string,
): void {
  unparsed.set(p, count);
  const settle = (files: FileRecord[]): FileRecord[] => {
    unparsed.delete(p);
    Object.defineProperty(p, 'files', {
      value: files,
      writable: true,
      enumerable: true,
      configurable: true,
    });
    return files;
  };
  Object.defineProperty(p, 'files', {
    enumerable: true,
    configurable: true,
    get: () => settle(parseFiles(buf, start, end, line, file)),
    set: (files: FileRecord[]) => settle(files),
  });
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Bytes per piece of encode(). */
const CHUNK = 1 << 18;

/** Files by path; a list in order already (a transaction's new package) is not copied. */
function sortedFiles(files: FileRecord[]): readonly FileRecord[] {
  for (let i = 1; i < files.length; i++)
    if (!(files[i - 1]!.path < files[i]!.path))
      return files.slice().sort((a, b) => cmp(a.path, b.path));
  return files;
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
  if (f.generated) o.gen = 1;
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
  if (o.gen) f.generated = true;
  return f;
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
   * Reads a DB file's bytes (or text). Package lines are parsed here; each package's file lines
   * when they are first used (lazyFiles), except in a format-1 DB, which has no checksum, and when
   * `eager`: there every line is parsed now, so damage is found at load.
   */
  static parse(input: string | Buffer, file = DB_FILE, eager = false): InstalledDb {
    const buf = typeof input === 'string' ? Buffer.from(input, 'utf8') : input;
    const db = new InstalledDb();
    const { start, end, want, note } = checkIntegrity(buf, file);
    if (note) db.notes.push(note);
    let cur: InstalledPackage | null = null;
    let filesFrom = 0;
    let filesLine = 0;
    let filesBefore = 0;
    let nPkgs = 0;
    let nFiles = 0;
    const closeFiles = (upTo: number): void => {
      if (!cur) return;
      lazyFiles(cur, buf, filesFrom, upTo, filesLine, nFiles - filesBefore, file);
      if (note || eager) void cur.files; // format 1 or asked for: parsed now
    };
    let line = 1; // the header
    for (let pos = start; pos < end;) {
      const nl = buf.indexOf(NL, pos);
      const stop = nl < 0 || nl > end ? end : nl;
      line++;
      if (stop === pos) {
        pos = stop + 1;
        continue;
      }
      // the 4th byte tells a file line ({"p":…) from a package line ({"package":…) before the
      // whole prefix is compared: Buffer.compare with offsets is slow per call, 25k calls on a root
      const isPackage =
        buf[pos + 3] === PACKAGE_PREFIX[3] &&
        buf.compare(
          PACKAGE_PREFIX,
          0,
          PACKAGE_PREFIX.length,
          pos,
          Math.min(stop, pos + PACKAGE_PREFIX.length),
        ) === 0;
      if (!isPackage && cur) {
        nFiles++;
        pos = stop + 1;
        continue;
      }
      closeFiles(pos); // before this line's own errors: a format-1 DB reports damage in order
      let o: Record<string, unknown>;
      try {
        o = JSON.parse(buf.toString('utf8', pos, stop)) as Record<string, unknown>;
      } catch (e) {
        throw damaged(file, line, `line ${line} is not a record (${(e as Error).message})`);
      }
      if (o === null || typeof o !== 'object')
        throw damaged(file, line, `line ${line} is not a record`);
      if (typeof o.package !== 'string')
        throw damaged(file, line, `line ${line} is an unexpected record`);
      const at = { file, line };
      const id = o.package;
      cur = {
        id,
        spec: specFromJson(
          o.spec,
          (m) => new CpmError('E_DB', `${file}:${at.line}: package ${id}: ${m}`, { context: at }),
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
      nPkgs++;
      pos = stop + 1;
      filesFrom = pos;
      filesLine = line + 1;
      filesBefore = nFiles;
    }
    closeFiles(end);
    if (want && (want.packages !== nPkgs || want.files !== nFiles))
      throw damaged(
        file,
        undefined,
        `its last line promises ${want.packages} packages and ${want.files} files, the file holds ${nPkgs} and ${nFiles}`,
      );
    return db;
  }

  /**
   * The DB of `dbDir` (empty when there is none). `eager`: every file line is parsed now, for the
   * code that writes the root or the DB, which must find a damaged line before it changes anything.
   */
  static load(dbDir: string, eager = false): InstalledDb {
    const file = `${dbDir}/${DB_FILE}`;
    let text: Buffer;
    try {
      text = readFileSync(file);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return new InstalledDb();
      const mapped = fsError(e, { doing: 'reading the database', where: 'db' });
      if (mapped instanceof CpmError) throw mapped;
      throw new CpmError('E_DB', `cannot read ${file}: ${(e as Error).message}`, {
        context: { file },
      });
    }
    return InstalledDb.parse(text, file, eager);
  }

  /** The DB file's text (tests, small DBs); transactions write encode()'s pieces. */
  serialize(): string {
    return Buffer.concat(this.encode()).toString('utf8');
  }

  /**
   * The DB file's bytes, in pieces of about CHUNK bytes, trailer last: lines are encoded into the
   * current piece a few KiB at a time as they are made (one call per line cost more: this runs
   * once a process, before the code is optimised). Never one string of the whole DB: a root's is
   * megabytes, and one path outside Latin-1 (a certificate's name) makes such a string two bytes
   * a character, copied again to hash it and again to write it.
   */
  encode(): Buffer[] {
    const chunks: Buffer[] = [];
    const hash = createHash('sha256');
    let buf = Buffer.allocUnsafe(CHUNK);
    let off = 0;
    let text = '';
    const put = (): void => {
      // at most 3 bytes of UTF-8 per UTF-16 unit
      const most = text.length * 3;
      if (buf.length - off < most) {
        if (off > 0) {
          const b = buf.subarray(0, off);
          hash.update(b);
          chunks.push(b);
        }
        buf = Buffer.allocUnsafe(Math.max(CHUNK, most));
        off = 0;
      }
      off += buf.write(text, off, 'utf8');
      text = '';
    };
    const line = (l: string): void => {
      text += `${l}\n`;
      if (text.length >= 8192) put();
    };
    line(HEADER);
    let files = 0;
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
      line(JSON.stringify(o));
      for (const f of sortedFiles(p.files)) line(fileOut(f));
      files += p.files.length;
    }
    put();
    const last = buf.subarray(0, off);
    hash.update(last);
    chunks.push(last);
    // the trailer: a cut file (at a line boundary or not) or changed bytes are found on load
    const end = { packages: this.pkgs.size, files, sha256: hash.digest('hex') };
    chunks.push(Buffer.from(`${JSON.stringify({ [TRAILER_KEY]: end })}\n`, 'utf8'));
    return chunks;
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

/** Writes `data` (a text, or pieces of bytes in order) to `file` via a temp file + fsync + rename. */
export function writeFileAtomic(file: string, data: string | readonly Uint8Array[]): void {
  const tmp = `${file}.tmp`;
  faultPoint();
  const fd = openSync(tmp, 'w', 0o644);
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
