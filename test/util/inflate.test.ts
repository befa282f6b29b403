import { constants, crc32, gunzipSync, gzipSync } from 'node:zlib';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { gunzipMember, InflateError } from '../../src/util/inflate.js';

/** Text-like bytes: repeats make long matches and dynamic codes; random bytes make stored blocks. */
const texty = fc
  .array(
    fc.oneof(fc.constantFrom('name', 'version', '"', ':', ',', '\n', ' ', 'system/'), fc.string()),
    {
      maxLength: 400,
    },
  )
  .map((a) => Buffer.from(a.join(''), 'utf8'));

describe('gunzipMember (util/inflate.ts)', () => {
  it('inflates what node:zlib deflates: stored, fixed and dynamic blocks, every level', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          texty,
          fc.uint8Array({ maxLength: 3000 }).map((b) => Buffer.from(b)),
        ),
        fc.integer({ min: 0, max: 9 }),
        fc.constantFrom(
          constants.Z_DEFAULT_STRATEGY,
          constants.Z_FIXED,
          constants.Z_HUFFMAN_ONLY,
          constants.Z_RLE,
        ),
        (data, level, strategy) => {
          const z = gzipSync(data, { level, strategy });
          expect(gunzipMember(z, data.length + 1)).toEqual(data);
        },
      ),
      { numRuns: 500 },
    );
  });

  it('reads a member with a name, a comment, an extra field and a header CRC', () => {
    const data = Buffer.from('repository index\n'.repeat(50));
    const plain = gzipSync(data);
    const name = Buffer.from('index.json\0');
    const comment = Buffer.from('cpm\0');
    const extra = Buffer.from([4, 0, 0x43, 0x50, 0, 0]); // XLEN 4: one subfield, no data
    const head = Buffer.from(plain.subarray(0, 10));
    head[3] = 4 | 8 | 16 | 2;
    const header = Buffer.concat([head, extra, name, comment]);
    const hcrc = Buffer.alloc(2);
    hcrc.writeUInt16LE(crc32(header) & 0xffff);
    const z = Buffer.concat([header, hcrc, plain.subarray(10)]);
    expect(gunzipSync(z)).toEqual(data);
    expect(gunzipMember(z, 1 << 20)).toEqual(data);
    hcrc[0]! ^= 1;
    const bad = Buffer.concat([header, hcrc, plain.subarray(10)]);
    expect(() => gunzipSync(bad)).toThrow(/header crc mismatch/);
    expect(() => gunzipMember(bad, 1 << 20)).toThrow(/header crc mismatch/);
  });

  it('refuses damage with an error, never other bytes', () => {
    const data = Buffer.from(
      JSON.stringify({ packages: Array.from({ length: 60 }, (_, i) => `system/p${i}`) }),
    );
    const z = gzipSync(data);
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: z.length - 1 }),
        fc.integer({ min: 1, max: 255 }),
        (at, x) => {
          const bad = Buffer.from(z);
          bad[at]! ^= x;
          let got: Buffer | undefined;
          try {
            got = gunzipMember(bad, 1 << 20);
          } catch (e) {
            expect(e).toBeInstanceOf(InflateError);
            return;
          }
          // a flip in the header's mtime, flags' unused parts or OS byte leaves the data intact
          expect(got).toEqual(data);
        },
      ),
      { numRuns: 1000 },
    );
    for (let n = 0; n < z.length; n++)
      expect(() => gunzipMember(z.subarray(0, n), 1 << 20)).toThrow(InflateError);
    expect(() => gunzipMember(Buffer.concat([z, z]), 1 << 20)).toThrow(
      /data after the gzip member/,
    );
  });

  it('stops at maxOut', () => {
    const data = Buffer.alloc(100_000, 0x61);
    expect(() => gunzipMember(gzipSync(data), 99_999)).toThrow(/output larger than 99999 bytes/);
    expect(gunzipMember(gzipSync(data), 100_000)).toEqual(data);
  });
});

/** Bits of a deflate stream: values LSB first, Huffman codes MSB first (RFC 1951, 3.1.1). */
class Bits {
  private bytes: number[] = [];
  private n = 0;
  put(value: number, count: number): this {
    for (let i = 0; i < count; i++) this.bit((value >>> i) & 1);
    return this;
  }
  code(value: number, len: number): this {
    for (let i = len - 1; i >= 0; i--) this.bit((value >>> i) & 1);
    return this;
  }
  private bit(b: number): void {
    if (this.n % 8 === 0) this.bytes.push(0);
    this.bytes[this.bytes.length - 1]! |= b << (this.n % 8);
    this.n++;
  }
  done(): Buffer {
    return Buffer.from(this.bytes);
  }
}

/**
 * One dynamic block of "aaa": literal 'a' with a 1-bit code, end-of-block with an `eob`-bit one, one
 * distance code of `dist` bits (0: none), never used. `clen` gives the code-length code's lengths
 * of the symbols the block uses (0, 1, 18, and 2 for a 2-bit end-of-block).
 */
function dynamicAaa(clen: Record<number, number>, eob = 1, dist = 0): Buffer {
  const order = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15];
  // the canonical codes of the code-length code: by length, then by symbol
  const syms = Object.keys(clen)
    .map(Number)
    .sort((a, b) => clen[a]! - clen[b]! || a - b);
  const codes = new Map<number, number>();
  let code = 0;
  let prevLen = clen[syms[0]!]!;
  for (const s of syms) {
    code <<= clen[s]! - prevLen;
    prevLen = clen[s]!;
    codes.set(s, code++);
  }
  const put = (w: Bits, s: number): Bits => w.code(codes.get(s)!, clen[s]!);
  const w = new Bits().put(1, 1).put(2, 2); // last block, dynamic
  w.put(0, 5).put(0, 5).put(14, 4); // 257 lengths, 1 distance, 18 code-length lengths
  for (let i = 0; i < 18; i++) w.put(clen[order[i]!] ?? 0, 3);
  put(w, 18).put(97 - 11, 7); // 97 zeros
  put(w, 1); // 'a': 1
  put(w, 18).put(138 - 11, 7); // 98..235: zeros
  put(w, 18).put(20 - 11, 7); // 236..255: zeros
  put(w, eob); // end of block
  put(w, dist); // the one distance
  w.code(0, 1)
    .code(0, 1)
    .code(0, 1)
    .code(eob === 1 ? 1 : 2, eob); // a a a, end of block
  const deflated = w.done();
  const head = Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]);
  const tail = Buffer.alloc(8);
  tail.writeUInt32LE(crc32(Buffer.from('aaa')), 0);
  tail.writeUInt32LE(3, 4);
  return Buffer.concat([head, deflated, tail]);
}

describe('gunzipMember: incomplete Huffman codes, as node:zlib', () => {
  it('reads a dynamic block whose codes are complete, or one code of one bit', () => {
    for (const z of [dynamicAaa({ 0: 2, 1: 2, 18: 1 }), dynamicAaa({ 0: 2, 1: 2, 18: 1 }, 1, 1)]) {
      expect(gunzipSync(z).toString()).toBe('aaa');
      expect(gunzipMember(z, 100).toString()).toBe('aaa');
    }
  });

  it('refuses an incomplete code-length code', () => {
    const z = dynamicAaa({ 0: 2, 1: 2, 18: 2 });
    expect(() => gunzipSync(z)).toThrow(/invalid code lengths set/);
    expect(() => gunzipMember(z, 100)).toThrow(InflateError);
  });

  it('refuses an incomplete literal/length code of more than one code', () => {
    const z = dynamicAaa({ 0: 2, 1: 2, 2: 2, 18: 2 }, 2);
    expect(() => gunzipSync(z)).toThrow(/invalid literal\/lengths set/);
    expect(() => gunzipMember(z, 100)).toThrow(InflateError);
  });
});
