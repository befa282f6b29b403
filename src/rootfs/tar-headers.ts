/**
 * Strict checks on the raw bytes of tar headers, which tar-stream parses leniently: a numeric
 * field of "12zz" reads as 12 and "zz" as NaN, and names that are not UTF-8 are decoded with
 * U+FFFD in place of their bytes (so cpm would write another name than the archive's). GNU tar
 * refuses such headers; so does cpm. tar-stream gives no hook for the raw header block, so its
 * header decoders are wrapped once, process-wide (the wrapped functions throw; the parser turns
 * that into a stream error, which the layer reader reports as a broken tar).
 */
import { createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(import.meta.url);

/** A header tar-stream would have read without complaint, but GNU tar refuses. */
export class TarHeaderError extends Error {
  constructor(
    /** The entry's name as its bytes read, hex-escaped where they are not printable ASCII. */
    readonly entry: string,
    readonly why: string,
  ) {
    super(`entry "${entry}": ${why}`);
    this.name = 'TarHeaderError';
  }
}

/** Printable ASCII as is, every other byte as \xNN: a name shown without guessing its charset. */
export function escapeBytes(b: Uint8Array): string {
  let s = '';
  for (const c of b)
    s +=
      c >= 0x20 && c < 0x7f && c !== 0x5c
        ? String.fromCharCode(c)
        : `\\x${c.toString(16).padStart(2, '0')}`;
  return s;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });
function isUtf8(b: Uint8Array): boolean {
  try {
    utf8.decode(b);
    return true;
  } catch {
    return false;
  }
}

/** The bytes of a NUL-terminated string field. */
function field(buf: Uint8Array, off: number, len: number): Uint8Array {
  const f = buf.subarray(off, off + len);
  const nul = f.indexOf(0);
  return nul < 0 ? f : f.subarray(0, nul);
}

/**
 * Why a numeric field is unreadable, or null when it is fine. Octal digits, optionally led by
 * spaces and ended by NUL or space (as GNU tar reads them), or base-256 (first byte 0x80 for a
 * positive number; 0xff marks a negative one, which no size, mode or owner can be).
 */
export function numericFieldProblem(f: Uint8Array): string | null {
  if (f[0] === 0x80) return null;
  if (f[0] === 0xff) return 'a negative base-256 number';
  let i = 0;
  while (i < f.length && f[i] === 0x20) i++;
  while (i < f.length && f[i]! >= 0x30 && f[i]! <= 0x37) i++;
  // what follows the digits must end the number (GNU tar looks no further)
  if (i < f.length && f[i] !== 0 && f[i] !== 0x20)
    return `"${escapeBytes(field(f, 0, f.length))}", not an octal number`;
  return null;
}

const NUMERIC: Array<[string, number, number]> = [
  ['mode', 100, 8],
  ['uid', 108, 8],
  ['gid', 116, 8],
  ['size', 124, 12],
];

/** Throws a TarHeaderError for a header block with an unreadable number or a non-UTF-8 name. */
export function checkHeaderBlock(buf: Uint8Array): void {
  const name = field(buf, 0, 100);
  const ustar = buf[257] === 0x75 && buf[258] === 0x73 && buf[262] === 0; // "ustar\0" (POSIX)
  const prefix = ustar ? field(buf, 345, 155) : new Uint8Array(0);
  const shown = escapeBytes(prefix.length ? Buffer.concat([prefix, Buffer.from('/'), name]) : name);
  for (const [what, off, len] of NUMERIC) {
    const p = numericFieldProblem(buf.subarray(off, off + len));
    if (p) throw new TarHeaderError(shown, `the ${what} field is ${p}`);
  }
  if (!isUtf8(name) || !isUtf8(prefix)) throw new TarHeaderError(shown, nonUtf8('name'));
  const link = field(buf, 157, 100);
  if (!isUtf8(link))
    throw new TarHeaderError(shown, `${nonUtf8('link target')} ("${escapeBytes(link)}")`);
}

const nonUtf8 = (what: string): string =>
  `the ${what} is not UTF-8; cpm keeps file names as UTF-8 text and will not write another name than the archive's`;

interface Headers {
  decode: (buf: Uint8Array, ...rest: unknown[]) => unknown;
  decodeLongPath: (buf: Uint8Array, encoding: string) => string;
  decodePax: (buf: Uint8Array) => Record<string, string>;
  cpmStrict?: true;
}

let installed = false;

/** Wraps tar-stream's header decoders with the checks above (idempotent). */
export function installStrictTarHeaders(): void {
  if (installed) return;
  installed = true;
  // the same module instance tar-stream's extractor calls through its `headers.` object
  const h = require(
    path.join(path.dirname(require.resolve('tar-stream')), 'headers.js'),
  ) as Headers;
  if (h.cpmStrict) return;
  h.cpmStrict = true;
  const { decode, decodeLongPath, decodePax } = h;
  h.decode = (buf, ...rest) => {
    const header = decode(buf, ...rest);
    // null: an end-of-archive block; a bad checksum has thrown already
    if (header) checkHeaderBlock(buf);
    return header;
  };
  h.decodeLongPath = (buf, encoding) => {
    const f = field(buf, 0, buf.length);
    if (!isUtf8(f)) throw new TarHeaderError(escapeBytes(f), nonUtf8('long name'));
    return decodeLongPath(buf, encoding);
  };
  h.decodePax = (buf) => {
    const pax = decodePax(buf);
    // decodePax reads records as UTF-8: a path that lost bytes shows U+FFFD; check the bytes
    for (const key of ['path', 'linkpath'] as const) {
      const v = pax[key];
      if (v === undefined || !v.includes('\uFFFD')) continue;
      const at = Buffer.from(buf).indexOf(` ${key}=`);
      const end = at < 0 ? -1 : Buffer.from(buf).indexOf(0x0a, at);
      const raw = at < 0 ? Buffer.from(v) : Buffer.from(buf).subarray(at + key.length + 2, end);
      if (!isUtf8(raw))
        throw new TarHeaderError(
          escapeBytes(raw),
          nonUtf8(key === 'path' ? 'PAX path' : 'PAX link target'),
        );
    }
    return pax;
  };
}
