/**
 * cpm build on a tree where some packages have problems: as repo create, the packages with
 * problems (and those whose build needs one) are left out, named with their first problem, and
 * the rest is built and indexed; --strict, or naming a package that needs one, refuses instead.
 * The packages here need no sandbox (no steps, no image): nothing but the loader and the planner.
 */
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { build, type BuildOptions } from '../../src/build/build.js';
import { CpmError } from '../../src/errors.js';
import { tmpDir } from '../install/helpers.js';
import { writeFiles } from './fixtures.js';

function treeWithProblems(): string {
  const tree = path.join(tmpDir('cpm-leave-out-'), 'packages');
  writeFiles(tree, {
    'a/definition.yaml': 'category: ok\nname: a\nversion: "1"\n',
    'a/build.yaml': 'steps: []\n',
    // prints a value nobody gives: a problem of this package only
    'render/definition.yaml': 'category: bad\nname: render\nversion: "1"\n',
    'render/build.yaml': 'image: "{{ .Values.missing }}"\n',
    // builds on the package with problems
    'needs/definition.yaml': 'category: ok\nname: needs-bad\nversion: "1"\n',
    'needs/build.yaml': 'requires:\n  - {category: bad, name: render}\n',
    // not a valid version (luet loads it; cpm without --lenient does not)
    'meta/definition.yaml': 'category: bad\nname: meta\nversion: "1.0!"\n',
  });
  return tree;
}

/** A dry run of `tree` (output and cache beside it), one job, no network. */
const dryRun = (tree: string): BuildOptions => ({
  tree,
  output: `dir://${path.join(path.dirname(tree), 'out')}`,
  cacheDir: path.join(path.dirname(tree), 'cache'),
  jobs: 1,
  network: false,
  dryRun: true,
});

describe('cpm build leaves out packages with problems', () => {
  it('builds the rest, lists the others as skipped with their problem, indexes only the rest', async () => {
    const tree = treeWithProblems();
    const out = path.join(path.dirname(tree), 'out');
    const warnings: string[] = [];
    const r = await build({
      tree,
      output: `dir://${out}`,
      cacheDir: path.join(path.dirname(tree), 'cache'),
      jobs: 1,
      network: false,
      warn: (l) => warnings.push(l),
    });
    const by = Object.fromEntries(r.packages.map((o) => [o.id, o]));
    expect(by['ok/a@1']?.outcome).toBe('built');
    expect(by['bad/render@1']).toMatchObject({ outcome: 'skipped' });
    expect(by['bad/render@1']!.reason).toMatch(
      /^packages\/render\/build\.yaml:1: template: \.Values\.missing has no value/,
    );
    expect(by['ok/needs-bad@1']!.reason).toMatch(/^bad\/render@1 has problems \(packages\/render/);
    // a stanza that made no package is named by where it is
    expect(by['packages/meta/definition.yaml:1']?.reason).toContain(
      '"1.0!" is not a valid version',
    );
    expect(r.failed).toBe(0);
    expect(warnings.filter((w) => w.startsWith('left out '))).toHaveLength(3);
    expect(r.repo!.index.packages.map((p) => `${p.category}/${p.name}@${p.version}`)).toEqual([
      'ok/a@1',
    ]);
  });

  it('--strict, or a named package that needs one with problems, refuses the tree', async () => {
    const base = dryRun(treeWithProblems());
    for (const extra of [{ strict: true }, { packages: ['ok/needs-bad'] }]) {
      const e = await build({ ...base, ...extra }).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(CpmError);
      expect((e as CpmError).code).toBe('E_TREE');
      expect((e as CpmError).message).toContain('the tree has 2 problem(s):');
    }
    // a named package the problems do not touch is refused too: the tree is not clean
    const named = await build({ ...base, packages: ['ok/a'] }).catch((x: unknown) => x);
    expect((named as CpmError).code).toBe('E_TREE');
  });

  it('a tree whose every package has problems is refused: nothing is left to build', async () => {
    const tree = path.join(tmpDir('cpm-leave-out-'), 'packages');
    writeFiles(tree, {
      'render/definition.yaml': 'category: bad\nname: render\nversion: "1"\n',
      'render/build.yaml': 'image: "{{ .Values.missing }}"\n',
    });
    const e = await build(dryRun(tree)).catch((x: unknown) => x);
    expect((e as CpmError).message).toMatch(/^every package of the tree has problems/);
  });
});
