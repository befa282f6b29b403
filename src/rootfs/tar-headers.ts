/**
 * Strict checks on the raw bytes of tar headers, which tar-stream parses leniently: a numeric
 * field of "12zz" reads as 12 and "zz" as NaN, and names that are not UTF-8 are decoded with
 * U+FFFD in place of their bytes (so cpm would write another name than the archive's). GNU tar
 * refuses such headers; so does cpm (strictTarExtract says how the checks reach the parser).
 */

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

/** The checksum of a header block matches (else the parser reports it, not this module). */
function checksumOk(buf: Uint8Array): boolean {
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 0x20 : buf[i]!;
  if (sum === 8 * 0x20) return false; // an end-of-archive block
  return (
    parseInt(
      Buffer.from(field(buf, 148, 8))
        .toString('latin1')
        .trim(),
      8,
    ) === sum
  );
}

/** A long name or PAX header's body: the names in it must be UTF-8. */
function checkLongHeader(type: string, buf: Uint8Array): void {
  if (type === 'gnu-long-path' || type === 'gnu-long-link-path') {
    const f = field(buf, 0, buf.length);
    if (!isUtf8(f))
      throw new TarHeaderError(
        escapeBytes(f),
        nonUtf8(type === 'gnu-long-path' ? 'long name' : 'long link target'),
      );
    return;
  }
  if (type !== 'pax-header' && type !== 'pax-global-header') return;
  // records are "LEN key=value\n"; only path and linkpath name files
  let rest = Buffer.from(buf);
  while (rest.length) {
    const sp = rest.indexOf(0x20);
    const len = sp > 0 ? parseInt(rest.subarray(0, sp).toString('latin1'), 10) : NaN;
    if (!(len > sp + 1) || len > rest.length) return; // the parser judges broken records
    const rec = rest.subarray(sp + 1, len - 1);
    const eq = rec.indexOf(0x3d);
    const key = eq < 0 ? '' : rec.subarray(0, eq).toString('latin1');
    if (key === 'path' || key === 'linkpath') {
      const v = rec.subarray(eq + 1);
      if (!isUtf8(v))
        throw new TarHeaderError(
          escapeBytes(v),
          nonUtf8(key === 'path' ? 'PAX path' : 'PAX link target'),
        );
    }
    rest = rest.subarray(len);
  }
}

/** The private surface of tar-stream 3's extractor these checks hook into. */
interface ExtractInternals {
  _buffer: { shift(size: number): Uint8Array | null };
  _header: { type: string } | null;
  _consumeHeader(): boolean;
  _decodeLongHeader(buf: Uint8Array): void;
}

/**
 * Adds the checks above to one tar-stream extractor. Its header decoder cannot be reached from
 * outside (and a bundled cpm holds its own copy), so the instance's header steps are wrapped:
 * the 512-byte block _consumeHeader takes from the buffer is checked as it is taken, and so is a
 * long name or PAX body before it is decoded. A thrown TarHeaderError ends the stream as a
 * parse error. Throws at once when tar-stream changed shape, so the checks never silently lapse.
 */
export function strictTarExtract<T extends object>(extract: T): T {
  const ex = extract as unknown as ExtractInternals;
  if (
    typeof ex._consumeHeader !== 'function' ||
    typeof ex._decodeLongHeader !== 'function' ||
    typeof ex._buffer?.shift !== 'function'
  )
    throw new Error(
      'tar-stream extractor internals changed: strict header checks cannot be installed',
    );
  const buffer = ex._buffer;
  const shift = buffer.shift.bind(buffer);
  const consumeHeader = ex._consumeHeader.bind(ex);
  const decodeLong = ex._decodeLongHeader.bind(ex);
  ex._consumeHeader = () => {
    buffer.shift = (size: number) => {
      buffer.shift = shift;
      const block = shift(size);
      if (block && size === 512 && checksumOk(block)) checkHeaderBlock(block);
      return block;
    };
    try {
      return consumeHeader();
    } finally {
      buffer.shift = shift;
    }
  };
  ex._decodeLongHeader = (buf: Uint8Array) => {
    checkLongHeader(ex._header?.type ?? '', buf);
    decodeLong(buf);
  };
  return extract;
}
