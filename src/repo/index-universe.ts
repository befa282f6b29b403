/**
 * The resolver's Universe over one or more repository indexes. Repositories are merged by
 * priority as luet does: lower number = higher priority; for the same package id in two
 * repositories the higher-priority repository's artifact wins (ties: repository name order).
 * Versions and providers are ordered as every Universe orders them (package/universe.ts).
 */
import { familyKey, type PackageSpec, type Universe } from '../package/package.js';
import { byPackageId, newestFirst } from '../package/universe.js';
import {
  indexDepFamily,
  indexDeps,
  toPackageSpec,
  type IndexPackage,
  type RepoIndex,
} from './repo-index.js';

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

/** An offer whose PackageSpec is built on first use (a large index is mostly never looked at). */
class LazyOffer implements Offer {
  private built: PackageSpec | undefined;
  constructor(
    readonly repo: string,
    readonly entry: IndexPackage,
  ) {}
  get spec(): PackageSpec {
    return (this.built ??= toPackageSpec(this.entry));
  }
}

function offered(list: readonly LazyOffer[], version: string): boolean {
  for (const o of list) if (o.entry.version === version) return true;
  return false;
}

export class IndexUniverse implements Universe {
  /** Family → offers; sorted newest first on first access (`sorted`). */
  private readonly byFamily = new Map<string, LazyOffer[]>();
  private readonly providers = new Map<string, LazyOffer[]>();
  /** Id → offer, built on first use (a large index mostly never needs ids). */
  private offersById: Map<string, LazyOffer> | undefined;
  private readonly sortedFamilies = new Map<string, PackageSpec[]>();
  private readonly sortedProviders = new Map<string, PackageSpec[]>();
  /** Ids offered by more than one repository, with the losers (for `cpm info`). */
  readonly shadowed = new Map<string, string[]>();

  constructor(sources: readonly RepoSource[]) {
    const ordered = [...sources].sort(
      (a, b) => a.priority - b.priority || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0),
    );
    for (const src of ordered) {
      for (const entry of src.index.packages) {
        const fam = familyKey(entry);
        const list = this.byFamily.get(fam);
        // A family has few versions: a scan finds an id already offered without building ids.
        if (list && offered(list, entry.version)) {
          const id = `${fam}@${entry.version}`;
          this.shadowed.set(id, [...(this.shadowed.get(id) ?? []), src.name]);
          continue;
        }
        const offer = new LazyOffer(src.name, entry);
        if (list) list.push(offer);
        else this.byFamily.set(fam, [offer]);
        if (entry.provides === '') continue; // most packages provide nothing
        for (const prov of indexDeps(entry.provides)) {
          const pf = indexDepFamily(prov);
          const pl = this.providers.get(pf);
          if (pl) {
            if (pl[pl.length - 1] !== offer) pl.push(offer);
          } else this.providers.set(pf, [offer]);
        }
      }
    }
  }

  families(): Iterable<string> {
    return [...this.byFamily.keys()].sort();
  }

  versions(family: string): readonly PackageSpec[] {
    let out = this.sortedFamilies.get(family);
    if (!out) {
      out = (this.byFamily.get(family) ?? []).map((o) => o.spec);
      out.sort(newestFirst);
      this.sortedFamilies.set(family, out);
    }
    return out;
  }

  providersOf(family: string): readonly PackageSpec[] {
    let out = this.sortedProviders.get(family);
    if (!out) {
      out = (this.providers.get(family) ?? []).map((o) => o.spec);
      out.sort(byPackageId);
      this.sortedProviders.set(family, out);
    }
    return out;
  }

  /** Which repository supplies a package id ("category/name@version"), or undefined. */
  offer(id: string): Offer | undefined {
    return this.byId().get(id);
  }

  allOffers(): Offer[] {
    return [...this.byId().values()];
  }

  private byId(): Map<string, LazyOffer> {
    if (!this.offersById) {
      this.offersById = new Map();
      for (const [fam, list] of this.byFamily)
        for (const o of list) this.offersById.set(`${fam}@${o.entry.version}`, o);
    }
    return this.offersById;
  }
}
