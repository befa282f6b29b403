import { describe, expect, it } from 'vitest';
import { compareVersions, parseSelector, satisfies } from '../../src/spec/version.js';

describe('version ordering (luet/Debian)', () => {
  const chain = [
    '1.0~rc1',
    '1.0',
    '1.0-1',
    '1.0-r1',
    '1.0+2',
    '1.0+10',
    '1.0.0',
    '1.0.1',
    '1.9',
    '1.10',
    '9.0',
    '10.0',
  ];
  it.each(chain.slice(0, -1).map((v, i) => [v, chain[i + 1]!]))('%s < %s', (a, b) => {
    expect(compareVersions(a, b)).toBeLessThan(0);
    expect(compareVersions(b, a)).toBeGreaterThan(0);
  });
  it.each([
    ['0:1.0', '1.0'],
    ['1.00', '1.0'],
    ['v1.0', '1.0'],
    ['1_0', '1-0'],
  ])('%s == %s', (a, b) => expect(compareVersions(a, b)).toBe(0));
});

describe('selectors', () => {
  it.each([
    ['^1.2', '1.9', true],
    ['^1.2', '2~rc1', false],
    ['~1.2', '1.3', false],
    ['>=1.2, <2', '0.1', false],
    ['>=0', '0.0.1', true],
  ] as const)('%s matches %s: %s', (sel, v, want) =>
    expect(satisfies(v, parseSelector(sel))).toBe(want),
  );
  it('rejects garbage with the reason', () => {
    expect(() => parseSelector('1.x!')).toThrow(/"1.x!" is not a valid selector/);
  });
});
