/**
 * The install commands through the real entry point (`node bin/cpm.js`, built dist/), as a
 * Dockerfile RUN would call them: no TTY, exit codes, stdout/stderr. packages-tree/ is built into
 * a dir:// repository and pushed to a real registry.
 */
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { COMMAND_FILES } from '../../src/cli/command-table.js';
import { startRegistry, type RegistryInstance } from '../support/registry.js';
import { CPM_BIN, cpmCli, tmpDir } from './helpers.js';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const TREE = path.join(REPO_ROOT, 'packages-tree');

let dir: string;
let cfgFile: string;
let repoDir: string;
let reg: RegistryInstance;

const { cpm, ok } = cpmCli(() => cfgFile);

/** Built-in modules whose loading a short command should not pay for (lazy-builtins.ts). */
const HEAVY = new Set(['crypto', 'stream', 'zlib', 'net', 'http', 'child_process', 'readline']);

/** Runs cpm and lists the built-in modules the process loaded (process.moduleLoadList). */
function builtinsLoaded(...args: string[]): { out: string; loaded: string[] } {
  const hook = path.join(dir, 'loaded-hook.cjs');
  const list = path.join(dir, 'loaded.txt');
  writeFileSync(
    hook,
    `process.on('exit', () => require('node:fs').writeFileSync(${JSON.stringify(list)}, process.moduleLoadList.join('\\n')));\n`,
  );
  const r = spawnSync(process.execPath, ['--require', hook, CPM_BIN, ...args], {
    encoding: 'utf8',
    env: { ...process.env, CPM_CONFIG: cfgFile },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  if (r.status !== 0)
    throw new Error(`cpm ${args.join(' ')} → ${r.status}\n${r.stdout}\n${r.stderr}`);
  const loaded = readFileSync(list, 'utf8')
    .split('\n')
    .filter((m) => m.startsWith('NativeModule '))
    .map((m) => m.slice('NativeModule '.length));
  return { out: r.stdout, loaded };
}

beforeAll(async () => {
  if (!existsSync(path.join(REPO_ROOT, 'dist/cpm.cjs')))
    throw new Error('run `npm run build` first: this test drives bin/cpm.js');
  dir = tmpDir('cpm-ops-cli-');
  cfgFile = path.join(dir, 'cpm.yaml');
  writeFileSync(cfgFile, 'cache_dir: cache\nrepos_confdir: [repos.conf.d]\n');
  repoDir = path.join(dir, 'repo');
  ok('repo', 'create', '--tree', TREE, '--output', `dir://${repoDir}`, '--json');
  reg = await startRegistry();
});

afterAll(async () => {
  await reg?.stop();
});

describe('cpm install … (CLI, no TTY)', () => {
  it('install --tree, list, files, owns, verify, upgrade --repo, reinstall, uninstall --full', () => {
    const root = path.join(dir, 'root1');
    const inst = cpm(
      'install',
      'system/cos-setup@1.0.0',
      '--tree',
      TREE,
      '--root',
      root,
      '--no-finalizers',
    );
    // no terminal and no -y: it must not ask
    expect(inst.code).toBe(0);
    expect(inst.out).toContain('installed system/cos-setup@1.0.0\n');
    expect(readFileSync(path.join(root, 'usr/bin/cos-setup'), 'utf8')).toBe(
      readFileSync(path.join(TREE, 'system/cos-setup/1.0.0/root/usr/bin/cos-setup'), 'utf8'),
    );

    const list = (
      JSON.parse(ok('list', '--installed', '--root', root, '--json')) as {
        packages: Array<{
          id: string;
          reason: string;
          origin: string;
        }>;
      }
    ).packages;
    expect(list.map((p) => [p.id, p.reason, p.origin])).toEqual([
      ['system/base-config@1.1.0', 'dependency', 'packages-tree'],
      ['system/cloud-config-defaults@1.1.0', 'dependency', 'packages-tree'],
      ['system/cos-setup@1.0.0', 'explicit', 'packages-tree'],
    ]);
    expect(ok('files', 'system/cos-setup', '--root', root)).toContain('/usr/bin/cos-setup\n');
    expect(ok('owns', '/usr/bin/cos-setup', '--root', root)).toBe(
      '/usr/bin/cos-setup is owned by system/cos-setup@1.0.0\n',
    );
    expect(cpm('owns', '/usr/bin/nothing', '--root', root).code).toBe(1);
    expect(cpm('verify', '--root', root).code).toBe(0);

    // a no-op says so and leaves the DB bytes alone
    const db = readFileSync(path.join(root, 'var/lib/cpm/installed'));
    expect(
      ok('install', 'system/cos-setup@1.0.0', '--repo', `dir://${repoDir}`, '--root', root),
    ).toBe('nothing to do\n');
    expect(readFileSync(path.join(root, 'var/lib/cpm/installed')).equals(db)).toBe(true);
    // …without loading node:crypto, node:zlib or the stream modules (15–20 ms of a ≈ 140 ms no-op
    // on Node 24): the DB's sums are checked by util/sha256.ts, the repository's small gzip index
    // inflated by util/inflate.ts, the output written to the descriptors.
    for (const pkg of ['system/cos-setup@1.0.0', 'system/cos-setup']) {
      const noop = builtinsLoaded('install', pkg, '--repo', `dir://${repoDir}`, '--root', root);
      expect(noop.out).toBe('nothing to do\n');
      expect(
        noop.loaded.filter((m) => HEAVY.has(m)),
        pkg,
      ).toEqual([]);
    }

    const up = cpm(
      'upgrade',
      '--repo',
      `dir://${repoDir}`,
      '--root',
      root,
      '-y',
      '--no-finalizers',
    );
    expect(up.code).toBe(0);
    expect(up.out).toBe('installed system/cos-setup@1.1.0\nremoved system/cos-setup@1.0.0\n');
    expect(readFileSync(path.join(root, 'usr/bin/cos-setup'), 'utf8')).toBe(
      readFileSync(path.join(TREE, 'system/cos-setup/1.1.0/root/usr/bin/cos-setup'), 'utf8'),
    );

    writeFileSync(path.join(root, 'usr/bin/cos-setup'), 'broken\n');
    writeFileSync(path.join(root, 'usr/bin/stray'), 'x\n');
    const bad = cpm('verify', '--root', root);
    expect(bad.code).toBe(1);
    expect(bad.out).toMatch(
      /^modified\t\/usr\/bin\/cos-setup\tsystem\/cos-setup@1.1.0\texpected sha256:[0-9a-f]{64}, found size 7$/m,
    );
    expect(bad.out).toMatch(/^foreign\t\/usr\/bin\/stray\t/m);
    expect(cpm('verify', '--root', root, '--no-foreign').out).not.toContain('stray');
    // over an unmanaged base (files at the top no package owns) foreign files are not looked for…
    writeFileSync(
      path.join(root, 'usr/bin/cos-setup'),
      readFileSync(path.join(TREE, 'system/cos-setup/1.1.0/root/usr/bin/cos-setup')),
    );
    mkdirSync(path.join(root, 'boot'));
    const over = cpm('verify', '--root', root);
    expect(over.code).toBe(0);
    expect(over.err).toContain(
      'foreign files not checked: the root has files no package owns (e.g. /boot)',
    );
    // …unless asked for
    expect(cpm('verify', '--root', root, '--foreign').out).toMatch(
      /^foreign\t\/usr\/bin\/stray\t/m,
    );
    rmSync(path.join(root, 'boot'), { recursive: true });
    writeFileSync(path.join(root, 'usr/bin/cos-setup'), 'broken\n');
    rmSync(path.join(root, 'usr/bin/stray'));
    ok(
      'reinstall',
      'system/cos-setup',
      '--repo',
      `dir://${repoDir}`,
      '--root',
      root,
      '--no-finalizers',
    );
    expect(cpm('verify', '--root', root).code).toBe(0);

    const un = cpm('uninstall', 'system/cos-setup', '--full', '--root', root, '--json');
    expect(un.code).toBe(0);
    expect(JSON.parse(un.out)).toMatchObject({
      removed: [
        'system/base-config@1.1.0',
        'system/cloud-config-defaults@1.1.0',
        'system/cos-setup@1.1.0',
      ],
    });
    expect(JSON.parse(ok('list', '--installed', '--root', root, '--json'))).toMatchObject({
      packages: [],
    });
    expect(existsSync(path.join(root, 'usr'))).toBe(false);
  });

  it('--dry-run --json prints exactly what `cpm plan --json` prints, and changes nothing', () => {
    const root = path.join(dir, 'root-dry');
    ok('install', 'system/cos-setup@1.0.0', '--repo', repoDir, '--root', root, '--no-finalizers');
    const db = readFileSync(path.join(root, 'var/lib/cpm/installed'));
    const src = ['--tree', TREE];
    for (const [args, from] of [
      [['install', 'system/cos-setup', 'system/grub-config'], src],
      [['upgrade'], src],
      [['uninstall', 'system/cos-setup', '--full'], []], // needs no repository
    ] as const) {
      const dry = ok(...args, ...from, '--root', root, '--dry-run', '--json');
      const plan = ok('plan', ...args, ...src, '--root', root, '--json');
      expect(dry).toBe(plan);
      expect(JSON.parse(dry).satisfiable).toBe(true);
    }
    expect(readFileSync(path.join(root, 'var/lib/cpm/installed')).equals(db)).toBe(true);
  });

  it('unsatisfiable → exit 6 in plain words; unknown → exit 5; required-by → exit 6', () => {
    const root = path.join(dir, 'root-bad');
    const unsat = cpm(
      'install',
      'system/grub-config',
      'system/systemd-boot-config',
      '--repo',
      repoDir,
      '--root',
      root,
    );
    expect(unsat.code).toBe(6);
    expect(unsat.err).toContain('cannot satisfy system/grub-config, system/systemd-boot-config');
    expect(unsat.err).toMatch(/conflicts with system\/systemd-boot-config/);
    expect(unsat.err).not.toMatch(/\bat .*\.js:\d+/); // no stack trace
    const unknown = cpm('install', 'nope/missing', '--repo', repoDir, '--root', root);
    expect(unknown.code).toBe(5);
    expect(unknown.err).toContain('nope/missing: no such package');
    expect(existsSync(root)).toBe(false);

    ok('install', 'system/cos-setup', '--repo', repoDir, '--root', root, '--no-finalizers');
    const req = cpm('uninstall', 'system/base-config', '--root', root);
    expect(req.code).toBe(6);
    expect(req.err).toContain('system/cos-setup@1.1.0');
  });

  it('reclaim adopts a copied root; cleanup reports the bytes it frees', () => {
    const src = path.join(dir, 'root-src');
    ok('install', 'system/cos-setup', '--tree', TREE, '--root', src, '--no-finalizers');
    const root = path.join(dir, 'root-reclaim');
    cpSync(src, root, { recursive: true });
    rmSync(path.join(root, 'var/lib/cpm'), { recursive: true });
    const r = JSON.parse(ok('reclaim', '--tree', TREE, '--root', root, '--json')) as {
      adopted: string[];
    };
    expect(r.adopted).toEqual([
      'system/base-config@1.1.0',
      'system/cloud-config-defaults@1.1.0',
      'system/cos-setup@1.1.0',
    ]);
    expect(cpm('verify', '--root', root).code).toBe(0);
    expect(ok('owns', '/etc/cos/config', '--root', root)).toContain('system/base-config@1.1.0');

    const c = JSON.parse(ok('cleanup', '--json')) as { bytesFreed: number; pruned: string[] };
    expect(c.bytesFreed).toBeGreaterThan(0);
    expect(c.pruned).toContain('trees');
    expect(ok('cleanup')).toMatch(/^freed 0 bytes/);
  });

  it('installs from a real registry (repo create --output oci:// --push, then --repo oci://)', () => {
    const url = `oci://${reg.host}/cpm`;
    ok('repo', 'create', '--tree', TREE, '--output', url, '--push', '--json');
    const root = path.join(dir, 'root-oci');
    ok('install', 'system/cos-setup@1.0.0', '--repo', url, '--root', root, '--no-finalizers', '-q');
    const list = (
      JSON.parse(ok('list', '--installed', '--root', root, '--json')) as {
        packages: Array<{
          id: string;
          origin: string;
          imageDigest: string;
        }>;
      }
    ).packages;
    expect(list.map((p) => p.id)).toContain('system/cos-setup@1.0.0');
    for (const p of list) {
      expect(p.origin).toBe(`${reg.host.replace(':', '_')}_cpm`);
      expect(p.imageDigest).toMatch(/^sha256:[0-9a-f]{64}$/);
    }
    ok('upgrade', 'system/cos-setup', '--repo', url, '--root', root, '--no-finalizers');
    expect(ok('owns', '/usr/bin/cos-setup', '--root', root)).toContain('system/cos-setup@1.1.0');
    expect(cpm('verify', '--root', root).code).toBe(0);
  });

  it('every command has --help examples', () => {
    // the commands src/cli/commands/install.ts registers, as the command table lists them
    const group = COMMAND_FILES.find((f) => f.commands.includes('install'))!;
    for (const c of group.commands) {
      const h = ok(c, '--help');
      expect(h, c).toMatch(/\nExamples:\n {2}cpm /);
    }
  });
});
