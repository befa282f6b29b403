/** Checks a final package set against every constraint (the bench's answer validation). */
import { familyKey, packageId, type PackageSpec } from '../../src/package/package.js';
import { satisfiesDep } from '../../src/package/match.js';

export function violations(final: readonly PackageSpec[]): string[] {
  const out: string[] = [];
  const fams = new Set<string>();
  const byFam = new Map<string, PackageSpec[]>();
  const byProv = new Map<string, PackageSpec[]>();
  for (const p of final) {
    const f = familyKey(p);
    if (fams.has(f)) out.push(`two versions of ${f}`);
    fams.add(f);
    byFam.set(f, [p]);
    for (const pr of p.provides)
      byProv.set(familyKey(pr), [...(byProv.get(familyKey(pr)) ?? []), p]);
  }
  const matches = (f: string): PackageSpec[] => [...(byFam.get(f) ?? []), ...(byProv.get(f) ?? [])];
  for (const p of final) {
    for (const d of p.requires) {
      if (!matches(familyKey(d)).some((q) => q !== p && satisfiesDep(q, d))) {
        out.push(`${packageId(p)} requires ${familyKey(d)} ${d.version}`);
      }
    }
    for (const d of p.conflicts) {
      for (const q of matches(familyKey(d))) {
        if (q !== p && familyKey(q) !== familyKey(p) && satisfiesDep(q, d)) {
          out.push(`${packageId(p)} conflicts with ${packageId(q)}`);
        }
      }
    }
  }
  return out;
}
