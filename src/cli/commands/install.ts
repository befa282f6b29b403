import type { Command } from 'commander';
import { databaseDir, loadConfig } from '../../config.js';
import { CpmError } from '../../errors.js';
import {
  createReporter,
  filesOf,
  listInstalled,
  ownersOf,
  recover,
  uninstallPackages,
  verify,
  type RootRef,
} from '../../install/index.js';
import { printJson } from '../output.js';

interface RootOpts {
  root?: string;
  json?: boolean;
  quiet?: boolean;
  verbose?: boolean;
  config?: string;
}

/** --root (else config system.rootfs) and the DB dir config puts in it. */
function rootRef(cmd: Command): RootRef & { finalizerEnv: Record<string, string> } {
  const o = cmd.optsWithGlobals<RootOpts>();
  const cfg = loadConfig(o.config);
  const root = o.root ?? cfg.system.rootfs;
  return {
    root,
    dbDir: databaseDir(cfg, root),
    finalizerEnv: Object.fromEntries(cfg.finalizer_envs.map((e) => [e.key, e.value])),
  };
}

function common(cmd: Command): Command {
  return cmd
    .option('--root <dir>', 'target root (default: system.rootfs from config, "/")')
    .option('--json', 'machine-readable output');
}

/** install, uninstall, upgrade, reinstall, list, files, owns, verify, reclaim, cleanup, recover, rootfs — the installer work. */
export function registerInstall(program: Command): void {
  common(program.command('list'))
    .description('list installed packages')
    .option('--installed', 'installed packages of the root')
    .action((o: { installed?: boolean; json?: boolean }, cmd: Command) => {
      if (!o.installed)
        throw new CpmError('E_USAGE', 'cpm list needs --installed', {
          hint: 'cpm search lists the packages of repositories',
        });
      const pkgs = listInstalled(rootRef(cmd));
      if (o.json) {
        printJson(
          pkgs.map((p) => ({
            id: p.id,
            category: p.spec.category,
            name: p.spec.name,
            version: p.spec.version,
            reason: p.reason,
            origin: p.origin,
            imageDigest: p.imageDigest,
            files: p.files.length,
            ...(p.base ? { base: true } : {}),
          })),
        );
        return;
      }
      for (const p of pkgs)
        process.stdout.write(
          `${p.id}\t${p.reason}${p.base ? ' base' : ''}\t${p.origin}\t${p.files.length} files\n`,
        );
    });

  common(program.command('files <package>'))
    .description('files owned by an installed package')
    .action((pkg: string, o: { json?: boolean }, cmd: Command) => {
      const files = filesOf(rootRef(cmd), pkg);
      if (o.json) return printJson(files);
      for (const f of files) process.stdout.write(`/${f.path}${f.type === 'd' ? '/' : ''}\n`);
    });

  common(program.command('owns <path>'))
    .description('which installed package owns a path')
    .action((p: string, o: { json?: boolean }, cmd: Command) => {
      const r = ownersOf(rootRef(cmd), p);
      if (o.json) printJson(r);
      else if (r.owners.length > 0)
        process.stdout.write(`${r.path} is owned by ${r.owners.join(', ')}\n`);
      else process.stderr.write(`${r.path} is not owned by any installed package\n`);
      if (r.owners.length === 0) process.exitCode = 1;
    });

  common(program.command('verify [package]'))
    .description(
      'check installed files against the DB (missing, modified, mode/owner); exit 1 on problems',
    )
    .action(async (pkg: string | undefined, o: { json?: boolean }, cmd: Command) => {
      const r = await verify(rootRef(cmd), pkg);
      if (o.json) printJson(r);
      else {
        for (const p of r.problems)
          process.stdout.write(
            `${p.kind}\t${p.path}\t${p.package}${p.expected !== undefined ? `\texpected ${p.expected}, found ${p.actual}` : ''}\n`,
          );
        for (const c of r.changedConfig)
          process.stdout.write(`config\t${c.path}\t${c.package}\t(changed, kept)\n`);
        process.stderr.write(`${r.checked} files checked, ${r.problems.length} problem(s)\n`);
      }
      if (r.problems.length > 0) process.exitCode = 1;
    });

  common(program.command('recover'))
    .description('finish or roll back an interrupted transaction')
    .option('--no-wait', 'fail instead of waiting for the lock')
    .action(async (o: { json?: boolean; wait?: boolean }, cmd: Command) => {
      const ref = rootRef(cmd);
      const r = await recover(ref.root, { dbDir: ref.dbDir, noWait: o.wait === false });
      if (o.json) printJson({ result: r });
      else process.stdout.write(r === 'clean' ? 'nothing to recover\n' : `transaction ${r}\n`);
    });

  common(program.command('uninstall <packages...>'))
    .description('remove installed packages and exactly the files they own')
    .option('--full', 'also remove dependencies nothing else needs')
    .option('--force', 'remove even when other installed packages require them')
    .option('--no-wait', 'fail instead of waiting for the lock')
    .option('-q, --quiet', 'no progress output')
    .option('-v, --verbose', 'more detail')
    .action(
      async (
        pkgs: string[],
        o: {
          json?: boolean;
          full?: boolean;
          force?: boolean;
          wait?: boolean;
          quiet?: boolean;
          verbose?: boolean;
        },
        cmd: Command,
      ) => {
        const ref = rootRef(cmd);
        const reporter = createReporter({
          mode: o.json ? 'json' : undefined,
          quiet: o.quiet,
          verbose: o.verbose,
        });
        const r = await uninstallPackages(ref.root, pkgs, {
          dbDir: ref.dbDir,
          full: o.full,
          force: o.force,
          noWait: o.wait === false,
          reporter,
        });
        if (o.json) printJson({ removed: r.removed, cpmsave: r.cpmsave });
        else {
          for (const id of r.removed) process.stdout.write(`removed ${id}\n`);
          for (const p of r.cpmsave) process.stdout.write(`kept changed /${p} as /${p}.cpmsave\n`);
        }
      },
    );
}
