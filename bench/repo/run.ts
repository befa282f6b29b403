/**
 * `repo create` benchmark: a synthetic tree (N packages with payload) published to a dir
 * repository and to a local docker-registry; full runs vs incremental runs (nothing changed, one
 * package changed) in the same process. Baseline = the full dir run.
 *
 *   npx tsx bench/repo/run.ts [--packages N] [--files F] [--file-kb K]
 */
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createFromTree } from '../../src/repo/create.js';
import { RegistryReader } from '../../src/repo/reader.js';
import { BlobStore } from '../../src/oci/blobstore.js';
import { startRegistry } from '../../test/support/registry.js';

const arg = (name: string, dflt: number): number => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const PACKAGES = arg('packages', 120);
const FILES = arg('files', 30);
const FILE_KB = arg('file-kb', 16);

/** Text-like, compressible, different per file. */
function content(seed: string, kb: number): Buffer {
  const lines: string[] = [];
  let h = createHash('sha256').update(seed).digest('hex');
  while (lines.join('\n').length < kb * 1024) {
    h = createHash('sha256').update(h).digest('hex');
    lines.push(`key_${h.slice(0, 8)} = "${h}" # generated ${seed}`);
  }
  return Buffer.from(lines.join('\n'));
}

async function makeTree(dir: string): Promise<void> {
  for (let p = 0; p < PACKAGES; p++) {
    const pkg = path.join(dir, `cat${p % 5}`, `pkg${p}`, '1.0.0');
    await fsp.mkdir(path.join(pkg, 'root', 'etc', `pkg${p}`), { recursive: true });
    await fsp.writeFile(
      path.join(pkg, 'definition.yaml'),
      `name: pkg${p}\ncategory: cat${p % 5}\nversion: "1.0.0"\ndescription: synthetic package ${p}\n` +
        (p > 0
          ? `requires:\n  - category: cat${(p - 1) % 5}\n    name: pkg${p - 1}\n    version: ">=1"\n`
          : ''),
    );
    for (let f = 0; f < FILES; f++) {
      await fsp.writeFile(
        path.join(pkg, 'root', 'etc', `pkg${p}`, `f${f}.conf`),
        content(`${p}/${f}`, FILE_KB),
      );
    }
  }
}

async function time<T>(fn: () => Promise<T>): Promise<[number, T]> {
  const t = process.hrtime.bigint();
  const r = await fn();
  return [Number(process.hrtime.bigint() - t) / 1e9, r];
}

async function main(): Promise<void> {
  const work = await fsp.mkdtemp(path.join(os.tmpdir(), 'cpm-bench-repo-'));
  const tree = path.join(work, 'tree');
  await makeTree(tree);
  const mb = (PACKAGES * FILES * FILE_KB) / 1024;
  const reg = await startRegistry();
  const rows: Array<[string, number, string]> = [];
  try {
    const epoch = 1700000000;
    const dirOut = `dir://${work}/repo`;
    const [full] = await time(() =>
      createFromTree(tree, { output: dirOut, sourceDateEpoch: epoch }),
    );
    rows.push(['dir: full create (baseline)', full, `${PACKAGES} packed`]);
    const [noop, r1] = await time(() =>
      createFromTree(tree, { output: dirOut, sourceDateEpoch: epoch }),
    );
    rows.push(['dir: incremental, nothing changed', noop, `${r1.packed.length} packed`]);
    await fsp.appendFile(path.join(tree, 'cat0/pkg0/1.0.0/root/etc/pkg0/f0.conf'), '\n# changed\n');
    const [one, r2] = await time(() =>
      createFromTree(tree, { output: dirOut, sourceDateEpoch: epoch }),
    );
    rows.push(['dir: incremental, 1 package changed', one, `${r2.packed.length} packed`]);

    const ociOut = `oci://${reg.host}/bench`;
    const cacheDir = path.join(work, 'cache');
    const [push, r3] = await time(() =>
      createFromTree(tree, { output: ociOut, push: true, sourceDateEpoch: epoch, cacheDir }),
    );
    rows.push(['oci: full create + push', push, `${r3.uploads.length} uploads`]);
    const [pushNoop, r4] = await time(() =>
      createFromTree(tree, { output: ociOut, push: true, sourceDateEpoch: epoch, cacheDir }),
    );
    rows.push(['oci: incremental, nothing changed', pushNoop, `${r4.uploads.length} uploads`]);
    await fsp.appendFile(path.join(tree, 'cat1/pkg1/1.0.0/root/etc/pkg1/f0.conf'), '\n# changed\n');
    const [pushOne, r5] = await time(() =>
      createFromTree(tree, { output: ociOut, push: true, sourceDateEpoch: epoch, cacheDir }),
    );
    rows.push(['oci: incremental, 1 package changed', pushOne, `${r5.uploads.length} uploads`]);

    const reader = new RegistryReader(ociOut, {
      blobCache: new BlobStore(path.join(work, 'cache2')),
    });
    const [fetch, f] = await time(() => reader.fetchIndex());
    await reader.close();
    rows.push([
      'oci: fetch index (1 manifest GET)',
      fetch,
      `${f.data.length} bytes, ${f.index.packages.length} pkgs`,
    ]);

    console.log(
      `repo create: ${PACKAGES} packages × ${FILES} files × ${FILE_KB} KiB = ${mb.toFixed(1)} MiB payload`,
    );
    console.log(`${'case'.padEnd(40)} ${'seconds'.padStart(8)} ${'ratio'.padStart(7)}  notes`);
    for (const [name, s, note] of rows) {
      console.log(
        `${name.padEnd(40)} ${s.toFixed(3).padStart(8)} ${(s / full).toFixed(2).padStart(6)}×  ${note}`,
      );
    }
  } finally {
    await reg.stop();
    await fsp.rm(work, { recursive: true, force: true });
  }
}

await main();
