import { Option, type Command } from 'commander';
import os from 'node:os';
import path from 'node:path';
import type { BuildOptions, BuildResult, PackageOutcome } from '../../build/build.js';
import { loadConfig, requireTrees } from '../../config.js';
import { EXIT_CODES } from '../../errors.js';
import { collect } from '../command-table.js';
import { printJson } from '../output.js';

/** The parsed flags; those named as build()'s options pass through as they are. */
interface BuildCli extends Pick<
  BuildOptions,
  | 'output'
  | 'push'
  | 'jobs'
  | 'network'
  | 'keepFailed'
  | 'failFast'
  | 'dryRun'
  | 'rebuild'
  | 'logDir'
> {
  tree: string[];
  values: string[];
  lenient?: boolean;
  strict?: boolean;
  all?: boolean;
  compression?: 'gzip' | 'zstd';
  plainHttp?: boolean;
  json?: boolean;
  /** string: --cache URL; false: --no-cache. */
  cache?: string | false;
  shard?: string;
  /** false: --no-index. */
  index?: boolean;
  /** false: --no-build. */
  build?: boolean;
}

function line(o: PackageOutcome): string {
  const what = o.outcome === 'would-build' ? 'build' : o.outcome;
  return `${what.padEnd(10)} ${o.id}  ${o.reason}`;
}

function tail(text: string, lines = 20): string {
  return text
    .trimEnd()
    .split('\n')
    .slice(-lines)
    .map((l) => `  | ${l}`)
    .join('\n');
}

function render(r: BuildResult, dryRun: boolean): void {
  for (const o of r.packages) process.stdout.write(`${line(o)}\n`);
  for (const o of r.packages.filter((x) => x.outcome === 'failed')) {
    process.stderr.write(`\ncpm: ${o.error}\n`);
    if (o.failure?.tail) process.stderr.write(`${tail(o.failure.tail)}\n`);
    if (o.log) process.stderr.write(`log: ${o.log}\n`);
    if (o.keptRoot) process.stderr.write(`build root kept at ${o.keptRoot}\n`);
  }
  if (dryRun) return;
  const n = (k: PackageOutcome['outcome']): number =>
    r.packages.filter((o) => o.outcome === k).length;
  process.stdout.write(
    `${n('built')} built, ${n('cached')} from the cache, ${n('up-to-date')} up to date, ` +
      `${n('failed')} failed, ${n('skipped')} skipped` +
      (r.missing > 0 ? ` (${r.missing} in neither the output nor the cache)` : '') +
      (r.repo ? `; ${r.repo.url} revision ${r.repo.index.repository.revision}` : '') +
      '\n',
  );
  if (r.repo && !r.repo.pushed) process.stdout.write('nothing was pushed: add --push to upload\n');
}

export function registerBuild(program: Command): void {
  program
    .command('build')
    .description("build a luet tree's packages from build.yaml under bubblewrap (no daemon)")
    .addHelpText(
      'after',
      `\nExamples:\n  cpm build --tree packages --output dir://out/repo --all\n  cpm build system/foo --tree packages --values values.yaml --output oci://registry.example.com/cos --push\n  cpm build --tree packages --output dir://out/repo --all --dry-run`,
    )
    .argument(
      '[packages...]',
      'packages to build (category/name[@version]), with their build dependencies',
    )
    .option(
      '--tree <dir>',
      "packages tree; repeat to merge trees as luet's --tree does (an earlier tree's package wins); replaces the config's trees (default: those)",
      collect,
      [],
    )
    .option('--values <file>', 'template values file (repeatable, later wins)', collect, [])
    .option('--lenient', 'accept what luet accepts where cpm refuses (see docs/tree-format.md)')
    .option(
      '--strict',
      'refuse the whole tree on any problem (default with no packages named: leave out the packages with problems and those whose build needs one)',
    )
    .requiredOption('--output <url>', 'dir://PATH or oci://HOST[:PORT]/NAMESPACE')
    .option('--push', 'upload to the registry (oci:// outputs)')
    .option('--all', 'build every package of the tree (the default when none is named)')
    .option('-j, --jobs <n>', 'packages built at once (default: number of cores)', (v) =>
      Number.parseInt(v, 10),
    )
    .option('--network <mode>', 'network inside the sandbox: host (default) or none')
    .option('--keep-failed', 'keep the build root of a failed package for inspection')
    .option('--fail-fast', 'start no more builds after the first failure')
    .option('--dry-run', 'print the build order and what would be built, and why')
    .option('--rebuild', 'build even packages whose build hash is in the output or the cache')
    .option(
      '--cache <url>',
      'shared build cache oci://HOST[:PORT]/NAMESPACE: results looked up by build hash, pushed after builds (config: build.cache)',
    )
    .option('--no-cache', 'do not use the build cache of the config')
    .option(
      '--shard <i/n>',
      'build only part I of N of the packages, a CI matrix runner (implies --no-index)',
    )
    .option(
      '--no-index',
      'publish package images and cache results, write no index (matrix runners)',
    )
    .option(
      '--no-build',
      'build nothing: index what the output or the cache has (the merge job of a matrix)',
    )
    .option('--log-dir <dir>', 'per-package logs (default: OUTPUT/build-logs for dir://)')
    .addOption(
      new Option('--compression <c>', 'layer compression')
        .choices(['gzip', 'zstd'])
        .default('gzip'),
    )
    .option('--plain-http', 'talk plain http to a non-loopback registry')
    .option('--json', 'print the result as JSON')
    .action(async (names: string[], opts: BuildCli, cmd: Command) => {
      const cfg = await loadConfig(cmd.optsWithGlobals<{ config?: string }>().config);
      const trees = requireTrees(opts.tree, cfg);
      const network = (opts.network as unknown as string | undefined) ?? 'host';
      if (network !== 'host' && network !== 'none') {
        process.stderr.write(`cpm: --network ${network}: expected host or none\n`);
        process.exitCode = EXIT_CODES.E_USAGE;
        return;
      }
      // The builder (registry client, installer, sandbox) loads when the command runs, not for help.
      const { build } = await import('../../build/build.js');
      const { parseShard } = await import('../../build/shard.js');
      const cache = opts.cache === false ? undefined : (opts.cache ?? cfg.build.cache);
      const r = await build({
        tree: trees,
        ...(opts.values.length ? { values: opts.values.map((v) => path.resolve(v)) } : {}),
        ...(opts.lenient ? { lenient: true } : {}),
        ...(opts.strict ? { strict: true } : {}),
        packages: opts.all ? [] : names,
        output: opts.output,
        ...(opts.push ? { push: true } : {}),
        cacheDir: cfg.cache_dir,
        jobs: opts.jobs ?? os.cpus().length,
        network: network === 'host',
        ...(opts.keepFailed ? { keepFailed: true } : {}),
        ...(opts.failFast ? { failFast: true } : {}),
        ...(opts.dryRun ? { dryRun: true } : {}),
        ...(opts.rebuild ? { rebuild: true } : {}),
        ...(opts.logDir ? { logDir: path.resolve(opts.logDir) } : {}),
        ...(opts.compression ? { compression: opts.compression } : {}),
        registry: opts.plainHttp ? { plainHttp: true } : {},
        ...(cache ? { cache } : {}),
        ...(opts.shard ? { shard: parseShard(opts.shard) } : {}),
        ...(opts.index === false ? { noIndex: true } : {}),
        ...(opts.build === false ? { noBuild: true } : {}),
        log: opts.json ? undefined : (l) => process.stderr.write(`${l}\n`),
        warn: (l) => process.stderr.write(`cpm: warning: ${l}\n`),
      });
      if (opts.json)
        printJson({
          packages: r.packages,
          failed: r.failed,
          missing: r.missing,
          warnings: r.warnings,
          ...(r.repo
            ? {
                repository: {
                  url: r.repo.url,
                  revision: r.repo.index.repository.revision,
                  indexDigest: r.repo.indexDigest,
                  pushed: r.repo.pushed,
                },
              }
            : {}),
        });
      else render(r, !!opts.dryRun);
      if (r.failed > 0 || r.missing > 0) process.exitCode = EXIT_CODES.E_BUILD;
    });
}
