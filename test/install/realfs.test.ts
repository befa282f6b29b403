/**
 * Environment faults on real filesystems, through `node bin/cpm.js` as a user meets them: a full
 * disk (a 2 MiB tmpfs) under the root and under the cache, a read-only bind mount, and a non-root
 * user (setpriv) on a root-owned directory. Each must end in its own exit code with the path and a
 * hint — never "internal error", a stack trace, or blame on the package — and leave the root and
 * its DB as they were. Needs root to mount; skipped with the reason otherwise (CI runs as root).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { EXIT_CODES } from '../../src/errors.js';
import { pseudoRandom } from '../support/layers.js';
import { realFsUnavailable, readOnlyBind, tmpfs } from '../support/tmpfs.js';
import { tmpDir } from './helpers.js';

const CPM_BIN = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../../bin/cpm.js');

const why = realFsUnavailable();

let work: string;
let tree: string;

function cpm(
  cfg: string,
  args: string[],
  opts: { asNobody?: boolean; env?: Record<string, string> } = {},
): { code: number; out: string; err: string } {
  const cmd = opts.asNobody
    ? ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', process.execPath]
    : [process.execPath];
  const r = spawnSync(cmd[0]!, [...cmd.slice(1), CPM_BIN, ...args], {
    encoding: 'utf8',
    env: { ...process.env, CPM_CONFIG: cfg, HOME: work, ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return { code: r.status ?? -1, out: r.stdout, err: r.stderr };
}

function config(name: string, cacheDir: string): string {
  const f = path.join(work, `${name}.yaml`);
  writeFileSync(f, `cache_dir: ${cacheDir}\nrepos_confdir: []\n`);
  chmodSync(f, 0o644);
  return f;
}

/** An environment error as a user must see it: own exit code, path, hint, nothing else. */
function expectEnvError(
  r: { code: number; err: string },
  code: keyof typeof EXIT_CODES,
  text: RegExp,
): void {
  expect(r.err, r.err).toMatch(text);
  expect(r.code, r.err).toBe(EXIT_CODES[code]);
  expect(r.err).toMatch(/\nhint: /);
  expect(r.err).not.toMatch(/internal error|malformed or hostile|reachable|\n\s+at /);
}

function dbText(root: string): string | null {
  const f = path.join(root, 'var/lib/cpm/installed');
  return existsSync(f) ? readFileSync(f, 'utf8') : null;
}

beforeAll(() => {
  if (why) return;
  work = tmpDir('cpm-realfs-');
  chmodSync(work, 0o755);
  tree = path.join(work, 'tree');
  const pkg = (name: string, files: Record<string, Buffer | string>): void => {
    const d = path.join(tree, 'test', name, '1.0');
    mkdirSync(d, { recursive: true });
    writeFileSync(
      path.join(d, 'definition.yaml'),
      `name: ${name}\ncategory: test\nversion: "1.0"\n`,
    );
    for (const [rel, c] of Object.entries(files)) {
      mkdirSync(path.dirname(path.join(d, 'root', rel)), { recursive: true });
      writeFileSync(path.join(d, 'root', rel), c);
    }
  };
  // incompressible, so neither the cache nor the root on a 2 MiB tmpfs can hold it
  pkg('big', { 'usr/share/big/blob': pseudoRandom(3 << 20, 7) });
  pkg('small', { 'etc/small.conf': 'small\n' });
  const many: Record<string, Buffer> = {};
  for (let i = 0; i < 40; i++) many[`usr/share/many/d${i % 4}/f${i}`] = pseudoRandom(64 << 10, i);
  pkg('many', many);
  pkg('other', { 'etc/other.conf': 'other\n' });
  execFileSync('chmod', ['-R', 'a+rX', work]);
});

describe.skipIf(why !== '')('real filesystem faults (CLI)', () => {
  it('ENOSPC under the root: exit 14, the root and DB unchanged, the next run works', () => {
    const cfg = config('root-full', path.join(work, 'cache'));
    const disk = tmpfs('2m');
    const root = path.join(disk, 'root');
    expect(cpm(cfg, ['install', 'test/small', '--tree', tree, '--root', root, '-q']).code).toBe(0);
    const before = dbText(root);
    const r = cpm(cfg, ['install', 'test/big', '--tree', tree, '--root', root, '-q']);
    expectEnvError(r, 'E_NO_SPACE', /no space left on device \(ENOSPC\)/);
    expect(r.err).toContain(root);
    expect(dbText(root)).toBe(before);
    expect(existsSync(path.join(root, '.cpm-tx'))).toBe(false);
    expect(existsSync(path.join(root, 'usr/share/big'))).toBe(false);
    expect(cpm(cfg, ['verify', '--root', root]).code).toBe(0);
    // space is there again for a small package: the same root takes it
    expect(cpm(cfg, ['install', 'test/other', '--tree', tree, '--root', root, '-q']).code).toBe(0);
    expect(readFileSync(path.join(root, 'etc/other.conf'), 'utf8')).toBe('other\n');
  });

  it('ENOSPC under a new root (fresh-root mode, no stage): exit 14, the root left empty', () => {
    const cfg = config('fresh-full', path.join(work, 'cache'));
    const disk = tmpfs('2m');
    const root = path.join(disk, 'root');
    // many files through the writer thread, then one too large for what is left
    const r = cpm(cfg, ['install', 'test/many', '--tree', tree, '--root', root, '-q'], {
      env: { CPM_STAGE_WORKER_AFTER: '0' },
    });
    expectEnvError(r, 'E_NO_SPACE', /no space left on device \(ENOSPC\)/);
    expect(r.err).toContain(root);
    // the writer thread's error names the package and layer its file came from
    expect(r.err).toMatch(/writing a file of test\/many@\S+ \(layer sha256:[0-9a-f]{64}\) at /);
    const left = execFileSync('find', [root, '-mindepth', '1'], { encoding: 'utf8' });
    expect(left.trim().split('\n').sort()).toEqual(
      ['var', 'var/lib', 'var/lib/cpm'].map((p) => path.join(root, p)),
    );
    expect(cpm(cfg, ['install', 'test/small', '--tree', tree, '--root', root, '-q']).code).toBe(0);
    expect(readFileSync(path.join(root, 'etc/small.conf'), 'utf8')).toBe('small\n');
  });

  it('ENOSPC in the cache: exit 14 with a cache hint, not a network one', () => {
    const disk = tmpfs('2m');
    const cfg = config('cache-full', path.join(disk, 'cache'));
    const root = path.join(work, 'root-cache-full');
    const r = cpm(cfg, ['install', 'test/big', '--tree', tree, '--root', root, '-q']);
    expectEnvError(r, 'E_NO_SPACE', /no space left on device \(ENOSPC\)/);
    expect(r.err).toContain('cache');
    expect(r.err).toMatch(/hint: .*cache/);
    expect(dbText(root)).toBe(null);
  });

  it('EROFS: a root on a read-only mount is refused with exit 15, install and uninstall', () => {
    const cfg = config('ro', path.join(work, 'cache'));
    const dir = path.join(work, 'ro');
    const root = path.join(dir, 'root');
    expect(cpm(cfg, ['install', 'test/small', '--tree', tree, '--root', root, '-q']).code).toBe(0);
    const before = dbText(root);
    readOnlyBind(dir);
    for (const args of [
      ['install', 'test/other', '--tree', tree],
      ['uninstall', 'test/small'],
    ]) {
      const r = cpm(cfg, [...args, '--root', root, '-q']);
      expectEnvError(r, 'E_READ_ONLY', /read-only file system \(EROFS\)/);
      expect(r.err).toContain(root);
    }
    expect(dbText(root)).toBe(before);
    expect(cpm(cfg, ['list', '--installed', '--root', root]).out).toContain('test/small@1.0');
  });

  it('EACCES: a non-root user on a root-owned root gets exit 16 and what to do', () => {
    const cache = path.join(work, 'cache-nobody');
    mkdirSync(cache, { recursive: true });
    chmodSync(cache, 0o777);
    const cfg = config('nobody', cache);
    const parent = path.join(work, 'owned-by-root');
    mkdirSync(parent, { mode: 0o755 });
    const root = path.join(parent, 'root');
    const r = cpm(cfg, ['install', 'test/small', '--tree', tree, '--root', root, '-q'], {
      asNobody: true,
    });
    expectEnvError(r, 'E_PERMISSION', /permission denied \(EACCES\)/);
    expect(r.err).toContain(root);
    expect(r.err).toMatch(/hint: run cpm as root/);
  });
});
