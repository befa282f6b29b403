/**
 * What a plain scalar becomes under the YAML 1.1 schema the tree reader parses with (the `yaml`
 * package at `version: '1.1'`, luet's YAML), without loading that package: a short tree command
 * reads every file with the fast reader and would otherwise load `yaml` only for its scalar tags.
 * The results are the package's own, value for value (test/tree/yaml11.test.ts compares them
 * over generated scalars): its patterns, tried in its order, and its arithmetic (parseInt /
 * parseFloat of the text without `_`, a `-` applied as `-1 *`, so `-0` stays -0, sexagesimal by
 * 60, timestamps in UTC with a `±hh[:mm]` zone).
 */

/** `Y y Yes yes YES True true TRUE On on ON` are true, the same forms of N, No, False, Off false. */
const TRUE_WORDS = new Set('Y y Yes yes YES True true TRUE On on ON'.split(' '));
const FALSE_WORDS = new Set('N n No no NO False false FALSE Off off OFF'.split(' '));

const INT_BIN = /^[-+]?0b[01_]+$/;
const INT_OCT = /^[-+]?0[0-7_]+$/;
const INT_DEC = /^[-+]?[0-9][0-9_]*$/;
const INT_HEX = /^[-+]?0x[0-9a-fA-F_]+$/;
const INF_NAN = /^(?:[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$/;
const FLOAT_EXP = /^[-+]?(?:[0-9][0-9_]*)?(?:\.[0-9_]*)?[eE][-+]?[0-9]+$/;
const FLOAT = /^[-+]?(?:[0-9][0-9_]*)?\.[0-9_]*$/;
/** Base 60: `1:30` (90), `-1:00:01.5`. */
const INT_60 = /^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+$/;
const FLOAT_60 = /^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*$/;
/** yyyy-m-d, then maybe a time (after t, T or blanks) and a zone (Z, ±h, ±hh:mm). */
const TIMESTAMP =
  /^([0-9]{4})-([0-9]{1,2})-([0-9]{1,2})(?:(?:[tT]|[ \t]+)([0-9]{1,2}):([0-9]{1,2}):([0-9]{1,2}(\.[0-9]+)?)(?:[ \t]*(Z|[-+][012]?[0-9](?::[0-9]{2})?))?)?$/;

/** The merge key's value, as the package gives it (a symbol described `<<`). */
const MERGE = '<<';

/**
 * What plain scalar `t` resolves to (null, a boolean, a number, a Date, the merge symbol when
 * `atKey`, or the text itself).
 */
export function resolvePlain11(t: string, atKey: boolean): unknown {
  const c = t.charCodeAt(0);
  // Digits, signs, dots and e (`e5` is a float, NaN): the numbers and timestamps.
  if ((c >= 48 && c <= 57) || c === 43 || c === 45 || c === 46 || c === 101 || c === 69)
    return numeric(t);
  if (t === '' || t === '~' || t === 'null' || t === 'Null' || t === 'NULL') return null;
  if (TRUE_WORDS.has(t)) return true;
  if (FALSE_WORDS.has(t)) return false;
  if (atKey && t === MERGE) return Symbol(MERGE);
  return t;
}

function numeric(t: string): unknown {
  // An octal pattern also matches decimals (`017`): octal comes first, as in the package.
  if (INT_BIN.test(t)) return integer(t, 2, 2);
  if (INT_OCT.test(t)) return integer(t, 1, 8);
  if (INT_DEC.test(t)) return integer(t, 0, 10);
  if (INT_HEX.test(t)) return integer(t, 2, 16);
  if (INF_NAN.test(t)) {
    if (/nan$/i.test(t)) return NaN;
    return t.charCodeAt(0) === 45 ? -Infinity : Infinity;
  }
  if (FLOAT_EXP.test(t) || FLOAT.test(t)) return parseFloat(t.replace(/_/g, ''));
  if (INT_60.test(t) || FLOAT_60.test(t)) return base60(t);
  const m = TIMESTAMP.exec(t);
  return m ? timestamp(m) : t;
}

/** `t` after its sign and `prefix` characters, without `_`, in `radix`; NaN when nothing is left. */
function integer(t: string, prefix: number, radix: number): number {
  const signed = t.charCodeAt(0) === 45 || t.charCodeAt(0) === 43;
  const n = parseInt(t.slice(prefix + (signed ? 1 : 0)).replace(/_/g, ''), radix);
  return t.charCodeAt(0) === 45 ? -1 * n : n;
}

/** Fields by `:`, each worth 60 of the next. */
function base60(t: string): number {
  const signed = t.charCodeAt(0) === 45 || t.charCodeAt(0) === 43;
  let n = 0;
  for (const f of (signed ? t.slice(1) : t).replace(/_/g, '').split(':')) n = n * 60 + Number(f);
  return t.charCodeAt(0) === 45 ? -1 * n : n;
}

function timestamp(m: RegExpExecArray): Date {
  const f = (i: number): number => Number(m[i]);
  // Milliseconds: the first three digits of the fraction, zero-padded.
  const ms = m[7] ? Number(`${m[7]}00`.slice(1, 4)) : 0;
  let at = Date.UTC(f(1), f(2) - 1, f(3), f(4) || 0, f(5) || 0, f(6) || 0, ms);
  const zone = m[8];
  if (zone && zone !== 'Z') {
    // ±h or ±hh:mm; a magnitude under 30 is hours, anything else minutes
    let minutes = base60(zone);
    if (Math.abs(minutes) < 30) minutes *= 60;
    at -= 60_000 * minutes;
  }
  return new Date(at);
}
