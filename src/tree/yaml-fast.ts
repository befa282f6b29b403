/**
 * A fast reader for the block-YAML subset packages trees are written in: block maps and sequences
 * indented with spaces, plain scalars on one line, single- and double-quoted scalars on one line,
 * literal block scalars (`|`, `|-`, `|+`), folded ones of plain lines (`>`, `>-`), empty flow
 * collections (`[]`, `{}`), comments, and the anchors luet collections share stanzas with: an
 * anchored block collection (`- &X` / `key: &X` alone on its line), its aliases (`*X`) and merge
 * keys naming one alias (`<<: *X`, `!!merge <<: *X`). It produces exactly what the full converter
 * in yaml.ts produces (values, shared objects, key lines, scalar source text, repeated-key
 * warnings) — the `yaml` package builds a token stream, a CST and a document of nodes first,
 * several times slower and with far more garbage.
 *
 * Anything outside the subset (tags, anchored scalars, aliases of nodes that hold aliases, merges
 * of lists or inline maps, flow collections with content, multi-line plain or quoted scalars,
 * folded scalars with blank or more-indented lines, tabs in indentation, directives, several
 * documents, CRLF, odd keys) and anything that looks wrong makes it give up: `parseFast` returns
 * null and the caller parses the text with `yaml`, which also reports the error with its line.
 * Line numbers here come for free (the reader walks lines); nothing is computed twice.
 */
import type { LoadedYaml, YamlPositions } from './yaml.js';

/** How a plain scalar resolves under YAML 1.1 (`atKey`: merge keys too); throws to give up. */
export type PlainResolver = (text: string, atKey: boolean) => unknown;

/** Thrown inside the reader to give up on the text; never escapes parseFast. */
const GIVE_UP = Symbol('give up');

/**
 * A plain scalar that may be something other than a string under a YAML 1.1 tag: one starting
 * with a digit, sign, dot, "~" or "<", or a word of at most 5 letters starting as null/bool words
 * do. Anything else is a string under every tag.
 */
function maybeTyped(t: string): boolean {
  const c = t.charCodeAt(0);
  if ((c >= 48 && c <= 57) || c === 43 || c === 45 || c === 46 || c === 126 || c === 60)
    return true;
  return t.length <= 5 && /^[NnYyTtOoFf]/.test(t);
}
/** An anchor or alias name the reader takes (YAML allows more; the rest is left to yaml). */
const ANCHOR = /^[&*][A-Za-z0-9_.-]+$/;
/** Keys taken as-is: they resolve to themselves (checked against the resolver too). */
const PLAIN_KEY = /^[A-Za-z_][A-Za-z0-9_./-]*$/;
const CHOMP = /^[|>]([+-]?)$/;
/** The spaces at `lastIndex` (sticky: always matches, maybe nothing). */
const SPACES = / */y;
/** The characters after a backslash that JSON and YAML read alike: " \ / b f n r t u. */
const JSON_ESCAPE = new Set([...'"\\/bfnrtu'].map((c) => c.charCodeAt(0)));

export function parseFast(
  text: string,
  file: string,
  maxDepth: number,
  resolvePlain: PlainResolver,
  maxAliasNodes = 100_000,
  flowWords = false,
): LoadedYaml | null {
  if (text.includes('\r')) return null;
  try {
    return new FastReader(text, file, maxDepth, resolvePlain, maxAliasNodes, flowWords).read();
  } catch (e) {
    // GIVE_UP, or a tag refusing a scalar, or a stack too deep: the full parser says what it is.
    void e;
    return null;
  }
}

function giveUp(): never {
  throw GIVE_UP;
}

/**
 * Per container: its line, then the line of each key (maps: in insertion order, which is the
 * object's key order since keys start with a letter and never repeat here) or item. One small array
 * per container in a Map that dies with the document: no per-key Map, no WeakMap.
 */
class LinePositions implements YamlPositions {
  readonly lines = new Map<object, number[]>();
  /** Only for containers holding a non-string scalar (rare: `version: 1.10`). */
  readonly texts = new Map<object, Map<string | number, string>>();

  lineOf(container: object, key?: string | number): number | undefined {
    const l = this.lines.get(container);
    if (!l) return undefined;
    if (key === undefined) return l[0];
    let at = -1;
    if (Array.isArray(container)) {
      if (typeof key === 'number') at = key;
    } else {
      let n = 0;
      for (const k in container) {
        if (k === key) {
          at = n;
          break;
        }
        n++;
      }
    }
    return (at >= 0 ? l[at + 1] : undefined) ?? l[0];
  }

  sourceOf(container: object, key: string | number): string | undefined {
    return this.texts.get(container)?.get(key);
  }

  text(container: object, key: string | number, text: string): void {
    let m = this.texts.get(container);
    if (!m) this.texts.set(container, (m = new Map()));
    m.set(key, text);
  }
}

class FastReader {
  /** Offset of each line's first character, and one past the text's end at [count]. */
  private readonly starts: Int32Array;
  /** Leading spaces of each line. */
  private readonly indents: Int32Array;
  /** Lines, as split('\n') counts them (a final line break ends with an empty line). */
  private readonly count: number;
  private readonly positions = new LinePositions();
  /** Keys already checked (a tree repeats the same few thousands of times). */
  private readonly keysSeen = new Set<string>();
  readonly warnings: Array<{ line: number; message: string }> = [];
  /**
   * Anchored collections by name. Only a `pure` one (no alias or merge inside) can be aliased:
   * its size with aliases expanded is then its plain node count, which the alias-bomb cap needs.
   */
  private readonly anchors = new Map<string, { value: object; pure: boolean; size?: number }>();
  /** Aliases and merges read so far (an anchored node that saw this change is not pure). */
  private aliasUses = 0;
  /** Nodes that aliases added, counted as the full converter counts them. */
  private aliasNodes = 0;

  constructor(
    private readonly text: string,
    private readonly file: string,
    private readonly maxDepth: number,
    private readonly resolvePlain: PlainResolver,
    private readonly maxAliasNodes: number,
    /** Take a one-line flow sequence of plain words (`[a, b]`); config files only. */
    private readonly flowWords = false,
  ) {
    let n = 1;
    for (let p = text.indexOf('\n'); p >= 0; p = text.indexOf('\n', p + 1)) n++;
    this.count = n;
    this.starts = new Int32Array(n + 1);
    this.indents = new Int32Array(n);
    let s = 0;
    for (let i = 0; i < n; i++) {
      this.starts[i] = s;
      // the indentation by a regex, not a loop per space: this runs cold, once per text, and
      // the per-character steps made it hot enough to be optimized in the background (CPU a
      // short run never earns back)
      SPACES.lastIndex = s;
      SPACES.test(text);
      const k = SPACES.lastIndex;
      this.indents[i] = k - s;
      const nl = text.indexOf('\n', k);
      s = nl < 0 ? text.length + 1 : nl + 1;
    }
    this.starts[n] = text.length + 1;
  }

  private indent(i: number): number {
    return this.indents[i]!;
  }

  /** Line `i` after its indentation, without the line break. */
  private body(i: number): string {
    return this.text.slice(this.starts[i]! + this.indents[i]!, this.starts[i + 1]! - 1);
  }

  /** Nothing but spaces on line `i`. */
  private blank(i: number): boolean {
    return this.starts[i]! + this.indents[i]! >= this.starts[i + 1]! - 1;
  }

  /** Index of the first line at or after `i` with content (not blank, not only a comment). */
  private next(i: number): number {
    for (; i < this.count; i++) {
      const p = this.starts[i]! + this.indents[i]!;
      if (p >= this.starts[i + 1]! - 1) continue;
      const c = this.text.charCodeAt(p);
      if (c === 35 /* # */) continue;
      if (c === 9 /* tab */) giveUp();
      return i;
    }
    return i;
  }

  read(): LoadedYaml {
    let i = this.next(0);
    let value: unknown = null;
    if (i < this.count) {
      const b = this.body(i);
      if (b.startsWith('%') || b.startsWith('---') || b.startsWith('...')) giveUp();
      const r = this.block(i, this.indent(i), b, 0);
      value = r[0];
      i = this.next(r[1]);
      if (i < this.count) giveUp(); // content the top node did not take: an error
    }
    return {
      file: this.file,
      value,
      positions: this.positions,
      warnings: this.warnings,
    };
  }

  /**
   * The block map or sequence starting on line `i` at column `col`, whose text from there is
   * `body`. Returns [value, next line].
   */
  private block(i: number, col: number, body: string, depth: number): [unknown, number] {
    if (depth > this.maxDepth) giveUp(); // the full converter reports it
    if (isDash(body)) return this.seq(i, col, body, depth);
    if (this.keyEnd(body) > 0) return this.map(i, col, body, depth);
    return giveUp(); // a scalar on its own line: a document or a value on the next line
  }

  /** Where a key's ':' is in `body` (the key then ": " or ":" at the end), or -1. */
  private keyEnd(body: string): number {
    const c = body.indexOf(':');
    if (c <= 0) return -1;
    if (c + 1 < body.length && body.charCodeAt(c + 1) !== 32) return -1;
    return c;
  }

  private key(body: string, c: number): string {
    const k = body.slice(0, c);
    if (this.keysSeen.has(k)) return k;
    if (!PLAIN_KEY.test(k) || k === '__proto__') giveUp();
    if (maybeTyped(k) && this.resolvePlain(k, true) !== k) giveUp();
    this.keysSeen.add(k);
    return k;
  }

  /** Registers a container made on line `line` (1-based); returns its line list. */
  private container(value: object, line: number): number[] {
    const l = [line];
    this.positions.lines.set(value, l);
    return l;
  }

  private map(i: number, col: number, body: string, depth: number): [unknown, number] {
    const out: Record<string, unknown> = {};
    const lines = this.container(out, i + 1);
    /** Maps named by merge keys (`<<: *a`), applied after the map's own keys. */
    let merges: object[] | undefined;
    for (;;) {
      const c = this.keyEnd(body);
      if (c < 0) giveUp();
      let sp = c + 1;
      while (body.charCodeAt(sp) === 32) sp++;
      const k = body.slice(0, c);
      if (k === '<<' || k === '!!merge <<') {
        // A merge key: only of one alias of a map (a list or an inline map is left to yaml).
        merges ??= [];
        merges.push(this.alias(body.slice(sp), depth + 1, true));
        const j = this.next(i + 1);
        if (j >= this.count || this.indent(j) < col) {
          i = j;
          break;
        }
        if (this.indent(j) > col) giveUp();
        i = j;
        body = this.body(j);
        continue;
      }
      const key = this.key(body, c);
      // [value, next line]; read by index (destructuring runs the iterator protocol, which
      // allocates at each step in code the JIT has not compiled: this runs cold)
      let r: [unknown, number];
      const v0 = body.charCodeAt(sp);
      if (v0 === 38 /* & */ || v0 === 42 /* * */) {
        r = this.anchored(i, body.slice(sp), col, depth + 1);
      } else if (sp >= body.length || v0 === 35 /* # */) {
        // The value is on the following lines: deeper, or a sequence at this map's column.
        const j = this.next(i + 1);
        const ind = j < this.count ? this.indent(j) : -1;
        if (ind > col) {
          r = this.block(j, ind, this.body(j), depth + 1);
        } else if (ind === col && isDash(this.body(j))) {
          r = this.seq(j, col, this.body(j), depth + 1);
        } else {
          r = [null, i + 1];
        }
      } else {
        r = this.scalar(i, body.slice(sp), col, out, key);
      }
      // A repeated key (warned about, last wins) would break the key order = line order rule.
      if (Object.prototype.hasOwnProperty.call(out, key)) giveUp();
      out[key] = r[0];
      lines.push(i + 1);
      const j = this.next(r[1]);
      if (j >= this.count || this.indent(j) < col) {
        i = j;
        break;
      }
      if (this.indent(j) > col) giveUp(); // a continuation line or a mis-indented key
      // The next key at this column (anything else there fails the keyEnd check).
      i = j;
      body = this.body(j);
    }
    // Merged maps fill only the keys the map does not set itself; an earlier one wins. Their
    // lines and scalar texts are the merged map's (as the full converter does).
    // (not `merges ?? []`: an empty list and its iterator for every map, most of which merge none)
    if (merges)
      for (const m of merges) {
        for (const k of Object.keys(m)) {
          if (Object.prototype.hasOwnProperty.call(out, k)) continue;
          out[k] = (m as Record<string, unknown>)[k];
          lines.push(this.positions.lineOf(m, k)!);
          const t = this.positions.sourceOf(m, k);
          if (t !== undefined) this.positions.text(out, k, t);
        }
      }
    return [out, this.next(i)];
  }

  /**
   * A value starting with an anchor (`&a`, alone on its line: the collection on the following,
   * deeper lines) or an alias (`*a`) at nesting `depth`, in a node at column `col`. Anchored
   * scalars, and aliases of anything but a pure anchored collection, are left to yaml.
   */
  private anchored(i: number, text: string, col: number, depth: number): [unknown, number] {
    if (text.charCodeAt(0) === 42 /* * */) return [this.alias(text, depth, false), i + 1];
    const name = trimSpaces(text);
    if (!ANCHOR.test(name) || this.anchors.has(name.slice(1))) giveUp();
    const j = this.next(i + 1);
    if (j >= this.count || this.indent(j) <= col) giveUp(); // a scalar, or nothing
    const uses = this.aliasUses;
    const r = this.block(j, this.indent(j), this.body(j), depth);
    this.anchors.set(name.slice(1), {
      value: r[0] as object,
      pure: this.aliasUses === uses,
    });
    return r;
  }

  /** The collection an alias (`*a`, the whole rest of the line) names; `map`: it must be a map. */
  private alias(text: string, depth: number, map: boolean): object {
    const name = trimSpaces(text);
    if (!ANCHOR.test(name) || name.charCodeAt(0) !== 42) giveUp();
    const a = this.anchors.get(name.slice(1));
    // The converter re-enters the target one level deeper (and checks that level).
    if (!a || !a.pure || depth + 1 > this.maxDepth) giveUp();
    if (map && Array.isArray(a.value)) giveUp(); // an error: left to yaml to report
    a.size ??= nodeCount(a.value);
    this.aliasNodes += a.size;
    if (this.aliasNodes > this.maxAliasNodes) giveUp(); // an alias bomb: yaml reports it
    this.aliasUses++;
    return a.value;
  }

  private seq(i: number, col: number, body: string, depth: number): [unknown, number] {
    const out: unknown[] = [];
    const lines = this.container(out, i + 1);
    for (;;) {
      const n = out.length;
      let sp = 1;
      while (body.charCodeAt(sp) === 32) sp++;
      // [value, next line]; read by index (destructuring runs the iterator protocol, which
      // allocates at each step in code the JIT has not compiled: this runs cold)
      let r: [unknown, number];
      if (sp >= body.length || body.charCodeAt(sp) === 35) {
        // "-" alone: the item is the block on the following lines.
        const j = this.next(i + 1);
        if (j >= this.count || this.indent(j) <= col) giveUp(); // an empty item
        r = this.block(j, this.indent(j), this.body(j), depth + 1);
        lines.push(j + 1);
      } else {
        const rest = body.slice(sp);
        if (isDash(rest)) giveUp(); // "- - x": a compact nested sequence
        const r0 = rest.charCodeAt(0);
        if (r0 === 38 /* & */ || r0 === 42 /* * */) {
          r = this.anchored(i, rest, col, depth + 1);
          // an anchored item is where its collection starts, on the next line
          lines.push((r0 === 38 ? this.next(i + 1) : i) + 1);
        } else {
          if (this.keyEnd(rest) > 0) {
            if (depth + 1 > this.maxDepth) giveUp();
            r = this.map(i, col + sp, rest, depth + 1);
          } else {
            r = this.scalar(i, rest, col, out, n);
          }
          lines.push(i + 1);
        }
      }
      out.push(r[0]);
      const j = this.next(r[1]);
      if (j >= this.count || this.indent(j) < col) return [out, j];
      if (this.indent(j) > col) giveUp();
      const b = this.body(j);
      if (!isDash(b)) return [out, j]; // the next key of the map holding this sequence
      i = j;
      body = b;
    }
  }

  /**
   * A scalar written on line `i` (`body`: its text to the end of the line) as the value of `key`
   * in a node at column `indent` (a block scalar's lines must be deeper). Non-string scalars keep
   * their text. Returns [value, next line].
   */
  private scalar(
    i: number,
    body: string,
    indent: number,
    holder: object,
    key: string | number,
  ): [unknown, number] {
    const c0 = body.charCodeAt(0);
    if (c0 === 34 /* " */) return [doubleQuoted(body), i + 1];
    if (c0 === 39 /* ' */) return [singleQuoted(body), i + 1];
    if (c0 === 124 /* | */ || c0 === 62 /* > */)
      return this.blockScalar(i, body, indent, c0 === 62);
    if (c0 === 91 /* [ */ || c0 === 123 /* { */) {
      const flow = stripComment(body);
      if (c0 === 91 && this.flowWords && flow !== '[]') return [this.words(i, flow), i + 1];
      if (flow !== (c0 === 91 ? '[]' : '{}')) giveUp();
      const empty = c0 === 91 ? [] : {};
      this.container(empty, i + 1);
      return [empty, i + 1];
    }
    const t = plain(body);
    if (!maybeTyped(t)) return [t, i + 1];
    const v = this.resolvePlain(t, false);
    if (typeof v !== 'string') this.positions.text(holder, key, t);
    if (typeof v === 'number' && Number.isNaN(v) && !/^[-+]?\.nan$/i.test(t)) {
      // yaml's 1.1 float pattern also matches words like "e1" (→ NaN); Go reads those as strings.
      return [t, i + 1];
    }
    if (v !== null && typeof v === 'object') giveUp(); // a timestamp and the like
    return [v, i + 1];
  }

  /** `[a, b]` on line `i`: plain scalars only (no quotes, nesting, comments or empty items). */
  private words(i: number, flow: string): unknown[] {
    const m = /^\[([^[\]{}"'#&*!|>%@`?]*)\]$/.exec(flow);
    if (!m) giveUp();
    const out: unknown[] = [];
    const lines = this.container(out, i + 1);
    for (const item of m[1]!.split(',')) {
      const t = plain(item.replace(/^ +| +$/g, ''));
      const v = maybeTyped(t) ? this.resolvePlain(t, false) : t;
      if ((v !== null && typeof v === 'object') || Number.isNaN(v)) giveUp();
      if (typeof v !== 'string') this.positions.text(out, out.length, t);
      out.push(v);
      lines.push(i + 1);
    }
    return out;
  }

  /**
   * A literal block scalar (`|`, `|-`, `|+`), or a folded one (`>`, `>-`) whose lines are all at
   * one indentation with no blank line between them: each line break between them becomes a
   * space. Other folded scalars (blank or more-indented lines, which fold by finer rules, or
   * keep-chomping) are left to the full parser. No indentation indicator.
   */
  private blockScalar(i: number, body: string, indent: number, folded: boolean): [string, number] {
    const m = CHOMP.exec(stripComment(body));
    if (!m || (folded && m[1] === '+')) giveUp();
    // Its lines: those after the header deeper than `indent`, blank lines included.
    let width = -1;
    const parts: string[] = [];
    let blanks = 0; // blank lines since the last content line
    let j = i + 1;
    for (; j < this.count; j++) {
      const ind = this.indent(j);
      if (this.blank(j)) {
        if (width >= 0 && ind > width) giveUp(); // spaces beyond the indentation: content
        blanks++;
        continue;
      }
      if (ind <= indent) break;
      if (width < 0) {
        width = ind;
        // Leading blank lines deeper than the first content line are an error.
        for (let k = i + 1; k < j; k++) if (this.indent(k) > width) giveUp();
      } else if (ind < width) giveUp(); // less indented than the first line: an error
      if (folded && (blanks > 0 || ind > width || this.body(j).charCodeAt(0) === 9)) giveUp();
      for (; blanks > 0; blanks--) parts.push('');
      parts.push(ind === width ? this.body(j) : ' '.repeat(ind - width) + this.body(j));
    }
    if (width < 0) giveUp(); // no content
    const chomp = m[1];
    // Its last line ends the text without a line break: the converter adds none (as go-yaml),
    // so clipping gives the content alone. Keep-chomping or trailing blanks there: left to it.
    const unbroken = j === this.count && !this.text.endsWith('\n');
    if (unbroken && (chomp === '+' || blanks > 0)) giveUp();
    const content = parts.join(folded ? ' ' : '\n');
    if (chomp === '-') return [content, j];
    if (chomp === '') return [unbroken ? content : content + '\n', j];
    // Keep: every blank line after the content (the split's empty last element is the file's
    // final line break, not a line).
    if (j === this.count) blanks--;
    return [content + '\n'.repeat(1 + Math.max(0, blanks)), j];
  }
}

/** Node count of a collection as the full converter counts it (a map's keys count too). */
function nodeCount(v: unknown): number {
  if (v === null || typeof v !== 'object') return 1;
  let n = 1;
  if (Array.isArray(v)) for (const x of v) n += nodeCount(x);
  else for (const k of Object.keys(v)) n += 1 + nodeCount((v as Record<string, unknown>)[k]);
  return n;
}

/** `s` without the spaces at its end (a tab or a comment there is left to yaml). */
function trimSpaces(s: string): string {
  let e = s.length;
  while (e > 0 && s.charCodeAt(e - 1) === 32) e--;
  return s.slice(0, e);
}

function isDash(body: string): boolean {
  return body.charCodeAt(0) === 45 && (body.length === 1 || body.charCodeAt(1) === 32);
}

/** Nothing but spaces and tabs, and maybe a comment (not JS's trim: U+00A0 and the like are text). */
function isRestEmpty(s: string): boolean {
  return /^[ \t]*$/.test(s) || /^[ \t]+#/.test(s);
}

/** A plain scalar's text: up to a comment, trimmed; gives up on what is not plain. */
function plain(body: string): string {
  // Indicators that cannot start a plain scalar (or start what the reader does not take).
  if (/^[?:,\]}#&*!|>%@`]/.test(body) || isDash(body)) giveUp();
  const t = stripComment(body);
  // '' is a value of only tabs ("a: <tab>"): null to YAML, left to it.
  if (t === '' || t.includes(': ') || t.endsWith(':') || t.includes('\t')) giveUp();
  return t;
}

function doubleQuoted(body: string): string {
  let j = 1;
  for (;;) {
    const q = body.indexOf('"', j);
    if (q < 0) giveUp(); // continues on the next line
    let bs = 0;
    while (body.charCodeAt(q - 1 - bs) === 92) bs++;
    if (bs % 2 === 1) {
      j = q + 1;
      continue;
    }
    if (!isRestEmpty(body.slice(q + 1))) giveUp();
    const inner = body.slice(1, q);
    if (hasControl(inner, false)) giveUp();
    if (!inner.includes('\\')) return inner;
    // JSON's escapes mean the same in YAML; YAML's others (\x, \e, \N, …) are left to yaml.
    // Each backslash starts an escape: "\\." is an escaped backslash and a dot.
    for (let b = inner.indexOf('\\'); b >= 0; b = inner.indexOf('\\', b + 2))
      if (!JSON_ESCAPE.has(inner.charCodeAt(b + 1))) giveUp();
    try {
      return JSON.parse(`"${inner}"`) as string;
    } catch {
      return giveUp();
    }
  }
}

/**
 * The text before a ` #` comment, without the spaces and tabs at its end (only those: YAML's
 * white space; JS's trimEnd also takes U+00A0, U+2028, U+FEFF…, which YAML keeps in a scalar).
 */
function stripComment(s: string): string {
  let h = s.indexOf('#');
  while (h > 0 && s.charCodeAt(h - 1) !== 32 && s.charCodeAt(h - 1) !== 9)
    h = s.indexOf('#', h + 1);
  const t = h === 0 ? '' : h > 0 ? s.slice(0, h) : s;
  let e = t.length;
  while (e > 0 && (t.charCodeAt(e - 1) === 32 || t.charCodeAt(e - 1) === 9)) e--;
  return e === t.length ? t : t.slice(0, e);
}

// eslint-disable-next-line no-control-regex -- control characters are what it looks for
const CONTROL = /[\x00-\x1f\x7f]/;
// eslint-disable-next-line no-control-regex -- as CONTROL, without the tab
const CONTROL_BUT_TAB = /[\x00-\x08\x0a-\x1f\x7f]/;

/** Control characters (a tab too unless `tabOk`): left to yaml, which knows what each means. */
function hasControl(s: string, tabOk: boolean): boolean {
  // a regex, not a loop over the characters: this runs cold, once per quoted scalar
  return (tabOk ? CONTROL_BUT_TAB : CONTROL).test(s);
}

function singleQuoted(body: string): string {
  let j = 1;
  let out = '';
  for (;;) {
    const q = body.indexOf("'", j);
    if (q < 0) giveUp();
    out += body.slice(j, q);
    if (body.charCodeAt(q + 1) === 39) {
      out += "'";
      j = q + 2;
      continue;
    }
    if (!isRestEmpty(body.slice(q + 1))) giveUp();
    if (hasControl(out, true)) giveUp();
    return out;
  }
}

/**
 * How a plain scalar resolves under the YAML 1.2 core schema (the `yaml` package's default, which
 * cpm.yaml and repository configs are read with), by the schema's own patterns: null, the
 * booleans, decimal integers and floats; octal, hex, .inf and .nan give up (rare in a config);
 * anything else is a string there ("6h", "yes": a boolean only under YAML 1.1).
 */
export function resolveCorePlain(t: string): unknown {
  if (/^(?:~|[Nn]ull|NULL)?$/.test(t)) return null;
  if (/^(?:[Tt]rue|TRUE)$/.test(t)) return true;
  if (/^(?:[Ff]alse|FALSE)$/.test(t)) return false;
  if (/^0o[0-7]+$/.test(t) || /^0x[0-9a-fA-F]+$/.test(t)) giveUp();
  if (/^(?:[-+]?\.(?:inf|Inf|INF)|\.nan|\.NaN|\.NAN)$/.test(t)) giveUp();
  if (/^[-+]?[0-9]+$/.test(t)) return parseInt(t, 10);
  if (
    /^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)[eE][-+]?[0-9]+$/.test(t) ||
    /^[-+]?(?:\.[0-9]+|[0-9]+\.[0-9]*)$/.test(t)
  )
    return parseFloat(t);
  return t;
}

/**
 * A small config file (cpm.yaml, a repository config) read as the `yaml` package reads it with
 * its defaults (YAML 1.2 core, unique keys), or null: outside the fast reader's subset, a repeated
 * key (an error there), or anything else the full parser has to judge and report. One-line
 * lists of plain words (`repos_confdir: [repos.conf.d]`) are read here too. Anchors,
 * aliases and `<<` (a plain key under YAML 1.2, a merge for the tree reader) and `__proto__`
 * are left to the full parser, wherever they appear.
 */
export function parseFastCore(text: string, file: string): LoadedYaml | null {
  if (/[&*]|<<|__proto__/.test(text)) return null;
  const y = parseFast(text, file, 64, resolveCorePlain, 0, true);
  return y && y.warnings.length === 0 ? y : null;
}
