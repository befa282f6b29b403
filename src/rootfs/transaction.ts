/**
 * applyTransaction: the only code that writes under a root. Order of work:
 *   lock → recover a previous interrupted run → stage every package (extract.ts; the root is not
 *   touched yet) → conflict check → new DB text + journal → renames into place → directory
 *   xattrs (setDirXattrs) → commit (DB rename) → drop backups/emptied dirs → finalizers. A refusal or failure before the commit
 *   leaves root and DB as they were; SIGINT/SIGTERM before the commit roll back.
 *
 * Fresh-root mode (freshRoot(): one package, nothing removed, an empty DB, a root holding only
 * the way to the DB directory; on tmpfs, see freshWanted()): no stage and no renames. The fresh-root journal is begun, every
 * entry is created at its final path after its path is appended to it (extract.ts), then the
 * directories get their metadata and xattrs, and the DB rename commits. A failure or signal
 * before the commit removes what the journal lists; so does the next run after a crash.
 */
import { createHash } from 'node:crypto';
import {
  closeSync,
  constants as fsc,
  lstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  statfsSync,
  unlinkSync,
  type Stats,
} from 'node:fs';
import path from 'node:path';
import { CpmError } from '../errors.js';
import { fsError } from '../util/fs-errors.js';
import { familyKey, packageId } from '../package/package.js';
import { DB_FILE, InstalledDb, resolveDbDir, writeFileAtomic } from './db.js';
import { faultPoint } from './fault.js';
import {
  Stager,
  type FreshTarget,
  restoreRecord,
  setfattrResults,
  type PackageEntries,
  type PendingXattrs,
  type StagedEntry,
} from './extract.js';
import { checkFinalizersCanRun, runFinalizers } from './finalize.js';
import { RootPaths, typeOfMode } from './fs-path.js';
import {
  FreshJournalWriter,
  JOURNAL_FILE,
  NEW_DB_FILE,
  STAGE_DIR,
  doOp,
  freshRollBackNote,
  guarded,
  readJournal,
  rollBackFresh,
  recoverWithLock,
  removeStage,
  rollBack,
  rollForward,
  writeJournal,
  type DirMeta,
  type Journal,
  type Op,
  type Recovery,
} from './journal.js';
import { acquireLock } from './lock.js';
import { silentReporter, type Reporter } from '../util/progress.js';
import { prefetchLayers } from './prefetch.js';
import {
  interruptReceived,
  interruptedError,
  throwIfInterrupted,
  watchInterrupts,
} from '../util/signals.js';
import {
  DEFAULT_LIMITS,
  type ExtractLimits,
  type FileRecord,
  type InstallStep,
  type InstalledPackage,
} from './types.js';
import { childProcess } from '../util/lazy-builtins.js';

export interface TransactionInput {
  install: InstallStep[];
  /** Installed package ids or family keys ("cat/name") to remove. */
  remove: string[];
  /** Packages whose files are already on disk (cpm reclaim): recorded in the DB, nothing written. */
  adopt?: InstalledPackage[];
  /** Families the user asked for: an installed one recorded as a dependency becomes explicit. */
  explicit?: string[];
}

export interface TransactionOptions {
  /** DB directory; default ROOT/var/lib/cpm (see config.databaseDir). */
  dbDir?: string;
  /** Proceed despite file conflicts (files are taken over by the new package). */
  force?: boolean;
  /** Install again even when the same package and image are installed (reinstall). */
  reinstall?: boolean;
  noWait?: boolean;
  lockTimeoutMs?: number;
  noFinalizers?: boolean;
  /** Extra environment for finalizers (config finalizer_envs). */
  finalizerEnv?: Record<string, string>;
  reporter?: Reporter;
  limits?: Partial<ExtractLimits>;
  /** Check each layer's sha256 while streaming (default true). */
  verifyDigest?: boolean;
}

export interface FileConflict {
  path: string;
  /** Packages (ids) wanting the path, and "(unowned)" for a file already in the root. */
  claimants: string[];
}

export interface TransactionResult {
  installed: string[];
  removed: string[];
  /** Install steps that were no-ops (same package and image already installed). */
  unchanged: string[];
  forcedConflicts: FileConflict[];
  /** Config files written as .cpmnew / kept as .cpmsave. */
  cpmnew: string[];
  cpmsave: string[];
  finalizerErrors: CpmError[];
  /** Installed packages whose reason changed from dependency to explicit. */
  markedExplicit: string[];
  /** Set when the entries were created at their final paths (fresh-root mode), not staged. */
  freshRoot?: true;
}

/** Records the installed packages of `families` as explicit (apk's world, dnf mark install). */
function markExplicit(db: InstalledDb, families: readonly string[]): string[] {
  const changed: string[] = [];
  for (const fam of families) {
    const p = db.find(fam);
    if (!p || p.reason === 'explicit') continue;
    db.add({ ...p, reason: 'explicit' });
    changed.push(p.id);
  }
  return changed;
}

function sha256File(p: string): string {
  return createHash('sha256').update(readFileSync(p)).digest('hex');
}

/** Config files: under etc/, or under a directory named by the config_protect annotation. */
export function configDirs(annotations: Record<string, string>): string[] {
  const dirs = ['etc/'];
  const cp = annotations.config_protect;
  if (typeof cp === 'string')
    for (const d of cp.split(/[\s,:]+/)) {
      const rel = d.replace(/^\/+/, '').replace(/\/+$/, '');
      if (rel) dirs.push(rel + '/');
    }
  return dirs;
}

/** Recovers an interrupted transaction and clears every leftover (cpm recover). */
export async function recover(
  root: string,
  opts: { dbDir?: string; noWait?: boolean } = {},
): Promise<Recovery> {
  root = path.resolve(root);
  const dbDir = resolveDbDir(root, opts.dbDir);
  const stale: string[] = [];
  const lock = await acquireLock(dbDir, {
    noWait: opts.noWait,
    onStale: (pid) => stale.push(`took over the lock of pid ${pid}, which is gone`),
  });
  try {
    const r = recoverWithLock(root, dbDir);
    return { result: r.result, did: [...stale, ...r.did] };
  } finally {
    lock.release();
  }
}

export async function applyTransaction(
  rootIn: string,
  input: TransactionInput,
  opts: TransactionOptions = {},
): Promise<TransactionResult> {
  const root = path.resolve(rootIn);
  const reporter = opts.reporter ?? silentReporter();
  const dbDir = resolveDbDir(root, opts.dbDir);
  const stageDir = path.join(root, STAGE_DIR);
  const paths = new RootPaths(root);
  const limits: ExtractLimits = { ...DEFAULT_LIMITS, ...opts.limits };
  mkdirSync(root, { recursive: true });
  const lock = await acquireLock(dbDir, {
    noWait: opts.noWait,
    timeoutMs: opts.lockTimeoutMs,
    onWait: (pid) => reporter.step(`waiting for lock held by pid ${pid}`),
  });

  const unwatch = watchInterrupts();
  let failure: unknown;
  const checkInterrupt = (): void => throwIfInterrupted('nothing was changed');

  let committed: Committed | null = null;
  const result: TransactionResult = {
    installed: [],
    removed: [],
    unchanged: [],
    forcedConflicts: [],
    cpmnew: [],
    cpmsave: [],
    finalizerErrors: [],
    markedExplicit: [],
  };
  try {
    const rec = recoverWithLock(root, dbDir);
    if (rec.result !== 'clean')
      reporter.warn(`recovered an interrupted transaction (${rec.result})`);
    const db = InstalledDb.load(dbDir, true);

    // What leaves: explicit removals and the installed versions that install steps replace.
    const leaving = new Map<string, InstalledPackage>();
    for (const ref of input.remove) {
      const p = db.find(ref);
      if (!p)
        throw new CpmError('E_NOT_FOUND', `${ref} is not installed`, { context: { package: ref } });
      leaving.set(p.id, p);
    }
    const steps: InstallStep[] = [];
    for (const step of input.install) {
      const id = packageId(step.spec);
      const old = db.find(familyKey(step.spec));
      if (
        old &&
        old.id === id &&
        old.imageDigest === step.imageDigest &&
        !opts.reinstall &&
        !leaving.has(id)
      ) {
        result.unchanged.push(id);
        continue;
      }
      if (old) leaving.set(old.id, old);
      steps.push(step);
    }
    if (steps.length === 0 && leaving.size === 0) {
      const adopt = (input.adopt ?? []).filter((p) => !db.find(familyKey(p.spec)));
      const newDb = db.clone();
      for (const p of adopt) newDb.add(p);
      result.markedExplicit = markExplicit(newDb, input.explicit ?? []);
      if (adopt.length > 0 || result.markedExplicit.length > 0) {
        // no file changes: the atomic DB replace alone is the commit, no journal needed
        writeFileAtomic(`${dbDir}/${DB_FILE}`, newDb.encode());
        result.installed = adopt.map((p) => p.id);
      }
      return result;
    }

    // Fresh-root mode, decided here under the lock (see the module comment).
    const freshState =
      steps.length === 1 &&
      leaving.size === 0 &&
      (input.adopt ?? []).length === 0 &&
      db.list().length === 0 &&
      freshWanted(root)
        ? freshRoot(root, dbDir)
        : null;
    let fresh: FreshTarget | null = null;
    // Stage: extract everything before touching the root. The stage is made fresh (recovery
    // removed any leftover): a symlink planted there cannot lead the stage outside.
    if (!freshState)
      try {
        mkdirSync(stageDir, { mode: 0o700 });
      } catch (e) {
        throw fsError(e, { doing: 'staging', where: 'root' });
      }
    let staged: PackageEntries[];
    try {
      // downloads first (in parallel), then extraction: each phase with its own total
      await prefetchLayers(steps, reporter);
      checkInterrupt();
      if (freshState)
        fresh = {
          ...freshState,
          journal: new FreshJournalWriter(dbDir, {
            kind: 'fresh',
            package: packageId(steps[0]!.spec),
            dirs: freshState.dirs,
          }),
        };
      const stager = new Stager({
        root,
        stageDir,
        limits,
        reporter,
        verifyDigest: opts.verifyDigest ?? true,
        interrupted: () => interruptReceived() !== null,
        reserved: [STAGE_DIR, path.relative(root, dbDir).split(path.sep).join('/')].filter(
          (r) => r !== '' && !r.startsWith('..'),
        ),
        ...(fresh ? { fresh } : {}),
      });
      const layers = steps.flatMap((s) => s.layers);
      if (layers.length > 0)
        reporter.phase('extract', {
          ...(layers.every((l) => l.size !== undefined)
            ? { total: layers.reduce((n, l) => n + l.size!, 0) }
            : {}),
          items: layers.length,
          noun: 'layer',
        });
      staged = [];
      for (const step of steps) staged.push(await stager.stagePackage(step));
      checkInterrupt();
      // A root that cannot run the finalizers is refused now, while nothing is touched; a
      // package of this transaction may bring the shell.
      if (!opts.noFinalizers)
        checkFinalizersCanRun(root, steps, {
          staged: (rel) => staged.some((m) => m.has(rel)),
        });
    } catch (e) {
      if (fresh) undoFresh(paths, dbDir, fresh, reporter);
      else removeStage(root);
      // a signal aborts downloads and extraction mid-way: whatever they failed with, say that
      const sig = interruptReceived();
      if (sig) throw interruptedError(sig, 'the root is unchanged');
      throw fsError(e, { doing: 'staging', where: 'root' });
    }

    if (fresh) {
      result.freshRoot = true;
      result.markedExplicit = await commitFresh(
        { root, paths, db, steps, staged, leaving },
        { dbDir, fresh, reporter, explicit: input.explicit ?? [] },
      );
    } else
      try {
        const plan = planCommit({ root, paths, db, steps, staged, leaving }, !!opts.force);
        result.forcedConflicts = plan.forcedConflicts;
        result.cpmnew = plan.cpmnew;
        result.cpmsave = plan.cpmsave;
        result.markedExplicit = markExplicit(plan.newDb, input.explicit ?? []);
        checkInterrupt();
        writeFileAtomic(`${dbDir}/${NEW_DB_FILE}`, plan.newDb.encode());
        const journal: Journal = { v: 2, ops: plan.ops, rmdirs: plan.rmdirs };
        writeJournal(dbDir, journal);
        let done = 0;
        try {
          // The operations run synchronously: a signal that arrives meanwhile is delivered at this
          // await, and rolls back what they did.
          for (const op of plan.ops) {
            doOp(paths, op);
            done++;
          }
          // Directory xattrs: every directory exists now, with its final mode. Before the commit
          // point, so a committed install has them; setting them again is harmless (idempotent).
          setDirXattrs(paths, plan.dirXattrs, reporter);
          await signalsDelivered();
          checkInterrupt();
          // The commit point. installed.new was fsynced when written; this rename is the atomic
          // commit. It is inside the rollback's reach: a rename that fails (EIO) did not happen.
          faultPoint();
          renameSync(`${dbDir}/${NEW_DB_FILE}`, `${dbDir}/${DB_FILE}`);
        } catch (e) {
          reporter.warn(`rolling back: ${(e as Error).message}`);
          rollBack(paths, journal, done);
          rmSync(`${dbDir}/${JOURNAL_FILE}`, { force: true });
          rmSync(`${dbDir}/${NEW_DB_FILE}`, { force: true });
          removeStage(root);
          const what = steps.length === 0 ? 'uninstall' : leaving.size > 0 ? 'upgrade' : 'install';
          const mapped = fsError(e, {
            doing: `${what} failed and was rolled back (root unchanged):`,
            where: 'root',
          });
          throw mapped instanceof CpmError
            ? mapped
            : new CpmError('E_IO', `${what} failed and was rolled back: ${(e as Error).message}`, {
                cause: e,
              });
        }
        rollForward(paths, dbDir, journal, plan.newDb);
        committed = { db: plan.newDb, file: dbFileIdentity(dbDir) };
      } catch (e) {
        removeStage(root);
        throw fsError(e, { where: 'root' });
      }
    result.installed = steps.map((s) => packageId(s.spec));
    result.removed = [...leaving.keys()].filter((id) => !result.installed.includes(id)).sort();
    // A signal during the commit is not dropped: the transaction finished, say so and stop here.
    await signalsDelivered();
    throwIfInterrupted(
      committedState(result, !opts.noFinalizers && steps.some(hasFinalizer) ? 'skipped' : 'none'),
    );

    if (!opts.noFinalizers) {
      const todo = steps.filter(hasFinalizer);
      if (todo.length > 0) {
        const generated = new Map<string, FileRecord[]>();
        result.finalizerErrors = await runFinalizers(root, todo, {
          reporter,
          env: opts.finalizerEnv,
          generated: {
            skip: [STAGE_DIR, ...reservedPaths(root, dbDir)],
            onEntries: (id, files) => generated.set(id, files),
          },
        });
        if (generated.size > 0) recordGenerated(root, dbDir, generated, committed);
      }
      throwIfInterrupted(committedState(result, 'interrupted'));
    }
    return result;
  } catch (e) {
    failure = e;
    throw e;
  } finally {
    unwatch();
    // what was running is shown where it stopped, and the summary says why
    reporter.end(failure);
    lock.release();
  }
}

const TMPFS_MAGIC = 0x01021994;

/**
 * Fresh-root mode where it measured faster: on tmpfs (no renames, −15 % CPU for the Debian root).
 * On ext4 creating each file in its final directory cost more system time than the flat stage's
 * creates and renames together (docs/performance.md), so other filesystems keep the stage.
 * CPM_FRESH_ROOT=1 chooses it on any filesystem, 0 never.
 */
function freshWanted(root: string): boolean {
  const env = process.env.CPM_FRESH_ROOT;
  if (env === '0' || env === '1') return env === '1';
  try {
    return statfsSync(root).type === TMPFS_MAGIC;
  } catch {
    return false;
  }
}

/** What freshRoot() found: the directories there and whether new files are owned 0:0. */
type FreshState = Omit<FreshTarget, 'journal'> & { dirs: DirMeta[] };

/**
 * Whether the root is fresh: it holds nothing but the way to the DB directory (each directory on
 * the way a real one holding only the next; the DB directory itself is cpm's and reserved), or
 * nothing at all when the DB is elsewhere. Then the transaction may create its entries at their
 * final paths. Called under the lock, after recovery; anything else there means null (staged).
 */
function freshRoot(root: string, dbDir: string): FreshState | null {
  const rel = path.relative(root, dbDir).split(path.sep).join('/');
  const inside = rel !== '' && rel !== '..' && !rel.startsWith('../') && !path.isAbsolute(rel);
  const chain = inside ? rel.split('/') : [];
  const existing = new Set<string>();
  const dirs: DirMeta[] = [];
  const isRoot = process.getuid?.() === 0;
  let plainOwner = isRoot && process.getegid?.() === 0;
  let cur = '';
  for (let i = 0; ; i++) {
    const abs = cur === '' ? root : `${root}/${cur}`;
    const st = lstatSync(abs);
    if (!st.isDirectory()) return null;
    if (inside && i === chain.length) break; // the DB directory: what is in it is cpm's
    // a new file under a setgid directory, or one of another group, would not be owned 0:0
    if (st.gid !== 0 || (st.mode & 0o2000) !== 0) plainOwner = false;
    if (cur !== '') dirs.push({ p: cur, mode: st.mode & 0o7777, uid: st.uid, gid: st.gid });
    const names = readdirSync(abs);
    const next = chain[i];
    if (next === undefined) {
      if (names.length > 0) return null;
      break;
    }
    if (names.length !== 1 || names[0] !== next) return null;
    cur = cur === '' ? next : `${cur}/${next}`;
    existing.add(cur);
  }
  return { existing, dirs, plainOwner };
}

/**
 * A fresh-root transaction failed before its commit: removes what the journal lists (read back
 * from the file, as recovery would) and the journal. When that fails too, the journal stays for
 * the next run's recovery.
 */
function undoFresh(paths: RootPaths, dbDir: string, fresh: FreshTarget, reporter: Reporter): void {
  try {
    fresh.journal.close();
  } catch {
    // already closed
  }
  try {
    const j = readJournal(dbDir, paths.root);
    if (j?.v === 3) {
      const r = rollBackFresh(paths, j, dbDir);
      for (const p of r.left) reporter.warn(freshRollBackNote({ removed: 0, left: [p] })[1]!);
    }
    unlinkSync(`${dbDir}/${JOURNAL_FILE}`);
    rmSync(`${dbDir}/${NEW_DB_FILE}`, { force: true });
  } catch (e) {
    reporter.warn(
      `rolling back: ${(e as Error).message}; the next cpm run (or cpm recover) finishes the roll-back`,
    );
  }
}

/**
 * The commit of a fresh-root transaction: every entry is at its final path already. Directory
 * metadata (deepest first) and xattrs, the new DB, the commit rename, the journal dropped. One
 * package into an empty DB: no conflict is possible (a later layer replaces an earlier one's
 * entry; a non-directory over a directory that was there was refused while extracting).
 */
async function commitFresh(
  t: CommitInput,
  o: { dbDir: string; fresh: FreshTarget; reporter: Reporter; explicit: string[] },
): Promise<string[]> {
  const { dbDir, fresh, reporter } = o;
  const ids = t.steps.map((s) => packageId(s.spec));
  let marked: string[];
  try {
    // one package: its entries are the winners, no claim can compete
    const entries = t.staged[0]!;
    const order = [...entries.keys()].sort();
    const winners = order.map((p): Claim => ({ pkg: 0, e: entries.get(p)! }));
    const newDb = buildNewDb(t, ids, winners, new Map());
    marked = markExplicit(newDb, o.explicit);
    const step = t.steps[0]!;
    const dirXattrs: PendingXattrs[] = [];
    // deepest first: a child's metadata changes its parent's mtime
    for (let i = order.length - 1; i >= 0; i--) {
      const p = order[i]!;
      const { e } = winners[i]!;
      if (e.rec.type !== 'd') continue;
      if (e.rec.xattrs)
        dirXattrs.unshift({
          staged: '',
          rel: p,
          id: ids[0]!,
          digest: step.layers[e.layer]?.digest ?? '',
          xattrs: e.rec.xattrs,
        });
      // a directory that was there and no entry names keeps what it had
      if (e.implicit && fresh.existing.has(p)) continue;
      doOp(t.paths, {
        k: 'meta',
        p,
        mode: e.rec.mode,
        uid: e.rec.uid,
        gid: e.rec.gid,
        mtime: e.mtime,
      });
    }
    setDirXattrs(t.paths, dirXattrs, reporter);
    writeFileAtomic(`${dbDir}/${NEW_DB_FILE}`, newDb.encode());
    await signalsDelivered();
    throwIfInterrupted('nothing was changed');
    // the commit point, as in the staged path
    faultPoint();
    renameSync(`${dbDir}/${NEW_DB_FILE}`, `${dbDir}/${DB_FILE}`);
  } catch (e) {
    reporter.warn(`rolling back: ${(e as Error).message}`);
    undoFresh(t.paths, dbDir, fresh, reporter);
    const sig = interruptReceived();
    if (sig) throw interruptedError(sig, 'the root is unchanged');
    const mapped = fsError(e, {
      doing: 'install failed and was rolled back (root unchanged):',
      where: 'root',
    });
    throw mapped instanceof CpmError
      ? mapped
      : new CpmError('E_IO', `install failed and was rolled back: ${(e as Error).message}`, {
          cause: e,
        });
  }
  // committed: the journal only said what to undo
  fresh.journal.close();
  faultPoint();
  unlinkSync(`${dbDir}/${JOURNAL_FILE}`);
  return marked;
}

function hasFinalizer(s: InstallStep): boolean {
  return !!s.finalize && s.finalize.install.length > 0;
}

/**
 * Lets pending signal events run (the commit window is synchronous). Signals are read in the
 * event loop's poll phase: the first immediate ends this turn, the second runs after a poll.
 */
async function signalsDelivered(): Promise<void> {
  for (let i = 0; i < 2; i++) await new Promise((r) => setImmediate(r));
}

/** What an interrupt after the commit leaves: the new state, possibly without finalizers. */
function committedState(
  r: TransactionResult,
  finalizers: 'none' | 'skipped' | 'interrupted',
): string {
  const did = [
    r.installed.length > 0 ? `installed ${r.installed.join(', ')}` : '',
    r.removed.length > 0 ? `removed ${r.removed.join(', ')}` : '',
  ].filter(Boolean);
  return (
    `the transaction had committed (${did.join('; ') || 'no package changes'})` +
    (finalizers === 'skipped' ? '; finalizers were not run (cpm reinstall runs them)' : '') +
    (finalizers === 'interrupted'
      ? '; finalizers were stopped part-way (cpm reinstall runs them again)'
      : '')
  );
}

/** What the commit does, decided before anything under the root is written. */
interface CommitPlan {
  /** Journal operations, in order: mkdirs, removals, placements, directory metadata. */
  ops: Op[];
  /** Directories of leaving packages to drop after the commit if empty, deepest first. */
  rmdirs: string[];
  newDb: InstalledDb;
  /** Conflicts let through by --force. */
  forcedConflicts: FileConflict[];
  cpmnew: string[];
  cpmsave: string[];
  /** Directories whose xattrs are set after the ops (see setDirXattrs). */
  dirXattrs: PendingXattrs[];
}

/** Directories per setfattr run: each is an open descriptor of the child. */
const XATTR_DIR_BATCH = 200;

/**
 * Sets the xattrs of directories, as the stage's helper does for files (values on stdin, names
 * escaped), but on the directory itself: it is opened here, as a canonical path with no symlink
 * on the way (RootPaths, O_NOFOLLOW), and setfattr is given /proc/self/fd/N of that open
 * descriptor, so nothing swapped in meanwhile can lead it out of the root. Size refusals were
 * met on the stage's probe already (extract.ts); one here still is E_IO, and rolls back.
 */
function setDirXattrs(paths: RootPaths, dirs: PendingXattrs[], reporter: Reporter): void {
  for (let i = 0; i < dirs.length; i += XATTR_DIR_BATCH) {
    const fds: number[] = [];
    try {
      const byName = new Map<string, PendingXattrs>();
      let dump = '';
      for (const x of dirs.slice(i, i + XATTR_DIR_BATCH)) {
        faultPoint();
        const fd = guarded(paths, () =>
          openSync(paths.dir(x.rel), fsc.O_RDONLY | fsc.O_DIRECTORY | fsc.O_NOFOLLOW),
        );
        fds.push(fd);
        // the child's descriptors 0-2 are its pipes, then these in order
        const name = `/proc/self/fd/${2 + fds.length}`;
        byName.set(name, { ...x, staged: name });
        dump += restoreRecord(name, x.xattrs);
      }
      const r = childProcess().spawnSync('setfattr', ['--restore=-'], {
        input: dump,
        encoding: 'utf8',
        stdio: ['pipe', 'pipe', 'pipe', ...fds],
        maxBuffer: 64 << 20,
        env: { ...process.env, LC_ALL: 'C' }, // its messages are matched: strerror in English
      });
      const missing = (r.error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT';
      if (r.error && !missing)
        throw new CpmError('E_IO', `setfattr for ${byName.size} directories: ${r.error.message}`, {
          cause: r.error,
        });
      setfattrResults(missing ? 'cpm-no-setfattr' : (r.stderr ?? ''), byName, reporter);
    } finally {
      for (const fd of fds) closeSync(fd);
    }
  }
}

/** The DB dir, when it is inside the root: not part of what a finalizer generates. */
function reservedPaths(root: string, dbDir: string): string[] {
  const rel = path.relative(root, dbDir).split(path.sep).join('/');
  return rel === '' || rel.startsWith('..') || path.isAbsolute(rel) ? [] : [rel];
}

/**
 * Adds what finalizers created to their packages' records: a DB-only commit (the atomic replace
 * of `installed`, still under the lock). A path another package came to own meanwhile stays its.
 */
function recordGenerated(
  root: string,
  dbDir: string,
  generated: Map<string, FileRecord[]>,
  committed: Committed | null,
): void {
  // the way to the DB checked again: a finalizer can put a symlink there, to a directory outside
  resolveDbDir(root, dbDir);
  // the DB the transaction committed, unless the file is not the one it wrote (a finalizer can
  // write under the root): then what is there, read and checked as any transaction's start
  const same = committed?.file != null && dbFileIdentity(dbDir) === committed.file;
  const db = same ? committed!.db : InstalledDb.load(dbDir, true);
  for (const [id, files] of generated) {
    const p = db.get(id);
    if (!p) continue;
    const have = new Set(p.files.map((f) => f.path));
    const add = files.filter((f) => !have.has(f.path) && db.owners(f.path).length === 0);
    if (add.length === 0) continue;
    db.add({ ...p, files: [...p.files, ...add] });
  }
  writeFileAtomic(`${dbDir}/${DB_FILE}`, db.encode());
}

/** The DB a transaction committed, and the identity of the file it wrote. */
interface Committed {
  db: InstalledDb;
  file: string | null;
}

/** What tells the DB file apart from one put in its place or changed since (null: none there). */
function dbFileIdentity(dbDir: string): string | null {
  try {
    const st = lstatSync(`${dbDir}/${DB_FILE}`, { bigint: true });
    return `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
  } catch {
    return null;
  }
}

/** The packages of a transaction and the state it starts from. */
interface CommitInput {
  root: string;
  /** Checks paths under the root on disk (no symlinked parent). */
  paths: RootPaths;
  db: InstalledDb;
  steps: InstallStep[];
  staged: PackageEntries[];
  leaving: Map<string, InstalledPackage>;
}

function planCommit(t: CommitInput, force: boolean): CommitPlan {
  const ids = t.steps.map((s) => packageId(s.spec));
  // Files leaving with removed/replaced packages.
  const oldFiles = new Map<string, FileRecord>();
  for (const p of t.leaving.values()) for (const f of p.files) oldFiles.set(f.path, f);
  const claims = claimsOf(t.staged);
  const disk = readDisk(t.paths, claims);
  const found = findConflicts(t, ids, claims, disk, oldFiles);
  const forcedConflicts = refuseConflicts(found, force);
  const winners = winnersOf(claims);
  // sorted once: the DB's files and the journal's operations both go in path order
  const order = [...winners.keys()].sort();
  const newDb = buildNewDb(
    t,
    ids,
    order.map((p) => winners.get(p)!),
    found.takeOver,
  );
  return { ...generateOps(t, winners, order, disk, oldFiles, newDb), newDb, forcedConflicts };
}

interface Claim {
  /** Index of the claiming package in the install steps. */
  pkg: number;
  e: StagedEntry;
}

/** Claims on each path by the new packages, in install order; parents before children. */
function claimsOf(staged: PackageEntries[]): Map<string, Claim[]> {
  const claims = new Map<string, Claim[]>();
  staged.forEach((m, pkg) => {
    for (const e of m.values()) {
      const l = claims.get(e.rec.path);
      if (l) l.push({ pkg, e });
      else claims.set(e.rec.path, [{ pkg, e }]);
    }
  });
  return claims;
}

/** What each claimed path is on disk now (null: nothing there). */
function readDisk(paths: RootPaths, claims: Map<string, Claim[]>): Map<string, Stats | null> {
  const disk = new Map<string, Stats | null>();
  for (const p of claims.keys()) {
    // nothing is under a path that is not there (claims list parents first): saves a syscall a path
    const slash = p.lastIndexOf('/');
    disk.set(p, slash > 0 && disk.get(p.slice(0, slash)) === null ? null : paths.lstat(p));
  }
  return disk;
}

interface Conflicts {
  /** Two files for one path: refused unless --force. */
  conflicts: FileConflict[];
  /** A directory against a non-directory: refused even with --force. */
  hard: FileConflict[];
  /** Path → the installed package losing it to a new one (--force). */
  takeOver: Map<string, string>;
}

function findConflicts(
  t: CommitInput,
  ids: string[],
  claims: Map<string, Claim[]>,
  disk: Map<string, Stats | null>,
  oldFiles: Map<string, FileRecord>,
): Conflicts {
  const out: Conflicts = { conflicts: [], hard: [], takeOver: new Map() };
  for (const [p, list] of claims) {
    const last = list[list.length - 1]!;
    if (list.length > 1 && list.some((c) => c.e.rec.type !== 'd')) {
      const c = { path: p, claimants: list.map((x) => ids[x.pkg]!) };
      (list.some((x) => x.e.rec.type === 'd') ? out.hard : out.conflicts).push(c);
    }
    const newIsDir = last.e.rec.type === 'd';
    const all = t.db.owners(p);
    const owners = all.length === 0 ? all : all.filter((o) => !t.leaving.has(o));
    const st = disk.get(p) ?? null;
    if (owners.length > 0) {
      const ownerIsDir = t.db.get(owners[0]!)!.files.find((f) => f.path === p)?.type === 'd';
      if (newIsDir && ownerIsDir) continue;
      const c = { path: p, claimants: [...owners, ids[last.pkg]!] };
      if (newIsDir !== ownerIsDir) out.hard.push(c);
      else {
        out.conflicts.push(c);
        for (const o of owners) out.takeOver.set(p, o);
      }
      continue;
    }
    if (!st || oldFiles.has(p)) {
      const old = oldFiles.get(p);
      if (old && st && (old.type === 'd') !== newIsDir && st.isDirectory() !== newIsDir)
        out.hard.push({ path: p, claimants: [[...t.leaving.keys()][0]!, ids[last.pkg]!] });
      continue;
    }
    const diskIsDir = st.isDirectory();
    if (newIsDir && diskIsDir) continue;
    const c = { path: p, claimants: ['(unowned)', ids[last.pkg]!] };
    if (newIsDir !== diskIsDir) out.hard.push(c);
    else out.conflicts.push(c);
  }
  return out;
}

const byPath = (l: FileConflict[]): FileConflict[] =>
  l.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));

/** Throws E_FILE_CONFLICT unless every conflict is one --force lets through; returns those. */
function refuseConflicts(found: Conflicts, force: boolean): FileConflict[] {
  const { hard, conflicts } = found;
  if (hard.length > 0 || (conflicts.length > 0 && !force)) {
    const all = byPath([...hard, ...conflicts]);
    const shown = all
      .slice(0, 50)
      .map((c) => `  /${c.path}: ${c.claimants.join(', ')}`)
      .join('\n');
    throw new CpmError(
      'E_FILE_CONFLICT',
      `${all.length} file conflict(s):\n${shown}${all.length > 50 ? `\n  … and ${all.length - 50} more` : ''}`,
      {
        context: { conflicts: all },
        hint:
          hard.length > 0
            ? 'a directory and a non-directory cannot share a path, even with --force'
            : 'use --force to let the new package take the files over',
      },
    );
  }
  return byPath([...conflicts]);
}

/** The entry that ends up at each path: the last package's claim. */
function winnersOf(claims: Map<string, Claim[]>): Map<string, Claim> {
  const out = new Map<string, Claim>();
  for (const [p, list] of claims) out.set(p, list[list.length - 1]!);
  return out;
}

/**
 * The DB after the commit, from the winning claims in path order. Each winning entry's record
 * becomes the new package's file record (marked `config` under its config directories), so
 * generateOps sees the same flags.
 */
function buildNewDb(
  t: CommitInput,
  ids: string[],
  winners: readonly Claim[],
  takeOver: Map<string, string>,
): InstalledDb {
  const isRoot = process.getuid?.() === 0;
  const newDb = t.db.clone();
  for (const id of t.leaving.keys()) newDb.remove(id);
  for (const [p, owner] of takeOver) {
    const op = newDb.get(owner);
    if (op) op.files = op.files.filter((f) => f.path !== p);
  }
  const newPkgs: InstalledPackage[] = t.steps.map((s, i) => ({
    id: ids[i]!,
    spec: s.spec,
    origin: s.origin,
    imageDigest: s.imageDigest,
    reason: s.reason,
    layers: s.layers.map((l) => l.digest),
    ...(s.base ? { base: true } : {}),
    ...(isRoot ? {} : { rootless: true }),
    ...(s.finalize ? { finalize: s.finalize } : {}),
    files: [],
  }));
  const cfgDirs = t.steps.map((s) => configDirs(s.spec.annotations));
  for (const { pkg, e } of winners) {
    // a copy only to mark it: the record is the entry's, and nothing else holds it
    if (e.rec.type === 'f' && cfgDirs[pkg]!.some((d) => e.rec.path.startsWith(d)))
      e.rec = { ...e.rec, config: true };
    newPkgs[pkg]!.files.push(e.rec);
  }
  for (const p of newPkgs) {
    // reason: an upgrade keeps "explicit" if the user asked for the old version explicitly
    const old = [...t.leaving.values()].find((o) => familyKey(o.spec) === familyKey(p.spec));
    if (old && old.reason === 'explicit') p.reason = 'explicit';
    newDb.add(p);
  }
  return newDb;
}

/** The journal operations that turn the root into what newDb describes. */
function generateOps(
  t: CommitInput,
  winners: Map<string, Claim>,
  order: string[],
  disk: Map<string, Stats | null>,
  oldFiles: Map<string, FileRecord>,
  newDb: InstalledDb,
): Pick<CommitPlan, 'ops' | 'rmdirs' | 'cpmnew' | 'cpmsave' | 'dirXattrs'> {
  const isRoot = process.getuid?.() === 0;
  const abs = (rel: string): string => `${t.root}/${rel}`;
  // the stager names staged objects by absolute path; the journal stores them root-relative
  // (doOp and the journal's reader refuse any that is not canonical)
  const stage = `${path.join(t.root, STAGE_DIR)}/`;
  const rel = (p: string): string => {
    if (!p.startsWith(stage)) throw new Error(`staged path outside stage: ${p}`);
    return `${STAGE_DIR}/${p.slice(stage.length)}`;
  };
  let bk = 0;
  const backup = (): string => `${STAGE_DIR}/bk-${(bk++).toString(36)}`;
  const mkdirs: Op[] = [];
  const removals: Op[] = [];
  const places: Op[] = [];
  const metas: Op[] = [];
  const cpmnew: string[] = [];
  const cpmsave: string[] = [];
  const dirXattrs: PendingXattrs[] = [];

  for (const p of order) {
    const { e, pkg } = winners.get(p)!;
    const st = disk.get(p) ?? null;
    if (e.rec.type === 'd') {
      // new or already there: the winning entry's xattrs, the ones its record keeps
      if (e.rec.xattrs && !e.xattrsWarned) {
        const step = t.steps[pkg]!;
        dirXattrs.push({
          staged: '',
          rel: p,
          id: packageId(step.spec),
          digest: step.layers[e.layer]?.digest ?? '',
          xattrs: e.rec.xattrs,
        });
      }
      const m = { p, mode: e.rec.mode, uid: e.rec.uid, gid: e.rec.gid, mtime: e.mtime };
      if (!st) {
        mkdirs.push({ k: 'mkdir', p });
        metas.push({ k: 'meta', ...m });
      } else if (
        !e.implicit &&
        ((st.mode & 0o7777) !== e.rec.mode ||
          (isRoot && (st.uid !== e.rec.uid || st.gid !== e.rec.gid)))
      ) {
        metas.push({ k: 'meta', ...m, old: { mode: st.mode & 0o7777, uid: st.uid, gid: st.gid } });
      }
      continue;
    }
    if (!e.staged) continue; // recorded only (device node as non-root)
    let dest = p;
    const old = oldFiles.get(p);
    if (
      st &&
      e.rec.config &&
      old?.config &&
      old.type === 'f' &&
      st.isFile() &&
      sha256File(abs(dest)) !== old.sha256 &&
      sha256File(abs(dest)) !== e.rec.sha256
    ) {
      // user-modified config: keep theirs, ship ours next to it
      dest = `${dest}.cpmnew`;
      cpmnew.push(p);
      if (t.paths.lstat(dest)) places.push({ k: 'keep', p: dest, b: backup() });
    } else if (st) {
      places.push({ k: 'keep', p: dest, b: backup() });
    }
    places.push({ k: 'place', s: rel(e.staged), p: dest });
  }

  // Files of leaving packages that nothing new ships.
  const rmdirs: string[] = [];
  for (const [p, f] of [...oldFiles].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    if (winners.has(p) || newDb.owners(p).length > 0) continue;
    if (f.type === 'd') {
      rmdirs.push(p);
      continue;
    }
    // as a canonical path: below a directory since replaced by a symlink, the file is not there
    const st = t.paths.lstat(p);
    if (!st || typeOfMode(st.mode) === 'd') continue;
    if (f.config && f.type === 'f' && st.isFile() && sha256File(abs(p)) !== f.sha256) {
      const save = `${p}.cpmsave`;
      if (t.paths.lstat(save)) removals.push({ k: 'stash', p: save, b: backup() });
      removals.push({ k: 'place', s: p, p: save });
      cpmsave.push(p);
      continue;
    }
    removals.push({ k: 'stash', p, b: backup() });
  }
  rmdirs.reverse(); // deepest first

  // Directory metadata last (children change mtimes), deepest first.
  metas.reverse();
  return {
    ops: [...mkdirs, ...removals, ...places, ...metas],
    rmdirs,
    cpmnew,
    cpmsave,
    dirXattrs,
  };
}
