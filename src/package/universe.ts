/** An in-memory Universe over a list of packages (the tree loader's, or any other). */
import { familyKey, packageId, type Dep, type PackageSpec, type Universe } from './package.js';
import { compareVersions, satisfies } from './version.js';

export class PackageUniverse<P extends PackageSpec = PackageSpec> implements Universe {
  private readonly byFamily = new Map<string, P[]>();
  private readonly providers = new Map<string, P[]>();

  constructor(packages: Iterable<P>) {
    for (const p of packages) {
      const key = familyKey(p);
      const list = this.byFamily.get(key) ?? [];
      list.push(p);
      this.byFamily.set(key, list);
      for (const pr of p.provides) {
        const k = familyKey(pr);
        const l = this.providers.get(k) ?? [];
        if (!l.includes(p)) l.push(p);
        this.providers.set(k, l);
      }
    }
    // Newest first; equal versions (duplicates, reported elsewhere) by source for determinism.
    const src = (p: P): string => `${p.source?.file ?? ''}:${p.source?.line ?? 0}`;
    for (const list of this.byFamily.values()) {
      list.sort((a, b) => compareVersions(b.version, a.version) || src(a).localeCompare(src(b)));
    }
    for (const list of this.providers.values()) {
      list.sort((a, b) => packageId(a).localeCompare(packageId(b)) || src(a).localeCompare(src(b)));
    }
  }

  families(): string[] {
    return [...this.byFamily.keys()].sort();
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
    return this.versions(familyKey(dep)).find((p) => satisfies(p.version, dep.selector));
  }

  /**
   * luet's lookup: a package whose `provides` entry matches the request shadows the real package
   * (reference §2.6); otherwise the newest real match.
   */
  resolve(
    dep: Pick<Dep, 'category' | 'name' | 'selector' | 'version'>,
  ): { pkg: P; via?: P } | undefined {
    for (const prov of this.providersOf(familyKey(dep))) {
      const entry = prov.provides.find((x) => familyKey(x) === familyKey(dep));
      if (!entry) continue;
      if (entry.version === dep.version || entry.selector.any || satisfiesAnyOf(entry, dep)) {
        return { pkg: prov, via: prov };
      }
    }
    const pkg = this.newest(dep);
    return pkg ? { pkg } : undefined;
  }
}

/** Whether a provide entry (a version or a selector) can serve the request. */
function satisfiesAnyOf(entry: Dep, dep: Pick<Dep, 'selector'>): boolean {
  if (dep.selector.any) return true;
  // The provide's bound versions as candidates: a provide of ">0.0.2" serves "=0.0.3" requests.
  const exact = entry.selector.constraints.filter((c) => c.op === '=').map((c) => c.version);
  if (exact.some((v) => satisfies(v, dep.selector))) return true;
  const wanted = dep.selector.constraints.filter((c) => c.op === '=').map((c) => c.version);
  return wanted.length > 0 && wanted.every((v) => satisfies(v, entry.selector));
}
