/**
 * commander wiring only: each command file registers its subcommands and calls into the library.
 * The full command tree (program.ts) is loaded only for help, completion and unknown commands;
 * a run loads just the file of its command (a no-op `cpm install` must stay far below 150 ms).
 */
import type { Command } from 'commander';
import { version } from './version.js';

type Registrar = (program: Command) => void;

/**
 * Which command file registers a top-level command. Loading every command module (and the
 * libraries behind them) costs more than a whole no-op `cpm install` (bench/install/noop.ts) and a
 * good part of a small `cpm image` run, so a run loads only the file of its command; help,
 * completion and unknown commands get the full program (program.ts).
 */
const INSTALL = async (): Promise<Registrar> =>
  (await import('./commands/install.js')).registerInstall;
const oci = async (): Promise<Registrar> => (await import('./commands/oci.js')).registerOci;
const repo = async (): Promise<Registrar> => (await import('./commands/repo.js')).registerRepo;
const COMMAND_FILES: Record<string, () => Promise<Registrar>> = {
  install: INSTALL,
  upgrade: INSTALL,
  reinstall: INSTALL,
  uninstall: INSTALL,
  list: INSTALL,
  files: INSTALL,
  owns: INSTALL,
  verify: INSTALL,
  reclaim: INSTALL,
  cleanup: INSTALL,
  recover: INSTALL,
  tree: async () => (await import('./commands/tree.js')).registerTree,
  plan: async () => (await import('./commands/plan.js')).registerPlan,
  pack: oci,
  pull: oci,
  push: oci,
  login: oci,
  logout: oci,
  repo,
  search: repo,
  info: repo,
  image: async () => (await import('./commands/image.js')).registerImage,
  rootfs: async () => (await import('./commands/rootfs.js')).registerRootfs,
  demo: async () => (await import('./commands/demo.js')).registerDemo,
};

/** The program for argv: only its command's file when argv names one, else the full tree. */
async function programFor(argv: string[]): Promise<Command> {
  let i = 0;
  while (i < argv.length && argv[i]!.startsWith('-')) i += argv[i] === '--config' ? 2 : 1;
  const load = Object.hasOwn(COMMAND_FILES, argv[i] ?? '') ? COMMAND_FILES[argv[i]!] : undefined;
  if (!load) return (await import('./program.js')).buildProgram();
  const { Command } = await import('commander');
  const program = new Command('cpm')
    .option('--config <file>', 'config file (default $CPM_CONFIG or /etc/cpm/cpm.yaml)')
    .option('--debug', 'show stack traces')
    .showHelpAfterError()
    .exitOverride();
  (await load())(program);
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
