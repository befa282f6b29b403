/**
 * No-op install benchmark: `cpm install` of something already installed, warm cache, process
 * start included (apk's bar: < 150 ms). hyperfine-style: warm-up, ≥10 timed runs per command,
 * median and min, with `node -e 0` measured in the same run as the baseline.
 *
 *   npm run build && npx tsx bench/install/noop.ts [runs]
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const BIN = path.join(REPO_ROOT, 'bin/cpm.js');
const TREE = path.join(REPO_ROOT, 'packages-tree');
const RUNS = Math.max(10, Number(process.argv[2] ?? 15));

const work = mkdtempSync(path.join(os.tmpdir(), 'cpm-bench-noop-'));
const cfg = path.join(work, 'cpm.yaml');
writeFileSync(cfg, 'cache_dir: cache\nrepos_confdir: [repos.conf.d]\n');
const env = { ...process.env, CPM_CONFIG: cfg };

const TIME = existsSync('/usr/bin/time') ? '/usr/bin/time' : null;

/** Runs argv; returns the child's CPU time (user + sys, ms) when /usr/bin/time is there. */
function run(argv: string[]): number {
  const full = TIME ? [TIME, '-f', 'cpu %U %S', ...argv] : argv;
  const r = spawnSync(full[0]!, full.slice(1), { env, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${argv.join(' ')} → ${r.status}\n${r.stdout}${r.stderr}`);
  const m = /cpu (\d+\.\d+) (\d+\.\d+)\s*$/.exec(r.stderr);
  return m ? (Number(m[1]) + Number(m[2])) * 1000 : NaN;
}

const median = (l: number[]): number => l.slice().sort((a, b) => a - b)[Math.floor(l.length / 2)]!;

/** Wall (including /usr/bin/time's own tiny exec) and CPU per run. */
function time(argv: string[]): { wall: number[]; cpu: number[] } {
  run(argv); // warm-up (page cache, compile)
  const wall: number[] = [];
  const cpu: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const t = process.hrtime.bigint();
    cpu.push(run(argv));
    wall.push(Number(process.hrtime.bigint() - t) / 1e6);
  }
  return { wall, cpu };
}

try {
  const repo = `dir://${path.join(work, 'repo')}`;
  const root = path.join(work, 'root');
  run([process.execPath, BIN, 'repo', 'create', '--tree', TREE, '--output', repo, '--json']);
  run([process.execPath, BIN, 'repo', 'add', 'local', repo]);
  run([
    process.execPath,
    BIN,
    'install',
    'system/cos-setup',
    '--root',
    root,
    '--no-finalizers',
    '-q',
  ]);

  const cases: Array<[string, string[]]> = [
    ['node -e 0 (baseline)', [process.execPath, '-e', '0']],
    ['cpm --version', [process.execPath, BIN, '--version']],
    [
      'cpm install system/cos-setup (no-op)',
      [process.execPath, BIN, 'install', 'system/cos-setup', '--root', root],
    ],
    [
      'cpm install system/cos-setup@1.1.0 (no-op, pinned)',
      [process.execPath, BIN, 'install', 'system/cos-setup@1.1.0', '--root', root],
    ],
  ];
  const load = os.loadavg()[0]!;
  const rows = cases.map(([name, argv]) => ({ name, ...time(argv) }));
  const base = median(rows[0]!.wall);
  const baseCpu = median(rows[0]!.cpu);
  const w = Math.max(...rows.map((r) => r.name.length));
  console.log(
    `\nno-op install, ${RUNS} runs each, ${os.cpus().length} CPUs, load ${load.toFixed(2)} → ` +
      `${os.loadavg()[0]!.toFixed(2)} (wall grows with the load; cpu = user+sys of the process)`,
  );
  console.log(`${'command'.padEnd(w)}  wall med  wall min  ×base  cpu med  ×base  wall < 150 ms`);
  for (const r of rows) {
    const med = median(r.wall);
    const cpu = median(r.cpu);
    console.log(
      `${r.name.padEnd(w)}  ${med.toFixed(1).padStart(8)}  ${Math.min(...r.wall)
        .toFixed(1)
        .padStart(8)}  ` +
        `${(med / base).toFixed(2).padStart(5)}  ${cpu.toFixed(0).padStart(7)}  ` +
        `${(cpu / baseCpu).toFixed(2).padStart(5)}  ${med < 150 ? 'yes' : 'no'}`,
    );
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
