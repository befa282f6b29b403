/**
 * The package model every stage shares: the tree loader and repository indexes produce it, the
 * resolver consumes it through a Universe, the installer and the DB record it.
 */
import { parseSelector, type Selector } from './version.js';

/** Where a value came from, for file:line in errors and explanations. */
export interface SourceLoc {
  file: string;
  line?: number;
  column?: number;
}

/** A dependency edge (requires / conflicts / provides entry). */
export interface Dep {
  category: string;
  name: string;
  /** The selector as written ("" = any). For provides, an exact version or a selector. */
  version: string;
  selector: Selector;
  source?: SourceLoc;
}

/** The fields of luet's package definition that the spec models (the rest go to `extra`). */
export const SPEC_FIELDS: ReadonlySet<string> = new Set([
  'category',
  'name',
  'version',
  'requires',
  'conflicts',
  'provides',
  'labels',
  'annotations',
  'description',
  'license',
  'uri',
  'hidden',
]);

/**
 * The fields of a package in each of its forms (the spec, its stored JSON, the index entry), so a
 * new field is added once; `L` is how the form holds a dependency list.
 */
export interface SpecFields<L> {
  category: string;
  name: string;
  version: string;
  requires: L;
  conflicts: L;
  provides: L;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  description?: string;
  license?: string;
  uri: string[];
  hidden: boolean;
}

export interface PackageSpec extends SpecFields<Dep[]> {
  /** Extra keys luet accepts or that the tree adds; kept verbatim and exposed to templates. */
  extra: Record<string, unknown>;
  /** Where the definition came from (definition.yaml or a collection.yaml stanza). */
  source?: SourceLoc;
}

/** "category/name" — the family key; at most one version of a family is installed. */
export function familyKey(p: { category: string; name: string }): string {
  return p.category ? `${p.category}/${p.name}` : p.name;
}

/** "category/name@version" — the id used in plans, the DB and messages. */
export function packageId(p: { category: string; name: string; version: string }): string {
  return `${familyKey(p)}@${p.version}`;
}

/** Why a package is in a root: asked for, or pulled in (removable by `uninstall --full`). */
export type InstallReason = 'explicit' | 'dependency';

/** A package installed in a root as the resolver sees it (the DB record has more). */
export interface InstalledSpec {
  spec: PackageSpec;
  reason: InstallReason;
}

/** Splits "category/name" (the last slash separates the name). */
export function splitFamily(key: string): { category: string; name: string } {
  const i = key.lastIndexOf('/');
  return i < 0
    ? { category: '', name: key }
    : { category: key.slice(0, i), name: key.slice(i + 1) };
}

/** A dependency entry; `version` is the selector text ("" = any). */
export function createDep(category: string, name: string, version = ''): Dep {
  return { category, name, version, selector: parseSelector(version) };
}

/** The fields a PackageSpec needs; everything else defaults to empty. */
export type SpecInit = Pick<PackageSpec, 'category' | 'name' | 'version'> & Partial<PackageSpec>;

/**
 * The one builder of PackageSpec values: fills the defaults (no relations, no labels, not
 * hidden) and leaves optional fields absent rather than undefined.
 */
export function createSpec(init: SpecInit): PackageSpec {
  const spec: PackageSpec = {
    category: init.category,
    name: init.name,
    version: init.version,
    requires: init.requires ?? [],
    conflicts: init.conflicts ?? [],
    provides: init.provides ?? [],
    labels: init.labels ?? {},
    annotations: init.annotations ?? {},
    uri: init.uri ?? [],
    hidden: init.hidden ?? false,
    extra: init.extra ?? {},
  };
  if (init.description !== undefined) spec.description = init.description;
  if (init.license !== undefined) spec.license = init.license;
  if (init.source !== undefined) spec.source = init.source;
  return spec;
}

/**
 * What the resolver consumes. Implemented by the tree loader and by repository indexes alike.
 * `versions` returns every package of a family, newest first.
 */
export interface Universe {
  families(): Iterable<string>;
  versions(family: string): readonly PackageSpec[];
  /** Packages whose `provides` names `family` (any version), sorted by id. */
  providersOf(family: string): readonly PackageSpec[];
}
