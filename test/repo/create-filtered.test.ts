/**
 * repo create on packages with includes/excludes: the filter is applied while the payload is
 * read (no filtered copy), so many filtered packages leave no temp data behind them, the image is
 * the one an unfiltered payload of the same files gives, and a full disk names the package.
 */
import { spawnSync } from 'node:child_process';
import { promises as fsp, readdirSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { EXIT_CODES } from '../../src/errors.js';
import { createFromTree } from '../../src/repo/create.js';
import { tmpDir } from '../install/helpers.js';
import { pseudoRandom } from '../support/layers.js';
import { realFsUnavailable, tmpfs } from '../support/tmpfs.js';

const CPM_BIN = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../../bin/cpm.js');

async function write(file: string, data: string | Buffer): Promise<void> {
  await fsp.mkdir(path.dirname(file), { recursive: true });
  await fsp.writeFile(file, data);
}

const def = (name: string): string => `category: test\nname: ${name}\nversion: "1.0"\n`;

const savedTmp = process.env.TMPDIR;
afterEach(() => {
  if (savedTmp === undefined) delete process.env.TMPDIR;
  else process.env.TMPDIR = savedTmp;
});

describe('repo create with filtered payloads', () => {
  it('makes no temp copy per filtered package (none held while packing, none left)', async () => {
    const work = tmpDir('cpm-filtered-');
    const tree = path.join(work, 'packages');
    const n = 24;
    for (let i = 0; i < n; i++) {
      const d = path.join(tree, `p${i}`);
      await write(path.join(d, 'definition.yaml'), def(`p${i}`));
      await write(path.join(d, 'build.yaml'), 'excludes:\n  - ^/usr/share/doc\n');
      await write(path.join(d, 'root/etc/p.conf'), `p${i}\n`);
      await write(path.join(d, 'root/usr/share/doc/README'), pseudoRandom(64 << 10, i));
    }
    // Whatever cpm puts into the temp directory shows up here.
    const tmp = path.join(work, 'tmp');
    await fsp.mkdir(tmp);
    process.env.TMPDIR = tmp;
    let most = 0;
    const r = await createFromTree(tree, {
      output: `dir://${work}/out`,
      sourceDateEpoch: 0,
      concurrency: 4,
      log: () => {
        most = Math.max(most, readdirSync(tmp).length);
      },
    });
    expect(r.packed).toHaveLength(n);
    expect(most).toBe(0);
    expect(readdirSync(tmp)).toEqual([]);
    // Nothing but the layout in the output either.
    expect(readdirSync(path.join(work, 'out')).sort()).toEqual([
      'blobs',
      'index.json',
      'oci-layout',
    ]);
  });

  it('a filtered payload packs to the same image as a payload of just the kept files', async () => {
    const work = tmpDir('cpm-filtered-same-');
    const tree = path.join(work, 'packages');
    for (const name of ['cut', 'whole']) {
      const d = path.join(tree, name);
      await write(path.join(d, 'definition.yaml'), def('x'));
      await write(path.join(d, 'root/etc/x.conf'), 'x\n');
      await write(path.join(d, 'root/usr/bin/x'), '#!/bin/sh\n');
      await fsp.chmod(path.join(d, 'root/usr/bin/x'), 0o755);
      await fsp.symlink('x', path.join(d, 'root/usr/bin/y'));
    }
    await write(path.join(tree, 'cut/build.yaml'), 'excludes:\n  - ^/var\n');
    await write(path.join(tree, 'cut/root/var/log/x.log'), 'log\n');
    const digests: string[] = [];
    for (const name of ['cut', 'whole']) {
      const r = await createFromTree(path.join(tree, name), {
        output: `dir://${work}/out-${name}`,
        sourceDateEpoch: 0,
      });
      digests.push(r.index.packages[0]!.image!.manifestDigest);
    }
    expect(digests[0]).toBe(digests[1]);
  });
});

const why = realFsUnavailable();

describe.skipIf(why !== '')('repo create on a full disk (real filesystem, CLI)', () => {
  it('ENOSPC while packing a filtered package: exit 14 naming the package and the path', async () => {
    const work = tmpDir('cpm-filtered-nospc-');
    const tree = path.join(work, 'packages');
    const d = path.join(tree, 'big');
    await write(path.join(d, 'definition.yaml'), def('big'));
    await write(path.join(d, 'build.yaml'), 'includes:\n  - ^/usr\n');
    // incompressible: 3 MiB cannot fit a 2 MiB disk, as a copy or as a layer
    await write(path.join(d, 'root/usr/share/big/blob'), pseudoRandom(3 << 20, 3));
    await write(path.join(d, 'root/etc/left-out'), 'x\n');
    const disk = tmpfs('2m');
    const cfg = path.join(work, 'cpm.yaml');
    await write(cfg, `cache_dir: ${path.join(work, 'cache')}\nrepos_confdir: []\n`);
    const r = spawnSync(
      process.execPath,
      [CPM_BIN, 'repo', 'create', '--tree', tree, '--output', `dir://${disk}/out`],
      {
        encoding: 'utf8',
        env: { ...process.env, CPM_CONFIG: cfg, HOME: work, TMPDIR: disk },
      },
    );
    expect(r.status, r.stderr).toBe(EXIT_CODES.E_NO_SPACE);
    expect(r.stderr).toMatch(/test\/big@1\.0: packing: .*no space left on device \(ENOSPC\)/);
    expect(r.stderr).toContain(disk);
    // the output's disk, not the cache's
    expect(r.stderr).not.toMatch(/cpm cleanup/);
    expect(r.stderr).toMatch(/\nhint: /);
    expect(r.stderr).not.toMatch(/internal error|\n\s+at /);
  });
});
