/**
 * repo create / update / search / info against a real CNCF distribution registry, a dir layout
 * served over http, and skopeo reading what cpm pushed.
 */
import { execFile } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { defaultConfig, type CpmConfig } from '../../src/config.js';
import { addRepoConfig, parseRepoEntry } from '../../src/repo/config.js';
import { createFromTree } from '../../src/repo/create.js';
import { openRepositories } from '../../src/repo/open.js';
import { info, search } from '../../src/repo/query.js';
import { LayoutReader } from '../../src/repo/reader.js';
import { RegistryTarget } from '../../src/repo/targets.js';
import { updateRepositories } from '../../src/repo/update.js';
import { sha256 } from '../../src/oci/digest.js';
import { tempDir, writeTree } from '../support/layers.js';
import { startRegistry, type RegistryInstance } from '../support/registry.js';
import { serveFiles } from '../support/static-files.js';

const run = promisify(execFile);

let reg: RegistryInstance;
let dir: string;
let tree: string;
let cfg: CpmConfig;
let server: http.Server;
let httpBase: string;

const EPOCH = 1700000000;

async function writePackagesTree(root: string): Promise<void> {
  await writeTree(root, {
    'system/a/1.0+1/definition.yaml':
      'name: a\ncategory: system\nversion: "1.0+1"\ndescription: the a package\nrequires:\n  - category: system\n    name: b\n    version: ">=1.0"\n',
    'system/a/1.0+1/finalize.yaml': 'install:\n  - echo installed a\n',
    'system/a/1.0+1/root/usr/bin/a': { content: '#!/bin/sh\necho a\n', mode: 0o755 },
    'system/a/1.0-1/definition.yaml': 'name: a\ncategory: system\nversion: "1.0-1"\n',
    'system/a/1.0-1/root/etc/a.conf': 'old\n',
    'system/b/1.0/definition.yaml':
      'name: b\ncategory: system\nversion: "1.0"\nlabels:\n  topic: storage\n',
    'system/b/1.0/root/etc/b.conf': 'b=1\n',
    'meta/all/1/definition.yaml':
      'name: all\ncategory: meta\nversion: "1"\ndescription: everything\nrequires:\n  - category: system\n    name: a\n',
  });
}

beforeAll(async () => {
  reg = await startRegistry();
  dir = await tempDir('cpm-repo-reg-');
  tree = path.join(dir, 'tree');
  await writePackagesTree(tree);
  cfg = {
    ...defaultConfig(),
    cache_dir: path.join(dir, 'cache'),
    repos_confdir: [path.join(dir, 'repos.conf.d')],
  };
  // A static file server over a dir repository: the `http` repository type.
  server = http.createServer(serveFiles(path.join(dir, 'static')));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  httpBase = `http://127.0.0.1:${(server.address() as AddressInfo).port}/repo/`;
}, 60_000);

afterAll(async () => {
  await reg?.stop();
  await new Promise((r) => server?.close(r));
  if (dir) await fsp.rm(dir, { recursive: true, force: true });
});

describe('repo create → oci:// (real registry)', () => {
  const out = (): string => `oci://${reg.host}/cpm/main`;

  it('without --push packs but uploads nothing', async () => {
    const r = await createFromTree(tree, {
      output: out(),
      sourceDateEpoch: EPOCH,
      cacheDir: cfg.cache_dir,
    });
    expect(r.pushed).toBe(false);
    expect(r.uploads).toEqual([]);
    expect(r.packed).toHaveLength(3);
    await expect(
      run('skopeo', ['inspect', '--tls-verify=false', `docker://${reg.host}/cpm/main:cpm-index`]),
    ).rejects.toThrow();
  });

  it('pushes images and the index artifact; skopeo reads them', async () => {
    const r = await createFromTree(tree, {
      output: out(),
      push: true,
      sourceDateEpoch: EPOCH,
      cacheDir: cfg.cache_dir,
    });
    expect(r.packed).toEqual(['system/a@1.0+1', 'system/a@1.0-1', 'system/b@1.0']);
    expect(r.metaOnly).toEqual(['meta/all@1']);
    // 3 images × (config + layer + manifest) + index (config + blob + manifest).
    expect(r.uploads.length).toBe(12);

    const { stdout } = await run('skopeo', [
      'inspect',
      '--tls-verify=false',
      `docker://${reg.host}/cpm/main/system/a:1.0_p1`,
    ]);
    const img = JSON.parse(stdout) as { Labels: Record<string, string>; Digest: string };
    expect(img.Labels['io.cpm.package.version']).toBe('1.0+1');
    const a = r.index.packages.find((p) => p.version === '1.0+1')!;
    expect(img.Digest).toBe(a.image!.manifestDigest);
    // The luet-colliding version lives under its own tag.
    const other = await run('skopeo', [
      'inspect',
      '--tls-verify=false',
      `docker://${reg.host}/cpm/main/system/a:1.0-1`,
    ]);
    expect(
      (JSON.parse(other.stdout) as { Labels: Record<string, string> }).Labels[
        'io.cpm.package.version'
      ],
    ).toBe('1.0-1');

    const raw = await run('skopeo', [
      'inspect',
      '--raw',
      '--tls-verify=false',
      `docker://${reg.host}/cpm/main:cpm-index`,
    ]);
    const man = JSON.parse(raw.stdout) as {
      artifactType: string;
      layers: Array<{ data?: string; digest: string }>;
    };
    expect(man.artifactType).toBe('application/vnd.cpm.repository.index.v1');
    expect(man.layers[0]!.digest).toBe(r.indexDigest);
    expect(sha256(Buffer.from(man.layers[0]!.data!, 'base64'))).toBe(r.indexDigest);
  });

  it('is incremental: a second run packs and pushes nothing; a change re-pushes one package', async () => {
    const again = await createFromTree(tree, {
      output: out(),
      push: true,
      sourceDateEpoch: EPOCH,
      cacheDir: cfg.cache_dir,
    });
    expect(again.packed).toEqual([]);
    expect(again.uploads).toEqual([]);
    expect(again.changed).toBe(false);

    await fsp.writeFile(path.join(tree, 'system/b/1.0/root/etc/b.conf'), 'b=2\n');
    const changed = await createFromTree(tree, {
      output: out(),
      push: true,
      sourceDateEpoch: EPOCH,
      cacheDir: cfg.cache_dir,
    });
    expect(changed.packed).toEqual(['system/b@1.0']);
    expect(changed.reused).toEqual(['system/a@1.0+1', 'system/a@1.0-1']);
    expect(changed.index.repository.revision).toBe(2);
    // b's layer, config (new diff_id) and manifest, then the index blob and manifest.
    expect(changed.uploads.length).toBe(5);
  });

  it('writes the same images to dir:// as to oci:// (one format, two places)', async () => {
    const r = await createFromTree(tree, {
      output: `dir://${dir}/static/repo`,
      sourceDateEpoch: EPOCH,
    });
    const viaReg = await openRepositories(cfg, {
      repos: [parseRepoEntry({ name: 'reg-once', type: 'oci', urls: [out()] }, 'test')],
      refresh: true,
    });
    for (const p of r.index.packages) {
      const other = viaReg.universe.offer(`${p.category}/${p.name}@${p.version}`)!.entry;
      expect(other.image?.manifestDigest).toBe(p.image?.manifestDigest);
    }
    await viaReg.close();
  });
});

describe('repo create → oci:// with another writer', () => {
  it('starts over from the index another run published meanwhile (no lost revision)', async () => {
    const out = `oci://${reg.host}/cpm/race`;
    const other = path.join(dir, 'tree-race');
    await writePackagesTree(other);
    await fsp.writeFile(path.join(other, 'system/b/1.0/root/etc/b.conf'), 'b=other\n');
    const original = RegistryTarget.prototype.previousIndex;
    let raced = false;
    const spy = vi
      .spyOn(RegistryTarget.prototype, 'previousIndex')
      .mockImplementation(async function (this: RegistryTarget) {
        const prev = await original.call(this);
        if (!raced) {
          raced = true; // the other writer publishes between this run's read and its write
          await createFromTree(other, { output: out, push: true, sourceDateEpoch: EPOCH });
        }
        return prev;
      });
    const logs: string[] = [];
    try {
      const r = await createFromTree(tree, {
        output: out,
        push: true,
        sourceDateEpoch: EPOCH,
        log: (m) => logs.push(m),
      });
      expect(logs.some((m) => m.includes('the index changed while this run was writing it'))).toBe(
        true,
      );
      // Started over from the other run's index (revision 1): this one is revision 2.
      expect(r.index.repository.revision).toBe(2);
      expect(spy).toHaveBeenCalledTimes(3);
    } finally {
      spy.mockRestore();
    }
  });
});

describe('configured repositories: update, search, info, locate', () => {
  beforeAll(async () => {
    await addRepoConfig(
      cfg.repos_confdir,
      parseRepoEntry(
        { name: 'reg', type: 'oci', urls: [`oci://${reg.host}/cpm/main`], priority: 10 },
        't',
      ),
    );
    await addRepoConfig(
      cfg.repos_confdir,
      parseRepoEntry({ name: 'web', type: 'http', urls: [httpBase], priority: 20 }, 't'),
    );
    await addRepoConfig(
      cfg.repos_confdir,
      parseRepoEntry(
        { name: 'broken', type: 'oci', urls: [`oci://${reg.host}/nothing/here`], priority: 5 },
        't',
      ),
    );
  });

  it('update fetches into the cache, reports unchanged/stale, and surfaces per-repo errors', async () => {
    const now = (EPOCH + 3600) * 1000;
    const first = await updateRepositories(cfg, { now });
    const by = (n: string) => first.results.find((r) => r.name === n)!;
    expect(by('reg')).toMatchObject({ status: 'new', revision: 2, packages: 4, stale: false });
    expect(by('web')).toMatchObject({ status: 'new', packages: 4 });
    expect(by('broken').status).toBe('error');
    expect(by('broken').error!.message).toMatch(/not a cpm oci repository/);
    await fsp.access(path.join(cfg.cache_dir, 'repos', 'reg', 'index'));

    const second = await updateRepositories(cfg, {
      names: ['reg'],
      now: (EPOCH + 200 * 3600) * 1000,
      staleHours: 24,
    });
    expect(second.results).toHaveLength(1);
    expect(second.results[0]).toMatchObject({
      status: 'unchanged',
      stale: true,
      previousRevision: 2,
    });
    expect(second.results[0]!.staleReasons.join(' ')).toMatch(
      /built 200 h ago.*revision 2 unchanged/,
    );
  });

  it('openRepositories refuses a broken repository unless tolerant', async () => {
    await expect(openRepositories(cfg)).rejects.toThrow(/broken/);
    const opened = await openRepositories(cfg, { tolerant: true });
    expect(opened.problems.map((p) => p.message).join()).toMatch(/broken/);
    await opened.close();
  });

  it('search and info see both repositories; priority picks the registry copy', async () => {
    const opened = await openRepositories(cfg, { tolerant: true });
    try {
      const hits = search(opened.universe, 'storage');
      expect(hits.map((h) => `${h.id} ${h.repo}`)).toEqual(['system/b@1.0 reg']);
      expect(search(opened.universe, 'a').map((h) => h.id)).toContain('system/a@1.0+1');
      const i = info(opened.universe, 'system/a');
      expect(i.id).toBe('system/a@1.0+1');
      expect(i.repo).toBe('reg');
      expect(i.alsoIn).toEqual(['web']);
      expect(i.package.finalize).toMatchObject({ install: ['echo installed a'] });
      expect(info(opened.universe, 'system/a@<1.0+1').id).toBe('system/a@1.0-1');
      expect(() => info(opened.universe, 'system/zzz')).toThrow(/no package system\/zzz/);
      expect(opened.universe.versions('system/a').map((p) => p.version)).toEqual([
        '1.0+1',
        '1.0-1',
      ]);
    } finally {
      await opened.close();
    }
  });

  it('locate streams verified layers from the registry and from http', async () => {
    const opened = await openRepositories(cfg, { tolerant: true });
    try {
      const loc = await opened.locate('system/a@1.0+1');
      expect(loc.repo).toBe('reg');
      expect(loc.imageRef).toBe(`${reg.host}/cpm/main/system/a:1.0_p1`);
      expect(loc.layers).toHaveLength(1);
      const chunks: Buffer[] = [];
      for await (const c of await loc.openLayer(loc.layers[0]!.digest)) chunks.push(c as Buffer);
      expect(sha256(Buffer.concat(chunks))).toBe(loc.layers[0]!.digest);
      const meta = await opened.locate('meta/all@1');
      expect(meta.layers).toEqual([]);
      expect(meta.imageRef).toBeUndefined();
      await expect(opened.locate('system/a@9')).rejects.toThrow(/in none of the repositories/);
    } finally {
      await opened.close();
    }
    const web = new LayoutReader('http', httpBase);
    const { index } = await web.fetchIndex();
    const b = index.packages.find((p) => p.name === 'b')!;
    const chunks: Buffer[] = [];
    for await (const c of await web.openLayer(b, b.image!.layers[0]!)) chunks.push(c as Buffer);
    expect(sha256(Buffer.concat(chunks))).toBe(b.image!.layers[0]!.digest);
    await web.close();
  });

  it('a corrupted blob on the http server fails verification', async () => {
    const web = new LayoutReader('http', httpBase);
    const { index } = await web.fetchIndex();
    const b = index.packages.find((p) => p.name === 'b')!;
    const layer = b.image!.layers[0]!;
    const file = path.join(dir, 'static/repo/blobs/sha256', layer.digest.slice(7));
    const good = await fsp.readFile(file);
    const bad = Buffer.from(good);
    bad[bad.length - 1] = (bad[bad.length - 1] ?? 0) ^ 0xff;
    await fsp.writeFile(file, bad);
    try {
      const stream = await web.openLayer(b, layer);
      await expect(
        (async () => {
          for await (const _ of stream) void _;
        })(),
      ).rejects.toThrow(/expected sha256/);
    } finally {
      await fsp.writeFile(file, good);
      await web.close();
    }
  });
});
