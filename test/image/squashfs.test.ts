import { spawnSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CpmError } from '../../src/errors.js';
import { pickBackend, writeSquashfs, type SquashfsBackend } from '../../src/image/squashfs.js';
import { EPOCH, makeFixture, type Expected, type Fixture } from './fixture.js';

interface Listed {
  type: string;
  mode: number;
  uid: number;
  gid: number;
  sizeOrDev: string;
  linkTarget?: string;
}

const TYPE_CHAR: Record<string, Expected['type']> = {
  '-': 'file',
  d: 'dir',
  l: 'symlink',
  c: 'char',
  b: 'block',
  p: 'fifo',
};

/** "-rwsr-x---" → 0o4750 */
function parsePerms(s: string): number {
  let mode = 0;
  const bits = [0o400, 0o200, 0o100, 0o40, 0o20, 0o10, 0o4, 0o2, 0o1];
  for (let i = 0; i < 9; i++) if (!'-ST'.includes(s[i + 1]!)) mode |= bits[i]!;
  if ('sS'.includes(s[3]!)) mode |= 0o4000;
  if ('sS'.includes(s[6]!)) mode |= 0o2000;
  if ('tT'.includes(s[9]!)) mode |= 0o1000;
  return mode;
}

/** `unsquashfs -lln` → path → attributes (paths relative to the image root, "" for the root). */
function listImage(file: string): Map<string, Listed> {
  const r = spawnSync('unsquashfs', ['-lln', file], { encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
  const out = new Map<string, Listed>();
  const re =
    /^(\S{10}) (\d+)\/(\d+)\s+(\d+|\d+,\s*\d+) \d{4}-\d\d-\d\d \d\d:\d\d (squashfs-root.*)$/;
  for (const line of r.stdout.split('\n')) {
    const m = re.exec(line);
    if (!m) continue;
    let name = m[5]!.replace(/^squashfs-root\/?/, '');
    let linkTarget: string | undefined;
    if (m[1]![0] === 'l') [name, linkTarget] = name.split(' -> ') as [string, string];
    out.set(name, {
      type: TYPE_CHAR[m[1]![0]!]!,
      mode: parsePerms(m[1]!),
      uid: Number(m[2]),
      gid: Number(m[3]),
      sizeOrDev: m[4]!.replace(/\s+/g, ''),
      linkTarget,
    });
  }
  return out;
}

const hasTool = (t: string): boolean => spawnSync('sh', ['-c', `command -v ${t}`]).status === 0;

describe('squashfs image', () => {
  let tmp: string;
  let fx: Fixture;

  beforeAll(async () => {
    tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'cpm-image-sqfs-'));
    fx = await makeFixture(tmp);
  });
  afterAll(async () => {
    await fsp.rm(tmp, { recursive: true, force: true });
  });

  const backends: SquashfsBackend[] = ['tar2sqfs', 'mksquashfs-tar', 'mksquashfs-pseudo'];
  describe.each(backends)('%s', (backend) => {
    let image: string;
    const warnings: string[] = [];
    const build = (out: string, epoch = EPOCH) =>
      writeSquashfs(fx.root, out, {
        backend,
        overlay: fx.overlay,
        overlayPaths: fx.overlayPaths,
        excludes: fx.excludes,
        sourceDateEpoch: epoch,
        onWarning: (m) => warnings.push(m),
      });

    beforeAll(async () => {
      image = path.join(tmp, `${backend}.sqfs`);
      const r = await build(image);
      expect(r.backend).toBe(backend);
      expect(r.entries).toBe(fx.expected.size);
    });

    it('lists every file, owner, mode, symlink and device node as the overlay and root say', () => {
      const listed = listImage(image);
      const root = listed.get('')!;
      expect({ mode: root.mode, uid: root.uid, gid: root.gid }).toEqual({
        mode: 0o755,
        uid: 0,
        gid: 0,
      });
      listed.delete('');
      expect([...listed.keys()].sort()).toEqual([...fx.expected.keys()].sort());
      for (const [p, want] of fx.expected) {
        const got = listed.get(p)!;
        // squashfs has no hardlink entry type: both names are the same file.
        const type = want.type === 'hardlink' ? 'file' : want.type;
        expect({ p, type: got.type, mode: got.mode, uid: got.uid, gid: got.gid }).toEqual({
          p,
          type,
          mode: want.mode,
          uid: want.uid,
          gid: want.gid,
        });
        if (want.size !== undefined) expect(got.sizeOrDev).toBe(String(want.size));
        if (want.dev) expect(got.sizeOrDev).toBe(want.dev.join(','));
        if (want.type === 'symlink') expect(got.linkTarget).toBe(want.linkTarget);
      }
    });

    it('is byte-identical when built again from the same root and epoch', async () => {
      const again = path.join(tmp, `${backend}-again.sqfs`);
      await build(again);
      const a = await fsp.readFile(image);
      expect((await fsp.readFile(again)).equals(a)).toBe(true);
      const other = path.join(tmp, `${backend}-other.sqfs`);
      await build(other, EPOCH + 1000);
      expect((await fsp.readFile(other)).equals(a)).toBe(false);
    });

    it('records SOURCE_DATE_EPOCH as the filesystem time', () => {
      const r = spawnSync('unsquashfs', ['-mkfs-time', image], { encoding: 'utf8' });
      expect(r.stdout.trim()).toBe(String(EPOCH));
    });

    it('carries xattrs (the pseudo backend warns that it cannot)', () => {
      if (backend === 'mksquashfs-pseudo') {
        expect(warnings.join('\n')).toContain('cannot carry xattrs: dropped on usr/bin/sudo');
        return;
      }
      const r = spawnSync('rdsquashfs', ['-x', '/usr/bin/sudo', image], { encoding: 'utf8' });
      expect(r.stdout).toContain('security.capability=0x01000002200000000000');
    });
  });

  it('honours compressor and block size', async () => {
    const out = path.join(tmp, 'gzip.sqfs');
    await writeSquashfs(fx.root, out, { comp: 'gzip', blockSize: 65536, sourceDateEpoch: EPOCH });
    const r = spawnSync('unsquashfs', ['-s', out], { encoding: 'utf8' });
    expect(r.stdout).toMatch(/Compression gzip/);
    expect(r.stdout).toMatch(/Block size 65536/);
  });

  it('rejects a bad block size before running any tool', async () => {
    const err = await writeSquashfs(fx.root, path.join(tmp, 'x.sqfs'), { blockSize: 1000 }).catch(
      (e: unknown) => e,
    );
    expect((err as CpmError).code).toBe('E_USAGE');
  });

  it('names the Debian packages when no squashfs tool is installed', () => {
    const saved = process.env.PATH;
    process.env.PATH = path.join(tmp, 'empty-bin');
    try {
      expect(() => pickBackend('auto')).toThrow(CpmError);
      try {
        pickBackend('auto');
      } catch (e) {
        expect((e as CpmError).code).toBe('E_TOOL_MISSING');
        expect((e as CpmError).hint).toContain('squashfs-tools-ng');
        expect((e as CpmError).hint).toContain('squashfs-tools');
      }
    } finally {
      process.env.PATH = saved;
    }
  });

  it('prefers tar2sqfs when it is installed', () => {
    expect(hasTool('tar2sqfs')).toBe(true);
    expect(pickBackend('auto').backend).toBe('tar2sqfs');
  });
});
