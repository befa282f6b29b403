import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { loadTree } from '../../src/tree/tree.js';
import { parseFast } from '../../src/tree/yaml-fast.js';
import { parseYaml, parseYamlDocument, resolvePlain, sourceOf } from '../../src/tree/yaml.js';
import { diffLoaded } from '../support/yaml-compare.js';

const fast = (text: string): ReturnType<typeof parseFast> =>
  parseFast(text, 'f.yaml', 200, resolvePlain);

/** The fast reader takes `text` and gives exactly what the full converter gives. */
function expectSame(text: string): void {
  const y = fast(text);
  expect(y, `the fast reader gave up on:\n${text}`).not.toBeNull();
  expect(diffLoaded(y!, parseYamlDocument(text, 'f.yaml')), text).toEqual([]);
}

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, '../..');
const SHARED = resolve(ROOT, '../shared/fixtures');

function yamlFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...yamlFiles(p));
    else if (/\.ya?ml$/.test(e.name)) out.push(p);
  }
  return out;
}

describe('fast YAML reader', () => {
  it('reads block maps, sequences and scalars as the full converter does', () => {
    expectSame('');
    expectSame('# only a comment\n\n');
    expectSame(
      [
        '# a collection',
        'packages:',
        '  - name: bash',
        '    category: debian   # trailing comment',
        '    version: "5.2.15-2+b2"',
        '    requires:',
        '      - name: libc6',
        '        version: ">=2.34"',
        '',
        '      - {}',
        '    labels: {}',
        '    uri: []',
        '  - name: other',
        '    version: 1.10',
        '    hidden: yes',
        '    num: 020',
        '    x: ~',
        '    empty:',
        '    z: -1.5e3',
        '    w: e1',
        "    q: 'it''s # not a comment'",
        '    e: "tab\\tand \\"quote\\" \\u00e9"',
        '    url: http://example.com/a#b',
        'requires:',
        '- name: a',
        '- plain item',
        '- 12',
        '-',
        '  deep: true',
        'top: last',
      ].join('\n') + '\n',
    );
    expectSame('a:\n    b:\n        c: 1\n    d: 2\n');
  });

  it('reads literal block scalars with every chomping indicator', () => {
    expectSame('a: |\n  x\n\n    y\n  z\nb: 1\n');
    expectSame('a: |-\n  x\n  y\n\n\nb: 1\n');
    expectSame('a: |+\n  x\n  y\n\n\nb: 1\n');
    expectSame('a: |+\n  x\n\n');
    expectSame('a: |  # comment\n  # not a comment\n  \tdeeper\n');
    expectSame('steps:\n- |\n  echo 1\n  echo 2\n- name: x\n');
  });

  it('reads folded block scalars of plain lines, as the full converter folds them', () => {
    for (const text of [
      'a: >\n  folded\n',
      'a: >\n  one\n  two  \n  # three\nb: 1\n',
      'a: >-\n  x\n  y\n\n\nb: 1\n',
      'steps:\n- >\n  apt-get install -y\n  curl wget\n- name: x\n',
    ]) {
      expectSame(text);
      expect(fast(text), text).not.toBeNull();
    }
  });

  it('reads anchors, aliases and merge keys of collections as the full converter does', () => {
    for (const text of [
      // luet collections: a first stanza anchored, the others merging it
      'packages:\n- &X\n  name: "X"\n  category: "buildbase"\n  version: 26.08+1\n  num: 1.10\n' +
        '- !!merge <<: *X\n  real: "apps"\n  name: "grub"\n- <<: *X\n  name: q\n',
      'packages:\n  - &X\n    name: "X"\n    v: 1.10\n  - !!merge <<: *X\n    name: "grub"\n',
      'a:\n  - &dep\n    name: system-x\n    category: "layers"\n  - <<: *dep\nb:\n  - <<: *dep\n    x: 1\n',
      // aliases as values and items; of sequences too
      'a: &m\n  k: 1\n  j: two\nb: *m\nc:\n- *m\n- *m  \n',
      'a: &m\n  - 1\n  - x\nb: *m\n',
      'x:\n  - &a\n    - 1\n    - 2\n  - *a\n',
      '- &x\n  b: 1\n- *x\n',
      // own keys win over merged ones wherever they are; earlier merges win over later ones
      'a: &m\n  k: 1\nb:\n  <<: *m\n  k: 2\n',
      'a: &m\n  k: 1\n  v: 0.5\nb:\n  z: 0\n  <<: *m\n  <<: *m\n',
      'a: &m\n  k: 1\no2: &o2\n  j: 2\n  k: 3\nb:\n  <<: *o2\n  <<: *m\n  j: 4\n',
      // anchored nodes holding anchored nodes
      'a: &m\n  k: &n\n    j: 1\nb: *n\nc: *m\n',
    ]) {
      expectSame(text);
    }
    const y = fast('a: &m\n  k: 1\nb: *m\nc:\n  <<: *m\n')!;
    const v = y.value as Record<string, Record<string, unknown>>;
    expect(v.b).toBe(v.a); // one object, as the full converter makes it
    expect(v.c).toEqual({ k: 1 });
    expect(y.positions.lineOf(v.c!, 'k')).toBe(2); // a merged key's line is where it is written
  });

  it('agrees with the full converter on generated anchors, aliases and merge keys', () => {
    const key = fc.constantFrom('name', 'category', 'version', 'a_b', 'k1');
    const val = fc.constantFrom('bash', '1.10', '"q"', 'yes', '~', '020', '[]', "'s'");
    const entries = (min: number): fc.Arbitrary<Array<[string, string]>> =>
      fc.uniqueArray(fc.tuple(key, val), { minLength: min, maxLength: 3, selector: (e) => e[0] });
    type Item =
      | {
          kind: 'merge';
          from: number[];
          bang: boolean;
          ownFirst: boolean;
          own: Array<[string, string]>;
        }
      | { kind: 'alias'; of: number }
      | { kind: 'value'; key: string; of: number };
    const items = (n: number): fc.Arbitrary<Item[]> =>
      fc.array(
        fc.oneof(
          fc.record({
            kind: fc.constant('merge' as const),
            from: fc.array(fc.nat(n - 1), { minLength: 1, maxLength: 2 }),
            bang: fc.boolean(),
            ownFirst: fc.boolean(),
            own: entries(0),
          }),
          fc.record({ kind: fc.constant('alias' as const), of: fc.nat(n - 1) }),
          fc.record({ kind: fc.constant('value' as const), key, of: fc.nat(n - 1) }),
        ),
        { minLength: 1, maxLength: 5 },
      );
    const doc = fc
      .array(entries(1), { minLength: 1, maxLength: 3 })
      .chain((anchors) => fc.tuple(fc.constant(anchors), items(anchors.length)));
    fc.assert(
      fc.property(doc, ([anchors, list]) => {
        const lines = ['defs:'];
        anchors.forEach((m, i) => {
          lines.push(`  d${i}: &a${i}`, ...m.map(([k, v]) => `    ${k}: ${v}`));
        });
        lines.push('packages:');
        for (const it of list) {
          if (it.kind === 'alias') lines.push(`  - *a${it.of}`);
          else if (it.kind === 'value') lines.push(`  - ${it.key}: *a${it.of}`);
          else {
            const merges = it.from.map((f) => `<<: *a${f}`);
            if (it.bang) merges[0] = `!!merge ${merges[0]}`;
            const own = it.own.map(([k, v]) => `${k}: ${v}`);
            const body = it.ownFirst ? [...own, ...merges] : [...merges, ...own];
            lines.push(`  - ${body[0]}`, ...body.slice(1).map((l) => `    ${l}`));
          }
        }
        expectSame(lines.join('\n') + '\n');
      }),
      { numRuns: 200 },
    );
  });

  it('leaves an alias bomb to the full parser, which refuses it', () => {
    const text =
      'a: &a\n  - 1\n  - 2\n' +
      'b: &b\n  - *a\n  - *a\n' + // b holds aliases: aliasing b is left to yaml
      'c: *b\n';
    expect(fast(text)).toBeNull();
    const flat =
      'a: &a\n  k: 1\n  j: 2\n' + Array.from({ length: 8 }, (_, i) => `b${i}: *a\n`).join('');
    expect(parseFast(flat, 'f.yaml', 200, resolvePlain, 40)).not.toBeNull(); // 8 × 5 nodes
    expect(parseFast(flat, 'f.yaml', 200, resolvePlain, 39)).toBeNull();
    expect(() =>
      parseYaml(flat, 'f.yaml', { maxBytes: 1 << 20, maxAliasNodes: 39, maxDepth: 200 }),
    ).toThrow(/^f\.yaml:\d+: alias \*a expands the document beyond 39 nodes/);
  });

  it('reads escaped backslashes in double quotes and block scalars that end the text', () => {
    for (const text of [
      'x: "for f in a\\\\._cfg*; do [ -f \\"$f\\" ]; done || :"\n',
      'x: "a\\\\"\n',
      'x: "\\\\\\\\n"\n',
      'install:\n  - |\n    # c\n    getent shadow x || true',
      'install:\n  - |-\n    a\n    b',
      'install:\n  - >\n    a\n    b',
      'a: |\n  x\n  y',
    ]) {
      expectSame(text);
    }
  });

  it('keeps white space YAML does not strip (U+00A0, U+2028, U+FEFF) in scalars', () => {
    for (const text of [
      'a: x\u00a0\n',
      'a: x\u2028\n',
      '- x\ufeff\n',
      'a: "x"\u00a0\n',
      "a: 'x'\u3000\n",
    ]) {
      const y = fast(text);
      if (y)
        expect(diffLoaded(y, parseYamlDocument(text, 'f.yaml')), JSON.stringify(text)).toEqual([]);
    }
    expectSame('a: x\u00a0\n');
  });

  it('keeps the source text of non-string scalars', () => {
    const y = fast('version: 1.10\nother: 020\nlist:\n  - 1.0\n')!;
    const v = y.value as { list: unknown[] };
    expect(sourceOf(y, v, 'version')).toBe('1.10');
    expect(sourceOf(y, v, 'other')).toBe('020');
    expect(sourceOf(y, v.list, 0)).toBe('1.0');
  });

  it('leaves everything outside its subset to the full parser', () => {
    for (const text of [
      'a: &x 1\nb: *x\n',
      'a: !!str 1\n',
      '<<: {a: 1}\n',
      'a: [1, 2]\n',
      'a: {b: 1}\n',
      'a: >\n  folded\n\n  after a blank line\n',
      'a: >\n  folded\n    more indented\n',
      'a: >\n  x\n  \ttab\n',
      'a: >+\n  kept\n\n',
      'a: |2\n   x\n',
      'a: plain\n  continued\n',
      'a: "open\n  quote"\n',
      'a:\n\t- x\n',
      'a: 1\na: 2\n',
      'a: 1\r\nb: 2\r\n',
      'a: \t\n', // a value of only a tab: null
      '- \t\n',
      '%YAML 1.1\n---\na: 1\n',
      '---\na: 1\n',
      'a: 1\n---\nb: 2\n',
      'just a scalar\n',
      '"quoted key": 1\n',
      'on: 1\n',
      '__proto__: 1\n',
      'a: 2001-12-14\n',
      'a: |+\n  x', // keep-chomping where the text ends without a line break
      'a: |\n  x\n  ', // …or trailing blanks there
      'a: "\\x41"\n',
      'a: "\\\\\\x41"\n', // an escaped backslash, then \x
      // anchors and aliases outside what the reader takes
      'a: &x 1\nb: *x\n', // an anchored scalar
      'a: &x # why\n  b: 1\n', // a comment after the anchor
      'a: &x\n  b: 1\nc: &x\n  d: 1\ne: *x\n', // an anchor defined again
      'a: &x\n  b: 1\nc: &y\n  d: *x\ne: *y\n', // an alias of a node holding an alias
      'a: &x\n  b: *x\n', // an alias inside its own anchor
      'a: *nope\n', // an unknown alias
      'a: &x\n  - 1\nb:\n  <<: *x\n', // a merge of a sequence
      'a: &x\n  k: 1\nb:\n  <<: [*x]\n', // a merge of a list
      'a: &x\n  k: 1\nb:\n  <<:\n    k: 2\n', // a merge of an inline map
      'a: &x\n  k: 1\nb: *x # c\n', // a comment after an alias
      'a: &x\n  k: 1\nb: *x\n  c: 1\n', // content after an alias
      '- - x\n',
    ]) {
      expect(fast(text), text).toBeNull();
      // …and parseYaml still reads it (or reports it) exactly as before.
      let full: unknown;
      let fullErr: unknown;
      try {
        full = parseYamlDocument(text, 'f.yaml').value;
      } catch (e) {
        fullErr = (e as Error).message;
      }
      if (fullErr) expect(() => parseYaml(text, 'f.yaml')).toThrow(String(fullErr));
      else expect(parseYaml(text, 'f.yaml').value).toEqual(full);
    }
  });

  it('still reports errors with file:line (through the full parser)', () => {
    expect(() => parseYaml('a: 1\nb: c: d\n', 'bad.yaml')).toThrow(/^bad\.yaml:2: YAML syntax/);
    expect(() => parseYaml('a:\n  b: 1\n c: 2\n', 'bad.yaml')).toThrow(/^bad\.yaml:3: YAML syntax/);
    expect(() => parseYaml('packages:\n  - name: a\n  x\n', 'bad.yaml')).toThrow(/^bad\.yaml:3:/);
  });

  it('locates tree problems in a large collection by file:line', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cpm-fastyaml-'));
    const tree = join(dir, 'tree');
    mkdirSync(join(tree, 'c'), { recursive: true });
    const stanzas = Array.from(
      { length: 500 },
      (_, i) =>
        `  - name: p${i}\n    category: c\n    version: "1.${i}"\n    requires:\n      - name: p${i + 1}\n        category: c\n        version: ">=1"\n`,
    );
    // Package 300 (line 2 + 300 * 7 = 2102) has a bad version, its dependency line is 2107.
    stanzas[300] = stanzas[300]!.replace('"1.300"', '"1..x!"');
    writeFileSync(join(tree, 'c', 'collection.yaml'), `packages:\n${stanzas.join('')}`);
    const t = await loadTree(tree);
    expect(t.problems.map((p) => `${p.file}:${p.line}: ${p.path}`)).toEqual([
      'tree/c/collection.yaml:2104: packages[300].version',
    ]);
    const p499 = t.packages.find((p) => p.name === 'p499')!;
    expect(p499.source).toEqual({ file: 'tree/c/collection.yaml', line: 2 + 499 * 7 });
    expect(p499.requires[0]!.source).toEqual({
      file: 'tree/c/collection.yaml',
      line: 2 + 499 * 7 + 6,
    });
    // the dangling dependency of the last package is a warning at its own line
    expect(t.warnings.map((w) => `${w.file}:${w.line}`)).toContain(
      `tree/c/collection.yaml:${2 + 499 * 7 + 6}`,
    );
  });

  it('agrees with the full converter on every YAML file of the fixtures it takes', () => {
    // every real tree in shared/fixtures (cOS everywhere; kairos, mocaccino and luet's own
    // fixtures on machines whose shared/ has them)
    const files = [
      ...yamlFiles(join(ROOT, 'packages-tree')),
      ...(existsSync(SHARED) ? readdirSync(SHARED) : []).flatMap((d) => yamlFiles(join(SHARED, d))),
    ];
    let taken = 0;
    for (const f of files) {
      const text = readFileSync(f, 'utf8');
      let full;
      try {
        full = parseYamlDocument(text, f);
      } catch {
        // an unrendered template: the fast reader must not accept it either
        expect(parseFast(text, f, 200, resolvePlain), f).toBeNull();
        continue;
      }
      const y = parseFast(text, f, 200, resolvePlain);
      if (!y) continue;
      taken++;
      expect(diffLoaded(y, full), f).toEqual([]);
    }
    expect(taken).toBeGreaterThan(files.length / 3);
  });

  it('agrees with the full converter on generated block documents', () => {
    const word = fc.constantFrom('name', 'category', 'version', 'requires', 'a_b', 'x.y', 'k-1');
    const plainScalar = fc.constantFrom(
      'bash',
      '1.10',
      '020',
      '0x1F',
      '1_000',
      '-3',
      '+.5',
      '.inf',
      '.NaN',
      'yes',
      'No',
      'off',
      'null',
      '~',
      'e1',
      '1:20',
      '3.0.1-r2',
      'a b c',
      'x-y',
      'http://h/p',
      'a#b',
    );
    const quoted = fc.string({ maxLength: 12 }).map((s) => JSON.stringify(s));
    const single = fc
      .string({ maxLength: 12 })
      .filter((s) => [...s].every((c) => c >= ' ' && c <= '~'))
      .map((s) => `'${s.replace(/'/g, "''")}'`);
    const literal = fc
      .tuple(
        fc.constantFrom('|', '|-', '|+', '>', '>-', '>+'),
        fc.array(fc.constantFrom('echo 1', '  indented', '', '# hash', 'x: y', 'a  b ', '\tt'), {
          minLength: 1,
          maxLength: 4,
        }),
      )
      .filter(
        ([, ls]) => ls.some((l) => l.trim() !== '') && ls[0] !== '' && !ls[0]!.startsWith(' '),
      );
    const scalar = fc.oneof(plainScalar, quoted, single);
    type Node =
      | { kind: 'scalar'; text: string }
      | { kind: 'lit'; head: string; lines: string[] }
      | { kind: 'map'; entries: Array<[string, Node]> }
      | { kind: 'seq'; items: Node[] };
    const { node } = fc.letrec<{ node: Node }>((tie) => ({
      node: fc.oneof(
        { depthSize: 'small', withCrossShrink: true },
        scalar.map((text): Node => ({ kind: 'scalar', text })),
        literal.map(([head, lines]): Node => ({ kind: 'lit', head, lines })),
        fc
          .uniqueArray(fc.tuple(word, tie('node')), {
            minLength: 1,
            maxLength: 4,
            selector: (e) => e[0],
          })
          .map((entries): Node => ({ kind: 'map', entries })),
        fc
          .array(tie('node'), { minLength: 1, maxLength: 4 })
          .map((items): Node => ({ kind: 'seq', items })),
      ),
    }));
    const render = (n: Node, ind: number, step: number, sameCol: boolean): string[] => {
      const pad = ' '.repeat(ind);
      if (n.kind === 'map') {
        return n.entries.flatMap(([k, v]) => {
          if (v.kind === 'scalar') return [`${pad}${k}: ${v.text}`];
          if (v.kind === 'lit')
            return [
              `${pad}${k}: ${v.head}`,
              ...v.lines.map((l) => (l === '' ? '' : `${pad}${' '.repeat(step)}${l}`)),
            ];
          // a sequence may sit at its key's column
          const childInd = v.kind === 'seq' && sameCol ? ind : ind + step;
          return [`${pad}${k}:`, ...render(v, childInd, step, sameCol)];
        });
      }
      if (n.kind === 'seq') {
        return n.items.flatMap((it) => {
          if (it.kind === 'scalar') return [`${pad}- ${it.text}`];
          if (it.kind === 'lit')
            return [`${pad}- ${it.head}`, ...it.lines.map((l) => (l === '' ? '' : `${pad}  ${l}`))];
          if (it.kind === 'map') {
            const [first, ...rest] = render(it, ind + 2, step, sameCol);
            return [
              `${pad}- ${first!.slice(ind + 2)}`,
              ...rest,
              ...(sameCol ? ['  # comment'] : []),
            ];
          }
          return [`${pad}-`, ...render(it, ind + step, step, sameCol)];
        });
      }
      return [`${pad}${n.kind === 'scalar' ? n.text : ''}`];
    };
    const top = node.filter((n) => n.kind === 'map' || n.kind === 'seq');
    let parsed = 0;
    let taken = 0;
    fc.assert(
      fc.property(top, fc.constantFrom(2, 4), fc.boolean(), (n, step, sameCol) => {
        const text = render(n, 0, step, sameCol).join('\n') + '\n';
        let full;
        try {
          full = parseYamlDocument(text, 'f.yaml');
        } catch {
          return; // the generator wrote something YAML refuses: nothing to compare
        }
        parsed++;
        const y = fast(text);
        if (!y) return;
        taken++;
        expect(diffLoaded(y, full), text).toEqual([]);
      }),
      { numRuns: 300 },
    );
    // the generated documents are mostly inside the subset (keys like "on" or "y" are not)
    expect(taken).toBeGreaterThan(parsed * 0.5);
  });
});
