/**
 * Runtime dependency views over a tree: the transitive `requires` closure of one package (as a
 * tree, newest version matching each selector) and the whole-tree graph (dot or JSON).
 */
import { CpmError } from '../errors.js';
import { familyKey, packageId, type Dep, type PackageSpec } from '../package/package.js';
import type { PackageRef } from '../package/ref.js';
import type { PackageUniverse } from '../package/universe.js';
import { providesDep } from '../package/match.js';
import { describeSelector } from '../package/version.js';
import { collate } from '../util/collate.js';

export interface DepNode {
  /** `category/name@version` when resolved, else `category/name`. */
  id: string;
  /** The selector as written by the parent ("" for the root). */
  selector: string;
  resolved: boolean;
  /** Set when a package's `provides` served the request (luet: providers shadow real packages). */
  providedBy?: string;
  /** True when this package's subtree was already printed above. */
  seen?: boolean;
  children: DepNode[];
}

export interface DepsResult {
  root: DepNode;
  /** Every package of the closure except the root, sorted by id. */
  closure: string[];
  /** Requests nothing in the tree satisfies: `category/name selector (required by id)`. */
  unresolved: string[];
}

/** Picks the newest package of a family matching the ref (CLI `category/name[@selector]`). */
export function findPackage<P extends PackageSpec>(
  universe: PackageUniverse<P>,
  ref: PackageRef,
): P {
  const family = familyKey(ref);
  const versions = universe.versions(family);
  if (versions.length === 0) {
    throw new CpmError('E_NOT_FOUND', `package ${family} is not in the tree`, {
      hint: 'list the packages with "cpm tree list"',
      context: { package: family },
    });
  }
  const hit = universe.newest(ref);
  if (!hit) {
    throw new CpmError(
      'E_NOT_FOUND',
      `no version of ${family} matches ${describeSelector(ref.selector)} (the tree has ${versions.map((p) => p.version).join(', ')})`,
      { context: { package: family } },
    );
  }
  return hit;
}

/** The transitive runtime requires of `root`. Cycles and repeats are cut (marked `seen`). */
export function dependencyTree<P extends PackageSpec>(
  universe: PackageUniverse<P>,
  root: P,
): DepsResult {
  const expanded = new Set<string>();
  const closure = new Set<string>();
  const unresolved = new Set<string>();
  const build = (p: P, selector: string, providedBy?: string): DepNode => {
    const id = packageId(p);
    const node: DepNode = { id, selector, resolved: true, children: [] };
    if (providedBy) node.providedBy = providedBy;
    if (expanded.has(id)) {
      node.seen = p.requires.length > 0;
      return node;
    }
    expanded.add(id);
    for (const d of p.requires) node.children.push(child(d, id));
    return node;
  };
  const child = (d: Dep, parent: string): DepNode => {
    const r = universe.resolve(d);
    if (!r) {
      unresolved.add(`${familyKey(d)} ${describeSelector(d.selector)} (required by ${parent})`);
      return { id: familyKey(d), selector: d.version, resolved: false, children: [] };
    }
    closure.add(packageId(r.pkg));
    return build(r.pkg, d.version, r.via ? `${familyKey(d)}` : undefined);
  };
  const tree = build(root, '');
  closure.delete(packageId(root));
  return { root: tree, closure: [...closure].sort(), unresolved: [...unresolved].sort() };
}

export interface Lookup<P> {
  pkg: P;
  /** The family asked for, when a package providing it answered the lookup. */
  provides?: string;
}

/**
 * luet's lookup of a request (its package database's FindPackage, which `luet install`, `luet
 * build` and the solver use): a package whose `provides` matches the request answers it, else the
 * newest real package (findPackage). `own` skips the providers.
 */
export function lookupPackage<P extends PackageSpec>(
  universe: PackageUniverse<P>,
  ref: PackageRef,
  own = false,
): Lookup<P> {
  const fam = familyKey(ref);
  if (!own)
    for (const prov of universe.providersOf(fam))
      if (providesDep(prov, fam, ref.selector)) return { pkg: prov, provides: fam };
  return { pkg: findPackage(universe, ref) };
}

/**
 * The runtime dependency tree luet computes for a request: the provider's when a package provides
 * it (its root marked as providing the request), else the package's own.
 */
export function lookupDependencyTree<P extends PackageSpec>(
  universe: PackageUniverse<P>,
  ref: PackageRef,
  own = false,
): DepsResult & Lookup<P> {
  const hit = lookupPackage(universe, ref, own);
  const deps = dependencyTree(universe, hit.pkg);
  if (hit.provides) deps.root.providedBy = hit.provides;
  return { ...deps, ...hit };
}

/** Renders a DepNode tree with box-drawing guides. */
export function renderDepTree(root: DepNode): string {
  const lines: string[] = [];
  const label = (n: DepNode): string => {
    let s = n.resolved ? n.id : `${n.id} — UNRESOLVED`;
    if (n.selector && n.selector !== '>=0') s += ` (${n.selector})`;
    if (n.providedBy) s += ` [provides ${n.providedBy}]`;
    if (n.seen) s += ' (see above)';
    return s;
  };
  lines.push(label(root));
  const walk = (n: DepNode, prefix: string): void => {
    n.children.forEach((c, i) => {
      const last = i === n.children.length - 1;
      lines.push(`${prefix}${last ? '└── ' : '├── '}${label(c)}`);
      walk(c, prefix + (last ? '    ' : '│   '));
    });
  };
  walk(root, '');
  return lines.join('\n') + '\n';
}

export interface GraphEdge {
  from: string;
  /** Resolved package id, or the family when nothing matches. */
  to: string;
  selector: string;
  resolved: boolean;
}

export interface TreeGraph {
  nodes: string[];
  edges: GraphEdge[];
}

/** Every package and its runtime requires, each edge to the newest matching version. */
export function treeGraph<P extends PackageSpec>(universe: PackageUniverse<P>): TreeGraph {
  const nodes: string[] = [];
  const edges: GraphEdge[] = [];
  for (const p of universe.all()) {
    const from = packageId(p);
    nodes.push(from);
    for (const d of p.requires) {
      const r = universe.resolve(d);
      edges.push({
        from,
        to: r ? packageId(r.pkg) : familyKey(d),
        selector: d.version,
        resolved: r !== undefined,
      });
    }
  }
  nodes.sort();
  edges.sort((a, b) => collate(a.from, b.from) || collate(a.to, b.to));
  return { nodes, edges };
}

/** Graphviz dot of a TreeGraph; unresolved requirements are dashed red boxes. */
export function graphToDot(g: TreeGraph): string {
  const q = (s: string): string => JSON.stringify(s);
  const out = ['digraph packages {', '  rankdir=LR;', '  node [shape=box];'];
  for (const n of g.nodes) out.push(`  ${q(n)};`);
  const missing = [...new Set(g.edges.filter((e) => !e.resolved).map((e) => e.to))].sort();
  for (const m of missing) out.push(`  ${q(m)} [style=dashed, color=red];`);
  for (const e of g.edges) {
    const attrs = e.selector && e.selector !== '>=0' ? ` [label=${q(e.selector)}]` : '';
    out.push(`  ${q(e.from)} -> ${q(e.to)}${attrs};`);
  }
  out.push('}');
  return out.join('\n') + '\n';
}
