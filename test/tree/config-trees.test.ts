/**
 * `trees:` in cpm.yaml: the trees of every tree command when no --tree is given, merged as luet's
 * repeated --tree merges them; --tree replaces the list. Real CLI runs (needs `npm run build`).
 */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { chosenTrees, loadConfig, requireTrees } from '../../src/config.js';
import { CpmError } from '../../src/errors.js';
import { requireBuild, runCpm, type CliResult } from '../support/cli.js';

const cpm = (args: string[], env: Record<string, string> = {}): Promise<CliResult> =>
  runCpm(args, { env: { ...process.env, ...env }, cwd: tmpdir() });

function write(root: string, files: Record<string, string>): void {
  for (const [p, text] of Object.entries(files)) {
    mkdirSync(dirname(join(root, p)), { recursive: true });
    writeFileSync(join(root, p), text);
  }
}

const def = (name: string, version: string, extra = ''): string =>
  `name: ${name}\ncategory: system\nversion: "${version}"\n${extra}`;

// Tree a requires what tree b has; both define system/foo@1 (a's wins, as in luet). Tree b's
// build spec needs a value that only values.yaml gives.
let work: string;
let config: string;
beforeAll(() => {
  requireBuild();
  work = mkdtempSync(join(tmpdir(), 'cpm-cfg-trees-'));
  write(work, {
    'a/packages/foo/definition.yaml': def(
      'foo',
      '1',
      'description: from a\nrequires:\n  - {category: system, name: bar, version: ">=1"}\n',
    ),
    'b/packages/foo/definition.yaml': def('foo', '1', 'description: from b\n'),
    'b/packages/bar/definition.yaml': def('bar', '1.2'),
    'b/packages/bar/build.yaml': 'image: "{{ .Values.image }}"\n',
    'values.yaml': 'image: alpine:3.19\n',
    'conf/cpm.yaml': 'trees:\n  - ../a/packages\n  - ../b/packages\n',
    'conf/none.yaml': 'cache_dir: ../cache\n',
  });
  config = join(work, 'conf/cpm.yaml');
});

describe('trees: in the config', () => {
  it('are read relative to the config file, a string or a list; --tree replaces them', async () => {
    const cfg = await loadConfig(config);
    expect(cfg.trees).toEqual([join(work, 'a/packages'), join(work, 'b/packages')]);
    expect(chosenTrees([], cfg)).toEqual(cfg.trees);
    expect(chosenTrees(['x'], cfg)).toEqual([resolve('x')]);
    write(work, { 'conf/one.yaml': 'trees: ../b/packages\n' });
    expect((await loadConfig(join(work, 'conf/one.yaml'))).trees).toEqual([
      join(work, 'b/packages'),
    ]);
    const none = await loadConfig(join(work, 'conf/none.yaml'));
    expect(none.trees).toEqual([]);
    expect(() => requireTrees(undefined, none)).toThrow(/no packages tree given/);
  });

  it('a tree that is not a string is a config error naming the file and line', async () => {
    write(work, { 'conf/bad.yaml': 'trees:\n  - [nested]\n' });
    const e = await loadConfig(join(work, 'conf/bad.yaml')).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(CpmError);
    expect((e as CpmError).code).toBe('E_CONFIG');
    expect((e as CpmError).message).toContain('bad.yaml:2: "trees" must be a string');
  });

  it('tree list/deps/validate merge them; the earlier tree wins a shared id', async () => {
    const env = { CPM_CONFIG: config };
    const list = await cpm(['tree', 'list', '--json'], env);
    expect(list.code, list.err).toBe(0);
    const pkgs = (
      JSON.parse(list.out) as {
        packages: Array<{ id: string; description: string; file: string }>;
      }
    ).packages;
    expect(pkgs.map((p) => p.id).sort()).toEqual(['system/bar@1.2', 'system/foo@1']);
    expect(pkgs.find((p) => p.id === 'system/foo@1')).toMatchObject({
      description: 'from a',
      file: 'a/packages/foo/definition.yaml',
    });
    const deps = await cpm(['tree', 'deps', 'system/foo', '--json'], env);
    expect(JSON.parse(deps.out)).toMatchObject({ closure: ['system/bar@1.2'], unresolved: [] });
    // bar's build spec prints .Values.image: a problem without values, none with them
    expect((await cpm(['tree', 'validate'], env)).code).toBe(1);
    const v = await cpm(['tree', 'validate', '--values', join(work, 'values.yaml'), '-v'], env);
    expect(v.code, v.out).toBe(0);
    expect(v.out).toContain('also in an earlier tree');
    // --tree replaces the config's list: tree a alone leaves bar unresolved
    const only = await cpm(['tree', 'deps', 'system/foo', '--tree', join(work, 'a/packages')], env);
    expect(only.out).toContain('system/bar — UNRESOLVED');
  });

  it('plan resolves against them', async () => {
    const r = await cpm(['plan', 'install', 'system/foo', '--json'], { CPM_CONFIG: config });
    expect(r.code, r.err).toBe(0);
    expect((JSON.parse(r.out) as { install: string[] }).install.sort()).toEqual([
      'system/bar@1.2',
      'system/foo@1',
    ]);
  });

  it('repo create and build take them; with neither --tree nor trees: a usage error (exit 2)', async () => {
    const out = join(work, 'repo');
    const r = await cpm(
      [
        'repo',
        'create',
        '--values',
        join(work, 'values.yaml'),
        '--output',
        `dir://${out}`,
        '--json',
      ],
      { CPM_CONFIG: config },
    );
    expect(r.code, r.err).toBe(0);
    expect((JSON.parse(r.out) as { packages: number }).packages).toBe(2);
    const dry = await cpm(
      ['build', '--values', join(work, 'values.yaml'), '--output', `dir://${out}`, '--dry-run'],
      { CPM_CONFIG: config },
    );
    // the plan comes from the config's trees (bar's image is not resolvable here: that is fine)
    expect(dry.out).toContain('system/bar@1.2');
    const none = { CPM_CONFIG: join(work, 'conf/none.yaml') };
    for (const cmd of [['repo', 'create'], ['build']]) {
      const n = await cpm([...cmd, '--output', `dir://${out}`], none);
      expect(n.code).toBe(2);
      expect(n.err).toContain('no packages tree given');
      expect(n.err).toContain(`"trees:" in ${join(work, 'conf/none.yaml')}`);
    }
  });

  it('plan and install --tree take --lenient (a version luet loads and cpm refuses)', async () => {
    const tree = join(work, 'odd/packages');
    write(work, { 'odd/packages/m/definition.yaml': 'category: odd\nname: m\nversion: "1.0!"\n' });
    const strict = await cpm(['plan', 'install', 'odd/m', '--tree', tree]);
    expect(strict.code).toBe(5);
    const lenient = await cpm(['plan', 'install', 'odd/m', '--tree', tree, '--lenient', '--json']);
    expect(lenient.code, lenient.err).toBe(0);
    expect((JSON.parse(lenient.out) as { install: string[] }).install).toEqual(['odd/m@1.0!']);
    const root = join(work, 'root-odd');
    const cache = { CPM_CONFIG: join(work, 'conf/none.yaml') };
    const i = await cpm(
      ['install', 'odd/m', '--tree', tree, '--lenient', '--root', root, '-y', '--no-finalizers'],
      cache,
    );
    expect(i.code, i.err).toBe(0);
    const without = await cpm(['install', 'odd/m', '--lenient', '--root', root, '-y'], cache);
    expect(without.code).toBe(2);
    expect(without.err).toContain('--lenient loads a packages tree: give it with --tree');
  });
});
