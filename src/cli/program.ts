/** The whole command tree: every command file registers its subcommands. */
import { Command } from 'commander';
import { version } from './version.js';
import { registerTree } from './commands/tree.js';
import { registerPlan } from './commands/plan.js';
import { registerOci } from './commands/oci.js';
import { registerRepo } from './commands/repo.js';
import { registerInstall } from './commands/install.js';
import { registerImage } from './commands/image.js';
import { registerRootfs } from './commands/rootfs.js';
import { registerDemo } from './commands/demo.js';
import { registerBuild } from './commands/build.js';

export { version };

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
