/**
 * The built CLI as a user runs it (`node bin/cpm.js`), for tests that check exit codes and output.
 * `npm test` builds dist/ first; a bare `vitest run` without it fails with that hint.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const PROJECT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const CPM_BIN = path.join(PROJECT, 'bin/cpm.js');

export interface CliResult {
  /** The exit code; -1 when the process ended by a signal or could not start. */
  code: number;
  out: string;
  err: string;
}

/** Throws the "run npm run build" hint when dist/ is missing (call it in beforeAll). */
export function requireBuild(): void {
  if (!existsSync(path.join(PROJECT, 'dist/cpm.cjs')))
    throw new Error('dist/ is missing: run "npm run build" first (npm test does it)');
}

/** Runs `node bin/cpm.js ARGS` to the end; never rejects. */
export function runCpm(
  args: readonly string[],
  opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {},
): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [CPM_BIN, ...args],
      { env: opts.env ?? process.env, cwd: opts.cwd, maxBuffer: 64 << 20 },
      (e, out, err) => {
        const code = e ? (typeof e.code === 'number' ? e.code : -1) : 0;
        resolve({ code, out, err });
      },
    );
  });
}

/**
 * `node bin/cpm.js ARGS` as a child that does not block this process (a proxy serving it from
 * here keeps answering): the child, to signal, and its end with the output so far.
 */
export function spawnCpm(
  args: readonly string[],
  env: NodeJS.ProcessEnv,
): { child: ChildProcess; done: Promise<{ code: number | null; out: string; err: string }> } {
  const child = spawn(process.execPath, [CPM_BIN, ...args], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  return { child, done: new Promise((r) => child.on('close', (code) => r({ code, out, err }))) };
}
