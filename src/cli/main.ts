/** commander wiring only: each command file registers its subcommands and calls into the library. */
import { Command, CommanderError } from 'commander';
import { readFileSync } from 'node:fs';
import { reportError } from './output.js';
import { registerTree } from './commands/tree.js';
import { registerPlan } from './commands/plan.js';
import { registerOci } from './commands/oci.js';
import { registerRepo } from './commands/repo.js';
import { registerInstall } from './commands/install.js';
import { registerImage } from './commands/image.js';
import { registerRootfs } from './commands/rootfs.js';
import { registerDemo } from './commands/demo.js';

/** Defined by the single-file build (build/sea.mjs), which has no package.json beside it. */
declare const __CPM_VERSION__: string | undefined;

export function version(): string {
  if (typeof __CPM_VERSION__ === 'string') return __CPM_VERSION__;
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
    version: string;
  };
  return pkg.version;
}

export function buildProgram(): Command {
  const program = new Command('cpm')
    .description('container-based package manager and rootfs assembler')
    .version(version(), '-V, --version')
    .option('--config <file>', 'config file (default $CPM_CONFIG or /etc/cpm/cpm.yaml)')
    .option('--debug', 'show stack traces')
    .showHelpAfterError()
    .exitOverride();
  registerTree(program);
  registerPlan(program);
  registerOci(program);
  registerRepo(program);
  registerInstall(program);
  registerImage(program);
  registerRootfs(program);
  registerDemo(program);
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
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
