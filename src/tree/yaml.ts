/**
 * YAML with source positions and hostile-input limits. Trees come from anywhere, so a file is
 * size-capped, alias expansion is counted (an alias bomb fails fast at the alias that crosses the
 * cap), nesting depth is bounded, and every error carries file:line.
 *
 * Plain block YAML (what almost every tree file is) is read by the fast reader in yaml-fast.ts,
 * its plain scalars resolved by yaml11.ts; anything else, and every error, goes through the `yaml`
 * package, loaded only then (src/util/yaml-lib.ts).
 *
 * The document is converted by hand rather than with `toJS()` so that aliases stay shared (no
 * copies), merge keys (`<<` and explicit `!!merge <<`) follow the YAML 1.1 rule (explicit keys win,
 * a merged list is replaced, not appended), and each produced object remembers the line of every
 * key for later error messages.
 */
import { readFileSync, statSync } from 'node:fs';
import type { Document, LineCounter, Node as YamlNode } from 'yaml';
import { CpmError } from '../errors.js';
import { yamlLib } from '../util/yaml-lib.js';
import { parseFast } from './yaml-fast.js';
import { resolvePlain11 } from './yaml11.js';

export interface YamlLimits {
  /** Largest file accepted, bytes. */
  maxBytes: number;
  /** Total nodes that alias expansion may add to one document. */
  maxAliasNodes: number;
  /** Deepest nesting accepted. */
  maxDepth: number;
}

export const DEFAULT_YAML_LIMITS: YamlLimits = {
  maxBytes: 4 * 1024 * 1024,
  maxAliasNodes: 100_000,
  maxDepth: 200,
};

/** Lines of an object's keys (or array's items) as they appear in the file. */
export interface NodePos {
  line: number;
  keys: Map<string | number, number>;
}

/** Where the containers of a parsed document are, and the text of its non-string scalars. */
export interface YamlPositions {
  /**
   * Line of `container`, or of `key` in it (the container's own line when the key has none);
   * undefined for an object that did not come from this document.
   */
  lineOf(container: object, key?: string | number): number | undefined;
  /** The text of a non-string scalar as written (`1.10` for the float 1.1). */
  sourceOf(container: object, key: string | number): string | undefined;
}

export interface LoadedYaml {
  file: string;
  value: unknown;
  /** Positions of every map/seq the parse produced (shared for aliased nodes). */
  positions: YamlPositions;
  /** What luet's parser accepts silently but a reader should hear of (a repeated key). */
  warnings: Array<{ line: number; message: string }>;
}

/** Line of `key` inside `container` (or of the container itself), if known. */
export function lineOf(
  y: LoadedYaml,
  container: unknown,
  key?: string | number,
): number | undefined {
  if (container === null || typeof container !== 'object') return undefined;
  return y.positions.lineOf(container, key);
}

/** The scalar's text as written (for versions: `1.10` is not the float 1.1). */
export function sourceOf(
  y: LoadedYaml,
  container: unknown,
  key: string | number,
): string | undefined {
  if (container === null || typeof container !== 'object') return undefined;
  return y.positions.sourceOf(container, key);
}

/** The full converter's positions: a NodePos and a source map per container. */
class NodePositions implements YamlPositions {
  constructor(
    private readonly positions: WeakMap<object, NodePos>,
    private readonly sources: WeakMap<object, Map<string | number, string>>,
  ) {}

  lineOf(container: object, key?: string | number): number | undefined {
    const p = this.positions.get(container);
    if (!p) return undefined;
    if (key === undefined) return p.line;
    return p.keys.get(key) ?? p.line;
  }

  sourceOf(container: object, key: string | number): string | undefined {
    return this.sources.get(container)?.get(key);
  }
}

function yamlError(
  file: string,
  line: number | undefined,
  message: string,
  hint?: string,
): CpmError {
  return new CpmError('E_YAML', line ? `${file}:${line}: ${message}` : `${file}: ${message}`, {
    context: { file, line },
    ...(hint ? { hint } : {}),
  });
}

/** Reads and parses a YAML file. `display` is the path used in messages (relative to the tree). */
export async function loadYamlFile(
  path: string,
  display: string,
  limits: YamlLimits = DEFAULT_YAML_LIMITS,
): Promise<LoadedYaml> {
  // Synchronous, as tree.ts reads tree files (a thread-pool round trip per small file costs more).
  const st = statSync(path);
  if (st.size > limits.maxBytes) {
    throw yamlError(
      display,
      undefined,
      `file is ${st.size} bytes, above the ${limits.maxBytes}-byte limit for tree files`,
    );
  }
  return parseYaml(readFileSync(path, 'utf8'), display, limits);
}

/** Parses YAML text (one document). Throws CpmError E_YAML with file:line. */
export function parseYaml(
  text: string,
  file: string,
  limits: YamlLimits = DEFAULT_YAML_LIMITS,
): LoadedYaml {
  if (Buffer.byteLength(text) > limits.maxBytes) {
    throw yamlError(file, undefined, `text is above the ${limits.maxBytes}-byte limit`);
  }
  // Most tree files are plain block YAML: read those directly, everything else through yaml.
  return (
    parseFast(text, file, limits.maxDepth, resolvePlain, limits.maxAliasNodes) ??
    parseYamlDocument(text, file, limits)
  );
}

/** parseYaml through the `yaml` package only (the reference the fast reader is tested against). */
export function parseYamlDocument(
  text: string,
  file: string,
  limits: YamlLimits = DEFAULT_YAML_LIMITS,
): LoadedYaml {
  const { LineCounter, parseDocument } = yamlLib();
  const lc = new LineCounter();
  let doc: Document.Parsed;
  try {
    // YAML 1.1 as luet's Go parser reads it (merge keys, yes/no booleans).
    // Repeated keys: go-yaml v2 (luet) keeps the last; the converter does the same and warns.
    doc = parseDocument(text, {
      lineCounter: lc,
      version: '1.1',
      prettyErrors: true,
      uniqueKeys: false,
    });
  } catch (e) {
    if (e instanceof RangeError) throw yamlError(file, undefined, 'nesting is too deep to parse');
    throw e;
  }
  if (doc.errors.length > 0) {
    const err = doc.errors[0]!;
    const line = err.linePos?.[0]?.line;
    const msg = err.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '');
    if (/call stack/i.test(msg)) throw yamlError(file, line, 'nesting is too deep to parse');
    throw yamlError(file, line, `YAML syntax: ${msg}`);
  }
  const conv = new Converter(doc, lc, text, file, limits);
  const value = conv.convert(doc.contents as YamlNode | null, 0);
  return {
    file,
    value,
    positions: new NodePositions(conv.positions, conv.sources),
    warnings: conv.warnings,
  };
}

/**
 * What a plain scalar becomes under the YAML 1.1 schema parseYaml uses (the `yaml` package's own
 * results, without loading it: yaml11.ts). `atKey`: the merge key `<<` too.
 */
export function resolvePlain(text: string, atKey: boolean): unknown {
  return resolvePlain11(text, atKey);
}

class Converter {
  readonly positions = new WeakMap<object, NodePos>();
  readonly sources = new WeakMap<object, Map<string | number, string>>();
  readonly warnings: Array<{ line: number; message: string }> = [];
  /** Converted value per node, so an alias yields the same object (no copies, no blow-up). */
  private readonly done = new Map<YamlNode, unknown>();
  /** Node count of each anchored subtree with aliases expanded, memoised. */
  private readonly sizes = new Map<YamlNode, number>();
  private aliasNodes = 0;
  /** The `yaml` package (loaded by now: the document came from it). */
  private readonly y = yamlLib();

  constructor(
    private readonly doc: Document.Parsed,
    private readonly lc: LineCounter,
    private readonly text: string,
    private readonly file: string,
    private readonly limits: YamlLimits,
  ) {}

  private line(node: { range?: [number, number, number] | null } | null | undefined): number {
    const off = node?.range?.[0];
    return off === undefined ? 0 : this.lc.linePos(off).line;
  }

  /** Size of a node with aliases expanded; stops counting once above the cap. */
  private size(node: YamlNode | null | undefined, depth: number): number {
    if (!node) return 1;
    const hit = this.sizes.get(node);
    if (hit !== undefined) return hit;
    if (depth > this.limits.maxDepth) return Infinity;
    let n = 1;
    if (this.y.isAlias(node)) {
      n = this.size(node.resolve(this.doc) as YamlNode | undefined, depth + 1);
    } else if (this.y.isMap(node)) {
      for (const p of node.items) {
        n += this.size(p.key as YamlNode, depth + 1) + this.size(p.value as YamlNode, depth + 1);
        if (n > this.limits.maxAliasNodes) break;
      }
    } else if (this.y.isSeq(node)) {
      for (const it of node.items) {
        n += this.size(it as YamlNode, depth + 1);
        if (n > this.limits.maxAliasNodes) break;
      }
    }
    this.sizes.set(node, n);
    return n;
  }

  convert(node: YamlNode | null | undefined, depth: number): unknown {
    if (node === null || node === undefined) return null;
    if (depth > this.limits.maxDepth) {
      throw yamlError(
        this.file,
        this.line(node),
        `nesting deeper than ${this.limits.maxDepth} levels`,
      );
    }
    if (this.y.isAlias(node)) {
      const target = node.resolve(this.doc) as YamlNode | undefined;
      if (!target) throw yamlError(this.file, this.line(node), `unknown alias *${node.source}`);
      this.aliasNodes += this.size(target, 0);
      if (this.aliasNodes > this.limits.maxAliasNodes) {
        throw yamlError(
          this.file,
          this.line(node),
          `alias *${node.source} expands the document beyond ${this.limits.maxAliasNodes} nodes (alias bomb?)`,
          'YAML aliases that reference aliases grow exponentially; flatten the document',
        );
      }
      return this.convert(target, depth + 1);
    }
    const seen = this.done.get(node);
    if (seen !== undefined) return seen;
    if (this.y.isScalar(node)) {
      const v = node.value;
      // yaml's 1.1 float pattern also matches words like "e1" (→ NaN); Go reads those as strings.
      if (typeof v === 'number' && Number.isNaN(v) && node.range) {
        const text = this.text.slice(node.range[0], node.range[1]).trim();
        if (!/^[-+]?\.nan$/i.test(text)) return text;
      }
      // A block scalar that ends the file without a line break: go-yaml adds none, nor do we.
      if (
        typeof v === 'string' &&
        (node.type === 'BLOCK_LITERAL' || node.type === 'BLOCK_FOLDED') &&
        node.range?.[1] === this.text.length &&
        !/[\r\n]$/.test(this.text) &&
        v.endsWith('\n')
      ) {
        return v.slice(0, -1);
      }
      return typeof v === 'symbol' ? String(v.description) : v;
    }
    if (this.y.isSeq(node)) {
      const out: unknown[] = [];
      const pos: NodePos = { line: this.line(node), keys: new Map() };
      const src = new Map<string | number, string>();
      this.done.set(node, out);
      node.items.forEach((it, i) => {
        const item = it as YamlNode;
        out.push(this.convert(item, depth + 1));
        pos.keys.set(i, this.line(item));
        this.recordSource(src, i, item);
      });
      this.positions.set(out, pos);
      this.sources.set(out, src);
      return out;
    }
    if (this.y.isMap(node)) {
      const out: Record<string, unknown> = {};
      const pos: NodePos = { line: this.line(node), keys: new Map() };
      const src = new Map<string | number, string>();
      this.done.set(node, out);
      const merges: YamlNode[] = [];
      for (const pair of node.items) {
        if (!this.y.isPair(pair)) continue;
        const k = pair.key as YamlNode | null;
        if (this.y.isScalar(k) && isMergeKey(k.value, k.type)) {
          merges.push(pair.value as YamlNode);
          continue;
        }
        const key = this.keyString(k, depth);
        if (Object.prototype.hasOwnProperty.call(out, key)) {
          this.warnings.push({
            line: this.line(k),
            message: `key "${key}" repeats the one at line ${pos.keys.get(key) ?? '?'}; the last one wins (as luet)`,
          });
        }
        setOwn(out, key, this.convert(pair.value as YamlNode, depth + 1));
        pos.keys.set(key, this.line(k));
        this.recordSource(src, key, pair.value as YamlNode | null);
      }
      // Merge sources only fill keys the map does not set itself; earlier sources win.
      for (const m of merges) this.mergeInto(out, pos, src, m, depth);
      this.positions.set(out, pos);
      this.sources.set(out, src);
      return out;
    }
    throw yamlError(this.file, this.line(node), 'unsupported YAML node');
  }

  /** Non-string scalars keep their text: `version: 1.10` is "1.10", not the float 1.1. */
  private recordSource(
    src: Map<string | number, string>,
    key: string | number,
    node: YamlNode | null,
  ): void {
    if (!this.y.isScalar(node) || typeof node.value === 'string' || !node.range) return;
    src.set(key, this.text.slice(node.range[0], node.range[1]).trim());
  }

  private keyString(k: YamlNode | null, depth: number): string {
    if (k === null) return '';
    if (this.y.isScalar(k)) return k.value === null ? '' : String(k.value);
    throw yamlError(
      this.file,
      this.line(k),
      `complex mapping keys are not supported (${depth > 0 ? 'nested' : 'top-level'} key)`,
    );
  }

  private mergeInto(
    out: Record<string, unknown>,
    pos: NodePos,
    src: Map<string | number, string>,
    m: YamlNode,
    depth: number,
  ): void {
    const sources = this.y.isSeq(m) ? (m.items as YamlNode[]) : [m];
    for (const s of sources) {
      const val = this.convert(s, depth + 1);
      if (val === null || typeof val !== 'object' || Array.isArray(val)) {
        throw yamlError(
          this.file,
          this.line(s),
          'merge key "<<" needs a mapping or an alias of one',
        );
      }
      const sPos = this.positions.get(val);
      const sSrc = this.sources.get(val);
      for (const [k, v] of Object.entries(val)) {
        if (Object.prototype.hasOwnProperty.call(out, k)) continue;
        setOwn(out, k, v);
        const l = sPos?.keys.get(k);
        if (l !== undefined) pos.keys.set(k, l);
        const t = sSrc?.get(k);
        if (t !== undefined) src.set(k, t);
      }
    }
  }
}

function isMergeKey(v: unknown, type: string | undefined): boolean {
  return (
    (v === '<<' && (!type || type === 'PLAIN')) || (typeof v === 'symbol' && v.description === '<<')
  );
}

function setOwn(o: Record<string, unknown>, k: string, v: unknown): void {
  // defineProperty: a "__proto__" key is data, not the prototype.
  Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
}
