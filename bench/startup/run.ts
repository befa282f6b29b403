/**
 * Start-up: `cpm --version` and `cpm help` against `node -e 0`, fresh processes, interleaved
 * rounds (bench/support.ts), on this Node and on the current LTS line (the Node the single-file
 * build embeds: build/.cache after `npm run build:dist`, or CPM_BENCH_NODE=/path/to/node). The
 * single-file build (out/cpm-linux-ARCH, or CPM_SEA=FILE) gets its own rows when it exists.
 * Target: each within 1.5× of `node -e 0` on the same Node. On a loaded machine wall times measure
 * the run queue as much as cpm; cpu (user + sys of the process) is the steadier figure.
 *
 *   npm run build && npx tsx bench/startup/run.ts [--quick]
 * CPM_BENCH_BASE=DIR adds the rows of another build (DIR/bin/cpm.js, e.g. a copy of main's).
 */
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execFileSync } from 'node:child_process';
import {
  baseBuild,
  median,
  otherNode,
  singleFile,
  timeInterleaved,
  type TimedCase,
} from '../support.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const BIN = path.join(ROOT, 'bin/cpm.js');
const RUNS = process.argv.includes('--quick') ? 7 : 21;
if (!existsSync(path.join(ROOT, 'dist', 'cpm.cjs'))) throw new Error('run "npm run build" first');

const nodes = [process.execPath];
const lts = otherNode();
if (lts) nodes.push(lts);
else console.log('(no second Node: run npm run build:dist or set CPM_BENCH_NODE for the LTS rows)');
const sea = singleFile(ROOT);

const base = baseBuild();
const load = os.loadavg()[0]!;
const groups: Array<{ title: string; cases: TimedCase[] }> = nodes.map((node) => {
  const v = execFileSync(node, ['--version'], { encoding: 'utf8' }).trim();
  return {
    title: `Node ${v}`,
    cases: [
      { name: `node -e 0 (baseline)`, argv: [node, '-e', '0'] },
      { name: 'cpm --version', argv: [node, BIN, '--version'] },
      { name: 'cpm help', argv: [node, BIN, 'help'] },
      { name: 'cpm install --help', argv: [node, BIN, 'install', '--help'] },
      ...(base
        ? [
            { name: 'base build: cpm --version', argv: [node, base, '--version'] },
            { name: 'base build: cpm help', argv: [node, base, 'help'] },
          ]
        : []),
    ],
  };
});
if (sea && existsSync(sea))
  groups.push({
    title: `single file ${path.relative(ROOT, sea)}`,
    cases: [
      { name: 'node -e 0 (baseline, LTS)', argv: [lts ?? process.execPath, '-e', '0'] },
      { name: 'cpm --version', argv: [sea, '--version'] },
      { name: 'cpm help', argv: [sea, 'help'] },
    ],
  });
// one interleaved run over every case of every group: the baselines see the same load
const all = groups.flatMap((g) => g.cases);
const timings = timeInterleaved(all, RUNS);
console.log(
  `\nstart-up, ${RUNS} interleaved runs each, ${os.cpus().length} CPUs, load ${load.toFixed(2)} → ` +
    `${os.loadavg()[0]!.toFixed(2)}; medians in ms (cpu = user+sys of the process)`,
);
let k = 0;
for (const g of groups) {
  const rows = timings.slice(k, k + g.cases.length);
  k += g.cases.length;
  const base = median(rows[0]!.wall);
  const baseCpu = median(rows[0]!.cpu);
  console.log(`\n${g.title}`);
  console.log('| command | wall | ×node -e 0 | cpu | ×node -e 0 | ≤ 1.5× (wall, cpu) |');
  console.log('|---|---|---|---|---|---|');
  for (const r of rows) {
    const w = median(r.wall);
    const c = median(r.cpu);
    console.log(
      `| ${r.name} | ${w.toFixed(0)} | ${(w / base).toFixed(2)} | ${c.toFixed(0)} | ${(c / baseCpu).toFixed(2)} | ${w / base <= 1.5 ? 'yes' : 'no'}, ${c / baseCpu <= 1.5 ? 'yes' : 'no'} |`,
    );
  }
}
