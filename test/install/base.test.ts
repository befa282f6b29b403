/**
 * Distribution bases through the CLI (`node bin/cpm.js`, needs `npm run build`): a base image made
 * by umoci from real files and pushed by skopeo to the real registry, `cpm rootfs init`, then
 * `list --installed`, `verify`, `owns`, and packages on top (conflicts with base files). The
 * Debian minbase variant (mmdebstrap, ~1 min once a day) runs when CPM_TEST_MMDEBSTRAP=1.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { baseInstallStep, installedBase, rootfsInit } from '../../src/install/image-ref.js';
import { applyTransaction, installPackages } from '../../src/rootfs/index.js';
import { listInstalled, verify } from '../../src/upkeep/query.js';
import { startRegistry, type RegistryInstance } from '../support/registry.js';
import { PROJECT, minbaseTar, skopeoPush, smallBaseLayers, umociImage } from './base-images.js';
import { failure, layerFromFiles, step, tmpDir } from './helpers.js';
import { requireBuild, runCpm, type CliResult } from '../support/cli.js';

let reg: RegistryInstance;
let work: string;
let env: NodeJS.ProcessEnv;
let cacheDir: string;
let baseRef: string;

const cpm = (...args: string[]): Promise<CliResult> => runCpm(args, { env });

interface ListedPackage {
  id: string;
  base?: boolean;
  origin: string;
  imageDigest: string;
  files: number;
}

beforeAll(async () => {
  requireBuild();
  reg = await startRegistry();
  work = tmpDir('cpm-base-');
  cacheDir = path.join(work, 'cache');
  env = { ...process.env, CPM_CONFIG: path.join(work, 'cpm.yaml') };
  writeFileSync(env.CPM_CONFIG!, `cache_dir: ${cacheDir}\n`);
  const { lower, upper } = await smallBaseLayers(work);
  umociImage(path.join(work, 'layout'), 'small', [lower, upper]);
  baseRef = `${reg.host}/base:small`;
  skopeoPush(`${path.join(work, 'layout')}:small`, baseRef);
});
afterAll(async () => {
  await reg?.stop();
});

describe('cpm rootfs init (small real base)', () => {
  it('unpacks all layers, records the base, verify is clean', async () => {
    const root = path.join(work, 'root1');
    const r = await cpm('rootfs', 'init', '--from', baseRef, '--root', root);
    expect(r.code, r.err).toBe(0);
    expect(r.err.match(/^extract images\/base@0\+small [0-9a-f]{12} \(/gm)).toHaveLength(2); // both layers
    expect(r.out).toContain('base images/base@0+small');
    expect(readFileSync(path.join(root, 'usr/bin/env')).equals(readFileSync('/usr/bin/env'))).toBe(
      true,
    );
    expect(existsSync(path.join(root, 'etc/motd'))).toBe(false);
    expect(existsSync(path.join(root, 'usr/share/doc/base/changelog'))).toBe(false);
    expect(readFileSync(path.join(root, 'etc/hostname'), 'utf8')).toBe('upper\n');

    const list = await cpm('list', '--installed', '--root', root, '--json');
    expect(list.code).toBe(0);
    const pkgs = (JSON.parse(list.out) as { packages: ListedPackage[] }).packages;
    expect(pkgs).toHaveLength(1);
    expect(pkgs[0]).toMatchObject({ id: 'images/base@0+small', base: true, origin: baseRef });
    expect(pkgs[0]!.imageDigest).toMatch(/^sha256:/);
    const plain = await cpm('list', '--installed', '--root', root);
    expect(plain.out).toMatch(/^images\/base@0\+small\texplicit base\t/m);

    const v = await cpm('verify', '--root', root);
    expect(v.code).toBe(0);
    expect(v.err).toMatch(/ 0 problem/);
    const owns = await cpm('owns', '/bin/env', '--root', root);
    expect(owns.out).toContain('/usr/bin/env is owned by images/base@0+small');
    expect(installedBase(root)).toBe('images/base@0+small');
  });

  it('refuses a non-empty root unless --force; lost+found does not count', async () => {
    const root = path.join(work, 'root2');
    mkdirSync(path.join(root, 'lost+found'), { recursive: true });
    mkdirSync(path.join(root, 'srv'), { recursive: true });
    writeFileSync(path.join(root, 'srv/data'), 'mine');
    const r = await cpm('rootfs', 'init', '--from', baseRef, '--root', root);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/is not empty \(srv\)/);
    expect(existsSync(path.join(root, 'etc'))).toBe(false);

    const f = await cpm('rootfs', 'init', '--from', baseRef, '--root', root, '--force', '--json');
    expect(f.code).toBe(0);
    expect(JSON.parse(f.out)).toMatchObject({ base: 'images/base@0+small' });
    expect(readFileSync(path.join(root, 'srv/data'), 'utf8')).toBe('mine'); // not the base's
    // again: same image, nothing to do
    const again = await cpm('rootfs', 'init', '--from', baseRef, '--root', root, '--force');
    expect(again.code).toBe(0);
    expect(again.out).toContain('images/base@0+small is already the base');
  });

  it('an empty directory (only lost+found) is accepted without --force', async () => {
    const root = path.join(work, 'root3');
    mkdirSync(path.join(root, 'lost+found'), { recursive: true });
    const r = await rootfsInit(root, baseRef, { cacheDir });
    expect(r.installed).toEqual(['images/base@0+small']);
  });

  it('a package that overwrites a base file is a conflict; other packages install on top', async () => {
    const root = path.join(work, 'root4');
    await rootfsInit(root, baseRef, { cacheDir });
    const err = await failure(
      installPackages(root, [
        step('apps/os-brand@1', [layerFromFiles({ 'etc/os-release': 'ID=mine\n' })]),
      ]),
    );
    expect(err.code).toBe('E_FILE_CONFLICT');
    expect(err.message).toContain('/etc/os-release: images/base@0+small, apps/os-brand@1');
    expect(readFileSync(path.join(root, 'etc/os-release'), 'utf8')).toContain('cpm test base');

    await installPackages(root, [
      step('apps/tool@1', [layerFromFiles({ 'usr/bin/tool': 'tool', 'etc/tool.conf': 'x=1\n' })]),
    ]);
    expect(listInstalled({ root }).map((p) => p.id)).toEqual([
      'apps/tool@1',
      'images/base@0+small',
    ]);
    expect((await verify({ root })).problems).toEqual([]);
    // a later rootfs init of another base family replaces the base, keeps the packages
    const r = await rootfsInit(root, baseRef, { cacheDir, force: true, id: 'bases/small@1.0' });
    expect(r.removed).toEqual(['images/base@0+small']);
    expect(installedBase(root)).toBe('bases/small@1.0');
    expect(readFileSync(path.join(root, 'usr/bin/tool'), 'utf8')).toBe('tool');
    expect((await verify({ root })).problems).toEqual([]);
  });

  it('--base semantics: base and packages in one transaction, conflicts between them refused', async () => {
    const base = await baseInstallStep(baseRef, { cacheDir });
    expect(base.base).toBe(true);
    const root = tmpDir();
    const err = await failure(
      applyTransaction(root, {
        install: [base, step('apps/host@1', [layerFromFiles({ 'etc/hostname': 'mine\n' })])],
        remove: [],
      }),
    );
    expect(err.code).toBe('E_FILE_CONFLICT');
    expect(existsSync(path.join(root, 'etc'))).toBe(false);
    await applyTransaction(root, {
      install: [base, step('apps/extra@1', [layerFromFiles({ 'opt/extra': 'e' })])],
      remove: [],
    });
    const pkgs = listInstalled({ root });
    expect(pkgs.find((p) => p.base)?.id).toBe('images/base@0+small');
    expect(pkgs.map((p) => p.id)).toContain('apps/extra@1');
  });

  it('cpm install --base IMAGE: the base and the resolved packages in one run, again a no-op', async () => {
    const repo = path.join(work, 'tree-repo');
    const made = await cpm(
      'repo',
      'create',
      '--tree',
      path.join(PROJECT, 'packages-tree'),
      '--output',
      `dir://${repo}`,
    );
    expect(made.code, made.err).toBe(0);
    const root = tmpDir();
    const args = [
      'install',
      'system/cos-setup',
      '--base',
      baseRef,
      '--repo',
      `dir://${repo}`,
      '--root',
      root,
      '--no-finalizers',
    ];
    const dry = await cpm(...args, '--dry-run', '--json');
    expect(JSON.parse(dry.out)).toMatchObject({ base: baseRef, satisfiable: true });
    expect(existsSync(path.join(root, 'etc'))).toBe(false);

    const r = await cpm(...args, '--json');
    expect(r.code, r.err).toBe(0);
    const listed = (
      JSON.parse((await cpm('list', '--installed', '--root', root, '--json')).out) as {
        packages: ListedPackage[];
      }
    ).packages;
    expect(listed.map((p) => [p.id, p.base === true])).toEqual([
      ['images/base@0+small', true],
      ['system/base-config@1.1.0', false],
      ['system/cloud-config-defaults@1.1.0', false],
      ['system/cos-setup@1.1.0', false],
    ]);
    expect(readFileSync(path.join(root, 'etc/os-release'), 'utf8')).toContain('cpm test base');
    // cpm manages the whole root now, so verify also looks for foreign files
    writeFileSync(path.join(root, 'etc/stray'), 'x');
    const v = await cpm('verify', '--root', root);
    expect(v.code).toBe(1);
    expect(v.out).toMatch(/^foreign\t\/etc\/stray\t/m);

    const again = await cpm(...args, '--json');
    expect(again.code, again.err).toBe(0);
    expect(JSON.parse(again.out)).toMatchObject({
      installed: [],
      unchanged: ['images/base@0+small'],
    });
  });
});

describe.runIf(process.env.CPM_TEST_MMDEBSTRAP === '1')(
  'cpm rootfs init (Debian bookworm minbase from mmdebstrap)',
  () => {
    let ref: string;
    beforeAll(() => {
      const tar = minbaseTar();
      const layout = path.join(work, 'debian');
      umociImage(layout, 'bookworm', [tar]);
      ref = `${reg.host}/base:bookworm`;
      skopeoPush(`${layout}:bookworm`, ref);
    }, 600_000);

    it('init, list, verify, and a package overwriting a Debian file conflicts', async () => {
      const root = path.join(work, 'debian-root');
      const r = await cpm('rootfs', 'init', '--from', ref, '--root', root, '-q');
      expect(r.err).toBe('');
      expect(r.code).toBe(0);
      expect(readFileSync(path.join(root, 'etc/debian_version'), 'utf8')).toMatch(/^12\./);
      const pkgs = (
        JSON.parse((await cpm('list', '--installed', '--root', root, '--json')).out) as {
          packages: ListedPackage[];
        }
      ).packages;
      expect(pkgs).toMatchObject([{ id: 'images/base@0+bookworm', base: true }]);
      expect(pkgs[0]!.files).toBeGreaterThan(3000);
      const v = await cpm('verify', '--root', root);
      expect(v.code, v.out + v.err).toBe(0);
      const owns = await cpm('owns', '/bin/sh', '--root', root);
      expect(owns.out).toContain('is owned by images/base@0+bookworm');
      const err = await failure(
        installPackages(root, [
          step('apps/brand@1', [layerFromFiles({ 'etc/debian_version': '99\n' })]),
        ]),
      );
      expect(err.code).toBe('E_FILE_CONFLICT');
      expect(err.message).toContain('/etc/debian_version: images/base@0+bookworm, apps/brand@1');
    }, 300_000);
  },
);
