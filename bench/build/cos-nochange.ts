/**
 * A no-change `cpm build` on the cOS fixture (issue target: < 2 s). The cOS subset of docs/build.md
 * (system/cos-setup, system/immutable-rootfs, system/base-dracut-modules, live/boot and their
 * chain distro/tool, distro/base) is built once, untimed (≈ 10 min: apt inside the sandbox needs
 * the Debian mirror), into WORK/out; then, in fresh processes and interleaved: `node -e 0` (the
 * runtime's floor), `cpm tree list` of the same tree and values (loading and rendering the tree,
 * which every build does), the no-change build of the subset, and a whole-tree `--dry-run`
 * (plans and hashes all 77 packages; images resolved, nothing built).
 *
 *   npx tsx bench/build/cos-nochange.ts [--work DIR] [--runs N]
 *
 * WORK (default /tmp/cpm-bench-cos) is kept between runs so the build happens once.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { median, timeInterleaved, type TimedCase } from '../support.js';
import { minbaseTar, umociImage } from '../../test/install/base-images.js';

const argOf = (name: string, dflt: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1]! : dflt;
};
const WORK = path.resolve(argOf('work', '/tmp/cpm-bench-cos'));
const RUNS = Number(argOf('runs', '5'));
const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
const CPM = path.join(ROOT, 'bin/cpm.js');
const TREE = path.resolve(ROOT, '..', 'shared', 'fixtures', 'cos-toolkit-tree');
const SUBSET = [
  'system/cos-setup',
  'system/immutable-rootfs',
  'system/base-dracut-modules',
  'live/boot',
];

function main(): void {
  mkdirSync(WORK, { recursive: true });
  const layout = path.join(WORK, 'debian');
  if (!existsSync(path.join(layout, 'index.json'))) umociImage(layout, 'bookworm', [minbaseTar()]);
  const values = path.join(WORK, 'cos-values.yaml');
  writeFileSync(
    values,
    [
      `image: oci:${layout}:bookworm`,
      `tool_image: oci:${layout}:bookworm`,
      'tool_image_distribution: "ubuntu"',
      'tools_packages: curl gzip tar git xz-utils',
      'packages: systemd dracut grub2-common curl rsync',
      'kernel_package: linux-image-amd64',
      '',
    ].join('\n'),
  );
  const cfg = path.join(WORK, 'cpm.yaml');
  writeFileSync(cfg, `cache_dir: ${path.join(WORK, 'cache')}\n`);
  const env = { ...process.env, CPM_CONFIG: cfg };
  const tv = [
    '--tree',
    path.join(TREE, 'packages'),
    '--values',
    path.join(TREE, 'values/orange-x86_64.yaml'),
    '--values',
    values,
  ];
  const out = `dir://${path.join(WORK, 'out')}`;
  const build = ['node', CPM, 'build', ...SUBSET, ...tv, '--output', out];
  // The one real build (untimed); a second call finds everything up to date.
  execFileSync(build[0]!, [...build.slice(1), '-j', String(os.cpus().length)], {
    env,
    stdio: 'inherit',
  });
  const cases: TimedCase[] = [
    { name: 'node -e 0', argv: ['node', '-e', '0'] },
    { name: 'cpm tree list (load + render)', argv: ['node', CPM, 'tree', 'list', ...tv], env },
    { name: 'cpm build, nothing changed (cOS subset, 6 packages)', argv: build, env },
    {
      name: 'cpm build --dry-run (whole cOS tree, 77 packages)',
      argv: ['node', CPM, 'build', ...tv, '--output', out, '--dry-run'],
      env,
    },
  ];
  // The whole-tree dry run exits 19: packages whose images do not resolve here are "failed".
  const wrapped = cases.map((c) =>
    c.name.includes('--dry-run')
      ? { ...c, argv: ['sh', '-c', `"$@" >/dev/null 2>&1; [ $? -le 19 ]`, 'sh', ...c.argv] }
      : c,
  );
  const t = timeInterleaved(wrapped, RUNS);
  const load = os.loadavg().map((l) => l.toFixed(1));
  console.log(
    `\n${RUNS} run(s), median; load average ${load.join(' ')} on ${os.cpus().length} cores`,
  );
  console.log('| case | wall s | cpu s |');
  console.log('| --- | ---: | ---: |');
  for (const r of t)
    console.log(
      `| ${r.name} | ${(median(r.wall) / 1000).toFixed(2)} | ${(median(r.cpu) / 1000).toFixed(2)} |`,
    );
}

main();
