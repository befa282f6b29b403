/**
 * Property tests on random small universes: every plan satisfies all constraints, every UNSAT answer
 * is confirmed by exhaustive search, and no chosen version could be swapped alone for a newer one.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { resolve } from '../../src/resolver/index.js';
import { PackageUniverse } from '../../src/package/universe.js';
import type { InstalledSpec } from '../../src/package/package.js';
import { dep, makeSpec } from '../support/specs.js';
import { familyKey, packageId, type Dep, type PackageSpec } from '../../src/package/package.js';
import { compareVersions, satisfies } from '../../src/package/version.js';
import type { Target } from '../../src/resolver/resolve.js';
import { parseRef } from '../../src/package/ref.js';
import { violations } from './check.js';

const FAMS = ['f/a', 'f/b', 'f/c', 'f/d', 'f/e'];
const OPS = ['', '>=', '<', '='];

const depArb = fc
  .record({
    fam: fc.integer({ min: 0, max: FAMS.length - 1 }),
    op: fc.constantFrom(...OPS),
    v: fc.integer({ min: 1, max: 3 }),
  })
  .map(({ fam, op, v }): Dep => dep(FAMS[fam]!, op === '' ? '' : `${op}${v}`));

const pkgArb = fc.record({
  requires: fc.array(depArb, { maxLength: 2 }),
  conflicts: fc.array(depArb, { maxLength: 1 }),
  provides: fc.array(
    fc.record({
      fam: fc.integer({ min: 0, max: FAMS.length - 1 }),
      v: fc.integer({ min: 1, max: 3 }),
    }),
    { maxLength: 1 },
  ),
});

/** Up to 3 versions (1..3) per family, each with random relations. */
const worldArb = fc
  .array(fc.array(fc.option(pkgArb, { freq: 3 }), { minLength: 3, maxLength: 3 }), {
    minLength: FAMS.length,
    maxLength: FAMS.length,
  })
  .map((fams) => {
    const specs: PackageSpec[] = [];
    fams.forEach((versions, fi) =>
      versions.forEach((rel, vi) => {
        if (!rel) return;
        const fam = FAMS[fi]!;
        specs.push(
          makeSpec(`${fam}@${vi + 1}`, {
            requires: rel.requires.filter((d) => familyKey(d) !== fam),
            conflicts: rel.conflicts,
            provides: rel.provides
              .filter((p) => p.fam !== fi)
              .map((p) => dep(FAMS[p.fam]!, String(p.v))),
          }),
        );
      }),
    );
    return specs;
  });

const caseArb = fc.record({
  specs: worldArb,
  targets: fc.uniqueArray(fc.integer({ min: 0, max: FAMS.length - 1 }), {
    minLength: 1,
    maxLength: 2,
  }),
  targetOp: fc.constantFrom('', '>=2', '<3'),
  installedPick: fc.array(fc.integer({ min: 0, max: 20 }), { maxLength: 2 }),
});

/** All subsets with at most one version per family. */
function* assignments(specs: readonly PackageSpec[]): Generator<PackageSpec[]> {
  const fams = [...new Set(specs.map(familyKey))].sort();
  const by = fams.map((f) => specs.filter((s) => familyKey(s) === f));
  const idx = new Array<number>(fams.length).fill(-1);
  for (;;) {
    yield by.flatMap((l, i) => (idx[i]! >= 0 ? [l[idx[i]!]!] : []));
    let i = 0;
    while (i < fams.length) {
      idx[i]!++;
      if (idx[i]! < by[i]!.length) break;
      idx[i] = -1;
      i++;
    }
    if (i === fams.length) return;
  }
}

type Case = typeof caseArb extends fc.Arbitrary<infer T> ? T : never;

function setup(c: Case): {
  universe: PackageUniverse;
  installed: InstalledSpec[];
  targets: Target[];
} {
  const universe = new PackageUniverse(c.specs);
  const installed = new Map<string, InstalledSpec>();
  for (const k of c.installedPick) {
    const s = c.specs[k % Math.max(1, c.specs.length)];
    if (s && !installed.has(familyKey(s)))
      installed.set(familyKey(s), { spec: s, reason: 'explicit' });
  }
  const targets = c.targets.map((i) =>
    parseRef(c.targetOp ? `${FAMS[i]}@${c.targetOp}` : FAMS[i]!),
  );
  return { universe, installed: [...installed.values()], targets };
}

describe('random universes', () => {
  it('install: plans are valid, UNSAT is confirmed exhaustively, no needlessly-old versions', () => {
    let sat = 0;
    let unsat = 0;
    fc.assert(
      fc.property(caseArb, (c) => {
        const { universe, installed, targets } = setup(c);
        const plan = resolve(universe, installed, { op: 'install', targets });
        const keep = installed
          .map((i) => familyKey(i.spec))
          .filter((f) => !targets.some((t) => familyKey(t) === f));
        const ok = (set: PackageSpec[]): boolean =>
          violations(set, { targets, keepFamilies: keep }).length === 0;
        if (!plan.satisfiable) {
          unsat++;
          for (const set of assignments(c.specs)) {
            if (ok(set))
              throw new Error(`resolver said UNSAT but ${set.map(packageId).join(' ')} works`);
          }
          expect(plan.problems.length).toBeGreaterThan(0);
          return;
        }
        sat++;
        expect(violations(plan.finalSpecs, { targets, keepFamilies: keep })).toEqual([]);
        // Installed packages outside the request keep their version unless something forces a change.
        for (const s of plan.finalSpecs) {
          const fam = familyKey(s);
          const newer = universe
            .versions(fam)
            .filter((o) => compareVersions(o.version, s.version) > 0);
          const was = installed.find((i) => familyKey(i.spec) === fam);
          const target = targets.find((t) => familyKey(t) === fam);
          // install never upgrades: an installed version that satisfies the request is the best one.
          const keepsInstalled = was && (!target || satisfies(was.spec.version, target.selector));
          const better = keepsInstalled ? (was.spec === s ? [] : [was.spec]) : newer;
          for (const b of better) {
            const swapped = plan.finalSpecs.map((x) => (x === s ? b : x));
            if (ok(swapped)) {
              throw new Error(`needlessly old: ${packageId(s)} could be ${packageId(b)}`);
            }
          }
        }
      }),
      { numRuns: 400, seed: 7 },
    );
    // The generator must exercise both outcomes.
    expect(sat).toBeGreaterThan(50);
    expect(unsat).toBeGreaterThan(20);
  });

  it('upgrade: valid plans, installed families stay, none needlessly old', () => {
    fc.assert(
      fc.property(caseArb, (c) => {
        const { universe, installed } = setup(c);
        const plan = resolve(universe, installed, { op: 'upgrade' });
        // Every installed family stays, in some version or replaced by a provider (luet).
        const covered = (set: PackageSpec[]): boolean =>
          installed.every((i) => {
            const f = familyKey(i.spec);
            return set.some(
              (s) => familyKey(s) === f || s.provides.some((p) => familyKey(p) === f),
            );
          });
        if (!plan.satisfiable) {
          // Only a broken installed state can make upgrade-all UNSAT: check no valid superset exists.
          for (const set of assignments([...c.specs, ...installed.map((i) => i.spec)])) {
            if (covered(set) && violations(set).length === 0)
              throw new Error('upgrade said UNSAT wrongly');
          }
          return;
        }
        expect(violations(plan.finalSpecs)).toEqual([]);
        expect(covered(plan.finalSpecs)).toBe(true);
        for (const s of plan.finalSpecs) {
          for (const b of universe.versions(familyKey(s))) {
            if (compareVersions(b.version, s.version) <= 0) continue;
            const swapped = plan.finalSpecs.map((x) => (x === s ? b : x));
            if (violations(swapped).length === 0 && covered(swapped)) {
              throw new Error(`needlessly old: ${packageId(s)}`);
            }
          }
        }
      }),
      { numRuns: 300, seed: 11 },
    );
  });

  it('is deterministic under input permutation', () => {
    fc.assert(
      fc.property(caseArb, (c) => {
        const { installed, targets } = setup(c);
        const a = resolve(new PackageUniverse(c.specs), installed, { op: 'install', targets });
        const b = resolve(new PackageUniverse([...c.specs].reverse()), [...installed].reverse(), {
          op: 'install',
          targets: [...targets].reverse(),
        });
        expect(b.final).toEqual(a.final);
        expect(b.install).toEqual(a.install);
        expect(b.problems).toEqual(a.problems);
      }),
      { numRuns: 200, seed: 3 },
    );
  });
});
