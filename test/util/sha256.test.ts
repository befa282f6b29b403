import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it, vi } from 'vitest';
import { sha256Hex } from '../../src/util/sha256.js';
import { assemble, MODULE, sha256HexWasm } from '../../src/util/sha256-wasm.js';

const ref = (b: Uint8Array | string): string => createHash('sha256').update(b).digest('hex');

describe('sha256 in WebAssembly (util/sha256-wasm.ts)', () => {
  it('runs the module the assembler writes', () => {
    const now = Buffer.from(assemble()).toString('base64');
    // when the assembler changes, MODULE is this string
    expect(MODULE, `MODULE is stale; assemble() now writes:\n${now}\n`).toBe(now);
  });

  it('matches node:crypto on every length around the block and padding edges', () => {
    for (let len = 0; len <= 300; len++) {
      const b = Buffer.alloc(len);
      for (let i = 0; i < len; i++) b[i] = (i * 131 + len) & 255;
      expect(sha256HexWasm(b), `length ${len}`).toBe(ref(b));
    }
  });

  it('matches node:crypto on the standard vectors and on random data', () => {
    expect(sha256HexWasm(Buffer.from(''))).toBe(
      'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
    );
    expect(sha256HexWasm(Buffer.from('abc'))).toBe(
      'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad',
    );
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 5000 }), (b) => sha256HexWasm(b) === ref(b)),
      { numRuns: 300 },
    );
  });

  it('grows its memory for inputs larger than it has, and still hashes small ones after', () => {
    const big = Buffer.alloc(3 * 1024 * 1024 + 17, 0xa5);
    expect(sha256HexWasm(big)).toBe(ref(big));
    expect(sha256HexWasm(Buffer.from('x'))).toBe(ref('x'));
  });

  it('hashes a subarray, not the buffer under it', () => {
    const whole = Buffer.from('0123456789abcdef'.repeat(10));
    const part = whole.subarray(7, 93);
    expect(sha256HexWasm(part)).toBe(ref(part));
  });
});

describe('sha256Hex (util/sha256.ts)', () => {
  it('gives node:crypto’s answer for strings (UTF-8) and bytes of any size', () => {
    for (const s of ['', 'a', 'é', '𝄞 Főtanúsítvány', 'x'.repeat(70_000)])
      expect(sha256Hex(s)).toBe(ref(s));
    // above the size hashed in WebAssembly
    const big = Buffer.alloc(300 * 1024, 7);
    expect(sha256Hex(big)).toBe(ref(big));
  });
});

describe('sha256 in WebAssembly on a big-endian host', () => {
  it('keeps its words in WebAssembly’s order (little-endian), not the host’s', async () => {
    // a Uint32Array over WebAssembly memory as on s390x: words stored and read big-endian
    class BigEndianWords {
      constructor(buf: ArrayBuffer, off = 0, len = (buf.byteLength - off) >> 2) {
        const view = new DataView(buf, off, len * 4);
        return new Proxy(this, {
          get: (_t, key) => {
            if (key === 'set')
              return (vs: ArrayLike<number>, at = 0) => {
                for (let i = 0; i < vs.length; i++) view.setUint32((at + i) * 4, vs[i]!, false);
              };
            if (key === 'length') return len;
            if (typeof key === 'string' && /^\d+$/.test(key))
              return view.getUint32(+key * 4, false);
            return undefined;
          },
        });
      }
    }
    vi.resetModules();
    vi.stubGlobal('Uint32Array', BigEndianWords);
    try {
      const m = await import('../../src/util/sha256-wasm.js');
      expect(m.sha256HexWasm(Buffer.from('abc'))).toBe(ref('abc'));
    } finally {
      vi.unstubAllGlobals();
      vi.resetModules();
    }
  });
});
