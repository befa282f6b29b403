/**
 * Transactions on a real root: `cpm install system/cos-setup` (three packages, two with
 * finalizers) and its `uninstall` on the 514 MB Debian root image, whose DB lists 25k files —
 * what a user pays to layer an OS bit on a distribution base. A fresh process per command; each
 * run on its own copy of the root, made a few seconds before the round so that its directories
 * are as old as a real root's (cpm reads again after a package's finalizers only the directories
 * that changed, and treats one changed in the last 5 s as changed).
 *
 *   npm run build && TMPDIR=/dev/shm npx tsx bench/install/big-root.ts [runs]
 * CPM_BENCH_ROOT_LAYOUT=DIR (or bench/.work/layout: bench/install/layout.ts writes it) is the
 * image; without it the bench says so and stops. CPM_BENCH_BASE=DIR adds the rows of another
 * build (DIR/bin/cpm.js), on roots that build installed (a DB is in its writer's format).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { baseBuild, median, timeInterleaved, type TimedCase, type Timing } from '../support.js';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const TREE = path.join(REPO_ROOT, 'packages-tree');
const RUNS = Math.max(3, Number(process.argv[2] ?? 5));
/** How long a round's copies age before it runs: past cpm's 5 s window for recent changes. */
const AGE_MS = 6000;

const layout = [process.env.CPM_BENCH_ROOT_LAYOUT, path.join(REPO_ROOT, 'bench/.work/layout')]
  .filter((d): d is string => !!d)
  .find((d) => existsSync(path.join(d, 'index.json')));
if (!layout) {
  console.log(
    'bench/install/big-root: no image (set CPM_BENCH_ROOT_LAYOUT, or run bench/install/layout.ts)',
  );
  process.exit(0);
}

const work = mkdtempSync(path.join(os.tmpdir(), 'cpm-bench-bigroot-'));
const cfg = path.join(work, 'cpm.yaml');
writeFileSync(cfg, 'cache_dir: cache\nrepos_confdir: [repos.conf.d]\n');
const env: NodeJS.ProcessEnv = { ...process.env, CPM_CONFIG: cfg };

function run(argv: string[]): void {
  const r = spawnSync(argv[0]!, argv.slice(1), { env, encoding: 'utf8', cwd: work });
  if (r.status !== 0) throw new Error(`${argv.join(' ')} → ${r.status}\n${r.stdout}${r.stderr}`);
}
const copy = (from: string, to: string): void => run(['cp', '-a', from, to]);
const sleep = (ms: number): void =>
  void Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

try {
  const cpm = [process.execPath, path.join(REPO_ROOT, 'bin/cpm.js')];
  const repo = `dir://${path.join(work, 'repo')}`;
  run([...cpm, 'repo', 'create', '--tree', TREE, '--output', repo, '--json']);
  run([...cpm, 'repo', 'add', 'local', repo]);
  const builds: Array<[string, string[]]> = [['cpm', cpm]];
  const base = baseBuild();
  if (base) builds.push(['cpm base build', [process.execPath, base]]);

  // per build: the Debian root, and the same with system/cos-setup on it
  const templates = builds.map(([label, bin], b) => {
    const plain = path.join(work, `t${b}-plain`);
    const withSetup = path.join(work, `t${b}-setup`);
    run([...bin, 'install', `oci:${layout}:z`, '--root', plain, '--no-finalizers', '-q']);
    copy(plain, withSetup);
    run([...bin, 'install', 'system/cos-setup', '--root', withSetup, '-q']);
    return { label, bin, plain, withSetup };
  });

  const rows = new Map<string, Timing>();
  for (let round = -1; round < RUNS; round++) {
    const dir = path.join(work, `round${round + 1}`);
    mkdirSync(dir);
    const cases: TimedCase[] = [];
    templates.forEach((t, b) => {
      const a = path.join(dir, `${b}-install`);
      const u = path.join(dir, `${b}-uninstall`);
      copy(t.plain, a);
      copy(t.withSetup, u);
      cases.push(
        {
          name: `${t.label}: install system/cos-setup (finalizers included)`,
          argv: [...t.bin, 'install', 'system/cos-setup', '--root', a, '-q'],
          env,
        },
        {
          name: `${t.label}: uninstall system/cos-setup system/cloud-config-defaults`,
          argv: [
            ...t.bin,
            'uninstall',
            'system/cos-setup',
            'system/cloud-config-defaults',
            '--root',
            u,
            '-q',
          ],
          env,
        },
      );
    });
    sleep(AGE_MS);
    const timed = timeInterleaved(cases, 1, false);
    rmSync(dir, { recursive: true, force: true });
    if (round < 0) continue; // warm-up: page cache, code cache
    for (const t of timed) {
      const row = rows.get(t.name) ?? { name: t.name, wall: [], cpu: [], rssKb: [] };
      row.wall.push(...t.wall);
      row.cpu.push(...t.cpu);
      row.rssKb.push(...t.rssKb);
      rows.set(t.name, row);
    }
  }
  console.log(
    `\nTransactions on the Debian root (25k files in the DB), ${RUNS} rounds, ` +
      `${os.cpus().length} CPUs, load ${os.loadavg()[0]!.toFixed(2)}; medians:\n`,
  );
  console.log('| command | wall ms | CPU ms | peak RSS MB | × base build (wall / CPU) |');
  console.log('|---|---|---|---|---|');
  for (const r of rows.values()) {
    const other = r.name.startsWith('cpm: ')
      ? rows.get(r.name.replace(/^cpm: /, 'cpm base build: '))
      : undefined;
    const ratio = other
      ? `${(median(r.wall) / median(other.wall)).toFixed(2)}× / ${(median(r.cpu) / median(other.cpu)).toFixed(2)}×`
      : '';
    console.log(
      `| ${r.name} | ${median(r.wall).toFixed(0)} | ${median(r.cpu).toFixed(0)} | ` +
        `${Math.round(median(r.rssKb) / 1024)} | ${ratio} |`,
    );
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
