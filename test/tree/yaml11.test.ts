/**
 * yaml11.ts resolves plain scalars exactly as the `yaml` package does under YAML 1.1 (the schema
 * the tree reader parses with), compared against the package's own schema tags and its parser.
 */
import fc from 'fast-check';
import { isScalar, parseDocument } from 'yaml';
import { describe, expect, it } from 'vitest';
import { resolvePlain11 } from '../../src/tree/yaml11.js';

interface Tag {
  default?: boolean | 'key';
  test?: RegExp;
  resolve: (v: string, onError: (m: string) => void, o: unknown) => unknown;
}

/** The package's answer, by its YAML 1.1 schema's tags in its order (what its composer does). */
const doc11 = parseDocument('', { version: '1.1', uniqueKeys: false });
function reference(text: string, atKey: boolean): unknown {
  for (const tag of doc11.schema.tags as unknown as Tag[]) {
    if ((tag.default === true || (atKey && tag.default === 'key')) && tag.test?.test(text)) {
      const v = tag.resolve(
        text,
        (m) => {
          throw new Error(m);
        },
        doc11.options,
      );
      return isScalar(v) ? v.value : v;
    }
  }
  return text;
}

/** The package's parser on `k: text` (and `text: 1` for a key); undefined when it refuses. */
function parsed(text: string, atKey: boolean): unknown {
  const d = parseDocument(atKey ? `${text}: 1\n` : `k: ${text}\n`, { version: '1.1' });
  if (d.errors.length > 0) return undefined;
  const pair = (d.contents as { items?: Array<{ key: unknown; value: unknown }> }).items?.[0];
  const node = atKey ? pair?.key : pair?.value;
  return isScalar(node) ? node.value : undefined;
}

/** Same value: numbers by Object.is (NaN, -0), dates by instant, symbols by description. */
function same(a: unknown, b: unknown): boolean {
  if (typeof a === 'number' && typeof b === 'number') return Object.is(a, b);
  if (a instanceof Date && b instanceof Date) return Object.is(a.getTime(), b.getTime());
  if (typeof a === 'symbol' && typeof b === 'symbol') return a.description === b.description;
  return a === b;
}

function expectAgrees(text: string): void {
  for (const atKey of [false, true]) {
    const mine = resolvePlain11(text, atKey);
    const ref = reference(text, atKey);
    expect(
      same(mine, ref),
      `${JSON.stringify(text)} atKey=${atKey}: ${String(mine)} vs ${String(ref)}`,
    ).toBe(true);
  }
}

const pick = (s: string): fc.Arbitrary<string> => fc.constantFrom(...s);
const digits = (min: number, max: number): fc.Arbitrary<string> =>
  fc.array(pick('0123456789_'), { minLength: min, maxLength: max }).map((a) => a.join(''));
const sign = fc.constantFrom('', '-', '+');
const caseOf = (w: string): fc.Arbitrary<string> =>
  fc
    .array(fc.boolean(), { minLength: w.length, maxLength: w.length })
    .map((up) => [...w].map((c, i) => (up[i] ? c.toUpperCase() : c)).join(''));
const WORDS = [
  'y',
  'yes',
  'true',
  'on',
  'n',
  'no',
  'false',
  'off',
  'null',
  '~',
  'nan',
  'inf',
  '<<',
];

/** Texts shaped like every YAML 1.1 scalar type, near misses included. */
const shaped = fc.oneof(
  fc.tuple(sign, digits(1, 8)).map(([s, d]) => s + d),
  fc
    .tuple(
      sign,
      fc.constantFrom('0x', '0b', '0o', '0', '0X'),
      fc.array(pick('0123456789abcdefABCDEFg_'), { maxLength: 6 }),
    )
    .map(([s, p, d]) => s + p + d.join('')),
  fc
    .tuple(
      sign,
      digits(0, 4),
      fc.constantFrom('', '.'),
      digits(0, 4),
      fc.constantFrom('', 'e', 'E', 'e-', 'e+'),
      fc.stringMatching(/^[0-9]{0,3}$/),
    )
    .map(([s, a, dot, b, e, x]) => s + a + dot + b + e + x),
  fc
    .tuple(
      sign,
      fc.constantFrom('.inf', '.Inf', '.INF', '.nan', '.NaN', '.NAN', '.iNf', 'inf', '.nan0'),
    )
    .map(([s, w]) => s + w),
  fc
    .tuple(
      sign,
      digits(1, 3),
      fc.array(fc.stringMatching(/^:[0-9]{1,3}$/), { minLength: 1, maxLength: 3 }),
      fc.constantFrom('', '.', '.5', '.0_1'),
    )
    .map(([s, a, parts, f]) => s + a + parts.join('') + f),
  fc
    .tuple(
      fc.stringMatching(/^[0-9]{3,5}$/),
      fc.stringMatching(/^-[0-9]{1,3}-[0-9]{1,3}$/),
      fc.option(
        fc.tuple(
          fc.constantFrom('T', 't', ' ', '\t', '  ', 'x'),
          fc.stringMatching(/^[0-9]{1,2}:[0-9]{1,2}:[0-9]{1,3}(\.[0-9]{1,4})?$/),
          fc.constantFrom(
            '',
            'Z',
            ' Z',
            '+5',
            '-5',
            '+05:30',
            '-03:30',
            ' -10',
            '+29',
            '-31',
            '+1:5',
            '+100',
          ),
        ),
      ),
    )
    .map(([y, md, t]) => y + md + (t ? t.join('') : '')),
  fc.constantFrom(...WORDS).chain(caseOf),
);

/** Any short text of the characters scalars are made of. */
const loose = fc
  .array(pick('0123456789+-._:eExXbBoOaAfFnNyYsStTrRuUlLiI ~<Z'), { minLength: 1, maxLength: 12 })
  .map((a) => a.join(''));

describe('YAML 1.1 plain scalars without the yaml package', () => {
  it('resolves the types YAML 1.1 defines', () => {
    const cases: Array<[string, unknown]> = [
      ['yes', true],
      ['On', true],
      ['Y', true],
      ['off', false],
      ['NO', false],
      ['~', null],
      ['Null', null],
      ['0x1F', 31],
      ['-0x_1f', -31],
      ['0b101', 5],
      ['017', 15],
      ['08', 8],
      ['1_000', 1000],
      ['+12', 12],
      ['-0', -0],
      ['1:30', 90],
      ['-1:00:01.5', -3601.5],
      ['1.10', 1.1],
      ['.5', 0.5],
      ['6.02e+23', 6.02e23],
      ['-.inf', -Infinity],
      ['.NaN', NaN],
      ['e1', NaN], // the package's exponent pattern (the callers keep the text)
      ['0x', '0x'],
      ['1.2.3', '1.2.3'],
      ['yess', 'yess'],
      ['<<', '<<'],
    ];
    for (const [text, want] of cases) {
      expect(same(resolvePlain11(text, false), want), text).toBe(true);
      expectAgrees(text);
    }
    expect(resolvePlain11('2001-12-14t21:59:43.10-05:00', false)).toEqual(
      new Date('2001-12-15T02:59:43.100Z'),
    );
    expect(resolvePlain11('2002-12-14', false)).toEqual(new Date('2002-12-14T00:00:00Z'));
    expect((resolvePlain11('<<', true) as symbol).description).toBe('<<');
  });

  it("agrees with the yaml package's YAML 1.1 tags on generated scalars", () => {
    fc.assert(fc.property(fc.oneof(shaped, loose), expectAgrees), { numRuns: 20_000 });
  });

  it("agrees with the yaml package's parser on generated scalars, as values and as keys", () => {
    fc.assert(
      fc.property(shaped, fc.boolean(), (text, atKey) => {
        const want = parsed(text, atKey);
        if (want === undefined) return; // not a plain scalar on one line (e.g. a tab in it)
        const mine = resolvePlain11(text, atKey);
        expect(same(mine, want), `${JSON.stringify(text)} atKey=${atKey}`).toBe(true);
      }),
      { numRuns: 3_000 },
    );
  });
});
