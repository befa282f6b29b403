/**
 * A V8 code cache for cpm's bundle, kept between runs in a per-user directory. Parsing and
 * compiling dist/cpm.cjs is most of what a short command costs over `node -e 0` on Node 20, which
 * has no module.enableCompileCache (bench/startup, docs/performance.md).
 *
 * The cache is only ever a cache: an entry whose header does not match the source file (size,
 * mtime and inode) or that V8 rejects (another V8, other flags) is ignored and rewritten, and a
 * directory that cannot be made, or is not safely ours, means no cache at all, silently. Code read from it
 * runs as cpm, so the directory and each file must be owned by the effective user and not
 * writable by anyone else, and nothing is followed through a symlink. It never depends on --root:
 * the location comes from XDG_CACHE_HOME or HOME only. NODE_DISABLE_COMPILE_CACHE=1 turns it off.
 */
import {
  closeSync,
  constants,
  fstatSync,
  lstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  renameSync,
  rmSync,
  writeSync,
} from 'node:fs';
import { createRequire, wrap } from 'node:module';
import path from 'node:path';
import vm from 'node:vm';

const MAGIC = 0x63706d32; // "cpm2"
/** magic (u32), then the source file's size, mtime (ms) and inode (f64 each) */
const HEADER = 28;

/** What an entry is valid for: the source file as it was read (python's .pyc check, plus inode). */
export interface Stamp {
  size: number;
  mtimeMs: number;
  ino: number;
}

/** FNV-1a of a string, hex: a short stable name for an absolute path. */
function fnv(s: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return (h >>> 0).toString(16);
}

/** Owned by the effective user (or root, for `base`) and writable by nobody else. */
function safeDir(p: string, uid: number, base: boolean): boolean {
  const st = lstatSync(p, { throwIfNoEntry: false });
  if (!st?.isDirectory()) return false;
  if (base) return (st.uid === uid || st.uid === 0) && (st.mode & 0o002) === 0;
  return st.uid === uid && (st.mode & 0o022) === 0;
}

/**
 * `$XDG_CACHE_HOME/cpm/code` (else `~/.cache/cpm/code`), made when missing; undefined when the
 * cache is turned off, there is no home, or the directory is not safely the user's.
 */
export function codeCacheDir(env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (env.NODE_DISABLE_COMPILE_CACHE || !process.geteuid) return undefined;
  const xdg = env.XDG_CACHE_HOME;
  const home = env.HOME;
  const base =
    xdg && path.isAbsolute(xdg)
      ? xdg
      : home && path.isAbsolute(home)
        ? path.join(home, '.cache')
        : undefined;
  if (!base) return undefined;
  const dir = path.join(base, 'cpm', 'code');
  const uid = process.geteuid();
  try {
    if (!safeDir(dir, uid, false)) mkdirSync(dir, { recursive: true, mode: 0o700 });
    const ok =
      safeDir(base, uid, true) &&
      safeDir(path.dirname(dir), uid, false) &&
      safeDir(dir, uid, false);
    return ok ? dir : undefined;
  } catch {
    return undefined;
  }
}

/** The cached data of `file` in the cache when its header matches the source; else undefined. */
function readEntry(file: string, stamp: Stamp): Buffer | undefined {
  let fd: number | undefined;
  try {
    fd = openSync(file, constants.O_RDONLY | constants.O_NOFOLLOW);
    const st = fstatSync(fd);
    if (!st.isFile() || st.uid !== process.geteuid!() || (st.mode & 0o022) !== 0) return undefined;
    if (st.size <= HEADER) return undefined;
    const buf = Buffer.allocUnsafe(st.size);
    let got = 0;
    while (got < st.size) {
      const n = readSync(fd, buf, got, st.size - got, got);
      if (n === 0) return undefined;
      got += n;
    }
    const ok =
      buf.readUInt32LE(0) === MAGIC &&
      buf.readDoubleLE(4) === stamp.size &&
      buf.readDoubleLE(12) === stamp.mtimeMs &&
      buf.readDoubleLE(20) === stamp.ino;
    return ok ? buf.subarray(HEADER) : undefined;
  } catch {
    return undefined;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** Writes an entry whole or not at all (temporary file, then rename); failures are ignored. */
function writeEntry(file: string, stamp: Stamp, data: Buffer): void {
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    const fd = openSync(
      tmp,
      constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
      0o600,
    );
    try {
      const head = Buffer.alloc(HEADER);
      head.writeUInt32LE(MAGIC, 0);
      head.writeDoubleLE(stamp.size, 4);
      head.writeDoubleLE(stamp.mtimeMs, 12);
      head.writeDoubleLE(stamp.ino, 20);
      writeSync(fd, head);
      writeSync(fd, data);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, file);
  } catch {
    rmSync(tmp, { force: true });
  }
}

/** How a run used the cache: no usable directory, no entry, an entry V8 refused, or used. */
export type CacheUse = 'off' | 'miss' | 'rejected' | 'hit';

/**
 * Runs CommonJS `source` as the module `filename` would (its require resolves beside it) with
 * its compiled code from the cache in `dir` when there is an entry for `stamp` (the file the
 * source was read from), and returns its exports. Without a valid entry, save() (requireCached
 * calls it at exit) writes the code compiled so far, so the next run skips compiling what this
 * one used. `variant` ([a-z-]+) keeps one entry per kind of run (cpm's command): an entry holds
 * the functions its first run compiled, and `cpm install` compiles others than `cpm help`.
 */
export function runCached(
  source: string,
  filename: string,
  stamp: Stamp,
  dir: string | undefined,
  variant: string,
): { exports: unknown; cache: CacheUse; save: () => void } {
  if (!/^[a-z][a-z-]{0,31}$/.test(variant)) variant = 'other';
  const name = `${path.basename(filename)}-${fnv(filename)}-${variant}`;
  const entry = dir && path.join(dir, `${name}-${process.arch}-${process.version}`);
  const cachedData = entry ? readEntry(entry, stamp) : undefined;
  const script = new vm.Script(wrap(source), {
    filename,
    cachedData,
    // no importModuleDynamically: the bundle has no import() (build/bundle.mjs turns it into
    // require); Node's default loader for it is experimental and warns
  });
  const cache: CacheUse = !entry
    ? 'off'
    : !cachedData
      ? 'miss'
      : script.cachedDataRejected
        ? 'rejected'
        : 'hit';
  const save = (): void => {
    if (entry && cache !== 'hit') writeEntry(entry, stamp, script.createCachedData());
  };
  const fn = script.runInThisContext() as (
    exports: unknown,
    require: NodeJS.Require,
    module: { exports: unknown },
    __filename: string,
    __dirname: string,
  ) => void;
  const mod = { exports: {} as unknown };
  fn.call(mod.exports, mod.exports, createRequire(filename), mod, filename, path.dirname(filename));
  return { exports: mod.exports, cache, save };
}

/**
 * runCached with the user's cache directory, writing the entry at exit when there was none (or V8
 * refused it): the one way cpm's entry points use the cache. Only a run that did its work (exit 0,
 * or 1: a check that said no) writes it: a run that stopped at an error (a wrong path, a bad
 * option) compiled little of what the command needs, and its entry, once there, is kept.
 */
export function loadCached(
  source: string,
  filename: string,
  stamp: Stamp,
  variant: string,
): unknown {
  const run = runCached(source, filename, stamp, codeCacheDir(), variant);
  if (run.cache === 'miss' || run.cache === 'rejected')
    process.once('exit', (code) => {
      if (code === 0 || code === 1) run.save();
    });
  return run.exports;
}

/** require(`file`) with its compiled code cached per `variant` (see runCached). */
export function requireCached(file: string, variant: string): unknown {
  const fd = openSync(file, 'r');
  let source: string;
  let stamp: Stamp;
  try {
    const st = fstatSync(fd);
    stamp = { size: st.size, mtimeMs: st.mtimeMs, ino: st.ino };
    source = readFileSync(fd, 'utf8');
  } finally {
    closeSync(fd);
  }
  return loadCached(source, file, stamp, variant);
}
