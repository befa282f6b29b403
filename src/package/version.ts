/**
 * Versions and selectors. One comparator serves ordering and matching: Debian EVR semantics after
 * luet's sanitising (see docs/versions.md). Selectors are luet's operators plus, as a superset,
 * `^`, `~` and comma-joined ranges.
 */
import { CpmError } from '../errors.js';

export interface ParsedVersion {
  epoch: number;
  upstream: string;
  revision: string;
}

const UPSTREAM_CHARS = /^[0-9][A-Za-z0-9.+~:-]*$/;
const REVISION_CHARS = /^[A-Za-z0-9.+~]*$/;

/** luet's sanitising: `_`→`-`, a leading v/V before a digit dropped, leading zeros of numeric runs dropped. */
export function sanitizeVersion(v: string): string {
  let s = v.trim().replace(/_/g, '-');
  if (/^[vV][0-9]/.test(s)) s = s.slice(1);
  return s.replace(/(^|[^0-9])0+(?=[0-9])/g, '$1');
}

const parseCache = new Map<string, ParsedVersion | null>();

/** Parses a version after sanitising; null when it is not a valid Debian-style version. */
export function parseVersion(v: string): ParsedVersion | null {
  const hit = parseCache.get(v);
  if (hit !== undefined) return hit;
  const parsed = parseUncached(v);
  if (parseCache.size > 200_000) parseCache.clear();
  parseCache.set(v, parsed);
  return parsed;
}

function parseUncached(raw: string): ParsedVersion | null {
  const s = sanitizeVersion(raw);
  if (s === '') return null;
  let epoch = 0;
  let rest = s;
  const colon = s.indexOf(':');
  if (colon >= 0) {
    const e = s.slice(0, colon);
    if (!/^[0-9]+$/.test(e)) return null;
    epoch = Number(e);
    if (!Number.isSafeInteger(epoch)) return null;
    rest = s.slice(colon + 1);
  }
  let upstream = rest;
  let revision = '';
  const dash = rest.lastIndexOf('-');
  if (dash >= 0) {
    upstream = rest.slice(0, dash);
    revision = rest.slice(dash + 1);
    if (revision === '' || !REVISION_CHARS.test(revision)) return null;
  }
  if (!UPSTREAM_CHARS.test(upstream)) return null;
  if (colon < 0 && upstream.includes(':')) return null;
  return { epoch, upstream, revision };
}

export function isValidVersion(v: string): boolean {
  return parseVersion(v) !== null;
}

function order(c: number): number {
  if (c >= 48 && c <= 57) return 0; // digit
  if ((c >= 65 && c <= 90) || (c >= 97 && c <= 122)) return c; // letter
  if (c === 126) return -1; // '~' sorts before everything, even the end
  return c + 256;
}

const isDigit = (c: number): boolean => c >= 48 && c <= 57;

/** dpkg's verrevcmp: alternating non-digit and digit runs. */
function verrevcmp(a: string, b: string): number {
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    while (
      (i < a.length && !isDigit(a.charCodeAt(i))) ||
      (j < b.length && !isDigit(b.charCodeAt(j)))
    ) {
      const ac = i < a.length ? order(a.charCodeAt(i)) : 0;
      const bc = j < b.length ? order(b.charCodeAt(j)) : 0;
      if (ac !== bc) return ac - bc;
      i++;
      j++;
    }
    while (i < a.length && a.charCodeAt(i) === 48) i++;
    while (j < b.length && b.charCodeAt(j) === 48) j++;
    let firstDiff = 0;
    while (i < a.length && isDigit(a.charCodeAt(i)) && j < b.length && isDigit(b.charCodeAt(j))) {
      if (firstDiff === 0) firstDiff = a.charCodeAt(i) - b.charCodeAt(j);
      i++;
      j++;
    }
    if (i < a.length && isDigit(a.charCodeAt(i))) return 1;
    if (j < b.length && isDigit(b.charCodeAt(j))) return -1;
    if (firstDiff !== 0) return firstDiff;
  }
  return 0;
}

/**
 * Total order over version strings: negative, zero or positive. Invalid versions sort before all
 * valid ones and among themselves by plain string order, so sorting is always deterministic.
 */
export function compareVersions(a: string, b: string): number {
  if (a === b) return 0;
  return compareParsed(a, parseVersion(a), b, parseVersion(b));
}

/** compareVersions on versions already parsed (null: invalid), for the resolver's hot loops. */
function compareParsed(
  a: string,
  pa: ParsedVersion | null,
  b: string,
  pb: ParsedVersion | null,
): number {
  if (!pa || !pb) {
    if (pa) return 1;
    if (pb) return -1;
    return a < b ? -1 : a > b ? 1 : 0;
  }
  if (pa.epoch !== pb.epoch) return pa.epoch < pb.epoch ? -1 : 1;
  const u = verrevcmp(pa.upstream, pb.upstream);
  if (u !== 0) return Math.sign(u);
  return Math.sign(verrevcmp(pa.revision, pb.revision));
}

// ---------------------------------------------------------------------------------------------
// Selectors

export type Comparator = '>=' | '<=' | '>' | '<' | '=' | '!=';

export interface Constraint {
  op: Comparator;
  version: string;
  /**
   * parseVersion(version), kept so matching parses each candidate version only once. null only for
   * `=`/`!=` on a version that is not Debian-style (`=rpi-6.6.y-1`): compared as text, as luet does.
   */
  parsed: ParsedVersion | null;
}

/** A conjunction of constraints. `any` is true for "" and `>=0`-style selectors that admit everything. */
export interface Selector {
  raw: string;
  any: boolean;
  constraints: Constraint[];
}

const OPS: Array<[string, Comparator]> = [
  ['>=', '>='],
  ['<=', '<='],
  ['!=', '!='],
  ['==', '='],
  ['>', '>'],
  ['<', '<'],
  ['=', '='],
  ['!', '!='],
];

export const ANY: Selector = Object.freeze({ raw: '', any: true, constraints: [] }) as Selector;

function badSelector(raw: string, why: string): CpmError {
  return new CpmError('E_VERSION', `version "${raw}" is not a valid selector: ${why}`);
}

function numericParts(raw: string, v: string): { epoch: string; nums: number[] } {
  const p = parseVersion(v);
  if (!p) throw badSelector(raw, `"${v}" is not a valid version`);
  const nums: number[] = [];
  for (const part of p.upstream.split('.')) {
    const m = /^[0-9]+/.exec(part);
    if (!m) break;
    nums.push(Number(m[0]));
    if (m[0].length !== part.length) break;
  }
  if (nums.length === 0) throw badSelector(raw, `"${v}" has no numeric part to bound`);
  return { epoch: p.epoch ? `${p.epoch}:` : '', nums };
}

/** The lowest version of a series: `2~` sorts before `2~rc1` and `2`, so `<2~` excludes 2's pre-releases. */
function upperBound(epoch: string, nums: number[], bumpAt: number): string {
  const kept = nums.slice(0, bumpAt);
  kept.push((nums[bumpAt] ?? 0) + 1);
  return `${epoch}${kept.join('.')}~`;
}

function parseTerm(raw: string, term: string): Constraint[] {
  if (term.startsWith('^')) {
    const v = term.slice(1).trim();
    const { epoch, nums } = numericParts(raw, v);
    let i = nums.findIndex((n) => n !== 0);
    if (i < 0) i = nums.length - 1;
    return [constraint('>=', v), constraint('<', upperBound(epoch, nums, i))];
  }
  if (term.startsWith('~') && !term.startsWith('~>')) {
    const v = term.slice(1).trim();
    const { epoch, nums } = numericParts(raw, v);
    return [constraint('>=', v), constraint('<', upperBound(epoch, nums, nums.length > 1 ? 1 : 0))];
  }
  let op: Comparator = '=';
  let v = term;
  for (const [prefix, o] of OPS) {
    if (term.startsWith(prefix)) {
      op = o;
      v = term.slice(prefix.length).trim();
      break;
    }
  }
  if (v === '') throw badSelector(raw, `operator "${op}" has no version`);
  const parsed = parseVersion(v);
  if (!parsed && ((op !== '=' && op !== '!=') || !/^[A-Za-z0-9][A-Za-z0-9.+~:_-]*$/.test(v)))
    throw badSelector(raw, `"${v}" is not a valid version`);
  return [{ op, version: v, parsed }];
}

function constraint(op: Comparator, version: string): Constraint {
  // Bounds built from a valid version are valid themselves.
  return { op, version, parsed: parseVersion(version)! };
}

const selectorCache = new Map<string, Selector>();

/**
 * Parses a selector. Bare versions are exact; "" and `>=0` mean any version. Throws CpmError
 * E_VERSION with the reason; callers add file:line.
 */
export function parseSelector(input: string | number | undefined | null): Selector {
  const raw = input === undefined || input === null ? '' : String(input).trim();
  const hit = selectorCache.get(raw);
  if (hit) return hit;
  let sel: Selector;
  if (raw === '' || raw === '*') {
    sel = { raw, any: true, constraints: [] };
  } else {
    const terms = raw.split(',').map((t) => t.trim());
    if (terms.some((t) => t === '')) throw badSelector(raw, 'empty term between commas');
    const constraints = terms.flatMap((t) => parseTerm(raw, t));
    const any = constraints.every((c) => c.op === '>=' && compareVersions(c.version, '0') <= 0);
    sel = { raw, any, constraints };
  }
  if (selectorCache.size > 100_000) selectorCache.clear();
  selectorCache.set(raw, sel);
  return sel;
}

/** Whether `version` satisfies every constraint. An empty version matches every selector (as luet). */
export function satisfies(version: string, sel: Selector): boolean {
  if (sel.any || version === '') return true;
  return satisfiesParsed(version, parseVersion(version), sel);
}

/** satisfies() for a version already parsed (`pv` = parseVersion(version)). */
export function satisfiesParsed(version: string, pv: ParsedVersion | null, sel: Selector): boolean {
  if (sel.any || version === '') return true;
  const cs = sel.constraints;
  for (let i = 0; i < cs.length; i++) {
    const c = cs[i]!;
    if (!pv || !c.parsed) {
      // Not a Debian-style version on one side: only equality means anything (luet's versioner).
      if (c.op === '=' ? version !== c.version : c.op === '!=' ? version === c.version : true)
        return false;
      continue;
    }
    const cmp = version === c.version ? 0 : compareParsed(version, pv, c.version, c.parsed);
    switch (c.op) {
      case '>=':
        if (cmp < 0) return false;
        break;
      case '<=':
        if (cmp > 0) return false;
        break;
      case '>':
        if (cmp <= 0) return false;
        break;
      case '<':
        if (cmp >= 0) return false;
        break;
      case '=':
        if (cmp !== 0) return false;
        break;
      case '!=':
        if (cmp === 0) return false;
        break;
    }
  }
  return true;
}

/** A selector as people read it: "any version", "=1.2.0", ">=1.2, <2~". */
export function describeSelector(sel: Selector): string {
  if (sel.any) return 'any version';
  return sel.constraints.map((c) => `${c.op}${c.version}`).join(', ');
}
