/**
 * applyTransaction: the only code that writes under a root. Order of work:
 *   lock → recover a previous interrupted run → stage every package (extract.ts; the root is not
 *   touched yet) → conflict check → new DB text + journal → renames into place → commit (DB
 *   rename) → drop backups/emptied dirs → finalizers. A refusal or failure before the commit
 *   leaves root and DB as they were; SIGINT/SIGTERM before the commit roll back.
 */
import { createHash } from 'node:crypto';
import { lstatSync, mkdirSync, readFileSync, renameSync, rmSync, type Stats } from 'node:fs';
import path from 'node:path';
import { CpmError } from '../errors.js';
import { fsError } from '../util/fs-errors.js';
import { familyKey, packageId } from '../package/package.js';
import { DB_FILE, InstalledDb, resolveDbDir, writeFileAtomic } from './db.js';
import { faultPoint } from './fault.js';
import { Stager, type PackageEntries, type StagedEntry } from './extract.js';
import { runFinalizers } from './finalize.js';
import { typeOfMode } from './fs-path.js';
import {
  JOURNAL_FILE,
  NEW_DB_FILE,
  doOp,
  recoverWithLock,
  rollBack,
  rollForward,
  writeJournal,
  type Journal,
  type Op,
} from './journal.js';
import { acquireLock } from './lock.js';
import { silentReporter, type Reporter } from '../util/progress.js';
import { interruptReceived, throwIfInterrupted, watchInterrupts } from '../util/signals.js';
import {
  DEFAULT_LIMITS,
  type ExtractLimits,
  type FileRecord,
  type InstallStep,
  type InstalledPackage,
} from './types.js';

export const STAGE_DIR = '.cpm-tx';
// In db.ts, which readers of the DB (cpm image) load without the installer.
export { DEFAULT_DB_DIR, resolveDbDir } from './db.js';

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

function lstatOrNull(p: string): Stats | null {
  try {
    return lstatSync(p);
  } catch {
    return null;
  }
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

/** Recovers an interrupted transaction (cpm recover). */
export async function recover(
  root: string,
  opts: { dbDir?: string; noWait?: boolean } = {},
): Promise<'clean' | 'rolled-back' | 'rolled-forward'> {
  root = path.resolve(root);
  const dbDir = resolveDbDir(root, opts.dbDir);
  const lock = await acquireLock(dbDir, { noWait: opts.noWait });
  try {
    return recoverWithLock(dbDir, path.join(root, STAGE_DIR));
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
  const limits: ExtractLimits = { ...DEFAULT_LIMITS, ...opts.limits };
  mkdirSync(root, { recursive: true });
  const lock = await acquireLock(dbDir, {
    noWait: opts.noWait,
    timeoutMs: opts.lockTimeoutMs,
    onWait: (pid) => reporter.step(`waiting for lock held by pid ${pid}`),
  });

  const unwatch = watchInterrupts();
  const checkInterrupt = (): void => throwIfInterrupted('nothing was changed');

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
    const rec = recoverWithLock(dbDir, stageDir);
    if (rec !== 'clean') reporter.warn(`recovered an interrupted transaction (${rec})`);
    const db = InstalledDb.load(dbDir);

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
        writeFileAtomic(`${dbDir}/${DB_FILE}`, newDb.serialize());
        result.installed = adopt.map((p) => p.id);
      }
      return result;
    }

    // Stage: extract everything before touching the root.
    let staged: PackageEntries[];
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
    });
    try {
      staged = [];
      for (const step of steps) staged.push(await stager.stagePackage(step));
      checkInterrupt();
    } catch (e) {
      rmSync(stageDir, { recursive: true, force: true });
      throw fsError(e, { doing: 'staging', where: 'root' });
    }

    try {
      const plan = planOps(root, stageDir, db, steps, staged, leaving, opts, result);
      result.markedExplicit = markExplicit(plan.newDb, input.explicit ?? []);
      checkInterrupt();
      const newText = plan.newDb.serialize();
      writeFileAtomic(`${dbDir}/${NEW_DB_FILE}`, newText);
      const journal: Journal = { v: 1, root, stageDir, ops: plan.ops, rmdirs: plan.rmdirs };
      writeJournal(dbDir, journal);
      let done = 0;
      try {
        // The operations run synchronously: a signal that arrives meanwhile is delivered at this
        // await, and rolls back what they did.
        for (const op of plan.ops) {
          doOp(op);
          done++;
        }
        await signalsDelivered();
        checkInterrupt();
      } catch (e) {
        reporter.warn(`rolling back: ${(e as Error).message}`);
        rollBack(journal, done);
        rmSync(`${dbDir}/${JOURNAL_FILE}`, { force: true });
        rmSync(`${dbDir}/${NEW_DB_FILE}`, { force: true });
        rmSync(stageDir, { recursive: true, force: true });
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
      // The commit point.
      // installed.new was fsynced when written; this rename is the atomic commit
      faultPoint();
      renameSync(`${dbDir}/${NEW_DB_FILE}`, `${dbDir}/${DB_FILE}`);
      rollForward(dbDir, journal);
    } catch (e) {
      rmSync(stageDir, { recursive: true, force: true });
      throw fsError(e, { where: 'root' });
    }
    result.installed = steps.map((s) => packageId(s.spec));
    result.removed = [...leaving.keys()].filter((id) => !result.installed.includes(id)).sort();
    // A signal during the commit is not dropped: the transaction finished, say so and stop here.
    await signalsDelivered();
    throwIfInterrupted(committedState(result, !opts.noFinalizers && steps.some(hasFinalizer)));

    if (!opts.noFinalizers) {
      const todo = steps.filter(hasFinalizer);
      if (todo.length > 0)
        result.finalizerErrors = await runFinalizers(root, todo, {
          reporter,
          env: opts.finalizerEnv,
        });
      throwIfInterrupted(committedState(result, false));
    }
    return result;
  } finally {
    unwatch();
    reporter.end();
    lock.release();
  }
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
function committedState(r: TransactionResult, finalizersSkipped: boolean): string {
  const did = [
    r.installed.length > 0 ? `installed ${r.installed.join(', ')}` : '',
    r.removed.length > 0 ? `removed ${r.removed.join(', ')}` : '',
  ].filter(Boolean);
  return (
    `the transaction had committed (${did.join('; ') || 'no package changes'})` +
    (finalizersSkipped ? '; finalizers were not run (cpm reinstall runs them)' : '')
  );
}

interface Plan {
  ops: Op[];
  rmdirs: string[];
  newDb: InstalledDb;
}

function planOps(
  root: string,
  stageDir: string,
  db: InstalledDb,
  steps: InstallStep[],
  staged: PackageEntries[],
  leaving: Map<string, InstalledPackage>,
  opts: TransactionOptions,
  result: TransactionResult,
): Plan {
  const abs = (rel: string): string => `${root}/${rel}`;
  const isRoot = process.getuid?.() === 0;

  // Files leaving with removed/replaced packages.
  const oldFiles = new Map<string, FileRecord>();
  for (const p of leaving.values()) for (const f of p.files) oldFiles.set(f.path, f);

  // Claims on each path by the new packages, in install order.
  const claims = new Map<string, Array<{ pkg: number; e: StagedEntry }>>();
  staged.forEach((m, pkg) => {
    for (const e of m.values()) {
      const l = claims.get(e.rec.path);
      if (l) l.push({ pkg, e });
      else claims.set(e.rec.path, [{ pkg, e }]);
    }
  });
  const ids = steps.map((s) => packageId(s.spec));

  // Conflicts: before anything is written.
  const conflicts: FileConflict[] = [];
  const hard: FileConflict[] = []; // directory vs non-directory: refused even with force
  const takeOver = new Map<string, string>(); // path → installed package losing it (force)
  const winner = new Map<string, StagedEntry>();
  const winnerPkg = new Map<string, number>();
  const diskInfo = new Map<string, Stats | null>();
  for (const [p, list] of claims) {
    const last = list[list.length - 1]!;
    const anyNonDir = list.some((c) => c.e.rec.type !== 'd');
    if (list.length > 1 && anyNonDir) {
      const c = { path: p, claimants: list.map((x) => ids[x.pkg]!) };
      (list.some((x) => x.e.rec.type === 'd') ? hard : conflicts).push(c);
    }
    winner.set(p, last.e);
    winnerPkg.set(p, last.pkg);
    const newIsDir = last.e.rec.type === 'd';
    const owners = db.owners(p).filter((o) => !leaving.has(o));
    // nothing is under a path that is not there (claims list parents first): saves a syscall a path
    const slash = p.lastIndexOf('/');
    const st = slash > 0 && diskInfo.get(p.slice(0, slash)) === null ? null : lstatOrNull(abs(p));
    diskInfo.set(p, st);
    if (owners.length > 0) {
      const ownerIsDir = db.get(owners[0]!)!.files.find((f) => f.path === p)?.type === 'd';
      if (newIsDir && ownerIsDir) continue;
      const c = { path: p, claimants: [...owners, ids[last.pkg]!] };
      if (newIsDir !== ownerIsDir) hard.push(c);
      else {
        conflicts.push(c);
        for (const o of owners) takeOver.set(p, o);
      }
      continue;
    }
    if (!st || oldFiles.has(p)) {
      const old = oldFiles.get(p);
      if (old && st && (old.type === 'd') !== newIsDir && st.isDirectory() !== newIsDir)
        hard.push({ path: p, claimants: [[...leaving.keys()][0]!, ids[last.pkg]!] });
      continue;
    }
    const diskIsDir = st.isDirectory();
    if (newIsDir && diskIsDir) continue;
    const c = { path: p, claimants: ['(unowned)', ids[last.pkg]!] };
    if (newIsDir !== diskIsDir) hard.push(c);
    else conflicts.push(c);
  }
  const sortC = (l: FileConflict[]): FileConflict[] =>
    l.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  if (hard.length > 0 || (conflicts.length > 0 && !opts.force)) {
    const all = sortC([...hard, ...conflicts]);
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
  result.forcedConflicts = sortC(conflicts);

  // The new DB.
  const newDb = db.clone();
  for (const id of leaving.keys()) newDb.remove(id);
  for (const [p, owner] of takeOver) {
    const op = newDb.get(owner);
    if (op) op.files = op.files.filter((f) => f.path !== p);
  }
  const newPkgs: InstalledPackage[] = steps.map((s, i) => ({
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
  const cfgDirs = steps.map((s) => configDirs(s.spec.annotations));
  for (const [p, e] of winner) {
    const i = winnerPkg.get(p)!;
    const rec = { ...e.rec };
    if (rec.type === 'f' && cfgDirs[i]!.some((d) => p.startsWith(d))) rec.config = true;
    e.rec = rec;
    newPkgs[i]!.files.push(rec);
  }
  for (const p of newPkgs) {
    // reason: an upgrade keeps "explicit" if the user asked for the old version explicitly
    const old = [...leaving.values()].find((o) => familyKey(o.spec) === familyKey(p.spec));
    if (old && old.reason === 'explicit') p.reason = 'explicit';
    newDb.add(p);
  }

  // Operations.
  const ops: Op[] = [];
  let bk = 0;
  const backup = (): string => `${stageDir}/bk-${(bk++).toString(36)}`;
  const mkdirs: Op[] = [];
  const removals: Op[] = [];
  const places: Op[] = [];
  const metas: Op[] = [];

  const paths = [...winner.keys()].sort();
  const parentOf = (p: string): string => {
    const slash = p.lastIndexOf('/');
    return slash < 0 ? '' : p.slice(0, slash);
  };
  // New directories whose stage-tree copy holds exactly their winning entries move whole, with
  // one rename. Children sort after their parent, so walking backwards sees them first.
  const mixed = new Set<string>();
  const whole = new Set<string>();
  for (let k = paths.length - 1; k >= 0; k--) {
    const p = paths[k]!;
    const e = winner.get(p)!;
    const parent = parentOf(p);
    let ok: boolean;
    // rootless, a directory without rwx for its owner is made at commit, as before (see extract)
    if (e.rec.type === 'd') ok = !!e.dir && !!e.metaDone && !diskInfo.get(p) && !mixed.has(p);
    else ok = !e.staged || !!e.inTree;
    if (ok && e.rec.type === 'd') whole.add(p);
    if (!ok || (winner.has(parent) && winnerPkg.get(parent) !== winnerPkg.get(p)))
      mixed.add(parent);
  }

  for (const p of paths) {
    const e = winner.get(p)!;
    const st = diskInfo.get(p) ?? null;
    const inWhole = whole.has(parentOf(p));
    if (e.rec.type === 'd') {
      const m = { p: abs(p), mode: e.rec.mode, uid: e.rec.uid, gid: e.rec.gid, mtime: e.mtime };
      if (whole.has(p)) {
        if (!inWhole) places.push({ k: 'place', s: e.dir!, p: abs(p) });
        // the top one's metadata again: moving a directory may touch its times
        if (!inWhole) metas.push({ k: 'meta', ...m });
        continue;
      }
      if (!st) {
        mkdirs.push({ k: 'mkdir', p: abs(p) });
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
    if (!e.staged || inWhole) continue; // recorded only (device node as non-root), or moved whole
    let dest = abs(p);
    const old = oldFiles.get(p);
    if (
      st &&
      e.rec.config &&
      old?.config &&
      old.type === 'f' &&
      st.isFile() &&
      sha256File(dest) !== old.sha256 &&
      sha256File(dest) !== e.rec.sha256
    ) {
      // user-modified config: keep theirs, ship ours next to it
      dest = `${dest}.cpmnew`;
      result.cpmnew.push(p);
      if (lstatOrNull(dest)) places.push({ k: 'keep', p: dest, b: backup() });
    } else if (st) {
      places.push({ k: 'keep', p: dest, b: backup() });
    }
    places.push({ k: 'place', s: e.staged, p: dest });
  }

  // Files of leaving packages that nothing new ships.
  const rmdirs: string[] = [];
  for (const [p, f] of [...oldFiles].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    if (winner.has(p) || newDb.owners(p).length > 0) continue;
    if (f.type === 'd') {
      rmdirs.push(abs(p));
      continue;
    }
    const st = lstatOrNull(abs(p));
    if (!st || typeOfMode(st.mode) === 'd') continue;
    if (f.config && f.type === 'f' && st.isFile() && sha256File(abs(p)) !== f.sha256) {
      const save = `${abs(p)}.cpmsave`;
      if (lstatOrNull(save)) removals.push({ k: 'stash', p: save, b: backup() });
      removals.push({ k: 'place', s: abs(p), p: save });
      result.cpmsave.push(p);
      continue;
    }
    removals.push({ k: 'stash', p: abs(p), b: backup() });
  }
  rmdirs.reverse(); // deepest first

  // Directory metadata last (children change mtimes), deepest first.
  metas.reverse();
  ops.push(...mkdirs, ...removals, ...places, ...metas);
  return { ops, rmdirs, newDb };
}
