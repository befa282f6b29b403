/**
 * What satisfies a dependency: a package of that family whose version matches, or a package whose
 * `provides` entry names the family with a matching version. The one definition: the resolver's
 * encoder and install order, the DB's reverse dependencies (uninstall), reclaim, the tree's
 * dependency views (package/universe.ts) and the tests' plan checker all call it.
 */
import { familyKey, type Dep, type PackageSpec } from './package.js';
import { satisfies, type Selector } from './version.js';

/** The exact version a provide entry names, or null when it names a range (or nothing). */
function exactProvide(p: Dep): string | null {
  if (p.version === '') return null;
  const c = p.selector.constraints;
  if (c.length === 1 && c[0]!.op === '=') return c[0]!.version;
  return null;
}

/**
 * Whether provide entry `p` satisfies selector `sel` on its family. An unversioned provide matches
 * every selector (luet: an empty version matches all); an exact provided version must satisfy the
 * selector; a provided range matches when the selector's own bound versions fall inside it (luet
 * compares the requested version against the provided selector the same way).
 */
export function provideMatches(p: Dep, sel: Selector): boolean {
  if (sel.any || p.version === '' || p.selector.any) return true;
  const exact = exactProvide(p);
  if (exact !== null) return satisfies(exact, sel);
  return sel.constraints.some(
    (c) => c.op !== '!=' && satisfies(c.version, p.selector) && satisfies(c.version, sel),
  );
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
