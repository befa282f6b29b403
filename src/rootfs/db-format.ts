/**
 * The bytes of the installed-package DB (docs/database.md, "Format"): format 3 written, formats
 * 1–3 read and checked. Format 3 puts every package line first, closed by a head line with the
 * head's own checksum, and each package's file lines after it, checked by a sha256 that its
 * package line carries: a command that needs only which packages are installed (a no-op install,
 * `cpm list`, a plan) reads the head and the last line, not a root's megabytes of file lines.
 */
import type { Hash } from 'node:crypto';
import { closeSync, constants as fsc, fstatSync, openSync, readSync } from 'node:fs';
import { CpmError } from '../errors.js';
import { fsError } from '../util/fs-errors.js';
import { nodeCrypto } from '../util/lazy-builtins.js';
import { sha256Hex } from '../util/sha256.js';
import { sortedDeep, specFromJson, specToJson } from '../package/codec.js';
import { finalizeFromJson } from '../package/finalize.js';
import { familyKey } from '../package/package.js';
import type { FileRecord, InstalledPackage } from './types.js';

const HEADER = '{"cpm-db":3}';
const HEADER_V2 = '{"cpm-db":2}';
const HEADER_V1 = '{"cpm-db":1}';
const HEADER_LINE = Buffer.from(`${HEADER}\n`);
const HEAD_KEY = 'cpm-db-head';
const MARK_KEY = 'files-of';
const END_KEY = 'cpm-db-end';

const NL = 0x0a;
/** How every package line starts (the writer's fixed key order); file lines start otherwise. */
const PACKAGE_PREFIX = Buffer.from('{"package":');
/** The head line, with the newline of the line before it. */
const HEAD_MARK = Buffer.from(`\n{"${HEAD_KEY}":`);
/** Bytes read first from a format-3 DB: a few packages' lines fit. */
const FIRST_READ = 16 << 10;
/** Bytes read from the end for the end line (≈ 80 bytes). */
const TAIL_READ = 256;
/** Bytes per piece of encodeDb(). */
const CHUNK = 1 << 18;

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

/** Lines in `buf` up to `end` (as split('\n') counts them, the empty string after a last newline dropped). */
function lineCount(buf: Buffer, end = buf.length): number {
  let n = 1;
  for (let i = buf.indexOf(NL); i >= 0 && i < end; i = buf.indexOf(NL, i + 1)) n++;
  return buf[end - 1] === NL ? n - 1 : n;
}

export function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The object under `key` of a one-key line such as the head or end line, or undefined. */
function keyedLine(text: string, key: string): Record<string, unknown> | undefined {
  if (!text.startsWith(`{"${key}":`)) return undefined;
  try {
    const v = (JSON.parse(text) as Record<string, unknown>)[key];
    return v !== null && typeof v === 'object' ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** What the DB's bytes give: its packages (files parsed when first used) and notes on its format. */
export interface Decoded {
  packages: InstalledPackage[];
  notes: string[];
}

// ---------------------------------------------------------------------------------------------
// records

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

/** What a format-3 package line says of its file lines. */
interface FilesMeta {
  count: number;
  sha256: string;
}

function packageOut(p: InstalledPackage, files?: FilesMeta): string {
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
  if (files) o.files = files;
  return JSON.stringify(o);
}

/** A package line's record; `meta`: format 3's, whose package lines say what their files are. */
function packageIn(
  buf: Buffer,
  start: number,
  stop: number,
  file: string,
  line: number,
  meta: boolean,
): { pkg: InstalledPackage; files?: FilesMeta } {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(buf.toString('utf8', start, stop)) as Record<string, unknown>;
  } catch (e) {
    throw damaged(file, line, `line ${line} is not a record (${(e as Error).message})`);
  }
  if (o === null || typeof o !== 'object')
    throw damaged(file, line, `line ${line} is not a record`);
  if (typeof o.package !== 'string')
    throw damaged(file, line, `line ${line} is an unexpected record`);
  const id = o.package;
  const at = { file, line };
  const pkg: InstalledPackage = {
    id,
    spec: specFromJson(
      o.spec,
      (m) => new CpmError('E_DB', `${file}:${line}: package ${id}: ${m}`, { context: at }),
    ),
    origin: String(o.origin ?? ''),
    imageDigest: String(o.imageDigest ?? ''),
    reason: o.reason === 'dependency' ? 'dependency' : 'explicit',
    layers: (o.layers as string[]) ?? [],
    files: [],
  };
  if (o.base) pkg.base = true;
  if (o.rootless) pkg.rootless = true;
  const fin = finalizeFromJson(o.finalize);
  if (fin) pkg.finalize = fin;
  if (!meta) return { pkg };
  const f = o.files as Partial<FilesMeta> | undefined;
  if (
    !f ||
    typeof f !== 'object' ||
    !Number.isSafeInteger(f.count) ||
    f.count! < 0 ||
    typeof f.sha256 !== 'string' ||
    !/^[0-9a-f]{64}$/.test(f.sha256)
  )
    throw damaged(file, line, `line ${line}: package ${id} does not say what its files are`);
  return { pkg, files: { count: f.count!, sha256: f.sha256 } };
}

/**
 * Refuses a second package of one family ("cat/name"): a root holds one version of each, and the
 * in-memory DB would keep one of the two silently. `seen`: family → the line that holds it.
 */
function oneOfFamily(
  seen: Map<string, number>,
  pkg: InstalledPackage,
  line: number,
  file: string,
): void {
  const fam = familyKey(pkg.spec);
  const first = seen.get(fam);
  if (first !== undefined)
    throw damaged(
      file,
      line,
      `line ${line}: package ${pkg.id} is a second version of ${fam} (line ${first} holds the first)`,
    );
  seen.set(fam, line);
}

/**
 * Whether a recorded path leaves the root: absolute, or with a ".." component. No writer of the
 * DB records one; fs-path refuses it at use too, but there as an internal error, not the DB's line.
 */
function outsideRoot(p: string): boolean {
  return p.charCodeAt(0) === 0x2f || (p.includes('..') && p.split('/').includes('..'));
}

/** Bytes decoded at a time by parseFiles (then to the end of the line). */
const BLOCK = 16 << 10;

/**
 * The file records of lines [start, end) of `buf`, the first being line `line` of `file`. Decoded
 * a block of lines at a time: one path outside ASCII (a certificate's name) makes a string two
 * bytes a character, twice as slow to decode and to parse, and only its block's string is.
 */
function parseFiles(
  buf: Buffer,
  start: number,
  end: number,
  line: number,
  file: string,
): FileRecord[] {
  const files: FileRecord[] = [];
  let at = line;
  for (let pos = start; pos < end;) {
    const nl = pos + BLOCK < end ? buf.indexOf(NL, pos + BLOCK) : -1;
    const cut = nl < 0 || nl >= end ? end : nl + 1;
    const lines = buf.toString('utf8', pos, cut).split('\n');
    for (let i = 0; i < lines.length; i++, at++) {
      const text = lines[i]!;
      if (text === '') continue;
      let o: Record<string, unknown>;
      try {
        o = JSON.parse(text) as Record<string, unknown>;
      } catch (e) {
        throw damaged(file, at, `line ${at} is not a record (${(e as Error).message})`);
      }
      if (o === null || typeof o !== 'object')
        throw damaged(file, at, `line ${at} is not a record`);
      if (typeof o.p !== 'string') throw damaged(file, at, `line ${at} is an unexpected record`);
      if (outsideRoot(o.p))
        throw damaged(file, at, `line ${at}: the path ${JSON.stringify(o.p)} is not in the root`);
      files.push(fileIn(o));
    }
    at--; // the empty string after the block's last newline is not a line
    pos = cut;
  }
  return files;
}

// ---------------------------------------------------------------------------------------------
// files parsed when first used

/**
 * File lists read from a format-3 DB → the bytes and sum of the lines they came from, which
 * encodeDb writes back as they are: a transaction on a root of 25k files would otherwise
 * re-encode and re-hash every package it does not touch (≈ 90 ms, twice with finalizers). Such a
 * list and its records are frozen, so what is written back is what was read: a change is a new
 * list (`files = files.filter(…)`), which is encoded.
 */
const sections = new WeakMap<readonly FileRecord[], { bytes: Buffer; sha256: string }>();

function sealed(files: FileRecord[], bytes: Buffer, sha256: string): FileRecord[] {
  for (let i = 0; i < files.length; i++) Object.freeze(files[i]);
  sections.set(Object.freeze(files), { bytes, sha256 });
  return files;
}

/** Whether `files` is a list read from a DB and unchanged since (it can be shared: it is frozen). */
export function isSealed(files: readonly FileRecord[]): boolean {
  return sections.has(files);
}

/** Packages whose file lines are not parsed yet → how many there are. */
const unparsed = new WeakMap<InstalledPackage, number>();

/** How many files `p` owns, without parsing its file lines when they have not been (`cpm list`). */
export function fileCount(p: InstalledPackage): number {
  return unparsed.get(p) ?? p.files.length;
}

/**
 * Gives `p` its files as they are first asked for, from `load()`: a command that reads only which
 * packages are installed (a no-op install, `cpm list`) decodes and parses none of a root's tens of
 * thousands of file lines. Setting `files` first drops the pending load.
 */
function filesOnUse(p: InstalledPackage, count: number, load: () => FileRecord[]): void {
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
    get: () => settle(load()),
    set: (files: FileRecord[]) => settle(files),
  });
}

// ---------------------------------------------------------------------------------------------
// formats 1 and 2: package lines and their file lines interleaved, one checksum over all (2)

/**
 * Checks the whole-file integrity of a format-1/2 DB: complete last line, trailer with the counts
 * and the sha256 of everything before it (format 2). Returns where the record lines are.
 */
function checkV2(
  buf: Buffer,
  file: string,
  v1: boolean,
): { start: number; end: number; want?: { packages: number; files: number } } {
  const first = buf.indexOf(NL);
  if (v1) return { start: first + 1, end: buf.length };
  const lastStart = buf.length < 2 ? 0 : buf.lastIndexOf(NL, buf.length - 2) + 1;
  const trailer = keyedLine(buf.toString('utf8', lastStart, buf.length - 1), END_KEY);
  if (!trailer) {
    const n = lineCount(buf);
    throw damaged(file, n, `truncated: it ends after line ${n} without its end-of-database line`);
  }
  // the bytes themselves: hashing a decoded string would encode it back to UTF-8 first
  if (sha256Hex(buf.subarray(0, lastStart)) !== trailer.sha256)
    throw damaged(file, lineCount(buf), 'its contents do not match the checksum in its last line');
  return {
    start: first + 1,
    end: lastStart,
    want: { packages: Number(trailer.packages), files: Number(trailer.files) },
  };
}

function decodeV2(buf: Buffer, file: string, eager: boolean, v1: boolean): InstalledPackage[] {
  const { start, end, want } = checkV2(buf, file, v1);
  const packages: InstalledPackage[] = [];
  const families = new Map<string, number>();
  let cur: InstalledPackage | null = null;
  let filesFrom = 0;
  let filesLine = 0;
  let filesBefore = 0;
  let nFiles = 0;
  const closeFiles = (upTo: number): void => {
    if (!cur) return;
    const [from, line] = [filesFrom, filesLine];
    filesOnUse(cur, nFiles - filesBefore, () => parseFiles(buf, from, upTo, line, file));
    if (v1 || eager) void cur.files; // format 1 has no checksum: parsed now
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
    cur = packageIn(buf, pos, stop, file, line, false).pkg;
    oneOfFamily(families, cur, line, file);
    packages.push(cur);
    pos = stop + 1;
    filesFrom = pos;
    filesLine = line + 1;
    filesBefore = nFiles;
  }
  closeFiles(end);
  if (want && (want.packages !== packages.length || want.files !== nFiles))
    throw damaged(
      file,
      undefined,
      `its last line promises ${want.packages} packages and ${want.files} files, the file holds ${packages.length} and ${nFiles}`,
    );
  return packages;
}

// ---------------------------------------------------------------------------------------------
// format 3: header, package lines, head line; then per package a marker and its file lines; end

/** The head of a format-3 DB: its packages and what each says of its file lines. */
interface Head {
  packages: InstalledPackage[];
  metas: FilesMeta[];
  files: number;
  /** Byte just after the head line: where the file sections begin. */
  end: number;
  /** Line number of the head line. */
  line: number;
}

/** Where the head line is in `buf`: [start, end) with its newline, or null when not (all) in it. */
function findHead(buf: Buffer): { start: number; end: number } | null {
  const at = buf.indexOf(HEAD_MARK);
  if (at < 0) return null;
  const nl = buf.indexOf(NL, at + 1);
  return nl < 0 ? null : { start: at + 1, end: nl + 1 };
}

/** Checks and parses the head, [0, where.end) of `buf`, found by findHead. */
function parseHead(buf: Buffer, where: { start: number; end: number }, file: string): Head {
  const head = keyedLine(buf.toString('utf8', where.start, where.end - 1), HEAD_KEY);
  const headLine = lineCount(buf, where.start) + 1;
  if (!head) throw damaged(file, headLine, `line ${headLine} is not a head line`);
  if (sha256Hex(buf.subarray(0, where.start)) !== head.sha256)
    throw damaged(
      file,
      headLine,
      `its package lines do not match the checksum in its head line (line ${headLine})`,
    );
  const packages: InstalledPackage[] = [];
  const families = new Map<string, number>();
  const metas: FilesMeta[] = [];
  let files = 0;
  let n = 1;
  for (let pos = buf.indexOf(NL) + 1; pos < where.start;) {
    const stop = buf.indexOf(NL, pos);
    n++;
    const { pkg, files: meta } = packageIn(buf, pos, stop, file, n, true);
    if (packages.length > 0 && !(packages[packages.length - 1]!.id < pkg.id))
      throw damaged(file, n, `line ${n}: package ${pkg.id} is out of order`);
    oneOfFamily(families, pkg, n, file);
    packages.push(pkg);
    metas.push(meta!);
    files += meta!.count;
    pos = stop + 1;
  }
  if (head.packages !== packages.length || head.files !== files)
    throw damaged(
      file,
      headLine,
      `its head line promises ${String(head.packages)} packages and ${String(head.files)} files, the package lines say ${packages.length} and ${files}`,
    );
  return { packages, metas, files, end: where.end, line: headLine };
}

/**
 * Why the last line (`last`, starting at byte `at` of a file of `size` bytes) is not the end line
 * that `head` calls for, or null when it is.
 */
function endProblem(last: string, at: number, size: number, head: Head): string | null {
  const end = keyedLine(last, END_KEY);
  if (!end) return 'truncated: its last line is not the end line';
  if (end.bytes !== at || at + Buffer.byteLength(last) + 1 !== size)
    return `its end line says ${String(end.bytes)} bytes come before it, there are ${at}`;
  if (end.packages !== head.packages.length || end.files !== head.files)
    return `its end line promises ${String(end.packages)} packages and ${String(end.files)} files, the head ${head.packages.length} and ${head.files}`;
  return null;
}

/** Why the whole file `buf` does not end as `head` calls for (its end line), or null. */
function wholeEndProblem(buf: Buffer, head: Head): string | null {
  if (buf[buf.length - 1] !== NL)
    return 'truncated in the middle of a line (the last line is incomplete)';
  const at = buf.lastIndexOf(NL, buf.length - 2) + 1;
  if (at < head.end) return 'truncated: it ends after its head line';
  return endProblem(buf.toString('utf8', at, buf.length - 1), at, buf.length, head);
}

/**
 * Reads the file lines of the whole file `buf`, whose head and end line were checked: each
 * package's marker line, then as many lines as its package line counts, whose sha256 must be the
 * one it gives. All are checked at once, the first time any package's files are used; each
 * package still waiting for its files is then given its section, parsed when first used.
 */
function attachBody(buf: Buffer, head: Head, file: string): void {
  const endAt = buf.lastIndexOf(NL, buf.length - 2) + 1;
  const found: Array<{ from: number; to: number; line: number }> = [];
  let pos = head.end;
  let line = head.line + 1;
  for (let i = 0; i < head.packages.length; i++) {
    const id = head.packages[i]!.id;
    const meta = head.metas[i]!;
    const nl = pos < endAt ? buf.indexOf(NL, pos) : -1;
    if (nl < 0 || buf.toString('utf8', pos, nl) !== `{"${MARK_KEY}":${JSON.stringify(id)}}`)
      throw damaged(file, line, `line ${line} should begin the files of ${id}`);
    pos = nl + 1;
    line++;
    const from = pos;
    const first = line;
    for (let k = 0; k < meta.count; k++) {
      const e = buf.indexOf(NL, pos);
      if (e < 0 || e >= endAt)
        throw damaged(
          file,
          line,
          `the files of ${id} end at line ${line - 1}, before the ${meta.count} its package line counts`,
        );
      // the writer never leaves one, and parseFiles would skip it: the count would then be wrong
      if (e === pos) throw damaged(file, line, `line ${line} is empty`);
      pos = e + 1;
      line++;
    }
    if (sha256Hex(buf.subarray(from, pos)) !== meta.sha256)
      throw damaged(
        file,
        first,
        `the files of ${id} (lines ${first}–${line - 1}) do not match the checksum in its package line`,
      );
    found.push({ from, to: pos, line: first });
  }
  if (pos !== endAt)
    throw damaged(file, line, `line ${line} is past the files its package lines count`);
  for (let i = 0; i < head.packages.length; i++) {
    const p = head.packages[i]!;
    if (!unparsed.has(p)) continue; // given its files already
    const { from, to, line: at } = found[i]!;
    const meta = head.metas[i]!;
    filesOnUse(p, meta.count, () =>
      sealed(parseFiles(buf, from, to, at, file), buf.subarray(from, to), meta.sha256),
    );
  }
}

/**
 * Gives the head's packages their files when first used: `read` then gives the whole file, its
 * head and end line checked, and attachBody checks and places the file lines.
 */
function bodyOnUse(head: Head, file: string, read: () => Buffer): void {
  for (let i = 0; i < head.packages.length; i++) {
    const p = head.packages[i]!;
    filesOnUse(p, head.metas[i]!.count, () => {
      attachBody(read(), head, file);
      return p.files; // attachBody gave p its section
    });
  }
}

/** Format 3 from the whole file's bytes: the file lines are checked when first used, or now when `eager`. */
function decodeV3(buf: Buffer, file: string, eager: boolean): InstalledPackage[] {
  const where = findHead(buf);
  if (!where) {
    const n = lineCount(buf);
    throw damaged(file, n, `truncated: it ends after line ${n} without its head line`);
  }
  const head = parseHead(buf, where, file);
  const why = wholeEndProblem(buf, head);
  if (why) throw damaged(file, lineCount(buf), why);
  bodyOnUse(head, file, () => buf);
  if (eager) for (const p of head.packages) void p.files;
  return head.packages;
}

/** The header line's check, common to every format. */
function headerOf(buf: Buffer, file: string): string {
  if (buf.length === 0) throw damaged(file, undefined, 'the file is empty (truncated to 0 bytes)');
  const first = buf.indexOf(NL);
  const header = buf.toString('utf8', 0, first < 0 ? buf.length : first);
  if (header !== HEADER && header !== HEADER_V2 && header !== HEADER_V1) {
    if (/^\{"cpm-db":\d+\}$/.test(header))
      // not damage: a newer cpm wrote it, and moving it aside would lose what it records
      throw new CpmError('E_DB', `${file}:1: format ${header} is newer than this cpm reads`, {
        hint: 'this root was written by a newer cpm: run that version (or a later one) on it',
        context: { file, line: 1 },
      });
    throw damaged(file, 1, 'not a cpm database (bad header)');
  }
  return header;
}

/** The DB from the whole file's bytes. */
export function decodeDb(buf: Buffer, file: string, eager: boolean): Decoded {
  const header = headerOf(buf, file);
  if (buf[buf.length - 1] !== NL)
    throw damaged(
      file,
      lineCount(buf),
      'truncated in the middle of a line (the last line is incomplete)',
    );
  if (header === HEADER) return { packages: decodeV3(buf, file, eager), notes: [] };
  const v1 = header === HEADER_V1;
  return {
    packages: decodeV2(buf, file, eager, v1),
    notes: v1
      ? [
          `${file} was written by an older cpm (format 1, no trailer): truncation cannot be detected until the next transaction rewrites it`,
        ]
      : [],
  };
}

/** Reads `length` bytes at `position` of `fd` (fewer only at the end of the file). */
function readAt(fd: number, length: number, position: number): Buffer {
  const buf = Buffer.allocUnsafe(length);
  let got = 0;
  while (got < length) {
    const n = readSync(fd, buf, got, length - got, position + got);
    if (n === 0) break;
    got += n;
  }
  return got === length ? buf : buf.subarray(0, got);
}

/**
 * The DB in `file`, or null when there is none. Unless `eager`, a format-3 DB is read from its
 * head and its last line only; its file lines are read when some package's files are first used,
 * from the file then on disk, which must have the same head (the sections are checked by the
 * head's sums: the same head means the same files). Whatever does not check out on that short
 * path is read whole, which names the damage. `eager`: every line is parsed now, for the code that
 * writes the root or the DB, which must find a damaged line before it changes anything.
 */
export function readDb(file: string, eager: boolean): Decoded | null {
  let head: Head | null = null;
  let headBytes: Buffer | null = null;
  let whole: Buffer | null = null;
  const opened = openDb(file);
  if (opened === null) return null;
  const { fd, size } = opened;
  try {
    let buf = readAt(fd, eager ? size : Math.min(size, FIRST_READ), 0);
    if (buf.length < size && buf.subarray(0, HEADER_LINE.length).equals(HEADER_LINE)) {
      let where = findHead(buf);
      while (!where && buf.length < size) {
        const more = Math.min(size, buf.length * 4) - buf.length;
        buf = Buffer.concat([buf, readAt(fd, more, buf.length)]);
        where = findHead(buf);
      }
      if (where && where.end < size) {
        const at = Math.max(where.end, size - TAIL_READ);
        const tail = readAt(fd, size - at, at);
        const lastAt = tail.lastIndexOf(NL, tail.length - 2) + 1;
        // the last line whole in the tail, or the tail all of it
        if (tail[tail.length - 1] === NL && (lastAt > 0 || at === where.end)) {
          head = parseHead(buf, where, file);
          const last = tail.toString('utf8', lastAt, tail.length - 1);
          if (endProblem(last, at + lastAt, size, head)) head = null;
          else headBytes = buf.subarray(0, where.end);
        }
      }
    }
    if (!head)
      whole =
        buf.length >= size ? buf : Buffer.concat([buf, readAt(fd, size - buf.length, buf.length)]);
  } catch (e) {
    throw e instanceof CpmError ? e : readFailure(e, file);
  } finally {
    closeSync(fd);
  }
  if (whole) return decodeDb(whole, file, eager);
  // the short path: the packages now, their file lines when first asked for, from the file then
  // on disk: the same head means the same file lines (their sums are in it)
  const h = head!;
  const hb = headBytes!;
  bodyOnUse(h, file, () => {
    let buf: Buffer = Buffer.alloc(0);
    const again = openDb(file);
    if (again !== null)
      try {
        buf = readAt(again.fd, again.size, 0);
      } catch (e) {
        throw readFailure(e, file);
      } finally {
        closeSync(again.fd);
      }
    if (buf.length < hb.length || !buf.subarray(0, hb.length).equals(hb))
      throw new CpmError(
        'E_LOCKED',
        `${file} changed while cpm was reading it: another cpm committed a transaction meanwhile`,
        { context: { file }, hint: 'run the command again' },
      );
    const why = wholeEndProblem(buf, h);
    if (why) throw damaged(file, lineCount(buf), why);
    return buf;
  });
  return { packages: h.packages, notes: [] };
}

/**
 * The DB file opened for reading, or null when there is none. Never through a symlink, and only a
 * regular file: cpm runs as root, and a finalizer can put anything there (a link to a host file,
 * a FIFO that would block the read).
 */
function openDb(file: string): { fd: number; size: number } | null {
  let fd: number;
  try {
    fd = openSync(file, fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return null;
    if (code === 'ELOOP')
      throw new CpmError('E_UNSAFE_ENTRY', `refusing the database ${file}: it is a symlink`, {
        context: { path: file },
        hint: 'cpm does not follow symlinks to its database; put the real file there, or point --db-dir (database_path) at its directory',
      });
    throw readFailure(e, file);
  }
  let st;
  try {
    st = fstatSync(fd);
  } catch (e) {
    closeSync(fd);
    throw readFailure(e, file);
  }
  if (!st.isFile()) {
    closeSync(fd);
    throw damaged(file, undefined, 'it is not a regular file');
  }
  return { fd, size: st.size };
}

/** An error reading the DB file, as a CpmError naming it. */
function readFailure(e: unknown, file: string): CpmError {
  const mapped = fsError(e, { doing: 'reading the database', where: 'db', path: file });
  if (mapped instanceof CpmError) return mapped;
  return new CpmError('E_DB', `cannot read ${file}: ${(e as Error).message}`, {
    context: { file },
  });
}

// ---------------------------------------------------------------------------------------------
// writing

/** Files by path; a list in order already (a transaction's new package) is not copied. */
function sortedFiles(files: FileRecord[]): readonly FileRecord[] {
  for (let i = 1; i < files.length; i++)
    if (!(files[i - 1]!.path < files[i]!.path))
      return files.slice().sort((a, b) => cmp(a.path, b.path));
  return files;
}

/**
 * Lines into pieces of about CHUNK bytes, a few KiB encoded at a time (one call per line cost
 * more: this runs once a process, before the code is optimised), hashing a section's bytes as
 * they are encoded. Never one string of the whole DB: a root's is megabytes, and one path outside
 * Latin-1 (a certificate's name) makes such a string two bytes a character.
 */
class Pieces {
  readonly chunks: Buffer[] = [];
  bytes = 0;
  private buf: Buffer | null = null;
  private off = 0;
  private text = '';
  private hash: Hash | null = null;

  line(l: string): void {
    this.text += `${l}\n`;
    if (this.text.length >= 8192) this.put();
  }

  /** Starts hashing what comes next. */
  begin(): void {
    this.put();
    this.hash = nodeCrypto().createHash('sha256');
  }

  /** The sha256 of what came since begin(). */
  end(): string {
    this.put();
    const sum = this.hash!.digest('hex');
    this.hash = null;
    return sum;
  }

  /** Bytes as they are (a section read from the DB), after what came before. */
  raw(bytes: Buffer): void {
    this.put();
    if (this.buf && this.off > 0) {
      this.chunks.push(this.buf.subarray(0, this.off));
      this.buf = this.buf.subarray(this.off);
      this.off = 0;
    }
    this.chunks.push(bytes);
    this.bytes += bytes.length;
  }

  finish(): Buffer[] {
    this.put();
    if (this.buf && this.off > 0) this.chunks.push(this.buf.subarray(0, this.off));
    this.buf = null;
    return this.chunks;
  }

  private put(): void {
    if (this.text === '') return;
    // at most 3 bytes of UTF-8 per UTF-16 unit
    const most = this.text.length * 3;
    if (!this.buf || this.buf.length - this.off < most) {
      if (this.buf && this.off > 0) this.chunks.push(this.buf.subarray(0, this.off));
      this.buf = Buffer.allocUnsafe(Math.max(CHUNK, most));
      this.off = 0;
    }
    const from = this.off;
    this.off += this.buf.write(this.text, from, 'utf8');
    this.hash?.update(this.buf.subarray(from, this.off));
    this.bytes += this.off - from;
    this.text = '';
  }
}

/**
 * The DB file's bytes for `packages` (sorted by id), in pieces, format 3: the file sections are
 * encoded first, since each package line carries its section's count and sha256.
 */
export function encodeDb(packages: readonly InstalledPackage[]): Buffer[] {
  const body = new Pieces();
  const metas: FilesMeta[] = [];
  let files = 0;
  for (const p of packages) {
    body.line(JSON.stringify({ [MARK_KEY]: p.id }));
    const read = sections.get(p.files);
    if (read) {
      body.raw(read.bytes);
      metas.push({ count: p.files.length, sha256: read.sha256 });
      files += p.files.length;
      continue;
    }
    body.begin();
    const list = sortedFiles(p.files);
    for (const f of list) body.line(fileOut(f));
    metas.push({ count: list.length, sha256: body.end() });
    files += list.length;
  }
  const head = new Pieces();
  head.begin();
  head.line(HEADER);
  for (let i = 0; i < packages.length; i++) head.line(packageOut(packages[i]!, metas[i]));
  const sha256 = head.end();
  head.line(JSON.stringify({ [HEAD_KEY]: { packages: packages.length, files, sha256 } }));
  const out = [...head.finish(), ...body.finish()];
  const bytes = head.bytes + body.bytes;
  // a cut file (at a line boundary or not) shows in its length and its last line
  out.push(
    Buffer.from(`${JSON.stringify({ [END_KEY]: { packages: packages.length, files, bytes } })}\n`),
  );
  return out;
}
