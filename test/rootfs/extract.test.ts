import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { fileLayer, installPackages } from '../../src/rootfs/index.js';
import { listInstalled, verify } from '../../src/upkeep/query.js';
import { silentReporter } from '../../src/util/progress.js';
import { layerDigests, type LayerDigests } from '../../src/rootfs/file-digest.js';
import { StageWriter } from '../../src/rootfs/stage-writer.js';
import { STAGED } from '../../src/rootfs/ring-ctl.js';
import { pseudoRandom } from '../support/layers.js';
import { layerFromFiles, rawLayer, step, tmpDir } from '../install/helpers.js';

describe('extraction of real GNU tar layers', () => {
  it('extracts zstd and gzip layers with files, dirs, symlinks, modes and hashes', async () => {
    const root = tmpDir();
    const l1 = layerFromFiles(
      {
        'usr/bin/hello': '#!/bin/sh\necho hi\n',
        'usr/lib/x.so': 'lib',
        'etc/hello.conf': 'a=1\n',
        'usr/bin/hi': '->hello',
      },
      'zstd',
      { 'usr/bin/hello': 0o4755 },
    );
    const l2 = layerFromFiles({ 'usr/share/doc/hello/README': 'readme' }, 'gzip');
    const res = await installPackages(root, [step('app/hello@1.0', [l1, l2])]);
    expect(res.installed).toEqual(['app/hello@1.0']);
    expect(readFileSync(path.join(root, 'usr/bin/hello'), 'utf8')).toBe('#!/bin/sh\necho hi\n');
    expect(statSync(path.join(root, 'usr/bin/hello')).mode & 0o7777).toBe(0o4755);
    expect(readlinkSync(path.join(root, 'usr/bin/hi'))).toBe('hello');
    expect(readFileSync(path.join(root, 'usr/share/doc/hello/README'), 'utf8')).toBe('readme');
    const [pkg] = listInstalled({ root });
    const hello = pkg!.files.find((f) => f.path === 'usr/bin/hello')!;
    const want = execFileSync('sha256sum', [path.join(root, 'usr/bin/hello')], {
      encoding: 'utf8',
    }).split(' ')[0];
    expect(hello).toMatchObject({
      type: 'f',
      mode: 0o4755,
      uid: 0,
      gid: 0,
      size: 18,
      sha256: want,
    });
    expect(pkg!.files.find((f) => f.path === 'etc/hello.conf')!.config).toBe(true);
    expect(pkg!.files.find((f) => f.path === 'usr/bin/hi')).toMatchObject({
      type: 'l',
      target: 'hello',
    });
    expect((await verify({ root })).problems).toEqual([]);
    expect(() => lstatSync(path.join(root, '.cpm-tx'))).toThrow();
  });

  it('applies owners, hardlinks, fifos, device nodes and xattrs records', async () => {
    const root = tmpDir();
    const rep = silentReporter();
    const layer = await rawLayer([
      { name: 'data/', type: 'directory', mode: 0o750, uid: 1000, gid: 1000 },
      { name: 'data/a', content: 'same', uid: 1000, gid: 100, mode: 0o2755 },
      { name: 'data/b', type: 'link', linkname: 'data/a' },
      { name: 'data/fifo', type: 'fifo', mode: 0o600 },
      { name: 'dev/null', type: 'character-device', mode: 0o666, devmajor: 1, devminor: 3 },
      {
        name: 'bin/ping',
        content: 'elf',
        mode: 0o755,
        pax: { 'SCHILY.xattr.security.capability': 'cap' },
      },
    ]);
    await installPackages(root, [step('base/x@1', [layer])], { reporter: rep });
    const a = statSync(path.join(root, 'data/a'));
    const b = statSync(path.join(root, 'data/b'));
    expect(a.ino).toBe(b.ino);
    expect(a.mode & 0o7777).toBe(0o2755);
    expect(lstatSync(path.join(root, 'data/fifo')).isFIFO()).toBe(true);
    const [pkg] = listInstalled({ root });
    expect(pkg!.files.find((f) => f.path === 'bin/ping')!.xattrs).toEqual({
      'security.capability': 'cap',
    });
    expect(pkg!.files.find((f) => f.path === 'dev/null')!.rdev).toEqual([1, 3]);
    if (process.getuid?.() === 0) {
      expect(a.uid).toBe(1000);
      expect(a.gid).toBe(100);
      expect(statSync(path.join(root, 'data')).uid).toBe(1000);
      expect(statSync(path.join(root, 'data')).mode & 0o7777).toBe(0o750);
      expect(lstatSync(path.join(root, 'dev/null')).isCharacterDevice()).toBe(true);
    } else {
      expect(rep.warnings.some((w) => w.includes('dev/null'))).toBe(true);
      expect(pkg!.files.find((f) => f.path === 'data/a')).toMatchObject({ uid: 1000, gid: 100 });
    }
    expect((await verify({ root })).problems).toEqual([]);
  });

  it('makes every device node and xattr of a layer with one helper, names passed as data', async () => {
    const root = tmpDir();
    const rep = silentReporter();
    const sentinel = path.join(tmpDir(), 'injected');
    const hostile = `user.$(touch ${sentinel})`;
    const layer = await rawLayer([
      { name: 'dev/null', type: 'character-device', mode: 0o666, devmajor: 1, devminor: 3 },
      { name: 'dev/zero', type: 'character-device', mode: 0o666, devmajor: 1, devminor: 5 },
      { name: 'dev/loop0', type: 'block-device', mode: 0o660, devmajor: 7, devminor: 0, gid: 6 },
      { name: 'run/fifo"; touch x', type: 'fifo', mode: 0o620 },
      { name: 'etc/a', content: 'a', pax: { 'SCHILY.xattr.user.cpm': 'one' } },
      { name: "etc/b' $(x)", content: 'b', pax: { 'SCHILY.xattr.user.cpm': 'two' } },
      { name: 'etc/c', content: 'c', pax: { [`SCHILY.xattr.${hostile}`]: 'v' } },
    ]);
    await installPackages(root, [step('base/nodes@1', [layer])], { reporter: rep });
    expect(existsSync(sentinel)).toBe(false);
    const fifo = lstatSync(path.join(root, 'run/fifo"; touch x'));
    expect(fifo.mode & 0o7777).toBe(0o620);
    expect(fifo.mtimeMs).toBe(1_700_000_000_000); // the header's, as for every other entry
    const getfattr = (f: string): string =>
      execFileSync('getfattr', ['-h', '--only-values', '-n', 'user.cpm', path.join(root, f)], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'ignore'],
      });
    if (spawnSync('sh', ['-c', 'command -v getfattr && command -v setfattr']).status === 0) {
      expect(getfattr('etc/a')).toBe('one');
      expect(getfattr("etc/b' $(x)")).toBe('two');
    }
    if (process.getuid?.() === 0) {
      const loop = lstatSync(path.join(root, 'dev/loop0'));
      expect(loop.isBlockDevice()).toBe(true);
      expect([loop.mode & 0o7777, loop.gid, loop.rdev]).toEqual([0o660, 6, 7 * 256]);
      expect(lstatSync(path.join(root, 'dev/zero')).rdev).toBe(256 + 5);
    }
    expect((await verify({ root })).problems).toEqual([]);
  });

  it('applies whiteouts and opaque dirs to lower layers of the same package', async () => {
    const root = tmpDir();
    const l1 = await rawLayer([
      { name: 'a/keep', content: '1' },
      { name: 'a/gone', content: '2' },
      { name: 'o/x', content: '3' },
      { name: 'o/sub/y', content: '4' },
    ]);
    const l2 = await rawLayer([
      { name: 'a/.wh.gone', content: '' },
      { name: 'o/z', content: '5' },
      { name: 'o/.wh..wh..opq', content: '' },
    ]);
    await installPackages(root, [step('base/wh@1', [l1, l2])]);
    expect(readFileSync(path.join(root, 'a/keep'), 'utf8')).toBe('1');
    expect(() => lstatSync(path.join(root, 'a/gone'))).toThrow();
    expect(() => lstatSync(path.join(root, 'o/x'))).toThrow();
    expect(() => lstatSync(path.join(root, 'o/sub'))).toThrow();
    expect(readFileSync(path.join(root, 'o/z'), 'utf8')).toBe('5');
    const files = listInstalled({ root })[0]!
      .files.map((f) => f.path)
      .sort();
    expect(files).toEqual(['a', 'a/keep', 'o', 'o/z']);
  });
});

describe('stage writer', () => {
  const me = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
  const hex = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');
  /** Writes `b` into the ring as the tar's next bytes: its stream position. */
  const append = async (d: LayerDigests, b: Buffer): Promise<number> => {
    let first = -1;
    for (let off = 0; off < b.length || first < 0;) {
      const wait = d.ready();
      if (wait) await wait;
      const space = d.space();
      if (first < 0) first = pos;
      const n = Math.min(space.length, b.length - off);
      b.copy(space, 0, off, off + n);
      d.wrote(n);
      pos += n;
      off += n;
      if (b.length === 0) break;
    }
    return first;
  };
  let pos = 0;

  it('writes files from the ring in place, with exact modes (at open or by fchmod), and hashes them', async () => {
    const dir = tmpDir();
    pos = 0;
    const d = layerDigests(-1, false, false);
    const w = new StageWriter(d.ring, process.getuid?.() === 0);
    const got = new Map<string, string>();
    const put = async (name: string, text: string, mode: number): Promise<void> => {
      const at = await append(d, Buffer.from(text));
      w.file(path.join(dir, name), at, Buffer.byteLength(text), { ...me, mode, mtime: 1e9 }, (h) =>
        got.set(name, h),
      );
    };
    try {
      await put('plain', 'a', 0o644);
      await put('group-write', 'b', 0o664); // umask 022 would drop g+w at open
      await put('setuid', 'c', 0o4755);
      await put('empty', '', 0o600);
      await w.flush();
    } finally {
      await w.close();
    }
    const mode = (n: string): number => statSync(path.join(dir, n)).mode & 0o7777;
    expect([mode('plain'), mode('group-write'), mode('setuid'), mode('empty')]).toEqual([
      0o644, 0o664, 0o4755, 0o600,
    ]);
    expect(statSync(path.join(dir, 'plain')).mtimeMs).toBe(1e12);
    expect(got.get('plain')).toBe(hex('a'));
    expect(got.get('setuid')).toBe(hex('c'));
    expect(got.get('empty')).toBe(hex(''));
    expect(readFileSync(path.join(dir, 'group-write'), 'utf8')).toBe('b');
  });

  it('keeps ring bytes until they are written: small files across the wrap, large ones in pieces', async () => {
    const dir = tmpDir();
    pos = 0;
    const d = layerDigests(-1, false, false);
    const w = new StageWriter(d.ring, process.getuid?.() === 0);
    const want = new Map<string, string>();
    const got = new Map<string, string>();
    const meta = { ...me, mode: 0o644, mtime: 1e9 };
    try {
      // 3 rings' worth: small files of odd sizes (some wrap the ring's end) and two large ones
      // whose bodies are far larger than the ring, read in small pieces
      for (let i = 0; i < 60; i++) {
        const name = `s${i}`;
        const b = pseudoRandom(1000 + ((i * 7919) % 400_000), i + 1);
        want.set(name, hex(b));
        // held while it is read, queued at its end (as the extractor does)
        w.hold(pos);
        const at = await append(d, b);
        w.file(path.join(dir, name), at, b.length, meta, (h) => got.set(name, h));
        if (i % 20 === 10) {
          const big = pseudoRandom((9 << 20) + i, 100 + i);
          const bn = `big${i}`;
          want.set(bn, hex(big));
          w.open(path.join(dir, bn), pos, meta);
          for (let off = 0; off < big.length; off += 65_000) {
            const part = big.subarray(off, off + 65_000);
            await append(d, part);
            w.piece(part.length);
          }
          w.end((h) => got.set(bn, h));
        }
      }
      await w.flush();
    } finally {
      await w.close();
    }
    expect(pos).toBeGreaterThan(3 * (8 << 20));
    for (const [name, h] of want) {
      expect(got.get(name), name).toBe(h);
      expect(hex(readFileSync(path.join(dir, name))), name).toBe(h);
    }
  });

  it('fails with the worker’s error, and no longer holds the ring', async () => {
    const dir = tmpDir();
    pos = 0;
    const d = layerDigests(-1, false, false);
    const w = new StageWriter(d.ring, false);
    const meta = { ...me, mode: 0o644, mtime: 1e9 };
    try {
      const at = await append(d, Buffer.from('x'));
      w.file(path.join(dir, 'no-such-dir', 'f'), at, 1, meta, () => undefined);
      const err = await w.flush().then(
        () => null,
        (e: unknown) => e,
      );
      expect(err).toMatchObject({ code: 'E_IO' });
      expect((err as Error).message).toContain('no-such-dir');
      expect(w.floor()).toBe(-1);
      // the reader goes on: 2 rings' worth, nothing waits for the failed worker
      for (let i = 0; i < 16; i++) await append(d, pseudoRandom(1 << 20, i));
      expect(() => w.file(path.join(dir, 'g'), pos, 0, meta, () => undefined)).toThrow(
        /no-such-dir/,
      );
    } finally {
      await w.close();
    }
  });

  it('holds the ring for the batches its thread has when sending the next one fails (journal write)', async () => {
    const dir = tmpDir();
    pos = 0;
    const d = layerDigests(-1, false, false);
    let sends = 0;
    const w = new StageWriter(d.ring, false, () => {
      if (++sends > 1) throw Object.assign(new Error('EIO: i/o error, write'), { code: 'EIO' });
    });
    const meta = { ...me, mode: 0o4755, mtime: 1e9 };
    const want = new Map<string, string>();
    const filler = pseudoRandom(16 << 20, 99);
    try {
      // one batch of small files goes to the thread; the journal write before the next fails
      for (let i = 0; i < 200; i++) {
        const b = pseudoRandom(5000 + i, i + 1);
        const at = await append(d, b);
        w.file(path.join(dir, `f${i}`), at, b.length, meta, () => undefined);
        want.set(`f${i}`, hex(b));
      }
      w.post();
      w.file(path.join(dir, 'g'), await append(d, Buffer.from('g')), 1, meta, () => undefined);
      w.post();
      expect(() => w.check()).toThrow(/EIO/);
      // the reader goes on (two rings' worth) while the thread still writes the first batch
      await append(d, filler);
      const ctl = new Int32Array(d.ring.ctl);
      while (Atomics.load(ctl, STAGED) < 1) await new Promise((r) => setTimeout(r, 5));
      for (const [name, h] of want) expect(hex(readFileSync(path.join(dir, name))), name).toBe(h);
    } finally {
      await w.close();
    }
  });
});

describe('extraction of GNU tar POSIX (PAX) layers', () => {
  it('applies PAX uid, gid, mtime and long names (tar-stream read only path, linkpath and size)', async () => {
    const dir = tmpDir();
    const src = path.join(dir, 'src');
    const long = 'x'.repeat(120);
    execFileSync('sh', ['-c', `mkdir -p ${src}/d && printf big > ${src}/d/${long}`]);
    const tar = path.join(dir, 'layer.tar');
    execFileSync('tar', [
      '--format=posix',
      '--owner=u:3000000',
      '--group=g:2500000',
      '--mtime=@1700000000.5',
      '--sort=name',
      '-C',
      src,
      '-cf',
      tar,
      'd',
    ]);
    const digest = 'sha256:' + createHash('sha256').update(readFileSync(tar)).digest('hex');
    const root = path.join(tmpDir(), 'root');
    const res = await installPackages(root, [
      step('pax/owners@1', [fileLayer(tar, 'application/vnd.oci.image.layer.v1.tar', digest)]),
    ]);
    expect(res.installed).toEqual(['pax/owners@1']);
    const [pkg] = listInstalled({ root });
    expect(pkg!.files.find((f) => f.path === `d/${long}`)).toMatchObject({
      type: 'f',
      uid: 3_000_000,
      gid: 2_500_000,
      size: 3,
    });
    const st = statSync(path.join(root, 'd', long));
    expect(Math.floor(st.mtimeMs / 1000)).toBe(1_700_000_000);
    if (process.getuid?.() === 0) expect([st.uid, st.gid]).toEqual([3_000_000, 2_500_000]);
  });
});
