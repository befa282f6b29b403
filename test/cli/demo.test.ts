/**
 * The README's main command: `cpm demo` builds packages-tree/ into a dir:// repository, installs
 * system/cos-setup into a fresh root, verifies it and writes a squashfs image — real tools only.
 */
import { spawnSync } from 'node:child_process';
import { promises as fsp, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { InstalledDb } from '../../src/rootfs/db.js';
import { tempDir } from '../support/layers.js';

const project = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const cpm = path.join(project, 'bin', 'cpm.js');

function demo(out: string, extra: string[] = [], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, [cpm, 'demo', '--out', out, '--json', ...extra], {
    encoding: 'utf8',
    env: { ...process.env, ...env },
  });
  expect(r.status, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as {
    root: string;
    dbDir: string;
    image: string;
    installed: string[];
    finalizers: string;
    repo: { packages: number; packed: string[]; reused: string[]; metaOnly: string[] };
    verify: { checked: number; problems: unknown[] };
  };
}

describe('cpm demo', () => {
  it('repo → install → verify → squashfs, incremental and reproducible', async () => {
    const out = await tempDir('cpm-demo-');
    const env = { SOURCE_DATE_EPOCH: '1700000000' };
    const first = demo(out, [], env);
    expect(first.installed).toContain('system/cos-setup@1.1.0');
    expect(first.installed).toContain('system/base-config@1.1.0');
    expect(first.repo.packed.length).toBeGreaterThan(10);
    expect(first.repo.metaOnly).toContain('meta/cos-minimal@1.0.0');
    expect(first.verify.problems).toEqual([]);
    expect(first.finalizers).toMatch(/^skipped: the root has no shell/);

    // every file the DB records for cos-setup is in the image, owned by root (the install was not)
    const db = InstalledDb.load(first.dbDir);
    const setup = db.get('system/cos-setup@1.1.0')!;
    const ls = spawnSync('unsquashfs', ['-lln', first.image], { encoding: 'utf8' });
    expect(ls.status, ls.stderr).toBe(0);
    const listed = new Map<string, string>();
    for (const line of ls.stdout.split('\n')) {
      const m = /^(\S+) (\d+\/\d+)\s+\S+\s+\S+ \S+ squashfs-root\/(.*?)(?: -> .*)?$/.exec(line);
      if (m) listed.set(m[3]!, m[2]!);
    }
    const files = setup.files.filter((f) => f.type === 'f');
    expect(files.length).toBeGreaterThan(5);
    for (const f of files) expect(listed.get(f.path), f.path).toBe(`${f.uid}/${f.gid}`);
    expect(files.every((f) => f.uid === 0)).toBe(true);

    // second run: nothing re-packed, a fresh root, the same image bytes
    const image1 = readFileSync(first.image);
    const second = demo(out, [], env);
    expect(second.repo.packed).toEqual([]);
    expect(second.repo.reused.length).toBe(first.repo.packed.length);
    expect(readFileSync(second.image).equals(image1)).toBe(true);
    await fsp.rm(out, { recursive: true, force: true });
  });

  it('installs a pinned older version and refuses an unknown package with exit 5', async () => {
    const out = await tempDir('cpm-demo-');
    const r = demo(out, ['system/cos-setup@1.0.0']);
    expect(r.installed).toContain('system/cos-setup@1.0.0');
    const bad = spawnSync(process.execPath, [cpm, 'demo', '--out', out, 'system/cos-setpu'], {
      encoding: 'utf8',
    });
    expect(bad.status).toBe(5);
    expect(bad.stderr).toMatch(/cos-setpu/);
    await fsp.rm(out, { recursive: true, force: true });
  });
});
