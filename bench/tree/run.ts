/**
 * The Debian universe as a user meets it, each command a fresh `node bin/cpm.js` process (after
 * `npm run build`), into output directories that did not exist (issue #15):
 *
 * 1. `cpm tree validate` of the Debian tree (bench/tree/debian-tree.ts: 65k metadata-only
 *    packages in 58 collection.yaml files, 32 MB of YAML). Targets: ≤ 20 s, < 600 MB.
 * 2. `cpm repo create --tree T --output dir://NEW`. Target: ≤ 30 s.
 * 3. `cpm install debian/JOB --dry-run --json --repo dir://REPO` per job (load the index, solve,
 *    print the plan) against libsolv through python3-solv loading the same Debian Packages files
 *    and solving the same job (libsolv-solve.py), interleaved. Target: ≤ 1.5× libsolv. Every cpm
 *    plan is checked against every constraint of the converted universe. A second libsolv row
 *    loads a .solv cache written from those files beforehand (untimed), as zypper and dnf keep
 *    one between runs: the fairer comparison with cpm reading its own prepared index.
 *
 * `--before DIR`: also time another build (DIR/bin/cpm.js, e.g. a copy of main's bin/ and dist/
 * before a change) in the same rounds, with its own repository; its plans must be identical.
 *
 * `--cpm DIR`: time DIR/bin/cpm.js instead of this checkout's (a copy, so a rebuild during the
 * run changes nothing).
 *
 * `--resolve-only`: steps 1 and 2 untimed (the repositories are still made), step 3 timed.
 *
 *   npx tsx bench/tree/run.ts [--runs N] [--heavy-runs N] [--jobs a,b] [--before DIR] [--cpm DIR]
 *                             [--resolve-only] [--quick]
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { packageId, type PackageSpec } from '../../src/package/package.js';
import { convertDebian, readPackagesText } from '../resolver/debian.js';
import { violations } from '../resolver/verify.js';
import { median, timeInterleaved, type TimedCase, type Timing } from '../support.js';
import { CATEGORY, writeDebianTree } from './debian-tree.js';

const HERE = fileURLToPath(new URL('.', import.meta.url));
const argv = process.argv.slice(2);
const opt = (name: string): string | undefined => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : undefined;
};
const QUICK = argv.includes('--quick');
const RUNS = Number(opt('runs') ?? (QUICK ? 1 : 3));
const HEAVY_RUNS = Number(opt('heavy-runs') ?? 1);
const JOBS = (opt('jobs') ?? (QUICK ? 'bash' : 'bash,python3,build-essential,gnome-core,kde-full'))
  .split(',')
  .filter(Boolean);
const BEFORE = opt('before');
const RESOLVE_ONLY = argv.includes('--resolve-only');
const PY = '/usr/bin/python3';
const LIBSOLV = join(HERE, '../resolver/libsolv-solve.py');
const SOLV_TEXT = 'libsolv (python3-solv)';
const SOLV_CACHE = 'libsolv, .solv cache (python3-solv)';

const load = (): string =>
  loadavg()
    .map((x) => x.toFixed(1))
    .join(' ');
const s = (ms: number): string => (ms / 1000).toFixed(2);

interface Build {
  label: string;
  bin: string;
  repo: string;
}

function table(rows: Array<{ t: Timing; base?: Timing }>): void {
  console.log('| command | wall s | CPU s | peak RSS MB | wall × base | CPU × base |');
  console.log('|---|---|---|---|---|---|');
  for (const { t, base } of rows) {
    const [w, c] = [median(t.wall), median(t.cpu)];
    const ratio = (a: number, b?: number): string => (b ? `${(a / b).toFixed(2)}×` : '');
    console.log(
      `| ${t.name} | ${s(w)} | ${s(c)} | ${Math.round(median(t.rssKb) / 1024)} | ` +
        `${ratio(w, base && median(base.wall))} | ${ratio(c, base && median(base.cpu))} |`,
    );
  }
  console.log();
}

function main(): void {
  const work = mkdtempSync(join(tmpdir(), 'cpm-bench-tree-'));
  try {
    const { text } = readPackagesText();
    const { specs } = convertDebian(text);
    const tree = join(work, 'tree');
    const bytes = writeDebianTree(tree, specs);
    const byId = new Map<string, PackageSpec>(specs.map((p) => [`${CATEGORY}/${packageId(p)}`, p]));
    // libsolv reads the Packages files themselves (uncompressed here, untimed).
    const pk = join(work, 'packages');
    mkdirSync(pk);
    for (const f of readdirSync('/var/lib/apt/lists').filter((f) =>
      /_binary-amd64_Packages\.lz4$/.test(f),
    )) {
      const r = spawnSync('lz4', ['-dqf', join('/var/lib/apt/lists', f), join(pk, f.slice(0, -4))]);
      if (r.status !== 0) throw new Error(`lz4 ${f} failed`);
    }
    const packagesFiles = readdirSync(pk).map((f) => join(pk, f));
    const haveSolv = spawnSync(PY, ['-c', 'import solv']).status === 0;
    const solvCache = join(work, 'debian.solv');
    if (haveSolv) {
      const w = spawnSync(PY, [LIBSOLV, '--write-solv', solvCache, ...packagesFiles]);
      if (w.status !== 0) throw new Error(`writing the .solv cache failed: ${String(w.stderr)}`);
    }
    const root = join(work, 'root');
    mkdirSync(root);
    const cpmBuilds: Build[] = [
      {
        label: 'cpm',
        bin: resolve(opt('cpm') ?? resolve(HERE, '../..'), 'bin/cpm.js'),
        repo: join(work, 'repo'),
      },
      ...(BEFORE
        ? [
            {
              label: 'cpm before',
              bin: resolve(BEFORE, 'bin/cpm.js'),
              repo: join(work, 'repo-before'),
            },
          ]
        : []),
    ];
    console.log(
      `Debian tree: ${specs.length} packages, ${(bytes / 1e6).toFixed(1)} MB of YAML; ` +
        `jobs ${JOBS.join(', ')}; load average ${load()} (1, 5, 15 min) at the start\n`,
    );

    // 1 + 2: tree load and repo create (heavy: --heavy-runs, no warm-up round).
    const heavy: TimedCase[] = cpmBuilds.flatMap((b) => [
      {
        name: `${b.label}: tree validate`,
        argv: ['node', b.bin, 'tree', 'validate', '--tree', tree],
      },
      {
        name: `${b.label}: repo create (new dir)`,
        argv: ['node', b.bin, 'repo', 'create', '--tree', tree, '--output', `dir://${b.repo}`],
        before: () => rmSync(b.repo, { recursive: true, force: true }),
      },
    ]);
    // the last repo create of each build stays: the resolve rounds read it
    // --resolve-only: the repositories are made untimed (one run) and only step 3 is shown.
    const heavyT = timeInterleaved(
      RESOLVE_ONLY ? heavy.filter((c) => c.before) : heavy,
      RESOLVE_ONLY ? 1 : HEAVY_RUNS,
      false,
    );
    if (!RESOLVE_ONLY) {
      console.log(`Tree load and repo create (median of ${HEAVY_RUNS}; load average ${load()}):\n`);
      // with --before, this build's rows are compared with the before build's (rows 3 and 4)
      table(heavyT.map((t, i) => ({ t, base: BEFORE && i < 2 ? heavyT[i + 2] : undefined })));
    }

    // 3: resolve through the repository, fresh process per job, against libsolv.
    const plans = new Map<string, string>();
    const problems: string[] = [];
    const cases: TimedCase[] = [];
    for (const job of JOBS) {
      if (haveSolv) {
        cases.push(
          { name: `${SOLV_TEXT}: ${job}`, argv: [PY, LIBSOLV, job, ...packagesFiles] },
          { name: `${SOLV_CACHE}: ${job}`, argv: [PY, LIBSOLV, '--solv', solvCache, job] },
        );
      }
      for (const b of cpmBuilds) {
        cases.push({
          name: `${b.label}: install ${CATEGORY}/${job} --dry-run --json`,
          argv: [
            'node',
            b.bin,
            'install',
            `${CATEGORY}/${job}`,
            '--dry-run',
            '--json',
            '--repo',
            `dir://${b.repo}`,
            '--root',
            root,
          ],
          output: (out) => {
            const plan = JSON.parse(out) as { satisfiable: boolean; install: string[] };
            const key = JSON.stringify(plan.install);
            const first = plans.get(job);
            if (first !== undefined && first !== key)
              problems.push(`${b.label} ${job}: plan differs`);
            plans.set(job, key);
            if (!plan.satisfiable) problems.push(`${b.label} ${job}: unsatisfiable`);
            const set = plan.install.map((id) => byId.get(id));
            if (set.some((p) => p === undefined)) problems.push(`${b.label} ${job}: unknown id`);
            const bad = violations(set.filter((p): p is PackageSpec => p !== undefined));
            if (bad.length) problems.push(`${b.label} ${job}: ${bad.slice(0, 3).join('; ')}`);
          },
        });
      }
    }
    const t = timeInterleaved(cases, RUNS);
    const per = haveSolv ? 2 + cpmBuilds.length : cpmBuilds.length;
    console.log(
      `Resolve through the repository, fresh process per job (median of ${RUNS} interleaved ` +
        `rounds after a warm-up; load average ${load()}):\n`,
    );
    const rows: Array<{ t: Timing; base?: Timing }> = [];
    for (let j = 0; j < JOBS.length; j++) {
      const group = t.slice(j * per, (j + 1) * per);
      const base = haveSolv ? group[0] : undefined;
      for (const g of group) rows.push({ t: g, base: g === base ? undefined : base });
    }
    table(rows);
    const sum = (name: string, f: (x: Timing) => number): number =>
      t.filter((x) => x.name.startsWith(`${name}:`)).reduce((a, x) => a + f(x), 0);
    if (haveSolv) {
      const lw = sum(SOLV_TEXT, (x) => median(x.wall));
      const lc = sum(SOLV_TEXT, (x) => median(x.cpu));
      const cw = sum(SOLV_CACHE, (x) => median(x.wall));
      const cc = sum(SOLV_CACHE, (x) => median(x.cpu));
      for (const b of cpmBuilds) {
        const w = sum(b.label, (x) => median(x.wall));
        const c = sum(b.label, (x) => median(x.cpu));
        console.log(
          `${b.label} over all jobs: ${s(w)} s wall (${(w / lw).toFixed(2)}× libsolv's ${s(lw)}), ` +
            `${s(c)} s CPU (${(c / lc).toFixed(2)}× libsolv's ${s(lc)}); target ≤ 1.5×; ` +
            `against libsolv from its .solv cache: ${(w / cw).toFixed(2)}× wall (${s(cw)}), ` +
            `${(c / cc).toFixed(2)}× CPU (${s(cc)})`,
        );
      }
    } else {
      console.log(`no python3-solv (apt-get install python3-solv): no libsolv baseline`);
    }
    console.log(
      problems.length
        ? `\nPLAN PROBLEMS:\n${problems.join('\n')}`
        : `\nevery plan valid against the converted universe${BEFORE ? ', identical across builds' : ''}`,
    );
    console.log(`load average at the end: ${load()}`);
    if (problems.length) process.exitCode = 1;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

main();
