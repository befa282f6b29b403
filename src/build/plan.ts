/**
 * What to build and in which order. Each package with a build.yaml becomes a node whose build
 * root comes from one of luet's sources:
 * - `image`: the image itself;
 * - `chain`: build-time `requires` — luet orders the transitive build requires (dependencies
 *   first) and builds each on the previous one's result; the package starts from the result of
 *   the last one. An element with its own `image:` restarts the chain from that image;
 * - `final`: `requires_final_images: true` (or the deprecated `join:`) — a fresh root with the
 *   final packages of the requires and their runtime dependencies installed;
 * A package without steps, unpack or package_dir is empty (luet's "virtual"): nothing runs for
 * its own artifact, though its root may still be built for packages chained on it.
 * Packages without build.yaml, or with cpm's `payload:` directory, are left to `repo create`.
 */
import { CpmError } from '../errors.js';
import { familyKey, packageId, type Dep } from '../package/package.js';
import { parseRef } from '../package/ref.js';
import type { PackageUniverse } from '../package/universe.js';
import { satisfies } from '../package/version.js';
import type { BuildSpec } from '../tree/build.js';
import { formatProblem } from '../tree/problems.js';
import type { LoadedPackage, LoadedTree } from '../tree/tree.js';

export type RootSource = 'image' | 'chain' | 'final' | 'none';

export interface SubPackage {
  category: string;
  name: string;
  version: string;
  includes: string[];
  excludes: string[];
}

export interface BuildNode {
  id: string;
  pkg: LoadedPackage;
  spec: BuildSpec;
  rendered: string;
  source: RootSource;
  /** No steps, no unpack, no package_dir: the package has no files. */
  empty: boolean;
  /** `image` source: the reference. */
  image?: string;
  /** `chain` source: the packages built one on the other, first to last. */
  chain: BuildNode[];
  /** `final` source: packages whose images are installed into the fresh root. */
  finals: BuildNode[];
  /** `copy` entries resolved to a node (package) or an image reference. */
  copies: Array<{ from: BuildNode | string; source: string; destination: string }>;
  /** Everything that must be built first (chain, finals, copies), in a fixed order. */
  deps: BuildNode[];
  packageDir?: string;
  unpack: boolean;
  subpackages: SubPackage[];
}

export interface BuildPlan {
  /** Nodes in build order (dependencies first); ties by id. */
  order: BuildNode[];
  /** Ids the user asked for (all, when nothing was named). */
  requested: string[];
  byId: Map<string, BuildNode>;
}

function strField(spec: BuildSpec, key: string): string | undefined {
  const v = spec.fields[key];
  return typeof v === 'string' && v !== '' ? v : undefined;
}

function hasBuild(p: LoadedPackage): boolean {
  const spec = p.build?.spec;
  return !!spec && spec.payload === undefined;
}

function resolveDep(
  u: PackageUniverse<LoadedPackage>,
  d: Pick<Dep, 'category' | 'name' | 'selector' | 'version'>,
  from: LoadedPackage,
  what: string,
): LoadedPackage {
  const r = u.resolve(d);
  if (!r)
    throw new CpmError(
      'E_NOT_FOUND',
      `${packageId(from)}: ${what} ${familyKey(d)}${d.version ? ` ${d.version}` : ''} is not in the tree`,
      { context: { package: packageId(from), file: from.build?.file } },
    );
  return r.pkg;
}

function subpackagesOf(spec: BuildSpec, pkg: LoadedPackage): SubPackage[] {
  const raw = spec.fields.subpackages;
  if (!Array.isArray(raw)) return [];
  return raw.flatMap((s: unknown) => {
    if (!s || typeof s !== 'object') return [];
    const o = s as Record<string, unknown>;
    const list = (k: string): string[] =>
      Array.isArray(o[k]) ? (o[k] as unknown[]).map(String) : [];
    const name = typeof o.name === 'string' ? o.name : '';
    if (!name) return [];
    return [
      {
        category: typeof o.category === 'string' ? o.category : pkg.category,
        name,
        version: typeof o.version === 'string' && o.version ? o.version : pkg.version,
        includes: list('includes'),
        excludes: list('excludes'),
      },
    ];
  });
}

/** A package `cpm build --all` leaves out, and why. */
export interface LeftOut {
  id: string;
  reason: string;
}

/**
 * Builds the plan for `names` (package refs; empty = every package with a build spec). With
 * `leftOut` and no names, a package with problems, or whose build reaches one, is left out (and
 * recorded there) instead of failing the plan: the rest of the tree still builds.
 */
export function planBuild(
  tree: LoadedTree,
  names: readonly string[],
  leftOut?: LeftOut[],
): BuildPlan {
  const u = tree.universe;
  const nodes = new Map<LoadedPackage, BuildNode>();
  const visiting = new Set<LoadedPackage>();

  const nodeOf = (p: LoadedPackage): BuildNode => {
    const done = nodes.get(p);
    if (done) return done;
    if (visiting.has(p))
      throw new CpmError('E_TREE', `build-time requires cycle through ${packageId(p)}`, {
        context: { package: packageId(p) },
      });
    if (p.problems.length > 0)
      throw new CpmError(
        'E_TREE',
        `${packageId(p)} has problems (${formatProblem(p.problems[0]!)})`,
        { context: { package: packageId(p) } },
      );
    visiting.add(p);
    const spec = p.build!.spec!;
    const finalImages = spec.fields.requires_final_images === true;
    const join = Array.isArray(spec.fields.join) ? spec.fields.join : [];
    const node: BuildNode = {
      id: packageId(p),
      pkg: p,
      spec,
      rendered: p.build!.rendered ?? '',
      source: 'none',
      empty: false,
      chain: [],
      finals: [],
      copies: [],
      deps: [],
      unpack: spec.unpack,
      subpackages: subpackagesOf(spec, p),
    };
    const pd = strField(spec, 'package_dir');
    if (pd) node.packageDir = pd;
    const needsRoot = spec.steps.length > 0 || spec.unpack || !!pd;
    const built = (q: LoadedPackage, what: string): BuildNode => {
      // a package with problems says so (nodeOf) rather than that it has no spec
      if (!hasBuild(q) && q.problems.length === 0)
        throw new CpmError(
          'E_TREE',
          `${node.id}: ${what} ${packageId(q)} has no build spec to build it from`,
          { context: { package: node.id } },
        );
      return nodeOf(q);
    };
    if (spec.image) {
      node.source = 'image';
      node.image = spec.image;
    } else if (finalImages || join.length > 0) {
      node.source = 'final';
      const direct = finalImages
        ? spec.requires
        : join.flatMap((j: unknown) => {
            const o = (j ?? {}) as Record<string, unknown>;
            const r = parseRef(
              `${typeof o.category === 'string' && o.category ? `${o.category}/` : ''}${String(o.name ?? '')}`,
            );
            const version = typeof o.version === 'string' ? o.version : '';
            return [{ ...r, version, selector: parseRef(`x@${version || '>=0'}`).selector }];
          });
      // The requires and their runtime dependencies, each once, dependencies first.
      const seen = new Set<LoadedPackage>();
      const add = (q: LoadedPackage): void => {
        if (seen.has(q)) return;
        seen.add(q);
        for (const d of q.requires) add(resolveDep(u, d, q, 'runtime requirement'));
        node.finals.push(built(q, 'final image'));
      };
      for (const d of direct) add(resolveDep(u, d, p, 'requires'));
    } else if (spec.requires.length > 0) {
      node.source = 'chain';
      const seen = new Set<LoadedPackage>();
      const add = (q: LoadedPackage): void => {
        if (seen.has(q)) return;
        seen.add(q);
        for (const d of q.build?.spec?.requires ?? []) add(resolveDep(u, d, q, 'build requires'));
        node.chain.push(built(q, 'build requirement'));
      };
      for (const d of spec.requires) add(resolveDep(u, d, p, 'build requires'));
      // Only from the last element with its own image on does the chain matter.
      let start = 0;
      node.chain.forEach((c, i) => {
        if (c.source === 'image' || c.source === 'final') start = i;
      });
      node.chain = node.chain.slice(start);
      const first = node.chain[0];
      if (first && first.source === 'none')
        throw new CpmError(
          'E_TREE',
          `${node.id}: its build requires chain (${node.chain.map((c) => c.id).join(' → ')}) starts from no image`,
          { context: { package: node.id } },
        );
    } else if (needsRoot) {
      throw new CpmError(
        'E_TREE',
        `${node.id} is invalid: it has steps (or unpack/package_dir) but neither an image nor build requires`,
        { context: { package: node.id, file: p.build?.file } },
      );
    }
    node.empty = !needsRoot;
    for (const c of spec.copy) {
      let from: BuildNode | string;
      if (c.package) from = built(resolveDep(u, c.package, p, 'copy from'), 'copy source');
      else if (c.image) from = c.image;
      else
        throw new CpmError(
          'E_TREE',
          `${node.id}: copy entry names neither a package nor an image`,
          {
            context: { package: node.id },
          },
        );
      node.copies.push({ from, source: c.source, destination: c.destination });
    }
    const deps = new Set<BuildNode>([
      ...(node.source === 'chain' ? node.chain : []),
      ...node.finals,
      ...node.copies.flatMap((c) => (typeof c.from === 'string' ? [] : [c.from])),
    ]);
    node.deps = [...deps];
    visiting.delete(p);
    nodes.set(p, node);
    return node;
  };

  const requested: LoadedPackage[] = [];
  if (names.length === 0) requested.push(...tree.packages.filter(hasBuild));
  for (const n of names) {
    const ref = parseRef(n);
    const fam = familyKey(ref);
    const matches = u.versions(fam).filter((p) => satisfies(p.version, ref.selector));
    if (matches.length === 0)
      throw new CpmError('E_NOT_FOUND', `${n} is not in the tree`, { context: { package: n } });
    // A bare name builds every version of the family in the tree, as luet does for collections.
    for (const p of matches) {
      if (!hasBuild(p))
        throw new CpmError('E_USAGE', `${packageId(p)} has no build spec (nothing to build)`, {
          context: { package: packageId(p) },
        });
      requested.push(p);
    }
  }
  const sortedReq = [...new Set(requested)].sort((a, b) =>
    packageId(a) < packageId(b) ? -1 : packageId(a) > packageId(b) ? 1 : 0,
  );
  const planned: LoadedPackage[] = [];
  for (const p of sortedReq) {
    if (!leftOut || names.length > 0) {
      nodeOf(p);
      planned.push(p);
      continue;
    }
    try {
      nodeOf(p);
      planned.push(p);
    } catch (e) {
      if (!(e instanceof CpmError) || (e.code !== 'E_TREE' && e.code !== 'E_NOT_FOUND')) throw e;
      visiting.clear(); // the failed descent left its packages marked
      leftOut.push({ id: packageId(p), reason: e.message });
    }
  }

  // Topological order, dependencies first, ties by id (deterministic).
  const order: BuildNode[] = [];
  const placed = new Set<BuildNode>();
  const place = (n: BuildNode): void => {
    if (placed.has(n)) return;
    placed.add(n);
    for (const d of [...n.deps].sort((a, b) => (a.id < b.id ? -1 : 1))) place(d);
    order.push(n);
  };
  for (const n of [...nodes.values()].sort((a, b) => (a.id < b.id ? -1 : 1))) place(n);
  return {
    order,
    requested: planned.map(packageId),
    byId: new Map(order.map((n) => [n.id, n])),
  };
}
