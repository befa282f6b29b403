import type { Command } from 'commander';
import { chosenTrees, loadConfig } from '../../config.js';
import { CpmError } from '../../errors.js';
import {
  graphToDot,
  lookupDependencyTree,
  lookupPackage,
  renderDepTree,
  treeGraph,
} from '../../tree/graph.js';
import { packageId } from '../../package/package.js';
import { formatProblem, type Problem } from '../../tree/problems.js';
import { parseRef } from '../../package/ref.js';
import type { LoadedTree } from '../../tree/tree.js';
import { printJson } from '../output.js';
import { collect } from '../command-table.js';
import { err, out } from '../../util/stdio.js';

interface TreeOpts {
  tree: string[];
  values: string[];
  lenient?: boolean;
  json?: boolean;
  verbose?: boolean;
}

function common(cmd: Command): Command {
  return cmd
    .option(
      '--tree <dir>',
      "packages tree; repeat to merge trees as luet does (an earlier tree's package wins); replaces the config's trees (default: those, else cpm's own packages-tree/)",
      collect,
      [],
    )
    .option(
      '--values <file>',
      'values file for templates, overrides package fields (repeatable)',
      collect,
      [],
    )
    .option(
      '--lenient',
      'accept what luet accepts where cpm refuses (differing duplicates, odd versions)',
    );
}

async function load(opts: TreeOpts, cmd: Command): Promise<LoadedTree> {
  // the loader (and its YAML parser) only when a tree command runs
  const { loadTree, projectTreeDir } = await import('../../tree/tree.js');
  const cfg = await loadConfig(cmd.optsWithGlobals<{ config?: string }>().config);
  const dirs = chosenTrees(opts.tree, cfg);
  return loadTree(dirs.length > 0 ? dirs : projectTreeDir(), {
    values: opts.values,
    ...(opts.lenient ? { lenient: true } : {}),
  });
}

const problemJson = (p: Problem): Record<string, unknown> => ({ ...p, text: formatProblem(p) });

/** Commands other than validate still work on a tree with problems, but say so. */
function noteProblems(t: LoadedTree): void {
  if (t.problems.length === 0) return;
  err(
    `cpm: warning: the tree has ${t.problems.length} problem(s); run "cpm tree validate" to list them\n`,
  );
}

/** `cpm tree validate|list|deps|graph|render`. */
export function registerTree(program: Command): void {
  const tree = program.command('tree').description('inspect and validate a packages tree');

  common(tree.command('validate'))
    .description('load the whole tree and report every problem (exit 1 if any)')
    .addHelpText(
      'after',
      `\nExamples:\n  cpm tree validate\n  cpm tree validate --tree ./packages-tree --json\n  cpm tree validate -v --values values/prod.yaml`,
    )
    .option('--json', 'machine-readable output')
    .option('-v, --verbose', 'list warnings too')
    .action(async (opts: TreeOpts, cmd: Command) => {
      const t = await load(opts, cmd);
      if (opts.json) {
        printJson({
          ok: t.problems.length === 0,
          dir: t.dir,
          stats: t.stats,
          problems: t.problems.map(problemJson),
          warnings: t.warnings.map(problemJson),
        });
      } else {
        // one write for the whole report (a line each was a system call each)
        let text = '';
        for (const p of t.problems) text += `${formatProblem(p)}\n`;
        if (opts.verbose) for (const w of t.warnings) text += `warning: ${formatProblem(w)}\n`;
        const s = t.stats;
        out(
          text +
            `${t.problems.length === 0 ? 'ok' : `${t.problems.length} problem(s)`}: ${s.packages} packages in ${s.categories} categories ` +
            `(${s.definitions} definitions, ${s.collections} collections, ${s.buildSpecs} build specs, ${s.finalizers} finalizers)` +
            (t.warnings.length && !opts.verbose
              ? `, ${t.warnings.length} warning(s) (--verbose lists them)`
              : '') +
            '\n',
        );
      }
      if (t.problems.length > 0) process.exitCode = 1;
    });

  common(tree.command('list'))
    .description('list the packages of the tree, newest version first per family')
    .addHelpText(
      'after',
      `\nExamples:\n  cpm tree list\n  cpm tree list --tree ./packages-tree --json | jq -r '.packages[].id'`,
    )
    .option('--json', 'machine-readable output')
    .action(async (opts: TreeOpts, cmd: Command) => {
      const t = await load(opts, cmd);
      noteProblems(t);
      if (opts.json) {
        printJson({
          packages: t.packages.map((p) => ({
            id: packageId(p),
            category: p.category,
            name: p.name,
            version: p.version,
            hidden: p.hidden,
            description: p.description ?? null,
            file: p.source?.file ?? p.definitionFile,
            line: p.source?.line ?? null,
          })),
        });
        return;
      }
      const rows = t.packages.map((p) => [
        packageId(p) + (p.hidden ? ' (hidden)' : ''),
        `${p.source?.file}:${p.source?.line ?? ''}`,
      ]);
      const w = Math.max(0, ...rows.map((r) => r[0]!.length));
      out(rows.map(([id, file]) => `${id!.padEnd(w)}  ${file}\n`).join(''));
    });

  common(tree.command('deps'))
    .description(
      'transitive runtime requires of a package, as a tree (newest match per selector; a provided package resolves to its provider, as in luet)',
    )
    .addHelpText(
      'after',
      `\nExamples:\n  cpm tree deps system/cos-setup\n  cpm tree deps system/cos-setup@'>=1.0' --json\n  cpm tree deps utils/installer --own`,
    )
    .argument('<package>', 'category/name, category/name@1.2.3 or category/name@>=1.2')
    .option('--json', 'machine-readable output')
    .option('--own', "a package another provides: its own requires, not the provider's")
    .action(async (ref: string, opts: TreeOpts & { own?: boolean }, cmd: Command) => {
      const r = parseRef(ref);
      const t = await load(opts, cmd);
      noteProblems(t);
      const { pkg, provides, ...deps } = lookupDependencyTree(t.universe, r, opts.own);
      const id = packageId(pkg);
      if (opts.json) {
        printJson({ package: id, ...(provides ? { provides } : {}), ...deps });
        return;
      }
      if (provides)
        err(
          `cpm: ${provides} is provided by ${id}: showing the provider's requires, as luet resolves it (--own for the package's own)\n`,
        );
      out(renderDepTree(deps.root));
      out(`\n${deps.closure.length} package(s) in the runtime closure of ${id}\n`);
      if (deps.unresolved.length > 0) {
        out(
          `${deps.unresolved.length} unresolved requirement(s):\n` +
            deps.unresolved.map((u) => `  ${u}\n`).join(''),
        );
      }
    });

  common(tree.command('graph'))
    .description('runtime dependency graph of the whole tree')
    .addHelpText(
      'after',
      `\nExamples:\n  cpm tree graph | dot -Tsvg > deps.svg\n  cpm tree graph --format json`,
    )
    .option('--format <fmt>', 'dot or json', 'dot')
    .action(async (opts: TreeOpts & { format: string }, cmd: Command) => {
      if (opts.format !== 'dot' && opts.format !== 'json') {
        throw new CpmError('E_USAGE', `--format ${opts.format}: use dot or json`);
      }
      const t = await load(opts, cmd);
      noteProblems(t);
      const g = treeGraph(t.universe);
      if (opts.format === 'json') printJson(g);
      else out(graphToDot(g));
    });

  common(tree.command('render'))
    .description("print a package's build spec rendered with its values (and --values files)")
    .addHelpText(
      'after',
      `\nExamples:\n  cpm tree render system/cos-setup\n  cpm tree render system/cos-setup --finalize --values values/prod.yaml`,
    )
    .argument('<package>', 'category/name, category/name@1.2.3 or category/name@>=1.2')
    .option('--finalize', 'print the rendered finalize.yaml instead')
    .option('--own', "a package another provides: render its own spec, not the provider's")
    .action(
      async (ref: string, opts: TreeOpts & { finalize?: boolean; own?: boolean }, cmd: Command) => {
        const r = parseRef(ref);
        const t = await load(opts, cmd);
        // luet looks a provided package up as its provider and builds that (utils/installer → system/cos-wrapper).
        const { pkg: p, provides } = lookupPackage(t.universe, r, opts.own);
        if (provides)
          err(
            `cpm: ${provides} is provided by ${packageId(p)}: showing the provider's spec, as luet builds it (--own for the package's own)\n`,
          );
        const what = opts.finalize ? p.finalize : p.build;
        const name = opts.finalize ? 'finalize.yaml' : 'build.yaml';
        if (!what)
          throw new CpmError('E_NOT_FOUND', `${packageId(p)} has no ${name}`, {
            context: { package: packageId(p) },
          });
        if (what.rendered === null) {
          const mine = t.problems.filter(
            (x) => x.file === what.file || x.message.includes(`rendering for ${packageId(p)})`),
          );
          const first = mine[0];
          throw new CpmError(
            first?.code === 'E_YAML' ? 'E_YAML' : 'E_TEMPLATE',
            mine.length ? mine.map(formatProblem).join('\n') : `${what.file}: rendering failed`,
            { context: { file: what.file, line: first?.line, package: packageId(p) } },
          );
        }
        out(what.rendered.endsWith('\n') ? what.rendered : what.rendered + '\n');
        const id = packageId(p);
        const shown = [`${what.file} (rendered)`, `${what.file} (rendered for ${id})`];
        const rendered = t.problems.filter((x) => shown.includes(x.file));
        if (rendered.length) {
          err(rendered.map((x) => `cpm: ${formatProblem(x)}\n`).join(''));
          process.exitCode = 1;
        }
      },
    );
}
