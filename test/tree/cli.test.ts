/**
 * Real CLI runs of `node bin/cpm.js tree ...` (needs `npm run build`; `npm test` builds first).
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';

const HERE = dirname(fileURLToPath(import.meta.url));
const PROJECT = resolve(HERE, '../..');
const BIN = join(PROJECT, 'bin/cpm.js');
const FIXTURE = resolve(PROJECT, '../shared/fixtures/cos-toolkit-tree');
const TREE = join(FIXTURE, 'packages');
const VALUES = join(FIXTURE, 'values/teal-x86_64.yaml');

function cpm(args: string[], cwd = PROJECT): Promise<{ code: number; out: string; err: string }> {
  return new Promise((res) => {
    execFile('node', [BIN, ...args], { cwd, maxBuffer: 16 << 20 }, (e, out, err) => {
      res({ code: e ? (typeof e.code === 'number' ? e.code : 1) : 0, out, err });
    });
  });
}

function treeOf(files: Record<string, string>): string {
  const root = join(mkdtempSync(join(tmpdir(), 'cpm-cli-')), 'packages');
  for (const [p, text] of Object.entries(files)) {
    mkdirSync(dirname(join(root, p)), { recursive: true });
    writeFileSync(join(root, p), text);
  }
  return root;
}

const def = (name: string, version: string, extra = ''): string =>
  `name: ${name}\ncategory: system\nversion: "${version}"\n${extra}`;
const req = (n: string): string =>
  `requires:\n  - {category: system, name: ${n}, version: ">=0"}\n`;
const bomb = ['name: x', 'category: c', 'version: "1"', 'a0: &a0 [x, x, x, x, x, x, x, x, x]']
  .concat(
    Array.from(
      { length: 9 },
      (_, i) => `a${i + 1}: &a${i + 1} [${Array(9).fill(`*a${i}`).join(', ')}]`,
    ),
  )
  .join('\n');

/** Each broken shape alone in a tree: validate must name file:line and exit 1. */
const BROKEN: Array<[string, Record<string, string>, RegExp]> = [
  [
    'syntax error',
    { 's/foo/definition.yaml': 'name: foo\nversion: x: y\n' },
    /^packages\/s\/foo\/definition\.yaml:2: YAML syntax/,
  ],
  [
    'missing name',
    { 's/foo/definition.yaml': 'category: s\nversion: "1"\n' },
    /^packages\/s\/foo\/definition\.yaml:1: name: is missing$/,
  ],
  [
    'bad version',
    { 's/foo/definition.yaml': 'name: foo\nversion: "1.0!"\n' },
    /^packages\/s\/foo\/definition\.yaml:2: version: "1\.0!" is not a valid version \(luet would load it anyway; --lenient does too\)$/,
  ],
  [
    'bad selector',
    { 's/foo/definition.yaml': def('foo', '1', 'requires:\n  - {name: bar, version: ">>1"}\n') },
    /^packages\/s\/foo\/definition\.yaml:5: requires\[0\]: version ">>1" is not a valid selector/,
  ],
  [
    'duplicate definition',
    {
      'a/definition.yaml': def('foo', '1'),
      'b/definition.yaml': def('foo', '1', 'description: other\n'),
    },
    /^packages\/b\/definition\.yaml:1: duplicate definition of system\/foo@1: defined at packages\/a\/definition\.yaml:1 and at packages\/b\/definition\.yaml:1, differently/,
  ],
  [
    'build cycle',
    {
      'a/definition.yaml': def('a', '1'),
      'a/build.yaml': req('b'),
      'b/definition.yaml': def('b', '1'),
      'b/build.yaml': req('a'),
    },
    /^packages\/a\/build\.yaml \(rendered\):2: requires: build-time requires cycle: system\/a@1 -> system\/b@1 -> system\/a@1/,
  ],
  [
    'alias bomb',
    { 'c/x/definition.yaml': bomb },
    /^packages\/c\/x\/definition\.yaml:9: alias \*a4 expands the document beyond 100000 nodes/,
  ],
  [
    'template error',
    { 'a/definition.yaml': def('a', '1'), 'a/build.yaml': 'steps:\n{{ range .Values.x }}\n' },
    /^packages\/a\/build\.yaml:2: template: unclosed \{\{range\}\}/,
  ],
];

function brokenTree(): string {
  const root = join(mkdtempSync(join(tmpdir(), 'cpm-cli-')), 'packages');
  const put = (p: string, text: string): void => {
    mkdirSync(dirname(join(root, p)), { recursive: true });
    writeFileSync(join(root, p), text);
  };
  put(
    'system/foo/definition.yaml',
    'name: foo\ncategory: system\nversion: "1.0"\nrequires:\n  - {category: system, name: bar}\n  - category: system\n    name: baz\n    version: "1.x!"\n',
  );
  put('system/bar/definition.yaml', 'category: system\nversion: "1.0"\n');
  return root;
}

describe.concurrent('cpm tree (CLI)', () => {
  beforeAll(() => {
    if (!existsSync(join(PROJECT, 'dist/cpm.cjs'))) {
      throw new Error('dist/ is missing: run "npm run build" first (npm test does it)');
    }
  });

  it('validate: the fixture is ok with its values file (exit 0), without it the missing values are problems', async () => {
    const bare = await cpm(['tree', 'validate', '--tree', TREE]);
    expect(bare.code).toBe(1);
    expect(bare.out).toMatch(
      /^packages\/base\/build\.yaml:1: template: \.Values\.image has no value/,
    );
    const r = await cpm(['tree', 'validate', '--tree', TREE, '--values', VALUES]);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(
      /^ok: 77 packages in 13 categories \(27 definitions, 13 collections, 40 build specs, 0 finalizers\)/,
    );
  });

  it('validate: a broken tree lists every problem with file:line and exits 1', async () => {
    const r = await cpm(['tree', 'validate', '--tree', brokenTree()]);
    expect(r.code).toBe(1);
    expect(r.out.split('\n').slice(0, 2)).toEqual([
      'packages/system/bar/definition.yaml:1: name: is missing',
      'packages/system/foo/definition.yaml:8: requires[1]: version "1.x!" is not a valid selector: "1.x!" is not a valid version',
    ]);
    const j = await cpm(['tree', 'validate', '--tree', brokenTree(), '--json']);
    expect(j.code).toBe(1);
    const body = JSON.parse(j.out) as {
      ok: boolean;
      problems: Array<{ file: string; line: number; text: string }>;
    };
    expect(body.ok).toBe(false);
    expect(body.problems.map((p) => `${p.file}:${p.line}`)).toEqual([
      'packages/system/bar/definition.yaml:1',
      'packages/system/foo/definition.yaml:8',
    ]);
  });

  it.each(BROKEN)('validate: %s → file:line and exit 1', async (_name, files, re) => {
    const r = await cpm(['tree', 'validate', '--tree', treeOf(files)]);
    expect(r.code).toBe(1);
    expect(r.out.split('\n')[0]).toMatch(re);
  });

  it('validate: the yaml package is loaded only for a text the fast reader leaves to it', async () => {
    // A preload that records each require of dist/vendor-yaml.cjs.
    const dir = mkdtempSync(join(tmpdir(), 'cpm-cli-'));
    const log = join(dir, 'loaded');
    const hook = join(dir, 'hook.cjs');
    writeFileSync(
      hook,
      `const M = require('node:module');\nconst load = M._load;\n` +
        `M._load = function (id, ...a) {\n` +
        `  if (/vendor-yaml\\.cjs$/.test(id)) require('node:fs').appendFileSync(${JSON.stringify(log)}, id + '\\n');\n` +
        `  return load.call(this, id, ...a);\n};\n`,
    );
    const run = (tree: string, values: string[]): Promise<number> =>
      new Promise((res) => {
        execFile('node', ['-r', hook, BIN, 'tree', 'validate', '--tree', tree, ...values], (e) =>
          res(e ? (typeof e.code === 'number' ? e.code : 1) : 0),
        );
      });
    // The fixture: every file (definitions, collections, rendered build specs, values) is plain.
    expect(await run(TREE, ['--values', VALUES])).toBe(0);
    expect(existsSync(log)).toBe(false);
    // A flow mapping with content goes to the full parser.
    const flow = treeOf({ 'a/definition.yaml': def('a', '1', 'labels: {x: y}\n') });
    expect(await run(flow, [])).toBe(0);
    expect(existsSync(log)).toBe(true);
  });

  it('validate: a symlink loop → exit 1', async () => {
    const dir = treeOf({ 's/foo/definition.yaml': def('foo', '1') });
    symlinkSync('../..', join(dir, 's', 'foo', 'up'));
    const r = await cpm(['tree', 'validate', '--tree', dir]);
    expect(r.code).toBe(1);
    expect(r.out.split('\n')[0]).toBe(
      'packages/s/foo/up: symlink loop: this directory is packages again',
    );
  });

  it('validate --values with two flavors of the fixture', async () => {
    const r = await cpm([
      'tree',
      'validate',
      '--tree',
      TREE,
      '--values',
      join(FIXTURE, 'values/teal-x86_64.yaml'),
      '--values',
      join(FIXTURE, 'values/blue-arm64.yaml'),
    ]);
    expect(r.code).toBe(0);
  });

  it('list --json', async () => {
    const r = await cpm(['tree', 'list', '--json', '--tree', TREE]);
    expect(r.code).toBe(0);
    const list = (JSON.parse(r.out) as { packages: Array<{ id: string; file: string }> }).packages;
    expect(list).toHaveLength(77);
    expect(list.find((p) => p.id === 'system/cos-setup@0.6.5')?.file).toBe(
      'packages/cos-setup/definition.yaml',
    );
  });

  it('deps meta/cos-minimal prints the closure as a tree', async () => {
    const r = await cpm(['tree', 'deps', 'meta/cos-minimal', '--tree', TREE]);
    expect(r.code).toBe(0);
    expect(r.out.split('\n')[0]).toBe('meta/cos-minimal@0.24.1');
    expect(r.out).toContain(
      '│   ├── meta/toolchain@0.24.1\n│   │   ├── toolchain/elemental-cli@0.20230217 (>0.0.10)',
    );
    expect(r.out).toContain('24 package(s) in the runtime closure of meta/cos-minimal@0.24.1');
    const j = await cpm(['tree', 'deps', 'meta/cos-minimal@>=0.24', '--json', '--tree', TREE]);
    expect((JSON.parse(j.out) as { closure: string[] }).closure).toHaveLength(24);
  });

  it('deps of a provided package shows its provider (as luet resolves it); --own its own', async () => {
    const r = await cpm(['tree', 'deps', 'utils/installer', '--tree', TREE, '--values', VALUES]);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toBe(
      'system/cos-wrapper@0.32-16 [provides utils/installer]\n' +
        '└── toolchain/elemental-cli@0.20230217 (>0.20220216)\n' +
        '\n1 package(s) in the runtime closure of system/cos-wrapper@0.32-16\n',
    );
    expect(r.err).toContain('utils/installer is provided by system/cos-wrapper@0.32-16');
    const j = await cpm(['tree', 'deps', 'utils/installer', '--json', '--tree', TREE]);
    expect(JSON.parse(j.out)).toMatchObject({
      package: 'system/cos-wrapper@0.32-16',
      provides: 'utils/installer',
    });
    const own = await cpm(['tree', 'deps', 'utils/installer', '--own', '--json', '--tree', TREE]);
    const o = JSON.parse(own.out) as { package: string; provides?: string; closure: string[] };
    expect(o.package).toBe('utils/installer@0.30.0');
    expect(o.provides).toBeUndefined();
    expect(o.closure).toHaveLength(6);
  });

  it('deps shows unresolved requirements clearly', async () => {
    const r = await cpm(['tree', 'deps', 'system/foo', '--tree', brokenTree()]);
    expect(r.code).toBe(0);
    expect(r.out).toContain('system/bar — UNRESOLVED');
    expect(r.out).toContain('system/bar any version (required by system/foo@1.0)');
    expect(r.err).toContain('the tree has 2 problem(s)');
  });

  it('deps of an unknown package exits 5; a bad ref exits 2', async () => {
    expect((await cpm(['tree', 'deps', 'nope/nothing', '--tree', TREE])).code).toBe(5);
    const bad = await cpm(['tree', 'deps', 'meta/cos-minimal@', '--tree', TREE]);
    expect(bad.code).toBe(2);
    expect(bad.err).toContain('has "@" but no version');
  });

  it('graph --format dot|json', async () => {
    const dot = await cpm(['tree', 'graph', '--tree', TREE]);
    expect(dot.code).toBe(0);
    expect(dot.out).toMatch(/^digraph packages \{/);
    expect(dot.out).toContain('"meta/cos-minimal@0.24.1" -> "meta/cos-core@0.24.1";');
    const json = await cpm(['tree', 'graph', '--format', 'json', '--tree', TREE]);
    const g = JSON.parse(json.out) as { nodes: string[]; edges: unknown[] };
    expect(g.nodes).toHaveLength(77);
    expect((await cpm(['tree', 'graph', '--format', 'svg', '--tree', TREE])).code).toBe(2);
  });

  it('render PKG --values F prints the rendered build spec', async () => {
    const render = (values: string) =>
      cpm(['tree', 'render', 'system/cos', '--tree', TREE, '--values', join(FIXTURE, values)]);
    const r = await render('values/teal-x86_64.yaml');
    expect(r.code).toBe(0);
    expect(r.out).toContain('- name: "elemental-selinux"');
    expect(r.out).not.toContain('{{');
    const blue = await render('values/blue-x86_64.yaml');
    expect(blue.out).not.toContain('elemental-selinux');
  });

  it("uses cpm's own packages-tree/ by default, from any working directory", async () => {
    const r = await cpm(['tree', 'list', '--json'], tmpdir());
    expect(r.code).toBe(0);
    const list = (JSON.parse(r.out) as { packages: Array<{ file: string }> }).packages;
    expect(list.length).toBeGreaterThan(0);
    expect(list.every((p) => p.file.startsWith('packages-tree/'))).toBe(true);
  });
});
