/**
 * What satisfies a dependency: a package of that family whose version matches, or a package whose
 * `provides` entry names the family with a matching version. The one definition: the resolver's
 * encoder and install order, the DB's reverse dependencies (uninstall), reclaim, the tree's
 * dependency views (package/universe.ts) and the tests' plan checker all call it.
 */
import { familyKey, type Dep, type PackageSpec } from './package.js';
import { compareVersions, satisfies, type Selector } from './version.js';

/** The exact version a provide entry names, or null when it names a range (or nothing). */
function exactProvide(p: Dep): string | null {
  if (p.version === '') return null;
  const c = p.selector.constraints;
  if (c.length === 1 && c[0]!.op === '=') return c[0]!.version;
  return null;
}

/**
 * Whether some version satisfies both selectors. Each is a conjunction of bounds, so the two meet
 * when the highest lower bound is below the lowest upper bound (or equal, with both inclusive and
 * the point not excluded by a `!=`). Versions are dense (another one fits between any two).
 */
export function selectorsIntersect(a: Selector, b: Selector): boolean {
  if (a.any || b.any) return true;
  const cs = [...a.constraints, ...b.constraints];
  // Versions that are not Debian-style only compare for equality (`=`, `!=`).
  if (cs.some((c) => c.parsed === null)) {
    const eq = cs.filter((c) => c.op === '=');
    return eq.every((c) => satisfies(c.version, a) && satisfies(c.version, b));
  }
  let lo: { v: string; incl: boolean } | null = null;
  let hi: { v: string; incl: boolean } | null = null;
  const lower = (v: string, incl: boolean): void => {
    const c = lo ? compareVersions(v, lo.v) : 1;
    if (c > 0) lo = { v, incl };
    else if (c === 0) lo = { v, incl: incl && lo!.incl };
  };
  const upper = (v: string, incl: boolean): void => {
    const c = hi ? compareVersions(v, hi.v) : -1;
    if (c < 0) hi = { v, incl };
    else if (c === 0) hi = { v, incl: incl && hi!.incl };
  };
  for (const c of cs) {
    if (c.op === '>=' || c.op === '>' || c.op === '=') lower(c.version, c.op !== '>');
    if (c.op === '<=' || c.op === '<' || c.op === '=') upper(c.version, c.op !== '<');
  }
  const l = lo as { v: string; incl: boolean } | null;
  const h = hi as { v: string; incl: boolean } | null;
  if (!l || !h) return true;
  const c = compareVersions(l.v, h.v);
  if (c < 0) return true;
  if (c > 0 || !l.incl || !h.incl) return false;
  return satisfies(l.v, a) && satisfies(l.v, b);
}

/**
 * Whether provide entry `p` satisfies selector `sel` on its family. An unversioned provide matches
 * every selector (luet: an empty version matches all); an exact provided version must satisfy the
 * selector; a provided range matches when it intersects the selector (luet's solver test "Support
 * provides with selectors": `provides E >=1.3` satisfies `requires E >=1.0`).
 */
export function provideMatches(p: Dep, sel: Selector): boolean {
  if (sel.any || p.version === '' || p.selector.any) return true;
  const exact = exactProvide(p);
  if (exact !== null) return satisfies(exact, sel);
  return selectorsIntersect(p.selector, sel);
}

/** Whether `spec` satisfies dependency `dep` (by family and version, or through a provide). */
export function satisfiesDep(spec: PackageSpec, dep: Dep): boolean {
  const fam = familyKey(dep);
  if (familyKey(spec) === fam && satisfies(spec.version, dep.selector)) return true;
  return providesDep(spec, fam, dep.selector);
}

/** Whether `spec` provides family `fam` in a version matching `sel`. */
export function providesDep(spec: PackageSpec, fam: string, sel: Selector): boolean {
  for (const p of spec.provides) if (familyKey(p) === fam && provideMatches(p, sel)) return true;
  return false;
}
