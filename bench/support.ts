/**
 * Shared bench input: bench/.work/debian-root.tar, a ≈500 MB Debian bookworm root ("standard" +
 * python3, git, vim) made once with mmdebstrap. A lock file lets concurrent benches wait for the
 * one creating it instead of building it twice.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, promises as fsp, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const BENCH_WORK = path.join(path.dirname(fileURLToPath(import.meta.url)), '.work');
export const DEBIAN_TAR = path.join(BENCH_WORK, 'debian-root.tar');
const LOCK = `${DEBIAN_TAR}.lock`;

/** Returns the tarball's path, creating it (or waiting for whoever creates it) when missing. */
export async function debianRootTar(): Promise<string> {
  const deadline = Date.now() + 30 * 60_000;
  while (existsSync(LOCK) && !existsSync(DEBIAN_TAR)) {
    if (Date.now() > deadline)
      throw new Error(`${LOCK} is still there after 30 min: stale? remove it`);
    console.log(`waiting for ${DEBIAN_TAR} (another process holds ${LOCK})…`);
    await new Promise((r) => setTimeout(r, 15_000));
  }
  if (existsSync(DEBIAN_TAR)) return DEBIAN_TAR;
  console.log(`creating ${DEBIAN_TAR} with mmdebstrap (a few minutes)…`);
  await fsp.mkdir(BENCH_WORK, { recursive: true });
  await fsp.writeFile(LOCK, `${process.pid}\n`);
  try {
    execFileSync(
      'mmdebstrap',
      [
        '--variant=standard',
        '--format=tar',
        '--include=python3,git,vim',
        'bookworm',
        `${DEBIAN_TAR}.tmp`,
      ],
      { stdio: 'inherit' },
    );
    await fsp.rename(`${DEBIAN_TAR}.tmp`, DEBIAN_TAR);
  } finally {
    await fsp.rm(LOCK, { force: true });
  }
  return DEBIAN_TAR;
}

/** One command line of an interleaved timing (see timeInterleaved). */
export interface TimedCase {
  name: string;
  argv: string[];
  env?: NodeJS.ProcessEnv;
  /** Runs before each timed run, untimed (e.g. remove the previous output). */
  before?: () => void;
  /** Gets each run's standard output (e.g. to check the answer). */
  output?: (stdout: string) => void;
  /** Exit statuses that are not a failure of the run (default: 0 only). */
  okStatus?: number[];
}

export interface Timing {
  name: string;
  /** ms per run: wall clock, and CPU (user + sys of the child; see WRAP). */
  wall: number[];
  cpu: number[];
  /** Peak RSS per run, KiB. */
  rssKb: number[];
}

export const median = (l: number[]): number =>
  l.length === 0 ? NaN : l.slice().sort((a, b) => a - b)[Math.floor(l.length / 2)]!;

/**
 * How a timed run is wrapped to learn its CPU time and peak RSS: python3's os.wait4 gives the
 * child's rusage to the microsecond (and its own wall clock, without python's start-up);
 * /usr/bin/time rounds CPU to 10 ms, too coarse for start-up figures of 100-200 ms. Either prints
 * a last stderr line `cpu USER SYS MAXRSS_KB [wall MS]`.
 */
const WAIT4 = `import os, subprocess, sys, time
t = time.perf_counter()
p = subprocess.Popen(sys.argv[1:])
_, st, ru = os.wait4(p.pid, 0)
w = (time.perf_counter() - t) * 1000
sys.stderr.write("\\ncpu %.6f %.6f %d wall %.3f\\n" % (ru.ru_utime, ru.ru_stime, ru.ru_maxrss, w))
c = os.waitstatus_to_exitcode(st)
sys.exit(c if c >= 0 else 128 - c)
`;
/** The python3 executable itself (a version manager's shim would start a shell per run). */
const PYTHON = ((): string | undefined => {
  const r = spawnSync('python3', ['-c', 'import os, sys; os.wait4; print(sys.executable)'], {
    encoding: 'utf8',
  });
  return r.status === 0 && r.stdout.trim() ? r.stdout.trim() : undefined;
})();
const WRAP: string[] | null = PYTHON
  ? [PYTHON, '-c', WAIT4]
  : existsSync('/usr/bin/time')
    ? ['/usr/bin/time', '-f', '\ncpu %U %S %M']
    : null;

/**
 * Fresh processes, round robin: run 1 of every case, then run 2 of every case, … so a change of
 * machine load hits the baseline as much as cpm (2 shared cores: sequential blocks drift apart).
 * One untimed warm-up round first (page cache, compile cache) unless `warmup` is false.
 */
export function timeInterleaved(cases: TimedCase[], runs: number, warmup = true): Timing[] {
  const out: Timing[] = cases.map((c) => ({ name: c.name, wall: [], cpu: [], rssKb: [] }));
  for (let round = warmup ? -1 : 0; round < runs; round++) {
    cases.forEach((c, i) => {
      c.before?.();
      const full = WRAP ? [...WRAP, ...c.argv] : c.argv;
      const t = process.hrtime.bigint();
      const r = spawnSync(full[0]!, full.slice(1), {
        env: c.env ?? process.env,
        encoding: 'utf8',
        maxBuffer: 1 << 30,
      });
      let wall = Number(process.hrtime.bigint() - t) / 1e6;
      if (r.status === null || !(c.okStatus ?? [0]).includes(r.status))
        throw new Error(`${c.argv.join(' ')} → ${r.status ?? r.signal}\n${r.stdout}${r.stderr}`);
      c.output?.(r.stdout);
      if (round < 0) return;
      const m = /cpu (\d+\.\d+) (\d+\.\d+) (\d+)(?: wall (\d+\.\d+))?\s*$/.exec(r.stderr);
      if (m?.[4]) wall = Number(m[4]);
      out[i]!.wall.push(wall);
      out[i]!.cpu.push(m ? (Number(m[1]) + Number(m[2])) * 1000 : NaN);
      out[i]!.rssKb.push(m ? Number(m[3]) : NaN);
    });
  }
  return out;
}

/** A Node binary of another version for benches: CPM_BENCH_NODE, else the single-file build's. */
export function otherNode(): string | undefined {
  if (process.env.CPM_BENCH_NODE) return process.env.CPM_BENCH_NODE;
  const cache = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'build', '.cache');
  if (!existsSync(cache)) return undefined;
  const dirs = readdirSync(cache)
    .filter((d) => d.endsWith(`-linux-${process.arch}`) && existsSync(path.join(cache, d, 'node')))
    .sort();
  return dirs.length > 0 ? path.join(cache, dirs[dirs.length - 1]!, 'node') : undefined;
}

/**
 * The single-file build to time: CPM_SEA=FILE as given, else out/cpm-linux-ARCH of `root` when it
 * exists. A default binary that is older than dist/ or was built from another commit (its
 * FILE.build.json, written by build/sea.mjs) is refused with a message: it would time old code,
 * or fail mid-run on a DB format it cannot read.
 */
export function singleFile(root: string): string | undefined {
  if (process.env.CPM_SEA) return process.env.CPM_SEA;
  const file = path.join(root, 'out', `cpm-linux-${process.arch}`);
  if (!existsSync(file)) return undefined;
  const refuse = (why: string): never => {
    console.error(
      `${path.relative(process.cwd(), file)} ${why}: rebuild it with npm run build:dist ` +
        '(or time a binary of your choice with CPM_SEA=FILE)',
    );
    process.exit(2);
  };
  const dist = path.join(root, 'dist', 'cpm.cjs');
  if (existsSync(dist) && statSync(file).mtimeMs < statSync(dist).mtimeMs)
    refuse('is older than dist/cpm.cjs');
  let built: { commit?: string | null };
  try {
    built = JSON.parse(readFileSync(`${file}.build.json`, 'utf8')) as typeof built;
  } catch {
    return refuse(`has no readable ${path.basename(file)}.build.json (built before stamps)`);
  }
  const head = spawnSync('git', ['rev-parse', 'HEAD'], { cwd: root, encoding: 'utf8' });
  const commit = head.status === 0 ? head.stdout.trim() : undefined;
  if (commit && built.commit && built.commit !== commit)
    refuse(
      `was built from commit ${built.commit.slice(0, 12)}, the checkout is at ${commit.slice(0, 12)}`,
    );
  return file;
}

/**
 * CPM_BENCH_BASE=DIR: another build to time beside this one in the same interleaved run, e.g. a
 * copy of main's (`cp -r bin dist package.json DIR/`): DIR/bin/cpm.js, or undefined.
 */
/** The single-file build of CPM_BENCH_BASE (DIR/out/cpm-linux-ARCH), when DIR has one. */
export function baseSingleFile(): string | undefined {
  const dir = process.env.CPM_BENCH_BASE;
  if (!dir) return undefined;
  const file = path.resolve(dir, 'out', `cpm-linux-${process.arch}`);
  return existsSync(file) ? file : undefined;
}

export function baseBuild(): string | undefined {
  const dir = process.env.CPM_BENCH_BASE;
  if (!dir) return undefined;
  const bin = path.resolve(dir, 'bin', 'cpm.js');
  if (!existsSync(bin)) throw new Error(`CPM_BENCH_BASE=${dir}: no bin/cpm.js there`);
  return bin;
}

/** The median; of an even count, the mean of the two middle values. */
export const meanMedian = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

/**
 * Throws when `root`'s dist/ (what bin/cpm.js runs) is missing; warns when it is older than any
 * of `sources` (files or folders under src/), which the bench would then not time.
 */
export function checkDist(root: string, sources: string[]): void {
  const dist = path.join(root, 'dist', 'cpm.cjs');
  if (!existsSync(dist)) throw new Error('run "npm run build" first (the bench times bin/cpm.js)');
  for (const rel of sources) {
    const p = path.join(root, 'src', rel);
    const files = statSync(p).isDirectory() ? readdirSync(p).map((f) => path.join(p, f)) : [p];
    if (files.some((f) => statSync(f).mtimeMs > statSync(dist).mtimeMs))
      console.warn(`warning: dist/ is older than src/${rel} — run "npm run build"`);
  }
}
