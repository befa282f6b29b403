/**
 * `cpm tree validate` against luet on real luet trees (issue #15: within 1.5× of luet), each
 * command a fresh process, interleaved rounds after a warm-up, CPU and wall (after `npm run build`).
 *
 * The luet side, on the same tree directory:
 * - `luet tree pkglist -b`: luet's loader for building (every definition and collection read,
 *   every build.yaml rendered with the package's values and parsed for its requires);
 * - `luet tree validate`: that loader plus the check of every runtime and build-time requirement
 *   (exit 2 when some do not resolve, as in mocaccino-desktop without its values: accepted here).
 * cpm's row renders build.yaml and finalize.yaml with the tree's values file and checks
 * everything it checks (docs/tree-format.md), so it does more than the first and about what the
 * second does.
 *
 * Needs a luet binary and the trees; neither is in CI, so the bench skips, saying so, when one is
 * missing. docs/performance.md ("Real luet trees against luet") says how to get both.
 *
 *   npx tsx bench/tree/luet.ts [--luet BIN] [--trees DIR] [--runs N] [--before DIR] [--cpm DIR]
 *                              [--single FILE] [--only NAME,…] [--quick]
 *
 * --luet BIN (or CPM_LUET; default `luet` on PATH). --trees DIR (or CPM_LUET_TREES): a directory
 * holding the trees as DIR/NAME/ (the names below); cOS comes from ../shared/fixtures when DIR
 * lacks it. --before DIR: also time another build (DIR/bin/cpm.js) in the same rounds; its
 * `tree validate --json` must print the same. --cpm DIR: time DIR/bin/cpm.js instead of this
 * checkout's. --single FILE: also time the single-file binary (`npm run build:dist` writes
 * out/cpm-linux-x64), the way the release is run. When NODE_EXTRA_CA_CERTS is set, `node -e 0` and `cpm --version` are timed without
 * it too (Node reads that file at every start).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { delimiter, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { median, timeInterleaved, type TimedCase, type Timing } from '../support.js';

const HERE = fileURLToPath(new URL('.', import.meta.url));
const ROOT = resolve(HERE, '../..');
const argv = process.argv.slice(2);
const opt = (name: string): string | undefined => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : undefined;
};
const QUICK = argv.includes('--quick');
const RUNS = Number(opt('runs') ?? (QUICK ? 1 : 5));
const BEFORE = opt('before');
const SINGLE = opt('single');

/** The trees: directory under --trees, the packages directory in it, its values file. */
const TREES = [
  { name: 'mocaccino-desktop', packages: 'packages', values: 'values/amd64.yaml' },
  { name: 'mocaccino-extra', packages: 'packages', values: 'values/amd64.yaml' },
  { name: 'mocaccino-micro', packages: 'packages', values: 'arches/amd64/values.yaml' },
  { name: 'kairos-packages', packages: 'packages', values: 'values/amd64.yaml' },
  { name: 'cos-toolkit-tree', packages: 'packages', values: 'values/green-x86_64.yaml' },
];

const load = (): string =>
  loadavg()
    .map((x) => x.toFixed(1))
    .join(' ');
const s = (ms: number): string => (ms / 1000).toFixed(2);

function findLuet(): string | undefined {
  const given = opt('luet') ?? process.env.CPM_LUET;
  if (given) return existsSync(given) ? resolve(given) : undefined;
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    const p = join(dir, 'luet');
    if (dir && existsSync(p)) return p;
  }
  return undefined;
}

function skip(why: string): never {
  console.log(`bench/tree/luet.ts: skipped: ${why} (docs/performance.md, "Real luet trees")`);
  process.exit(0);
}

function main(): void {
  const luet = findLuet();
  if (!luet) skip('no luet binary (--luet BIN, CPM_LUET, or luet on PATH)');
  const version = spawnSync(luet, ['--version'], { encoding: 'utf8' });
  if (version.status !== 0) skip(`${luet} --version failed: ${version.stderr.trim()}`);
  const treesDir = opt('trees') ?? process.env.CPM_LUET_TREES;
  const shared = resolve(ROOT, '../shared/fixtures');
  const only = opt('only')?.split(',');
  const trees = TREES.filter((t) => !only || only.includes(t.name))
    .map((t) => {
      const base = [treesDir, shared]
        .filter((d): d is string => !!d)
        .map((d) => join(d, t.name))
        .find((d) => existsSync(join(d, t.packages)) && existsSync(join(d, t.values)));
      return base ? { ...t, dir: join(base, t.packages), valuesFile: join(base, t.values) } : null;
    })
    .filter((t) => t !== null);
  const missing = TREES.filter(
    (t) => (!only || only.includes(t.name)) && !trees.some((x) => x.name === t.name),
  );
  if (trees.length === 0) skip(`none of the trees under ${treesDir ?? '(no --trees)'}`);
  if (!existsSync(join(ROOT, 'dist/cpm.cjs'))) skip('no dist/ (npm run build)');

  // luet reads ~/.luet.yaml and writes its package cache under /var/cache/luet by default: a
  // configuration of its own in a temporary directory keeps it off the machine.
  const work = mkdtempSync(join(tmpdir(), 'cpm-bench-luet-'));
  try {
    const config = join(work, 'luet.yaml');
    writeFileSync(
      config,
      `system:\n  rootfs: ${join(work, 'root')}\n  database_path: ${join(work, 'db')}\n` +
        `  tmpdir_base: ${join(work, 'tmp')}\n`,
    );
    const env = { ...process.env, HOME: work };
    // how each build is started: `node DIR/bin/cpm.js`, or the single file (the release binary)
    const builds: Array<{ label: string; cmd: string[] }> = [
      { label: 'cpm', cmd: ['node', resolve(opt('cpm') ?? ROOT, 'bin/cpm.js')] },
      ...(BEFORE ? [{ label: 'cpm before', cmd: ['node', resolve(BEFORE, 'bin/cpm.js')] }] : []),
      ...(SINGLE ? [{ label: 'cpm single file', cmd: [resolve(SINGLE)] }] : []),
    ];
    console.log(
      `${version.stdout.trim()} (${luet}); trees: ${trees.map((t) => t.name).join(', ')}` +
        `${missing.length ? ` (missing: ${missing.map((t) => t.name).join(', ')})` : ''}; ` +
        `load average ${load()} at the start\n`,
    );

    // What any cpm command costs before it reads a tree: Node's start, then cpm's.
    const floor: TimedCase[] = [
      { name: 'node -e 0', argv: ['node', '-e', '0'] },
      ...builds.map((b) => ({ name: `${b.label} --version`, argv: [...b.cmd, '--version'] })),
    ];
    // Node 20 reads the NODE_EXTRA_CA_CERTS file (and sets up OpenSSL's store) at every start,
    // before any script runs; luet reads certificates only to make a TLS connection. When it is
    // set, the floor is also timed without it, to say what it adds to every cpm row.
    let bare: NodeJS.ProcessEnv | undefined;
    if (process.env.NODE_EXTRA_CA_CERTS) {
      bare = { ...process.env };
      delete bare.NODE_EXTRA_CA_CERTS;
      floor.push(
        { name: 'node -e 0, no NODE_EXTRA_CA_CERTS', argv: ['node', '-e', '0'], env: bare },
        ...builds.map((b) => ({
          name: `${b.label} --version, no NODE_EXTRA_CA_CERTS`,
          argv: [...b.cmd, '--version'],
          env: bare,
        })),
      );
    }
    const cases: TimedCase[] = [...floor];
    const answers = new Map<string, string>();
    const mismatches: string[] = [];
    for (const t of trees) {
      const luetArgs = ['--config', config, 'tree'];
      cases.push({
        name: `${t.name}: luet tree pkglist -b`,
        argv: [luet, ...luetArgs, 'pkglist', '-b', '--tree', t.dir, '--no-spinner'],
        env,
      });
      cases.push({
        name: `${t.name}: luet tree validate`,
        argv: [luet, ...luetArgs, 'validate', '--tree', t.dir, '--no-spinner'],
        env,
        okStatus: [0, 2],
      });
      // this checkout's build also without NODE_EXTRA_CA_CERTS (when set): a machine without it
      // (the default) pays Node's start less by that much, luet nothing
      const runs = [
        ...builds.map((b) => ({ label: b.label, cmd: b.cmd, env: undefined, suffix: '' })),
        ...(bare ? [{ ...builds[0]!, env: bare, suffix: ', no NODE_EXTRA_CA_CERTS' }] : []),
      ];
      for (const b of runs) {
        cases.push({
          name: `${t.name}: ${b.label} tree validate --values${b.suffix}`,
          argv: [...b.cmd, 'tree', 'validate', '--json', '--tree', t.dir, '--values', t.valuesFile],
          env: b.env,
          okStatus: [0, 1],
          output: (out) => {
            const first = answers.get(t.name);
            if (first !== undefined && first !== out) mismatches.push(`${t.name}: ${b.label}`);
            answers.set(t.name, out);
          },
        });
      }
    }
    const timed = timeInterleaved(cases, RUNS);
    console.log(
      `Fresh process per command, median of ${RUNS} interleaved rounds after a warm-up ` +
        `(load average ${load()}):\n`,
    );
    console.log(
      '| tree | command | wall s | CPU s | peak RSS MB | CPU × luet pkglist -b | CPU × luet validate |',
    );
    console.log('|---|---|---|---|---|---|---|');
    for (const f of timed.slice(0, floor.length)) {
      console.log(
        `| (start-up) | ${f.name} | ${s(median(f.wall))} | ${s(median(f.cpu))} | ` +
          `${Math.round(median(f.rssKb) / 1024)} |  |  |`,
      );
    }
    const per = 2 + builds.length + (bare ? 1 : 0);
    const totals = new Map<string, { wall: number; cpu: number }>();
    trees.forEach((t, i) => {
      const group = timed.slice(floor.length + i * per, floor.length + (i + 1) * per);
      const [pkglist, validate] = [group[0]!, group[1]!];
      for (const g of group) {
        const cpu = median(g.cpu);
        const ratio = (base: Timing): string =>
          g === pkglist || g === validate ? '' : `${(cpu / median(base.cpu)).toFixed(2)}×`;
        const command = g.name.slice(t.name.length + 2);
        console.log(
          `| ${t.name} | ${command} | ${s(median(g.wall))} | ${s(cpu)} | ` +
            `${Math.round(median(g.rssKb) / 1024)} | ${ratio(pkglist)} | ${ratio(validate)} |`,
        );
        const sum = totals.get(command) ?? { wall: 0, cpu: 0 };
        totals.set(command, { wall: sum.wall + median(g.wall), cpu: sum.cpu + cpu });
      }
    });
    console.log();
    const base = totals.get('luet tree pkglist -b')!;
    for (const [command, t] of totals) {
      const cpm = command.startsWith('cpm');
      console.log(
        `all trees, ${command}: ${s(t.wall)} s wall, ${s(t.cpu)} s CPU` +
          (cpm ? ` (${(t.cpu / base.cpu).toFixed(2)}× luet pkglist -b in CPU; target ≤ 1.5×)` : ''),
      );
    }
    if (mismatches.length) {
      console.log(
        `\nOUTPUT DIFFERS between builds (tree validate --json): ${mismatches.join('; ')}`,
      );
      process.exitCode = 1;
    }
    console.log(`load average at the end: ${load()}`);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

main();
