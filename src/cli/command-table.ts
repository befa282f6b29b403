/**
 * The one table of cpm's commands: which command file registers each top-level command, in the
 * order `cpm --help` and docs/cli.md list them, and the global options every program gets. A run
 * loads only the file of its command (loading them all costs more than a whole no-op
 * `cpm install`, bench/install/noop.ts); help, completion and unknown commands get them all
 * (program.ts).
 */
import type { Command } from 'commander';
import { commanderOutput } from '../util/stdio.js';
import { version } from './version.js';

export type Registrar = (program: Command) => void;

export interface CommandFile {
  /** Top-level commands the file registers. */
  commands: readonly string[];
  load: () => Promise<Registrar>;
  /** The command needs every other command registered (completion walks the whole tree). */
  needsAll?: boolean;
}

export const COMMAND_FILES: readonly CommandFile[] = [
  { commands: ['tree'], load: async () => (await import('./commands/tree.js')).registerTree },
  { commands: ['plan'], load: async () => (await import('./commands/plan.js')).registerPlan },
  {
    commands: ['pack', 'pull', 'push', 'login', 'logout'],
    load: async () => (await import('./commands/oci.js')).registerOci,
  },
  {
    commands: ['repo', 'search', 'info'],
    load: async () => (await import('./commands/repo.js')).registerRepo,
  },
  { commands: ['build'], load: async () => (await import('./commands/build.js')).registerBuild },
  {
    commands: [
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
    ],
    load: async () => (await import('./commands/install.js')).registerInstall,
  },
  { commands: ['image'], load: async () => (await import('./commands/image.js')).registerImage },
  {
    commands: ['completion'],
    load: async () => (await import('./commands/completion.js')).registerCompletion,
    needsAll: true,
  },
  {
    commands: ['rootfs'],
    load: async () => (await import('./commands/rootfs.js')).registerRootfs,
  },
  { commands: ['demo'], load: async () => (await import('./commands/demo.js')).registerDemo },
];

/** The command file of a top-level command, when one registers it. */
export function commandFile(name: string): CommandFile | undefined {
  return COMMAND_FILES.find((f) => f.commands.includes(name));
}

/** The top-level program: name, description, version and global options (help, full tree). */
export function topProgram(CommandClass: typeof Command): Command {
  return withGlobalOptions(
    new CommandClass('cpm')
      .description('container-based package manager and rootfs assembler')
      .version(version(), '-V, --version'),
  );
}

/** The global options and behaviour of every cpm program, full or single-command. */
export function withGlobalOptions(program: Command): Command {
  return program
    .option('--config <file>', 'config file (default $CPM_CONFIG or /etc/cpm/cpm.yaml)')
    .option('--debug', 'show stack traces')
    .showHelpAfterError()
    .configureOutput(commanderOutput)
    .exitOverride();
}

/** The parser of a repeatable option (`--tree A --tree B`): the values in order; default []. */
export const collect = (v: string, prev: string[]): string[] => [...prev, v];
