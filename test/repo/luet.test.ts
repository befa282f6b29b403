/** Reading a luet repository (for migration): a fixture generated here in luet's layout. */
import { createHash } from 'node:crypto';
import {
  cpSync,
  promises as fsp,
  readFileSync,
  renameSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import tar from 'tar-stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultConfig } from '../../src/config.js';
import { parseRepoEntry } from '../../src/repo/config.js';
import { LocalFiles } from '../../src/repo/files.js';
import { readLuetRepository } from '../../src/repo/luet.js';
import { openRepositories } from '../../src/repo/open.js';
import { runOperation } from '../../src/install/operations.js';
import { listInstalled } from '../../src/upkeep/query.js';
import { failure } from '../install/helpers.js';
import { createCompressor, type Compression } from '../../src/util/compress.js';
import { tempDir } from '../support/layers.js';

async function tarOf(files: Record<string, string>): Promise<Buffer> {
  const p = tar.pack();
  for (const [name, text] of Object.entries(files)) p.entry({ name, mtime: new Date(0) }, text);
  p.finalize();
  return buffer(p);
}

async function compress(data: Buffer, c: Compression): Promise<Buffer> {
  return buffer(Readable.from([data]).pipe(createCompressor(c)));
}

const hex = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

let dir: string;
let artifactSum: string;

beforeAll(async () => {
  dir = await tempDir('cpm-luet-');
  const artifact = await compress(await tarOf({ 'usr/bin/hello': 'echo hello\n' }), 'zstd');
  artifactSum = hex(artifact);
  await fsp.writeFile(path.join(dir, 'hello-utils-1.0+1.package.tar.zst'), artifact);
  const treeTar = await compress(
    await tarOf({
      'utils/hello/definition.yaml':
        'name: hello\ncategory: utils\nversion: "1.0+1"\ndescription: says hello\nrequires:\n- name: base\n  category: system\n  version: ">=0"\nbuildtimestamp: "123"\nupstream: 2\n',
      'utils/hello/finalize.yaml': 'install:\n- echo done\n',
      'system/collection.yaml':
        'packages:\n- name: base\n  category: system\n  version: "2"\n- name: base\n  category: system\n  version: "1"\n  hidden: true\n',
    }),
    'gzip',
  );
  const meta = await tarOf({
    'repository.meta.yaml': [
      'artifacts:',
      '- path: /build/output/hello-utils-1.0+1.package.tar.zst',
      '  compressiontype: zstd',
      `  checksums:\n    sha256: ${artifactSum}`,
      '  compilationspec:',
      '    package: {name: hello, category: utils, version: "1.0+1"}',
      '  files: [usr/bin/hello]',
    ].join('\n'),
  });
  await fsp.writeFile(path.join(dir, 'tree.tar.gz'), treeTar);
  await fsp.writeFile(path.join(dir, 'repository.meta.yaml.tar'), meta);
  await fsp.writeFile(
    path.join(dir, 'repository.yaml'),
    [
      'name: legacy',
      'description: a luet repo',
      'type: disk',
      'revision: 7',
      'last_update: "1600000000"',
      'repo_files:',
      `  tree: {filename: tree.tar.gz, compressiontype: gzip, checksums: {sha256: ${hex(treeTar)}}}`,
      `  meta: {filename: repository.meta.yaml.tar, compressiontype: none, checksums: {sha256: ${hex(meta)}}}`,
    ].join('\n'),
  );
});

afterAll(async () => {
  await fsp.rm(dir, { recursive: true, force: true });
});

describe('luet repositories (read-only)', () => {
  it('converts tree, finalize and artifacts into a cpm index', async () => {
    const index = await readLuetRepository(new LocalFiles(dir));
    expect(index.repository).toEqual({
      name: 'legacy',
      description: 'a luet repo',
      revision: 7,
      timestamp: 1600000000,
    });
    const ids = index.packages.map((p) => `${p.category}/${p.name}@${p.version}`).sort();
    expect(ids).toEqual(['system/base@1', 'system/base@2', 'utils/hello@1.0+1']);
    const hello = index.packages.find((p) => p.name === 'hello')!;
    expect(hello.requires).toEqual([{ category: 'system', name: 'base', version: '>=0' }]);
    expect(hello.finalize).toEqual({ install: ['echo done'] });
    expect(hello.extra).toEqual({ upstream: 2 }); // luet's build bookkeeping is dropped
    expect(hello.artifact).toEqual({
      file: 'hello-utils-1.0+1.package.tar.zst',
      digest: `sha256:${artifactSum}`,
      mediaType: 'application/vnd.oci.image.layer.v1.tar+zstd',
    });
    expect(index.packages.find((p) => p.version === '1')!.hidden).toBe(true);
  });

  it('serves packages through openRepositories with verified artifact streams', async () => {
    const cfg = { ...defaultConfig(), cache_dir: path.join(dir, '.cache') };
    const opened = await openRepositories(cfg, {
      repos: [parseRepoEntry({ name: 'old', type: 'luet', urls: [dir] }, 'test')],
    });
    try {
      expect(opened.universe.versions('system/base').map((p) => p.version)).toEqual(['2', '1']);
      const loc = await opened.locate('utils/hello@1.0+1');
      expect(loc.layers).toEqual([
        {
          digest: `sha256:${artifactSum}`,
          mediaType: 'application/vnd.oci.image.layer.v1.tar+zstd',
          size: expect.any(Number),
        },
      ]);
      expect(loc.imageRef).toBe(path.join(dir, 'hello-utils-1.0+1.package.tar.zst'));
      const data = await buffer(await loc.openLayer(`sha256:${artifactSum}`));
      expect(hex(data)).toBe(artifactSum);
      expect((await opened.locate('system/base@2')).layers).toEqual([]);
    } finally {
      await opened.close();
    }
    // Second open comes from the cache written by the first.
    await fsp.access(path.join(cfg.cache_dir, 'repos', 'old', 'state.json'));
  });

  it('rejects a tree whose checksum does not match repository.yaml', async () => {
    const file = path.join(dir, 'tree.tar.gz');
    const good = await fsp.readFile(file);
    await fsp.writeFile(file, Buffer.concat([good, Buffer.from([0])]));
    try {
      await expect(readLuetRepository(new LocalFiles(dir))).rejects.toMatchObject({
        code: 'E_DIGEST',
      });
    } finally {
      await fsp.writeFile(file, good);
    }
  });

  it('installs an artifact on disk read once by the extractor; a damaged or linked-out one installs nothing', async () => {
    const work = await tempDir('cpm-luet-install-');
    const install = async (repo: string) => {
      const cfg = {
        ...defaultConfig(),
        cache_dir: path.join(work, 'cache'),
        repos_confdir: [path.join(repo, '..', 'conf')],
      };
      await fsp.mkdir(cfg.repos_confdir[0]!, { recursive: true });
      writeFileSync(
        path.join(cfg.repos_confdir[0]!, 'legacy.yaml'),
        `name: legacy\ntype: luet\nurls: [${repo}]\n`,
      );
      const root = path.join(repo, '..', 'root');
      const run = runOperation(
        {
          root,
          dbDir: path.join(root, 'var/lib/cpm'),
          config: cfg,
          source: { kind: 'configured' },
        },
        'install',
        ['utils/hello'],
        { noFinalizers: true },
      );
      return { root, run };
    };
    const copy = (name: string): { repo: string; artifact: string } => {
      const repo = path.join(work, name, 'repo');
      cpSync(dir, repo, { recursive: true });
      return { repo, artifact: path.join(repo, 'hello-utils-1.0+1.package.tar.zst') };
    };
    try {
      const good = copy('good');
      const ok = await install(good.repo);
      await ok.run;
      expect(readFileSync(path.join(ok.root, 'usr/bin/hello'), 'utf8')).toBe('echo hello\n');

      const damaged = copy('damaged');
      const b = readFileSync(damaged.artifact);
      b[b.length - 5] = b[b.length - 5]! ^ 0x40;
      writeFileSync(damaged.artifact, b);
      const d = await install(damaged.repo);
      const e = await failure(d.run);
      expect(e.code).toBe('E_DIGEST');
      expect(e.message).toContain(`repository legacy, ${damaged.artifact}`);
      expect(e.message).toContain(`expected sha256:${artifactSum}`);
      expect(listInstalled({ root: d.root })).toEqual([]);
      await expect(fsp.access(path.join(d.root, 'usr'))).rejects.toThrow();

      const linked = copy('linked');
      const outside = path.join(work, 'linked', 'artifact');
      renameSync(linked.artifact, outside);
      symlinkSync(outside, linked.artifact);
      const l = await install(linked.repo);
      const f = await failure(l.run);
      expect(f.code).toBe('E_REPO');
      expect(f.message).toContain(`${linked.artifact} leads out of the repository`);
      // refused when its size is looked up, before the root is touched
      await expect(fsp.access(l.root)).rejects.toThrow();
    } finally {
      await fsp.rm(work, { recursive: true, force: true });
    }
  });
});
