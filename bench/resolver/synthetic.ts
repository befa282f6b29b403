/**
 * Seeded synthetic universes with a distribution's shape. `synthetic(n)`: n packages in families of 5
 * versions. Family i depends on ~2–3 lower-numbered families, drawn with a strong skew towards 0, so
 * low numbers act as the core libraries everything needs and a request for a high-numbered ("leaf")
 * family pulls a closure of hundreds to a few thousand packages, as in Debian; 2% back edges make
 * cycles. Newer versions raise their minimum versions and carry conflict chains against nearby
 * families' newer versions, which force coordinated downgrades: the shape that defeats "try newest,
 * backtrack chronologically". The oldest versions never conflict and accept any version of their
 * dependencies, so every request is satisfiable.
 */
import type { PackageSpec } from '../../src/package/package.js';
import { dep, makeSpec } from '../../test/support/specs.js';

export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function synthetic(n: number, seed = 1): { specs: PackageSpec[]; targets: string[] } {
  const r = rng(seed);
  const V = 5;
  const F = Math.max(2, Math.floor(n / V));
  const fam = (i: number): string => `syn/f${i}`;
  const specs: PackageSpec[] = [];
  for (let i = 0; i < F; i++) {
    for (let v = 1; v <= V; v++) {
      const requires = [];
      const k = Math.floor(r() * 5); // 0..4, mean 2
      for (let d = 0; d < k + (v > 1 ? 1 : 0); d++) {
        let j = r() < 0.02 ? i + 1 + Math.floor(r() * 50) : Math.floor(i * r() ** 2);
        if (j >= F || j === i) j = i === 0 ? 1 : i - 1;
        const min = v === 1 ? 1 : 1 + Math.floor(r() * v);
        requires.push(dep(fam(j), min > 1 ? `>=${min}` : ''));
      }
      const conflicts = [];
      if (v >= 4 && r() < 0.15 && i > 1) {
        const j = Math.max(0, i - 1 - Math.floor(r() * 20));
        conflicts.push(dep(fam(j), `>=${3 + Math.floor(r() * 3)}`));
      }
      specs.push(makeSpec(`${fam(i)}@${v}`, { requires, conflicts }));
    }
  }
  const targets: string[] = [];
  const top = Math.max(1, Math.floor(F * 0.01));
  for (let t = 0; t < 5; t++) targets.push(fam(F - 1 - Math.floor(r() * top)));
  return { specs, targets: [...new Set(targets)] };
}
