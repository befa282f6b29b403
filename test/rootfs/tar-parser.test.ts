/**
 * The extractor's tar parser (src/rootfs/tar-parser.ts) against tar-stream's parse of the same
 * bytes: archives GNU tar writes in its three formats, and random archives tar-stream packs, fed
 * in random chunkings. Then headers it must refuse, each with the reason and the entry named.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, symlinkSync, linkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import fc from 'fast-check';
import tar from 'tar-stream';
import { describe, expect, it } from 'vitest';
import {
  DATA,
  END,
  ENTRY,
  MAX_META,
  NEED,
  TarParser,
  type TarEntry,
} from '../../src/rootfs/tar-parser.js';
import { TarHeaderError } from '../../src/rootfs/tar-headers.js';
import { tmpDir } from '../install/helpers.js';

/** An entry as both readers give it: the parser's fields but size, its body in hex. */
type Parsed = Omit<TarEntry, 'size' | 'type'> & { type: string; body: string };

/** Every entry with its body (hex), the input cut at `cuts` (sorted offsets). */
function parse(bytes: Buffer, cuts: number[] = []): Parsed[] {
  const p = new TarParser();
  const out: Parsed[] = [];
  let cur: { e: TarEntry; chunks: Buffer[] } | null = null;
  let from = 0;
  for (const at of [...cuts.filter((c) => c > 0 && c < bytes.length), bytes.length]) {
    // a copy: a view must not be used after the chunk it came from was replaced
    p.push(Buffer.from(bytes.subarray(from, at)));
    from = at;
    for (let ev = p.next(); ev !== NEED; ev = p.next()) {
      if (ev === ENTRY) {
        expect(cur).toBeNull();
        cur = { e: p.entry, chunks: [] };
      } else if (ev === DATA) cur!.chunks.push(Buffer.from(p.data));
      else {
        expect(ev).toBe(END);
        const body = Buffer.concat(cur!.chunks);
        expect(body.length).toBe(cur!.e.size);
        out.push(simple(cur!.e, body));
        cur = null;
      }
    }
  }
  p.end();
  expect(cur).toBeNull();
  return out;
}

function simple(e: TarEntry, body: Buffer): Parsed {
  return {
    name: e.name,
    type: e.type,
    mode: e.mode,
    uid: e.uid,
    gid: e.gid,
    mtime: e.mtime,
    linkname: e.linkname,
    devmajor: e.devmajor,
    devminor: e.devminor,
    pax: e.pax,
    body: body.toString('hex'),
  };
}

/** tar-stream's reading of the same bytes, in the same shape. */
async function oracle(bytes: Buffer): Promise<Parsed[]> {
  const ex = tar.extract();
  const out: Parsed[] = [];
  const done = (async () => {
    for await (const entry of ex) {
      const h = entry.header;
      const chunks: Buffer[] = [];
      for await (const c of entry) chunks.push(c as Buffer);
      const type = h.type ?? 'file';
      // tar-stream applies only path, linkpath and size from PAX records
      const pax = (h.pax ?? {}) as Record<string, string>;
      out.push({
        name: h.name,
        type,
        mode: h.mode! & 0o7777,
        uid: pax.uid ? Number(pax.uid) : h.uid!,
        gid: pax.gid ? Number(pax.gid) : h.gid!,
        mtime: pax.mtime ? Math.floor(Number(pax.mtime)) : Math.floor(h.mtime!.getTime() / 1000),
        linkname: type === 'link' || type === 'symlink' ? (h.linkname ?? '') : '',
        devmajor: type.endsWith('device') ? h.devmajor! : 0,
        devminor: type.endsWith('device') ? h.devminor! : 0,
        pax: (h.pax as Record<string, string> | null | undefined) ?? null,
        body: Buffer.concat(chunks).toString('hex'),
      });
    }
  })();
  Readable.from([bytes]).pipe(ex as unknown as NodeJS.WritableStream);
  await done;
  return out;
}

/** Cut points for a chunking of `len` bytes. */
const cutsArb = (len: number): fc.Arbitrary<number[]> =>
  fc
    .array(fc.integer({ min: 1, max: Math.max(1, len - 1) }), { maxLength: 40 })
    .map((a) => [...new Set(a)].sort((x, y) => x - y));

/** A tree with everything the formats can hold, written by GNU tar. */
function gnuTarTree(format: 'gnu' | 'posix' | 'ustar'): { bytes: Buffer; xattr: boolean } {
  const dir = tmpDir('cpm-tarparse-');
  const src = path.join(dir, 'src');
  const long = 'd'.repeat(60) + '/' + 'e'.repeat(70);
  mkdirSync(path.join(src, long), { recursive: true });
  writeFileSync(path.join(src, 'empty'), '');
  writeFileSync(path.join(src, 'block'), Buffer.alloc(512, 7));
  writeFileSync(path.join(src, 'big'), Buffer.alloc(70_001, 'ab'));
  writeFileSync(path.join(src, long, 'f'.repeat(format === 'ustar' ? 90 : 150)), 'deep\n');
  writeFileSync(path.join(src, 'ünï-cödé.txt'), 'utf8 name');
  linkSync(path.join(src, 'block'), path.join(src, 'hard'));
  symlinkSync(format === 'ustar' ? 'block' : 't'.repeat(140), path.join(src, 'sym'));
  execFileSync('mkfifo', [path.join(src, 'fifo')]);
  let xattr = false;
  if (format === 'posix')
    try {
      execFileSync('setfattr', ['-n', 'user.cpm', '-v', 'x=1', path.join(src, 'empty')], {
        stdio: 'pipe',
      });
      xattr = true;
    } catch {
      // no user xattrs on this filesystem: the archive just has none
    }
  const owner =
    format === 'ustar' ? ['--owner=0', '--group=0'] : ['--owner=u:3000000', '--group=g:77'];
  const bytes = execFileSync(
    'tar',
    [
      `--format=${format}`,
      ...(format === 'posix' ? ['--xattrs', '--xattrs-include=user.*'] : []),
      '--sort=name',
      '--mtime=@1700000000',
      ...owner,
      '-C',
      src,
      '-cf',
      '-',
      '.',
    ],
    { maxBuffer: 1 << 26 },
  );
  return { bytes, xattr };
}

describe('TarParser reads what tar-stream reads', () => {
  for (const format of ['gnu', 'posix', 'ustar'] as const) {
    it(`GNU tar --format=${format}, in any chunking`, async () => {
      const { bytes, xattr } = gnuTarTree(format);
      const want = await oracle(bytes);
      expect(want.length).toBeGreaterThan(8);
      expect(parse(bytes)).toEqual(want);
      // byte by byte: every header, long name and PAX body split at every place
      expect(
        parse(
          bytes,
          Array.from({ length: 20_000 }, (_, i) => i + 1),
        ),
      ).toEqual(want);
      fc.assert(
        fc.property(cutsArb(bytes.length), (cuts) => {
          expect(parse(bytes, cuts)).toEqual(want);
        }),
        { numRuns: 60 },
      );
      if (format !== 'ustar') {
        const big = want.find((e) => e.name.endsWith('/' + 'f'.repeat(150)));
        expect(big?.body).toBe(Buffer.from('deep\n').toString('hex'));
        expect(want.find((e) => e.name === './sym')?.linkname).toBe('t'.repeat(140));
        expect(want.find((e) => e.name === './empty')?.uid).toBe(3_000_000);
      }
      expect(want.find((e) => e.name === './hard')).toMatchObject({
        type: 'link',
        linkname: './block',
      });
      expect(want.find((e) => e.name === './fifo')?.type).toBe('fifo');
      if (xattr)
        expect(want.find((e) => e.name === './empty')?.pax).toMatchObject({
          'SCHILY.xattr.user.cpm': 'x=1',
        });
    });
  }

  it('random archives tar-stream packs (PAX for long and non-ASCII names), in random chunkings', async () => {
    const entryArb = fc.record({
      name: fc.stringMatching(/^[a-zé/_.-]{1,140}$/).filter((n) => !n.endsWith('/')),
      kind: fc.constantFrom('file', 'directory', 'symlink', 'link'),
      size: fc.integer({ min: 0, max: 1500 }),
      mode: fc.integer({ min: 0, max: 0o7777 }),
      uid: fc.integer({ min: 0, max: 0o7777777 }),
      // tar-stream's pack wraps mtimes from 2^31 on (an int32 conversion)
      mtime: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
      target: fc.stringMatching(/^[a-z/.]{1,120}$/),
    });
    await fc.assert(
      fc.asyncProperty(
        fc.array(entryArb, { minLength: 1, maxLength: 8 }),
        fc.nat(),
        async (es, seed) => {
          const pack = tar.pack();
          for (const [i, e] of es.entries()) {
            const h = {
              name: e.name,
              mode: e.mode,
              uid: e.uid,
              gid: i,
              mtime: new Date(e.mtime * 1000),
            };
            if (e.kind === 'file')
              pack.entry({ ...h, type: 'file' }, Buffer.alloc(e.size, (seed + i) % 251));
            else if (e.kind === 'directory') pack.entry({ ...h, type: 'directory' });
            else pack.entry({ ...h, type: e.kind, linkname: e.target });
          }
          pack.finalize();
          const chunks: Buffer[] = [];
          for await (const c of pack) chunks.push(c as Buffer);
          const bytes = Buffer.concat(chunks);
          const want = await oracle(bytes);
          const cuts = Array.from(
            { length: 12 },
            (_, k) => ((seed >> k) * 977 + k * 131) % bytes.length,
          );
          expect(
            parse(
              bytes,
              [...new Set(cuts)].sort((a, b) => a - b),
            ),
          ).toEqual(want);
        },
      ),
      { numRuns: 150 },
    );
  });
});

/** Overwrites bytes of the header at `at` and recomputes its checksum, as a producer would. */
function patch(t: Buffer, at: number, off: number, bytes: Buffer, fixSum = true): Buffer {
  const out = Buffer.from(t);
  bytes.copy(out, at + off);
  if (fixSum) {
    out.fill(0x20, at + 148, at + 156);
    let sum = 0;
    for (let i = 0; i < 512; i++) sum += out[at + i]!;
    out.write(sum.toString(8).padStart(6, '0') + '\0 ', at + 148, 'latin1');
  }
  return out;
}

/** A one- or two-file GNU-format archive as tar-stream's pack writes it (ustar headers). */
async function packed(
  entries: Array<{ name: string; body?: string; pax?: Record<string, string> }>,
): Promise<Buffer> {
  const pack = tar.pack();
  for (const e of entries) pack.entry({ name: e.name, pax: e.pax }, e.body ?? '');
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const c of pack) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

function refusal(bytes: Buffer): TarHeaderError {
  try {
    parse(bytes);
  } catch (e) {
    if (e instanceof TarHeaderError) return e;
    throw e;
  }
  throw new Error('accepted');
}

/** A raw header block: name, type, size, and a valid checksum. */
function block(name: string, flag: string, size: number, magic = 'ustar\x0000'): Buffer {
  const b = Buffer.alloc(512);
  b.write(name, 0);
  b.write('0000644\0', 100);
  b.write('0000000\0', 108);
  b.write('0000000\0', 116);
  b.write(size.toString(8).padStart(11, '0') + '\0', 124);
  b.write('00000000000\0', 136);
  b.write(flag, 156);
  b.write(magic, 257, 'latin1');
  return patch(b, 0, 0, Buffer.alloc(0));
}
const body = (s: string | Buffer): Buffer => {
  const b = Buffer.from(s);
  return Buffer.concat([b, Buffer.alloc((512 - (b.length % 512)) % 512)]);
};
const paxRec = (k: string, v: string): string => {
  const rest = ` ${k}=${v}\n`;
  let n = rest.length + 1;
  while (String(n).length + rest.length !== n) n++;
  return `${n}${rest}`;
};

describe('TarParser refuses', () => {
  it('a header whose checksum does not match (naming the entry and the offset)', async () => {
    const t = await packed([
      { name: 'a', body: 'x' },
      { name: 'b/c.txt', body: 'y' },
    ]);
    const bad = patch(t, 1024, 0, Buffer.from('b/d'), false);
    const e = refusal(bad);
    expect(e.entry).toBe('b/d.txt');
    expect(e.why).toMatch(/checksum mismatch at byte 1024/);
  });

  it('nothing for a checksum old tars computed over signed bytes; a wrong one either way', () => {
    const t = Buffer.concat([block('é/ü', '0', 0), Buffer.alloc(1024)]);
    const signed = Buffer.from(t);
    signed.fill(0x20, 148, 156);
    let sum = 0;
    for (let i = 0; i < 512; i++) sum += signed[i]! >= 0x80 ? signed[i]! - 0x100 : signed[i]!;
    signed.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
    expect(parse(t).map((e) => e.name)).toEqual(['é/ü']);
    expect(parse(signed).map((e) => e.name)).toEqual(['é/ü']);
    const off = Buffer.from(signed);
    off.write((sum + 1).toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
    expect(refusal(off).why).toMatch(/checksum mismatch at byte 0/);
  });

  it('garbage after the digits of a numeric field, as GNU tar does', async () => {
    const t = await packed([{ name: 'a', body: 'xy' }]);
    expect(refusal(patch(t, 0, 124, Buffer.from('0000000002zz'))).why).toBe(
      'the size field is "0000000002zz", not an octal number',
    );
    expect(refusal(patch(t, 0, 100, Buffer.from('06x4\0'))).why).toMatch(/mode field is "06x4"/);
    expect(refusal(patch(t, 0, 108, Buffer.from('7a\0'))).why).toMatch(/uid field/);
    expect(refusal(patch(t, 0, 136, Buffer.from('1-2\0'))).why).toMatch(/mtime field/);
    expect(refusal(patch(t, 0, 148, Buffer.from('12x4\0'), false)).why).toMatch(/checksum field/);
  });

  it('a negative base-256 size or owner; reads a positive one', async () => {
    const t = await packed([{ name: 'a', body: 'xy' }]);
    const neg = Buffer.alloc(12, 0xff);
    expect(refusal(patch(t, 0, 124, neg)).why).toBe('the size field is a negative base-256 number');
    expect(refusal(patch(t, 0, 108, neg.subarray(0, 8))).why).toMatch(/uid field is a negative/);
    const two = Buffer.alloc(12);
    two[0] = 0x80;
    two[11] = 2;
    expect(parse(patch(t, 0, 124, two))[0]!.body).toBe(Buffer.from('xy').toString('hex'));
    const uid = Buffer.alloc(8);
    uid[0] = 0x80;
    uid.writeUInt32BE(4_000_000_000, 4);
    expect(parse(patch(t, 0, 108, uid))[0]!.uid).toBe(4_000_000_000);
  });

  it('a header without ustar magic', async () => {
    const t = await packed([{ name: 'a', body: 'xy' }]);
    expect(refusal(patch(t, 0, 257, Buffer.alloc(8))).why).toMatch(/no ustar magic/);
  });

  it('names and link targets that are not UTF-8, naming their bytes', () => {
    const name = Buffer.from([0x61, 0xe9, 0x62]);
    const h = block('', '0', 0);
    const bad = patch(h, 0, 0, name);
    const e = refusal(bad);
    expect(e.entry).toBe('a\\xe9b');
    expect(e.why).toMatch(/the name is not UTF-8/);
    const link = patch(block('l', '2', 0), 0, 157, name);
    expect(refusal(link).why).toMatch(/link target is not UTF-8.*"a\\xe9b"/);
    const long = Buffer.concat([block('././@LongLink', 'L', 3), body(name), block('x', '0', 0)]);
    expect(refusal(long).why).toMatch(/long name is not UTF-8/);
    const pax = Buffer.concat([
      block('PaxHeader', 'x', 10),
      body(Buffer.concat([Buffer.from('10 path='), name.subarray(1, 2), Buffer.from('\n')])),
      block('x', '0', 0),
    ]);
    expect(refusal(pax).why).toMatch(/PAX path is not UTF-8/);
  });

  it('malformed PAX records, and PAX numbers that are not numbers', () => {
    const withPax = (recs: string): Buffer =>
      Buffer.concat([
        block('PaxHeader', 'x', Buffer.byteLength(recs)),
        body(recs),
        block('f', '0', 0),
      ]);
    expect(refusal(withPax('99 path=x\n')).why).toMatch(/malformed PAX record.*length 99/);
    expect(refusal(withPax('x path=x\n')).why).toMatch(/no length/);
    expect(refusal(withPax('11 pathxyz\n')).why).toMatch(/no "key=value"/);
    expect(refusal(withPax('10 path=xyz')).why).toMatch(/malformed PAX record/);
    expect(refusal(withPax(paxRec('size', '12zz'))).why).toMatch(/PAX size "12zz" is not a whole/);
    expect(refusal(withPax(paxRec('uid', '-1'))).why).toMatch(/PAX uid/);
    expect(refusal(withPax(paxRec('mtime', 'soon'))).why).toMatch(/PAX mtime/);
    expect(parse(withPax(paxRec('mtime', '-1.5') + paxRec('gid', '12')))[0]).toMatchObject({
      mtime: -2,
      gid: 12,
    });
  });

  it('sparse and multi-volume entries (their data would be written wrong)', () => {
    expect(refusal(block('s', 'S', 0)).why).toMatch(/GNU sparse file/);
    expect(refusal(block('m', 'M', 0)).why).toMatch(/multi-volume/);
    const recs = paxRec('GNU.sparse.major', '1') + paxRec('GNU.sparse.minor', '0');
    const pax = Buffer.concat([block('P', 'x', recs.length), body(recs), block('f', '0', 0)]);
    expect(refusal(pax).why).toMatch(/GNU sparse file \(PAX/);
  });

  it('a long name or PAX header larger than MAX_META, before reading it', () => {
    const e = refusal(block('././@LongLink', 'L', MAX_META + 1));
    expect(e.why).toMatch(/GNU long name of 1048577 bytes/);
  });

  it('a stream that ends inside a header, a body, its padding or a long name', async () => {
    const t = await packed([{ name: 'a', body: 'x'.repeat(700) }]);
    expect(() => parse(t.subarray(0, 300))).toThrow(/ends inside a 512-byte block/);
    expect(() => parse(t.subarray(0, 512 + 600))).toThrow(
      /ends inside this entry's data, 100 bytes short/,
    );
    expect(() => parse(t.subarray(0, 512 + 800))).toThrow(/ends inside/);
    const long = Buffer.concat([block('././@LongLink', 'L', 600), body('n'.repeat(600))]);
    expect(() => parse(long.subarray(0, 900))).toThrow(/inside a long name or PAX header/);
    expect(() => parse(long)).toThrow(/long name or PAX header that names no entry/);
    // the end-of-archive blocks may be missing, as GNU tar accepts
    expect(parse(t.subarray(0, 1536)).map((e) => e.name)).toEqual(['a']);
  });
});

describe('TarParser reads', () => {
  it('global PAX records for every entry after them, per-file records over them', () => {
    const g = paxRec('SCHILY.xattr.user.a', '1') + paxRec('comment', 'c');
    const x = paxRec('SCHILY.xattr.user.a', '2');
    const t = Buffer.concat([
      block('g', 'g', g.length),
      body(g),
      block('one', '0', 0),
      block('x', 'x', x.length),
      body(x),
      block('two', '0', 0),
    ]);
    const [one, two] = parse(t);
    expect(one!.pax).toEqual({ 'SCHILY.xattr.user.a': '1', comment: 'c' });
    expect(two!.pax).toEqual({ 'SCHILY.xattr.user.a': '2', comment: 'c' });
  });

  it('a directory as a regular file with a trailing slash, and no data for directories', () => {
    const t = Buffer.concat([block('old/', '0', 0), block('d', '5', 1024), block('f', '0', 0)]);
    expect(parse(t).map((e) => [e.name, e.type])).toEqual([
      ['old/', 'directory'],
      ['d', 'directory'],
      ['f', 'file'],
    ]);
  });

  it('devices with their numbers, unknown types as regular files (POSIX)', () => {
    const dev = patch(block('null', '3', 0), 0, 329, Buffer.from('0000001\x000000003\x00'));
    expect(parse(Buffer.concat([dev, block('odd', 'Z', 2), body('hi')]))).toMatchObject([
      { name: 'null', type: 'character-device', devmajor: 1, devminor: 3 },
      { name: 'odd', type: 'file', body: Buffer.from('hi').toString('hex') },
    ]);
  });
});
