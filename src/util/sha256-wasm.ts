/**
 * SHA-256 as a small WebAssembly function, for the short inputs of a command that would otherwise
 * load node:crypto for them alone: a no-op install checks the DB's head and a repository index
 * against their sums, a few KiB, and node:crypto with the stream modules behind it costs 10–15 ms
 * to load on Node 24, 7–10 on Node 20 (docs/performance.md, "Eighth session: no-op installs
 * without node:crypto"). V8 compiles this module in about a millisecond; JavaScript would run the
 * rounds in the interpreter.
 *
 * `assemble()` writes the module from the few instructions the compression function needs; its
 * output is kept below as MODULE, because running the assembler cold costs more (≈ 2 ms) than
 * decoding 590 bytes. test/util/sha256.test.ts checks that MODULE is what assemble() writes today
 * and the hash against node:crypto on every length around the block and padding edges and on
 * random data.
 */

// memory: K (64 words) at 0, W (64 words) at 256, H (8 words) at 512, input from DATA
const W_AT = 256;
const H_AT = 512;
export const DATA = 1024;

const K = [
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];
const H0 = [
  0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

// opcodes
const BLOCK = 0x02;
const LOOP = 0x03;
const BR = 0x0c;
const BR_IF = 0x0d;
const END = 0x0b;
const VOID = 0x40;
const GET = 0x20;
const SET = 0x21;
const TEE = 0x22;
const LOAD = 0x28;
const STORE = 0x36;
const CONST = 0x41;
const EQZ = 0x45;
const LT_U = 0x49;
const ADD = 0x6a;
const SUB = 0x6b;
const AND = 0x71;
const OR = 0x72;
const XOR = 0x73;
const SHL = 0x74;
const SHR_U = 0x76;
const ROTL = 0x77;
const ROTR = 0x78;
const I32 = 0x7f;

function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
  return out;
}

function sleb(n: number): number[] {
  const out: number[] = [];
  n |= 0;
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (b & 0x40) === 0) || (n === -1 && (b & 0x40) !== 0)) {
      out.push(b);
      return out;
    }
    out.push(b | 0x80);
  }
}

// locals: 0 p (input address), 1 n (blocks); a..h, t1, i, x
const P = 0;
const N = 1;
const [A, B, C, D, E, F, G, Hh] = [2, 3, 4, 5, 6, 7, 8, 9];
const T1 = 10;
const I = 11;
const X = 12;
const LOCALS = 11; // after the two parameters

/** The body of compress(p, n): n 64-byte blocks at p into H. */
function body(): number[] {
  const get = (l: number): number[] => [GET, l];
  const set = (l: number): number[] => [SET, l];
  const tee = (l: number): number[] => [TEE, l];
  const k = (v: number): number[] => [CONST, ...sleb(v)];
  const load = (offset: number): number[] => [LOAD, 2, ...uleb(offset)];
  const store = (offset: number): number[] => [STORE, 2, ...uleb(offset)];
  // rotr(x, r1) ^ rotr(x, r2) ^ (rotr or shr_u)(x, r3)
  // prettier-ignore
  const sigma = (x: number, r1: number, r2: number, r3: number, shift: boolean): number[] => [
    ...get(x), ...k(r1), ROTR,
    ...get(x), ...k(r2), ROTR, XOR,
    ...get(x), ...k(r3), shift ? SHR_U : ROTR, XOR,
  ];
  // (i + delta) * 4: the offset of word i + delta in a table
  const word = (delta: number): number[] => [...get(I), ...k(delta), ADD, ...k(2), SHL];
  // i += 1, then again from the loop's start while i < end
  // prettier-ignore
  const next = (end: number): number[] => [
    ...get(I), ...k(1), ADD, ...tee(I), ...k(end), LT_U, BR_IF, 0, END,
  ];
  const hs: number[] = [];
  const abc: number[] = [];
  for (let j = 0; j < 8; j++) {
    abc.push(...k(0), ...load(H_AT + 4 * j), ...set(A + j));
    hs.push(...k(0), ...k(0), ...load(H_AT + 4 * j), ...get(A + j), ADD, ...store(H_AT + 4 * j));
  }
  // one line per step; the stack effect reads left to right
  // prettier-ignore
  return [
    BLOCK, VOID, LOOP, VOID,
    ...get(N), EQZ, BR_IF, 1,
    // W[0..15]: the block's words, big-endian: bytes swapped by two masked rotations
    ...k(0), ...set(I),
    LOOP, VOID,
    ...word(0),
    ...get(P), ...word(0), ADD, ...load(0), ...tee(X),
    ...k(0x00ff00ff), AND, ...k(8), ROTR,
    ...get(X), ...k(0xff00ff00 | 0), AND, ...k(8), ROTL, OR,
    ...store(W_AT),
    ...next(16),
    // W[16..63] = σ1(W[i-2]) + W[i-7] + σ0(W[i-15]) + W[i-16]
    LOOP, VOID,
    ...word(0),
    ...word(-2), ...load(W_AT), ...set(X), ...sigma(X, 17, 19, 10, true),
    ...word(-7), ...load(W_AT), ADD,
    ...word(-15), ...load(W_AT), ...set(X), ...sigma(X, 7, 18, 3, true), ADD,
    ...word(-16), ...load(W_AT), ADD,
    ...store(W_AT),
    ...next(64),
    ...abc,
    // 64 rounds
    ...k(0), ...set(I),
    LOOP, VOID,
    // t1 = h + Σ1(e) + ch(e, f, g) + K[i] + W[i]
    ...get(Hh), ...sigma(E, 6, 11, 25, false), ADD,
    ...get(F), ...get(G), XOR, ...get(E), AND, ...get(G), XOR, ADD,
    ...word(0), ...load(0), ADD,
    ...word(0), ...load(W_AT), ADD,
    ...set(T1),
    // h = g, g = f, f = e, e = d + t1, d = c, c = b, b = a
    ...get(G), ...set(Hh), ...get(F), ...set(G), ...get(E), ...set(F),
    ...get(D), ...get(T1), ADD, ...set(E),
    ...get(C), ...set(D), ...get(B), ...set(C), ...get(A), ...set(B),
    // a = t1 + Σ0(a) + maj(a, b, c): the old a, b and c are now in b, c and d
    ...get(T1), ...sigma(B, 2, 13, 22, false), ADD,
    ...get(B), ...get(C), AND, ...get(D), ...get(B), ...get(C), OR, AND, OR, ADD,
    ...set(A),
    ...next(64),
    ...hs,
    ...get(P), ...k(64), ADD, ...set(P),
    ...get(N), ...k(1), SUB, ...set(N),
    BR, 0, END, END, END,
  ];
}

function section(id: number, content: number[]): number[] {
  return [id, ...uleb(content.length), ...content];
}

export function assemble(): Uint8Array {
  const name = (s: string): number[] => [...uleb(s.length), ...Buffer.from(s, 'latin1')];
  const code = [...uleb(1), ...uleb(LOCALS), I32, ...body()];
  return Uint8Array.from([
    ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00],
    ...section(1, [1, 0x60, 2, I32, I32, 0]), // type 0: (i32, i32) -> ()
    ...section(3, [1, 0]), // one function, of type 0
    ...section(5, [1, 0x00, 1]), // one memory, one page to start with
    ...section(7, [2, ...name('m'), 0x02, 0, ...name('c'), 0x00, 0]),
    ...section(10, [1, ...uleb(code.length), ...code]),
  ]);
}

/** assemble()'s output (test/util/sha256.test.ts prints it anew when the assembler changes). */
export const MODULE =
  'AGFzbQEAAAABBgFgAn9/AAMCAQAFAwEAAQcJAgFtAgABYwAACqcEAaQEAQt/AkADQCABRQ0BQQAhCwNAIAtBAGpBAnQgACALQQBqQQJ0aigCACIMQf+B/AdxQQh4IAxBgP6DeHFBCHdyNgKAAiALQQFqIgtBEEkNAAsDQCALQQBqQQJ0IAtBfmpBAnQoAoACIQwgDEEReCAMQRN4cyAMQQp2cyALQXlqQQJ0KAKAAmogC0FxakECdCgCgAIhDCAMQQd4IAxBEnhzIAxBA3ZzaiALQXBqQQJ0KAKAAmo2AoACIAtBAWoiC0HAAEkNAAtBACgCgAQhAkEAKAKEBCEDQQAoAogEIQRBACgCjAQhBUEAKAKQBCEGQQAoApQEIQdBACgCmAQhCEEAKAKcBCEJQQAhCwNAIAkgBkEGeCAGQQt4cyAGQRl4c2ogByAIcyAGcSAIc2ogC0EAakECdCgCAGogC0EAakECdCgCgAJqIQogCCEJIAchCCAGIQcgBSAKaiEGIAQhBSADIQQgAiEDIAogA0ECeCADQQ14cyADQRZ4c2ogAyAEcSAFIAMgBHJxcmohAiALQQFqIgtBwABJDQALQQBBACgCgAQgAmo2AoAEQQBBACgChAQgA2o2AoQEQQBBACgCiAQgBGo2AogEQQBBACgCjAQgBWo2AowEQQBBACgCkAQgBmo2ApAEQQBBACgClAQgB2o2ApQEQQBBACgCmAQgCGo2ApgEQQBBACgCnAQgCWo2ApwEIABBwABqIQAgAUEBayEBDAALCws=';

// the part of the WebAssembly API used here (this project's TypeScript libs do not declare it); the
// global is absent under node --jitless
interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}
interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object) => { exports: Record<string, unknown> };
}

interface Compressor {
  memory: WasmMemory;
  compress: (p: number, n: number) => void;
}

let made: Compressor | null | undefined;

/** The instance, made at first use; null where WebAssembly cannot run. */
function compressor(): Compressor | null {
  if (made !== undefined) return made;
  made = null;
  const wasm = (globalThis as { WebAssembly?: WasmApi }).WebAssembly;
  if (!wasm) return made;
  try {
    const inst = new wasm.Instance(new wasm.Module(Buffer.from(MODULE, 'base64')));
    const memory = inst.exports.m as WasmMemory;
    // WebAssembly memory is little-endian whatever the host is (a Uint32Array is the host's order)
    const k = new DataView(memory.buffer);
    K.forEach((v, i) => k.setUint32(4 * i, v, true));
    made = { memory, compress: inst.exports.c as Compressor['compress'] };
  } catch {
    // no WebAssembly here: node:crypto it is
  }
  return made;
}

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

/** The sha256 of `data` in hex, or null where WebAssembly is not available. */
export function sha256HexWasm(data: Uint8Array): string | null {
  const w = compressor();
  if (!w) return null;
  const len = data.length;
  const padded = (len + 9 + 63) & ~63;
  const need = DATA + padded;
  if (w.memory.buffer.byteLength < need)
    w.memory.grow(Math.ceil((need - w.memory.buffer.byteLength) / 65536));
  const mem = new Uint8Array(w.memory.buffer);
  mem.set(data, DATA);
  mem[DATA + len] = 0x80;
  mem.fill(0, DATA + len + 1, DATA + padded - 8);
  // the length in bits, a 64-bit big-endian number
  const view = new DataView(w.memory.buffer);
  view.setUint32(DATA + padded - 8, Math.floor(len / 0x20000000));
  view.setUint32(DATA + padded - 4, (len << 3) >>> 0);
  for (let j = 0; j < 8; j++) view.setUint32(H_AT + 4 * j, H0[j]!, true);
  w.compress(DATA, padded >>> 6);
  let hex = '';
  for (let j = 0; j < 8; j++) {
    const v = view.getUint32(H_AT + 4 * j, true);
    hex += HEX[v >>> 24]! + HEX[(v >>> 16) & 255]! + HEX[(v >>> 8) & 255]! + HEX[v & 255]!;
  }
  return hex;
}
