/** Rendering helpers shared by commands: JSON output and error → exit code mapping. */
import { CpmError, EXIT_CODES } from '../errors.js';

export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, 2) + '\n');
}

/** Prints an error for humans (or as JSON) and returns the documented exit code. */
export function reportError(e: unknown, opts: { json?: boolean; debug?: boolean } = {}): number {
  if (e instanceof CpmError) {
    if (opts.json) {
      process.stdout.write(JSON.stringify({ error: e.toJSON() }, null, 2) + '\n');
    } else {
      process.stderr.write(`cpm: ${e.message}\n`);
      if (e.hint) process.stderr.write(`hint: ${e.hint}\n`);
      if (opts.debug && e.stack) process.stderr.write(e.stack + '\n');
    }
    // 128 + signal number, as a shell reports a process the signal ended
    if (e.code === 'E_INTERRUPTED' && e.context.signal === 'SIGTERM') return 143;
    return EXIT_CODES[e.code];
  }
  const err = e as Error;
  process.stderr.write(`cpm: internal error: ${err?.message ?? String(e)}\n`);
  if (opts.debug || process.env.CPM_DEBUG) process.stderr.write((err?.stack ?? '') + '\n');
  else process.stderr.write('hint: run with --debug for a stack trace\n');
  return 70;
}
