import type { Command } from 'commander';
import path from 'node:path';
import { statSync } from 'node:fs';
import {
  DEFAULT_CONFIG_FILE,
  databaseDir,
  formatAge,
  loadConfig,
  type CpmConfig,
} from '../../config.js';
import { CpmError, EXIT_CODES } from '../../errors.js';
import { reporterForFlags } from '../../util/progress.js';
import { err, out } from '../../util/stdio.js';
import type { RootRef } from '../../upkeep/query.js';
import type {
  OperationResult,
  OperationContext,
  PlannedOperation,
} from '../../install/operations.js';
import type { PackageSource } from '../../install/source.js';
import { formatPlan, type Operation } from '../../resolver/request.js';

// The libraries are imported when a command runs, not when it is registered: every cpm start
// registers every command, and a no-op `cpm install` should not pay for the extractor or the
// OCI client (docs/database.md, bench/install/noop.ts).
const operations = (): Promise<typeof import('../../install/operations.js')> =>
  import('../../install/operations.js');
const query = (): Promise<typeof import('../../upkeep/query.js')> =>
  import('../../upkeep/query.js');
import { printJson } from '../output.js';
import { collect } from '../command-table.js';

interface RootOpts {
  root?: string;
  json?: boolean;
  quiet?: boolean;
  verbose?: boolean;
  base?: string;
  config?: string;
}

/** --root (else config system.rootfs) and the DB dir config puts in it. */
async function rootRef(
  cmd: Command,
): Promise<RootRef & { finalizerEnv: Record<string, string>; cfg: CpmConfig }> {
  const o = cmd.optsWithGlobals<RootOpts>();
  const cfg = await loadConfig(o.config);
  const root = path.resolve(o.root ?? cfg.system.rootfs);
  (await query()).checkRoot(root, false);
  const { resolveDbDir } = await import('../../rootfs/db.js');
  return {
    root,
    // checked: a DB dir inside the root is reached through real directories only
    dbDir: resolveDbDir(root, databaseDir(cfg, root)),
    finalizerEnv: Object.fromEntries(cfg.finalizer_envs.map((e) => [e.key, e.value])),
    cfg,
  };
}

/**
 * cpm's own files, never foreign to `verify`: its config directory, repository configs and cache,
 * and the program running (the single-file binary, or the bin/cpm.js a `cpm` link points at).
 */
function cpmOwnPaths(cfg: CpmConfig): string[] {
  const own = [path.dirname(cfg.file ?? DEFAULT_CONFIG_FILE), ...cfg.repos_confdir, cfg.cache_dir];
  if (!/^node(js)?(\.exe)?$/.test(path.basename(process.execPath))) own.push(process.execPath);
  if (process.argv[1]) own.push(process.argv[1]);
  return own;
}

function common(cmd: Command): Command {
  return cmd
    .option('--root <dir>', 'target root (default: system.rootfs from config, "/")')
    .option('--json', 'machine-readable output');
}

interface OpCli {
  root?: string;
  json?: boolean;
  yes?: boolean;
  dryRun?: boolean;
  tree?: string[];
  values?: string[];
  lenient?: boolean;
  repo?: string[];
  force?: boolean;
  full?: boolean;
  finalizers?: boolean;
  wait?: boolean;
  quiet?: boolean;
  verbose?: boolean;
  plainHttp?: boolean;
  refresh?: boolean;
  /** install only: a distribution base image to unpack first. */
  base?: string;
}

/**
 * Where packages come from. The config's `trees:` are not a source here: install, upgrade and
 * reclaim read the repositories unless --tree is given, as apk and dnf do.
 */
function sourceOf(o: OpCli): PackageSource {
  const trees = o.tree ?? [];
  if (trees.length && o.repo?.length)
    throw new CpmError('E_USAGE', '--tree and --repo cannot be combined', {
      hint: 'build the tree into a repository with cpm repo create, then use --repo twice',
    });
  if ((o.values?.length || o.lenient) && !trees.length)
    throw new CpmError(
      'E_USAGE',
      `${o.lenient ? '--lenient loads' : '--values renders'} a packages tree: give it with --tree`,
      {
        hint: 'repositories hold packages already loaded and rendered; these apply when a tree is built',
      },
    );
  if (trees.length)
    return {
      kind: 'tree',
      dirs: trees.map((t) => path.resolve(t)),
      ...(o.values?.length ? { values: o.values.map((v) => path.resolve(v)) } : {}),
      ...(o.lenient ? { lenient: true } : {}),
    };
  if (o.repo?.length) return { kind: 'repo', urls: o.repo };
  return { kind: 'configured' };
}

/** The root is the running system's / (the same directory, however it is spelled). */
function isHostRoot(root: string): boolean {
  try {
    const a = statSync(root);
    const b = statSync('/');
    return a.dev === b.dev && a.ino === b.ino;
  } catch {
    return false; // not there yet: a new root
  }
}

/** Asks on the terminal; only called when stdin and stderr are TTYs. */
async function confirm(question: string): Promise<boolean> {
  const { createInterface } = await import('node:readline/promises');
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    const a = (await rl.question(question)).trim().toLowerCase();
    return a === '' || a === 'y' || a === 'yes';
  } finally {
    rl.close();
  }
}

function printResult(r: OperationResult, o: OpCli): void {
  const t = r.transaction;
  if (o.json) {
    printJson({
      ...r.planned.json,
      installed: t?.installed ?? [],
      removed: t?.removed ?? [],
      unchanged: t?.unchanged ?? r.planned.current,
      forcedConflicts: t?.forcedConflicts ?? [],
      cpmnew: t?.cpmnew ?? [],
      cpmsave: t?.cpmsave ?? [],
      markedExplicit: t?.markedExplicit ?? [],
      finalizerErrors: (t?.finalizerErrors ?? []).map((e) => e.toJSON()),
    });
  } else if (!t) {
    if (!o.quiet) out('nothing to do\n');
    // the answer came from cached indexes: say how old, and how to look again (dnf, apk -U)
    const cached = r.planned.cachedIndexes ?? [];
    if (!o.quiet && cached.length > 0 && r.planned.op !== 'uninstall') {
      const oldest = cached.reduce((a, b) => (a.fetchedAt < b.fetchedAt ? a : b));
      const age = (Date.now() - Date.parse(oldest.fetchedAt)) / 1000;
      err(
        `hint: answered from cached indexes (${oldest.repo} fetched ${formatAge(age)} ago); ` +
          `cpm ${r.planned.op} --refresh (-U) fetches them first\n`,
      );
    }
  } else if (!o.quiet) {
    for (const id of t.installed) out(`installed ${id}\n`);
    for (const id of t.removed) out(`removed ${id}\n`);
    for (const id of t.markedExplicit) out(`marked ${id} as explicitly installed\n`);
    for (const c of t.forcedConflicts)
      out(`took over /${c.path} from ${c.claimants.slice(0, -1).join(', ')}\n`);
    for (const p of t.cpmnew) out(`kept changed /${p}, new version in /${p}.cpmnew\n`);
    for (const p of t.cpmsave) out(`kept changed /${p} as /${p}.cpmsave\n`);
  }
  for (const e of t?.finalizerErrors ?? []) {
    if (!o.json) err(`cpm: ${e.message}\n`);
    process.exitCode = EXIT_CODES.E_FINALIZER;
  }
}

/** The shared flow of install / upgrade / reinstall / uninstall. */
async function runOp(op: Operation, refs: string[], o: OpCli, cmd: Command): Promise<void> {
  const ref = await rootRef(cmd);
  const ctx: OperationContext = {
    root: ref.root,
    dbDir: ref.dbDir!,
    config: ref.cfg,
    source: sourceOf(o),
    finalizerEnv: ref.finalizerEnv,
    ...(o.plainHttp ? { plainHttp: true } : {}),
    ...(o.refresh ? { refresh: true } : {}),
  };
  const opts = {
    force: o.force,
    full: o.full,
    noFinalizers: o.finalizers === false,
    noWait: o.wait === false,
    ...(o.base ? { base: o.base } : {}),
    ...(o.quiet || o.json ? {} : { log: (l: string) => err(`${l}\n`) }),
  };
  const { applyOperation, planError, planOperation } = await operations();
  const planned: PlannedOperation = await planOperation(ctx, op, refs, opts);
  if (o.dryRun) {
    await planned.repos?.close();
    // image references are resolved to packages only when pulled: a dry run lists them as given
    if (o.json)
      printJson({
        ...planned.json,
        ...(planned.images.length > 0 ? { images: planned.images } : {}),
        ...(planned.base ? { base: planned.base } : {}),
      });
    else {
      if (planned.base) out(`base      ${planned.base} (image reference)\n`);
      for (const i of planned.images) out(`install   ${i} (image reference)\n`);
      const p = planned.plan;
      if (planned.images.length === 0 || p.steps.length > 0 || !p.satisfiable) out(formatPlan(p));
    }
    if (!planned.plan.satisfiable) process.exitCode = EXIT_CODES[planError(planned.plan).code];
    return;
  }
  const changes = planned.plan.satisfiable && !planned.noop;
  const ask = changes && !o.yes;
  // process.stdin is a stream made on first use (a socket for a pipe): a no-op never needs it
  const canAsk = ask && !o.json && !!process.stdin.isTTY && !!process.stderr.isTTY;
  // Without a terminal (Dockerfile RUN, CI) there is nobody to ask: a scratch root goes ahead,
  // but the running system's / needs -y, as apt-get and dnf abort there.
  if (ask && !canAsk && isHostRoot(ctx.root)) {
    await planned.repos?.close();
    throw new CpmError('E_USAGE', `refusing to ${op} on / (this system) without confirmation`, {
      context: { path: ctx.root },
      hint: 'there is no terminal to ask on: add -y to confirm, or give --root DIR for another root',
    });
  }
  if (canAsk) {
    for (const i of planned.images) err(`install   ${i} (image reference)\n`);
    if (planned.images.length === 0 || planned.plan.steps.length > 0) err(formatPlan(planned.plan));
    if (!(await confirm('Proceed? [Y/n] '))) {
      await planned.repos?.close();
      err('cancelled, nothing was changed\n');
      process.exitCode = 1;
      return;
    }
  }
  const reporter = reporterForFlags(o);
  printResult(await applyOperation(ctx, planned, { ...opts, reporter }), o);
}

/** Options shared by the commands that change a root. */
function changing(cmd: Command, withSource: boolean): Command {
  common(cmd)
    .option('-y, --yes', 'do not ask for confirmation (never asked without a terminal)')
    .option('--dry-run', 'print the plan (as `cpm plan` does) and change nothing')
    .option('--no-wait', 'fail instead of waiting for the lock of the root')
    .option('-q, --quiet', 'no progress output')
    .option('-v, --verbose', 'more detail');
  if (withSource)
    cmd
      .option(
        '--tree <dir>',
        "install from a packages tree (built into a cached dir:// repository); repeat to merge trees as luet's --tree does",
        collect,
        [],
      )
      .option(
        '--values <file>',
        'template values file for the --tree (repeatable, later wins)',
        collect,
        [],
      )
      .option(
        '--lenient',
        'load the --tree as luet does where cpm refuses (see docs/tree-format.md)',
      )
      .option('--repo <url...>', 'install from these repositories instead of repos.conf.d')
      .option('--plain-http', 'talk plain http to a non-loopback registry')
      .option(
        '-U, --refresh',
        'fetch the repository indexes now, however recent the cache (apk -U, dnf --refresh)',
      )
      .option('--force', 'let new packages take over files other packages or the root own')
      .option('--no-finalizers', 'do not run finalize.yaml commands');
  return cmd;
}

/** install, uninstall, upgrade, reinstall, list, files, owns, verify, reclaim, cleanup, recover, rootfs — the installer work. */
export function registerInstall(program: Command): void {
  common(program.command('list'))
    .description('list installed packages')
    .option('--installed', 'installed packages of the root')
    .addHelpText(
      'after',
      `
Examples:
  cpm list --installed --root /mnt
  cpm list --installed --root /mnt --json | jq -r '.packages[].id'`,
    )
    .action(async (o: { installed?: boolean; json?: boolean }, cmd: Command) => {
      if (!o.installed)
        throw new CpmError('E_USAGE', 'cpm list needs --installed', {
          hint: 'cpm search lists the packages of repositories',
        });
      const ref = await rootRef(cmd);
      const q = await query();
      const pkgs = q.listInstalled(ref);
      if (o.json) {
        printJson({
          root: ref.root,
          packages: pkgs.map((p) => ({
            id: p.id,
            category: p.spec.category,
            name: p.spec.name,
            version: p.spec.version,
            reason: p.reason,
            origin: p.origin,
            imageDigest: p.imageDigest,
            files: q.fileCount(p),
            ...(p.base ? { base: true } : {}),
          })),
        });
        return;
      }
      for (const p of pkgs)
        out(`${p.id}\t${p.reason}${p.base ? ' base' : ''}\t${p.origin}\t${q.fileCount(p)} files\n`);
    });

  common(program.command('files <package>'))
    .description('files owned by an installed package')
    .addHelpText(
      'after',
      `
Examples:
  cpm files system/cos-setup --root /mnt
  cpm files system/cos-setup --root /mnt --json   # with type, mode, owner, size, sha256`,
    )
    .action(async (pkg: string, o: { json?: boolean }, cmd: Command) => {
      const { id, files } = (await query()).packageFiles(await rootRef(cmd), pkg);
      if (o.json) return printJson({ package: id, files });
      for (const f of files) out(`/${f.path}${f.type === 'd' ? '/' : ''}\n`);
    });

  common(program.command('owns <path>'))
    .description('which installed package owns a path')
    .addHelpText(
      'after',
      `
Examples:
  cpm owns /usr/bin/cos-setup --root /mnt
  cpm owns /etc/cos/config --root /mnt --json     # exit 1 when nobody owns it`,
    )
    .action(async (p: string, o: { json?: boolean }, cmd: Command) => {
      const r = (await query()).ownersOf(await rootRef(cmd), p);
      if (o.json) printJson(r);
      else if (r.owners.length > 0) out(`${r.path} is owned by ${r.owners.join(', ')}\n`);
      else err(`${r.path} is not owned by any installed package\n`);
      if (r.owners.length === 0) process.exitCode = 1;
    });

  common(program.command('verify [package]'))
    .description(
      'check installed files against the DB (missing, modified, mode/owner, foreign); exit 1 on problems',
    )
    .option(
      '--foreign',
      'look for unowned files in owned directories even over an unmanaged base (default: only when cpm manages the whole root)',
    )
    .option('--no-foreign', 'do not look for unowned files in owned directories')
    .addHelpText(
      'after',
      `
Examples:
  cpm verify --root /mnt                       # every installed package
  cpm verify system/cos-setup --root /mnt --json
  cpm verify --root / --no-foreign             # a host whose base cpm did not install`,
    )
    .action(
      async (pkg: string | undefined, o: { json?: boolean; foreign?: boolean }, cmd: Command) => {
        const ref = await rootRef(cmd);
        const r = await (
          await query()
        ).verify(ref, pkg, {
          foreign: o.foreign ?? 'auto',
          own: cpmOwnPaths(ref.cfg),
        });
        if (o.json) printJson(r);
        else {
          for (const p of r.problems)
            out(
              `${p.kind}\t${p.path}\t${p.package}${p.expected !== undefined ? `\texpected ${p.expected}, found ${p.actual}` : ''}\n`,
            );
          for (const c of r.changedConfig)
            out(`config\t${c.path}\t${c.package}\t(changed, kept)\n`);
          for (const n of r.notes) err(`note: ${n}\n`);
          if (!r.foreign.checked && r.foreign.reason !== 'not asked for')
            err(`foreign files not checked: ${r.foreign.reason}\n`);
          err(`${r.checked} files checked, ${r.problems.length} problem(s)\n`);
        }
        if (r.problems.length > 0) process.exitCode = 1;
      },
    );

  common(program.command('recover'))
    .description('finish or roll back an interrupted transaction')
    .addHelpText(
      'after',
      `
Examples:
  cpm recover --root /mnt          # after a crash or kill -9 of cpm install
  cpm recover --root /mnt --no-wait`,
    )
    .option('--no-wait', 'fail instead of waiting for the lock')
    .action(async (o: { json?: boolean; wait?: boolean }, cmd: Command) => {
      const ref = await rootRef(cmd);
      const { recover } = await import('../../rootfs/transaction.js');
      const r = await recover(ref.root, { dbDir: ref.dbDir, noWait: o.wait === false });
      if (o.json) printJson(r);
      else if (r.did.length === 0) out('nothing to recover\n');
      else for (const l of r.did) out(`${l}\n`);
    });

  changing(program.command('install <packages...>'), true)
    .description('install packages (and what they need) into a root, in one transaction')
    .option(
      '--base <image>',
      'unpack this distribution base image first, in the same transaction (as rootfs init --from)',
    )
    .addHelpText(
      'after',
      `
Examples:
  cpm install system/cos-setup --root /mnt              # from the repositories of repos.conf.d
  cpm install system/cos-setup@1.0.0 --root /mnt -y     # a given version, no question asked
  cpm install system/cos-setup --tree ./packages-tree --root /tmp/r --no-finalizers
  cpm install system/cos-setup --repo oci://127.0.0.1:5000/cpm --root /mnt
  cpm install system/cos-setup --root /mnt --dry-run --json   # the plan, nothing changed
  cpm install system/cos-setup --base 127.0.0.1:5000/bases/debian:12 --root /srv/root
  RUN cpm install -y system/cos-setup                   # in a Dockerfile (root from config: /)`,
    )
    .action((pkgs: string[], o: OpCli, cmd: Command) => runOp('install', pkgs, o, cmd));

  changing(program.command('upgrade [packages...]'), true)
    .description(
      'upgrade installed packages (all of them when none are named) to the newest versions',
    )
    .addHelpText(
      'after',
      `
Examples:
  cpm upgrade --root /mnt                               # everything installed
  cpm upgrade system/cos-setup --root /mnt --tree ./packages-tree
  cpm upgrade --root /mnt --dry-run                     # what would change`,
    )
    .action((pkgs: string[], o: OpCli, cmd: Command) => runOp('upgrade', pkgs, o, cmd));

  changing(program.command('reinstall <packages...>'), true)
    .description('install installed packages again, repairing modified or missing files')
    .addHelpText(
      'after',
      `
Examples:
  cpm reinstall system/cos-setup --root /mnt
  cpm verify --root /mnt || cpm reinstall system/cos-setup --root /mnt -y`,
    )
    .action((pkgs: string[], o: OpCli, cmd: Command) => runOp('reinstall', pkgs, o, cmd));

  changing(program.command('uninstall <packages...>'), false)
    .description('remove installed packages and exactly the files they own')
    .option('--full', 'also remove dependencies nothing else needs')
    .option('--force', 'remove even when other installed packages require them')
    .addHelpText(
      'after',
      `
Examples:
  cpm uninstall system/cos-setup --root /mnt
  cpm uninstall system/cos-setup --root /mnt --full      # and its now unneeded dependencies
  cpm uninstall system/base-config --root /mnt --force   # even though others require it
  cpm uninstall system/cos-setup --root /mnt --dry-run --json`,
    )
    .action((pkgs: string[], o: OpCli, cmd: Command) => runOp('uninstall', pkgs, o, cmd));

  common(program.command('reclaim'))
    .description(
      'adopt files already in the root that match repository packages (by sha256), writing no file',
    )
    .option(
      '--tree <dir>',
      "compare with the packages of a tree; repeat to merge trees as luet's --tree does",
      collect,
      [],
    )
    .option('--values <file>', 'template values file for the --tree (repeatable)', collect, [])
    .option('--repo <url...>', 'compare with these repositories instead of repos.conf.d')
    .option('--plain-http', 'talk plain http to a non-loopback registry')
    .option('--dry-run', 'show what would be adopted')
    .option('--no-wait', 'fail instead of waiting for the lock of the root')
    .addHelpText(
      'after',
      `
Examples:
  cpm reclaim --root /mnt                          # record what an old install copied in
  cpm reclaim --root /mnt --tree ./packages-tree --dry-run`,
    )
    .action(async (o: OpCli, cmd: Command) => {
      const ref = await rootRef(cmd);
      const { reclaim } = await import('../../install/reclaim.js');
      const r = await reclaim(
        {
          root: ref.root,
          dbDir: ref.dbDir!,
          config: ref.cfg,
          source: sourceOf(o),
          ...(o.plainHttp ? { plainHttp: true } : {}),
        },
        { dryRun: o.dryRun, noWait: o.wait === false },
      );
      if (o.json) return printJson(r);
      const verb = o.dryRun ? 'would adopt' : 'adopted';
      for (const id of r.adopted) out(`${verb} ${id}\n`);
      for (const p of r.partial)
        out(`partial ${p.id}: ${p.matched} of ${p.total} files present, not adopted\n`);
      err(`${r.checked} package(s) compared, ${r.adopted.length} ${verb}\n`);
    });

  program
    .command('cleanup')
    .description('prune the cache (blobs, trees built for --tree); report the bytes freed')
    .option('--all', 'also drop cached repository indexes')
    .option('--dry-run', 'only count what would be freed')
    .option('--json', 'machine-readable output')
    .addHelpText(
      'after',
      `
Examples:
  cpm cleanup                # at the end of a Dockerfile RUN, after cpm install
  cpm cleanup --all --json`,
    )
    .action(async (o: { all?: boolean; dryRun?: boolean; json?: boolean }, cmd: Command) => {
      const cfg = await loadConfig(cmd.optsWithGlobals<{ config?: string }>().config);
      const { cleanup } = await import('../../upkeep/cleanup.js');
      const r = await cleanup(cfg, { all: o.all, dryRun: o.dryRun });
      if (o.json) return printJson(r);
      const mib = (r.bytesFreed / 1024 ** 2).toFixed(1);
      out(
        `${o.dryRun ? 'would free' : 'freed'} ${r.bytesFreed} bytes (${mib} MiB) in ${r.files} file(s) of ${r.cacheDir}` +
          (r.pruned.length ? ` (${r.pruned.join(', ')})` : '') +
          '\n',
      );
    });
}
