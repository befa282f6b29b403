/**
 * The one codec between PackageSpec and JSON. The DB record (rootfs/db.ts), the package image
 * metadata (oci/package-image.ts) and the repository index (repo/repo-index.ts) all store a spec
 * through it; their byte layouts differ only in key order and in what they leave out, both fixed
 * here (tests pin the bytes of each). `source` is never stored: it is a path on the machine that
 * loaded the tree (the index keeps its own tree-relative copy).
 */
import { createDep, createSpec, type Dep, type PackageSpec, type SpecFields } from './package.js';

/** A dependency as stored: the selector as written, parsed again on read. */
export interface DepJson {
  category: string;
  name: string;
  version: string;
}

export function depToJson(d: Dep): DepJson {
  return { category: d.category, name: d.name, version: d.version };
}

/**
 * A stored dependency: the object form, or the compact text "category/name selector" the index
 * uses ("name" alone for an empty category and selector). Null when it has no name.
 */
export function depFromJson(v: unknown): Dep | null {
  if (typeof v === 'string') {
    const sp = v.indexOf(' ');
    const fam = sp < 0 ? v : v.slice(0, sp);
    const slash = fam.indexOf('/');
    const name = slash < 0 ? fam : fam.slice(slash + 1);
    if (name === '') return null;
    return createDep(slash < 0 ? '' : fam.slice(0, slash), name, sp < 0 ? '' : v.slice(sp + 1));
  }
  const o = v as Partial<DepJson> | null;
  if (!o || typeof o !== 'object' || typeof o.name !== 'string') return null;
  return createDep(
    typeof o.category === 'string' ? o.category : '',
    o.name,
    typeof o.version === 'string' ? o.version : '',
  );
}

const cmp = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/** A record with its keys in byte order (one level). */
export function sortedRecord<T>(r: Record<string, T>): Record<string, T> {
  return Object.fromEntries(Object.entries(r).sort(([a], [b]) => cmp(a, b)));
}

/** A value with object keys in byte order at every level. */
export function sortedDeep(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortedDeep);
  if (v && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    return Object.fromEntries(
      Object.keys(o)
        .sort(cmp)
        .map((k) => [k, sortedDeep(o[k])]),
    );
  }
  return v;
}

/** The stored fields of a spec. */
export interface SpecJson extends SpecFields<DepJson[]> {
  extra?: Record<string, unknown>;
}

/**
 * Key order and sorting of each stored form:
 * - 'db': description and license after annotations, `extra` always, sorted at every level;
 * - 'image': description, license and `extra` (only when non-empty, sorted one level) after
 *   hidden.
 * JSON.stringify keeps insertion order, so these decide the bytes.
 */
export type SpecLayout = 'db' | 'image';

export function specToJson(s: PackageSpec, layout: SpecLayout): SpecJson {
  const head = {
    category: s.category,
    name: s.name,
    version: s.version,
    requires: s.requires.map(depToJson),
    conflicts: s.conflicts.map(depToJson),
    provides: s.provides.map(depToJson),
    labels: sortedRecord(s.labels),
    annotations: sortedRecord(s.annotations),
  };
  const text = {
    ...(s.description !== undefined ? { description: s.description } : {}),
    ...(s.license !== undefined ? { license: s.license } : {}),
  };
  if (layout === 'db') {
    return {
      ...head,
      ...text,
      uri: [...s.uri],
      hidden: s.hidden,
      extra: sortedDeep(s.extra) as Record<string, unknown>,
    };
  }
  return {
    ...head,
    uri: [...s.uri],
    hidden: s.hidden,
    ...text,
    ...(Object.keys(s.extra).length > 0 ? { extra: sortedRecord(s.extra) } : {}),
  };
}

function isMap(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * A spec from stored JSON, checked field by field; `bad(message)` makes the caller's error
 * (E_DB, E_IMAGE, E_REPO). Missing optional fields default to empty.
 */
export function specFromJson(raw: unknown, bad: (message: string) => Error): PackageSpec {
  if (!isMap(raw)) throw bad('not an object');
  const o = raw;
  if (typeof o.name !== 'string' || o.name === '') throw bad('no name');
  const str = (key: string): string => {
    const v = o[key];
    if (v === undefined) return '';
    if (typeof v !== 'string') throw bad(`"${key}" is not a string`);
    return v;
  };
  const strRecord = (key: string): Record<string, string> => {
    const v = o[key];
    if (v === undefined) return {};
    if (!isMap(v)) throw bad(`"${key}" is not a mapping`);
    for (const [k, x] of Object.entries(v))
      if (typeof x !== 'string') throw bad(`"${key}.${k}" is not a string`);
    return v as Record<string, string>;
  };
  const deps = (key: string): Dep[] => {
    const v = o[key];
    if (v === undefined) return [];
    if (!Array.isArray(v)) throw bad(`"${key}" is not a list`);
    return v.map((d: unknown, i) => {
      const dep = depFromJson(d);
      if (!dep) throw bad(`"${key}[${i}]" has no name`);
      return dep;
    });
  };
  return createSpec({
    category: str('category'),
    name: o.name,
    version: str('version'),
    requires: deps('requires'),
    conflicts: deps('conflicts'),
    provides: deps('provides'),
    labels: strRecord('labels'),
    annotations: strRecord('annotations'),
    uri: Array.isArray(o.uri) ? o.uri.filter((u): u is string => typeof u === 'string') : [],
    hidden: o.hidden === true,
    extra: isMap(o.extra) ? o.extra : {},
    ...(typeof o.description === 'string' ? { description: o.description } : {}),
    ...(typeof o.license === 'string' ? { license: o.license } : {}),
  });
}
