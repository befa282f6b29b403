/**
 * Value semantics of Go templates over YAML data: a missing value (Go's invalid reflect.Value),
 * truthiness, printing (`<no value>`, `[a b]`, `map[k:v]`) and comparison.
 */

/** A missing map key or field: prints as `<no value>`, is false, becomes nil when passed to functions. */
export const MISSING: unique symbol = Symbol('missing');
export type Missing = typeof MISSING;

export type Value = unknown;

/** A Go value with a String() method (time.Time, *semver.Version): how it prints. */
export const GO_STRING: unique symbol = Symbol('goString');

function stringer(v: object): (() => string) | undefined {
  const f = (v as { [GO_STRING]?: () => string })[GO_STRING];
  return typeof f === 'function' ? f : undefined;
}

export function isMissing(v: Value): v is Missing {
  return v === MISSING;
}

/** Go's `truth`: zero values (and missing) are false. */
export function truthy(v: Value): boolean {
  if (v === MISSING || v === null || v === undefined) return false;
  if (typeof v === 'boolean') return v;
  if (typeof v === 'number') return v !== 0;
  if (typeof v === 'string') return v.length > 0;
  if (Array.isArray(v)) return v.length > 0;
  if (typeof v === 'object') return stringer(v) !== undefined || Object.keys(v).length > 0;
  return true;
}

export function isMap(v: Value): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function formatNumber(n: number): string {
  if (Number.isInteger(n)) return String(n);
  // Go's %v of a float64 uses the shortest representation, with e+XX for big exponents.
  const s = String(n);
  return s.replace(/e([+-])(\d)$/, 'e$10$2');
}

/** fmt.Sprint of a value as Go prints template output. */
export function printValue(v: Value, nested = false): string {
  if (v === MISSING) return '<no value>';
  if (v === null || v === undefined) return nested ? '<nil>' : '<no value>';
  if (typeof v === 'string') return v;
  if (typeof v === 'number') return formatNumber(v);
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  if (Array.isArray(v)) return `[${v.map((x) => printValue(x, true)).join(' ')}]`;
  if (typeof v === 'object') {
    const s = stringer(v);
    if (s) return s();
    const keys = Object.keys(v).sort();
    const rec = v as Record<string, unknown>;
    return `map[${keys.map((k) => `${k}:${printValue(rec[k], true)}`).join(' ')}]`;
  }
  return String(v);
}

type BasicKind = 'bool' | 'number' | 'string' | 'nil' | 'other';

function kindOf(v: Value): BasicKind {
  if (v === MISSING || v === null || v === undefined) return 'nil';
  if (typeof v === 'boolean') return 'bool';
  if (typeof v === 'number') return 'number';
  if (typeof v === 'string') return 'string';
  return 'other';
}

/**
 * Go's `eq` for one pair: basic kinds compare by value, missing/nil only equals missing/nil, and
 * comparing two present values of different kinds is an error (as in Go).
 */
export function goEqual(a: Value, b: Value): boolean {
  const ka = kindOf(a);
  const kb = kindOf(b);
  if (ka === 'nil' || kb === 'nil') return ka === kb;
  if (ka !== kb) throw new Error(`incompatible types for comparison: ${ka} and ${kb}`);
  if (ka === 'other') {
    throw new Error('non-comparable types: lists and maps cannot be compared with eq');
  }
  return a === b;
}

/** Go's `lt`: only basic kinds of the same kind are ordered. */
export function goLess(a: Value, b: Value): boolean {
  const ka = kindOf(a);
  const kb = kindOf(b);
  if (ka !== kb || (ka !== 'number' && ka !== 'string')) {
    throw new Error(`incompatible types for comparison: ${ka} and ${kb}`);
  }
  return (a as number | string) < (b as number | string);
}

/** Value as a Go function sees an interface{} argument: missing becomes nil. */
export function toNil(v: Value): Value {
  return v === MISSING ? null : v;
}

/** Sprig's `empty`. */
export function isEmpty(v: Value): boolean {
  return !truthy(v);
}
