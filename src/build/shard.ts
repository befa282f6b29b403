/**
 * `cpm build --shard I/N`: the part of a plan one runner of a CI matrix builds. Every runner plans
 * the same tree the same way, so each computes the same split without talking to the others.
 *
 * The packages nothing else in the plan builds on (the "tops") are dealt out: largest closure
 * first, each to the shard that would build the fewest new packages with it (ties: the lower
 * shard). A shard builds its tops and their build dependencies. Tops are disjoint; a dependency
 * that tops of several shards need is built by each of them unless the output or the cache has
 * it already — with the same build hash, so the same digest, and pushes of equal bytes are
 * harmless. Build shared bases first in their own job to avoid that work twice.
 */
import { CpmError } from '../errors.js';
import type { BuildNode, BuildPlan } from './plan.js';

export interface Shard {
  /** 1-based. */
  index: number;
  count: number;
}

/** "2/4" → { index: 2, count: 4 }; E_USAGE otherwise. */
export function parseShard(s: string): Shard {
  const m = /^(\d+)\/(\d+)$/.exec(s.trim());
  const index = m ? Number(m[1]) : NaN;
  const count = m ? Number(m[2]) : NaN;
  if (!m || count < 1 || index < 1 || index > count)
    throw new CpmError('E_USAGE', `--shard ${s}: expected I/N with 1 ≤ I ≤ N (e.g. 1/3)`);
  return { index, count };
}

function closure(n: BuildNode, into: Set<BuildNode>): Set<BuildNode> {
  if (into.has(n)) return into;
  into.add(n);
  for (const d of n.deps) closure(d, into);
  return into;
}

/** The nodes of `plan` shard `shard` builds, in build order. */
export function shardOf(plan: BuildPlan, shard: Shard): BuildNode[] {
  const needed = new Set<BuildNode>();
  for (const n of plan.order) for (const d of n.deps) needed.add(d);
  const tops = plan.order
    .filter((n) => !needed.has(n))
    .map((n) => ({ n, all: closure(n, new Set()) }))
    .sort((a, b) => b.all.size - a.all.size || (a.n.id < b.n.id ? -1 : 1));
  const shards = Array.from({ length: shard.count }, () => new Set<BuildNode>());
  for (const t of tops) {
    let best = 0;
    let bestSize = Infinity;
    shards.forEach((s, i) => {
      let added = 0;
      for (const x of t.all) if (!s.has(x)) added++;
      if (s.size + added < bestSize) {
        best = i;
        bestSize = s.size + added;
      }
    });
    for (const x of t.all) shards[best]!.add(x);
  }
  const mine = shards[shard.index - 1]!;
  return plan.order.filter((n) => mine.has(n));
}
