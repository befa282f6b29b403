/**
 * Resolver benchmark: `npx tsx bench/resolver/run.ts [--quick] [--runs N] [--jobs=a,b,c]`
 * (or `npm run bench -- resolver`). Every timed figure is the median of N runs (default 3); a
 * Debian solve is the median of max(10, N + 1) - 1 warm solves (steady state, as JIT benchmarks
 * are read); the cold first solve and the second one (V8 still optimising) are shown apart.
 *
 * 1. Debian: the apt Packages indexes (/var/lib/apt/lists, after `apt-get update`) converted into
 *    cpm's model (debian.ts), written as a cpm repository index (zstd JSON, as `repo create` writes
 *    it) and as a libsolv testtags repository. A child process loads cpm's index and solves the
 *    install jobs (debian-solve.ts: its own peak RSS); `testsolv` solves the same jobs on the same
 *    converted problem. Both answers are checked against every constraint and compared in size.
 * 2. Synthetic seeded universes of 1k / 10k / 100k packages (synthetic.ts): load + solve, with
 *    testsolv on the same universe as the baseline.
 * 3. luet's published shapes (luet-shapes.ts): 20×78 upgrade, 800-family UNSAT with explanation,
 *    400 random worlds; the baseline there is luet's own published figures.
 *
 * --quick: Debian `bash` only, 1k synthetic, 100 random worlds, one run each (a smoke test; cold
 * single runs, so its ratios mean little).
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { packageId, type PackageSpec } from '../../src/package/package.js';
import { parseRef } from '../../src/package/ref.js';
import { resolve } from '../../src/resolver/resolve.js';
import { PackageUniverse } from '../../src/package/universe.js';
import {
  canonicalJson,
  compactIndexPackage,
  comparePackages,
  INDEX_SCHEMA_VERSION,
  depToIndex,
  serializeIndex,
  type RepoIndex,
} from '../../src/repo/repo-index.js';
import { createCompressor } from '../../src/util/compress.js';
import { contentKey } from '../../src/repo/content-key.js';
import { convertDebian, readPackagesText, toTesttags } from './debian.js';
import type { CpmDebianResult } from './debian-solve.js';
import { randomWorlds, unsatShape, upgradeShape } from './luet-shapes.js';
import { synthetic } from './synthetic.js';
import { haveTestsolv, runTestsolv, type TestsolvResult } from './testsolv.js';
import { violations } from './verify.js';

export interface ResolverBenchOptions {
  quick?: boolean;
  runs?: number;
  jobs?: string[];
}

/** One measured figure against its target (for the lead's summary). */
export interface ResolverFigure {
  name: string;
  value: string;
  target: string;
  met: boolean;
}

const HERE = fileURLToPath(new URL('.', import.meta.url));
const TSX = join(HERE, '..', '..', 'node_modules', '.bin', 'tsx');

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s[(s.length - 1) >> 1]!;
};
const ms = (x: number): string => (Number.isFinite(x) ? x.toFixed(x < 10 ? 1 : 0) : '-');
const ratio = (a: number, b: number): string =>
  Number.isFinite(a) && Number.isFinite(b) && b > 0 ? (a / b).toFixed(2) : '-';
function time<T>(f: () => T): [T, number] {
  const t0 = performance.now();
  const v = f();
  return [v, performance.now() - t0];
}
function table(head: string[], body: string[][]): void {
  const w = head.map((h, i) => Math.max(h.length, ...body.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]): string =>
    r.map((c, i) => (i === 0 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join('  ');
  console.log(line(head));
  console.log(w.map((x) => '-'.repeat(x)).join('  '));
  for (const r of body) console.log(line(r));
  console.log();
}

async function compressQuick(json: Buffer): Promise<Buffer> {
  const chunks: Buffer[] = [];
  const z = createCompressor('zstd', 3);
  const done = new Promise<void>((res, rej) => {
    z.on('data', (c: Buffer) => chunks.push(c));
    z.on('end', res);
    z.on('error', rej);
  });
  z.end(json);
  await done;
  return Buffer.concat(chunks);
}

/** testsolv's answer as specs of the converted universe (to check it with the same checker). */
function libsolvAnswer(ts: TestsolvResult, byEvr: Map<string, PackageSpec>): PackageSpec[] {
  const out: PackageSpec[] = [];
  for (const i of ts.installs) {
    const evr = i.replace(/@[^@]*$/, '').replace(/\.x86_64$/, '');
    const s = byEvr.get(evr);
    if (s) out.push(s);
  }
  return out;
}

/** `reps` testsolv runs of one job: median solve, median wall, last answer. */
function testsolvRuns(
  dir: string,
  repo: string,
  name: string,
  jobs: string[],
  reps: number,
): { solveMs: number; wallMs: number; last: TestsolvResult; maxRssKb: number } {
  const rs = Array.from({ length: reps }, () => runTestsolv(dir, repo, name, jobs));
  return {
    solveMs: median(rs.map((r) => r.solveMs)),
    wallMs: median(rs.map((r) => r.wallMs)),
    last: rs.at(-1)!,
    maxRssKb: Math.max(...rs.map((r) => r.maxRssKb)),
  };
}

/** Solves per Debian job in the cpm child: one cold, then at least nine warm. */
const solveReps = (opts: Required<ResolverBenchOptions>): number =>
  opts.quick ? 1 : Math.max(10, opts.runs + 1);

// ---------------------------------------------------------------------------------------------
async function debian(
  work: string,
  opts: Required<ResolverBenchOptions>,
  figures: ResolverFigure[],
): Promise<void> {
  const [{ text, files }, readMs] = time(() => readPackagesText());
  const [conv, convMs] = time(() => convertDebian(text));
  console.log(
    `Debian: ${files.length} Packages files, ${conv.stats.packages} packages, ` +
      `${conv.stats.synthetic} synthetic names (alternatives, versioned names with unversioned ` +
      `providers), ${conv.stats.dropped} unparseable deps dropped ` +
      `(lz4 read ${ms(readMs)} ms, convert ${ms(convMs)} ms)\n`,
  );
  // cpm's own repository index: metadata-only entries, keyed as `repo create` keys them.
  const index: RepoIndex = {
    schemaVersion: INDEX_SCHEMA_VERSION,
    repository: { name: 'debian', revision: 1, timestamp: 0 },
    packages: conv.specs.map((s) => {
      const meta = {
        category: s.category,
        name: s.name,
        version: s.version,
        requires: s.requires.map(depToIndex),
        conflicts: s.conflicts.map(depToIndex),
        provides: s.provides.map(depToIndex),
        labels: {},
        annotations: {},
        uri: [],
        hidden: false,
        extra: {},
      };
      return { ...meta, contentKey: contentKey({ meta }) };
    }),
  };
  const tSer = performance.now();
  // `repo create` compresses at zstd -19, which takes a minute here; --quick uses -3 (same format,
  // similar decompression speed).
  const data = opts.quick
    ? await compressQuick(
        Buffer.from(
          canonicalJson({
            ...index,
            packages: index.packages.map(compactIndexPackage).sort(comparePackages),
          }),
        ),
      )
    : (await serializeIndex(index, 'zstd')).data;
  const ser = { data };
  const serMs = performance.now() - tSer;
  const indexFile = join(work, 'debian-index.json.zst');
  writeFileSync(indexFile, ser.data);
  const ttFile = join(work, 'debian.testtags');
  writeFileSync(ttFile, toTesttags(conv.specs));
  const byEvr = new Map(conv.specs.map((s) => [`${s.name}-${s.version}`, s]));
  const names = new Set(conv.specs.map((s) => s.name));
  const jobs =
    opts.jobs.length > 0
      ? opts.jobs
      : opts.quick
        ? ['bash']
        : [
            'bash',
            'python3',
            names.has('task-gnome-desktop') ? 'task-gnome-desktop' : 'gnome-core',
          ];

  console.log(
    `wrote cpm index (${(ser.data.length / 1e6).toFixed(1)} MB zstd, serialised in ${ms(serMs)} ms) ` +
      'and testtags\n',
  );
  const child = spawnSync(
    TSX,
    [
      join(HERE, 'debian-solve.ts'),
      indexFile,
      jobs.join(','),
      String(opts.runs),
      String(solveReps(opts)),
    ],
    {
      encoding: 'utf8',
      maxBuffer: 1 << 26,
    },
  );
  if (child.status !== 0) throw new Error(`debian-solve failed: ${child.stderr}`);
  const cpm = JSON.parse(child.stdout.trim().split('\n').at(-1)!) as CpmDebianResult;

  const have = haveTestsolv();
  if (!have) console.log('testsolv not found (apt-get install libsolv-tools): no baseline\n');
  const load = have ? testsolvRuns(work, ttFile, 'load-only', [], opts.runs) : null;
  const body: string[][] = [];
  for (const j of cpm.jobs) {
    const ts = have ? testsolvRuns(work, ttFile, j.job, [j.job], opts.runs) : null;
    const lib = ts ? libsolvAnswer(ts.last, byEvr) : [];
    const libBad = ts
      ? ts.last.problems.length > 0
        ? ['problems']
        : lib.length !== ts.last.installs.length
          ? ['unmapped names']
          : violations(lib)
      : [];
    // The first solve is cold (index entries decoded on first use, code not compiled yet) and the
    // next few run while V8 is still optimising: both are shown on their own. The figure compared
    // with testsolv's solver_solve (which excludes its own index preparation) is the median of the
    // warm ones.
    const cpmMed = median(j.solveMs.length > 1 ? j.solveMs.slice(1) : j.solveMs);
    const bad = j.satisfiable ? j.violations : ['unsatisfiable'];
    if (!j.deterministic) bad.push('not deterministic');
    body.push([
      j.job,
      ms(cpmMed),
      ms(j.solveMs[0]!),
      j.solveMs.length > 1 ? ms(j.solveMs[1]!) : '-',
      ts ? ms(ts.solveMs) : '-',
      ts ? ratio(cpmMed, Math.max(1, ts.solveMs)) : '-',
      String(j.final.length),
      ts ? String(ts.last.installs.length) : '-',
      bad.length === 0 ? 'valid' : `INVALID: ${bad.slice(0, 2).join('; ')}`,
      ts ? (libBad.length === 0 ? 'valid' : `INVALID: ${libBad.slice(0, 2).join('; ')}`) : '-',
    ]);
    if (!j.satisfiable) console.log(j.problems.join('\n'));
    if (ts) {
      figures.push({
        name: `debian ${j.job} solve ratio`,
        value: ratio(cpmMed, Math.max(1, ts.solveMs)),
        target: '<= 3',
        met: cpmMed <= 3 * Math.max(1, ts.solveMs),
      });
    }
  }
  console.log(
    `Debian install jobs (cpm: resolve() on the loaded universe, encoding included, median of ` +
      `${solveReps(opts) - 1} warm solves after a cold one; testsolv: its own "solver_solve took", ` +
      `median of ${opts.runs} runs, 1 ms resolution, ratio against max(1, it))`,
  );
  table(
    [
      'job',
      'cpm ms',
      'cpm cold ms',
      'cpm 2nd ms',
      'testsolv ms',
      'ratio',
      'cpm pkgs',
      'libsolv pkgs',
      'cpm answer',
      'libsolv answer',
    ],
    body,
  );
  const cpmLoad = median(cpm.loadMs);
  const libLoad = load ? load.wallMs : NaN;
  table(
    ['universe load', 'ms', 'ratio', 'peak RSS MB'],
    [
      [
        'cpm: zstd JSON index → IndexUniverse (child process)',
        ms(cpmLoad),
        ratio(cpmLoad, libLoad),
        String(cpm.maxRssMb),
      ],
      [
        'testsolv: testtags repository, whole run without a job',
        ms(libLoad),
        '1.00',
        load ? String(Math.round(load.maxRssKb / 1024)) : '-',
      ],
    ],
  );
  figures.push(
    {
      name: 'debian load ratio',
      value: ratio(cpmLoad, libLoad),
      target: '<= 3',
      met: cpmLoad <= 3 * libLoad,
    },
    {
      name: 'debian peak RSS MB',
      value: String(cpm.maxRssMb),
      target: '< 1024',
      met: cpm.maxRssMb < 1024,
    },
  );
}

// ---------------------------------------------------------------------------------------------
function syntheticBench(
  work: string,
  opts: Required<ResolverBenchOptions>,
  figures: ResolverFigure[],
): void {
  const body: string[][] = [];
  const have = haveTestsolv();
  for (const n of opts.quick ? [1_000] : [1_000, 10_000, 100_000]) {
    const { specs, targets } = synthetic(n, 42);
    const loads: number[] = [];
    const solves: number[] = [];
    let plan;
    for (let i = 0; i < opts.runs; i++) {
      const [u, loadMs] = time(() => new PackageUniverse(specs));
      const [p, solveMs] = time(() =>
        resolve(u, [], { op: 'install', targets: targets.map(parseRef) }),
      );
      loads.push(loadMs);
      solves.push(solveMs);
      plan = p;
    }
    const bad = plan!.satisfiable ? violations(plan!.finalSpecs) : ['unsatisfiable'];
    let ts = null;
    if (have) {
      const file = join(work, `synthetic-${n}.testtags`);
      writeFileSync(file, toTesttags(specs));
      ts = testsolvRuns(
        work,
        file,
        `synthetic-${n}`,
        targets.map((t) => parseRef(t).name),
        opts.runs,
      );
    }
    const total = median(loads) + median(solves);
    body.push([
      `${n} packages`,
      ms(median(loads)),
      ms(median(solves)),
      ms(total),
      ts ? ms(ts.solveMs) : '-',
      ts ? ratio(median(solves), Math.max(1, ts.solveMs)) : '-',
      String(plan!.final.length),
      ts ? String(ts.last.installs.length) : '-',
      bad.length === 0 ? 'valid' : `INVALID: ${bad[0]}`,
    ]);
    if (n === 100_000) {
      figures.push({
        name: 'synthetic 100k load+solve ms',
        value: ms(total),
        target: '< 10000',
        met: total < 10_000,
      });
    }
  }
  console.log(
    `Synthetic seeded universes, median of ${opts.runs} (5 versions per family, core-skewed ` +
      'dependencies, conflict chains; install 5 leaf families)',
  );
  table(
    [
      'universe',
      'load ms',
      'solve ms',
      'load+solve ms',
      'testsolv ms',
      'ratio',
      'cpm pkgs',
      'libsolv pkgs',
      'answer',
    ],
    body,
  );
}

// ---------------------------------------------------------------------------------------------
function luetShapes(opts: Required<ResolverBenchOptions>, figures: ResolverFigure[]): void {
  const up = upgradeShape();
  const upRuns = Array.from({ length: opts.runs }, () =>
    time(() => resolve(up.universe, up.installed, { op: 'upgrade' })),
  );
  const plan = upRuns.at(-1)![0];
  const upMs = median(upRuns.map((r) => r[1]));
  const allNewest = plan.finalSpecs.every((s) => s.version === '78');
  const un = unsatShape();
  const unRuns = Array.from({ length: opts.runs }, () =>
    time(() => resolve(un.universe, [], { op: 'install', targets: un.targets.map(parseRef) })),
  );
  const uplan = unRuns.at(-1)![0];
  const unMs = median(unRuns.map((r) => r[1]));
  const first = uplan.problems[0];
  const worlds = opts.quick ? 100 : 400;
  const rw = randomWorlds(worlds);
  console.log(
    `luet's published shapes, median of ${opts.runs} (luet: 16 s; > 90 s and no explanation; ` +
      '39–64 of 400 needlessly old)',
  );
  table(
    ['shape', 'cpm ms', 'target', 'result'],
    [
      [
        'upgrade 20 families × 78 versions',
        ms(upMs),
        '< 500',
        `${plan.final.length} upgraded, all newest: ${allNewest}`,
      ],
      [
        `UNSAT 800 families (${un.clauses} relations)`,
        ms(unMs),
        '< 2000',
        `${uplan.satisfiable ? 'SAT?!' : 'UNSAT'}, ${uplan.problems.length} problems listed`,
      ],
      [
        `${worlds} random worlds`,
        '',
        '0 old',
        `${rw.needlesslyOld} needlessly old, ${rw.invalid} invalid (${rw.sat} sat, ${rw.unsat} unsat)`,
      ],
    ],
  );
  if (first) console.log(`first explanation: ${first.message}\n`);
  figures.push(
    {
      name: 'luet upgrade 20x78 ms',
      value: ms(upMs),
      target: '< 500',
      met: upMs < 500 && allNewest,
    },
    {
      name: 'luet UNSAT 800 ms',
      value: ms(unMs),
      target: '< 2000',
      met: unMs < 2000 && !uplan.satisfiable && first !== undefined,
    },
    {
      name: 'random worlds needlessly old',
      value: String(rw.needlesslyOld),
      target: '0',
      met: rw.needlesslyOld === 0 && rw.invalid === 0,
    },
  );
  void packageId;
}

/** Runs the whole resolver benchmark, printing its tables; returns the figures against targets. */
export async function runResolverBench(
  options: ResolverBenchOptions = {},
): Promise<ResolverFigure[]> {
  const opts: Required<ResolverBenchOptions> = {
    quick: options.quick ?? false,
    runs: options.runs ?? (options.quick ? 1 : 3),
    jobs: options.jobs ?? [],
  };
  const base = fileURLToPath(new URL('../.work/', import.meta.url));
  mkdirSync(base, { recursive: true });
  const work = mkdtempSync(join(base, 'resolver-'));
  const figures: ResolverFigure[] = [];
  const t0 = performance.now();
  const lap = (what: string): void =>
    console.log(`[${what}: ${((performance.now() - t0) / 1000).toFixed(1)} s into the run]\n`);
  try {
    await debian(work, opts, figures).catch((e: Error) =>
      console.log(`Debian part skipped: ${e.message}\n`),
    );
    lap('Debian done');
    syntheticBench(work, opts, figures);
    lap('synthetic done');
    luetShapes(opts, figures);
    lap('luet shapes done');
  } finally {
    // CPM_BENCH_KEEP=1 keeps the converted index and testtags for profiling single solves.
    if (process.env.CPM_BENCH_KEEP === '1') console.log(`kept ${work}`);
    else rmSync(work, { recursive: true, force: true });
  }
  table(
    ['figure', 'value', 'target', 'met'],
    figures.map((f) => [f.name, f.value, f.target, f.met ? 'yes' : 'NO']),
  );
  return figures;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const args = process.argv.slice(2);
  const runsAt = args.indexOf('--runs');
  await runResolverBench({
    quick: args.includes('--quick'),
    ...(runsAt >= 0 ? { runs: Number(args[runsAt + 1]) } : {}),
    ...(args.some((a) => a.startsWith('--jobs='))
      ? {
          jobs: args
            .find((a) => a.startsWith('--jobs='))!
            .slice(7)
            .split(','),
        }
      : {}),
  });
}
