/** Rendering helpers shared by commands: JSON output and error → exit code mapping. */
import { CpmError, exitCodeOf } from '../errors.js';
import { fsError } from '../util/fs-errors.js';

export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, 2) + '\n');
}

/** Prints an error for humans (or as JSON) and returns the documented exit code. */
export function reportError(e: unknown, opts: { json?: boolean; debug?: boolean } = {}): number {
  // a system error (ENOSPC, EROFS, EACCES, …) that no caller named is still an environment
  // problem with its own exit code, never an internal error
  e = fsError(e);
  if (e instanceof CpmError) {
    if (opts.json) {
      process.stdout.write(JSON.stringify({ error: e.toJSON() }, null, 2) + '\n');
    } else {
      process.stderr.write(`cpm: ${e.message}\n`);
      if (e.hint) process.stderr.write(`hint: ${e.hint}\n`);
      if (opts.debug && e.stack) process.stderr.write(e.stack + '\n');
    }
    return exitCodeOf(e);
  }
  const err = e as Error;
  process.stderr.write(`cpm: internal error: ${err?.message ?? String(e)}\n`);
  if (opts.debug || process.env.CPM_DEBUG) process.stderr.write((err?.stack ?? '') + '\n');
  else process.stderr.write('hint: run with --debug for a stack trace\n');
  return 70;
}
