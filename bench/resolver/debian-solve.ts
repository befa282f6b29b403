/**
 * The cpm side of the Debian comparison, run in a child process so its peak RSS and timings are
 * cpm's alone (not the converter's): load the universe from cpm's own repository index (zstd JSON →
 * IndexUniverse) `reps` times, then solve each install job `solveReps` times (the first solve of a
 * job is cold: index entries decoded on first use, JIT). Prints one JSON line.
 *
 *   tsx bench/resolver/debian-solve.ts INDEX JOB[,JOB...] REPS [SOLVE_REPS]
 */
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { parseIndex } from '../../src/repo/repo-index.js';
import { IndexUniverse } from '../../src/repo/index-universe.js';
import { resolve } from '../../src/resolver/resolve.js';
import { parseRef } from '../../src/package/ref.js';
import { violations } from './verify.js';

export interface CpmDebianResult {
  /** Each load of the index, ms (the first one is cold). */
  loadMs: number[];
  jobs: Array<{
    job: string;
    /** Each solve, ms (the first one is cold: JIT, lazy index entries). */
    solveMs: number[];
    satisfiable: boolean;
    final: string[];
    problems: string[];
    violations: string[];
    deterministic: boolean;
  }>;
  maxRssMb: number;
}

export async function solveDebianIndex(
  indexFile: string,
  jobs: string[],
  reps: number,
  solveReps = reps,
): Promise<CpmDebianResult> {
  const loadMs: number[] = [];
  let universe: IndexUniverse | undefined;
  for (let i = 0; i < reps; i++) {
    universe = undefined; // let the previous copy go before timing the next load
    const t0 = performance.now();
    const idx = await parseIndex(readFileSync(indexFile), indexFile);
    universe = new IndexUniverse([{ name: 'debian', priority: 1, index: idx }]);
    loadMs.push(performance.now() - t0);
  }
  const out: CpmDebianResult['jobs'] = [];
  for (const job of jobs) {
    const solveMs: number[] = [];
    let first: string[] | undefined;
    let deterministic = true;
    let plan;
    for (let i = 0; i < solveReps; i++) {
      const t0 = performance.now();
      plan = resolve(universe!, [], { op: 'install', targets: [parseRef(job)] });
      solveMs.push(performance.now() - t0);
      if (first && JSON.stringify(first) !== JSON.stringify(plan.final)) deterministic = false;
      first ??= plan.final;
    }
    out.push({
      job,
      solveMs,
      satisfiable: plan!.satisfiable,
      final: plan!.final,
      problems: plan!.problems.map((p) => p.message),
      violations: plan!.satisfiable ? violations(plan!.finalSpecs) : [],
      deterministic,
    });
  }
  return { loadMs, jobs: out, maxRssMb: Math.round(process.resourceUsage().maxRSS / 1024) };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const [indexFile, jobs, reps, solveReps] = process.argv.slice(2);
  const r = await solveDebianIndex(
    indexFile!,
    jobs!.split(','),
    Number(reps ?? 3),
    Number(solveReps ?? reps ?? 3),
  );
  process.stdout.write(JSON.stringify(r) + '\n');
}
