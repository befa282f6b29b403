import { describe, expect, it } from 'vitest';
import {
  parseIndex,
  serializeIndex,
  type IndexPackage,
  type RepoIndex,
  indexDep,
  indexDepFamily,
  indexDeps,
  compactDeps,
  expandIndexPackage,
  compactIndexPackage,
} from '../../src/repo/repo-index.js';
import { IndexUniverse } from '../../src/repo/index-universe.js';
import { createSpec } from '../../src/package/package.js';

function pkg(
  category: string,
  name: string,
  version: string,
  extra: Partial<IndexPackage> = {},
): IndexPackage {
  return {
    ...createSpec({ category, name, version }),
    contentKey: `sha256:${'0'.repeat(64)}`,
    ...extra,
  };
}

function index(name: string, packages: IndexPackage[], revision = 1): RepoIndex {
  return { schemaVersion: 1, repository: { name, revision, timestamp: 1700000000 }, packages };
}

/** The header and sections of an uncompressed schema 4 index. */
function schema4Text(data: Buffer): {
  header: { schemaVersion: number; layout: Array<[string, number]> };
  sections: Record<string, string>;
} {
  const nl = data.indexOf(0x0a);
  const header = JSON.parse(data.subarray(0, nl).toString()) as {
    schemaVersion: number;
    layout: Array<[string, number]>;
  };
  const sections: Record<string, string> = {};
  let off = nl + 1;
  for (const [name, size] of header.layout) {
    sections[name] = data.subarray(off, off + size).toString();
    off += size;
  }
  return { header, sections };
}

describe('index serialisation', () => {
  const a = pkg('system', 'a', '1.0', {
    requires: [{ category: 'system', name: 'b', version: '>=1.0' }],
    labels: { z: '1', a: '2' },
  });
  const b1 = pkg('system', 'b', '1.0+1');
  const b2 = pkg('system', 'b', '1.0-1');
  it.each(['gzip', 'zstd', 'none'] as const)(
    'is byte-identical for identical input (%s)',
    async (c) => {
      const x = await serializeIndex(index('r', [a, b1, b2]), c);
      // Same content in another order and with keys in another order → same bytes.
      const shuffled = { ...b2, version: '1.0-1' };
      const y = await serializeIndex(
        index('r', [shuffled, b1, { ...a, labels: { a: '2', z: '1' } }]),
        c,
      );
      expect(y.data.equals(x.data)).toBe(true);
      expect(y.digest).toBe(x.digest);
      const back = await parseIndex(x.data, 'test');
      expect(back.packages.map((p) => p.version)).toEqual(['1.0', '1.0-1', '1.0+1']);
      expect(back.packages[0]!.requires).toBe('system/b >=1.0');
    },
  );

  it('writes dependencies as compact text where it round-trips, objects otherwise', async () => {
    const odd = pkg('', 'c', '1', {
      requires: [
        { category: '', name: 'plain', version: '' },
        { category: 'x', name: 'y', version: '>=1, <2' },
        { category: 'a/b', name: 'c', version: '' },
        { category: '', name: 'has space', version: '1' },
      ],
      provides: [{ category: 'virt', name: 'v', version: '' }],
    });
    const x = await serializeIndex(index('r', [odd]), 'none');
    const { header, sections } = schema4Text(x.data);
    expect(header.schemaVersion).toBe(4);
    expect(JSON.parse(sections.requires!)).toEqual([
      'plain',
      'x/y >=1, <2',
      { category: 'a/b', name: 'c', version: '' },
      { category: '', name: 'has space', version: '1' },
    ]);
    expect(sections.provides).toBe('virt/v\n');
    expect(sections.provided).toBe('virt/v\t0\n');
    expect(sections.conflicts).toBe('\n'); // none: an empty line
    const back = await parseIndex(x.data, 'test');
    expect(indexDeps(back.packages[0]!.requires).map(indexDep)).toEqual(odd.requires);
    expect(indexDeps(back.packages[0]!.provides).map(indexDepFamily)).toEqual(['virt/v']);
  });

  it('keeps a list form when an entry contains the separator', () => {
    expect(compactDeps([{ category: '', name: 'p', version: 'a|b' }])).toEqual(['p a|b']);
    expect(compactDeps([])).toBe('');
    expect(indexDeps('')).toEqual([]);
    expect(indexDeps(compactDeps(['x/y >=1, <2', 'z']))).toEqual(['x/y >=1, <2', 'z']);
  });

  it('still reads schema 1 (object dependencies) into the same universe', async () => {
    const v1 = Buffer.from(JSON.stringify(index('r', [a, b1])));
    const u = new IndexUniverse([
      { name: 'r', priority: 1, index: await parseIndex(v1, 'v1.json') },
    ]);
    const spec = u.versions('system/a')[0]!;
    expect(spec.requires[0]).toMatchObject({ category: 'system', name: 'b', version: '>=1.0' });
    expect(spec.requires[0]!.selector.constraints[0]).toMatchObject({ op: '>=' });
  });

  it('leaves defaults out and puts them back on reading; schemas 2 and 3 still read', async () => {
    const plain = pkg('system', 'p', '1.0');
    const full = pkg('system', 'q', '2.0', {
      requires: [{ category: 'system', name: 'p', version: '>=1' }],
      labels: { l: 'v' },
      annotations: { a: 'b' },
      uri: ['https://example.com'],
      hidden: true,
      extra: { x: 1 },
    });
    const x = await serializeIndex(index('r', [plain, full]), 'none');
    const { sections } = schema4Text(x.data);
    expect(sections.spec).toBe(
      '{}\n{"annotations":{"a":"b"},"extra":{"x":1},"hidden":true,"labels":{"l":"v"},"uri":["https://example.com"]}\n',
    );
    expect(sections.entry).toBe(`{"contentKey":"sha256:${'0'.repeat(64)}"}\n`.repeat(2));
    const back = await parseIndex(x.data, 'x');
    expect(back.packages.map(expandIndexPackage)).toEqual([plain, full].map(expandIndexPackage));
    // the same packages written as schema 3 (defaults left out) and 2 (all there) read the same
    const v3 = Buffer.from(
      JSON.stringify({
        ...index('r', [plain, full].map(compactIndexPackage)),
        schemaVersion: 3,
      }),
    );
    expect(Object.keys(JSON.parse(v3.toString()).packages[0]).sort()).toEqual([
      'category',
      'contentKey',
      'name',
      'version',
    ]);
    expect((await parseIndex(v3, 'v3')).packages.map(expandIndexPackage)).toEqual(
      back.packages.map(expandIndexPackage),
    );
    const v2 = Buffer.from(JSON.stringify({ ...index('r', [plain, full]), schemaVersion: 2 }));
    expect((await parseIndex(v2, 'v2')).packages.map(expandIndexPackage)).toEqual(
      back.packages.map(expandIndexPackage),
    );
    // schema 2 still needs its fields
    const { uri: _u, ...noUri } = plain;
    await expect(
      parseIndex(
        Buffer.from(JSON.stringify({ ...index('r', []), schemaVersion: 2, packages: [noUri] })),
        'v2',
      ),
    ).rejects.toThrow(/"uri" must be a list/);
  });

  it('a changed package changes the digest', async () => {
    const x = await serializeIndex(index('r', [a]));
    const y = await serializeIndex(index('r', [{ ...a, description: 'x' }]));
    expect(y.digest).not.toBe(x.digest);
  });

  it('rejects duplicates and malformed indexes with a located error', async () => {
    await expect(serializeIndex(index('r', [a, { ...a }]))).rejects.toThrow(
      /duplicate package system\/a@1.0/,
    );
    await expect(parseIndex(Buffer.from('{"schemaVersion":9}'), 'x.json')).rejects.toThrow(
      /x.json: invalid repository index: schemaVersion 9/,
    );
    await expect(parseIndex(Buffer.from([0x1f, 0x8b, 1, 2, 3]), 'y.gz')).rejects.toThrow(
      /y.gz: cannot decompress/,
    );
    const badImg = JSON.stringify({
      ...index('r', []),
      packages: [
        {
          ...a,
          image: { repository: 'system/a', tag: '1.0', manifestDigest: 'md5:x', layers: [] },
        },
      ],
    });
    await expect(parseIndex(Buffer.from(badImg), 'z')).rejects.toThrow(
      /manifestDigest is not a sha256/,
    );
  });
});

describe('IndexUniverse', () => {
  it('lists versions newest first and providers by id', () => {
    const u = new IndexUniverse([
      {
        name: 'main',
        priority: 10,
        index: index('main', [
          pkg('sys', 'b', '1.0'),
          pkg('sys', 'b', '1.0+2'),
          pkg('sys', 'b', '1.0~rc1'),
          pkg('sys', 'c', '2', { provides: [{ category: 'virtual', name: 'sh', version: '' }] }),
          pkg('sys', 'a', '1', { provides: [{ category: 'virtual', name: 'sh', version: '' }] }),
        ]),
      },
    ]);
    expect([...u.families()]).toEqual(['sys/a', 'sys/b', 'sys/c']);
    expect(u.versions('sys/b').map((p) => p.version)).toEqual(['1.0+2', '1.0', '1.0~rc1']);
    expect(u.providersOf('virtual/sh').map((p) => p.name)).toEqual(['a', 'c']);
    expect(u.versions('nope')).toEqual([]);
    expect(u.versions('sys/b')[0]!.requires).toEqual([]);
  });

  it('merges repositories by priority: lower number wins the same id', () => {
    const hi = index('hi', [pkg('sys', 'a', '1.0', { description: 'from hi' })]);
    const lo = index('lo', [
      pkg('sys', 'a', '1.0', { description: 'from lo' }),
      pkg('sys', 'a', '2.0', { description: 'only lo' }),
    ]);
    for (const order of [
      [
        { name: 'lo', priority: 50, index: lo },
        { name: 'hi', priority: 1, index: hi },
      ],
      [
        { name: 'hi', priority: 1, index: hi },
        { name: 'lo', priority: 50, index: lo },
      ],
    ]) {
      const u = new IndexUniverse(order);
      expect(u.versions('sys/a').map((p) => `${p.version} ${p.description}`)).toEqual([
        '2.0 only lo',
        '1.0 from hi',
      ]);
      expect(u.offer('sys/a@1.0')!.repo).toBe('hi');
      expect(u.offer('sys/a@2.0')!.repo).toBe('lo');
      expect(u.shadowsOf('sys/a@1.0')).toEqual(['lo']);
      expect(u.shadowsOf('sys/a@2.0')).toEqual([]);
      expect(u.shadowed.get('sys/a@1.0')).toEqual(['lo']);
    }
  });

  it('parses dependency selectors from the index', () => {
    const u = new IndexUniverse([
      {
        name: 'r',
        priority: 1,
        index: index('r', [
          pkg('s', 'x', '1', { requires: [{ category: 's', name: 'y', version: '>=2' }] }),
        ]),
      },
    ]);
    const dep = u.versions('s/x')[0]!.requires[0]!;
    expect(dep.selector.any).toBe(false);
    expect(dep.selector.raw).toBe('>=2');
  });
});
