/** An independent checker of resolver answers, for scenario and property tests. */
import { familyKey, packageId, type PackageSpec } from '../../src/package/package.js';
import { satisfiesDep } from '../../src/package/match.js';
import type { Target } from '../../src/resolver/resolve.js';

/** Every violated constraint of `final`, as text (empty = valid). */
export function violations(
  final: readonly PackageSpec[],
  opts: { targets?: readonly Target[]; keepFamilies?: readonly string[] } = {},
): string[] {
  const out: string[] = [];
  const fams = new Map<string, PackageSpec>();
  for (const p of final) {
    const f = familyKey(p);
    if (fams.has(f)) out.push(`two versions of ${f}`);
    fams.set(f, p);
  }
  for (const p of final) {
    for (const d of p.requires) {
      if (!final.some((q) => q !== p && satisfiesDep(q, d))) {
        out.push(`${packageId(p)} requires ${familyKey(d)} ${d.version}`);
      }
    }
    for (const d of p.conflicts) {
      for (const q of final) {
        if (q !== p && familyKey(q) !== familyKey(p) && satisfiesDep(q, d)) {
          out.push(`${packageId(p)} conflicts with ${packageId(q)}`);
        }
      }
    }
  }
  for (const t of opts.targets ?? []) {
    if (!final.some((q) => satisfiesDep(q, t)))
      out.push(`target ${familyKey(t)} ${t.version} missing`);
  }
  for (const f of opts.keepFamilies ?? []) {
    if (!fams.has(f)) out.push(`installed ${f} was removed`);
  }
  return out;
}
