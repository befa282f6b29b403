/**
 * The registry build cache and the CI matrix, against the real test registry: runner A builds
 * with --cache; runner B (new output, empty cache_dir) builds nothing and gets identical digests;
 * docs/build.md's matrix recipe runs as written (two shards at once, then the merge writes one
 * index with every package); an unreachable cache or one refusing credentials is a warning and
 * the build succeeds. Needs bwrap and dist/ (npm test builds it), as build.test.ts.
 */
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { build, type BuildOptions } from '../../src/build/build.js';
import { clearContextCache } from '../../src/build/hash.js';
import { resultTag, rootTag } from '../../src/build/remote-cache.js';
import { parseShard } from '../../src/build/shard.js';
import { RegistryReader } from '../../src/repo/reader.js';
import { BlobStore } from '../../src/oci/blobstore.js';
import { PROJECT } from '../install/base-images.js';
import { tmpDir } from '../install/helpers.js';
import { freePort } from '../support/ports.js';
import { startRegistry, type RegistryInstance } from '../support/registry.js';
import { hostToolsRoot, pushRoot, writeFiles } from './fixtures.js';

const run = promisify(execFile);
const BIN = path.join(PROJECT, 'bin/cpm.js');
const ALL = ['apps/one@1.0', 'apps/three@1.0', 'apps/two@1.0', 'base/tools@1.0'];

let reg: RegistryInstance;
let work: string;
let tree: string;

function treeFiles(ref: string): Record<string, string> {
  const def = (cat: string, name: string): string =>
    `category: ${cat}\nname: ${name}\nversion: "1.0"\n`;
  return {
    'base/tools/definition.yaml': def('base', 'tools'),
    'base/tools/build.yaml': `image: ${ref}\nsteps:\n- mkdir -p /usr/share/tools && echo tools > /usr/share/tools/VERSION\n`,
    'apps/one/definition.yaml': def('apps', 'one'),
    'apps/one/build.yaml':
      'requires:\n- category: base\n  name: tools\n  version: ">=0"\nsteps:\n- mkdir -p /usr/share/one && cat /usr/share/tools/VERSION > /usr/share/one/saw\n',
    'apps/two/definition.yaml': def('apps', 'two'),
    'apps/two/build.yaml': `image: ${ref}\nsteps:\n- mkdir -p /usr/share/two && cp note.txt /usr/share/two/\n`,
    'apps/two/note.txt': 'two\n',
    'apps/three/definition.yaml': def('apps', 'three'),
    'apps/three/build.yaml': `image: ${ref}\nsteps:\n- mkdir -p /usr/share/three && echo 3 > /usr/share/three/x\n`,
  };
}

function opts(name: string, more: Partial<BuildOptions> = {}): BuildOptions {
  return {
    tree,
    output: `dir://${path.join(work, name, 'repo')}`,
    cacheDir: path.join(work, name, 'cache'),
    jobs: 2,
    network: false,
    ...more,
  };
}

/** The ```sh blocks of a markdown section (as test/docs/readme-tour.test.ts reads them). */
function shBlocks(file: string, heading: string): string[] {
  const text = readFileSync(file, 'utf8');
  const start = text.indexOf(`\n${heading}\n`);
  if (start < 0) throw new Error(`${file}: no section "${heading}"`);
  const rest = text.slice(start + heading.length + 2);
  const end = rest.search(/\n## /);
  const section = end < 0 ? rest : rest.slice(0, end);
  return [...section.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]!);
}

async function tags(repo: string): Promise<string[]> {
  const r = await fetch(`${reg.url}/v2/${repo}/tags/list`);
  if (r.status === 404) return [];
  return ((await r.json()) as { tags: string[] | null }).tags ?? [];
}

beforeAll(() => {
  if (!existsSync(path.join(PROJECT, 'dist/cpm.cjs')))
    throw new Error('dist/ is missing: run "npm run build" first (npm test does it)');
  return startRegistry().then((r) => {
    reg = r;
    work = tmpDir('cpm-bcache-');
    const ref = pushRoot(
      hostToolsRoot(path.join(work, 'tools-root')),
      work,
      reg.host,
      'base/img',
      '1',
    );
    tree = path.join(work, 'tree');
    writeFiles(tree, treeFiles(ref));
  });
});
afterAll(async () => {
  await reg?.stop();
});

describe('cpm build --cache (registry build cache)', () => {
  it('runner B with an empty cache_dir and a new output builds nothing and gets the same digests', async () => {
    const cache = `oci://${reg.host}/cache`;
    const a = await build(opts('runner-a', { cache }));
    expect(a.failed, JSON.stringify(a.packages, null, 1)).toBe(0);
    expect(a.packages.map((p) => p.outcome)).toEqual(['built', 'built', 'built', 'built']);
    expect(a.warnings).toEqual([]);
    // The key scheme: NS/<category>/<name>:build-<hex of the build hash>, and root-<hex> for
    // the root apps/one chains on.
    for (const p of a.packages) {
      const [fam] = p.id.split('@');
      const want = [resultTag(p.hash), ...(fam === 'base/tools' ? [rootTag(p.hash)] : [])];
      expect((await tags(`cache/${fam}`)).sort(), p.id).toEqual(want.sort());
    }

    // A dry run says what the cache has and writes nothing into the output.
    const dry = await build(opts('runner-b', { cache, dryRun: true }));
    expect(dry.packages.map((p) => p.reason)).toEqual(
      Array(4).fill(`build hash in the cache ${cache}`),
    );
    const outBlobs = new BlobStore(path.join(work, 'runner-b', 'repo'));
    for (const p of a.repo!.index.packages)
      expect(await outBlobs.size(p.image!.manifestDigest), p.name).toBeUndefined();

    const logs: string[] = [];
    const b = await build(opts('runner-b', { cache, log: (l) => logs.push(l) }));
    expect(b.failed).toBe(0);
    expect(b.packages.map((p) => p.outcome)).toEqual(['cached', 'cached', 'cached', 'cached']);
    expect(b.packages[0]!.reason).toBe(`build hash in the cache ${cache}`);
    expect(logs.filter((l) => l.startsWith('build '))).toEqual([]);
    const digests = (r: typeof a): Record<string, string | undefined> =>
      Object.fromEntries(r.repo!.index.packages.map((p) => [p.name, p.image?.manifestDigest]));
    expect(digests(b)).toEqual(digests(a));
    expect(b.repo!.indexDigest).toBe(a.repo!.indexDigest);
    // Runner B's output holds every layer (it is a dir:// repository others install from).
    const blobs = new BlobStore(path.join(work, 'runner-b', 'repo'));
    for (const p of b.repo!.index.packages)
      for (const l of p.image!.layers) expect(await blobs.size(l.digest), p.name).toBe(l.size);

    // apps/one changes: runner C (empty cache_dir) takes base/tools from the cache and builds
    // apps/one on its root unpacked from the cache — the same image a local build of both gives.
    writeFileSync(path.join(tree, 'apps/one/extra.txt'), 'x\n');
    clearContextCache();
    try {
      const clogs: string[] = [];
      const c = await build(
        opts('runner-c', { cache, packages: ['apps/one'], log: (l) => clogs.push(l) }),
      );
      expect(c.failed, JSON.stringify(c.packages, null, 1)).toBe(0);
      expect(Object.fromEntries(c.packages.map((p) => [p.id, p.outcome]))).toEqual({
        'base/tools@1.0': 'cached',
        'apps/one@1.0': 'built',
      });
      expect(clogs).toContain(`fetch the build root of base/tools@1.0 from ${cache}`);
      const local = await build(opts('runner-local', { packages: ['apps/one'] }));
      expect(local.packages.map((p) => p.outcome)).toEqual(['built', 'built']);
      const one = (r: typeof a): string | undefined =>
        r.repo!.index.packages.find((p) => p.name === 'one')!.image?.manifestDigest;
      expect(one(c)).toBe(one(local));
      // (The context is not the package's files: the image is the first one, the hash is new.)
      expect(one(c)).toBe(one(a));
      expect(c.packages[1]!.hash).not.toBe(a.packages.find((p) => p.id === 'apps/one@1.0')!.hash);
    } finally {
      rmSync(path.join(tree, 'apps/one/extra.txt'));
      clearContextCache();
    }
  }, 300_000);

  it('a package others chain on pushes its root even when built alone (a first CI stage)', async () => {
    const r = await build(
      opts('stage', { cache: `oci://${reg.host}/stage`, packages: ['base/tools'] }),
    );
    expect(r.packages.map((p) => p.outcome)).toEqual(['built']);
    expect((await tags('stage/base/tools')).sort()).toEqual(
      [resultTag(r.packages[0]!.hash), rootTag(r.packages[0]!.hash)].sort(),
    );
  }, 120_000);

  it('--no-build takes what the cache has, builds nothing and names what is missing', async () => {
    // The stage cache holds base/tools only (the test above).
    const cache = `oci://${reg.host}/stage`;
    const r = await build(opts('merge-missing', { cache, noBuild: true }));
    const by = Object.fromEntries(r.packages.map((p) => [p.id, p]));
    expect(by['base/tools@1.0']!.outcome).toBe('cached');
    for (const id of ['apps/one@1.0', 'apps/two@1.0', 'apps/three@1.0']) {
      expect(by[id]!.outcome, id).toBe('skipped');
      expect(by[id]!.reason).toBe(
        `not in dir://${path.join(work, 'merge-missing', 'repo')} nor in the cache ${cache} (--no-build)`,
      );
    }
    expect(r.missing).toBe(3);
    expect(r.failed).toBe(0);
    expect(r.repo!.index.packages.map((p) => p.name)).toEqual(['tools']);
  }, 120_000);

  it('an unreachable cache is a warning and the build succeeds', async () => {
    const port = await freePort();
    const started = Date.now();
    const r = await build(
      opts('dead', { cache: `oci://127.0.0.1:${port}/cache`, packages: ['apps/two'] }),
    );
    expect(r.failed).toBe(0);
    expect(r.packages.map((p) => p.outcome)).toEqual(['built']);
    expect(r.warnings).toHaveLength(1);
    expect(r.warnings[0]).toMatch(
      new RegExp(
        `^build cache oci://127.0.0.1:${port}/cache is not usable: .*ECONNREFUSED.*; building without it$`,
      ),
    );
    expect(Date.now() - started).toBeLessThan(60_000);
  }, 120_000);

  it('a cache that refuses anonymous access is a warning with the login hint', async () => {
    const locked = await startRegistry({ htpasswd: { alice: 's3cret' } });
    try {
      const r = await build(
        opts('locked', {
          cache: `oci://${locked.host}/cache`,
          packages: ['apps/two'],
          registry: { authFiles: [] },
        }),
      );
      expect(r.failed).toBe(0);
      expect(r.warnings).toHaveLength(1);
      expect(r.warnings[0]).toContain(`(log in with: cpm login ${locked.host})`);
    } finally {
      await locked.stop();
    }
  }, 120_000);
});

describe('two jobs writing one index at once', () => {
  it('the later one starts over from the index the other wrote, keeping its packages', async () => {
    const cache = `oci://${reg.host}/cache`; // has every result (the first test)
    const output = `oci://${reg.host}/race`;
    const cfg = path.join(work, 'race-cpm.yaml');
    writeFileSync(cfg, `cache_dir: ${path.join(work, 'race-b-cache')}\n`);
    const lines: string[] = [];
    let other = '';
    const r = await build(
      opts('race-a', {
        output,
        push: true,
        cache,
        packages: ['apps/two'],
        log: (l) => {
          lines.push(l);
          // While this job pushes its image, another job publishes apps/three and its index
          // (synchronously: it has finished before this one goes on).
          if (l.startsWith('push ') && !other)
            other = execFileSync(
              process.execPath,
              [
                BIN,
                'build',
                'apps/three',
                '--tree',
                tree,
                '--output',
                output,
                '--push',
                '--cache',
                cache,
              ],
              { env: { ...process.env, CPM_CONFIG: cfg }, encoding: 'utf8' },
            );
        },
      }),
    );
    expect(other).toMatch(/^0 built, 1 from the cache/m);
    expect(lines.some((l) => l.includes('the index changed while this run was writing it'))).toBe(
      true,
    );
    expect(r.repo!.index.packages.map((p) => p.name).sort()).toEqual(['three', 'two']);
  }, 120_000);
});

describe('CI matrix: shards without an index, then one merge', () => {
  it('--shard I/N splits the plan into disjoint sets that cover it', async () => {
    for (const n of [1, 2, 3]) {
      const seen: string[] = [];
      for (let i = 1; i <= n; i++) {
        const r = await build(opts('shards', { dryRun: true, shard: parseShard(`${i}/${n}`) }));
        seen.push(...r.packages.map((p) => p.id));
      }
      expect(seen.sort(), `N=${n}`).toEqual(ALL);
    }
    // A shard writes no index (its own share only would drop the others' packages).
    const one = await build(opts('shard-index', { shard: parseShard('2/2') }));
    expect(one.failed).toBe(0);
    expect(one.packages.map((p) => p.outcome)).toEqual(['built', 'built']);
    expect(one.repo).toBeUndefined();
    expect(() => parseShard('3/2')).toThrow(/expected I\/N/);
    expect(() => parseShard('0/2')).toThrow(/expected I\/N/);
  }, 120_000);

  it("runs docs/build.md's recipe as written: two runners at once, then one index with all packages", async () => {
    const block = shBlocks(path.join(PROJECT, 'docs/build.md'), '## CI recipe')[1]!;
    const [runner, merge] = block.split('\n').filter((l) => l.trim() !== '');
    expect(runner).toContain('--shard "$I/$N"');
    expect(merge).toContain('--no-build');
    // docs/ci.md's workflow runs the same two lines.
    const ci = readFileSync(path.join(PROJECT, 'docs/ci.md'), 'utf8');
    expect(ci).toContain(`run: sudo -E ${runner!.trim()}\n`);
    expect(ci).toContain(`run: sudo -E ${merge!.trim()}\n`);
    const cwd = path.join(work, 'matrix');
    mkdirSync(cwd);
    symlinkSync(tree, path.join(cwd, 'packages'));
    const sh = async (
      line: string,
      name: string,
      vars: Record<string, string>,
    ): Promise<{ code: number; out: string; err: string }> => {
      const dir = path.join(cwd, name);
      mkdirSync(dir);
      writeFileSync(path.join(dir, 'cpm.yaml'), `cache_dir: ${path.join(dir, 'cache')}\n`);
      const env = {
        ...process.env,
        ...vars,
        REGISTRY: reg.host,
        CPM_CONFIG: path.join(dir, 'cpm.yaml'),
        PATH: `${path.join(cwd, 'bin')}:${process.env.PATH}`,
      };
      try {
        const r = await run('sh', ['-ec', line], { cwd, env, maxBuffer: 64 << 20 });
        return { code: 0, out: r.stdout, err: r.stderr };
      } catch (e) {
        const x = e as { stdout: string; stderr: string; code: number };
        return { code: x.code, out: x.stdout, err: x.stderr };
      }
    };
    mkdirSync(path.join(cwd, 'bin'));
    writeFileSync(
      path.join(cwd, 'bin', 'cpm'),
      `#!/bin/sh\nexec "${process.execPath}" "${BIN}" "$@"\n`,
      { mode: 0o755 },
    );

    const runners = await Promise.all(
      ['1', '2'].map((i) => sh(runner!, `runner-${i}`, { I: i, N: '2' })),
    );
    const built: string[] = [];
    for (const r of runners) {
      expect(r.code, r.err).toBe(0);
      built.push(...[...r.out.matchAll(/^built\s+(\S+)/gm)].map((m) => m[1]!));
    }
    expect(built.sort()).toEqual(ALL); // disjoint, and together all of them
    // No runner wrote an index.
    expect(await tags('cos')).toEqual([]);
    for (const id of ALL) expect(await tags(`cos/${id.split('@')[0]!}`)).toEqual(['1.0']);

    const m = await sh(merge!, 'merge', {});
    expect(m.code, m.err).toBe(0);
    expect(m.out).toMatch(/^0 built, 4 from the cache, 0 up to date, 0 failed, 0 skipped/m);
    const reader = new RegistryReader(`oci://${reg.host}/cos`, {
      blobCache: new BlobStore(path.join(cwd, 'check')),
    });
    let index;
    try {
      ({ index } = await reader.fetchIndex());
      expect(index.packages.map((p) => `${p.category}/${p.name}@${p.version}`).sort()).toEqual(ALL);
    } finally {
      await reader.close();
    }
    expect(index.packages.every((p) => p.image !== undefined)).toBe(true);
    // The merge downloaded no layer: the runners had pushed them to the output already.
    const mergeStore = new BlobStore(path.join(cwd, 'merge', 'cache'));
    for (const p of index.packages)
      for (const l of p.image!.layers)
        expect(await mergeStore.size(l.digest), p.name).toBeUndefined();
  }, 600_000);
});
