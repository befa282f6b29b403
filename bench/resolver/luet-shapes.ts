/** The shapes of luet's published solver measurements (luet-reference.md §7). */
import { familyKey, packageId, type PackageSpec } from '../../src/package/package.js';
import { compareVersions } from '../../src/package/version.js';
import { PackageUniverse } from '../../src/package/universe.js';
import type { InstalledSpec } from '../../src/package/package.js';
import { dep, makeSpec } from '../../test/support/specs.js';
import { resolve } from '../../src/resolver/resolve.js';
import { parseRef } from '../../src/package/ref.js';
import { rng } from './synthetic.js';
import { violations } from './verify.js';

/** 20 families × 78 versions, all installed at version 1; version v of f_i requires f_{i+1} >= v. */
export function upgradeShape(): { universe: PackageUniverse; installed: InstalledSpec[] } {
  const specs: PackageSpec[] = [];
  for (let i = 0; i < 20; i++) {
    for (let v = 1; v <= 78; v++) {
      const requires = i < 19 ? [dep(`up/f${i + 1}`, `>=${v}`)] : [];
      const conflicts = i < 18 ? [dep(`up/f${i + 2}`, `<${Math.max(1, v - 1)}`)] : [];
      specs.push(makeSpec(`up/f${i}@${v}`, { requires, conflicts }));
    }
  }
  const universe = new PackageUniverse(specs);
  const installed = Array.from({ length: 20 }, (_, i) => ({
    spec: universe.versions(`up/f${i}`).at(-1)!,
    reason: 'explicit' as const,
  }));
  return { universe, installed };
}

/**
 * 800 families × 20 versions, each version requiring 4 other families; the newest version of f_i
 * conflicts with the newest of f_{i+1}; the request pins every family to its newest version.
 */
export function unsatShape(): { universe: PackageUniverse; targets: string[]; clauses: number } {
  const r = rng(800);
  const F = 800;
  const V = 20;
  const specs: PackageSpec[] = [];
  let clauses = 0;
  for (let i = 0; i < F; i++) {
    for (let v = 1; v <= V; v++) {
      const requires = Array.from({ length: 4 }, () =>
        dep(`x/f${Math.floor(r() * F)}`, `>=${1 + Math.floor(r() * v)}`),
      ).filter((d) => d.name !== `f${i}`);
      const conflicts = v === V ? [dep(`x/f${(i + 1) % F}`, `>=${V}`)] : [];
      clauses += requires.length + conflicts.length;
      specs.push(makeSpec(`x/f${i}@${v}`, { requires, conflicts }));
    }
  }
  const targets = Array.from({ length: F }, (_, i) => `x/f${i}@>=${V}`);
  return { universe: new PackageUniverse(specs), targets, clauses };
}

/**
 * Random worlds: 10 families × 5 versions, random requires/conflicts, install 2 families.
 * A choice is needlessly old when swapping that one package for a newer version of its family
 * still satisfies every constraint.
 */
export function randomWorlds(
  count: number,
  seed = 400,
): { sat: number; unsat: number; needlesslyOld: number; invalid: number } {
  const r = rng(seed);
  let sat = 0;
  let unsat = 0;
  let old = 0;
  let invalid = 0;
  for (let w = 0; w < count; w++) {
    const specs: PackageSpec[] = [];
    for (let i = 0; i < 10; i++) {
      for (let v = 1; v <= 5; v++) {
        const requires = [];
        const conflicts = [];
        const nr = Math.floor(r() * 3);
        for (let k = 0; k < nr; k++) {
          const j = Math.floor(r() * 10);
          if (j !== i)
            requires.push(
              dep(
                `w/f${j}`,
                r() < 0.5 ? `>=${1 + Math.floor(r() * 5)}` : `<${2 + Math.floor(r() * 4)}`,
              ),
            );
        }
        if (r() < 0.2) {
          const j = Math.floor(r() * 10);
          if (j !== i) conflicts.push(dep(`w/f${j}`, `>=${1 + Math.floor(r() * 5)}`));
        }
        specs.push(makeSpec(`w/f${i}@${v}`, { requires, conflicts }));
      }
    }
    const u = new PackageUniverse(specs);
    const a = Math.floor(r() * 10);
    const b = (a + 1 + Math.floor(r() * 9)) % 10;
    const plan = resolve(u, [], {
      op: 'install',
      targets: [parseRef(`w/f${a}`), parseRef(`w/f${b}`)],
    });
    if (!plan.satisfiable) {
      unsat++;
      continue;
    }
    sat++;
    if (violations(plan.finalSpecs).length > 0) invalid++;
    for (const s of plan.finalSpecs) {
      const better = u
        .versions(familyKey(s))
        .filter((o) => compareVersions(o.version, s.version) > 0);
      if (
        better.some((b2) => violations(plan.finalSpecs.map((x) => (x === s ? b2 : x))).length === 0)
      ) {
        old++;
        void packageId;
      }
    }
  }
  return { sat, unsat, needlesslyOld: old, invalid };
}
