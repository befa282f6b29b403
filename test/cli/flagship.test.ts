/**
 * The flagship flow as a user runs it (node bin/cpm.js): packages-tree/ → dir:// repository →
 * `cpm install system/cos-setup` over a base with a shell → `cpm verify` passes, because what the
 * finalizers create (/usr/local/cloud-config) is recorded as the package's (generated) files. On a
 * root without a shell the install is refused before anything is touched. The Debian minbase
 * variant (real registry, `cpm demo --base REG/bases/debian:bookworm`) runs when
 * CPM_TEST_MMDEBSTRAP=1.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  readdirSync,
  realpathSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InstalledDb } from '../../src/rootfs/db.js';
import {
  PROJECT,
  minbaseTar,
  shellBaseTar,
  skopeoPush,
  umociImage,
} from '../install/base-images.js';
import { tmpDir } from '../install/helpers.js';
import { startRegistry, type RegistryInstance } from '../support/registry.js';
import { requireBuild, runCpm, type CliResult } from '../support/cli.js';

const TREE = path.join(PROJECT, 'packages-tree');

let work: string;
let env: NodeJS.ProcessEnv;
let repo: string;
let base: string;

const cpm = (...args: string[]): Promise<CliResult> => runCpm(args, { env });

beforeAll(async () => {
  requireBuild();
  work = tmpDir('cpm-flagship-');
  env = { ...process.env, CPM_CONFIG: path.join(work, 'cpm.yaml') };
  writeFileSync(env.CPM_CONFIG!, `cache_dir: ${path.join(work, 'cache')}\n`);
  repo = `dir://${path.join(work, 'repo')}`;
  const r = await cpm('repo', 'create', '--tree', TREE, '--output', repo);
  expect(r.code, r.err).toBe(0);
  base = `oci:${umociImage(path.join(work, 'layout'), 'shell', [shellBaseTar(work)])}`;
}, 120_000);

describe('cpm install system/cos-setup, then cpm verify', () => {
  it('over a base with a shell: finalizers run, what they create belongs to cos-setup, verify passes', async () => {
    const root = path.join(work, 'root');
    expect((await cpm('rootfs', 'init', '--from', base, '--root', root, '-q')).code).toBe(0);
    const i = await cpm('install', 'system/cos-setup', '--repo', repo, '--root', root, '-y');
    expect(i.code, i.err).toBe(0);
    expect(i.err).toMatch(/^finalize system\/cos-setup@1\.1\.0$/m);
    expect(existsSync(path.join(root, 'usr/local/cloud-config'))).toBe(true);

    const v = await cpm('verify', '--root', root);
    expect(v.code, v.out + v.err).toBe(0);
    const owns = await cpm('owns', '/usr/local/cloud-config', '--root', root);
    expect(owns.out).toContain('is owned by system/cos-setup@1.1.0');
    const db = InstalledDb.load(path.join(root, 'var/lib/cpm'));
    const gen = db.get('system/cos-setup@1.1.0')!.files.filter((f) => f.generated);
    // the small base has no /usr/local: mkdir -p made both
    expect(gen.map((f) => f.path)).toEqual(['usr/local', 'usr/local/cloud-config']);
    expect(gen.every((f) => f.type === 'd')).toBe(true);

    // generated entries leave with their package
    const un = await cpm('uninstall', 'system/cos-setup', '--full', '--root', root, '-y');
    expect(un.code, un.err).toBe(0);
    expect(existsSync(path.join(root, 'usr/local'))).toBe(false);
    expect((await cpm('verify', '--root', root)).code).toBe(0);
  }, 120_000);

  it('into an empty root (no shell): refused before anything is touched, with a hint', async () => {
    const root = tmpDir('cpm-flagship-empty-');
    const i = await cpm('install', 'system/cos-setup', '--repo', repo, '--root', root, '-y');
    expect(i.code).toBe(11);
    expect(i.err).toMatch(/has finalizers, but .* has no sh to run them; nothing was changed/);
    expect(i.err).toMatch(/--no-finalizers/);
    expect(readdirSync(root).filter((n) => n !== 'var')).toEqual([]);
    const db = path.join(root, 'var/lib/cpm/installed');
    expect(existsSync(db)).toBe(false);

    const files = await cpm(
      'install',
      'system/cos-setup',
      '--repo',
      repo,
      '--root',
      root,
      '-y',
      '--no-finalizers',
    );
    expect(files.code, files.err).toBe(0);
    expect((await cpm('verify', '--root', root)).code).toBe(0);
  }, 120_000);

  it('cpm demo --base (a base with a shell) runs the finalizers and exits 0', async () => {
    const out = path.join(work, 'demo');
    const d = await cpm('demo', '--out', out, '--base', base, '--json');
    expect(d.code, d.err).toBe(0);
    const r = JSON.parse(d.out) as { finalizers: string; verify: { problems: unknown[] } };
    expect(r.finalizers).toBe('ran');
    expect(r.verify.problems).toEqual([]);
  }, 120_000);
});

/**
 * Runs this checkout's cpm inside `root` mounted at / (a container built from a cpm-managed root):
 * runtime mounts from bwrap (/proc, /dev, /tmp), the host's node and cpm under /tmp, and
 * /usr/local/bin/cpm a link to it, as the Dockerfile of docs/ci.md installs cpm.
 */
function inRoot(root: string, args: string[]): { code: number; out: string; err: string } {
  const libs = [
    ...execFileSync('ldd', [process.execPath], { encoding: 'utf8' }).matchAll(/(\/\S+)/g),
  ]
    .map((m) => m[1]!)
    .filter((l) => l.includes('.so'))
    .map((l) => realpathSync(l)); // absolute links would resolve inside the box
  const loader = libs.find((l) => /ld-linux/.test(l))!;
  const libPath = [...new Set(libs.map((l) => `/tmp/host${path.dirname(l)}`))].join(':');
  const r = spawnSync(
    'bwrap',
    [
      ...['--bind', root, '/', '--proc', '/proc', '--dev', '/dev', '--tmpfs', '/tmp'],
      ...['--ro-bind', '/', '/tmp/host'],
      ...['--ro-bind', path.join(PROJECT, 'bin'), '/tmp/cpm/bin'],
      ...['--ro-bind', path.join(PROJECT, 'dist'), '/tmp/cpm/dist'],
      ...['--ro-bind', path.join(PROJECT, 'package.json'), '/tmp/cpm/package.json'],
      ...['--unsetenv', 'NODE_EXTRA_CA_CERTS', '--unsetenv', 'CPM_CONFIG'],
      '--',
      `/tmp/host${loader}`,
      '--library-path',
      libPath,
      `/tmp/host${process.execPath}`,
      '/usr/local/bin/cpm',
      ...args,
    ],
    { encoding: 'utf8' },
  );
  return { code: r.status ?? -1, out: r.stdout, err: r.stderr };
}

describe('cpm verify on / inside a container made from a cpm-managed root', () => {
  it('skips /proc, /dev, /tmp, cpm’s config, cache and binary; finds a real stray file; --no-foreign suppresses it', async () => {
    const root = path.join(work, 'container');
    expect((await cpm('rootfs', 'init', '--from', base, '--root', root, '-q')).code).toBe(0);
    const i = await cpm('install', 'system/cos-setup', '--repo', repo, '--root', root, '-y');
    expect(i.code, i.err).toBe(0);
    // what installing cpm into the image adds (docs/ci.md): config, repository, cache, binary
    mkdirSync(path.join(root, 'etc/cpm/repos.conf.d'), { recursive: true });
    writeFileSync(path.join(root, 'etc/cpm/cpm.yaml'), 'cache_dir: /var/cache/cpm\n');
    writeFileSync(
      path.join(root, 'etc/cpm/repos.conf.d/local.yaml'),
      `name: local\nurl: ${repo}\n`,
    );
    mkdirSync(path.join(root, 'var/cache/cpm/blobs'), { recursive: true });
    writeFileSync(path.join(root, 'var/cache/cpm/blobs/x'), 'x');
    mkdirSync(path.join(root, 'usr/local/bin'), { recursive: true });
    symlinkSync('/tmp/cpm/bin/cpm.js', path.join(root, 'usr/local/bin/cpm'));

    const clean = inRoot(root, ['verify']);
    expect(clean.err).not.toMatch(/foreign files not checked/);
    expect(clean.code, clean.out + clean.err).toBe(0);
    expect(clean.out).toBe('');

    writeFileSync(path.join(root, 'usr/local/stray'), 'not a package file\n');
    const stray = inRoot(root, ['verify']);
    expect(stray.code).toBe(1);
    // /usr/local is cos-setup's (its finalizer made it on this base)
    expect(stray.out).toBe('foreign\t/usr/local/stray\tsystem/cos-setup@1.1.0\n');
    const quiet = inRoot(root, ['verify', '--no-foreign']);
    expect(quiet.code, quiet.out + quiet.err).toBe(0);
  }, 120_000);
});

describe('a root that is not there, or not a directory', () => {
  it('verify and list --installed fail with a clear error; install refuses a file as root', async () => {
    const missing = path.join(work, 'no', 'such', 'root');
    for (const args of [['verify'], ['list', '--installed'], ['files', 'system/cos-setup']]) {
      const r = await cpm(...args, '--root', missing);
      expect(r.code, args.join(' ')).toBe(5);
      expect(r.err).toContain(`cpm: root ${missing} does not exist`);
    }
    const file = path.join(work, 'cpm.yaml');
    const r = await cpm('install', 'system/cos-setup', '--repo', repo, '--root', file, '-y');
    expect(r.code).toBe(2);
    expect(r.err).toContain(`cpm: root ${file} is not a directory`);
  });
});

describe.runIf(process.env.CPM_TEST_MMDEBSTRAP === '1')(
  'over a Debian bookworm minbase from a registry',
  () => {
    let reg: RegistryInstance;
    let ref: string;
    beforeAll(async () => {
      reg = await startRegistry();
      const layout = path.join(work, 'debian');
      umociImage(layout, 'bookworm', [minbaseTar()]);
      ref = `${reg.host}/bases/debian:bookworm`;
      skopeoPush(`${layout}:bookworm`, ref);
    }, 600_000);
    afterAll(async () => {
      await reg?.stop();
    });

    it('cpm demo --base REG/bases/debian:bookworm exits 0; install && verify passes', async () => {
      const d = await cpm('demo', '--out', path.join(work, 'demo-debian'), '--base', ref, '-q');
      expect(d.code, d.out + d.err).toBe(0);
      const root = path.join(work, 'debian-root');
      expect((await cpm('rootfs', 'init', '--from', ref, '--root', root, '-q')).code).toBe(0);
      const i = await cpm('install', 'system/cos-setup', '--repo', repo, '--root', root, '-y');
      expect(i.code, i.err).toBe(0);
      const v = await cpm('verify', '--root', root);
      expect(v.code, v.out + v.err).toBe(0);
    }, 300_000);
  },
);
