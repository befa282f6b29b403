/** The whole command tree: every command file registers its subcommands. */
import { Command } from 'commander';
import { readFileSync } from 'node:fs';
import { registerTree } from './commands/tree.js';
import { registerPlan } from './commands/plan.js';
import { registerOci } from './commands/oci.js';
import { registerRepo } from './commands/repo.js';
import { registerInstall } from './commands/install.js';
import { registerImage } from './commands/image.js';
import { registerRootfs } from './commands/rootfs.js';
import { registerDemo } from './commands/demo.js';
import { registerBuild } from './commands/build.js';

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
  registerBuild(program);
  registerInstall(program);
  registerImage(program);
  registerRootfs(program);
  registerDemo(program);
  return program;
}
