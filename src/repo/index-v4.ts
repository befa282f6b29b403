/**
 * Index schema 4: the index as columns a reader need not parse whole (docs/repository.md).
 *
 * The decompressed text is one header line of canonical JSON, then one section per column, each
 * holding one line per package in index order:
 *
 *   family    "category/name" (a JSON [category, name] when that would not read back)
 *   version   the version (a JSON string when it starts with `"` or `[`)
 *   provided  one line per provided family: the family, a tab, the providing packages' lines
 *   provides, requires, conflicts
 *             the compact dependency list of schema 2, or its JSON form (list, or a string when
 *             the text starts with `"` or `[`)
 *   spec      JSON object: what else a PackageSpec holds (description, labels, source, …)
 *   entry     JSON object: the rest (contentKey, image, artifact, finalize)
 *
 * gzip writes each part (header, then each section) as its own gzip member, and the first
 * member's header carries the byte length of every member (extra field "CM"). The whole is still
 * one gzip stream (`zcat` shows the text), but a reader inflates only what it uses: family and
 * provided at open, version when a family is first looked up, the dependency columns and spec
 * when the resolver first builds a package, entry when one is located or listed. Every lazily
 * read part is checked as it is read and fails with the same E_REPO error, naming the index and
 * the package.
 */
import { isAscii } from 'node:buffer';
import { CpmError } from '../errors.js';
import { createSpec, familyKey, type Dep, type PackageSpec } from '../package/package.js';
import { depFromJson } from '../package/codec.js';
import { NONE, type PackageTable } from './index-table.js';
import {
  canonicalJson,
  compactDeps,
  indexDepFamily,
  indexDeps,
  type IndexDepList,
  type IndexPackage,
  type RepoIndex,
  type RepoMeta,
} from './repo-index.js';
import { gunzipMember } from '../util/inflate.js';
import { zlib } from '../util/lazy-builtins.js';

export const SCHEMA_4 = 4;
const SECTIONS = [
  'family',
  'version',
  'provided',
  'provides',
  'requires',
  'conflicts',
  'spec',
  'entry',
] as const;
type Section = (typeof SECTIONS)[number];
const HEAD_KEYS = new Set(['category', 'name', 'version', 'requires', 'conflicts', 'provides']);
const SPEC_KEYS = new Set([
  'annotations',
  'description',
  'extra',
  'hidden',
  'labels',
  'license',
  'source',
  'uri',
]);
/** The start of a schema 4 text: canonical JSON puts "layout" first. */
const MAGIC = Buffer.from('{"layout":');
/** gzip extra subfield holding the member lengths (uint32 LE each). */
const SI1 = 0x43; // 'C'
const SI2 = 0x4d; // 'M'

const EMPTY_MAP: Record<string, never> = Object.freeze({});
const byBytes = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);
const EMPTY_LIST: string[] = Object.freeze([]) as unknown as string[];

// ---------------------------------------------------------------------------------------------
// Writing

/** A line of a text column: as is, or JSON when it starts with `"` or `[` or holds a line break. */
function textLine(s: string): string {
  return s.startsWith('"') || s.startsWith('[') || s.includes('\n') ? JSON.stringify(s) : s;
}

function familyLine(category: string, name: string): string {
  const raw = category ? `${category}/${name}` : name;
  const readsBack = category ? !category.includes('/') : !name.includes('/');
  return readsBack && !raw.startsWith('"') && !raw.startsWith('[') && !raw.includes('\n')
    ? raw
    : JSON.stringify([category, name]);
}

function depsLine(list: IndexDepList): string {
  if (typeof list !== 'string') return JSON.stringify(list);
  return list.startsWith('"') || list.startsWith('[') || list.includes('\n')
    ? JSON.stringify(list)
    : list;
}

function pick(p: IndexPackage, keep: (k: string) => boolean): string {
  const o: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(p)) if (keep(k)) o[k] = v;
  return canonicalJson(o);
}

/**
 * The schema 4 parts of an index whose packages are compact (compactIndexPackage) and sorted:
 * the header line, then each section.
 */
export function encodeV4(repository: RepoMeta, packages: readonly IndexPackage[]): string[] {
  const cols: Record<Section, string[]> = {
    family: [],
    version: [],
    provided: [],
    provides: [],
    requires: [],
    conflicts: [],
    spec: [],
    entry: [],
  };
  const provided = new Map<string, number[]>();
  packages.forEach((p, i) => {
    for (const e of indexDeps(p.provides ?? '')) {
      const f = indexDepFamily(e);
      const l = provided.get(f);
      if (!l) provided.set(f, [i]);
      else if (l[l.length - 1] !== i) l.push(i);
    }
  });
  for (const f of [...provided.keys()].sort(byBytes)) {
    const l = provided.get(f)!;
    cols.provided.push(
      f.includes('\t') || f.includes('\n') || f.startsWith('"') || f.startsWith('[')
        ? JSON.stringify([f, l])
        : `${f}\t${l.join(' ')}`,
    );
  }
  for (const p of packages) {
    cols.family.push(familyLine(p.category, p.name));
    cols.version.push(textLine(p.version));
    cols.provides.push(depsLine(compactDeps(p.provides ?? '')));
    cols.requires.push(depsLine(compactDeps(p.requires ?? '')));
    cols.conflicts.push(depsLine(compactDeps(p.conflicts ?? '')));
    cols.spec.push(pick(p, (k) => SPEC_KEYS.has(k)));
    cols.entry.push(pick(p, (k) => !SPEC_KEYS.has(k) && !HEAD_KEYS.has(k)));
  }
  const texts = SECTIONS.map((s) => (cols[s].length ? `${cols[s].join('\n')}\n` : ''));
  const header = canonicalJson({
    schemaVersion: SCHEMA_4,
    repository,
    packages: packages.length,
    layout: SECTIONS.map((s, i) => [s, Buffer.byteLength(texts[i]!)]),
  });
  return [`${header}\n`, ...texts];
}

/**
 * gzip of the parts, one member each; the first member's header lists every member's length.
 * Deterministic: gzipSync writes no name and a zero mtime.
 */
export function gzipParts(parts: readonly string[], level: number): Buffer {
  const members = parts.map((p) => zlib().gzipSync(Buffer.from(p, 'utf8'), { level }));
  const first = members[0]!;
  if ((first[3]! & 0x1e) !== 0) throw new Error('unexpected gzip header flags');
  const n = members.length;
  const extra = Buffer.alloc(2 + 4 + 4 * n);
  extra.writeUInt16LE(4 + 4 * n, 0); // XLEN
  extra[2] = SI1;
  extra[3] = SI2;
  extra.writeUInt16LE(4 * n, 4);
  const head = Buffer.from(first.subarray(0, 10));
  head[3] = head[3]! | 0x04; // FEXTRA
  const sizes = members.map((m, i) => (i === 0 ? m.length + extra.length : m.length));
  sizes.forEach((s, i) => extra.writeUInt32LE(s, 6 + 4 * i));
  return Buffer.concat([head, extra, first.subarray(10), ...members.slice(1)]);
}

// ---------------------------------------------------------------------------------------------
// Reading

/** Whether decompressed index bytes are a schema 4 text. */
export function isV4Text(b: Buffer): boolean {
  return b.length >= MAGIC.length && b.subarray(0, MAGIC.length).equals(MAGIC);
}

/** The member lengths a schema 4 gzip index lists in its first header, or undefined. */
export function gzipMembers(data: Buffer): number[] | undefined {
  if (data.length < 12 || data[0] !== 0x1f || data[1] !== 0x8b || data[2] !== 8) return undefined;
  if ((data[3]! & 0x04) === 0) return undefined;
  const xlen = data.readUInt16LE(10);
  const end = 12 + xlen;
  if (end > data.length) return undefined;
  for (let p = 12; p + 4 <= end;) {
    const len = data.readUInt16LE(p + 2);
    if (data[p] === SI1 && data[p + 1] === SI2 && p + 4 + len <= end && len % 4 === 0) {
      const out: number[] = [];
      for (let q = p + 4; q < p + 4 + len; q += 4) out.push(data.readUInt32LE(q));
      return out;
    }
    p += 4 + len;
  }
  return undefined;
}

type Fail = (msg: string) => never;

function failer(where: string): Fail {
  return (msg) => {
    throw new CpmError('E_REPO', `${where}: invalid repository index: ${msg}`, {
      context: { path: where },
    });
  };
}

interface Header {
  repository: RepoMeta;
  packages: number;
  layout: Array<[string, number]>;
}

function parseHeader(line: string, fail: Fail, readable: readonly number[]): Header {
  let raw: unknown;
  try {
    raw = JSON.parse(line);
  } catch (e) {
    return fail(`header is not JSON: ${(e as Error).message}`);
  }
  const h = raw as Record<string, unknown>;
  if (h?.schemaVersion !== SCHEMA_4)
    fail(`schemaVersion ${String(h?.schemaVersion)} (this cpm reads ${readable.join(', ')})`);
  const repo = h.repository as Record<string, unknown> | undefined;
  if (!repo || typeof repo.name !== 'string') fail('repository.name missing');
  if (typeof repo!.revision !== 'number' || typeof repo!.timestamp !== 'number')
    fail('repository.revision/timestamp must be numbers');
  if (typeof h.packages !== 'number' || !Number.isSafeInteger(h.packages) || h.packages < 0)
    fail('"packages" must be a count');
  const layout = h.layout;
  if (
    !Array.isArray(layout) ||
    !layout.every(
      (e) =>
        Array.isArray(e) &&
        e.length === 2 &&
        typeof e[0] === 'string' &&
        Number.isSafeInteger(e[1]) &&
        (e[1] as number) >= 0,
    )
  )
    fail('"layout" must be a list of [section, bytes]');
  const names = (layout as Array<[string, number]>).map((e) => e[0]);
  for (const s of SECTIONS)
    if (names.filter((n) => n === s).length !== 1) fail(`section "${s}" missing or repeated`);
  return h as unknown as Header;
}

/** Where each section's bytes come from: a slice of the text, or a gzip member to inflate. */
type SectionBytes = () => Buffer;

/**
 * Opens a schema 4 index. `members`: its gzip member lengths (then `data` is the blob), else
 * `data` is the decompressed text.
 */
export function openV4(
  data: Buffer,
  members: number[] | undefined,
  where: string,
  readable: readonly number[],
): RepoIndex {
  const fail = failer(where);
  let headerBytes: Buffer;
  const parts: Buffer[] = [];
  if (members) {
    let off = 0;
    for (const len of members) {
      if (off + len > data.length) fail('its gzip member table does not match the blob');
      parts.push(data.subarray(off, off + len));
      off += len;
    }
    if (off !== data.length) fail('its gzip member table does not match the blob');
    headerBytes = inflate(parts[0]!, where, 'header');
  } else {
    const nl = data.indexOf(0x0a);
    headerBytes = data.subarray(0, nl < 0 ? data.length : nl + 1);
  }
  if (headerBytes[headerBytes.length - 1] !== 0x0a) fail('header line not terminated');
  const header = parseHeader(
    headerBytes.toString('utf8', 0, headerBytes.length - 1),
    fail,
    readable,
  );
  const n = header.packages;
  // every package has a line (one byte at least) in "family": a count beyond that is a lie, and
  // would size the line tables
  if (n > header.layout.find((e) => e[0] === 'family')![1])
    fail(`${n} packages but the family section has fewer bytes`);
  const sections = new Map<string, SectionBytes>();
  if (members) {
    if (members.length !== header.layout.length + 1)
      fail(`${members.length} gzip members for ${header.layout.length} sections and a header`);
    header.layout.forEach(([name, size], k) => {
      sections.set(name, () => {
        const b = inflate(parts[k + 1]!, where, name, size);
        if (b.length !== size)
          fail(`section "${name}" is ${b.length} bytes, the header says ${size}`);
        return b;
      });
    });
  } else {
    let off = headerBytes.length;
    for (const [name, size] of header.layout) {
      const start = off;
      off += size;
      if (off > data.length) fail(`section "${name}" runs past the end`);
      sections.set(name, () => data.subarray(start, start + size));
    }
    if (off !== data.length) fail(`${data.length - off} bytes after the last section`);
  }
  const read = (s: Section): Buffer => sections.get(s)!();
  return new V4Index(header.repository, new V4Columns(n, read, where));
}

/** Members up to this size are inflated in JavaScript (util/inflate.ts: no node:zlib to load). */
const SMALL_MEMBER = 16 * 1024;

function inflate(member: Buffer, where: string, part: string, size?: number): Buffer {
  try {
    // one output chunk of the size the header gives, but no larger than deflate can expand
    // this member to (about 1032:1): a lying header does not make a huge allocation
    const most = member.length * 1032 + 1024;
    if (member.length <= SMALL_MEMBER)
      return gunzipMember(member, most, Math.min((size ?? 0) + 1, most));
    return zlib().gunzipSync(member, {
      chunkSize: Math.min(Math.max((size ?? 0) + 1, 64 * 1024), most, 256 * 1024 * 1024),
    });
  } catch (e) {
    throw new CpmError(
      'E_REPO',
      `${where}: cannot decompress repository index (${part}): ${(e as Error).message}`,
      { context: { path: where }, cause: e },
    );
  }
}

/**
 * Lines of a section, their starts found once (no string per line), sliced on demand. An ASCII
 * section (the usual one) is read in place from its bytes: no copy into a string of megabytes.
 */
class Lines {
  readonly starts: Int32Array;
  /** The bytes when ASCII, else the decoded text. */
  private readonly buf: Buffer | undefined;
  private readonly str: string | undefined;
  constructor(
    bytes: Buffer,
    /** The number of lines it must have; undefined: as many as it has. */
    n: number | undefined,
    fail: Fail,
    name: string,
  ) {
    if (isAscii(bytes)) this.buf = bytes;
    else this.str = bytes.toString('utf8');
    const len = this.length;
    let starts = new Int32Array(n === undefined ? 1024 : n + 1);
    let pos = 0;
    let i = 0;
    for (; n === undefined ? pos < len : i < n; i++) {
      if (i + 1 >= starts.length) {
        const grown = new Int32Array(starts.length * 2);
        grown.set(starts);
        starts = grown;
      }
      starts[i] = pos;
      const nl = this.indexOf(0x0a, pos);
      if (nl < 0)
        fail(`section "${name}" has ${i} full lines${n === undefined ? '' : ` for ${n} packages`}`);
      pos = nl + 1;
    }
    starts[i] = pos;
    if (pos !== len) fail(`section "${name}" has more lines than the ${n} packages`);
    this.starts = n === undefined ? starts.subarray(0, i + 1) : starts;
  }
  get length(): number {
    return this.buf ? this.buf.length : this.str!.length;
  }
  get count(): number {
    return this.starts.length - 1;
  }
  start(i: number): number {
    return this.starts[i]!;
  }
  /** Where line i ends (its newline). */
  end(i: number): number {
    return this.starts[i + 1]! - 1;
  }
  /** The code unit at a position (a byte of an ASCII section is its code unit). */
  at(pos: number): number {
    return this.buf ? this.buf[pos]! : this.str!.charCodeAt(pos);
  }
  /** Where the next `ch` (ASCII) is from `pos`, or -1. */
  indexOf(ch: number, pos: number): number {
    return this.buf ? this.buf.indexOf(ch, pos) : this.str!.indexOf(String.fromCharCode(ch), pos);
  }
  slice(a: number, b: number): string {
    return this.buf ? this.buf.toString('latin1', a, b) : this.str!.slice(a, b);
  }
  line(i: number): string {
    return this.slice(this.starts[i]!, this.starts[i + 1]! - 1);
  }
  /** Whether line i starts with `"` or `[` (its JSON form). */
  escaped(i: number): boolean {
    const c = this.at(this.starts[i]!);
    return c === 0x22 || c === 0x5b;
  }
  /** Sign of [a, b) against s, by code units (as `<` orders strings), without slicing. */
  cmp(a: number, b: number, s: string): number {
    const n = Math.min(b - a, s.length);
    for (let k = 0; k < n; k++) {
      const d = this.at(a + k) - s.charCodeAt(k);
      if (d !== 0) return d;
    }
    return b - a - s.length;
  }
  /** Sign of [a, b) against [c, d). */
  cmpRegions(a: number, b: number, c: number, d: number): number {
    if (this.buf) return this.buf.compare(this.buf, c, d, a, b);
    const n = Math.min(b - a, d - c);
    for (let k = 0; k < n; k++) {
      const x = this.at(a + k) - this.at(c + k);
      if (x !== 0) return x;
    }
    return b - a - (d - c);
  }
}

const isMap = (v: unknown): boolean => v !== null && typeof v === 'object' && !Array.isArray(v);

/**
 * The columns of a schema 4 index, each read and checked when first used: family and provided
 * (the provider table) at open, as the universe looks families up in them.
 */
class V4Columns implements PackageTable {
  private readonly fam: Lines;
  /** Family lines in JSON form: [category, name, familyKey]. */
  private readonly famEsc = new Map<number, [string, string, string]>();
  private readonly provided: Lines;
  /** Provided-family lines in JSON form: [family, packages]. */
  private readonly provEsc = new Map<number, [string, number[]]>();
  /** Where each raw provided-family line's tab is. */
  private readonly provTab: Int32Array;
  private ver: Lines | undefined;
  private deps: { provides: Lines; requires: Lines; conflicts: Lines; spec: Lines } | undefined;
  private entryLines: Lines | undefined;
  private readonly entries: IndexPackage[] = [];
  private uniq: string[] | undefined;

  constructor(
    readonly size: number,
    private readonly read: (s: Section) => Buffer,
    private readonly where: string,
  ) {
    const fail = failer(where);
    const fam = new Lines(read('family'), size, fail, 'family');
    this.fam = fam;
    for (let i = 0; i < size; i++) {
      if (fam.escaped(i)) {
        const v = this.json(i, 'family', fam.line(i));
        if (!Array.isArray(v) || v.length !== 2 || !v.every((x) => typeof x === 'string'))
          this.fail(i, 'family must be "category/name" or [category, name]');
        const [category, name] = v as [string, string];
        this.famEsc.set(i, [category, name, familyKey({ category, name })]);
      }
      if (i === 0) continue;
      const order =
        this.famEsc.has(i) || this.famEsc.has(i - 1)
          ? byBytes(this.familyOf(i - 1), this.familyOf(i))
          : fam.cmpRegions(fam.start(i - 1), fam.end(i - 1), fam.start(i), fam.end(i));
      if (order > 0) this.fail(i, `not in family order (after ${this.familyOf(i - 1)})`);
    }
    const prov = new Lines(read('provided'), undefined, fail, 'provided');
    this.provided = prov;
    this.provTab = new Int32Array(prov.count);
    for (let j = 0; j < prov.count; j++) {
      if (prov.escaped(j)) {
        let v: unknown;
        try {
          v = JSON.parse(prov.line(j));
        } catch (e) {
          fail(`provided, line ${j + 1}: ${(e as Error).message}`);
        }
        if (!Array.isArray(v) || v.length !== 2 || typeof v[0] !== 'string' || !Array.isArray(v[1]))
          fail(`provided, line ${j + 1}: must be "family<TAB>packages" or [family, [packages]]`);
        this.provEsc.set(j, v as [string, number[]]);
      } else {
        // a line without one fails here, so this search never runs past the next line twice
        const tab = prov.indexOf(0x09, prov.start(j));
        if (tab < 0 || tab > prov.end(j)) fail(`provided, line ${j + 1}: no tab after the family`);
        this.provTab[j] = tab;
      }
      if (j === 0) continue;
      const order =
        this.provEsc.has(j) || this.provEsc.has(j - 1)
          ? byBytes(this.providedKey(j - 1), this.providedKey(j))
          : prov.cmpRegions(
              prov.start(j - 1),
              this.provTab[j - 1]!,
              prov.start(j),
              this.provTab[j]!,
            );
      if (order >= 0) fail(`provided, line ${j + 1}: not in family order, or repeated`);
    }
  }

  private fail(i: number, msg: string): never {
    const id = this.ver ? `${this.familyOf(i)}@${this.ver.line(i)}` : this.fam.line(i);
    throw new CpmError(
      'E_REPO',
      `${this.where}: invalid repository index: package ${i + 1} (${id}): ${msg}`,
      { context: { path: this.where, package: id } },
    );
  }

  private json(i: number, what: string, text: string): unknown {
    try {
      return JSON.parse(text);
    } catch (e) {
      return this.fail(i, `${what}: ${(e as Error).message}`);
    }
  }

  // --- the table

  familyOf(i: number): string {
    return this.famEsc.get(i)?.[2] ?? this.fam.line(i);
  }

  versionOf(i: number): string {
    this.ver ??= new Lines(this.read('version'), this.size, failer(this.where), 'version');
    if (!this.ver.escaped(i)) return this.ver.line(i);
    const v = this.json(i, 'version', this.ver.line(i));
    if (typeof v !== 'string') this.fail(i, 'version must be a string');
    return v as string;
  }

  /** Sign of family line i against `family`. */
  private cmpFamily(i: number, family: string): number {
    const esc = this.famEsc.get(i);
    if (esc) return byBytes(esc[2], family);
    return this.fam.cmp(this.fam.start(i), this.fam.end(i), family);
  }

  range(family: string): [number, number] | undefined {
    let lo = 0;
    let hi = this.size;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.cmpFamily(mid, family) < 0) lo = mid + 1;
      else hi = mid;
    }
    if (lo >= this.size || this.cmpFamily(lo, family) !== 0) return undefined;
    let end = lo + 1;
    while (end < this.size && this.cmpFamily(end, family) === 0) end++;
    return [lo, end];
  }

  families(): readonly string[] {
    if (!this.uniq) {
      const out: string[] = [];
      for (let i = 0; i < this.size; i++) {
        const f = this.familyOf(i);
        if (out.length === 0 || out[out.length - 1] !== f) out.push(f);
      }
      this.uniq = out;
    }
    return this.uniq;
  }

  private providedKey(j: number): string {
    const esc = this.provEsc.get(j);
    if (esc) return esc[0];
    const p = this.provided;
    return p.slice(p.start(j), this.provTab[j]!);
  }

  providers(family: string): readonly number[] {
    const p = this.provided;
    const cmp = (j: number): number => {
      const esc = this.provEsc.get(j);
      if (esc) return byBytes(esc[0], family);
      return p.cmp(p.start(j), this.provTab[j]!, family);
    };
    let lo = 0;
    let hi = p.count;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (cmp(mid) < 0) lo = mid + 1;
      else hi = mid;
    }
    if (lo >= p.count || cmp(lo) !== 0) return NONE;
    const esc = this.provEsc.get(lo);
    const list = esc
      ? esc[1]
      : p
          .slice(this.provTab[lo]! + 1, p.end(lo))
          .split(' ')
          .map((x) => (/^(0|[1-9][0-9]*)$/.test(x) ? Number(x) : NaN));
    for (let k = 0; k < list.length; k++) {
      const i = list[k]!;
      if (!Number.isSafeInteger(i) || i < 0 || i >= this.size || (k > 0 && i <= list[k - 1]!)) {
        throw new CpmError(
          'E_REPO',
          `${this.where}: invalid repository index: provided, line ${lo + 1} (${family}): packages must be ascending numbers below ${this.size}`,
          { context: { path: this.where } },
        );
      }
    }
    return list;
  }

  // --- one package

  private category(i: number): string {
    const esc = this.famEsc.get(i);
    if (esc) return esc[0];
    const f = this.fam.line(i);
    const slash = f.indexOf('/');
    return slash < 0 ? '' : f.slice(0, slash);
  }

  private name(i: number): string {
    const esc = this.famEsc.get(i);
    if (esc) return esc[1];
    const f = this.fam.line(i);
    return f.slice(f.indexOf('/') + 1);
  }

  /** A dependency line as the index holds it, its JSON forms checked. */
  private depList(i: number, what: string, line: string): IndexDepList {
    if (!line.startsWith('"') && !line.startsWith('[')) return line;
    const v = this.json(i, what, line);
    if (typeof v === 'string') return v;
    if (!Array.isArray(v)) return this.fail(i, `${what} must be a list or a string`);
    for (const e of v) {
      if (typeof e === 'string') continue;
      const o = e as Record<string, unknown>;
      if (
        !isMap(e) ||
        typeof o.name !== 'string' ||
        (o.category !== undefined && typeof o.category !== 'string') ||
        (o.version !== undefined && typeof o.version !== 'string')
      )
        this.fail(i, `${what}: ${JSON.stringify(e)} is not a dependency`);
    }
    return v as IndexDepList;
  }

  private loadDeps(): NonNullable<V4Columns['deps']> {
    if (!this.deps) {
      const fail = failer(this.where);
      const lines = (s: Section): Lines => new Lines(this.read(s), this.size, fail, s);
      this.deps = {
        provides: lines('provides'),
        requires: lines('requires'),
        conflicts: lines('conflicts'),
        spec: lines('spec'),
      };
    }
    return this.deps;
  }

  /** The spec fields beyond the dependencies, checked. */
  private specFields(i: number): Partial<IndexPackage> {
    const line = this.loadDeps().spec.line(i);
    if (line === '{}') return EMPTY_MAP;
    const v = this.json(i, 'spec', line);
    if (!isMap(v)) this.fail(i, 'spec must be an object');
    const o = v as Record<string, unknown>;
    for (const k of Object.keys(o))
      if (!SPEC_KEYS.has(k)) this.fail(i, `spec: unknown field "${k}"`);
    for (const k of ['labels', 'annotations', 'extra'])
      if (o[k] !== undefined && !isMap(o[k])) this.fail(i, `"${k}" must be an object`);
    for (const k of ['labels', 'annotations'])
      if (o[k] !== undefined && !Object.values(o[k] as object).every((x) => typeof x === 'string'))
        this.fail(i, `"${k}" values must be strings`);
    for (const k of ['description', 'license'])
      if (o[k] !== undefined && typeof o[k] !== 'string') this.fail(i, `"${k}" must be a string`);
    if (
      o.uri !== undefined &&
      (!Array.isArray(o.uri) || !o.uri.every((x) => typeof x === 'string'))
    )
      this.fail(i, '"uri" must be a list of strings');
    if (o.hidden !== undefined && typeof o.hidden !== 'boolean')
      this.fail(i, '"hidden" must be true or false');
    const src = o.source as Record<string, unknown> | undefined;
    if (
      src !== undefined &&
      (!isMap(src) ||
        typeof src.file !== 'string' ||
        (src.line !== undefined && typeof src.line !== 'number'))
    )
      this.fail(i, '"source" must be {file, line}');
    return o as Partial<IndexPackage>;
  }

  spec(i: number): PackageSpec {
    const d = this.loadDeps();
    const f = this.specFields(i);
    const deps = (what: 'requires' | 'conflicts' | 'provides'): Dep[] => {
      const line = d[what].line(i);
      if (line === '') return [];
      return indexDeps(this.depList(i, what, line)).map((e) => {
        let dep: Dep | null;
        try {
          dep = depFromJson(e);
        } catch (err) {
          // a selector that does not parse (E_VERSION): name the index and the package too
          return this.fail(i, `${what}: ${(err as Error).message}`);
        }
        if (!dep)
          this.fail(
            i,
            `${what}: dependency "${typeof e === 'string' ? e : JSON.stringify(e)}" has no name`,
          );
        return dep!;
      });
    };
    return createSpec({
      category: this.category(i),
      name: this.name(i),
      version: this.versionOf(i),
      requires: deps('requires'),
      conflicts: deps('conflicts'),
      provides: deps('provides'),
      labels: f.labels ?? {},
      annotations: f.annotations ?? {},
      uri: f.uri ?? [],
      hidden: f.hidden ?? false,
      extra: f.extra ?? {},
      ...(f.description !== undefined ? { description: f.description } : {}),
      ...(f.license !== undefined ? { license: f.license } : {}),
      ...(f.source ? { source: { ...f.source } } : {}),
    });
  }

  /** The rest of an entry (image, content key, …), checked as validateIndex checks it. */
  private entryFields(i: number): Record<string, unknown> {
    this.entryLines ??= new Lines(this.read('entry'), this.size, failer(this.where), 'entry');
    const v = this.json(i, 'entry', this.entryLines.line(i));
    if (!isMap(v)) this.fail(i, 'entry must be an object');
    const o = v as Record<string, unknown>;
    for (const k of Object.keys(o))
      if (HEAD_KEYS.has(k) || SPEC_KEYS.has(k))
        this.fail(i, `entry: field "${k}" belongs elsewhere`);
    if (o.contentKey !== undefined && typeof o.contentKey !== 'string')
      this.fail(i, '"contentKey" must be a string');
    const img = o.image as Record<string, unknown> | undefined;
    if (img !== undefined) {
      if (!isMap(img)) this.fail(i, 'image must be an object');
      if (typeof img.repository !== 'string' || typeof img.tag !== 'string')
        this.fail(i, 'image.repository/tag missing');
      if (
        typeof img.manifestDigest !== 'string' ||
        !/^sha256:[a-f0-9]{64}$/.test(img.manifestDigest)
      )
        this.fail(i, 'image.manifestDigest is not a sha256 digest');
      if (!Array.isArray(img.layers)) this.fail(i, 'image.layers missing');
      for (const l of img.layers as unknown[]) {
        const x = l as Record<string, unknown>;
        if (
          !isMap(l) ||
          typeof x.digest !== 'string' ||
          typeof x.mediaType !== 'string' ||
          typeof x.size !== 'number'
        )
          this.fail(i, 'image.layers: each needs digest, mediaType and size');
      }
    }
    const art = o.artifact as Record<string, unknown> | undefined;
    if (
      art !== undefined &&
      (!isMap(art) ||
        typeof art.file !== 'string' ||
        typeof art.digest !== 'string' ||
        typeof art.mediaType !== 'string')
    )
      this.fail(i, 'artifact needs file, digest and mediaType');
    return o;
  }

  entry(i: number): IndexPackage {
    let e = this.entries[i];
    if (!e) {
      const d = this.loadDeps();
      const f = this.specFields(i);
      const list = (what: 'requires' | 'conflicts' | 'provides'): IndexDepList => {
        const line = d[what].line(i);
        return line === '' ? '' : this.depList(i, what, line);
      };
      e = {
        category: this.category(i),
        name: this.name(i),
        version: this.versionOf(i),
        requires: list('requires'),
        conflicts: list('conflicts'),
        provides: list('provides'),
        labels: EMPTY_MAP,
        annotations: EMPTY_MAP,
        extra: EMPTY_MAP,
        uri: EMPTY_LIST,
        hidden: false,
        ...f,
        ...this.entryFields(i),
      } as IndexPackage;
      this.entries[i] = e;
    }
    return e;
  }
}

/** A schema 4 index: `packages` reads every entry (search, `repo create`'s comparison). */
export class V4Index implements RepoIndex {
  readonly schemaVersion = SCHEMA_4;
  private all: IndexPackage[] | undefined;
  constructor(
    readonly repository: RepoMeta,
    readonly columns: V4Columns,
  ) {}
  get packages(): IndexPackage[] {
    if (!this.all) {
      const out: IndexPackage[] = [];
      for (let i = 0; i < this.columns.size; i++) out.push(this.columns.entry(i));
      this.all = out;
    }
    return this.all;
  }
  get table(): PackageTable {
    return this.columns;
  }
}
