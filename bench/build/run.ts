/**
 * `cpm build` benchmark: N packages built on a Debian bookworm minbase (an OCI layout made by
 * umoci from the mmdebstrap tar), each with steps that write a few hundred files. Baseline (the
 * floor) = the same steps by hand: `tar -x` of the base into a fresh dir, the steps under bwrap
 * with the same namespaces, `tar -cz` of what they wrote (the floor knows which paths; cpm has to
 * find them). Fresh processes, interleaved rounds (bench/support.ts). Also: a no-change rebuild
 * of the whole tree (target < 2 s).
 *
 *   npx tsx bench/build/run.ts [--packages N] [--runs R] [--quick]
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { median, timeInterleaved, type TimedCase } from '../support.js';
import { minbaseTar, umociImage } from '../../test/install/base-images.js';

const arg = (name: string, dflt: number): number => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const quick = process.argv.includes('--quick');
const PACKAGES = arg('packages', quick ? 3 : 6);
const RUNS = arg('runs', quick ? 1 : 3);
const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
const CPM = path.join(ROOT, 'bin/cpm.js');

const steps = (p: number): string[] => [
  `mkdir -p /usr/share/bench${p}/gen`,
  `for i in $(seq 1 300); do echo "package ${p} file $i" > /usr/share/bench${p}/gen/f$i.txt; done`,
  `cp -r /usr/share/doc /usr/share/bench${p}/doc`,
  `ls -lR /usr/lib > /usr/share/bench${p}/listing`,
];

function main(): void {
  const work = path.join(os.tmpdir(), `cpm-bench-build-${process.pid}`);
  mkdirSync(work, { recursive: true });
  const tar = minbaseTar();
  const layout = path.join(work, 'layout');
  umociImage(layout, 'bookworm', [tar]);
  const image = `oci:${layout}:bookworm`;
  const tree = path.join(work, 'tree');
  for (let p = 0; p < PACKAGES; p++) {
    const dir = path.join(tree, 'bench', `p${p}`);
    mkdirSync(dir, { recursive: true });
    writeFileSync(
      path.join(dir, 'definition.yaml'),
      `category: bench\nname: p${p}\nversion: "1.0"\n`,
    );
    writeFileSync(
      path.join(dir, 'build.yaml'),
      `image: ${image}\nsteps:\n${steps(p)
        .map((s) => `- '${s.replace(/'/g, "''")}'`)
        .join('\n')}\n`,
    );
  }
  const cache = path.join(work, 'cache');
  const cfg = path.join(work, 'cpm.yaml');
  writeFileSync(cfg, `cache_dir: ${cache}\n`);
  const env = { ...process.env, CPM_CONFIG: cfg };
  const out = (n: string): string => path.join(work, n);
  const fresh = (n: string) => (): void => {
    rmSync(out(n), { recursive: true, force: true });
    // Results and last inputs go; the unpacked image stays (a warm cache, as on a CI runner).
    rmSync(path.join(cache, 'build', 'results'), { recursive: true, force: true });
    rmSync(path.join(cache, 'build', 'inputs'), { recursive: true, force: true });
  };
  // Warm the image cache once (pull + unpack by cpm's installer), untimed.
  execFileSync(
    'node',
    [CPM, 'build', '--tree', tree, '--output', `dir://${out('warm')}`, '-j', '2'],
    {
      env,
      stdio: 'ignore',
    },
  );

  const floorScript = path.join(work, 'floor.sh');
  const bwrap = [
    'bwrap --unshare-user --uid 0 --gid 0 --unshare-pid --unshare-ipc --unshare-uts --die-with-parent',
    '--unshare-net --bind "$r" / --proc /proc --dev /dev --bind "$t" /tmp --chdir / --clearenv',
    '--setenv PATH /usr/sbin:/usr/bin:/sbin:/bin --setenv HOME /root',
  ].join(' ');
  const lines = ['#!/bin/sh', 'set -e', `o=${out('floor')}`, 'rm -rf "$o"; mkdir -p "$o"'];
  for (let p = 0; p < PACKAGES; p++) {
    lines.push(`r=$o/root${p}; t=$o/tmp${p}; mkdir -p "$r" "$t"`);
    lines.push(`tar -xf ${tar} -C "$r"`);
    for (const s of steps(p)) lines.push(`${bwrap} /bin/sh -c '${s.replace(/'/g, `'\\''`)}'`);
    lines.push(
      `tar --sort=name --numeric-owner --mtime=@0 -C "$r" -czf "$o/p${p}.tar.gz" usr/share/bench${p}`,
    );
    lines.push(`rm -rf "$r" "$t"`);
  }
  writeFileSync(floorScript, `${lines.join('\n')}\n`, { mode: 0o755 });

  const build = (n: string, jobs: number): string[] => [
    'node',
    CPM,
    'build',
    '--tree',
    tree,
    '--output',
    `dir://${out(n)}`,
    '--network',
    'none',
    '-j',
    String(jobs),
  ];
  const cases: TimedCase[] = [
    { name: `floor: tar -x + bwrap steps + tar -cz (sequential)`, argv: ['sh', floorScript] },
    {
      name: `cpm build -j 1 (overlay roots, as root)`,
      argv: build('j1', 1),
      env,
      before: fresh('j1'),
    },
    {
      name: `cpm build -j 1, CPM_BUILD_DELTA=walk (copies and walks)`,
      argv: build('j1w', 1),
      env: { ...env, CPM_BUILD_DELTA: 'walk' },
      before: fresh('j1w'),
    },
    { name: `cpm build -j 2`, argv: build('j2', 2), env, before: fresh('j2') },
    { name: `cpm build, nothing changed (whole tree)`, argv: build('warm', 2), env },
  ];
  const t = timeInterleaved(cases, RUNS);
  const base = median(t[0]!.wall);
  console.log(
    `\n${PACKAGES} packages on Debian bookworm minbase, ${RUNS} run(s), median wall / cpu; load average ${os
      .loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')}`,
  );
  console.log('| case | wall s | cpu s | vs floor |');
  console.log('| --- | ---: | ---: | ---: |');
  for (const r of t) {
    const w = median(r.wall);
    console.log(
      `| ${r.name} | ${(w / 1000).toFixed(2)} | ${(median(r.cpu) / 1000).toFixed(2)} | ${(w / base).toFixed(2)}× |`,
    );
  }
  if (!process.env.CPM_BENCH_KEEP) rmSync(work, { recursive: true, force: true });
  else console.log(`kept ${work}`);
  if (!existsSync(work)) return;
}

main();
