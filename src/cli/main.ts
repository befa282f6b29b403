/**
 * commander wiring only: each command file registers its subcommands and calls into the library.
 * The full command tree (program.ts) is loaded only for help, completion and unknown commands;
 * a run loads just the file of its command (command-table.ts; a no-op `cpm install` must stay far
 * below 150 ms).
 */
import type { Command } from 'commander';
import { commandFile, withGlobalOptions } from './command-table.js';
import { version } from './version.js';

/** The program for argv: only its command's file when argv names one, else the full tree. */
async function programFor(argv: string[]): Promise<Command> {
  let i = 0;
  while (i < argv.length && argv[i]!.startsWith('-')) i += argv[i] === '--config' ? 2 : 1;
  const file = commandFile(argv[i] ?? '');
  if (!file || file.needsAll) return (await import('./program.js')).buildProgram();
  const { Command } = await import('commander');
  const program = withGlobalOptions(new Command('cpm'));
  (await file.load())(program);
  return program;
}

export async function main(argv: string[]): Promise<number> {
  // the one answer that needs no command tree (commander prints the same)
  if (argv.length === 1 && (argv[0] === '--version' || argv[0] === '-V')) {
    process.stdout.write(`${version()}\n`);
    return 0;
  }
  const program = await programFor(argv);
  const { CommanderError } = await import('commander');
  try {
    await program.parseAsync(argv, { from: 'user' });
    return process.exitCode === undefined ? 0 : Number(process.exitCode);
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : 2;
    const { reportError } = await import('./output.js');
    const opts = program.opts<{ debug?: boolean }>();
    const json = argv.includes('--json');
    return reportError(e, { json, debug: opts.debug });
  }
}
