import { spawnSync } from 'node:child_process';
import { lstatSync, promises as fsp, readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { CpmError } from '../../src/errors.js';
import {
  pickBackend,
  writeSquashfs,
  type SquashfsBackend,
  type SquashfsResult,
} from '../../src/image/squashfs.js';
import type { MetadataOverlay } from '../../src/image/meta.js';
import { EPOCH, makeFixture, type Expected, type Fixture } from './fixture.js';

interface Listed {
  type: string;
  mode: number;
  uid: number;
  gid: number;
  sizeOrDev: string;
  /** "YYYY-MM-DD HH:MM" in UTC. */
  time: string;
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
  const r = spawnSync('unsquashfs', ['-lln', file], {
    encoding: 'utf8',
    env: { ...process.env, TZ: 'UTC' },
  });
  expect(r.status, r.stderr).toBe(0);
  const out = new Map<string, Listed>();
  const re =
    /^(\S{10}) (\d+)\/(\d+)\s+(\d+|\d+,\s*\d+) (\d{4}-\d\d-\d\d \d\d:\d\d) (squashfs-root.*)$/;
  for (const line of r.stdout.split('\n')) {
    const m = re.exec(line);
    if (!m) continue;
    let name = m[6]!.replace(/^squashfs-root\/?/, '');
    let linkTarget: string | undefined;
    if (m[1]![0] === 'l') [name, linkTarget] = name.split(' -> ') as [string, string];
    out.set(name, {
      type: TYPE_CHAR[m[1]![0]!]!,
      mode: parsePerms(m[1]!),
      uid: Number(m[2]),
      gid: Number(m[3]),
      sizeOrDev: m[4]!.replace(/\s+/g, ''),
      time: m[5]!,
      linkTarget,
    });
  }
  return out;
}

const hasTool = (t: string): boolean => spawnSync('sh', ['-c', `command -v ${t}`]).status === 0;

/** The fixture's overlay without xattrs: a pack file (gensquashfs) cannot carry them. */
function withoutXattrs(overlay: MetadataOverlay): MetadataOverlay {
  return (rel) => {
    const m = overlay(rel);
    if (!m) return m;
    const { xattrs: _x, ...rest } = m;
    return rest;
  };
}

/** "YYYY-MM-DD HH:MM" (UTC) of seconds, as unsquashfs lists it with TZ=UTC. */
const listedTime = (s: number): string =>
  new Date(s * 1000).toISOString().slice(0, 16).replace('T', ' ');

/** The image shows every path, type, owner, mode, size, device and link target of the fixture. */
function expectFixtureListing(
  image: string,
  fx: Fixture,
  fixedMtime?: number,
): Map<string, Listed> {
  const listed = listImage(image);
  const root = listed.get('')!;
  expect({ mode: root.mode, uid: root.uid, gid: root.gid }).toEqual({
    mode: 0o755,
    uid: 0,
    gid: 0,
  });
  expect([...listed.keys()].sort()).toEqual(['', ...fx.expected.keys()].sort());
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
  if (fixedMtime !== undefined) {
    for (const [p, got] of listed)
      expect({ p, time: got.time }).toEqual({ p, time: listedTime(fixedMtime) });
  }
  return listed;
}

/** Inode number and link count of a path in an image (rdsquashfs -s). */
function inodeOf(image: string, p: string): { inode: string; links: string } {
  const r = spawnSync('rdsquashfs', ['-s', p, image], { encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
  return {
    inode: /Inode number: (\d+)/.exec(r.stdout)![1]!,
    links: /Hard link count: (\d+)/.exec(r.stdout)![1]!,
  };
}

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

  // Per-entry mtimes and xattrs: everything but gensquashfs (see the fixed-mtime suite below).
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
      const listed = expectFixtureListing(image, fx);
      // An old mtime stays, a new one is clamped to the epoch.
      expect(listed.get('etc/hostname')!.time).toBe(listedTime(1_000_000_000));
      expect(listed.get('usr/bin/sudo')!.time).toBe(listedTime(EPOCH));
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

  // One mtime for every entry (--fixed-mtime), no xattrs: what a gensquashfs pack file can say.
  const allBackends: SquashfsBackend[] = ['gensquashfs', ...backends];
  describe.each(allBackends)('%s with a fixed mtime', (backend) => {
    let image: string;
    const build = (out: string, epoch = EPOCH) =>
      writeSquashfs(fx.root, out, {
        backend,
        overlay: withoutXattrs(fx.overlay),
        overlayPaths: fx.overlayPaths,
        excludes: fx.excludes,
        sourceDateEpoch: epoch,
        fixedMtime: epoch,
      });

    beforeAll(async () => {
      image = path.join(tmp, `fixed-${backend}.sqfs`);
      const r = await build(image);
      expect(r.backend).toBe(backend);
      expect(r.entries).toBe(fx.expected.size);
    });

    it('lists the fixture with every mtime at the epoch, hardlinks as one inode', () => {
      expectFixtureListing(image, fx, EPOCH);
      const a = inodeOf(image, '/usr/bin/tool');
      expect(inodeOf(image, '/usr/bin/tool-alias')).toEqual(a);
      expect(a.links).toBe('2');
    });

    it('is byte-identical when built again, and records the epoch as filesystem time', async () => {
      const again = path.join(tmp, `fixed-${backend}-again.sqfs`);
      await build(again);
      const a = await fsp.readFile(image);
      expect((await fsp.readFile(again)).equals(a)).toBe(true);
      const other = path.join(tmp, `fixed-${backend}-other.sqfs`);
      await build(other, EPOCH + 1000);
      expect((await fsp.readFile(other)).equals(a)).toBe(false);
      const r = spawnSync('unsquashfs', ['-mkfs-time', image], { encoding: 'utf8' });
      expect(r.stdout.trim()).toBe(String(EPOCH));
    });

    it('lists the same entries, owners, modes, sizes and times as the gensquashfs image', () => {
      const gen = path.join(tmp, 'fixed-gensquashfs.sqfs');
      expect(listImage(image)).toEqual(listImage(gen));
      // tar2sqfs builds the very same image from the tar stream.
      if (backend === 'tar2sqfs') {
        expect(readFileSync(image).equals(readFileSync(gen))).toBe(true);
      }
    });
  });

  describe('gensquashfs', () => {
    it('is refused when asked for by name and an entry keeps its own mtime', async () => {
      const err = await writeSquashfs(fx.root, path.join(tmp, 'g1.sqfs'), {
        backend: 'gensquashfs',
        overlay: withoutXattrs(fx.overlay),
        overlayPaths: fx.overlayPaths,
        excludes: fx.excludes,
        sourceDateEpoch: EPOCH,
      }).catch((e: unknown) => e);
      expect((err as CpmError).code).toBe('E_IMAGE');
      expect((err as CpmError).message).toContain('etc/hostname has its own mtime');
      expect((err as CpmError).hint).toContain('--fixed-mtime');
    });

    it('is refused for xattrs, from the overlay or from the disk', async () => {
      const err = await writeSquashfs(fx.root, path.join(tmp, 'g2.sqfs'), {
        backend: 'gensquashfs',
        overlay: fx.overlay,
        overlayPaths: fx.overlayPaths,
        excludes: fx.excludes,
        sourceDateEpoch: EPOCH,
        fixedMtime: EPOCH,
      }).catch((e: unknown) => e);
      expect((err as CpmError).message).toContain('usr/bin/sudo has xattrs');
      const dir = path.join(tmp, 'xattr-root');
      await fsp.mkdir(path.join(dir, 'bin'), { recursive: true });
      await fsp.writeFile(path.join(dir, 'bin/ping'), 'x');
      const set = spawnSync('setfattr', [
        '-n',
        'user.cpm',
        '-v',
        'yes',
        path.join(dir, 'bin/ping'),
      ]);
      expect(set.status, String(set.stderr)).toBe(0);
      const opts = { sourceDateEpoch: EPOCH, fixedMtime: EPOCH };
      const err2 = await writeSquashfs(dir, path.join(tmp, 'g3.sqfs'), {
        ...opts,
        backend: 'gensquashfs',
      }).catch((e: unknown) => e);
      expect((err2 as CpmError).message).toContain('bin/ping has xattrs');
      // Excluded, the file's xattrs do not matter; without xattrs the pack file is exact.
      const r = await writeSquashfs(dir, path.join(tmp, 'g4.sqfs'), {
        ...opts,
        backend: 'gensquashfs',
        excludes: ['/bin/ping'],
      });
      expect(r.backend).toBe('gensquashfs');
      const r2 = await writeSquashfs(dir, path.join(tmp, 'g5.sqfs'), { ...opts, xattrs: false });
      expect(r2.backend).toBe('gensquashfs');
    });

    it("'auto' goes to tar2sqfs when no tool reading the files itself can be exact", async () => {
      // Excludes: mksquashfs-dir is not even tried; no fixed mtime: nor is gensquashfs.
      const r = await writeSquashfs(fx.root, path.join(tmp, 'auto.sqfs'), {
        overlay: fx.overlay,
        overlayPaths: fx.overlayPaths,
        excludes: fx.excludes,
        sourceDateEpoch: EPOCH,
      });
      expect(r.backend).toBe('tar2sqfs');
      expect(r.skipped).toBeUndefined();
      // The same image the tar2sqfs backend builds.
      expect(readFileSync(r.output).equals(readFileSync(path.join(tmp, 'tar2sqfs.sqfs')))).toBe(
        true,
      );
      // Without excludes mksquashfs-dir starts, and is stopped where the records differ from disk.
      const r2 = await writeSquashfs(fx.root, path.join(tmp, 'auto2.sqfs'), {
        overlay: fx.overlay,
        overlayPaths: fx.overlayPaths,
        sourceDateEpoch: EPOCH,
      });
      expect(r2.backend).toBe('tar2sqfs');
      expect(r2.skipped).toMatch(/^mksquashfs-dir: .*(differs on disk|only in the records)/);
      // With --fixed-mtime gensquashfs is tried first, and says why not.
      const r3 = await writeSquashfs(fx.root, path.join(tmp, 'auto3.sqfs'), {
        overlay: fx.overlay,
        overlayPaths: fx.overlayPaths,
        excludes: fx.excludes,
        sourceDateEpoch: EPOCH,
        fixedMtime: EPOCH,
      });
      expect(r3.backend).toBe('tar2sqfs');
      expect(r3.skipped).toContain('gensquashfs: usr/bin/sudo has xattrs');
    });

    it('reports the tool failing before it reads the pack file, and a walk error, leaving no image', async () => {
      const opts = { backend: 'gensquashfs' as const, sourceDateEpoch: EPOCH, fixedMtime: EPOCH };
      const e1 = await writeSquashfs(fx.root, path.join(tmp, 'no-such-dir', 'x.sqfs'), {
        ...opts,
        xattrs: false,
      }).catch((e: unknown) => e);
      expect((e1 as CpmError).code).toBe('E_IMAGE');
      expect((e1 as CpmError).message).toContain('gensquashfs failed');
      // The overlay records a regular file the disk lacks: the walk fails half-way.
      const out = path.join(tmp, 'walk-error.sqfs');
      const records = new Map([
        ['usr/bin/gone', { type: 'file' as const, uid: 0, gid: 0, mode: 0o755 }],
      ]);
      const e2 = await writeSquashfs(fx.root, out, {
        ...opts,
        overlay: (rel) => records.get(rel),
        overlayPaths: ['usr/bin/gone'],
        excludes: fx.excludes,
      }).catch((e: unknown) => e);
      expect((e2 as CpmError).message).toContain('usr/bin/gone is a regular file in the overlay');
      await expect(fsp.stat(out)).rejects.toThrow(/ENOENT/);
    });

    it('quotes names with spaces, quotes and backslashes; a line break falls back', async () => {
      const dir = path.join(tmp, 'names-root');
      const odd = [
        'sp ace',
        ' lead',
        'trail ',
        'q"uote',
        "apo'strophe",
        'back\\slash',
        '#hash',
        'tab\tx',
      ];
      await fsp.mkdir(path.join(dir, 'd ir'), { recursive: true });
      for (const n of odd) await fsp.writeFile(path.join(dir, 'd ir', n), n);
      await fsp.symlink('target with "quotes" \\ ', path.join(dir, 'd ir', 'link'));
      await fsp.link(path.join(dir, 'd ir', ' lead'), path.join(dir, 'hard " link'));
      const opts = { sourceDateEpoch: EPOCH, fixedMtime: EPOCH };
      const gen = await writeSquashfs(dir, path.join(tmp, 'names-gen.sqfs'), {
        ...opts,
        backend: 'gensquashfs',
      });
      const tar = await writeSquashfs(dir, path.join(tmp, 'names-tar.sqfs'), {
        ...opts,
        backend: 'tar2sqfs',
      });
      expect(gen.entries).toBe(odd.length + 3);
      const listed = listImage(gen.output);
      expect([...listed.keys()].sort()).toEqual(
        ['', 'd ir', 'd ir/link', 'hard " link', ...odd.map((n) => `d ir/${n}`)].sort(),
      );
      expect(listed).toEqual(listImage(tar.output));
      expect(readFileSync(gen.output).equals(readFileSync(tar.output))).toBe(true);
      expect(inodeOf(gen.output, '/hard " link')).toEqual(inodeOf(gen.output, '/d ir/ lead'));

      await fsp.writeFile(path.join(dir, 'd ir', 'new\nline'), 'x');
      // The disk is exact (no records, no excludes), so mksquashfs reading it takes over.
      const auto = await writeSquashfs(dir, path.join(tmp, 'names-auto.sqfs'), opts);
      expect(auto.backend).toBe('mksquashfs-dir');
      expect(auto.skipped).toContain('line break');
      await fsp.rm(path.join(dir, 'd ir', 'new\nline'));
      // A symlink target a pack file cannot hold (leading blank) falls back too.
      await fsp.symlink(' lead', path.join(dir, 'lead-link'));
      const auto2 = await writeSquashfs(dir, path.join(tmp, 'names-auto2.sqfs'), {
        ...opts,
        excludes: ['/nothing-here'],
      });
      expect(auto2.backend).toBe('tar2sqfs');
      expect(auto2.skipped).toContain('symlink lead-link');
    });
  });

  it('cpm image squashfs --fixed-mtime uses gensquashfs; without it, mksquashfs reads the root', async () => {
    const { main } = await import('../../src/cli/main.js');
    const run = async (...extra: string[]): Promise<SquashfsResult> => {
      const out: string[] = [];
      const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => {
        out.push(String(chunk));
        return true;
      });
      const saved = process.env.SOURCE_DATE_EPOCH;
      process.env.SOURCE_DATE_EPOCH = String(EPOCH);
      try {
        const args = ['image', 'squashfs', '--root', fx.root, '--db-dir', path.join(tmp, 'no-db')];
        const code = await main([...args, '--no-xattrs', '--json', ...extra]);
        expect(code, out.join('')).toBe(0);
      } finally {
        spy.mockRestore();
        if (saved === undefined) delete process.env.SOURCE_DATE_EPOCH;
        else process.env.SOURCE_DATE_EPOCH = saved;
      }
      return JSON.parse(out.join('')) as SquashfsResult;
    };
    const fixed = await run('-o', path.join(tmp, 'cli-fixed.sqfs'), '--fixed-mtime');
    expect(fixed.backend).toBe('gensquashfs');
    for (const [p, got] of listImage(fixed.output)) {
      expect({ p, time: got.time }).toEqual({ p, time: listedTime(EPOCH) });
    }
    // No records (no DB) and no excludes: the disk is the truth, and mksquashfs reads it.
    const kept = await run('-o', path.join(tmp, 'cli-kept.sqfs'));
    expect(kept.backend).toBe('mksquashfs-dir');
    expect(kept.skipped).toBeUndefined();
    const listed = listImage(kept.output);
    expect(listed.get('etc/hostname')!.time).toBe(listedTime(1_000_000_000));
    expect(listed.get('usr/bin/sudo')!.time).toBe(listedTime(EPOCH));
  });

  it('honours compressor and block size', async () => {
    const out = path.join(tmp, 'gzip.sqfs');
    await writeSquashfs(fx.root, out, { comp: 'gzip', blockSize: 65536, sourceDateEpoch: EPOCH });
    const r = spawnSync('unsquashfs', ['-s', out], { encoding: 'utf8' });
    expect(r.stdout).toMatch(/Compression gzip/);
    expect(r.stdout).toMatch(/Block size 65536/);
  });

  it('honours compressor and block size with gensquashfs', async () => {
    const out = path.join(tmp, 'gzip-gen.sqfs');
    const r0 = await writeSquashfs(fx.root, out, {
      backend: 'gensquashfs',
      comp: 'gzip',
      blockSize: 65536,
      sourceDateEpoch: EPOCH,
      fixedMtime: EPOCH,
      xattrs: false,
    });
    expect(r0.backend).toBe('gensquashfs');
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

  it('prefers gensquashfs, then tar2sqfs, when they are installed', () => {
    expect(hasTool('gensquashfs')).toBe(true);
    expect(hasTool('tar2sqfs')).toBe(true);
    expect(pickBackend('auto').backend).toBe('gensquashfs');
    expect(pickBackend('auto', false).backend).toBe('tar2sqfs');
  });
});

describe('squashfs image read from disk by mksquashfs (mksquashfs-dir)', () => {
  let tmp: string;
  let root: string;
  const build = (out: string, extra: Parameters<typeof writeSquashfs>[2] = {}) =>
    writeSquashfs(root, path.join(tmp, out), { sourceDateEpoch: EPOCH, ...extra });

  /** Records that say exactly what the disk says (an install that ran as root). */
  function diskRecords(): { overlay: MetadataOverlay; overlayPaths: string[] } {
    const recs = new Map<
      string,
      { type: 'file' | 'dir' | 'symlink'; uid: number; gid: number; mode: number }
    >();
    const walk = (rel: string): void => {
      for (const n of readdirSync(path.join(root, rel))) {
        const r = rel ? `${rel}/${n}` : n;
        const st = lstatSync(path.join(root, r));
        if (st.isFIFO()) continue;
        const type = st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : 'file';
        recs.set(r, { type, uid: st.uid, gid: st.gid, mode: st.mode & 0o7777 });
        if (type === 'dir') walk(r);
      }
    };
    walk('');
    return { overlay: (rel) => recs.get(rel), overlayPaths: [...recs.keys()] };
  }

  beforeAll(async () => {
    tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'cpm-image-mksq-dir-'));
    root = path.join(tmp, 'root');
    await fsp.mkdir(path.join(root, 'usr/bin'), { recursive: true });
    await fsp.mkdir(path.join(root, 'etc/empty'), { recursive: true });
    await fsp.writeFile(path.join(root, 'usr/bin/tool'), Buffer.alloc(200_000, 3));
    await fsp.chmod(path.join(root, 'usr/bin/tool'), 0o4755);
    await fsp.link(path.join(root, 'usr/bin/tool'), path.join(root, 'usr/bin/tool-alias'));
    await fsp.writeFile(path.join(root, 'etc/secret'), 'x');
    await fsp.chmod(path.join(root, 'etc/secret'), 0o600);
    await fsp.writeFile(path.join(root, 'etc/old'), 'old\n');
    await fsp.utimes(path.join(root, 'etc/old'), 1_000_000_000, 1_000_000_000);
    await fsp.symlink('../usr/bin/tool', path.join(root, 'etc/tool-link'));
    spawnSync('mkfifo', [path.join(root, 'run-fifo')]);
  });
  afterAll(async () => {
    await fsp.rm(tmp, { recursive: true, force: true });
  });

  it("is what 'auto' picks on an exact disk, and lists what the tar2sqfs image lists", async () => {
    const dir = await build('dir.sqfs');
    expect(dir.backend).toBe('mksquashfs-dir');
    expect(dir.entries).toBe(10);
    const tar = await build('tar.sqfs', { backend: 'tar2sqfs' });
    const listed = listImage(dir.output);
    expect(listed).toEqual(listImage(tar.output));
    expect(listed.get('usr/bin/tool')!.mode).toBe(0o4755);
    expect(listed.get('etc/old')!.time).toBe(listedTime(1_000_000_000));
    expect(listed.get('etc/secret')!.time).toBe(listedTime(EPOCH)); // clamped
    expect(listed.get('run-fifo')!.type).toBe('fifo');
    const a = inodeOf(dir.output, '/usr/bin/tool');
    expect(inodeOf(dir.output, '/usr/bin/tool-alias')).toEqual(a);
    expect(a.links).toBe('2');
  });

  it('is byte-identical when built again, and records the epoch as filesystem time', async () => {
    const a = await build('again-a.sqfs', { backend: 'mksquashfs-dir' });
    const b = await build('again-b.sqfs', { backend: 'mksquashfs-dir' });
    expect(readFileSync(a.output).equals(readFileSync(b.output))).toBe(true);
    const r = spawnSync('unsquashfs', ['-mkfs-time', a.output], { encoding: 'utf8' });
    expect(r.stdout.trim()).toBe(String(EPOCH));
  });

  it('takes records that match the disk, and stops where they do not, leaving no image', async () => {
    const recs = diskRecords();
    const same = await build('records.sqfs', recs);
    expect(same.backend).toBe('mksquashfs-dir');
    // A record that gives etc/secret another mode (as a rootless install would record it).
    const other: MetadataOverlay = (rel) => {
      const m = recs.overlay(rel);
      return rel === 'etc/secret' && m ? { ...m, mode: 0o640 } : m;
    };
    const out = path.join(tmp, 'differs.sqfs');
    const err = await writeSquashfs(root, out, {
      backend: 'mksquashfs-dir',
      overlay: other,
      overlayPaths: recs.overlayPaths,
      sourceDateEpoch: EPOCH,
    }).catch((e: unknown) => e);
    expect((err as CpmError).code).toBe('E_IMAGE');
    expect((err as CpmError).message).toContain('etc/secret differs on disk from its record');
    await expect(fsp.stat(out)).rejects.toThrow(/ENOENT/);
    const auto = await build('differs-auto.sqfs', {
      overlay: other,
      overlayPaths: recs.overlayPaths,
    });
    expect(auto.backend).toBe('tar2sqfs');
    expect(auto.skipped).toContain('etc/secret differs on disk');
    expect(listImage(auto.output).get('etc/secret')!.mode).toBe(0o640);
  });

  it("keeps the disk's xattrs, and falls back when the records add one", async () => {
    const f = path.join(root, 'etc/old');
    const set = spawnSync('setfattr', ['-n', 'user.cpm', '-v', 'yes', f]);
    expect(set.status, String(set.stderr)).toBe(0);
    try {
      const r = await build('xattr.sqfs');
      expect(r.backend).toBe('mksquashfs-dir');
      const x = spawnSync('rdsquashfs', ['-x', '/etc/old', r.output], { encoding: 'utf8' });
      expect(x.stdout).toContain('user.cpm=');
      const recs = diskRecords();
      const added: MetadataOverlay = (rel) => {
        const m = recs.overlay(rel);
        return rel === 'etc/secret' && m ? { ...m, xattrs: { 'user.extra': Buffer.from('1') } } : m;
      };
      const r2 = await build('xattr-added.sqfs', {
        overlay: added,
        overlayPaths: recs.overlayPaths,
      });
      expect(r2.backend).toBe('tar2sqfs');
      expect(r2.skipped).toContain('etc/secret has an xattr the disk does not (user.extra)');
      const x2 = spawnSync('rdsquashfs', ['-x', '/etc/secret', r2.output], { encoding: 'utf8' });
      expect(x2.stdout).toContain('user.extra=');
    } finally {
      spawnSync('setfattr', ['-x', 'user.cpm', f]);
    }
  });
});
