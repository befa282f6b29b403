/** Rendering helpers shared by commands: JSON output and error → exit code mapping. */
import { CpmError, exitCodeOf } from '../errors.js';
import { fsError } from '../util/fs-errors.js';
import { err, out } from '../util/stdio.js';

export function printJson(value: unknown): void {
  out(JSON.stringify(value, null, 2) + '\n');
}

/** Prints an error for humans (or as JSON) and returns the documented exit code. */
export function reportError(e: unknown, opts: { json?: boolean; debug?: boolean } = {}): number {
  // a system error (ENOSPC, EROFS, EACCES, …) that no caller named is still an environment
  // problem with its own exit code, never an internal error
  e = fsError(e);
  if (e instanceof CpmError) {
    if (opts.json) {
      out(JSON.stringify({ error: e.toJSON() }, null, 2) + '\n');
    } else {
      err(`cpm: ${e.message}\n`);
      if (e.hint) err(`hint: ${e.hint}\n`);
      if (opts.debug && e.stack) err(e.stack + '\n');
    }
    return exitCodeOf(e);
  }
  const error = e as Error;
  err(`cpm: internal error: ${error?.message ?? String(e)}\n`);
  if (opts.debug || process.env.CPM_DEBUG) err((error?.stack ?? '') + '\n');
  else err('hint: run with --debug for a stack trace\n');
  return 70;
}
