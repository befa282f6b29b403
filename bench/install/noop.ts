/**
 * No-op install benchmark: `cpm install` of something already installed, warm cache, process
 * start included (apk's bar: < 150 ms), fresh processes in interleaved rounds with `node -e 0`
 * as the baseline (bench/support.ts). Two kinds of no-op:
 *   - a repository package (dir:// repository made from packages-tree/), by name and pinned;
 *   - an image reference from a local docker-registry: by tag (one registry round trip to learn
 *     what the tag points at) and by digest (no round trip: the DB answers).
 * Each with `node bin/cpm.js` and, when it exists, the single-file build (out/cpm-linux-ARCH or
 * CPM_SEA=FILE). Targets: < 300 ms with node bin/cpm.js, < 150 ms single-file.
 *
 *   npm run build && npx tsx bench/install/noop.ts [runs]
 * CPM_BENCH_NO_EXTRA_CA=1 runs every command without NODE_EXTRA_CA_CERTS (see below).
 * CPM_BENCH_ROOT_LAYOUT=DIR (or bench/.work/layout when it exists: bench/install/layout.ts writes
 * it) adds the issue's own case: the 514 MB Debian root image installed by `cpm install oci:DIR:z`,
 * then the no-op re-install of that reference and of a repository package on that root, whose DB
 * lists 25k files (the small roots above list a few dozen).
 * CPM_BENCH_BASE=DIR adds the rows of another build (DIR/bin/cpm.js, on roots it installs itself:
 * a DB is in its writer's format, which an older cpm may not read; e.g. a copy of main's:
 * `cp -r bin dist package.json DIR/`), and of its single file when DIR/out/cpm-linux-ARCH exists
 * (`npm run build:dist` first, then also `cp -r out DIR/`).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startRegistry } from '../../test/support/registry.js';
import {
  baseBuild,
  baseSingleFile,
  median,
  singleFile,
  timeInterleaved,
  type TimedCase,
} from '../support.js';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const BIN = path.join(REPO_ROOT, 'bin/cpm.js');
const TREE = path.join(REPO_ROOT, 'packages-tree');
const RUNS = Math.max(5, Number(process.argv[2] ?? 15));
const SEA = singleFile(REPO_ROOT);

const work = mkdtempSync(path.join(os.tmpdir(), 'cpm-bench-noop-'));
const cfg = path.join(work, 'cpm.yaml');
writeFileSync(cfg, 'cache_dir: cache\nrepos_confdir: [repos.conf.d]\n');
const env: NodeJS.ProcessEnv = { ...process.env, CPM_CONFIG: cfg };
// Node 20 reads the NODE_EXTRA_CA_CERTS file at every start (≈ 0.05 s of CPU where it is set, the
// baseline's too), Node 24 when TLS is first loaded; the local registry is plain http, so nothing
// here needs it. CPM_BENCH_NO_EXTRA_CA=1 times every row without it.
const extraCa = process.env.NODE_EXTRA_CA_CERTS;
const rootLayout = [process.env.CPM_BENCH_ROOT_LAYOUT, path.join(REPO_ROOT, 'bench/.work/layout')]
  .filter((d): d is string => !!d)
  .find((d) => existsSync(path.join(d, 'index.json')));
if (process.env.CPM_BENCH_NO_EXTRA_CA === '1') delete env.NODE_EXTRA_CA_CERTS;

function run(argv: string[]): string {
  const r = spawnSync(argv[0]!, argv.slice(1), { env, encoding: 'utf8', cwd: work });
  if (r.status !== 0) throw new Error(`${argv.join(' ')} → ${r.status}\n${r.stdout}${r.stderr}`);
  return r.stdout;
}

const reg = await startRegistry();
try {
  const cpm = [process.execPath, BIN];
  const repo = `dir://${path.join(work, 'repo')}`;
  run([...cpm, 'repo', 'create', '--tree', TREE, '--output', repo, '--json']);
  run([...cpm, 'repo', 'add', 'local', repo]);
  // a small image in the registry, installed by tag
  const pkgDir = path.join(work, 'pkg');
  mkdirSync(path.join(pkgDir, 'etc'), { recursive: true });
  writeFileSync(path.join(pkgDir, 'etc', 'noop-bench.conf'), 'x = 1\n');
  const tagRef = `${reg.host}/bench/noop:1`;
  const pushed = run([...cpm, 'pack', pkgDir, '--name', 'bench/noop@1', '-o', tagRef]).trim();
  const digestRef = `${reg.host}/bench/noop@${pushed.split('@').pop()}`;
  // the Debian root as an image reference (no registry: the tag's round trip is the rows above)
  const bigRef = rootLayout ? `oci:${rootLayout}:z` : undefined;

  /**
   * The roots a build's rows run on, installed by that build (a DB's format is the writer's: an
   * older build may not read a newer one's).
   */
  const rootsOf = (
    bin: string[],
    dir: string,
  ): { root: string; rootD: string; rootBig: string } => {
    const r = {
      root: path.join(work, dir, 'root'),
      rootD: path.join(work, dir, 'root-digest'),
      rootBig: path.join(work, dir, 'root-debian'),
    };
    run([...bin, 'install', 'system/cos-setup', '--root', r.root, '--no-finalizers', '-q']);
    run([...bin, 'install', tagRef, '--root', r.root, '--no-finalizers', '-q']);
    // the digest reference installed as such, in a root of its own (another reference is another
    // origin), with the same repository packages as `root`, so that tag − digest is the round
    // trip alone, not a larger DB read
    run([...bin, 'install', 'system/cos-setup', '--root', r.rootD, '--no-finalizers', '-q']);
    run([...bin, 'install', digestRef, '--root', r.rootD, '--no-finalizers', '-q']);
    if (bigRef) {
      run([...bin, 'install', bigRef, '--root', r.rootBig, '--no-finalizers', '-q']);
      run([...bin, 'install', 'system/cos-setup', '--root', r.rootBig, '--no-finalizers', '-q']);
    }
    return r;
  };
  const mine = rootsOf(cpm, 'this');

  const variants: Array<[string, string[], ReturnType<typeof rootsOf>]> = [
    ['node bin/cpm.js', cpm, mine],
  ];
  const baseBin = baseBuild();
  const theirs = baseBin ? rootsOf([process.execPath, baseBin], 'base') : undefined;
  if (baseBin) variants.push(['base build', [process.execPath, baseBin], theirs!]);
  if (SEA && existsSync(SEA)) variants.push(['single file', [SEA], mine]);
  const baseSea = baseSingleFile();
  if (baseSea) variants.push(['base single file', [baseSea], theirs ?? mine]);
  const cases: TimedCase[] = [
    { name: 'node -e 0 (baseline)', argv: [process.execPath, '-e', '0'], env },
  ];
  for (const [label, bin, { root, rootD, rootBig }] of variants) {
    const c = (what: string, args: string[]): TimedCase => ({
      name: `${label}: ${what}`,
      argv: [...bin, ...args],
      env,
    });
    cases.push(
      c('--version', ['--version']),
      c('install system/cos-setup (no-op)', ['install', 'system/cos-setup', '--root', root]),
      c('install system/cos-setup@1.1.0 (no-op, pinned)', [
        'install',
        'system/cos-setup@1.1.0',
        '--root',
        root,
      ]),
      c('install REGISTRY/bench/noop:1 (no-op, tag)', ['install', tagRef, '--root', root]),
      // in the root where the digest reference is the installed origin (in `root` the tag is, and
      // the digest reference is another origin: that pulls the manifest)
      c('install REGISTRY/bench/noop@sha256:… (no-op, digest)', [
        'install',
        digestRef,
        '--root',
        rootD,
      ]),
    );
    if (bigRef)
      cases.push(
        c('install oci:LAYOUT:z (no-op, the Debian root: 25k files in the DB)', [
          'install',
          bigRef,
          '--root',
          rootBig,
        ]),
        c('install system/cos-setup (no-op, on the Debian root)', [
          'install',
          'system/cos-setup',
          '--root',
          rootBig,
        ]),
      );
  }
  const load = os.loadavg()[0]!;
  const rows = timeInterleaved(cases, RUNS);
  const base = median(rows[0]!.wall);
  const baseCpu = median(rows[0]!.cpu);
  console.log(
    `\nno-op install, ${RUNS} interleaved runs each, ${os.cpus().length} CPUs, load ${load.toFixed(2)} → ` +
      `${os.loadavg()[0]!.toFixed(2)}; medians in ms (wall grows with the load; cpu = user+sys of the process)` +
      (extraCa ? `; NODE_EXTRA_CA_CERTS ${env.NODE_EXTRA_CA_CERTS ? 'set' : 'removed'}` : ''),
  );
  console.log('| command | wall | wall min | ×node -e 0 | cpu | ×node -e 0 |');
  console.log('|---|---|---|---|---|---|');
  for (const r of rows) {
    const med = median(r.wall);
    const cpu = median(r.cpu);
    console.log(
      `| ${r.name} | ${med.toFixed(0)} | ${Math.min(...r.wall).toFixed(0)} | ${(med / base).toFixed(2)} | ${cpu.toFixed(0)} | ${(cpu / baseCpu).toFixed(2)} |`,
    );
  }
  // what the tag costs over the digest: the registry round trip (one HEAD request)
  for (const [label] of variants) {
    const tag = rows.find((r) => r.name === `${label}: install REGISTRY/bench/noop:1 (no-op, tag)`);
    const dig = rows.find((r) => r.name.startsWith(`${label}: install REGISTRY/bench/noop@`));
    if (tag && dig)
      console.log(
        `${label}: registry round trip for the tag (tag − digest, medians): ${(median(tag.wall) - median(dig.wall)).toFixed(0)} ms wall, ${(median(tag.cpu) - median(dig.cpu)).toFixed(0)} ms cpu`,
      );
  }
} finally {
  await reg.stop();
  rmSync(work, { recursive: true, force: true });
}
