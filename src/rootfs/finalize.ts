/**
 * Finalizers: each package's finalize.yaml `install:` commands, run after the commit inside the
 * target root under bubblewrap (no network unless the package asks), in install order, output
 * streamed to the reporter. A failure is reported with the package name and the remaining
 * packages' finalizers still run (luet semantics); the caller gets the list of failures.
 * Environment: the package's finalize.yaml `env`, then the configured finalizer_envs (the
 * machine's setting wins over the package's default).
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { CpmError } from '../errors.js';
import { DEFAULT_FINALIZE_SHELL } from '../package/finalize.js';
import { packageId } from '../package/package.js';
import type { Reporter } from '../util/progress.js';
import type { InstallStep } from './types.js';

export interface FinalizerOptions {
  reporter: Reporter;
  env?: Record<string, string>;
  /** bwrap program (tests may point elsewhere). */
  bwrap?: string;
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
    const child = spawn(cmd, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(env ? { env, cwd: '/' } : {}),
    });
    let pending = 2;
    let exit: { code: number | null; signal: NodeJS.Signals | null } | null = null;
    const finish = (): void => {
      if (pending === 0 && exit) resolve(exit);
    };
    for (const s of [child.stdout, child.stderr]) {
      const rl = createInterface({ input: s });
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
  for (const step of steps) {
    const fin = step.finalize;
    if (!fin || fin.install.length === 0) continue;
    const id = packageId(step.spec);
    opts.reporter.step(`finalize ${id}`);
    const env = { ...fin.env, ...opts.env };
    for (const cmd of fin.install) {
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
  return errors;
}
