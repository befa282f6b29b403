/**
 * `cpm build` end to end on a tiny real root (the host's /bin/sh, a few coreutils and their
 * libraries) pushed to the real test registry: image:, chained requires:, requires_final_images,
 * package_dir, unpack, includes/excludes, prelude vs steps, env, the build context; each package
 * installed with `cpm install` and checked; rebuilds are skipped by build hash and reproducible;
 * a failing step is reported with its exit code and output. Needs bwrap (as .ci/run provides).
 */
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { build } from '../../src/build/build.js';
import { clearContextCache } from '../../src/build/hash.js';
import { createFromTree } from '../../src/repo/create.js';
import { buildWorld, writeFiles } from './fixtures.js';

const w = buildWorld('cpm-build-', 'base/tools');
const { cpm, opts } = w;

function treeFiles(ref: string): Record<string, string> {
  const def = (cat: string, name: string, extra = ''): string =>
    `category: ${cat}\nname: ${name}\nversion: "1.0"\n${extra}`;
  return {
    'base/tools/definition.yaml': def('base', 'tools'),
    'base/tools/build.yaml': `image: ${ref}\nsteps:\n- mkdir -p /usr/share/tools && echo tools > /usr/share/tools/VERSION\n`,
    'base/shell/definition.yaml': def('base', 'shell'),
    'base/shell/build.yaml': `image: ${ref}\nunpack: true\nexcludes:\n- ^/luetbuild\n- ^/etc/resolv.conf$\n`,
    'apps/hello/definition.yaml': def('apps', 'hello', 'greeting_word: "{{ .Values.word }}"\n'),
    'apps/hello/build.yaml': [
      'requires:',
      '- category: base',
      '  name: tools',
      '  version: ">=0"',
      'env:',
      '- MYVAR={{ .Values.name }}-var',
      'prelude:',
      '- mkdir -p /opt/prelude && echo p > /opt/prelude/x',
      'steps:',
      '- mkdir -p /usr/share/hello',
      '- cat greeting.txt > /usr/share/hello/greeting',
      '- echo "$PACKAGE_CATEGORY/$PACKAGE_NAME $MYVAR $(cat /usr/share/tools/VERSION)" > /usr/share/hello/env',
      '- cat /opt/prelude/x > /usr/share/hello/from-prelude',
      '',
    ].join('\n'),
    'apps/hello/greeting.txt': 'hello from the context\n',
    'apps/pkgdir/definition.yaml': def('apps', 'pkgdir'),
    'apps/pkgdir/build.yaml': `image: ${ref}\npackage_dir: /out\nsteps:\n- mkdir -p /out/etc/pd && echo v > /out/etc/pd/conf\n`,
    'apps/unpacked/definition.yaml': def('apps', 'unpacked'),
    'apps/unpacked/build.yaml': `image: ${ref}\nunpack: true\nincludes:\n- ^/usr$\n- ^/usr/bin$\n- ^/usr/bin/sh$\n`,
    'apps/filtered/definition.yaml': def('apps', 'filtered'),
    'apps/filtered/build.yaml': [
      `image: ${ref}`,
      'steps:',
      '- mkdir -p /usr/share/f && echo a > /usr/share/f/a.txt && echo b > /usr/share/f/b.log',
      '- echo stray > /etc/stray',
      'includes:',
      '- ^/usr$',
      '- ^/usr/share$',
      '- ^/usr/share/f',
      'excludes:',
      '- \\.log$',
      '',
    ].join('\n'),
    'apps/copier/definition.yaml': def('apps', 'copier'),
    'apps/copier/build.yaml': [
      `image: ${ref}`,
      'copy:',
      '- package: {category: apps, name: pkgdir, version: ">=0"}',
      '  source: /out/etc/pd',
      '  destination: /usr/share/copied/',
      `- image: ${ref}`,
      '  source: /etc/os-release',
      '  destination: /usr/share/copied/os-release',
      'steps:',
      '- mkdir -p /usr/share/copier && cp /usr/share/copied/conf /usr/share/copied/os-release /usr/share/copier/',
      '- cat /proc/net/dev > /usr/share/copier/netdev',
      '- export -p > /usr/share/copier/env',
      '',
    ].join('\n'),
    'apps/final/definition.yaml': def('apps', 'final'),
    'apps/final/build.yaml': [
      'requires_final_images: true',
      'requires:',
      '- category: apps',
      '  name: hello',
      '- category: base',
      '  name: shell',
      'steps:',
      '- cat /usr/share/hello/greeting > /usr/share/final-saw',
      '',
    ].join('\n'),
  };
}

beforeAll(() => {
  writeFiles(w.tree, treeFiles(w.baseRef));
  writeFileSync(path.join(w.work, 'values.yaml'), 'word: hi\nname: cli\n');
});

describe('cpm build (host tools root)', () => {
  const out = (): string => `dir://${path.join(w.work, 'repo')}`;

  it('builds every kind of package and each installs with cpm install', async () => {
    const r = await build(opts(out(), { values: [path.join(w.work, 'values.yaml')] }));
    expect(r.failed, JSON.stringify(r.packages, null, 1)).toBe(0);
    expect(r.packages.map((p) => p.id)).toEqual([
      'apps/pkgdir@1.0',
      'apps/copier@1.0',
      'apps/filtered@1.0',
      'base/tools@1.0',
      'apps/hello@1.0',
      'base/shell@1.0',
      'apps/final@1.0',
      'apps/unpacked@1.0',
    ]);
    expect(r.packages.every((p) => p.outcome === 'built')).toBe(true);
    expect(r.repo!.index.packages).toHaveLength(8);
    // As root on a kernel that allows it, roots are overlays (docs/build.md); a root others
    // chain on is then copied out of the overlay into the cache.
    const logOf = (id: string): string =>
      readFileSync(path.join(w.work, 'repo', 'build-logs', `${id}.log`), 'utf8');
    if (logOf('apps_hello_1.0').includes('build root (chain, overlay) ready'))
      expect(logOf('base_tools_1.0')).toContain('result root kept (copied from the overlay)');

    const root = path.join(w.work, 'root-a');
    const rd = await w.install(
      out(),
      root,
      'apps/hello',
      'apps/pkgdir',
      'apps/filtered',
      'apps/final',
      'apps/copier',
    );
    expect(rd('usr/share/hello/greeting')).toBe('hello from the context\n');
    expect(rd('usr/share/hello/env')).toBe('apps/hello cli-var tools\n');
    expect(rd('usr/share/hello/from-prelude')).toBe('p\n');
    expect(existsSync(path.join(root, 'opt/prelude'))).toBe(false); // prelude is not the package's
    expect(existsSync(path.join(root, 'usr/share/tools'))).toBe(false); // nor the chain's
    expect(existsSync(path.join(root, 'luetbuild'))).toBe(false);
    expect(rd('etc/pd/conf')).toBe('v\n'); // package_dir: /out is the package root
    expect(existsSync(path.join(root, 'out'))).toBe(false);
    expect(rd('usr/share/f/a.txt')).toBe('a\n');
    expect(existsSync(path.join(root, 'usr/share/f/b.log'))).toBe(false); // excludes win
    expect(existsSync(path.join(root, 'etc/stray'))).toBe(false); // not included
    expect(rd('usr/share/final-saw')).toBe('hello from the context\n');
    expect(existsSync(path.join(root, 'usr/bin/sh'))).toBe(false); // final images are the root only
    // copy: from a package's build and from an image; copied files are not the package's
    expect(rd('usr/share/copier/conf')).toBe('v\n');
    expect(rd('usr/share/copier/os-release')).toBe('ID=cpmtools\n');
    expect(existsSync(path.join(root, 'usr/share/copied'))).toBe(false);
    // --network none: loopback only; a clean environment
    expect(rd('usr/share/copier/netdev')).not.toMatch(/^\s*(?!lo:)\w+:/m);
    const names = [...rd('usr/share/copier/env').matchAll(/^export (\w+)/gm)].map((m) => m[1]);
    expect(names.sort()).toEqual([
      'HOME',
      'PACKAGE_CATEGORY',
      'PACKAGE_NAME',
      'PACKAGE_VERSION',
      'PATH',
      'PWD',
    ]);

    const root2 = path.join(w.work, 'root-b');
    await w.install(out(), root2, 'apps/unpacked');
    expect(existsSync(path.join(root2, 'usr/bin/sh'))).toBe(true);
    expect(existsSync(path.join(root2, 'usr/bin/cat'))).toBe(false);
    expect(existsSync(path.join(root2, 'etc/os-release'))).toBe(false);
  });

  it('skips what is built, rebuilds reproducibly, and a change rebuilds only it and its dependants', async () => {
    const values = { values: [path.join(w.work, 'values.yaml')] };
    const first = await build(opts(out(), values));
    expect(first.packages.every((p) => p.outcome === 'up-to-date')).toBe(true);
    const digests = new Map(
      first.repo!.index.packages.map((p) => [p.name, p.image?.manifestDigest]),
    );

    // A fresh output and cache: every package built again gives the same image digests — by
    // copies and walks this time, where the first build used overlays for the plain deltas.
    const again = await build(
      opts(`dir://${path.join(w.work, 'repo2')}`, {
        ...values,
        cacheDir: path.join(w.work, 'cache2'),
        delta: 'walk',
      }),
    );
    expect(again.packages.every((p) => p.outcome === 'built')).toBe(true);
    for (const p of again.repo!.index.packages)
      expect(p.image?.manifestDigest, p.name).toBe(digests.get(p.name));

    writeFileSync(path.join(w.tree, 'apps/hello/greeting.txt'), 'changed\n');
    clearContextCache();
    const dry = await build(opts(out(), { ...values, dryRun: true }));
    const plan = Object.fromEntries(dry.packages.map((p) => [p.id, p]));
    expect(plan['apps/hello@1.0']!.outcome).toBe('would-build');
    expect(plan['apps/hello@1.0']!.reason).toMatch(/build context changed/);
    expect(plan['apps/final@1.0']!.outcome).toBe('would-build');
    expect(plan['apps/final@1.0']!.reason).toMatch(/build dependency apps\/hello@1.0 changed/);
    const changed = await build(opts(out(), values));
    const by = Object.fromEntries(changed.packages.map((p) => [p.id, p.outcome]));
    expect(by).toEqual({
      'apps/pkgdir@1.0': 'up-to-date',
      'apps/copier@1.0': 'up-to-date',
      'base/tools@1.0': 'up-to-date',
      'apps/hello@1.0': 'built',
      'base/shell@1.0': 'up-to-date',
      'apps/final@1.0': 'built',
      'apps/filtered@1.0': 'up-to-date',
      'apps/unpacked@1.0': 'up-to-date',
    });
    writeFileSync(path.join(w.tree, 'apps/hello/greeting.txt'), 'hello from the context\n');
    clearContextCache();
    // Back to the old inputs: the cache still has the first results.
    const back = await build(opts(out(), values));
    expect(back.packages.find((p) => p.id === 'apps/hello@1.0')!.outcome).toBe('cached');
    expect(back.repo!.index.packages.find((p) => p.name === 'hello')!.image?.manifestDigest).toBe(
      digests.get('hello'),
    );
  });

  it('repo create keeps what cpm build made and names what it has not built', async () => {
    const before = await createFromTree(w.tree, { output: out(), cacheDir: w.cacheDir });
    expect(before.needsBuild).toEqual([]);
    expect(before.index.packages.filter((p) => p.image)).toHaveLength(8);
    const fresh = await createFromTree(w.tree, {
      output: `dir://${path.join(w.work, 'repo-fresh')}`,
      cacheDir: w.cacheDir,
    });
    expect(fresh.needsBuild).toContain('apps/hello@1.0');
    expect(fresh.needsBuild).toHaveLength(8);
    expect(fresh.index.packages).toHaveLength(0);
  });

  it('builds into a registry; a later run with an empty cache pulls final images from it', async () => {
    const values = { values: [path.join(w.work, 'values.yaml')] };
    const url = `oci://${w.reg.host}/built`;
    const r = await build(opts(url, { ...values, push: true, packages: ['apps/final'] }));
    expect(r.failed, JSON.stringify(r.packages, null, 1)).toBe(0);
    expect(r.packages.map((p) => p.id)).toEqual([
      'base/tools@1.0',
      'apps/hello@1.0',
      'base/shell@1.0',
      'apps/final@1.0',
    ]);
    expect(r.repo!.pushed).toBe(true);
    writeFileSync(path.join(w.tree, 'apps/final/note.txt'), 'a new file in the context\n');
    clearContextCache();
    try {
      const again = await build(
        opts(url, { ...values, push: true, cacheDir: path.join(w.work, 'cache-oci') }),
      );
      const by = Object.fromEntries(again.packages.map((p) => [p.id, p.outcome]));
      expect(by['apps/final@1.0']).toBe('built');
      expect(by['apps/hello@1.0']).toBe('up-to-date');
      expect(by['base/shell@1.0']).toBe('up-to-date');
      expect(again.failed).toBe(0);
      const root = path.join(w.work, 'root-oci');
      const rd = await w.install(url, root, 'apps/final');
      expect(rd('usr/share/final-saw')).toBe('hello from the context\n');
    } finally {
      rmSync(path.join(w.tree, 'apps/final/note.txt'));
      clearContextCache();
    }
  });

  it('names the failing step, its exit code and output; others go on; --keep-failed keeps the root', async () => {
    writeFiles(w.tree, {
      'fail/broken/definition.yaml': 'category: fail\nname: broken\nversion: "1"\n',
      'fail/broken/build.yaml': `image: ${w.baseRef}\nsteps:\n- echo before-the-failure\n- echo on-stderr >&2; exit 3\n`,
      'fail/after/definition.yaml': 'category: fail\nname: after\nversion: "1"\n',
      'fail/after/build.yaml':
        'requires:\n- category: fail\n  name: broken\nsteps:\n- echo x > /x\n',
    });
    try {
      const o = path.join(w.work, 'repo-fail');
      const r = await cpm(
        'build',
        '--tree',
        w.tree,
        '--values',
        path.join(w.work, 'values.yaml'),
        '--output',
        `dir://${o}`,
        '--network',
        'none',
        '--keep-failed',
        'fail/after',
        'apps/pkgdir',
      );
      expect(r.code, r.err).toBe(19);
      expect(r.err).toContain(
        'fail/broken@1: steps step 2 (echo on-stderr >&2; exit 3) exited with code 3',
      );
      expect(r.err).toContain('  | on-stderr');
      expect(r.err).toMatch(/build root kept at (\S+)/);
      const kept = /build root kept at (\S+)/.exec(r.err)![1]!;
      expect(existsSync(path.join(kept, 'usr/bin/sh'))).toBe(true);
      expect(r.out).toMatch(/^skipped +fail\/after@1 +build dependency failed: fail\/broken@1$/m);
      expect(r.out).toMatch(/^built +apps\/pkgdir@1.0/m);
      expect(readFileSync(path.join(o, 'build-logs', 'fail_broken_1.log'), 'utf8')).toContain(
        'before-the-failure',
      );
    } finally {
      const { rmSync } = await import('node:fs');
      rmSync(path.join(w.tree, 'fail'), { recursive: true, force: true });
    }
  });
});
