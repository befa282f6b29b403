import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { lineOf, loadYamlFile, parseYaml, sourceOf } from '../../src/tree/yaml.js';

function bomb(levels: number): string {
  const lines = ['a0: &a0 [x, x, x, x, x, x, x, x, x]'];
  for (let i = 1; i < levels; i++) {
    lines.push(
      `a${i}: &a${i} [${Array(9)
        .fill(`*a${i - 1}`)
        .join(', ')}]`,
    );
  }
  return lines.join('\n') + '\n';
}

describe('parseYaml', () => {
  it('records the line of every key and item', () => {
    const y = parseYaml(
      'name: foo\nrequires:\n  - name: a\n  - name: b\n    version: ">=1"\n',
      'f.yaml',
    );
    const v = y.value as { requires: Array<Record<string, string>> };
    expect(lineOf(y, v, 'requires')).toBe(2);
    expect(lineOf(y, v.requires, 1)).toBe(4);
    expect(lineOf(y, v.requires[1], 'version')).toBe(5);
  });

  it('keeps the source text of numbers (version: 1.10 is not 1.1)', () => {
    const y = parseYaml('version: 1.10\nother: 020\n', 'f.yaml');
    expect((y.value as { version: number }).version).toBe(1.1);
    expect(sourceOf(y, y.value, 'version')).toBe('1.10');
    expect(sourceOf(y, y.value, 'other')).toBe('020');
  });

  it('merges with << and !!merge <<: explicit keys win, a merged list is replaced', () => {
    const y = parseYaml(
      [
        'packages:',
        '  - &base',
        '    name: a',
        '    requires: [{name: x}, {name: w}]',
        '    labels: {k: v}',
        '  - !!merge <<: *base',
        '    name: b',
        '    requires: [{name: z}]',
        '  - <<: [*base]',
        '    name: c',
      ].join('\n'),
      'c.yaml',
    );
    const p = (
      y.value as { packages: Array<{ name: string; requires: unknown[]; labels: unknown }> }
    ).packages;
    expect(p.map((x) => x.name)).toEqual(['a', 'b', 'c']);
    expect(p[1]!.requires).toEqual([{ name: 'z' }]);
    expect(p[2]!.requires).toEqual([{ name: 'x' }, { name: 'w' }]);
    expect(p[1]!.labels).toEqual({ k: 'v' });
    expect(lineOf(y, p[1], 'labels')).toBe(5); // merged keys point at the anchor's text
  });

  it('fails an alias bomb fast, at the alias that crosses the cap', () => {
    const t0 = Date.now();
    expect(() => parseYaml(bomb(9), 'bomb.yaml')).toThrow(
      /^bomb\.yaml:6: alias \*a4 expands the document beyond 100000 nodes/,
    );
    expect(Date.now() - t0).toBeLessThan(2000);
  });

  it('accepts a few small aliases', () => {
    expect(() => parseYaml(bomb(3), 'ok.yaml')).not.toThrow();
  });

  it('reports syntax errors with file:line', () => {
    expect(() => parseYaml('a: 1\nb: c: d\n', 'bad.yaml')).toThrow(/^bad\.yaml:2: YAML syntax/);
  });

  it('keeps the last of repeated keys, as go-yaml v2 does, and says where', () => {
    const y = parseYaml('a: 1\nb: {c: 1, c: 2}\na: 3\n', 'dup.yaml');
    expect(y.value).toEqual({ a: 3, b: { c: 2 } });
    expect(y.warnings).toEqual([
      { line: 2, message: 'key "c" repeats the one at line 2; the last one wins (as luet)' },
      { line: 3, message: 'key "a" repeats the one at line 1; the last one wins (as luet)' },
    ]);
  });

  it('adds no line break to a block scalar that ends the file without one (go-yaml)', () => {
    expect(parseYaml('a: |\n  x\n  y', 'f.yaml').value).toEqual({ a: 'x\ny' });
    expect(parseYaml('a: >\n  x\n  y', 'f.yaml').value).toEqual({ a: 'x y' });
    expect(parseYaml('a: |\n  x\n  y\n', 'f.yaml').value).toEqual({ a: 'x\ny\n' });
    expect(parseYaml('a: |\n  x\nb: 1', 'f.yaml').value).toEqual({ a: 'x\n', b: 1 });
  });

  it('rejects deep nesting and huge input', () => {
    expect(() => parseYaml('['.repeat(50_000), 'deep.yaml')).toThrow(/deep\.yaml(:1)?: nesting/);
    const nested =
      'a:\n' + Array.from({ length: 300 }, (_, i) => ' '.repeat(i + 1) + '- ').join('\n') + 'x\n';
    expect(() => parseYaml(nested, 'n.yaml')).toThrow(/n\.yaml(:\d+)?: nesting/);
    expect(() =>
      parseYaml('a: 1\n', 'big.yaml', { maxBytes: 3, maxAliasNodes: 10, maxDepth: 5 }),
    ).toThrow(/big\.yaml: text is above the 3-byte limit/);
  });

  it('loadYamlFile checks the size before reading', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cpm-yaml-'));
    writeFileSync(join(dir, 'big.yaml'), 'x: ' + 'y'.repeat(5000) + '\n');
    await expect(
      loadYamlFile(join(dir, 'big.yaml'), 'big.yaml', {
        maxBytes: 1000,
        maxAliasNodes: 10,
        maxDepth: 10,
      }),
    ).rejects.toThrow(/big\.yaml: file is 5004 bytes, above the 1000-byte limit/);
  });

  it('does not let a "__proto__" key touch the prototype', () => {
    const y = parseYaml('__proto__: {polluted: 1}\n', 'p.yaml');
    expect(Object.getPrototypeOf(y.value)).toBe(Object.prototype);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
});
