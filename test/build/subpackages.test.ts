/**
 * `cpm build` with luet's `subpackages:`, `retrieve:` and `build_options:` on the tiny real root
 * (the host's /bin/sh and a few coreutils) in the real test registry: subpackages cut from their
 * parent's single build and installed with `cpm install`; retrieve from a 127.0.0.1 HTTP server
 * and from a file of the tree; rebuilds into a fresh output give identical digests; a change of
 * the parent rebuilds its subpackages. Needs bwrap (as .ci/run provides).
 */
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { build, type BuildResult } from '../../src/build/build.js';
import { clearContextCache } from '../../src/build/hash.js';
import { buildWorld, writeFiles } from './fixtures.js';

const w = buildWorld('cpm-build-sub-', 'base/t');
const { cpm, opts } = w;
let http: Server;
let httpUrl: string;
let served = 'served over http\n';
let hits = 0;

function outcomes(r: BuildResult): Record<string, string> {
  return Object.fromEntries(r.packages.map((p) => [p.id, p.outcome]));
}

function treeFiles(ref: string, url: string): Record<string, string> {
  const def = (cat: string, name: string): string =>
    `category: ${cat}\nname: ${name}\nversion: "1.0"\n`;
  return {
    'split/tools/definition.yaml': def('split', 'tools'),
    'split/tools/build.yaml': [
      `image: ${ref}`,
      'steps:',
      '- mkdir -p /usr/share/tools/doc /usr/lib/tools /usr/bin',
      '- echo manual > /usr/share/tools/doc/manual.txt',
      '- echo lib > /usr/lib/tools/libtools.so && echo static > /usr/lib/tools/libtools.a',
      '- printf "#!/bin/sh\\necho tool\\n" > /usr/bin/tool && chmod 755 /usr/bin/tool',
      '- echo stray > /etc/stray',
      'excludes:',
      '- ^/etc',
      'subpackages:',
      '- name: tools-doc',
      '  category: split',
      '  version: "1.0"',
      '  requires:',
      '  - {category: split, name: tools-libs, version: ">=0"}',
      '  includes:',
      '  - ^/usr$',
      '  - ^/usr/share',
      '- name: tools-libs',
      '  category: split',
      '  version: "1.0"',
      '  includes:',
      '  - usr/lib/tools',
      '  excludes:',
      '  - \\.a$',
      '- name: tools-etc',
      '  category: split',
      '  version: "1.0"',
      '  includes:',
      '  - ^/etc',
      '',
    ].join('\n'),
    'split/pd/definition.yaml': def('split', 'pd'),
    'split/pd/build.yaml': [
      `image: ${ref}`,
      'package_dir: /out',
      'steps:',
      '- mkdir -p /out/a /out/b && echo a > /out/a/x && echo b > /out/b/y',
      'subpackages:',
      '- {name: pd-b, category: split, version: "2.0", includes: ["^/b"]}',
      '',
    ].join('\n'),
    'fetch/r/definition.yaml': def('fetch', 'r'),
    'fetch/r/build.yaml': [
      `image: ${ref}`,
      'retrieve:',
      `- ${url}/files/remote.txt`,
      '- ../../shared/*.dat',
      'build_options:',
      '  pullimagerepository: [example.org/cache]',
      'steps:',
      '- mkdir -p /usr/share/r',
      '- cat /luetbuild/remote.txt > /usr/share/r/remote',
      '- cat /luetbuild/one.dat /luetbuild/two.dat > /usr/share/r/local',
      '- ls -l /luetbuild/remote.txt > /tmp/l && read m rest < /tmp/l && echo $m > /usr/share/r/mode',
      '',
    ].join('\n'),
    'shared/one.dat': 'one\n',
    'shared/two.dat': 'two\n',
  };
}

beforeAll(async () => {
  http = createServer((req, res) => {
    hits++;
    if (req.url === '/files/remote.txt') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(served);
    } else {
      res.writeHead(404);
      res.end('no');
    }
  });
  await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
  httpUrl = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
  writeFiles(w.tree, treeFiles(w.baseRef, httpUrl));
});
afterAll(async () => {
  await new Promise((r) => http?.close(r));
});

describe('cpm build: subpackages, retrieve, build_options', () => {
  const out = (): string => `dir://${path.join(w.work, 'repo')}`;

  it('cuts subpackages from the parent build; each installs with cpm install', async () => {
    const lines: string[] = [];
    const r = await build(opts(out(), { log: (l) => lines.push(l) }));
    expect(r.failed, JSON.stringify(r.packages, null, 1)).toBe(0);
    expect(r.packages.map((p) => p.id)).toEqual([
      'fetch/r@1.0',
      'split/pd@1.0',
      'split/pd-b@2.0',
      'split/tools@1.0',
      'split/tools-doc@1.0',
      'split/tools-etc@1.0',
      'split/tools-libs@1.0',
    ]);
    expect(Object.values(outcomes(r)).every((o) => o === 'built')).toBe(true);
    expect(r.repo!.index.packages).toHaveLength(7);
    if (process.getuid?.() === 0) {
      // As root the plain-delta packages are built on overlays (kernel permitting): say which.
      const log = readFileSync(
        path.join(w.work, 'repo', 'build-logs', 'split_tools_1.0.log'),
        'utf8',
      );
      const overlay = !lines.some((l) => l.includes('no overlay'));
      expect(log.includes('build root (image, overlay) ready'), lines.join('\n')).toBe(overlay);
      // package_dir too: the merged tree is walked, files linked from their layer
      const pd = readFileSync(path.join(w.work, 'repo', 'build-logs', 'split_pd_1.0.log'), 'utf8');
      expect(pd.includes('build root (image, overlay) ready')).toBe(overlay);
    }
    // build_options is named with its file and line
    expect(r.warnings).toHaveLength(1);
    expect(r.warnings[0]).toMatch(/fetch\/r\/build\.yaml \(rendered\):5: build_options: ignored/);

    const root = path.join(w.work, 'root-subs');
    const rd = await w.install(out(), root, 'split/tools-doc', 'split/pd-b');
    expect(rd('usr/share/tools/doc/manual.txt')).toBe('manual\n');
    // tools-libs came as tools-doc's runtime requirement: without the excluded static library
    expect(rd('usr/lib/tools/libtools.so')).toBe('lib\n');
    expect(existsSync(path.join(root, 'usr/lib/tools/libtools.a'))).toBe(false);
    expect(existsSync(path.join(root, 'usr/bin/tool'))).toBe(false);
    // the parent's own excludes apply first: nothing of /etc reaches a subpackage
    expect(existsSync(path.join(root, 'etc/stray'))).toBe(false);
    // package_dir: the subpackage filter sees the paths inside the package
    expect(rd('b/y')).toBe('b\n');
    expect(existsSync(path.join(root, 'a'))).toBe(false);
    const list = await cpm('list', '--installed', '--root', root, '--json');
    expect(list.code, list.err).toBe(0);
    const ids = (JSON.parse(list.out) as { packages: Array<{ id: string }> }).packages
      .map((p) => p.id)
      .sort();
    expect(ids).toEqual(['split/pd-b@2.0', 'split/tools-doc@1.0', 'split/tools-libs@1.0']);
    const v = await cpm('verify', '--root', root);
    expect(v.code, v.out + v.err).toBe(0);

    // The parent keeps every file of its build (luet's subpackages overlap it).
    const root2 = path.join(w.work, 'root-parent');
    const rd2 = await w.install(out(), root2, 'split/tools', 'fetch/r');
    expect(rd2('usr/share/tools/doc/manual.txt')).toBe('manual\n');
    expect(rd2('usr/lib/tools/libtools.a')).toBe('static\n');
    expect(statSync(path.join(root2, 'usr/bin/tool')).mode & 0o777).toBe(0o755);
    // retrieve: the URL's file (mode 0600, as docker ADD) and the tree's files, in /luetbuild only
    expect(rd2('usr/share/r/remote')).toBe('served over http\n');
    expect(rd2('usr/share/r/local')).toBe('one\ntwo\n');
    expect(rd2('usr/share/r/mode')).toBe('-rw-------\n');
    expect(existsSync(path.join(root2, 'luetbuild'))).toBe(false);
  });

  it('rebuilds reproducibly; a parent change rebuilds its subpackages; retrieves are hashed', async () => {
    const first = await build(opts(out()));
    expect(Object.values(outcomes(first)).every((o) => o === 'up-to-date')).toBe(true);
    const digests = new Map(
      first.repo!.index.packages.map((p) => [p.name, p.image?.manifestDigest]),
    );

    // The first build used overlays (run as root); this one copies and walks: same images.
    const again = await build(
      opts(`dir://${path.join(w.work, 'repo2')}`, {
        cacheDir: path.join(w.work, 'cache2'),
        delta: 'walk',
      }),
    );
    expect(Object.values(outcomes(again)).every((o) => o === 'built')).toBe(true);
    for (const p of again.repo!.index.packages)
      expect(p.image?.manifestDigest, p.name).toBe(digests.get(p.name));

    // The remote file is not part of the hash (as in luet): a change behind the URL is not seen.
    served = 'changed behind the url\n';
    const hitsBefore = hits;
    const same = await build(opts(out()));
    expect(outcomes(same)['fetch/r@1.0']).toBe('up-to-date');
    expect(hits).toBe(hitsBefore);
    // A local retrieved file is: only its package rebuilds, and fetches the URL again.
    writeFileSync(path.join(w.tree, 'shared/two.dat'), 'TWO\n');
    const dry = await build(opts(out(), { dryRun: true }));
    const plan = Object.fromEntries(dry.packages.map((p) => [p.id, p]));
    expect(plan['fetch/r@1.0']!.reason).toMatch(/retrieved files changed/);
    expect(plan['split/tools@1.0']!.outcome).toBe('up-to-date');
    const changed = await build(opts(out()));
    expect(outcomes(changed)['fetch/r@1.0']).toBe('built');
    expect(hits).toBe(hitsBefore + 1);

    // A change of the parent's context rebuilds the parent and every subpackage.
    writeFileSync(path.join(w.tree, 'split/tools/note.txt'), 'new context file\n');
    clearContextCache();
    const dry2 = await build(opts(out(), { dryRun: true }));
    const plan2 = Object.fromEntries(dry2.packages.map((p) => [p.id, p]));
    expect(plan2['split/tools-doc@1.0']!.outcome).toBe('would-build');
    expect(plan2['split/tools-doc@1.0']!.reason).toBe('cut from the build of split/tools@1.0');
    expect(plan2['split/pd-b@2.0']!.outcome).toBe('up-to-date');
    const sub = await build(opts(out()));
    expect(outcomes(sub)).toMatchObject({
      'split/tools@1.0': 'built',
      'split/tools-doc@1.0': 'built',
      'split/tools-libs@1.0': 'built',
      'split/tools-etc@1.0': 'built',
      'split/pd@1.0': 'up-to-date',
      'split/pd-b@2.0': 'up-to-date',
    });
    // Same files: the subpackage images are the same as before.
    const idx = new Map(sub.repo!.index.packages.map((p) => [p.name, p.image?.manifestDigest]));
    expect(idx.get('tools-doc')).toBe(digests.get('tools-doc'));
  });

  it('a retrieve that fails names the package and the URL; the rest is built', async () => {
    writeFiles(w.tree, {
      'fetch/bad/definition.yaml': 'category: fetch\nname: bad\nversion: "1"\n',
      'fetch/bad/build.yaml': `image: ${w.reg.host}/base/t:1\nretrieve:\n- ${httpUrl}/missing.txt\nsteps:\n- echo x > /x\n`,
      'fetch/out/definition.yaml': 'category: fetch\nname: out\nversion: "1"\n',
      'fetch/out/build.yaml': `image: ${w.reg.host}/base/t:1\nretrieve:\n- ../../../cpm.yaml\nsteps:\n- echo x > /x\n`,
      'fetch/none/definition.yaml': 'category: fetch\nname: none\nversion: "1"\n',
      'fetch/none/build.yaml': `image: ${w.reg.host}/base/t:1\nretrieve:\n- nothing-*.txt\nsteps:\n- echo x > /x\n`,
    });
    clearContextCache();
    const r = await build(
      opts(`dir://${path.join(w.work, 'repo-bad')}`, {
        packages: ['fetch/bad', 'fetch/none', 'fetch/out', 'split/pd'],
      }),
    );
    const by = Object.fromEntries(r.packages.map((p) => [p.id, p]));
    expect(by['fetch/bad@1']!.outcome).toBe('failed');
    expect(by['fetch/bad@1']!.error).toBe(`fetch/bad@1: retrieve ${httpUrl}/missing.txt: HTTP 404`);
    expect(by['fetch/none@1']!.outcome).toBe('failed');
    expect(by['fetch/none@1']!.error).toBe('fetch/none@1: retrieve nothing-*.txt matches nothing');
    expect(by['fetch/out@1']!.outcome).toBe('failed');
    expect(by['fetch/out@1']!.error).toMatch(
      /^fetch\/out@1: retrieve \.\.\/\.\.\/\.\.\/cpm\.yaml: .* is outside the tree/,
    );
    expect(by['split/pd@1.0']!.outcome).not.toBe('failed');
    expect(by['split/pd-b@2.0']!.outcome).not.toBe('failed');
  });
});
