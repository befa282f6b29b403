/**
 * Finalizers: each package's finalize.yaml `install:` commands, run after the commit inside the
 * target root under bubblewrap (no network unless the package asks), in install order, output
 * streamed to the reporter. A failure is reported with the package name and the remaining
 * packages' finalizers still run (luet semantics); the caller gets the list of failures.
 * Environment: the package's finalize.yaml `env`, then the configured finalizer_envs (the
 * machine's setting wins over the package's default).
 *
 * What a package's finalizers create belongs to that package (rpm's %ghost, apk's generated
 * files): the root is listed before and after each package's commands, and every new entry is
 * handed back as a record marked `generated` (docs/database.md).
 */
import { createHash } from 'node:crypto';
import { lstatSync, readdirSync, readFileSync, readlinkSync, type Dirent } from 'node:fs';
import path from 'node:path';
import { CpmError } from '../errors.js';
import { DEFAULT_FINALIZE_SHELL, type FinalizeSpec } from '../package/finalize.js';
import { packageId } from '../package/package.js';
import type { Reporter } from '../util/progress.js';
import { interruptReceived, interruptSignal } from '../util/signals.js';
import { DiskView, resolveUserPath, typeOfMode } from './fs-path.js';
import type { FileRecord, InstallStep } from './types.js';
import { childProcess, readline } from '../util/lazy-builtins.js';

export interface FinalizerOptions {
  reporter: Reporter;
  env?: Record<string, string>;
  /** bwrap program (tests may point elsewhere). */
  bwrap?: string;
  /**
   * Record what each package's finalizers create: called with the new entries (root-relative,
   * sorted). `skip` lists top-level or nested root-relative paths never looked at (cpm's DB, the
   * stage dir, caches); runtime mount points (/dev, /proc, ...) are always skipped.
   */
  generated?: { skip: string[]; onEntries: (id: string, files: FileRecord[]) => void };
}

/** Mount points and scratch dirs bwrap or a container runtime creates in any root. */
export const RUNTIME_DIRS = ['dev', 'proc', 'sys', 'run', 'tmp'];

/**
 * A directory as last read: its inode and ctime then, its entries, and which of them are
 * directories. The inode too: a directory moved onto the path (`mv`) keeps its own ctime, which
 * may be the one recorded there (two directories made in the same tick, as an extraction does).
 */
interface DirState {
  ino: bigint;
  ctime: bigint;
  names: Set<string>;
  subdirs: string[];
  /** Changed shortly before it was read: read again next time whatever its ctime says. */
  recent: boolean;
}

/**
 * A directory changed within this long before it was read is read again next time: timestamps
 * come from a coarse clock (a tick, or whole seconds on some filesystems), so a change in the same
 * tick would leave its ctime equal.
 */
const RECENT_NS = 5_000_000_000n;

/**
 * The root as listed, to find what finalizers create. The first listing reads every directory;
 * later ones read again only the directories whose ctime changed since (adding, removing or
 * renaming an entry changes its directory's ctime, which, unlike the mtime, no program can set
 * back) or was recent when they were read: a Debian root has 2k directories and 25k entries, and
 * reading them all after each package's finalizers cost ≈ 100 ms a time. Never descends into
 * `skip` (root-relative) or through a symlink.
 */
export class RootListing {
  private readonly dirs = new Map<string, DirState>();

  constructor(
    private readonly root: string,
    private readonly skip: Set<string>,
    private readonly recentNs = RECENT_NS,
  ) {
    this.scan('', null, false);
  }

  /** The entries that appeared since the last listing (root-relative), sorted. */
  changes(): string[] {
    const out: string[] = [];
    this.scan('', out, false);
    return out.sort();
  }

  /** `rel` and below; `whole`: it is new, so is everything in it (a record of the name is stale). */
  private scan(rel: string, out: string[] | null, whole: boolean): void {
    const abs = rel === '' ? this.root : `${this.root}/${rel}`;
    const prev = whole ? undefined : this.dirs.get(rel);
    let ctime: bigint;
    let ino: bigint;
    try {
      const st = lstatSync(abs, { bigint: true });
      if (!st.isDirectory()) throw new Error('not a directory');
      ctime = st.ctimeNs;
      ino = st.ino;
    } catch {
      this.dirs.delete(rel); // vanished or unreadable: nothing to attribute
      return;
    }
    const at = (name: string): string => (rel === '' ? name : `${rel}/${name}`);
    if (prev && !prev.recent && prev.ctime === ctime && prev.ino === ino) {
      for (const d of prev.subdirs) this.scan(at(d), out, false);
      return;
    }
    const now = BigInt(Date.now()) * 1_000_000n;
    let ents: Dirent[];
    try {
      ents = readdirSync(abs, { withFileTypes: true });
    } catch {
      this.dirs.delete(rel);
      return;
    }
    const state: DirState = {
      ino,
      ctime,
      names: new Set(),
      subdirs: [],
      recent: ctime > now - this.recentNs,
    };
    this.dirs.set(rel, state);
    // names that were not directories when last read (a symlink or file then): what an older
    // record of the name lists was gone meanwhile, so all in it is new
    const wasDir = prev ? new Set(prev.subdirs) : null;
    for (const e of ents) {
      const r = at(e.name);
      if (this.skip.has(r)) continue;
      state.names.add(e.name);
      const fresh = out !== null && (whole || !prev?.names.has(e.name));
      if (fresh) out.push(r);
      if (e.isDirectory()) {
        state.subdirs.push(e.name);
        this.scan(r, out, fresh || (wasDir !== null && !wasDir.has(e.name)));
      }
    }
  }
}

function recordOf(root: string, rel: string): FileRecord | null {
  let st;
  try {
    st = lstatSync(`${root}/${rel}`);
  } catch {
    return null;
  }
  const type = typeOfMode(st.mode);
  const f: FileRecord = {
    path: rel,
    type,
    mode: st.mode & 0o7777,
    uid: st.uid,
    gid: st.gid,
    generated: true,
  };
  try {
    if (type === 'f') {
      f.size = st.size;
      f.sha256 = createHash('sha256')
        .update(readFileSync(`${root}/${rel}`))
        .digest('hex');
    } else if (type === 'l') f.target = readlinkSync(`${root}/${rel}`);
    else if (type === 'c' || type === 'b') {
      f.rdev = [Math.floor(st.rdev / 256) & 0xfff, (st.rdev & 0xff) | ((st.rdev >> 12) & 0xfff00)];
    }
  } catch {
    return null;
  }
  return f;
}

/** The program a finalize spec starts (its shell, default sh). */
function shellOf(fin: FinalizeSpec): string {
  return (fin.shell && fin.shell.length > 0 ? fin.shell : DEFAULT_FINALIZE_SHELL)[0]!;
}

/** Whether `prog` exists in the root (absolute, or found on the finalizer PATH), symlinks resolved inside it. */
export function rootHasProgram(
  root: string,
  prog: string,
  staged?: (rel: string) => boolean,
): boolean {
  const view = new DiskView(root);
  const candidates = prog.includes('/') ? [prog] : PATH.split(':').map((d) => `${d}/${prog}`);
  for (const c of candidates) {
    if (staged?.(c.replace(/^\/+/, ''))) return true;
    try {
      const rel = resolveUserPath(view, c, true);
      const st = lstatSync(rel === '' ? root : `${root}/${rel}`);
      if (st.isFile()) return true;
    } catch {
      // not there, or a link climbing out of the root: keep looking
    }
  }
  return false;
}

function bwrapWorks(bwrap: string): boolean {
  const r = childProcess().spawnSync(bwrap, ['--version'], { stdio: 'ignore' });
  return !r.error;
}

/**
 * Refuses, before anything is touched, a transaction whose finalizers cannot run: the root has
 * no shell (an empty root, a distroless base) or bubblewrap is missing. Installing the files and
 * then failing every finalizer would leave a half-set-up root behind a "committed" install.
 */
export function checkFinalizersCanRun(
  root: string,
  steps: InstallStep[],
  opts: { bwrap?: string; staged?: (rel: string) => boolean } = {},
): void {
  const bwrap = opts.bwrap ?? 'bwrap';
  const todo = steps.filter((s) => s.finalize && s.finalize.install.length > 0);
  if (todo.length === 0) return;
  const ids = todo.map((s) => packageId(s.spec));
  const hostRoot = path.resolve(root) === '/';
  for (const s of todo) {
    const sh = shellOf(s.finalize!);
    if (!rootHasProgram(root, sh, opts.staged))
      throw new CpmError(
        'E_FINALIZER',
        `${packageId(s.spec)} has finalizers, but ${root} has no ${sh} to run them; nothing was changed`,
        {
          context: { path: root, package: packageId(s.spec), packages: ids },
          hint:
            'put a distribution base with a shell into the root first (cpm rootfs init --from IMAGE), ' +
            'or pass --no-finalizers to install the files only',
        },
      );
  }
  if (!hostRoot && !bwrapWorks(bwrap))
    throw new CpmError(
      'E_TOOL_MISSING',
      `${ids.join(', ')} ${ids.length > 1 ? 'have' : 'has'} finalizers, which run under bubblewrap (${bwrap}), and it is not installed; nothing was changed`,
      {
        context: { packages: ids },
        hint: 'apt-get install bubblewrap (or dnf install bubblewrap), or pass --no-finalizers',
      },
    );
}

const PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export function bwrapArgs(
  root: string,
  argv: string[],
  network: boolean,
  env: Record<string, string>,
): string[] {
  const args = ['--bind', root, '/', '--dev', '/dev', '--proc', '/proc', '--unshare-all'];
  if (network) args.push('--share-net');
  args.push('--die-with-parent', '--clearenv', '--chdir', '/');
  const full: Record<string, string> = { PATH, HOME: '/root', CPM_FINALIZER: '1', ...env };
  for (const k of Object.keys(full).sort()) args.push('--setenv', k, full[k]!);
  args.push('--', ...argv);
  return args;
}

function run(
  cmd: string,
  args: string[],
  onLine: (l: string) => void,
  env?: NodeJS.ProcessEnv,
): Promise<{ code: number | null; signal: NodeJS.Signals | null; error?: Error }> {
  return new Promise((resolve) => {
    // an interrupt stops the running command at once (bwrap --die-with-parent takes the sandbox)
    const child = childProcess().spawn(cmd, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      signal: interruptSignal(),
      killSignal: 'SIGKILL',
      ...(env ? { env, cwd: '/' } : {}),
    });
    let pending = 2;
    let exit: { code: number | null; signal: NodeJS.Signals | null } | null = null;
    const finish = (): void => {
      if (pending === 0 && exit) resolve(exit);
    };
    for (const s of [child.stdout, child.stderr]) {
      const rl = readline().createInterface({ input: s });
      rl.on('line', onLine);
      rl.on('close', () => {
        pending--;
        finish();
      });
    }
    child.on('error', (error) => resolve({ code: null, signal: null, error }));
    child.on('close', (code, signal) => {
      exit = { code, signal };
      finish();
    });
  });
}

export async function runFinalizers(
  root: string,
  steps: InstallStep[],
  opts: FinalizerOptions,
): Promise<CpmError[]> {
  const errors: CpmError[] = [];
  const bwrap = opts.bwrap ?? 'bwrap';
  const hostRoot = path.resolve(root) === '/';
  const skip = new Set([...RUNTIME_DIRS, ...(opts.generated?.skip ?? [])]);
  const listing = opts.generated ? new RootListing(root, skip) : null;
  for (const step of steps) {
    if (interruptReceived()) break;
    const fin = step.finalize;
    if (!fin || fin.install.length === 0) continue;
    const id = packageId(step.spec);
    opts.reporter.step(`finalize ${id}`);
    try {
      await runPackage(id, fin);
    } finally {
      if (listing && opts.generated) {
        const recs = listing
          .changes()
          .map((p) => recordOf(root, p))
          .filter((r): r is FileRecord => r !== null);
        if (recs.length > 0) opts.generated.onEntries(id, recs);
      }
    }
  }
  return errors;

  async function runPackage(id: string, fin: FinalizeSpec): Promise<void> {
    const env = { ...fin.env, ...opts.env };
    for (const cmd of fin.install) {
      if (interruptReceived()) return;
      const argv = [
        ...(fin.shell && fin.shell.length > 0 ? fin.shell : DEFAULT_FINALIZE_SHELL),
        cmd,
      ];
      // Installing into the running system (a Dockerfile RUN step): the commands already run in
      // the right root, and distribution images rarely ship bubblewrap.
      const r = hostRoot
        ? await run(argv[0]!, argv.slice(1), (l) => opts.reporter.output(id, l), {
            ...process.env,
            CPM_FINALIZER: '1',
            ...env,
          })
        : await run(bwrap, bwrapArgs(root, argv, fin.network === true, env), (l) =>
            opts.reporter.output(id, l),
          );
      if (interruptReceived()) return; // the caller reports the interrupt, not a failed command
      if (r.error) {
        const missing = (r.error as NodeJS.ErrnoException).code === 'ENOENT';
        errors.push(
          new CpmError(
            missing ? 'E_TOOL_MISSING' : 'E_FINALIZER',
            missing
              ? `finalizer of ${id} not run: bubblewrap (${bwrap}) is not installed`
              : `finalizer of ${id} could not start: ${r.error.message}`,
            { context: { package: id }, hint: missing ? 'apt-get install bubblewrap' : undefined },
          ),
        );
        break;
      }
      if (r.code !== 0) {
        errors.push(
          new CpmError(
            'E_FINALIZER',
            `finalizer of ${id} failed (${r.signal ?? `exit ${r.code}`}): ${cmd}`,
            { context: { package: id, command: cmd } },
          ),
        );
        break; // this package's later commands depend on the failed one; other packages still run
      }
    }
  }
}
