/**
 * Installer benchmark: install a package whose one layer is a real Debian root (zstd) from a local
 * docker-registry into a fresh directory, against in the same run
 *   (a) `zstd -dc layer | tar -x` (the raw pipeline, same layer blob), and
 *   (b) `umoci unpack` of the same image (umoci 0.4 reads no zstd, so it gets the same tar as a
 *       gzip layer; cpm is timed on that gzip image too for a like-for-like ratio).
 * cpm runs as the CLI (`cpm rootfs init --from REF --root DIR`, the same transaction as install):
 * cold = empty blob cache (pull + extract), warm = cached blobs (extract only). Peak RSS of the cpm
 * process comes from /usr/bin/time (%M). Every run extracts into a fresh directory.
 *
 * Input: bench/.work/debian-root.tar (≈500 MB; created with mmdebstrap when missing, guarded by a
 * .lock file); `--quick`: a generated ≈40 MB tree, one run each (< 60 s).
 *
 *   npm run build && npx tsx bench/install/run.ts [--quick] [--runs N] [--compare BIN] [--warm-only]
 *
 * `--compare BIN` also times another build's bin/cpm.js (warm cache) in the same runs, for
 * before/after figures; `--warm-only` skips the cold, umoci and gzip rows.
 */
import { makeSpec } from '../../test/support/specs.js';
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, promises as fsp, readFileSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BlobStore } from '../../src/oci/blobstore.js';
import { openTarget } from '../../src/oci/endpoint.js';
import { pushImage } from '../../src/oci/image.js';
import { packageLabels } from '../../src/oci/package-image.js';
import { hostPlatform } from '../../src/oci/platform.js';
import { parseImageRef } from '../../src/oci/reference.js';
import { MEDIA, type ImageConfig, type ImageManifest } from '../../src/oci/types.js';
import type { PackageSpec } from '../../src/package/package.js';
import { startRegistry, type RegistryInstance } from '../../test/support/registry.js';
import { tarOf } from '../../test/install/base-images.js';
import { checkDist, debianRootTar, meanMedian as median } from '../support.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const WORK = path.join(ROOT, 'bench', '.work');
const TAR = path.join(WORK, 'debian-root.tar');
const BIN = path.join(ROOT, 'bin', 'cpm.js');
const QUICK = process.argv.includes('--quick');
const runsArg = process.argv.indexOf('--runs');
const RUNS = QUICK
  ? 1
  : runsArg > 0
    ? Number(process.argv[runsArg + 1])
    : Number(process.env.BENCH_RUNS ?? 3);
const IS_ROOT = process.getuid?.() === 0;
const compareArg = process.argv.indexOf('--compare');
const COMPARE = compareArg > 0 ? path.resolve(process.argv[compareArg + 1]!) : null;
const WARM_ONLY = process.argv.includes('--warm-only');

/** ≈40 MB of rootfs-like files (many small text files, some binaries, symlinks), deterministic. */
async function quickTar(scratch: string): Promise<string> {
  const dir = path.join(scratch, 'quick-root');
  let h = createHash('sha256').update('cpm-bench-install').digest();
  const next = (): Buffer => (h = createHash('sha256').update(h).digest());
  for (let d = 0; d < 40; d++) {
    const sub = path.join(dir, 'usr', 'share', `pkg${d}`);
    await fsp.mkdir(sub, { recursive: true });
    for (let f = 0; f < 100; f++) {
      const lines: string[] = [];
      for (let i = 0; i < 40 + (f % 7) * 20; i++)
        lines.push(`${next().toString('base64')} ${d}.${f}`);
      await fsp.writeFile(path.join(sub, `f${f}.txt`), lines.join('\n'));
    }
  }
  const lib = path.join(dir, 'usr', 'lib');
  await fsp.mkdir(lib, { recursive: true });
  for (let f = 0; f < 20; f++) {
    const parts: Buffer[] = [];
    for (let i = 0; i < 1 << 15; i++) parts.push(next());
    await fsp.writeFile(path.join(lib, `lib${f}.so.1`), Buffer.concat(parts));
    await fsp.symlink(`lib${f}.so.1`, path.join(lib, `lib${f}.so`));
  }
  const out = path.join(scratch, 'quick.tar');
  tarOf(dir, out);
  await fsp.rm(dir, { recursive: true, force: true });
  return out;
}

function sha256File(file: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const h = createHash('sha256');
    createReadStream(file, { highWaterMark: 1 << 20 })
      .on('data', (c) => h.update(c))
      .on('end', () => resolve(`sha256:${h.digest('hex')}`))
      .on('error', reject);
  });
}

/** The compressed layer, cached next to the tar (keyed by its size and mtime). */
function compressed(tar: string, kind: 'zstd' | 'gzip', cacheDir: string): string {
  const st = statSync(tar);
  const out = path.join(
    cacheDir,
    `${path.basename(tar)}.${st.size}-${Math.floor(st.mtimeMs)}.${kind === 'zstd' ? 'zst' : 'gz'}`,
  );
  if (existsSync(out)) return out;
  const tmp = `${out}.tmp`;
  const cmd = kind === 'zstd' ? `zstd -q -3 -T0 -c` : `gzip -c -6`;
  execFileSync('sh', ['-c', `${cmd} < "${tar}" > "${tmp}"`]);
  execFileSync('mv', [tmp, out]);
  return out;
}

const spec: PackageSpec = makeSpec('bench/debian-root@12');

/** A cpm package image (metadata labels, one layer) into `store`; returns the manifest descriptor. */
async function packageImage(
  store: BlobStore,
  layerFile: string,
  mediaType: string,
  diffId: string,
): Promise<{ mediaType: string; digest: string; size: number }> {
  const layer = await store.put(createReadStream(layerFile, { highWaterMark: 1 << 20 }));
  const p = hostPlatform();
  const config: ImageConfig = {
    created: '1970-01-01T00:00:00Z',
    architecture: p.architecture,
    os: p.os,
    config: { Labels: packageLabels(spec) },
    rootfs: { type: 'layers', diff_ids: [diffId] },
    history: [{ created: '1970-01-01T00:00:00Z', created_by: 'bench/install' }],
  };
  const cfg = await store.putBytes(JSON.stringify(config));
  const manifest: ImageManifest = {
    schemaVersion: 2,
    mediaType: MEDIA.ociManifest,
    config: { mediaType: MEDIA.ociConfig, digest: cfg.digest, size: cfg.size },
    layers: [{ mediaType, digest: layer.digest, size: layer.size }],
  };
  const man = await store.putBytes(JSON.stringify(manifest));
  return { mediaType: MEDIA.ociManifest, ...man };
}

interface Timed {
  secs: number;
  /** user + sys CPU seconds of the process and its children (zstd, tar). */
  cpu: number;
  /** Peak RSS in MB (from /usr/bin/time %M), when measured. */
  rssMb?: number;
}

/** Runs argv under /usr/bin/time: wall seconds and peak RSS of the process tree's largest member. */
function timed(argv: string[], env: NodeJS.ProcessEnv = process.env): Timed {
  const out = path.join(os.tmpdir(), `bench-install-time-${process.pid}`);
  const t0 = performance.now();
  const r = spawnSync('/usr/bin/time', ['-f', '%U %S %M', '-o', out, ...argv], {
    env,
    encoding: 'utf8',
    maxBuffer: 64 << 20,
  });
  const secs = (performance.now() - t0) / 1000;
  if (r.status !== 0) throw new Error(`${argv.join(' ')} failed (${r.status}): ${r.stderr}`);
  const [user, sys, kb] = readFileSync(out, 'utf8')
    .trim()
    .split('\n')
    .pop()!
    .split(' ')
    .map(Number);
  return { secs, cpu: user! + sys!, rssMb: kb! / 1024 };
}

async function main(): Promise<void> {
  checkDist(ROOT, ['rootfs/extract.ts', 'rootfs/transaction.ts', 'install/image-ref.ts']);
  await fsp.mkdir(WORK, { recursive: true });
  const scratch = await fsp.mkdtemp(path.join(WORK, 'bench-install-'));
  let reg: RegistryInstance | undefined;
  const t = {
    raw: [] as Timed[],
    cpmCold: [] as Timed[],
    cpmWarm: [] as Timed[],
    umoci: [] as Timed[],
    cpmGzip: [] as Timed[],
    compare: [] as Timed[],
  };
  let tarSize = 0;
  let zstSize = 0;
  let gzSize = 0;
  let files = 0;
  try {
    let tar: string;
    if (QUICK) tar = await quickTar(scratch);
    else {
      await debianRootTar();
      tar = TAR;
    }
    tarSize = statSync(tar).size;
    console.log(`preparing layers from ${tar} (${(tarSize / 1e6).toFixed(0)} MB)…`);
    const zst = compressed(tar, 'zstd', QUICK ? scratch : WORK);
    const gz = compressed(tar, 'gzip', QUICK ? scratch : WORK);
    zstSize = statSync(zst).size;
    gzSize = statSync(gz).size;
    const diffId = await sha256File(tar);

    // Images: a registry for cpm, an OCI layout (same blobs) for umoci.
    const layout = path.join(scratch, 'layout');
    const store = new BlobStore(layout);
    const zDesc = await packageImage(store, zst, MEDIA.ociLayerZstd, diffId);
    const gDesc = await packageImage(store, gz, MEDIA.ociLayerGzip, diffId);
    const lay = await openTarget(parseImageRef(`oci:${layout}`));
    await lay.putManifest(await store.read(zDesc.digest), zDesc.mediaType, 'zstd');
    await lay.putManifest(await store.read(gDesc.digest), gDesc.mediaType, 'gzip');
    reg = await startRegistry({ storageDir: path.join(scratch, 'registry') });
    for (const [desc, tag] of [
      [zDesc, 'zstd'],
      [gDesc, 'gzip'],
    ] as const) {
      const target = await openTarget(parseImageRef(`${reg.host}/bench/debian:${tag}`));
      await pushImage(store, desc, target);
      await target.close();
    }
    const refZ = `${reg.host}/bench/debian:zstd`;
    const refG = `${reg.host}/bench/debian:gzip`;

    const warmCache = path.join(scratch, 'cache-warm');
    await fsp.writeFile(`${warmCache}.yaml`, `cache_dir: ${warmCache}\n`);
    const warmEnv = { ...process.env, CPM_CONFIG: `${warmCache}.yaml` };
    let n = 0;
    const fresh = (): string => path.join(scratch, `out-${n++}`);
    // flush the removed tree too: otherwise the next timed job pays for this one's writeback
    const rm = async (d: string): Promise<void> => {
      await fsp.rm(d, { recursive: true, force: true });
      execFileSync('sync');
    };
    const cpmInit = (ref: string, dir: string, env: NodeJS.ProcessEnv, bin = BIN): Timed =>
      timed(['node', bin, 'rootfs', 'init', '--from', ref, '--root', dir, '-q'], env);

    // Warm the cache (and the page cache) once, untimed.
    {
      const d = fresh();
      cpmInit(refZ, d, warmEnv);
      cpmInit(refG, fresh(), warmEnv);
      files = Number(
        execFileSync(
          'sh',
          ['-c', `find "${d}" -path "${d}/var/lib/cpm" -prune -o -print | wc -l`],
          {
            encoding: 'utf8',
          },
        ).trim(),
      );
      await rm(path.join(scratch, 'out-0'));
      await rm(path.join(scratch, 'out-1'));
    }

    for (let i = 0; i < RUNS; i++) {
      // rotate the order so page-cache and disk effects do not favour one tool
      const jobs: Array<[keyof typeof t, () => Promise<void>]> = [
        [
          'raw',
          async () => {
            const d = fresh();
            await fsp.mkdir(d);
            const owner = IS_ROOT ? '--same-owner' : '--no-same-owner';
            t.raw.push(timed(['sh', '-c', `zstd -dc "${zst}" | tar -x ${owner} -p -C "${d}"`]));
            await rm(d);
          },
        ],
        [
          'cpmWarm',
          async () => {
            const d = fresh();
            t.cpmWarm.push(cpmInit(refZ, d, warmEnv));
            await rm(d);
          },
        ],
        [
          'cpmCold',
          async () => {
            const d = fresh();
            const cache = path.join(scratch, `cache-cold-${i}`);
            await fsp.writeFile(`${cache}.yaml`, `cache_dir: ${cache}\n`);
            t.cpmCold.push(cpmInit(refZ, d, { ...process.env, CPM_CONFIG: `${cache}.yaml` }));
            await rm(d);
            await rm(cache);
          },
        ],
        [
          'umoci',
          async () => {
            const d = fresh();
            const args = [
              'umoci',
              'unpack',
              ...(IS_ROOT ? [] : ['--rootless']),
              '--image',
              `${layout}:gzip`,
              d,
            ];
            t.umoci.push(timed(args));
            await rm(d);
          },
        ],
        [
          'cpmGzip',
          async () => {
            const d = fresh();
            t.cpmGzip.push(cpmInit(refG, d, warmEnv));
            await rm(d);
          },
        ],
        [
          'compare',
          async () => {
            const d = fresh();
            t.compare.push(cpmInit(refZ, d, warmEnv, COMPARE!));
            await rm(d);
          },
        ],
      ].filter(
        ([name]) =>
          (name !== 'compare' || COMPARE !== null) &&
          (!WARM_ONLY || name === 'raw' || name === 'cpmWarm' || name === 'compare'),
      ) as Array<[keyof typeof t, () => Promise<void>]>;
      for (let k = 0; k < jobs.length; k++) {
        const [name, job] = jobs[(k + i) % jobs.length]!;
        process.stdout.write(`run ${i + 1}/${RUNS}: ${name}… `);
        await job();
        const last = t[name][t[name].length - 1]!;
        process.stdout.write(
          `${last.secs.toFixed(2)} s wall, ${last.cpu.toFixed(2)} s CPU, ${last.rssMb?.toFixed(0)} MB\n`,
        );
      }
    }
  } finally {
    await reg?.stop();
    await fsp.rm(scratch, { recursive: true, force: true });
  }

  const med = (xs: Timed[]): number => median(xs.map((x) => x.secs));
  const medCpu = (xs: Timed[]): number => median(xs.map((x) => x.cpu));
  const peak = (xs: Timed[]): number => Math.max(0, ...xs.map((x) => x.rssMb ?? 0));
  // the least disturbed run: on a shared machine medians drift with other people's load
  const best = (xs: Timed[]): number => Math.min(...xs.map((x) => x.secs));
  const raw = med(t.raw);
  const umo = med(t.umoci);
  const mb = (n: number): string => (n / 1e6).toFixed(0);
  console.log(
    `\ninstall bench${QUICK ? ' (--quick)' : ''}: ${QUICK ? 'generated tree' : 'Debian root'} tar ${mb(tarSize)} MB, ` +
      `${files} entries → zstd layer ${mb(zstSize)} MB / gzip layer ${mb(gzSize)} MB; ${RUNS} run(s), median; ` +
      `${IS_ROOT ? 'as root (owners, device nodes)' : 'rootless'}; load average ${os.loadavg()[0]!.toFixed(1)}`,
  );
  console.log(
    '| what                                   | wall (s) | vs raw | vs umoci | best (s) | best vs raw | CPU (s) | CPU vs raw | peak RSS (MB) |',
  );
  console.log(
    '| -------------------------------------- | -------- | ------ | -------- | -------- | ----------- | ------- | ---------- | ------------- |',
  );
  const row = (what: string, xs: Timed[], vsUmoci: boolean): void => {
    if (xs.length === 0) return;
    const m = med(xs);
    const c = medCpu(xs);
    console.log(
      `| ${what.padEnd(38)} | ${m.toFixed(2).padStart(8)} | ${(m / raw).toFixed(2).padStart(5)}× | ` +
        `${vsUmoci ? (m / umo).toFixed(2).padStart(7) + '×' : '       –'} | ` +
        `${best(xs).toFixed(2).padStart(8)} | ${(best(xs) / best(t.raw)).toFixed(2).padStart(10)}× | ` +
        `${c.toFixed(2).padStart(7)} | ` +
        `${(c / medCpu(t.raw)).toFixed(2).padStart(9)}× | ${peak(xs).toFixed(0).padStart(13)} |`,
    );
  };
  row('zstd -dc | tar -x (baseline)', t.raw, false);
  row('cpm, warm cache (extract only), zstd', t.cpmWarm, false);
  row('cpm, cold cache (pull + extract), zstd', t.cpmCold, false);
  row('umoci unpack, gzip', t.umoci, true);
  row('cpm, warm cache, gzip', t.cpmGzip, true);
  if (COMPARE) row(`--compare build, warm cache, zstd`, t.compare, false);
  const fmt = (xs: Timed[]): string => xs.map((x) => x.secs.toFixed(2)).join(' ');
  console.log(
    `runs (s): raw ${fmt(t.raw)} | cpm warm ${fmt(t.cpmWarm)} | cpm cold ${fmt(t.cpmCold)} | ` +
      `umoci ${fmt(t.umoci)} | cpm gzip ${fmt(t.cpmGzip)}` +
      (COMPARE ? ` | compare ${fmt(t.compare)}` : ''),
  );
  const warm = med(t.cpmWarm);
  const targets = [
    [`cpm warm ≤ 1.25× raw (median)`, warm / raw <= 1.25, `${(warm / raw).toFixed(2)}×`],
    [
      `cpm warm ≤ 1.25× raw (best runs)`,
      best(t.cpmWarm) / best(t.raw) <= 1.25,
      `${(best(t.cpmWarm) / best(t.raw)).toFixed(2)}×`,
    ],
    [`cpm faster than umoci (gzip)`, med(t.cpmGzip) < umo, `${(med(t.cpmGzip) / umo).toFixed(2)}×`],
    [
      `cpm peak RSS < 250 MB`,
      Math.max(peak(t.cpmWarm), peak(t.cpmCold), peak(t.cpmGzip)) < 250,
      `${Math.max(peak(t.cpmWarm), peak(t.cpmCold), peak(t.cpmGzip)).toFixed(0)} MB`,
    ],
  ] as const;
  for (const [what, ok, fig] of targets.filter(([, , fig]) => !/NaN|Infinity/.test(fig)))
    console.log(`${ok ? 'met ' : 'MISS'} ${what}: ${fig}`);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
