/**
 * Runs build commands under bubblewrap: the build root as `/`, fresh /proc and /dev, a /tmp that
 * lives outside the root (kept between the commands of one build, never part of the package), a
 * clean environment, the package's build context as working directory, and new pid/ipc/uts (and,
 * with `network: false`, net) namespaces. Always inside a user namespace: run by root, cpm first
 * makes one with the whole 0–65535 id range mapped to itself (so chown inside works, as dpkg
 * needs); run by another user, bwrap's own `--unshare-user` maps that user to root.
 */
import { spawn, spawnSync } from 'node:child_process';
import {
  createWriteStream,
  existsSync,
  lstatSync,
  promises as fsp,
  type WriteStream,
} from 'node:fs';
import path from 'node:path';
import { CpmError } from '../errors.js';
import { NamespaceHolder } from './ns-holder.js';

export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
/** Directory of the build root the package directory is copied to (luet's /luetbuild). */
export const CONTEXT_DIR = '/luetbuild';

export interface SandboxOptions {
  /** Absolute host path of the build root. */
  root: string;
  /** Absolute host path mounted at /tmp (kept outside the root). */
  tmp: string;
  /** Working directory inside the root. */
  cwd: string;
  /** Environment, complete (nothing is inherited from cpm's). */
  env: Record<string, string>;
  network: boolean;
  /**
   * The root is an overlay mounted in this private mount namespace (overlay.ts): bwrap runs
   * inside it, and cpm reads the root through `view`.
   */
  mountNs?: { nsFile: string; view(p: string): string };
  /** Output of every command is appended here. */
  log: WriteStream;
}

export interface StepResult {
  code: number;
  /** Last lines of the command's output (stdout and stderr interleaved). */
  tail: string;
}

const TAIL_BYTES = 4096;

function bwrapPath(): string {
  for (const d of (process.env.PATH ?? '/usr/bin:/bin').split(':')) {
    const p = path.join(d || '.', 'bwrap');
    if (existsSync(p)) return p;
  }
  throw new CpmError(
    'E_TOOL_MISSING',
    'cpm build needs bubblewrap (bwrap), which is not installed',
    {
      hint: 'install the bubblewrap package',
    },
  );
}

/**
 * A user namespace with ids 0–65535 mapped 1:1, held open by a waiting process, for root runs.
 * bwrap joins it through nsenter; without it bwrap maps only uid 0 and chown to any other id
 * fails inside the sandbox.
 */
export class UserNamespace {
  private constructor(private readonly holder: NamespaceHolder) {}

  get pid(): number {
    return this.holder.pid;
  }

  static async open(): Promise<UserNamespace | undefined> {
    if (process.getuid?.() !== 0) return undefined;
    // It ends with cpm (ns-holder.ts); the maps are written once its namespace exists.
    const holder = await NamespaceHolder.start(['--user'], 'user');
    if (!holder) return undefined;
    try {
      await fsp.writeFile(`/proc/${holder.pid}/uid_map`, '0 0 65536\n');
      await fsp.writeFile(`/proc/${holder.pid}/gid_map`, '0 0 65536\n');
    } catch {
      holder.close();
      return undefined;
    }
    holder.detach();
    return new UserNamespace(holder);
  }

  close(): void {
    this.holder.close();
  }
}

/** The argv (command first) that runs `script` with /bin/sh -c in the sandbox. */
export function sandboxArgv(
  opts: Omit<SandboxOptions, 'log'>,
  script: string,
  userns?: UserNamespace,
): string[] {
  const bwrap = bwrapPath();
  const args: string[] = [];
  if (userns && opts.mountNs)
    args.push(
      'nsenter',
      `--mount=${opts.mountNs.nsFile}`,
      `--user=/proc/${userns.pid}/ns/user`,
      '--preserve-credentials',
      bwrap,
    );
  else if (userns)
    args.push('nsenter', '-t', String(userns.pid), '-U', '--preserve-credentials', bwrap);
  else {
    if (opts.mountNs) args.push('nsenter', `--mount=${opts.mountNs.nsFile}`, '--');
    args.push(bwrap, '--unshare-user', '--uid', '0', '--gid', '0');
  }
  args.push('--unshare-pid', '--unshare-ipc', '--unshare-uts', '--die-with-parent');
  if (!opts.network) args.push('--unshare-net');
  args.push('--hostname', 'cpm-build');
  args.push(
    '--bind',
    opts.root,
    '/',
    '--proc',
    '/proc',
    '--dev',
    '/dev',
    '--bind',
    opts.tmp,
    '/tmp',
  );
  if (opts.network) {
    // Name resolution as on the host (docker build does the same); only when the root has a plain
    // file there to mount over, so the root is never changed.
    const seen = opts.mountNs ? opts.mountNs.view(opts.root) : opts.root;
    const target = path.join(seen, 'etc/resolv.conf');
    const st = lstatSync(target, { throwIfNoEntry: false });
    if (st?.isFile() && existsSync('/etc/resolv.conf'))
      args.push('--ro-bind', '/etc/resolv.conf', '/etc/resolv.conf');
  }
  args.push('--chdir', opts.cwd, '--clearenv');
  for (const [k, v] of Object.entries(opts.env)) args.push('--setenv', k, v);
  args.push('/bin/sh', '-c', script);
  return args;
}

/** Runs one command; resolves with its exit code and output tail (never rejects on failure). */
export function runInSandbox(
  opts: SandboxOptions,
  script: string,
  userns?: UserNamespace,
): Promise<StepResult> {
  const argv = sandboxArgv(opts, script, userns);
  return new Promise((resolve, reject) => {
    let tail = Buffer.alloc(0);
    const keep = (b: Buffer): void => {
      opts.log.write(b);
      tail = Buffer.concat([tail, b]);
      if (tail.length > TAIL_BYTES * 2) tail = tail.subarray(tail.length - TAIL_BYTES);
    };
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    child.once('error', (e) =>
      reject(new CpmError('E_TOOL_MISSING', `cannot run ${argv[0]}: ${e.message}`)),
    );
    child.once('close', (code, signal) => {
      const text = tail.subarray(Math.max(0, tail.length - TAIL_BYTES)).toString('utf8');
      resolve({ code: code ?? (signal ? 128 + 15 : 1), tail: text });
    });
  });
}

/** True when bwrap can start a sandbox here (used by tests and `cpm build` preflight). */
export function sandboxAvailable(): boolean {
  try {
    const r = spawnSync(bwrapPath(), ['--unshare-user', '--ro-bind', '/', '/', 'true'], {
      stdio: 'ignore',
    });
    return r.status === 0;
  } catch {
    return false;
  }
}

export function openLog(file: string): WriteStream {
  return createWriteStream(file, { flags: 'a' });
}
