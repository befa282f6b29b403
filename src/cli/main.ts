/**
 * commander wiring only: each command file registers its subcommands and calls into the library.
 * The full command tree (program.ts) is loaded on demand; the install commands alone start
 * without it (a no-op `cpm install` must stay far below 150 ms, bench/install/noop.ts).
 */
import { Command, CommanderError } from 'commander';
import { reportError } from './output.js';
import { registerInstall } from './commands/install.js';

/** Commands registered by commands/install.ts (the root-changing and root-reading ones). */
const INSTALL_COMMANDS = new Set([
  'install',
  'upgrade',
  'reinstall',
  'uninstall',
  'list',
  'files',
  'owns',
  'verify',
  'reclaim',
  'cleanup',
  'recover',
]);

/**
 * A program with only the install commands when argv runs one of them: loading every command
 * module costs more than the whole no-op `cpm install` (bench/install/noop.ts). Help and
 * completion still see the full program.
 */
async function programFor(argv: string[]): Promise<Command> {
  let i = 0;
  while (i < argv.length && argv[i]!.startsWith('-')) i += argv[i] === '--config' ? 2 : 1;
  if (!INSTALL_COMMANDS.has(argv[i] ?? '')) return (await import('./program.js')).buildProgram();
  const program = new Command('cpm')
    .option('--config <file>', 'config file (default $CPM_CONFIG or /etc/cpm/cpm.yaml)')
    .option('--debug', 'show stack traces')
    .showHelpAfterError()
    .exitOverride();
  registerInstall(program);
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = await programFor(argv);
  try {
    await program.parseAsync(argv, { from: 'user' });
    return process.exitCode === undefined ? 0 : Number(process.exitCode);
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : 2;
    const opts = program.opts<{ debug?: boolean }>();
    const json = argv.includes('--json');
    return reportError(e, { json, debug: opts.debug });
  }
}
