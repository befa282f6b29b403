/**
 * The resolver's Universe over one or more repository indexes. Repositories are merged by
 * priority as luet does: lower number = higher priority; for the same package id in two
 * repositories the higher-priority repository's artifact wins (ties: repository name order).
 */
import { familyKey, packageId, type PackageSpec, type Universe } from '../spec/package.js';
import { compareVersions } from '../spec/version.js';
import { toPackageSpec, type IndexPackage, type RepoIndex } from './repo-index.js';

export interface RepoSource {
  /** Configured repository name (unique). */
  name: string;
  priority: number;
  index: RepoIndex;
}

/** A package the universe offers, with the repository that supplies it. */
export interface Offer {
  repo: string;
  spec: PackageSpec;
  entry: IndexPackage;
}

const byId = (a: PackageSpec, b: PackageSpec): number => {
  const x = packageId(a);
  const y = packageId(b);
  return x < y ? -1 : x > y ? 1 : 0;
};

export class IndexUniverse implements Universe {
  private readonly byFamily = new Map<string, PackageSpec[]>();
  private readonly providers = new Map<string, PackageSpec[]>();
  private readonly offers = new Map<string, Offer>();
  /** Ids offered by more than one repository, with the losers (for `cpm info`). */
  readonly shadowed = new Map<string, string[]>();

  constructor(sources: readonly RepoSource[]) {
    const ordered = [...sources].sort(
      (a, b) => a.priority - b.priority || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0),
    );
    for (const src of ordered) {
      for (const entry of src.index.packages) {
        const id = packageId(entry);
        const have = this.offers.get(id);
        if (have) {
          this.shadowed.set(id, [...(this.shadowed.get(id) ?? []), src.name]);
          continue;
        }
        const spec = toPackageSpec(entry);
        this.offers.set(id, { repo: src.name, spec, entry });
        const fam = familyKey(spec);
        const list = this.byFamily.get(fam) ?? [];
        list.push(spec);
        this.byFamily.set(fam, list);
        for (const prov of spec.provides) {
          const pf = familyKey(prov);
          const pl = this.providers.get(pf) ?? [];
          pl.push(spec);
          this.providers.set(pf, pl);
        }
      }
    }
    for (const list of this.byFamily.values())
      list.sort((a, b) => compareVersions(b.version, a.version) || byId(b, a));
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

  /** Which repository supplies a package id ("category/name@version"), or undefined. */
  offer(id: string): Offer | undefined {
    return this.offers.get(id);
  }

  allOffers(): Offer[] {
    return [...this.offers.values()];
  }
}
