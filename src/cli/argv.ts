/** What the command line asks for, read before anything is loaded. */

/** The top-level command word of argv (global options skipped), or undefined. */
export function commandWord(argv: readonly string[]): string | undefined {
  let i = 0;
  while (i < argv.length && argv[i]!.startsWith('-')) i += argv[i] === '--config' ? 2 : 1;
  return argv[i];
}
