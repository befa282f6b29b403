/** The repo commands through the CLI entry (main), on cpm's own packages-tree. */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { main } from '../../src/cli/main.js';
import { tempDir } from '../support/layers.js';

let dir: string;
let cfgFile: string;

async function cpm(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const o = vi.spyOn(process.stdout, 'write').mockImplementation((s) => ((out += String(s)), true));
  const e = vi.spyOn(process.stderr, 'write').mockImplementation((s) => ((err += String(s)), true));
  const saved = process.exitCode;
  process.exitCode = undefined;
  try {
    const code = await main(['--config', cfgFile, ...args]);
    return { code, out, err };
  } finally {
    o.mockRestore();
    e.mockRestore();
    process.exitCode = saved;
  }
}

beforeAll(async () => {
  dir = await tempDir('cpm-repo-cli-');
  cfgFile = path.join(dir, 'cpm.yaml');
  await fsp.writeFile(cfgFile, 'repos_confdir: [repos.conf.d]\ncache_dir: cache\n');
  // A small tree: the CLI path is what is tested here, the real tree is covered by the demo.
  const t = path.join(dir, 'tree/system/hello/1.0');
  await fsp.mkdir(path.join(t, 'root/etc'), { recursive: true });
  await fsp.writeFile(
    path.join(t, 'definition.yaml'),
    'name: hello\ncategory: system\nversion: "1.0"\ndescription: greets\n',
  );
  await fsp.writeFile(path.join(t, 'root/etc/hello'), 'hi\n');
});

afterAll(async () => {
  await fsp.rm(dir, { recursive: true, force: true });
});

describe('cpm repo … (CLI)', () => {
  it('create, add, list, search, info, update, remove', async () => {
    const repo = path.join(dir, 'repo');
    const c = await cpm(
      'repo',
      'create',
      '--tree',
      path.join(dir, 'tree'),
      '--output',
      `dir://${repo}`,
      '--json',
    );
    expect(c.code).toBe(0);
    expect(JSON.parse(c.out)).toMatchObject({
      packages: 1,
      packed: ['system/hello@1.0'],
      revision: 1,
    });

    expect((await cpm('repo', 'add', 'here', repo, '--priority', '5')).code).toBe(0);
    const list = await cpm('repo', 'list', '--json');
    expect(JSON.parse(list.out).repositories[0]).toMatchObject({
      name: 'here',
      type: 'dir',
      priority: 5,
    });

    const s = await cpm('search', 'greet', '--json');
    expect(JSON.parse(s.out).results).toEqual([
      expect.objectContaining({ id: 'system/hello@1.0', repo: 'here' }),
    ]);
    const i = await cpm('info', 'system/hello');
    expect(i.out).toMatch(/^system\/hello@1.0 {2}\[here\]/);
    expect(i.out).toMatch(/image: oci:.*:system_shello_c1.0/);
    const ij = await cpm('info', 'system/hello@1.0', '--json');
    expect(ij.code).toBe(0);
    const info = JSON.parse(ij.out) as {
      id: string;
      repo: string;
      versions: unknown[];
      package: { name: string; image: { manifestDigest: string } };
      imageRef: string;
      layers: Array<{ digest: string }>;
    };
    expect(info).toMatchObject({ id: 'system/hello@1.0', repo: 'here', alsoIn: [] });
    expect(info.versions).toEqual([{ version: '1.0', repo: 'here' }]);
    expect(info.package.image.manifestDigest).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(info.imageRef).toMatch(/^oci:.*:system_shello_c1.0$/);
    expect(info.layers).toHaveLength(1);

    const u = await cpm('repo', 'update', '--json');
    expect(u.code).toBe(0);
    expect(JSON.parse(u.out).results[0]).toMatchObject({
      name: 'here',
      status: 'new',
      revision: 1,
    });

    const missing = await cpm('info', 'system/nope');
    expect(missing.code).toBe(5);
    expect(missing.err).toMatch(/no package system\/nope/);

    expect((await cpm('repo', 'remove', 'here')).code).toBe(0);
    expect(JSON.parse((await cpm('repo', 'list', '--json')).out).repositories).toEqual([]);
  });

  it('search --repo works without any configuration; a bad URL is an error, not an empty result', async () => {
    const ok = await cpm('search', '', '--repo', path.join(dir, 'repo'), '--json');
    expect(JSON.parse(ok.out).results).toHaveLength(1);
    const bad = await cpm('search', 'x', '--repo', path.join(dir, 'nowhere'));
    expect(bad.code).toBe(7);
    expect(bad.err).toMatch(/repo-1.*no index.json/);
  });

  it('refuses a tree with problems, naming file:line', async () => {
    const broken = path.join(dir, 'broken/system/x/1');
    await fsp.mkdir(broken, { recursive: true });
    await fsp.writeFile(path.join(broken, 'definition.yaml'), 'name: x\nversion: [\n');
    const r = await cpm(
      'repo',
      'create',
      '--tree',
      path.join(dir, 'broken'),
      '--output',
      path.join(dir, 'o'),
    );
    expect(r.code).toBe(4);
    expect(r.err).toMatch(/definition\.yaml:\d+/);
  });
});
