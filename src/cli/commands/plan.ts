import type { Command } from 'commander';
import { resolve as resolvePath } from 'node:path';
import { EXIT_CODES } from '../../errors.js';
import type { InstalledSpec, Universe } from '../../package/package.js';
import { assumeInstalled, formatPlan, makeRequest, planErrorCode } from '../../resolver/request.js';
import { printJson } from '../output.js';
import { collect } from '../command-table.js';
import { err, out } from '../../util/stdio.js';

interface PlanOpts {
  tree?: string[];
  root?: string;
  assumeInstalled?: string[];
  json?: boolean;
  force?: boolean;
  full?: boolean;
  values?: string[];
  lenient?: boolean;
}

async function loadUniverse(
  dirs: string[],
  values: string[] | undefined,
  lenient: boolean,
): Promise<Universe> {
  const { loadTree } = await import('../../tree/tree.js');
  const tree = await loadTree(
    dirs.map((d) => resolvePath(d)),
    { ...(values?.length ? { values } : {}), ...(lenient ? { lenient: true } : {}) },
  );
  if (tree.problems.length > 0) {
    err(
      `cpm: warning: the tree has ${tree.problems.length} problem(s); see \`cpm tree validate\`\n`,
    );
  }
  return tree.universe;
}

/** Installed state of a root from its DB (the DB directory config puts in it). */
export async function installedFromRoot(
  root: string,
  configFile?: string,
): Promise<InstalledSpec[]> {
  const { databaseDir, loadConfig } = await import('../../config.js');
  const { InstalledDb, resolveDbDir } = await import('../../rootfs/db.js');
  const { installedState } = await import('../../install/operations.js');
  const dir = resolvePath(root);
  const dbDir = resolveDbDir(dir, databaseDir(await loadConfig(configFile), dir));
  return installedState(InstalledDb.load(dbDir));
}

/** `cpm plan install|uninstall|upgrade|reinstall` — prints the plan, touches nothing. */
export function registerPlan(program: Command): void {
  program
    .command('plan')
    .description('print what install / uninstall / upgrade would do, without touching disk')
    .addHelpText(
      'after',
      `\nExamples:\n  cpm plan install system/cos-setup\n  cpm plan install system/cos-setup --root /srv/root --json\n  cpm plan uninstall utils/jq --root /srv/root --full\n  cpm plan upgrade --root /srv/root`,
    )
    .argument('<operation>', 'install | uninstall | upgrade | reinstall')
    .argument('[packages...]', 'category/name, category/name@1.2.3 or category/name@>=1.2')
    .option(
      '--tree <dir>',
      "packages tree to resolve against; repeat to merge trees as luet's --tree does; replaces the config's trees (default: those, else cpm's packages-tree/)",
      collect,
      [],
    )
    .option('--root <dir>', 'root whose installed packages to start from')
    .option('--assume-installed <id...>', 'treat category/name@version as installed (repeatable)')
    .option('--force', 'uninstall even while other packages require the target')
    .option('--full', 'uninstall also removes dependencies nothing else needs')
    .option(
      '--values <file>',
      'template values file for the tree (repeatable, later wins)',
      collect,
      [],
    )
    .option('--lenient', 'accept what luet accepts where cpm refuses (see docs/tree-format.md)')
    .option('--json', 'print the plan as JSON')
    .action(async (operation: string, packages: string[], opts: PlanOpts, cmd: Command) => {
      // the tree loader and the solver only when the command runs
      const { projectTreeDir } = await import('../../tree/tree.js');
      const { chosenTrees, loadConfig } = await import('../../config.js');
      const { planToJson, resolve } = await import('../../resolver/index.js');
      const request = makeRequest(operation, packages, { force: opts.force, full: opts.full });
      const cfg = await loadConfig(cmd.optsWithGlobals<{ config?: string }>().config);
      const dirs = chosenTrees(opts.tree, cfg);
      const universe = await loadUniverse(
        dirs.length > 0 ? dirs : [projectTreeDir()],
        opts.values,
        opts.lenient === true,
      );
      let installed: InstalledSpec[] = [];
      if (opts.root)
        installed = await installedFromRoot(
          opts.root,
          cmd.optsWithGlobals<{ config?: string }>().config,
        );
      if (opts.assumeInstalled?.length) {
        installed = [...installed, ...assumeInstalled(universe, opts.assumeInstalled)];
      }
      const plan = resolve(universe, installed, request);
      if (opts.json) printJson(planToJson(plan));
      else out(formatPlan(plan));
      const code = planErrorCode(plan);
      if (code) process.exitCode = EXIT_CODES[code];
    });
}
