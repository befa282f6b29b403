/**
 * Paths as users type them (node bin/cpm.js): relative --root and --db-dir in `cpm image`, which
 * once joined the root onto the DB path twice and packed a root without its DB.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { PROJECT } from '../install/base-images.js';
import { tmpDir } from '../install/helpers.js';
import { requireBuild, runCpm, type CliResult } from '../support/cli.js';

let work: string;
let env: NodeJS.ProcessEnv;

const cpm = (...args: string[]): Promise<CliResult> => runCpm(args, { env, cwd: work });

beforeAll(async () => {
  requireBuild();
  work = tmpDir('cpm-paths-');
  env = { ...process.env, CPM_CONFIG: path.join(work, 'cpm.yaml'), SOURCE_DATE_EPOCH: '0' };
  writeFileSync(env.CPM_CONFIG!, `cache_dir: ${path.join(work, 'cache')}\n`);
  const tree = path.join(PROJECT, 'packages-tree');
  expect((await cpm('repo', 'create', '--tree', tree, '--output', 'dir://repo')).code).toBe(0);
  const i = await cpm(
    'install',
    'system/cos-setup',
    '--repo',
    `dir://${path.join(work, 'repo')}`,
    '--root',
    'root1',
    '-y',
    '--no-finalizers',
  );
  expect(i.code, i.err).toBe(0);
}, 120_000);

describe('relative --root and --db-dir in cpm image', () => {
  it('image oci --root root1: one layer per package and the DB layer, not one unowned layer', async () => {
    const r = await cpm('image', 'oci', '--root', 'root1', '--tag', 'oci:out:1', '--json');
    expect(r.code, r.err).toBe(0);
    const layers = (
      JSON.parse(r.out) as { layers: Array<{ kind: string; package?: string; entries: number }> }
    ).layers;
    expect(layers.map((l) => l.kind)).toContain('db');
    // only the DB's parent directories (/, var, var/lib) belong to no package
    expect(layers.find((l) => l.kind === 'unowned')?.entries ?? 0).toBeLessThanOrEqual(3);
    expect(layers.filter((l) => l.kind === 'package').map((l) => l.package)).toContain(
      'system/cos-setup@1.1.0',
    );
  });

  it('image tar with a relative --db-dir reads the same DB as the default', async () => {
    const a = await cpm('image', 'tar', '--root', 'root1', '-o', 'a.tar', '--json');
    const b = await cpm(
      'image',
      'tar',
      '--root',
      './root1/',
      '--db-dir',
      'root1/var/lib/cpm',
      '-o',
      'b.tar',
      '--json',
    );
    expect(a.code, a.err).toBe(0);
    expect(b.code, b.err).toBe(0);
    const { readFileSync } = await import('node:fs');
    expect(
      readFileSync(path.join(work, 'a.tar')).equals(readFileSync(path.join(work, 'b.tar'))),
    ).toBe(true);
    const bad = await cpm('image', 'tar', '--root', 'root1', '--db-dir', 'nodb', '-o', 'c.tar');
    // a DB dir that is not there: the root is packed as files on disk, or refused — never another DB
    expect(bad.code === 0 || bad.code > 1).toBe(true);
  });
});
