/**
 * Index schema 4 (src/repo/index-v4.ts): columns read as they are used. A round trip through
 * `repo create` → open → resolve plans as the tree's own universe does; every corrupt part fails
 * with an E_REPO naming the index (and the package), when it is first read; old schemas read.
 */
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CpmError } from '../../src/errors.js';
import { createSpec, packageId, type PackageSpec } from '../../src/package/package.js';
import { PackageUniverse } from '../../src/package/universe.js';
import { parseRef } from '../../src/package/ref.js';
import { parseSelector } from '../../src/package/version.js';
import { createRepository, type CreateInput } from '../../src/repo/create.js';
import { IndexUniverse } from '../../src/repo/index-universe.js';
import { gzipMembers, gzipParts } from '../../src/repo/index-v4.js';
import { LayoutReader } from '../../src/repo/reader.js';
import {
  compactIndexPackage,
  packageCount,
  parseIndex,
  serializeIndex,
  type IndexPackage,
  type RepoIndex,
} from '../../src/repo/repo-index.js';
import { resolve } from '../../src/resolver/resolve.js';

const dep = (
  category: string,
  name: string,
  version = '',
): {
  category: string;
  name: string;
  version: string;
  selector: ReturnType<typeof parseSelector>;
} => ({
  category,
  name,
  version,
  selector: parseSelector(version),
});

/** A small universe with what the Debian one has: versions, virtual packages, conflicts. */
function specs(): PackageSpec[] {
  const s = (
    name: string,
    version: string,
    more: Partial<Parameters<typeof createSpec>[0]> = {},
  ): PackageSpec => createSpec({ category: 'deb', name, version, ...more });
  return [
    s('libc', '2.36', { provides: [dep('deb', 'libc-any')] }),
    s('libc', '2.31'),
    s('musl', '1.2', { provides: [dep('deb', 'libc-any')], conflicts: [dep('deb', 'libc')] }),
    s('shell', '5.2', { requires: [dep('deb', 'libc', '>=2.34')], description: 'a shell' }),
    s('shell', '5.1', { requires: [dep('deb', 'libc')] }),
    s('mail', '1', { provides: [dep('deb', 'mta')], requires: [dep('deb', 'libc-any')] }),
    s('postfix', '3.7', {
      provides: [dep('deb', 'mta'), dep('deb', 'mail-transport')],
      conflicts: [dep('deb', 'mail')],
      requires: [dep('deb', 'shell', '>=5'), dep('deb', 'libc', '>=2.36')],
      labels: { role: 'server' },
    }),
    s('app', '1.0', { requires: [dep('deb', 'mta'), dep('deb', 'shell')] }),
    s('app', '2.0~rc1', { requires: [dep('deb', 'mail-transport')] }),
  ];
}

function input(p: PackageSpec): CreateInput {
  return { ...p, payloadDir: undefined } as CreateInput;
}

function entry(p: PackageSpec, more: Partial<IndexPackage> = {}): IndexPackage {
  return {
    category: p.category,
    name: p.name,
    version: p.version,
    requires: p.requires.map((d) => ({ category: d.category, name: d.name, version: d.version })),
    conflicts: p.conflicts.map((d) => ({ category: d.category, name: d.name, version: d.version })),
    provides: p.provides.map((d) => ({ category: d.category, name: d.name, version: d.version })),
    labels: p.labels,
    annotations: {},
    uri: [],
    hidden: false,
    extra: {},
    ...(p.description !== undefined ? { description: p.description } : {}),
    contentKey: `sha256:${'1'.repeat(64)}`,
    ...more,
  };
}

const repoIndex = (packages: IndexPackage[]): RepoIndex => ({
  schemaVersion: 4,
  repository: { name: 'r', revision: 1, timestamp: 1700000000 },
  packages,
});

function plan(
  u: ConstructorParameters<typeof IndexUniverse>[0][number]['index'] | PackageSpec[],
  job: string,
): string[] {
  const universe = Array.isArray(u)
    ? new PackageUniverse(u)
    : new IndexUniverse([{ name: 'r', priority: 1, index: u }]);
  const p = resolve(universe, [], { op: 'install', targets: [parseRef(job)] });
  expect(p.satisfiable).toBe(true);
  return p.steps.map((s) => packageId(s.spec));
}

/** The parts (header line, then each section) of a schema 4 index's text. */
async function parts(
  index: RepoIndex,
): Promise<{ header: Record<string, unknown>; sections: Map<string, string> }> {
  const text = (await serializeIndex(index, 'none')).data.toString();
  const nl = text.indexOf('\n');
  const header = JSON.parse(text.slice(0, nl)) as { layout: Array<[string, number]> };
  const sections = new Map<string, string>();
  let off = nl + 1;
  for (const [name, size] of header.layout) {
    sections.set(name, text.slice(off, off + size));
    off += size;
  }
  return { header, sections };
}

/** A gzip schema 4 index with `edit` applied to its sections (the header's sizes follow). */
async function edited(
  index: RepoIndex,
  edit: (s: Map<string, string>, header: Record<string, unknown>) => void,
): Promise<Buffer> {
  const { header, sections } = await parts(index);
  edit(sections, header);
  header.layout = [...sections].map(([n, t]) => [n, Buffer.byteLength(t)]);
  const keys = Object.keys(header).sort();
  const line = JSON.stringify(Object.fromEntries(keys.map((k) => [k, header[k]])));
  return gzipParts([`${line}\n`, ...sections.values()], 6);
}

async function rejection(p: Promise<unknown> | (() => unknown)): Promise<CpmError> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    expect(e).toBeInstanceOf(CpmError);
    return e as CpmError;
  }
  throw new Error('expected an error');
}

let tmp: string;
beforeAll(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'cpm-index-v4-'));
});
afterAll(async () => {
  await fsp.rm(tmp, { recursive: true, force: true });
});

describe('index schema 4', () => {
  it('round trip: repo create → open → resolve plans as the tree universe does', async () => {
    const all = specs();
    const out = path.join(tmp, 'repo');
    await createRepository(all.map(input), {
      output: `dir://${out}`,
      sourceDateEpoch: 1700000000,
      name: 'r',
    });
    const fetched = await new LayoutReader('dir', `dir://${out}`).fetchIndex();
    expect(fetched.index.schemaVersion).toBe(4);
    expect(packageCount(fetched.index)).toBe(all.length);
    // the blob is one gzip stream of one member per part, which zcat reads whole
    const members = gzipMembers(fetched.data)!;
    expect(members.length).toBe(1 + 8);
    expect(members.reduce((a, b) => a + b, 0)).toBe(fetched.data.length);
    expect(gunzipSync(fetched.data).toString()).toMatch(/^\{"layout":\[\["family",/);
    for (const job of ['deb/app', 'deb/postfix', 'deb/shell@5.1', 'deb/mail', 'deb/app@2.0~rc1'])
      expect(plan(fetched.index, job)).toEqual(plan(all, job));
    const u = new IndexUniverse([{ name: 'r', priority: 1, index: fetched.index }]);
    expect(u.providersOf('deb/mta').map(packageId)).toEqual(['deb/mail@1', 'deb/postfix@3.7']);
    expect([...u.families()]).toEqual(new PackageUniverse(all).families());
    const pf = u.versions('deb/postfix')[0]!;
    expect(pf.labels).toEqual({ role: 'server' });
    expect(u.versions('deb/shell')[0]!.description).toBe('a shell');
    expect(pf.source).toBeUndefined();
    expect(u.offer('deb/postfix@3.7')!.entry.contentKey).toMatch(/^sha256:/);
    // every entry reads back as written (repo create compares them)
    expect(fetched.index.packages.map((p) => p.version)).toEqual([
      '1.0',
      '2.0~rc1',
      '2.31',
      '2.36',
      '1',
      '1.2',
      '3.7',
      '5.1',
      '5.2',
    ]);
  });

  it('reads the same from gzip without the member table, zstd and no compression', async () => {
    const idx = repoIndex(specs().map((p) => entry(p)));
    const gz = await serializeIndex(idx, 'gzip');
    const whole = gzipSync(gunzipSync(gz.data)); // one member, no table: inflated at once
    expect(gzipMembers(whole)).toBeUndefined();
    const want = (await parseIndex(gz.data, 'gz')).packages;
    for (const [c, data] of [
      ['whole', whole],
      ['zstd', (await serializeIndex(idx, 'zstd')).data],
      ['none', (await serializeIndex(idx, 'none')).data],
    ] as const) {
      const back = await parseIndex(data, c);
      expect(back.packages).toEqual(want);
      expect(plan(back, 'deb/app')).toEqual(plan(specs(), 'deb/app'));
    }
  });

  it('reads an empty index', async () => {
    const back = await parseIndex((await serializeIndex(repoIndex([]))).data, 'empty');
    expect(packageCount(back)).toBe(0);
    expect(back.packages).toEqual([]);
    const u = new IndexUniverse([{ name: 'r', priority: 1, index: back }]);
    expect([...u.families()]).toEqual([]);
    expect(u.versions('a/b')).toEqual([]);
    expect(u.providersOf('a/b')).toEqual([]);
  });

  it('reads columns that are not ASCII (as text, in code unit order)', async () => {
    const names = ['\uE000', 'z\u{1F600}', 'ü', 'a'];
    const pkgs = names.map((n) =>
      entry(createSpec({ category: 'x', name: n, version: `1.${n}` }), {
        provides: [{ category: 'v', name: `p${n}`, version: '' }],
        description: `d ${n}`,
      }),
    );
    const back = await parseIndex((await serializeIndex(repoIndex(pkgs))).data, 'utf8');
    const u = new IndexUniverse([{ name: 'r', priority: 1, index: back }]);
    expect([...u.families()]).toEqual(names.map((n) => `x/${n}`).sort());
    for (const n of names) {
      expect(u.versions(`x/${n}`).map((p) => [p.version, p.description])).toEqual([
        [`1.${n}`, `d ${n}`],
      ]);
      expect(u.providersOf(`v/p${n}`).map((p) => p.name)).toEqual([n]);
    }
  });

  it('keeps names, versions and dependencies that need the JSON forms', async () => {
    const odd: IndexPackage[] = [
      entry(createSpec({ category: 'a/b', name: 'c', version: '"quoted"' })),
      entry(createSpec({ category: '', name: 'x/y', version: '1\n2' })),
      entry(createSpec({ category: 'q', name: 'r', version: '[1]' })),
      entry(createSpec({ category: '', name: '[z', version: '1' }), {
        requires: [{ category: '', name: 'has space', version: '' }, '"w >=1'],
        provides: [{ category: 'v', name: 'tab\there', version: '' }],
      }),
    ];
    const back = await parseIndex((await serializeIndex(repoIndex(odd))).data, 'odd');
    expect(back.packages.map(compactIndexPackage)).toEqual(
      [...odd].map(compactIndexPackage).sort((a, b) => (packageId(a) < packageId(b) ? -1 : 1)),
    );
    const u = new IndexUniverse([{ name: 'r', priority: 1, index: back }]);
    expect(u.versions('a/b/c').map((s) => s.version)).toEqual(['"quoted"']);
    expect(u.versions('x/y')[0]!.category).toBe('');
    expect(u.versions('q/r').map((s) => s.version)).toEqual(['[1]']);
    expect(u.providersOf('v/tab\there').map((s) => s.name)).toEqual(['[z']);
    expect(u.versions('[z')[0]!.requires.map((d) => d.name)).toEqual(['has space', '"w']);
  });

  const idx = (): RepoIndex => repoIndex(specs().map((p) => entry(p)));
  const open = (data: Buffer): Promise<RepoIndex> => parseIndex(data, 'cache/r/index');
  const versions =
    (index: RepoIndex, fam: string): (() => unknown) =>
    () =>
      new IndexUniverse([{ name: 'r', priority: 1, index }]).versions(fam);

  it('refuses a broken header or column at open, naming the index', async () => {
    const cases: Array<
      [string, (s: Map<string, string>, h: Record<string, unknown>) => void, RegExp]
    > = [
      [
        'unsorted',
        (s) => s.set('family', s.get('family')!.split('\n').reverse().join('\n').slice(1) + '\n'),
        /package 3 \(deb\/postfix\): not in family order \(after deb\/shell\)/,
      ],
      [
        'short family',
        (s) => s.set('family', 'deb/app-with-a-long-name\n'),
        /section "family" has 1 full lines for 9 packages/,
      ],
      [
        'long family',
        (s) => s.set('family', s.get('family')! + 'deb/zz\n'),
        /section "family" has more lines/,
      ],
      [
        'bad family json',
        (s) => s.set('family', '[1]\n' + s.get('family')!.split('\n').slice(1).join('\n')),
        /package 1 .*family must be/,
      ],
      ['missing section', (s) => s.delete('spec'), /section "spec" missing/],
      [
        'unsorted provided',
        (s) =>
          s.set('provided', s.get('provided')!.split('\n').reverse().join('\n').slice(1) + '\n'),
        /provided, line 2: not in family order/,
      ],
      [
        'provided without tab',
        (s) => s.set('provided', 'deb/mta 5 6\n'),
        /provided, line 1: no tab/,
      ],
      ['schema', (_s, h) => (h.schemaVersion = 5), /schemaVersion 5 \(this cpm reads 1, 2, 3, 4\)/],
      ['count', (_s, h) => (h.packages = -1), /"packages" must be a count/],
      [
        'huge count',
        (_s, h) => (h.packages = 1e12),
        /1000000000000 packages but the family section has fewer bytes/,
      ],
    ];
    for (const [what, edit, msg] of cases) {
      const e = await rejection(open(await edited(idx(), edit)));
      expect(e.code, what).toBe('E_REPO');
      expect(e.message, what).toMatch(/^cache\/r\/index: invalid repository index: /);
      expect(e.message, what).toMatch(msg);
      expect(e.context.path).toBe('cache/r/index');
    }
  });

  it('a bad member table or member is an E_REPO, never a crash', async () => {
    const good = (await serializeIndex(idx())).data;
    // member table says the first member is longer than it is
    const badTable = Buffer.from(good);
    badTable.writeUInt32LE(badTable.readUInt32LE(16) + 1, 16);
    expect((await rejection(open(badTable))).message).toMatch(/gzip member table does not match/);
    // a flipped byte inside the requires member fails when the resolver first reads a package
    const members = gzipMembers(good)!;
    const at = members.slice(0, 5).reduce((a, b) => a + b, 0) + 12; // inside member 5: requires
    const flipped = Buffer.from(good);
    flipped[at] = flipped[at]! ^ 0xff;
    const index = await open(flipped);
    const e = await rejection(versions(index, 'deb/app'));
    expect(e.code).toBe('E_REPO');
    expect(e.message).toMatch(/^cache\/r\/index: .*(requires)/);
  });

  it('parts read later fail when first read, naming the package', async () => {
    const line = (s: Map<string, string>, sec: string, i: number, text: string): void => {
      const l = s.get(sec)!.split('\n');
      l[i] = text;
      s.set(sec, l.join('\n'));
    };
    const lazy: Array<
      [string, (s: Map<string, string>) => void, (i: RepoIndex) => unknown, RegExp]
    > = [
      [
        'requires json',
        (s) => line(s, 'requires', 0, '[oops'),
        (i) => versions(i, 'deb/app')(),
        /package 1 \(deb\/app@1.0\): requires: /,
      ],
      [
        'requires entry',
        (s) => line(s, 'requires', 0, '[5]'),
        (i) => versions(i, 'deb/app')(),
        /package 1 \(deb\/app@1.0\): requires: 5 is not a dependency/,
      ],
      [
        'no name',
        (s) => line(s, 'requires', 0, 'deb/'),
        (i) => versions(i, 'deb/app')(),
        /requires: dependency "deb\/" has no name/,
      ],
      [
        'short requires',
        (s) => s.set('requires', '\n'),
        (i) => versions(i, 'deb/app')(),
        /section "requires" has 1 full lines for 9 packages/,
      ],
      [
        'labels',
        (s) => line(s, 'spec', 0, '{"labels":[]}'),
        (i) => versions(i, 'deb/app')(),
        /package 1 \(deb\/app@1.0\): "labels" must be an object/,
      ],
      [
        'spec field',
        (s) => line(s, 'spec', 0, '{"name":"evil"}'),
        (i) => versions(i, 'deb/app')(),
        /spec: unknown field "name"/,
      ],
      [
        'version',
        (s) => line(s, 'version', 0, '"1'),
        (i) => versions(i, 'deb/app')(),
        /package 1 .*version: /,
      ],
      [
        'image',
        (s) =>
          line(
            s,
            'entry',
            0,
            '{"image":{"repository":"a","tag":"1","manifestDigest":"md5:x","layers":[]}}',
          ),
        (i) => i.packages,
        /package 1 \(deb\/app@1.0\): image.manifestDigest is not a sha256 digest/,
      ],
      [
        'entry field',
        (s) => line(s, 'entry', 0, '{"category":"x"}'),
        (i) => i.packages,
        /entry: field "category" belongs elsewhere/,
      ],
      [
        'provider index',
        (s) => s.set('provided', s.get('provided')!.replace(/\t.*\n/, '\t99\n')),
        (i) =>
          new IndexUniverse([{ name: 'r', priority: 1, index: i }]).providersOf('deb/libc-any'),
        /provided, line 1 \(deb\/libc-any\): packages must be ascending numbers below 9/,
      ],
    ];
    for (const [what, edit, touch, msg] of lazy) {
      const index = await open(await edited(idx(), edit)); // opens: the part is read later
      const e = await rejection(() => touch(index));
      expect(e.code, what).toBe('E_REPO');
      expect(e.message, what).toMatch(/^cache\/r\/index: invalid repository index: /);
      expect(e.message, what).toMatch(msg);
    }
  });

  it('a provider table entry whose package does not provide the family is not a provider', async () => {
    const index = await open(
      await edited(idx(), (s) =>
        s.set('provided', s.get('provided')!.replace('deb/mta\t', 'deb/mta\t0 ')),
      ),
    );
    const u = new IndexUniverse([{ name: 'r', priority: 1, index }]);
    expect(u.providersOf('deb/mta').map(packageId)).toEqual(['deb/mail@1', 'deb/postfix@3.7']);
  });

  it('a corrupted index gives a result or an E_REPO, whatever is touched (never another error)', async () => {
    const { header, sections } = await parts(idx());
    const names = [...sections.keys()];
    const mutation = fc.oneof(
      // flip one character of a section
      fc.record({
        kind: fc.constant('flip'),
        at: fc.nat(),
        ch: fc.constantFrom('"', '[', '\n', '\t', '|', ' ', '{', '9', 'x', '/', '@', '\u00e9'),
      }),
      // drop or repeat a line
      fc.record({ kind: fc.constantFrom('drop', 'dup'), at: fc.nat() }),
      // cut the section short
      fc.record({ kind: fc.constant('cut'), at: fc.nat() }),
    );
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...names),
        fc.array(mutation, { minLength: 1, maxLength: 3 }),
        fc.boolean(),
        async (name, muts, gz) => {
          const s = new Map(sections);
          let text = s.get(name)!;
          for (const m of muts) {
            const at = text.length ? m.at % text.length : 0;
            if (m.kind === 'flip' && 'ch' in m)
              text = text.slice(0, at) + m.ch + text.slice(at + 1);
            else if (m.kind === 'cut') text = text.slice(0, at);
            else {
              const lines = text.split('\n');
              const k = lines.length ? m.at % lines.length : 0;
              if (m.kind === 'drop') lines.splice(k, 1);
              else lines.splice(k, 0, lines[k] ?? '');
              text = lines.join('\n');
            }
          }
          s.set(name, text);
          const h = { ...header, layout: [...s].map(([n, t]) => [n, Buffer.byteLength(t)]) };
          const line = JSON.stringify(
            Object.fromEntries(
              Object.keys(h)
                .sort()
                .map((k) => [k, (h as Record<string, unknown>)[k]]),
            ),
          );
          const data = gz
            ? gzipParts([`${line}\n`, ...s.values()], 1)
            : Buffer.from(`${line}\n${[...s.values()].join('')}`);
          const touchAll = async (): Promise<void> => {
            const index = await parseIndex(data, 'fuzz');
            const u = new IndexUniverse([{ name: 'r', priority: 1, index }]);
            for (const f of u.families()) {
              for (const p of u.versions(f)) void p.requires.length;
              u.providersOf(f);
            }
            for (const f of ['deb/libc-any', 'deb/mta', 'deb/mail-transport']) u.providersOf(f);
            void index.packages.length;
            u.shadowsOf('deb/app@1.0');
            plan(index, 'deb/app');
          };
          try {
            await touchAll();
          } catch (e) {
            // an unsatisfiable plan after the corruption is an assertion failure from plan():
            // only errors other than CpmError or that are not E_REPO are bugs
            if (e instanceof Error && e.name === 'AssertionError') return;
            expect(e).toBeInstanceOf(CpmError);
            expect((e as CpmError).code).toBe('E_REPO');
            expect((e as CpmError).message).toMatch(/^fuzz: /);
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it('flipped bytes anywhere in a gzip index give a result or an E_REPO', async () => {
    const good = (await serializeIndex(idx())).data;
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(fc.nat(good.length - 1), fc.integer({ min: 1, max: 255 })), {
          minLength: 1,
          maxLength: 4,
        }),
        async (flips) => {
          const data = Buffer.from(good);
          for (const [at, x] of flips) data[at] = data[at]! ^ x;
          try {
            const index = await parseIndex(data, 'fuzz.gz');
            const u = new IndexUniverse([{ name: 'r', priority: 1, index }]);
            for (const f of u.families()) for (const p of u.versions(f)) void p.provides.length;
            u.providersOf('deb/mta');
            void index.packages.length;
          } catch (e) {
            expect(e).toBeInstanceOf(CpmError);
            expect((e as CpmError).code).toBe('E_REPO');
            expect((e as CpmError).message).toMatch(/^fuzz\.gz: /);
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});
