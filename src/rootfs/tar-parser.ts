/**
 * A synchronous, strict tar reader for extraction: headers are parsed straight out of the
 * decompressed chunks and bodies handed on as views of them, with no stream, promise or closure
 * per entry. It reads ustar, POSIX (PAX 'x' and 'g' records) and GNU ('L'/'K' long names,
 * base-256 numbers) archives, and refuses what GNU tar refuses or what would be written wrong:
 * a bad checksum, a numeric field with garbage after its digits, a negative size or owner,
 * names that are not UTF-8, malformed PAX records, sparse and multi-volume entries.
 *
 * Pull style: push() one chunk, then call next() until it returns NEED; the chunk must not be
 * changed until then (DATA views point into it). Memory is one chunk plus the pending long
 * name/PAX records (at most MAX_META bytes each).
 */
import { TarHeaderError, escapeBytes } from './tar-headers.js';

export type TarType =
  | 'file'
  | 'contiguous-file'
  | 'link'
  | 'symlink'
  | 'character-device'
  | 'block-device'
  | 'directory'
  | 'fifo';

export interface TarEntry {
  name: string;
  type: TarType;
  /** Bytes of body that follow (0 for directories, whatever their size field says). */
  size: number;
  /** Permission bits and setuid/setgid/sticky (& 0o7777). */
  mode: number;
  uid: number;
  gid: number;
  /** Seconds since the epoch (PAX fractions dropped). */
  mtime: number;
  /** Target of a symlink or hardlink ('' for other types). */
  linkname: string;
  devmajor: number;
  devminor: number;
  /** The PAX records that applied to this entry (global ones included), or null. */
  pax: Record<string, string> | null;
}

/** next(): the chunk is used up, push the next one. */
export const NEED = 0;
/** next(): a new entry, in `entry`. */
export const ENTRY = 1;
/** next(): body bytes of the current entry, in `data` (a view into the pushed chunk). */
export const DATA = 2;
/** next(): the current entry's body is complete (follows ENTRY at once for an empty body). */
export const END = 3;
export type TarEvent = typeof NEED | typeof ENTRY | typeof DATA | typeof END;

/** Largest long name or PAX header body accepted (GNU tar has none; ACLs stay far below). */
export const MAX_META = 1 << 20;

const S_HEADER = 0;
const S_BODY = 1;
const S_META = 2;
const S_PAD = 3;
const S_ENDED = 4;

const utf8 = new TextDecoder('utf-8', { fatal: true });
const lossy = new TextDecoder('utf-8');

const nonUtf8 = (what: string): string =>
  `the ${what} is not UTF-8; cpm keeps file names as UTF-8 text and will not write another name than the archive's`;

/** Index of the first NUL in buf[off, off+len), or off+len. */
function nulAt(buf: Uint8Array, off: number, len: number): number {
  const end = off + len;
  for (let i = off; i < end; i++) if (buf[i] === 0) return i;
  return end;
}

/** buf[s, e) as text: ASCII read directly, anything else strictly as UTF-8 (null when it is not). */
function text(buf: Buffer, s: number, e: number): string | null {
  let ascii = true;
  for (let i = s; i < e; i++)
    if (buf[i]! >= 0x80) {
      ascii = false;
      break;
    }
  if (ascii) return buf.toString('latin1', s, e);
  try {
    return utf8.decode(buf.subarray(s, e));
  } catch {
    return null;
  }
}

export class TarParser {
  /** The entry of the last ENTRY event. */
  entry: TarEntry = emptyEntry();
  /** The body bytes of the last DATA event: a view into the chunk pushed last. */
  data: Buffer = Buffer.alloc(0);

  private buf: Buffer = Buffer.alloc(0);
  private pos = 0;
  private state = S_HEADER;
  /** Body bytes (S_BODY, S_META) or padding bytes (S_PAD) still to come. */
  private left = 0;
  /** Padding after the current body. */
  private pad = 0;
  /** A header block split across chunks. */
  private readonly block = Buffer.alloc(512);
  private blockFill = 0;
  /** The body of a long name or PAX header being gathered, and its type. */
  private meta: Buffer | null = null;
  private metaFill = 0;
  private metaType = 0;
  /** Shown in errors about the body of the meta header. */
  private metaShown = '';
  /** What the meta headers read so far say about the next entry. */
  private longName: string | null = null;
  private longLink: string | null = null;
  private pax: Record<string, string> | null = null;
  private global: Record<string, string> | null = null;
  /** An entry started (ENTRY returned) whose END is still due. */
  private open = false;

  /** Bytes taken from the input so far (for errors). */
  offset = 0;

  push(chunk: Buffer): void {
    if (this.pos < this.buf.length)
      throw new Error('TarParser.push before the last chunk was used');
    if (this.state === S_ENDED) throw new Error('TarParser.push after end()');
    this.buf = chunk;
    this.pos = 0;
  }

  /** The next event; throws a TarHeaderError for a header or record it refuses. */
  next(): TarEvent {
    for (;;) {
      switch (this.state) {
        case S_BODY: {
          if (this.left === 0) {
            this.open = false;
            this.state = this.pad > 0 ? S_PAD : S_HEADER;
            this.left = this.pad;
            return END;
          }
          const avail = this.buf.length - this.pos;
          if (avail === 0) return NEED;
          const n = avail < this.left ? avail : this.left;
          this.data = this.buf.subarray(this.pos, this.pos + n);
          this.pos += n;
          this.offset += n;
          this.left -= n;
          return DATA;
        }
        case S_PAD: {
          const avail = this.buf.length - this.pos;
          const n = avail < this.left ? avail : this.left;
          this.pos += n;
          this.offset += n;
          this.left -= n;
          if (this.left > 0) return NEED;
          this.state = S_HEADER;
          break;
        }
        case S_META: {
          const avail = this.buf.length - this.pos;
          const n = avail < this.left ? avail : this.left;
          this.buf.copy(this.meta!, this.metaFill, this.pos, this.pos + n);
          this.metaFill += n;
          this.pos += n;
          this.offset += n;
          this.left -= n;
          if (this.left > 0) return NEED;
          this.takeMeta();
          this.state = this.pad > 0 ? S_PAD : S_HEADER;
          this.left = this.pad;
          break;
        }
        case S_HEADER: {
          const avail = this.buf.length - this.pos;
          let hb: Buffer;
          let ho: number;
          if (this.blockFill === 0 && avail >= 512) {
            hb = this.buf;
            ho = this.pos;
            this.pos += 512;
          } else {
            if (avail === 0) return NEED;
            const n = Math.min(avail, 512 - this.blockFill);
            this.buf.copy(this.block, this.blockFill, this.pos, this.pos + n);
            this.blockFill += n;
            this.pos += n;
            if (this.blockFill < 512) {
              this.offset += n;
              return NEED;
            }
            this.offset -= 512 - n; // counted below as one block
            hb = this.block;
            ho = 0;
            this.blockFill = 0;
          }
          const at = this.offset;
          this.offset += 512;
          if (this.header(hb, ho, at)) return ENTRY;
          break;
        }
        default:
          throw new Error('TarParser.next after end()');
      }
    }
  }

  /**
   * No more input: throws when it stopped inside a header, a body or its padding, or between a
   * long name/PAX header and its entry. A missing end-of-archive marker is not an error (GNU tar
   * accepts it too).
   */
  end(): void {
    const where = this.entry.name === '' ? '' : ` (the last entry read is "${this.entry.name}")`;
    if (this.state === S_BODY || (this.state === S_PAD && this.open))
      throw new TarHeaderError(
        this.entry.name,
        `truncated tar stream: it ends inside this entry's data, ${this.left} bytes short`,
      );
    if (this.state === S_META)
      throw new TarHeaderError(
        this.metaShown,
        'truncated tar stream: it ends inside a long name or PAX header',
      );
    if (this.state === S_PAD || this.blockFill > 0)
      throw new TarHeaderError('', `truncated tar stream: it ends inside a 512-byte block${where}`);
    if (this.longName !== null || this.longLink !== null || this.pax !== null)
      throw new TarHeaderError(
        '',
        `truncated tar stream: it ends after a long name or PAX header that names no entry${where}`,
      );
    this.state = S_ENDED;
  }

  /**
   * One header block at hb[ho, ho+512). Returns true when it starts an entry (this.entry set,
   * this.open true) or an entry without body; false for meta headers and end-of-archive blocks.
   * What is rare (meta headers, long names, PAX records, refusals) is in functions of its own, so
   * that this one, run for every entry, stays small and is not re-optimized when a rare path
   * first comes up; nothing is allocated for errors that do not happen.
   */
  private header(hb: Buffer, ho: number, at: number): boolean {
    // checksum, counting its own field as spaces; an all-zero block ends the archive (skipped,
    // as tar-stream and GNU tar --ignore-zeros read on)
    let sum = 8 * 0x20;
    for (let i = ho, e = ho + 148; i < e; i++) sum += hb[i]!;
    for (let i = ho + 156, e = ho + 512; i < e; i++) sum += hb[i]!;
    if (sum === 8 * 0x20) return false;
    const ck = octal(hb, ho + 148, 8);
    if (ck === null)
      throw new TarHeaderError(
        shownOf(hb, ho),
        `the checksum field is ${notOctal(hb, ho + 148, 8)}`,
      );
    if (ck !== sum && ck !== signedSum(hb, ho)) throw checksumError(hb, ho, at);
    const magic = formatOf(hb, ho);
    if (magic === NO_MAGIC) throw noMagic(hb, ho);
    const size = this.num(hb, ho + 124, 12, 'size', ho, false);
    const flag = hb[ho + 156]!;
    if (flag === 0x4c || flag === 0x4b || flag === 0x78 || flag === 0x67) {
      this.metaHeader(hb, ho, flag, size);
      return false;
    }
    const mode = this.num(hb, ho + 100, 8, 'mode', ho, false) & 0o7777;
    const uid = this.num(hb, ho + 108, 8, 'uid', ho, false);
    const gid = this.num(hb, ho + 116, 8, 'gid', ho, false);
    const mtime = this.num(hb, ho + 136, 12, 'mtime', ho, true);
    const nameEnd = nulAt(hb, ho, 100);
    let name = text(hb, ho, nameEnd);
    if (name === null) throw new TarHeaderError(shownOf(hb, ho), nonUtf8('name'));
    if (magic === POSIX && hb[ho + 345] !== 0) name = prefixed(hb, ho, name);
    const linkEnd = nulAt(hb, ho + 157, 100);
    const linkname = text(hb, ho + 157, linkEnd);
    if (linkname === null) throw badLinkname(hb, ho, linkEnd);
    let type: TarType;
    let devmajor = 0;
    let devminor = 0;
    if (flag === 0x30 || flag === 0) type = 'file';
    else if (flag === 0x35) type = 'directory';
    else if (flag === 0x32) type = 'symlink';
    else if (flag === 0x31) type = 'link';
    else if (flag === 0x33 || flag === 0x34) {
      type = flag === 0x33 ? 'character-device' : 'block-device';
      devmajor = this.num(hb, ho + 329, 8, 'devmajor', ho, false);
      devminor = this.num(hb, ho + 337, 8, 'devminor', ho, false);
    } else type = otherType(hb, ho, flag);
    const e: TarEntry = {
      name,
      type,
      size,
      mode,
      uid,
      gid,
      mtime,
      linkname,
      devmajor,
      devminor,
      pax: null,
    };
    if (this.longName !== null || this.longLink !== null || this.pax !== null || this.global)
      this.extended(e, hb, ho);
    // old archives mark directories by a trailing slash on a regular file's name
    if (e.type === 'file' && (flag === 0 || flag === 0x30) && e.name.endsWith('/'))
      e.type = 'directory';
    // a directory has no data, whatever its size field says (as tar-stream reads it)
    if (e.type === 'directory') e.size = 0;
    if (e.type !== 'link' && e.type !== 'symlink') e.linkname = '';
    this.entry = e;
    this.left = e.size;
    this.pad = (512 - (e.size & 511)) & 511;
    this.state = S_BODY;
    this.open = true;
    return true;
  }

  /** A long name, long link or PAX header: its body is gathered for the next entry. */
  private metaHeader(hb: Buffer, ho: number, flag: number, size: number): void {
    if (size > MAX_META)
      throw new TarHeaderError(
        shownOf(hb, ho),
        `a ${metaName(flag)} of ${size} bytes (more than ${MAX_META} is not accepted)`,
      );
    this.metaType = flag;
    this.metaShown = shownOf(hb, ho);
    this.meta = Buffer.allocUnsafe(size);
    this.metaFill = 0;
    this.left = size;
    this.pad = (512 - (size & 511)) & 511;
    this.state = S_META;
    if (size === 0) {
      this.takeMeta();
      this.state = S_HEADER;
    }
  }

  /** What the long name, long link and PAX headers before `e` say about it (then forgotten). */
  private extended(e: TarEntry, hb: Buffer, ho: number): void {
    if (this.longName !== null) e.name = this.longName;
    if (this.longLink !== null) e.linkname = this.longLink;
    let pax = this.pax;
    if (this.global) pax = pax ? { ...this.global, ...pax } : { ...this.global };
    this.longName = null;
    this.longLink = null;
    this.pax = null;
    if (!pax) return;
    for (const k in pax)
      if (k.startsWith('GNU.sparse.'))
        throw new TarHeaderError(
          shownOf(hb, ho),
          'a GNU sparse file (PAX GNU.sparse records): not supported (its data would be written wrong)',
        );
    // an empty value takes the record back (POSIX): the header's field counts
    if (pax.path) e.name = pax.path;
    if (pax.linkpath) e.linkname = pax.linkpath;
    if (pax.size) e.size = paxInt(pax.size, 'size', e.name);
    if (pax.uid) e.uid = paxInt(pax.uid, 'uid', e.name);
    if (pax.gid) e.gid = paxInt(pax.gid, 'gid', e.name);
    if (pax.mtime) e.mtime = paxTime(pax.mtime, e.name);
    e.pax = pax;
  }

  private num(
    hb: Buffer,
    off: number,
    len: number,
    what: string,
    ho: number,
    signed: boolean,
  ): number {
    const first = hb[off]!;
    if (first === 0x80 || first === 0xff) return base256(hb, off, len, what, ho, signed);
    const v = octal(hb, off, len);
    if (v === null)
      throw new TarHeaderError(shownOf(hb, ho), `the ${what} field is ${notOctal(hb, off, len)}`);
    return v;
  }

  /** A complete long name or PAX body: remember what it says about the next entry. */
  private takeMeta(): void {
    const b = this.meta!;
    this.meta = null;
    const flag = this.metaType;
    if (flag === 0x4c || flag === 0x4b) {
      const end = nulAt(b, 0, b.length);
      const v = text(b, 0, end);
      if (v === null)
        throw new TarHeaderError(
          escapeBytes(b.subarray(0, end)),
          nonUtf8(flag === 0x4c ? 'long name' : 'long link target'),
        );
      if (flag === 0x4c) this.longName = v;
      else this.longLink = v;
      return;
    }
    const recs = paxRecords(b, this.metaShown);
    if (flag === 0x67) this.global = this.global ? { ...this.global, ...recs } : recs;
    else this.pax = this.pax ? { ...this.pax, ...recs } : recs;
  }
}

const NO_MAGIC = 0;
const POSIX = 1;
const GNU = 2;

/** Which header format the magic says: POSIX ustar, GNU, or none cpm reads. */
function formatOf(hb: Buffer, ho: number): number {
  if (
    hb[ho + 257] !== 0x75 ||
    hb[ho + 258] !== 0x73 ||
    hb[ho + 259] !== 0x74 ||
    hb[ho + 260] !== 0x61 ||
    hb[ho + 261] !== 0x72
  )
    return NO_MAGIC;
  if (hb[ho + 262] === 0) return POSIX;
  if (hb[ho + 262] === 0x20 && hb[ho + 263] === 0x20 && hb[ho + 264] === 0) return GNU;
  return NO_MAGIC;
}

/** The entry's name as its header's bytes read (prefix included), for errors. */
function shownOf(hb: Buffer, ho: number): string {
  const nameEnd = nulAt(hb, ho, 100);
  const prefixEnd = formatOf(hb, ho) === POSIX ? nulAt(hb, ho + 345, 155) : ho + 345;
  return escapeBytes(
    prefixEnd > ho + 345
      ? Buffer.concat([
          hb.subarray(ho + 345, prefixEnd),
          Buffer.from('/'),
          hb.subarray(ho, nameEnd),
        ])
      : hb.subarray(ho, nameEnd),
  );
}

/** A POSIX header's name with its prefix field in front. */
function prefixed(hb: Buffer, ho: number, name: string): string {
  const prefix = text(hb, ho + 345, nulAt(hb, ho + 345, 155));
  if (prefix === null) throw new TarHeaderError(shownOf(hb, ho), nonUtf8('name'));
  return `${prefix}/${name}`;
}

function checksumError(hb: Buffer, ho: number, at: number): TarHeaderError {
  return new TarHeaderError(
    shownOf(hb, ho),
    `header checksum mismatch at byte ${at} (the archive is corrupt, or not a tar)`,
  );
}

function noMagic(hb: Buffer, ho: number): TarHeaderError {
  return new TarHeaderError(
    shownOf(hb, ho),
    'no ustar magic: not a POSIX or GNU tar header (old v7 archives are not read)',
  );
}

function badLinkname(hb: Buffer, ho: number, linkEnd: number): TarHeaderError {
  return new TarHeaderError(
    shownOf(hb, ho),
    `${nonUtf8('link target')} ("${escapeBytes(hb.subarray(ho + 157, linkEnd))}")`,
  );
}

/** A type flag other than the common ones: contiguous file, fifo, refused, or read as a file. */
function otherType(hb: Buffer, ho: number, flag: number): TarType {
  switch (flag) {
    case 0x36:
      return 'fifo';
    case 0x37:
      return 'contiguous-file';
    case 0x53: // 'S'
      throw new TarHeaderError(
        shownOf(hb, ho),
        'a GNU sparse file: not supported (its data would be written wrong)',
      );
    case 0x4d: // 'M'
      throw new TarHeaderError(shownOf(hb, ho), 'a GNU multi-volume continuation: not supported');
    case 0x56: // 'V'
    case 0x44: // 'D'
    case 0x4e: // 'N'
      throw new TarHeaderError(
        shownOf(hb, ho),
        `a GNU '${String.fromCharCode(flag)}' entry (volume label, dump directory or old long names): not supported`,
      );
    default:
      // POSIX: an unknown type is read as a regular file
      return 'file';
  }
}

/** A GNU base-256 field: 0x80 leads a positive number, 0xff a negative one (two's complement). */
function base256(
  hb: Buffer,
  off: number,
  len: number,
  what: string,
  ho: number,
  signed: boolean,
): number {
  const first = hb[off]!;
  if (first === 0xff && !signed)
    throw new TarHeaderError(shownOf(hb, ho), `the ${what} field is a negative base-256 number`);
  let v = 0;
  for (let i = off + 1; i < off + len; i++) v = v * 256 + (first === 0xff ? 0xff - hb[i]! : hb[i]!);
  if (!Number.isSafeInteger(v))
    throw new TarHeaderError(
      shownOf(hb, ho),
      `the ${what} field is a base-256 number too large to hold`,
    );
  return first === 0xff ? -v - 1 : v;
}

/** The header's checksum as old tars computed it, bytes read as signed (only when needed). */
function signedSum(hb: Buffer, ho: number): number {
  let ssum = 8 * 0x20;
  for (let i = ho; i < ho + 512; i++) {
    if (i >= ho + 148 && i < ho + 156) continue;
    const c = hb[i]!;
    ssum += c >= 0x80 ? c - 0x100 : c;
  }
  return ssum;
}

function emptyEntry(): TarEntry {
  return {
    name: '',
    type: 'file',
    size: 0,
    mode: 0,
    uid: 0,
    gid: 0,
    mtime: 0,
    linkname: '',
    devmajor: 0,
    devminor: 0,
    pax: null,
  };
}

const metaName = (flag: number): string =>
  flag === 0x4c ? 'GNU long name' : flag === 0x4b ? 'GNU long link' : 'PAX header';

/**
 * An octal field as GNU tar reads it: optional leading spaces, octal digits, then the end of the
 * field or a NUL or space (what follows is not looked at). No digits reads as 0. Null when
 * something else follows the digits.
 */
function octal(b: Uint8Array, off: number, len: number): number | null {
  const end = off + len;
  let i = off;
  while (i < end && b[i] === 0x20) i++;
  let v = 0;
  for (; i < end; i++) {
    const c = b[i]!;
    if (c < 0x30 || c > 0x37) break;
    v = v * 8 + (c - 0x30);
  }
  if (i < end && b[i] !== 0 && b[i] !== 0x20) return null;
  return v;
}

function notOctal(b: Uint8Array, off: number, len: number): string {
  const e = nulAt(b, off, len);
  return `"${escapeBytes(b.subarray(off, e))}", not an octal number`;
}

/**
 * The records of a PAX header body: "LEN key=value\n", LEN counting the whole record. Values are
 * UTF-8 (path and linkpath strictly: a name that is not is refused; others as tar-stream read
 * them, invalid bytes replaced). A record that does not parse is refused, as GNU tar does.
 */
function paxRecords(b: Buffer, shown: string): Record<string, string> {
  const out: Record<string, string> = {};
  let at = 0;
  while (at < b.length) {
    // GNU tar pads a PAX body with NULs only when a producer is broken; accept trailing NULs
    if (b[at] === 0 && b.subarray(at).every((c) => c === 0)) break;
    let sp = at;
    let len = 0;
    while (sp < b.length && b[sp]! >= 0x30 && b[sp]! <= 0x39 && sp - at < 12) {
      len = len * 10 + (b[sp]! - 0x30);
      sp++;
    }
    const bad = (why: string): TarHeaderError =>
      new TarHeaderError(shown, `malformed PAX record at byte ${at} of its header: ${why}`);
    if (sp === at || b[sp] !== 0x20) throw bad('no length');
    if (len <= sp + 1 - at || at + len > b.length) throw bad(`length ${len} does not fit`);
    const end = at + len - 1;
    if (b[end] !== 0x0a) throw bad('does not end with a newline');
    const eq = b.indexOf(0x3d, sp + 1);
    if (eq < 0 || eq >= end || eq === sp + 1) throw bad('no "key=value"');
    const key = text(b, sp + 1, eq);
    if (key === null) throw bad('the key is not UTF-8');
    if (key === 'path' || key === 'linkpath') {
      const v = text(b, eq + 1, end);
      if (v === null)
        throw new TarHeaderError(
          escapeBytes(b.subarray(eq + 1, end)),
          nonUtf8(key === 'path' ? 'PAX path' : 'PAX link target'),
        );
      out[key] = v;
    } else out[key] = lossy.decode(b.subarray(eq + 1, end));
    at += len;
  }
  return out;
}

function paxInt(v: string, key: string, name: string): number {
  if (!/^[0-9]{1,16}$/.test(v) || !Number.isSafeInteger(Number(v)))
    throw new TarHeaderError(name, `the PAX ${key} "${v}" is not a whole number`);
  return Number(v);
}

function paxTime(v: string, name: string): number {
  const m = /^(-?)([0-9]{1,16})(?:\.[0-9]*)?$/.exec(v);
  if (!m) throw new TarHeaderError(name, `the PAX mtime "${v}" is not a time`);
  const s = Number(m[2]);
  // floor: -1.5 is 2 s before the epoch's second
  return m[1] ? -s - (/\.0*[1-9]/.test(v) ? 1 : 0) : s;
}
