import { Option, type Command } from 'commander';
import path from 'node:path';
import { loadConfig, requireTrees, type CpmConfig } from '../../config.js';
import { CpmError, EXIT_CODES } from '../../errors.js';
import {
  DEFAULT_PRIORITY,
  addRepoConfig,
  loadRepoConfigs,
  parseRepoEntry,
  removeRepoConfig,
  repoTypeOfUrl,
  type RepoConfig,
  type RepoType,
} from '../../repo/config.js';
import { familyKey } from '../../package/package.js';
import type { OpenedRepositories } from '../../repo/open.js';
import { printJson } from '../output.js';
import { collect } from '../command-table.js';

// Repository libraries (the registry client among them) load when a command runs, not for help.
const open = (): Promise<typeof import('../../repo/open.js')> => import('../../repo/open.js');
const query = (): Promise<typeof import('../../repo/query.js')> => import('../../repo/query.js');

function config(cmd: Command): Promise<CpmConfig> {
  return loadConfig(cmd.optsWithGlobals<{ config?: string }>().config);
}

/** Repository type from a URL: oci://, http(s)://, else a dir path (dir:// or plain). */
export function typeOfUrl(url: string): RepoType {
  return repoTypeOfUrl(url);
}

/** `--repo URL` one-offs: priority 0 so they win, named repo-1, repo-2, ... */
function oneOffs(urls: string[] | undefined): RepoConfig[] | undefined {
  if (!urls?.length) return undefined;
  return urls.map((u, i) =>
    parseRepoEntry(
      {
        name: `repo-${i + 1}`,
        type: typeOfUrl(u),
        urls: [u.startsWith('dir://') || typeOfUrl(u) !== 'dir' ? u : path.resolve(u)],
        priority: 0,
      },
      `--repo ${u}`,
    ),
  );
}

/** The configured repositories, or the `--repo` one-offs; one that fails is a problem, not the end. */
async function openForQuery(urls: string[] | undefined, cmd: Command): Promise<OpenedRepositories> {
  const repos = oneOffs(urls);
  return (await open()).openRepositories(await config(cmd), {
    ...(repos ? { repos } : {}),
    tolerant: true,
  });
}

function warnProblems(problems: CpmError[]): void {
  for (const p of problems) {
    process.stderr.write(`cpm: warning: ${p.message}\n`);
    if (p.hint) process.stderr.write(`hint: ${p.hint}\n`);
  }
}

interface CreateCli {
  tree: string[];
  values: string[];
  lenient?: boolean;
  strict?: boolean;
  output: string;
  push?: boolean;
  compression?: 'gzip' | 'zstd';
  indexCompression?: 'gzip' | 'zstd' | 'none';
  name?: string;
  description?: string;
  plainHttp?: boolean;
  json?: boolean;
}

function registerRepoCommands(repo: Command): void {
  repo
    .command('create')
    .description('pack every package of a tree and write a repository index (dir:// or oci://)')
    .addHelpText(
      'after',
      `\nExamples:\n  cpm repo create --tree packages-tree --output dir://out/repo\n  cpm repo create --tree packages-tree --output oci://registry.example.com/cos --push --json`,
    )
    .option(
      '--tree <dir>',
      "packages tree; repeat to merge trees as luet's --tree does (an earlier tree's package wins); replaces the config's trees (default: those)",
      collect,
      [],
    )
    .option(
      '--values <file>',
      'values file for the templates, overrides package fields (repeatable, later wins)',
      collect,
      [],
    )
    .option('--lenient', 'accept what luet accepts where cpm refuses (see docs/tree-format.md)')
    .option(
      '--strict',
      'refuse the whole tree on any problem (default: leave out the packages with problems)',
    )
    .requiredOption('--output <url>', 'dir://PATH or oci://HOST[:PORT]/NAMESPACE')
    .option('--push', 'upload to the registry (oci:// outputs; without it nothing is pushed)')
    .addOption(
      new Option('--compression <c>', 'layer compression')
        .choices(['gzip', 'zstd'])
        .default('gzip'),
    )
    .addOption(
      new Option('--index-compression <c>', 'index compression')
        .choices(['gzip', 'zstd', 'none'])
        .default('gzip'),
    )
    .option(
      '--name <name>',
      'repository name recorded in the index (default: last part of the output)',
    )
    .option('--description <text>', 'repository description')
    .option('--plain-http', 'talk plain http to a non-loopback registry')
    .option('--json', 'print the result as JSON')
    .action(async (opts: CreateCli, cmd: Command) => {
      const cfg = await config(cmd);
      const trees = requireTrees(opts.tree, cfg);
      const { createFromTree } = await import('../../repo/create.js');
      const r = await createFromTree(trees, {
        output: opts.output,
        ...(opts.values.length ? { values: opts.values } : {}),
        ...(opts.lenient ? { lenient: true } : {}),
        ...(opts.strict ? { strict: true } : {}),
        ...(opts.push ? { push: true } : {}),
        ...(opts.compression ? { compression: opts.compression } : {}),
        ...(opts.indexCompression ? { indexCompression: opts.indexCompression } : {}),
        ...(opts.name ? { name: opts.name } : {}),
        ...(opts.description ? { description: opts.description } : {}),
        cacheDir: cfg.cache_dir,
        registry: opts.plainHttp ? { plainHttp: true } : {},
        log: opts.json ? undefined : (l) => process.stderr.write(`${l}\n`),
      });
      // Always on stderr, --json or not: a package left out or not built must not pass unnoticed.
      for (const w of r.warnings) process.stderr.write(`cpm: warning: ${w}\n`);
      const summary = {
        url: r.url,
        name: r.index.repository.name,
        revision: r.index.repository.revision,
        timestamp: r.index.repository.timestamp,
        indexDigest: r.indexDigest,
        indexManifestDigest: r.indexManifestDigest,
        packages: r.index.packages.length,
        packed: r.packed,
        reused: r.reused,
        metaOnly: r.metaOnly,
        needsBuild: r.needsBuild ?? [],
        skipped: r.skipped,
        uploads: r.uploads.length,
        changed: r.changed,
        pushed: r.pushed,
      };
      if (opts.json) return printJson(summary);
      process.stdout.write(
        `${r.url}: ${summary.packages} packages (${r.packed.length} packed, ${r.reused.length} reused, ` +
          `${r.metaOnly.length} metadata-only), revision ${summary.revision}${r.changed ? '' : ' (unchanged)'}\n` +
          (r.skipped.length
            ? `${r.skipped.length} left out for their problems (listed above)\n`
            : '') +
          `index ${r.indexDigest}\n`,
      );
      if (!r.pushed) process.stdout.write('nothing was pushed: add --push to upload\n');
      if (r.needsBuild && r.needsBuild.length > 0)
        process.stderr.write(
          `cpm: ${r.needsBuild.length} package(s) are built from build.yaml steps and are not in the output ` +
            `(left out of the index): ${r.needsBuild.slice(0, 5).join(', ')}${r.needsBuild.length > 5 ? ', …' : ''}\n` +
            `hint: cpm build ${trees.map((t) => `--tree ${t}`).join(' ')} --output ${opts.output} builds them (and updates this index)\n`,
        );
    });

  repo
    .command('list')
    .description('list the configured repositories')
    .addHelpText('after', `\nExamples:\n  cpm repo list\n  cpm repo list --json`)
    .option('--json', 'print as JSON')
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      const cfg = await config(cmd);
      const { repos, problems } = await loadRepoConfigs(cfg.repos_confdir);
      const rows = await Promise.all(
        repos.map(async (r) => {
          const o = await open();
          const cached = await o.readCachedIndex(cfg, r.name).catch(() => undefined);
          return {
            ...r,
            cached: cached
              ? {
                  revision: cached.state.revision,
                  fetchedAt: cached.state.fetchedAt,
                  packages: o.packageCount(cached.index),
                }
              : null,
          };
        }),
      );
      if (opts.json) {
        printJson({ repositories: rows, problems: problems.map((p) => p.toJSON()) });
      } else {
        if (rows.length === 0)
          process.stdout.write(`no repositories in ${cfg.repos_confdir.join(', ')}\n`);
        for (const r of rows.sort(
          (a, b) => a.priority - b.priority || (a.name < b.name ? -1 : 1),
        )) {
          const state = r.cached
            ? `revision ${r.cached.revision}, ${r.cached.packages} packages`
            : r.type === 'dir'
              ? 'read live'
              : 'not fetched yet';
          process.stdout.write(
            `${r.enabled ? ' ' : '-'} ${r.name}  ${r.type}  priority ${r.priority}  ${r.urls.join(' ')}  (${state})\n`,
          );
        }
        warnProblems(problems);
      }
      if (problems.length > 0) process.exitCode = EXIT_CODES.E_CONFIG;
    });

  repo
    .command('add')
    .description('add a repository config (repos.conf.d/NAME.yaml)')
    .addHelpText(
      'after',
      `\nExamples:\n  cpm repo add local dir://out/repo\n  cpm repo add cos oci://registry.example.com/cos --priority 10`,
    )
    .argument('<name>', 'unique repository name')
    .argument('<url>', 'dir://PATH | oci://HOST/NS | http(s)://URL | a path')
    .addOption(
      new Option('--type <type>', 'repository type (default: from the URL)').choices([
        'dir',
        'oci',
        'http',
        'luet',
      ]),
    )
    .option('--priority <n>', 'lower = preferred', (v) => Number.parseInt(v, 10), DEFAULT_PRIORITY)
    .option('--disabled', 'add it disabled')
    .option('--auth <key>', 'credentials key (default: the URL host)')
    .option('--no-verify', 'do not verify TLS certificates')
    .option('--insecure', 'plain http to a registry that is not on loopback')
    .option('--ca-file <pem>', 'extra CA certificate(s) for https')
    .option('--description <text>', 'description')
    .action(
      async (
        name: string,
        url: string,
        opts: {
          type?: RepoType;
          priority: number;
          disabled?: boolean;
          auth?: string;
          verify: boolean;
          insecure?: boolean;
          caFile?: string;
          description?: string;
        },
        cmd: Command,
      ) => {
        const cfg = await config(cmd);
        const type = opts.type ?? typeOfUrl(url);
        // a relative path on the command line means the current directory, as everywhere else;
        // written as is, the config would read it relative to the repos.conf.d file
        const u =
          type !== 'dir'
            ? url
            : url.startsWith('dir://')
              ? `dir://${path.resolve(url.slice('dir://'.length))}`
              : path.resolve(url);
        const entry = parseRepoEntry(
          {
            name,
            type,
            urls: [u],
            priority: opts.priority,
            enabled: !opts.disabled,
            verify: opts.verify,
            ...(opts.auth ? { auth: opts.auth } : {}),
            ...(opts.insecure ? { insecure: true } : {}),
            ...(opts.caFile ? { ca_file: path.resolve(opts.caFile) } : {}),
            ...(opts.description ? { description: opts.description } : {}),
          },
          'cpm repo add',
        );
        const file = await addRepoConfig(cfg.repos_confdir, entry);
        process.stdout.write(`added ${name} (${type}) in ${file}\n`);
      },
    );

  repo
    .command('remove')
    .description('remove a repository config')
    .addHelpText('after', `\nExamples:\n  cpm repo remove local`)
    .argument('<name>')
    .action(async (name: string, _o: unknown, cmd: Command) => {
      const file = await removeRepoConfig((await config(cmd)).repos_confdir, name);
      process.stdout.write(`removed ${name} from ${file}\n`);
    });

  repo
    .command('update')
    .description('fetch repository indexes into the cache; report changed, stale and broken ones')
    .addHelpText('after', `\nExamples:\n  cpm repo update\n  cpm repo update cos --json`)
    .argument('[names...]', 'only these repositories')
    .option('--stale-hours <n>', 'report indexes older than this', (v) => Number(v), 168)
    .option('--plain-http', 'talk plain http to non-loopback registries')
    .option('--json', 'print as JSON')
    .action(
      async (
        names: string[],
        opts: { staleHours: number; plainHttp?: boolean; json?: boolean },
        cmd: Command,
      ) => {
        const { results, problems } = await (
          await import('../../repo/update.js')
        ).updateRepositories(await config(cmd), {
          names,
          staleHours: opts.staleHours,
          ...(opts.plainHttp ? { plainHttp: true } : {}),
        });
        const failed = results.filter((r) => r.error);
        if (opts.json) {
          printJson({
            results: results.map((r) => ({ ...r, error: r.error?.toJSON() })),
            problems: problems.map((p) => p.toJSON()),
          });
        } else {
          for (const r of results) {
            if (r.error) {
              const m = r.error.message;
              const named = m.startsWith(`repository "${r.name}"`) ? m : `${r.name}: ${m}`;
              process.stderr.write(`cpm: ${named}\n`);
              if (r.error.hint) process.stderr.write(`hint: ${r.error.hint}\n`);
              continue;
            }
            const prev =
              r.previousRevision !== undefined && r.previousRevision !== r.revision
                ? ` (was ${r.previousRevision})`
                : '';
            process.stdout.write(
              `${r.name}: ${r.status}, revision ${r.revision}${prev}, ${r.packages} packages\n`,
            );
            for (const s of r.staleReasons) process.stdout.write(`  stale: ${s}\n`);
          }
          warnProblems(problems);
        }
        const first = failed[0]?.error ?? problems[0];
        if (first) process.exitCode = EXIT_CODES[first.code];
      },
    );
}

export function registerRepo(program: Command): void {
  const repo = program
    .command('repo')
    .description('create, configure and update package repositories');
  registerRepoCommands(repo);

  program
    .command('search')
    .description('search the configured repositories by name, description and labels')
    .addHelpText(
      'after',
      `\nExamples:\n  cpm search cos\n  cpm search '' --repo dir://out/repo --json`,
    )
    .argument('<term>', 'substring ("" lists everything)')
    .option('--repo <url...>', 'search these repositories instead of the configured ones')
    .option('--hidden', 'include hidden packages')
    .option('--json', 'print as JSON')
    .action(
      async (
        term: string,
        opts: { repo?: string[]; hidden?: boolean; json?: boolean },
        cmd: Command,
      ) => {
        const opened = await openForQuery(opts.repo, cmd);
        try {
          const hits = (await query()).search(opened.universe, term, { hidden: opts.hidden });
          if (opts.json)
            printJson({ results: hits, problems: opened.problems.map((p) => p.toJSON()) });
          else {
            for (const h of hits) {
              process.stdout.write(
                `${familyKey(h)}@${h.version}  [${h.repo}]${h.payload ? '' : ' (meta)'}${h.description ? `  ${h.description}` : ''}\n`,
              );
            }
            warnProblems(opened.problems);
          }
          if (opened.problems.length > 0) process.exitCode = EXIT_CODES[opened.problems[0]!.code];
        } finally {
          await opened.close();
        }
      },
    );

  program
    .command('info')
    .description('show a package of the configured repositories (newest matching version)')
    .addHelpText(
      'after',
      `\nExamples:\n  cpm info system/cos-setup\n  cpm info system/cos-setup@'>=1' --json`,
    )
    .argument('<package>', 'category/name, category/name@1.2 or category/name@>=1')
    .option('--repo <url...>', 'use these repositories instead of the configured ones')
    .option('--json', 'print as JSON')
    .action(async (ref: string, opts: { repo?: string[]; json?: boolean }, cmd: Command) => {
      const opened = await openForQuery(opts.repo, cmd);
      try {
        // no repository answered: that is the error (network, auth), not "no such package"
        if (opened.repos.length === 0 && opened.problems.length > 0) throw opened.problems[0]!;
        warnProblems(opened.problems);
        const i = (await query()).info(opened.universe, ref);
        const loc = await opened.locate(i.id);
        if (opts.json) {
          printJson({ ...i, imageRef: loc.imageRef, layers: loc.layers });
          return;
        }
        const p = i.package;
        const deps = (l: typeof p.requires): string =>
          l
            .map(
              (d) =>
                `${d.category ? `${d.category}/` : ''}${d.name}${d.version ? ` ${d.version}` : ''}`,
            )
            .join(', ');
        const lines = [
          `${i.id}  [${i.repo}]`,
          p.description ? `description: ${p.description}` : undefined,
          p.license ? `license: ${p.license}` : undefined,
          p.requires.length ? `requires: ${deps(p.requires)}` : undefined,
          p.conflicts.length ? `conflicts: ${deps(p.conflicts)}` : undefined,
          p.provides.length ? `provides: ${deps(p.provides)}` : undefined,
          `versions: ${i.versions.map((v) => `${v.version} [${v.repo}]`).join(', ')}`,
          i.alsoIn.length ? `also in (lower priority): ${i.alsoIn.join(', ')}` : undefined,
          loc.imageRef ? `image: ${loc.imageRef}` : 'image: none (metadata-only package)',
          loc.manifestDigest ? `manifest: ${loc.manifestDigest}` : undefined,
          ...loc.layers.map((l) => `layer: ${l.digest} ${l.size} bytes ${l.mediaType}`),
          p.finalize ? `finalize: ${JSON.stringify(p.finalize)}` : undefined,
          p.source
            ? `defined in: ${p.source.file}${p.source.line ? `:${p.source.line}` : ''}`
            : undefined,
        ];
        process.stdout.write(lines.filter((l) => l !== undefined).join('\n') + '\n');
      } finally {
        await opened.close();
      }
    });
}
