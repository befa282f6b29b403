/**
 * OCI pull/push benchmark against a local docker-registry: `cpm pull|push` vs `skopeo copy` in
 * the same run, fresh cache and fresh destination per run, alternating who goes first.
 *
 * Input: bench/.work/debian-root.tar (≈500 MB Debian root, created with mmdebstrap when missing)
 * extracted into a fresh directory and packed by cpm's library (one gzip layer, owners kept);
 * `--quick`: a generated ≈50 MB tree instead (the whole bench < 60 s).
 *
 *   npm run build && npx tsx bench/oci/run.ts [--quick] [--runs N] [--cpm out/cpm-linux-x64]
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, promises as fsp, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BlobStore } from '../../src/oci/blobstore.js';
import { LayoutEndpoint } from '../../src/oci/endpoint.js';
import { pushImage } from '../../src/oci/image.js';
import { OciLayout } from '../../src/oci/layout.js';
import { buildPackageImage } from '../../src/oci/package-image.js';
import { createSpec } from '../../src/package/package.js';
import { startRegistry, type RegistryInstance } from '../../test/support/registry.js';
import { checkDist, debianRootTar, meanMedian as median } from '../support.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const WORK = path.join(ROOT, 'bench', '.work');
const TAR = path.join(WORK, 'debian-root.tar');
const BIN = path.join(ROOT, 'bin', 'cpm.js');
const cpmArg = process.argv.indexOf('--cpm');
/** `--cpm FILE`: time this executable (e.g. the single-file out/cpm-linux-x64) instead of bin/cpm.js. */
const CPM: [string, string[]] =
  cpmArg > 0 ? [path.resolve(process.argv[cpmArg + 1]!), []] : ['node', [BIN]];
const QUICK = process.argv.includes('--quick');
const runsArg = process.argv.indexOf('--runs');
const RUNS = runsArg > 0 ? Number(process.argv[runsArg + 1]) : Number(process.env.BENCH_RUNS ?? 3);

/** ≈50 MB: compressible text files plus incompressible ones, deterministic. */
async function generateTree(dir: string): Promise<void> {
  let h = createHash('sha256').update('cpm-bench-oci').digest();
  const next = (): Buffer => (h = createHash('sha256').update(h).digest());
  for (let d = 0; d < 20; d++) {
    const sub = path.join(dir, 'usr', 'share', `pkg${d}`);
    await fsp.mkdir(sub, { recursive: true });
    for (let f = 0; f < 10; f++) {
      const lines: string[] = [];
      for (let i = 0; i < 1200; i++)
        lines.push(`option_${i} = ${next().toString('hex')} # ${d}/${f}`);
      await fsp.writeFile(path.join(sub, `f${f}.conf`), lines.join('\n'));
    }
  }
  const bin = path.join(dir, 'usr', 'lib');
  await fsp.mkdir(bin, { recursive: true });
  for (let f = 0; f < 36; f++) {
    const parts: Buffer[] = [];
    for (let i = 0; i < 1 << 15; i++) parts.push(next());
    await fsp.writeFile(path.join(bin, `blob${f}.so`), Buffer.concat(parts));
  }
}

/** Fills a fresh directory with the input and packs it into an OCI layout under `scratch`. */
async function prepareLayout(
  scratch: string,
): Promise<{ layout: string; inputBytes: number; layerSize: number; packSeconds: number }> {
  const root = path.join(scratch, 'rootfs');
  await fsp.mkdir(root);
  let inputBytes: number;
  if (QUICK) {
    await generateTree(root);
    inputBytes = Number(execFileSync('du', ['-sb', root], { encoding: 'utf8' }).split('\t')[0]);
  } else {
    await debianRootTar();
    inputBytes = statSync(TAR).size;
    execFileSync('tar', ['-xf', TAR, '-C', root, '--numeric-owner']);
  }
  const store = new BlobStore(path.join(scratch, 'pack-cache'));
  const t0 = performance.now();
  const img = await buildPackageImage(
    createSpec({ category: 'bench', name: QUICK ? 'generated' : 'debian', version: '12' }),
    root,
    { store, compression: 'gzip', preserveOwners: !QUICK, sourceDateEpoch: 0 },
  );
  const packSeconds = (performance.now() - t0) / 1000;
  const layout = path.join(scratch, 'layout');
  await pushImage(
    store,
    img.descriptor,
    new LayoutEndpoint(await OciLayout.create(layout), 'latest'),
  );
  await fsp.rm(path.join(scratch, 'pack-cache'), { recursive: true, force: true });
  await fsp.rm(root, { recursive: true, force: true });
  return { layout, inputBytes, layerSize: img.layer.size, packSeconds };
}

/** An environment whose cpm.yaml points the blob cache at `dir` (fresh per run). */
async function cpmEnv(dir: string): Promise<NodeJS.ProcessEnv> {
  const file = `${dir}.yaml`;
  await fsp.writeFile(file, `cache_dir: ${dir}\n`);
  return { ...process.env, CPM_CONFIG: file };
}

interface Sample {
  wall: number;
  /** user + system CPU seconds of the child (NaN without /usr/bin/time). */
  cpu: number;
}

const TIME = '/usr/bin/time';
const HAVE_TIME = existsSync(TIME);

/** Runs a command; wall time, and its CPU time (a steadier signal on a busy machine). */
function timed(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): Sample {
  const cpuFile = path.join(os.tmpdir(), `cpm-bench-time-${process.pid}`);
  const [c, a] = HAVE_TIME ? [TIME, ['-f', '%U %S', '-o', cpuFile, cmd, ...args]] : [cmd, args];
  const t0 = performance.now();
  const r = spawnSync(c, a, { env, encoding: 'utf8', maxBuffer: 64 << 20 });
  const wall = (performance.now() - t0) / 1000;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  let cpu = NaN;
  if (HAVE_TIME) {
    const [u, sys] = readFileSync(cpuFile, 'utf8').trim().split(/\s+/).map(Number);
    cpu = u! + sys!;
    rmSync(cpuFile, { force: true });
  }
  return { wall, cpu };
}

async function main(): Promise<void> {
  if (cpmArg < 0) checkDist(ROOT, ['oci']);
  const scratch = await fsp.mkdtemp(path.join(QUICK ? os.tmpdir() : WORK, 'bench-oci-'));
  const times = {
    cpmPull: [] as Sample[],
    skopeoPull: [] as Sample[],
    cpmPush: [] as Sample[],
    skopeoPush: [] as Sample[],
  };
  let reg: RegistryInstance | undefined;
  let input: Awaited<ReturnType<typeof prepareLayout>>;
  try {
    input = await prepareLayout(scratch);
    const { layout } = input;
    // The pull source: one registry for all pull runs, filled by skopeo (neutral ground).
    reg = await startRegistry({ storageDir: path.join(scratch, 'pull-registry') });
    const src = `${reg.host}/bench/image:latest`;
    timed('skopeo', [
      'copy',
      '-q',
      '--dest-tls-verify=false',
      `oci:${layout}:latest`,
      `docker://${src}`,
    ]);
    for (let i = 0; i < RUNS; i++) {
      // Alternate who goes first so page-cache effects do not favour one tool.
      for (const who of i % 2 === 0 ? ['cpm', 'skopeo'] : ['skopeo', 'cpm']) {
        const out = path.join(scratch, `pull-${who}-${i}`);
        if (who === 'cpm') {
          const cache = path.join(scratch, `cache-${i}`);
          const env = await cpmEnv(cache);
          times.cpmPull.push(
            timed(CPM[0], [...CPM[1], 'pull', src, '--output', `oci:${out}:latest`], env),
          );
          await fsp.rm(cache, { recursive: true, force: true });
        } else {
          times.skopeoPull.push(
            timed('skopeo', [
              'copy',
              '-q',
              '--src-tls-verify=false',
              `docker://${src}`,
              `oci:${out}:latest`,
            ]),
          );
        }
        await fsp.rm(out, { recursive: true, force: true });
      }
    }
    await reg.stop();
    reg = undefined;
    for (let i = 0; i < RUNS; i++) {
      for (const who of i % 2 === 0 ? ['cpm', 'skopeo'] : ['skopeo', 'cpm']) {
        // A fresh registry per push: nothing to skip or mount.
        reg = await startRegistry({ storageDir: path.join(scratch, `push-registry-${who}-${i}`) });
        const dest = `${reg.host}/bench/pushed:latest`;
        if (who === 'cpm') {
          const cache = path.join(scratch, `push-cache-${i}`);
          const env = await cpmEnv(cache);
          times.cpmPush.push(timed(CPM[0], [...CPM[1], 'push', `oci:${layout}:latest`, dest], env));
          await fsp.rm(cache, { recursive: true, force: true });
        } else {
          times.skopeoPush.push(
            timed('skopeo', [
              'copy',
              '-q',
              '--dest-tls-verify=false',
              `oci:${layout}:latest`,
              `docker://${dest}`,
            ]),
          );
        }
        await reg.stop();
        reg = undefined;
        await fsp.rm(path.join(scratch, `push-registry-${who}-${i}`), {
          recursive: true,
          force: true,
        });
      }
    }
  } finally {
    await reg?.stop();
    await fsp.rm(scratch, { recursive: true, force: true });
  }
  const { inputBytes, layerSize, packSeconds } = input;
  const mb = (n: number): string => (n / 1e6).toFixed(0);
  console.log(
    `\nOCI bench${QUICK ? ' (--quick)' : ''}, cpm = ${CPM[1][0] ?? CPM[0]}: ${QUICK ? 'generated tree' : 'Debian root'} of ${mb(inputBytes)} MB → ` +
      `one gzip layer of ${mb(layerSize)} MB (cpm pack: ${packSeconds.toFixed(1)} s); ${RUNS} runs, median`,
  );
  const row = (op: string, c: Sample[], s: Sample[]): string => {
    const [cw, sw] = [median(c.map((x) => x.wall)), median(s.map((x) => x.wall))];
    const [cc, sc] = [median(c.map((x) => x.cpu)), median(s.map((x) => x.cpu))];
    const f = (x: number, w: number): string => x.toFixed(2).padStart(w);
    return (
      `| ${op} | ${f(cw, 7)} | ${f(sw, 10)} | ${f(cw / sw, 5)}× | ${(layerSize / 1e6 / cw).toFixed(0).padStart(8)} |` +
      ` ${f(cc, 11)} | ${f(sc, 14)} | ${f(cc / sc, 9)}× |`
    );
  };
  console.log(
    '| op   | cpm (s) | skopeo (s) |  ratio | cpm MB/s | cpm CPU (s) | skopeo CPU (s) | CPU ratio |',
  );
  console.log(
    '| ---- | ------- | ---------- | ------ | -------- | ----------- | -------------- | --------- |',
  );
  console.log(row('pull', times.cpmPull, times.skopeoPull));
  console.log(row('push', times.cpmPush, times.skopeoPush));
  const fmt = (xs: Sample[]): string => xs.map((x) => x.wall.toFixed(2)).join(' ');
  console.log(
    `wall per run (s): cpm pull ${fmt(times.cpmPull)} | skopeo pull ${fmt(times.skopeoPull)} | ` +
      `cpm push ${fmt(times.cpmPush)} | skopeo push ${fmt(times.skopeoPush)}`,
  );
  console.log(
    `load average at the end: ${os
      .loadavg()
      .map((x) => x.toFixed(1))
      .join(' ')} (${os.cpus().length} CPUs)`,
  );
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
