/**
 * Install order: dependencies before dependents. A depth-first post-order over packages sorted by id,
 * following each requirement's satisfiers in id order, so a cycle is broken at the same edge on every
 * run regardless of input order. Removal order is the reverse. The walk starts at the requested
 * families, so in a cycle through a requested package that package comes last.
 */
import { familyKey, packageId, type PackageSpec } from '../package/package.js';
import { satisfies } from '../package/version.js';
import { providesDep } from '../package/match.js';

/** Specs sorted by id, each id built once (a comparator building them costs n log n strings). */
export function sortById(specs: readonly PackageSpec[]): PackageSpec[] {
  return sortWithIds(specs).specs;
}

/** Specs sorted by id, with their ids (same index). */
export function sortWithIds(specs: readonly PackageSpec[]): {
  specs: PackageSpec[];
  ids: string[];
} {
  const keyed = specs.map((s) => ({ s, id: packageId(s) }));
  keyed.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  return { specs: keyed.map((k) => k.s), ids: keyed.map((k) => k.id) };
}

/** `first`: families to start from (the request), so a cycle through them ends with them. */
export function dependencyOrder(
  specs: readonly PackageSpec[],
  first: readonly string[] = [],
): PackageSpec[] {
  const sorted = sortById(specs);
  return orderOfSorted(sorted, first).map((i) => sorted[i]!);
}

/**
 * Calls `add(j)` for every package j of `sorted` that satisfies a requirement of package i (in any
 * order, repeats allowed). The default matches selectors; the resolver passes what its encoding
 * already knows.
 */
export type Neighbours = (i: number, add: (j: number) => void) => void;

/** The default Neighbours: each requirement matched against the family members and providers. */
function matchNeighbours(sorted: readonly PackageSpec[]): Neighbours {
  const byFamily = new Map<string, number[]>();
  const providers = new Map<string, number[]>();
  sorted.forEach((s, i) => {
    const f = familyKey(s);
    const fl = byFamily.get(f);
    if (fl) fl.push(i);
    else byFamily.set(f, [i]);
    for (let k = 0; k < s.provides.length; k++) {
      const pf = familyKey(s.provides[k]!);
      const l = providers.get(pf);
      if (!l) providers.set(pf, [i]);
      else if (l[l.length - 1] !== i) l.push(i);
    }
  });
  return (i, add) => {
    const reqs = sorted[i]!.requires;
    for (let r = 0; r < reqs.length; r++) {
      const d = reqs[r]!;
      const f = familyKey(d);
      const fam = byFamily.get(f);
      if (fam) {
        for (const j of fam) if (j !== i && satisfies(sorted[j]!.version, d.selector)) add(j);
      }
      const provs = providers.get(f);
      if (provs) {
        for (const j of provs) if (j !== i && providesDep(sorted[j]!, f, d.selector)) add(j);
      }
    }
  };
}

/** dependencyOrder over specs already sorted by id; returns their indices. */
export function orderOfSorted(
  sorted: readonly PackageSpec[],
  first: readonly string[],
  neighbours: Neighbours = matchNeighbours(sorted),
): number[] {
  // `mark[j] === stamp` ⇔ j is already among this call's edges (no Set per node).
  const mark = new Int32Array(sorted.length);
  let stamps = 0;
  let cur = -1;
  let found: number[] = [];
  const add = (j: number): void => {
    if (j !== cur && mark[j] !== stamps) {
      mark[j] = stamps;
      found.push(j);
    }
  };
  const edges = (i: number): number[] => {
    const out: number[] = (found = []);
    cur = i;
    stamps++;
    neighbours(i, add);
    // Insertion sort: edge lists are short, and Array#sort allocates on every call.
    for (let x = 1; x < out.length; x++) {
      const e = out[x]!;
      let y = x - 1;
      while (y >= 0 && out[y]! > e) {
        out[y + 1] = out[y]!;
        y--;
      }
      out[y + 1] = e;
    }
    return out;
  };
  const state = new Uint8Array(sorted.length); // 0 new, 1 on stack, 2 done
  const out: number[] = [];
  const firstSet = new Set(first);
  const roots = [
    ...sorted.flatMap((s, i) => (firstSet.has(familyKey(s)) ? [i] : [])),
    ...sorted.map((_, i) => i),
  ];
  for (const root of roots) {
    if (state[root]) continue;
    // Iterative DFS: [node, its edges, next edge index].
    const stack: Array<[number, number[], number]> = [[root, edges(root), 0]];
    state[root] = 1;
    while (stack.length > 0) {
      const top = stack[stack.length - 1]!;
      if (top[2] < top[1].length) {
        const next = top[1][top[2]++]!;
        if (state[next] === 0) {
          state[next] = 1;
          stack.push([next, edges(next), 0]);
        }
      } else {
        state[top[0]] = 2;
        out.push(top[0]);
        stack.pop();
      }
    }
  }
  return out;
}
