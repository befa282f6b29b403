/**
 * What moving a build root through a registry costs, in fresh `node bin/cpm.js` processes. For
 * each kept root under ROOTS (by default the ones bench/build/cos-nochange.ts leaves: distro/tool
 * and distro/base of cOS), interleaved (bench/support.ts timeInterleaved):
 *
 * - push: `cpm pack ROOT --compression zstd -o REG/…` — the work of the build cache's root push
 *   (one zstd layer from the directory, uploaded to a local docker-registry; a new repository
 *   each run, so every run uploads), against `tar | zstd -3` of the same root to a file
 *   (GNU tar and zstd: the packing alone, no upload — the floor of that work);
 * - fetch: `cpm rootfs init --from REG/… --root DEST` with an empty cache — the work of a root
 *   fetch (download, verify, unpack with cpm's installer), against `zstd -dc | tar -x` of the
 *   same layer file (unpacking alone, no download).
 *
 * CPU is the child's user + sys (/usr/bin/time), the registry's is not counted.
 *
 *   npx tsx bench/build/root-cache.ts [--roots DIR] [--runs N]
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, promises as fsp, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startRegistry } from '../../test/support/registry.js';
import { median, timeInterleaved, type TimedCase } from '../support.js';

const argOf = (name: string, dflt: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1]! : dflt;
};
const ROOTS = path.resolve(argOf('roots', '/tmp/cpm-bench-cos/cache/build/roots'));
const RUNS = Number(argOf('runs', '3'));
const CPM = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../../bin/cpm.js');

async function main(): Promise<void> {
  const reg = await startRegistry();
  const work = await fsp.mkdtemp(path.join(os.tmpdir(), 'cpm-bench-roots-'));
  const cache = path.join(work, 'cache');
  const cfg = path.join(work, 'cpm.yaml');
  writeFileSync(cfg, `cache_dir: ${cache}\nrepos_confdir: []\n`);
  const env = { ...process.env, CPM_CONFIG: cfg };
  const dest = path.join(work, 'dest');
  const emptyDest = (): void => {
    rmSync(dest, { recursive: true, force: true });
    mkdirSync(dest);
  };
  const rows: string[] = [];
  try {
    for (const key of readdirSync(ROOTS).sort()) {
      const dir = path.join(ROOTS, key, 'root');
      const short = key.slice(0, 12);
      const size = execFileSync('du', ['-sh', dir], { encoding: 'utf8' }).split('\t')[0];
      const layer = path.join(work, `${short}.tar.zst`);
      const ref = `${reg.host}/bench/root-${short}:1`;
      // The image the fetches take and the layer file the baselines unpack (untimed).
      execFileSync(
        'node',
        [CPM, 'pack', dir, '--name', `bench/root@1`, '--compression', 'zstd', '-o', ref, '-q'],
        { env },
      );
      execFileSync('sh', ['-c', `tar -C "$1" -cf - . | zstd -3 -q -T1 > "$2"`, 'sh', dir, layer]);
      let round = 0;
      const push: string[] = ['node', CPM, 'pack', dir, '--name', 'bench/root@1'];
      push.push('--compression', 'zstd', '-q', '-o', '');
      const cases: TimedCase[] = [
        { name: 'node -e 0', argv: ['node', '-e', '0'] },
        {
          name: 'push: cpm pack --compression zstd -o REG',
          argv: push,
          env,
          // a repository of its own each run: nothing is there yet, every blob is uploaded
          before: () => {
            push[push.length - 1] = `${reg.host}/bench/push-${short}-${round++}:1`;
          },
        },
        {
          name: 'push baseline: tar \\| zstd -3 (no upload)',
          argv: [
            'sh',
            '-c',
            `tar -C "$1" -cf - . | zstd -3 -q -T1 > "$2"`,
            'sh',
            dir,
            `${layer}.b`,
          ],
        },
        {
          name: 'fetch: cpm rootfs init --from REG (empty cache)',
          argv: ['node', CPM, 'rootfs', 'init', '--from', ref, '--root', dest, '-q'],
          env,
          before: () => {
            emptyDest();
            rmSync(cache, { recursive: true, force: true });
          },
        },
        {
          name: 'fetch baseline: zstd -dc \\| tar -x (no download)',
          argv: ['sh', '-c', `zstd -dc "$1" | tar -C "$2" -xf -`, 'sh', layer, dest],
          before: emptyDest,
        },
      ];
      for (const t of timeInterleaved(cases, RUNS))
        rows.push(
          `| ${short} | ${size} | ${t.name} | ${(median(t.wall) / 1000).toFixed(2)} | ${(median(t.cpu) / 1000).toFixed(2)} |`,
        );
    }
    const load = os.loadavg().map((l) => l.toFixed(1));
    console.log(
      `\n${RUNS} run(s), median; load average ${load.join(' ')} on ${os.cpus().length} cores`,
    );
    console.log('| root | size | case | wall s | cpu s |');
    console.log('| --- | ---: | --- | ---: | ---: |');
    for (const r of rows) console.log(r);
  } finally {
    await reg.stop();
    await fsp.rm(work, { recursive: true, force: true });
  }
}

await main();
