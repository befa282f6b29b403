/**
 * Build roots through the registry build cache: for each kept root under ROOTS (by default the
 * ones bench/build/cos-nochange.ts leaves: distro/tool and distro/base of cOS), the time to pack
 * and push it (`RemoteCache.putRoot`: tar + zstd, one layer) to a local docker-registry and to
 * fetch and unpack it again (`fetchRoot`: download + cpm's installer), wall and this process's CPU.
 *
 *   npx tsx bench/build/root-cache.ts [--roots DIR]
 */
import { execFileSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { RemoteCache } from '../../src/build/remote-cache.js';
import { BlobStore } from '../../src/oci/blobstore.js';
import { createSpec } from '../../src/package/package.js';
import { startRegistry } from '../../test/support/registry.js';

const i = process.argv.indexOf('--roots');
const ROOTS = i > 0 ? process.argv[i + 1]! : '/tmp/cpm-bench-cos/cache/build/roots';

async function main(): Promise<void> {
  const reg = await startRegistry();
  const work = await fsp.mkdtemp(path.join(os.tmpdir(), 'cpm-bench-roots-'));
  const store = new BlobStore(path.join(work, 'store'));
  const secs = (us: number): string => (us / 1e6).toFixed(1);
  try {
    console.log(
      `load average ${os
        .loadavg()
        .map((l) => l.toFixed(1))
        .join(' ')}`,
    );
    console.log('| root | size | push wall s | push cpu s | fetch wall s | fetch cpu s |');
    console.log('| --- | ---: | ---: | ---: | ---: | ---: |');
    for (const key of (await fsp.readdir(ROOTS)).sort()) {
      const dir = path.join(ROOTS, key, 'root');
      const size = execFileSync('du', ['-sh', dir], { encoding: 'utf8' }).split('\t')[0];
      const cache = await RemoteCache.open(`oci://${reg.host}/cache`, {}, (l) => console.log(l));
      const pkg = createSpec({ category: 'bench', name: `r${key.slice(0, 8)}`, version: '1' });
      const hash = `sha256:${key}`;
      let t = Date.now();
      let c = process.cpuUsage();
      await cache.putRoot(pkg, hash, dir, [], store);
      const push = [(Date.now() - t) / 1000, process.cpuUsage(c)] as const;
      t = Date.now();
      c = process.cpuUsage();
      await cache.fetchRoot(pkg, hash, path.join(work, key), store);
      const fetch = [(Date.now() - t) / 1000, process.cpuUsage(c)] as const;
      console.log(
        `| ${key.slice(0, 12)} | ${size} | ${push[0].toFixed(1)} | ${secs(push[1].user + push[1].system)} | ${fetch[0].toFixed(1)} | ${secs(fetch[1].user + fetch[1].system)} |`,
      );
      await fsp.rm(path.join(work, key), { recursive: true, force: true });
      await cache.close();
    }
    const stored = execFileSync('du', ['-sh', reg.storageDir], { encoding: 'utf8' }).split('\t')[0];
    console.log(`registry storage after the pushes: ${stored}`);
  } finally {
    await reg.stop();
    await fsp.rm(work, { recursive: true, force: true });
  }
}

await main();
