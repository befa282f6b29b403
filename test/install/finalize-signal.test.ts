/**
 * A signal while a finalizer runs: the committed transaction stays, the running command is
 * stopped at once (not left to finish), no further finalizer starts, and cpm exits 143 with an
 * "interrupted" line saying the packages are installed and `cpm reinstall` runs the finalizers.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { InstalledDb } from '../../src/rootfs/db.js';
import { PROJECT, shellBaseTar, umociImage } from './base-images.js';
import { tmpDir } from './helpers.js';

const BIN = path.join(PROJECT, 'bin/cpm.js');
let work: string;
let env: NodeJS.ProcessEnv;

function cpmSync(...args: string[]): { code: number; err: string } {
  const r = spawnSync('node', [BIN, ...args], { env, encoding: 'utf8' });
  return { code: r.status ?? -1, err: r.stderr };
}

beforeAll(() => {
  work = tmpDir('cpm-finsig-');
  env = { ...process.env, CPM_CONFIG: path.join(work, 'cpm.yaml') };
  writeFileSync(env.CPM_CONFIG!, `cache_dir: ${path.join(work, 'cache')}\nrepos_confdir: []\n`);
  for (const [name, cmd] of [
    ['a-slow', 'echo started > /started; while :; do :; done'],
    ['b-after', 'echo ran > /after-ran'],
  ] as const) {
    const d = path.join(work, 'tree/test', name);
    mkdirSync(d, { recursive: true });
    writeFileSync(
      path.join(d, 'definition.yaml'),
      `name: ${name}\ncategory: test\nversion: "1.0"\n`,
    );
    writeFileSync(path.join(d, 'finalize.yaml'), `install:\n  - ${JSON.stringify(cmd)}\n`);
  }
  const r = cpmSync(
    'repo',
    'create',
    '--tree',
    path.join(work, 'tree'),
    '--output',
    `dir://${work}/repo`,
  );
  expect(r.code, r.err).toBe(0);
}, 120_000);

describe('a signal while a finalizer runs (CLI)', () => {
  it('stops the finalizer at once and exits 143, the packages stay installed', async () => {
    const root = path.join(work, 'root');
    const base = `oci:${umociImage(path.join(work, 'layout'), 'shell', [shellBaseTar(work)])}`;
    expect(cpmSync('rootfs', 'init', '--from', base, '--root', root).code).toBe(0);
    const child = spawn(
      'node',
      [
        BIN,
        'install',
        'test/a-slow',
        'test/b-after',
        '--repo',
        `dir://${work}/repo`,
        '--root',
        root,
        '-y',
      ],
      { env, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let err = '';
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
    const t0 = Date.now();
    while (!existsSync(path.join(root, 'started'))) {
      if (Date.now() - t0 > 60_000) throw new Error(`finalizer never started: ${err}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const sent = Date.now();
    child.kill('SIGTERM'); // cpm only, as a service manager or `kill` would; not the process group
    const code = await exited;
    expect(code, err).toBe(143);
    expect(Date.now() - sent).toBeLessThan(3_000);
    expect(err).toMatch(
      /interrupted by SIGTERM; the transaction had committed .*finalizers were stopped part-way/,
    );
    expect(existsSync(path.join(root, 'after-ran'))).toBe(false);
    const ids = InstalledDb.load(path.join(root, 'var/lib/cpm'))
      .list()
      .map((p) => p.spec.name);
    expect(ids).toEqual(expect.arrayContaining(['a-slow', 'b-after']));
    // no finalizer left running in the background
    expect(spawnSync('pgrep', ['-f', 'while :; do :; done']).status).not.toBe(0);
  }, 180_000);
});
