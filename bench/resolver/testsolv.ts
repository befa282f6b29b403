/** Runs libsolv's `testsolv` on a testtags repository and reports its answer, times and peak RSS. */
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';

export interface TestsolvResult {
  /** Packages the transaction installs (name-evr.arch@repo), empty when there were problems. */
  installs: string[];
  problems: string[];
  /** libsolv's own "solver_solve took N ms". */
  solveMs: number;
  /** Wall time of the whole run (repository load + solve). */
  wallMs: number;
  maxRssKb: number;
}

export function haveTestsolv(): boolean {
  return spawnSync('testsolv', [], { encoding: 'utf8' }).error === undefined;
}

/** Writes `<dir>/<name>.t` installing `jobs` on an empty system and runs it. */
export function runTestsolv(
  dir: string,
  repoFile: string,
  name: string,
  jobs: string[],
): TestsolvResult {
  const tc = join(dir, `${name}.t`);
  writeFileSync(
    tc,
    [
      'repo system 0 testtags <inline>',
      // testsolv resolves repository paths against the test case's directory.
      `repo available 0 testtags ${relative(dir, repoFile)}`,
      'system x86_64 deb system',
      'solverflags ignorerecommended',
      ...jobs.map((j) => `job install name ${j}`),
      'result transaction,problems <inline>',
      '',
    ].join('\n'),
  );
  const t0 = performance.now();
  const r = spawnSync('/usr/bin/time', ['-f', 'maxrss=%M', 'testsolv', '-v', tc], {
    encoding: 'utf8',
    maxBuffer: 1 << 28,
  });
  const wallMs = performance.now() - t0;
  if (r.error) throw r.error;
  const out = `${r.stdout}\n${r.stderr}`;
  const bad = /testcase_read: (.*)/.exec(out);
  if (bad) throw new Error(`testsolv: ${bad[1]}`);
  const installs: string[] = [];
  const problems: string[] = [];
  for (const line of out.split('\n')) {
    const m = /^\+install (\S+)/.exec(line);
    if (m) installs.push(m[1]!);
    if (line.startsWith('+problem')) problems.push(line.slice(1));
  }
  const solve = /solver_solve took (\d+) ms/.exec(out);
  const rss = /maxrss=(\d+)/.exec(out);
  return {
    installs,
    problems,
    solveMs: solve ? Number(solve[1]) : NaN,
    wallMs,
    maxRssKb: rss ? Number(rss[1]) : NaN,
  };
}
