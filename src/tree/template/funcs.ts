/**
 * Functions available to templates: Go's builtins that are not control flow, and the helm/sprig
 * subset luet trees use. Each takes evaluated arguments (missing already turned into nil, as Go
 * does for interface{} parameters) and throws a plain Error whose message the engine locates.
 */
import { yamlLib } from '../../util/yaml-lib.js';
import { DATE_FUNCS } from './dates.js';
import {
  goEqual,
  goLess,
  isEmpty,
  isMap,
  MISSING,
  printValue,
  truthy,
  type Value,
} from './values.js';

export type Fn = (args: Value[]) => Value;

function str(v: Value): string {
  if (v === null || v === undefined || v === MISSING) return '';
  return typeof v === 'string' ? v : printValue(v);
}

function arity(name: string, args: Value[], min: number, max = min): void {
  if (args.length < min || args.length > max) {
    const want = min === max ? `${min}` : `${min}-${max}`;
    throw new Error(`wrong number of args for ${name}: want ${want} got ${args.length}`);
  }
}

function toInt(v: Value): number {
  if (typeof v === 'number') return Math.trunc(v);
  if (typeof v === 'string') {
    const n = Number.parseInt(v, 10);
    return Number.isNaN(n) ? 0 : n;
  }
  if (typeof v === 'boolean') return v ? 1 : 0;
  return 0;
}

function list(v: Value, fn: string): unknown[] {
  if (v === null || v === undefined) return [];
  if (Array.isArray(v)) return v;
  throw new Error(`${fn}: expected a list, got ${printValue(v)}`);
}

/** Go's fmt verbs, the common subset: %s %v %d %q %f %t %x %%, with width/precision. */
export function sprintf(format: string, args: Value[]): string {
  let ai = 0;
  return format.replace(
    /%([-+ 0#]*)(\d+)?(?:\.(\d+))?([a-zA-Z%])/g,
    (_m, flags: string, width: string | undefined, prec: string | undefined, verb: string) => {
      if (verb === '%') return '%';
      if (ai >= args.length) return `%!${verb}(MISSING)`;
      const a = args[ai++];
      let out: string;
      switch (verb) {
        case 's':
        case 'v':
          out =
            a === null || a === undefined
              ? verb === 'v'
                ? '<nil>'
                : '%!s(<nil>)'
              : printValue(a, true);
          if (prec !== undefined && verb === 's') out = out.slice(0, Number(prec));
          break;
        case 'd':
          out = typeof a === 'number' ? String(Math.trunc(a)) : `%!d(${typeof a}=${printValue(a)})`;
          break;
        case 'f':
          out =
            typeof a === 'number'
              ? a.toFixed(prec === undefined ? 6 : Number(prec))
              : `%!f(${printValue(a)})`;
          break;
        case 'q':
          out = JSON.stringify(str(a));
          break;
        case 't':
          out = typeof a === 'boolean' ? String(a) : `%!t(${printValue(a)})`;
          break;
        case 'x':
          out =
            typeof a === 'number'
              ? Math.trunc(a).toString(16)
              : Buffer.from(str(a)).toString('hex');
          break;
        default:
          throw new Error(`printf verb %${verb} is not supported by cpm`);
      }
      if (width !== undefined && out.length < Number(width)) {
        const pad = (flags.includes('0') && !flags.includes('-') ? '0' : ' ').repeat(
          Number(width) - out.length,
        );
        out = flags.includes('-') ? out + pad.replace(/0/g, ' ') : pad + out;
      }
      return out;
    },
  );
}

function toYaml(v: Value): string {
  if (v === null || v === undefined) return 'null';
  return yamlLib().stringify(v, { lineWidth: 0 }).replace(/\n$/, '');
}

function indent(n: number, s: string): string {
  const pad = ' '.repeat(Math.max(0, n));
  return pad + s.replace(/\n/g, '\n' + pad);
}

export const FUNCS: Record<string, Fn> = {
  ...DATE_FUNCS,
  // Go builtins (and/or/not/eq/ne/index/len/print... live here too; and/or short-circuit in exec).
  not: (a) => (arity('not', a, 1), !truthy(a[0])),
  eq: (a) => {
    if (a.length < 2) throw new Error('missing argument for comparison');
    return a.slice(1).some((b) => goEqual(a[0], b));
  },
  ne: (a) => (arity('ne', a, 2), !goEqual(a[0], a[1])),
  lt: (a) => (arity('lt', a, 2), goLess(a[0], a[1])),
  le: (a) => (arity('le', a, 2), goLess(a[0], a[1]) || goEqual(a[0], a[1])),
  gt: (a) => (arity('gt', a, 2), goLess(a[1], a[0])),
  ge: (a) => (arity('ge', a, 2), goLess(a[1], a[0]) || goEqual(a[0], a[1])),
  len: (a) => {
    arity('len', a, 1);
    const v = a[0];
    if (typeof v === 'string' || Array.isArray(v)) return v.length;
    if (isMap(v)) return Object.keys(v).length;
    throw new Error(`len of ${printValue(v)}`);
  },
  index: (a) => {
    if (a.length < 1) throw new Error('wrong number of args for index: want at least 1 got 0');
    let v = a[0];
    for (const k of a.slice(1)) {
      if (Array.isArray(v)) {
        const i = toInt(k);
        if (typeof k !== 'number' || i < 0 || i >= v.length)
          throw new Error(`index out of range: ${printValue(k)}`);
        v = v[i];
      } else if (isMap(v)) {
        // A missing key yields the zero value (nil), which prints "<no value>".
        v = Object.prototype.hasOwnProperty.call(v, String(k)) ? v[String(k)] : MISSING;
      } else if (v === null || v === undefined || v === MISSING) {
        throw new Error('index of untyped nil');
      } else {
        throw new Error(`can't index item of type ${typeof v}`);
      }
    }
    return v;
  },
  print: (a) =>
    a
      .map((v, i) => {
        const s = printValue(v, true);
        // fmt.Sprint puts spaces between operands when neither side is a string.
        const sep = i > 0 && typeof v !== 'string' && typeof a[i - 1] !== 'string' ? ' ' : '';
        return sep + s;
      })
      .join(''),
  println: (a) => a.map((v) => printValue(v, true)).join(' ') + '\n',
  printf: (a) => {
    if (typeof a[0] !== 'string') throw new Error('printf needs a format string');
    return sprintf(a[0], a.slice(1));
  },

  // sprig: dictionaries and lists
  dict: (a) => {
    const out: Record<string, unknown> = {};
    for (let i = 0; i < a.length; i += 2) {
      Object.defineProperty(out, str(a[i]), {
        value: i + 1 < a.length ? a[i + 1] : '',
        enumerable: true,
        writable: true,
        configurable: true,
      });
    }
    return out;
  },
  get: (a) => {
    arity('get', a, 2);
    const d = a[0];
    if (!isMap(d)) throw new Error(`get: first argument must be a dict, got ${printValue(d)}`);
    const k = str(a[1]);
    return Object.prototype.hasOwnProperty.call(d, k) ? d[k] : '';
  },
  set: (a) => {
    arity('set', a, 3);
    const d = a[0];
    if (!isMap(d)) throw new Error('set: first argument must be a dict');
    d[str(a[1])] = a[2];
    return d;
  },
  unset: (a) => {
    arity('unset', a, 2);
    const d = a[0];
    if (!isMap(d)) throw new Error('unset: first argument must be a dict');
    delete d[str(a[1])];
    return d;
  },
  hasKey: (a) => {
    arity('hasKey', a, 2);
    return isMap(a[0]) && Object.prototype.hasOwnProperty.call(a[0], str(a[1]));
  },
  keys: (a) => a.flatMap((d) => (isMap(d) ? Object.keys(d) : [])).sort(),
  list: (a) => [...a],
  append: (a) => (arity('append', a, 2), [...list(a[0], 'append'), a[1]]),
  has: (a) => {
    arity('has', a, 2);
    const hay = a[1];
    if (hay === null || hay === undefined) return false;
    return list(hay, 'has').some((x) => {
      try {
        return goEqual(x, a[0]);
      } catch {
        return false;
      }
    });
  },
  first: (a) => (arity('first', a, 1), list(a[0], 'first')[0] ?? null),
  last: (a) => (arity('last', a, 1), list(a[0], 'last').at(-1) ?? null),
  uniq: (a) => (arity('uniq', a, 1), [...new Set(list(a[0], 'uniq'))]),
  sortAlpha: (a) => (
    arity('sortAlpha', a, 1),
    list(a[0], 'sortAlpha')
      .map((x) => str(x))
      .sort()
  ),

  // sprig: defaults and logic
  default: (a) => {
    arity('default', a, 1, 2);
    return a.length < 2 || isEmpty(a[1]) ? a[0] : a[1];
  },
  empty: (a) => (arity('empty', a, 1), isEmpty(a[0])),
  coalesce: (a) => a.find((v) => !isEmpty(v)) ?? null,
  ternary: (a) => (arity('ternary', a, 3), truthy(a[2]) ? a[0] : a[1]),
  required: (a) => {
    arity('required', a, 2);
    if (a[1] === null || a[1] === undefined || a[1] === '') throw new Error(str(a[0]));
    return a[1];
  },
  fail: (a) => {
    throw new Error(str(a[0]));
  },

  // sprig: strings
  quote: (a) =>
    a
      .filter((v) => v !== null && v !== undefined)
      .map((v) => JSON.stringify(str(v)))
      .join(' '),
  squote: (a) =>
    a
      .filter((v) => v !== null && v !== undefined)
      .map((v) => `'${str(v)}'`)
      .join(' '),
  upper: (a) => (arity('upper', a, 1), str(a[0]).toUpperCase()),
  lower: (a) => (arity('lower', a, 1), str(a[0]).toLowerCase()),
  title: (a) => (arity('title', a, 1), str(a[0]).replace(/\b\w/g, (c) => c.toUpperCase())),
  trim: (a) => (arity('trim', a, 1), str(a[0]).trim()),
  trimAll: (a) => {
    arity('trimAll', a, 2);
    const cut = str(a[0]);
    let s = str(a[1]);
    while (s && cut.includes(s[0]!)) s = s.slice(1);
    while (s && cut.includes(s[s.length - 1]!)) s = s.slice(0, -1);
    return s;
  },
  trimPrefix: (a) => {
    arity('trimPrefix', a, 2);
    const p = str(a[0]);
    const s = str(a[1]);
    return s.startsWith(p) ? s.slice(p.length) : s;
  },
  trimSuffix: (a) => {
    arity('trimSuffix', a, 2);
    const p = str(a[0]);
    const s = str(a[1]);
    return p && s.endsWith(p) ? s.slice(0, -p.length) : s;
  },
  replace: (a) => (arity('replace', a, 3), str(a[2]).split(str(a[0])).join(str(a[1]))),
  contains: (a) => (arity('contains', a, 2), str(a[1]).includes(str(a[0]))),
  hasPrefix: (a) => (arity('hasPrefix', a, 2), str(a[1]).startsWith(str(a[0]))),
  hasSuffix: (a) => (arity('hasSuffix', a, 2), str(a[1]).endsWith(str(a[0]))),
  repeat: (a) => (
    arity('repeat', a, 2),
    str(a[1]).repeat(Math.max(0, Math.min(toInt(a[0]), 1 << 20)))
  ),
  cat: (a) =>
    a
      .filter((v) => v !== null && v !== undefined)
      .map((v) => str(v))
      .join(' '),
  join: (a) => {
    arity('join', a, 2);
    const v = a[1];
    if (typeof v === 'string') return v;
    return list(v, 'join')
      .map((x) => str(x))
      .join(str(a[0]));
  },
  splitList: (a) => (arity('splitList', a, 2), str(a[1]).split(str(a[0]))),
  split: (a) => {
    arity('split', a, 2);
    const out: Record<string, string> = {};
    str(a[1])
      .split(str(a[0]))
      .forEach((p, i) => (out[`_${i}`] = p));
    return out;
  },
  indent: (a) => (arity('indent', a, 2), indent(toInt(a[0]), str(a[1]))),
  nindent: (a) => (arity('nindent', a, 2), '\n' + indent(toInt(a[0]), str(a[1]))),
  toString: (a: Value[]) => (arity('toString', a, 1), str(a[0])),
  toYaml: (a) => (arity('toYaml', a, 1), toYaml(a[0])),
  toJson: (a) => (arity('toJson', a, 1), JSON.stringify(a[0] ?? null)),
  b64enc: (a) => (arity('b64enc', a, 1), Buffer.from(str(a[0])).toString('base64')),
  b64dec: (a) => (arity('b64dec', a, 1), Buffer.from(str(a[0]), 'base64').toString('utf8')),
  regexMatch: (a) => (arity('regexMatch', a, 2), new RegExp(str(a[0])).test(str(a[1]))),
  regexReplaceAll: (a) => (
    arity('regexReplaceAll', a, 3),
    str(a[1]).replace(new RegExp(str(a[0]), 'g'), str(a[2]).replace(/\$\{?(\d+)\}?/g, '$$$1'))
  ),

  // sprig: numbers
  int: (a) => (arity('int', a, 1), toInt(a[0])),
  atoi: (a) => (arity('atoi', a, 1), toInt(a[0])),
  add: (a) => a.reduce<number>((s, v) => s + toInt(v), 0),
  add1: (a) => (arity('add1', a, 1), toInt(a[0]) + 1),
  sub: (a) => (arity('sub', a, 2), toInt(a[0]) - toInt(a[1])),
  mul: (a) => a.reduce<number>((s, v) => s * toInt(v), 1),
  div: (a) => {
    arity('div', a, 2);
    if (toInt(a[1]) === 0) throw new Error('integer divide by zero');
    return Math.trunc(toInt(a[0]) / toInt(a[1]));
  },
  mod: (a) => {
    arity('mod', a, 2);
    if (toInt(a[1]) === 0) throw new Error('integer divide by zero');
    return toInt(a[0]) % toInt(a[1]);
  },
};

/** Names the engine handles itself (control flow or need the engine). */
export const SPECIAL_FUNCS = new Set(['and', 'or', 'include']);

export function isKnownFunction(name: string): boolean {
  return Object.hasOwn(FUNCS, name) || SPECIAL_FUNCS.has(name);
}
