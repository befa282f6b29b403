/**
 * Safety through the real entry point (node bin/cpm.js, no TTY): empty path options are usage
 * errors; the running system's / is not changed without -y (checked inside a bubblewrap box whose
 * / is a scratch directory); symlink swaps and a crash mid-upgrade followed by a swap or a move of
 * the root, with a sentinel tree outside the root compared byte for byte.
 */
import { spawnSync } from 'node:child_process';
import {
  cpSync,
  existsSync,
  mkdirSync,
  readFileSync,
  readlinkSync,
  realpathSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { cpmCli, tmpDir } from '../install/helpers.js';
import { makeSentinel, sentinelSnapshot } from '../support/sentinel.js';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const TREE = path.join(REPO_ROOT, 'packages-tree');
const BIN = path.join(REPO_ROOT, 'bin/cpm.js');

let dir: string;
let cfgFile: string;
let repo: string;
const { cpm, ok } = cpmCli(() => cfgFile);

beforeAll(() => {
  dir = tmpDir('cpm-cli-safety-');
  cfgFile = path.join(dir, 'cpm.yaml');
  writeFileSync(cfgFile, `cache_dir: ${dir}/cache\nrepos_confdir: [${dir}/repos.conf.d]\n`);
  repo = `dir://${dir}/repo`;
  ok('repo', 'create', '--tree', TREE, '--output', repo, '--json');
});

/** `cpm upgrade` of `root` from the test repository, with `env` added (the fault points). */
const upgrade = (root: string, env: Record<string, string>) =>
  spawnSync(
    process.execPath,
    [BIN, 'upgrade', '--repo', repo, '--root', root, '--no-finalizers', '-y'],
    { env: { ...process.env, CPM_CONFIG: cfgFile, ...env }, encoding: 'utf8' },
  );

/** How many fault points a whole upgrade passes, counted on a copy `name` of `root`. */
function faultPoints(root: string, name: string): number {
  const probe = path.join(dir, name);
  cpSync(root, probe, { recursive: true, verbatimSymlinks: true });
  const count = `${probe}.count`;
  const full = upgrade(probe, { CPM_FAULT_COUNT: count });
  expect(full.status, full.stderr).toBe(0);
  return Number(readFileSync(count, 'utf8'));
}

describe('empty path options are usage errors', () => {
  const root = (): string => path.join(dir, 'empty');
  const cases: Array<[string, string[]]> = [
    ['--root', ['install', 'system/cos-setup', '--repo', 'REPO', '--root', '']],
    ['--repo', ['install', 'system/cos-setup', '--repo', '', '--root', 'ROOT']],
    ['--tree', ['install', 'system/cos-setup', '--tree', '', '--root', 'ROOT']],
    ['--root', ['list', '--installed', '--root', '']],
    ['--root', ['recover', '--root', '']],
    ['--db-dir', ['image', 'tar', '--root', 'DIR', '--db-dir', '', '-o', 'OUT']],
  ];
  for (const [flag, args] of cases)
    it(`${args[0]} ${flag} ''`, () => {
      const a = args.map((x) =>
        x === 'REPO'
          ? repo
          : x === 'ROOT'
            ? root()
            : x === 'DIR'
              ? dir
              : x === 'OUT'
                ? `${dir}/o.tar`
                : x,
      );
      const r = cpm(...a);
      expect(r.code, r.err).toBe(2);
      expect(r.err).toContain(`cpm: ${flag} is empty\n`);
      expect(r.err).toMatch(/^hint: give .* a value/m);
      // nothing was made in the current directory or the root
      expect(existsSync(root())).toBe(false);
      expect(existsSync(path.join(REPO_ROOT, 'var'))).toBe(false);
    });
});

describe('changing / without a terminal needs -y (bubblewrap box: / is a scratch dir)', () => {
  const hasBwrap = spawnSync('bwrap', ['--version']).status === 0;
  it.skipIf(!hasBwrap)('refuses without -y, installs with -y', () => {
    const scratch = path.join(dir, 'host');
    mkdirSync(scratch);
    writeFileSync(path.join(scratch, 'cpm.yaml'), 'cache_dir: /tmp/cache\n');
    const nm = readlinkOr(path.join(REPO_ROOT, 'node_modules'));
    const box = (...args: string[]): { code: number; out: string; err: string } => {
      const r = spawnSync(
        'bwrap',
        [
          ...['--bind', scratch, '/', ...nodeBinds()],
          // /tmp first: a checkout under /tmp (a CI clone) must stay visible above it
          ...['--dev', '/dev', '--proc', '/proc', '--tmpfs', '/tmp'],
          ...['--ro-bind', REPO_ROOT, REPO_ROOT],
          ...(nm !== path.join(REPO_ROOT, 'node_modules') ? ['--ro-bind', nm, nm] : []),
          ...['--setenv', 'CPM_CONFIG', '/cpm.yaml', '--unsetenv', 'NODE_EXTRA_CA_CERTS'],
          ...['--', process.execPath, BIN, ...args],
        ],
        { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] },
      );
      return { code: r.status ?? -1, out: r.stdout, err: r.stderr };
    };
    const args = ['install', 'system/cos-setup', '--tree', TREE, '--no-finalizers'];
    const no = box(...args);
    expect(no.code, no.err).toBe(2);
    expect(no.err).toContain('cpm: refusing to install on / (this system) without confirmation');
    expect(no.err).toContain('hint: there is no terminal to ask on: add -y to confirm');
    expect(existsSync(path.join(scratch, 'var/lib/cpm'))).toBe(false);
    expect(existsSync(path.join(scratch, 'usr/bin/cos-setup'))).toBe(false);
    // the same root spelled otherwise is still /
    expect(box(...args, '--root', '/tmp/../').code).toBe(2);
    const yes = box(...args, '-y');
    expect(yes.code, yes.err).toBe(0);
    expect(existsSync(path.join(scratch, 'var/lib/cpm/installed'))).toBe(true);
    expect(existsSync(path.join(scratch, 'usr/bin/cos-setup'))).toBe(true);
    // another root needs no -y
    const other = box(...args, '--root', '/srv/r');
    expect(other.code, other.err).toBe(0);
  });
});

/** Node and the libraries it loads, each bound alone: the rest of the box's / stays writable. */
function nodeBinds(): string[] {
  const ldd = spawnSync('ldd', [process.execPath], { encoding: 'utf8' }).stdout;
  const files = [process.execPath, ...(ldd.match(/\/[^\s)]+/g) ?? [])];
  return [...new Set(files)].flatMap((f) => ['--ro-bind', realpathSync(f), f]);
}

function readlinkOr(p: string): string {
  try {
    return path.resolve(path.dirname(p), readlinkSync(p));
  } catch {
    return p;
  }
}

describe('symlink swaps and a crash, through the CLI', () => {
  let template: string;
  beforeAll(() => {
    template = path.join(dir, 'template');
    ok('install', 'system/cos-setup@1.0.0', '--repo', repo, '--root', template, '--no-finalizers');
  });
  const swapped = (name: string, swap: string): { root: string; out: string; before: string } => {
    const root = path.join(dir, name, 'root');
    const out = path.join(dir, name, 'outside');
    mkdirSync(path.dirname(root));
    cpSync(template, root, { recursive: true, verbatimSymlinks: true });
    makeSentinel(out, readFileSync(path.join(template, 'var/lib/cpm/installed'), 'utf8'));
    renameSync(path.join(root, swap), path.join(root, `${swap}.orig`));
    symlinkSync(out, path.join(root, swap));
    return { root, out, before: sentinelSnapshot(out) };
  };
  const r = (root: string, ...args: string[]): ReturnType<typeof cpm> =>
    cpm(...args, '--root', root, '--no-finalizers', '-y');

  it('usr → outside: reinstall, upgrade, uninstall touch nothing outside', () => {
    for (const [op, ...args] of [
      ['reinstall', 'system/cos-setup', '--repo', repo],
      ['upgrade', '--repo', repo],
      ['uninstall', 'system/cos-setup'],
    ] as string[][]) {
      const c = swapped(`usr-${op}`, 'usr');
      const res = r(c.root, op!, ...args);
      expect(res.err, op).not.toMatch(/internal error/);
      expect(sentinelSnapshot(c.out), op).toBe(c.before);
    }
  });

  it('var → outside: the DB is refused, never read or written there', () => {
    const c = swapped('var', 'var');
    const list = cpm('list', '--installed', '--root', c.root);
    expect(list.code, list.err).toBe(8);
    expect(list.err).toMatch(
      /refusing the database directory .*\/var\/lib\/cpm: \/var is a symlink/,
    );
    const up = r(c.root, 'upgrade', '--repo', repo);
    expect(up.code, up.err + up.out).toBe(8);
    expect(cpm('recover', '--root', c.root).code).toBe(8);
    expect(sentinelSnapshot(c.out)).toBe(c.before);
  });

  it('crash mid-upgrade (CPM_FAULT_AT): a swap makes recover refuse; the moved root recovers', () => {
    // learn how many operations the upgrade has, then kill it in the middle of its renames
    const total = faultPoints(template, 'probe');
    const crashed = path.join(dir, 'crashed', 'root');
    mkdirSync(path.dirname(crashed));
    cpSync(template, crashed, { recursive: true, verbatimSymlinks: true });
    const kill = upgrade(crashed, { CPM_FAULT_AT: String(total - 4) });
    expect(kill.signal).toBe('SIGKILL');
    expect(existsSync(path.join(crashed, 'var/lib/cpm/journal'))).toBe(true);

    // usr swapped for a symlink to outside: recover refuses to work through it
    const out = path.join(dir, 'crashed', 'outside');
    makeSentinel(out, 'x');
    const before = sentinelSnapshot(out);
    renameSync(path.join(crashed, 'usr'), path.join(crashed, 'usr.orig'));
    symlinkSync(out, path.join(crashed, 'usr'));
    const refused = cpm('recover', '--root', crashed);
    expect(refused.code, refused.err).toBe(8);
    expect(refused.err).toMatch(/refusing to work through .*: \/usr is a symlink/);
    expect(sentinelSnapshot(out)).toBe(before);

    // restored, and the root moved elsewhere: recover there brings one consistent state
    rmSync(path.join(crashed, 'usr'));
    renameSync(path.join(crashed, 'usr.orig'), path.join(crashed, 'usr'));
    const moved = path.join(dir, 'moved-root');
    renameSync(crashed, moved);
    const rec = cpm('recover', '--root', moved);
    expect(rec.code, rec.err).toBe(0);
    expect(rec.out).toMatch(/^(rolled back|finished) an interrupted transaction/m);
    expect(cpm('verify', '--root', moved).code).toBe(0);
    expect(existsSync(path.join(moved, '.cpm-tx'))).toBe(false);
    expect(ok('recover', '--root', moved)).toBe('nothing to recover\n');
    expect(sentinelSnapshot(out)).toBe(before);
  });

  it('a garbage or {} journal: named, with the way out, not an internal error', () => {
    for (const text of ['garbage\n', '{}']) {
      const root = path.join(dir, `j-${text.length}`);
      cpSync(template, root, { recursive: true, verbatimSymlinks: true });
      writeFileSync(path.join(root, 'var/lib/cpm/journal'), text);
      for (const args of [['recover'], ['upgrade', '--repo', repo, '-y', '--no-finalizers']]) {
        const res = cpm(...args, '--root', root);
        expect(res.code, res.err).toBe(10);
        expect(res.err).toContain(`${root}/var/lib/cpm/journal: unusable transaction journal`);
        expect(res.err).toMatch(/^hint: .*cpm recover --root .*cpm reclaim --root/m);
      }
    }
  });
});

describe('image and verify on a root a SIGKILLed transaction left behind', () => {
  const listTar = (f: string): string => spawnSync('tar', ['tvf', f], { encoding: 'utf8' }).stdout;
  it('refuse until cpm recover; then no .cpm-tx or lock in the image', () => {
    const root = path.join(dir, 'killed');
    ok('install', 'system/cos-setup@1.0.0', '--repo', repo, '--root', root, '--no-finalizers');
    const total = faultPoints(root, 'killed-probe');
    for (const at of ['3', String(total - 4)]) {
      // 3: killed while staging (stage dir and lock left, no journal); then mid-commit
      const kill = upgrade(root, { CPM_FAULT_AT: at });
      expect(kill.signal, kill.stderr).toBe('SIGKILL');
      expect(existsSync(path.join(root, '.cpm-tx'))).toBe(true);
      expect(existsSync(path.join(root, 'var/lib/cpm/lock'))).toBe(true);
      for (const args of [
        ['image', 'tar', '--root', root, '-o', `${dir}/k.tar`],
        ['image', 'squashfs', '--root', root, '-o', `${dir}/k.sqfs`],
        ['verify', '--root', root],
      ]) {
        const res = cpm(...args);
        expect(res.code, `${args[0]} ${args[1]}: ${res.err}`).toBe(9);
        expect(res.err).toMatch(/has an unfinished transaction \(left: lock of pid \d+/);
        expect(res.err).toContain(`hint: run cpm recover --root ${root} first`);
      }
      expect(existsSync(`${dir}/k.tar`)).toBe(false);
      expect(cpm('recover', '--root', root).code).toBe(0);
    }
    ok('image', 'tar', '--root', root, '-o', `${dir}/k.tar`);
    const names = listTar(`${dir}/k.tar`);
    expect(names).toContain('usr/bin/cos-setup');
    expect(names).not.toMatch(/\.cpm-tx|var\/lib\/cpm\/(lock|journal)/);
    const sq = cpm('image', 'squashfs', '--root', root, '-o', `${dir}/k.sqfs`);
    if (sq.code === 0 && spawnSync('unsquashfs', ['-help']).error === undefined) {
      const l = spawnSync('unsquashfs', ['-lln', `${dir}/k.sqfs`], { encoding: 'utf8' }).stdout;
      expect(l).toContain('usr/bin/cos-setup');
      expect(l).not.toMatch(/\.cpm-tx|var\/lib\/cpm\/(lock|journal)/);
    }
  });
});
