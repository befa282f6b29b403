/**
 * The transaction journal: the full list of filesystem operations, written before the first one
 * runs. Every operation is a single rename/link/mkdir whose "done" state can be read back from the
 * disk, so recovery after a crash at any point can undo (before the DB commit) or finish (after it).
 *
 *   mkdir p     — new directory               done ⇔ p exists; undo: rmdir p
 *   stash p b   — rename(p, b), moving away    done ⇔ b exists; undo: rename(b, p)
 *   keep p b    — link(p, b), a backup copy    done ⇔ b exists; undo: rename(b, p)
 *   place s p   — rename(s, p), atomic replace done ⇔ s missing; undo: rename(p, s)
 *   meta p …    — chown/chmod a directory       undo: restore the recorded old values
 *
 * Every path is root-relative and canonical (the stage and backups live in ROOT/.cpm-tx), so a
 * root moved or mounted elsewhere after a crash recovers at its new place, and a journal cannot
 * name anything outside the root: paths are checked when read and resolved through RootPaths
 * (no symlinked parent) when used. The file is self-checking: a header line with the body's byte
 * count and sha256, so truncation and garbage are told apart from a valid journal.
 *
 * The commit point is rename(DBDIR/installed.new → DBDIR/installed): if installed.new still
 * exists the transaction did not commit and is rolled back, otherwise it is rolled forward.
 *
 * A fresh-root transaction (one package into a root holding nothing but cpm's DB directory)
 * writes its entries at their final paths and keeps a different journal, `cpm-journal 3`: a
 * header, then the root-relative path of every entry appended before the entry is created
 * (FreshJournalWriter). Undoing it removes the listed paths that exist, deepest first; it
 * committed when the DB lists its package (see docs/database.md).
 */
import {
  chmodSync,
  closeSync,
  existsSync,
  lchownSync,
  linkSync,
  lstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  rmdirSync,
  unlinkSync,
  utimesSync,
  writeSync,
  type Stats,
} from 'node:fs';
import path from 'node:path';
import { CpmError } from '../errors.js';
import { InstalledDb, DB_FILE, writeFileAtomic } from './db.js';
import { faultPoint } from './fault.js';
import { entryComponents, RootPaths, UnsafePathError } from './fs-path.js';
import { lockHolder } from './lock.js';
import { sha256Hex } from '../util/sha256.js';

/** The stage (staged files, backups) under the root: one component, removed whole. */
export const STAGE_DIR = '.cpm-tx';

export type Op =
  | { k: 'mkdir'; p: string }
  | { k: 'stash'; p: string; b: string }
  | { k: 'keep'; p: string; b: string }
  | { k: 'place'; s: string; p: string }
  | {
      k: 'meta';
      p: string;
      mode: number;
      uid: number;
      gid: number;
      mtime?: number;
      old?: { mode: number; uid: number; gid: number };
    };

export interface Journal {
  v: 2;
  ops: Op[];
  /** Directories to remove after commit when empty and unowned (deepest first). */
  rmdirs: string[];
}

export const JOURNAL_FILE = 'journal';
export const NEW_DB_FILE = 'installed.new';
const MAGIC = 'cpm-journal 2';
const MAGIC_FRESH = 'cpm-journal 3';

const isRoot = process.getuid?.() === 0;

function lexists(p: string): boolean {
  try {
    lstatSync(p);
    return true;
  } catch {
    return false;
  }
}

/** The journal file: "cpm-journal 2 BYTES SHA256\n" then the JSON body. */
export function encodeJournal(j: Journal): string {
  const body = JSON.stringify(j);
  const sum = sha256Hex(body);
  return `${MAGIC} ${Buffer.byteLength(body)} ${sum}\n${body}`;
}

export function writeJournal(dbDir: string, j: Journal): void {
  writeFileAtomic(`${dbDir}/${JOURNAL_FILE}`, encodeJournal(j));
}

/** How to get out of a journal cpm cannot use. */
function corruptHint(file: string, root?: string): string {
  const r = root ? ` --root ${root}` : '';
  return (
    `the interrupted transaction cannot be replayed from it. Check the root (cpm verify${r}), ` +
    `then remove ${file} and run cpm recover${r} to clear the other leftovers; ` +
    `cpm reclaim${r} records packages whose files are on disk`
  );
}

/** Reads and checks the journal; null when there is none. `root` only words the hint. */
export function readJournal(dbDir: string, root?: string): Journal | FreshJournal | null {
  const file = `${dbDir}/${JOURNAL_FILE}`;
  let buf: Buffer;
  try {
    buf = readFileSync(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
  const bad = (why: string): CpmError =>
    new CpmError('E_DB', `${file}: unusable transaction journal: ${why}`, {
      context: { file },
      hint: corruptHint(file, root),
    });
  const nl = buf.indexOf(0x0a);
  const head = buf.subarray(0, nl < 0 ? Math.min(buf.length, 200) : nl).toString('latin1');
  if (buf.length === 0) throw bad('the file is empty (truncated)');
  if (head === MAGIC_FRESH) {
    try {
      return parseFreshJournal(buf.subarray(nl + 1));
    } catch (e) {
      throw bad((e as Error).message);
    }
  }
  const m = /^cpm-journal 2 (\d+) ([0-9a-f]{64})$/.exec(head);
  if (!m) {
    if (head.startsWith('cpm-journal ')) throw bad(`unknown version (${head.slice(0, 40)})`);
    throw bad('no cpm-journal header (garbage, or written by another program)');
  }
  const body = buf.subarray(nl + 1);
  const want = Number(m[1]);
  if (body.length < want) throw bad(`truncated: ${body.length} of ${want} bytes`);
  if (body.length > want) throw bad(`${body.length - want} bytes after the end`);
  if (sha256Hex(body) !== m[2]) throw bad('checksum mismatch (the contents are corrupt)');
  let j: unknown;
  try {
    j = JSON.parse(body.toString('utf8'));
  } catch (e) {
    throw bad(`invalid JSON: ${(e as Error).message}`);
  }
  try {
    return validJournal(j);
  } catch (e) {
    throw bad((e as Error).message);
  }
}

/** A canonical root-relative path: no "", ".", ".." components, not absolute, no NUL. */
function relPath(v: unknown, what: string): string {
  if (typeof v !== 'string') throw new Error(`${what}: not a path`);
  let comps: string[];
  try {
    comps = entryComponents(v);
  } catch (e) {
    throw new Error(`${what} ${JSON.stringify(v)}: ${(e as Error).message}, outside the root`);
  }
  if (comps.length === 0 || comps.join('/') !== v)
    throw new Error(`${what} ${JSON.stringify(v)}: not a canonical root-relative path`);
  return v;
}

function stagePath(v: unknown, what: string): string {
  const p = relPath(v, what);
  if (!p.startsWith(`${STAGE_DIR}/`)) throw new Error(`${what} ${p}: not in ${STAGE_DIR}`);
  return p;
}

function int(v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0)
    throw new Error(`${what}: not a number`);
  return v;
}

/** Checks the shape of a parsed journal; every path must stay inside the root. */
export function validJournal(j: unknown): Journal {
  if (!j || typeof j !== 'object' || Array.isArray(j)) throw new Error('not a journal object');
  const o = j as Record<string, unknown>;
  if (o.v !== 2) throw new Error(`unknown journal version ${JSON.stringify(o.v)}`);
  if (!Array.isArray(o.ops)) throw new Error('no operation list');
  if (!Array.isArray(o.rmdirs)) throw new Error('no directory list');
  const ops: Op[] = o.ops.map((x: unknown, i: number): Op => {
    const w = `operation ${i + 1}`;
    if (!x || typeof x !== 'object') throw new Error(`${w}: not an object`);
    const r = x as Record<string, unknown>;
    switch (r.k) {
      case 'mkdir':
        return { k: 'mkdir', p: relPath(r.p, w) };
      case 'stash':
      case 'keep':
        return { k: r.k, p: relPath(r.p, w), b: stagePath(r.b, w) };
      case 'place':
        return { k: 'place', s: relPath(r.s, w), p: relPath(r.p, w) };
      case 'meta': {
        const op: Op = {
          k: 'meta',
          p: relPath(r.p, w),
          mode: int(r.mode, w),
          uid: int(r.uid, w),
          gid: int(r.gid, w),
        };
        if (r.mtime !== undefined) op.mtime = int(r.mtime, w);
        if (r.old !== undefined) {
          const old = r.old as Record<string, unknown>;
          op.old = { mode: int(old?.mode, w), uid: int(old?.uid, w), gid: int(old?.gid, w) };
        }
        return op;
      }
      default:
        throw new Error(`${w}: unknown kind ${JSON.stringify(r.k)}`);
    }
  });
  const rmdirs = o.rmdirs.map((d: unknown, i: number) => relPath(d, `directory ${i + 1}`));
  return { v: 2, ops, rmdirs };
}

/** A directory of the root that was there before a fresh-root transaction, as it was. */
export interface DirMeta {
  p: string;
  mode: number;
  uid: number;
  gid: number;
}

/** What the header line of a `cpm-journal 3` holds. */
export interface FreshHeader {
  kind: 'fresh';
  /** The one package installed: the transaction committed when the DB lists it. */
  package: string;
  /** Directories that were there (the way to the DB directory): their metadata to restore. */
  dirs: DirMeta[];
}

/** A fresh-root journal as read back: the header and every path appended so far. */
export interface FreshJournal extends FreshHeader {
  v: 3;
  /** Paths that may have been created, in the order they were appended (repeats possible). */
  paths: string[];
}

/**
 * The journal of a fresh-root transaction, written ahead of the entries: the header (fsynced)
 * before anything is created, then each batch of paths in one append before any of them is
 * created. A process killed at any point leaves a journal naming everything it created.
 */
export class FreshJournalWriter {
  private readonly fd: number;
  private pending = '';
  private failed: unknown = null;
  constructor(dbDir: string, head: FreshHeader) {
    const file = `${dbDir}/${JOURNAL_FILE}`;
    writeFileAtomic(file, `${MAGIC_FRESH}\n${JSON.stringify(head)}\n`);
    this.fd = openSync(file, 'a');
  }

  /** A path about to be created: appended with the next flush(). */
  note(rel: string): void {
    this.pending += `${JSON.stringify(rel)}\n`;
  }

  /**
   * Appends what was noted; call before creating any of it. A failed append fails every later
   * one too: its paths (some queued for the writer thread) must never be created, and a torn
   * line stays the last one.
   */
  flush(): void {
    if (this.failed !== null) throw this.failed;
    if (this.pending === '') return;
    const buf = Buffer.from(this.pending);
    this.pending = '';
    try {
      faultPoint();
      let off = 0;
      while (off < buf.length) off += writeSync(this.fd, buf, off);
    } catch (e) {
      this.failed = e;
      throw e;
    }
  }

  close(): void {
    closeSync(this.fd);
  }
}

/** The body after the `cpm-journal 3` line: header JSON, then one JSON string per line. */
function parseFreshJournal(body: Buffer): FreshJournal {
  const lines = body.toString('utf8').split('\n');
  // a complete journal ends with a line break; a piece after the last one is an append cut
  // short, and nothing it names was created
  lines.pop();
  const headText = lines.shift();
  if (headText === undefined) throw new Error('truncated: no header after the first line');
  let h: Record<string, unknown>;
  try {
    h = JSON.parse(headText) as Record<string, unknown>;
  } catch (e) {
    throw new Error(`invalid header: ${(e as Error).message}`);
  }
  if (!h || typeof h !== 'object' || h.kind !== 'fresh')
    throw new Error(`unknown kind ${JSON.stringify(h?.kind)}`);
  if (typeof h.package !== 'string' || h.package === '')
    throw new Error('no package in the header');
  if (!Array.isArray(h.dirs)) throw new Error('no directory list in the header');
  const dirs = h.dirs.map((x: unknown, i: number): DirMeta => {
    const w = `directory ${i + 1}`;
    const r = (x ?? {}) as Record<string, unknown>;
    return { p: relPath(r.p, w), mode: int(r.mode, w), uid: int(r.uid, w), gid: int(r.gid, w) };
  });
  const paths = lines.map((l, i) => {
    let v: unknown;
    try {
      v = JSON.parse(l);
    } catch {
      throw new Error(`line ${i + 3}: not a JSON string`);
    }
    return relPath(v, `path on line ${i + 3}`);
  });
  return { v: 3, kind: 'fresh', package: h.package, dirs, paths };
}

/**
 * Undoes a fresh-root transaction: removes every journalled path that exists, deepest first,
 * each as a canonical path inside the root (a parent that is not a real directory now means the
 * path is not there: nothing is reached through a symlink), and puts back the metadata of the
 * directories that were there. Returns the directories left because they are not empty: files
 * cpm did not create are in them.
 */
export function rollBackFresh(
  paths: RootPaths,
  j: FreshJournal,
  dbDir: string,
): { removed: number; left: string[] } {
  // cpm's own directory, the way to it and the directories that were there are never removed,
  // whatever a damaged journal lists
  const db = path.relative(paths.root, dbDir).split(path.sep).join('/');
  const inside = db !== '' && db !== '..' && !db.startsWith('../') && !path.isAbsolute(db);
  const kept = new Set(j.dirs.map((d) => d.p));
  const keep = (p: string): boolean =>
    kept.has(p) || (inside && (p === db || db.startsWith(`${p}/`) || p.startsWith(`${db}/`)));
  // reverse code-unit order puts every "a/…" before "a"
  const all = [...new Set(j.paths)]
    .filter((p) => !keep(p))
    .sort()
    .reverse();
  const left: string[] = [];
  let removed = 0;
  guarded(paths, () => {
    for (const p of all) {
      const st = paths.lstat(p);
      if (!st) continue;
      try {
        if (st.isDirectory()) rmdirSync(paths.abs(p));
        else unlinkSync(paths.abs(p));
        removed++;
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'ENOTEMPTY' || code === 'EEXIST') left.push(p);
        else if (code !== 'ENOENT') throw e;
      }
    }
    for (const d of j.dirs) {
      const st = paths.lstat(d.p);
      if (!st || !st.isDirectory()) continue;
      const { p } = realDir(paths, d.p);
      if (isRoot && (st.uid !== d.uid || st.gid !== d.gid)) lchownSync(p, d.uid, d.gid);
      if ((st.mode & 0o7777) !== d.mode) chmodSync(p, d.mode);
    }
  });
  return { removed, left: left.sort() };
}

/** What a fresh-root roll-back did, for `did` lines and warnings. */
export function freshRollBackNote(r: { removed: number; left: string[] }): string[] {
  return [
    `rolled back an interrupted fresh-root install (${r.removed} created paths removed)`,
    ...r.left.map((p) => `left /${p}: not empty, it holds files cpm did not create`),
  ];
}

/** A path of the journal could not be used safely: the root changed under cpm. */
function unsafe(root: string, e: UnsafePathError): CpmError {
  return new CpmError('E_UNSAFE_ENTRY', `refusing to work through ${root}: ${e.message}`, {
    context: { path: root },
    hint: 'a directory cpm manages was replaced by a symlink or a file; restore it, then retry',
  });
}

/** Runs `fn` turning an unsafe path into a CpmError. */
export function guarded<T>(paths: RootPaths, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof UnsafePathError) throw unsafe(paths.root, e);
    throw e;
  }
}

/** chmod/utimes follow symlinks: the directory itself must be one, right now. */
function realDir(paths: RootPaths, rel: string): { p: string; st: Stats } {
  return paths.realDir(rel);
}

/** Runs one operation (forward). */
export function doOp(paths: RootPaths, op: Op): void {
  faultPoint();
  guarded(paths, () => {
    switch (op.k) {
      case 'mkdir':
        mkdirSync(paths.abs(op.p), { mode: 0o700 });
        return;
      case 'stash':
        renameSync(paths.abs(op.p), paths.abs(op.b));
        return;
      case 'keep':
        linkSync(paths.abs(op.p), paths.abs(op.b));
        return;
      case 'place':
        renameSync(paths.abs(op.s), paths.abs(op.p));
        return;
      case 'meta': {
        const { p, st } = realDir(paths, op.p);
        // a new directory mostly has its owner already (chown of a directory keeps its mode)
        if (isRoot && (st.uid !== op.uid || st.gid !== op.gid)) lchownSync(p, op.uid, op.gid);
        chmodSync(p, op.mode);
        if (op.mtime !== undefined) utimesSync(p, op.mtime, op.mtime);
        return;
      }
    }
  });
}

/** Undoes one operation if (and only if) it was done; safe to repeat. */
export function undoOp(paths: RootPaths, op: Op): void {
  guarded(paths, () => {
    switch (op.k) {
      case 'mkdir':
        try {
          rmdirSync(paths.abs(op.p));
        } catch (e) {
          const code = (e as NodeJS.ErrnoException).code;
          if (code !== 'ENOENT') throw e;
        }
        return;
      case 'stash':
      case 'keep': {
        const b = paths.abs(op.b);
        if (lexists(b)) renameSync(b, paths.abs(op.p));
        return;
      }
      case 'place': {
        const s = paths.abs(op.s);
        const p = paths.abs(op.p);
        if (!lexists(s) && lexists(p)) renameSync(p, s);
        return;
      }
      case 'meta': {
        if (!op.old || !paths.lstat(op.p)) return;
        const { p } = realDir(paths, op.p);
        if (isRoot) lchownSync(p, op.old.uid, op.old.gid);
        chmodSync(p, op.old.mode);
        return;
      }
    }
  });
}

/** Undoes the first `done` operations (all when omitted), newest first. */
export function rollBack(paths: RootPaths, j: Journal, done = j.ops.length): void {
  for (let i = Math.min(done, j.ops.length) - 1; i >= 0; i--) undoOp(paths, j.ops[i]!);
}

/** Removes ROOT/.cpm-tx whole; a symlink there is removed itself, never followed. */
export function removeStage(root: string): boolean {
  const p = path.join(root, STAGE_DIR);
  if (!lexists(p)) return false;
  rmSync(p, { recursive: true, force: true });
  return true;
}

/**
 * After the commit: drop emptied directories, backups and staging. Idempotent. `committed`: the
 * DB just committed, when the caller has it in memory (a transaction); recovery reads it.
 */
export function rollForward(
  paths: RootPaths,
  dbDir: string,
  j: Journal,
  committed?: InstalledDb,
): void {
  // large: read only when needed
  const db = j.rmdirs.length > 0 ? (committed ?? InstalledDb.load(dbDir, true)) : null;
  guarded(paths, () => {
    for (const d of j.rmdirs) {
      if (db!.owners(d).length > 0) continue;
      try {
        faultPoint();
        rmdirSync(paths.abs(d));
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code !== 'ENOENT' && code !== 'ENOTEMPTY' && code !== 'EEXIST' && code !== 'ENOTDIR')
          throw e;
      }
    }
  });
  faultPoint();
  removeStage(paths.root);
  faultPoint();
  unlinkSync(`${dbDir}/${JOURNAL_FILE}`);
}

export type RecoveryResult = 'clean' | 'rolled-back' | 'rolled-forward';

export interface Recovery {
  result: RecoveryResult;
  /** What was done, one line each ("removed the stage directory /r/.cpm-tx"). */
  did: string[];
}

/** Leftovers of a transaction without a journal: files that never became the DB. */
const DB_LEFTOVERS = [NEW_DB_FILE, `${DB_FILE}.tmp`, `${NEW_DB_FILE}.tmp`, `${JOURNAL_FILE}.tmp`];

/**
 * Brings a root back to a consistent state after an interrupted transaction. Call with the lock
 * held. Every leftover (journal, stage, installed.new, temp files) is handled and named in `did`.
 */
export function recoverWithLock(root: string, dbDir: string): Recovery {
  const paths = new RootPaths(root);
  const did: string[] = [];
  const j = readJournal(dbDir, root);
  let result: RecoveryResult = 'clean';
  if (j?.v === 3) {
    // committed ⇔ the DB lists the package (it listed none when the journal was begun)
    if (InstalledDb.load(dbDir).get(j.package)) {
      unlinkSync(`${dbDir}/${JOURNAL_FILE}`);
      did.push('finished an interrupted fresh-root install that had committed');
      return { result: 'rolled-forward', did: [...did, ...cleanLeftovers(root, dbDir)] };
    }
    did.push(...freshRollBackNote(rollBackFresh(paths, j, dbDir)));
    unlinkSync(`${dbDir}/${JOURNAL_FILE}`);
    result = 'rolled-back';
  } else if (j && existsSync(`${dbDir}/${NEW_DB_FILE}`)) {
    rollBack(paths, j);
    // journal first: without it, a leftover installed.new is just cleaned up next time
    unlinkSync(`${dbDir}/${JOURNAL_FILE}`);
    did.push(`rolled back an interrupted transaction (${j.ops.length} operations undone)`);
    result = 'rolled-back';
  } else if (j) {
    rollForward(paths, dbDir, j);
    did.push('finished an interrupted transaction that had committed');
    return { result: 'rolled-forward', did: [...did, ...cleanLeftovers(root, dbDir)] };
  }
  did.push(...cleanLeftovers(root, dbDir));
  return { result, did };
}

function cleanLeftovers(root: string, dbDir: string): string[] {
  const did: string[] = [];
  if (removeStage(root)) did.push(`removed the stage directory ${path.join(root, STAGE_DIR)}`);
  for (const f of DB_LEFTOVERS) {
    const p = `${dbDir}/${f}`;
    if (!lexists(p)) continue;
    rmSync(p, { force: true });
    did.push(`removed ${p} (never committed)`);
  }
  return did;
}

/**
 * What an unfinished transaction left in a root: the journal, the uncommitted DB, the stage, the
 * lock (its holder alive: a transaction is running; gone: killed). Empty when there is none.
 * Readers that must see a consistent root (cpm image, cpm verify) refuse when it is not empty.
 */
export function unfinishedTransaction(root: string, dbDir: string): string[] {
  const out: string[] = [];
  const holder = lockHolder(dbDir);
  if (holder) out.push(holder.alive ? `running (pid ${holder.pid})` : `lock of pid ${holder.pid}`);
  if (lexists(`${dbDir}/${JOURNAL_FILE}`)) out.push('journal');
  if (lexists(`${dbDir}/${NEW_DB_FILE}`)) out.push(NEW_DB_FILE);
  if (lexists(path.join(root, STAGE_DIR))) out.push(STAGE_DIR);
  return out;
}

/** unfinishedTransaction() as an E_LOCKED refusal for `what` ("cpm image", "cpm verify"). */
export function refuseUnfinished(root: string, dbDir: string, what: string): void {
  const left = unfinishedTransaction(root, dbDir);
  if (left.length === 0) return;
  const running = left[0]!.startsWith('running');
  throw new CpmError(
    'E_LOCKED',
    running
      ? `${root}: a transaction is ${left[0]}; ${what} needs the root at rest`
      : `${root} has an unfinished transaction (left: ${left.join(', ')}); ${what} would see a half-changed root`,
    {
      context: { path: root, left },
      hint: running
        ? 'wait for it to finish, then retry'
        : `run cpm recover --root ${root} first (it rolls back or finishes the transaction and clears the leftovers)`,
    },
  );
}
