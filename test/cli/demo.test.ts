/**
 * The README's main command: `cpm demo` builds packages-tree/ into a dir:// repository, installs
 * system/cos-setup into a fresh root, verifies it and writes a squashfs image — real tools only.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, promises as fsp, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { SQUASHFS_TOOLS } from '../../src/demo.js';
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

/** PATH as this machine has it, minus the squashfs tools (a fresh machine without them). */
async function pathWithoutSquashfs(): Promise<string> {
  const bin = await tempDir('cpm-nosquash-');
  const hidden = new Set([...SQUASHFS_TOOLS, 'sqfs2tar', 'rdsquashfs', 'unsquashfs']);
  for (const dir of (process.env.PATH ?? '').split(':')) {
    if (!dir) continue;
    let names: string[];
    try {
      names = await fsp.readdir(dir);
    } catch {
      continue;
    }
    for (const n of names) {
      if (hidden.has(n)) continue;
      await fsp.symlink(path.join(dir, n), path.join(bin, n)).catch(() => undefined);
    }
  }
  return bin;
}

describe('cpm demo on a machine without squashfs tools', () => {
  it('finishes with a tar image and says what it skipped and how to get it', async () => {
    const out = await tempDir('cpm-demo-');
    const bin = await pathWithoutSquashfs();
    const env = { ...process.env, PATH: bin };
    for (const t of SQUASHFS_TOOLS) {
      const w = spawnSync('sh', ['-c', `command -v ${t}`], { env, encoding: 'utf8' });
      expect(w.stdout, t).toBe('');
    }
    const human = spawnSync(process.execPath, [cpm, 'demo', '--out', out], {
      encoding: 'utf8',
      env,
    });
    expect(human.status, human.stderr).toBe(0);
    expect(human.stdout).toContain('4/4 image tar');
    expect(human.stdout).toMatch(
      /skipped {5}image squashfs: none of gensquashfs, tar2sqfs, mksquashfs is installed\n {12}hint: apt-get install squashfs-tools-ng \(.*scripts\/setup-debian\.sh/,
    );
    expect(existsSync(path.join(out, 'rootfs.squashfs'))).toBe(false);

    const j = spawnSync(process.execPath, [cpm, 'demo', '--out', out, '--json'], {
      encoding: 'utf8',
      env,
    });
    expect(j.status, j.stderr).toBe(0);
    const r = JSON.parse(j.stdout) as {
      image: string;
      squashfs: unknown;
      tar: { output: string; entries: number };
      skipped: Array<{ step: string; reason: string; hint: string }>;
      installed: string[];
    };
    expect(r.squashfs).toBeNull();
    expect(r.image).toBe(path.join(out, 'rootfs.tar'));
    expect(r.tar.output).toBe(r.image);
    expect(r.skipped.map((s) => s.step)).toContain('image squashfs');
    expect(r.installed).toContain('system/cos-setup@1.1.0');
    // the system's tar reads it: cos-setup's files, owned by root though the install was not
    const tv = spawnSync('tar', ['tvf', r.image, '--numeric-owner'], { encoding: 'utf8' });
    expect(tv.status, tv.stderr).toBe(0);
    const lines = tv.stdout.trim().split('\n');
    expect(lines.length).toBe(r.tar.entries);
    expect(lines.some((l) => l.includes('var/lib/cpm/installed'))).toBe(true);
    for (const l of lines) expect(l.split(/\s+/)[1], l).toBe('0/0');
    await fsp.rm(out, { recursive: true, force: true });
    await fsp.rm(bin, { recursive: true, force: true });
  });
});
