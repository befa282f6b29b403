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
