/**
 * The package model every stage shares: the tree loader and repository indexes produce it, the
 * resolver consumes it through a Universe, the installer and the DB record it.
 */
import type { Selector } from './version.js';

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

export interface PackageSpec {
  category: string;
  name: string;
  version: string;
  requires: Dep[];
  conflicts: Dep[];
  provides: Dep[];
  labels: Record<string, string>;
  annotations: Record<string, string>;
  description?: string;
  license?: string;
  uri: string[];
  hidden: boolean;
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
