/**
 * commander wiring only: each command file registers its subcommands and calls into the library.
 * The full command tree (program.ts) is loaded only for help, completion and unknown commands;
 * a run loads just the file of its command (command-table.ts; a no-op `cpm install` must stay far
 * below 150 ms).
 */
import type { Command } from 'commander';
import { commandWord } from './argv.js';
import { commandFile, withGlobalOptions } from './command-table.js';
import { CpmError, exitCodeOf } from '../errors.js';
import { fsError } from '../util/fs-errors.js';
import { version } from './version.js';
import { out, outputFailure } from '../util/stdio.js';

// for bin/cpm.js: print without Node's stream modules when nothing else needs them
export { directStdio, madeStreams } from '../util/stdio.js';

/**
 * For bin/cpm.js at exit: standard output that could not be written (a full disk, EIO), as the
 * line to print and the exit code of its error class (E_NO_SPACE, E_IO, …), or undefined.
 */
export function outputFailureReport(): { text: string; exit: number } | undefined {
  const e = outputFailure();
  if (!e) return undefined;
  const c = fsError(e, { doing: 'writing', path: 'standard output', where: 'output' });
  const err = c instanceof CpmError ? c : new CpmError('E_IO', `writing standard output: ${e}`);
  return { text: `cpm: ${err.message}\n`, exit: exitCodeOf(err) };
}

/** The program for argv: only its command's file when argv names one, else the full tree. */
async function programFor(argv: string[]): Promise<Command> {
  const help = await import('./top-help.js');
  if (help.isTopLevelHelp(argv)) return help.topLevelHelpProgram();
  const file = commandFile(commandWord(argv) ?? '');
  if (!file || file.needsAll) return (await import('./program.js')).buildProgram();
  const { Command } = await import('commander');
  const program = withGlobalOptions(new Command('cpm'));
  (await file.load())(program);
  return program;
}

/** Options naming a root, a path or a repository (commander attribute names). */
const PATH_OPTIONS = ['root', 'repo', 'tree', 'dbDir', 'output', 'config', 'from', 'base'];

/**
 * An empty path (often an unset shell variable: --root "$ROOT") would mean the current directory
 * and install there; it is a usage error instead.
 */
function refuseEmptyPaths(cmd: Command): void {
  const o = cmd.optsWithGlobals<Record<string, unknown>>();
  for (const key of PATH_OPTIONS) {
    const v = o[key];
    if (v !== '' && !(Array.isArray(v) && v.includes(''))) continue;
    let flag = `--${key}`;
    for (let c: Command | null = cmd; c; c = c.parent) {
      const long = c.options.find((x) => x.attributeName() === key)?.long;
      if (long) {
        flag = long;
        break;
      }
    }
    throw new CpmError('E_USAGE', `${flag} is empty`, {
      hint: `give ${flag} a value (an unset shell variable?); for the current directory say ${flag} .`,
    });
  }
}

export async function main(argv: string[]): Promise<number> {
  // the one answer that needs no command tree (commander prints the same)
  if (argv.length === 1 && (argv[0] === '--version' || argv[0] === '-V')) {
    out(`${version()}\n`);
    return 0;
  }
  const program = await programFor(argv);
  program.hook('preAction', (_top, action) => refuseEmptyPaths(action));
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
