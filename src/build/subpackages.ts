/**
 * luet `subpackages:` — more packages cut out of a package's build. As in luet (the compiler's
 * buildSubPackage), each subpackage is the parent's *artifact* (its files after the parent's own
 * includes/excludes, with package_dir already applied) filtered again by the subpackage's
 * includes/excludes; the parent keeps all its files. There is no build of its own: the parent's
 * single run makes them all, so a subpackage's build hash is derived from its parent's and it is
 * rebuilt exactly when the parent is.
 */
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { canonicalJson } from '../repo/repo-index.js';
import type { LoadedPackage } from '../tree/tree.js';
import { compileFilter, isEmptyFilter, keeps, layoutPayload, type Entry } from './delta.js';

/** The build hash of subpackage `sub` of a package whose build hash is `parentHash`. */
export function subpackageHash(parentHash: string, sub: LoadedPackage, meta: string): string {
  const doc = {
    parent: parentHash,
    meta,
    includes: sub.filter?.includes ?? [],
    excludes: sub.filter?.excludes ?? [],
  };
  return `sha256:${createHash('sha256').update(canonicalJson(doc)).digest('hex')}`;
}

/** The subpackages of the package `parentId`, in the tree's order. */
export function subpackagesOf(
  packages: readonly LoadedPackage[],
  parentId: string,
): LoadedPackage[] {
  return packages.filter((p) => p.subpackageOf === parentId);
}

/**
 * Lays out the part of the parent's artifact that `sub` keeps under the empty directory `out`:
 * `parentEntries` are the parent's package entries, laid out under `parentPayload`. Returns the
 * entries kept. An invalid regular expression is an E_TREE naming the subpackage.
 */
export async function cutSubpackage(
  sub: LoadedPackage,
  subId: string,
  parentPayload: string,
  parentEntries: readonly Entry[],
  out: string,
): Promise<Entry[]> {
  const filter = compileFilter(sub.filter?.includes ?? [], sub.filter?.excludes ?? [], subId);
  const kept = isEmptyFilter(filter)
    ? [...parentEntries]
    : parentEntries.filter((e) => keeps(filter, `/${e.rel}`));
  await fsp.mkdir(out, { recursive: true });
  // The parent's payload holds only regular files, symlinks and directories (devices skipped).
  await layoutPayload(
    parentPayload,
    kept.filter((e) => e.kind !== 'other'),
    out,
  );
  return kept.filter((e) => e.kind !== 'other');
}
