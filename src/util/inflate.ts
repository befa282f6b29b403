/**
 * gunzip of one small gzip member (RFC 1952 around RFC 1951's inflate), in JavaScript. A no-op
 * install of a repository package inflates a few KiB of repository index, and node:zlib with the
 * stream modules it loads costs ≈ 6 ms on Node 24 (4 on Node 20) of a ≈ 140 ms command; this does
 * the few KiB in about a millisecond, cold (docs/performance.md, "Eighth session"). Larger inputs go
 * to node:zlib (src/repo/index-v4.ts), whose C inflate is many times faster once loaded.
 *
 * The decoder is the canonical-code walk of zlib's contrib/puff: no tables beyond the counts and
 * symbols of each code. Every read is bounds-checked, the output may not exceed `maxOut`, and the
 * member's CRC-32 and length are checked, so a damaged member is an error, never wrong bytes.
 * test/util/inflate.test.ts compares it with node:zlib on stored, fixed and dynamic blocks.
 */

export class InflateError extends Error {}

const MAXBITS = 15;

interface Huffman {
  count: Uint16Array; // codes of each length
  symbol: Uint16Array; // symbols in canonical order
  incomplete: boolean; // codes left unused (zlib refuses such a code in a dynamic block)
}

// lengths 257..285: base and extra bits; distances 0..29 likewise
const LBASE = [
  3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131,
  163, 195, 227, 258,
];
const LEXT = [
  0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];
const DBASE = [
  1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049,
  3073, 4097, 6145, 8193, 12289, 16385, 24577,
];
const DEXT = [
  0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13,
];
// the order in which a dynamic block gives the code lengths of its code-length code
const ORDER = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15];

/** The canonical code of `n` lengths from `lengths[at..]`; over-subscribed is an error. */
function huffman(lengths: Uint8Array, at: number, n: number): Huffman {
  const count = new Uint16Array(MAXBITS + 1);
  for (let i = 0; i < n; i++) count[lengths[at + i]!]!++;
  // no codes: any use fails
  if (count[0] === n) return { count, symbol: new Uint16Array(0), incomplete: false };
  let left = 1;
  for (let len = 1; len <= MAXBITS; len++) {
    left = (left << 1) - count[len]!;
    if (left < 0) throw new InflateError('over-subscribed Huffman code');
  }
  const offs = new Uint16Array(MAXBITS + 1);
  for (let len = 1; len < MAXBITS; len++) offs[len + 1] = offs[len]! + count[len]!;
  const symbol = new Uint16Array(n);
  for (let i = 0; i < n; i++) {
    const l = lengths[at + i]!;
    if (l !== 0) symbol[offs[l]!++] = i;
  }
  return { count, symbol, incomplete: left > 0 };
}

/** zlib's rule: an incomplete code is refused, but for a single code of one bit. */
function usable(h: Huffman): boolean {
  return !h.incomplete || (h.count[1] === 1 && h.count.every((c, len) => len < 2 || c === 0));
}

let fixed: { len: Huffman; dist: Huffman } | undefined;

function fixedCodes(): { len: Huffman; dist: Huffman } {
  if (fixed) return fixed;
  const l = new Uint8Array(288 + 30);
  l.fill(8, 0, 144);
  l.fill(9, 144, 256);
  l.fill(7, 256, 280);
  l.fill(8, 280, 288);
  l.fill(5, 288, 318);
  fixed = { len: huffman(l, 0, 288), dist: huffman(l, 288, 30) };
  return fixed;
}

class Inflater {
  pos: number;
  private bitbuf = 0;
  private bitcnt = 0;
  out: Uint8Array;
  n = 0;

  constructor(
    private readonly src: Uint8Array,
    at: number,
    private readonly maxOut: number,
    sizeHint: number,
  ) {
    this.pos = at;
    this.out = new Uint8Array(Math.min(maxOut, Math.max(1024, sizeHint)));
  }

  private bits(need: number): number {
    let val = this.bitbuf;
    while (this.bitcnt < need) {
      if (this.pos >= this.src.length) throw new InflateError('unexpected end of data');
      val |= this.src[this.pos++]! << this.bitcnt;
      this.bitcnt += 8;
    }
    this.bitbuf = val >>> need;
    this.bitcnt -= need;
    return val & ((1 << need) - 1);
  }

  private decode(h: Huffman): number {
    let code = 0;
    let first = 0;
    let index = 0;
    let bitbuf = this.bitbuf;
    let left = this.bitcnt;
    for (let len = 1; len <= MAXBITS; len++) {
      if (left === 0) {
        if (this.pos >= this.src.length) throw new InflateError('unexpected end of data');
        bitbuf = this.src[this.pos++]!;
        left = 8;
      }
      code |= bitbuf & 1;
      bitbuf >>>= 1;
      left--;
      const count = h.count[len]!;
      if (code - count < first) {
        this.bitbuf = bitbuf;
        this.bitcnt = left;
        return h.symbol[index + (code - first)]!;
      }
      index += count;
      first = (first + count) << 1;
      code <<= 1;
    }
    throw new InflateError('invalid Huffman code');
  }

  private room(more: number): void {
    const need = this.n + more;
    if (need <= this.out.length) return;
    if (need > this.maxOut) throw new InflateError(`output larger than ${this.maxOut} bytes`);
    const grown = new Uint8Array(Math.min(this.maxOut, Math.max(need, this.out.length * 2)));
    grown.set(this.out.subarray(0, this.n));
    this.out = grown;
  }

  private stored(): void {
    this.bitbuf = 0; // to the byte boundary
    this.bitcnt = 0;
    const s = this.src;
    if (this.pos + 4 > s.length) throw new InflateError('unexpected end of data');
    const len = s[this.pos]! | (s[this.pos + 1]! << 8);
    const nlen = s[this.pos + 2]! | (s[this.pos + 3]! << 8);
    if (len !== (~nlen & 0xffff)) throw new InflateError('stored block length does not match');
    this.pos += 4;
    if (this.pos + len > s.length) throw new InflateError('unexpected end of data');
    this.room(len);
    this.out.set(s.subarray(this.pos, this.pos + len), this.n);
    this.n += len;
    this.pos += len;
  }

  private codes(len: Huffman, dist: Huffman): void {
    for (;;) {
      let sym = this.decode(len);
      if (sym < 256) {
        if (this.n === this.out.length) this.room(1);
        this.out[this.n++] = sym;
      } else if (sym === 256) {
        return;
      } else {
        sym -= 257;
        if (sym >= 29) throw new InflateError('invalid length code');
        const n = LBASE[sym]! + this.bits(LEXT[sym]!);
        const d = this.decode(dist);
        if (d >= 30) throw new InflateError('invalid distance code');
        const back = DBASE[d]! + this.bits(DEXT[d]!);
        if (back > this.n) throw new InflateError('distance too far back');
        this.room(n);
        const out = this.out;
        let o = this.n;
        for (let i = 0; i < n; i++, o++) out[o] = out[o - back]!;
        this.n = o;
      }
    }
  }

  private dynamic(): void {
    const nlen = this.bits(5) + 257;
    const ndist = this.bits(5) + 1;
    const ncode = this.bits(4) + 4;
    if (nlen > 286 || ndist > 30) throw new InflateError('too many length or distance codes');
    const lengths = new Uint8Array(320);
    for (let i = 0; i < ncode; i++) lengths[ORDER[i]!] = this.bits(3);
    const lencode = huffman(lengths, 0, 19);
    if (lencode.incomplete) throw new InflateError('incomplete code lengths code');
    lengths.fill(0);
    for (let i = 0; i < nlen + ndist;) {
      const sym = this.decode(lencode);
      if (sym < 16) {
        lengths[i++] = sym;
        continue;
      }
      let len = 0;
      let rep: number;
      if (sym === 16) {
        if (i === 0) throw new InflateError('repeat with no first length');
        len = lengths[i - 1]!;
        rep = 3 + this.bits(2);
      } else if (sym === 17) rep = 3 + this.bits(3);
      else rep = 11 + this.bits(7);
      if (i + rep > nlen + ndist) throw new InflateError('too many lengths');
      while (rep-- > 0) lengths[i++] = len;
    }
    if (lengths[256] === 0) throw new InflateError('no end-of-block code');
    const lit = huffman(lengths, 0, nlen);
    if (!usable(lit)) throw new InflateError('incomplete literal/length code');
    const dist = huffman(lengths, nlen, ndist);
    if (!usable(dist)) throw new InflateError('incomplete distance code');
    this.codes(lit, dist);
  }

  run(): void {
    let last: number;
    do {
      last = this.bits(1);
      const type = this.bits(2);
      if (type === 0) this.stored();
      else if (type === 1) {
        const f = fixedCodes();
        this.codes(f.len, f.dist);
      } else if (type === 2) this.dynamic();
      else throw new InflateError('invalid block type');
    } while (!last);
  }
}

let crcTable: Int32Array | undefined;

function crc32(b: Uint8Array, n: number): number {
  if (!crcTable) {
    crcTable = new Int32Array(256);
    for (let i = 0; i < 256; i++) {
      let c = i;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[i] = c;
    }
  }
  const t = crcTable;
  let c = -1;
  for (let i = 0; i < n; i++) c = t[(c ^ b[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ -1) >>> 0;
}

/**
 * The data of `src`, which must be exactly one gzip member whose data is at most `maxOut` bytes;
 * `sizeHint`, the size expected, sizes the first output buffer.
 */
export function gunzipMember(src: Uint8Array, maxOut: number, sizeHint = src.length * 4): Buffer {
  if (src.length < 18 || src[0] !== 0x1f || src[1] !== 0x8b || src[2] !== 8)
    throw new InflateError('not a gzip member');
  const flg = src[3]!;
  if (flg & 0xe0) throw new InflateError('reserved gzip flags set');
  let pos = 10;
  if (flg & 4) pos += 2 + (src[pos]! | (src[pos + 1]! << 8));
  for (const bit of [8, 16]) {
    if (flg & bit) {
      while (pos < src.length && src[pos] !== 0) pos++;
      pos++;
    }
  }
  if (flg & 2) {
    if (pos + 2 > src.length) throw new InflateError('unexpected end of data');
    if ((src[pos]! | (src[pos + 1]! << 8)) !== (crc32(src, pos) & 0xffff))
      throw new InflateError('header crc mismatch');
    pos += 2;
  }
  if (pos > src.length - 8) throw new InflateError('unexpected end of data');
  const inf = new Inflater(src, pos, maxOut, sizeHint);
  inf.run();
  const end = inf.pos;
  if (end + 8 !== src.length)
    throw new InflateError(
      end + 8 > src.length ? 'unexpected end of data' : 'data after the gzip member',
    );
  const word = (at: number): number =>
    (src[at]! | (src[at + 1]! << 8) | (src[at + 2]! << 16) | (src[at + 3]! << 24)) >>> 0;
  if (word(end) !== crc32(inf.out, inf.n)) throw new InflateError('incorrect data check');
  if (word(end + 4) !== inf.n >>> 0) throw new InflateError('incorrect length check');
  return Buffer.from(inf.out.buffer, inf.out.byteOffset, inf.n);
}
