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
 * The commit point is rename(DBDIR/installed.new → DBDIR/installed): if installed.new still
 * exists the transaction did not commit and is rolled back, otherwise it is rolled forward.
 */
import {
  chmodSync,
  existsSync,
  lchownSync,
  linkSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  renameSync,
  rmSync,
  rmdirSync,
  unlinkSync,
  utimesSync,
} from 'node:fs';
import { CpmError } from '../errors.js';
import { InstalledDb, DB_FILE, writeFileAtomic } from './db.js';
import { faultPoint } from './fault.js';

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
  v: 1;
  root: string;
  stageDir: string;
  ops: Op[];
  /** Directories to remove after commit when empty and unowned (deepest first). */
  rmdirs: string[];
}

export const JOURNAL_FILE = 'journal';
export const NEW_DB_FILE = 'installed.new';

const isRoot = process.getuid?.() === 0;

function lexists(p: string): boolean {
  try {
    lstatSync(p);
    return true;
  } catch {
    return false;
  }
}

export function writeJournal(dbDir: string, j: Journal): void {
  writeFileAtomic(`${dbDir}/${JOURNAL_FILE}`, JSON.stringify(j));
}

export function readJournal(dbDir: string): Journal | null {
  let text: string;
  try {
    text = readFileSync(`${dbDir}/${JOURNAL_FILE}`, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
  try {
    return JSON.parse(text) as Journal;
  } catch (e) {
    throw new CpmError(
      'E_DB',
      `${dbDir}/${JOURNAL_FILE}: corrupt journal: ${(e as Error).message}`,
      {
        context: { file: `${dbDir}/${JOURNAL_FILE}` },
      },
    );
  }
}

/** Runs one operation (forward). */
export function doOp(op: Op): void {
  faultPoint();
  switch (op.k) {
    case 'mkdir':
      mkdirSync(op.p, { mode: 0o700 });
      return;
    case 'stash':
      renameSync(op.p, op.b);
      return;
    case 'keep':
      linkSync(op.p, op.b);
      return;
    case 'place':
      renameSync(op.s, op.p);
      return;
    case 'meta':
      if (isRoot) lchownSync(op.p, op.uid, op.gid);
      chmodSync(op.p, op.mode);
      if (op.mtime !== undefined) utimesSync(op.p, op.mtime, op.mtime);
      return;
  }
}

/** Undoes one operation if (and only if) it was done; safe to repeat. */
export function undoOp(op: Op): void {
  switch (op.k) {
    case 'mkdir':
      try {
        rmdirSync(op.p);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code !== 'ENOENT') throw e;
      }
      return;
    case 'stash':
    case 'keep':
      if (lexists(op.b)) renameSync(op.b, op.p);
      return;
    case 'place':
      if (!lexists(op.s) && lexists(op.p)) renameSync(op.p, op.s);
      return;
    case 'meta':
      if (!op.old || !lexists(op.p)) return;
      if (isRoot) lchownSync(op.p, op.old.uid, op.old.gid);
      chmodSync(op.p, op.old.mode);
      return;
  }
}

/** Undoes the first `done` operations (all when omitted), newest first. */
export function rollBack(j: Journal, done = j.ops.length): void {
  for (let i = Math.min(done, j.ops.length) - 1; i >= 0; i--) undoOp(j.ops[i]!);
}

/** After the commit: drop emptied directories, backups and staging. Idempotent. */
export function rollForward(dbDir: string, j: Journal): void {
  const db = j.rmdirs.length > 0 ? InstalledDb.load(dbDir) : null; // large: only when needed
  for (const d of j.rmdirs) {
    const rel = d.slice(j.root.length + 1);
    if (db!.owners(rel).length > 0) continue;
    try {
      faultPoint();
      rmdirSync(d);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ENOTEMPTY' && code !== 'EEXIST') throw e;
    }
  }
  faultPoint();
  rmSync(j.stageDir, { recursive: true, force: true });
  faultPoint();
  unlinkSync(`${dbDir}/${JOURNAL_FILE}`);
}

export type RecoveryResult = 'clean' | 'rolled-back' | 'rolled-forward';

/**
 * Brings a root back to a consistent state after an interrupted transaction. Call with the lock
 * held. `stageDir` is where leftovers of a transaction without a journal are cleaned.
 */
export function recoverWithLock(dbDir: string, stageDir: string): RecoveryResult {
  const j = readJournal(dbDir);
  if (!j) {
    rmSync(stageDir, { recursive: true, force: true });
    rmSync(`${dbDir}/${NEW_DB_FILE}`, { force: true });
    rmSync(`${dbDir}/${DB_FILE}.tmp`, { force: true });
    rmSync(`${dbDir}/${NEW_DB_FILE}.tmp`, { force: true });
    rmSync(`${dbDir}/${JOURNAL_FILE}.tmp`, { force: true });
    return 'clean';
  }
  if (existsSync(`${dbDir}/${NEW_DB_FILE}`)) {
    rollBack(j);
    // journal first: without it, a leftover installed.new is just cleaned up next time
    unlinkSync(`${dbDir}/${JOURNAL_FILE}`);
    rmSync(`${dbDir}/${NEW_DB_FILE}`, { force: true });
    rmSync(j.stageDir, { recursive: true, force: true });
    return 'rolled-back';
  }
  rollForward(dbDir, j);
  rmSync(`${dbDir}/${DB_FILE}.tmp`, { force: true });
  return 'rolled-forward';
}
