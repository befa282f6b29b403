import { mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { formatProblem } from '../../src/tree/problems.js';
import { loadTree } from '../../src/tree/tree.js';

/** Writes files under a fresh `<tmp>/packages/` and returns that tree dir. */
function mkTree(files: Record<string, string>): string {
  const root = join(mkdtempSync(join(tmpdir(), 'cpm-tree-')), 'packages');
  mkdirSync(root, { recursive: true });
  for (const [p, text] of Object.entries(files)) {
    mkdirSync(dirname(join(root, p)), { recursive: true });
    writeFileSync(join(root, p), text);
  }
  return root;
}

async function problems(files: Record<string, string>): Promise<string[]> {
  const t = await loadTree(mkTree(files));
  return t.problems.map(formatProblem);
}

const def = (name: string, version: string, extra = ''): string =>
  `name: ${name}\ncategory: system\nversion: "${version}"\n${extra}`;

describe('loadTree: broken shapes, one by one', () => {
  it('YAML syntax error', async () => {
    expect(
      await problems({ 'system/foo/definition.yaml': 'name: foo\nversion: [1\ncategory: x\n' }),
    ).toEqual([
      expect.stringMatching(/^packages\/system\/foo\/definition\.yaml:\d: YAML syntax: /),
    ]);
  });

  it('missing name and missing version', async () => {
    expect(
      await problems({
        'system/a/definition.yaml': 'category: system\nversion: 1.0\n',
        'system/b/definition.yaml': 'name: b\ncategory: system\n',
      }),
    ).toEqual(['packages/system/a/definition.yaml:1: name: is missing']);
  });

  it('a package without a version loads with an empty one, as luet does, with a warning', async () => {
    const t = await loadTree(mkTree({ 'system/b/definition.yaml': 'name: b\ncategory: system\n' }));
    expect(t.problems).toEqual([]);
    expect(t.packages.map((p) => [p.name, p.version])).toEqual([['b', '']]);
    expect(t.warnings.map(formatProblem)).toEqual([
      'packages/system/b/definition.yaml:1: version: is missing; loaded with an empty version, as luet does (every selector matches it)',
    ]);
  });

  it('a version that is not Debian-style (rpi-6.6.y-1) loads with a warning; = matches it', async () => {
    const t = await loadTree(
      mkTree({
        'kernels/linux-rpi/collection.yaml':
          'packages:\n  - {name: linux-rpi, category: kernels, version: "rpi-6.6.y-1"}\n',
        'system/a/definition.yaml':
          'name: a\ncategory: system\nversion: "1"\nrequires:\n  - {name: linux-rpi, category: kernels, version: "=rpi-6.6.y-1"}\n',
      }),
    );
    expect(t.problems).toEqual([]);
    expect(t.warnings.map(formatProblem)).toEqual([
      'packages/kernels/linux-rpi/collection.yaml:2: packages[0].version: "rpi-6.6.y-1" is not a Debian-style version; loaded as luet does: it sorts below every valid version and only "=rpi-6.6.y-1" or an any-version selector matches it',
    ]);
    const a = t.packages.find((p) => p.name === 'a')!;
    expect(t.universe.resolve(a.requires[0]!)?.pkg.version).toBe('rpi-6.6.y-1');
  });

  it('bad version and bad selector, with the field path', async () => {
    expect(
      await problems({
        'system/foo/definition.yaml': [
          'name: foo',
          'category: system',
          'version: "1.0"',
          'requires:',
          '  - {category: system, name: bar, version: ">=1"}',
          '  - category: system',
          '    name: baz',
          '    version: "1.x!"',
        ].join('\n'),
        'system/bar/definition.yaml': def('bar', 'not a version'),
        'system/baz/definition.yaml': def('baz', '1'),
      }),
    ).toEqual([
      'packages/system/bar/definition.yaml:3: version: "not a version" is not a valid version (luet would load it anyway; --lenient does too)',
      'packages/system/foo/definition.yaml:8: requires[1]: version "1.x!" is not a valid selector: "1.x!" is not a valid version',
    ]);
  });

  it('wrong field types', async () => {
    expect(
      await problems({
        'system/foo/definition.yaml': def(
          'foo',
          '1',
          'labels: [a]\nhidden: "yes please"\nrequires: {name: x}\n',
        ),
      }),
    ).toEqual([
      'packages/system/foo/definition.yaml:4: labels: must be a map of strings, not a list',
      'packages/system/foo/definition.yaml:5: hidden: must be true or false, not string "yes please"',
      'packages/system/foo/definition.yaml:6: requires: must be a list of {category, name, version}, not a map',
    ]);
  });

  it('differing duplicate definitions name both files; --lenient keeps the first, as luet', async () => {
    const files = {
      'system/foo/definition.yaml': def('foo', '1.0', 'description: second\n'),
      'other/foo-copy/definition.yaml': def('foo', '1.0', 'description: first\n'),
    };
    expect(await problems(files)).toEqual([
      'packages/system/foo/definition.yaml:1: duplicate definition of system/foo@1.0: defined at packages/other/foo-copy/definition.yaml:1 and at packages/system/foo/definition.yaml:1, differently (luet silently keeps the first; --lenient does too)',
    ]);
    const t = await loadTree(mkTree(files), { lenient: true });
    expect(t.problems).toEqual([]);
    expect(t.packages.map((p) => p.description)).toEqual(['first']);
    expect(t.warnings.map(formatProblem)).toEqual([
      'packages/system/foo/definition.yaml:1: duplicate definition of system/foo@1.0 (first at packages/other/foo-copy/definition.yaml:1), different from the first; the first is kept (--lenient, as luet)',
    ]);
  });

  it('an identical repeat inside one collection keeps the first, with a warning', async () => {
    const t = await loadTree(
      mkTree({
        'c/collection.yaml':
          'packages:\n  - &a\n    name: x\n    category: c\n    version: "1"\n  - <<: *a\n',
      }),
    );
    expect(t.problems).toEqual([]);
    expect(t.packages).toHaveLength(1);
    expect(t.warnings.map(formatProblem)).toEqual([
      'packages/c/collection.yaml:6: repeats c/x@1 from packages/c/collection.yaml:3 identically; the first is kept (as luet)',
    ]);
  });

  it('definition.yaml and collection.yaml in one directory: both are read, sharing build.yaml', async () => {
    const t = await loadTree(
      mkTree({
        'd/definition.yaml': 'name: one\ncategory: d\nversion: "1"\n',
        'd/collection.yaml': 'packages:\n  - {name: two, category: d, version: "2"}\n',
        'd/build.yaml': 'image: alpine\nsteps: [touch /{{ .Values.name }}]\n',
      }),
    );
    expect(t.problems).toEqual([]);
    expect(t.packages.map((p) => [p.name, p.build?.spec?.steps])).toEqual([
      ['one', ['touch /one']],
      ['two', ['touch /two']],
    ]);
    expect(t.stats).toMatchObject({ definitions: 1, collections: 1, buildSpecs: 1 });
    expect(t.warnings.map(formatProblem)).toContain(
      'packages/d/definition.yaml: definition.yaml and collection.yaml in one directory: both are read, collection.yaml first, as luet does (they share build.yaml)',
    );
  });

  it('image with requires: luet builds from the image; a warning, not a problem', async () => {
    const t = await loadTree(
      mkTree({
        'a/definition.yaml': 'name: a\ncategory: s\nversion: "1"\n',
        'b/definition.yaml': 'name: b\ncategory: s\nversion: "1"\n',
        'b/build.yaml':
          'image: alpine\nrequires:\n  - {name: a, category: s, version: ">=0"}\nsteps: [x]\n',
      }),
    );
    expect(t.problems).toEqual([]);
    const b = t.packages.find((p) => p.name === 'b')!;
    expect(b.build?.spec?.image).toBe('alpine');
    expect(t.warnings.map(formatProblem)).toEqual([
      'packages/b/build.yaml (rendered):1: image: both "image" and "requires": the build starts FROM the image (as luet); the required packages only order the build',
    ]);
  });

  it('build-time requires cycle is a problem; a runtime cycle is not', async () => {
    const req = (n: string): string =>
      `requires:\n  - category: system\n    name: ${n}\n    version: ">=0"\n`;
    expect(
      await problems({
        'system/a/definition.yaml': def('a', '1', req('b')),
        'system/a/build.yaml': `${req('b')}steps: [make]\n`,
        'system/b/definition.yaml': def('b', '1', req('a')),
        'system/b/build.yaml': `image: alpine\nsteps: [make]\n`,
      }),
    ).toEqual([]);
    expect(
      await problems({
        'system/a/definition.yaml': def('a', '1'),
        'system/a/build.yaml': req('b'),
        'system/b/definition.yaml': def('b', '1'),
        'system/b/build.yaml': req('c'),
        'system/c/definition.yaml': def('c', '1'),
        'system/c/build.yaml': `steps: [x]\ncopy:\n  - package: {category: system, name: a, version: ">=0"}\n    source: /x\n    destination: /y\n`,
      }),
    ).toEqual([
      'packages/system/a/build.yaml (rendered):4: requires: build-time requires cycle: system/a@1 -> system/b@1 -> system/c@1 -> system/a@1 (build images chain by FROM, so a cycle cannot be built)',
    ]);
  });

  it('alias bomb fails fast with file:line', async () => {
    const lines = ['name: x', 'category: c', 'version: "1"', 'a0: &a0 [x, x, x, x, x, x, x, x, x]'];
    for (let i = 1; i < 10; i++)
      lines.push(
        `a${i}: &a${i} [${Array(9)
          .fill(`*a${i - 1}`)
          .join(', ')}]`,
      );
    const t0 = Date.now();
    expect(await problems({ 'c/x/definition.yaml': lines.join('\n') })).toEqual([
      expect.stringMatching(
        /^packages\/c\/x\/definition\.yaml:9: alias \*a4 expands the document beyond 100000 nodes/,
      ),
    ]);
    expect(Date.now() - t0).toBeLessThan(3000);
  });

  it('huge file is refused before parsing', async () => {
    const dir = mkTree({
      'c/x/definition.yaml': def('x', '1', `description: "${'z'.repeat(5000)}"\n`),
    });
    const t = await loadTree(dir, { limits: { maxBytes: 4096 } });
    expect(t.problems.map(formatProblem)).toEqual([
      expect.stringMatching(
        /^packages\/c\/x\/definition\.yaml: file is \d+ bytes, above the 4096-byte limit/,
      ),
    ]);
  });

  it('symlink loop in the tree', async () => {
    const dir = mkTree({ 'system/foo/definition.yaml': def('foo', '1') });
    symlinkSync('..', join(dir, 'system', 'loop'));
    const t = await loadTree(dir);
    expect(t.problems.map(formatProblem)).toEqual([
      'packages/system/loop: symlink loop: this directory is packages again',
    ]);
    expect(t.packages).toHaveLength(1);
  });

  it('a directory reached twice (a symlink to it, or into a linked directory) is read once', async () => {
    const dir = mkTree({
      'system/foo/definition.yaml': def('foo', '1'),
      'system/foo/sub/bar/definition.yaml': def('bar', '1'),
      'other/baz/definition.yaml': def('baz', '1'),
    });
    symlinkSync('foo', join(dir, 'system', 'zlink')); // after foo: foo is read, zlink skipped
    symlinkSync(join('..', 'system', 'foo', 'sub'), join(dir, 'other', 'asub')); // before system/
    const t = await loadTree(dir);
    expect(t.problems).toEqual([]);
    expect(t.warnings.map(formatProblem)).toEqual([
      'packages/system/foo/sub: same directory as packages/other/asub; skipped',
      'packages/system/zlink: same directory as packages/system/foo; skipped',
    ]);
    expect(t.packages.map((p) => [p.name, p.dir.slice(dir.length)]).sort()).toEqual([
      ['bar', '/other/asub/bar'],
      ['baz', '/other/baz'],
      ['foo', '/system/foo'],
    ]);
  });

  it('template errors in build.yaml are problems with file:line', async () => {
    expect(
      await problems({
        'system/foo/definition.yaml': def('foo', '1'),
        'system/foo/build.yaml': 'steps:\n- echo {{ .Values.name }}\n- {{ sh "rm -rf /" }}\n',
      }),
    ).toEqual([
      'packages/system/foo/build.yaml:3: template: function "sh" is not supported by cpm\'s template engine',
    ]);
  });

  it('a rendered build spec that is not valid YAML is located in the rendered text', async () => {
    expect(
      await problems({
        'system/foo/definition.yaml': def('foo', '1', 'bad: "a: b"\n'),
        'system/foo/build.yaml': 'steps:\n- x\nimage: {{ .Values.bad }}\n',
      }),
    ).toEqual([
      expect.stringMatching(/^packages\/system\/foo\/build\.yaml \(rendered\):3: YAML syntax/),
    ]);
  });

  it('collects every problem of the tree in one run, sorted', async () => {
    const ps = await problems({
      'a/definition.yaml': 'name: a\nversion: "1!"\n',
      'b/definition.yaml': 'version: 1\n',
      'c/definition.yaml': 'name: [\n',
      'd/collection.yaml': 'packages: {}\n',
    });
    expect(ps).toHaveLength(4);
    expect(ps.map((p) => p.slice(0, 'packages/x'.length))).toEqual([
      'packages/a',
      'packages/b',
      'packages/c',
      'packages/d',
    ]);
  });
});

describe('loadTree: the model', () => {
  it('collections: anchors and merge keys across stanzas, merged lists replaced', async () => {
    const t = await loadTree(
      mkTree({
        'meta/collection.yaml': [
          'packages:',
          '  - &base',
          '    category: meta',
          '    name: one',
          '    version: "1.0"',
          '    flavour: x',
          '    requires:',
          '      - &dep {category: sys, name: a, version: ">=1"}',
          '  - !!merge <<: *base',
          '    name: two',
          '    requires:',
          '      - !!merge <<: *dep',
          '        name: b',
        ].join('\n'),
        'meta/build.yaml': 'steps:\n- echo {{ .Values.name }} {{ .Values.flavour }}\n',
      }),
    );
    expect(t.problems).toEqual([]);
    const two = t.universe.versions('meta/two')[0]!;
    expect(two.requires.map((d) => `${d.category}/${d.name} ${d.version}`)).toEqual(['sys/b >=1']);
    expect(two.extra).toEqual({ flavour: 'x' });
    expect(two.build?.spec?.steps).toEqual(['echo two x']);
    expect(t.warnings.map(formatProblem)).toContain(
      'packages/meta/collection.yaml:6: packages[0].flavour: not a luet package field; kept as a template value (.Values.flavour)',
    );
    // unresolved runtime deps are warnings, not problems
    expect(t.warnings.map(formatProblem)).toContain(
      'packages/meta/collection.yaml:8: requires: meta/one@1.0 requires sys/a, which is not in the tree',
    );
  });

  it('--values override package fields (later files win, maps merge)', async () => {
    const dir = mkTree({
      'system/foo/definition.yaml': def('foo', '1', 'flavour: own\nopts: {a: 1, b: 2}\n'),
      'system/foo/build.yaml':
        'steps:\n- "{{ .Values.flavour }} {{ .Values.opts.a }} {{ .Values.opts.b }} {{ .Values.extra }}"\n',
    });
    const v1 = join(dirname(dir), 'v1.yaml');
    const v2 = join(dirname(dir), 'v2.yaml');
    writeFileSync(v1, 'flavour: v1\nopts: {a: 10}\nextra: e1\n');
    writeFileSync(v2, 'flavour: v2\n');
    const plain = await loadTree(dir);
    // without the values file, .Values.extra is missing: a problem, never "<no value>" in a step
    expect(plain.problems.map(formatProblem)).toEqual([
      expect.stringMatching(/system\/foo\/build\.yaml:2: template: \.Values\.extra has no value/),
    ]);
    const t = await loadTree(dir, { values: [v1, v2] });
    expect(t.packages[0]!.build!.spec!.steps).toEqual(['v2 10 2 e1']);
    expect(t.packages[0]!.build!.raw).toContain('{{ .Values.flavour }}');
  });

  it('a broken values file is a problem', async () => {
    const dir = mkTree({ 'system/foo/definition.yaml': def('foo', '1') });
    const v = join(dirname(dir), 'bad-values.yaml');
    writeFileSync(v, 'a: [\n');
    const t = await loadTree(dir, { values: [v] });
    expect(t.problems.map(formatProblem)).toEqual([
      expect.stringMatching(/bad-values\.yaml:\d: YAML syntax/),
    ]);
  });

  it('payloadDir: build.yaml payload (templated) or root/ by default', async () => {
    const dir = mkTree({
      'system/a/definition.yaml': def('a', '1'),
      'system/a/root/etc/a.conf': 'x\n',
      'system/b/definition.yaml': def('b', '2', 'flavour: files-2\n'),
      'system/b/build.yaml': 'payload: "{{ .Values.flavour }}"\n',
      'system/b/files-2/etc/b.conf': 'y\n',
      'system/c/definition.yaml': def('c', '1'),
      'system/d/definition.yaml': def('d', '1'),
      'system/d/build.yaml': 'payload: ../../../..\n',
      'system/e/definition.yaml': def('e', '1'),
      'system/e/build.yaml': 'payload: nope\n',
    });
    const t = await loadTree(dir);
    const get = (n: string) => t.universe.versions(`system/${n}`)[0]!;
    expect(get('a').payloadDir).toBe(join(dir, 'system/a/root'));
    expect(get('b').payloadDir).toBe(join(dir, 'system/b/files-2'));
    expect(get('c').payloadDir).toBeUndefined();
    expect(get('a').dir).toBe(join(dir, 'system/a'));
    expect(t.problems.map(formatProblem)).toEqual([
      'packages/system/d/build.yaml: payload: payload directory "../../../.." is outside the tree',
      'packages/system/e/build.yaml: payload: payload directory "nope" (packages/system/e/nope) does not exist',
    ]);
  });

  it('a payload that a symlink leads out of the tree is a problem naming the file and the link', async () => {
    const dir = mkTree({
      'system/out/definition.yaml': def('out', '1'),
      'system/in/definition.yaml': def('in', '1'),
      'system/dec/definition.yaml': def('dec', '1'),
      'system/dec/build.yaml': 'payload: files/etc\n',
      'shared/etc/in.conf': 'inside\n',
    });
    const host = mkdtempSync(join(tmpdir(), 'cpm-host-'));
    mkdirSync(join(host, 'etc'));
    writeFileSync(join(host, 'etc/secret'), 'host file\n');
    symlinkSync(host, join(dir, 'system/out/root'));
    symlinkSync('../../shared', join(dir, 'system/in/root'));
    symlinkSync(host, join(dir, 'system/dec/files'));
    const t = await loadTree(dir);
    const get = (n: string) => t.universe.versions(`system/${n}`)[0]!;
    // A link that stays inside the tree is followed.
    expect(get('in').payloadDir).toBe(join(dir, 'system/in/root'));
    expect(get('in').problems).toEqual([]);
    expect(get('out').payloadDir).toBeUndefined();
    expect(get('dec').payloadDir).toBeUndefined();
    expect(t.problems.map(formatProblem)).toEqual([
      `packages/system/dec/build.yaml: payload: payload directory "files/etc" leads outside the tree: packages/system/dec/files is a symlink to ${host}`,
      expect.stringMatching(
        new RegExp(
          `^packages/system/out/definition\\.yaml(:\\d+)?: root/: payload directory packages/system/out/root is a symlink to ${host}, outside the tree$`,
        ),
      ),
    ]);
  });

  it('finalize.yaml: install/uninstall/shell/env, templated with real fields only', async () => {
    const t = await loadTree(
      mkTree({
        'system/a/definition.yaml': def('a', '1.2', 'secret: s\n'),
        'system/a/finalize.yaml':
          'install:\n- echo {{ .Values.name }}-{{ .Values.version }} {{ if hasKey .Values "secret" }}leak{{ else }}none{{ end }}\nuninstall: [rm -f /x]\nenv: [A=1]\n',
        'system/b/definition.yaml': def('b', '1'),
        'system/b/finalize.yaml': 'install: [x]\nshell: [/bin/bash, -ec]\n',
      }),
    );
    expect(t.problems).toEqual([]);
    const a = t.universe.versions('system/a')[0]!;
    expect(a.finalize?.spec).toEqual({
      install: ['echo a-1.2 none'],
      uninstall: ['rm -f /x'],
      shell: ['sh', '-c'],
      env: { A: '1' },
    });
    expect(t.universe.versions('system/b')[0]!.finalize?.spec?.shell).toEqual(['/bin/bash', '-ec']);
  });

  it('finalize.yaml printing an extra key (not a real field) is a problem with file:line', async () => {
    const t = await loadTree(
      mkTree({
        'system/a/definition.yaml': def('a', '1', 'stage_dir: boot.d\n'),
        'system/a/finalize.yaml':
          'install:\n  - chmod 0755 /system/oem/{{ .Values.stage_dir }}/*\n',
      }),
    );
    expect(t.problems.map(formatProblem)).toEqual([
      expect.stringMatching(
        /system\/a\/finalize\.yaml:2: template: \.Values\.stage_dir has no value \(it would render as "<no value>"\)/,
      ),
    ]);
  });

  it('universe: newest first, deterministic whatever the file order; provides indexed', async () => {
    const files: Record<string, string> = {
      'x/v1/definition.yaml': def('foo', '1.0'),
      'x/v10/definition.yaml': def('foo', '1.10'),
      'x/v9/definition.yaml': def('foo', '1.9'),
      'x/rc/definition.yaml': def('foo', '1.10~rc1'),
      'x/rebuild/definition.yaml': def('foo', '1.10+1'),
      'y/definition.yaml': def(
        'bar',
        '1',
        'provides:\n  - {category: system, name: foo, version: ">=0"}\n',
      ),
    };
    const t1 = await loadTree(mkTree(files));
    const t2 = await loadTree(mkTree(Object.fromEntries(Object.entries(files).reverse())));
    const vs = (t: typeof t1) => t.universe.versions('system/foo').map((p) => p.version);
    expect(vs(t1)).toEqual(['1.10+1', '1.10', '1.10~rc1', '1.9', '1.0']);
    expect(vs(t2)).toEqual(vs(t1));
    expect([...t1.universe.families()]).toEqual(['system/bar', 'system/foo']);
    expect(t1.universe.providersOf('system/foo').map((p) => p.name)).toEqual(['bar']);
    expect(t1.packages.map((p) => `${p.name}@${p.version}`)).toEqual(
      t2.packages.map((p) => `${p.name}@${p.version}`),
    );
  });

  it('keeps version text as written (version: 1.10 is not 1.1)', async () => {
    const t = await loadTree(
      mkTree({ 'a/definition.yaml': 'name: a\ncategory: c\nversion: 1.10\n' }),
    );
    expect(t.packages[0]!.version).toBe('1.10');
  });

  it('a missing tree is an E_NOT_FOUND error', async () => {
    await expect(loadTree('/nonexistent/tree')).rejects.toMatchObject({ code: 'E_NOT_FOUND' });
  });
});
