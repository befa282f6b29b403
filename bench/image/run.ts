/**
 * Image benchmark (one command: `npm run build && npx tsx bench/image/run.ts [--runs N] [--quick]`).
 *
 * `cpm image squashfs` (the built CLI, run as a user runs it: `node bin/cpm.js …`) against the
 * squashfs-tools-ng tools on the same ≈500 MB Debian root, same compressor, block size, threads:
 *  - baseline   : `tar -C root --sort=name -cf - . | tar2sqfs` — the shell way to pack a directory;
 *  - ready tar  : `tar2sqfs < debian-root.tar` — tar2sqfs alone reading a ready-made tar;
 *  - gensquashfs: `gensquashfs -D root -k` — the tool packing the directory itself (no owner
 *                 overlay, no hardlinks, no excludes: a floor, not an equivalent);
 *  - mksquashfs : `mksquashfs root` — the other tool reading the directory itself;
 *  - cpm        : `cpm image squashfs --root root` as a user runs it (SOURCE_DATE_EPOCH set,
 *                 xattrs on; 'auto' picks mksquashfs-dir here: no records differ from the disk);
 *  - cpm --fixed-mtime --no-xattrs: every mtime at the epoch, so 'auto' picks gensquashfs.
 * The backend cpm used (its --json output) is shown in the row name.
 * `CPM_BIN_BEFORE=path/to/bin/cpm.js` adds a row for another cpm build (before/after figures).
 * The single-file build (out/cpm-linux-ARCH from `npm run build:dist`, or `CPM_SEA=FILE`) gets a
 * row when it exists: the same code on Node 24, whose start-up is ~0.2 s shorter than Node 20's.
 * `--quick`: one run of each (a smoke test of the bench, not a figure to report).
 * `--comp lz4|zstd|gzip|xz` (default lz4, see COMP) for the main table; a second table times the
 * CLI's default compressor (zstd) for baseline and cpm (`--zstd-runs N`, default the same N;
 * `--zstd-runs 0` leaves it out: one zstd run takes about a minute here).
 * The root is unpacked from bench/.work/debian-root.tar into a fresh directory (the disk is ext4
 * without a journal; we never reuse an old tree). The tar is re-created with mmdebstrap if missing.
 * Each variant runs N times (default 3), interleaved; the table shows the median and the ratio to
 * the baseline measured in the same run.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createReadStream, existsSync, mkdirSync, promises as fsp, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { debianRootTar, meanMedian as median, singleFile } from '../support.js';

const args = process.argv.slice(2);
const runsArg = args.indexOf('--runs');
const QUICK = args.includes('--quick');
const RUNS = runsArg >= 0 ? Number(args[runsArg + 1]) : QUICK ? 1 : 3;
// lz4 by default: with tar2sqfs's zstd level the compressor takes ~95% of the time and hides the
// packing cost being measured (and one run takes minutes on 2 shared cores). --comp zstd works too.
const compArg = args.indexOf('--comp');
const COMP = compArg >= 0 ? args[compArg + 1]! : 'lz4';
const zstdArg = args.indexOf('--zstd-runs');
const ZSTD_RUNS = zstdArg >= 0 ? Number(args[zstdArg + 1]) : RUNS;
const JOBS = os.availableParallelism();
const EPOCH = '1700000000';

const project = fileURLToPath(new URL('../../', import.meta.url));
const WORK = path.join(project, 'bench', '.work');
const TAR = path.join(WORK, 'debian-root.tar');
// CPM_BIN: a cpm built elsewhere (e.g. from a clean `git archive HEAD` while dist/ is in flux).
const cpm = process.env.CPM_BIN ?? path.join(project, 'bin', 'cpm.js');
// CPM_BIN_BEFORE: another build (an older commit) as an extra row, for before/after figures.
const cpmBefore = process.env.CPM_BIN_BEFORE;
// The single-file build (`npm run build:dist`, Node 24 inside): the cpm a Dockerfile copies in.
const sea = singleFile(project);

function sh(cmd: string, argv: string[]): void {
  const r = spawnSync(cmd, argv, { stdio: ['ignore', 'ignore', 'inherit'] });
  if (r.status !== 0) throw new Error(`${cmd} ${argv.join(' ')} failed (${r.status})`);
}

/** Runs a shell pipeline and returns wall seconds and its stdout. */
async function timed(
  cmd: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<{ secs: number; stdout: string }> {
  const t0 = performance.now();
  let stdout = '';
  await new Promise<void>((resolve, reject) => {
    const c = spawn('bash', ['-o', 'pipefail', '-c', cmd], {
      stdio: ['ignore', 'pipe', 'inherit'],
      env,
    });
    c.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    c.on('error', reject);
    c.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`${cmd}: exit ${code}`))));
  });
  return { secs: (performance.now() - t0) / 1000, stdout };
}

async function dropCaches(file: string): Promise<void> {
  // Warm the page cache the same way for every variant: read the tar once (cheap, ≈0.2 s).
  for await (const _ of createReadStream(file, { highWaterMark: 1 << 22 })) void _;
}

async function main(): Promise<void> {
  if (!process.env.CPM_BIN && !existsSync(path.join(project, 'dist', 'cpm.cjs'))) {
    throw new Error('dist/ is missing: run npm run build first');
  }
  const loadBefore = os.loadavg();
  mkdirSync(WORK, { recursive: true });
  await debianRootTar();
  const run = await fsp.mkdtemp(path.join(WORK, 'image-bench-'));
  const root = path.join(run, 'root');
  await fsp.mkdir(root);
  // Owners and device nodes need root to unpack; as a user the bench still runs (owners differ).
  sh('tar', [
    '-xpf',
    TAR,
    '-C',
    root,
    '--numeric-owner',
    ...(process.getuid?.() === 0 ? [] : ['--exclude=./dev/*']),
  ]);
  const rootMB = Number(spawnSync('du', ['-sm', root], { encoding: 'utf8' }).stdout.split('\t')[0]);

  const tables: string[] = [];
  try {
    tables.push(await table(run, root, COMP, RUNS, true));
    if (ZSTD_RUNS > 0 && COMP !== 'zstd')
      tables.push(await table(run, root, 'zstd', ZSTD_RUNS, false));
  } finally {
    await fsp.rm(run, { recursive: true, force: true });
  }
  console.log(
    `root: ${rootMB} MB unpacked from ${path.relative(project, TAR)}; ${JOBS} threads; load before: ${loadBefore
      .map((l) => l.toFixed(2))
      .join(' ')}`,
  );
  for (const t of tables) console.log(`\n${t}`);
}

interface Variant {
  name: string;
  cmd: (out: string) => string;
  /** cpm rows: the backend from --json goes into the row name. */
  cpm?: boolean;
}

/** Times every variant `runs` times, interleaved, and returns the markdown table. */
async function table(
  run: string,
  root: string,
  comp: string,
  runs: number,
  all: boolean,
): Promise<string> {
  const common = `-c ${comp} -j ${JOBS} -q -f`;
  const cpmArgs = `image squashfs --root ${root} --comp ${comp} -j ${JOBS} --json`;
  const variants: Variant[] = [
    {
      name: 'tar --sort=name | tar2sqfs (baseline)',
      cmd: (o) => `tar -C ${root} --sort=name --numeric-owner -cf - . | tar2sqfs ${common} ${o}`,
    },
  ];
  if (all) {
    variants.push(
      { name: 'tar2sqfs < debian-root.tar', cmd: (o) => `tar2sqfs ${common} ${o} < ${TAR}` },
      {
        name: 'gensquashfs -D root -k (tool alone)',
        cmd: (o) => `gensquashfs -D ${root} -k ${common} ${o}`,
      },
      {
        name: 'mksquashfs root (tool alone)',
        cmd: (o) =>
          `mksquashfs ${root} ${o} -comp ${comp} -processors ${JOBS} -noappend -quiet -no-progress`,
      },
    );
  }
  variants.push(
    { name: 'cpm image squashfs', cmd: (o) => `node ${cpm} ${cpmArgs} -o ${o}`, cpm: true },
    {
      name: 'cpm image squashfs --fixed-mtime',
      cmd: (o) => `node ${cpm} ${cpmArgs} --no-xattrs --fixed-mtime -o ${o}`,
      cpm: true,
    },
  );
  if (sea && existsSync(sea)) {
    variants.push({
      name: 'cpm image squashfs (single-file build)',
      cmd: (o) => `${sea} ${cpmArgs} -o ${o}`,
      cpm: true,
    });
  }
  if (cpmBefore) {
    variants.push({
      name: 'cpm image squashfs (CPM_BIN_BEFORE)',
      cmd: (o) => `node ${cpmBefore} ${cpmArgs} -o ${o}`,
      cpm: true,
    });
  }
  const times = variants.map(() => [] as number[]);
  const sizes = variants.map(() => 0);
  const used = variants.map(() => '');
  for (let r = 0; r < runs; r++) {
    for (let i = 0; i < variants.length; i++) {
      const out = path.join(run, `v${i}.sqfs`);
      await dropCaches(TAR);
      const { secs, stdout } = await timed(variants[i]!.cmd(out), {
        ...process.env,
        SOURCE_DATE_EPOCH: EPOCH,
      });
      times[i]!.push(secs);
      sizes[i] = statSync(out).size;
      if (variants[i]!.cpm) used[i] = (JSON.parse(stdout) as { backend: string }).backend;
      await fsp.rm(out);
      process.stderr.write(
        `  ${comp} run ${r + 1}/${runs} ${variants[i]!.name}: ${secs.toFixed(2)} s\n`,
      );
    }
  }
  const base = median(times[0]!);
  const rows = variants.map((v, i) => [
    // Markdown: a "|" in a name would split the cell.
    (used[i] ? `${v.name} [${used[i]}]` : v.name).replace(/\|/g, '\\|'),
    median(times[i]!).toFixed(2),
    times[i]!.map((t) => t.toFixed(2)).join(' '),
    (median(times[i]!) / base).toFixed(2) + '×',
    (sizes[i]! / 1048576).toFixed(1),
  ]);
  const head = ['variant', 'median s', 'runs', 'ratio', 'image MiB'];
  const widths = head.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c]!.length)));
  const line = (r: string[]): string =>
    '| ' + r.map((x, c) => x.padEnd(widths[c]!)).join(' | ') + ' |';
  return [
    `${comp}, ${runs} runs; load after: ${os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
    line(head),
    '| ' + widths.map((w) => '-'.repeat(w)).join(' | ') + ' |',
    ...rows.map(line),
  ].join('\n');
}

await main();
