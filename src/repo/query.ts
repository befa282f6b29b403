/** `cpm search` and `cpm info` over an opened set of repositories. */
import { CpmError } from '../errors.js';
import { similar } from '../util/similar.js';
import { familyKey, packageId } from '../package/package.js';
import { parseRef } from '../package/ref.js';
import { compareVersions, satisfies } from '../package/version.js';
import { expandIndexPackage, type ExpandedIndexPackage } from './repo-index.js';
import type { IndexUniverse } from './index-universe.js';

export interface SearchHit {
  id: string;
  category: string;
  name: string;
  version: string;
  repo: string;
  description?: string;
  hidden: boolean;
  /** Has an image (false = metadata-only / meta package). */
  payload: boolean;
}

/** Case-insensitive substring match on category/name, description and label values. */
export function search(
  universe: IndexUniverse,
  term: string,
  opts: { hidden?: boolean } = {},
): SearchHit[] {
  const t = term.toLowerCase();
  const hits: SearchHit[] = [];
  for (const o of universe.allOffers()) {
    const e = o.entry;
    if (e.hidden && !opts.hidden) continue;
    const hay = [familyKey(e), e.description ?? '', ...Object.values(e.labels ?? {})]
      .join('\n')
      .toLowerCase();
    if (t !== '' && !hay.includes(t)) continue;
    const h: SearchHit = {
      id: packageId(e),
      category: e.category,
      name: e.name,
      version: e.version,
      repo: o.repo,
      hidden: e.hidden,
      payload: e.image !== undefined || e.artifact !== undefined,
    };
    if (e.description !== undefined) h.description = e.description;
    hits.push(h);
  }
  return hits.sort(
    (a, b) =>
      (familyKey(a) < familyKey(b) ? -1 : familyKey(a) > familyKey(b) ? 1 : 0) ||
      compareVersions(b.version, a.version),
  );
}

export interface PackageInfo {
  id: string;
  repo: string;
  /** Other repositories offering the same id (shadowed by priority). */
  alsoIn: string[];
  /** Every version of the family, newest first, with its repository. */
  versions: Array<{ version: string; repo: string }>;
  package: ExpandedIndexPackage;
}

/** The newest version matching a ref ("cat/name", "cat/name@1.0", "cat/name@>=1"). */
export function info(universe: IndexUniverse, refText: string): PackageInfo {
  const ref = parseRef(refText);
  const fam = familyKey(ref);
  const all = universe.versions(fam);
  if (all.length === 0) {
    const near = similar(fam, universe.families());
    throw new CpmError('E_NOT_FOUND', `no package ${fam} in the repositories`, {
      // only point at something that exists: a search for the typo would find nothing
      hint:
        near.length > 0
          ? `did you mean ${near.join(' or ')}?`
          : 'cpm search (with no word) lists every package of the repositories',
      context: { package: fam, ...(near.length > 0 ? { suggestions: near } : {}) },
    });
  }
  const pick = all.find((p) => satisfies(p.version, ref.selector));
  if (!pick) {
    throw new CpmError(
      'E_NOT_FOUND',
      `no version of ${fam} matches "${ref.version}" (have ${all.map((p) => p.version).join(', ')})`,
      {
        context: { package: fam },
      },
    );
  }
  const id = packageId(pick);
  const offer = universe.offer(id)!;
  return {
    id,
    repo: offer.repo,
    alsoIn: universe.shadowsOf(id),
    versions: all.map((p) => ({ version: p.version, repo: universe.offer(packageId(p))!.repo })),
    package: expandIndexPackage(offer.entry),
  };
}
