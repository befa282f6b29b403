import { spawnSync } from 'node:child_process';
import { createReadStream, promises as fsp, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { extract } from 'tar-stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CpmError } from '../../src/errors.js';
import { tableOverlay } from '../../src/image/meta.js';
import { rootfsTarSource, writeRootfsTar } from '../../src/image/rootfs-tar.js';
import { RootWalker } from '../../src/image/rootfs-walk.js';
import { createDecompressor, sniffCompression, type Compression } from '../../src/util/compress.js';
import { EPOCH, makeFixture, type Fixture } from './fixture.js';

interface TarEntry {
  name: string;
  type: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  linkname: string | null;
  devmajor: number;
  devminor: number;
  pax: Record<string, string> | null;
  uname: string;
  body: Buffer;
}

async function readTar(file: string, compression: Compression = 'none'): Promise<TarEntry[]> {
  const out: TarEntry[] = [];
  const ex = extract();
  ex.on('entry', (h, stream, next) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: unknown) => void chunks.push(c as Buffer));
    stream.on('end', () => {
      out.push({
        name: h.name,
        type: h.type,
        mode: h.mode,
        uid: h.uid,
        gid: h.gid,
        size: h.size,
        mtime: h.mtime.getTime() / 1000,
        linkname: h.linkname,
        devmajor: h.devmajor,
        devminor: h.devminor,
        pax: h.pax as Record<string, string> | null,
        uname: h.uname,
        body: Buffer.concat(chunks),
      });
      next();
    });
  });
  await pipeline(createReadStream(file), createDecompressor(compression), ex);
  return out;
}

const TYPE: Record<string, string> = {
  file: 'file',
  dir: 'directory',
  symlink: 'symlink',
  hardlink: 'link',
  char: 'character-device',
  block: 'block-device',
  fifo: 'fifo',
};

describe('rootfs tar', () => {
  let tmp: string;
  let fx: Fixture;
  let tarFile: string;
  let entries: TarEntry[];

  beforeAll(async () => {
    tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'cpm-image-tar-'));
    fx = await makeFixture(tmp);
    tarFile = path.join(tmp, 'root.tar');
    await writeRootfsTar(fx.root, tarFile, {
      overlay: fx.overlay,
      overlayPaths: fx.overlayPaths,
      excludes: fx.excludes,
      sourceDateEpoch: EPOCH,
    });
    entries = await readTar(tarFile);
  });
  afterAll(async () => {
    await fsp.rm(tmp, { recursive: true, force: true });
  });

  it('has exactly the expected entries, with overlay owners, modes, devices and links', () => {
    const byName = new Map(entries.map((e) => [e.name.replace(/\/$/, ''), e]));
    expect([...byName.keys()].sort()).toEqual([...fx.expected.keys()].sort());
    for (const [p, want] of fx.expected) {
      const got = byName.get(p)!;
      expect({ p, type: got.type, mode: got.mode, uid: got.uid, gid: got.gid }).toEqual({
        p,
        type: TYPE[want.type],
        mode: want.mode,
        uid: want.uid,
        gid: want.gid,
      });
      if (want.type === 'file') expect(got.size).toBe(want.size);
      if (want.linkTarget !== undefined) expect(got.linkname).toBe(want.linkTarget);
      if (want.dev) expect([got.devmajor, got.devminor]).toEqual(want.dev);
    }
  });

  it('stores file contents, numeric owners only, and clamps mtimes to SOURCE_DATE_EPOCH', () => {
    const sudo = entries.find((e) => e.name === 'usr/bin/sudo')!;
    expect(sudo.body.equals(readFileSync(path.join(fx.root, 'usr/bin/sudo')))).toBe(true);
    const long = entries.find((e) => e.name.endsWith('past-100-bytes.txt'))!;
    expect(long.name.length).toBeGreaterThan(100);
    expect(long.body.toString()).toBe('long');
    expect(entries.every((e) => e.uname === '')).toBe(true);
    expect(entries.find((e) => e.name === 'etc/hostname')!.mtime).toBe(1_000_000_000);
    expect(entries.filter((e) => e.name !== 'etc/hostname').every((e) => e.mtime === EPOCH)).toBe(
      true,
    );
  });

  it('sorts parents before children and siblings bytewise', () => {
    const names = entries.map((e) => e.name.replace(/\/$/, ''));
    const seen = new Set<string>();
    for (const n of names) {
      const parent = n.includes('/') ? n.slice(0, n.lastIndexOf('/')) : '';
      if (parent) expect(seen.has(parent), `${parent} before ${n}`).toBe(true);
      seen.add(n);
    }
    const siblings = names.filter((n) => !n.includes('/'));
    expect(siblings).toEqual(
      [...siblings].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b))),
    );
  });

  it('writes binary xattrs as LIBARCHIVE.xattr (base64) pax records', () => {
    const sudo = entries.find((e) => e.name === 'usr/bin/sudo')!;
    const b64 = sudo.pax?.['LIBARCHIVE.xattr.security.capability'];
    expect(Buffer.from(b64!, 'base64')).toEqual(Buffer.from([1, 0, 0, 2, 0x20, 0, 0, 0, 0, 0]));
  });

  it('is byte-identical for the same root and epoch, and differs for another epoch', async () => {
    const again = path.join(tmp, 'again.tar');
    const other = path.join(tmp, 'other.tar');
    const opts = { overlay: fx.overlay, overlayPaths: fx.overlayPaths, excludes: fx.excludes };
    // Reading the files changes atimes; that must not matter.
    await writeRootfsTar(fx.root, again, { ...opts, sourceDateEpoch: EPOCH });
    await writeRootfsTar(fx.root, other, { ...opts, sourceDateEpoch: EPOCH - 10 });
    const a = await fsp.readFile(tarFile);
    expect((await fsp.readFile(again)).equals(a)).toBe(true);
    expect((await fsp.readFile(other)).equals(a)).toBe(false);
  });

  it.each(['gzip', 'zstd'] as const)('compresses with %s, reproducibly', async (c) => {
    const f1 = path.join(tmp, `c1.${c}`);
    const f2 = path.join(tmp, `c2.${c}`);
    for (const f of [f1, f2]) {
      await writeRootfsTar(fx.root, f, { compression: c, sourceDateEpoch: EPOCH, xattrs: false });
    }
    const head = (await fsp.readFile(f1)).subarray(0, 4);
    expect(sniffCompression(head)).toBe(c);
    expect((await fsp.readFile(f1)).equals(await fsp.readFile(f2))).toBe(true);
    const list = await readTar(f1, c);
    expect(list.some((e) => e.name === 'proc/1/status')).toBe(true); // no excludes this time
  });

  it('is readable by GNU tar with the same listing', () => {
    const r = spawnSync('tar', ['-tvf', tarFile, '--numeric-owner'], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^crw-rw-rw- 0\/0\s+1,3 .* dev\/null$/m);
    expect(r.stdout).toMatch(/^-rwsr-xr-x 0\/0\s+70000 .* usr\/bin\/sudo$/m);
    expect(r.stdout).toMatch(/^hrwxr-xr-x .* usr\/bin\/tool-alias link to usr\/bin\/tool$/m);
  });

  it('takes device nodes from the disk when they exist there', async () => {
    const root = path.join(tmp, 'devroot');
    await fsp.mkdir(root);
    const made = spawnSync('mknod', ['-m', '0620', path.join(root, 'tty9'), 'c', '4', '9']);
    if (made.status !== 0) return; // needs CAP_MKNOD; the overlay path above covers the rest
    const out = path.join(tmp, 'dev.tar');
    await writeRootfsTar(root, out, { sourceDateEpoch: EPOCH, xattrs: false });
    const [tty] = await readTar(out);
    expect(tty).toMatchObject({ name: 'tty9', type: 'character-device', devmajor: 4, devminor: 9 });
    expect(tty!.mode).toBe(0o620);
  });

  it('fails with E_IMAGE when the overlay records a regular file that is missing on disk', async () => {
    const walker = new RootWalker(fx.root, {
      overlayPaths: ['etc/missing'],
      overlay: (p) =>
        p === 'etc/missing' ? { type: 'file', uid: 0, gid: 0, mode: 0o644 } : undefined,
      xattrs: false,
    });
    const err = await (async () => {
      for await (const _ of walker.entries()) void _;
    })().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CpmError);
    expect((err as CpmError).code).toBe('E_IMAGE');
    expect((err as CpmError).context.path).toContain('etc/missing');
  });

  it('gives the same bytes with and without the worker thread, across chunk boundaries', async () => {
    // fx.overlay is a table (the worker walks); a plain function overlay keeps the walk here.
    // Files larger than the ~1 MiB chunks, and enough entries for several walk batches.
    const big = path.join(tmp, 'big');
    await fsp.mkdir(path.join(big, 'many'), { recursive: true });
    const data = Buffer.alloc(3 * 1048576 + 123);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7919) >>> 5;
    await fsp.writeFile(path.join(big, 'a.bin'), data);
    await fsp.writeFile(path.join(big, 'z.bin'), data.subarray(0, 1048576));
    for (let i = 0; i < 700; i++) {
      await fsp.writeFile(path.join(big, 'many', `f${i}`), 'x'.repeat(i));
    }
    const opts = { sourceDateEpoch: EPOCH, xattrs: false };
    for (const [root, extra] of [
      [fx.root, { overlay: fx.overlay, overlayPaths: fx.overlayPaths, excludes: fx.excludes }],
      [
        fx.root,
        {
          overlay: (p: string) => fx.overlay(p),
          overlayPaths: fx.overlayPaths,
          excludes: fx.excludes,
        },
      ],
      [big, {}],
      // A pax header larger than a chunk (an xattr of 1.5 MiB) goes out on its own.
      [
        big,
        {
          overlay: tableOverlay({
            records: new Map([
              [
                'z.bin',
                {
                  type: 'file' as const,
                  uid: 0,
                  gid: 0,
                  mode: 0o644,
                  xattrs: { 'user.big': Buffer.alloc(1536 * 1024, 'x') },
                },
              ],
            ]),
            defaultDirs: new Set<string>(),
          }),
        },
      ],
    ] as const) {
      const threaded = path.join(tmp, 'threaded.tar');
      const single = path.join(tmp, 'single.tar');
      const s1 = await writeRootfsTar(root, threaded, { ...opts, ...extra });
      const s2 = await writeRootfsTar(root, single, { ...opts, ...extra, threads: false });
      expect(s1).toEqual(s2);
      expect((await fsp.readFile(threaded)).equals(await fsp.readFile(single))).toBe(true);
    }
  });

  it('is done when the consumer closes right after the end-of-archive (a tool that exits)', async () => {
    const want = readFileSync(tarFile);
    const got: Buffer[] = [];
    let n = 0;
    // Like tar2sqfs: reads up to the end-of-archive blocks, then exits (closing its stdin)
    // before the writer has ended the stream.
    const tool = new Writable({
      write(chunk: Buffer, _enc, cb) {
        got.push(Buffer.from(chunk));
        n += chunk.length;
        cb();
        if (n === want.length) this.destroy();
      },
    });
    const src = rootfsTarSource(fx.root, {
      overlay: fx.overlay,
      overlayPaths: fx.overlayPaths,
      excludes: fx.excludes,
      sourceDateEpoch: EPOCH,
    });
    await src.pipeTo(tool);
    expect(Buffer.concat(got).equals(want)).toBe(true);
  });

  it('passes a walk error through the threaded stream as the CpmError', async () => {
    const err = await writeRootfsTar(fx.root, path.join(tmp, 'bad.tar'), {
      overlayPaths: ['etc/missing'],
      overlay: (p) =>
        p === 'etc/missing' ? { type: 'file', uid: 0, gid: 0, mode: 0o644 } : undefined,
      xattrs: false,
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CpmError);
    expect((err as CpmError).code).toBe('E_IMAGE');
    expect((err as CpmError).context.path).toContain('etc/missing');
  });

  it('fails with a CpmError when the root is not a directory', async () => {
    const err = await writeRootfsTar(path.join(tmp, 'nope'), path.join(tmp, 'x.tar')).catch(
      (e: unknown) => e,
    );
    expect((err as CpmError).code).toBe('E_IMAGE');
  });
});
