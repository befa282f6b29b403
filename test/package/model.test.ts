/**
 * The package model's shared parts: one Universe ordering (byte order, never locale), the
 * spec/JSON codec every stored form goes through, and the one reader of stored finalize specs.
 */
import { describe, expect, it } from 'vitest';
import { depFromJson, specFromJson, specToJson } from '../../src/package/codec.js';
import { finalizeFromJson } from '../../src/package/finalize.js';
import { createSpec, packageId } from '../../src/package/package.js';
import { PackageUniverse } from '../../src/package/universe.js';
import { dep, makeSpec } from '../support/specs.js';

describe('PackageUniverse ordering', () => {
  it('sorts families, versions and providers by bytes, newest version first', () => {
    const u = new PackageUniverse([
      makeSpec('b/z@1'),
      makeSpec('B/z@1', { provides: [dep('x/v')] }),
      makeSpec('a/x@1.10'),
      makeSpec('a/x@1.9'),
      makeSpec('a/x@1.010'), // equal to 1.10 after sanitising: ordered by its text
      makeSpec('a-b/p@1', { provides: [dep('x/v')] }),
      makeSpec('a_b/p@1', { provides: [dep('x/v')] }),
    ]);
    // localeCompare would put 'a-b' after 'a_b' and 'B' after 'a'
    expect(u.families()).toEqual(['B/z', 'a-b/p', 'a/x', 'a_b/p', 'b/z']);
    expect(u.versions('a/x').map((p) => p.version)).toEqual(['1.010', '1.10', '1.9']);
    expect(u.providersOf('x/v').map(packageId)).toEqual(['B/z@1', 'a-b/p@1', 'a_b/p@1']);
  });

  it('keeps the first package of an id unless told to keep duplicates', () => {
    const a = { ...makeSpec('a/x@1'), description: 'first' };
    const b = { ...makeSpec('a/x@1'), description: 'second' };
    expect(new PackageUniverse([a, b]).versions('a/x')).toEqual([a]);
    expect(new PackageUniverse([a, b], { keepDuplicates: true }).versions('a/x')).toHaveLength(2);
  });

  it('resolves through a provider only when its provide matches (package/match.ts)', () => {
    const u = new PackageUniverse([
      makeSpec('s/real@2'),
      makeSpec('s/impl@1', { provides: [dep('s/real', '1.0')] }),
    ]);
    expect(packageId(u.resolve(dep('s/real', '>=1'))!.pkg)).toBe('s/impl@1');
    expect(packageId(u.resolve(dep('s/real', '>=2'))!.pkg)).toBe('s/real@2');
  });
});

describe('spec codec', () => {
  const spec = createSpec({
    category: 'sys',
    name: 'app',
    version: '1.0',
    requires: [dep('lib/z', '>=1.2'), dep('base')],
    labels: { z: '1', a: '2' },
    extra: { zz: { b: 1, a: 2 }, aa: true },
    description: 'd',
    source: { file: '/tmp/tree/definition.yaml', line: 3 },
  });

  it('writes the DB layout and the image layout with their key orders', () => {
    expect(JSON.stringify(specToJson(spec, 'db'))).toBe(
      '{"category":"sys","name":"app","version":"1.0","requires":[{"category":"lib","name":"z","version":">=1.2"},{"category":"","name":"base","version":""}],"conflicts":[],"provides":[],"labels":{"a":"2","z":"1"},"annotations":{},"description":"d","uri":[],"hidden":false,"extra":{"aa":true,"zz":{"a":2,"b":1}}}',
    );
    expect(JSON.stringify(specToJson(spec, 'image'))).toBe(
      '{"category":"sys","name":"app","version":"1.0","requires":[{"category":"lib","name":"z","version":">=1.2"},{"category":"","name":"base","version":""}],"conflicts":[],"provides":[],"labels":{"a":"2","z":"1"},"annotations":{},"uri":[],"hidden":false,"description":"d","extra":{"aa":true,"zz":{"b":1,"a":2}}}',
    );
  });

  it('reads back what it wrote, without the machine-local source', () => {
    const { source: _source, ...rest } = spec;
    for (const layout of ['db', 'image'] as const) {
      const back = specFromJson(JSON.parse(JSON.stringify(specToJson(spec, layout))), Error);
      expect(back).toEqual(rest);
    }
  });

  it('refuses malformed fields through the caller error', () => {
    const bad = (m: string): Error => new Error(`E_TEST ${m}`);
    expect(() => specFromJson({ name: 'x', labels: { a: 1 } }, bad)).toThrow(
      'E_TEST "labels.a" is not a string',
    );
    expect(() => specFromJson({ name: 'x', requires: [{}] }, bad)).toThrow(
      '"requires[0]" has no name',
    );
    expect(() => specFromJson({ version: '1' }, bad)).toThrow('E_TEST no name');
  });

  it('reads the index compact dependency text and the object form alike', () => {
    expect(depFromJson('lib/z >=1.2')).toEqual(dep('lib/z', '>=1.2'));
    expect(depFromJson('zlib')).toEqual(dep('zlib'));
    expect(depFromJson({ category: 'lib', name: 'z', version: '<2' })).toEqual(dep('lib/z', '<2'));
    expect(depFromJson({ category: 'lib' })).toBeNull();
  });
});

describe('finalizeFromJson', () => {
  it('keeps every known field, drops empty ones, and nothing without install commands', () => {
    expect(
      finalizeFromJson({
        install: ['a', 3],
        uninstall: [],
        shell: ['sh', '-c'],
        env: { FOO: 'bar', N: 1 },
        other: 'x',
      }),
    ).toEqual({ install: ['a'], shell: ['sh', '-c'], env: { FOO: 'bar', N: '1' } });
    expect(finalizeFromJson({ install: ['a'], uninstall: ['b'], env: {} })).toEqual({
      install: ['a'],
      uninstall: ['b'],
    });
    expect(finalizeFromJson({ install: [], env: { A: 'b' } })).toBeUndefined();
    expect(finalizeFromJson('install')).toBeUndefined();
  });
});
