import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  addRepoConfig,
  loadRepoConfigs,
  parseRepoEntry,
  parseRepoFile,
  removeRepoConfig,
} from '../../src/repo/config.js';
import { tempDir } from '../support/layers.js';

let dir: string;
beforeEach(async () => {
  dir = await tempDir('cpm-repo-conf-');
});
afterEach(async () => {
  await fsp.rm(dir, { recursive: true, force: true });
});

describe('repos.conf.d', () => {
  it('parses entries with defaults and luet spellings', async () => {
    const [a, b] = await parseRepoFile(
      '- name: main\n  type: oci\n  urls: [oci://127.0.0.1:5000/cpm]\n- name: old\n  type: luet\n  url: /srv/luet\n  enable: false\n  priority: 1\n',
      'f.yaml',
    );
    expect(a).toMatchObject({ name: 'main', priority: 99, enabled: true, verify: true, line: 1 });
    expect(b).toMatchObject({
      name: 'old',
      urls: ['/srv/luet'],
      enabled: false,
      priority: 1,
      line: 4,
    });
  });

  it('reports broken entries with file:line instead of skipping them', async () => {
    await fsp.writeFile(path.join(dir, 'a.yaml'), 'name: ok\ntype: dir\nurls: [/x]\n');
    await fsp.writeFile(path.join(dir, 'b.yaml'), 'name: bad\ntype: ftp\nurls: [/x]\n');
    await fsp.writeFile(path.join(dir, 'c.yml'), 'name: [\n');
    await fsp.writeFile(path.join(dir, 'd.yaml'), 'name: ok\ntype: dir\nurls: [/y]\n');
    await fsp.writeFile(path.join(dir, 'ignored.txt'), 'nope');
    const { repos, problems } = await loadRepoConfigs([dir, path.join(dir, 'missing')]);
    expect(repos.map((r) => r.name)).toEqual(['ok']);
    const msgs = problems.map((p) => p.message);
    expect(msgs[0]).toMatch(/b\.yaml:1: "type" must be one of dir, oci, http, luet/);
    expect(msgs[1]).toMatch(/c\.yml/);
    expect(msgs[2]).toMatch(/d\.yaml:1: repository "ok" is already defined in .*a\.yaml:1/);
  });

  it('validates fields', () => {
    expect(() => parseRepoEntry({ name: 'x', type: 'dir', urls: [] }, 'w')).toThrow(
      /w: "urls" must be a non-empty list/,
    );
    expect(() => parseRepoEntry({ name: 'x y', type: 'dir', urls: ['/'] }, 'w')).toThrow(/"name"/);
    expect(() =>
      parseRepoEntry({ name: 'x', type: 'dir', urls: ['/'], priority: 'high' }, 'w'),
    ).toThrow(/priority/);
  });

  it('add writes NAME.yaml, refuses duplicates; remove deletes or rewrites', async () => {
    const conf = path.join(dir, 'repos.conf.d');
    const file = await addRepoConfig(
      [conf],
      parseRepoEntry(
        { name: 'r1', type: 'oci', urls: ['oci://h:1/ns'], auth: 'h:1', verify: false },
        't',
      ),
    );
    expect(await fsp.readFile(file, 'utf8')).toBe(
      'name: r1\ntype: oci\nurls:\n  - oci://h:1/ns\npriority: 99\nenabled: true\nauth: h:1\nverify: false\n',
    );
    await expect(
      addRepoConfig([conf], parseRepoEntry({ name: 'r1', type: 'dir', urls: ['/'] }, 't')),
    ).rejects.toThrow(/already exists/);
    await fsp.writeFile(
      path.join(conf, 'multi.yaml'),
      '- name: m1\n  type: dir\n  urls: [/a]\n- name: m2\n  type: dir\n  urls: [/b]\n',
    );
    await removeRepoConfig([conf], 'm1');
    expect((await loadRepoConfigs([conf])).repos.map((r) => r.name)).toEqual(['m2', 'r1']);
    await removeRepoConfig([conf], 'r1');
    await expect(fsp.access(file)).rejects.toThrow();
    await expect(removeRepoConfig([conf], 'r1')).rejects.toMatchObject({ code: 'E_NOT_FOUND' });
  });
});

describe('the project repositories/ examples', () => {
  it('load without problems; local paths resolve relative to the file', async () => {
    const project = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
    const { repos, problems } = await loadRepoConfigs([path.join(project, 'repositories')]);
    expect(problems).toEqual([]);
    const local = repos.find((r) => r.name === 'local')!;
    expect(local).toMatchObject({
      type: 'dir',
      enabled: true,
      urls: [path.join(project, 'out/repo')],
    });
    expect(repos.find((r) => r.name === 'registry')).toMatchObject({ type: 'oci', enabled: false });
  });
});
