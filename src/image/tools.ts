/** Finding and running the external image tools (squashfs-tools-ng, squashfs-tools). */
import { spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import path from 'node:path';
import type { Writable } from 'node:stream';
import { CpmError } from '../errors.js';

/** Absolute path of an executable on PATH, or undefined. */
export function findTool(name: string, envPath = process.env.PATH ?? ''): string | undefined {
  for (const dir of envPath.split(path.delimiter)) {
    if (!dir) continue;
    const full = path.join(dir, name);
    try {
      accessSync(full, constants.X_OK);
      return full;
    } catch {
      // not here
    }
  }
  return undefined;
}

export interface RunResult {
  stdout: string;
  stderr: string;
}

/**
 * Runs a tool to completion, optionally feeding stdin (`stdin` writes it and ends it, as
 * TarSource.pipeTo does). Failure (non-zero exit or an error feeding the input) becomes a
 * CpmError naming the command and its stderr tail.
 */
export async function runTool(
  cmd: string,
  args: string[],
  opts: {
    stdin?: (w: Writable) => Promise<void>;
    env?: NodeJS.ProcessEnv;
    cwd?: string;
    /** Aborting kills the tool (SIGTERM); the promise then rejects. */
    signal?: AbortSignal;
  } = {},
): Promise<RunResult> {
  const child = spawn(cmd, args, {
    stdio: [opts.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'],
    env: opts.env ?? process.env,
    cwd: opts.cwd,
    ...(opts.signal ? { signal: opts.signal } : {}),
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => {
    if (stdout.length < 1 << 20) stdout += d;
  });
  child.stderr!.setEncoding('utf8').on('data', (d: string) => {
    stderr = (stderr + d).slice(-8192);
  });
  const exited = new Promise<number | null>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => resolve(code));
  });
  let inputError: unknown;
  const feeding = opts.stdin
    ? opts.stdin(child.stdin!).catch((e: unknown) => {
        inputError = e;
        child.kill();
      })
    : Promise.resolve();
  let code: number | null;
  try {
    [code] = await Promise.all([exited, feeding]);
  } catch (e) {
    throw new CpmError('E_IMAGE', `cannot run ${cmd}: ${(e as Error).message}`, { cause: e });
  }
  // The input side failing (e.g. a walk error) explains the tool's failure better than EPIPE.
  if (inputError instanceof CpmError) throw inputError;
  if (code !== 0 || inputError) {
    const why = code !== 0 ? stderr.trim() : (inputError as Error).message;
    throw new CpmError('E_IMAGE', `${path.basename(cmd)} failed (exit ${code}): ${why}`, {
      context: { command: [cmd, ...args].join(' ') },
    });
  }
  return { stdout, stderr };
}
