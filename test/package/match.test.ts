/** Ranged provides: a provided range satisfies a requirement when the two ranges intersect. */
import { describe, expect, it } from 'vitest';
import { provideMatches, selectorsIntersect } from '../../src/package/match.js';
import { PackageUniverse } from '../../src/package/universe.js';
import { parseRef } from '../../src/package/ref.js';
import { parseSelector } from '../../src/package/version.js';
import { resolve } from '../../src/resolver/index.js';
import { dep, makeSpec } from '../support/specs.js';

const meet = (a: string, b: string): boolean =>
  selectorsIntersect(parseSelector(a), parseSelector(b));

describe('selectorsIntersect', () => {
  it.each([
    ['>=1.3', '>=1.0', true],
    ['>=1.3', '<1.3', false],
    ['>=1.3', '<=1.3', true],
    ['>1.3', '<=1.3', false],
    ['>=1.0, <2~', '>=2', false],
    ['>=1.0, <2~', '>=1.9.9', true],
    ['=1.5', '>=1.0, <2', true],
    ['=1.5', '!=1.5', false],
    ['>=1.5, <=1.5', '!=1.5', false],
    ['>0.0.2', '>=0.0.1', true], // cOS tree: a provide of `>0.0.2`
    ['<1', '>2', false],
    ['', '>=9', true],
    ['=rpi-6.6.y-1', '=rpi-6.6.y-1', true],
    ['=rpi-6.6.y-1', '=rpi-6.6.y-2', false],
  ])('%s meets %s: %s', (a, b, want) => {
    expect(meet(a, b)).toBe(want);
    expect(meet(b, a)).toBe(want);
  });

  it('provideMatches: exact provides still check the selector; ranges intersect', () => {
    expect(provideMatches(dep('x/e', '>=1.3'), parseSelector('>=1.0'))).toBe(true);
    expect(provideMatches(dep('x/e', '1.0'), parseSelector('>=2'))).toBe(false);
    expect(provideMatches(dep('x/e', '<1.0'), parseSelector('>=2'))).toBe(false);
  });
});

describe('luet solver test "Support provides with selectors" (pkg/solver/solver_test.go)', () => {
  // A@1.3 requires E >=1.0; D@1.9 provides E >=1.3; a real E@1.3 exists too. luet installs A and
  // D@1.9 (the provider), not E, not the other Ds, nor B, C or the other A.
  const world = new PackageUniverse([
    makeSpec('t/E@1.3'),
    makeSpec('t/C@'),
    makeSpec('t/D@1.9', { provides: [dep('t/E', '>=1.3')] }),
    makeSpec('t/D@1.8'),
    makeSpec('t/D@1.4'),
    makeSpec('t/B@1.1', { requires: [dep('t/D', '>=1.0')] }),
    makeSpec('t/A@', { requires: [dep('t/D', '>=1.0')] }),
    makeSpec('t/A@1.3', { requires: [dep('t/E', '>=1.0')] }),
  ]);
  it('chooses the provider whose range intersects the requirement', () => {
    const plan = resolve(world, [], { op: 'install', targets: [parseRef('t/A@1.3')] });
    expect(plan.problems).toEqual([]);
    expect(plan.final).toEqual(['t/A@1.3', 't/D@1.9']);
  });
});
