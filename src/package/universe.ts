/**
 * The one in-memory Universe (tree loader, installed state, tests, bench, `--assume-installed`)
 * and the one ordering every Universe uses, the repository index's included: a family's versions
 * newest first, providers by id — strings compared by bytes, never by locale.
 */
import { providesDep } from './match.js';
import { familyKey, packageId, type Dep, type PackageSpec, type Universe } from './package.js';
import { compareVersions, satisfies } from './version.js';

const byBytes = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);
const sourceText = (p: PackageSpec): string => `${p.source?.file ?? ''}:${p.source?.line ?? 0}`;

/**
 * Newest first. Versions that compare equal but are written differently ("1.01", "1.1") by their
 * text; the same version twice (a duplicate a tree reports) by where it was defined.
 */
export function newestFirst(a: PackageSpec, b: PackageSpec): number {
  return (
    compareVersions(b.version, a.version) ||
    byBytes(a.version, b.version) ||
    byBytes(sourceText(a), sourceText(b))
  );
}

/** Providers of a family: by package id, then by where they were defined. */
export function byPackageId(a: PackageSpec, b: PackageSpec): number {
  return byBytes(packageId(a), packageId(b)) || byBytes(sourceText(a), sourceText(b));
}

export interface UniverseOptions {
  /**
   * Keep every package of the same id (the tree loader reports duplicates and still lists them).
   * Default: the first one of an id wins.
   */
  keepDuplicates?: boolean;
}

export class PackageUniverse<P extends PackageSpec = PackageSpec> implements Universe {
  private readonly byFamily = new Map<string, P[]>();
  private readonly providers = new Map<string, P[]>();

  constructor(packages: Iterable<P>, opts: UniverseOptions = {}) {
    const ids = new Set<string>();
    for (const p of packages) {
      if (!opts.keepDuplicates) {
        const id = packageId(p);
        if (ids.has(id)) continue;
        ids.add(id);
      }
      const key = familyKey(p);
      const list = this.byFamily.get(key);
      if (list) list.push(p);
      else this.byFamily.set(key, [p]);
      for (const pr of p.provides) {
        const k = familyKey(pr);
        const l = this.providers.get(k);
        if (!l) this.providers.set(k, [p]);
        else if (l[l.length - 1] !== p) l.push(p);
      }
    }
    for (const list of this.byFamily.values()) list.sort(newestFirst);
    for (const list of this.providers.values()) list.sort(byPackageId);
  }

  families(): string[] {
    return [...this.byFamily.keys()].sort(byBytes);
  }

  versions(family: string): readonly P[] {
    return this.byFamily.get(family) ?? [];
  }

  providersOf(family: string): readonly P[] {
    return this.providers.get(family) ?? [];
  }

  all(): P[] {
    return this.families().flatMap((f) => this.versions(f));
  }

  /** Newest package of the family matching the dep's selector, if any. */
  newest(dep: Pick<Dep, 'category' | 'name' | 'selector'>): P | undefined {
    return this.newestOf(familyKey(dep), dep.selector);
  }

  private newestOf(family: string, selector: Dep['selector']): P | undefined {
    return this.versions(family).find((p) => satisfies(p.version, selector));
  }

  /**
   * luet's lookup: a package whose `provides` entry matches the request shadows the real package
   * (reference §2.6); otherwise the newest real match.
   */
  resolve(dep: Dep): { pkg: P; via?: P } | undefined {
    const fam = familyKey(dep);
    for (const prov of this.providersOf(fam))
      if (providesDep(prov, fam, dep.selector)) return { pkg: prov, via: prov };
    const pkg = this.newestOf(fam, dep.selector);
    return pkg ? { pkg } : undefined;
  }
}
