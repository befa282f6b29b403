/**
 * The resolver's Universe over one or more repository indexes. Repositories are merged by
 * priority as luet does: lower number = higher priority; for the same package id in two
 * repositories the higher-priority repository's artifact wins (ties: repository name order).
 * Versions and providers are ordered as every Universe orders them (package/universe.ts).
 *
 * Nothing is built per package up front: a family's offers are gathered from each repository's
 * table (index-table.ts) the first time the resolver asks for it, and a package's PackageSpec
 * the first time it is used.
 */
import { familyKey, type PackageSpec, type Universe } from '../package/package.js';
import { byPackageId, newestFirst } from '../package/universe.js';
import { arrayTable, type PackageTable } from './index-table.js';
import { tableOfIndex, type IndexPackage, type RepoIndex } from './repo-index.js';

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

interface Src {
  name: string;
  table: PackageTable;
}

/** An offer whose PackageSpec and entry are made on first use (most are never looked at). */
class TableOffer implements Offer {
  private built: PackageSpec | undefined;
  constructor(
    readonly repo: string,
    readonly table: PackageTable,
    readonly row: number,
    readonly version: string,
  ) {}
  get spec(): PackageSpec {
    return (this.built ??= this.table.spec(this.row));
  }
  get entry(): IndexPackage {
    return this.table.entry(this.row);
  }
}

const byBytes = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

export class IndexUniverse implements Universe {
  private readonly srcs: Src[];
  /** Family → offers in priority order (ids offered twice: the first only). */
  private readonly byFamily = new Map<string, TableOffer[]>();
  private readonly sortedFamilies = new Map<string, PackageSpec[]>();
  private readonly sortedProviders = new Map<string, PackageSpec[]>();
  private readonly shadows = new Map<string, string[]>();
  private everyFamily: string[] | undefined;
  private allSeen = false;

  constructor(sources: readonly RepoSource[]) {
    this.srcs = [...sources]
      .sort((a, b) => a.priority - b.priority || byBytes(a.name, b.name))
      .map((s) => ({ name: s.name, table: tableOfIndex(s.index) ?? arrayTable(s.index.packages) }));
  }

  /** Ids offered by more than one repository (or twice by one), with the losers (`cpm info`). */
  get shadowed(): ReadonlyMap<string, string[]> {
    if (!this.allSeen) {
      for (const f of this.families()) this.offersOf(f);
      this.allSeen = true;
    }
    return this.shadows;
  }

  /** The repositories that also offer a package id, losing to `offer(id)` (`cpm info`). */
  shadowsOf(id: string): string[] {
    // shadows are found per family as its offers are gathered: only the id's family is needed
    this.offer(id);
    return this.shadows.get(id) ?? [];
  }

  private offersOf(family: string): TableOffer[] {
    let list = this.byFamily.get(family);
    if (list) return list;
    list = [];
    for (const src of this.srcs) {
      const r = src.table.range(family);
      if (!r) continue;
      for (let i = r[0]; i < r[1]; i++) {
        const v = src.table.versionOf(i);
        // a family has few versions: a scan finds an id already offered
        if (list.some((o) => o.version === v)) {
          const id = `${family}@${v}`;
          this.shadows.set(id, [...(this.shadows.get(id) ?? []), src.name]);
        } else list.push(new TableOffer(src.name, src.table, i, v));
      }
    }
    this.byFamily.set(family, list);
    return list;
  }

  families(): Iterable<string> {
    if (!this.everyFamily) {
      if (this.srcs.length === 1) this.everyFamily = [...this.srcs[0]!.table.families()];
      else {
        const all = new Set<string>();
        for (const s of this.srcs) for (const f of s.table.families()) all.add(f);
        this.everyFamily = [...all].sort(byBytes);
      }
    }
    return this.everyFamily;
  }

  versions(family: string): readonly PackageSpec[] {
    let out = this.sortedFamilies.get(family);
    if (!out) {
      out = this.offersOf(family).map((o) => o.spec);
      out.sort(newestFirst);
      this.sortedFamilies.set(family, out);
    }
    return out;
  }

  providersOf(family: string): readonly PackageSpec[] {
    let out = this.sortedProviders.get(family);
    if (!out) {
      out = [];
      for (const src of this.srcs) {
        let last: TableOffer | undefined;
        for (const i of src.table.providers(family)) {
          // the offer that won this id (a shadowed copy's provides do not count), if it does
          // provide the family (a schema 4 provider table is checked against its package)
          const o = this.offersOf(src.table.familyOf(i)).find(
            (x) => x.table === src.table && x.row === i,
          );
          if (o && o !== last && o.spec.provides.some((d) => familyKey(d) === family))
            out.push(o.spec);
          last = o;
        }
      }
      out.sort(byPackageId);
      this.sortedProviders.set(family, out);
    }
    return out;
  }

  /** Which repository supplies a package id ("category/name@version"), or undefined. */
  offer(id: string): Offer | undefined {
    // the family is the part before an "@" (versions may hold one too, names rarely)
    for (let at = id.indexOf('@'); at >= 0; at = id.indexOf('@', at + 1)) {
      const v = id.slice(at + 1);
      const o = this.offersOf(id.slice(0, at)).find((x) => x.version === v);
      if (o) return o;
    }
    return undefined;
  }

  /** Every offer, by family. */
  allOffers(): Offer[] {
    const out: Offer[] = [];
    for (const f of this.families()) out.push(...this.offersOf(f));
    return out;
  }
}
