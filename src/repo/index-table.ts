/**
 * An index as the universe reads it: packages in family order (family keys compared by code
 * unit, as the index is written), each family's versions adjacent, providers by provided family.
 * Nothing per package is built up front beyond two strings: a family is found by binary search,
 * and a package's PackageSpec and full entry are made only when asked for (schema 4 parses
 * their text then; older schemas hold them parsed already).
 */
import { familyKey, type PackageSpec } from '../package/package.js';
import { indexDepFamily, indexDeps, toPackageSpec, type IndexPackage } from './repo-index.js';

export const NONE: readonly number[] = Object.freeze([]);

export interface TableRows {
  /** Package i as the resolver sees it (made on each call; the universe keeps it). */
  spec(i: number): PackageSpec;
  /** Package i as the index holds it (same object on each call). */
  entry(i: number): IndexPackage;
}

export interface PackageTable {
  readonly size: number;
  /** familyKey of package i; it never decreases with i. */
  familyOf(i: number): string;
  versionOf(i: number): string;
  /** The packages of a family: [first, end), or undefined when the table has none. */
  range(family: string): [number, number] | undefined;
  /** Every family once, in order. */
  families(): readonly string[];
  /** Packages that say they provide `family`, ascending (the universe checks their provides). */
  providers(family: string): readonly number[];
  spec(i: number): PackageSpec;
  entry(i: number): IndexPackage;
}

/** A table over arrays of family keys and versions (sorted by family). */
export class ArrayTable implements PackageTable {
  private uniq: string[] | undefined;

  constructor(
    private readonly fam: readonly string[],
    private readonly ver: readonly string[],
    private readonly prov: ReadonlyMap<string, readonly number[]>,
    private readonly rows: TableRows,
  ) {}

  get size(): number {
    return this.fam.length;
  }

  familyOf(i: number): string {
    return this.fam[i]!;
  }

  versionOf(i: number): string {
    return this.ver[i]!;
  }

  range(family: string): [number, number] | undefined {
    const fam = this.fam;
    let lo = 0;
    let hi = fam.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (fam[mid]! < family) lo = mid + 1;
      else hi = mid;
    }
    if (lo >= fam.length || fam[lo] !== family) return undefined;
    let end = lo + 1;
    while (end < fam.length && fam[end] === family) end++;
    return [lo, end];
  }

  families(): readonly string[] {
    if (!this.uniq) {
      const out: string[] = [];
      for (let i = 0; i < this.fam.length; i++)
        if (i === 0 || this.fam[i] !== this.fam[i - 1]) out.push(this.fam[i]!);
      this.uniq = out;
    }
    return this.uniq;
  }

  providers(family: string): readonly number[] {
    return this.prov.get(family) ?? NONE;
  }

  spec(i: number): PackageSpec {
    return this.rows.spec(i);
  }

  entry(i: number): IndexPackage {
    return this.rows.entry(i);
  }
}

/** Adds package i's provides to a provider map (a package providing a family twice counts once). */
export function addProvider(prov: Map<string, number[]>, family: string, i: number): void {
  const l = prov.get(family);
  if (!l) prov.set(family, [i]);
  else if (l[l.length - 1] !== i) l.push(i);
}

/** A table over parsed entries (schemas 1–3, indexes built in memory): sorted by family, stably. */
export function arrayTable(packages: readonly IndexPackage[]): PackageTable {
  const keys = packages.map(familyKey);
  let sorted = true;
  for (let i = 1; i < keys.length && sorted; i++) if (keys[i - 1]! > keys[i]!) sorted = false;
  const order = keys.map((_, i) => i);
  if (!sorted) order.sort((a, b) => (keys[a]! < keys[b]! ? -1 : keys[a]! > keys[b]! ? 1 : a - b));
  const fam = order.map((i) => keys[i]!);
  const ver = order.map((i) => packages[i]!.version);
  const prov = new Map<string, number[]>();
  order.forEach((p, k) => {
    const provides = packages[p]!.provides;
    if (provides === '') return; // most packages provide nothing
    for (const e of indexDeps(provides)) addProvider(prov, indexDepFamily(e), k);
  });
  return new ArrayTable(fam, ver, prov, {
    spec: (k) => toPackageSpec(packages[order[k]!]!),
    entry: (k) => packages[order[k]!]!,
  });
}
