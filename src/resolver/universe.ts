/**
 * Inputs of the resolver besides the request: an in-memory Universe (tests, bench, CLI
 * `--assume-installed`) and the installed state of a root.
 */
import { compareVersions, parseSelector } from '../package/version.js';
import {
  familyKey,
  packageId,
  type Dep,
  type PackageSpec,
  type Universe,
} from '../package/package.js';

/** One package installed in a root, as the installer's DB records it. */
export interface InstalledPackage {
  spec: PackageSpec;
  /** explicit = the user asked for it; dependency = pulled in (removable by `uninstall --full`). */
  reason: 'explicit' | 'dependency';
}

const byNewest = (a: PackageSpec, b: PackageSpec): number =>
  compareVersions(b.version, a.version) ||
  (a.version < b.version ? -1 : a.version > b.version ? 1 : 0);

const byId = (a: PackageSpec, b: PackageSpec): number => {
  const x = packageId(a);
  const y = packageId(b);
  return x < y ? -1 : x > y ? 1 : 0;
};

/** A Universe over a list of specs; duplicates (same id) keep the first one. Order-independent. */
export class MemoryUniverse implements Universe {
  private readonly byFamily = new Map<string, PackageSpec[]>();
  private readonly providers = new Map<string, PackageSpec[]>();

  constructor(specs: Iterable<PackageSpec>) {
    const ids = new Set<string>();
    for (const s of specs) {
      const id = packageId(s);
      if (ids.has(id)) continue;
      ids.add(id);
      const fam = familyKey(s);
      let list = this.byFamily.get(fam);
      if (!list) this.byFamily.set(fam, (list = []));
      list.push(s);
      const provided = new Set<string>();
      for (const p of s.provides) {
        const pf = familyKey(p);
        if (provided.has(pf)) continue;
        provided.add(pf);
        let pl = this.providers.get(pf);
        if (!pl) this.providers.set(pf, (pl = []));
        pl.push(s);
      }
    }
    for (const list of this.byFamily.values()) list.sort(byNewest);
    for (const list of this.providers.values()) list.sort(byId);
  }

  families(): Iterable<string> {
    return [...this.byFamily.keys()].sort();
  }

  versions(family: string): readonly PackageSpec[] {
    return this.byFamily.get(family) ?? [];
  }

  providersOf(family: string): readonly PackageSpec[] {
    return this.providers.get(family) ?? [];
  }
}

/** Splits "category/name" (the last slash separates the name). */
export function splitFamily(key: string): { category: string; name: string } {
  const i = key.lastIndexOf('/');
  return i < 0
    ? { category: '', name: key }
    : { category: key.slice(0, i), name: key.slice(i + 1) };
}

/** A dependency entry from "category/name" and a selector string ("" = any). */
export function dep(key: string, version = ''): Dep {
  return { ...splitFamily(key), version, selector: parseSelector(version) };
}

/** A PackageSpec with defaults, for tests, the bench and `--assume-installed`. */
export function makeSpec(
  id: string,
  rel: { requires?: Dep[]; conflicts?: Dep[]; provides?: Dep[] } = {},
): PackageSpec {
  const at = id.lastIndexOf('@');
  const key = at < 0 ? id : id.slice(0, at);
  const version = at < 0 ? '' : id.slice(at + 1);
  return {
    ...splitFamily(key),
    version,
    requires: rel.requires ?? [],
    conflicts: rel.conflicts ?? [],
    provides: rel.provides ?? [],
    labels: {},
    annotations: {},
    uri: [],
    hidden: false,
    extra: {},
  };
}
