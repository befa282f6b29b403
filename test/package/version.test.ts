import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import {
  compareVersions,
  describeSelector,
  isValidVersion,
  parseSelector,
  sanitizeVersion,
  satisfies,
} from '../../src/package/version.js';

/** Every pair (i < j) of each chain must compare a < b and b > a. */
const CHAINS: string[][] = [
  // the ordering promised in the luet reference (§2.5), extended
  [
    '1.0~~',
    '1.0~',
    '1.0~alpha',
    '1.0~beta',
    '1.0~rc1',
    '1.0~rc2',
    '1.0~rc10',
    '1.0',
    '1.0-1~1',
    '1.0-1',
    '1.0-1+1',
    '1.0-2',
    '1.0-10',
    '1.0-r1',
    '1.0+1',
    '1.0+2',
    '1.0+10',
    '1.0.0',
    '1.0.1',
    '1.0.9',
    '1.0.10',
    '1.1',
    '1.9',
    '1.10',
    '1.99',
    '2~',
    '2~rc1',
    '2',
    '9.0',
    '10.0',
    '100',
  ],
  // letters sort after the end of a version and before punctuation
  ['1.0', '1.0a', '1.0b', '1.0z', '1.0+', '1.0.', '1.0.1'],
  ['1', '1a', '1b', '1.0'],
  // epochs beat everything else
  ['99.9', '1:0.1', '1:1.0', '2:0', '10:0'],
  // revisions only matter when upstream is equal
  ['1.2-9', '1.2-10', '1.2-a', '1.2.0-1'],
  // numeric runs compare as numbers, with no overflow
  ['1.99999999999999999999', '1.100000000000000000000', '2.0'],
  // real cOS-toolkit versions
  [
    '0.0.1-alpha14-16',
    '0.0.3-15',
    '0.1-16',
    '0.1.0-6',
    '0.1.0-7',
    '0.1.1',
    '0.2-16',
    '0.2.0-6',
    '0.2.2-5',
    '0.4.2-8',
    '0.5-17',
    '0.6.1',
    '0.6.5',
    '0.8.6',
    '0.10.2-1',
    '0.20221223',
    '0.20230106',
    '0.20230217',
    '1.18b7-5',
    '1.19.4-1',
    '6.03-5',
    '26-5',
    '2021.01-5.1',
    '2021.03.10-2.1',
    '2021.03.15-2.1',
    '20170419-5.197',
  ],
  // invalid versions sort before all valid ones, among themselves by string order
  ['', 'abc', 'abd', 'x1', '0'],
];

const EQUAL: Array<[string, string]> = [
  ['1.0', '1.0'],
  ['0:1.0', '1.0'],
  ['00:1.0', '1.0'],
  ['1.00', '1.0'],
  ['1.01', '1.1'],
  ['01.1', '1.1'],
  ['1.0-01', '1.0-1'],
  ['v1.0', '1.0'],
  ['V2', '2'],
  ['1_0', '1-0'],
  ['1.0_rc1', '1.0-rc1'],
  ['1.0-a_b', '1.0-a-b'],
  ['1.000000000000000000001', '1.1'],
  [' 1.0 ', '1.0'],
  ['1.0.', '1.0.0'], // dpkg agrees: an empty digit run equals zero
];

const INVALID = [
  '',
  'abc',
  'v',
  'vx1',
  '1.0-',
  '1:',
  'x:1.0',
  '1.0 beta',
  '1.0!',
  '1.0/2',
  '-1',
  '99999999999999999999:1',
  '1.0-1@2',
  ':1.0',
  '1.0-rc_',
  '~1',
];
const VALID = [
  '0',
  '1',
  '1.0',
  '1:2',
  '1.0-1',
  '1.0~rc1',
  '1.0+1',
  '0.0.1-alpha14-16',
  'v1.2.3',
  '1.2.3-r0',
  '20170419-5.197',
  '1.0-1.2~3+4',
  '2:1.0-1',
  '1.18b7-5',
];

function chainPairs(): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const c of CHAINS)
    for (let i = 0; i < c.length; i++)
      for (let j = i + 1; j < c.length; j++) out.push([c[i]!, c[j]!]);
  return out;
}

describe('version ordering (luet/Debian)', () => {
  const pairs = chainPairs();
  it('has a large table', () => {
    expect(pairs.length + EQUAL.length).toBeGreaterThanOrEqual(150);
  });
  it.each(pairs)('%s < %s', (a, b) => {
    expect(compareVersions(a, b)).toBeLessThan(0);
    expect(compareVersions(b, a)).toBeGreaterThan(0);
  });
  it.each(EQUAL)('%s == %s', (a, b) => {
    expect(compareVersions(a, b)).toBe(0);
    expect(compareVersions(b, a)).toBe(0);
  });
  it.each(INVALID)('"%s" is not a valid version', (v) => expect(isValidVersion(v)).toBe(false));
  it.each(VALID)('"%s" is a valid version', (v) => expect(isValidVersion(v)).toBe(true));
  it('sanitises like luet', () => {
    expect(sanitizeVersion('v01.002_rc03')).toBe('1.2-rc3');
    expect(sanitizeVersion('1.0.0')).toBe('1.0.0');
    expect(sanitizeVersion('100.0010')).toBe('100.10');
  });
  it('sorting is deterministic and total', () => {
    const all = [...new Set([...CHAINS.flat(), ...EQUAL.flat()])];
    const cmp = (x: string, y: string): number =>
      compareVersions(x, y) || (x < y ? -1 : x > y ? 1 : 0);
    const a = [...all].sort(cmp);
    const b = [...all].reverse().sort(cmp);
    expect(a).toEqual(b);
    // transitivity over the whole set
    for (let i = 0; i + 1 < a.length; i++)
      expect(compareVersions(a[i]!, a[i + 1]!)).toBeLessThanOrEqual(0);
  });

  it('agrees with dpkg --compare-versions on the sanitised valid pairs', () => {
    const pairs: Array<[string, string, 'lt' | 'eq']> = [];
    for (const c of CHAINS) {
      for (let i = 0; i + 1 < c.length; i++) pairs.push([c[i]!, c[i + 1]!, 'lt']);
    }
    for (const [a, b] of EQUAL) pairs.push([a, b, 'eq']);
    const checked = pairs.filter(([a, b]) => isValidVersion(a) && isValidVersion(b));
    expect(checked.length).toBeGreaterThan(80);
    const disagree: string[] = [];
    for (const [a, b, op] of checked) {
      const r = spawnSync('dpkg', [
        '--compare-versions',
        sanitizeVersion(a),
        op,
        sanitizeVersion(b),
      ]);
      if (r.error) throw new Error(`dpkg is needed for this check (Debian): ${r.error.message}`);
      if (r.status !== 0) disagree.push(`${a} ${op} ${b}`);
    }
    expect(disagree).toEqual([]);
  });
});

describe('selectors', () => {
  it.each([
    // luet operators
    ['>=1.0', '1.0', true],
    ['>=1.0', '0.9', false],
    ['>=1.0', '1.0~rc1', false],
    ['>1.0', '1.0', false],
    ['>1.0', '1.0-1', true],
    ['>1.0', '1.0+1', true],
    ['<=1.0', '1.0', true],
    ['<=1.0', '1.0-1', false],
    ['<1.0', '1.0~rc1', true],
    ['<2', '2~rc1', true],
    ['=1.0', '1.0', true],
    ['=1.0', '1.00', true],
    ['=1.0', '1.0-1', false],
    ['==1.0', '1.0', true],
    ['1.0', '1.0', true],
    ['1.0', '1.0.0', false],
    ['!=1.0', '1.0', false],
    ['!=1.0', '1.1', true],
    ['>1.0~rc1', '1.0~rc2', true],
    ['>1.0~rc1', '1.0', true],
    ['<=1.0+1', '1.0+2', false],
    ['=1.0+1', '1.0-1', false],
    ['>=1:0', '2.0', false],
    ['>=1:0', '1:0.1', true],
    ['>0.6.1', '0.6.5', true],
    ['>0.6.1-1', '0.6.1', false],
    ['>0.3-1', '0.8.6', true],
    ['>0.20220216', '0.20230217', true],
    ['>0.0.10-3', '0.0.11-10', true],
    ['>1.3.1', '1.13.1-4', true],
    ['<1.0.0', '0.33.0-3', true],
    // any
    ['', 'anything', true],
    ['*', '1.0', true],
    ['>=0', '0.0.1', true],
    ['>=0', 'garbage', true],
    ['>=0.1', 'garbage', false],
    ['>=5', '', true], // an empty version matches every selector, as in luet
    // superset: ^, ~ and comma ranges
    ['^1.2', '1.2', true],
    ['^1.2', '1.9.9', true],
    ['^1.2', '1.2~rc1', false],
    ['^1.2', '1.1', false],
    ['^1.2', '2~rc1', false],
    ['^1.2', '2', false],
    ['^0.2', '0.2.5', true],
    ['^0.2', '0.3~rc1', false],
    ['^0.2', '0.3', false],
    ['^0.0.3', '0.0.3-5', true],
    ['^0.0.3', '0.0.4', false],
    ['^0', '0.9', true],
    ['^0', '1.0', false],
    ['~1.2', '1.2.9', true],
    ['~1.2', '1.3~rc1', false],
    ['~1.2', '1.3', false],
    ['~1', '1.9', true],
    ['~1', '2', false],
    ['~1.2.3', '1.2.9', true],
    ['~1.2.3', '1.2.2', false],
    ['>=1.2, <2', '1.5', true],
    ['>=1.2, <2', '2', false],
    ['>=1.2, <2', '2~rc1', true], // an explicit <2 keeps 2's pre-releases; ^1.2 does not
    ['>=1.2, <2', '0.1', false],
    ['>=1.0,!=1.5,<2', '1.5', false],
    ['>=1.0,!=1.5,<2', '1.6', true],
  ] as const)('%s matches %s: %s', (sel, v, want) =>
    expect(satisfies(v, parseSelector(sel))).toBe(want),
  );

  it.each([
    ['1.x!', /version "1\.x!" is not a valid selector: "1\.x!" is not a valid version/],
    ['>=', /operator ">=" has no version/],
    ['>= ', /operator ">=" has no version/],
    ['>=1.0,', /empty term between commas/],
    [',', /empty term between commas/],
    ['>=abc', /"abc" is not a valid version/],
    ['^x', /"x" is not a valid version/],
    ['^', /"" is not a valid version/],
    ['~', /"" is not a valid version/],
    ['~>1.0', /not a valid version/],
  ])('rejects %s with the reason', (sel, re) => {
    expect(() => parseSelector(sel)).toThrow(re);
  });

  it('describes selectors as people read them', () => {
    expect(describeSelector(parseSelector('^1.2'))).toBe('>=1.2, <2~');
    expect(describeSelector(parseSelector('~1.2.3'))).toBe('>=1.2.3, <1.3~');
    expect(describeSelector(parseSelector('>=0'))).toBe('any version');
    expect(describeSelector(parseSelector('1.0'))).toBe('=1.0');
    expect(describeSelector(parseSelector('==1.0'))).toBe('=1.0');
  });
});
