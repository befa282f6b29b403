/**
 * A small ustar + pax encoder for the image writers and package layers: entries in, tar bytes
 * out, in ~1 MiB chunks. Written for speed (a root is tens of thousands of small files, and a stream library's
 * per-entry machinery cost more than the files) and for a fixed byte layout: the same entries
 * always give the same bytes. The layout is the one tar-stream 3 writes (what earlier cpm
 * versions used), except that mode 0 stays 0.
 */
import { closeSync, constants, openSync, readSync } from 'node:fs';
import { CpmError } from '../errors.js';

/** One tar header as the image writers build it (see tarHeader). */
export interface TarHeader {
  name: string;
  type: 'file' | 'directory' | 'symlink' | 'link' | 'character-device' | 'block-device' | 'fifo';
  mode: number;
  uid: number;
  gid: number;
  size: number;
  /** Seconds. */
  mtime: number;
  linkname?: string;
  devmajor?: number;
  devminor?: number;
  pax?: Record<string, string>;
}

/** The largest uid/gid written in ustar (6 octal digits, as tar-stream wrote); larger: pax. */
export const USTAR_ID_MAX = 0o777777;

const TYPEFLAG: Record<TarHeader['type'] | 'pax-header', number> = {
  file: 0x30,
  link: 0x31,
  symlink: 0x32,
  'character-device': 0x33,
  'block-device': 0x34,
  directory: 0x35,
  fifo: 0x36,
  'pax-header': 0x78,
};

/** Output chunk size; also the slot size of the threaded stream (rootfs-tar.ts). */
export const CHUNK = 1 << 20;
const ZERO_BLOCKS = Buffer.alloc(1024);

/** `digits` octal digits then a space, written in place (no strings: it runs ~8 times an entry). */
function octal(buf: Buffer, off: number, value: number, digits: number): void {
  let n = Math.floor(value);
  if (n >= 8 ** digits) {
    buf.fill(0x37, off, off + digits);
  } else {
    for (let i = off + digits - 1; i >= off; i--) {
      buf[i] = 0x30 + (n % 8);
      n = Math.floor(n / 8);
    }
  }
  buf[off + digits] = 0x20;
}

function isAscii(s: string): boolean {
  // eslint-disable-next-line no-control-regex
  return /^[\x00-\x7f]*$/.test(s);
}

/** Splits a long name into ustar prefix + name at a "/", or null when it cannot be. */
function splitName(name: string): { prefix: string; name: string } | null {
  let prefix = '';
  let rest = name;
  while (rest.length > 100) {
    const i = rest.indexOf('/');
    if (i === -1) return null;
    prefix += prefix ? '/' + rest.slice(0, i) : rest.slice(0, i);
    rest = rest.slice(i + 1);
  }
  if (prefix.length > 155) return null;
  return { prefix, name: rest };
}

type BlockFields = Omit<TarHeader, 'pax' | 'type'> & { type: TarHeader['type'] | 'pax-header' };

function block(h: BlockFields, name: string, prefix: string, linkname: string | undefined): Buffer {
  const buf = Buffer.alloc(512);
  writeBlock(buf, 0, h, name, prefix, linkname);
  return buf;
}

/** One ustar header block at buf[o, o+512), which must be zeroed. */
function writeBlock(
  buf: Buffer,
  o: number,
  h: BlockFields,
  name: string,
  prefix: string,
  linkname: string | undefined,
): void {
  buf.write(name, o, 'latin1');
  octal(buf, o + 100, h.mode & 0o7777, 6);
  octal(buf, o + 108, h.uid, 6);
  octal(buf, o + 116, h.gid, 6);
  if (h.size >= 8 ** 11) {
    // base-256 for sizes ≥ 8 GiB
    buf[o + 124] = 0x80;
    let n = h.size;
    for (let i = 11; i > 0; i--) {
      buf[o + 124 + i] = n % 256;
      n = Math.floor(n / 256);
    }
  } else {
    octal(buf, o + 124, h.size, 11);
  }
  octal(buf, o + 136, h.mtime, 11);
  buf[o + 156] = TYPEFLAG[h.type];
  if (linkname) buf.write(linkname, o + 157, 'utf8');
  USTAR_MAGIC.copy(buf, o + 257);
  octal(buf, o + 329, h.devmajor ?? 0, 6);
  octal(buf, o + 337, h.devminor ?? 0, 6);
  if (prefix) buf.write(prefix, o + 345, 'latin1');
  let sum = 8 * 32;
  for (let i = o; i < o + 148; i++) sum += buf[i]!;
  for (let i = o + 156; i < o + 512; i++) sum += buf[i]!;
  octal(buf, o + 148, sum, 6);
}

const USTAR_MAGIC = Buffer.from('ustar\x0000', 'latin1');

/** Name and prefix when the entry needs nothing but one ustar block, else undefined. */
function plainSplit(h: TarHeader): { prefix: string; name: string } | undefined {
  if (h.pax) return undefined;
  if (h.linkname !== undefined && Buffer.byteLength(h.linkname) > 100) return undefined;
  if (h.name.length <= 100 && isAscii(h.name)) return { prefix: '', name: h.name };
  return (isAscii(h.name) && splitName(h.name)) || undefined;
}

/** "LEN key=value\n" where LEN counts itself. */
function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  const len = Buffer.byteLength(body);
  let digits = String(len).length;
  if (len + digits >= 10 ** digits) digits++;
  return `${len + digits}${body}`;
}

/** The header block(s) of one entry: ustar, or pax extended header + ustar. */
export function encodeHeader(h: TarHeader): Buffer[] {
  const split = isAscii(h.name) ? splitName(h.name) : null;
  // Names must be ASCII for ustar; link targets may be UTF-8 (as tar-stream wrote them).
  const linkOk = h.linkname === undefined || Buffer.byteLength(h.linkname) <= 100;
  if (!h.pax && split && linkOk) return [block(h, split.name, split.prefix, h.linkname)];
  let records = paxRecord('path', h.name);
  if (h.linkname) records += paxRecord('linkpath', h.linkname);
  for (const [k, v] of Object.entries(h.pax ?? {})) records += paxRecord(k, v);
  const body = Buffer.from(records, 'utf8');
  const link = h.linkname ? 'PaxHeader' : undefined;
  const out = [block({ ...h, type: 'pax-header', size: body.length }, 'PaxHeader', '', link), body];
  const pad = padding(body.length);
  if (pad) out.push(pad);
  out.push(block(h, 'PaxHeader', '', link));
  return out;
}

function padding(size: number): Buffer | undefined {
  const r = size % 512;
  return r === 0 ? undefined : ZERO_BLOCKS.subarray(0, 512 - r);
}

function changedSize(source: string): CpmError {
  return new CpmError('E_IO', `${source} changed size while being archived`, {
    context: { path: source },
  });
}

/** What tarChunks needs of an entry besides its header: a regular file's size and where to read it. */
export interface TarBody {
  type: string;
  /** Content size; read only when `type` is 'file'. */
  size: number;
  /** Absolute path of the content (regular files with a size). */
  source?: string;
}

/** Header fields of an entry (tar-stream-compatible names, see rootfs-tar.ts). */
export type HeaderOf<E extends TarBody> = (e: E) => TarHeader;

/**
 * The tar stream of `entries` as ~1 MiB chunks, end-of-archive included. File contents are read
 * with synchronous reads into one output buffer: for a root of small files that is far cheaper
 * than a thread-pool round trip (or a stream) per file. `onEntry` counts. `alloc` gives each
 * next CHUNK-byte output buffer (default: a new one; the worker passes shared slots).
 */
export async function* tarChunks<E extends TarBody>(
  entries: AsyncIterable<E> | Iterable<E>,
  headerOf: HeaderOf<E>,
  onEntry?: (e: E) => void,
  alloc: () => Buffer = () => Buffer.allocUnsafe(CHUNK),
): AsyncGenerator<Buffer> {
  let out = alloc();
  let used = 0;
  const flush = (): Buffer => {
    const b = out.subarray(0, used);
    out = alloc();
    used = 0;
    return b;
  };
  // Bytes into the output; returns the chunks that became ready (a buffer over CHUNK bytes, only
  // ever a huge pax header, goes out on its own after the current chunk).
  const put = (b: Buffer): Buffer[] | undefined => {
    if (used + b.length > CHUNK) {
      const full = used > 0 ? [flush()] : [];
      if (b.length > CHUNK) return [...full, b];
      b.copy(out, used);
      used += b.length;
      return full;
    }
    b.copy(out, used);
    used += b.length;
    return undefined;
  };
  for await (const e of entries) {
    const h = headerOf(e);
    const plain = plainSplit(h);
    if (plain) {
      // The common case: one block straight into the output.
      if (used + 512 > CHUNK) yield flush();
      out.fill(0, used, used + 512);
      writeBlock(out, used, h, plain.name, plain.prefix, h.linkname);
      used += 512;
    } else {
      for (const b of encodeHeader(h)) {
        const ready = put(b);
        if (ready) yield* ready;
      }
    }
    if (e.type === 'file' && e.size > 0) {
      // a regular file when walked: one swapped for a symlink (or a FIFO) since is refused, never
      // followed to what it names
      const fd = openSync(
        e.source!,
        constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK,
      );
      try {
        let done = 0;
        while (done < e.size) {
          if (used === CHUNK) yield flush();
          const want = Math.min(CHUNK - used, e.size - done);
          const n = readSync(fd, out, used, want, done);
          if (n === 0) break;
          used += n;
          done += n;
        }
        if (done !== e.size) throw changedSize(e.source!);
      } finally {
        closeSync(fd);
      }
      const pad = padding(e.size);
      if (pad) {
        const ready = put(pad);
        if (ready) yield* ready;
      }
    }
    onEntry?.(e);
  }
  const ready = put(ZERO_BLOCKS);
  if (ready) yield* ready;
  if (used > 0) yield flush();
}
